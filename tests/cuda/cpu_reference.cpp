// The CPU side of the CUDA tests: the same spec through moe::cpu::topk_route and RoutingPlan.
#include <span>
#include <vector>

#include "moe/backend/cpu/routing.hpp"
#include "moe/backend/rule.hpp"
#include "moe/core/plan.hpp"

void cpu_route(const float* logits, int T, int E, const moe::RouteRule& spec, const float* bias_host,
               std::int32_t* ids, float* w) {
    moe::RouteRule s = spec;  // the same rule, with the bias in host memory
    s.bias = bias_host ? std::span<const float>(bias_host, static_cast<std::size_t>(E)) : std::span<const float>{};
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
