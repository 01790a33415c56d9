// moe/prune/reduce_k.hpp - run-time k reduction: route each token to fewer experts.
//
// ReduceK{k} returns the same layer (same weights, shared) whose routed groups choose at most k
// experts per token: k_new = min(k_old, k) for the router of a MoELayer and for both routed
// groups of a HierarchicalMoE. Nothing is removed; the active parameters per token fall. With
// renormalised weights the kept choices are reweighted to sum to 1 (top-1: weight 1; a
// HierarchicalMoE renormalises over the choices kept after capacity, as at any k); with raw
// probabilities the remaining choices keep their weights. Capacity follows the new k, and a
// HierarchicalMoE keeps its routing rule (CapacityPriority::sequential) and per-step loss. The
// policy is written once per RoutedGroup (apply_group: any TopKRouterLike router); the layer
// overloads apply it to their groups.
#pragma once

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/layer/hierarchical.hpp"
#include "moe/layer/moe_layer.hpp"
#include "moe/layer/routed_group.hpp"
#include "moe/prune/calibration.hpp"
#include "moe/prune/report.hpp"
#include "moe/router/concepts.hpp"

namespace moe {

struct ReduceK {
    index_t k = 1;  ///< the most experts per token in each routed group (>= 1)

    std::string name() const { return detail::cat("ReduceK(", k, ")"); }

    /// One routed group: the same group with k = min(k_old, k), recorded in `rep` as `name`.
    template <Router R, ExpertSet X>
        requires TopKRouterLike<R>
    RoutedGroup<R, X> apply_group(const RoutedGroup<R, X>& group, const std::string& name, PruneReport& rep) const {
        check_k();
        RoutedGroup<R, X> out = group;
        out.router().set_k(std::min(group.router().k(), k));
        rep.groups.push_back(detail::group_change(name, group, out, detail::iota(group.num_experts())));
        return out;
    }

    template <Router R, ExpertSet X, class S>
        requires TopKRouterLike<R>
    Pruned<MoELayer<R, X, S>> apply(const MoELayer<R, X, S>& layer, const Calibration& cal) const {
        check_k();
        cal.expect_hidden(layer.hidden_size(), "ReduceK");
        PruneReport rep;
        rep.policy = name();
        MoELayer<R, X, S> out(apply_group(layer.group(), "routed", rep), layer.shared());
        detail::finish_report(rep, layer, out, cal, "ReduceK");
        return {std::move(out), std::move(rep)};
    }

    template <ExpertSet M, ExpertSet C, class S, Router R>
        requires TopKRouterLike<R>
    Pruned<HierarchicalMoE<M, C, S, R>> apply(const HierarchicalMoE<M, C, S, R>& layer, const Calibration& cal) const {
        check_k();
        cal.expect_hidden(layer.hidden_size(), "ReduceK");
        using H = HierarchicalMoE<M, C, S, R>;
        PruneReport rep;
        rep.policy = name();
        std::vector<typename H::modal_group_type> groups;
        for (int m = 0; m < layer.modalities(); ++m)
            groups.push_back(apply_group(layer.modal_group(m), "modal[" + std::to_string(m) + "]", rep));
        auto collab = apply_group(layer.collab_group(), "collab", rep);
        H out(std::move(groups), std::move(collab), layer.shared(), layer.loss_options());
        detail::finish_report(rep, layer, out, cal, "ReduceK");
        return {std::move(out), std::move(rep)};
    }

private:
    void check_k() const { check<ConfigError>(k >= 1, "ReduceK", "k must be at least 1, got ", k); }
};

}  // namespace moe
