// The hierarchical (RingMoE) layer: composition of its three branches, per-group capacity,
// modality given per token or per chunk, combine conventions, aux losses, bad modalities.
// Expectations are built from independently tested parts (TopKRouter, MlpExperts) run on the
// sub-batches by hand, and from hand-derived values.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "moe/layer/hierarchical.hpp"
#include "moe/moe.hpp"

using namespace moe;

namespace {
std::vector<float> randn(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d;
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}
using X = MlpExperts<GeluTanh>;
using H = HierarchicalMoE<X, X, SharedExperts<X>>;

H make(index_t d, index_t F, int M, bool renorm, double cf = 1.2) {
    std::vector<Gate> gates;
    std::vector<X> experts;
    for (int m = 0; m < M; ++m) {
        gates.push_back(Gate::random(4, d, 100 + m));
        experts.push_back(X::random(4, d, F, 200 + m));
    }
    HierarchicalOptions o;
    o.renormalize = renorm;
    o.capacity_factor_modal = cf;
    o.capacity_factor_collab = cf;
    return H(std::move(gates), std::move(experts), Gate::random(4, d, 300), X::random(4, d, F, 301),
             SharedExperts<X>(X::random(1, d, F, 302)), o);
}

// The branches run by hand on the sub-batches.
std::vector<float> expected(const H& h, const std::vector<float>& x, index_t d, const std::vector<ModalityChunk>& chunks,
                            double cf, bool renorm) {
    const index_t T = static_cast<index_t>(x.size()) / d;
    std::vector<float> y(x.size(), 0.0f), tmp(x.size());
    auto branch = [&](const Gate& g, const X& experts, const float* xs, index_t n, float* out) {
        TopKOptions o;
        o.k = 1;
        o.renormalize = renorm;
        o.capacity_factor = cf;
        TopKRouter<SoftmaxScores> r(g, o);
        X e = experts;
        RoutingPlan p;
        r.route({xs, n, d}, p);
        std::vector<float> yb(static_cast<std::size_t>(n * d));
        e.forward({xs, n, d}, p, {yb.data(), n, d});
        for (index_t i = 0; i < n * d; ++i) out[i] += yb[static_cast<std::size_t>(i)];
    };
    branch(h.collab_router().gate(), h.collab_experts(), x.data(), T, y.data());
    for (const auto& c : chunks)
        branch(h.modal_router(c.modality).gate(), h.modal_experts(c.modality), x.data() + c.begin * d, c.end - c.begin,
               y.data() + c.begin * d);
    X s = h.shared().experts();
    RoutingPlan p;
    p.reset(T, 1, 1);
    std::fill(p.expert_ids.begin(), p.expert_ids.end(), 0);
    std::fill(p.weights.begin(), p.weights.end(), 1.0f);
    p.finalize();
    s.forward({x.data(), T, d}, p, {tmp.data(), T, d});
    for (std::size_t i = 0; i < y.size(); ++i) y[i] += tmp[i];
    return y;
}

double rel(const std::vector<float>& a, const std::vector<float>& b) {
    double n = 0, z = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        n += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        z += double(b[i]) * b[i];
    }
    return std::sqrt(n / z);
}
}  // namespace

TEST_CASE("hierarchical layer = modal branch + collaborative branch + shared expert", "[hierarchical]") {
    const index_t d = 32, F = 64, per = 40;
    for (bool renorm : {true, false}) {
        H h = make(d, F, 4, renorm);
        const index_t T = 4 * per;
        auto x = randn(static_cast<std::size_t>(T * d), 1);
        std::vector<ModalityChunk> chunks;
        for (int m = 0; m < 4; ++m) chunks.push_back({m * per, (m + 1) * per, m});
        std::vector<float> y(x.size());
        h.forward({x.data(), T, d}, chunks, {y.data(), T, d});
        INFO("renormalize = " << renorm);
        REQUIRE(rel(y, expected(h, x, d, chunks, 1.2, renorm)) < 1e-6);
        // per-modality capacity counts only that modality's tokens: ceil(1 * 40 * 1.2 / 4) = 12
        for (int m = 0; m < 4; ++m) {
            REQUIRE(h.modal_plan(m).capacity == 12);
            h.modal_plan(m).validate();
        }
        REQUIRE(h.collab_plan().capacity == 48);  // ceil(160 * 1.2 / 4)
        // top-1 with renormalisation: every kept weight is exactly 1
        if (renorm)
            for (float w : h.collab_plan().slot_weights) REQUIRE(w == 1.0f);
        else
            for (float w : h.collab_plan().slot_weights) REQUIRE(w < 1.0f);
    }
}

TEST_CASE("modality per token equals contiguous chunks; order of modalities may vary", "[hierarchical]") {
    const index_t d = 16, F = 32;
    H h = make(d, F, 3, true);
    const index_t T = 30;
    auto x = randn(static_cast<std::size_t>(T * d), 2);
    std::vector<ModalityChunk> chunks{{0, 10, 2}, {10, 18, 0}, {18, 30, 1}};
    std::vector<std::int32_t> ids(static_cast<std::size_t>(T));
    for (const auto& c : chunks)
        for (index_t t = c.begin; t < c.end; ++t) ids[static_cast<std::size_t>(t)] = c.modality;
    std::vector<float> a(x.size()), b(x.size());
    h.forward({x.data(), T, d}, chunks, {a.data(), T, d});
    h.forward({x.data(), T, d}, ids, {b.data(), T, d});
    REQUIRE(a == b);
    REQUIRE(rel(a, expected(h, x, d, chunks, 1.2, true)) < 1e-6);
}

TEST_CASE("an unknown modality is an error naming the token", "[hierarchical]") {
    const index_t d = 8;
    H h = make(d, 16, 2, true);
    auto x = randn(static_cast<std::size_t>(4 * d), 3);
    std::vector<float> y(x.size());
    std::vector<std::int32_t> ids{0, 1, 2, 0};
    REQUIRE_THROWS_WITH(h.forward({x.data(), 4, d}, ids, {y.data(), 4, d}),
                        Catch::Contains("token 2") && Catch::Contains("modality 2"));
    std::vector<ModalityChunk> bad{{0, 2, 0}, {3, 4, 1}};
    REQUIRE_THROWS_AS(h.forward({x.data(), 4, d}, bad, {y.data(), 4, d}), ShapeError);
    std::vector<ModalityChunk> neg{{0, 4, -1}};
    REQUIRE_THROWS_AS(h.forward({x.data(), 4, d}, neg, {y.data(), 4, d}), ConfigError);
}

TEST_CASE("group aux loss is mean_e(f_e P_e) c^2 and the layer loss weights it", "[hierarchical]") {
    // Hand-derived: 2 tokens, 2 experts, logits give p = (.25, .75) and (.75, .25); first
    // choices are expert 1 then expert 0: f = (.5, .5), P = (.5, .5) -> mean = .25 -> * 64 = 16.
    const float l[] = {0.0f, std::log(3.0f), std::log(3.0f), 0.0f};
    auto r = softmax_topk_router(Gate::random(2, 1, 0), 1);
    RoutingPlan p;
    r.route_logits({l, 2, 2}, p);
    REQUIRE(switch_group_loss({l, 2, 2}, p, 8.0) == Approx(16.0));

    const index_t d = 16;
    H h = make(d, 32, 2, true);
    auto x = randn(static_cast<std::size_t>(20 * d), 4);
    std::vector<float> y(x.size());
    std::vector<ModalityChunk> chunks{{0, 20, 1}};  // modality 0 absent
    h.forward({x.data(), 20, d}, chunks, {y.data(), 20, d});
    const auto& L = h.losses();
    REQUIRE_FALSE(L.present[0]);
    REQUIRE(L.present[1]);
    REQUIRE(L.total == Approx(0.001 * (L.collab + L.modal[1])));
    REQUIRE(L.modal[1] == Approx(switch_group_loss(h.modal_router(1).last_logits(), h.modal_plan(1), 8.0)));
}
