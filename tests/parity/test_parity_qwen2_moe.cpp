// Parity: moe::hf::load_qwen2_moe vs. transformers' Qwen2MoeSparseMoeBlock
// (tools/reference/qwen2_moe.py; fixture qwen2_moe: norm_topk_prob = False, gated shared expert).
//
// Tolerances:
//   output (routed + sigmoid(x.g) * shared), router logits   relative error <= 1e-5
//   top-k ids       exact, in order (torch.topk sorts)
//   top-k weights   |dw| <= 1e-5 (raw softmax probabilities: not renormalised)
//   aux loss, z-loss  relative error <= 1e-5
#include <catch2/catch.hpp>

#include "parity_util.hpp"

namespace moe_test_parity_qwen2_moe {  // this file's names (unity builds merge test files)

using namespace moe_test;

TEST_CASE("parity: Qwen2-MoE sparse block with gated shared expert", "[parity][qwen2]") {
    const auto f = open_fixture("qwen2_moe");
    const std::string prefix = meta(f, "prefix");
    auto layer = moe::hf::load_qwen2_moe<float>(f, prefix, meta_int(f, "k"), meta_bool(f, "norm_topk_prob"));
    REQUIRE(layer.num_experts() == meta_int(f, "num_experts"));
    REQUIRE(layer.experts().ffn_size() == meta_int(f, "moe_intermediate_size"));
    REQUIRE(layer.shared().experts().ffn_size() == meta_int(f, "shared_expert_intermediate_size"));
    CHECK_FALSE(layer.router().options().renormalize);
    Report rep{"qwen2_moe"};
    run_and_check_output(layer, f, 1e-5, rep);
    check_routing(layer.plan(), f, /*sorted=*/true, 1e-5, rep);
    check_losses(layer, f, 1e-5, rep);
    rep.print();
}

}  // namespace moe_test_parity_qwen2_moe
