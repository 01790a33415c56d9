// moe/router/granularity.hpp - request-level routers of RSUniVLM's granularity-oriented MoE.
//
// One expert per request, serving every token of that request (in every layer):
//   GranularityRouter         training-free, from the task tag in the prompt:
//                             [SEG] -> 2 (pixel level); [VG] or [REF] -> 1 (region level);
//                             anything else ([CAP], [VQA], [CLS], [CCD], ...) -> 0 (image level).
//                             The tag list is configurable and checked in order (first match wins,
//                             so [SEG] takes precedence, as the released app.py does).
//   LearnedGranularityRouter  a Linear over the request's mean-pooled embedding; argmax picks
//                             the expert (ties to the lower index), weight 1 or its probability.
//
// A batch may mix requests of different granularities: describe it with `set_requests`
// (token offsets [R + 1] and, for the tag router, one granularity or prompt per request) before
// `route(x, plan)`.
#pragma once

#include <cmath>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/router/gate.hpp"
#include "moe/core/plan.hpp"

namespace moe {

/// A batch of requests: request r owns tokens [offsets[r], offsets[r + 1]).
struct RequestBatch {
    std::vector<index_t> offsets{0};
    std::vector<int> expert;  ///< chosen expert per request (filled by the router)

    index_t requests() const noexcept { return static_cast<index_t>(offsets.size()) - 1; }
    index_t tokens() const noexcept { return offsets.back(); }
    /// Checks that the offsets start at 0 and never decrease.
    void validate(std::string_view where) const {
        check<ConfigError>(!offsets.empty() && offsets[0] == 0, where, "request offsets must start at 0");
        for (std::size_t r = 1; r < offsets.size(); ++r)
            check<ConfigError>(offsets[r] >= offsets[r - 1], where, "request offsets decrease at request ", r - 1);
    }
};

namespace detail {
/// Fills plan with k = 1: every token of request r goes to batch.expert[r] with weight w[r].
inline void fill_request_plan(const RequestBatch& batch, const std::vector<float>& w, index_t T, index_t E,
                              RoutingPlan& plan) {
    plan.reset(T, E, 1);
    for (index_t r = 0; r < batch.requests(); ++r)
        for (index_t t = batch.offsets[static_cast<std::size_t>(r)]; t < batch.offsets[static_cast<std::size_t>(r) + 1];
             ++t) {
            plan.expert_ids[static_cast<std::size_t>(t)] = batch.expert[static_cast<std::size_t>(r)];
            plan.weights[static_cast<std::size_t>(t)] = w[static_cast<std::size_t>(r)];
        }
    plan.finalize();
}
}  // namespace detail

class GranularityRouter {
public:
    /// The released code's rule over 3 experts.
    GranularityRouter(index_t hidden, index_t experts = 3)
        : GranularityRouter(hidden, experts, {{"[SEG]", 2}, {"[VG]", 1}, {"[REF]", 1}}, 0) {}
    /// A custom tag list (checked in order, first match wins) and the expert for prompts with no tag.
    GranularityRouter(index_t hidden, index_t experts, std::vector<std::pair<std::string, int>> tags, int fallback)
        : d_(hidden), E_(experts), tags_(std::move(tags)), fallback_(fallback) {
        const char* w = "GranularityRouter";
        check<ConfigError>(hidden > 0 && experts > 0, w, "hidden size and expert count must be positive");
        check<ConfigError>(fallback >= 0 && fallback < experts, w, "fallback expert ", fallback, " out of range [0, ",
                           experts, ")");
        for (const auto& [tag, e] : tags_)
            check<ConfigError>(e >= 0 && e < experts, w, "tag ", tag, " maps to expert ", e, ", out of range [0, ",
                               experts, ")");
    }

    index_t num_experts() const noexcept { return E_; }
    index_t hidden_size() const noexcept { return d_; }

    /// The expert a prompt selects.
    int granularity(std::string_view prompt) const {
        for (const auto& [tag, e] : tags_)
            if (prompt.find(tag) != std::string_view::npos) return e;
        return fallback_;
    }

    /// Describes the next batch: token offsets [R + 1] and one prompt per request.
    void set_requests(std::vector<index_t> offsets, const std::vector<std::string>& prompts) {
        std::vector<int> g;
        for (const auto& p : prompts) g.push_back(granularity(p));
        set_requests_by_expert(std::move(offsets), std::move(g));
    }
    /// Describes the next batch with the expert of each request given directly.
    void set_requests_by_expert(std::vector<index_t> offsets, std::vector<int> experts) {
        RequestBatch b;
        b.offsets = std::move(offsets);
        b.validate("GranularityRouter::set_requests");
        check<ConfigError>(static_cast<index_t>(experts.size()) == b.requests(), "GranularityRouter::set_requests",
                           experts.size(), " granularities for ", b.requests(), " requests");
        for (std::size_t r = 0; r < experts.size(); ++r)
            check<ConfigError>(experts[r] >= 0 && experts[r] < E_, "GranularityRouter::set_requests", "request ", r,
                               " asks for expert ", experts[r], ", out of range [0, ", E_, ")");
        b.expert = std::move(experts);
        batch_ = std::move(b);
    }
    const RequestBatch& requests() const noexcept { return batch_; }

    /// Every token of request r goes to that request's expert with weight 1.
    void route(ConstMatrixRef<float> x, RoutingPlan& plan) const {
        const char* w = "GranularityRouter::route";
        check<ShapeError>(x.cols == d_, w, "input has ", x.cols, " features, the router takes ", d_);
        index_t T = x.rows;
        if (batch_.requests() == 0) {  // one request of fallback granularity by default
            RequestBatch one;
            one.offsets = {0, T};
            one.expert = {fallback_};
            detail::fill_request_plan(one, {1.0f}, T, E_, plan);
            return;
        }
        check<ShapeError>(batch_.tokens() == T, w, "the requests cover ", batch_.tokens(), " tokens, input has ", T);
        detail::fill_request_plan(batch_, std::vector<float>(batch_.expert.size(), 1.0f), T, E_, plan);
    }

private:
    index_t d_, E_;
    std::vector<std::pair<std::string, int>> tags_;
    int fallback_;
    RequestBatch batch_;
};

class LearnedGranularityRouter {
public:
    /// gate: Linear(d -> E) applied to each request's mean-pooled tokens. With use_probability the
    /// combine weight is the chosen expert's softmax probability, otherwise 1.
    explicit LearnedGranularityRouter(Gate gate, bool use_probability = false)
        : gate_(std::move(gate)), use_prob_(use_probability) {}

    index_t num_experts() const noexcept { return gate_.num_experts(); }
    index_t hidden_size() const noexcept { return gate_.hidden_size(); }
    index_t parameters() const noexcept { return gate_.parameters(); }
    const Gate& gate() const noexcept { return gate_; }

    /// Token offsets [R + 1] of the next batch (default: the whole input is one request).
    void set_requests(std::vector<index_t> offsets) {
        RequestBatch b;
        b.offsets = std::move(offsets);
        b.validate("LearnedGranularityRouter::set_requests");
        batch_ = std::move(b);
    }
    const RequestBatch& requests() const noexcept { return batch_; }

    void route(ConstMatrixRef<float> x, RoutingPlan& plan) {
        const char* w = "LearnedGranularityRouter::route";
        check<ShapeError>(x.cols == hidden_size(), w, "input has ", x.cols, " features, the router takes ",
                          hidden_size());
        RequestBatch b = batch_;
        if (b.requests() == 0) b.offsets = {0, x.rows};
        check<ShapeError>(b.tokens() == x.rows, w, "the requests cover ", b.tokens(), " tokens, input has ", x.rows);
        const index_t R = b.requests(), d = hidden_size(), E = num_experts();
        std::vector<float> pooled(static_cast<std::size_t>(R * d), 0.0f), logits(static_cast<std::size_t>(R * E));
        for (index_t r = 0; r < R; ++r) {
            const index_t t0 = b.offsets[static_cast<std::size_t>(r)], t1 = b.offsets[static_cast<std::size_t>(r) + 1];
            check<ShapeError>(t1 > t0, w, "request ", r, " has no tokens");
            for (index_t t = t0; t < t1; ++t)
                for (index_t i = 0; i < d; ++i) pooled[static_cast<std::size_t>(r * d + i)] += x(t, i);
            for (index_t i = 0; i < d; ++i) pooled[static_cast<std::size_t>(r * d + i)] /= static_cast<float>(t1 - t0);
        }
        gate_.logits({pooled.data(), R, d}, {logits.data(), R, E}, gemm_);
        b.expert.assign(static_cast<std::size_t>(R), 0);
        std::vector<float> wts(static_cast<std::size_t>(R), 1.0f);
        for (index_t r = 0; r < R; ++r) {
            const float* l = logits.data() + r * E;
            int best = 0;
            float m = l[0], z = 0;
            for (index_t e = 0; e < E; ++e) {
                check<ValueError>(!std::isnan(l[e]), w, "request ", r, " has a NaN router logit");
                if (l[e] > l[best]) best = static_cast<int>(e);
                m = std::max(m, l[e]);
            }
            for (index_t e = 0; e < E; ++e) z += std::exp(l[e] - m);
            b.expert[static_cast<std::size_t>(r)] = best;
            if (use_prob_) wts[static_cast<std::size_t>(r)] = std::exp(l[best] - m) / z;
        }
        last_ = b;
        detail::fill_request_plan(b, wts, x.rows, E, plan);
    }
    /// The requests and chosen experts of the last route() call.
    const RequestBatch& last_choice() const noexcept { return last_; }

private:
    Gate gate_;
    bool use_prob_;
    RequestBatch batch_, last_;
    cpu::GemmWorkspace gemm_;
};

}  // namespace moe
