// moe/router/losses.hpp - auxiliary routing losses, computed for analysis.
//
//   load_balancing_loss  Switch / Hugging Face (load_balancing_loss_func):
//                        E * sum_e f_e * P_e, with f_e the fraction of tokens that chose e among
//                        their k choices (summed over the k ranks, before capacity) and P_e the
//                        mean softmax probability of e over the tokens.
//   z_loss               ST-MoE router z-loss: mean over tokens of logsumexp(logits)^2.
#pragma once

#include <cmath>
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

}  // namespace moe
