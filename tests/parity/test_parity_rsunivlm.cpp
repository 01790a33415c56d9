// Parity: moe::rsunivlm::load_gmoe_ffn (MoELayer<GranularityRouter, GluExperts<Silu>>) vs.
// RSUniVLM's G-MoE FFN as tools/reference/rsunivlm_gmoe.py computes it (fixture rsunivlm_gmoe):
// three Qwen2MLP SwiGLU experts under model.layers.3.mlp.{0,1,2}, one chosen per request from
// the prompt's task tag ([SEG] -> 2, [VG]/[REF] -> 1, else 0), three requests of different
// granularities in one batch (prompts in the fixture's metadata).
//
// Tolerances:
//   output                         relative Frobenius error <= 1e-5 (fp32 on both sides)
//   chosen expert per request      exact (the router's and every token's plan entry)
//   combine weight                 exactly 1
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "moe/loaders/rsunivlm.hpp"
#include "parity_util.hpp"

namespace moe_test_parity_rsunivlm {  // this file's names (unity builds merge test files)

using namespace moe_test;

TEST_CASE("parity: RSUniVLM G-MoE FFN, one expert per request by granularity", "[parity][rsunivlm]") {
    const auto f = open_fixture("rsunivlm_gmoe");
    const std::string prefix = meta(f, "prefix");
    auto layer = moe::rsunivlm::load_gmoe_ffn<float>(f, prefix);
    REQUIRE(layer.num_experts() == meta_int(f, "num_experts"));
    REQUIRE(layer.hidden_size() == meta_int(f, "hidden_size"));
    CHECK(static_cast<const void*>(layer.experts().down().weight(2).data) ==
          f.get(prefix + "2.down_proj.weight").raw());

    const index_t R = meta_int(f, "requests");
    const moe::TensorView off = f.get("__request_offsets__");
    const moe::TensorView want = f.get("__request_experts__");
    REQUIRE(off.dim(0) == R + 1);
    std::vector<index_t> offsets;
    for (index_t r = 0; r <= R; ++r) offsets.push_back(off.data<std::int32_t>()[r]);
    std::vector<std::string> prompts;
    for (index_t r = 0; r < R; ++r) prompts.push_back(meta(f, "prompt_" + std::to_string(r)));
    layer.router().set_requests(offsets, prompts);

    const moe::TensorView x = f.get("__input__");
    moe::Tensor y(moe::DType::f32, x.shape());
    layer.forward(x.matrix<float>(), y.matrix<float>());

    Report rep{"rsunivlm_gmoe"};
    rep.output_rel = rel_error(y.matrix<float>(), f.get("__output__").matrix<float>());
    INFO("output relative error " << rep.output_rel);
    CHECK(rep.output_rel <= 1e-5);

    const moe::RoutingPlan& plan = layer.plan();
    plan.validate();
    for (index_t r = 0; r < R; ++r) {
        const int e = want.data<std::int32_t>()[r];
        INFO("request " << r << " prompt '" << prompts[static_cast<std::size_t>(r)] << "' reference expert " << e);
        CHECK(layer.router().granularity(prompts[static_cast<std::size_t>(r)]) == e);
        CHECK(layer.router().requests().expert[static_cast<std::size_t>(r)] == e);
        index_t bad = 0;
        for (index_t t = offsets[static_cast<std::size_t>(r)]; t < offsets[static_cast<std::size_t>(r) + 1]; ++t)
            bad += plan.expert_ids[static_cast<std::size_t>(t)] != e || plan.weights[static_cast<std::size_t>(t)] != 1.0f;
        CHECK(bad == 0);
        CHECK(plan.counts[static_cast<std::size_t>(e)] ==
              offsets[static_cast<std::size_t>(r) + 1] - offsets[static_cast<std::size_t>(r)]);
    }
    std::printf("parity %-18s output rel %.2e  experts per request", rep.name.c_str(), rep.output_rel);
    for (index_t r = 0; r < R; ++r) std::printf(" %d", layer.router().requests().expert[static_cast<std::size_t>(r)]);
    std::printf("\n");
}

TEST_CASE("rsunivlm loader: missing and mis-shaped tensors are named", "[parity][rsunivlm][errors]") {
    const auto f = open_fixture("rsunivlm_gmoe");
    const std::string p = meta(f, "prefix");
    for (const std::string& name : {p + "1.up_proj.weight", p + "2.down_proj.weight", p + "0.gate_proj.weight"}) {
        INFO("dropped " << name);
        require_throws_mentioning<moe::NotFoundError>([&] { (void)moe::rsunivlm::load_gmoe_ffn(edited(f, name), p); },
                                                      {"'" + name + "'"});
    }
    require_throws_mentioning<moe::NotFoundError>([&] { (void)moe::rsunivlm::load_gmoe_ffn(f, "model.layers.0.mlp"); },
                                                  {"model.layers.0.mlp.0.gate_proj.weight"});
    const std::string dn = p + "1.down_proj.weight";
    const moe::Tensor wt = zeros(160, 64);
    require_throws_mentioning<moe::ShapeError>([&] { (void)moe::rsunivlm::load_gmoe_ffn(edited(f, dn, dn, &wt), p); },
                                               {dn, "[64, 160]", "[160, 64]"});
}

}  // namespace moe_test_parity_rsunivlm
