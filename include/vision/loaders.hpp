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
//   load_ringmoe_swin<W, Act>(file, prefix = "encoder.", cfg, moe_cfg)   RingMoE (MindSpore names)
//       patch_embed{m}.projection.{weight [C, Cin_m, 4, 4], bias}, patch_embed{m}.norm.{gamma, beta}
//       layers.{i}.blocks.{j}.attn.relative_position_bias.relative_position_bias_table [(2w-1)^2, H]
//       (relative_position_index, if present, must equal the Swin-V1 index), attn.{q,k,v,proj}.*,
//       norm1/norm2.{gamma, beta}, mlp.* (Moe_modal: moe::ringmoe::load_moe_modal),
//       layers.{i}.downsample.reduction.weight [2C, 4C], layers.{i}.downsample.norm.*, norm.*
//   load_ringmoe_swin_dense<W, Act>(...)            the same with a dense MLP per block:
//       mlp.mapping.weight [C, F] ([in, out]; F from the file), mapping.bias, mlp.projection.weight [F, C], bias
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

#include "moe/io/checkpoint.hpp"
#include "moe/io/safetensors.hpp"
#include "moe/loaders/ringmoe.hpp"
#include "vision/swin.hpp"
#include "vision/vit.hpp"

namespace moe::vision {

using io::SafetensorsFile;

namespace load_detail {

inline std::string pre(std::string p) { return io::module_prefix(std::move(p)); }
inline std::string idx(const std::string& stem, index_t i, const char* rest) {
    return std::string(stem).append(std::to_string(i)).append(rest);
}

/// Tensor `name`, which must have shape `s`, borrowed from the file's mapping (no copy).
inline Tensor get(const SafetensorsFile& f, const std::string& name, const Shape& s) {
    return Tensor::borrow(io::tensor(f, name, s), f.keep_alive());
}

template <WeightType W>
Linear<W> linear(const SafetensorsFile& f, const std::string& module, index_t out, index_t in, bool bias,
                 const char* wsuffix = "weight", const char* bsuffix = "bias") {
    const std::string wn = module + wsuffix;
    Tensor b = bias ? get(f, module + bsuffix, {out}) : Tensor();
    return Linear<W>(get(f, wn, {out, in}), std::move(b), wn);
}

inline LayerNorm norm(const SafetensorsFile& f, const std::string& module, index_t C, float eps,
                      const char* g = "weight", const char* b = "bias") {
    return LayerNorm(get(f, module + g, {C}), get(f, module + b, {C}), eps, module);
}

/// A conv patch embedding "<module>weight" [C, Cin, p, p] + bias, as a Linear over unfolded patches.
template <WeightType W>
Linear<W> conv_patch(const SafetensorsFile& f, const std::string& module, index_t C, index_t cin, index_t p) {
    Tensor w = get(f, module + "weight", {C, cin, p, p});
    w.reshape({C, cin * p * p});
    return Linear<W>(std::move(w), get(f, module + "bias", {C}), module + "weight");
}

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

/// A dense MindSpore MLP (expert_num 1) "<m>mapping.weight" [C, F], "<m>projection.weight"
/// [F, C] ([in, out], read in that layout) with biases [F], [C].
template <Activation Act, WeightType W>
Mlp<Act, W> mindspore_mlp(const SafetensorsFile& f, const std::string& m, index_t C, index_t F) {
    const std::string w1 = m + "mapping.weight", w2 = m + "projection.weight";
    return Mlp<Act, W>(Linear<W>(get(f, w1, {C, F}), get(f, m + "mapping.bias", {F}), w1, WeightLayout::in_out),
                       Linear<W>(get(f, w2, {F, C}), get(f, m + "projection.bias", {C}), w2, WeightLayout::in_out), m);
}

template <Activation Act, WeightType W>
Mlp<Act, W> timm_mlp(const SafetensorsFile& f, const std::string& m, index_t C, index_t F) {
    return Mlp<Act, W>(linear<W>(f, m + "fc1.", F, C, true), linear<W>(f, m + "fc2.", C, F, true), m);
}

}  // namespace load_detail

/// timm VisionTransformer (erf GELU) under `prefix` ("" for a timm state_dict).
template <WeightType W = float>
DenseVit<W> load_timm_vit(const SafetensorsFile& f, std::string prefix = "", VitConfig cfg = VitConfig::timm_vit_b16()) {
    using namespace load_detail;
    prefix = pre(std::move(prefix));
    const index_t C = cfg.width, F = cfg.mlp_hidden, g = cfg.grid();
    PatchEmbed<W> patch(conv_patch<W>(f, prefix + "patch_embed.proj.", C, cfg.in_chans, cfg.patch), cfg.in_chans,
                        cfg.patch);
    Tensor cls = cfg.cls_token ? get(f, prefix + "cls_token", {1, 1, C}) : Tensor();
    std::optional<PosEmbed> pos;
    if (cfg.pos_embed)
        pos.emplace(get(f, prefix + "pos_embed", {1, g * g + (cfg.cls_token ? 1 : 0), C}), cfg.cls_token ? 1 : 0, g, g,
                    prefix + "pos_embed");
    std::vector<Block<Mlp<Gelu, W>, W>> blocks;
    for (index_t i = 0; i < cfg.depth; ++i) {
        const std::string b = idx(prefix + "blocks.", i, ".");
        Attention<W> attn(linear<W>(f, b + "attn.qkv.", 3 * C, C, cfg.qkv_bias),
                          linear<W>(f, b + "attn.proj.", C, C, true), cfg.heads, b + "attn");
        Tensor ls1 = cfg.layer_scale ? get(f, b + "ls1.gamma", {C}) : Tensor();
        Tensor ls2 = cfg.layer_scale ? get(f, b + "ls2.gamma", {C}) : Tensor();
        blocks.emplace_back(norm(f, b + "norm1.", C, cfg.eps), std::move(attn), norm(f, b + "norm2.", C, cfg.eps),
                            timm_mlp<Gelu, W>(f, b + "mlp.", C, F), cfg.order, std::move(ls1), std::move(ls2), b);
    }
    std::optional<LayerNorm> fn;
    if (cfg.final_norm) fn = norm(f, prefix + "norm.", C, cfg.eps);
    return DenseVit<W>(cfg, std::move(patch), std::move(cls), std::move(pos), std::move(blocks), std::move(fn),
                       prefix);
}

/// EVA ViT-g as LAVIS names it (lavis/models/eva_vit.py): fused qkv without bias, q_bias and
/// v_bias, no final norm.
template <WeightType W = float>
DenseVit<W> load_eva_vit(const SafetensorsFile& f, std::string prefix = "visual_encoder.",
                         VitConfig cfg = VitConfig::eva_vit_g14()) {
    using namespace load_detail;
    prefix = pre(std::move(prefix));
    const index_t C = cfg.width, F = cfg.mlp_hidden, g = cfg.grid();
    PatchEmbed<W> patch(conv_patch<W>(f, prefix + "patch_embed.proj.", C, cfg.in_chans, cfg.patch), cfg.in_chans,
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
        Attention<W> attn(std::move(qkv), linear<W>(f, b + "attn.proj.", C, C, true), cfg.heads, b + "attn");
        if (cfg.qkv_bias) attn.set_constant_bias(C);  // the k third of cat(q_bias, 0, v_bias)
        blocks.emplace_back(norm(f, b + "norm1.", C, cfg.eps), std::move(attn), norm(f, b + "norm2.", C, cfg.eps),
                            timm_mlp<Gelu, W>(f, b + "mlp.", C, F), cfg.order, Tensor(), Tensor(), b);
    }
    std::optional<LayerNorm> fn;
    if (cfg.final_norm) fn = norm(f, prefix + "norm.", C, cfg.eps);
    return DenseVit<W>(cfg, std::move(patch), std::move(cls), std::move(pos), std::move(blocks), std::move(fn),
                       prefix);
}

/// Hugging Face SiglipVisionModel's vision_model (separate q/k/v/out projections, fused here).
template <WeightType W = float>
DenseVitTanh<W> load_siglip_vision(const SafetensorsFile& f, std::string prefix = "vision_model.",
                                   VitConfig cfg = VitConfig::siglip_so400m14()) {
    using namespace load_detail;
    prefix = pre(std::move(prefix));
    const index_t C = cfg.width, F = cfg.mlp_hidden, g = cfg.grid();
    const std::string e = prefix + "embeddings.";
    PatchEmbed<W> patch(conv_patch<W>(f, e + "patch_embedding.", C, cfg.in_chans, cfg.patch), cfg.in_chans, cfg.patch);
    std::optional<PosEmbed> pos;
    pos.emplace(get(f, e + "position_embedding.weight", {g * g, C}), 0, g, g, e + "position_embedding.weight");
    std::vector<Block<Mlp<GeluTanh, W>, W>> blocks;
    for (index_t i = 0; i < cfg.depth; ++i) {
        const std::string b = idx(prefix + "encoder.layers.", i, ".");
        const std::string a = b + "self_attn.";
        Attention<W> attn(linear<W>(f, a + "q_proj.", C, C, true), linear<W>(f, a + "k_proj.", C, C, true),
                          linear<W>(f, a + "v_proj.", C, C, true), linear<W>(f, a + "out_proj.", C, C, true),
                          cfg.heads, a);
        blocks.emplace_back(norm(f, b + "layer_norm1.", C, cfg.eps), std::move(attn),
                            norm(f, b + "layer_norm2.", C, cfg.eps), timm_mlp<GeluTanh, W>(f, b + "mlp.", C, F),
                            NormOrder::pre, Tensor(), Tensor(), b);
    }
    std::optional<LayerNorm> fn;
    if (cfg.final_norm) fn = norm(f, prefix + "post_layernorm.", C, cfg.eps);
    return DenseVitTanh<W>(cfg, std::move(patch), Tensor(), std::move(pos), std::move(blocks), std::move(fn), prefix);
}

/// A Swin encoder in RingMoE's MindSpore names with the FFN of each block from
/// `ffn(file, "<block prefix>mlp.", C, F)`.
template <class Ffn, WeightType W, class FfnLoader>
SwinEncoder<Ffn, W> load_swin(const SafetensorsFile& f, std::string prefix, SwinConfig cfg, FfnLoader&& ffn) {
    using namespace load_detail;
    prefix = pre(std::move(prefix));
    cfg.validate(prefix);
    const index_t C0 = cfg.embed_dim, p = cfg.patch;
    // Per-modality patch embeddings patch_embed{m}; a single "patch_embed." when there are none.
    const index_t M = io::count_indexed(f, prefix + "patch_embed");
    std::vector<PatchEmbed<W>> embeds;
    auto embed = [&](const std::string& m, index_t cin) {
        embeds.emplace_back(conv_patch<W>(f, m + "projection.", C0, cin, p), cin, p,
                            norm(f, m + "norm.", C0, cfg.patch_eps, "gamma", "beta"), m);
    };
    if (M == 0) {
        embed(prefix + "patch_embed.", cfg.in_chans.front());
        cfg.in_chans.resize(1);
    } else {
        check<ShapeError>(M == static_cast<index_t>(cfg.in_chans.size()), prefix + "patch_embed{m}", "expected ",
                          cfg.in_chans.size(), " per-modality patch embeddings (config in_chans), found ", M);
        for (index_t m = 0; m < M; ++m) embed(idx(prefix + "patch_embed", m, "."), cfg.in_chans[static_cast<std::size_t>(m)]);
    }
    std::vector<typename SwinEncoder<Ffn, W>::Stage> stages;
    for (index_t i = 0; i < cfg.stages(); ++i) {
        const index_t C = cfg.dim(i), F = cfg.ffn_hidden(i), H = cfg.heads[static_cast<std::size_t>(i)];
        const index_t R = cfg.resolution(i), w = cfg.window_at(i), s = cfg.shift_at(i);
        const std::string L = idx(prefix + "layers.", i, ".");
        typename SwinEncoder<Ffn, W>::Stage st;
        for (index_t j = 0; j < cfg.depths[static_cast<std::size_t>(i)]; ++j) {
            const std::string b = idx(L + "blocks.", j, ".");
            const std::string a = b + "attn.";
            Attention<W> attn(linear<W>(f, a + "q.", C, C, cfg.qkv_bias), linear<W>(f, a + "k.", C, C, cfg.qkv_bias),
                              linear<W>(f, a + "v.", C, C, cfg.qkv_bias), linear<W>(f, a + "proj.", C, C, true), H, a);
            const std::string rp = a + "relative_position_bias.";
            Tensor table = get(f, rp + "relative_position_bias_table", {(2 * w - 1) * (2 * w - 1), H});
            if (f.contains(rp + "relative_position_index")) {
                const TensorView iv = f.get(rp + "relative_position_index");
                check<ShapeError>(iv.numel() == w * w * w * w && (iv.dtype() == DType::i32 || iv.dtype() == DType::i64),
                                  rp + "relative_position_index", "expected ", w * w * w * w,
                                  " int32/int64 values, found ", iv.shape().str(), " ", dtype_name(iv.dtype()));
                const auto ref = relative_position_index(w);
                for (index_t k = 0; k < iv.numel(); ++k) {
                    const std::int64_t v = iv.dtype() == DType::i32 ? iv.data<std::int32_t>()[k]
                                                                     : iv.data<std::int64_t>()[k];
                    check<ValueError>(v == ref[static_cast<std::size_t>(k)], rp + "relative_position_index",
                                      "entry ", k, " is ", v, ", the Swin-V1 index is ", ref[static_cast<std::size_t>(k)]);
                }
            }
            const index_t shift = (j % 2 == 1) ? s : 0;
            st.blocks.emplace_back(norm(f, b + "norm1.", C, cfg.block_eps, "gamma", "beta"), std::move(attn),
                                   std::move(table), norm(f, b + "norm2.", C, cfg.block_eps, "gamma", "beta"),
                                   ffn(f, b + "mlp.", C, F), R, w, shift, cfg.order, b);
        }
        if (i + 1 < cfg.stages()) {
            const std::string d = L + "downsample.";
            st.downsample.emplace(linear<W>(f, d + "reduction.", 2 * C, 4 * C, false),
                                  norm(f, d + "norm.", 2 * C, cfg.merge_eps, "gamma", "beta"), R, d);
        }
        stages.push_back(std::move(st));
    }
    const index_t CL = cfg.dim(cfg.stages() - 1);
    LayerNorm fn = norm(f, prefix + "norm.", CL, cfg.final_eps, "gamma", "beta");
    return SwinEncoder<Ffn, W>(std::move(cfg), std::move(embeds), std::move(stages), std::move(fn), prefix);
}

/// RingMoE's encoder with the hierarchical MoE (Moe_modal) in every block.
template <WeightType W = float, Activation Act = GeluTanh>
using RingMoeSwin = SwinEncoder<ringmoe::MoeModal<W, Act>, W>;
/// The dense ("Swin-1B") encoder: one MLP per block.
template <WeightType W = float, Activation Act = GeluTanh>
using DenseSwin = SwinEncoder<Mlp<Act, W>, W>;

template <WeightType W = float, Activation Act = GeluTanh>
RingMoeSwin<W, Act> load_ringmoe_swin(const SafetensorsFile& f, std::string prefix = "encoder.",
                                      SwinConfig cfg = SwinConfig::ringmoe(),
                                      const ringmoe::MoeModalConfig& moe_cfg = {}) {
    return load_swin<ringmoe::MoeModal<W, Act>, W>(
        f, std::move(prefix), std::move(cfg),
        [&](const SafetensorsFile& file, const std::string& mlp, index_t C, index_t) {
            auto layer = ringmoe::load_moe_modal<W, Act>(file, mlp, moe_cfg);
            check<ShapeError>(layer.hidden_size() == C, mlp, "expected an MoE over ", C, " features, found ",
                              layer.hidden_size());
            return layer;
        });
}

template <WeightType W = float, Activation Act = GeluTanh>
DenseSwin<W, Act> load_ringmoe_swin_dense(const SafetensorsFile& f, std::string prefix = "encoder.",
                                          SwinConfig cfg = SwinConfig::ringmoe()) {
    return load_swin<Mlp<Act, W>, W>(f, std::move(prefix), std::move(cfg),
                                     [](const SafetensorsFile& file, const std::string& mlp, index_t C, index_t) {
                                         // The width F from the file (an SVD fold gives any width).
                                         const std::string mw = mlp + "mapping.weight";
                                         const TensorView m = io::matrix(file, mw);
                                         check<ShapeError>(m.dim(0) == C, mw, "expected [", C, ", F] ([in, out]), found ",
                                                           m.shape().str());
                                         return load_detail::mindspore_mlp<Act, W>(file, mlp, C, m.dim(1));
                                     });
}

}  // namespace moe::vision
