// Parity: moe::hf::load_rs_moe_token vs. RS-MoE's released token MoE
// (tools/reference/rs_moe_token.py; fixture rs_moe_token: 4 experts, top-2, 2 shared, gate
// with bias, GELU (erf) MLP experts d -> 4d -> d with biases).
//
// Tolerances:
//   output (routed + shared), router logits   relative Frobenius error <= 1e-5
//   top-k ids        exact, in order (torch.topk sorts)
//   top-k weights    |dw| <= 1e-5 (renormalised)
//   aux loss, z-loss relative error <= 1e-5
#include <catch2/catch.hpp>

#include "parity_util.hpp"

namespace moe_test_parity_rs_moe {  // this file's names (unity builds merge test files)

using namespace moe_test;

TEST_CASE("parity: RS-MoE token MoE with shared experts", "[parity][rs_moe]") {
    const auto f = open_fixture("rs_moe_token");
    const std::string prefix = meta(f, "prefix");
    auto layer = moe::hf::load_rs_moe_token<float>(f, prefix, meta_int(f, "k"));
    REQUIRE(layer.num_experts() == meta_int(f, "num_experts"));
    REQUIRE(layer.shared().experts().num_experts() == meta_int(f, "num_shared_experts"));
    REQUIRE(layer.experts().ffn_size() == meta_int(f, "intermediate_size"));
    CHECK(layer.experts().fc1().has_bias());
    CHECK(layer.experts().fc2().has_bias());
    CHECK(layer.router().gate().bias() != nullptr);
    CHECK(static_cast<const void*>(layer.experts().fc1().bias(2)) == f.get(prefix + "experts.2.fc1.bias").raw());
    Report rep{"rs_moe_token"};
    run_and_check_output(layer, f, 1e-5, rep);
    check_routing(layer.plan(), f, /*sorted=*/true, 1e-5, rep);
    check_losses(layer, f, 1e-5, rep);
    rep.print();
}

}  // namespace moe_test_parity_rs_moe
