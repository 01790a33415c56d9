// Request-level routers: RSUniVLM's granularity router (tag rule, mixed batches, learned
// variant) and RS-MoE's instruction router with a heterogeneous expert container.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "moe/expert/heterogeneous.hpp"
#include "moe/moe.hpp"
#include "moe/router/granularity.hpp"
#include "moe/router/instruction.hpp"
#include "random_inputs.hpp"

namespace moe_test_request_routers {  // this file's names (unity builds merge test files)

using namespace moe;

namespace {
using moe_test::randn;
}  // namespace

TEST_CASE("granularity router: the released tag rule", "[granularity]") {
    GranularityRouter r(/*hidden=*/8);
    REQUIRE(r.granularity("[SEG] segment the water") == 2);
    REQUIRE(r.granularity("[VG] where is the ship?") == 1);
    REQUIRE(r.granularity("[REF] the red roof") == 1);
    REQUIRE(r.granularity("[CAP] describe the image") == 0);
    REQUIRE(r.granularity("[VQA] how many planes?") == 0);
    REQUIRE(r.granularity("[CLS]") == 0);
    REQUIRE(r.granularity("[CCD] what changed") == 0);
    REQUIRE(r.granularity("no tag at all") == 0);
    REQUIRE(r.granularity("[VG] then [SEG]") == 2);  // [SEG] is checked first
    GranularityRouter custom(8, 4, {{"[DET]", 3}}, 1);
    REQUIRE(custom.granularity("[DET] boxes") == 3);
    REQUIRE(custom.granularity("[SEG] masks") == 1);
    REQUIRE_THROWS_AS(GranularityRouter(8, 3, {{"[X]", 3}}, 0), ConfigError);
}

TEST_CASE("granularity router: one expert serves every token of a request; batches may mix", "[granularity]") {
    const index_t d = 16, F = 32;
    GranularityRouter r(d);
    auto experts = GluExperts<Silu>::random(3, d, F, 1);
    MoELayer layer(r, experts);
    layer.router().set_requests({0, 5, 12, 20}, {"[SEG] a", "[CAP] b", "[REF] c"});
    auto x = randn(20 * d, 2);
    std::vector<float> y(x.size());
    layer.forward({x.data(), 20, d}, {y.data(), 20, d});
    const auto& p = layer.plan();
    p.validate();
    for (index_t t = 0; t < 20; ++t) {
        const int want = t < 5 ? 2 : t < 12 ? 0 : 1;
        REQUIRE(p.expert_ids[static_cast<std::size_t>(t)] == want);
        REQUIRE(p.weights[static_cast<std::size_t>(t)] == 1.0f);
    }
    REQUIRE(p.counts == std::vector<std::int32_t>{7, 8, 5});
    // each token's output is its request's expert alone: token 13 is in request 2 ([REF] -> 1)
    RoutingPlan one;
    one.reset(1, 3, 1);
    one.expert_ids[0] = 1;
    one.weights[0] = 1.0f;
    one.finalize();
    std::vector<float> y13(static_cast<std::size_t>(d));
    experts.forward({x.data() + 13 * d, 1, d}, one, {y13.data(), 1, d});
    for (index_t i = 0; i < d; ++i) REQUIRE(y[static_cast<std::size_t>(13 * d + i)] == Approx(y13[static_cast<std::size_t>(i)]).epsilon(1e-6));
    // bad batches
    REQUIRE_THROWS_AS(layer.router().set_requests({0, 5}, {"a", "b"}), ConfigError);
    REQUIRE_THROWS_AS(layer.router().set_requests({1, 5}, {"a"}), ConfigError);
    layer.router().set_requests({0, 5}, {"a"});
    REQUIRE_THROWS_AS(layer.forward({x.data(), 20, d}, {y.data(), 20, d}), ShapeError);
}

TEST_CASE("learned granularity router picks the argmax over the pooled request", "[granularity]") {
    const index_t d = 4;
    // gate rows pick feature 0, 1, 2: the request whose mean is largest in feature j goes to j
    std::vector<float> w{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
    LearnedGranularityRouter r(Gate::from_values(3, d, w), /*use_probability=*/true);
    std::vector<float> x{
        0, 5, 0, 0,  0, 3, 0, 0,             // request 0 -> expert 1
        0, 0, 0, 9,  2, 0, 0, 0,  2, 0, 0, 0 // request 1: mean (4/3, 0, 0, 3) -> expert 0
    };
    r.set_requests({0, 2, 5});
    RoutingPlan p;
    r.route({x.data(), 5, d}, p);
    REQUIRE(r.last_choice().expert == std::vector<int>{1, 0});
    REQUIRE(p.expert_ids == std::vector<std::int32_t>{1, 1, 0, 0, 0});
    const float p1 = std::exp(4.0f) / (2 + std::exp(4.0f));  // request 0: logits (0, 4, 0)
    REQUIRE(p.weights[0] == Approx(p1));
}

namespace {
// Two expert kinds of different widths: a "small LM" mapping its prompt and the context to a
// vector of the shared output size.
struct WideExpert {
    index_t out;
    Tensor run(const ExpertInput& in) {
        Tensor r({1, out});
        double s = 0;
        for (index_t i = 0; i < in.prompt.rows; ++i)
            for (index_t j = 0; j < in.prompt.cols; ++j) s += in.prompt(i, j);
        for (index_t j = 0; j < out; ++j) r.data<float>()[j] = static_cast<float>(s) + float(j);
        return r;
    }
};
struct NarrowExpert {
    index_t out;
    Tensor run(const ExpertInput& in) {
        Tensor r({1, out});
        for (index_t j = 0; j < out; ++j) r.data<float>()[j] = in.context(0, 0) * 2.0f;
        return r;
    }
};
}  // namespace

TEST_CASE("instruction router: weights, prompts of each expert's width, top-k and the plan", "[instruction]") {
    const index_t dq = 6, dv = 5, P = 4, Lp = 3, dp = 7;
    auto r = InstructionRouter::random(dq, dv, P, Lp, dp, {16, 8, 12}, 1);
    auto q = randn(dq, 2);
    auto img = randn(10 * dv, 3);
    auto out = r.route(q, {img.data(), 10, dv});
    double sum = 0;
    for (index_t e = 0; e < 3; ++e) {
        REQUIRE(out.active[static_cast<std::size_t>(e)]);
        REQUIRE(out.prompts[static_cast<std::size_t>(e)].shape() == Shape{Lp, r.expert_width(e)});
        sum += out.weights[static_cast<std::size_t>(e)];
    }
    REQUIRE(sum == Approx(1.0));
    out.plan.validate();
    REQUIRE(out.plan.k == 3);
    // top-1: only the best expert runs, with weight 1
    r.set_k(1);
    auto one = r.route(q, {img.data(), 10, dv});
    int best = 0;
    for (int e = 1; e < 3; ++e)
        if (out.weights[static_cast<std::size_t>(e)] > out.weights[static_cast<std::size_t>(best)]) best = e;
    REQUIRE(one.active[static_cast<std::size_t>(best)]);
    REQUIRE(one.weights[static_cast<std::size_t>(best)] == 1.0f);
    REQUIRE(one.plan.num_slots() == 1);
    REQUIRE_THROWS_AS(r.set_k(4), ConfigError);
    REQUIRE_THROWS_AS(r.route(std::vector<float>(dq + 1), {img.data(), 10, dv}), ShapeError);
}

TEST_CASE("heterogeneous experts dispatch at compile time; aggregators combine", "[instruction]") {
    auto r = InstructionRouter::random(4, 3, 2, 2, 5, {6, 9}, 7);
    std::vector<float> q(4, 0.5f), img(2 * 3, 1.0f);
    const auto routing = r.route(q, {img.data(), 2, 3});
    HeterogeneousExperts<WideExpert, NarrowExpert> experts(WideExpert{3}, NarrowExpert{3});
    std::vector<float> ctx{1.5f, 0.0f};
    auto outs = experts.run(routing, {ctx.data(), 1, 2});
    const Tensor sum = WeightedSum{}(outs, routing.weights);
    for (index_t j = 0; j < 3; ++j)
        REQUIRE(sum.data<float>()[j] == Approx(routing.weights[0] * outs[0].data<float>()[j] +
                                               routing.weights[1] * outs[1].data<float>()[j]));
    const Tensor cat = experts.forward(routing, {ctx.data(), 1, 2}, Concat{});
    REQUIRE(cat.shape() == Shape{1, 6});
    REQUIRE(cat.data<float>()[3] == 3.0f);  // the narrow expert's first output: 1.5 * 2
    // a user aggregator: the output of the heaviest expert
    auto pick = [](const std::vector<Tensor>& o, std::span<const float> w) {
        return Tensor::copy_of(o[w[0] >= w[1] ? 0 : 1].view());
    };
    const Tensor best = experts.forward(routing, {ctx.data(), 1, 2}, pick);
    REQUIRE(best.shape() == Shape{1, 3});
}

}  // namespace moe_test_request_routers
