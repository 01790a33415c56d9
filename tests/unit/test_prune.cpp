// Pruning policies: routing statistics, frequency pruning, modality extraction, SVD folding,
// run-time k reduction. Expectations are hand-derived (counts of a hand-made plan, parameter
// arithmetic) or follow from construction (experts built low-rank must fold exactly; an
// extracted modality must compute bit for bit what the full layer computes on its tokens).
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <random>
#include <type_traits>
#include <vector>

#include "moe/moe.hpp"
#include "moe/prune.hpp"
#include "random_inputs.hpp"

namespace moe_test_prune {  // this file's names (unity builds merge test files)

using namespace moe;

namespace {

using moe_test::randn;

using X = MlpExperts<Gelu>;
using Layer = MoELayer<TopKRouter<SoftmaxScores>, X, SharedExperts<X>>;
using Plain = MoELayer<TopKRouter<SoftmaxScores>, X>;
using H = HierarchicalMoE<X, X, SharedExperts<X>>;

/// MlpExperts from explicit values: w1 [E, F, d], b1 [E, F], w2 [E, d, F], b2 [E, d].
template <Activation A = Gelu>
MlpExperts<A> experts_from(index_t E, index_t d, index_t F, const std::vector<float>& w1, const std::vector<float>& b1,
                           const std::vector<float>& w2, const std::vector<float>& b2) {
    auto t = std::make_shared<std::vector<Tensor>>();
    t->push_back(Tensor::from<float>({E, F, d}, w1));
    t->push_back(Tensor::from<float>({E, F}, b1));
    t->push_back(Tensor::from<float>({E, d, F}, w2));
    t->push_back(Tensor::from<float>({E, d}, b2));
    const TensorView vb1 = (*t)[1].view(), vb2 = (*t)[3].view();
    auto fc1 = LinearStack<float>::from_stacked((*t)[0].view(), &vb1, t, "fc1");
    auto fc2 = LinearStack<float>::from_stacked((*t)[2].view(), &vb2, t, "fc2");
    return {std::move(fc1), std::move(fc2)};
}

/// sum_e c_e expert_e(x) for every row of x.
template <class XS>
std::vector<float> expert_sum(const XS& x, const std::vector<float>& in, index_t d, const std::vector<double>& c = {}) {
    const index_t n = static_cast<index_t>(in.size()) / d;
    std::vector<float> out(in.size(), 0.0f), part(in.size());
    ExpertScratch s;
    for (index_t e = 0; e < x.num_experts(); ++e) {
        x.expert_forward(e, {in.data(), n, d}, {part.data(), n, d}, s);
        const double w = c.empty() ? 1.0 : c[static_cast<std::size_t>(e)];
        for (std::size_t i = 0; i < out.size(); ++i) out[i] += static_cast<float>(w) * part[i];
    }
    return out;
}

double rel(const std::vector<float>& a, const std::vector<float>& b) {
    double n = 0, z = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        n += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        z += double(b[i]) * b[i];
    }
    return std::sqrt(n / z);
}

std::vector<float> run_dense(DenseFfn<Gelu> f, const std::vector<float>& in, index_t d) {
    std::vector<float> y(in.size());
    const index_t n = static_cast<index_t>(in.size()) / d;
    f.forward({in.data(), n, d}, {y.data(), n, d});
    return y;
}

Calibration calibration(index_t d, int batches, index_t rows, unsigned seed) {
    Calibration c;
    for (int b = 0; b < batches; ++b) {
        auto x = randn(static_cast<std::size_t>(rows * d), seed + static_cast<unsigned>(b));
        c.add(ConstMatrixRef<float>(x.data(), rows, d));
    }
    return c;
}

Layer make_layer(index_t E, index_t d, index_t F, index_t k, unsigned seed) {
    return Layer(softmax_topk_router(Gate::random(E, d, seed), k), X::random(E, d, F, seed + 1),
                 SharedExperts<X>(X::random(1, d, F, seed + 2)));
}

H make_hier(int M, index_t E, index_t d, index_t F, unsigned seed, index_t k = 1, double cf = 1.2) {
    std::vector<Gate> gates;
    std::vector<X> experts;
    for (int m = 0; m < M; ++m) {
        gates.push_back(Gate::random(E, d, seed + 10 * static_cast<unsigned>(m)));
        experts.push_back(X::random(E, d, F, seed + 10 * static_cast<unsigned>(m) + 1));
    }
    HierarchicalOptions o;
    o.k_modal = k;
    o.k_collab = k;
    o.capacity_factor_modal = cf;
    o.capacity_factor_collab = cf;
    return H(std::move(gates), std::move(experts), Gate::random(E, d, seed + 500), X::random(E, d, F, seed + 501),
             SharedExperts<X>(X::random(1, d, F, seed + 502)), o);
}

/// A calibration of M modalities: `batches` batches, each with `rows` tokens of every modality
/// (as contiguous chunks, in modality order).
Calibration hier_calibration(int M, index_t d, int batches, index_t rows, unsigned seed) {
    Calibration c;
    for (int b = 0; b < batches; ++b) {
        auto x = randn(static_cast<std::size_t>(rows * M * d), seed + static_cast<unsigned>(b));
        std::vector<ModalityChunk> chunks;
        for (int m = 0; m < M; ++m) chunks.push_back({m * rows, (m + 1) * rows, m});
        c.add(ConstMatrixRef<float>(x.data(), rows * M, d), std::span<const ModalityChunk>(chunks));
    }
    return c;
}

index_t mlp_params(index_t d, index_t F) { return 2 * d * F + F + d; }

}  // namespace

TEST_CASE("prune: the policies satisfy PruningPolicy", "[prune]") {
    STATIC_REQUIRE(PruningPolicy<KeepMostFrequent, Layer>);
    STATIC_REQUIRE(PruningPolicy<KeepMostFrequent, H>);
    STATIC_REQUIRE(PruningPolicy<ExtractModality, H>);
    STATIC_REQUIRE(PruningPolicy<SvdFold, Layer>);
    STATIC_REQUIRE(PruningPolicy<SvdFold, Plain>);
    STATIC_REQUIRE(PruningPolicy<SvdFold, H>);
    STATIC_REQUIRE(PruningPolicy<ReduceK, Layer>);
    STATIC_REQUIRE(PruningPolicy<ReduceK, H>);
    // Not applicable: extraction needs modalities, a GLU layer does not fold into an MLP FFN.
    STATIC_REQUIRE_FALSE(PruningPolicy<ExtractModality, Layer>);
    STATIC_REQUIRE_FALSE(PruningPolicy<SvdFold, MoELayer<TopKRouter<SoftmaxScores>, GluExperts<Silu>>>);
}

TEST_CASE("prune: GroupStats counts a hand-made plan", "[prune][stats]") {
    // T = 5, E = 3, k = 2, capacity 2 (token order).
    RoutingPlan p;
    p.reset(5, 3, 2);
    p.expert_ids = {0, 1, 0, 2, 1, 0, 0, 1, 2, -1};
    p.weights = {0.6f, 0.4f, 0.7f, 0.3f, 0.5f, 0.5f, 0.9f, 0.1f, 1.0f, 0.0f};
    p.finalize(2, CapacityPriority::token_order);
    // Choices in order: (t0 e0) (t0 e1) (t1 e0) (t1 e2) (t2 e1) kept; (t2 e0) (t3 e0) (t3 e1)
    // dropped (experts 0 and 1 are full); (t4 e2) kept; (t4 -1) empty.
    REQUIRE(p.dropped == std::vector<std::int32_t>{5, 6, 7});

    GroupStats s;
    s.add(p);
    CHECK(s.experts == 3);
    CHECK(s.tokens == 5);
    CHECK(s.calls == 1);
    CHECK(s.first == std::vector<std::int64_t>{3, 1, 1});
    CHECK(s.any == std::vector<std::int64_t>{4, 3, 2});
    CHECK(s.kept == std::vector<std::int64_t>{2, 2, 2});
    CHECK(s.weight[0] == Approx(1.3));
    CHECK(s.weight[1] == Approx(0.9));
    CHECK(s.weight[2] == Approx(1.3));
    CHECK(s.frequency(0) == Approx(0.8));
    CHECK(s.frequency(2, CountKind::first) == Approx(0.2));
    CHECK(s.ranking() == std::vector<index_t>{0, 1, 2});
    CHECK(s.ranking(CountKind::kept) == std::vector<index_t>{0, 1, 2});  // all tied: lower index first
    CHECK(s.ranking(CountKind::weight) == std::vector<index_t>{0, 2, 1});  // 1.3 tie: 0 before 2

    // Only tokens 1 and 3.
    GroupStats sub;
    const std::vector<std::int32_t> rows{1, 3};
    sub.add(p, rows);
    CHECK(sub.tokens == 2);
    CHECK(sub.first == std::vector<std::int64_t>{2, 0, 0});
    CHECK(sub.any == std::vector<std::int64_t>{2, 1, 1});
    CHECK(sub.kept == std::vector<std::int64_t>{1, 0, 1});

    // Keyed collection, merge, lookup.
    RoutingStats rs, rs2;
    rs.add({"blocks.0", "routed", -1}, p);
    rs2.add({"blocks.0", "routed", -1}, p);
    rs2.add({"blocks.1", "collab", 2}, p, rows);
    rs.merge(rs2);
    CHECK(rs.size() == 2);
    CHECK(rs.at({"blocks.0", "routed", -1}).any == std::vector<std::int64_t>{8, 6, 4});
    CHECK(rs.at({"blocks.1", "collab", 2}).tokens == 2);
    CHECK(StatsKey{"blocks.1", "collab", 2}.str() == "blocks.1/collab[2]");
    CHECK_THROWS_AS(rs.at({"blocks.9"}), NotFoundError);
    GroupStats other(4);
    CHECK_THROWS_AS(s.merge(other), ShapeError);

    // Keep counts and the most frequent experts.
    CHECK(keep_count(4, 0.25) == 1);
    CHECK(keep_count(10, 0.3) == 3);
    CHECK(keep_count(10, 0.31) == 4);
    CHECK(keep_count(3, 0.01) == 1);
    CHECK(most_frequent(s, 0.5) == std::vector<index_t>{0, 1});
    CHECK(most_frequent(s, 0.5, CountKind::weight) == std::vector<index_t>{0, 2});
}

TEST_CASE("prune: collect() counts what the layers route", "[prune][stats]") {
    const index_t d = 16, F = 24;
    SECTION("MoELayer") {
        Layer layer = make_layer(6, d, F, 2, 11);
        const Calibration cal = calibration(d, 3, 40, 100);
        RoutingStats stats;
        collect(stats, "l0", layer, cal);
        const auto& g = stats.at({"l0", "routed", -1});
        std::vector<std::int64_t> load(6, 0);
        Layer run = layer;
        for (const auto& b : cal.batches()) {
            std::vector<float> y(static_cast<std::size_t>(b.rows() * d));
            run.forward(b.matrix(), {y.data(), b.rows(), d});
            for (std::size_t e = 0; e < 6; ++e) load[e] += run.plan().load[e];
        }
        CHECK(g.any == load);
        CHECK(g.tokens == 120);
        CHECK(g.calls == 3);
    }
    SECTION("HierarchicalMoE: per modality, collaborative per modality") {
        H layer = make_hier(3, 4, d, F, 21);
        const Calibration cal = hier_calibration(3, d, 2, 30, 200);
        RoutingStats stats;
        collect(stats, "l1", layer, cal);
        const auto& all = stats.at({"l1", "collab", -1});
        CHECK(all.tokens == 180);
        std::vector<std::int64_t> sum(4, 0);
        for (int m = 0; m < 3; ++m) {
            const auto& g = stats.at({"l1", "collab", m});
            CHECK(g.tokens == 60);
            for (std::size_t e = 0; e < 4; ++e) sum[e] += g.any[e];
        }
        CHECK(sum == all.any);
        // Modal counts equal the plans of real forward calls.
        H run = layer;
        std::vector<std::vector<std::int64_t>> modal(3, std::vector<std::int64_t>(4, 0));
        for (const auto& b : cal.batches()) {
            std::vector<float> y(static_cast<std::size_t>(b.rows() * d));
            run.forward(b.matrix(), std::span<const std::int32_t>(b.modality), {y.data(), b.rows(), d});
            for (int m = 0; m < 3; ++m)
                for (std::size_t e = 0; e < 4; ++e) modal[static_cast<std::size_t>(m)][e] += run.modal_plan(m).load[e];
        }
        for (int m = 0; m < 3; ++m) CHECK(stats.at({"l1", "modal", m}).any == modal[static_cast<std::size_t>(m)]);
    }
}

TEST_CASE("prune: frequency pruning of a MoELayer keeps the right experts and re-indexes routing", "[prune][frequency]") {
    const index_t E = 8, d = 16, F = 24, k = 2;
    Layer layer = make_layer(E, d, F, k, 31);
    const Calibration cal = calibration(d, 3, 64, 300);

    // Expected: the 4 experts with the most choices (ties to the lower index), by hand.
    RoutingStats stats;
    collect(stats, "", layer, cal);
    const auto& g = stats.at({"", "routed", -1});
    std::vector<index_t> order(E);
    for (index_t e = 0; e < E; ++e) order[static_cast<std::size_t>(e)] = e;
    std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) { return g.any[static_cast<std::size_t>(a)] > g.any[static_cast<std::size_t>(b)]; });
    std::vector<index_t> expect(order.begin(), order.begin() + 4);
    std::sort(expect.begin(), expect.end());

    const auto res = KeepMostFrequent{0.5}.apply(layer, cal);
    const auto& grp = res.report.group("routed");
    CHECK(grp.kept == expect);
    CHECK(grp.experts_before == 8);
    CHECK(grp.experts_after == 4);
    CHECK(grp.removed.size() == 4);
    CHECK(grp.k_before == 2);
    CHECK(grp.k_after == 2);
    REQUIRE(res.layer.num_experts() == 4);

    // Gate rows and expert weights are the kept ones, in order.
    const auto g0 = layer.router().gate().weight(), g1 = res.layer.router().gate().weight();
    for (index_t i = 0; i < 4; ++i) {
        const index_t e = expect[static_cast<std::size_t>(i)];
        for (index_t j = 0; j < d; ++j) CHECK(g1(i, j) == g0(e, j));
        CHECK(res.layer.experts().fc1().weight(i).data == layer.experts().fc1().weight(e).data);
        CHECK(res.layer.experts().fc2().weight(i).data == layer.experts().fc2().weight(e).data);
    }

    // Parameters: exact arithmetic.
    const index_t expert = mlp_params(d, F);
    CHECK(res.report.parameters_before == E * d + E * expert + expert);
    CHECK(res.report.parameters_after == 4 * d + 4 * expert + expert);
    CHECK(res.report.active_parameters_before == E * d + k * expert + expert);
    CHECK(res.report.active_parameters_after == 4 * d + k * expert + expert);
    CHECK(res.report.parameters_after == res.layer.parameters());

    // Routing: same logits for the kept experts; a token whose original choices were all kept
    // makes the same choices with the same renormalised weights.
    auto x = randn(static_cast<std::size_t>(200 * d), 999);
    auto r0 = layer.router();
    auto r1 = res.layer.router();
    RoutingPlan p0, p1;
    r0.route({x.data(), 200, d}, p0);
    r1.route({x.data(), 200, d}, p1);
    const auto l0 = r0.last_logits(), l1 = r1.last_logits();
    int top1_kept = 0, both_kept = 0;
    for (index_t t = 0; t < 200; ++t) {
        for (index_t i = 0; i < 4; ++i) REQUIRE(l1(t, i) == l0(t, expect[static_cast<std::size_t>(i)]));
        auto pos = [&](std::int32_t e) {
            auto it = std::find(expect.begin(), expect.end(), index_t(e));
            return it == expect.end() ? -1 : static_cast<std::int32_t>(it - expect.begin());
        };
        const auto a = pos(p0.expert_ids[static_cast<std::size_t>(t * 2)]);
        const auto b = pos(p0.expert_ids[static_cast<std::size_t>(t * 2 + 1)]);
        if (a >= 0) {
            ++top1_kept;
            CHECK(p1.expert_ids[static_cast<std::size_t>(t * 2)] == a);
        }
        if (a >= 0 && b >= 0) {
            ++both_kept;
            CHECK(p1.expert_ids[static_cast<std::size_t>(t * 2 + 1)] == b);
            CHECK(p1.weights[static_cast<std::size_t>(t * 2)] == Approx(p0.weights[static_cast<std::size_t>(t * 2)]).margin(1e-6));
        }
    }
    CHECK(top1_kept > 50);
    CHECK(both_kept > 10);

    // Fidelity is measured and below 1 (half the experts remain; shared experts intact).
    CHECK(res.report.fidelity.tokens == 192);
    CHECK(res.report.fidelity.relative_error > 0.0);
    CHECK(res.report.fidelity.relative_error < 1.0);
    CHECK(res.report.fidelity.cosine > 0.5);

    // Keeping everything changes nothing, bit for bit.
    const auto all = KeepMostFrequent{1.0}.apply(layer, cal);
    CHECK(all.report.fidelity.relative_error == 0.0);
    CHECK(all.report.group("routed").removed.empty());

    // Fewer experts than k: k is lowered and the report says so.
    const auto one = KeepMostFrequent{0.125}.apply(layer, cal);
    CHECK(one.layer.num_experts() == 1);
    CHECK(one.layer.router().k() == 1);
    CHECK(one.report.group("routed").k_after == 1);
    REQUIRE(one.report.notes.size() == 1);
    CHECK_THAT(one.report.notes[0], Catch::Contains("k lowered from 2 to 1"));
    CHECK(one.report.group("routed").kept == std::vector<index_t>{order[0]});
}

TEST_CASE("prune: frequency pruning of a hierarchical layer (RingMoE: top quarter of collaborative)", "[prune][frequency]") {
    const index_t d = 16, F = 24;
    H layer = make_hier(2, 4, d, F, 41);
    const Calibration cal = hier_calibration(2, d, 2, 48, 400);
    RoutingStats stats;
    collect(stats, "", layer, cal);
    const auto expect = stats.at({"", "collab", -1}).ranking()[0];

    const auto res = KeepMostFrequent{0.25}.apply(layer, cal);
    CHECK(res.report.group("collab").kept == std::vector<index_t>{expect});
    CHECK(res.report.group("collab").removed.size() == 3);
    CHECK(res.layer.collab_router().num_experts() == 1);
    CHECK(res.layer.modal_router(0).num_experts() == 4);
    CHECK(res.layer.modalities() == 2);
    const index_t expert = mlp_params(d, F);
    CHECK(res.report.parameters_before - res.report.parameters_after == 3 * (d + expert));
    CHECK(res.report.parameters_after == res.layer.parameters());
    // Active path: top-1 in each group either way.
    CHECK(res.report.active_parameters_before - res.report.active_parameters_after == 3 * d);
    CHECK(res.report.fidelity.tokens == 192);
    CHECK(res.report.fidelity.relative_error > 0.0);

    // Modal pruning too, each modality by its own tokens.
    KeepMostFrequent both{0.5};
    both.modal = true;
    const auto r2 = both.apply(layer, cal);
    for (int m = 0; m < 2; ++m) {
        const auto kept = most_frequent(stats.at({"", "modal", m}), 0.5);
        CHECK(r2.report.group("modal[" + std::to_string(m) + "]").kept == kept);
        CHECK(r2.layer.modal_router(m).num_experts() == 2);
    }
    CHECK(r2.layer.collab_router().num_experts() == 2);
}

TEST_CASE("prune: modality extraction is exact on that modality's tokens", "[prune][modality]") {
    const index_t d = 16, F = 24;
    H layer = make_hier(3, 4, d, F, 51);
    const Calibration cal = hier_calibration(3, d, 2, 40, 500);
    const auto res = ExtractModality{1}.apply(layer, cal);
    REQUIRE(res.layer.modalities() == 1);
    CHECK(res.report.fidelity.tokens == 80);
    CHECK(res.report.fidelity.relative_error == 0.0);
    CHECK(res.report.fidelity.cosine == Approx(1.0).margin(1e-12));
    CHECK(res.report.group("modalities").kept == std::vector<index_t>{1});
    CHECK(res.report.group("modalities").removed == std::vector<index_t>{0, 2});
    const index_t expert = mlp_params(d, F);
    CHECK(res.report.parameters_before - res.report.parameters_after == 2 * (4 * d + 4 * expert));
    CHECK(res.report.active_parameters_before == res.report.active_parameters_after);

    // Fresh tokens of modality 1, by hand: identical output.
    const index_t T = 50;
    auto x = randn(static_cast<std::size_t>(T * d), 777);
    std::vector<float> y0(x.size()), y1(x.size());
    H a = layer, b = res.layer;
    const std::vector<std::int32_t> ids1(T, 1), ids0(T, 0);
    a.forward({x.data(), T, d}, std::span<const std::int32_t>(ids1), {y0.data(), T, d});
    b.forward({x.data(), T, d}, std::span<const std::int32_t>(ids0), {y1.data(), T, d});
    CHECK(y0 == y1);

    CHECK_THROWS_AS(ExtractModality{3}.apply(layer, cal), ConfigError);
    CHECK_THROWS_AS(ExtractModality{-1}.apply(layer, cal), ConfigError);
    CHECK_THROWS_AS(ExtractModality{0}.apply(layer, calibration(d, 1, 10, 1)), ConfigError);
}

TEST_CASE("prune: an SVD fold of already low-rank experts is exact", "[prune][fold]") {
    const index_t E = 4, d = 16, F = 32, r = 8;
    const Calibration cal = calibration(d, 2, 128, 600);
    const auto held = randn(static_cast<std::size_t>(100 * d), 601);

    SECTION("duplicated neurons: r distinct neurons, each repeated F / r times") {
        auto u = randn(static_cast<std::size_t>(E * r * d), 610, 0.25f), a = randn(static_cast<std::size_t>(E * r), 611, 0.1f);
        std::vector<float> w1(static_cast<std::size_t>(E * F * d)), b1(static_cast<std::size_t>(E * F));
        for (index_t e = 0; e < E; ++e)
            for (index_t j = 0; j < F; ++j) {
                const index_t src = e * r + j % r;
                for (index_t i = 0; i < d; ++i) w1[static_cast<std::size_t>((e * F + j) * d + i)] = u[static_cast<std::size_t>(src * d + i)];
                b1[static_cast<std::size_t>(e * F + j)] = a[static_cast<std::size_t>(src)];
            }
        const auto experts = experts_from(E, d, F, w1, b1, randn(static_cast<std::size_t>(E * d * F), 612, 0.2f),
                                          randn(static_cast<std::size_t>(E * d), 613, 0.1f));
        Plain layer(softmax_topk_router(Gate::random(E, d, 614), 2), experts);
        const auto res = SvdFold{r}.apply(layer, cal);
        REQUIRE(res.report.fold.has_value());
        INFO("calibration rel err " << res.report.fold->relative_error);
        CHECK(res.report.fold->relative_error < 1e-5);
        CHECK(res.layer.ffn_size() == E * r);
        const double e_held = rel(run_dense(res.layer, held, d), expert_sum(experts, held, d));
        INFO("held-out rel err " << e_held);
        CHECK(e_held < 1e-5);
        // The svd (GKS) selection finds the same span.
        SvdFold gks{r};
        gks.selection = NeuronSelection::svd;
        const auto res2 = gks.apply(layer, cal);
        CHECK(res2.report.fold->relative_error < 1e-5);
        CHECK(rel(run_dense(res2.layer, held, d), expert_sum(experts, held, d)) < 1e-5);
    }
    SECTION("zero output columns: only r neurons reach the output") {
        auto w2 = randn(static_cast<std::size_t>(E * d * F), 620, 0.2f);
        for (index_t e = 0; e < E; ++e)
            for (index_t j = 0; j < F; ++j)
                if ((j * 7 + e) % 4 != 0)  // 8 live neurons per expert, a different set each
                    for (index_t i = 0; i < d; ++i) w2[static_cast<std::size_t>((e * d + i) * F + j)] = 0.0f;
        const auto experts = experts_from(E, d, F, randn(static_cast<std::size_t>(E * F * d), 621, 0.25f),
                                          randn(static_cast<std::size_t>(E * F), 622, 0.1f), w2,
                                          randn(static_cast<std::size_t>(E * d), 623, 0.1f));
        Plain layer(softmax_topk_router(Gate::random(E, d, 624), 2), experts);
        const auto res = SvdFold{r}.apply(layer, cal);
        INFO("calibration rel err " << res.report.fold->relative_error);
        CHECK(res.report.fold->relative_error < 1e-5);
        CHECK(rel(run_dense(res.layer, held, d), expert_sum(experts, held, d)) < 1e-5);
        // Without calibration (selection on the output weights, no refit): exact as well.
        SvdFold w{r};
        w.basis = FoldBasis::weights;
        const auto res_w = w.apply(layer, Calibration{});
        CHECK_FALSE(res_w.report.fold.has_value());
        CHECK(rel(run_dense(res_w.layer, held, d), expert_sum(experts, held, d)) < 1e-5);
    }
    SECTION("linear activation over a rank r - 1 input map (+ bias): rank-r activations") {
        auto p = randn(static_cast<std::size_t>(E * F * (r - 1)), 630, 0.5f), q = randn(static_cast<std::size_t>(E * (r - 1) * d), 631, 0.5f);
        std::vector<float> w1(static_cast<std::size_t>(E * F * d), 0.0f);
        for (index_t e = 0; e < E; ++e)
            for (index_t j = 0; j < F; ++j)
                for (index_t i = 0; i < d; ++i)
                    for (index_t l = 0; l < r - 1; ++l)
                        w1[static_cast<std::size_t>((e * F + j) * d + i)] +=
                            p[static_cast<std::size_t>((e * F + j) * (r - 1) + l)] * q[static_cast<std::size_t>((e * (r - 1) + l) * d + i)];
        const auto experts = experts_from<Identity>(E, d, F, w1, randn(static_cast<std::size_t>(E * F), 632),
                                                    randn(static_cast<std::size_t>(E * d * F), 633, 0.2f),
                                                    randn(static_cast<std::size_t>(E * d), 634));
        MoELayer<TopKRouter<SoftmaxScores>, MlpExperts<Identity>> layer(softmax_topk_router(Gate::random(E, d, 635), 1),
                                                                        experts);
        const auto res = SvdFold{r}.apply(layer, cal);
        INFO("calibration rel err " << res.report.fold->relative_error);
        CHECK(res.report.fold->relative_error < 1e-5);
        std::vector<float> y(held.size());
        auto f = res.layer;
        f.forward({held.data(), 100, d}, {y.data(), 100, d});
        CHECK(rel(y, expert_sum(experts, held, d)) < 1e-5);
    }
}

TEST_CASE("prune: an SVD fold to full rank reproduces the experts' summed output", "[prune][fold]") {
    const index_t E = 4, d = 16, F = 32;
    Layer layer = make_layer(E, d, F, 2, 71);
    const Calibration cal = calibration(d, 2, 96, 700);
    const auto res = SvdFold{F}.apply(layer, cal);
    REQUIRE(res.layer.ffn_size() == (E + 1) * F);
    INFO("calibration rel err " << res.report.fold->relative_error);
    CHECK(res.report.fold->relative_error < 1e-4);
    CHECK(res.report.fold->cosine > 1 - 1e-8);
    // Held-out tokens, against routed + shared experts summed by hand.
    const auto held = randn(static_cast<std::size_t>(77 * d), 701);
    auto target = expert_sum(layer.experts(), held, d);
    const auto shared = expert_sum(layer.shared().experts(), held, d);
    for (std::size_t i = 0; i < target.size(); ++i) target[i] += shared[i];
    const double e = rel(run_dense(res.layer, held, d), target);
    INFO("held-out rel err " << e);
    CHECK(e < 1e-4);
    // Nothing dropped: W1 is the experts' fc1 rows, concatenated.
    const auto w1 = res.layer.fc1().weight(0);
    for (index_t x = 0; x < E; ++x)
        for (index_t j = 0; j < F; ++j)
            for (index_t i = 0; i < d; ++i) REQUIRE(w1(x * F + j, i) == layer.experts().fc1().weight(x)(j, i));
    // Against the MoE layer (top-2 of 4 + shared), the plain sum is a different function.
    CHECK(res.report.fidelity.relative_error > 0.1);
    CHECK_THAT(res.report.str(), Catch::Contains("SvdFold(rank 32, sum, activations, pivoted_qr)"));

    // bf16 experts: the full-rank fold copies their bf16 weights exactly.
    using XB = MlpExperts<Gelu, bf16>;
    MoELayer<TopKRouter<SoftmaxScores>, XB> lb(softmax_topk_router(Gate::random(E, d, 72), 1), XB::random(E, d, F, 73));
    const auto rb = SvdFold{F}.apply(lb, cal);
    STATIC_REQUIRE(std::is_same_v<std::remove_cvref_t<decltype(rb.layer)>, DenseFfn<Gelu, bf16>>);
    INFO("bf16 calibration rel err " << rb.report.fold->relative_error);
    CHECK(rb.report.fold->relative_error < 1e-4);
}

TEST_CASE("prune: SVD fold error falls with the rank; parameter counts", "[prune][fold]") {
    const index_t E = 4, d = 16, F = 32;
    Layer layer = make_layer(E, d, F, 1, 81);
    const Calibration cal = calibration(d, 2, 160, 800);
    std::vector<double> errs;
    for (index_t r : {2, 4, 8, 16, 24, 31, 32}) {
        const auto res = SvdFold{r}.apply(layer, cal);
        errs.push_back(res.report.fold->relative_error);
        // Parameters: fc1 [R, d] + b1 [R] + fc2 [d, R] + b2 [d], R = 5 r.
        const index_t R = 5 * r;
        CHECK(res.layer.ffn_size() == R);
        CHECK(res.report.parameters_after == 2 * R * d + R + d);
        CHECK(res.report.active_parameters_after == res.report.parameters_after);
    }
    for (std::size_t i = 1; i < errs.size(); ++i) {
        INFO("rank index " << i << ": " << errs[i - 1] << " -> " << errs[i]);
        CHECK(errs[i] <= errs[i - 1] * (1 + 1e-9) + 1e-12);
    }
    CHECK(errs.front() > 0.05);
    CHECK(errs.back() < 1e-6);

    // Default rank F / N with N = 4 routed + 1 shared = 5: 6 neurons each, R = 30.
    const auto def = SvdFold{}.apply(layer, cal);
    CHECK(def.layer.ffn_size() == 30);
    CHECK(def.report.group("routed").ranks == std::vector<index_t>{6, 6, 6, 6});
    CHECK(def.report.group("shared").ranks == std::vector<index_t>{6});
    CHECK(def.report.group("routed").k_before == 1);
    const index_t expert = mlp_params(d, F);
    CHECK(def.report.parameters_before == E * d + E * expert + expert);
    CHECK(def.report.parameters_before == layer.parameters());
    CHECK(def.report.parameters_after == 2 * 30 * d + 30 + d);
    CHECK(def.report.active_parameters_before == E * d + expert + expert);
}

TEST_CASE("prune: SVD fold weights from routing frequencies", "[prune][fold]") {
    const index_t E = 4, d = 16, F = 32;
    Layer layer = make_layer(E, d, F, 1, 91);
    const Calibration cal = calibration(d, 2, 100, 900);
    RoutingStats stats;
    collect(stats, "", layer, cal);
    const auto& g = stats.at({"", "routed", -1});

    SvdFold f{F};
    f.weighting = FoldWeighting::frequency;
    const auto res = f.apply(layer, cal);
    const auto& grp = res.report.group("routed");
    for (index_t e = 0; e < E; ++e) CHECK(grp.weights[static_cast<std::size_t>(e)] == Approx(g.frequency(e)));
    CHECK(res.report.group("shared").weights == std::vector<double>{1.0});
    // Full rank: the dense FFN is the frequency-weighted sum exactly.
    CHECK(res.report.fold->relative_error < 1e-5);
    const auto held = randn(static_cast<std::size_t>(50 * d), 901);
    auto target = expert_sum(layer.experts(), held, d, grp.weights);
    const auto shared = expert_sum(layer.shared().experts(), held, d);
    for (std::size_t i = 0; i < target.size(); ++i) target[i] += shared[i];
    CHECK(rel(run_dense(res.layer, held, d), target) < 1e-5);
    // The expected contribution is closer to the top-1 layer than the plain sum.
    const auto plain = SvdFold{F}.apply(layer, cal);
    CHECK(res.report.fidelity.relative_error < plain.report.fidelity.relative_error);

    // Top-1 with renormalisation: the mean combine weight is the kept fraction.
    f.weighting = FoldWeighting::combine_weight;
    const auto cw = f.apply(layer, cal);
    for (index_t e = 0; e < E; ++e)
        CHECK(cw.report.group("routed").weights[static_cast<std::size_t>(e)] ==
              Approx(static_cast<double>(g.kept[static_cast<std::size_t>(e)]) / 200.0));
}

TEST_CASE("prune: RingMoE deployment chain on a hierarchical layer", "[prune][fold][modality][frequency]") {
    const index_t d = 16, F = 48;
    H full = make_hier(2, 4, d, F, 101);
    const Calibration cal = hier_calibration(2, d, 2, 96, 1000);

    CHECK(cal.tokens() == 384);
    CHECK(cal.tokens_of(1) == 192);
    CHECK(cal.modalities() == 2);
    CHECK(cal.tagged());
    const auto one = ExtractModality{1}.apply(full, cal);
    const Calibration cal1 = cal.only_modality(1);
    CHECK(cal1.tokens() == 192);
    CHECK(cal1.tokens_of(0) == 192);
    CHECK(cal1.batches()[0].matrix()(0, 3) == cal.batches()[0].matrix()(96, 3));
    const auto pruned = KeepMostFrequent{0.25}.apply(one.layer, cal1);
    CHECK(pruned.layer.collab_router().num_experts() == 1);
    // 4 modal + 1 collaborative + 1 shared = 6 experts, F / 6 = 8 neurons each: width 48 = F.
    const auto dense = SvdFold{}.apply(pruned.layer, cal1);
    CHECK(dense.layer.ffn_size() == F);
    CHECK(dense.report.group("modal[0]").ranks == std::vector<index_t>{8, 8, 8, 8});
    CHECK(dense.report.group("collab").ranks == std::vector<index_t>{8});
    CHECK(dense.report.group("shared").ranks == std::vector<index_t>{8});
    CHECK(dense.report.parameters_after == mlp_params(d, F));
    CHECK(dense.report.fidelity.tokens == 192);
    CHECK(std::isfinite(dense.report.fidelity.relative_error));

    // Full rank: the six experts' sum, exactly.
    const auto exact = SvdFold{F}.apply(pruned.layer, cal1);
    CHECK(exact.report.fold->relative_error < 1e-4);
    // The fold needs one modality.
    CHECK_THROWS_WITH(SvdFold{}.apply(full, cal), Catch::Contains("ExtractModality"));
}

TEST_CASE("prune: run-time k reduction", "[prune][reduce_k]") {
    const index_t E = 6, d = 16, F = 24;
    Layer layer = make_layer(E, d, F, 3, 111);
    const Calibration cal = calibration(d, 2, 50, 1100);
    const auto res = ReduceK{1}.apply(layer, cal);
    CHECK(res.layer.router().k() == 1);
    CHECK(layer.router().k() == 3);  // the input layer is unchanged
    CHECK(res.report.group("routed").k_before == 3);
    CHECK(res.report.group("routed").k_after == 1);
    const index_t expert = mlp_params(d, F);
    CHECK(res.report.parameters_before == res.report.parameters_after);
    CHECK(res.report.active_parameters_before == E * d + 3 * expert + expert);
    CHECK(res.report.active_parameters_after == E * d + 1 * expert + expert);
    CHECK(res.report.fidelity.relative_error > 0.0);
    CHECK(res.report.fidelity.relative_error < 1.0);
    // Same as a layer built with k = 1 around the same weights.
    Layer k1(softmax_topk_router(layer.router().gate(), 1), layer.experts(), layer.shared());
    const auto x = randn(static_cast<std::size_t>(40 * d), 1101);
    std::vector<float> y0(x.size()), y1(x.size());
    auto a = res.layer;
    a.forward({x.data(), 40, d}, {y0.data(), 40, d});
    k1.forward({x.data(), 40, d}, {y1.data(), 40, d});
    CHECK(y0 == y1);
    // k above the current k changes nothing.
    CHECK(ReduceK{5}.apply(layer, cal).report.fidelity.relative_error == 0.0);

    H hier = make_hier(2, 4, d, F, 121, 2);
    const auto hr = ReduceK{1}.apply(hier, hier_calibration(2, d, 1, 30, 1200));
    CHECK(hr.layer.options().k_modal == 1);
    CHECK(hr.layer.options().k_collab == 1);
    CHECK(hr.report.group("collab").k_before == 2);
    CHECK(hr.report.active_parameters_before - hr.report.active_parameters_after == 2 * expert);
}

TEST_CASE("prune: DenseFfn is an ordinary FFN", "[prune][dense]") {
    const index_t d = 16, F = 40, T = 70;
    auto f = DenseFfn<Gelu>::random(d, F, 5);
    CHECK(f.parameters() == mlp_params(d, F));
    const auto x = randn(static_cast<std::size_t>(T * d), 1300);
    const auto ref = expert_sum(f.experts(), x, d);
    std::vector<float> y(x.size()), y2(x.size(), 1.0f);
    f.set_exec(Exec(1));
    f.forward({x.data(), T, d}, {y.data(), T, d});
    // The dense FFN applies the activation row by row (so that column splits over threads give
    // the same bits), the expert path over its whole block at once: their SIMD tails differ, so
    // the two agree to the activation's rounding.
    for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == Approx(ref[i]).margin(1e-6));
    std::vector<float> y3(x.size());
    f.set_exec(Exec(2));
    f.forward({x.data(), T, d}, {y3.data(), T, d});
    CHECK(y3 == y);
    f.forward({x.data(), T, d}, {y2.data(), T, d}, Combine::add);
    for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y2[i] == Approx(y[i] + 1.0f).margin(1e-6));
    CHECK_THROWS_AS(f.forward({x.data(), T, d - 1}, {y.data(), T, d}), ShapeError);
}

TEST_CASE("prune: bad settings and inputs are reported", "[prune][errors]") {
    const index_t d = 16, F = 24;
    Layer layer = make_layer(4, d, F, 2, 131);
    const Calibration cal = calibration(d, 1, 20, 1300);
    for (double f : {0.0, -0.5, 1.5, std::nan("")})
        CHECK_THROWS_WITH(KeepMostFrequent{f}.apply(layer, cal), Catch::Contains("fraction must be in (0, 1]"));
    CHECK_THROWS_AS(KeepMostFrequent{0.5}.apply(layer, Calibration{}), ConfigError);
    CHECK_THROWS_WITH(SvdFold{F + 1}.apply(layer, cal), Catch::Contains("exceeds the FFN width F = 24"));
    CHECK_THROWS_AS(SvdFold{F + 1}.apply(layer, cal), ConfigError);
    CHECK_THROWS_AS(SvdFold{-1}.apply(layer, cal), ConfigError);
    CHECK_THROWS_WITH(SvdFold{}.apply(layer, Calibration{}), Catch::Contains("no calibration tokens"));
    CHECK_THROWS_AS(ReduceK{0}.apply(layer, cal), ConfigError);

    // Calibration of the wrong width: at add time, and at apply time.
    const Calibration narrow = calibration(d - 1, 1, 10, 1301);
    for (auto* what : {"KeepMostFrequent", "SvdFold", "ReduceK"}) {
        INFO(what);
        try {
            if (std::string(what) == "KeepMostFrequent") KeepMostFrequent{0.5}.apply(layer, narrow);
            else if (std::string(what) == "SvdFold") SvdFold{}.apply(layer, narrow);
            else ReduceK{1}.apply(layer, narrow);
            FAIL("no exception");
        } catch (const ShapeError& e) {
            CHECK_THAT(e.what(), Catch::Contains("calibration tokens have 15 features, the layer takes 16"));
        }
    }
    Calibration c2 = calibration(d, 1, 5, 1302);
    const auto x = randn(static_cast<std::size_t>(5 * (d + 1)), 1303);
    CHECK_THROWS_AS(c2.add(ConstMatrixRef<float>(x.data(), 5, d + 1)), ShapeError);
    const std::vector<std::int32_t> ids(4, 0);
    CHECK_THROWS_AS(c2.add(ConstMatrixRef<float>(x.data(), 5, d), std::span<const std::int32_t>(ids)), ShapeError);

    // Hierarchical layers need modality ids in their calibration.
    H hier = make_hier(2, 4, d, F, 141);
    CHECK_THROWS_WITH(KeepMostFrequent{0.5}.apply(hier, cal), Catch::Contains("need modality ids"));
    KeepMostFrequent none{0.5};
    none.collaborative = false;
    CHECK_THROWS_AS(none.apply(hier, hier_calibration(2, d, 1, 10, 1304)), ConfigError);
}

}  // namespace moe_test_prune
