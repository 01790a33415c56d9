// moe/layer/routed_group.hpp - RoutedGroup<Router, Experts>: one router over one set of experts.
//
//   y (=, or +=) sum_j w(t, j) * expert_{e(t, j)}(x_t)
//
// The unit every MoE layer is built from: MoELayer is one group (+ shared experts),
// HierarchicalMoE is one group per modality + a collaborative group (+ shared experts), and the
// pruning policies (moe/prune/) are written once per group. A group holds the router, the
// experts, the RoutingPlan of its last call and its auxiliary loss:
//
//   loss = sequential_group_loss(router.last_logits(), plan, c)   (moe/router/losses.hpp)
//
// computed on every forward call when the group has a loss constant c > 0 (set_loss_constant;
// HierarchicalMoE sets its aux_constant, MoELayer leaves c = 0) and the router keeps its logits
// (LogitRouter). A router without last_logits() gives loss 0, and so does c = 0 (the loss is
// proportional to c^2; it is then not computed at all). The formula is MindSpore's TopkRouter
// loss for CapacityPriority::sequential routing (see moe/layer/hierarchical.hpp); for other
// routing rules it is a load-balancing measure of the same kind, not their training loss.
#pragma once

#include <algorithm>
#include <cmath>
#include <optional>
#include <string_view>
#include <utility>

#include "moe/backend/cpu/simd.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/plan.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/concepts.hpp"
#include "moe/router/concepts.hpp"
#include "moe/router/losses.hpp"

namespace moe {

template <Router R, ExpertSet X>
class RoutedGroup {
public:
    using router_type = R;
    using experts_type = X;

    RoutedGroup() = default;
    /// ShapeError (naming `where`) unless router and experts agree on the expert count and width.
    RoutedGroup(R router, X experts, std::string_view where = "RoutedGroup")
        : router_(std::move(router)), experts_(std::move(experts)) {
        check<ShapeError>(router_.num_experts() == experts_.num_experts() &&
                              router_.hidden_size() == experts_.hidden_size(),
                          where, "router and experts disagree: router over ", router_.num_experts(), " experts taking ",
                          router_.hidden_size(), " features, expert set holds ", experts_.num_experts(),
                          " experts taking ", experts_.hidden_size());
    }

    index_t hidden_size() const noexcept { return experts_.hidden_size(); }
    index_t num_experts() const noexcept { return experts_.num_experts(); }
    /// The experts' parameters plus the router's (CountsParameters; 0 for a router without).
    index_t parameters() const noexcept {
        index_t p = experts_.parameters();
        if constexpr (CountsParameters<R>) p += static_cast<index_t>(router_.parameters());
        return p;
    }

    /// Routes x [T, d] into plan() and runs the experts: y [T, d] = (Combine::overwrite) or
    /// += (Combine::add) the weighted sum of each token's kept choices. Then the loss (see the
    /// file comment). The caller checks the shapes (the layers do); y must not alias x.
    void forward(ConstMatrixRef<float> x, MatrixRef<float> y, Combine combine) {
        router_.route(x, plan_);
        if (imposed_) {
            check<ShapeError>(imposed_->num_tokens == x.rows && imposed_->num_experts == num_experts(),
                              "RoutedGroup::forward", "the imposed plan routes ", imposed_->num_tokens, " tokens over ",
                              imposed_->num_experts, " experts; this call has ", x.rows, " tokens and ", num_experts(),
                              " experts");
            plan_ = *imposed_;
        }
        const RoutingPlan& plan = plan_;
        if constexpr (ThreadedExpertSet<X>)
            experts_.forward(x, plan, y, combine, exec_);
        else
            experts_.forward(x, plan, y, combine);
        if constexpr (LogitRouter<R>)
            loss_ = loss_constant_ > 0 ? sequential_group_loss(router_.last_logits(), plan_, loss_constant_) : 0.0;
    }

    /// Records a call without tokens: plan() becomes the empty plan (0 tokens, E experts, k =
    /// the router's k when it has one (TopKRouterLike), else 1) and the loss 0. For a group that
    /// a batch does not reach (a modality absent from it). Experts whose forward is a collective
    /// (CollectiveExpertSet: expert parallelism) run it over zero tokens, so that the other
    /// processes, whose batches may reach the group, are served.
    void clear() {
        index_t k = 1;
        if constexpr (TopKRouterLike<R>) k = router_.k();
        plan_.reset(0, num_experts(), k);
        plan_.finalize();
        loss_ = 0.0;
        if constexpr (CollectiveExpertSet<X>) {
            const index_t d = hidden_size();
            const ConstMatrixRef<float> none_in(nullptr, 0, d);
            const MatrixRef<float> none_out(nullptr, 0, d);
            if constexpr (ThreadedExpertSet<X>)
                experts_.forward(none_in, plan_, none_out, Combine::add, exec_);
            else
                experts_.forward(none_in, plan_, none_out, Combine::add);
        }
    }

    /// The plan of the last forward (or clear) call.
    const RoutingPlan& plan() const noexcept { return plan_; }

    /// Makes the following forward calls use `plan` (a plan an identical call of another group
    /// recorded: same tokens and experts) instead of the router's decisions, until
    /// impose(std::nullopt). The router still runs (its logits, and the loss over the imposed
    /// plan, are this call's). A diagnostic: it separates what a change to the experts does from
    /// what the routing decisions it flips do (rs/ringmoe/fidelity.hpp). ShapeError from forward
    /// when the call's tokens or experts are not the plan's.
    void impose(std::optional<RoutingPlan> plan) { imposed_ = std::move(plan); }
    /// Whether forward uses an imposed plan.
    bool imposed() const noexcept { return imposed_.has_value(); }
    /// The auxiliary loss of the last call (0 without LogitRouter or with loss constant 0).
    double loss() const noexcept { return loss_; }
    double loss_constant() const noexcept { return loss_constant_; }
    /// c in the loss (>= 0; 0: no loss computed). ConfigError for a negative or non-finite c.
    void set_loss_constant(double c) {
        check<ConfigError>(std::isfinite(c) && c >= 0, "RoutedGroup::set_loss_constant",
                           "the loss constant must be finite and >= 0, got ", c);
        loss_constant_ = c;
    }

    R& router() noexcept { return router_; }
    const R& router() const noexcept { return router_; }
    X& experts() noexcept { return experts_; }
    const X& experts() const noexcept { return experts_; }

    /// Where the expert GEMMs (ThreadedExpertSet) and the routing (ExecAware routers) run
    /// (default Exec{}: all OpenMP threads). Results do not depend on it.
    void set_exec(const Exec& ex) noexcept {
        exec_ = ex;
        if constexpr (ExecAware<R>) router_.set_exec(ex);
    }
    const Exec& exec() const noexcept { return exec_; }
    /// Share o's expert scratch buffers (ScratchSharing; nothing otherwise). Plans, logits and
    /// losses stay each group's own.
    void share_scratch(RoutedGroup& o) {
        if constexpr (ScratchSharing<X>) experts_.share_scratch(o.experts_);
    }

private:
    R router_;
    X experts_;
    RoutingPlan plan_;
    std::optional<RoutingPlan> imposed_;
    double loss_ = 0.0;
    double loss_constant_ = 0.0;
    Exec exec_;
};

}  // namespace moe
