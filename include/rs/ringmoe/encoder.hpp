// rs/ringmoe/encoder.hpp - RingMoE's Swin encoder built from a checkpoint by its MindSpore names.
//
//   load_swin<Ffn, W>(file, prefix, cfg, ffn)      the Swin encoder with the FFN of each block from
//                                                  ffn(file, "<block prefix>mlp.", C, F)
//   load_ringmoe_swin<W, Act>(file, prefix = "encoder.", cfg = swin_config(), moe_cfg)
//       -> RingMoeSwin<W, Act>: Moe_modal (load_moe_modal, moe_modal.hpp) in every block
//   load_ringmoe_swin_dense<W, Act>(file, prefix = "encoder.", cfg = swin_config())
//       -> DenseSwin<W, Act>: one dense MindSpore MLP per block (F from the file)
//   load_mindspore_mlp<Act, W>(file, module, C, F)  one dense MindSpore MLP
//
// Names (under the prefix; spelled by rs/ringmoe/names.hpp):
//   patch_embed{m}.projection.{weight [C, Cin_m, 4, 4], bias}, patch_embed{m}.norm.{gamma, beta}
//   (a single patch_embed. when there is no patch_embed{m})
//   layers.{i}.blocks.{j}.attn.relative_position_bias.relative_position_bias_table [(2w-1)^2, H]
//   (relative_position_index, if present, must equal the Swin-V1 index), attn.{q,k,v,proj}.*,
//   norm1/norm2.{gamma, beta}, mlp.* (Moe_modal: load_moe_modal; dense: mlp.mapping.weight
//   [C, F] ([in, out]), mapping.bias [F], mlp.projection.weight [F, C], projection.bias [C]),
//   layers.{i}.downsample.reduction.weight [2C, 4C], layers.{i}.downsample.norm.*, norm.*
//
// Tensors whose dtype the module keeps are borrowed from the file's mapping (as vision/loaders.hpp
// does); MindSpore's [in, out] MLP weights are read in that layout. A missing tensor is a
// NotFoundError naming it; a tensor of another shape a ShapeError naming it with the expected
// and the found shape.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "moe/core/precision.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/io/checkpoint.hpp"
#include "moe/io/safetensors.hpp"
#include "rs/ringmoe/config.hpp"
#include "rs/ringmoe/moe_modal.hpp"
#include "rs/ringmoe/names.hpp"
#include "vision/loaders.hpp"
#include "vision/mlp.hpp"
#include "vision/swin.hpp"

namespace moe::rs::ringmoe {

using io::SafetensorsFile;

/// A dense MindSpore MLP (expert_num 1) "<m>mapping.weight" [C, F], "<m>projection.weight"
/// [F, C] ([in, out], read in that layout) with biases [F], [C].
template <Activation Act, WeightPolicy W>
vision::Mlp<Act, W> load_mindspore_mlp(const SafetensorsFile& f, const std::string& m, index_t C, index_t F) {
    using vision::Linear;
    const std::string fc1 = names::mapping(m), fc2 = names::projection(m);
    const std::string w1 = fc1 + names::kWeight, w2 = fc2 + names::kWeight;
    return vision::Mlp<Act, W>(
        Linear<W>(io::borrow(f, w1, {C, F}), io::borrow(f, fc1 + names::kBias, {F}), w1, WeightLayout::in_out),
        Linear<W>(io::borrow(f, w2, {F, C}), io::borrow(f, fc2 + names::kBias, {C}), w2, WeightLayout::in_out), m);
}

/// A Swin encoder in RingMoE's MindSpore names with the FFN of each block from
/// `ffn(file, "<block prefix>mlp.", C, F)`.
template <class Ffn, WeightPolicy W, class FfnLoader>
vision::SwinEncoder<Ffn, W> load_swin(const SafetensorsFile& f, std::string prefix, vision::SwinConfig cfg,
                                      FfnLoader&& ffn) {
    using vision::load_conv_patch, vision::load_layer_norm, vision::load_linear;
    using names::kBeta, names::kGamma;
    prefix = io::module_prefix(std::move(prefix));
    cfg.validate(prefix);
    const index_t C0 = cfg.embed_dim, p = cfg.patch;
    // Per-modality patch embeddings patch_embed{m}; a single "patch_embed." when there are none.
    const index_t M = io::count_indexed(f, names::patch_embed_stem(prefix));
    std::vector<vision::PatchEmbed<W>> embeds;
    auto embed = [&](const std::string& m, index_t cin) {
        embeds.emplace_back(load_conv_patch<W>(f, names::patch_projection(m), C0, cin, p), cin, p,
                            load_layer_norm(f, names::patch_norm(m), C0, cfg.patch_eps, kGamma, kBeta), m);
    };
    if (M == 0) {
        embed(names::patch_embed_single(prefix), cfg.in_chans.front());
        cfg.in_chans.resize(1);
    } else {
        check<ShapeError>(M == static_cast<index_t>(cfg.in_chans.size()), names::patch_embed_stem(prefix) + "{m}",
                          "expected ", cfg.in_chans.size(), " per-modality patch embeddings (config in_chans), found ",
                          M);
        for (index_t m = 0; m < M; ++m)
            embed(names::patch_embed(prefix, m), cfg.in_chans[static_cast<std::size_t>(m)]);
    }
    std::vector<typename vision::SwinEncoder<Ffn, W>::Stage> stages;
    for (index_t i = 0; i < cfg.stages(); ++i) {
        const index_t C = cfg.dim(i), F = cfg.ffn_hidden(i), H = cfg.heads[static_cast<std::size_t>(i)];
        const index_t R = cfg.resolution(i), w = cfg.window_at(i), s = cfg.shift_at(i);
        const std::string L = names::layer(prefix, i);
        typename vision::SwinEncoder<Ffn, W>::Stage st;
        for (index_t j = 0; j < cfg.depths[static_cast<std::size_t>(i)]; ++j) {
            const std::string b = names::block(L, j);
            const std::string a = names::attn(b);
            auto lin = [&](int part, bool bias) { return load_linear<W>(f, names::attn_linear(a, part), C, C, bias); };
            vision::Attention<W> attn(lin(0, cfg.qkv_bias), lin(1, cfg.qkv_bias), lin(2, cfg.qkv_bias), lin(3, true), H,
                                      a);
            Tensor table = io::borrow(f, names::position_bias_table(a), {(2 * w - 1) * (2 * w - 1), H});
            const std::string in = names::position_index(a);
            if (f.contains(in)) {
                const TensorView iv = f.get(in);
                check<ShapeError>(iv.numel() == w * w * w * w && (iv.dtype() == DType::i32 || iv.dtype() == DType::i64),
                                  in, "expected ", w * w * w * w, " int32/int64 values, found ", iv.shape().str(), " ",
                                  dtype_name(iv.dtype()));
                const auto ref = vision::relative_position_index(w);
                for (index_t k = 0; k < iv.numel(); ++k) {
                    const std::int64_t v = iv.dtype() == DType::i32 ? iv.data<std::int32_t>()[k]
                                                                     : iv.data<std::int64_t>()[k];
                    check<ValueError>(v == ref[static_cast<std::size_t>(k)], in, "entry ", k, " is ", v,
                                      ", the Swin-V1 index is ", ref[static_cast<std::size_t>(k)]);
                }
            }
            const index_t shift = (j % 2 == 1) ? s : 0;
            auto norm = [&](const std::string& m) { return load_layer_norm(f, m, C, cfg.block_eps, kGamma, kBeta); };
            st.blocks.emplace_back(norm(names::norm1(b)), std::move(attn), std::move(table), norm(names::norm2(b)),
                                   ffn(f, names::mlp(b), C, F), R, w, shift, cfg.order, b);
        }
        if (i + 1 < cfg.stages()) {
            const std::string d = names::downsample(L);
            st.downsample.emplace(load_linear<W>(f, names::reduction(d), 2 * C, 4 * C, false),
                                  load_layer_norm(f, names::downsample_norm(d), 2 * C, cfg.merge_eps, kGamma, kBeta), R,
                                  d);
        }
        stages.push_back(std::move(st));
    }
    const index_t CL = cfg.dim(cfg.stages() - 1);
    vision::LayerNorm fn = load_layer_norm(f, names::final_norm(prefix), CL, cfg.final_eps, kGamma, kBeta);
    return vision::SwinEncoder<Ffn, W>(std::move(cfg), std::move(embeds), std::move(stages), std::move(fn), prefix);
}

/// RingMoE's encoder with the hierarchical MoE (Moe_modal) in every block; We: the experts'
/// weight policy (e.g. int8_dot experts in a bf16 encoder), W everything else's.
template <WeightPolicy W = float, Activation Act = GeluTanh, WeightPolicy We = W>
using RingMoeSwin = vision::SwinEncoder<MoeModal<We, Act>, W>;
/// The dense ("Swin-1B") encoder: one MLP per block.
template <WeightPolicy W = float, Activation Act = GeluTanh>
using DenseSwin = vision::SwinEncoder<vision::Mlp<Act, W>, W>;

template <WeightPolicy W = float, Activation Act = GeluTanh, WeightPolicy We = W>
RingMoeSwin<W, Act, We> load_ringmoe_swin(const SafetensorsFile& f, std::string prefix = names::kEncoder,
                                          vision::SwinConfig cfg = swin_config(),
                                          const MoeModalConfig& moe_cfg = {}) {
    return load_swin<MoeModal<We, Act>, W>(
        f, std::move(prefix), std::move(cfg),
        [&](const SafetensorsFile& file, const std::string& mlp, index_t C, index_t) {
            auto layer = load_moe_modal<We, Act>(file, mlp, moe_cfg);
            check<ShapeError>(layer.hidden_size() == C, mlp, "expected an MoE over ", C, " features, found ",
                              layer.hidden_size());
            return layer;
        });
}

template <WeightPolicy W = float, Activation Act = GeluTanh>
DenseSwin<W, Act> load_ringmoe_swin_dense(const SafetensorsFile& f, std::string prefix = names::kEncoder,
                                          vision::SwinConfig cfg = swin_config()) {
    return load_swin<vision::Mlp<Act, W>, W>(
        f, std::move(prefix), std::move(cfg),
        [](const SafetensorsFile& file, const std::string& mlp, index_t C, index_t) {
            // The width F from the file (an SVD fold gives any width).
            const std::string mw = names::mapping(mlp) + names::kWeight;
            const TensorView m = io::matrix(file, mw);
            check<ShapeError>(m.dim(0) == C, mw, "expected [", C, ", F] ([in, out]), found ", m.shape().str());
            return load_mindspore_mlp<Act, W>(file, mlp, C, m.dim(1));
        });
}

}  // namespace moe::rs::ringmoe
