// The CPU side of the CUDA tests: the same spec through moe::cpu::topk_route and RoutingPlan.
#include <vector>

#include "moe/backend/cpu/routing.hpp"
#include "moe/backend/cuda/spec.hpp"
#include "moe/core/plan.hpp"

void cpu_route(const float* logits, int T, int E, const moe::cuda::RouteSpec& spec, const float* bias_host,
               std::int32_t* ids, float* w) {
    moe::cpu::TopKSpec s;
    s.k = spec.k;
    s.scoring = spec.scoring == moe::cuda::Scoring::softmax ? moe::cpu::Scoring::softmax : moe::cpu::Scoring::sigmoid;
    s.renormalize = spec.renormalize;
    s.scale = spec.scale;
    s.renorm_eps = spec.renorm_eps;
    if (bias_host) s.bias = std::span<const float>(bias_host, static_cast<std::size_t>(E));
    s.groups = spec.groups;
    s.topk_groups = spec.topk_groups;
    s.group_score = spec.group_top2_sum ? moe::cpu::GroupScore::top2_sum : moe::cpu::GroupScore::max;
    s.group_mask_value = spec.group_mask_value;
    moe::cpu::RouteWorkspace ws;
    moe::cpu::topk_route(moe::ConstMatrixRef<float>(logits, T, E), s, ids, w, ws, moe::Exec(1));
}

void cpu_plan(const std::int32_t* ids, const float* w, int T, int E, int k, int capacity, std::vector<std::int32_t>& counts,
              std::vector<std::int32_t>& slot_to_token, std::vector<std::int32_t>& token_to_slot) {
    moe::RoutingPlan p;
    p.reset(T, E, k);
    p.expert_ids.assign(ids, ids + T * k);
    p.weights.assign(w, w + T * k);
    p.finalize(capacity, moe::CapacityPriority::token_order);
    counts = p.counts;
    slot_to_token = p.slot_to_token;
    token_to_slot = p.token_to_slot;
}
