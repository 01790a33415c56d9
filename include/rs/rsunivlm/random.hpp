// rs/rsunivlm/random.hpp - random-weight RSUniVLM model folders of any configuration (the
// example without --model, the full-size benchmark), by the released names.
//
//   checkpoint_layout(cfg, dtype)              every tensor load_rsunivlm reads (and SigLIP's
//                                              post_layernorm, which the released file holds)
//   write_random_model(dir, cfg, opt)          dir/config.json (cfg.to_json()) and
//                                              dir/model.safetensors, written streaming
//
// Initialisation as transformers initialises these modules (initializer_range 0.02): weight
// matrices, the patch convolution, the position and token embeddings and image_newline
// N(0, 0.02^2) truncated at +-2 std (rs/random_weights.hpp: deterministic in (seed, name,
// index)); biases 0; RMSNorm / LayerNorm weights 1, LayerNorm biases 0. dtype bf16 stores the
// weight matrices, convolution and embeddings in BF16 and the rest in F32 (as the loaders keep
// them); f32 stores everything in F32. The full size is 3.31 GB in bf16 (1,657,325,600 values).
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "moe/core/error.hpp"
#include "rs/random_weights.hpp"
#include "rs/rsunivlm/config.hpp"
#include "rs/rsunivlm/model.hpp"

namespace moe::rs::rsunivlm {

struct RandomModelOptions {
    std::uint64_t seed = 0;
    DType dtype = DType::bf16;  ///< bf16 or f32 (see the file comment)
    double std = 0.02;
};

/// Every tensor of a checkpoint of `cfg`, by the released names.
inline std::vector<TensorSpec> checkpoint_layout(const RsUniVlmConfig& cfg, const RandomModelOptions& opt = {}) {
    check<ConfigError>(opt.dtype == DType::bf16 || opt.dtype == DType::f32, "rsunivlm::checkpoint_layout",
                       "dtype must be bf16 or f32, got ", dtype_name(opt.dtype));
    std::vector<TensorSpec> t;
    auto w = [&](std::string n, std::vector<index_t> shape) {
        t.push_back({std::move(n), std::move(shape), opt.dtype, Init::trunc_normal, opt.std, 0});
    };
    auto f = [&](std::string n, index_t size, Init init) { t.push_back({std::move(n), {size}, DType::f32, init, opt.std, 0}); };
    const lm::DecoderConfig& c = cfg.text;
    const index_t H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
    const index_t q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
    w("model.embed_tokens.weight", {c.vocab_size, H});
    f("model.norm.weight", H, Init::ones);
    if (!c.tie_word_embeddings) w("lm_head.weight", {c.vocab_size, H});
    for (index_t l = 0; l < c.num_hidden_layers; ++l) {
        const std::string p = moe::detail::cat("model.layers.", l, ".");
        f(p + "input_layernorm.weight", H, Init::ones);
        f(p + "post_attention_layernorm.weight", H, Init::ones);
        w(p + "self_attn.q_proj.weight", {q, H});
        f(p + "self_attn.q_proj.bias", q, Init::zeros);
        w(p + "self_attn.k_proj.weight", {kv, H});
        f(p + "self_attn.k_proj.bias", kv, Init::zeros);
        w(p + "self_attn.v_proj.weight", {kv, H});
        f(p + "self_attn.v_proj.bias", kv, Init::zeros);
        w(p + "self_attn.o_proj.weight", {H, q});
        for (int g = 0; g < 3; ++g) {
            const std::string m = moe::detail::cat(p, "mlp.", g, ".");
            w(m + "gate_proj.weight", {I, H});
            w(m + "up_proj.weight", {I, H});
            w(m + "down_proj.weight", {H, I});
        }
    }
    const std::string p = Names::projector;
    w(p + "0.weight", {H, cfg.mm_hidden_size});
    f(p + "0.bias", H, Init::zeros);
    w(p + "2.weight", {H, H});
    f(p + "2.bias", H, Init::zeros);
    if (cfg.image_newline) t.push_back({Names::image_newline, {H}, DType::f32, Init::trunc_normal, opt.std, 0});
    const vision::VitConfig& v = cfg.vision;
    const index_t C = v.width, F = v.mlp_hidden, g = v.grid();
    const std::string vp = Names::vision;
    w(vp + "embeddings.patch_embedding.weight", {C, v.in_chans, v.patch, v.patch});
    f(vp + "embeddings.patch_embedding.bias", C, Init::zeros);
    w(vp + "embeddings.position_embedding.weight", {g * g, C});
    for (index_t l = 0; l < v.depth; ++l) {
        const std::string b = moe::detail::cat(vp, "encoder.layers.", l, ".");
        for (const char* n : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
            w(b + "self_attn." + n + ".weight", {C, C});
            f(b + "self_attn." + n + ".bias", C, Init::zeros);
        }
        f(b + "layer_norm1.weight", C, Init::ones);
        f(b + "layer_norm1.bias", C, Init::zeros);
        f(b + "layer_norm2.weight", C, Init::ones);
        f(b + "layer_norm2.bias", C, Init::zeros);
        w(b + "mlp.fc1.weight", {F, C});
        f(b + "mlp.fc1.bias", F, Init::zeros);
        w(b + "mlp.fc2.weight", {C, F});
        f(b + "mlp.fc2.bias", C, Init::zeros);
    }
    f(vp + "post_layernorm.weight", C, Init::ones);
    f(vp + "post_layernorm.bias", C, Init::zeros);
    return t;
}

/// Writes dir/config.json and dir/model.safetensors (streaming, atomically) for `cfg`.
inline void write_random_model(const std::filesystem::path& dir, const RsUniVlmConfig& cfg,
                               const RandomModelOptions& opt = {}) {
    std::filesystem::create_directories(dir);
    {
        std::ofstream out(dir / "config.json");
        out << cfg.to_json();
        check<IOError>(static_cast<bool>(out), (dir / "config.json").string(), "cannot write");
    }
    random_weights_writer(checkpoint_layout(cfg, opt), opt.seed,
                          {{"moe.init", moe::detail::cat("random: trunc_normal(std ", opt.std,
                                                         ", +-2 std) weights; zero biases; norms 1")},
                           {"moe.seed", std::to_string(opt.seed)}})
        .write(dir / "model.safetensors");
}

}  // namespace moe::rs::rsunivlm
