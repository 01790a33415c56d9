// moe/router/topk.hpp - token-choice top-k routers (each token picks k experts).
//
//   TopKRouter<SoftmaxScores>  softmax -> top-k -> optional renormalisation
//       Mixtral (renormalise), Qwen-MoE (norm_topk_prob), Switch (k = 1 + capacity),
//       GShard (k = 2 + capacity, choice-rank priority), RingMoE and RS-MoE routers.
//       "top-k then softmax" (the original Mixtral code: softmax over the k chosen logits) is the
//       same function as softmax -> top-k -> renormalise, and is computed that way.
//   TopKRouter<SigmoidScores>  sigmoid -> (+ selection bias) -> group-limited top-k ->
//       weights from the unbiased scores, optionally renormalised, times a scale (DeepSeek-V3).
//
// Everything but the score function is run-time configuration (TopKOptions); k can change
// between calls with set_k. Capacity (capacity_factor > 0) keeps at most
// ceil(k * T * factor / E) tokens per expert and drops the rest in the chosen priority order.
// The MindSpore TopkRouter (RingMoE) is priority = sequential with renormalize_after_capacity
// and renorm_eps = 1e-9: weights renormalised over the choices that survived capacity.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "moe/backend/cpu/routing.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/tensor.hpp"
#include "moe/router/concepts.hpp"
#include "moe/router/gate.hpp"
#include "moe/core/plan.hpp"

namespace moe {

/// Score-function tags for TopKRouter.
struct SoftmaxScores {
    static constexpr Scoring scoring = Scoring::softmax;
    static constexpr const char* name = "softmax";
};
struct SigmoidScores {
    static constexpr Scoring scoring = Scoring::sigmoid;
    static constexpr const char* name = "sigmoid";
};

/// Run-time options of a top-k router.
struct TopKOptions {
    index_t k = 2;                         ///< experts per token
    bool renormalize = true;               ///< chosen weights sum to 1 (then times scale)
    float scale = 1.0f;                    ///< routed_scaling_factor
    float renorm_eps = 0.0f;               ///< added to the renormalisation denominator
    /// With renormalize: divide by the sum over the choices KEPT after capacity (+ renorm_eps),
    /// then times scale, and give dropped choices weight 0 (MindSpore TopkRouter; see
    /// RoutingPlan::renormalize_kept), instead of over the top-k before capacity. The kernel then
    /// returns the raw scores. No effect without renormalize.
    bool renormalize_after_capacity = false;
    double capacity_factor = 0.0;          ///< > 0: per-expert capacity ceil(k * T * cf / E)
    CapacityPriority priority = CapacityPriority::token_order;
    std::vector<float> selection_bias;     ///< [E] added to scores for the choice only (empty: none)
    index_t groups = 1;                    ///< group-limited routing: E experts in this many groups
    index_t topk_groups = 1;               ///< groups a token may use
    GroupScore group_score = GroupScore::top2_sum;
    /// Score given to the experts of groups not kept, before the top-k (-inf: never chosen;
    /// Hugging Face's DeepseekV3TopkRouter uses 0.0, so masked experts can beat negative biased scores).
    float group_mask_value = -std::numeric_limits<float>::infinity();
};

template <class Scores>
class TopKRouter {
public:
    using scores_type = Scores;

    TopKRouter() = default;
    TopKRouter(Gate gate, TopKOptions options) : gate_(std::move(gate)), opt_(std::move(options)) { validate(); }

    index_t num_experts() const noexcept { return gate_.num_experts(); }
    index_t hidden_size() const noexcept { return gate_.hidden_size(); }
    index_t k() const noexcept { return opt_.k; }
    /// Changes k for later calls; ConfigError unless 1 <= k <= E (and the groups can supply k).
    void set_k(index_t k) {
        const index_t old = opt_.k;
        opt_.k = k;
        try {
            validate();
        } catch (...) {
            opt_.k = old;
            throw;
        }
    }
    const TopKOptions& options() const noexcept { return opt_; }
    const Gate& gate() const noexcept { return gate_; }
    index_t parameters() const noexcept { return gate_.parameters(); }

    /// Routes x [T, d]: logits = gate(x), then the fused kernel, then the plan.
    void route(ConstMatrixRef<float> x, RoutingPlan& plan) {
        check<ShapeError>(x.cols == hidden_size(), "TopKRouter::route", "input has ", x.cols,
                          " features, the router takes ", hidden_size());
        MatrixRef<float> logits(logits_.get(static_cast<std::size_t>(std::max<index_t>(x.rows * num_experts(), 1))),
                                x.rows, num_experts());
        gate_.logits(x, logits, gemm_);
        last_rows_ = x.rows;
        route_logits(logits, plan);
    }

    /// Routes precomputed logits [T, E].
    void route_logits(ConstMatrixRef<float> logits, RoutingPlan& plan) {
        check<ShapeError>(logits.cols == num_experts(), "TopKRouter::route_logits", "logits have ", logits.cols,
                          " columns for ", num_experts(), " experts");
        const index_t T = logits.rows;
        plan.reset(T, num_experts(), opt_.k);
        cpu::topk_route(logits, rule(), plan.expert_ids.data(), plan.weights.data(), ws_, exec_);
        plan.finalize(expert_capacity(T, num_experts(), opt_.k, opt_.capacity_factor), opt_.priority);
        if (renormalizes_after_capacity()) plan.renormalize_kept(opt_.renorm_eps, opt_.scale);
    }

    /// The logits of the last route() call, [T, E].
    ConstMatrixRef<float> last_logits() const {
        check(last_rows_ >= 0, "TopKRouter::last_logits", "route() has not been called");
        return {logits_.get(0), last_rows_, num_experts()};
    }

    /// The kernel specification these options give (raw scores, scale 1, when the weights are
    /// renormalised after capacity).
    RouteRule rule() const {
        RouteRule s;
        s.k = opt_.k;
        s.scoring = Scores::scoring;
        s.renormalize = opt_.renormalize && !renormalizes_after_capacity();
        s.scale = renormalizes_after_capacity() ? 1.0f : opt_.scale;
        s.renorm_eps = opt_.renorm_eps;
        s.bias = opt_.selection_bias;
        s.groups = opt_.groups;
        s.topk_groups = opt_.topk_groups;
        s.group_score = opt_.group_score;
        s.group_mask_value = opt_.group_mask_value;
        return s;
    }

    /// Where the routing kernel runs (default Exec{}: all OpenMP threads).
    void set_exec(const Exec& ex) noexcept { exec_ = ex; }
    const Exec& exec() const noexcept { return exec_; }

    /// A router over the listed experts only (gate rows and bias entries re-indexed in that order).
    TopKRouter select(std::span<const index_t> keep) const {
        TopKOptions o = opt_;
        if (!o.selection_bias.empty()) {
            o.selection_bias.clear();
            for (index_t e : keep) o.selection_bias.push_back(opt_.selection_bias[static_cast<std::size_t>(e)]);
        }
        o.groups = 1;
        o.topk_groups = 1;
        o.k = std::min<index_t>(o.k, static_cast<index_t>(keep.size()));
        return TopKRouter(gate_.select(keep), std::move(o));
    }

private:
    bool renormalizes_after_capacity() const noexcept { return opt_.renormalize && opt_.renormalize_after_capacity; }
    void validate() const {
        check<ConfigError>(opt_.capacity_factor >= 0, "TopKRouter", "capacity factor must be >= 0, got ",
                           opt_.capacity_factor);
        check<ConfigError>(
            !renormalizes_after_capacity() || (opt_.renorm_eps >= 0.0f && std::isfinite(opt_.renorm_eps)),
            "TopKRouter", "renorm_eps must be finite and >= 0, got ", opt_.renorm_eps);
        rule().validate(num_experts(), "TopKRouter");
    }

    Gate gate_;
    TopKOptions opt_;
    mutable Scratch<float> logits_;
    index_t last_rows_ = -1;
    cpu::GemmWorkspace gemm_;
    cpu::RouteWorkspace ws_;
    Exec exec_;
};

/// A router configured by TopKOptions (TopKRouter<Scores> for every Scores): built from a gate
/// and the options, and reporting them. HierarchicalMoE builds its routers from gates this way
/// and describes them by options().
///
/// Promises:
///  * R(gate, options) routes with gate's logits as `options` say (ConfigError for options it
///    cannot honour), and options() returns them (k as set_k last set it).
template <class R>
concept TopKOptionsRouter = TopKRouterLike<R> && std::constructible_from<R, Gate, TopKOptions> &&
                            requires(const R& cr) {
                                { cr.options() } -> std::convertible_to<const TopKOptions&>;
                            };

/// Mixtral / Qwen-MoE: softmax, top-k, renormalised (or not).
inline TopKRouter<SoftmaxScores> softmax_topk_router(Gate gate, index_t k, bool renormalize = true) {
    TopKOptions o;
    o.k = k;
    o.renormalize = renormalize;
    return {std::move(gate), std::move(o)};
}

/// Switch Transformer: top-1 with capacity ceil(T * cf / E), earlier tokens first.
/// The weight is the raw gate probability (no renormalisation), as Switch scales outputs.
inline TopKRouter<SoftmaxScores> switch_router(Gate gate, double capacity_factor) {
    TopKOptions o;
    o.k = 1;
    o.renormalize = false;
    o.capacity_factor = capacity_factor;
    o.priority = CapacityPriority::token_order;
    return {std::move(gate), std::move(o)};
}

/// GShard: top-2 with capacity ceil(2 T cf / E), all first choices before second choices,
/// weights renormalised over the two.
inline TopKRouter<SoftmaxScores> gshard_router(Gate gate, double capacity_factor) {
    TopKOptions o;
    o.k = 2;
    o.renormalize = true;
    o.capacity_factor = capacity_factor;
    o.priority = CapacityPriority::choice_rank;
    return {std::move(gate), std::move(o)};
}

/// DeepSeek-V3: sigmoid scores, selection bias (e_score_correction_bias), n_group groups scored
/// by their two best biased scores, topk_group groups kept, top-k, renormalised, times scale.
inline TopKRouter<SigmoidScores> deepseek_v3_router(Gate gate, std::vector<float> bias, index_t k, index_t groups,
                                                     index_t topk_groups, float scale, bool renormalize = true) {
    TopKOptions o;
    o.k = k;
    o.renormalize = renormalize;
    o.scale = scale;
    o.selection_bias = std::move(bias);
    o.groups = groups;
    o.topk_groups = topk_groups;
    o.group_score = GroupScore::top2_sum;
    return {std::move(gate), std::move(o)};
}

}  // namespace moe
