// lm/decoder/load.hpp - decoders from Hugging Face model folders, by their real tensor names.
//
//   load_decoder<Model>(dir)               a CausalLM<Ffn, W> of a known FFN slot type (below)
//   load_decoder<Ffn, W>(dir, make_ffn)    any FFN slot: make_ffn(file, config, layer) builds
//                                          layer `layer`'s slot (a user's MoE variant)
//   open_decoder<W>(dir)                   the FFN slot the config asks for: an AnyDecoder<W>
//
// A model folder holds config.json (DecoderConfig) and model.safetensors, or sharded
// model-0000i-of-0000n.safetensors with model.safetensors.index.json (io::open_weights).
// Names (Qwen2 / LLaMA / Mistral, transformers' modeling_*.py):
//   model.embed_tokens.weight [V, H]; model.norm.weight [H]; lm_head.weight [V, H] (unless
//   tie_word_embeddings: then the embedding, and a stored lm_head.weight is ignored as HF does)
//   model.layers.{i}.input_layernorm.weight, .post_attention_layernorm.weight [H]
//   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight (+ .bias for q/k/v when qkv_bias, o when o_bias)
//   FFN slots:
//     DenseFfn (qwen2, llama, mistral)   model.layers.{i}.mlp.{gate,up,down}_proj.weight (+ .bias: mlp_bias)
//     Qwen2-MoE (qwen2_moe)              model.layers.{i}.mlp.gate.weight, .experts.{e}.*, .shared_expert.*,
//                                        .shared_expert_gate.weight; dense mlp.* in mlp_only_layers
//     Mixtral (mixtral)                  model.layers.{i}.block_sparse_moe.gate.weight, .experts.{e}.w1/w2/w3
//     G-MoE (RSUniVLM's Qwen2)           model.layers.{i}.mlp.{g}.{gate,up,down}_proj.weight
// Weights are borrowed from the mapping when stored as W (zero copy), converted once otherwise.
// int8 checkpoints (moe/io/quantize.hpp's convention; `quantize` writes them from a model folder,
// choosing the weights int8_linear_weight names): every Linear above may be int8, borrowed by
// the int8 policies and dequantised once by the others; an int8 embedding is dequantised to F32
// for the lookup (and borrowed as int8 by a tied lm_head). Routers, norms and biases stay float.
// Errors: a missing tensor NotFoundError naming it (with suggestions), a mis-shaped one
// ShapeError naming both shapes, an unsupported config ConfigError (DecoderConfig), a model
// type that does not match the requested slot ConfigError.
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "lm/decoder/config.hpp"
#include "lm/decoder/ffn.hpp"
#include "lm/decoder/model.hpp"
#include "moe/backend/cpu/activation.hpp"
#include "moe/expert/dense_ffn.hpp"
#include "moe/io/checkpoint.hpp"
#include "moe/io/quantize.hpp"
#include "moe/loaders/hf.hpp"
#include "moe/loaders/rsunivlm.hpp"

namespace moe::lm {

/// The dense SwiGLU MLP (Qwen2MLP / LlamaMLP).
template <WeightPolicy W = float>
using SwiGlu = DenseFfn<Silu, W>;

template <WeightPolicy W = float>
using DenseDecoder = CausalLM<SwiGlu<W>, W>;
template <WeightPolicy W = float>
using Qwen2MoeDecoder = CausalLM<FfnVariant<hf::Qwen2MoE<W>, SwiGlu<W>>, W>;
template <WeightPolicy W = float>
using MixtralDecoder = CausalLM<hf::MixtralMoE<W>, W>;
template <WeightPolicy W = float>
using GMoeDecoder = CausalLM<rsunivlm::GMoEFFN<W>, W>;
/// Every decoder open_decoder builds, by the config's FFN kind.
template <WeightPolicy W = float>
using AnyDecoder = std::variant<DenseDecoder<W>, Qwen2MoeDecoder<W>, MixtralDecoder<W>, GMoeDecoder<W>>;

/// Whether `name` is a weight this loader reads as a Linear (and so may be int8): attention and
/// MLP projections ("..._proj.weight": dense, Qwen2-MoE experts and shared expert, G-MoE),
/// Mixtral's experts ("...experts.{e}.w1/w2/w3.weight") and "lm_head.weight". Not the embedding,
/// routers ("mlp.gate.weight", "shared_expert_gate.weight"), norms or biases. The selection
/// `quantize` uses for a model folder (io::QuantizeOptions::select).
inline bool int8_linear_weight(std::string_view name) {
    const auto ends = [&](std::string_view s) {
        return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    if (name == "lm_head.weight" || ends("_proj.weight")) return true;
    return name.find(".experts.") != std::string_view::npos &&
           (ends(".w1.weight") || ends(".w2.weight") || ends(".w3.weight"));
}

namespace detail {

inline std::string layer_prefix(index_t i) { return moe::detail::cat("model.layers.", i, "."); }

/// A Linear `<name>.weight` [out, in] (+ `<name>.bias` [out] when `bias`), float or int8 (with
/// its `<name>.weight_scale`, moe/io/quantize.hpp).
template <WeightPolicy W>
cpu::Linear<W> linear(const io::SafetensorsFile& f, const std::string& name, index_t out, index_t in, bool bias) {
    const std::string weight = name + ".weight";
    std::vector<TensorView> b;
    if (bias) b.push_back(io::tensor(f, name + ".bias", {out}));
    return io::load_linears<W>(f, std::span(&weight, 1), b, out, in, WeightLayout::out_in, name);
}

/// The token embedding [V, H]: borrowed from the mapping when float; an int8 one (a checkpoint
/// quantised whole) dequantised once to F32, since a lookup reads values.
inline Tensor embedding(const io::SafetensorsFile& f, index_t V, index_t H) {
    const std::string name = "model.embed_tokens.weight";
    return io::is_int8(f, name) ? io::dequantize(f, name, {V, H}) : io::borrow(f, name, {V, H});
}

/// A sparse block's expert count (discovered from the names) must be the config's.
template <class Moe>
void check_experts(const Moe& moe, const io::SafetensorsFile& f, const DecoderConfig& c, index_t layer,
                   const char* field) {
    check<ShapeError>(moe.router().num_experts() == c.num_experts, f.path(), "layer ", layer, " has ",
                      moe.router().num_experts(), " experts, config.json says ", field, " = ", c.num_experts);
}

template <WeightPolicy W>
SwiGlu<W> swiglu(const io::SafetensorsFile& f, const std::string& module, index_t H, index_t I, bool bias) {
    return SwiGlu<W>::glu(linear<W>(f, module + "gate_proj", I, H, bias), linear<W>(f, module + "up_proj", I, H, bias),
                          linear<W>(f, module + "down_proj", H, I, bias), module);
}

}  // namespace detail

/// How each known FFN slot type is built from a checkpoint (specialise for a new slot type, or
/// pass a make_ffn callable to load_decoder).
template <class Ffn>
struct FfnLoader;

template <WeightPolicy W>
struct FfnLoader<SwiGlu<W>> {
    static constexpr FfnKind kind = FfnKind::dense;
    static SwiGlu<W> load(const io::SafetensorsFile& f, const DecoderConfig& c, index_t i) {
        return detail::swiglu<W>(f, detail::layer_prefix(i) + "mlp.", c.hidden_size, c.intermediate_size, c.mlp_bias);
    }
};

template <WeightPolicy W>
struct FfnLoader<FfnVariant<hf::Qwen2MoE<W>, SwiGlu<W>>> {
    static constexpr FfnKind kind = FfnKind::qwen2_moe;
    static FfnVariant<hf::Qwen2MoE<W>, SwiGlu<W>> load(const io::SafetensorsFile& f, const DecoderConfig& c, index_t i) {
        const std::string p = detail::layer_prefix(i) + "mlp.";
        if (!c.sparse_layer(i)) return detail::swiglu<W>(f, p, c.hidden_size, c.intermediate_size, false);
        auto moe = hf::load_qwen2_moe<W>(f, p, c.num_experts_per_tok, c.norm_topk_prob);
        detail::check_experts(moe, f, c, i, "num_experts");
        return moe;
    }
};

template <WeightPolicy W>
struct FfnLoader<hf::MixtralMoE<W>> {
    static constexpr FfnKind kind = FfnKind::mixtral;
    static hf::MixtralMoE<W> load(const io::SafetensorsFile& f, const DecoderConfig& c, index_t i) {
        auto moe = hf::load_mixtral_block<W>(f, detail::layer_prefix(i) + "block_sparse_moe.", c.num_experts_per_tok);
        detail::check_experts(moe, f, c, i, "num_local_experts");
        return moe;
    }
};

template <WeightPolicy W>
struct FfnLoader<rsunivlm::GMoEFFN<W>> {
    static constexpr FfnKind kind = FfnKind::gmoe;
    static rsunivlm::GMoEFFN<W> load(const io::SafetensorsFile& f, const DecoderConfig&, index_t i) {
        return rsunivlm::load_gmoe_ffn<W>(f, detail::layer_prefix(i) + "mlp.");
    }
};

/// A decoder from a config and its weights; make_ffn(file, config, layer) builds each FFN slot.
template <DecoderFfn Ffn, WeightPolicy W, class MakeFfn>
CausalLM<Ffn, W> load_decoder(const DecoderConfig& c, const io::SafetensorsFile& f, MakeFfn&& make_ffn) {
    const index_t H = c.hidden_size, V = c.vocab_size, hd = c.head_dim;
    const index_t qd = c.num_attention_heads * hd, kvd = c.num_key_value_heads * hd;
    std::vector<DecoderLayer<Ffn, W>> layers;
    layers.reserve(static_cast<std::size_t>(c.num_hidden_layers));
    for (index_t i = 0; i < c.num_hidden_layers; ++i) {
        const std::string p = detail::layer_prefix(i), a = p + "self_attn.";
        DecoderLayer<Ffn, W> l{io::floats(f, p + "input_layernorm.weight", {H}),
                               io::floats(f, p + "post_attention_layernorm.weight", {H}),
                               detail::linear<W>(f, a + "q_proj", qd, H, c.qkv_bias),
                               detail::linear<W>(f, a + "k_proj", kvd, H, c.qkv_bias),
                               detail::linear<W>(f, a + "v_proj", kvd, H, c.qkv_bias),
                               detail::linear<W>(f, a + "o_proj", H, qd, c.o_bias),
                               make_ffn(f, c, i)};
        layers.push_back(std::move(l));
    }
    Tensor embed = detail::embedding(f, V, H);
    cpu::Linear<W> lm_head = detail::linear<W>(f, c.tie_word_embeddings ? "model.embed_tokens" : "lm_head", V, H, false);
    return CausalLM<Ffn, W>(c, std::move(embed), std::move(layers), io::floats(f, "model.norm.weight", {H}),
                           std::move(lm_head));
}

/// The same from a model folder (config.json + weights).
template <DecoderFfn Ffn, WeightPolicy W, class MakeFfn>
CausalLM<Ffn, W> load_decoder(const std::filesystem::path& dir, MakeFfn&& make_ffn) {
    const DecoderConfig c = DecoderConfig::from_file(dir / "config.json");  // its errors first
    return load_decoder<Ffn, W>(c, io::open_weights(dir), std::forward<MakeFfn>(make_ffn));
}

/// A CausalLM<Ffn, W> whose slot type has an FfnLoader; ConfigError when the config asks for
/// another FFN kind.
template <class Model>
Model load_decoder(const DecoderConfig& c, const io::SafetensorsFile& f) {
    using Ffn = typename Model::ffn_type;
    using W = typename Model::policy;
    check<ConfigError>(FfnLoader<Ffn>::kind == c.ffn, c.where, "model_type '", c.model_type, "' (architecture '",
                       c.architecture, "') does not have the FFN slot this decoder type holds");
    return load_decoder<Ffn, W>(c, f, [](const io::SafetensorsFile& file, const DecoderConfig& cfg, index_t i) {
        return FfnLoader<Ffn>::load(file, cfg, i);
    });
}

template <class Model>
Model load_decoder(const std::filesystem::path& dir) {
    const DecoderConfig c = DecoderConfig::from_file(dir / "config.json");  // its errors first
    return load_decoder<Model>(c, io::open_weights(dir));
}

/// The decoder a folder's config.json describes, whatever its FFN slot.
template <WeightPolicy W = float>
AnyDecoder<W> open_decoder(const DecoderConfig& c, const io::SafetensorsFile& f) {
    switch (c.ffn) {
        case FfnKind::dense: return load_decoder<DenseDecoder<W>>(c, f);
        case FfnKind::qwen2_moe: return load_decoder<Qwen2MoeDecoder<W>>(c, f);
        case FfnKind::mixtral: return load_decoder<MixtralDecoder<W>>(c, f);
        case FfnKind::gmoe: return load_decoder<GMoeDecoder<W>>(c, f);
    }
    throw ConfigError(c.where, "unknown FFN kind");
}

template <WeightPolicy W = float>
AnyDecoder<W> open_decoder(const std::filesystem::path& dir) {
    const DecoderConfig c = DecoderConfig::from_file(dir / "config.json");  // its errors first
    return open_decoder<W>(c, io::open_weights(dir));
}

}  // namespace moe::lm
