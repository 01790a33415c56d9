// moe/router/losses.hpp - auxiliary routing losses, computed for analysis.
//
//   load_balancing_loss  Switch / Hugging Face (load_balancing_loss_func):
//                        E * sum_e f_e * P_e, with f_e the fraction of tokens that chose e among
//                        their k choices (summed over the k ranks, before capacity) and P_e the
//                        mean softmax probability of e over the tokens.
//   z_loss               ST-MoE router z-loss: mean over tokens of logsumexp(logits)^2.
//   switch_group_loss    Switch-style group loss mean_e(f_e * P_e) * c^2 (first choices).
//   sequential_group_loss MindSpore TopkRouter's group loss for sequential routing, any k (the
//                        auxiliary loss of a RoutedGroup, moe/layer/routed_group.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/core/plan.hpp"

namespace moe {

/// Mean softmax probability per expert over the rows of logits [T, E] (double accumulation).
inline std::vector<double> mean_router_probs(ConstMatrixRef<float> logits) {
    const index_t T = logits.rows, E = logits.cols;
    std::vector<double> P(static_cast<std::size_t>(E), 0.0);
    for (index_t t = 0; t < T; ++t) {
        const float* r = logits.row(t);
        double m = -INFINITY, z = 0;
        for (index_t e = 0; e < E; ++e) m = std::max(m, double(r[e]));
        for (index_t e = 0; e < E; ++e) z += std::exp(double(r[e]) - m);
        for (index_t e = 0; e < E; ++e) P[static_cast<std::size_t>(e)] += std::exp(double(r[e]) - m) / z;
    }
    for (auto& p : P) p /= static_cast<double>(std::max<index_t>(T, 1));
    return P;
}

/// Switch / HF load-balancing loss from the logits and the plan routed from them.
inline double load_balancing_loss(ConstMatrixRef<float> logits, const RoutingPlan& plan) {
    check<ShapeError>(logits.rows == plan.num_tokens && logits.cols == plan.num_experts, "load_balancing_loss",
                      "logits [", logits.rows, ", ", logits.cols, "] do not match a plan for ", plan.num_tokens,
                      " tokens and ", plan.num_experts, " experts");
    if (plan.num_tokens == 0) return 0.0;
    const auto P = mean_router_probs(logits);
    double loss = 0;
    for (index_t e = 0; e < plan.num_experts; ++e)
        loss += double(plan.load[static_cast<std::size_t>(e)]) / double(plan.num_tokens) * P[static_cast<std::size_t>(e)];
    return loss * double(plan.num_experts);
}

/// Router z-loss: mean_t logsumexp(logits[t])^2.
inline double z_loss(ConstMatrixRef<float> logits) {
    if (logits.rows == 0) return 0.0;
    double acc = 0;
    for (index_t t = 0; t < logits.rows; ++t) {
        const float* r = logits.row(t);
        double m = -INFINITY, z = 0;
        for (index_t e = 0; e < logits.cols; ++e) m = std::max(m, double(r[e]));
        for (index_t e = 0; e < logits.cols; ++e) z += std::exp(double(r[e]) - m);
        const double lse = m + std::log(z);
        acc += lse * lse;
    }
    return acc / double(logits.rows);
}

namespace detail {
/// The group losses take the logits the plan was routed from: [T, E] for T tokens, E experts.
inline void check_logits_fit_plan(ConstMatrixRef<float> logits, const RoutingPlan& plan, const char* who) {
    check<ShapeError>(logits.rows == plan.num_tokens && logits.cols == plan.num_experts, who,
                      "logits and plan disagree: logits are [", logits.rows, ", ", logits.cols, "], the plan routes ",
                      plan.num_tokens, " tokens to ", plan.num_experts, " experts");
}
}  // namespace detail

/// Switch-style group loss: mean_e(f_e * P_e) * c^2, f_e from first choices before capacity.
inline double switch_group_loss(ConstMatrixRef<float> logits, const RoutingPlan& plan, double c) {
    detail::check_logits_fit_plan(logits, plan, "switch_group_loss");
    const index_t T = plan.num_tokens, E = plan.num_experts;
    if (T == 0) return 0.0;
    const auto P = mean_router_probs(logits);
    std::vector<double> f(static_cast<std::size_t>(E), 0.0);
    for (index_t t = 0; t < T; ++t) {
        const auto e = plan.expert_ids[static_cast<std::size_t>(t * plan.k)];
        if (e >= 0) f[static_cast<std::size_t>(e)] += 1.0 / double(T);
    }
    double s = 0;
    for (index_t e = 0; e < E; ++e) s += f[static_cast<std::size_t>(e)] * P[static_cast<std::size_t>(e)];
    return s / double(E) * c * c;
}

/// MindSpore TopkRouter's group loss for a plan routed with CapacityPriority::sequential (any k):
///   sum_j mean_e(f_je * P_je) * c^2,
/// f_je = fraction of tokens whose choice j is e (before capacity; a choice after a dropped one
/// names the dropped expert again), P_je = mean_t p_j[t, e] / (sum_e p_j[t, e] + 1e-9) with
/// p_j = softmax(logits) * (1 - the experts the token kept in choices 0 .. j-1). Computed in
/// double. At k = 1 it is switch_group_loss times 1 / (1 + 1e-9).
inline double sequential_group_loss(ConstMatrixRef<float> logits, const RoutingPlan& plan, double c) {
    detail::check_logits_fit_plan(logits, plan, "sequential_group_loss");
    const index_t T = plan.num_tokens, E = plan.num_experts, k = plan.k;
    if (T == 0 || k == 0) return 0.0;
    const auto Es = static_cast<std::size_t>(E), ks = static_cast<std::size_t>(k);
    std::vector<double> f(ks * Es, 0.0), P(ks * Es, 0.0), prob(Es);
    std::vector<char> masked(Es);
    for (index_t t = 0; t < T; ++t) {
        const float* r = logits.row(t);
        double m = -INFINITY, z = 0;
        for (std::size_t e = 0; e < Es; ++e) m = std::max(m, double(r[e]));
        for (std::size_t e = 0; e < Es; ++e) z += prob[e] = std::exp(double(r[e]) - m);
        for (std::size_t e = 0; e < Es; ++e) prob[e] /= z;
        std::fill(masked.begin(), masked.end(), char(0));
        for (std::size_t j = 0; j < ks; ++j) {
            const std::size_t ch = static_cast<std::size_t>(t) * ks + j;
            double sum = 0;
            for (std::size_t e = 0; e < Es; ++e)
                if (!masked[e]) sum += prob[e];
            const double inv = 1.0 / (sum + 1e-9);
            for (std::size_t e = 0; e < Es; ++e)
                if (!masked[e]) P[j * Es + e] += prob[e] * inv;
            const std::int32_t ej = plan.expert_ids[ch];
            if (ej < 0) continue;
            f[j * Es + static_cast<std::size_t>(ej)] += 1.0;
            if (plan.token_to_slot[ch] >= 0) masked[static_cast<std::size_t>(ej)] = 1;
        }
    }
    double s = 0;
    for (std::size_t i = 0; i < ks * Es; ++i) s += f[i] * P[i];
    return s / (double(T) * double(T) * double(E)) * c * c;
}

}  // namespace moe
