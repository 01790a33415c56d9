// rs/rsmoe/random.hpp - random-weight RS-MoE model folders (the example without --model, the
// benchmarks), laid out as load_rsmoe reads them, with LAVIS / Hugging Face / PEFT names.
//
//   RandomRsMoe::tiny()      EVA 224 / patch 14 (257 tokens) but 64 wide, 2 blocks; Q-Former 64
//                            wide, 2 layers, 32 queries, the real bert-base-uncased vocabulary
//                            size (30,523 with [DEC]); a 2-layer LLaMA of width 64 with LLaMA-2's
//                            32,000-token vocabulary (Vicuna's); three LoRA experts
//   RandomRsMoe::one_b()     the released parts at full size (EVA ViT-g/14, the bert-base
//                            Q-Former) and LLaMA-3.2-1B's shape (2048 wide, 16 layers, 32 / 8
//                            heads, 8192 FFN, 128,256 tokens, tied, llama3 rope) as the base of
//                            three LoRA experts (all seven targets, r 8, alpha 16)
//   write_random_model(dir, model, opt)   dir/rsmoe.json, dir/model.safetensors, dir/llm/,
//                            dir/experts/<name>/ (the tokenizers are the caller's: they come
//                            from the npm cache, see examples/rsmoe.cpp)
//
// Values as transformers / PEFT initialise them where it matters for a random model: weight
// matrices, embeddings, query tokens N(0, 0.02^2) truncated at +-2 std (rs/random_weights.hpp,
// deterministic in (seed, name, index)); biases 0; norms 1 / 0; lora_A N(0, 0.02^2) and lora_B
// N(0, 0.02^2) (PEFT starts B at zero; a random expert with B = 0 would be the base itself).
// dtype bf16 stores matrices and embeddings in BF16, the rest in F32.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "rs/random_weights.hpp"
#include "rs/rsmoe/config.hpp"

namespace moe::rs::rsmoe {

/// What a random folder holds.
struct RandomRsMoe {
    RsMoeConfig config;
    // the base LLM (LLaMA)
    index_t hidden = 64, intermediate = 128, layers = 2, heads = 4, kv_heads = 2, vocab = 32000;
    index_t max_positions = 4096;
    bool tied = false;
    bool llama3_rope = false;
    double rope_theta = 10000.0;
    std::vector<std::int64_t> bos{1}, eos{2};
    // the adapters
    std::vector<std::string> lora_targets{"gate_proj", "up_proj", "down_proj"};
    index_t lora_r = 1;
    double lora_alpha = 8;

    static RandomRsMoe tiny() {
        RandomRsMoe m;
        RsMoeConfig& c = m.config;
        c.vision.width = 64;
        c.vision.depth = 2;
        c.vision.heads = 4;
        c.vision.mlp_hidden = 128;
        c.qformer.hidden_size = 64;
        c.qformer.num_hidden_layers = 2;
        c.qformer.num_attention_heads = 4;
        c.qformer.intermediate_size = 128;
        c.qformer.encoder_width = 64;
        return m;
    }
    static RandomRsMoe one_b() {
        RandomRsMoe m;
        m.hidden = 2048;
        m.intermediate = 8192;
        m.layers = 16;
        m.heads = 32;
        m.kv_heads = 8;
        m.vocab = 128256;
        m.max_positions = 131072;
        m.tied = true;
        m.llama3_rope = true;
        m.rope_theta = 500000.0;
        m.bos = {128000};
        m.eos = {128001, 128008, 128009};
        m.lora_targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
        m.lora_r = 8;
        m.lora_alpha = 16;
        m.config.llm_bos = "";  // LLaMA-3's own <|begin_of_text|>
        return m;
    }

    /// The base LLM's config.json (LlamaForCausalLM).
    std::string llm_config_json() const {
        using moe::detail::cat;
        auto list = [](const std::vector<std::int64_t>& v) {
            if (v.size() == 1) return std::to_string(v[0]);
            std::string s = "[";
            for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
            return s + "]";
        };
        std::string rope = "null";
        if (llama3_rope)
            rope = "{\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
                   "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}";
        return cat("{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n",
                   "  \"hidden_act\": \"silu\",\n  \"hidden_size\": ", hidden, ",\n  \"intermediate_size\": ", intermediate,
                   ",\n  \"num_hidden_layers\": ", layers, ",\n  \"num_attention_heads\": ", heads,
                   ",\n  \"num_key_value_heads\": ", kv_heads, ",\n  \"head_dim\": ", hidden / heads,
                   ",\n  \"vocab_size\": ", vocab, ",\n  \"max_position_embeddings\": ", max_positions,
                   ",\n  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": ", rope_theta, ",\n  \"rope_scaling\": ", rope,
                   ",\n  \"attention_bias\": false,\n  \"mlp_bias\": false,\n  \"tie_word_embeddings\": ",
                   tied ? "true" : "false", ",\n  \"bos_token_id\": ", list(bos), ",\n  \"eos_token_id\": ", list(eos),
                   "\n}\n");
    }

    /// A PEFT adapter_config.json for every expert.
    std::string adapter_config_json() const {
        std::string t;
        for (std::size_t i = 0; i < lora_targets.size(); ++i) t += moe::detail::cat(i ? ", " : "", "\"", lora_targets[i], "\"");
        return moe::detail::cat("{\n  \"base_model_name_or_path\": \"../../llm\",\n  \"bias\": \"none\",\n",
                                "  \"fan_in_fan_out\": false,\n  \"lora_alpha\": ", lora_alpha,
                                ",\n  \"lora_dropout\": 0.0,\n  \"peft_type\": \"LORA\",\n  \"r\": ", lora_r,
                                ",\n  \"target_modules\": [", t, "],\n  \"task_type\": \"CAUSAL_LM\",\n",
                                "  \"use_rslora\": false\n}\n");
    }
};

struct RandomModelOptions {
    std::uint64_t seed = 0;
    DType dtype = DType::bf16;
    double std = 0.02;
};

/// The tensors of model.safetensors (LAVIS's names): EVA, ln_vision, the Q-Former, query_tokens,
/// llm_proj.
inline std::vector<TensorSpec> encoder_layout(const RandomRsMoe& m, const RandomModelOptions& opt = {}) {
    std::vector<TensorSpec> t;
    auto w = [&](std::string n, std::vector<index_t> shape) {
        t.push_back({std::move(n), std::move(shape), opt.dtype, Init::trunc_normal, opt.std, 0});
    };
    auto f = [&](std::string n, index_t size, Init init) { t.push_back({std::move(n), {size}, DType::f32, init, opt.std, 0}); };
    auto ln = [&](const std::string& p, index_t C) {
        f(p + "weight", C, Init::ones);
        f(p + "bias", C, Init::zeros);
    };
    auto lin = [&](const std::string& p, index_t out, index_t in) {
        w(p + "weight", {out, in});
        f(p + "bias", out, Init::zeros);
    };
    const vision::VitConfig& v = m.config.vision;
    const index_t C = v.width, g = v.grid();
    w("visual_encoder.cls_token", {1, 1, C});
    w("visual_encoder.pos_embed", {1, g * g + 1, C});
    w("visual_encoder.patch_embed.proj.weight", {C, v.in_chans, v.patch, v.patch});
    f("visual_encoder.patch_embed.proj.bias", C, Init::zeros);
    for (index_t b = 0; b < v.depth; ++b) {
        const std::string p = moe::detail::cat("visual_encoder.blocks.", b, ".");
        ln(p + "norm1.", C);
        w(p + "attn.qkv.weight", {3 * C, C});
        f(p + "attn.q_bias", C, Init::zeros);
        f(p + "attn.v_bias", C, Init::zeros);
        lin(p + "attn.proj.", C, C);
        ln(p + "norm2.", C);
        lin(p + "mlp.fc1.", v.mlp_hidden, C);
        lin(p + "mlp.fc2.", C, v.mlp_hidden);
    }
    ln("ln_vision.", C);
    const vision::QFormerConfig& q = m.config.qformer;
    const index_t H = q.hidden_size, I = q.intermediate_size;
    w("query_tokens", {1, q.num_query_tokens, H});
    const std::string e = "Qformer.bert.embeddings.";
    w(e + "word_embeddings.weight", {q.vocab_size, H});
    w(e + "position_embeddings.weight", {q.max_position_embeddings, H});
    ln(e + "LayerNorm.", H);
    for (index_t l = 0; l < q.num_hidden_layers; ++l) {
        const std::string p = moe::detail::cat("Qformer.bert.encoder.layer.", l, ".");
        for (const char* s : {"query.", "key.", "value."}) lin(p + "attention.self." + s, H, H);
        lin(p + "attention.output.dense.", H, H);
        ln(p + "attention.output.LayerNorm.", H);
        if (l % q.cross_attention_freq == 0) {
            lin(p + "crossattention.self.query.", H, H);
            lin(p + "crossattention.self.key.", H, q.encoder_width);
            lin(p + "crossattention.self.value.", H, q.encoder_width);
            lin(p + "crossattention.output.dense.", H, H);
            ln(p + "crossattention.output.LayerNorm.", H);
        }
        for (const char* s : {"", "_query"}) {
            lin(p + "intermediate" + s + ".dense.", I, H);
            lin(p + "output" + s + ".dense.", H, I);
            ln(p + "output" + s + ".LayerNorm.", H);
        }
    }
    lin("llm_proj.", m.hidden, H);
    return t;
}

/// The base LLM's tensors (Hugging Face LLaMA names).
inline std::vector<TensorSpec> llm_layout(const RandomRsMoe& m, const RandomModelOptions& opt = {}) {
    std::vector<TensorSpec> t;
    auto w = [&](std::string n, std::vector<index_t> shape) {
        t.push_back({std::move(n), std::move(shape), opt.dtype, Init::trunc_normal, opt.std, 0});
    };
    auto ones = [&](std::string n, index_t size) { t.push_back({std::move(n), {size}, DType::f32, Init::ones, 0, 0}); };
    const index_t H = m.hidden, hd = m.hidden / m.heads, q = m.heads * hd, kv = m.kv_heads * hd;
    w("model.embed_tokens.weight", {m.vocab, H});
    ones("model.norm.weight", H);
    if (!m.tied) w("lm_head.weight", {m.vocab, H});
    for (index_t l = 0; l < m.layers; ++l) {
        const std::string p = moe::detail::cat("model.layers.", l, ".");
        ones(p + "input_layernorm.weight", H);
        ones(p + "post_attention_layernorm.weight", H);
        w(p + "self_attn.q_proj.weight", {q, H});
        w(p + "self_attn.k_proj.weight", {kv, H});
        w(p + "self_attn.v_proj.weight", {kv, H});
        w(p + "self_attn.o_proj.weight", {H, q});
        w(p + "mlp.gate_proj.weight", {m.intermediate, H});
        w(p + "mlp.up_proj.weight", {m.intermediate, H});
        w(p + "mlp.down_proj.weight", {H, m.intermediate});
    }
    return t;
}

/// One expert's adapter tensors (PEFT's saved names, fp32 as PEFT saves them).
inline std::vector<TensorSpec> adapter_layout(const RandomRsMoe& m, const RandomModelOptions& opt = {}) {
    std::vector<TensorSpec> t;
    const index_t H = m.hidden, hd = m.hidden / m.heads, q = m.heads * hd, kv = m.kv_heads * hd, I = m.intermediate;
    for (index_t l = 0; l < m.layers; ++l)
        for (const std::string& target : m.lora_targets) {
            const bool attn = target == "q_proj" || target == "k_proj" || target == "v_proj" || target == "o_proj";
            const std::string p = moe::detail::cat("base_model.model.model.layers.", l, attn ? ".self_attn." : ".mlp.",
                                                   target, ".");
            index_t in = H, out = H;
            if (target == "q_proj") out = q;
            else if (target == "k_proj" || target == "v_proj") out = kv;
            else if (target == "o_proj") in = q;
            else if (target == "gate_proj" || target == "up_proj") out = I;
            else if (target == "down_proj") in = I;
            else throw ConfigError("rsmoe::adapter_layout", "unknown LoRA target '" + target + "'");
            t.push_back({p + "lora_A.weight", {m.lora_r, in}, DType::f32, Init::trunc_normal, opt.std, 0});
            t.push_back({p + "lora_B.weight", {out, m.lora_r}, DType::f32, Init::trunc_normal, opt.std, 0});
        }
    return t;
}

/// Writes a complete random RS-MoE folder (without tokenizers): rsmoe.json, model.safetensors,
/// llm/{config.json, model.safetensors}, experts/<name>/{adapter_config.json,
/// adapter_model.safetensors}. Expert e's adapter values use seed + 1 + e.
inline void write_random_model(const std::filesystem::path& dir, const RandomRsMoe& m, const RandomModelOptions& opt = {}) {
    namespace fs = std::filesystem;
    check<ConfigError>(m.config.expert_kind == ExpertKind::lora && m.config.router == RouterKind::text,
                       "rsmoe::write_random_model", "random folders hold LoRA experts behind the text router");
    auto text = [](const fs::path& p, const std::string& s) {
        fs::create_directories(p.parent_path());
        std::ofstream out(p);
        out << s;
        check<IOError>(static_cast<bool>(out), p.string(), "cannot write");
    };
    const std::vector<std::pair<std::string, std::string>> meta{
        {"moe.init", moe::detail::cat("random: trunc_normal(std ", opt.std, ", +-2 std) weights; zero biases; norms 1")},
        {"moe.seed", std::to_string(opt.seed)}};
    text(dir / "rsmoe.json", m.config.to_json());
    random_weights_writer(encoder_layout(m, opt), opt.seed, meta).write(dir / "model.safetensors");
    text(dir / m.config.base / "config.json", m.llm_config_json());
    random_weights_writer(llm_layout(m, opt), opt.seed, meta).write(dir / m.config.base / "model.safetensors");
    for (std::size_t e = 0; e < m.config.experts.size(); ++e) {
        const fs::path p = dir / m.config.experts[e].path;
        text(p / "adapter_config.json", m.adapter_config_json());
        random_weights_writer(adapter_layout(m, opt), opt.seed + 1 + e, meta).write(p / "adapter_model.safetensors");
    }
}

}  // namespace moe::rs::rsmoe
