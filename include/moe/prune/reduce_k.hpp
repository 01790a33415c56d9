// moe/prune/reduce_k.hpp - run-time k reduction: route each token to fewer experts.
//
// ReduceK{k} returns the same layer (same weights, shared) whose routed groups choose at most k
// experts per token: k_new = min(k_old, k) for the router of a MoELayer and for both routed
// groups of a HierarchicalMoE. Nothing is removed; the active parameters per token fall. With
// renormalised weights the kept choices are reweighted to sum to 1 (top-1: weight 1; a
// HierarchicalMoE renormalises over the choices kept after capacity, as at any k); with raw
// probabilities the remaining choices keep their weights. Capacity follows the new k, and a
// HierarchicalMoE keeps its routing rule (CapacityPriority::sequential) and per-step loss.
#pragma once

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/layer/hierarchical.hpp"
#include "moe/layer/moe_layer.hpp"
#include "moe/prune/calibration.hpp"
#include "moe/prune/report.hpp"
#include "moe/router/concepts.hpp"

namespace moe {

struct ReduceK {
    index_t k = 1;  ///< the most experts per token in each routed group (>= 1)

    std::string name() const { return detail::cat("ReduceK(", k, ")"); }

    template <Router R, ExpertSet X, class S>
        requires TopKRouterLike<R>
    Pruned<MoELayer<R, X, S>> apply(const MoELayer<R, X, S>& layer, const Calibration& cal) const {
        check_k();
        cal.expect_hidden(layer.hidden_size(), "ReduceK");
        MoELayer<R, X, S> out = layer;
        const index_t before = layer.router().k();
        out.router().set_k(std::min(before, k));
        PruneReport rep;
        rep.policy = name();
        const index_t E = layer.num_experts();
        rep.groups.push_back({"routed", E, E, prune_detail::iota(E), {}, {}, {}, {}, before, out.router().k()});
        finish(rep, layer, out, cal);
        return {std::move(out), std::move(rep)};
    }

    template <ExpertSet M, ExpertSet C, class S, class Sc>
    Pruned<HierarchicalMoE<M, C, S, Sc>> apply(const HierarchicalMoE<M, C, S, Sc>& layer,
                                               const Calibration& cal) const {
        check_k();
        cal.expect_hidden(layer.hidden_size(), "ReduceK");
        using H = HierarchicalMoE<M, C, S, Sc>;
        HierarchicalOptions opt = layer.options();
        const index_t km = opt.k_modal, kc = opt.k_collab;
        opt.k_modal = std::min(km, k);
        opt.k_collab = std::min(kc, k);
        std::vector<Gate> gates;
        std::vector<M> experts;
        for (int m = 0; m < layer.modalities(); ++m) {
            gates.push_back(layer.modal_router(m).gate());
            experts.push_back(layer.modal_experts(m));
        }
        H out(std::move(gates), std::move(experts), layer.collab_router().gate(), layer.collab_experts(),
              layer.shared(), opt);
        PruneReport rep;
        rep.policy = name();
        for (int m = 0; m < layer.modalities(); ++m) {
            const index_t Em = layer.modal_router(m).num_experts();
            rep.groups.push_back({"modal[" + std::to_string(m) + "]", Em, Em, prune_detail::iota(Em), {}, {}, {}, {},
                                  km, opt.k_modal});
        }
        const index_t Ec = layer.collab_router().num_experts();
        rep.groups.push_back({"collab", Ec, Ec, prune_detail::iota(Ec), {}, {}, {}, {}, kc, opt.k_collab});
        finish(rep, layer, out, cal);
        return {std::move(out), std::move(rep)};
    }

private:
    void check_k() const { check<ConfigError>(k >= 1, "ReduceK", "k must be at least 1, got ", k); }
    template <class L>
    static void finish(PruneReport& rep, const L& before, const L& after, const Calibration& cal) {
        rep.parameters_before = before.parameters();
        rep.parameters_after = after.parameters();
        rep.active_parameters_before = active_parameters(before);
        rep.active_parameters_after = active_parameters(after);
        rep.fidelity = prune_detail::compare(before, after, cal, "ReduceK");
    }
};

}  // namespace moe
