// moe/layer/hierarchical.hpp - the hierarchical multi-modal MoE layer of RingMoE.
//
//   y = y_modal + y_collab + shared(x)
//
//   modal    a hard switch on the token's modality (it arrives with the data, it is not
//            inferred) selects that modality's own router and experts;
//   collab   one router shared by all modalities over one pool of collaborative experts;
//   shared   always-on shared experts (weight 1).
//
// Each routed group has its own k and capacity, ceil(k * tokens_in_group * cf / experts_in_group):
// a modality's capacity counts only that modality's tokens; overflow is dropped from that group
// only (the token still gets the other branches).
//
// Routing in each group is the released MindSpore TopkRouter's, for any k
// (CapacityPriority::sequential): round j = 0 .. k-1 routes every token's choice j, in token
// order, before round j + 1; choice j is the argmax of prob * (1 - experts the token KEEPS so
// far), ties to the lower index. So while a token's choices are kept, choice j is its j-th best
// expert; once one is dropped by capacity, every later choice asks that same (full) expert and
// is dropped too. An expert keeps the first `capacity` choices that ask it in this order.
// Combine weight of choice j, with g_j the softmax probability of its expert:
//   renormalize = true (released):  w_j = g_j kept_j / (sum_i g_i kept_i + 1e-9)   (fp32)
//                                   (a top-1 token, or one that keeps only its first choice,
//                                   weighs exactly 1 whenever g >= 2^-5, e.g. E <= 32)
//   renormalize = false:            w_j = g_j kept_j   (the raw probability)
// i.e. TopKOptions{priority = sequential, renormalize_after_capacity, renorm_eps = 1e-9}.
//
// Auxiliary loss per routed group, as MindSpore's TopkRouter computes it (sequential_group_loss):
//   L_group = sum_j mean_e(f_je * P_je) * c^2
// with f_je the fraction of the group's tokens whose choice j is e (before capacity), P_je the
// mean over tokens of p_j / (sum_e p_j + 1e-9), p_j = prob * (1 - experts kept by choices
// before j), and c a configuration constant (8 in RingMoE); at k = 1 this is the Switch loss
// mean_e(f_e * P_e) * c^2 (switch_group_loss). The layer's loss is
// weight * (L_collab + mean over present modalities of L_modal).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/concepts.hpp"
#include "moe/layer/shared.hpp"
#include "moe/router/losses.hpp"
#include "moe/core/plan.hpp"
#include "moe/router/topk.hpp"

namespace moe {

namespace detail {
/// The group losses take the logits the plan was routed from: [T, E] for T tokens, E experts.
inline void check_logits_fit_plan(ConstMatrixRef<float> logits, const RoutingPlan& plan, const char* who) {
    check<ShapeError>(logits.rows == plan.num_tokens && logits.cols == plan.num_experts, who,
                      "logits and plan disagree: logits are [", logits.rows, ", ", logits.cols, "], the plan routes ",
                      plan.num_tokens, " tokens to ", plan.num_experts, " experts");
}
}  // namespace detail

/// Switch-style group loss: mean_e(f_e * P_e) * c^2, f_e from first choices before capacity.
inline double switch_group_loss(ConstMatrixRef<float> logits, const RoutingPlan& plan, double c) {
    detail::check_logits_fit_plan(logits, plan, "switch_group_loss");
    const index_t T = plan.num_tokens, E = plan.num_experts;
    if (T == 0) return 0.0;
    const auto P = mean_router_probs(logits);
    std::vector<double> f(static_cast<std::size_t>(E), 0.0);
    for (index_t t = 0; t < T; ++t) {
        const auto e = plan.expert_ids[static_cast<std::size_t>(t * plan.k)];
        if (e >= 0) f[static_cast<std::size_t>(e)] += 1.0 / double(T);
    }
    double s = 0;
    for (index_t e = 0; e < E; ++e) s += f[static_cast<std::size_t>(e)] * P[static_cast<std::size_t>(e)];
    return s / double(E) * c * c;
}

/// MindSpore TopkRouter's group loss for a plan routed with CapacityPriority::sequential (any k):
///   sum_j mean_e(f_je * P_je) * c^2,
/// f_je = fraction of tokens whose choice j is e (before capacity; a choice after a dropped one
/// names the dropped expert again), P_je = mean_t p_j[t, e] / (sum_e p_j[t, e] + 1e-9) with
/// p_j = softmax(logits) * (1 - the experts the token kept in choices 0 .. j-1). Computed in
/// double. At k = 1 it is switch_group_loss times 1 / (1 + 1e-9).
inline double sequential_group_loss(ConstMatrixRef<float> logits, const RoutingPlan& plan, double c) {
    detail::check_logits_fit_plan(logits, plan, "sequential_group_loss");
    const index_t T = plan.num_tokens, E = plan.num_experts, k = plan.k;
    if (T == 0 || k == 0) return 0.0;
    const auto Es = static_cast<std::size_t>(E), ks = static_cast<std::size_t>(k);
    std::vector<double> f(ks * Es, 0.0), P(ks * Es, 0.0), prob(Es);
    std::vector<char> masked(Es);
    for (index_t t = 0; t < T; ++t) {
        const float* r = logits.row(t);
        double m = -INFINITY, z = 0;
        for (std::size_t e = 0; e < Es; ++e) m = std::max(m, double(r[e]));
        for (std::size_t e = 0; e < Es; ++e) z += prob[e] = std::exp(double(r[e]) - m);
        for (std::size_t e = 0; e < Es; ++e) prob[e] /= z;
        std::fill(masked.begin(), masked.end(), char(0));
        for (std::size_t j = 0; j < ks; ++j) {
            const std::size_t ch = static_cast<std::size_t>(t) * ks + j;
            double sum = 0;
            for (std::size_t e = 0; e < Es; ++e)
                if (!masked[e]) sum += prob[e];
            const double inv = 1.0 / (sum + 1e-9);
            for (std::size_t e = 0; e < Es; ++e)
                if (!masked[e]) P[j * Es + e] += prob[e] * inv;
            const std::int32_t ej = plan.expert_ids[ch];
            if (ej < 0) continue;
            f[j * Es + static_cast<std::size_t>(ej)] += 1.0;
            if (plan.token_to_slot[ch] >= 0) masked[static_cast<std::size_t>(ej)] = 1;
        }
    }
    double s = 0;
    for (std::size_t i = 0; i < ks * Es; ++i) s += f[i] * P[i];
    return s / (double(T) * double(T) * double(E)) * c * c;
}

/// Run-time configuration of a hierarchical layer.
struct HierarchicalOptions {
    index_t k_modal = 1;             ///< experts per token in the modality's group
    index_t k_collab = 1;            ///< experts per token in the collaborative group
    double capacity_factor_modal = 1.2;
    double capacity_factor_collab = 1.2;
    bool renormalize = true;         ///< weights renormalised over the kept choices (top-1: 1), or raw probabilities
    double aux_constant = 8.0;       ///< c in sum_j mean_e(f_je P_je) * c^2
    double aux_weight = 0.001;       ///< weight of the layer's auxiliary loss
};

/// The auxiliary losses of the last forward call.
struct HierarchicalLosses {
    std::vector<double> modal;       ///< per modality (0 for a modality absent from the batch)
    std::vector<bool> present;       ///< whether the modality had tokens
    double collab = 0.0;
    double total = 0.0;              ///< aux_weight * (collab + mean of present modal losses)
};

template <ExpertSet Modal, ExpertSet Collab, class Shared = NoSharedExperts, class Scores = SoftmaxScores>
class HierarchicalMoE {
public:
    using router_type = TopKRouter<Scores>;

    HierarchicalMoE() = default;
    /// modal_gates[m] / modal_experts[m]: modality m's router and experts; collab_gate /
    /// collab_experts: the collaborative group; shared: always-on experts.
    HierarchicalMoE(std::vector<Gate> modal_gates, std::vector<Modal> modal_experts, Gate collab_gate,
                    Collab collab_experts, Shared shared, HierarchicalOptions options)
        : modal_experts_(std::move(modal_experts)), collab_experts_(std::move(collab_experts)),
          shared_(std::move(shared)), opt_(options) {
        const char* w = "HierarchicalMoE";
        check<ConfigError>(!modal_gates.empty(), w, "at least one modality is needed");
        check<ShapeError>(modal_gates.size() == modal_experts_.size(), w, modal_gates.size(), " modal routers but ",
                          modal_experts_.size(), " modal expert sets");
        d_ = collab_experts_.hidden_size();
        for (std::size_t m = 0; m < modal_gates.size(); ++m) {
            check<ShapeError>(modal_gates[m].experts() == modal_experts_[m].num_experts(), w, "modality ", m,
                              ": router over ", modal_gates[m].experts(), " experts, expert set holds ",
                              modal_experts_[m].num_experts());
            check<ShapeError>(modal_gates[m].hidden() == d_ && modal_experts_[m].hidden_size() == d_, w, "modality ",
                              m, " does not take ", d_, " features");
            modal_routers_.emplace_back(std::move(modal_gates[m]), options_for(opt_.k_modal, opt_.capacity_factor_modal));
        }
        check<ShapeError>(collab_gate.experts() == collab_experts_.num_experts() && collab_gate.hidden() == d_, w,
                          "collaborative router and experts disagree: router over ", collab_gate.experts(),
                          " experts taking ", collab_gate.hidden(), " features, expert set holds ",
                          collab_experts_.num_experts(), " experts taking ", d_);
        collab_router_ = router_type(std::move(collab_gate), options_for(opt_.k_collab, opt_.capacity_factor_collab));
        if constexpr (Shared::enabled)
            check<ShapeError>(shared_.hidden_size() == d_, w, "shared experts take ", shared_.hidden_size(),
                              " features, expected ", d_);
        modal_plans_.resize(modal_routers_.size());
    }

    index_t hidden_size() const noexcept { return d_; }
    int modalities() const noexcept { return static_cast<int>(modal_routers_.size()); }
    const HierarchicalOptions& options() const noexcept { return opt_; }
    index_t parameters() const noexcept {
        index_t p = collab_router_.parameters() + collab_experts_.parameters() + shared_.parameters();
        for (std::size_t m = 0; m < modal_routers_.size(); ++m)
            p += modal_routers_[m].parameters() + modal_experts_[m].parameters();
        return p;
    }

    /// y [T, d] = layer(x [T, d]) for tokens whose modalities are given as contiguous chunks
    /// covering [0, T) in order (the released code's batch layout is one chunk per modality).
    void forward(ConstMatrixRef<float> x, std::span<const ModalityChunk> chunks, MatrixRef<float> y) {
        const char* w = "HierarchicalMoE::forward";
        check_io(x, y, w);
        index_t pos = 0;
        for (const auto& c : chunks) {
            check<ShapeError>(c.begin == pos && c.end >= c.begin, w, "chunks must cover the tokens in order: chunk [",
                              c.begin, ", ", c.end, ") follows token ", pos);
            check_modality(c.modality, w);
            pos = c.end;
        }
        check<ShapeError>(pos == x.rows, w, "chunks cover ", pos, " tokens, input has ", x.rows);
        run_shared_and_collab(x, y);
        // Modal branch: each modality's tokens, in order, possibly from several chunks.
        for (int m = 0; m < modalities(); ++m) {
            index_t n = 0;
            bool contiguous_one = false;
            const ModalityChunk* only = nullptr;
            for (const auto& c : chunks)
                if (c.modality == m && c.end > c.begin) {
                    n += c.end - c.begin;
                    contiguous_one = only == nullptr;
                    only = &c;
                }
            if (n == 0) {
                mark_absent(m);
                continue;
            }
            if (contiguous_one && n == only->end - only->begin) {
                run_modal(m, x.block_rows(only->begin, n), y.block_rows(only->begin, n));
            } else {
                std::vector<std::int32_t> rows;
                for (const auto& c : chunks)
                    if (c.modality == m)
                        for (index_t t = c.begin; t < c.end; ++t) rows.push_back(static_cast<std::int32_t>(t));
                run_gathered(m, x, rows, y);
            }
        }
        finish_losses();
    }

    /// The same with one modality id per token (tokens of a modality need not be contiguous).
    void forward(ConstMatrixRef<float> x, std::span<const std::int32_t> modality, MatrixRef<float> y) {
        const char* w = "HierarchicalMoE::forward";
        check_io(x, y, w);
        check<ShapeError>(static_cast<index_t>(modality.size()) == x.rows, w, modality.size(),
                          " modality ids for ", x.rows, " tokens");
        for (std::size_t t = 0; t < modality.size(); ++t) check_modality(modality[t], w, static_cast<index_t>(t));
        run_shared_and_collab(x, y);
        for (int m = 0; m < modalities(); ++m) {
            std::vector<std::int32_t> rows;
            for (std::size_t t = 0; t < modality.size(); ++t)
                if (modality[t] == m) rows.push_back(static_cast<std::int32_t>(t));
            if (rows.empty()) {
                mark_absent(m);
                continue;
            }
            run_gathered(m, x, rows, y);
        }
        finish_losses();
    }

    /// The plans of the last call: modality m's (over its own tokens, in order) and the collaborative one.
    const RoutingPlan& modal_plan(int m) const { return modal_plans_.at(static_cast<std::size_t>(m)); }
    const RoutingPlan& collab_plan() const noexcept { return collab_plan_; }
    const HierarchicalLosses& losses() const noexcept { return losses_; }

    router_type& modal_router(int m) { return modal_routers_.at(static_cast<std::size_t>(m)); }
    const router_type& modal_router(int m) const { return modal_routers_.at(static_cast<std::size_t>(m)); }
    Modal& modal_experts(int m) { return modal_experts_.at(static_cast<std::size_t>(m)); }
    const Modal& modal_experts(int m) const { return modal_experts_.at(static_cast<std::size_t>(m)); }
    router_type& collab_router() noexcept { return collab_router_; }
    const router_type& collab_router() const noexcept { return collab_router_; }
    Collab& collab_experts() noexcept { return collab_experts_; }
    const Collab& collab_experts() const noexcept { return collab_experts_; }
    Shared& shared() noexcept { return shared_; }
    const Shared& shared() const noexcept { return shared_; }
    /// Share o's scratch buffers (activations and expert workspaces, group by group): for layers
    /// that never run at the same time, such as the blocks of one encoder. Routing results
    /// (plans, logits, losses) stay each layer's own.
    void share_scratch(HierarchicalMoE& o) {
        xg_.share(o.xg_);
        yg_.share(o.yg_);
        auto experts = [](auto& a, auto& b) {
            if constexpr (ScratchSharing<std::remove_cvref_t<decltype(a)>>) a.share_scratch(b);
        };
        for (std::size_t m = 0; m < std::min(modal_experts_.size(), o.modal_experts_.size()); ++m)
            experts(modal_experts_[m], o.modal_experts_[m]);
        experts(collab_experts_, o.collab_experts_);
        if constexpr (Shared::enabled) experts(shared_, o.shared_);
    }

    /// Where the routing kernels and the expert GEMMs of every group run (default Exec{}: all
    /// OpenMP threads); results do not depend on it.
    void set_exec(const Exec& ex) noexcept {
        exec_ = ex;
        collab_router_.set_exec(ex);
        for (auto& r : modal_routers_) r.set_exec(ex);
    }
    const Exec& exec() const noexcept { return exec_; }

private:
    TopKOptions options_for(index_t k, double cf) const {
        TopKOptions o;
        o.k = k;
        o.renormalize = opt_.renormalize;
        o.capacity_factor = cf;
        o.priority = CapacityPriority::sequential;  // MindSpore TopkRouter (see the file comment)
        o.renormalize_after_capacity = true;
        o.renorm_eps = 1e-9f;
        return o;
    }
    void check_io(ConstMatrixRef<float> x, MatrixRef<float> y, const char* w) const {
        check<ShapeError>(x.cols == d_, w, "input has ", x.cols, " features, expected ", d_);
        check<ShapeError>(y.rows == x.rows && y.cols == d_, w, "output is [", y.rows, ", ", y.cols, "], expected [",
                          x.rows, ", ", d_, "]");
    }
    void check_modality(int m, const char* w, index_t token = -1) const {
        if (m < 0 || m >= modalities()) {
            if (token >= 0)
                throw ConfigError(w, detail::cat("token ", token, " has modality ", m, "; this layer knows modalities 0..",
                                                 modalities() - 1));
            throw ConfigError(w, detail::cat("unknown modality ", m, "; this layer knows modalities 0..", modalities() - 1));
        }
    }
    // y = collab(x) (+ shared(x)); modal branches add to it.
    void run_shared_and_collab(ConstMatrixRef<float> x, MatrixRef<float> y) {
        collab_router_.route(x, collab_plan_);
        if constexpr (ThreadedExpertSet<Collab>)
            collab_experts_.forward(x, collab_plan_, y, Combine::overwrite, exec_);
        else
            collab_experts_.forward(x, collab_plan_, y, Combine::overwrite);
        losses_.collab = sequential_group_loss(collab_router_.last_logits(), collab_plan_, opt_.aux_constant);
        if constexpr (Shared::enabled) shared_.forward(x, y, exec_);
        losses_.modal.assign(modal_routers_.size(), 0.0);
        losses_.present.assign(modal_routers_.size(), false);
    }
    void run_modal(int m, ConstMatrixRef<float> xm, MatrixRef<float> ym) {
        auto& plan = modal_plans_[static_cast<std::size_t>(m)];
        auto& r = modal_routers_[static_cast<std::size_t>(m)];
        r.route(xm, plan);
        auto& experts = modal_experts_[static_cast<std::size_t>(m)];
        if constexpr (ThreadedExpertSet<Modal>)
            experts.forward(xm, plan, ym, Combine::add, exec_);
        else
            experts.forward(xm, plan, ym, Combine::add);
        losses_.modal[static_cast<std::size_t>(m)] = sequential_group_loss(r.last_logits(), plan, opt_.aux_constant);
        losses_.present[static_cast<std::size_t>(m)] = true;
    }
    void run_gathered(int m, ConstMatrixRef<float> x, const std::vector<std::int32_t>& rows, MatrixRef<float> y) {
        const auto n = static_cast<index_t>(rows.size());
        float* xg = xg_.get(static_cast<std::size_t>(n * d_));
        float* yg = yg_.get(static_cast<std::size_t>(n * d_));
        for (index_t i = 0; i < n; ++i)
            std::memcpy(xg + i * d_, x.row(rows[static_cast<std::size_t>(i)]), static_cast<std::size_t>(d_) * sizeof(float));
        std::fill(yg, yg + n * d_, 0.0f);
        run_modal(m, ConstMatrixRef<float>(xg, n, d_), MatrixRef<float>(yg, n, d_));
        for (index_t i = 0; i < n; ++i) {
            float* o = y.row(rows[static_cast<std::size_t>(i)]);
            const float* s = yg + i * d_;
            for (index_t j = 0; j < d_; ++j) o[j] += s[j];
        }
    }
    void mark_absent(int m) {
        modal_plans_[static_cast<std::size_t>(m)].reset(0, modal_routers_[static_cast<std::size_t>(m)].num_experts(),
                                                        opt_.k_modal);
        modal_plans_[static_cast<std::size_t>(m)].finalize();
    }
    void finish_losses() {
        double sum = 0;
        int n = 0;
        for (std::size_t m = 0; m < losses_.modal.size(); ++m)
            if (losses_.present[m]) {
                sum += losses_.modal[m];
                ++n;
            }
        losses_.total = opt_.aux_weight * (losses_.collab + (n ? sum / n : 0.0));
    }

    std::vector<router_type> modal_routers_;
    std::vector<Modal> modal_experts_;
    router_type collab_router_;
    Collab collab_experts_;
    Shared shared_;
    HierarchicalOptions opt_;
    index_t d_ = 0;
    std::vector<RoutingPlan> modal_plans_;
    RoutingPlan collab_plan_;
    HierarchicalLosses losses_;
    Scratch<float> xg_, yg_;
    Exec exec_;
};

}  // namespace moe
