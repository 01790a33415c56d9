// moe/layer/moe_layer.hpp - MoELayer<Router, Experts, Shared>: route, run, combine, add shared.
//
//   y = sum_j w(t, j) * expert_{e(t, j)}(x_t)  +  shared(x_t)
//
// One RoutedGroup (moe/layer/routed_group.hpp) plus shared experts. The three parts are template
// parameters (compile-time structure); their sizes come from the weights they were built from
// (run-time sizes). The RoutingPlan of the last call is kept for inspection (per-expert load,
// dropped tokens). The group computes no auxiliary loss (its loss constant is 0).
#pragma once

#include <utility>

#include "moe/core/error.hpp"
#include "moe/core/plan.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/concepts.hpp"
#include "moe/layer/routed_group.hpp"
#include "moe/layer/shared.hpp"
#include "moe/router/concepts.hpp"

namespace moe {

template <Router R, ExpertSet X, class Shared = NoSharedExperts>
class MoELayer {
public:
    using router_type = R;
    using experts_type = X;
    using shared_type = Shared;
    using group_type = RoutedGroup<R, X>;

    MoELayer() = default;
    MoELayer(R router, X experts, Shared shared = {})
        : MoELayer(group_type(std::move(router), std::move(experts), "MoELayer"), std::move(shared)) {}
    /// From a routed group (e.g. one a pruning policy made).
    explicit MoELayer(RoutedGroup<R, X> group, Shared shared = {}) : group_(std::move(group)), shared_(std::move(shared)) {
        if constexpr (Shared::enabled)
            check<ShapeError>(shared_.hidden_size() == group_.hidden_size(), "MoELayer", "shared experts take ",
                              shared_.hidden_size(), " features, the routed experts ", group_.hidden_size());
    }

    index_t hidden_size() const noexcept { return group_.hidden_size(); }
    index_t num_experts() const noexcept { return group_.num_experts(); }
    /// Routed experts + router (CountsParameters; 0 for a router without) + shared experts.
    index_t parameters() const noexcept { return group_.parameters() + shared_.parameters(); }

    /// y [T, d] = MoE(x [T, d]). y must not alias x.
    void forward(ConstMatrixRef<float> x, MatrixRef<float> y) {
        check<ShapeError>(x.cols == hidden_size(), "MoELayer::forward", "input has ", x.cols, " features, expected ",
                          hidden_size());
        check<ShapeError>(y.rows == x.rows && y.cols == x.cols, "MoELayer::forward", "output is [", y.rows, ", ",
                          y.cols, "], expected [", x.rows, ", ", x.cols, "]");
        group_.forward(x, y, Combine::overwrite);
        if constexpr (Shared::enabled) shared_.forward(x, y, group_.exec());
    }
    /// Convenience: a new [T, d] tensor.
    Tensor forward(const Tensor& x) {
        Tensor y(DType::f32, x.shape());
        forward(x.matrix<float>("MoELayer::forward input"), y.matrix<float>());
        return y;
    }

    /// Use o's scratch (expert activations, GEMM panels) from now on: layers that never run at the
    /// same time (the blocks of one model) keep one set of buffers.
    void share_scratch(MoELayer& o) {
        group_.share_scratch(o.group_);
        if constexpr (Shared::enabled) shared_.share_scratch(o.shared_);
    }

    /// The plan of the last forward call.
    const RoutingPlan& plan() const noexcept { return group_.plan(); }
    R& router() noexcept { return group_.router(); }
    const R& router() const noexcept { return group_.router(); }
    X& experts() noexcept { return group_.experts(); }
    const X& experts() const noexcept { return group_.experts(); }
    /// The routed group (router, experts, plan).
    group_type& group() noexcept { return group_; }
    const group_type& group() const noexcept { return group_; }
    Shared& shared() noexcept { return shared_; }
    const Shared& shared() const noexcept { return shared_; }
    /// Where the routing (ExecAware routers), the expert GEMMs (ThreadedExpertSet) and the shared
    /// experts run (default Exec{}: all OpenMP threads). Results do not depend on it.
    void set_exec(const Exec& ex) noexcept { group_.set_exec(ex); }
    const Exec& exec() const noexcept { return group_.exec(); }

private:
    group_type group_;
    Shared shared_;
};

}  // namespace moe
