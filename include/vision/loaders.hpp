// vision/loaders.hpp - vision encoders built from checkpoints by their real parameter names.
//
//   load_timm_vit<W>(file, prefix, cfg)            timm VisionTransformer
//       patch_embed.proj.{weight [C, 3, p, p], bias}, cls_token [1, 1, C], pos_embed [1, T, C],
//       blocks.{i}.norm1.{weight, bias}, blocks.{i}.attn.qkv.{weight [3C, C], bias [3C]},
//       blocks.{i}.attn.proj.*, blocks.{i}.norm2.*, blocks.{i}.mlp.fc1.*, blocks.{i}.mlp.fc2.*,
//       optional blocks.{i}.ls1.gamma / ls2.gamma (cfg.layer_scale), norm.* (cfg.final_norm)
//   load_eva_vit<W>(file, prefix = "visual_encoder.", cfg = eva_vit_g14())   LAVIS eva_vit.py
//       as timm, but attn.qkv.weight without bias plus attn.q_bias / attn.v_bias [C] (the k
//       bias is zero), no final norm
//   load_siglip_vision<W>(file, prefix = "vision_model.", cfg = siglip_so400m14())   HF SigLIP
//       embeddings.patch_embedding.*, embeddings.position_embedding.weight [N, C],
//       encoder.layers.{i}.layer_norm1/2.*, self_attn.{q,k,v,out}_proj.*, mlp.fc1/fc2.*,
//       post_layernorm.* (only with cfg.final_norm); loads the first cfg.depth layers (26 of 27)
//
//   Building blocks, for loaders of other encoders (rs/ringmoe/encoder.hpp loads RingMoE's Swin):
//   load_linear<W>(file, module, out, in, bias, wsuffix = "weight", bsuffix = "bias")
//       Linear [out, in] (+ bias [out]) "<module><wsuffix>", "<module><bsuffix>"
//   load_layer_norm(file, module, C, eps, g = "weight", b = "bias")   LayerNorm [C]
//   load_conv_patch<W>(file, module, C, cin, p)   conv "<module>weight" [C, cin, p, p] + bias [C],
//       as a Linear over unfolded patches
//
// Tensors whose dtype the module keeps (weights of type W; biases, norms, tables in fp32) are
// borrowed from the file's mapping, not copied (Tensor::borrow: the modules hold the mapping
// alive, and a process that loads the same file twice shares its pages); others are converted
// once. Separate q/k/v weights stay separate (Attention's split form); MindSpore's [in, out]
// MLP weights are read in that layout. EVA's qkv bias (cat(q_bias, 0, v_bias)) is the one copy
// left. A missing tensor is a NotFoundError naming it; a tensor of another shape a ShapeError
// naming it with the expected and the found shape.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "moe/core/precision.hpp"
#include "moe/io/checkpoint.hpp"
#include "moe/io/safetensors.hpp"
#include "vision/swin.hpp"
#include "vision/vit.hpp"

namespace moe::vision {

using io::SafetensorsFile;

/// Linear "<module><wsuffix>" [out, in] (+ "<module><bsuffix>" [out] when `bias`), borrowed
/// from the file's mapping (Linear converts a weight of another dtype than W once).
template <WeightPolicy W>
Linear<W> load_linear(const SafetensorsFile& f, const std::string& module, index_t out, index_t in, bool bias,
                      const char* wsuffix = "weight", const char* bsuffix = "bias") {
    const std::string wn = module + wsuffix;
    Tensor b = bias ? io::borrow(f, module + bsuffix, {out}) : Tensor();
    return Linear<W>(io::borrow(f, wn, {out, in}), std::move(b), wn);
}

/// LayerNorm "<module><g>", "<module><b>" [C].
inline LayerNorm load_layer_norm(const SafetensorsFile& f, const std::string& module, index_t C, float eps,
                                 const char* g = "weight", const char* b = "bias") {
    return LayerNorm(io::borrow(f, module + g, {C}), io::borrow(f, module + b, {C}), eps, module);
}

/// A conv patch embedding "<module>weight" [C, Cin, p, p] + bias, as a Linear over unfolded patches.
template <WeightPolicy W>
Linear<W> load_conv_patch(const SafetensorsFile& f, const std::string& module, index_t C, index_t cin, index_t p) {
    Tensor w = io::borrow(f, module + "weight", {C, cin, p, p});
    w.reshape({C, cin * p * p});
    return Linear<W>(std::move(w), io::borrow(f, module + "bias", {C}), module + "weight");
}

namespace detail {

inline std::string pre(std::string p) { return io::module_prefix(std::move(p)); }
inline std::string idx(const std::string& stem, index_t i, const char* rest) {
    return std::string(stem).append(std::to_string(i)).append(rest);
}

/// Tensor `name`, which must have shape `s`, borrowed from the file's mapping (no copy).
inline Tensor get(const SafetensorsFile& f, const std::string& name, const Shape& s) { return io::borrow(f, name, s); }

/// Rows of several [n_i, C] tensors stacked into one fp32 [sum n_i, C].
inline Tensor vstack(const std::vector<Tensor>& parts) {
    index_t rows = 0;
    const index_t C = parts.front().dim(-1);
    for (const auto& p : parts) rows += p.rank() == 2 ? p.dim(0) : 1;
    Tensor out(DType::f32, parts.front().rank() == 2 ? Shape{rows, C} : Shape{rows * C});
    float* d = out.data<float>();
    for (const auto& p : parts) {
        const Tensor f = p.dtype() == DType::f32 ? Tensor::copy_of(p.view()) : convert(p.view(), DType::f32);
        std::memcpy(d, f.raw(), f.nbytes());
        d += f.numel();
    }
    return out;
}

template <Activation Act, WeightPolicy W>
Mlp<Act, W> timm_mlp(const SafetensorsFile& f, const std::string& m, index_t C, index_t F) {
    return Mlp<Act, W>(load_linear<W>(f, m + "fc1.", F, C, true), load_linear<W>(f, m + "fc2.", C, F, true), m);
}

}  // namespace detail

/// timm VisionTransformer (erf GELU) under `prefix` ("" for a timm state_dict).
template <WeightPolicy W = float>
DenseVit<W> load_timm_vit(const SafetensorsFile& f, std::string prefix = "", VitConfig cfg = VitConfig::timm_vit_b16()) {
    using namespace detail;
    prefix = pre(std::move(prefix));
    const index_t C = cfg.width, F = cfg.mlp_hidden, g = cfg.grid();
    PatchEmbed<W> patch(load_conv_patch<W>(f, prefix + "patch_embed.proj.", C, cfg.in_chans, cfg.patch), cfg.in_chans,
                        cfg.patch);
    Tensor cls = cfg.cls_token ? get(f, prefix + "cls_token", {1, 1, C}) : Tensor();
    std::optional<PosEmbed> pos;
    if (cfg.pos_embed)
        pos.emplace(get(f, prefix + "pos_embed", {1, g * g + (cfg.cls_token ? 1 : 0), C}), cfg.cls_token ? 1 : 0, g, g,
                    prefix + "pos_embed");
    std::vector<Block<Mlp<Gelu, W>, W>> blocks;
    for (index_t i = 0; i < cfg.depth; ++i) {
        const std::string b = idx(prefix + "blocks.", i, ".");
        Attention<W> attn(load_linear<W>(f, b + "attn.qkv.", 3 * C, C, cfg.qkv_bias),
                          load_linear<W>(f, b + "attn.proj.", C, C, true), cfg.heads, b + "attn");
        Tensor ls1 = cfg.layer_scale ? get(f, b + "ls1.gamma", {C}) : Tensor();
        Tensor ls2 = cfg.layer_scale ? get(f, b + "ls2.gamma", {C}) : Tensor();
        blocks.emplace_back(load_layer_norm(f, b + "norm1.", C, cfg.eps), std::move(attn),
                            load_layer_norm(f, b + "norm2.", C, cfg.eps), timm_mlp<Gelu, W>(f, b + "mlp.", C, F),
                            cfg.order, std::move(ls1), std::move(ls2), b);
    }
    std::optional<LayerNorm> fn;
    if (cfg.final_norm) fn = load_layer_norm(f, prefix + "norm.", C, cfg.eps);
    return DenseVit<W>(cfg, std::move(patch), std::move(cls), std::move(pos), std::move(blocks), std::move(fn),
                       prefix);
}

/// EVA ViT-g as LAVIS names it (lavis/models/eva_vit.py): fused qkv without bias, q_bias and
/// v_bias, no final norm.
template <WeightPolicy W = float>
DenseVit<W> load_eva_vit(const SafetensorsFile& f, std::string prefix = "visual_encoder.",
                         VitConfig cfg = VitConfig::eva_vit_g14()) {
    using namespace detail;
    prefix = pre(std::move(prefix));
    const index_t C = cfg.width, F = cfg.mlp_hidden, g = cfg.grid();
    PatchEmbed<W> patch(load_conv_patch<W>(f, prefix + "patch_embed.proj.", C, cfg.in_chans, cfg.patch), cfg.in_chans,
                        cfg.patch);
    Tensor cls = get(f, prefix + "cls_token", {1, 1, C});
    std::optional<PosEmbed> pos;
    pos.emplace(get(f, prefix + "pos_embed", {1, g * g + 1, C}), 1, g, g, prefix + "pos_embed");
    std::vector<Block<Mlp<Gelu, W>, W>> blocks;
    for (index_t i = 0; i < cfg.depth; ++i) {
        const std::string b = idx(prefix + "blocks.", i, ".");
        Tensor qkv_b;
        if (cfg.qkv_bias) {
            std::vector<Tensor> parts;
            parts.push_back(get(f, b + "attn.q_bias", {C}));
            parts.push_back(Tensor(DType::f32, {C}));
            parts.push_back(get(f, b + "attn.v_bias", {C}));
            qkv_b = vstack(parts);
        }
        Linear<W> qkv(get(f, b + "attn.qkv.weight", {3 * C, C}), std::move(qkv_b), b + "attn.qkv.weight");
        Attention<W> attn(std::move(qkv), load_linear<W>(f, b + "attn.proj.", C, C, true), cfg.heads, b + "attn");
        if (cfg.qkv_bias) attn.set_constant_bias(C);  // the k third of cat(q_bias, 0, v_bias)
        blocks.emplace_back(load_layer_norm(f, b + "norm1.", C, cfg.eps), std::move(attn),
                            load_layer_norm(f, b + "norm2.", C, cfg.eps), timm_mlp<Gelu, W>(f, b + "mlp.", C, F),
                            cfg.order, Tensor(), Tensor(), b);
    }
    std::optional<LayerNorm> fn;
    if (cfg.final_norm) fn = load_layer_norm(f, prefix + "norm.", C, cfg.eps);
    return DenseVit<W>(cfg, std::move(patch), std::move(cls), std::move(pos), std::move(blocks), std::move(fn),
                       prefix);
}

/// Hugging Face SiglipVisionModel's vision_model (separate q/k/v/out projections, fused here).
template <WeightPolicy W = float>
DenseVitTanh<W> load_siglip_vision(const SafetensorsFile& f, std::string prefix = "vision_model.",
                                   VitConfig cfg = VitConfig::siglip_so400m14()) {
    using namespace detail;
    prefix = pre(std::move(prefix));
    const index_t C = cfg.width, F = cfg.mlp_hidden, g = cfg.grid();
    const std::string e = prefix + "embeddings.";
    PatchEmbed<W> patch(load_conv_patch<W>(f, e + "patch_embedding.", C, cfg.in_chans, cfg.patch), cfg.in_chans,
                        cfg.patch);
    std::optional<PosEmbed> pos;
    pos.emplace(get(f, e + "position_embedding.weight", {g * g, C}), 0, g, g, e + "position_embedding.weight");
    std::vector<Block<Mlp<GeluTanh, W>, W>> blocks;
    for (index_t i = 0; i < cfg.depth; ++i) {
        const std::string b = idx(prefix + "encoder.layers.", i, ".");
        const std::string a = b + "self_attn.";
        Attention<W> attn(load_linear<W>(f, a + "q_proj.", C, C, true), load_linear<W>(f, a + "k_proj.", C, C, true),
                          load_linear<W>(f, a + "v_proj.", C, C, true), load_linear<W>(f, a + "out_proj.", C, C, true),
                          cfg.heads, a);
        blocks.emplace_back(load_layer_norm(f, b + "layer_norm1.", C, cfg.eps), std::move(attn),
                            load_layer_norm(f, b + "layer_norm2.", C, cfg.eps),
                            timm_mlp<GeluTanh, W>(f, b + "mlp.", C, F), NormOrder::pre, Tensor(), Tensor(), b);
    }
    std::optional<LayerNorm> fn;
    if (cfg.final_norm) fn = load_layer_norm(f, prefix + "post_layernorm.", C, cfg.eps);
    return DenseVitTanh<W>(cfg, std::move(patch), Tensor(), std::move(pos), std::move(blocks), std::move(fn), prefix);
}

}  // namespace moe::vision
