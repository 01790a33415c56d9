// moe/loaders/rsunivlm.hpp - the G-MoE FFN of RSUniVLM (Hugging Face names), built from a checkpoint
// by its real parameter names.
//
//   rsunivlm::load_gmoe_ffn<W>(file, prefix)     Qwen2GMoEDecoderLayer.mlp -> MoELayer (GMoEFFN<W>)
//
// Names (../shared/docs/weight-names.md, section 3; tools/reference/rsunivlm_gmoe.py), under
// "model.layers.{l}.mlp.": {g}.gate_proj.weight [I, H], {g}.up_proj.weight [I, H],
// {g}.down_proj.weight [H, I], g = 0.. (3 experts, no bias): SiLU-GLU experts referenced in
// place (fp32 weights when W = float; another stored dtype is converted once), routed by a
// GranularityRouter (no parameters; [SEG] -> 2, [VG]/[REF] -> 1, else 0). Describe each batch
// with layer.router().set_requests(offsets, prompts) before forward().
//
// Errors: a missing tensor throws NotFoundError naming it; a tensor of the wrong shape
// ShapeError naming it (expected and found shapes); a non-float tensor DTypeError; no expert
// found NotFoundError naming the first tensor looked for.
#pragma once

#include <string>
#include <utility>

#include "moe/core/precision.hpp"
#include "moe/backend/cpu/activation.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/ffn.hpp"
#include "moe/io/checkpoint.hpp"
#include "moe/io/safetensors.hpp"
#include "moe/layer/moe_layer.hpp"
#include "moe/loaders/parts.hpp"
#include "moe/router/granularity.hpp"

namespace moe::rsunivlm {

using io::SafetensorsFile;

/// RSUniVLM's G-MoE FFN: three Qwen2MLP (SiLU-GLU, no bias) experts, one per request by the
/// task tag of its prompt.
template <WeightPolicy W = float>
using GMoEFFN = MoELayer<GranularityRouter, GluExperts<Silu, W>>;

/// Qwen2GMoEDecoderLayer.mlp under `prefix` (e.g. "model.layers.3.mlp."): {g}.gate_proj.weight
/// [I, H], {g}.up_proj.weight [I, H], {g}.down_proj.weight [H, I] for g = 0.. (the count is
/// discovered; RSUniVLM has 3), with the released tag rule (GranularityRouter's default).
template <WeightPolicy W = float>
GMoEFFN<W> load_gmoe_ffn(const SafetensorsFile& file, std::string prefix) {
    prefix = io::module_prefix(std::move(prefix));
    const index_t E = io::require_indexed(file, prefix, prefix + "0.gate_proj.weight");
    const index_t H = io::linear_matrix(file, prefix + "0.gate_proj.weight").dim(1);  // float or int8
    auto experts = loaders::glu_experts<W>(file, prefix, E, H, ".gate_proj.weight", ".up_proj.weight",
                                           ".down_proj.weight");
    return GMoEFFN<W>(GranularityRouter(H, E), std::move(experts));
}

}  // namespace moe::rsunivlm
