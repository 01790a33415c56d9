// The fused routing kernel against an independent, obviously-correct routing written here
// (full softmax/sigmoid, stable sort by (score desc, index asc)), on random and adversarial
// logits: ties, near-ties that differ only in the low mantissa bits, -inf, padding shapes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "moe/backend/cpu/routing.hpp"
#include "random_inputs.hpp"

namespace moe_test_routing_kernel {  // this file's names (unity builds merge test files)

using namespace moe;
using moe::Scoring;
using moe::RouteRule;

namespace {

struct Expected {
    std::vector<std::int32_t> ids;
    std::vector<float> w;
};

// Independent reference in double precision: the textbook definition.
Expected reference_route(const std::vector<float>& logits, index_t T, index_t E, const RouteRule& s) {
    Expected out;
    for (index_t t = 0; t < T; ++t) {
        const float* l = logits.data() + t * E;
        std::vector<double> p(static_cast<std::size_t>(E)), sel(static_cast<std::size_t>(E));
        double m = -INFINITY;
        for (index_t e = 0; e < E; ++e) m = std::max(m, double(l[e]));
        double z = 0;
        for (index_t e = 0; e < E; ++e) z += std::exp(double(l[e]) - m);
        for (index_t e = 0; e < E; ++e) {
            p[e] = s.scoring == Scoring::softmax ? std::exp(double(l[e]) - m) / z : 1.0 / (1.0 + std::exp(-double(l[e])));
            // selection key: logits for bias-free softmax (monotone), score (+bias) otherwise
            sel[e] = (s.scoring == Scoring::softmax && s.bias.empty()) ? double(l[e]) : p[e];
            if (!s.bias.empty()) sel[e] = double(float(float(p[e]) + s.bias[e]));
        }
        if (s.groups > 1) {
            const index_t gs = E / s.groups;
            std::vector<double> gscore(static_cast<std::size_t>(s.groups));
            for (index_t g = 0; g < s.groups; ++g) {
                std::vector<double> v(sel.begin() + g * gs, sel.begin() + (g + 1) * gs);
                std::sort(v.rbegin(), v.rend());
                gscore[g] = s.group_score == GroupScore::max || gs == 1 ? v[0] : v[0] + v[1];
            }
            std::vector<index_t> go(static_cast<std::size_t>(s.groups));
            std::iota(go.begin(), go.end(), 0);
            std::stable_sort(go.begin(), go.end(), [&](index_t a, index_t b) { return gscore[a] > gscore[b]; });
            std::vector<bool> keep(static_cast<std::size_t>(s.groups));
            for (index_t i = 0; i < s.topk_groups; ++i) keep[go[i]] = true;
            for (index_t e = 0; e < E; ++e)
                if (!keep[e / gs]) sel[e] = s.group_mask_value;
        }
        std::vector<index_t> order(static_cast<std::size_t>(E));
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) { return sel[a] > sel[b]; });
        double sum = 0;
        for (index_t j = 0; j < s.k; ++j) sum += p[order[j]];
        for (index_t j = 0; j < s.k; ++j) {
            out.ids.push_back(static_cast<std::int32_t>(order[j]));
            const double denom = s.renormalize ? sum + s.renorm_eps : 1.0;
            out.w.push_back(static_cast<float>(p[order[j]] / denom * s.scale));
        }
    }
    return out;
}

void compare(const std::vector<float>& logits, index_t T, index_t E, const RouteRule& s, double tol = 2e-6) {
    std::vector<std::int32_t> ids(static_cast<std::size_t>(T * s.k));
    std::vector<float> w(ids.size());
    cpu::RouteWorkspace ws;
    cpu::topk_route(ConstMatrixRef<float>(logits.data(), T, E), s, ids.data(), w.data(), ws, Exec(1));
    const Expected ref = reference_route(logits, T, E, s);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        INFO("T=" << T << " E=" << E << " k=" << s.k << " token " << i / s.k << " slot " << i % s.k);
        REQUIRE(ids[i] == ref.ids[i]);
        REQUIRE(w[i] == Approx(ref.w[i]).epsilon(tol).margin(1e-7));
    }
}

using moe_test::randn;

}  // namespace

TEST_CASE("fused top-k routing equals the textbook definition on random logits", "[routing]") {
    for (auto [E, k] : std::vector<std::pair<index_t, index_t>>{
             {8, 2}, {8, 1}, {64, 8}, {128, 8}, {256, 8}, {6, 2}, {13, 3}, {9, 8}, {8, 8}, {3, 3}, {64, 5}, {32, 4}, {1, 1}}) {
        for (bool renorm : {true, false}) {
            RouteRule s;
            s.k = k;
            s.renormalize = renorm;
            s.scale = renorm ? 1.0f : 2.5f;
            for (index_t T : {1, 7, 8, 17, 64}) compare(randn(static_cast<std::size_t>(T * E), unsigned(T * 131 + E)), T, E, s);
        }
    }
}

TEST_CASE("ties go to the lower expert index", "[routing]") {
    RouteRule s;
    s.k = 2;
    // all equal: experts 0 and 1
    std::vector<float> l(8 * 16, 0.5f);
    compare(l, 16, 8, s);
    // a three-way tie for the top two places in the middle
    for (index_t t = 0; t < 16; ++t) {
        l[t * 8 + 3] = 2.0f;
        l[t * 8 + 5] = 2.0f;
        l[t * 8 + 6] = 2.0f;
    }
    compare(l, 16, 8, s);
    // negative zero and zero tie as in torch
    std::vector<float> z(8 * 8, -1.0f);
    for (index_t t = 0; t < 8; ++t) {
        z[t * 8 + 2] = -0.0f;
        z[t * 8 + 4] = 0.0f;
    }
    s.k = 1;
    compare(z, 8, 8, s);
}

TEST_CASE("values that differ only in their lowest mantissa bits are ordered exactly", "[routing]") {
    // The SIMD keys drop the low bits; these rows make every key tie and must be resolved exactly.
    const index_t E = 64, T = 40;
    std::vector<float> l(static_cast<std::size_t>(T * E));
    std::mt19937 rng(7);
    for (index_t t = 0; t < T; ++t)
        for (index_t e = 0; e < E; ++e) {
            std::uint32_t bits = std::bit_cast<std::uint32_t>(1.0f + float(t % 3));
            bits += static_cast<std::uint32_t>(rng() % 64);  // same high bits, random low 6 bits
            l[static_cast<std::size_t>(t * E + e)] = (t % 2 ? -1.0f : 1.0f) * std::bit_cast<float>(bits);
        }
    for (index_t k : {1, 2, 4, 8}) {
        RouteRule s;
        s.k = k;
        compare(l, T, E, s);
    }
}

TEST_CASE("-inf logits are allowed and never chosen before finite ones; NaN and +inf are errors", "[routing]") {
    const index_t E = 16, T = 9;
    auto l = randn(static_cast<std::size_t>(T * E), 3);
    for (index_t t = 0; t < T; ++t)
        for (index_t e = 0; e < E; e += 2) l[static_cast<std::size_t>(t * E + e)] = -INFINITY;
    RouteRule s;
    s.k = 4;
    compare(l, T, E, s);

    std::vector<std::int32_t> ids(static_cast<std::size_t>(T * 4));
    std::vector<float> w(ids.size());
    cpu::RouteWorkspace ws;
    auto bad = l;
    bad[5 * E + 3] = NAN;
    REQUIRE_THROWS_AS(cpu::topk_route(ConstMatrixRef<float>(bad.data(), T, E), s, ids.data(), w.data(), ws, Exec(1)), ValueError);
    REQUIRE_THROWS_WITH(cpu::topk_route(ConstMatrixRef<float>(bad.data(), T, E), s, ids.data(), w.data(), ws, Exec(1)),
                        Catch::Contains("token 5") && Catch::Contains("expert 3"));
    bad[5 * E + 3] = INFINITY;
    REQUIRE_THROWS_AS(cpu::topk_route(ConstMatrixRef<float>(bad.data(), T, E), s, ids.data(), w.data(), ws, Exec(1)), ValueError);
    std::vector<float> all_ninf(static_cast<std::size_t>(E), -INFINITY);
    REQUIRE_THROWS_AS(cpu::topk_route(ConstMatrixRef<float>(all_ninf.data(), 1, E), s, ids.data(), w.data(), ws, Exec(1)), ValueError);
}

TEST_CASE("k larger than the expert count and other bad specs are rejected", "[routing]") {
    std::vector<float> l(8 * 4, 0.0f);
    std::vector<std::int32_t> ids(64);
    std::vector<float> w(64);
    cpu::RouteWorkspace ws;
    RouteRule s;
    s.k = 9;
    REQUIRE_THROWS_WITH(cpu::topk_route(ConstMatrixRef<float>(l.data(), 4, 8), s, ids.data(), w.data(), ws),
                        Catch::Contains("k = 9") && Catch::Contains("expert count"));
    s.k = 0;
    REQUIRE_THROWS_AS(cpu::topk_route(ConstMatrixRef<float>(l.data(), 4, 8), s, ids.data(), w.data(), ws), ConfigError);
    s.k = 2;
    s.groups = 3;
    REQUIRE_THROWS_AS(cpu::topk_route(ConstMatrixRef<float>(l.data(), 4, 8), s, ids.data(), w.data(), ws), ConfigError);
    std::vector<float> bias(5);
    s.groups = 1;
    s.bias = bias;
    REQUIRE_THROWS_AS(cpu::topk_route(ConstMatrixRef<float>(l.data(), 4, 8), s, ids.data(), w.data(), ws), ConfigError);
}

TEST_CASE("sigmoid scores with selection bias and group-limited choice (DeepSeek-V3 rule)", "[routing]") {
    const index_t E = 64, T = 33;
    auto l = randn(static_cast<std::size_t>(T * E), 11, 2.0f);
    auto bias = randn(static_cast<std::size_t>(E), 12, 0.3f);
    RouteRule s;
    s.k = 8;
    s.scoring = Scoring::sigmoid;
    s.bias = bias;
    s.groups = 8;
    s.topk_groups = 4;
    s.scale = 2.5f;
    compare(l, T, E, s);
    s.group_score = GroupScore::max;
    compare(l, T, E, s);
    s.renormalize = false;
    compare(l, T, E, s);
    s.bias = {};
    s.groups = 1;
    s.topk_groups = 1;
    compare(l, T, E, s);
}

TEST_CASE("softmax with selection bias chooses by probability plus bias", "[routing]") {
    const index_t E = 16, T = 20;
    auto l = randn(static_cast<std::size_t>(T * E), 21);
    std::vector<float> bias(static_cast<std::size_t>(E), 0.0f);
    bias[15] = 1.0f;  // expert 15 always chosen first
    RouteRule s;
    s.k = 2;
    s.bias = bias;
    compare(l, T, E, s);
}

TEST_CASE("threaded routing equals single-threaded routing", "[routing]") {
    const index_t E = 64, T = 5000;
    auto l = randn(static_cast<std::size_t>(T * E), 5);
    RouteRule s;
    s.k = 8;
    std::vector<std::int32_t> a(static_cast<std::size_t>(T * 8)), b(a.size());
    std::vector<float> wa(a.size()), wb(a.size());
    cpu::RouteWorkspace ws;
    cpu::topk_route(ConstMatrixRef<float>(l.data(), T, E), s, a.data(), wa.data(), ws, Exec(1));
    cpu::topk_route(ConstMatrixRef<float>(l.data(), T, E), s, b.data(), wb.data(), ws, Exec(2));
    REQUIRE(a == b);
    REQUIRE(wa == wb);
}

}  // namespace moe_test_routing_kernel
