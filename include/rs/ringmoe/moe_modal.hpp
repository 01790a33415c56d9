// rs/ringmoe/moe_modal.hpp - the hierarchical MoE of RingMoE (MindSpore names), built from a
// checkpoint by its real parameter names.
//
//   ringmoe::load_moe_modal<W, Act>(file, prefix, config)    Moe_modal -> HierarchicalMoE
//   ringmoe::modality_chunks(batch, tokens_per_image, M)     the released batch layout
//
// RSUniVLM's G-MoE loader (rsunivlm::load_gmoe_ffn) is in moe/loaders/rsunivlm.hpp.
//
// RingMoE (../shared/docs/weight-names.md, section 1; tools/reference/ringmoe_moe.py), names
// (spelled by rs/ringmoe/names.hpp) under a block prefix such as
// "encoder.layers.0.blocks.1.mlp." (a missing final '.' is added):
//
//   special_router.{m}.dense.weight     [E_m, C]         nn.Dense [out, in]     -> Gate (zero copy)
//   special_ffn.{m}.mapping.weight      [E_m, C, F]      [E, in, out]           -> fc1, in_out layout (zero copy)
//   special_ffn.{m}.mapping.bias        [1, E_m, 1, F]                          -> [E, F] (zero copy)
//   special_ffn.{m}.projection.weight   [E_m, F, C]                             -> fc2, in_out layout (zero copy)
//   special_ffn.{m}.projection.bias     [1, E_m, 1, C]
//   cross_router.dense.weight, cross_ffn.*                    the collaborative group, likewise
//   public_ffn.mapping.weight [C, F], .bias [F]; public_ffn.projection.weight [F, C], .bias [C]
//                                                        the shared expert, 2-D [in, out]
//
// The number of modalities M is 1 + the largest m of "special_router.{m}." (special_ffn must
// have the same count); the sizes C, F and the expert counts come from the shapes. MindSpore
// stores expert weights [E, in, out] (BatchMatMul with transpose_b=False); the LinearStacks keep
// that layout (WeightLayout::in_out, which the GEMMs read in place), so weights whose dtype is W
// are not copied: they stay in the file's mapping, shared by every process that maps it. A file
// of another dtype is converted once (same layout). Biases [1, E, 1, out] are reshaped to
// [E, out] in place. Routers are referenced in place (fp32).
//
// Arithmetic (the released Moe_modal / TopkRouter, dp = 1): fp32 softmax, top-k (k =
// num_experts_chosen, 1 as released), capacity ceil(k * tokens_in_group * cf / E_group) per
// group; over-capacity choices get 0 from that group. For k > 1 the TopkRouter routes round by
// round: all first choices in token order, then all second choices, and a token whose choice
// was dropped asks the same expert again (dropped again) (CapacityPriority::sequential). Combine
// weight renormalised over the token's KEPT choices, g / (sum + 1e-9) (top-1: exactly 1;
// config.renormalize = false: the raw probability); expert FFN = Act(x W1 + b1) W2 + b2 with
// Act = GeluTanh (MindSpore nn.GELU() defaults to approximate=True; Act = Gelu for the erf
// form); y = modal + collab + shared. Auxiliary losses: per group
// sum_j mean_e(f_je P_je) * c^2 over the routing rounds (k = 1: mean_e(f_e P_e) * c^2) with
// c = moe_config.expert_num (8), layer = 0.001 * (L_collab + mean_m L_modal_m)
// (HierarchicalMoE::losses(); see moe/layer/hierarchical.hpp). The released code
// splits each group's tokens into data-parallel groups of their own capacity; these layers
// compute one group (dp = 1), as a single device does.
//
// Errors: a missing tensor throws NotFoundError naming it; a tensor of the wrong shape
// ShapeError naming it (expected and found shapes); a non-float tensor DTypeError; no modality
// or expert found NotFoundError naming the first tensor looked for.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "moe/core/precision.hpp"
#include "moe/backend/cpu/activation.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/ffn.hpp"
#include "moe/expert/linear_stack.hpp"
#include "moe/io/checkpoint.hpp"
#include "moe/io/quantize.hpp"
#include "moe/io/safetensors.hpp"
#include "moe/layer/hierarchical.hpp"
#include "moe/layer/moe_layer.hpp"
#include "moe/layer/shared.hpp"
#include "moe/loaders/parts.hpp"
#include "moe/router/gate.hpp"
#include "rs/ringmoe/names.hpp"

namespace moe::rs::ringmoe {

using io::SafetensorsFile;

/// RingMoE's Moe_modal: modal experts, collaborative experts and the shared expert are all
/// GELU MLPs with biases (Act = GeluTanh as released; Gelu for the erf form).
template <WeightPolicy W = float, Activation Act = GeluTanh>
using MoeModal = HierarchicalMoE<MlpExperts<Act, W>, MlpExperts<Act, W>, SharedExperts<MlpExperts<Act, W>>>;

/// moe_config of the released configuration (pretrain_simmim_swinv2_giant_p4_w12_aircas_192_200ep_moe_mm.yaml).
struct MoeModalConfig {
    index_t num_experts_chosen = 1;  ///< k of every routed group (k > 1: TopkRouter's sequential rule)
    double capacity_factor = 1.2;
    bool renormalize = true;         ///< released: renormalised over the kept choices (top-1: 1); false: raw probability
    double expert_num = 8;           ///< moe_config.expert_num: the c of sum_j mean_e(f_je P_je) * c^2
    double aux_loss_factor = 0.001;
};

/// Transposes the last two axes of a contiguous float tensor: [E, a, b] -> [E, b, a] or
/// [a, b] -> [b, a], into a new tensor of the same dtype (blocked copy).
inline Tensor transpose_last2(const TensorView& v, std::string_view what) {
    check<ShapeError>(v.rank() == 2 || v.rank() == 3, what, "expected a 2-D or 3-D weight, found ", v.shape().str());
    check<ShapeError>(v.contiguous(), what, "expected a contiguous tensor");
    const index_t E = v.rank() == 3 ? v.dim(0) : 1, a = v.dim(-2), b = v.dim(-1);
    Tensor out(v.dtype(), v.rank() == 3 ? Shape{E, b, a} : Shape{b, a});
    const std::size_t es = dtype_size(v.dtype());
    const auto* src = static_cast<const std::byte*>(v.raw());
    auto* dst = static_cast<std::byte*>(out.raw());
    constexpr index_t kBlock = 32;
    for (index_t e = 0; e < E; ++e) {
        const std::byte* s = src + static_cast<std::size_t>(e * a * b) * es;
        std::byte* d = dst + static_cast<std::size_t>(e * a * b) * es;
        for (index_t i0 = 0; i0 < a; i0 += kBlock)
            for (index_t j0 = 0; j0 < b; j0 += kBlock) {
                const index_t i1 = std::min(a, i0 + kBlock), j1 = std::min(b, j0 + kBlock);
                for (index_t j = j0; j < j1; ++j)
                    for (index_t i = i0; i < i1; ++i)  // d[j, i] = s[i, j]
                        std::memcpy(d + static_cast<std::size_t>(j * a + i) * es,
                                    s + static_cast<std::size_t>(i * b + j) * es, es);
            }
    }
    return out;
}

namespace detail {

/// One stacked MindSpore Linear of `E` experts: weight "<module>weight" [E, in, out] and bias
/// "<module>bias" [1, E, 1, out] -> LinearStack in the in_out layout + [E, out], in place.
template <WeightPolicy W>
LinearStack<W> stacked_linear(const SafetensorsFile& f, const std::string& module, index_t E, index_t in, index_t out) {
    const std::string wn = module + names::kWeight, bn = module + names::kBias;
    const TensorView b = io::tensor(f, bn, {1, E, 1, out});
    const TensorView b2 = b.reshape({E, out});
    return io::load_stacked_linear<W>(f, wn, E, out, in, &b2, WeightLayout::in_out);
}

/// A one-expert MindSpore Linear: weight [in, out], bias [out] -> LinearStack of one expert in
/// the in_out layout, in place.
template <WeightPolicy W>
LinearStack<W> single_linear(const SafetensorsFile& f, const std::string& module, index_t in, index_t out) {
    const std::string wn = module + names::kWeight, bn = module + names::kBias;
    const TensorView b = io::tensor(f, bn, {out});
    return io::load_linears<W>(f, std::span(&wn, 1), std::span(&b, 1), out, in, WeightLayout::in_out, wn);
}

/// A RingMoE MLP "<module>" of E experts (E > 1: stacked; E == 0: the 2-D shared layout).
template <WeightPolicy W, Activation Act>
MlpExperts<Act, W> mlp(const SafetensorsFile& f, const std::string& module, index_t E, index_t C, index_t F) {
    const std::string fc1 = names::mapping(module), fc2 = names::projection(module);
    if (E == 0) return {single_linear<W>(f, fc1, C, F), single_linear<W>(f, fc2, F, C)};
    return {stacked_linear<W>(f, fc1, E, C, F), stacked_linear<W>(f, fc2, E, F, C)};
}

/// The router "<module>dense.weight" [E, C] (E from the tensor), in place when fp32.
inline Gate router(const SafetensorsFile& f, const std::string& module, index_t C) {
    const std::string n = names::router_weight(module);
    const TensorView w = io::matrix(f, n);
    return loaders::gate(f, n, w.dim(0), C);
}

}  // namespace detail

/// RingMoE's Moe_modal under `prefix` (e.g. "encoder.layers.0.blocks.1.mlp."), as a
/// HierarchicalMoE with M modal groups (M discovered from special_router.{m}), the
/// collaborative group and the shared expert. See the file comment for names and arithmetic.
template <WeightPolicy W = float, Activation Act = GeluTanh>
MoeModal<W, Act> load_moe_modal(const SafetensorsFile& file, std::string prefix, const MoeModalConfig& config = {}) {
    prefix = io::module_prefix(std::move(prefix));
    const std::string rstem = names::special_router_stem(prefix), fstem = names::special_ffn_stem(prefix);
    const index_t M = io::count_indexed(file, rstem);
    if (M == 0)
        throw NotFoundError(file.path(), moe::detail::cat("no tensor named '",
                                                          names::router_weight(names::special_router(prefix, 0)),
                                                          "' (no modality found under '", rstem, "'; the file has ",
                                                          file.size(), " tensors)"));
    const index_t Mf = io::count_indexed(file, fstem);
    check<ShapeError>(Mf == M, fstem, "expected ", M, " modal expert sets (as special_router.{m}), found ", Mf);

    const std::string cr = names::router_weight(names::cross_router(prefix));
    const TensorView crw = io::matrix(file, cr);
    const index_t C = crw.dim(1), Ec = crw.dim(0);
    const std::string cmap = names::mapping(names::cross_ffn(prefix)) + names::kWeight;
    // F from the collaborative mapping: float [E, in = C, out = F], or int8 [E, out = F, in = C].
    const bool q8 = io::is_int8(file, cmap);
    const TensorView cm = q8 ? file.get(cmap) : io::float_tensor(file, cmap);
    const index_t fa = q8 ? 2 : 1, fb = q8 ? 1 : 2;
    check<ShapeError>(cm.rank() == 3 && cm.dim(0) == Ec && cm.dim(fa) == C && cm.dim(fb) > 0, cmap, "expected shape [",
                      Ec, ", ", q8 ? "F, " : "", C, q8 ? "" : ", F", "] (", q8 ? "int8 [E, out, in]" : "[E, in, out]",
                      "), found ", cm.shape().str(), " in ", file.path());
    const index_t F = cm.dim(fb);

    std::vector<Gate> gates;
    std::vector<MlpExperts<Act, W>> modal;
    for (index_t m = 0; m < M; ++m) {
        Gate g = detail::router(file, names::special_router(prefix, m), C);
        const index_t Em = g.num_experts();
        modal.push_back(detail::mlp<W, Act>(file, names::special_ffn(prefix, m), Em, C, F));
        gates.push_back(std::move(g));
    }
    Gate cg = loaders::gate(file, cr, Ec, C);
    MlpExperts<Act, W> collab = detail::mlp<W, Act>(file, names::cross_ffn(prefix), Ec, C, F);
    SharedExperts<MlpExperts<Act, W>> shared(detail::mlp<W, Act>(file, names::public_ffn(prefix), 0, C, F));

    HierarchicalOptions o;
    o.k_modal = o.k_collab = config.num_experts_chosen;
    o.capacity_factor_modal = o.capacity_factor_collab = config.capacity_factor;
    o.renormalize = config.renormalize;
    o.aux_constant = config.expert_num;
    o.aux_weight = config.aux_loss_factor;
    return MoeModal<W, Act>(std::move(gates), std::move(modal), std::move(cg), std::move(collab), std::move(shared), o);
}

/// The modality chunks of the released batch layout: `batch` images ordered by modality, split
/// along the batch axis into `modalities` equal parts, `tokens_per_image` tokens each.
inline std::vector<ModalityChunk> modality_chunks(index_t batch, index_t tokens_per_image, int modalities) {
    check<ConfigError>(modalities > 0 && batch % modalities == 0, "ringmoe::modality_chunks", "a batch of ", batch,
                       " images does not split into ", modalities, " equal modality chunks");
    const index_t per = batch / modalities * tokens_per_image;
    std::vector<ModalityChunk> c;
    for (int m = 0; m < modalities; ++m) c.push_back({m * per, (m + 1) * per, m});
    return c;
}

}  // namespace moe::rs::ringmoe
