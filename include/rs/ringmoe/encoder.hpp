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
// Names (under the prefix):
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

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/io/checkpoint.hpp"
#include "moe/io/safetensors.hpp"
#include "rs/ringmoe/config.hpp"
#include "rs/ringmoe/moe_modal.hpp"
#include "vision/loaders.hpp"
#include "vision/mlp.hpp"
#include "vision/swin.hpp"

namespace moe::rs::ringmoe {

using io::SafetensorsFile;

/// A dense MindSpore MLP (expert_num 1) "<m>mapping.weight" [C, F], "<m>projection.weight"
/// [F, C] ([in, out], read in that layout) with biases [F], [C].
template <Activation Act, WeightType W>
vision::Mlp<Act, W> load_mindspore_mlp(const SafetensorsFile& f, const std::string& m, index_t C, index_t F) {
    const std::string w1 = m + "mapping.weight", w2 = m + "projection.weight";
    using vision::Linear;
    return vision::Mlp<Act, W>(
        Linear<W>(io::borrow(f, w1, {C, F}), io::borrow(f, m + "mapping.bias", {F}), w1, WeightLayout::in_out),
        Linear<W>(io::borrow(f, w2, {F, C}), io::borrow(f, m + "projection.bias", {C}), w2, WeightLayout::in_out), m);
}


/// A Swin encoder in RingMoE's MindSpore names with the FFN of each block from
/// `ffn(file, "<block prefix>mlp.", C, F)`.
template <class Ffn, WeightType W, class FfnLoader>
vision::SwinEncoder<Ffn, W> load_swin(const SafetensorsFile& f, std::string prefix, vision::SwinConfig cfg,
                                      FfnLoader&& ffn) {
    using vision::load_conv_patch, vision::load_layer_norm, vision::load_linear;
    auto idx = [](const std::string& stem, index_t i, const char* rest) {
        return std::string(stem).append(std::to_string(i)).append(rest);
    };
    prefix = io::module_prefix(std::move(prefix));
    cfg.validate(prefix);
    const index_t C0 = cfg.embed_dim, p = cfg.patch;
    // Per-modality patch embeddings patch_embed{m}; a single "patch_embed." when there are none.
    const index_t M = io::count_indexed(f, prefix + "patch_embed");
    std::vector<vision::PatchEmbed<W>> embeds;
    auto embed = [&](const std::string& m, index_t cin) {
        embeds.emplace_back(load_conv_patch<W>(f, m + "projection.", C0, cin, p), cin, p,
                            load_layer_norm(f, m + "norm.", C0, cfg.patch_eps, "gamma", "beta"), m);
    };
    if (M == 0) {
        embed(prefix + "patch_embed.", cfg.in_chans.front());
        cfg.in_chans.resize(1);
    } else {
        check<ShapeError>(M == static_cast<index_t>(cfg.in_chans.size()), prefix + "patch_embed{m}", "expected ",
                          cfg.in_chans.size(), " per-modality patch embeddings (config in_chans), found ", M);
        for (index_t m = 0; m < M; ++m) embed(idx(prefix + "patch_embed", m, "."), cfg.in_chans[static_cast<std::size_t>(m)]);
    }
    std::vector<typename vision::SwinEncoder<Ffn, W>::Stage> stages;
    for (index_t i = 0; i < cfg.stages(); ++i) {
        const index_t C = cfg.dim(i), F = cfg.ffn_hidden(i), H = cfg.heads[static_cast<std::size_t>(i)];
        const index_t R = cfg.resolution(i), w = cfg.window_at(i), s = cfg.shift_at(i);
        const std::string L = idx(prefix + "layers.", i, ".");
        typename vision::SwinEncoder<Ffn, W>::Stage st;
        for (index_t j = 0; j < cfg.depths[static_cast<std::size_t>(i)]; ++j) {
            const std::string b = idx(L + "blocks.", j, ".");
            const std::string a = b + "attn.";
            vision::Attention<W> attn(load_linear<W>(f, a + "q.", C, C, cfg.qkv_bias), load_linear<W>(f, a + "k.", C, C, cfg.qkv_bias),
                              load_linear<W>(f, a + "v.", C, C, cfg.qkv_bias), load_linear<W>(f, a + "proj.", C, C, true), H, a);
            const std::string rp = a + "relative_position_bias.";
            Tensor table = io::borrow(f, rp + "relative_position_bias_table", {(2 * w - 1) * (2 * w - 1), H});
            if (f.contains(rp + "relative_position_index")) {
                const TensorView iv = f.get(rp + "relative_position_index");
                check<ShapeError>(iv.numel() == w * w * w * w && (iv.dtype() == DType::i32 || iv.dtype() == DType::i64),
                                  rp + "relative_position_index", "expected ", w * w * w * w,
                                  " int32/int64 values, found ", iv.shape().str(), " ", dtype_name(iv.dtype()));
                const auto ref = vision::relative_position_index(w);
                for (index_t k = 0; k < iv.numel(); ++k) {
                    const std::int64_t v = iv.dtype() == DType::i32 ? iv.data<std::int32_t>()[k]
                                                                     : iv.data<std::int64_t>()[k];
                    check<ValueError>(v == ref[static_cast<std::size_t>(k)], rp + "relative_position_index",
                                      "entry ", k, " is ", v, ", the Swin-V1 index is ", ref[static_cast<std::size_t>(k)]);
                }
            }
            const index_t shift = (j % 2 == 1) ? s : 0;
            st.blocks.emplace_back(load_layer_norm(f, b + "norm1.", C, cfg.block_eps, "gamma", "beta"), std::move(attn),
                                   std::move(table), load_layer_norm(f, b + "norm2.", C, cfg.block_eps, "gamma", "beta"),
                                   ffn(f, b + "mlp.", C, F), R, w, shift, cfg.order, b);
        }
        if (i + 1 < cfg.stages()) {
            const std::string d = L + "downsample.";
            st.downsample.emplace(load_linear<W>(f, d + "reduction.", 2 * C, 4 * C, false),
                                  load_layer_norm(f, d + "norm.", 2 * C, cfg.merge_eps, "gamma", "beta"), R, d);
        }
        stages.push_back(std::move(st));
    }
    const index_t CL = cfg.dim(cfg.stages() - 1);
    vision::LayerNorm fn = load_layer_norm(f, prefix + "norm.", CL, cfg.final_eps, "gamma", "beta");
    return vision::SwinEncoder<Ffn, W>(std::move(cfg), std::move(embeds), std::move(stages), std::move(fn), prefix);
}

/// RingMoE's encoder with the hierarchical MoE (Moe_modal) in every block.
template <WeightType W = float, Activation Act = GeluTanh>
using RingMoeSwin = vision::SwinEncoder<MoeModal<W, Act>, W>;
/// The dense ("Swin-1B") encoder: one MLP per block.
template <WeightType W = float, Activation Act = GeluTanh>
using DenseSwin = vision::SwinEncoder<vision::Mlp<Act, W>, W>;

template <WeightType W = float, Activation Act = GeluTanh>
RingMoeSwin<W, Act> load_ringmoe_swin(const SafetensorsFile& f, std::string prefix = "encoder.",
                                      vision::SwinConfig cfg = swin_config(),
                                      const MoeModalConfig& moe_cfg = {}) {
    return load_swin<MoeModal<W, Act>, W>(
        f, std::move(prefix), std::move(cfg),
        [&](const SafetensorsFile& file, const std::string& mlp, index_t C, index_t) {
            auto layer = load_moe_modal<W, Act>(file, mlp, moe_cfg);
            check<ShapeError>(layer.hidden_size() == C, mlp, "expected an MoE over ", C, " features, found ",
                              layer.hidden_size());
            return layer;
        });
}

template <WeightType W = float, Activation Act = GeluTanh>
DenseSwin<W, Act> load_ringmoe_swin_dense(const SafetensorsFile& f, std::string prefix = "encoder.",
                                          vision::SwinConfig cfg = swin_config()) {
    return load_swin<vision::Mlp<Act, W>, W>(f, std::move(prefix), std::move(cfg),
                                     [](const SafetensorsFile& file, const std::string& mlp, index_t C, index_t) {
                                         // The width F from the file (an SVD fold gives any width).
                                         const std::string mw = mlp + "mapping.weight";
                                         const TensorView m = io::matrix(file, mw);
                                         check<ShapeError>(m.dim(0) == C, mw, "expected [", C, ", F] ([in, out]), found ",
                                                           m.shape().str());
                                         return load_mindspore_mlp<Act, W>(file, mlp, C, m.dim(1));
                                     });
}

}  // namespace moe::rs::ringmoe
