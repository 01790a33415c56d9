// moe/prune/frequency.hpp - frequency pruning: keep the most frequently activated experts.
//
// KeepMostFrequent{fraction} counts the routing of the calibration tokens (GroupStats, by
// default every choice before capacity), keeps the ceil(fraction * E) experts with the highest
// counts (at least 1; ties to the lower index) and re-indexes the router and the experts to the
// kept ones in ascending original order. The new router's gate holds the kept experts' rows
// unchanged, so it routes exactly as the original restricted to the kept experts: the same
// logits, and a token whose original choices were all kept makes the same choices (top-k among
// the kept experts; ties still go to the lower original index because the order is kept).
// Renormalised weights over kept choices are unchanged; raw softmax probabilities are
// renormalised over the kept experts only (the softmax runs over fewer logits).
// If fewer experts than k remain, k is lowered to the number kept (noted in the report).
// Capacity is recomputed by the router from the smaller expert count.
//
// RingMoE (deployment chain, step 2): keep the top 25% of the collaborative experts per layer,
// counted on the calibration data of the deployed modality.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/layer/hierarchical.hpp"
#include "moe/layer/moe_layer.hpp"
#include "moe/prune/calibration.hpp"
#include "moe/prune/report.hpp"
#include "moe/prune/stats.hpp"

namespace moe {

/// Experts kept out of E by a fraction in (0, 1]: ceil(fraction * E) (with 1e-9 slack against
/// rounding, so 0.3 of 10 is 3), at least 1. ConfigError for a fraction outside (0, 1].
inline index_t keep_count(index_t E, double fraction, std::string_view where = "keep_count") {
    check<ConfigError>(fraction > 0.0 && fraction <= 1.0, where, "fraction must be in (0, 1], got ", fraction);
    check<ConfigError>(E > 0, where, "expert count must be positive, got ", E);
    const auto n = static_cast<index_t>(std::ceil(fraction * static_cast<double>(E) - 1e-9));
    return std::clamp<index_t>(n, 1, E);
}

/// The keep_count(E, fraction) experts with the highest count of `kind` (ties to the lower
/// index), in ascending id order.
inline std::vector<index_t> most_frequent(const GroupStats& stats, double fraction, CountKind kind = CountKind::any) {
    const index_t n = keep_count(stats.experts, fraction, "most_frequent");
    auto order = stats.ranking(kind);
    order.resize(static_cast<std::size_t>(n));
    std::sort(order.begin(), order.end());
    return order;
}

/// Router and expert containers that can be re-indexed to a subset of their experts.
template <class T>
concept Selectable = requires(const T& t, std::span<const index_t> keep) {
    { t.select(keep) } -> std::same_as<T>;
};

/// Frequency pruning (see the file comment).
struct KeepMostFrequent {
    double fraction = 0.25;         ///< share of a group's experts kept, in (0, 1]
    CountKind by = CountKind::any;  ///< which count ranks the experts
    bool collaborative = true;      ///< HierarchicalMoE: prune the collaborative group
    bool modal = false;             ///< HierarchicalMoE: prune each modality's experts (its own tokens' counts)

    std::string name() const {
        static constexpr const char* kinds[] = {"any", "first", "kept", "weight"};
        return detail::cat("KeepMostFrequent(fraction ", fraction, ", by ", kinds[static_cast<int>(by)], ")");
    }

    /// MoELayer: prunes the routed experts; shared experts stay.
    template <Router R, ExpertSet X, class S>
        requires Selectable<R> && Selectable<X>
    Pruned<MoELayer<R, X, S>> apply(const MoELayer<R, X, S>& layer, const Calibration& cal) const {
        const char* w = "KeepMostFrequent";
        const index_t E = layer.num_experts();
        const index_t n = keep_count(E, fraction, w);
        check_calibration(layer.hidden_size(), cal);
        RoutingStats stats;
        collect(stats, "", layer, cal);
        const auto keep = most_frequent(stats.at({"", "routed", -1}), fraction, by);
        MoELayer<R, X, S> out(layer.router().select(keep), layer.experts().select(keep), layer.shared());

        PruneReport rep;
        rep.policy = name();
        GroupChange g{"routed", E, n, keep, prune_detail::complement(keep, E), {}, {}, {}, 0, 0};
        if constexpr (requires { layer.router().k(); }) {
            g.k_before = layer.router().k();
            g.k_after = out.router().k();
            if (g.k_after < g.k_before)
                rep.notes.push_back(detail::cat("k lowered from ", g.k_before, " to ", g.k_after, ": only ", n,
                                                " experts remain"));
        }
        if constexpr (requires { layer.router().options().groups; })
            if (layer.router().options().groups > 1)
                rep.notes.push_back("group-limited routing dropped: the pruned router routes over all kept experts");
        rep.groups.push_back(std::move(g));
        finish(rep, layer, out, cal);
        return {std::move(out), std::move(rep)};
    }

    /// HierarchicalMoE: prunes the collaborative group (counted on all calibration tokens) and,
    /// with `modal`, each modality's experts (counted on that modality's tokens).
    template <ExpertSet M, ExpertSet C, class S, class Sc>
        requires Selectable<M> && Selectable<C>
    Pruned<HierarchicalMoE<M, C, S, Sc>> apply(const HierarchicalMoE<M, C, S, Sc>& layer,
                                               const Calibration& cal) const {
        const char* w = "KeepMostFrequent";
        using H = HierarchicalMoE<M, C, S, Sc>;
        const auto& cr = layer.collab_router();
        keep_count(cr.num_experts(), fraction, w);
        check<ConfigError>(collaborative || modal, w, "nothing to prune: neither collaborative nor modal is set");
        check_calibration(layer.hidden_size(), cal);
        RoutingStats stats;
        collect(stats, "", layer, cal);

        PruneReport rep;
        rep.policy = name() + (collaborative ? " collaborative" : "") + (modal ? " modal" : "");
        HierarchicalOptions opt = layer.options();

        std::vector<Gate> gates;
        std::vector<M> experts;
        index_t min_modal = -1;
        for (int m = 0; m < layer.modalities(); ++m) {
            const auto& r = layer.modal_router(m);
            const index_t Em = r.num_experts();
            if (!modal) {
                gates.push_back(r.gate());
                experts.push_back(layer.modal_experts(m));
                min_modal = min_modal < 0 ? Em : std::min(min_modal, Em);
                continue;
            }
            const StatsKey key{"", "modal", m};
            check<ConfigError>(stats.contains(key), w, "modality ", m,
                               " has no calibration tokens to rank its experts by");
            const auto keep = most_frequent(stats.at(key), fraction, by);
            gates.push_back(r.gate().select(keep));
            experts.push_back(layer.modal_experts(m).select(keep));
            const auto n = static_cast<index_t>(keep.size());
            min_modal = min_modal < 0 ? n : std::min(min_modal, n);
            rep.groups.push_back({"modal[" + std::to_string(m) + "]", Em, n, keep,
                                  prune_detail::complement(keep, Em), {}, {}, {}, opt.k_modal,
                                  std::min(opt.k_modal, n)});
        }
        const index_t Ec = cr.num_experts();
        Gate cgate = cr.gate();
        C cexperts = layer.collab_experts();
        index_t nc = Ec;
        if (collaborative) {
            const auto keep = most_frequent(stats.at({"", "collab", -1}), fraction, by);
            nc = static_cast<index_t>(keep.size());
            cgate = cr.gate().select(keep);
            cexperts = layer.collab_experts().select(keep);
            rep.groups.push_back({"collab", Ec, nc, keep, prune_detail::complement(keep, Ec), {}, {}, {},
                                  opt.k_collab, std::min(opt.k_collab, nc)});
        }
        if (opt.k_collab > nc) {
            rep.notes.push_back(detail::cat("collaborative k lowered from ", opt.k_collab, " to ", nc));
            opt.k_collab = nc;
        }
        if (opt.k_modal > min_modal) {
            rep.notes.push_back(detail::cat("modal k lowered from ", opt.k_modal, " to ", min_modal));
            opt.k_modal = min_modal;
        }
        H out(std::move(gates), std::move(experts), std::move(cgate), std::move(cexperts), layer.shared(), opt);
        finish(rep, layer, out, cal);
        return {std::move(out), std::move(rep)};
    }

private:
    static void check_calibration(index_t d, const Calibration& cal) {
        cal.expect_hidden(d, "KeepMostFrequent");
        check<ConfigError>(!cal.empty(), "KeepMostFrequent", "no calibration tokens to count the routing on");
    }
    template <class L>
    static void finish(PruneReport& rep, const L& before, const L& after, const Calibration& cal) {
        rep.parameters_before = before.parameters();
        rep.parameters_after = after.parameters();
        rep.active_parameters_before = active_parameters(before);
        rep.active_parameters_after = active_parameters(after);
        rep.fidelity = prune_detail::compare(before, after, cal, "KeepMostFrequent");
    }
};

}  // namespace moe
