// moe/backend/rule.hpp - the routing rule: what a routing kernel computes for every token,
// whichever backend runs it. One plain-data type read by the CPU kernel
// (moe/backend/cpu/routing.hpp, cpu::topk_route) and the CUDA kernel
// (moe/backend/cuda/routing.cuh, cuda::route_topk); routers build it from their options
// (TopKRouter::rule(), from TopKOptions).
//
//   scores     softmax(logits) in fp32, or sigmoid(logits)
//   selection  scores (+ bias[e], for the choice only) -> group-limited masking (groups > 1:
//              keep the topk_groups best groups, scored by group_score; the rest score
//              group_mask_value) -> the k best, ties to the lower expert index
//   weights    the unbiased scores of the k chosen, divided by their sum + renorm_eps when
//              renormalize, times scale
//
// The bias lies in the memory space of the kernel that reads it (host memory for the CPU
// kernel, device memory for the CUDA one). No SIMD or CUDA header is needed to fill a rule.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"

namespace moe {

/// How logits become scores.
enum class Scoring : std::uint8_t {
    softmax,  ///< p = softmax(logits) in fp32 (Mixtral, Qwen-MoE, Switch, RingMoE)
    sigmoid,  ///< s = sigmoid(logits) (DeepSeek-V3)
};

/// How a group is scored for group-limited routing.
enum class GroupScore : std::uint8_t {
    max,       ///< the best score in the group (DeepSeek-V2 "group_limited_greedy")
    top2_sum,  ///< the sum of the two best scores (DeepSeek-V3 "noaux_tc")
};

/// What a routing kernel computes for every token (see the file comment).
struct RouteRule {
    index_t k = 1;                       ///< experts per token, 1 <= k <= E
    Scoring scoring = Scoring::softmax;  ///< score function
    bool renormalize = true;             ///< chosen weights divided by their sum (x scale)
    float scale = 1.0f;                  ///< multiplies every weight (routed_scaling_factor)
    float renorm_eps = 0.0f;             ///< added to the denominator of the renormalisation
    std::span<const float> bias;         ///< selection bias [E]: changes the choice, not the weight
    index_t groups = 1;                  ///< group-limited routing: E experts in `groups` groups
    index_t topk_groups = 1;             ///< groups a token may choose from
    GroupScore group_score = GroupScore::top2_sum;
    float group_mask_value = -std::numeric_limits<float>::infinity();  ///< score of masked experts

    /// Throws ConfigError unless the rule is usable with E experts.
    void validate(index_t E, std::string_view where = "RouteRule") const {
        check<ConfigError>(E > 0, where, "expert count must be positive, got ", E);
        check<ConfigError>(k >= 1 && k <= E, where, "k = ", k, " must be in [1, ", E, "] (the expert count)");
        check<ConfigError>(bias.empty() || static_cast<index_t>(bias.size()) == E, where, "bias has ", bias.size(),
                           " entries for ", E, " experts");
        check<ConfigError>(groups >= 1 && E % groups == 0, where, "E = ", E, " is not divisible into ", groups,
                           " groups");
        check<ConfigError>(topk_groups >= 1 && topk_groups <= groups, where, "topk_groups = ", topk_groups,
                           " must be in [1, ", groups, "]");
        check<ConfigError>(groups == 1 || topk_groups * (E / groups) >= k, where, "topk_groups = ", topk_groups,
                           " groups of ", E / groups, " experts cannot supply k = ", k);
        check<ConfigError>(std::isfinite(scale), where, "scale must be finite");
    }
};

}  // namespace moe
