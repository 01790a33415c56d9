// The decoder runtime (lm/decoder/) against tools/reference/hf_decoder.py (a mirror of
// transformers' modeling_qwen2 / modeling_llama / qwen2_moe, fixtures written by
// tools/reference/fixtures_decoder.py), and its own properties: the KV-cache path equals a
// recompute, a batch equals each sequence alone, results do not depend on the thread count,
// chunked prefill equals one chunk, ids equal their embeddings; plus every error of the config,
// index and checkpoint readers.
//
// Tolerances (relative: max |a - b| / max |b| over the logits): reference logits 1e-4 (fp32 vs
// PyTorch's fp32 matmuls); KV cache vs recompute, batch vs alone, chunked vs whole 1e-5; thread
// counts bit-identical; a bf16 KV cache within 2e-2 of the fp32 one.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "lm/byte_level.hpp"
#include "lm/decoder.hpp"
#include "lm/tokenizer.hpp"
#include "moe/io/json.hpp"
#include "moe/io/quantize.hpp"
#include "moe/io/safetensors.hpp"
#include "../parity/fixture_dir.hpp"
#include "../parity/parity_util.hpp"
#include "../unit/skip.hpp"
#include "../unit/throws.hpp"

namespace moe_test_decoder {  // this file's names (unity builds merge test files)

using namespace moe;
using lm::DecoderConfig;
using lm::LogitRows;

using moe_test::throws_with;

namespace {

/// max |a - b| / max |b| (parity_util.hpp's, shared with the parity tests).
double rel(const float* a, const float* b, index_t n) { return moe_test::max_rel(a, b, n); }
double rel(const Tensor& a, const TensorView& b) {
    REQUIRE(a.numel() == b.numel());
    return rel(a.data<float>(), b.data<float>(), a.numel());
}
double rel(const Tensor& a, const Tensor& b) { return rel(a, b.view()); }

std::vector<std::int32_t> ints(const TensorView& v) {
    return {v.data<std::int32_t>(), v.data<std::int32_t>() + v.numel()};
}

std::string config_json(const std::string& extra = "", const std::string& type = "qwen2") {
    // a small config; a key given in `extra` replaces the base's
    const std::pair<const char*, const char*> base[] = {{"hidden_size", "64"},       {"intermediate_size", "128"},
                                                        {"num_hidden_layers", "2"},  {"num_attention_heads", "4"},
                                                        {"num_key_value_heads", "2"}, {"vocab_size", "256"}};
    std::string s = R"({"model_type": ")" + type + "\"";
    for (const auto& [k, v] : base)
        if (extra.find(std::string("\"") + k + "\"") == std::string::npos) s += std::string(", \"") + k + "\": " + v;
    return s + extra + "}";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// config.json

TEST_CASE("decoder config: transformers' defaults and fields", "[decoder]") {
    const DecoderConfig c = DecoderConfig::from_json(config_json());
    CHECK(c.head_dim == 16);  // hidden / heads
    CHECK(c.groups() == 2);
    CHECK(c.qkv_bias);  // Qwen2Attention: q/k/v with bias
    CHECK_FALSE(c.o_bias);
    CHECK(c.ffn == lm::FfnKind::dense);
    CHECK(c.rms_norm_eps == 1e-6);
    CHECK(c.rope_scaling.type == "default");
    const DecoderConfig l = DecoderConfig::from_json(config_json(R"(, "attention_bias": true, "head_dim": 32,
        "eos_token_id": [128001, 128009], "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})", "llama"));
    CHECK(l.qkv_bias);
    CHECK(l.o_bias);
    CHECK(l.head_dim == 32);
    CHECK(l.eos_token_ids == std::vector<std::int32_t>{128001, 128009});
    CHECK(l.rope_scaling.type == "llama3");
    const DecoderConfig m = DecoderConfig::from_json(config_json(R"(, "num_experts": 8, "num_experts_per_tok": 2,
        "mlp_only_layers": [1], "decoder_sparse_step": 1)", "qwen2_moe"));
    CHECK(m.ffn == lm::FfnKind::qwen2_moe);
    CHECK(m.sparse_layer(0));
    CHECK_FALSE(m.sparse_layer(1));
    const DecoderConfig g = DecoderConfig::from_json(config_json(R"(, "architectures": ["LlavaQwenGMoeForCausalLM"])"));
    CHECK(g.ffn == lm::FfnKind::gmoe);
}

TEST_CASE("decoder config: every bad field is a clear error", "[decoder]") {
    auto parse = [](const std::string& s) { return [s] { (void)DecoderConfig::from_json(s, "cfg.json"); }; };
    throws_with<ConfigError>(parse(config_json("", "gpt_neox")), "model_type 'gpt_neox' is not supported");
    throws_with<ConfigError>(parse(config_json(R"(, "hidden_act": "gelu")")), "hidden_act 'gelu'");
    throws_with<ConfigError>(parse(R"({"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 3, "vocab_size": 256})"),
                             "inconsistent head counts");
    throws_with<ConfigError>(parse(config_json(R"(, "use_sliding_window": true)")), "sliding-window");
    throws_with<ConfigError>(parse(config_json(R"(, "rope_scaling": {"type": "yarn", "factor": 4})")),
                             "rope_scaling type 'yarn'");
    throws_with<ConfigError>(parse(config_json(R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8})")),
                             "low_freq_factor is missing");
    throws_with<ConfigError>(parse(R"({"model_type": "llama", "hidden_size": 64})"), "missing");
    throws_with<ConfigError>(parse(config_json(R"(, "vocab_size": 0)")), "vocab_size must be positive");
    throws_with<ConfigError>(parse(config_json(R"(, "rms_norm_eps": "small")")), "rms_norm_eps must be a number");
    throws_with<ConfigError>(parse(config_json(R"(, "num_experts_per_tok": 9, "num_experts": 8)", "qwen2_moe")),
                             "num_experts_per_tok 9");
    throws_with<FormatError>(parse("{\"model_type\": \"qwen2\",}"), "cfg.json");
    throws_with<FormatError>(parse("[1, 2]"), "expected a JSON object");
}

TEST_CASE("safetensors index: the reader refuses what is not an index", "[decoder]") {
    const auto idx = io::parse_safetensors_index(
        R"({"metadata": {"total_size": 8}, "weight_map": {"a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}})", "index.json");
    CHECK(idx.files == std::vector<std::string>{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"});
    CHECK(idx.weight_map.size() == 3);
    auto parse = [](const std::string& s) { return [s] { (void)io::parse_safetensors_index(s, "index.json"); }; };
    throws_with<FormatError>(parse(R"({"metadata": {}})"), "no \"weight_map\"");
    throws_with<FormatError>(parse(R"({"weight_map": {"a": "../secret.safetensors"}})"), "not a shard file name");
    throws_with<FormatError>(parse(R"({"weight_map": {"a": "/etc/x.safetensors"}})"), "not a shard file name");
    throws_with<FormatError>(parse(R"({"weight_map": {"a": "model.bin"}})"), "not a shard file name");
    throws_with<FormatError>(parse(R"({"weight_map": {"a": 3}})"), "must be a file name");
    throws_with<FormatError>(parse(R"({"weight_map": {}})"), "is empty");
    throws_with<FormatError>(parse(R"({"weight_map": {"a": "x.safetensors", "a": "y.safetensors"}})"), "duplicate key");
}

// ---------------------------------------------------------------------------------------------
// parts

TEST_CASE("rope: HF's rotate_half by hand, partial rotary, llama3 scaling", "[decoder]") {
    DecoderConfig c = DecoderConfig::from_json(config_json(R"(, "head_dim": 4, "rope_theta": 100.0)"));
    const lm::Rope r(c);
    // inv_freq = 1 / 100^(2i/4) = {1, 0.1}
    REQUIRE(r.inv_freq().size() == 2);
    CHECK(r.inv_freq()[0] == 1.0f);
    CHECK(r.inv_freq()[1] == Approx(0.1f).epsilon(1e-6));
    std::vector<float> cs(4);
    r.angles(3, cs.data());
    float x[4] = {1, 2, 3, 4};  // pairs (x0, x2) at freq 1 and (x1, x3) at freq 0.1, angle = 3 * freq
    r.apply(x, 1, 4, cs.data());
    CHECK(x[0] == Approx(1 * std::cos(3.0) - 3 * std::sin(3.0)).epsilon(1e-6));
    CHECK(x[2] == Approx(3 * std::cos(3.0) + 1 * std::sin(3.0)).epsilon(1e-6));
    CHECK(x[1] == Approx(2 * std::cos(0.3) - 4 * std::sin(0.3)).epsilon(1e-6));
    CHECK(x[3] == Approx(4 * std::cos(0.3) + 2 * std::sin(0.3)).epsilon(1e-6));
    // position 0 is the identity
    r.angles(0, cs.data());
    float y[4] = {1, 2, 3, 4};
    r.apply(y, 1, 4, cs.data());
    CHECK(std::vector<float>(y, y + 4) == std::vector<float>{1, 2, 3, 4});
    // partial rotary: only the first rot dims move
    c = DecoderConfig::from_json(config_json(R"(, "head_dim": 8, "partial_rotary_factor": 0.5)"));
    const lm::Rope p(c);
    CHECK(p.rotary_dim() == 4);
    std::vector<float> cs2(4);
    p.angles(5, cs2.data());
    float z[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    p.apply(z, 1, 8, cs2.data());
    CHECK(std::vector<float>(z + 4, z + 8) == std::vector<float>{5, 6, 7, 8});
    CHECK(z[0] != 1.0f);
    // llama3: wavelengths below original / high_freq_factor keep their frequency, above
    // original / low_freq_factor are divided by factor, in between interpolated (monotone)
    c = DecoderConfig::from_json(config_json(R"(, "head_dim": 64, "rope_theta": 500000.0, "rope_scaling":
        {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
         "original_max_position_embeddings": 8192})", "llama"));
    const lm::Rope l3(c);
    c.rope_scaling = {};
    const lm::Rope base(c);
    constexpr double kTwoPi = 6.283185307179586;
    for (std::size_t i = 0; i < base.inv_freq().size(); ++i) {
        const double f = base.inv_freq()[i], wl = kTwoPi / f, s = l3.inv_freq()[i];
        if (wl < 8192.0 / 4) CHECK(s == f);
        else if (wl > 8192.0) CHECK(s == Approx(f / 8).epsilon(1e-6));
        else CHECK((s <= f && s >= f / 8));
    }
}

TEST_CASE("kv cache: slots, bounds, truncate", "[decoder]") {
    lm::KvCache<float> c(2, 2, 4, 3, 10);
    CHECK(c.length(1) == 0);
    c.advance(1, 7);
    CHECK(c.length(1) == 7);
    throws_with<ConfigError>([&] { c.advance(1, 4); }, "exceed max_seq 10");
    throws_with<ConfigError>([&] { (void)c.length(3); }, "slot 3 out of range");
    c.truncate(1, 2);
    CHECK(c.length(1) == 2);
    throws_with<ConfigError>([&] { c.truncate(1, 5); }, "cannot keep 5");
    CHECK(c.keys(1, 2, 1) - c.keys(0, 0, 0) == ((1 * 3 + 2) * 2 + 1) * 10 * 4);
    throws_with<ConfigError>([] { lm::KvCache<bf16>(1, 1, 4, 0, 8); }, "sizes must be positive");
}

// Decode items (at most kDirectRows query rows: a token's heads of one KV head) take the direct
// kernels, larger ones moe's GEMM; both against softmax(q k^T * scale) v in double over the
// cache's own values, with key blocks of kKeyBlock, a tail shorter than a vector and the causal
// mask inside a two-token item. Relative to max |out|: 1e-5 (fp32 accumulation).
TEMPLATE_TEST_CASE("causal attention: direct decode kernels and the GEMM path against softmax by hand", "[decoder]",
                   float, bf16) {
    const index_t nkv = 2, g = 7, slots = 3;
    for (const index_t hd : {16, 64}) {
        INFO("head dim " << hd);
#if !defined(MOE_NO_SIMD)
        if constexpr (cpu::kHasSimd) {
            if (hd % static_cast<index_t>(xsimd::batch<float, cpu::simd_arch>::size) == 0) {
                CHECK(lm::detail::direct_attention(g, hd));            // one token: direct
                CHECK(lm::detail::direct_attention(2 * g, hd));        // two tokens: direct
                CHECK_FALSE(lm::detail::direct_attention(5 * g, hd));  // five: the GEMM
            }
        }
#endif
        lm::KvCache<TestType> cache(1, nkv, hd, slots, 600);
        const std::vector<lm::SequenceRows> seqs = {{0, 0, 1, 300}, {1, 1, 2, 0}, {2, 3, 5, 20}};
        std::mt19937 rng(11);
        std::normal_distribution<float> nd;
        for (const auto& sq : seqs)
            for (index_t j = 0; j < nkv; ++j)
                for (index_t i = 0; i < (sq.past + sq.rows) * hd; ++i) {
                    cache.keys(0, sq.slot, j)[i] = TestType(nd(rng));
                    cache.values(0, sq.slot, j)[i] = TestType(nd(rng));
                }
        const index_t rows = 8, cols = nkv * g * hd;
        std::vector<float> q(static_cast<std::size_t>(rows * cols));
        for (float& v : q) v = nd(rng);
        const float scale = 1.0f / std::sqrt(float(hd));
        std::vector<float> out1(q.size()), out2(q.size(), 7.0f);
        lm::AttentionScratch s1, s2;
        lm::causal_attention<TestType>({q.data(), rows, cols}, {out1.data(), rows, cols}, cache, 0, seqs, g, scale,
                                       Exec(1), s1);
        lm::causal_attention<TestType>({q.data(), rows, cols}, {out2.data(), rows, cols}, cache, 0, seqs, g, scale,
                                       Exec(2), s2);
        CHECK(out1 == out2);
        std::vector<float> ref(q.size());
        for (const auto& sq : seqs)
            for (index_t t = 0; t < sq.rows; ++t)
                for (index_t h = 0; h < nkv * g; ++h) {
                    const float* qr = q.data() + (sq.row0 + t) * cols + h * hd;
                    const TestType* K = cache.keys(0, sq.slot, h / g);
                    const TestType* V = cache.values(0, sq.slot, h / g);
                    const index_t n = sq.past + t + 1;  // keys 0 .. its own position
                    std::vector<double> p(static_cast<std::size_t>(n));
                    double mx = -1e300, sum = 0;
                    for (index_t k = 0; k < n; ++k) {
                        double d = 0;
                        for (index_t c = 0; c < hd; ++c) d += double(qr[c]) * double(float(K[k * hd + c]));
                        p[static_cast<std::size_t>(k)] = d * scale;
                        mx = std::max(mx, d * scale);
                    }
                    for (double& v : p) sum += (v = std::exp(v - mx));
                    for (index_t c = 0; c < hd; ++c) {
                        double o = 0;
                        for (index_t k = 0; k < n; ++k) o += p[static_cast<std::size_t>(k)] * double(float(V[k * hd + c]));
                        ref[static_cast<std::size_t>((sq.row0 + t) * cols + h * hd + c)] = static_cast<float>(o / sum);
                    }
                }
        CHECK(rel(out1.data(), ref.data(), rows * cols) < 1e-5);
        for (const auto& sq : seqs) {  // each sequence alone, too
            INFO("row " << sq.row0);
            const index_t n = sq.rows * cols;
            CHECK(rel(out1.data() + sq.row0 * cols, ref.data() + sq.row0 * cols, n) < 1e-5);
        }
    }
}

TEST_CASE("DenseFfn::glu: down(silu(gate x) * up x) by hand", "[decoder]") {
    // d = 2, F = 2: gate = I, up = 2 I, down = [[1, 1], [0, 1]]
    auto lin = [](index_t out, index_t in, std::vector<float> w) { return cpu::Linear<float>::from_values(out, in, w); };
    auto f = lm::SwiGlu<float>::glu(lin(2, 2, {1, 0, 0, 1}), lin(2, 2, {2, 0, 0, 2}), lin(2, 2, {1, 1, 0, 1}));
    const float x[2] = {0.5f, -1.0f};
    float y[2];
    f.forward(ConstMatrixRef<float>(x, 1, 2), MatrixRef<float>(y, 1, 2));
    auto silu = [](double v) { return v / (1 + std::exp(-v)); };
    const double h0 = silu(0.5) * 1.0, h1 = silu(-1.0) * -2.0;
    CHECK(y[0] == Approx(h0 + h1).epsilon(1e-6));
    CHECK(y[1] == Approx(h1).epsilon(1e-6));
    CHECK(f.gated());
    CHECK(f.parameters() == 12);
}

// ---------------------------------------------------------------------------------------------
// against the reference (fixtures)

namespace {

const char* const kCases[] = {"decoder_qwen2",     "decoder_qwen2_bf16", "decoder_llama",
                              "decoder_llama3",    "decoder_qwen2_moe",  "decoder_mixtral",
                              "decoder_qwen2_gmoe"};

struct Case {
    std::filesystem::path dir;
    io::SafetensorsFile fx;
    int expert;  // prompt 0's G-MoE expert (-1: none)
};

Case open_case(const std::string& name) {
    const auto dir = moe_test::fixture_dir() / name;
    auto fx = io::SafetensorsFile::open(moe_test::fixture_dir() / (name + ".safetensors"));
    const int e = fx.contains("__granularity__") ? fx.get("__granularity__").data<std::int32_t>()[0] : -1;
    return {dir, fx, e};
}

template <class M>
void check_case(M& m, const Case& k, const std::string& name) {
    INFO(name);
    const index_t V = m.vocab_size();
    const auto p0 = ints(k.fx.get("__prompt_0__")), p1 = ints(k.fx.get("__prompt_1__"));
    const int e1 = k.fx.contains("__granularity__") ? k.fx.get("__granularity__").data<std::int32_t>()[1] : -1;

    // inverse frequencies
    const TensorView inv = k.fx.get("__inv_freq__");
    CHECK(rel(m.rope().inv_freq().data(), inv.data<float>(), inv.numel()) < 1e-6);

    // full prefill of each prompt alone
    auto full = [&](const std::vector<std::int32_t>& p, int e) {
        auto c = m.make_cache(1, 128);
        return m.prefill(c, 0, p, e, LogitRows::all);
    };
    const Tensor f0 = full(p0, k.expert), f1 = full(p1, e1);
    CHECK(rel(f0, k.fx.get("__logits_0__")) < 1e-4);
    CHECK(rel(f1, k.fx.get("__logits_1__")) < 1e-4);
    if (k.fx.contains("__prompt_2__")) {  // llama3: 96 tokens, past the original context / factor
        CHECK(rel(full(ints(k.fx.get("__prompt_2__")), -1), k.fx.get("__logits_2__")) < 1e-4);
    }

    // prefill 7, then 9 decode steps on the cache
    {
        auto c = m.make_cache(1, 64);
        const std::vector<std::int32_t> head(p0.begin(), p0.begin() + 7);
        Tensor dec(DType::f32, {16, V});
        Tensor pre = m.prefill(c, 0, head, k.expert, LogitRows::all);
        std::copy_n(pre.data<float>(), 7 * V, dec.data<float>());
        for (index_t t = 7; t < 16; ++t) {
            const index_t slot = 0;
            const std::int32_t id = p0[static_cast<std::size_t>(t)];
            const int ex = k.expert;
            Tensor lg = m.decode(c, {&slot, 1}, {&id, 1}, k.expert >= 0 ? std::span<const int>(&ex, 1) : std::span<const int>());
            std::copy_n(lg.data<float>(), V, dec.data<float>() + t * V);
        }
        CHECK(c.length(0) == 16);
        CHECK(rel(dec, k.fx.get("__decode_logits__")) < 1e-4);
        CHECK(rel(dec.data<float>(), f0.data<float>(), 16 * V) < 1e-5);  // == recompute
    }

    // 32 greedy tokens on the cache: the reference's ids exactly
    {
        auto c = m.make_cache(1, 128);
        const auto ref = ints(k.fx.get("__greedy_ids__"));
        const TensorView ref_logits = k.fx.get("__greedy_logits__");
        Tensor lg = m.prefill(c, 0, p0, k.expert);
        std::vector<std::int32_t> got;
        double worst = 0;
        for (std::size_t i = 0; i < ref.size(); ++i) {
            worst = std::max(worst, rel(lg.data<float>(), ref_logits.data<float>() + static_cast<index_t>(i) * V, V));
            const float* row = lg.data<float>();
            const auto id = static_cast<std::int32_t>(std::max_element(row, row + V) - row);
            got.push_back(id);
            const index_t slot = 0;
            const int ex = k.expert;
            lg = m.decode(c, {&slot, 1}, {&id, 1}, k.expert >= 0 ? std::span<const int>(&ex, 1) : std::span<const int>());
        }
        CHECK(got == ref);
        CHECK(worst < 1e-4);
    }

    // two sequences of different lengths in one step == each alone; then a batched decode step
    {
        auto c = m.make_cache(3, 64);
        lm::Step st;
        st.add(2, static_cast<index_t>(p0.size()), k.expert).add(0, static_cast<index_t>(p1.size()), e1);
        std::vector<std::int32_t> ids(p0);
        ids.insert(ids.end(), p1.begin(), p1.end());
        const Tensor both = m.forward(ids, st, c, LogitRows::all);
        CHECK(rel(both.data<float>(), f0.data<float>(), f0.numel()) < 1e-5);
        CHECK(rel(both.data<float>() + f0.numel(), f1.data<float>(), f1.numel()) < 1e-5);
        const index_t slots[2] = {2, 0};
        const std::int32_t next[2] = {7, 9};
        const int exs[2] = {k.expert, e1};
        const Tensor step = m.decode(c, slots, next, k.expert >= 0 ? std::span<const int>(exs, 2) : std::span<const int>());
        for (int s = 0; s < 2; ++s) {  // each alone: its prompt + the token, last row
            std::vector<std::int32_t> seq = s == 0 ? p0 : p1;
            seq.push_back(next[s]);
            auto c1 = m.make_cache(1, 64);
            const Tensor alone = m.prefill(c1, 0, seq, exs[s]);
            CHECK(rel(step.data<float>() + s * V, alone.data<float>(), V) < 1e-5);
        }
    }

    // chunked prefill == one chunk; ids == their embeddings; threads do not change a bit
    {
        auto c = m.make_cache(1, 64);
        m.set_prefill_chunk(5);
        const Tensor chunked = m.prefill(c, 0, p0, k.expert, LogitRows::all);
        m.set_prefill_chunk(512);
        CHECK(rel(chunked, f0) < 1e-5);
        Tensor x(DType::f32, {static_cast<index_t>(p0.size()), m.hidden_size()});
        m.embed(p0, x.matrix<float>());
        auto c2 = m.make_cache(1, 64);
        lm::Step st;
        st.add(0, static_cast<index_t>(p0.size()), k.expert);
        const Tensor via_embeds = m.forward(ConstMatrixRef<float>(x.matrix<float>()), st, c2, LogitRows::all);
        CHECK(rel(via_embeds, f0) == 0.0);
        m.set_exec(Exec(1));
        const Tensor one = full(p0, k.expert);
        m.set_exec(Exec(2));
        const Tensor two = full(p0, k.expert);
        m.set_exec(Exec{});
        CHECK(rel(one, two) == 0.0);
    }

    // a bf16 KV cache: close to the fp32 one
    {
        auto c = m.template make_cache<bf16>(1, 64);
        CHECK(rel(m.prefill(c, 0, p0, k.expert, LogitRows::all), f0) < 2e-2);
    }
}

}  // namespace

TEST_CASE("decoder parity: HF Qwen2 / LLaMA / LLaMA-3 / Qwen2-MoE / G-MoE fixtures", "[.][decoder-parity]") {
    if (!std::filesystem::exists(moe_test::fixture_dir() / "decoder_qwen2.safetensors"))
        MOE_SKIP("no decoder fixtures in " << moe_test::fixture_dir() << " (tools/reference/fixtures_decoder.py)");
    for (const char* name : kCases) {
        const Case k = open_case(name);
        auto any = lm::open_decoder<float>(k.dir);
        std::visit([&](auto& m) { check_case(m, k, name); }, any);
    }
}

TEST_CASE("decoder parity: bf16 weights borrowed from a bf16 checkpoint", "[.][decoder-parity]") {
    if (!std::filesystem::exists(moe_test::fixture_dir() / "decoder_qwen2_bf16.safetensors"))
        MOE_SKIP("no decoder fixtures in " << moe_test::fixture_dir());
    const Case k = open_case("decoder_qwen2_bf16");
    // zero copy: q_proj's weight is the file's bytes
    const auto f = io::open_weights(k.dir);
    auto m = lm::load_decoder<lm::DenseDecoder<bf16>>(DecoderConfig::from_file(k.dir / "config.json"), f);
    CHECK(static_cast<const void*>(m.layers()[0].q.weight().data) == f.get("model.layers.0.self_attn.q_proj.weight").raw());
    auto fp = lm::load_decoder<lm::DenseDecoder<float>>(k.dir);
    const auto p0 = ints(k.fx.get("__prompt_0__"));
    auto c1 = m.make_cache(1, 64);
    auto c2 = fp.make_cache(1, 64);
    const Tensor a = m.prefill(c1, 0, p0, -1, LogitRows::all), b = fp.prefill(c2, 0, p0, -1, LogitRows::all);
    CHECK(rel(a, b) < 1e-6);
    CHECK(rel(a, k.fx.get("__logits_0__")) < 1e-4);
}

namespace {

// A folder under the temp directory, removed with everything in it on exit.
struct TempDir {
    std::filesystem::path path;
    explicit TempDir(const std::string& stem) {
        std::random_device rd;
        path = std::filesystem::temp_directory_path() / (stem + std::to_string(rd()) + std::to_string(rd()));
        std::filesystem::create_directories(path);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

// `src`'s folder quantised into `dst` (config.json copied), as `quantize` does.
void quantize_folder(const std::filesystem::path& src, const std::filesystem::path& dst, bool whole = false) {
    std::filesystem::create_directories(dst);
    io::QuantizeOptions opt;
    if (whole)  // every float matrix named "...weight", however small (the routers too)
        opt.select = [](const std::string& n, const TensorView& t) {
            return t.rank() == 2 && n.size() > 6 && n.compare(n.size() - 6, 6, "weight") == 0;
        };
    else
        opt.select = [](const std::string& n, const TensorView& t) { return lm::int8_linear_weight(n) && t.rank() == 2; };
    io::quantize_checkpoint(io::open_weights(src), dst / "model.safetensors", opt);
    std::filesystem::copy_file(src / "config.json", dst / "config.json");
}

// `src`'s folder with every int8 weight replaced by its float values (scale * q) and the scales
// dropped: the float model an int8 checkpoint stands for.
void dequantize_folder(const std::filesystem::path& src, const std::filesystem::path& dst) {
    std::filesystem::create_directories(dst);
    const auto f = io::open_weights(src);
    io::SafetensorsWriter w;
    for (const std::string& n : f.names()) {
        if (n.size() > 6 && n.compare(n.size() - 6, 6, "_scale") == 0 && io::is_int8(f, n.substr(0, n.size() - 6)))
            continue;
        if (io::is_int8(f, n)) w.add(n, io::dequantize(f, n).view());
        else w.add(n, f.get(n));
    }
    w.write(dst / "model.safetensors");
    std::filesystem::copy_file(src / "config.json", dst / "config.json");
}

template <class Model>
Tensor prefill_logits(Model& m, const std::vector<std::int32_t>& p, int expert) {
    auto c = m.make_cache(1, 64);
    return m.prefill(c, 0, p, expert, LogitRows::all);
}

template <template <class> class Model>
void check_int8_folder(const std::string& name) {
    INFO(name);
    const Case k = open_case(name);
    const auto p0 = ints(k.fx.get("__prompt_0__"));
    TempDir tmp("moe_decoder_int8_");
    quantize_folder(k.dir, tmp.path / "q");
    dequantize_folder(tmp.path / "q", tmp.path / "dq");
    const auto qf = io::open_weights(tmp.path / "q");
    REQUIRE(io::is_int8(qf, "model.layers.0.self_attn.q_proj.weight"));
    REQUIRE(!io::is_int8(qf, "model.embed_tokens.weight"));

    // int8_dot from the int8 folder: the int8 weights are the file's bytes, and the model is the
    // float folder's quantised at load, bit for bit (the same quantiser, the same kernels).
    auto from_file = lm::load_decoder<Model<int8_dot>>(DecoderConfig::from_file(tmp.path / "q" / "config.json"), qf);
    CHECK(static_cast<const void*>(from_file.layers()[0].q.int8_weight(0).q) ==
          qf.get("model.layers.0.self_attn.q_proj.weight").raw());
    auto at_load = lm::load_decoder<Model<int8_dot>>(k.dir);
    const Tensor a = prefill_logits(from_file, p0, k.expert), b = prefill_logits(at_load, p0, k.expert);
    REQUIRE(a.numel() == b.numel());
    CHECK(std::memcmp(a.raw(), b.raw(), static_cast<std::size_t>(a.nbytes())) == 0);

    // int8_weight_only from the int8 folder: the fp32 model of the dequantised weights (the same
    // values; the GEMM runs 64 outputs at a time, so within rounding). Untied models only: a
    // tied head is the float embedding, which an int8 policy quantises at load.
    if (!DecoderConfig::from_file(k.dir / "config.json").tie_word_embeddings) {
        auto wo = lm::load_decoder<Model<int8_weight_only>>(tmp.path / "q");
        auto dq = lm::load_decoder<Model<float>>(tmp.path / "dq");
        const Tensor c = prefill_logits(wo, p0, k.expert), d = prefill_logits(dq, p0, k.expert);
        CHECK(rel(c, d) < 1e-5);
    }

    // and int8 is near the float model: W8A8's error, not a wrong layout or scale
    const double err = rel(a, k.fx.get("__logits_0__"));
    INFO("int8_dot vs the float reference: " << err);
    CHECK(err < 5e-2);
}

}  // namespace

TEST_CASE("decoder int8: a quantised folder, borrowed, equals quantising at load; weight-only its dequantised model",
          "[.][decoder-parity]") {
    if (!std::filesystem::exists(moe_test::fixture_dir() / "decoder_qwen2.safetensors"))
        MOE_SKIP("no decoder fixtures in " << moe_test::fixture_dir());
    check_int8_folder<lm::DenseDecoder>("decoder_qwen2");
    check_int8_folder<lm::DenseDecoder>("decoder_llama");
    check_int8_folder<lm::Qwen2MoeDecoder>("decoder_qwen2_moe");
    check_int8_folder<lm::MixtralDecoder>("decoder_mixtral");
    check_int8_folder<lm::GMoeDecoder>("decoder_qwen2_gmoe");
}

TEST_CASE("decoder int8: the selection, an int8 embedding, and an int8 router is a clear error", "[.][decoder-parity]") {
    CHECK(lm::int8_linear_weight("model.layers.3.self_attn.q_proj.weight"));
    CHECK(lm::int8_linear_weight("model.layers.0.mlp.experts.7.down_proj.weight"));
    CHECK(lm::int8_linear_weight("model.layers.0.mlp.shared_expert.up_proj.weight"));
    CHECK(lm::int8_linear_weight("model.layers.1.block_sparse_moe.experts.2.w3.weight"));
    CHECK(lm::int8_linear_weight("lm_head.weight"));
    CHECK(!lm::int8_linear_weight("model.embed_tokens.weight"));
    CHECK(!lm::int8_linear_weight("model.layers.0.mlp.gate.weight"));
    CHECK(!lm::int8_linear_weight("model.layers.0.mlp.shared_expert_gate.weight"));
    CHECK(!lm::int8_linear_weight("model.layers.0.block_sparse_moe.gate.weight"));
    CHECK(!lm::int8_linear_weight("model.layers.0.self_attn.q_proj.bias"));
    CHECK(!lm::int8_linear_weight("model.norm.weight"));
    if (!std::filesystem::exists(moe_test::fixture_dir() / "decoder_qwen2_moe.safetensors"))
        MOE_SKIP("no decoder fixtures in " << moe_test::fixture_dir());
    TempDir tmp("moe_decoder_int8_");
    // Quantised whole (every float matrix): the embedding is int8 too. The dense model
    // reads it dequantised; its tied or untied head is an int8 Linear.
    quantize_folder(moe_test::fixture_dir() / "decoder_qwen2", tmp.path / "dense", true);
    const auto df = io::open_weights(tmp.path / "dense");
    REQUIRE(io::is_int8(df, "model.embed_tokens.weight"));
    auto m = lm::load_decoder<lm::DenseDecoder<int8_dot>>(tmp.path / "dense");
    const Tensor e = io::dequantize(df, "model.embed_tokens.weight");
    CHECK(m.embedding().dtype() == DType::f32);
    CHECK(std::memcmp(m.embedding().raw(), e.raw(), static_cast<std::size_t>(e.nbytes())) == 0);
    // The MoE model's routers are int8 then: the loader refuses them, naming the tensor.
    quantize_folder(moe_test::fixture_dir() / "decoder_qwen2_moe", tmp.path / "moe", true);
    throws_with<DTypeError>([&] { (void)lm::load_decoder<lm::Qwen2MoeDecoder<float>>(tmp.path / "moe"); },
                            "mlp.gate.weight");
}

TEST_CASE("decoder checkpoints: missing, mis-shaped and mismatched tensors are clear errors", "[.][decoder-parity]") {
    if (!std::filesystem::exists(moe_test::fixture_dir() / "decoder_llama.safetensors"))
        MOE_SKIP("no decoder fixtures in " << moe_test::fixture_dir());
    const auto src = moe_test::fixture_dir() / "decoder_qwen2";
    const auto tmp = std::filesystem::temp_directory_path() / "moe_test_decoder_bad";
    std::filesystem::remove_all(tmp);
    std::filesystem::create_directories(tmp);
    std::filesystem::copy_file(src / "config.json", tmp / "config.json");
    const auto f = io::SafetensorsFile::open(src / "model.safetensors");
    auto rewrite = [&](const std::string& drop, const std::string& reshape) {
        io::SafetensorsWriter w;
        for (const auto& name : f.names()) {
            if (name == drop) continue;
            TensorView v = f.get(name);
            if (name == reshape) {
                Tensor t(v.dtype(), {v.dim(0) / 2, v.dim(1)});
                std::memcpy(t.raw(), v.raw(), static_cast<std::size_t>(t.nbytes()));
                w.add(name, t.view());
            } else {
                w.add(name, v);
            }
        }
        w.write(tmp / "model.safetensors");
    };
    rewrite("model.layers.1.self_attn.k_proj.bias", "");
    throws_with<NotFoundError>([&] { (void)lm::open_decoder<float>(tmp); }, "model.layers.1.self_attn.k_proj.bias");
    rewrite("", "model.layers.0.mlp.up_proj.weight");
    throws_with<ShapeError>([&] { (void)lm::open_decoder<float>(tmp); }, "model.layers.0.mlp.up_proj.weight");
    rewrite("", "");
    CHECK_NOTHROW(lm::open_decoder<float>(tmp));
    throws_with<ConfigError>([&] { (void)lm::load_decoder<lm::MixtralDecoder<float>>(tmp); },
                             "does not have the FFN slot");
    // a truncated file
    {
        const auto bytes = std::filesystem::file_size(tmp / "model.safetensors");
        std::filesystem::resize_file(tmp / "model.safetensors", bytes - 100);
        throws_with<FormatError>([&] { (void)lm::open_decoder<float>(tmp); }, "model.safetensors");
    }
    // sharded: an index naming a missing shard, a tensor in the wrong shard
    const auto llama = moe_test::fixture_dir() / "decoder_llama";
    const auto sh = std::filesystem::temp_directory_path() / "moe_test_decoder_shards";
    std::filesystem::remove_all(sh);
    std::filesystem::copy(llama, sh);
    CHECK_NOTHROW(lm::open_decoder<float>(sh));
    std::filesystem::remove(sh / "model-00002-of-00002.safetensors");
    throws_with<NotFoundError>([&] { (void)lm::open_decoder<float>(sh); }, "model-00002-of-00002.safetensors");
    {
        std::ofstream(sh / "model.safetensors.index.json")
            << R"({"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}})";
        const bool in_first = io::SafetensorsFile::open(llama / "model-00001-of-00002.safetensors").contains("model.norm.weight");
        if (!in_first)
            throws_with<FormatError>([&] { (void)io::open_weights(sh); }, "does not hold it");
    }
    // an unknown model type in config.json
    std::ofstream(tmp / "config.json") << config_json("", "falcon");
    throws_with<ConfigError>([&] { (void)lm::open_decoder<float>(tmp); }, "model_type 'falcon'");
    std::filesystem::remove_all(tmp);
    std::filesystem::remove_all(sh);
}

// ---------------------------------------------------------------------------------------------
// generation

namespace {

/// A byte-level BPE tokenizer.json whose 256 ids are the 256 bytes (GPT-2's byte table), no
/// merges: it fits the fixtures' vocabulary of 256, so generated ids have a text.
lm::Tokenizer byte_tokenizer() {
    const lm::ByteLevelTable t;
    std::string vocab = "{";
    for (unsigned b = 0; b < 256; ++b) {
        std::string ch;
        lm::unicode::append_utf8(ch, t.to_char[b]);
        if (b) vocab += ",";
        io::json::append_string(vocab, ch);
        vocab += ':';
        vocab += std::to_string(b);
    }
    vocab += "}";
    const std::string json = R"({"version": "1.0", "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
        "post_processor": null, "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "vocab": )" + vocab + R"(, "merges": []}})";
    return lm::Tokenizer::from_json(json, std::string(R"({"clean_up_tokenization_spaces": false})"));
}

}  // namespace

TEST_CASE("generate: stop strings are held back while streaming", "[decoder]") {
    CHECK(lm::detail::stop_prefix_overlap("hello wor", {"world"}) == 3);
    CHECK(lm::detail::stop_prefix_overlap("hello", {"world", "lo!"}) == 2);
    CHECK(lm::detail::stop_prefix_overlap("hello", {"xyz"}) == 0);
    CHECK(lm::detail::stop_prefix_overlap("ab", {"b"}) == 0);  // a whole match is not a proper prefix
}

TEST_CASE("generate: greedy ids, stop ids and strings, streaming, batches, seeds", "[.][decoder-parity]") {
    if (!std::filesystem::exists(moe_test::fixture_dir() / "decoder_qwen2.safetensors"))
        MOE_SKIP("no decoder fixtures in " << moe_test::fixture_dir());
    const Case k = open_case("decoder_qwen2");
    auto m = lm::load_decoder<lm::DenseDecoder<float>>(k.dir);
    const auto p0 = ints(k.fx.get("__prompt_0__")), p1 = ints(k.fx.get("__prompt_1__"));
    const auto want = ints(k.fx.get("__greedy_ids__"));
    const lm::Tokenizer tok = byte_tokenizer();
    auto cache = m.make_cache(3, 128);

    lm::GenerationOptions o;
    o.sampling.temperature = 0;
    o.max_new_tokens = 32;
    o.use_default_stops = false;
    std::string streamed;
    std::vector<std::int32_t> seen;
    const lm::TokenCallback cb = [&](index_t s, std::int32_t id, std::string_view piece) {
        CHECK(s == 0);
        seen.push_back(id);
        streamed += piece;
        return true;
    };
    const auto r = lm::generate(m, cache, p0, o, &tok, cb);
    REQUIRE(r.sequences.size() == 1);
    CHECK(r.sequences[0].ids == want);
    CHECK(seen == want);
    CHECK(r.sequences[0].stop == lm::StopReason::max_new_tokens);
    CHECK(r.prefill_tokens == static_cast<index_t>(p0.size()));
    CHECK(r.decode_tokens == 31);
    const std::string full = tok.decode(want, o.decode);
    CHECK(r.sequences[0].text == full);
    CHECK(streamed == full);

    // a stop id: generation ends right after it (config eos 2 too, with use_default_stops)
    o.stop_ids = {want[5]};
    const auto first = static_cast<std::size_t>(std::find(want.begin(), want.end(), want[5]) - want.begin());
    auto rs = lm::generate(m, cache, p0, o, &tok);
    CHECK(rs.sequences[0].ids == std::vector<std::int32_t>(want.begin(), want.begin() + first + 1));
    CHECK(rs.sequences[0].stop == lm::StopReason::stop_id);
    o.stop_ids.clear();

    // a stop string: a piece of the text from the middle; the text ends before it and the
    // streamed text never shows it
    const std::string needle = full.substr(full.size() / 2, 2);
    o.stop_strings = {needle};
    streamed.clear();
    seen.clear();
    rs = lm::generate(m, cache, p0, o, &tok, cb);
    CHECK(rs.sequences[0].stop == lm::StopReason::stop_string);
    CHECK(rs.sequences[0].text == full.substr(0, full.find(needle)));
    CHECK(streamed == rs.sequences[0].text);
    o.stop_strings.clear();

    // the callback stops a sequence
    int calls = 0;
    rs = lm::generate(m, cache, p0, o, &tok, [&](index_t, std::int32_t, std::string_view) { return ++calls < 4; });
    CHECK(rs.sequences[0].ids.size() == 4);
    CHECK(rs.sequences[0].stop == lm::StopReason::callback);

    // sampling: a sequence's tokens do not depend on the batch it runs in nor on the threads
    o.sampling = lm::SamplingOptions{.temperature = 1.5f, .top_k = 50, .top_p = 0.95f, .min_p = 0.0f,
                                     .repetition_penalty = 1.1f, .seed = 42};
    o.max_new_tokens = 12;
    const auto both = lm::generate(m, cache, {p0, p1}, o);
    const auto alone0 = lm::generate(m, cache, p0, o);
    m.set_exec(Exec(1));
    const auto one_thread = lm::generate(m, cache, {p0, p1}, o);
    m.set_exec(Exec{});
    CHECK(both.sequences[0].ids == alone0.sequences[0].ids);
    CHECK(both.sequences[0].ids == one_thread.sequences[0].ids);
    CHECK(both.sequences[1].ids == one_thread.sequences[1].ids);
    o.sampling.seed = 43;
    const auto other_seed = lm::generate(m, cache, p0, o);
    CHECK(other_seed.sequences[0].ids != alone0.sequences[0].ids);
    // a logits processor: only even ids
    const auto even = [](std::span<float> logits, std::span<const std::int32_t>) {
        for (std::size_t i = 1; i < logits.size(); i += 2) logits[i] = -std::numeric_limits<float>::infinity();
    };
    const auto ev = lm::generate(m, cache, p0, o, nullptr, {}, even);
    for (const auto id : ev.sequences[0].ids) CHECK(id % 2 == 0);
    // errors
    throws_with<ConfigError>([&] { (void)lm::generate(m, cache, {p0, p1, p0, p1}, o); }, "4 prompts need 4 cache slots; the cache has 3");
    o.stop_strings = {"x"};
    throws_with<ConfigError>([&] { (void)lm::generate(m, cache, p0, o); }, "stop strings need a tokenizer");
}

}  // namespace moe_test_decoder
