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
// If fewer experts than k remain, k is lowered to the number kept (noted in the report), group by
// group. Capacity is recomputed by the router from the smaller expert count. The policy is
// written once per RoutedGroup (apply_group); the layer overloads apply it to their groups.
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
#include "moe/layer/routed_group.hpp"
#include "moe/prune/calibration.hpp"
#include "moe/prune/report.hpp"
#include "moe/prune/stats.hpp"
#include "moe/router/concepts.hpp"
#include "moe/router/topk.hpp"

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

    /// One routed group, ranked by `stats` (its counts on the calibration tokens): keeps the
    /// most frequent experts and re-indexes router and experts to them (see the file comment).
    /// Records the change in `rep` as group `name`, with a note when k falls or group-limited
    /// routing (TopKOptions::groups > 1) is dropped.
    template <Router R, ExpertSet X>
        requires Selectable<R> && Selectable<X>
    RoutedGroup<R, X> apply_group(const RoutedGroup<R, X>& group, const GroupStats& stats, const std::string& name,
                                  PruneReport& rep) const {
        check<ShapeError>(stats.experts == group.num_experts(), "KeepMostFrequent", name, ": statistics of ",
                          stats.experts, " experts for a group of ", group.num_experts());
        auto keep = most_frequent(stats, fraction, by);
        RoutedGroup<R, X> out(group.router().select(keep), group.experts().select(keep), "KeepMostFrequent");
        GroupChange g = detail::group_change(name, group, out, std::move(keep));
        if (g.k_after < g.k_before)
            rep.notes.push_back(detail::cat(name, ": k lowered from ", g.k_before, " to ", g.k_after, ": only ",
                                            g.experts_after, " experts remain"));
        if constexpr (TopKOptionsRouter<R>)
            if (group.router().options().groups > 1)
                rep.notes.push_back(name + ": group-limited routing dropped: the pruned router routes over all kept experts");
        rep.groups.push_back(std::move(g));
        return out;
    }

    /// MoELayer: prunes the routed experts; shared experts stay.
    template <Router R, ExpertSet X, class S>
        requires Selectable<R> && Selectable<X>
    Pruned<MoELayer<R, X, S>> apply(const MoELayer<R, X, S>& layer, const Calibration& cal) const {
        keep_count(layer.num_experts(), fraction, "KeepMostFrequent");
        check_calibration(layer.hidden_size(), cal);
        RoutingStats stats;
        collect(stats, "", layer, cal);
        PruneReport rep;
        rep.policy = name();
        MoELayer<R, X, S> out(apply_group(layer.group(), stats.at({"", "routed", -1}), "routed", rep), layer.shared());
        detail::finish_report(rep, layer, out, cal, "KeepMostFrequent");
        return {std::move(out), std::move(rep)};
    }

    /// HierarchicalMoE: prunes the collaborative group (counted on all calibration tokens) and,
    /// with `modal`, each modality's experts (counted on that modality's tokens).
    template <ExpertSet M, ExpertSet C, class S, Router R>
        requires Selectable<M> && Selectable<C> && Selectable<R>
    Pruned<HierarchicalMoE<M, C, S, R>> apply(const HierarchicalMoE<M, C, S, R>& layer, const Calibration& cal) const {
        const char* w = "KeepMostFrequent";
        using H = HierarchicalMoE<M, C, S, R>;
        keep_count(layer.collab_router().num_experts(), fraction, w);
        check<ConfigError>(collaborative || modal, w, "nothing to prune: neither collaborative nor modal is set");
        check_calibration(layer.hidden_size(), cal);
        RoutingStats stats;
        collect(stats, "", layer, cal);

        PruneReport rep;
        rep.policy = name() + (collaborative ? " collaborative" : "") + (modal ? " modal" : "");
        std::vector<typename H::modal_group_type> groups;
        for (int m = 0; m < layer.modalities(); ++m) {
            if (!modal) {
                groups.push_back(layer.modal_group(m));
                continue;
            }
            const StatsKey key{"", "modal", m};
            check<ConfigError>(stats.contains(key), w, "modality ", m,
                               " has no calibration tokens to rank its experts by");
            groups.push_back(apply_group(layer.modal_group(m), stats.at(key), "modal[" + std::to_string(m) + "]", rep));
        }
        auto collab = collaborative ? apply_group(layer.collab_group(), stats.at({"", "collab", -1}), "collab", rep)
                                    : layer.collab_group();
        H out(std::move(groups), std::move(collab), layer.shared(), layer.loss_options());
        detail::finish_report(rep, layer, out, cal, w);
        return {std::move(out), std::move(rep)};
    }

private:
    static void check_calibration(index_t d, const Calibration& cal) {
        cal.expect_hidden(d, "KeepMostFrequent");
        check<ConfigError>(!cal.empty(), "KeepMostFrequent", "no calibration tokens to count the routing on");
    }
};

}  // namespace moe
