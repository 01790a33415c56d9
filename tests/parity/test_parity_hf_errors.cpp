// moe::hf loaders on broken checkpoints (edited copies of the parity fixtures): a missing tensor
// raises NotFoundError naming the full tensor name, a mis-shaped one ShapeError naming it with
// the expected and the found shape, a bad configuration ConfigError.
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

#include "parity_util.hpp"

namespace moe_test_parity_hf_errors {  // this file's names (unity builds merge test files)

using namespace moe_test;

TEST_CASE("hf loaders: a missing tensor names the full tensor name", "[parity][hf][errors]") {
    const auto f = open_fixture("mixtral_f32");
    const std::string p = meta(f, "prefix");
    for (const std::string& name : {p + "experts.3.w2.weight", p + "experts.0.w1.weight", p + "gate.weight",
                                   p + "experts.7.w3.weight"}) {
        INFO("dropped " << name);
        const auto g = edited(f, name);
        require_throws_mentioning<moe::NotFoundError>([&] { (void)moe::hf::load_mixtral_block(g, p); },
                                                      {"'" + name + "'"});
    }
    // a wrong prefix: nothing under it
    require_throws_mentioning<moe::NotFoundError>(
        [&] { (void)moe::hf::load_mixtral_block(f, "model.layers.1.block_sparse_moe"); },
        {"model.layers.1.block_sparse_moe.experts.0.w1.weight"});

    const auto d = open_fixture("deepseek_v3");
    const std::string dp = meta(d, "prefix");
    for (const std::string& name : {dp + "gate.e_score_correction_bias", dp + "shared_experts.up_proj.weight",
                                   dp + "experts.5.gate_proj.weight"}) {
        INFO("dropped " << name);
        const auto g = edited(d, name);
        require_throws_mentioning<moe::NotFoundError>(
            [&] { (void)moe::hf::load_deepseek_v3_moe(g, dp, {4, 4, 2, 2.5f, true}); }, {"'" + name + "'"});
    }

    const auto r = open_fixture("rs_moe_token");
    const std::string rp = meta(r, "prefix");
    for (const std::string& name : {rp + "experts.1.fc2.bias", rp + "shared_experts.1.fc1.weight"}) {
        INFO("dropped " << name);
        const auto g = edited(r, name);
        require_throws_mentioning<moe::NotFoundError>([&] { (void)moe::hf::load_rs_moe_token(g, rp, 2); },
                                                      {"'" + name + "'"});
    }

    const auto q = open_fixture("qwen2_moe");
    const std::string qp = meta(q, "prefix");
    const std::string qname = qp + "shared_expert_gate.weight";
    require_throws_mentioning<moe::NotFoundError>(
        [&] { (void)moe::hf::load_qwen2_moe(edited(q, qname), qp, 2); }, {"'" + qname + "'"});

    const auto s = open_fixture("switch_cf1");
    const std::string sp = meta(s, "prefix");
    const std::string sname = sp + "router.classifier.weight";
    require_throws_mentioning<moe::NotFoundError>(
        [&] { (void)moe::hf::load_switch_mlp(edited(s, sname), sp, 1.0); }, {"'" + sname + "'"});
}

TEST_CASE("hf loaders: a mis-shaped tensor names it with the expected and found shapes", "[parity][hf][errors]") {
    const auto f = open_fixture("mixtral_f32");
    const std::string p = meta(f, "prefix");
    const index_t d = meta_int(f, "hidden_size"), F = meta_int(f, "intermediate_size"), E = meta_int(f, "num_experts");
    struct Bad {
        std::string name;
        index_t rows, cols;
        std::string expected;
    };
    const std::vector<Bad> bad = {
        {p + "experts.2.w3.weight", F, d + 1, moe::Shape{F, d}.str()},
        {p + "experts.5.w2.weight", F, d, moe::Shape{d, F}.str()},
        {p + "gate.weight", E - 1, d, moe::Shape{E, d}.str()},
    };
    for (const auto& b : bad) {
        INFO("replaced " << b.name);
        const moe::Tensor t = zeros(b.rows, b.cols);
        const auto g = edited(f, "", b.name, &t);
        require_throws_mentioning<moe::ShapeError>(
            [&] { (void)moe::hf::load_mixtral_block(g, p); },
            {b.name, "expected shape " + b.expected, "found " + moe::Shape{b.rows, b.cols}.str()});
    }

    const auto dsf = open_fixture("deepseek_v3");
    const std::string dp = meta(dsf, "prefix");
    const moe::Tensor bias(moe::DType::f32, {meta_int(dsf, "num_experts") + 1});
    const std::string bname = dp + "gate.e_score_correction_bias";
    require_throws_mentioning<moe::ShapeError>(
        [&] { (void)moe::hf::load_deepseek_v3_moe(edited(dsf, "", bname, &bias), dp, {4, 4, 2, 2.5f, true}); },
        {bname, "expected shape [16]", "found [17]"});
}

TEST_CASE("hf loaders: impossible configurations are ConfigErrors", "[parity][hf][errors]") {
    const auto f = open_fixture("mixtral_f32");
    CHECK_THROWS_AS(moe::hf::load_mixtral_block(f, meta(f, "prefix"), 9), moe::ConfigError);
    const auto d = open_fixture("deepseek_v3");
    // 16 experts do not split into 3 groups
    CHECK_THROWS_AS(moe::hf::load_deepseek_v3_moe(d, meta(d, "prefix"), {4, 3, 2, 2.5f, true}), moe::ConfigError);
}

TEST_CASE("hf loaders: the layer keeps the mapping alive after the file object is gone", "[parity][hf]") {
    std::optional<moe::hf::MixtralMoE<float>> layer;
    moe::Tensor x, y_ref;
    {
        const auto f = open_fixture("mixtral_f32");
        layer.emplace(moe::hf::load_mixtral_block(f, meta(f, "prefix"), meta_int(f, "k")));
        x = moe::Tensor::copy_of(f.get("__input__"));
        y_ref = moe::Tensor::copy_of(f.get("__output__"));
    }
    const moe::Tensor y = layer->forward(x);
    CHECK(rel_error(y.matrix<float>(), y_ref.matrix<float>()) <= 1e-5);
}

}  // namespace moe_test_parity_hf_errors
