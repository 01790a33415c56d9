// Parity: moe::hf::load_deepseek_v3_moe vs. transformers' DeepseekV3MoE + DeepseekV3TopkRouter
// (noaux_tc; tools/reference/deepseek.py; fixtures deepseek_v3, deepseek_v3_bias,
// deepseek_v3_mask0). The loader mirrors transformers exactly: masked groups' experts score
// 0.0 (TopKOptions::group_mask_value = 0) and the renormalisation adds 1e-20 (renorm_eps).
//
// Tolerances:
//   output (routed + shared), router logits   relative Frobenius error <= 1e-5
//   top-k ids     exact as sets per token (the reference's topk is unsorted; the fixture rows
//                 are sorted by (weight desc, index asc) and so are moe's choices here)
//   top-k weights |dw| <= 1e-5 * max(1, |w|) (weights include routed_scaling_factor 2.5)
// No aux / z loss: DeepSeek-V3 routes with sigmoid scores (aux-loss-free balancing).
#include <catch2/catch.hpp>

#include <algorithm>
#include <limits>
#include <vector>

#include "parity_util.hpp"

namespace moe_test_parity_deepseek {  // this file's names (unity builds merge test files)

using namespace moe_test;

namespace {

moe::hf::DeepSeekV3Config config_of(const moe::io::SafetensorsFile& f) {
    moe::hf::DeepSeekV3Config c;
    c.k = meta_int(f, "k");
    c.n_group = meta_int(f, "n_group");
    c.topk_group = meta_int(f, "topk_group");
    c.routed_scaling_factor = static_cast<float>(meta_double(f, "routed_scaling_factor"));
    c.norm_topk_prob = meta_bool(f, "norm_topk_prob");
    return c;
}

void deepseek_case(const std::string& fixture) {
    const auto f = open_fixture(fixture);
    const std::string prefix = meta(f, "prefix");
    auto layer = moe::hf::load_deepseek_v3_moe<float>(f, prefix, config_of(f));
    REQUIRE(layer.num_experts() == meta_int(f, "num_experts"));
    REQUIRE(layer.experts().ffn_size() == meta_int(f, "moe_intermediate_size"));
    REQUIRE(layer.shared().experts().ffn_size() ==
            meta_int(f, "moe_intermediate_size") * meta_int(f, "n_shared_experts"));
    CHECK(layer.router().options().group_mask_value == 0.0f);
    CHECK(layer.router().options().renorm_eps == 1e-20f);
    CHECK(static_cast<const void*>(layer.experts().down().weight(1).data) ==
          f.get(prefix + "experts.1.down_proj.weight").raw());
    Report rep{fixture};
    run_and_check_output(layer, f, 1e-5, rep);
    check_routing(layer.plan(), f, /*sorted=*/false, 1e-5, rep);
    rep.print();
}

}  // namespace

TEST_CASE("parity: DeepSeek-V3 MoE: small random correction bias", "[parity][deepseek]") {
    deepseek_case("deepseek_v3");
}

TEST_CASE("parity: DeepSeek-V3 MoE: a bias that changes the chosen groups and experts", "[parity][deepseek]") {
    deepseek_case("deepseek_v3_bias");
}

TEST_CASE("parity: DeepSeek-V3 MoE: masked experts (0.0) beat negative biased scores", "[parity][deepseek]") {
    deepseek_case("deepseek_v3_mask0");
    // The same weights with -inf masking choose differently: the fixture does test the mask value.
    const auto f = open_fixture("deepseek_v3_mask0");
    auto layer = moe::hf::load_deepseek_v3_moe<float>(f, meta(f, "prefix"), config_of(f));
    moe::TopKOptions o = layer.router().options();
    o.group_mask_value = -std::numeric_limits<float>::infinity();
    moe::TopKRouter<moe::SigmoidScores> inf_router(layer.router().gate(), o);
    moe::RoutingPlan plan;
    inf_router.route(f.get("__input__").matrix<float>(), plan);
    const auto* ref = f.get("__topk_ids__").data<std::int32_t>();
    index_t differ = 0;
    for (index_t t = 0; t < plan.num_tokens; ++t) {
        std::vector<std::int32_t> a(plan.expert_ids.begin() + t * plan.k, plan.expert_ids.begin() + (t + 1) * plan.k);
        std::vector<std::int32_t> b(ref + t * plan.k, ref + (t + 1) * plan.k);
        std::sort(a.begin(), a.end());
        std::sort(b.begin(), b.end());
        differ += a != b;
    }
    CHECK(differ == plan.num_tokens);
}

}  // namespace moe_test_parity_deepseek
