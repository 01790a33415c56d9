// moe/core/plan.hpp - RoutingPlan: the one structure between routing and compute.
//
// Every router fills a RoutingPlan; every expert container consumes one; the CUDA backend mirrors
// it field for field (DevicePlan in moe/backend/cuda/routing.cuh). It sits on the core floor, below
// the backends, routers and experts that all speak it. It holds two views of the same assignment:
//
//   token-major  [T, k]  expert_ids, weights, token_to_slot   (choice c = t * k + j)
//   expert-major [S]     slot_to_token, slot_weights          (slots of expert e are
//                                                              offsets[e] .. offsets[e+1]-1)
//
// A slot is one (token, expert) pair that survived capacity. Within an expert, slots are in
// ascending token order, so each expert's tokens form one contiguous block of the permuted
// activations and a grouped GEMM runs over it. Ties in routing go to the lower expert index;
// capacity keeps tokens in a documented priority order; the plan is fully deterministic.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"

namespace moe {

/// A contiguous run of tokens [begin, end) of one modality: how multi-modal batches tell the
/// layers (HierarchicalMoE) and encoders (vision/, rs/) which tokens belong to which modality.
struct ModalityChunk {
    index_t begin = 0, end = 0;
    int modality = 0;
};

/// Which assignments keep their place when an expert is over capacity.
enum class CapacityPriority : std::uint8_t {
    /// Earlier tokens first, all of a token's choices together (Switch Transformer, k = 1 in RingMoE).
    token_order,
    /// All first choices (in token order) before any second choice, and so on (GShard).
    choice_rank,
    /// MindSpore TopkRouter (RingMoE at k > 1): round j routes each token's j-th choice among
    /// experts not already keeping it, all tokens of round j (in token order) before round j + 1.
    /// A choice dropped by capacity makes the token's later choices ask the same expert, so they
    /// are dropped too: finalize() rewrites their expert_ids (and weights) to those of the
    /// dropped choice and lists them in `dropped`. A token whose earlier choices were all kept
    /// keeps its router's j-th best. Without capacity, or at k = 1, the same as token_order.
    sequential,
};

/// Per-expert capacity as Switch/GShard/RingMoE compute it: ceil(k * tokens * factor / experts).
/// factor <= 0 means no capacity limit (returns 0, the plan's "unlimited").
inline index_t expert_capacity(index_t tokens, index_t experts, index_t k, double factor) {
    check<ConfigError>(experts > 0, "expert_capacity", "expert count must be positive, got ", experts);
    if (factor <= 0) return 0;
    return static_cast<index_t>(std::ceil(static_cast<double>(k) * static_cast<double>(tokens) * factor /
                                          static_cast<double>(experts)));
}

struct RoutingPlan {
    index_t num_tokens = 0;   ///< T
    index_t num_experts = 0;  ///< E
    index_t k = 0;            ///< choices per token: the stride of the token-major arrays

    // token-major, [T * k]; choice c = t * k + j, j-th best first for top-k routers
    std::vector<std::int32_t> expert_ids;     ///< expert of choice c, or -1 for an empty position
    std::vector<float> weights;               ///< combine weight of choice c
    std::vector<std::int32_t> token_to_slot;  ///< slot of choice c, or -1 when dropped or empty

    // expert-major
    std::vector<std::int32_t> counts;         ///< [E] slots kept per expert
    std::vector<std::int32_t> offsets;        ///< [E + 1] exclusive prefix sum of counts
    std::vector<std::int32_t> slot_to_token;  ///< [S] token of each slot
    std::vector<float> slot_weights;          ///< [S] combine weight of each slot

    index_t capacity = 0;                     ///< per-expert capacity; 0 = unlimited
    std::vector<std::int32_t> dropped;        ///< choices (t * k + j) dropped by capacity, ascending
    std::vector<std::int64_t> load;           ///< [E] choices that asked for each expert (before capacity)

    index_t num_slots() const noexcept { return offsets.empty() ? 0 : offsets.back(); }
    /// Tokens of expert e, as a contiguous range of slots.
    index_t begin(index_t e) const noexcept { return offsets[static_cast<std::size_t>(e)]; }
    index_t end(index_t e) const noexcept { return offsets[static_cast<std::size_t>(e) + 1]; }

    /// Sizes the token-major arrays for T tokens, E experts and k choices per token (filled with
    /// -1 / 0) and clears the expert-major part. Routers call this, fill expert_ids and weights,
    /// then call finalize().
    void reset(index_t tokens, index_t experts, index_t choices) {
        check<ConfigError>(experts > 0, "RoutingPlan::reset", "expert count must be positive, got ", experts);
        check<ConfigError>(tokens >= 0 && choices >= 0, "RoutingPlan::reset", "negative size");
        check<ConfigError>(tokens * choices < INT32_MAX, "RoutingPlan::reset", "T * k = ", tokens * choices,
                           " exceeds the 32-bit slot index");
        num_tokens = tokens;
        num_experts = experts;
        k = choices;
        const auto n = static_cast<std::size_t>(tokens * choices);
        expert_ids.assign(n, -1);
        weights.assign(n, 0.0f);
        token_to_slot.assign(n, -1);
        counts.assign(static_cast<std::size_t>(experts), 0);
        offsets.assign(static_cast<std::size_t>(experts) + 1, 0);
        load.assign(static_cast<std::size_t>(experts), 0);
        slot_to_token.clear();
        slot_weights.clear();
        dropped.clear();
        capacity = 0;
    }

    /// Builds the expert-major view from expert_ids/weights: counts, offsets, both permutation
    /// maps, load; applies `cap` (0 = unlimited) with the given priority and records drops.
    /// With CapacityPriority::sequential the choices after a token's first dropped one are
    /// rewritten to its expert (and weight) before `load` is counted (see the enum).
    void finalize(index_t cap = 0, CapacityPriority priority = CapacityPriority::token_order) {
        check<ConfigError>(cap >= 0, "RoutingPlan::finalize", "negative capacity ", cap);
        capacity = cap;
        const auto E = static_cast<std::size_t>(num_experts);
        const auto n = static_cast<std::size_t>(num_tokens * k);
        std::fill(load.begin(), load.end(), 0);
        for (std::size_t c = 0; c < n; ++c) {
            const std::int32_t e = expert_ids[c];
            if (e < 0) continue;
            check<ConfigError>(static_cast<std::size_t>(e) < E, "RoutingPlan::finalize", "choice ", c,
                               " names expert ", e, " but there are ", E);
            ++load[static_cast<std::size_t>(e)];
        }
        // Decide which choices are kept.
        dropped.clear();
        std::fill(token_to_slot.begin(), token_to_slot.end(), -1);
        std::vector<std::int32_t>& kept = counts;
        std::fill(kept.begin(), kept.end(), 0);
        auto consider = [&](std::size_t c) {
            const std::int32_t e = expert_ids[c];
            if (e < 0) return;
            if (cap > 0 && kept[static_cast<std::size_t>(e)] >= cap) {
                dropped.push_back(static_cast<std::int32_t>(c));
                return;
            }
            ++kept[static_cast<std::size_t>(e)];
            token_to_slot[c] = 0;  // marks "kept"; the slot number is assigned below
        };
        if (cap > 0 && priority == CapacityPriority::choice_rank) {
            for (index_t j = 0; j < k; ++j)
                for (index_t t = 0; t < num_tokens; ++t) consider(static_cast<std::size_t>(t * k + j));
            std::sort(dropped.begin(), dropped.end());
        } else if (cap > 0 && priority == CapacityPriority::sequential && k > 1) {
            // first_drop[t]: token t's first dropped choice (t * k + j), or -1 while all are kept.
            // Once an expert drops a choice it is full for the rest of the call (kept counts
            // only grow), so the rewritten later choices are dropped by consider() as well.
            std::vector<std::int32_t> first_drop(static_cast<std::size_t>(num_tokens), -1);
            for (index_t j = 0; j < k; ++j)
                for (index_t t = 0; t < num_tokens; ++t) {
                    const auto c = static_cast<std::size_t>(t * k + j);
                    const std::int32_t d = first_drop[static_cast<std::size_t>(t)];
                    if (d >= 0 && expert_ids[c] >= 0) {
                        --load[static_cast<std::size_t>(expert_ids[c])];
                        expert_ids[c] = expert_ids[static_cast<std::size_t>(d)];
                        weights[c] = weights[static_cast<std::size_t>(d)];
                        ++load[static_cast<std::size_t>(expert_ids[c])];
                    }
                    const std::size_t before = dropped.size();
                    consider(c);
                    if (d < 0 && dropped.size() > before)
                        first_drop[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(c);
                }
            std::sort(dropped.begin(), dropped.end());
        } else {
            for (std::size_t c = 0; c < n; ++c) consider(c);
        }
        offsets[0] = 0;
        for (std::size_t e = 0; e < E; ++e) offsets[e + 1] = offsets[e] + kept[e];
        const auto S = static_cast<std::size_t>(offsets[E]);
        slot_to_token.resize(S);
        slot_weights.resize(S);
        // Counting-sort placement in ascending token order within each expert.
        std::vector<std::int32_t> cursor(offsets.begin(), offsets.end() - 1);
        for (std::size_t c = 0; c < n; ++c) {
            if (token_to_slot[c] < 0) continue;
            const auto e = static_cast<std::size_t>(expert_ids[c]);
            const std::int32_t s = cursor[e]++;
            token_to_slot[c] = s;
            slot_to_token[static_cast<std::size_t>(s)] = static_cast<std::int32_t>(c / static_cast<std::size_t>(k));
            slot_weights[static_cast<std::size_t>(s)] = weights[c];
        }
    }

    /// Renormalises the combine weights over each token's choices KEPT after capacity (the
    /// MindSpore TopkRouter's combine): w_c = w_c / (sum + eps) * scale for a kept choice, with
    /// sum the fp32 sum of the token's kept weights in choice order; dropped and empty choices
    /// get weight 0 (so do kept ones when sum + eps is 0). slot_weights follow. Call after
    /// finalize(); a token that keeps one choice gets w / (w + eps) (exactly 1 in fp32 when
    /// eps < half an ulp of w).
    void renormalize_kept(float eps = 0.0f, float scale = 1.0f) {
        check<ConfigError>(eps >= 0.0f && std::isfinite(eps) && std::isfinite(scale), "RoutingPlan::renormalize_kept",
                           "eps must be finite and >= 0 and scale finite, got eps ", eps, ", scale ", scale);
        const auto K = static_cast<std::size_t>(k);
        for (std::size_t t = 0; t < static_cast<std::size_t>(num_tokens); ++t) {
            float sum = 0.0f;
            for (std::size_t j = 0; j < K; ++j)
                if (token_to_slot[t * K + j] >= 0) sum += weights[t * K + j];
            const float denom = sum + eps;
            for (std::size_t j = 0; j < K; ++j) {
                const std::size_t c = t * K + j;
                const std::int32_t s = token_to_slot[c];
                weights[c] = s >= 0 && denom > 0.0f ? weights[c] / denom * scale : 0.0f;
                if (s >= 0) slot_weights[static_cast<std::size_t>(s)] = weights[c];
            }
        }
    }

    /// Checks every invariant; throws Error naming the first one broken. For tests and debugging.
    void validate() const {
        const char* w = "RoutingPlan::validate";
        const auto n = static_cast<std::size_t>(num_tokens * k);
        const auto E = static_cast<std::size_t>(num_experts);
        check(expert_ids.size() == n && weights.size() == n && token_to_slot.size() == n, w,
              "token-major arrays must hold T * k = ", n, " entries");
        check(counts.size() == E && offsets.size() == E + 1 && load.size() == E, w, "per-expert arrays must hold E");
        check(offsets[0] == 0, w, "offsets[0] must be 0");
        for (std::size_t e = 0; e < E; ++e) {
            check(offsets[e + 1] - offsets[e] == counts[e], w, "offsets/counts disagree at expert ", e);
            check(capacity == 0 || counts[e] <= capacity, w, "expert ", e, " holds ", counts[e],
                  " tokens, over capacity ", capacity);
        }
        const auto S = static_cast<std::size_t>(num_slots());
        check(slot_to_token.size() == S && slot_weights.size() == S, w, "slot arrays must hold S = ", S);
        std::vector<int> seen(S, 0);
        std::size_t kept = 0;
        for (std::size_t c = 0; c < n; ++c) {
            const auto s = token_to_slot[c];
            if (s < 0) continue;
            ++kept;
            check(static_cast<std::size_t>(s) < S, w, "slot ", s, " out of range");
            check(seen[static_cast<std::size_t>(s)]++ == 0, w, "slot ", s, " used twice");
            check(slot_to_token[static_cast<std::size_t>(s)] == static_cast<std::int32_t>(c / static_cast<std::size_t>(k)),
                  w, "slot_to_token and token_to_slot disagree at choice ", c);
            const auto e = expert_ids[c];
            check(e >= 0 && s >= offsets[static_cast<std::size_t>(e)] && s < offsets[static_cast<std::size_t>(e) + 1],
                  w, "slot ", s, " of choice ", c, " lies outside expert ", e, "'s block");
            check(slot_weights[static_cast<std::size_t>(s)] == weights[c], w, "slot weight differs at choice ", c);
        }
        check(kept == S, w, "kept choices (", kept, ") != slots (", S, ")");
        for (std::size_t e = 0; e < E; ++e)
            for (auto s = offsets[e] + 1; s < offsets[e + 1]; ++s)
                check(slot_to_token[static_cast<std::size_t>(s - 1)] < slot_to_token[static_cast<std::size_t>(s)], w,
                      "tokens of expert ", e, " are not in ascending order");
        for (auto c : dropped)
            check(c >= 0 && static_cast<std::size_t>(c) < n && token_to_slot[static_cast<std::size_t>(c)] < 0 &&
                      expert_ids[static_cast<std::size_t>(c)] >= 0,
                  w, "dropped choice ", c, " is not a dropped assignment");
        std::size_t asked = 0;
        for (auto l : load) asked += static_cast<std::size_t>(l);
        check(asked == S + dropped.size(), w, "load (", asked, ") != kept (", S, ") + dropped (", dropped.size(), ")");
    }
};

}  // namespace moe
