// LoRA adapters over the decoder (moe/backend/cpu/lora.hpp, lm/decoder/lora.hpp): the backend
// operations by hand, the PEFT config and file readers' errors, and (fixtures of
// tools/reference/fixtures_lora.py) three PEFT adapters decoded as one batch with per-sequence
// adapters against tools/reference/lora.py + hf_decoder.py.
//
// Tolerances (relative: max |a - b| / max |b|): reference logits 1e-4, greedy ids identical;
// batched multi-LoRA vs each adapter merged into its own base 1e-5 (fp32 weights); a base-only
// sequence in a batch with adapters vs the base model alone 1e-6; thread counts bit-identical; the
// backend's apply / merge vs a naive loop 1e-6 (fp32) and one bf16 rounding for a bf16 merge.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "lm/decoder.hpp"
#include "moe/backend/cpu/lora.hpp"
#include "moe/io/safetensors.hpp"
#include "../parity/fixture_dir.hpp"
#include "../parity/parity_util.hpp"
#include "../unit/skip.hpp"
#include "../unit/throws.hpp"

namespace moe_test_lora {  // this file's names (unity builds merge test files)

using namespace moe;
using lm::DecoderConfig;
using lm::LogitRows;

using moe_test::throws_with;

namespace {

/// max |a - b| / max |b| (parity_util.hpp's, shared with the parity tests).
double rel(const float* a, const float* b, index_t n) { return moe_test::max_rel(a, b, n); }

std::vector<float> randn(std::size_t n, std::uint64_t seed, float sd = 1.0f) {
    std::mt19937_64 g(seed);
    std::normal_distribution<float> d(0.0f, sd);
    std::vector<float> v(n);
    for (float& x : v) x = d(g);
    return v;
}

/// y [T, out] = x W^T + scale * x A^T B^T, naive (double accumulation).
std::vector<float> naive(const std::vector<float>& x, index_t T, index_t in, const std::vector<float>& wt, index_t out,
                         const std::vector<float>& a, const std::vector<float>& b, index_t r, float scale) {
    std::vector<float> y(static_cast<std::size_t>(T * out));
    for (index_t t = 0; t < T; ++t)
        for (index_t o = 0; o < out; ++o) {
            double s = 0;
            for (index_t i = 0; i < in; ++i) {
                double d = wt.empty() ? 0 : wt[static_cast<std::size_t>(o * in + i)];
                for (index_t k = 0; k < r; ++k)
                    d += scale * static_cast<double>(b[static_cast<std::size_t>(o * r + k)]) * a[static_cast<std::size_t>(k * in + i)];
                s += d * x[static_cast<std::size_t>(t * in + i)];
            }
            y[static_cast<std::size_t>(t * out + o)] = static_cast<float>(s);
        }
    return y;
}

const char* kSmallConfig = R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256})";

/// A temporary PEFT folder: adapter_config.json text and the tensors of adapter_model.safetensors.
struct TempAdapter {
    std::filesystem::path dir;
    explicit TempAdapter(const std::string& name) {
        dir = std::filesystem::temp_directory_path() / ("moe_test_lora_" + name);
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
    }
    ~TempAdapter() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    TempAdapter(const TempAdapter&) = delete;
    TempAdapter& operator=(const TempAdapter&) = delete;
    void config(const std::string& text) const { std::ofstream(dir / "adapter_config.json") << text; }
    void tensors(const io::SafetensorsWriter& w) const { w.write(dir / "adapter_model.safetensors"); }
};

std::string peft_config(const std::string& targets, const std::string& extra = "") {
    return std::string(R"({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "bias": "none",
        "task_type": "CAUSAL_LM", "target_modules": )") + targets + extra + "}";
}

/// lora_A [r, in] / lora_B [out, r] of `target` in every layer of the small config.
void add_module(io::SafetensorsWriter& w, const std::string& module, index_t r, index_t in, index_t out,
                const std::string& suffix = ".weight", index_t layers = 2) {
    for (index_t l = 0; l < layers; ++l) {
        const std::string stem = "base_model.model.model.layers." + std::to_string(l) + "." + module;
        const Tensor a = Tensor::from<float>({r, in}, randn(static_cast<std::size_t>(r * in), 7 + l));
        const Tensor b = Tensor::from<float>({out, r}, randn(static_cast<std::size_t>(out * r), 9 + l));
        w.add(stem + ".lora_A" + suffix, a.view());
        w.add(stem + ".lora_B" + suffix, b.view());
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// backend

TEST_CASE("cpu::LoraAdapter and LoraBank: y += scale * (x A^T) B^T on row ranges", "[lora]") {
    const index_t T = 5, in = 24, out = 40, r = 3;
    const float scale = 8.0f / 3;
    const auto x = randn(static_cast<std::size_t>(T * in), 1), a = randn(static_cast<std::size_t>(r * in), 2),
               b = randn(static_cast<std::size_t>(out * r), 3);
    const cpu::LoraAdapter ad = cpu::LoraAdapter::from_values(r, in, out, a, b, scale, "t");
    CHECK(ad.rank() == r);
    CHECK(ad.parameters() == r * (in + out));
    const auto want = naive(x, T, in, {}, out, a, b, r, scale);
    // the bank: rows 0..1 adapter 4, row 2 none, rows 3..4 adapter 9 (not in this bank: skipped)
    cpu::LoraBank bank;
    bank.set(4, ad);
    std::vector<float> y(static_cast<std::size_t>(T * out), 1.0f);
    const std::vector<cpu::LoraRows> ranges{{0, 2, 4}, {2, 1, -1}, {3, 2, 9}};
    CHECK(bank.touches(ranges));
    bank.apply(ConstMatrixRef<float>(x.data(), T, in), MatrixRef<float>(y.data(), T, out), ranges);
    for (index_t t = 0; t < T; ++t)
        for (index_t o = 0; o < out; ++o) {
            const float got = y[static_cast<std::size_t>(t * out + o)];
            if (t < 2) CHECK(got - 1.0f == Approx(want[static_cast<std::size_t>(t * out + o)]).margin(1e-4));
            else CHECK(got == 1.0f);
        }
    CHECK_FALSE(bank.touches(std::vector<cpu::LoraRows>{{0, 5, 9}}));
    CHECK(bank.remove(4));
    CHECK(bank.empty());
    // delta = scale * B A
    const auto d = ad.delta();
    double err = 0;
    for (index_t o = 0; o < out; ++o)
        for (index_t i = 0; i < in; ++i) {
            double s = 0;
            for (index_t k = 0; k < r; ++k) s += b[static_cast<std::size_t>(o * r + k)] * a[static_cast<std::size_t>(k * in + i)];
            err = std::max(err, std::fabs(scale * s - d[static_cast<std::size_t>(o * in + i)]));
        }
    CHECK(err < 1e-5);
    throws_with<ShapeError>([&] { (void)cpu::LoraAdapter::from_values(r, in, out, a, std::vector<float>(3), 1, "bad"); },
                            "bad");
    throws_with<ConfigError>([] { (void)cpu::lora_scale(8, 0, false); }, "rank must be positive");
    CHECK(cpu::lora_scale(8, 4, true) == 4.0f);
    CHECK(cpu::lora_scale(16, 4, false) == 4.0f);
}

TEST_CASE("cpu::merge_lora: base + scale * B A for fp32 and a bf16 base kept as given", "[lora]") {
    const index_t T = 3, in = 32, out = 20, r = 2;
    const float scale = 4.0f;
    const auto x = randn(static_cast<std::size_t>(T * in), 11), w = randn(static_cast<std::size_t>(out * in), 12),
               a = randn(static_cast<std::size_t>(r * in), 13), b = randn(static_cast<std::size_t>(out * r), 14, 0.1f),
               bias = randn(static_cast<std::size_t>(out), 15);
    const cpu::LoraAdapter ad = cpu::LoraAdapter::from_values(r, in, out, a, b, scale);
    const auto want = naive(x, T, in, w, out, a, b, r, scale);
    {
        const auto base = cpu::Linear<float>::from_values(out, in, w, bias);
        const auto m = cpu::merge_lora(base, ad);
        std::vector<float> y(static_cast<std::size_t>(T * out));
        m.forward(ConstMatrixRef<float>(x.data(), T, in), MatrixRef<float>(y.data(), T, out));
        for (index_t i = 0; i < T * out; ++i) y[static_cast<std::size_t>(i)] -= bias[static_cast<std::size_t>(i % out)];
        CHECK(rel(y.data(), want.data(), T * out) < 1e-5);
        // base unchanged
        CHECK(base.weight()(0, 0) == w[0]);
    }
    {
        Tensor wb(DType::bf16, {out, in});
        for (index_t i = 0; i < out * in; ++i) wb.data<bf16>()[i] = from_float<bf16>(w[static_cast<std::size_t>(i)]);
        std::vector<float> wr(w.size());  // the bf16-rounded base
        for (std::size_t i = 0; i < w.size(); ++i) wr[i] = to_float(wb.data<bf16>()[i]);
        const bf16* stored = wb.data<bf16>();
        const cpu::Linear<bf16> base(std::move(wb), Tensor(), "bf16 base");
        CHECK(base.weight().data == stored);  // kept as given, not converted
        const auto m = cpu::merge_lora(base, ad);
        CHECK(base.weight().data == stored);
        const auto d = ad.delta();
        double err = 0;
        for (index_t o = 0; o < out; ++o)
            for (index_t i = 0; i < in; ++i) {
                const double exact = wr[static_cast<std::size_t>(o * in + i)] + d[static_cast<std::size_t>(o * in + i)];
                err = std::max(err, std::fabs(to_float(m.weight()(o, i)) - exact) / std::max(1e-3, std::fabs(exact)));
            }
        CHECK(err <= 1.0 / 256);  // one bf16 rounding (8 bits of mantissa)
    }
    const auto other = cpu::Linear<float>::from_values(in, in, std::vector<float>(static_cast<std::size_t>(in * in)));
    throws_with<ShapeError>([&] { (void)cpu::merge_lora(other, ad, "m"); }, "the base Linear [32, 32]");
}

TEST_CASE("Step::add: adapters stay empty until a sequence has one", "[lora]") {
    lm::Step s;
    s.add(0, 3).add(1, 2, -1);
    CHECK(s.adapters.empty());
    s.add(2, 1, -1, 5).add(3, 1);
    CHECK(s.adapters == std::vector<int>{-1, -1, 5, -1});
    CHECK(s.experts.empty());
}

// ---------------------------------------------------------------------------------------------
// adapter_config.json

TEST_CASE("LoraConfig: PEFT's fields, patterns, and every unsupported option a clear error", "[lora]") {
    const lm::LoraConfig c = lm::LoraConfig::from_json(peft_config(R"(["q_proj", "v_proj", "down_proj"])",
        R"(, "use_rslora": true, "layers_to_transform": [1], "rank_pattern": {"layers.1.self_attn.v_proj": 3},
        "alpha_pattern": {"down_proj": 12}, "base_model_name_or_path": "base")"));
    CHECK(c.r == 2);
    CHECK(c.lora_alpha == 4);
    CHECK(c.targets == std::vector<lm::LoraTarget>{lm::LoraTarget::q_proj, lm::LoraTarget::v_proj, lm::LoraTarget::down_proj});
    CHECK(c.transforms(1));
    CHECK_FALSE(c.transforms(0));
    CHECK(c.rank_of(1, lm::LoraTarget::v_proj) == 3);
    CHECK(c.rank_of(0, lm::LoraTarget::v_proj) == 2);
    CHECK(c.rank_of(1, lm::LoraTarget::q_proj) == 2);
    CHECK(c.alpha_of(0, lm::LoraTarget::down_proj) == 12);
    CHECK(c.scale_of(1, lm::LoraTarget::q_proj) == Approx(4 / std::sqrt(2.0)));
    CHECK(c.base_model_name_or_path == "base");
    CHECK(lm::LoraConfig::from_json(peft_config(R"("gate_proj")")).targets == std::vector<lm::LoraTarget>{lm::LoraTarget::gate_proj});
    CHECK(lm::LoraConfig::from_json(peft_config(R"("all-linear")")).targets.size() == 7);
    CHECK(lm::LoraConfig::from_json(peft_config(R"(["q_proj"])", R"(, "layers_to_transform": 0)")).layers_to_transform ==
          std::vector<index_t>{0});

    auto parse = [](const std::string& s) { return [s] { (void)lm::LoraConfig::from_json(s, "cfg.json"); }; };
    throws_with<ConfigError>(parse(R"({"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 20})"),
                             "peft_type 'PREFIX_TUNING' is not supported");
    throws_with<ConfigError>(parse(peft_config(R"(["q_proj"])", R"(, "fan_in_fan_out": true)")), "fan_in_fan_out");
    throws_with<ConfigError>(parse(R"({"peft_type": "LORA", "target_modules": ["q_proj"], "bias": "all"})"), "bias 'all'");
    throws_with<ConfigError>(parse(R"({"peft_type": "LORA", "target_modules": ["q_proj"], "bias": "lora_only"})"),
                             "bias 'lora_only'");
    throws_with<ConfigError>(parse(peft_config(R"x(".*\\.(q_proj|v_proj)")x")), "regex targets are not supported");
    throws_with<ConfigError>(parse(peft_config(R"(["q_proj", "lm_head"])")), "'lm_head' is not supported");
    throws_with<ConfigError>(parse(peft_config(R"(["embed_tokens"])")), "'embed_tokens' is not supported");
    throws_with<ConfigError>(parse(peft_config(R"(["c_attn"])")), "'c_attn' is not a LLaMA / Qwen2 linear");
    throws_with<ConfigError>(parse(peft_config(R"(["q_proj"])", R"(, "modules_to_save": ["lm_head"])")), "modules_to_save");
    throws_with<ConfigError>(parse(peft_config(R"(["q_proj"])", R"(, "use_dora": true)")), "DoRA");
    throws_with<ConfigError>(parse(R"({"peft_type": "LORA", "r": 0, "target_modules": ["q_proj"]})"), "r must be a positive");
    throws_with<ConfigError>(parse(R"({"peft_type": "LORA"})"), "target_modules is missing");
    throws_with<ConfigError>(parse(peft_config("[]")), "target_modules is empty");
    throws_with<ConfigError>(parse(peft_config(R"(["q_proj"])", R"(, "rank_pattern": {"^model.*": 4})")), "is a regex");
    throws_with<FormatError>(parse("{\"peft_type\": \"LORA\","), "cfg.json");
}

// ---------------------------------------------------------------------------------------------
// adapter folders

TEST_CASE("read_peft_adapter: PEFT names, and every bad folder a clear error", "[lora]") {
    const DecoderConfig m = DecoderConfig::from_json(kSmallConfig);
    {
        TempAdapter t("ok");
        t.config(peft_config(R"(["q_proj", "down_proj"])"));
        io::SafetensorsWriter w;
        add_module(w, "self_attn.q_proj", 2, 64, 64, ".default.weight");  // the adapter-name form
        add_module(w, "mlp.down_proj", 2, 128, 64, ".default.weight");
        t.tensors(w);
        const lm::LoraWeights a = lm::read_peft_adapter(t.dir, m);
        REQUIRE(a.modules.size() == 4);
        CHECK(a.parameters() == 2 * (2 * (64 + 64) + 2 * (128 + 64)));
        CHECK(a.modules[0].adapter.scale() == 2.0f);
        CHECK(a.has_ffn_targets());
        CHECK(lm::LoraConfig::from_json(peft_config(R"(["q_proj"])", R"(, "fan_in_fan_out": false)")).r == 2);
    }
    {  // two adapter-name forms in one file
        TempAdapter t("mixed");
        t.config(peft_config(R"(["q_proj", "down_proj"])"));
        io::SafetensorsWriter w;
        add_module(w, "self_attn.q_proj", 2, 64, 64);
        add_module(w, "mlp.down_proj", 2, 128, 64, ".default.weight");
        t.tensors(w);
        throws_with<FormatError>([&] { (void)lm::read_peft_adapter(t.dir, m); }, "one adapter per file");
    }
    {  // missing files
        TempAdapter t("missing");
        throws_with<NotFoundError>([&] { (void)lm::read_peft_adapter(t.dir, m); }, "adapter_config.json");
        t.config(peft_config(R"(["q_proj"])"));
        throws_with<NotFoundError>([&] { (void)lm::read_peft_adapter(t.dir, m); }, "adapter_model.safetensors");
    }
    {  // r in the file is not the config's r
        TempAdapter t("rank");
        t.config(peft_config(R"(["q_proj"])"));
        io::SafetensorsWriter w;
        add_module(w, "self_attn.q_proj", 3, 64, 64);
        t.tensors(w);
        throws_with<ShapeError>([&] { (void)lm::read_peft_adapter(t.dir, m); },
                                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' is [3, 64], expected lora_A [r = 2");
    }
    {  // a target module with no tensors
        TempAdapter t("absent");
        t.config(peft_config(R"(["q_proj", "v_proj"])"));
        io::SafetensorsWriter w;
        add_module(w, "self_attn.q_proj", 2, 64, 64);
        t.tensors(w);
        throws_with<NotFoundError>([&] { (void)lm::read_peft_adapter(t.dir, m); },
                                   "no tensor 'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight'");
    }
    {  // only one layer of two
        TempAdapter t("layer");
        t.config(peft_config(R"(["q_proj"])"));
        io::SafetensorsWriter w;
        add_module(w, "self_attn.q_proj", 2, 64, 64, ".weight", 1);
        t.tensors(w);
        throws_with<NotFoundError>([&] { (void)lm::read_peft_adapter(t.dir, m); }, "layers.1.self_attn.q_proj.lora_A");
    }
    {  // a tensor of a module target_modules does not list
        TempAdapter t("unlisted");
        t.config(peft_config(R"(["q_proj"])"));
        io::SafetensorsWriter w;
        add_module(w, "self_attn.q_proj", 2, 64, 64);
        add_module(w, "self_attn.k_proj", 2, 64, 32);
        t.tensors(w);
        throws_with<FormatError>([&] { (void)lm::read_peft_adapter(t.dir, m); }, "adapts k_proj, which target_modules");
    }
    {  // a layer beyond the model; a tensor that is no LoRA weight
        TempAdapter t("beyond");
        t.config(peft_config(R"(["q_proj"])"));
        io::SafetensorsWriter w;
        add_module(w, "self_attn.q_proj", 2, 64, 64, ".weight", 3);
        t.tensors(w);
        throws_with<FormatError>([&] { (void)lm::read_peft_adapter(t.dir, m); },
                                 "layers.2.self_attn.q_proj.lora_A.weight' is for layer 2, the model has 2 layers");
        io::SafetensorsWriter w2;
        add_module(w2, "self_attn.q_proj", 2, 64, 64);
        w2.add("base_model.model.lm_head.lora_A.weight", Tensor::from<float>({2, 64}, randn(128, 1)).view());
        t.tensors(w2);
        throws_with<FormatError>([&] { (void)lm::read_peft_adapter(t.dir, m); },
                                 "'base_model.model.lm_head.lora_A.weight' is not a LoRA weight of a decoder layer");
    }
    {  // truncated safetensors; corrupt JSON
        TempAdapter t("truncated");
        t.config(peft_config(R"(["q_proj"])"));
        io::SafetensorsWriter w;
        add_module(w, "self_attn.q_proj", 2, 64, 64);
        auto bytes = w.to_bytes();
        bytes.resize(bytes.size() - 100);
        std::ofstream(t.dir / "adapter_model.safetensors", std::ios::binary)
            .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        throws_with<FormatError>([&] { (void)lm::read_peft_adapter(t.dir, m); }, "adapter_model.safetensors");
        t.config("{\"peft_type\": \"LORA\", \"r\": ");
        throws_with<FormatError>([&] { (void)lm::read_peft_adapter(t.dir, m); }, "adapter_config.json");
    }
}

namespace {

/// An FFN slot that is not a GatedLinearFfn (y = 0).
struct ZeroFfn {
    void forward(ConstMatrixRef<float>, MatrixRef<float> y) const {
        for (index_t r = 0; r < y.rows; ++r) std::fill_n(y.row(r), y.cols, 0.0f);
    }
};

lm::CausalLM<ZeroFfn> zero_ffn_model() {
    const DecoderConfig c = DecoderConfig::from_json(kSmallConfig);
    std::vector<lm::DecoderLayer<ZeroFfn>> layers;
    for (int i = 0; i < 2; ++i)
        layers.push_back({std::vector<float>(64, 1.0f), std::vector<float>(64, 1.0f),
                          cpu::Linear<float>::random(1, 64, 64, false, 1), cpu::Linear<float>::random(1, 32, 64, false, 2),
                          cpu::Linear<float>::random(1, 32, 64, false, 3), cpu::Linear<float>::random(1, 64, 64, false, 4),
                          ZeroFfn{}});
    return lm::CausalLM<ZeroFfn>(c, Tensor::from<float>({256, 64}, randn(256 * 64, 5)), std::move(layers),
                                 std::vector<float>(64, 1.0f), cpu::Linear<float>::random(1, 256, 64, false, 6));
}

lm::LoraWeights weights_for(lm::LoraTarget t, index_t out, index_t in, index_t layer = 0) {
    lm::LoraWeights w;
    w.source = "test";
    w.modules.push_back({layer, t, cpu::LoraAdapter::from_values(2, in, out, randn(static_cast<std::size_t>(2 * in), 1),
                                                                randn(static_cast<std::size_t>(2 * out), 2), 1.0f)});
    return w;
}

}  // namespace

TEST_CASE("CausalLM adapters: ids, FFN adapters on a slot that cannot take them, unknown ids", "[lora]") {
    auto m = zero_ffn_model();
    throws_with<ConfigError>([&] { m.add_adapter(0, weights_for(lm::LoraTarget::gate_proj, 128, 64)); },
                             "FFN adapters are not supported");
    throws_with<ShapeError>([&] { m.add_adapter(0, weights_for(lm::LoraTarget::k_proj, 64, 64)); }, "k_proj");
    throws_with<ConfigError>([&] { m.add_adapter(-1, weights_for(lm::LoraTarget::q_proj, 64, 64)); }, "ids are >= 0");
    throws_with<ConfigError>([&] { m.add_adapter(0, weights_for(lm::LoraTarget::q_proj, 64, 64, 2)); }, "layer 2");
    m.add_adapter(3, weights_for(lm::LoraTarget::q_proj, 64, 64));
    CHECK(m.has_adapter(3));
    CHECK(m.adapter_ids() == std::vector<int>{3});
    CHECK(m.adapter_parameters(3) == 2 * (64 + 64));
    auto cache = m.make_cache(2, 16);
    const std::vector<std::int32_t> ids{5, 6, 7};
    const Tensor base = m.prefill(cache, 0, ids, -1, LogitRows::all);
    const Tensor with = m.prefill(cache, 1, ids, -1, LogitRows::all, 3);
    CHECK(rel(with.data<float>(), base.data<float>(), base.numel()) > 1e-3);  // the adapter changes q
    throws_with<ConfigError>([&] { (void)m.prefill(cache, 1, ids, -1, LogitRows::all, 4); }, "adapter 4, which is not loaded");
    const index_t slots[] = {0, 1};
    const std::int32_t next[] = {1, 2};
    const int one[] = {3};
    throws_with<ConfigError>([&] { (void)m.decode(cache, slots, next, {}, one); }, "1 adapters for 2 sequences");
    CHECK(m.remove_adapter(3));
    CHECK_FALSE(m.remove_adapter(3));
    CHECK(m.adapter_parameters() == 0);
    throws_with<ConfigError>([&] { lm::merge_lora(m, 3); }, "adapter 3 is not loaded");
}

// ---------------------------------------------------------------------------------------------
// parity with tools/reference/lora.py (fixtures_lora.py)

namespace {

struct Fixture {
    io::SafetensorsFile fx;
    std::filesystem::path dir;
    std::vector<std::vector<std::int32_t>> prompts;
    std::vector<std::int32_t> ints(const std::string& n) const {
        const TensorView v = fx.get(n);
        return {v.data<std::int32_t>(), v.data<std::int32_t>() + v.numel()};
    }
    TensorView get(const std::string& n) const { return fx.get(n); }
};

Fixture open_fixture() {
    Fixture f{io::SafetensorsFile::open(moe_test::fixture_dir() / "lora.safetensors"), moe_test::fixture_dir(), {}};
    for (int i = 0; i < 3; ++i) f.prompts.push_back(f.ints("__prompt_" + std::to_string(i) + "__"));
    return f;
}

using Model = lm::DenseDecoder<float>;

Model base_model(const Fixture& f) { return lm::load_decoder<Model>(f.dir / "lora_base"); }

Model with_adapters(const Fixture& f) {
    Model m = base_model(f);
    for (int k = 0; k < 3; ++k) lm::load_lora_adapter(m, f.dir / ("lora_adapter_" + std::to_string(k)), k);
    return m;
}

index_t argmax(const float* row, index_t n) { return static_cast<index_t>(std::max_element(row, row + n) - row); }

/// Sequences s = 0 .. n-1: prompt prompt_of[s] with adapter adapter_of[s], prefilled as ONE step
/// (LogitRows::all), then `steps` greedy tokens decoded as one batch per step. Returns per sequence
/// the prefill logits [T, V], the greedy ids and their logits [steps, V].
struct BatchRun {
    std::vector<std::vector<float>> prefill, greedy_logits;
    std::vector<std::vector<std::int32_t>> ids;
};

BatchRun run_batch(Model& m, const Fixture& f, const std::vector<int>& prompt_of, const std::vector<int>& adapter_of,
                   index_t steps) {
    const index_t S = static_cast<index_t>(prompt_of.size()), V = m.vocab_size();
    auto cache = m.make_cache(S, 64);
    lm::Step st;
    std::vector<std::int32_t> ids;
    for (index_t s = 0; s < S; ++s) {
        const auto& p = f.prompts[static_cast<std::size_t>(prompt_of[static_cast<std::size_t>(s)])];
        st.add(s, static_cast<index_t>(p.size()), -1, adapter_of[static_cast<std::size_t>(s)]);
        ids.insert(ids.end(), p.begin(), p.end());
    }
    const Tensor all = m.forward(std::span<const std::int32_t>(ids), st, cache, LogitRows::all);
    BatchRun out;
    out.prefill.resize(static_cast<std::size_t>(S));
    out.greedy_logits.resize(static_cast<std::size_t>(S));
    out.ids.resize(static_cast<std::size_t>(S));
    std::vector<index_t> slots;
    std::vector<std::int32_t> next;
    for (index_t s = 0; s < S; ++s) {
        const index_t r0 = st.offsets[static_cast<std::size_t>(s)], r1 = st.offsets[static_cast<std::size_t>(s) + 1];
        out.prefill[static_cast<std::size_t>(s)].assign(all.data<float>() + r0 * V, all.data<float>() + r1 * V);
        slots.push_back(s);
    }
    std::vector<const float*> last(static_cast<std::size_t>(S));
    for (index_t s = 0; s < S; ++s)
        last[static_cast<std::size_t>(s)] = all.data<float>() + (st.offsets[static_cast<std::size_t>(s) + 1] - 1) * V;
    Tensor lg;
    for (index_t t = 0; t < steps; ++t) {
        next.clear();
        for (index_t s = 0; s < S; ++s) {
            const float* row = last[static_cast<std::size_t>(s)];
            auto& gl = out.greedy_logits[static_cast<std::size_t>(s)];
            gl.insert(gl.end(), row, row + V);
            const auto id = static_cast<std::int32_t>(argmax(row, V));
            out.ids[static_cast<std::size_t>(s)].push_back(id);
            next.push_back(id);
        }
        lg = m.decode(cache, slots, next, {}, adapter_of);
        for (index_t s = 0; s < S; ++s) last[static_cast<std::size_t>(s)] = lg.data<float>() + s * V;
    }
    return out;
}

}  // namespace

TEST_CASE("lora parity: three PEFT adapters as one batch with per-sequence adapters", "[.][lora-parity]") {
    if (!std::filesystem::exists(moe_test::fixture_dir() / "lora.safetensors"))
        MOE_SKIP("no LoRA fixtures in " << moe_test::fixture_dir() << " (tools/reference/fixtures_lora.py)");
    const Fixture f = open_fixture();
    Model m = with_adapters(f);
    CHECK(m.adapter_ids() == std::vector<int>{0, 1, 2});
    for (int k = 0; k < 3; ++k)
        CHECK(m.adapter_parameters(k) == std::stol(f.fx.metadata().at("adapter_parameters_" + std::to_string(k))));
    const index_t V = m.vocab_size(), G = 16;
    double worst_prefill = 0, worst_greedy = 0;
    // every (adapter, prompt) pair over three batches: sequence i runs prompt i with adapter (i + b) % 3;
    // a fourth sequence runs prompt b with the base alone
    Model base = base_model(f);
    double worst_base = 0;
    for (int b = 0; b < 3; ++b) {
        const std::vector<int> prompt_of{0, 1, 2, b}, adapter_of{b % 3, (1 + b) % 3, (2 + b) % 3, -1};
        const BatchRun r = run_batch(m, f, prompt_of, adapter_of, G);
        for (int i = 0; i < 3; ++i) {
            const int k = adapter_of[static_cast<std::size_t>(i)];
            const std::string sfx = "_" + std::to_string(k) + "_" + std::to_string(i) + "__";
            const TensorView lg = f.get("__logits" + sfx);
            REQUIRE(static_cast<index_t>(r.prefill[static_cast<std::size_t>(i)].size()) == lg.numel());
            const double ep = rel(r.prefill[static_cast<std::size_t>(i)].data(), lg.data<float>(), lg.numel());
            const double eg = rel(r.greedy_logits[static_cast<std::size_t>(i)].data(),
                                  f.get("__greedy_logits" + sfx).data<float>(), G * V);
            INFO("adapter " << k << ", prompt " << i << ": prefill " << ep << ", greedy " << eg);
            CHECK(ep < 1e-4);
            CHECK(eg < 1e-4);
            CHECK(r.ids[static_cast<std::size_t>(i)] == f.ints("__greedy_ids" + sfx));
            CHECK(r.ids[static_cast<std::size_t>(i)] != f.ints("__base_greedy_ids_" + std::to_string(i) + "__"));
            worst_prefill = std::max(worst_prefill, ep);
            worst_greedy = std::max(worst_greedy, eg);
        }
        // the base-only sequence == the base model alone
        const BatchRun alone = run_batch(base, f, {b}, {-1}, G);
        CHECK(r.ids[3] == alone.ids[0]);
        CHECK(r.ids[3] == f.ints("__base_greedy_ids_" + std::to_string(b) + "__"));
        const double e = std::max(rel(r.prefill[3].data(), alone.prefill[0].data(), static_cast<index_t>(alone.prefill[0].size())),
                                  rel(r.greedy_logits[3].data(), alone.greedy_logits[0].data(), G * V));
        CHECK(e < 1e-6);
        worst_base = std::max(worst_base, e);
    }
    WARN("lora parity: max rel error prefill " << worst_prefill << ", greedy " << worst_greedy
                                               << "; base-only sequence vs base alone " << worst_base);
}

TEST_CASE("lora parity: batched multi-LoRA equals each adapter merged; threads; LAVIS names; generate",
          "[.][lora-parity]") {
    if (!std::filesystem::exists(moe_test::fixture_dir() / "lora.safetensors"))
        MOE_SKIP("no LoRA fixtures in " << moe_test::fixture_dir() << " (tools/reference/fixtures_lora.py)");
    const Fixture f = open_fixture();
    Model m = with_adapters(f);
    const index_t V = m.vocab_size(), G = 16;
    const std::vector<int> prompt_of{0, 1, 2}, adapter_of{2, 0, 1};
    const BatchRun batched = run_batch(m, f, prompt_of, adapter_of, G);
    double worst = 0;
    for (int i = 0; i < 3; ++i) {
        const int k = adapter_of[static_cast<std::size_t>(i)];
        Model merged = base_model(f);
        lm::load_lora_adapter(merged, f.dir / ("lora_adapter_" + std::to_string(k)), k);
        lm::merge_lora(merged, k);
        CHECK_FALSE(merged.has_adapter(k));
        const BatchRun alone = run_batch(merged, f, {i}, {-1}, G);
        const double e = std::max(rel(batched.prefill[static_cast<std::size_t>(i)].data(), alone.prefill[0].data(),
                                      static_cast<index_t>(alone.prefill[0].size())),
                                  rel(batched.greedy_logits[static_cast<std::size_t>(i)].data(),
                                      alone.greedy_logits[0].data(), G * V));
        INFO("adapter " << k << " merged vs batched: " << e);
        CHECK(e < 1e-5);
        CHECK(alone.ids[0] == batched.ids[static_cast<std::size_t>(i)]);
        worst = std::max(worst, e);
    }
    WARN("lora: batched multi-LoRA vs merged, max rel error " << worst);

    // merging into a bf16 base (weights converted once at load): still the adapter's tokens
    {
        auto mb = lm::load_decoder<lm::DenseDecoder<bf16>>(f.dir / "lora_base");
        lm::load_lora_adapter(mb, f.dir / "lora_adapter_1", 1);
        lm::merge_lora(mb, 1);
        auto cache = mb.make_cache(1, 64);
        const Tensor lg = mb.prefill(cache, 0, f.prompts[0], -1, LogitRows::all);
        const TensorView want = f.get("__logits_1_0__");
        CHECK(rel(lg.data<float>(), want.data<float>(), want.numel()) < 3e-2);
    }

    // thread counts: bit-identical
    for (const int threads : {1, 2}) {
        m.set_exec(Exec(threads));
        const BatchRun r = run_batch(m, f, prompt_of, adapter_of, 4);
        for (std::size_t s = 0; s < 3; ++s) {
            CHECK(std::equal(r.prefill[s].begin(), r.prefill[s].end(), batched.prefill[s].begin()));
            CHECK(std::equal(r.greedy_logits[s].begin(), r.greedy_logits[s].end(), batched.greedy_logits[s].begin()));
        }
    }
    m.set_exec(Exec{});

    // adapter 0 read from a LAVIS-style full checkpoint (llm_model.base_model.model. prefix, ".default")
    {
        const lm::LoraConfig c = lm::LoraConfig::from_file(f.dir / "lora_adapter_0" / "adapter_config.json");
        const lm::LoraWeights w = lm::read_lora_tensors(io::SafetensorsFile::open(f.dir / "lora_lavis.safetensors"),
                                                        lm::kLavisPrefix, c, m.config());
        CHECK(w.modules.size() == 6);
        m.add_adapter(7, w);
        const BatchRun r = run_batch(m, f, {0, 0}, {7, 0}, 4);
        CHECK(rel(r.prefill[0].data(), r.prefill[1].data(), static_cast<index_t>(r.prefill[1].size())) < 1e-6);
        CHECK(r.ids[0] == r.ids[1]);
        auto c1 = m.make_cache(1, 64);
        const Tensor a = m.prefill(c1, 0, f.prompts[0], -1, LogitRows::all, 7);
        c1.reset(0);
        const Tensor b = m.prefill(c1, 0, f.prompts[0], -1, LogitRows::all, 0);
        CHECK(std::equal(a.data<float>(), a.data<float>() + a.numel(), b.data<float>()));
        throws_with<FormatError>([&] {
            (void)lm::read_lora_tensors(io::SafetensorsFile::open(f.dir / "lora_lavis.safetensors"), "", c, m.config(),
                                        true);
        }, "is not a LoRA weight");
    }

    // lm::generate with one adapter per prompt, all in one batch
    {
        lm::GenerationOptions opt;
        opt.max_new_tokens = G;
        opt.use_default_stops = false;
        opt.sampling.temperature = 0;  // greedy
        opt.adapters = {1, 2, 0};
        auto cache = m.make_cache(3, 64);
        const lm::GenerationResult g = lm::generate(m, cache, f.prompts, opt);
        for (int i = 0; i < 3; ++i)
            CHECK(g.sequences[static_cast<std::size_t>(i)].ids ==
                  f.ints("__greedy_ids_" + std::to_string(opt.adapters[static_cast<std::size_t>(i)]) + "_" +
                         std::to_string(i) + "__"));
    }
}

}  // namespace moe_test_lora
