// Parity: moe::hf::load_switch_mlp vs. the Mesh-TF / GShard Switch top-1 layer with capacity
// (tools/reference/switch.py, HF SwitchTransformers names; fixture switch_cf1).
//
// Tolerances:
//   output, router logits   relative Frobenius error <= 1e-5 (fp32 on both sides)
//   dropped tokens          output exactly 0 (Mesh-TF / GShard; HF would pass them through)
//   top-1 ids               exact; kept mask and per-expert kept counts exact; capacity exact
//   top-1 weights           |dw| <= 1e-5 (the raw router probability)
//   aux loss, z-loss        relative error <= 1e-5
#include <catch2/catch.hpp>

#include "parity_util.hpp"

namespace moe_test_parity_switch {  // this file's names (unity builds merge test files)

using namespace moe_test;

TEST_CASE("parity: Switch top-1 with capacity (dropped tokens give zero)", "[parity][switch]") {
    const auto f = open_fixture("switch_cf1");
    const std::string prefix = meta(f, "prefix");
    auto layer = moe::hf::load_switch_mlp<float>(f, prefix, meta_double(f, "capacity_factor"));
    REQUIRE(layer.num_experts() == meta_int(f, "num_experts"));
    CHECK(static_cast<const void*>(layer.experts().fc1().weight(0).data) ==
          f.get(prefix + "experts.expert_0.wi.weight").raw());
    CHECK(static_cast<const void*>(layer.router().gate().weight().data) ==
          f.get(prefix + "router.classifier.weight").raw());

    Report rep{"switch_cf1"};
    const moe::Tensor y = run_and_check_output(layer, f, 1e-5, rep);
    const moe::RoutingPlan& plan = layer.plan();
    check_routing(plan, f, /*sorted=*/true, 1e-5, rep);
    check_losses(layer, f, 1e-5, rep);

    CHECK(plan.capacity == meta_int(f, "capacity"));
    const moe::TensorView kept = f.get("__kept__");
    const moe::TensorView counts = f.get("__counts__");
    const index_t T = kept.dim(0), E = counts.dim(0), d = y.dim(1);
    index_t dropped = 0;
    for (index_t t = 0; t < T; ++t) {
        const bool k_ref = kept.data<std::int32_t>()[t] != 0;
        const bool k_got = plan.token_to_slot[static_cast<std::size_t>(t)] >= 0;
        INFO("token " << t);
        CHECK(k_got == k_ref);
        if (!k_ref) {
            ++dropped;
            for (index_t c = 0; c < d; ++c) CHECK(y.data<float>()[t * d + c] == 0.0f);
        }
    }
    CHECK(dropped == meta_int(f, "dropped"));
    CHECK(static_cast<index_t>(plan.dropped.size()) == dropped);
    for (index_t e = 0; e < E; ++e) {
        INFO("expert " << e);
        CHECK(plan.counts[static_cast<std::size_t>(e)] == counts.data<std::int32_t>()[e]);
    }
    rep.print();
}

}  // namespace moe_test_parity_switch
