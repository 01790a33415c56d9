// moe/router/expert_choice.hpp - expert-choice routing (Zhou et al., 2022): each expert picks
// its top-c tokens, c = ceil(T * capacity_factor / E).
//
// Scores are the per-token softmax over experts, S = softmax(x W^T); expert e takes the c tokens
// with the largest S[:, e] (ties to the lower token index) and weights them by S[t, e]. A token
// may be taken by several experts or by none. In the plan, token t's choices are the experts
// that took it, in ascending expert order; k is the largest number of experts any token got.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/router/gate.hpp"
#include "moe/core/plan.hpp"

namespace moe {

class ExpertChoiceRouter {
public:
    ExpertChoiceRouter() = default;
    ExpertChoiceRouter(Gate gate, double capacity_factor) : gate_(std::move(gate)), cf_(capacity_factor) {
        check<ConfigError>(capacity_factor > 0, "ExpertChoiceRouter", "capacity factor must be positive, got ",
                           capacity_factor);
    }

    index_t num_experts() const noexcept { return gate_.num_experts(); }
    index_t hidden_size() const noexcept { return gate_.hidden_size(); }
    double capacity_factor() const noexcept { return cf_; }
    const Gate& gate() const noexcept { return gate_; }
    index_t parameters() const noexcept { return gate_.parameters(); }
    /// Tokens each expert takes for T tokens: min(T, ceil(T * cf / E)).
    index_t capacity(index_t T) const { return std::min(T, expert_capacity(T, num_experts(), 1, cf_)); }

    void route(ConstMatrixRef<float> x, RoutingPlan& plan) {
        check<ShapeError>(x.cols == hidden_size(), "ExpertChoiceRouter::route", "input has ", x.cols,
                          " features, the router takes ", hidden_size());
        const index_t T = x.rows, E = num_experts();
        std::vector<float> s(static_cast<std::size_t>(T * E));
        MatrixRef<float> logits(s.data(), T, E);
        gate_.logits(x, logits, gemm_);
        // Per-token softmax in place.
        for (index_t t = 0; t < T; ++t) {
            float* r = logits.row(t);
            float m = -INFINITY;
            for (index_t e = 0; e < E; ++e) {
                check<ValueError>(!std::isnan(r[e]) && r[e] != INFINITY, "ExpertChoiceRouter::route", "logit of token ",
                                  t, ", expert ", e, " is ", r[e]);
                m = std::max(m, r[e]);
            }
            float z = 0;
            for (index_t e = 0; e < E; ++e) z += std::exp(r[e] - m);
            for (index_t e = 0; e < E; ++e) r[e] = std::exp(r[e] - m) / z;
        }
        const index_t c = capacity(T);
        // Each expert's top-c tokens.
        std::vector<std::vector<index_t>> taken(static_cast<std::size_t>(E));
        std::vector<index_t> order(static_cast<std::size_t>(T));
        std::vector<index_t> per_token(static_cast<std::size_t>(T), 0);
        for (index_t e = 0; e < E; ++e) {
            std::iota(order.begin(), order.end(), index_t{0});
            std::partial_sort(order.begin(), order.begin() + c, order.end(), [&](index_t a, index_t b) {
                const float sa = logits(a, e), sb = logits(b, e);
                return sa > sb || (sa == sb && a < b);
            });
            taken[static_cast<std::size_t>(e)].assign(order.begin(), order.begin() + c);
            for (index_t j = 0; j < c; ++j) ++per_token[static_cast<std::size_t>(order[static_cast<std::size_t>(j)])];
        }
        index_t kmax = 0;
        for (index_t n : per_token) kmax = std::max(kmax, n);
        plan.reset(T, E, kmax);
        std::fill(per_token.begin(), per_token.end(), 0);
        for (index_t e = 0; e < E; ++e)
            for (index_t t : taken[static_cast<std::size_t>(e)]) {
                const auto ci = static_cast<std::size_t>(t * kmax + per_token[static_cast<std::size_t>(t)]++);
                plan.expert_ids[ci] = static_cast<std::int32_t>(e);
                plan.weights[ci] = logits(t, e);
            }
        plan.finalize(c);
    }

private:
    Gate gate_;
    double cf_ = 1.0;
    cpu::GemmWorkspace gemm_;
};

}  // namespace moe
