// Routers, expert containers and MoELayer against a naive double-precision composition written
// here from the definitions (softmax, top-k by (score, lower index), renormalisation, per-token
// expert evaluation), plus capacity, shared experts, bf16 weights, threads and bad input.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "moe/moe.hpp"
#include "random_inputs.hpp"

namespace moe_test_layer {  // this file's names (unity builds merge test files)

using namespace moe;

namespace {

using moe_test::randn;

template <class W>
std::vector<double> mlp_ref(const LinearStack<W>& fc1, const LinearStack<W>& fc2, index_t e, const float* x, bool gelu) {
    const index_t d = fc1.in_features(), F = fc1.out_features();
    std::vector<double> h(static_cast<std::size_t>(F)), y(static_cast<std::size_t>(d));
    for (index_t f = 0; f < F; ++f) {
        double s = fc1.bias(e) ? fc1.bias(e)[f] : 0.0;
        for (index_t i = 0; i < d; ++i) s += double(x[i]) * double(to_float(fc1.weight(e)(f, i)));
        h[static_cast<std::size_t>(f)] = gelu ? 0.5 * s * (1 + std::erf(s / std::sqrt(2.0))) : s;
    }
    for (index_t o = 0; o < d; ++o) {
        double s = fc2.bias(e) ? fc2.bias(e)[o] : 0.0;
        for (index_t f = 0; f < F; ++f) s += h[static_cast<std::size_t>(f)] * double(to_float(fc2.weight(e)(o, f)));
        y[static_cast<std::size_t>(o)] = s;
    }
    return y;
}

template <class W>
std::vector<double> glu_ref(const GluExperts<Silu, W>& X, index_t e, const float* x) {
    const index_t d = X.hidden_size(), F = X.ffn_size();
    std::vector<double> h(static_cast<std::size_t>(F)), y(static_cast<std::size_t>(d));
    for (index_t f = 0; f < F; ++f) {
        double g = 0, u = 0;
        for (index_t i = 0; i < d; ++i) {
            g += double(x[i]) * double(to_float(X.gate().weight(e)(f, i)));
            u += double(x[i]) * double(to_float(X.up().weight(e)(f, i)));
        }
        h[static_cast<std::size_t>(f)] = g / (1 + std::exp(-g)) * u;
    }
    for (index_t o = 0; o < d; ++o) {
        double s = 0;
        for (index_t f = 0; f < F; ++f) s += h[static_cast<std::size_t>(f)] * double(to_float(X.down().weight(e)(o, f)));
        y[static_cast<std::size_t>(o)] = s;
    }
    return y;
}

// Softmax top-k routing in double: (expert, weight) per choice.
std::vector<std::pair<index_t, double>> route_ref(const Gate& g, const float* x, index_t k, bool renorm) {
    const index_t E = g.num_experts(), d = g.hidden_size();
    std::vector<double> l(static_cast<std::size_t>(E));
    for (index_t e = 0; e < E; ++e) {
        double s = 0;
        for (index_t i = 0; i < d; ++i) s += double(x[i]) * g.weight()(e, i);
        l[static_cast<std::size_t>(e)] = s;
    }
    const double m = *std::max_element(l.begin(), l.end());
    double z = 0;
    for (double v : l) z += std::exp(v - m);
    std::vector<index_t> order(static_cast<std::size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) { return l[a] > l[b]; });
    std::vector<std::pair<index_t, double>> out;
    double sum = 0;
    for (index_t j = 0; j < k; ++j) sum += std::exp(l[order[j]] - m) / z;
    for (index_t j = 0; j < k; ++j)
        out.push_back({order[j], std::exp(l[order[j]] - m) / z / (renorm ? sum : 1.0)});
    return out;
}

double rel_err(const float* a, const std::vector<double>& b) {
    double n = 0, d = 0;
    for (std::size_t i = 0; i < b.size(); ++i) {
        n += (a[i] - b[i]) * (a[i] - b[i]);
        d += b[i] * b[i];
    }
    return std::sqrt(n / d);
}

}  // namespace

TEST_CASE("MoELayer<softmax top-k, GELU-MLP experts> equals the naive composition", "[layer]") {
    const index_t T = 37, d = 48, F = 96, E = 6, k = 2;
    auto x = randn(static_cast<std::size_t>(T * d), 1);
    for (bool renorm : {true, false}) {
        MoELayer layer(softmax_topk_router(Gate::random(E, d, 2), k, renorm), MlpExperts<Gelu>::random(E, d, F, 3));
        std::vector<float> y(x.size());
        layer.forward({x.data(), T, d}, {y.data(), T, d});
        layer.plan().validate();
        std::vector<double> ref(x.size(), 0.0);
        for (index_t t = 0; t < T; ++t)
            for (auto [e, w] : route_ref(layer.router().gate(), x.data() + t * d, k, renorm)) {
                auto ye = mlp_ref(layer.experts().fc1(), layer.experts().fc2(), e, x.data() + t * d, true);
                for (index_t i = 0; i < d; ++i) ref[static_cast<std::size_t>(t * d + i)] += w * ye[static_cast<std::size_t>(i)];
            }
        INFO("renormalize = " << renorm);
        REQUIRE(rel_err(y.data(), ref) < 1e-6);
    }
}

TEST_CASE("SwiGLU experts (fp32, bf16) with a shared expert equal the naive composition", "[layer]") {
    const index_t T = 20, d = 32, F = 40, E = 4, k = 2;
    auto x = randn(static_cast<std::size_t>(T * d), 4);
    auto run = [&](auto w_tag) {
        using W = decltype(w_tag);
        using X = GluExperts<Silu, W>;
        MoELayer layer(softmax_topk_router(Gate::random(E, d, 5), k), X::random(E, d, F, 6),
                       SharedExperts<X>(X::random(1, d, F, 7)));
        std::vector<float> y(x.size());
        layer.forward({x.data(), T, d}, {y.data(), T, d});
        std::vector<double> ref(x.size(), 0.0);
        for (index_t t = 0; t < T; ++t) {
            for (auto [e, w] : route_ref(layer.router().gate(), x.data() + t * d, k, true)) {
                auto ye = glu_ref(layer.experts(), e, x.data() + t * d);
                for (index_t i = 0; i < d; ++i) ref[static_cast<std::size_t>(t * d + i)] += w * ye[static_cast<std::size_t>(i)];
            }
            auto ys = glu_ref(layer.shared().experts(), 0, x.data() + t * d);
            for (index_t i = 0; i < d; ++i) ref[static_cast<std::size_t>(t * d + i)] += ys[static_cast<std::size_t>(i)];
        }
        REQUIRE(rel_err(y.data(), ref) < 1e-6);  // the reference uses the same (rounded) weights
    };
    run(float{});
    run(bf16{});
}

TEST_CASE("Switch capacity drops overflow tokens, which then get no routed output", "[layer]") {
    const index_t T = 40, d = 16, F = 32, E = 4;
    auto x = randn(static_cast<std::size_t>(T * d), 8);
    MoELayer layer(switch_router(Gate::random(E, d, 9), 0.5), MlpExperts<Gelu>::random(E, d, F, 10));
    std::vector<float> y(x.size());
    layer.forward({x.data(), T, d}, {y.data(), T, d});
    const auto& p = layer.plan();
    p.validate();
    REQUIRE(p.capacity == 5);  // ceil(1 * 40 * 0.5 / 4)
    REQUIRE(p.num_slots() + static_cast<index_t>(p.dropped.size()) == T);
    for (auto c : p.dropped)
        for (index_t i = 0; i < d; ++i) REQUIRE(y[static_cast<std::size_t>(c * d + i)] == 0.0f);  // k = 1: choice c is token c
    // kept tokens: weight is the raw probability (no renormalisation)
    for (index_t t = 0; t < T; ++t)
        if (p.token_to_slot[static_cast<std::size_t>(t)] >= 0) REQUIRE(p.weights[static_cast<std::size_t>(t)] < 1.0f);
}

TEST_CASE("results do not depend on the thread count", "[layer]") {
    const index_t T = 300, d = 64, F = 128, E = 8;
    auto x = randn(static_cast<std::size_t>(T * d), 11);
    MoELayer layer(softmax_topk_router(Gate::random(E, d, 12), 2), MlpExperts<Gelu>::random(E, d, F, 13));
    std::vector<float> y1(x.size()), y2(x.size());
    layer.set_exec(Exec(1));
    layer.forward({x.data(), T, d}, {y1.data(), T, d});
    layer.set_exec(Exec(2));
    layer.forward({x.data(), T, d}, {y2.data(), T, d});
    REQUIRE(y1 == y2);
}

// Expert containers that can run one expert on several threads (ThreadedGroupedExpertSet): the
// threaded expert_forward gives the single-threaded one's bits, and a grouped forward with fewer
// experts than threads (a decode step routed to one expert) equals the 1-thread forward.
template <class X>
void check_threaded_expert(const X& experts, std::uint64_t seed) {
    const index_t d = experts.hidden_size();
    STATIC_REQUIRE(ThreadedGroupedExpertSet<X>);
    for (index_t n : {1, 3, 8, 9, 40}) {
        const auto x = randn(static_cast<std::size_t>(n * d), seed + static_cast<std::uint64_t>(n));
        std::vector<float> y1(x.size()), y2(x.size(), -1.0f);
        ExpertScratch s1, s2;
        for (index_t e = 0; e < experts.num_experts(); ++e) {
            experts.expert_forward(e, {x.data(), n, d}, {y1.data(), n, d}, s1);
            experts.expert_forward(e, {x.data(), n, d}, {y2.data(), n, d}, s2, Exec(2));
            INFO("rows " << n << ", expert " << e);
            REQUIRE(y1 == y2);
        }
    }
}

template <class X>
void check_one_expert_step(X experts, std::uint64_t seed) {
    const index_t d = experts.hidden_size(), E = experts.num_experts();
    for (index_t T : {1, 2}) {  // every token on expert 1 (T = 1: one block; T = 2: one block of 2)
        const auto x = randn(static_cast<std::size_t>(T * d), seed + static_cast<std::uint64_t>(T));
        RoutingPlan plan;
        plan.reset(T, E, 1);
        for (index_t t = 0; t < T; ++t) plan.expert_ids[static_cast<std::size_t>(t)] = 1, plan.weights[static_cast<std::size_t>(t)] = 0.75f;
        plan.finalize();
        std::vector<float> y1(x.size()), y2(x.size(), -1.0f), ref(x.size());
        experts.forward({x.data(), T, d}, plan, {y1.data(), T, d}, Combine::overwrite, Exec(1));
        experts.forward({x.data(), T, d}, plan, {y2.data(), T, d}, Combine::overwrite, Exec(2));
        REQUIRE(y1 == y2);
        ExpertScratch s;
        experts.expert_forward(1, {x.data(), T, d}, {ref.data(), T, d}, s);
        for (std::size_t i = 0; i < ref.size(); ++i) REQUIRE(y1[i] == 0.75f * ref[i]);  // the weight times the expert
    }
}

TEST_CASE("one expert on several threads: bit-identical to one thread (GLU and MLP experts, every weight policy)",
          "[layer]") {
    // Matrices of 256 x 1024 = 2^18 elements: Linear splits them between threads even for 1-8 rows.
    const index_t E = 3, d = 256, F = 1024;
    check_threaded_expert(GluExperts<Silu>::random(E, d, F, 31), 41);
    check_threaded_expert(GluExperts<Silu, bf16>::random(E, d, F, 32), 42);
    check_threaded_expert(GluExperts<Silu, bf16_dot>::random(E, d, F, 33), 43);
    check_threaded_expert(GluExperts<Silu, int8_dot>::random(E, d, F, 34), 44);
    check_threaded_expert(MlpExperts<Gelu, bf16>::random(E, d, F, 35), 45);
    check_one_expert_step(GluExperts<Silu, bf16>::random(E, d, F, 36), 46);
    check_one_expert_step(MlpExperts<Gelu>::random(E, d, F, 37), 47);
}

TEST_CASE("k is adjustable at run time and validated", "[router]") {
    auto r = softmax_topk_router(Gate::random(8, 16, 1), 2);
    r.set_k(5);
    REQUIRE(r.k() == 5);
    REQUIRE_THROWS_WITH(r.set_k(9), Catch::Contains("k = 9") && Catch::Contains("expert count"));
    REQUIRE(r.k() == 5);
    REQUIRE_THROWS_AS(r.set_k(0), ConfigError);
    auto x = randn(16 * 3, 2);
    RoutingPlan p;
    r.route({x.data(), 3, 16}, p);
    REQUIRE(p.k == 5);
    p.validate();
    REQUIRE_THROWS_AS(r.route({x.data(), 4, 12}, p), ShapeError);
}

TEST_CASE("a NaN in the input is an error naming the token", "[router]") {
    auto r = softmax_topk_router(Gate::random(4, 8, 1), 2);
    auto x = randn(8 * 5, 3);
    x[3 * 8 + 2] = NAN;
    RoutingPlan p;
    REQUIRE_THROWS_WITH(r.route({x.data(), 5, 8}, p), Catch::Contains("token 3"));
}

TEST_CASE("expert-choice routing: each expert takes its top-c tokens by probability", "[router]") {
    const index_t T = 30, d = 12, E = 5;
    auto x = randn(static_cast<std::size_t>(T * d), 14);
    ExpertChoiceRouter r(Gate::random(E, d, 15), 2.0);
    RoutingPlan p;
    r.route({x.data(), T, d}, p);
    p.validate();
    REQUIRE(p.capacity == 12);  // ceil(30 * 2 / 5)
    for (index_t e = 0; e < E; ++e) REQUIRE(p.counts[static_cast<std::size_t>(e)] == 12);
    // every taken token has probability >= every token the expert did not take
    for (index_t e = 0; e < E; ++e) {
        std::vector<double> prob(static_cast<std::size_t>(T));
        for (index_t t = 0; t < T; ++t) {
            auto rr = route_ref(r.gate(), x.data() + t * d, E, false);
            for (auto [ee, w] : rr)
                if (ee == e) prob[static_cast<std::size_t>(t)] = w;
        }
        double min_taken = 1, max_left = 0;
        std::vector<bool> taken(static_cast<std::size_t>(T));
        for (auto s = p.begin(e); s < p.end(e); ++s) {
            const auto t = p.slot_to_token[static_cast<std::size_t>(s)];
            taken[static_cast<std::size_t>(t)] = true;
            min_taken = std::min(min_taken, prob[static_cast<std::size_t>(t)]);
            REQUIRE(p.slot_weights[static_cast<std::size_t>(s)] == Approx(prob[static_cast<std::size_t>(t)]).epsilon(1e-5));
        }
        for (index_t t = 0; t < T; ++t)
            if (!taken[static_cast<std::size_t>(t)]) max_left = std::max(max_left, prob[static_cast<std::size_t>(t)]);
        REQUIRE(min_taken >= max_left);
    }
}

TEST_CASE("load-balancing loss and z-loss match their definitions", "[router]") {
    // Two tokens, two experts, k = 1; logits chosen so the probabilities are easy to write.
    const float l[] = {0.0f, std::log(3.0f), std::log(3.0f), 0.0f};  // p = (.25, .75), (.75, .25)
    auto r = softmax_topk_router(Gate::random(2, 1, 0), 1);
    RoutingPlan p;
    r.route_logits({l, 2, 2}, p);
    // f = (.5, .5), P = (.5, .5) -> 2 * (.25 + .25) = 1
    REQUIRE(load_balancing_loss({l, 2, 2}, p) == Approx(1.0));
    // logsumexp = log(4) for both tokens
    REQUIRE(z_loss({l, 2, 2}) == Approx(std::log(4.0) * std::log(4.0)));
}

// --- the concepts' minimal types: exactly the required members, nothing optional -------------

namespace {

// Expert e maps x to (e + 1) * x + e. Exactly ExpertSet's members: no threads argument, no
// share_scratch, no expert_forward.
class AffineExperts {
public:
    AffineExperts(index_t experts, index_t hidden) : E_(experts), d_(hidden) {}
    index_t num_experts() const { return E_; }
    index_t hidden_size() const { return d_; }
    index_t parameters() const { return 0; }
    void forward(ConstMatrixRef<float> x, const RoutingPlan& plan, MatrixRef<float> out, Combine combine) {
        check<ShapeError>(x.cols == d_ && out.rows == x.rows && out.cols == d_ && plan.num_tokens == x.rows &&
                              plan.num_experts == E_,
                          "AffineExperts", "shapes disagree");
        for (index_t t = 0; t < x.rows; ++t) {
            if (combine == Combine::overwrite)
                for (index_t i = 0; i < d_; ++i) out(t, i) = 0.0f;
            for (index_t j = 0; j < plan.k; ++j) {
                const auto c = static_cast<std::size_t>(t * plan.k + j);
                if (plan.token_to_slot[c] < 0) continue;  // dropped or empty
                const auto e = static_cast<float>(plan.expert_ids[c]);
                for (index_t i = 0; i < d_; ++i) out(t, i) += plan.weights[c] * ((e + 1) * x(t, i) + e);
            }
        }
    }

private:
    index_t E_, d_;
};

// Token t goes to expert t % E with weight 1. Exactly Router's members (no parameters()).
class ModuloRouter {
public:
    ModuloRouter(index_t experts, index_t hidden) : E_(experts), d_(hidden) {}
    index_t num_experts() const { return E_; }
    index_t hidden_size() const { return d_; }
    void route(ConstMatrixRef<float> x, RoutingPlan& plan) {
        plan.reset(x.rows, E_, 1);
        for (index_t t = 0; t < x.rows; ++t) {
            plan.expert_ids[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(t % E_);
            plan.weights[static_cast<std::size_t>(t)] = 1.0f;
        }
        plan.finalize();
    }

private:
    index_t E_, d_;
};

static_assert(ExpertSet<AffineExperts> && !ThreadedExpertSet<AffineExperts> && !ScratchSharing<AffineExperts>);
static_assert(Router<ModuloRouter>);
static_assert(ThreadedExpertSet<MlpExperts<Gelu>> && ScratchSharing<MlpExperts<Gelu>>);
static_assert(ThreadedExpertSet<GluExperts<Silu, bf16>> && ScratchSharing<GluExperts<Silu, bf16>>);

}  // namespace

TEST_CASE("a minimal ExpertSet and Router work in MoELayer, SharedExperts and HierarchicalMoE", "[layer][concepts]") {
    // Two tokens, d = 2: x0 = (2, 1), x1 = (0, 3).
    const std::vector<float> x = {2, 1, 0, 3};
    std::vector<float> y(4, -1.0f);

    SECTION("MoELayer with shared experts") {
        // routed: t0 -> expert 0 (x), t1 -> expert 1 (2x + 1); shared: both of its 2 experts,
        // x + (2x + 1) = 3x + 1. t0: (2, 1) + (7, 4) = (9, 5); t1: (1, 7) + (1, 10) = (2, 17).
        MoELayer layer(ModuloRouter(2, 2), AffineExperts(2, 2), SharedExperts<AffineExperts>(AffineExperts(2, 2)));
        layer.set_exec(Exec(2));
        layer.forward({x.data(), 2, 2}, {y.data(), 2, 2});
        REQUIRE(y == std::vector<float>{9, 5, 2, 17});
        REQUIRE(layer.parameters() == 0);
        auto other = layer.shared();
        layer.shared().share_scratch(other);  // no share_scratch in AffineExperts: nothing to share
    }
    SECTION("SharedExperts with a gate") {
        // gate g = (1, -1): t0 sigmoid(1), t1 sigmoid(-3), times the sum of experts 0..2:
        // x + (2x + 1) + (3x + 2) = 6x + 3.
        SharedExperts<AffineExperts> shared(AffineExperts(3, 2), {1.0f, -1.0f});
        std::fill(y.begin(), y.end(), 0.0f);
        shared.forward({x.data(), 2, 2}, {y.data(), 2, 2}, Exec(2));
        const double s0 = 1 / (1 + std::exp(-1.0)), s1 = 1 / (1 + std::exp(3.0));
        REQUIRE(y[0] == Approx(s0 * 15));
        REQUIRE(y[1] == Approx(s0 * 9));
        REQUIRE(y[2] == Approx(s1 * 3));
        REQUIRE(y[3] == Approx(s1 * 21));
    }
    SECTION("HierarchicalMoE") {
        // modal gate = identity: t0 (logits 2, 1) -> expert 0, t1 (0, 3) -> expert 1;
        // collab gate = swap: t0 -> expert 1, t1 -> expert 0; top-1 weights are 1.
        // shared: one expert (x). t0: (2, 1) + (5, 3) + (2, 1) = (9, 5);
        // t1: (1, 7) + (0, 3) + (0, 3) = (1, 13).
        using H = HierarchicalMoE<AffineExperts, AffineExperts, SharedExperts<AffineExperts>>;
        const float id[] = {1, 0, 0, 1}, swap[] = {0, 1, 1, 0};
        std::vector<Gate> gates{Gate::from_values(2, 2, id)};
        std::vector<AffineExperts> modal{AffineExperts(2, 2)};
        H h(std::move(gates), std::move(modal), Gate::from_values(2, 2, swap), AffineExperts(2, 2),
            SharedExperts<AffineExperts>(AffineExperts(1, 2)), HierarchicalOptions{});
        h.set_exec(Exec(2));
        const std::int32_t ids[] = {0, 0};
        h.forward({x.data(), 2, 2}, std::span<const std::int32_t>(ids), {y.data(), 2, 2});
        REQUIRE(y == std::vector<float>{9, 5, 1, 13});
        const ModalityChunk chunk{0, 2, 0};
        std::fill(y.begin(), y.end(), -1.0f);
        h.forward({x.data(), 2, 2}, std::span<const ModalityChunk>(&chunk, 1), {y.data(), 2, 2});
        REQUIRE(y == std::vector<float>{9, 5, 1, 13});
        H other = h;
        h.share_scratch(other);
    }
}

TEST_CASE("loaders: a list of expert ids loads those experts only, in that order, read in place", "[layer][loaders]") {
    // Four GLU experts and four GELU MLP experts with biases under Hugging Face-style names.
    const index_t E = 4, d = 8, F = 12;
    const auto glu = GluExperts<Silu>::random(E, d, F, 5);
    const auto mlp = MlpExperts<Gelu>::random(E, d, F, 9);
    io::SafetensorsWriter w;
    std::vector<Tensor> keep;
    auto add = [&](const std::string& name, const float* p, index_t rows, index_t cols) {
        keep.push_back(Tensor::copy_of(TensorView(p, DType::f32, cols ? Shape{rows, cols} : Shape{rows})));
        w.add(name, keep.back().view());
    };
    keep.reserve(64);
    for (index_t e = 0; e < E; ++e) {
        const std::string g = "moe.experts." + std::to_string(e), m = "mlp.experts." + std::to_string(e);
        add(g + ".w1.weight", glu.gate().weight(e).data, F, d);
        add(g + ".w3.weight", glu.up().weight(e).data, F, d);
        add(g + ".w2.weight", glu.down().weight(e).data, d, F);
        add(m + ".fc1.weight", mlp.fc1().weight(e).data, F, d);
        add(m + ".fc1.bias", mlp.fc1().bias(e), F, 0);
        add(m + ".fc2.weight", mlp.fc2().weight(e).data, d, F);
        add(m + ".fc2.bias", mlp.fc2().bias(e), d, 0);
    }
    const auto f = io::SafetensorsFile::from_buffer(w.to_bytes(), "ckpt");
    const std::vector<index_t> ids{3, 1};
    const auto g2 = loaders::glu_experts<float>(f, "moe.experts.", std::span<const index_t>(ids), d, ".w1.weight",
                                                ".w3.weight", ".w2.weight");
    const auto m2 = loaders::gelu_mlp_experts<float>(f, "mlp.experts.", std::span<const index_t>(ids), d);
    REQUIRE(g2.num_experts() == 2);
    REQUIRE(m2.num_experts() == 2);
    // Local expert i is checkpoint expert ids[i], its weights the file's bytes in place.
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const std::string g = "moe.experts." + std::to_string(ids[i]);
        CHECK(static_cast<const void*>(g2.gate().weight(static_cast<index_t>(i)).data) == f.get(g + ".w1.weight").raw());
        CHECK(static_cast<const void*>(g2.down().weight(static_cast<index_t>(i)).data) == f.get(g + ".w2.weight").raw());
    }
    // ... and it computes what the whole set's experts 3 and 1 compute.
    const index_t T = 5;
    const auto x = randn(static_cast<std::size_t>(T * d), 3);
    std::vector<float> a(x.size()), b(x.size());
    ExpertScratch s1, s2;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        glu.expert_forward(ids[i], {x.data(), T, d}, {a.data(), T, d}, s1);
        g2.expert_forward(static_cast<index_t>(i), {x.data(), T, d}, {b.data(), T, d}, s2);
        CHECK(a == b);
        mlp.expert_forward(ids[i], {x.data(), T, d}, {a.data(), T, d}, s1);
        m2.expert_forward(static_cast<index_t>(i), {x.data(), T, d}, {b.data(), T, d}, s2);
        CHECK(a == b);
    }
    const std::vector<index_t> none;
    CHECK_THROWS_WITH(loaders::glu_experts<float>(f, "moe.experts.", std::span<const index_t>(none), d, ".w1.weight",
                                                  ".w3.weight", ".w2.weight"),
                      Catch::Contains("no experts to load"));
    const std::vector<index_t> missing{1, 7};
    CHECK_THROWS_WITH(loaders::gelu_mlp_experts<float>(f, "mlp.experts.", std::span<const index_t>(missing), d),
                      Catch::Contains("mlp.experts.7.fc1.weight"));
}

}  // namespace moe_test_layer
