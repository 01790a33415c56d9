// moe/layer/moe_layer.hpp - MoELayer<Router, Experts, Shared>: route, run, combine, add shared.
//
//   y = sum_j w(t, j) * expert_{e(t, j)}(x_t)  +  shared(x_t)
//
// The three parts are template parameters (compile-time structure); their sizes come from the
// weights they were built from (run-time sizes). The RoutingPlan of the last call is kept for
// inspection (per-expert load, dropped tokens).
#pragma once

#include <utility>

#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/concepts.hpp"
#include "moe/layer/shared.hpp"
#include "moe/router/concepts.hpp"
#include "moe/core/plan.hpp"

namespace moe {

template <Router R, ExpertSet X, class Shared = NoSharedExperts>
class MoELayer {
public:
    using router_type = R;
    using experts_type = X;
    using shared_type = Shared;

    MoELayer() = default;
    MoELayer(R router, X experts, Shared shared = {})
        : router_(std::move(router)), experts_(std::move(experts)), shared_(std::move(shared)) {
        check<ShapeError>(router_.num_experts() == experts_.num_experts(), "MoELayer", "router has ",
                          router_.num_experts(), " experts, the expert set ", experts_.num_experts());
        check<ShapeError>(router_.hidden_size() == experts_.hidden_size(), "MoELayer", "router takes ",
                          router_.hidden_size(), " features, the experts ", experts_.hidden_size());
        if constexpr (Shared::enabled)
            check<ShapeError>(shared_.hidden_size() == experts_.hidden_size(), "MoELayer", "shared experts take ",
                              shared_.hidden_size(), " features, the routed experts ", experts_.hidden_size());
    }

    index_t hidden_size() const noexcept { return experts_.hidden_size(); }
    index_t num_experts() const noexcept { return experts_.num_experts(); }
    index_t parameters() const noexcept {
        index_t p = experts_.parameters() + shared_.parameters();
        if constexpr (requires { router_.parameters(); }) p += router_.parameters();
        return p;
    }

    /// y [T, d] = MoE(x [T, d]). y must not alias x.
    void forward(ConstMatrixRef<float> x, MatrixRef<float> y) {
        check<ShapeError>(x.cols == hidden_size(), "MoELayer::forward", "input has ", x.cols, " features, expected ",
                          hidden_size());
        check<ShapeError>(y.rows == x.rows && y.cols == x.cols, "MoELayer::forward", "output is [", y.rows, ", ",
                          y.cols, "], expected [", x.rows, ", ", x.cols, "]");
        router_.route(x, plan_);
        const RoutingPlan& plan = plan_;
        if constexpr (ThreadedExpertSet<X>)
            experts_.forward(x, plan, y, Combine::overwrite, exec_);
        else
            experts_.forward(x, plan, y, Combine::overwrite);
        if constexpr (Shared::enabled) shared_.forward(x, y, exec_);
    }
    /// Convenience: a new [T, d] tensor.
    Tensor forward(const Tensor& x) {
        Tensor y(DType::f32, x.shape());
        forward(x.matrix<float>("MoELayer::forward input"), y.matrix<float>());
        return y;
    }

    /// The plan of the last forward call.
    const RoutingPlan& plan() const noexcept { return plan_; }
    R& router() noexcept { return router_; }
    const R& router() const noexcept { return router_; }
    X& experts() noexcept { return experts_; }
    const X& experts() const noexcept { return experts_; }
    Shared& shared() noexcept { return shared_; }
    const Shared& shared() const noexcept { return shared_; }
    /// Where the router (when ExecAware), the experts and the shared experts run (default Exec{}:
    /// all OpenMP threads); results do not depend on it.
    void set_exec(const Exec& ex) noexcept {
        exec_ = ex;
        if constexpr (ExecAware<R>) router_.set_exec(ex);
    }
    const Exec& exec() const noexcept { return exec_; }

private:
    R router_;
    X experts_;
    Shared shared_;
    RoutingPlan plan_;
    Exec exec_;
};

}  // namespace moe
