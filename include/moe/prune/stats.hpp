// moe/prune/stats.hpp - routing statistics over calibration inputs (per layer, group, modality).
//
// GroupStats counts, for one routed group of E experts, over every plan added to it:
//   tokens       tokens routed through the group
//   first[e]     tokens whose first choice (j = 0) was e          (before capacity)
//   any[e]       choices that named e, i.e. the sum of plan.load  (before capacity)
//   kept[e]      choices of e that survived capacity, plan.counts (after capacity)
//   weight[e]    sum of the combine weights of e's kept choices
// RoutingStats maps a StatsKey {layer, group, modality} to a GroupStats. collect() fills it from
// a MoELayer (group "routed") or a HierarchicalMoE (groups "modal" per modality, "collab" over
// all tokens with modality -1, and "collab" per modality: the collaborative choices of that
// modality's tokens only, which is what a single-modality deployment prunes on).
#pragma once

#include <algorithm>
#include <compare>
#include <cstdint>
#include <map>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/layer/hierarchical.hpp"
#include "moe/layer/moe_layer.hpp"
#include "moe/prune/calibration.hpp"
#include "moe/core/plan.hpp"

namespace moe {

/// Which count ranks experts.
enum class CountKind : std::uint8_t {
    any,     ///< every choice that named the expert, before capacity (plan.load)
    first,   ///< first choices only, before capacity
    kept,    ///< choices kept after capacity (plan.counts)
    weight,  ///< sum of the combine weights of kept choices
};

/// Counts of one routed group (see the file comment).
struct GroupStats {
    index_t experts = 0;
    index_t tokens = 0;
    index_t calls = 0;  ///< plans added
    std::vector<std::int64_t> first, any, kept;
    std::vector<double> weight;

    GroupStats() = default;
    explicit GroupStats(index_t num_experts) { resize(num_experts); }

    /// Adds every token of the plan.
    void add(const RoutingPlan& plan) { add_impl(plan, nullptr); }
    /// Adds only the listed tokens (rows of the plan, each once).
    void add(const RoutingPlan& plan, std::span<const std::int32_t> token_rows) { add_impl(plan, &token_rows); }

    /// Adds another group's counts (same expert count).
    void merge(const GroupStats& o) {
        check<ShapeError>(o.experts == experts, "GroupStats::merge", "merging ", o.experts, " experts into ", experts);
        tokens += o.tokens;
        calls += o.calls;
        for (std::size_t e = 0; e < first.size(); ++e) {
            first[e] += o.first[e];
            any[e] += o.any[e];
            kept[e] += o.kept[e];
            weight[e] += o.weight[e];
        }
    }

    /// The count of expert e of the given kind (as a double).
    double count(index_t e, CountKind kind = CountKind::any) const {
        check<ConfigError>(e >= 0 && e < experts, "GroupStats::count", "expert ", e, " out of range [0, ", experts, ")");
        const auto i = static_cast<std::size_t>(e);
        switch (kind) {
            case CountKind::first: return static_cast<double>(first[i]);
            case CountKind::kept: return static_cast<double>(kept[i]);
            case CountKind::weight: return weight[i];
            default: return static_cast<double>(any[i]);
        }
    }
    /// count(e, kind) / tokens (0 when no token was seen): the routing frequency. With kind
    /// weight it is the mean combine weight, the expert's expected share of the group's output.
    double frequency(index_t e, CountKind kind = CountKind::any) const {
        return tokens > 0 ? count(e, kind) / static_cast<double>(tokens) : 0.0;
    }
    /// Experts by decreasing count of `kind`, ties to the lower index.
    std::vector<index_t> ranking(CountKind kind = CountKind::any) const {
        std::vector<index_t> order(static_cast<std::size_t>(experts));
        std::iota(order.begin(), order.end(), index_t{0});
        std::stable_sort(order.begin(), order.end(),
                         [&](index_t a, index_t b) { return count(a, kind) > count(b, kind); });
        return order;
    }

private:
    void resize(index_t E) {
        check<ConfigError>(E > 0, "GroupStats", "expert count must be positive, got ", E);
        experts = E;
        const auto n = static_cast<std::size_t>(E);
        first.assign(n, 0);
        any.assign(n, 0);
        kept.assign(n, 0);
        weight.assign(n, 0.0);
    }
    void add_impl(const RoutingPlan& plan, const std::span<const std::int32_t>* rows) {
        if (experts == 0) resize(plan.num_experts);
        check<ShapeError>(plan.num_experts == experts, "GroupStats::add", "plan is for ", plan.num_experts,
                          " experts, the statistics for ", experts);
        const index_t k = plan.k;
        auto token = [&](index_t t) {
            check<ShapeError>(t >= 0 && t < plan.num_tokens, "GroupStats::add", "token ", t, " out of range [0, ",
                              plan.num_tokens, ")");
            ++tokens;
            for (index_t j = 0; j < k; ++j) {
                const auto c = static_cast<std::size_t>(t * k + j);
                const std::int32_t e = plan.expert_ids[c];
                if (e < 0) continue;
                const auto i = static_cast<std::size_t>(e);
                if (j == 0) ++first[i];
                ++any[i];
                if (plan.token_to_slot[c] >= 0) {
                    ++kept[i];
                    weight[i] += static_cast<double>(plan.weights[c]);
                }
            }
        };
        if (rows) {
            for (auto t : *rows) token(t);
        } else {
            for (index_t t = 0; t < plan.num_tokens; ++t) token(t);
        }
        ++calls;
    }
};

/// Names one routed group of one layer: {layer, group, modality}; modality -1 means all tokens.
struct StatsKey {
    std::string layer;
    std::string group = "routed";
    int modality = -1;

    auto operator<=>(const StatsKey&) const = default;
    bool operator==(const StatsKey&) const = default;
    /// "layer/group" or "layer/group[m]".
    std::string str() const {
        std::string s = layer;
        s.append("/").append(group);
        if (modality >= 0) s.append("[").append(std::to_string(modality)).append("]");
        return s;
    }
};

/// Routing statistics of many layers and groups, accumulated over many calls.
class RoutingStats {
public:
    /// Adds every token of `plan` to the group `key` (created on first use).
    void add(const StatsKey& key, const RoutingPlan& plan) { groups_[key].add(plan); }
    /// Adds only the listed tokens of `plan`.
    void add(const StatsKey& key, const RoutingPlan& plan, std::span<const std::int32_t> token_rows) {
        groups_[key].add(plan, token_rows);
    }
    /// Adds every group of another collection.
    void merge(const RoutingStats& o) {
        for (const auto& [k, g] : o.groups_) {
            auto it = groups_.find(k);
            if (it == groups_.end()) groups_.emplace(k, g);
            else it->second.merge(g);
        }
    }

    bool contains(const StatsKey& key) const { return groups_.count(key) != 0; }
    /// The group `key`; NotFoundError naming it when absent.
    const GroupStats& at(const StatsKey& key) const {
        auto it = groups_.find(key);
        if (it == groups_.end()) throw NotFoundError("RoutingStats::at", detail::cat("no statistics for ", key.str()));
        return it->second;
    }
    const std::map<StatsKey, GroupStats>& groups() const noexcept { return groups_; }
    std::size_t size() const noexcept { return groups_.size(); }
    void clear() noexcept { groups_.clear(); }

private:
    std::map<StatsKey, GroupStats> groups_;
};

namespace detail {

/// Per-token modality ids of a batch for a layer with M modalities: the batch's own ids, or all
/// zero for an untagged batch of a one-modality layer (ConfigError otherwise).
inline std::vector<std::int32_t> modality_ids(const CalibrationBatch& b, int M, std::string_view where) {
    if (!b.modality.empty()) {
        for (std::size_t t = 0; t < b.modality.size(); ++t)
            check<ConfigError>(b.modality[t] < M, where, "calibration token ", t, " has modality ", b.modality[t],
                               "; the layer knows modalities 0..", M - 1);
        return b.modality;
    }
    check<ConfigError>(M == 1, where, "the layer has ", M,
                       " modalities: calibration batches need modality ids (Calibration::add(x, ids))");
    return std::vector<std::int32_t>(static_cast<std::size_t>(b.rows()), 0);
}

}  // namespace detail

/// Adds the routing of every calibration batch through `layer` (group "routed", modality -1).
/// Only the router runs (a copy of it): the plan is the one the layer's forward would build.
template <Router R, ExpertSet X, class S>
void collect(RoutingStats& stats, std::string_view layer_name, const MoELayer<R, X, S>& layer, const Calibration& cal) {
    cal.expect_hidden(layer.hidden_size(), "moe::collect");
    R router = layer.router();
    RoutingPlan plan;
    for (const auto& b : cal.batches()) {
        if (b.rows() == 0) continue;
        router.route(b.matrix(), plan);
        stats.add({std::string(layer_name), "routed", -1}, plan);
    }
}

/// Adds the routing of every calibration batch through a hierarchical layer: group "modal" per
/// modality (modality m's tokens through its router, as forward gathers them), group "collab"
/// over all tokens (modality -1) and group "collab" per modality (the collaborative choices of
/// that modality's tokens, from the same plan).
template <ExpertSet M, ExpertSet C, class S, Router R>
void collect(RoutingStats& stats, std::string_view layer_name, const HierarchicalMoE<M, C, S, R>& layer,
             const Calibration& cal) {
    const char* w = "moe::collect";
    cal.expect_hidden(layer.hidden_size(), w);
    const std::string name(layer_name);
    auto collab = layer.collab_router();
    std::vector<R> modal;
    for (int m = 0; m < layer.modalities(); ++m) modal.push_back(layer.modal_router(m));
    RoutingPlan plan;
    for (const auto& b : cal.batches()) {
        if (b.rows() == 0) continue;
        const auto ids = detail::modality_ids(b, layer.modalities(), w);
        collab.route(b.matrix(), plan);
        stats.add({name, "collab", -1}, plan);
        for (int m = 0; m < layer.modalities(); ++m) {
            std::vector<std::int32_t> rows;
            for (std::size_t t = 0; t < ids.size(); ++t)
                if (ids[t] == m) rows.push_back(static_cast<std::int32_t>(t));
            if (rows.empty()) continue;
            stats.add({name, "collab", m}, plan, rows);
        }
        for (int m = 0; m < layer.modalities(); ++m) {
            std::vector<std::int32_t> rows;
            for (std::size_t t = 0; t < ids.size(); ++t)
                if (ids[t] == m) rows.push_back(static_cast<std::int32_t>(t));
            if (rows.empty()) continue;
            Tensor xm = Calibration::gather(b.matrix(), rows);
            RoutingPlan pm;
            modal[static_cast<std::size_t>(m)].route(xm.matrix<float>(), pm);
            stats.add({name, "modal", m}, pm);
        }
    }
}

}  // namespace moe
