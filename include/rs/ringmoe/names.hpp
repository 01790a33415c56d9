// rs/ringmoe/names.hpp - RingMoE's tensor names (the released MindSpore code's), in one table.
//
// Every reader and writer of RingMoE checkpoints spells a name through these functions: the
// Moe_modal loader (moe_modal.hpp), the Swin encoder loader (encoder.hpp), the model's heads
// (model.hpp), the checkpoint writer (checkpoint.hpp) and the random-weight writer
// (random.hpp). Each function takes the prefix of the module it names a part of (ending in '.',
// or empty) and returns that part's prefix (ending in '.') or, for a leaf, the tensor name.
// Sources: ../shared/docs/weight-names.md, section 1; tools/reference/ringmoe_model.py.
//
//   encoder (prefix kEncoder = "encoder." in the released checkpoints)
//     patch_embed{m}.                              patch_embed(enc, m); a single "patch_embed."
//       projection.{weight [C, Cin_m, p, p], bias}   patch_projection(pe)
//       norm.{gamma, beta}                           patch_norm(pe)
//     layers.{i}.                                  layer(enc, i)
//       blocks.{j}.                                  block(layer, j)
//         norm1.{gamma, beta}, norm2.{gamma, beta}     norm1(block), norm2(block)
//         attn.{q,k,v,proj}.{weight [out, in], bias}   attn(block), attn_linear(attn, part)
//         attn.relative_position_bias.relative_position_bias_table [(2w-1)^2, H]
//                                                      position_bias_table(attn)
//         attn.relative_position_bias.relative_position_index (int32 buffer)
//                                                      position_index(attn)
//         mlp.                                         mlp(block): Moe_modal or a dense MLP
//       downsample.reduction.weight [2C, 4C]         downsample(layer), reduction(ds)
//       downsample.norm.{gamma, beta}                downsample_norm(ds)
//     norm.{gamma, beta}                           final_norm(enc)
//   Moe_modal (under the block's mlp.)
//     special_router.{m}.dense.weight [E_m, C]     special_router(mlp, m), router_weight(r)
//     special_ffn.{m}.                             special_ffn(mlp, m)
//     cross_router.dense.weight [E_c, C]           cross_router(mlp), router_weight(r)
//     cross_ffn., public_ffn.                      cross_ffn(mlp), public_ffn(mlp)
//   an FFN (experts [E, in, out] / [1, E, 1, out], or one MLP [in, out] / [out]; also the dense
//   mlp. itself)
//     mapping.{weight, bias}, projection.{weight, bias}   mapping(ffn), projection(ffn)
//   heads (at the top level): head.{weight, bias}, seg_head.{weight, bias}   kHead, kSegHead
//   leaves: kWeight "weight", kBias "bias" (Linear), kGamma "gamma", kBeta "beta" (LayerNorm)
#pragma once

#include <string>
#include <string_view>

#include "moe/core/tensor.hpp"

namespace moe::rs::ringmoe::names {

inline constexpr char kEncoder[] = "encoder.";
inline constexpr char kHead[] = "head.";
inline constexpr char kSegHead[] = "seg_head.";
inline constexpr char kWeight[] = "weight";
inline constexpr char kBias[] = "bias";
inline constexpr char kGamma[] = "gamma";
inline constexpr char kBeta[] = "beta";

namespace detail {
inline std::string join(std::string_view prefix, std::string_view part) {
    std::string s;
    s.reserve(prefix.size() + part.size());
    return s.append(prefix).append(part);
}
inline std::string indexed(std::string_view prefix, std::string_view stem, index_t i) {
    return join(prefix, stem).append(std::to_string(i)).append(".");
}
}  // namespace detail

// ---- encoder ---------------------------------------------------------------------------------

/// The stem of the per-modality patch embeddings, "<enc>patch_embed" (counted with
/// io::count_indexed).
inline std::string patch_embed_stem(std::string_view enc) { return detail::join(enc, "patch_embed"); }
/// Modality m's patch embedding, "<enc>patch_embed{m}.".
inline std::string patch_embed(std::string_view enc, index_t m) { return detail::indexed(enc, "patch_embed", m); }
/// The one patch embedding of a file without per-modality ones, "<enc>patch_embed.".
inline std::string patch_embed_single(std::string_view enc) { return detail::join(enc, "patch_embed."); }
/// A patch embedding's conv, "<pe>projection.".
inline std::string patch_projection(std::string_view pe) { return detail::join(pe, "projection."); }
/// A patch embedding's LayerNorm, "<pe>norm.".
inline std::string patch_norm(std::string_view pe) { return detail::join(pe, "norm."); }

/// Stage i, "<enc>layers.{i}.".
inline std::string layer(std::string_view enc, index_t i) { return detail::indexed(enc, "layers.", i); }
/// Block j of a stage, "<layer>blocks.{j}.".
inline std::string block(std::string_view layer, index_t j) { return detail::indexed(layer, "blocks.", j); }
inline std::string norm1(std::string_view block) { return detail::join(block, "norm1."); }
inline std::string norm2(std::string_view block) { return detail::join(block, "norm2."); }
inline std::string attn(std::string_view block) { return detail::join(block, "attn."); }
/// The attention's Linears: part 0 q, 1 k, 2 v, 3 proj ("<attn>q." ...).
inline std::string attn_linear(std::string_view attn, int part) {
    static constexpr const char* kParts[4] = {"q.", "k.", "v.", "proj."};
    return detail::join(attn, kParts[part]);
}
/// "<attn>relative_position_bias.relative_position_bias_table" [(2w-1)^2, H].
inline std::string position_bias_table(std::string_view attn) {
    return detail::join(attn, "relative_position_bias.relative_position_bias_table");
}
/// "<attn>relative_position_bias.relative_position_index" (the int32 Swin-V1 index buffer).
inline std::string position_index(std::string_view attn) {
    return detail::join(attn, "relative_position_bias.relative_position_index");
}
/// The block's FFN slot, "<block>mlp.".
inline std::string mlp(std::string_view block) { return detail::join(block, "mlp."); }

/// A stage's patch merging, "<layer>downsample.".
inline std::string downsample(std::string_view layer) { return detail::join(layer, "downsample."); }
inline std::string reduction(std::string_view ds) { return detail::join(ds, "reduction."); }
inline std::string downsample_norm(std::string_view ds) { return detail::join(ds, "norm."); }
/// The encoder's output LayerNorm, "<enc>norm.".
inline std::string final_norm(std::string_view enc) { return detail::join(enc, "norm."); }

// ---- Moe_modal -------------------------------------------------------------------------------

/// The stem of the modal routers, "<mlp>special_router." (counted with io::count_indexed).
inline std::string special_router_stem(std::string_view mlp) { return detail::join(mlp, "special_router."); }
/// Modality m's router, "<mlp>special_router.{m}.".
inline std::string special_router(std::string_view mlp, index_t m) {
    return detail::indexed(mlp, "special_router.", m);
}
/// The stem of the modal expert sets, "<mlp>special_ffn.".
inline std::string special_ffn_stem(std::string_view mlp) { return detail::join(mlp, "special_ffn."); }
/// Modality m's experts, "<mlp>special_ffn.{m}.".
inline std::string special_ffn(std::string_view mlp, index_t m) { return detail::indexed(mlp, "special_ffn.", m); }
/// The collaborative group's router and experts, "<mlp>cross_router.", "<mlp>cross_ffn.".
inline std::string cross_router(std::string_view mlp) { return detail::join(mlp, "cross_router."); }
inline std::string cross_ffn(std::string_view mlp) { return detail::join(mlp, "cross_ffn."); }
/// The shared expert, "<mlp>public_ffn.".
inline std::string public_ffn(std::string_view mlp) { return detail::join(mlp, "public_ffn."); }
/// A router's weight, "<router>dense.weight" [E, C].
inline std::string router_weight(std::string_view router) { return detail::join(router, "dense.weight"); }

// ---- an FFN (stacked experts, the shared expert, or the dense MLP of a folded block) ----------

/// fc1, "<ffn>mapping." (weight [E, C, F] / [C, F], bias [1, E, 1, F] / [F]).
inline std::string mapping(std::string_view ffn) { return detail::join(ffn, "mapping."); }
/// fc2, "<ffn>projection." (weight [E, F, C] / [F, C], bias [1, E, 1, C] / [C]).
inline std::string projection(std::string_view ffn) { return detail::join(ffn, "projection."); }

}  // namespace moe::rs::ringmoe::names
