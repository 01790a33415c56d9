// The hierarchical (RingMoE) layer: composition of its three branches, per-group capacity,
// modality given per token or per chunk, combine conventions, aux losses, bad modalities, a
// user-defined router in both routed groups, the constructors from routers and groups.
// Expectations are built from independently tested parts (TopKRouter, MlpExperts) run on the
// sub-batches by hand, and from hand-derived values.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "moe/layer/hierarchical.hpp"
#include "moe/moe.hpp"
#include "moe/prune/modality.hpp"
#include "random_inputs.hpp"

namespace moe_test_hierarchical {  // this file's names (unity builds merge test files)

using namespace moe;

namespace {
using moe_test::randn;
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

TEST_CASE("sequential routing through TopKRouter: hand-derived plan, weights and per-step loss", "[hierarchical]") {
    // Hand-derived (the released TopkRouter, k = 2): T = 2 tokens, E = 2 experts, both with
    // p = (.75, .25); capacity ceil(2 * 2 * 0.5 / 2) = 1.
    //   round 0: t0 -> 0 kept, t1 -> 0 dropped (full)
    //   round 1: t0 -> 1 kept; t1 asks expert 0 again (its choice 0 was dropped): dropped
    //   weights: t0 (.75, .25) / (1 + 1e-9) = (.75, .25); t1 (0, 0)
    //   loss, c = 8: step 0: f = (1, 0), P = (.75, .25) -> mean_e(f P) = .375
    //                step 1: f = (.5, .5); p_1(t0) = (0, .25) / .25 = (0, 1), p_1(t1) = (.75, .25)
    //                        (t1 kept nothing) -> P = (.375, .625) -> mean_e(f P) = .25
    //                (.375 + .25) * 64 = 40   (the first-choice Switch loss: .375 * 64 = 24)
    const float l[] = {std::log(3.0f), 0.0f, std::log(3.0f), 0.0f};
    TopKOptions o;
    o.k = 2;
    o.capacity_factor = 0.5;
    o.priority = CapacityPriority::sequential;
    o.renormalize_after_capacity = true;
    o.renorm_eps = 1e-9f;
    TopKRouter<SoftmaxScores> r(Gate::random(2, 1, 0), o);
    RoutingPlan p;
    r.route_logits({l, 2, 2}, p);
    p.validate();
    REQUIRE(p.capacity == 1);
    REQUIRE(p.expert_ids == std::vector<std::int32_t>{0, 1, 0, 0});
    REQUIRE(p.token_to_slot[2] < 0);
    REQUIRE(p.token_to_slot[3] < 0);
    REQUIRE(p.dropped == std::vector<std::int32_t>{2, 3});
    REQUIRE(p.weights[0] == Approx(0.75));
    REQUIRE(p.weights[1] == Approx(0.25));
    REQUIRE(p.weights[2] == 0.0f);
    REQUIRE(p.weights[3] == 0.0f);
    REQUIRE(sequential_group_loss({l, 2, 2}, p, 8.0) == Approx(40.0));
    REQUIRE(switch_group_loss({l, 2, 2}, p, 8.0) == Approx(24.0));

    // T = 4, E = 3, k = 2, capacity ceil(2 * 4 * 0.75 / 3) = 2, p = softmax(log p):
    //   t0 (.5, .2, .3)  t1 (.6, .15, .25)  t2 (.45, .4, .15)  t3 (.2, .1, .7)
    //   round 0: t0 -> 0, t1 -> 0 kept; t2 -> 0 dropped; t3 -> 2 kept
    //   round 1: t0 -> 2 kept; t1 -> 2 dropped; t2 -> 0 again, dropped (expert 1 had room);
    //            t3 -> 0 dropped
    //   weights: t0 (.625, .375); t1, t3 (1, 0): only their first choice is kept; t2 (0, 0)
    //   step 0: f = (3, 0, 1) / 4, P = (1.75, .85, 1.4) / 4 -> mean_e(f P) = .415625 / 3
    //   step 1: p_1 normalised: t0 (0, .4, .6), t1 (0, .375, .625), t2 (.45, .4, .15), t3 (2/3, 1/3, 0)
    //           f = (2, 0, 2) / 4, P = (1.116667, 1.508333, 1.375) / 4 -> mean_e(f P) = .311458 / 3
    //   loss = (.415625 + .3114583) / 3 * 64 = 15.5111 (the reference MoeModal.route gives 15.511112)
    const float l4[] = {std::log(.5f), std::log(.2f),  std::log(.3f),  std::log(.6f), std::log(.15f), std::log(.25f),
                        std::log(.45f), std::log(.4f), std::log(.15f), std::log(.2f), std::log(.1f),  std::log(.7f)};
    o.k = 2;
    o.capacity_factor = 0.75;
    TopKRouter<SoftmaxScores> r3(Gate::random(3, 1, 0), o);
    r3.route_logits({l4, 4, 3}, p);
    p.validate();
    REQUIRE(p.capacity == 2);
    REQUIRE(p.expert_ids == std::vector<std::int32_t>{0, 2, 0, 2, 0, 0, 2, 0});
    REQUIRE(p.dropped == std::vector<std::int32_t>{3, 4, 5, 7});
    REQUIRE(p.counts == std::vector<std::int32_t>{2, 0, 2});
    REQUIRE(p.weights[0] == Approx(0.625).epsilon(1e-6));
    REQUIRE(p.weights[1] == Approx(0.375).epsilon(1e-6));
    REQUIRE(p.weights[2] == 1.0f);  // t1 lost its second choice: 1, not .6 / .85
    REQUIRE(p.weights[6] == 1.0f);
    for (int c : {3, 4, 5, 7}) REQUIRE(p.weights[static_cast<std::size_t>(c)] == 0.0f);
    REQUIRE(sequential_group_loss({l4, 4, 3}, p, 8.0) == Approx(64.0 * (0.415625 + 0.31145833) / 3.0).epsilon(1e-6));

    // Without renormalize the weights are the raw probabilities (renormalize_after_capacity has no effect).
    o.renormalize = false;
    TopKRouter<SoftmaxScores> raw(Gate::random(3, 1, 0), o);
    raw.route_logits({l4, 4, 3}, p);
    REQUIRE(p.weights[2] == Approx(0.6).epsilon(1e-6));
    REQUIRE(p.weights[3] == Approx(0.25).epsilon(1e-6));
    REQUIRE(p.weights[5] == Approx(0.45).epsilon(1e-6));  // rewritten to expert 0 with its probability

    // At k = 1 the per-step loss is the Switch loss (up to the 1e-9 in its denominator).
    o.k = 1;
    o.renormalize = true;
    TopKRouter<SoftmaxScores> r1(Gate::random(3, 1, 0), o);
    r1.route_logits({l4, 4, 3}, p);
    REQUIRE(sequential_group_loss({l4, 4, 3}, p, 8.0) == Approx(switch_group_loss({l4, 4, 3}, p, 8.0)).epsilon(1e-8));
    for (float w : p.slot_weights) REQUIRE(w == 1.0f);
    REQUIRE_THROWS_WITH(sequential_group_loss({l4, 3, 4}, p, 8.0),
                        Catch::Contains("[3, 4]") && Catch::Contains("4 tokens to 3 experts"));
    REQUIRE_THROWS_WITH(switch_group_loss({l4, 3, 4}, p, 8.0),
                        Catch::Contains("[3, 4]") && Catch::Contains("4 tokens to 3 experts"));
}

TEST_CASE("hierarchical layer at k = 2 routes every group by the released TopkRouter rule", "[hierarchical]") {
    const index_t d = 16, F = 32, per = 30;
    for (bool renorm : {true, false}) {
        std::vector<Gate> gates;
        std::vector<X> experts;
        for (int m = 0; m < 2; ++m) {
            gates.push_back(Gate::random(4, d, 700 + m));
            experts.push_back(X::random(4, d, F, 710 + m));
        }
        HierarchicalOptions ho;
        ho.k_modal = ho.k_collab = 2;
        ho.capacity_factor_modal = ho.capacity_factor_collab = 0.6;
        ho.renormalize = renorm;
        H h(std::move(gates), std::move(experts), Gate::random(4, d, 720), X::random(4, d, F, 721),
            SharedExperts<X>(X::random(1, d, F, 722)), ho);
        const index_t T = 2 * per;
        auto x = randn(static_cast<std::size_t>(T * d), 9);
        std::vector<ModalityChunk> chunks{{0, per, 0}, {per, T, 1}};
        std::vector<float> y(x.size());
        h.forward({x.data(), T, d}, chunks, {y.data(), T, d});
        INFO("renormalize = " << renorm);
        // every group's plan is TopKRouter's with the sequential rule
        TopKOptions o;
        o.k = 2;
        o.capacity_factor = 0.6;
        o.renormalize = renorm;
        o.priority = CapacityPriority::sequential;
        o.renormalize_after_capacity = true;
        o.renorm_eps = 1e-9f;
        auto same_plan = [&](const Gate& g, const float* xs, index_t n, const RoutingPlan& got) {
            TopKRouter<SoftmaxScores> r(g, o);
            RoutingPlan want;
            r.route({xs, n, d}, want);
            got.validate();
            REQUIRE(got.expert_ids == want.expert_ids);
            REQUIRE(got.token_to_slot == want.token_to_slot);
            REQUIRE(got.weights == want.weights);
            REQUIRE(got.dropped == want.dropped);
            return sequential_group_loss(r.last_logits(), want, 8.0);
        };
        const double lc = same_plan(h.collab_router().gate(), x.data(), T, h.collab_plan());
        const double l0 = same_plan(h.modal_router(0).gate(), x.data(), per, h.modal_plan(0));
        const double l1 = same_plan(h.modal_router(1).gate(), x.data() + per * d, per, h.modal_plan(1));
        const auto& L = h.losses();
        REQUIRE(L.collab == lc);
        REQUIRE(L.modal[0] == l0);
        REQUIRE(L.modal[1] == l1);
        REQUIRE(L.total == Approx(0.001 * (lc + (l0 + l1) / 2)));
        // capacity 0.6 drops choices; some token keeps its first choice only (weight 1 when renormalised)
        REQUIRE_FALSE(h.collab_plan().dropped.empty());
        index_t only_first = 0;
        const auto& p = h.collab_plan();
        for (index_t t = 0; t < T; ++t) {
            const auto c = static_cast<std::size_t>(2 * t);
            if (p.token_to_slot[c] >= 0 && p.token_to_slot[c + 1] < 0) {
                ++only_first;
                if (renorm) REQUIRE(p.weights[c] == 1.0f);
            }
        }
        REQUIRE(only_first > 0);
    }
}

TEST_CASE("hierarchical layer: a collaborative router that does not fit its experts names both sizes",
          "[hierarchical]") {
    std::vector<Gate> gates;
    std::vector<X> experts;
    gates.push_back(Gate::random(4, 8, 1));
    experts.push_back(X::random(4, 8, 16, 2));
    REQUIRE_THROWS_WITH(H(std::move(gates), std::move(experts), Gate::random(3, 8, 3), X::random(4, 8, 16, 4),
                          SharedExperts<X>(X::random(1, 8, 16, 5)), HierarchicalOptions{}),
                        Catch::Contains("router over 3 experts taking 8 features") &&
                            Catch::Contains("expert set holds 4 experts taking 8"));
}


namespace {
// A user-defined router (no gate, no logits): token t's k choices are the k largest of its first
// E features (ties to the lower index), each weighted 1 / k; no capacity. It satisfies Router
// and nothing else (no k(), no last_logits(), no parameters(), no set_exec()).
class FeatureRouter {
public:
    FeatureRouter(index_t experts, index_t hidden, index_t k) : E_(experts), d_(hidden), k_(k) {}
    index_t num_experts() const { return E_; }
    index_t hidden_size() const { return d_; }
    void route(ConstMatrixRef<float> x, RoutingPlan& plan) const {
        check<ShapeError>(x.cols == d_, "FeatureRouter", "input has ", x.cols, " features, expected ", d_);
        plan.reset(x.rows, E_, k_);
        std::vector<bool> taken(static_cast<std::size_t>(E_));
        for (index_t t = 0; t < x.rows; ++t) {
            std::fill(taken.begin(), taken.end(), false);
            for (index_t j = 0; j < k_; ++j) {
                index_t best = -1;
                for (index_t e = 0; e < E_; ++e)
                    if (!taken[static_cast<std::size_t>(e)] && (best < 0 || x(t, e) > x(t, best))) best = e;
                taken[static_cast<std::size_t>(best)] = true;
                plan.expert_ids[static_cast<std::size_t>(t * k_ + j)] = static_cast<std::int32_t>(best);
                plan.weights[static_cast<std::size_t>(t * k_ + j)] = 1.0f / static_cast<float>(k_);
            }
        }
        plan.finalize();
    }

private:
    index_t E_, d_, k_;
};
static_assert(Router<FeatureRouter> && !TopKRouterLike<FeatureRouter> && !LogitRouter<FeatureRouter> &&
              !ExecAware<FeatureRouter> && !CountsParameters<FeatureRouter>);
static_assert(LogitRouter<TopKRouter<SoftmaxScores>> && ExecAware<TopKRouter<SoftmaxScores>> &&
              CountsParameters<TopKRouter<SoftmaxScores>> && TopKOptionsRouter<TopKRouter<SigmoidScores>>);
static_assert(ModalityAware<H> && !ModalityAware<MoELayer<TopKRouter<SoftmaxScores>, X>>);

// expert e of xs on one token, from the weights in double: W2 act(W1 x + b1) + b2.
std::vector<double> dense_expert(const X& xs, index_t e, const float* x) {
    const index_t d = xs.hidden_size(), F = xs.ffn_size();
    const auto W1 = xs.fc1().weight(e), W2 = xs.fc2().weight(e);
    const float *b1 = xs.fc1().bias(e), *b2 = xs.fc2().bias(e);
    std::vector<double> h(static_cast<std::size_t>(F)), y(static_cast<std::size_t>(d));
    for (index_t f = 0; f < F; ++f) {
        double a = b1 ? b1[f] : 0.0;
        for (index_t i = 0; i < d; ++i) a += double(to_float(W1(f, i))) * x[i];
        h[static_cast<std::size_t>(f)] = GeluTanh::scalar(static_cast<float>(a));
    }
    for (index_t i = 0; i < d; ++i) {
        double a = b2 ? b2[i] : 0.0;
        for (index_t f = 0; f < F; ++f) a += double(to_float(W2(i, f))) * h[static_cast<std::size_t>(f)];
        y[static_cast<std::size_t>(i)] = a;
    }
    return y;
}
// The k largest of the first E features, by sorting (ties to the lower index).
std::vector<index_t> top_features(const float* x, index_t E, index_t k) {
    std::vector<index_t> ids(static_cast<std::size_t>(E));
    for (index_t e = 0; e < E; ++e) ids[static_cast<std::size_t>(e)] = e;
    std::stable_sort(ids.begin(), ids.end(), [&](index_t a, index_t b) { return x[a] > x[b]; });
    ids.resize(static_cast<std::size_t>(k));
    return ids;
}
}  // namespace

TEST_CASE("hierarchical layer: a user-defined router runs the modal and collaborative groups", "[hierarchical][concepts]") {
    // Two modalities with 4 experts, top-2 each; a collaborative group of 3 experts, top-1; one
    // shared expert. Expected: for every token, (1/2) sum of its modality's two chosen experts +
    // its collaborative expert + the shared expert, each computed densely from the weights.
    using HF = HierarchicalMoE<X, X, SharedExperts<X>, FeatureRouter>;
    const index_t d = 16, F = 24, T = 30;
    std::vector<FeatureRouter> routers{FeatureRouter(4, d, 2), FeatureRouter(4, d, 2)};
    std::vector<X> modal{X::random(4, d, F, 51), X::random(4, d, F, 52)};
    HF h(std::move(routers), std::move(modal), FeatureRouter(3, d, 1), X::random(3, d, F, 53),
         SharedExperts<X>(X::random(1, d, F, 54)));
    REQUIRE(h.modalities() == 2);
    REQUIRE(h.parameters() == 2 * X::random(4, d, F, 1).parameters() + X::random(3, d, F, 1).parameters() +
                                  X::random(1, d, F, 1).parameters());  // a router without parameters() counts 0

    const auto x = randn(static_cast<std::size_t>(T * d), 55);
    std::vector<std::int32_t> ids(static_cast<std::size_t>(T));
    for (index_t t = 0; t < T; ++t) ids[static_cast<std::size_t>(t)] = static_cast<std::int32_t>((t * 7 / 3) % 2);
    std::vector<float> y(x.size(), -1.0f);
    h.forward({x.data(), T, d}, std::span<const std::int32_t>(ids), {y.data(), T, d});

    std::vector<index_t> seen(2, 0);
    for (index_t t = 0; t < T; ++t) {
        const float* xt = x.data() + t * d;
        const int m = ids[static_cast<std::size_t>(t)];
        std::vector<double> want = dense_expert(h.shared().experts(), 0, xt);
        for (index_t e : top_features(xt, 4, 2)) {
            const auto ye = dense_expert(h.modal_experts(m), e, xt);
            for (index_t i = 0; i < d; ++i) want[static_cast<std::size_t>(i)] += 0.5 * ye[static_cast<std::size_t>(i)];
        }
        const index_t c = top_features(xt, 3, 1)[0];
        const auto yc = dense_expert(h.collab_experts(), c, xt);
        for (index_t i = 0; i < d; ++i) want[static_cast<std::size_t>(i)] += yc[static_cast<std::size_t>(i)];
        for (index_t i = 0; i < d; ++i)
            REQUIRE(y[static_cast<std::size_t>(t * d + i)] == Approx(want[static_cast<std::size_t>(i)]).epsilon(1e-4).margin(1e-5));
        // The plans are the router's: modality m's over its own tokens, in order.
        const auto& pm = h.modal_plan(m);
        const auto j = seen[static_cast<std::size_t>(m)]++;
        const auto top = top_features(xt, 4, 2);
        REQUIRE(pm.expert_ids[static_cast<std::size_t>(2 * j)] == top[0]);
        REQUIRE(pm.expert_ids[static_cast<std::size_t>(2 * j + 1)] == top[1]);
        REQUIRE(h.collab_plan().expert_ids[static_cast<std::size_t>(t)] == c);
    }
    REQUIRE(h.modal_plan(0).num_tokens == seen[0]);
    REQUIRE(h.modal_plan(1).num_tokens == seen[1]);
    // No logits (not a LogitRouter): every group loss is 0.
    REQUIRE(h.losses().total == 0.0);
    REQUIRE(h.losses().collab == 0.0);

    // The same tokens given as one chunk of modality 0 (modality 1 absent): the same outputs for
    // modality 0's tokens (up to the rounding of adding the gathered modal branch), and
    // modality 1's plan is empty.
    std::vector<float> y0(x.size());
    const ModalityChunk all0{0, T, 0};
    h.forward({x.data(), T, d}, std::span<const ModalityChunk>(&all0, 1), {y0.data(), T, d});
    REQUIRE(h.modal_plan(1).num_tokens == 0);
    REQUIRE(h.modal_plan(0).num_tokens == T);
    for (index_t t = 0; t < T; ++t)
        if (ids[static_cast<std::size_t>(t)] == 0)
            for (index_t i = 0; i < d; ++i)
                REQUIRE(y0[static_cast<std::size_t>(t * d + i)] ==
                        Approx(y[static_cast<std::size_t>(t * d + i)]).epsilon(1e-6).margin(1e-7));

    // Pruning that needs no router capability works with it too: one modality's sub-model,
    // bit-identical on that modality's tokens.
    Calibration cal;
    cal.add({x.data(), T, d}, std::span<const std::int32_t>(ids));
    const auto one = ExtractModality{1}.apply(h, cal);
    REQUIRE(one.layer.modalities() == 1);
    REQUIRE(one.report.fidelity.relative_error == 0.0);
}

TEST_CASE("hierarchical layer: built from routers or groups, it computes what the gate constructor builds",
          "[hierarchical]") {
    const index_t d = 16, F = 32, T = 48;
    H a = make(d, F, 2, true);
    std::vector<TopKRouter<SoftmaxScores>> routers{a.modal_router(0), a.modal_router(1)};
    std::vector<X> experts{a.modal_experts(0), a.modal_experts(1)};
    H b(std::move(routers), std::move(experts), a.collab_router(), a.collab_experts(), a.shared(),
        a.loss_options());
    std::vector<H::modal_group_type> groups{a.modal_group(0), a.modal_group(1)};
    H c(std::move(groups), a.collab_group(), a.shared(), a.loss_options());
    const auto x = randn(static_cast<std::size_t>(T * d), 61);
    const std::vector<ModalityChunk> chunks{{0, 20, 0}, {20, T, 1}};
    std::vector<float> ya(x.size()), yb(x.size()), yc(x.size());
    a.forward({x.data(), T, d}, chunks, {ya.data(), T, d});
    b.forward({x.data(), T, d}, chunks, {yb.data(), T, d});
    c.forward({x.data(), T, d}, chunks, {yc.data(), T, d});
    REQUIRE(ya == yb);
    REQUIRE(ya == yc);
    REQUIRE(a.losses().total > 0.0);
    REQUIRE(a.losses().total == b.losses().total);
    REQUIRE(a.losses().total == c.losses().total);
    REQUIRE(a.losses().collab == a.collab_group().loss());
    // options() reads the routers back.
    REQUIRE(c.options().k_modal == 1);
    REQUIRE(c.options().capacity_factor_collab == 1.2);
    // A modal router with another k: one HierarchicalOptions cannot describe the layer.
    std::vector<H::modal_group_type> g2{a.modal_group(0), a.modal_group(1)};
    g2[1].router().set_k(2);
    H e(std::move(g2), a.collab_group(), a.shared(), a.loss_options());
    REQUIRE_THROWS_WITH(e.options(), Catch::Contains("modality 1 routes with k 2"));
    REQUIRE_THROWS_AS(H({}, a.collab_group(), a.shared()), ConfigError);
}

}  // namespace moe_test_hierarchical
