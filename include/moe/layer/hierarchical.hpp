// moe/layer/hierarchical.hpp - the hierarchical multi-modal MoE layer of RingMoE.
//
//   y = y_modal + y_collab + shared(x)
//
//   modal    a hard switch on the token's modality (it arrives with the data, it is not
//            inferred) selects that modality's own router and experts;
//   collab   one router shared by all modalities over one pool of collaborative experts;
//   shared   always-on shared experts (weight 1).
//
// Each branch is a RoutedGroup (moe/layer/routed_group.hpp) of router type R, a template
// parameter (default TopKRouter<SoftmaxScores>): any moe::Router fits, so a custom router runs in
// RingMoE's modal and collaborative groups (examples/custom_router_hierarchical.cpp). The
// constructor from Gates + HierarchicalOptions builds R from TopKOptions (TopKOptionsRouter) with
// the MindSpore routing below; the constructors from routers or groups take them as they are.
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
// weight * (L_collab + mean over present modalities of L_modal). A group whose router does not
// keep its logits (no last_logits(): not a LogitRouter) has L_group = 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/plan.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/concepts.hpp"
#include "moe/layer/concepts.hpp"
#include "moe/layer/routed_group.hpp"
#include "moe/layer/shared.hpp"
#include "moe/router/concepts.hpp"
#include "moe/router/losses.hpp"
#include "moe/router/topk.hpp"

namespace moe {

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

/// The auxiliary-loss settings of a hierarchical layer (the loss part of HierarchicalOptions,
/// which a layer built from routers or groups takes alone).
struct HierarchicalLossOptions {
    double aux_constant = 8.0;  ///< c in sum_j mean_e(f_je P_je) * c^2 (each group's loss constant; 0: no loss)
    double aux_weight = 0.001;  ///< weight of the layer's auxiliary loss
};

/// The auxiliary losses of the last forward call.
struct HierarchicalLosses {
    std::vector<double> modal;       ///< per modality (0 for a modality absent from the batch)
    std::vector<bool> present;       ///< whether the modality had tokens
    double collab = 0.0;
    double total = 0.0;              ///< aux_weight * (collab + mean of present modal losses)
};

template <ExpertSet Modal, ExpertSet Collab, class Shared = NoSharedExperts, Router R = TopKRouter<SoftmaxScores>>
class HierarchicalMoE {
public:
    using router_type = R;
    using modal_group_type = RoutedGroup<R, Modal>;
    using collab_group_type = RoutedGroup<R, Collab>;

    HierarchicalMoE() = default;
    /// modal_gates[m] / modal_experts[m]: modality m's router and experts; collab_gate /
    /// collab_experts: the collaborative group; shared: always-on experts. The routers are
    /// R(gate, TopKOptions) with the MindSpore routing of the file comment and `options`' k,
    /// capacity factors and renormalize.
    HierarchicalMoE(std::vector<Gate> modal_gates, std::vector<Modal> modal_experts, Gate collab_gate,
                    Collab collab_experts, Shared shared, HierarchicalOptions options)
        requires TopKOptionsRouter<R>
        : HierarchicalMoE(routers_of(std::move(modal_gates), options, options.k_modal, options.capacity_factor_modal),
                          std::move(modal_experts),
                          R(std::move(collab_gate),
                            topk_options(options, options.k_collab, options.capacity_factor_collab)),
                          std::move(collab_experts), std::move(shared),
                          HierarchicalLossOptions{options.aux_constant, options.aux_weight}) {}

    /// The same with routers as they are: modal_routers[m] routes modality m's tokens over
    /// modal_experts[m], collab_router all tokens over collab_experts.
    HierarchicalMoE(std::vector<R> modal_routers, std::vector<Modal> modal_experts, R collab_router,
                    Collab collab_experts, Shared shared = {}, HierarchicalLossOptions loss = {})
        : HierarchicalMoE(groups_of(std::move(modal_routers), std::move(modal_experts)),
                          collab_group_type(std::move(collab_router), std::move(collab_experts),
                                            "HierarchicalMoE collaborative group"),
                          std::move(shared), loss) {}

    /// The same from routed groups (e.g. ones a pruning policy made). Every group's loss
    /// constant becomes loss.aux_constant.
    HierarchicalMoE(std::vector<modal_group_type> modal, collab_group_type collab, Shared shared = {},
                    HierarchicalLossOptions loss = {})
        : modal_(std::move(modal)), collab_(std::move(collab)), shared_(std::move(shared)), loss_opt_(loss) {
        const char* w = "HierarchicalMoE";
        check<ConfigError>(!modal_.empty(), w, "at least one modality is needed");
        check<ConfigError>(std::isfinite(loss.aux_weight), w, "aux_weight must be finite, got ", loss.aux_weight);
        d_ = collab_.hidden_size();
        for (std::size_t m = 0; m < modal_.size(); ++m) {
            check<ShapeError>(modal_[m].hidden_size() == d_, w, "modality ", m, " does not take ", d_, " features");
            modal_[m].set_loss_constant(loss.aux_constant);
        }
        collab_.set_loss_constant(loss.aux_constant);
        if constexpr (Shared::enabled)
            check<ShapeError>(shared_.hidden_size() == d_, w, "shared experts take ", shared_.hidden_size(),
                              " features, expected ", d_);
    }

    index_t hidden_size() const noexcept { return d_; }
    int modalities() const noexcept { return static_cast<int>(modal_.size()); }
    /// The routing and loss settings, read from the routers (TopKOptionsRouter). ConfigError
    /// when the modal routers differ in k, capacity factor or renormalize, or a modal router
    /// and the collaborative one differ in renormalize (read modal_router(m).options() then).
    HierarchicalOptions options() const
        requires TopKOptionsRouter<R>
    {
        HierarchicalOptions o;
        o.aux_constant = loss_opt_.aux_constant;
        o.aux_weight = loss_opt_.aux_weight;
        if (modal_.empty()) return o;
        const TopKOptions& c = collab_.router().options();
        const TopKOptions& m0 = modal_[0].router().options();
        for (std::size_t m = 0; m < modal_.size(); ++m) {
            const TopKOptions& mo = modal_[m].router().options();
            check<ConfigError>(mo.k == m0.k && mo.capacity_factor == m0.capacity_factor &&
                                   mo.renormalize == c.renormalize,
                               "HierarchicalMoE::options", "modality ", m, " routes with k ", mo.k,
                               ", capacity factor ", mo.capacity_factor, ", renormalize ", mo.renormalize,
                               " (modality 0: k ", m0.k, ", capacity factor ", m0.capacity_factor,
                               "; collaborative: renormalize ", c.renormalize,
                               "): one HierarchicalOptions cannot describe it; read modal_router(m).options()");
        }
        o.k_modal = m0.k;
        o.k_collab = c.k;
        o.capacity_factor_modal = m0.capacity_factor;
        o.capacity_factor_collab = c.capacity_factor;
        o.renormalize = c.renormalize;
        return o;
    }
    /// The auxiliary-loss settings.
    const HierarchicalLossOptions& loss_options() const noexcept { return loss_opt_; }
    /// Every group's experts and routers (CountsParameters) and the shared experts.
    index_t parameters() const noexcept {
        index_t p = collab_.parameters() + shared_.parameters();
        for (const auto& g : modal_) p += g.parameters();
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
    const RoutingPlan& modal_plan(int m) const { return modal_group(m).plan(); }
    const RoutingPlan& collab_plan() const noexcept { return collab_.plan(); }
    const HierarchicalLosses& losses() const noexcept { return losses_; }

    /// Modality m's routed group (router, experts, plan, loss); std::out_of_range for an unknown m.
    modal_group_type& modal_group(int m) { return modal_.at(static_cast<std::size_t>(m)); }
    const modal_group_type& modal_group(int m) const { return modal_.at(static_cast<std::size_t>(m)); }
    /// The collaborative routed group.
    collab_group_type& collab_group() noexcept { return collab_; }
    const collab_group_type& collab_group() const noexcept { return collab_; }
    R& modal_router(int m) { return modal_group(m).router(); }
    const R& modal_router(int m) const { return modal_group(m).router(); }
    Modal& modal_experts(int m) { return modal_group(m).experts(); }
    const Modal& modal_experts(int m) const { return modal_group(m).experts(); }
    R& collab_router() noexcept { return collab_.router(); }
    const R& collab_router() const noexcept { return collab_.router(); }
    Collab& collab_experts() noexcept { return collab_.experts(); }
    const Collab& collab_experts() const noexcept { return collab_.experts(); }
    Shared& shared() noexcept { return shared_; }
    const Shared& shared() const noexcept { return shared_; }
    /// Share o's scratch buffers (activations and expert workspaces, group by group): for layers
    /// that never run at the same time, such as the blocks of one encoder. Routing results
    /// (plans, logits, losses) stay each layer's own.
    void share_scratch(HierarchicalMoE& o) {
        xg_.share(o.xg_);
        yg_.share(o.yg_);
        for (std::size_t m = 0; m < std::min(modal_.size(), o.modal_.size()); ++m) modal_[m].share_scratch(o.modal_[m]);
        collab_.share_scratch(o.collab_);
        if constexpr (ScratchSharing<Shared>) shared_.share_scratch(o.shared_);
    }

    /// Where the routing (ExecAware routers) and the expert GEMMs of every group and of the
    /// shared experts run (default Exec{}: all OpenMP threads). Results do not depend on it.
    void set_exec(const Exec& ex) noexcept {
        exec_ = ex;
        collab_.set_exec(ex);
        for (auto& g : modal_) g.set_exec(ex);
    }
    const Exec& exec() const noexcept { return exec_; }

private:
    static TopKOptions topk_options(const HierarchicalOptions& opt, index_t k, double cf) {
        TopKOptions o;
        o.k = k;
        o.renormalize = opt.renormalize;
        o.capacity_factor = cf;
        o.priority = CapacityPriority::sequential;  // MindSpore TopkRouter (see the file comment)
        o.renormalize_after_capacity = true;
        o.renorm_eps = 1e-9f;
        return o;
    }
    static std::vector<R> routers_of(std::vector<Gate> gates, const HierarchicalOptions& opt, index_t k, double cf) {
        std::vector<R> routers;
        routers.reserve(gates.size());
        for (auto& g : gates) routers.emplace_back(std::move(g), topk_options(opt, k, cf));
        return routers;
    }
    static std::vector<modal_group_type> groups_of(std::vector<R> routers, std::vector<Modal> experts) {
        const char* w = "HierarchicalMoE";
        check<ConfigError>(!routers.empty(), w, "at least one modality is needed");
        check<ShapeError>(routers.size() == experts.size(), w, routers.size(), " modal routers but ", experts.size(),
                          " modal expert sets");
        std::vector<modal_group_type> groups;
        groups.reserve(routers.size());
        for (std::size_t m = 0; m < routers.size(); ++m)
            groups.emplace_back(std::move(routers[m]), std::move(experts[m]),
                                detail::cat("HierarchicalMoE modality ", m));
        return groups;
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
        collab_.forward(x, y, Combine::overwrite);
        losses_.collab = collab_.loss();
        if constexpr (Shared::enabled) shared_.forward(x, y, exec_);
        losses_.modal.assign(modal_.size(), 0.0);
        losses_.present.assign(modal_.size(), false);
    }
    void run_modal(int m, ConstMatrixRef<float> xm, MatrixRef<float> ym) {
        auto& g = modal_[static_cast<std::size_t>(m)];
        g.forward(xm, ym, Combine::add);
        losses_.modal[static_cast<std::size_t>(m)] = g.loss();
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
    void mark_absent(int m) { modal_[static_cast<std::size_t>(m)].clear(); }
    void finish_losses() {
        double sum = 0;
        int n = 0;
        for (std::size_t m = 0; m < losses_.modal.size(); ++m)
            if (losses_.present[m]) {
                sum += losses_.modal[m];
                ++n;
            }
        losses_.total = loss_opt_.aux_weight * (losses_.collab + (n ? sum / n : 0.0));
    }

    std::vector<modal_group_type> modal_;
    collab_group_type collab_;
    Shared shared_;
    HierarchicalLossOptions loss_opt_;
    index_t d_ = 0;
    HierarchicalLosses losses_;
    Scratch<float> xg_, yg_;
    Exec exec_;
};

}  // namespace moe
