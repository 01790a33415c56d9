// moe/loaders/hf.hpp - MoE layers built from checkpoints by their real (Hugging Face) parameter names.
//
//   load_mixtral_block<W>(file, prefix, k)          MixtralSparseMoeBlock
//   load_switch_mlp<W>(file, prefix, cf)            Switch Transformer top-1 + capacity (HF names)
//   load_deepseek_v3_moe<W>(file, prefix, config)   DeepseekV3MoE (noaux_tc router + shared experts)
//   load_qwen2_moe<W>(file, prefix, k, norm)        Qwen2MoeSparseMoeBlock (gated shared expert)
//   load_rs_moe_token<W>(file, prefix, k)           RS-MoE's token MoE (GELU MLP experts, shared)
//
// `prefix` is the module's path in the checkpoint, e.g. "model.layers.0.block_sparse_moe." (a
// missing final '.' is added). The number of experts is discovered from the names present
// (1 + the largest i of "<prefix>experts.<i>."); the sizes come from the tensors' shapes.
//
// Zero copy: expert weights whose dtype is W, and router weights in fp32, are referenced in the
// file's mapping (moe/loaders/parts.hpp: LinearStack::from_list / Gate with file.keep_alive() as
// owner, so the layer keeps the mapping alive on its own); any other float dtype is converted once at load time
// (e.g. W = bf16 from an fp32 file, or the router weight of a bf16 checkpoint, which moe always
// evaluates in fp32 as the references do).
//
// Errors: a missing tensor throws NotFoundError naming the full tensor name (from
// SafetensorsFile::get, with "did you mean" suggestions); a tensor of the wrong shape throws
// ShapeError naming it, with the expected and the found shape; a non-float tensor DTypeError;
// an impossible configuration (k > E, groups not dividing E, ...) ConfigError.
//
// Each loader reproduces its reference's arithmetic (tools/reference/*.py, checked by
// tests/parity/): in particular load_deepseek_v3_moe sets group_mask_value = 0.0 and
// renorm_eps = 1e-20, as transformers' DeepseekV3TopkRouter does.
#pragma once

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
#include "moe/layer/moe_layer.hpp"
#include "moe/layer/shared.hpp"
#include "moe/loaders/parts.hpp"
#include "moe/router/gate.hpp"
#include "moe/router/topk.hpp"

namespace moe::hf {

using io::SafetensorsFile;

/// Mixtral: softmax top-k router, SiLU-GLU experts (w1 = gate, w3 = up, w2 = down).
template <WeightPolicy W = float>
using MixtralMoE = MoELayer<TopKRouter<SoftmaxScores>, GluExperts<Silu, W>>;
/// Switch Transformer: top-1 with capacity, ReLU MLP experts without bias.
template <WeightPolicy W = float>
using SwitchMoE = MoELayer<TopKRouter<SoftmaxScores>, MlpExperts<Relu, W>>;
/// DeepSeek-V3: sigmoid group-limited router, SiLU-GLU experts, one SiLU-GLU shared MLP.
template <WeightPolicy W = float>
using DeepSeekV3MoE = MoELayer<TopKRouter<SigmoidScores>, GluExperts<Silu, W>, SharedExperts<GluExperts<Silu, W>>>;
/// Qwen2-MoE: softmax top-k router, SiLU-GLU experts, one gated SiLU-GLU shared expert.
template <WeightPolicy W = float>
using Qwen2MoE = MoELayer<TopKRouter<SoftmaxScores>, GluExperts<Silu, W>, SharedExperts<GluExperts<Silu, W>>>;
/// RS-MoE token MoE: softmax top-k router, GELU MLP experts with biases, always-on shared experts.
template <WeightPolicy W = float>
using RsMoeTokenMoE = MoELayer<TopKRouter<SoftmaxScores>, MlpExperts<Gelu, W>, SharedExperts<MlpExperts<Gelu, W>>>;

/// DeepSeek-V3 routing configuration (config.json: num_experts_per_tok, n_group, topk_group,
/// routed_scaling_factor, norm_topk_prob). Defaults are DeepSeek-V3's.
struct DeepSeekV3Config {
    index_t k = 8;
    index_t n_group = 8;
    index_t topk_group = 4;
    float routed_scaling_factor = 2.5f;
    bool norm_topk_prob = true;
};

/// Mixtral's MixtralSparseMoeBlock under `prefix` (e.g. "model.layers.0.block_sparse_moe."):
/// gate.weight [E, d]; experts.{i}.w1.weight [F, d] (gate), w3.weight [F, d] (up),
/// w2.weight [d, F] (down). Softmax (fp32) -> top-k -> renormalised.
template <WeightPolicy W = float>
MixtralMoE<W> load_mixtral_block(const SafetensorsFile& file, std::string prefix, index_t k = 2) {
    prefix = io::module_prefix(std::move(prefix));
    const std::string stem = prefix + "experts.";
    const index_t E = io::require_indexed(file, stem, stem + "0.w1.weight");
    const index_t d = io::matrix(file, prefix + "gate.weight").dim(1);
    Gate g = loaders::gate(file, prefix + "gate.weight", E, d);
    return {softmax_topk_router(std::move(g), k, true),
            loaders::glu_experts<W>(file, stem, E, d, ".w1.weight", ".w3.weight", ".w2.weight")};
}

/// A Switch Transformer sparse MLP under `prefix` with Hugging Face SwitchTransformers names
/// (e.g. "encoder.block.1.layer.1.mlp."): router.classifier.weight [E, d];
/// experts.expert_{i}.wi.weight [F, d], experts.expert_{i}.wo.weight [d, F]; ReLU, no bias.
/// Top-1, weight = router probability, capacity ceil(T * capacity_factor / E) in token order
/// (0: no limit). Dropped tokens get a zero output (Mesh-TF / GShard; HF instead passes them
/// through scaled by their probability).
template <WeightPolicy W = float>
SwitchMoE<W> load_switch_mlp(const SafetensorsFile& file, std::string prefix, double capacity_factor) {
    prefix = io::module_prefix(std::move(prefix));
    const std::string stem = prefix + "experts.expert_";
    const index_t E = io::require_indexed(file, stem, stem + "0.wi.weight");
    const std::string gname = prefix + "router.classifier.weight";
    const index_t d = io::matrix(file, gname).dim(1);
    Gate g = loaders::gate(file, gname, E, d);
    const index_t F = io::linear_matrix(file, stem + "0.wi.weight").dim(0);
    return {switch_router(std::move(g), capacity_factor),
            MlpExperts<Relu, W>(loaders::linear_stack<W>(file, E, F, d, stem, ".wi.weight"),
                                loaders::linear_stack<W>(file, E, d, F, stem, ".wo.weight"))};
}

/// transformers' DeepseekV3MoE under `prefix` (e.g. "model.layers.3.mlp."): gate.weight [E, d],
/// gate.e_score_correction_bias [E]; experts.{i}.{gate,up,down}_proj.weight;
/// shared_experts.{gate,up,down}_proj.weight (one MLP of width moe_intermediate * n_shared).
/// Sigmoid scores, bias for the choice only, n_group groups scored by their two best biased
/// scores, topk_group kept, the others' experts scored 0.0 (as transformers masks), top-k,
/// weights = unbiased scores / (sum + 1e-20) if norm_topk_prob, times routed_scaling_factor.
template <WeightPolicy W = float>
DeepSeekV3MoE<W> load_deepseek_v3_moe(const SafetensorsFile& file, std::string prefix,
                                      const DeepSeekV3Config& config = {}) {
    prefix = io::module_prefix(std::move(prefix));
    const std::string stem = prefix + "experts.";
    const index_t E = io::require_indexed(file, stem, stem + "0.gate_proj.weight");
    const index_t d = io::matrix(file, prefix + "gate.weight").dim(1);
    Gate g = loaders::gate(file, prefix + "gate.weight", E, d);
    TopKOptions o;
    o.k = config.k;
    o.renormalize = config.norm_topk_prob;
    o.scale = config.routed_scaling_factor;
    o.renorm_eps = 1e-20f;         // topk_weights.sum(-1, keepdim=True) + 1e-20
    o.group_mask_value = 0.0f;     // scores_for_choice.masked_fill(~score_mask, 0.0)
    o.selection_bias = io::floats(file, prefix + "gate.e_score_correction_bias", {E});
    o.groups = config.n_group;
    o.topk_groups = config.topk_group;
    o.group_score = GroupScore::top2_sum;
    return {TopKRouter<SigmoidScores>(std::move(g), std::move(o)),
            loaders::glu_experts<W>(file, stem, E, d, ".gate_proj.weight", ".up_proj.weight", ".down_proj.weight"),
            SharedExperts<GluExperts<Silu, W>>(loaders::glu_single<W>(file, prefix + "shared_experts.", d))};
}

/// transformers' Qwen2MoeSparseMoeBlock under `prefix` (e.g. "model.layers.0.mlp."):
/// gate.weight [E, d]; experts.{i}.{gate,up,down}_proj.weight; shared_expert.{gate,up,down}_proj.weight;
/// shared_expert_gate.weight [1, d]. Softmax (fp32) -> top-k (renormalised iff norm_topk_prob,
/// false for Qwen1.5-MoE / Qwen2-MoE); y = routed + sigmoid(x . g) * shared_expert(x).
template <WeightPolicy W = float>
Qwen2MoE<W> load_qwen2_moe(const SafetensorsFile& file, std::string prefix, index_t k = 4,
                           bool norm_topk_prob = false) {
    prefix = io::module_prefix(std::move(prefix));
    const std::string stem = prefix + "experts.";
    const index_t E = io::require_indexed(file, stem, stem + "0.gate_proj.weight");
    const index_t d = io::matrix(file, prefix + "gate.weight").dim(1);
    Gate g = loaders::gate(file, prefix + "gate.weight", E, d);
    std::vector<float> sg = io::floats(file, prefix + "shared_expert_gate.weight", {1, d});
    return {softmax_topk_router(std::move(g), k, norm_topk_prob),
            loaders::glu_experts<W>(file, stem, E, d, ".gate_proj.weight", ".up_proj.weight", ".down_proj.weight"),
            SharedExperts<GluExperts<Silu, W>>(loaders::glu_single<W>(file, prefix + "shared_expert.", d),
                                               std::move(sg))};
}

/// RS-MoE's token MoE under `prefix` (names of tools/reference/rs_moe_token.py):
/// gate.weight [E, d] (+ gate.bias [E] if present); experts.{i}.fc1.{weight,bias} [F, d], [F];
/// experts.{i}.fc2.{weight,bias} [d, F], [d]; shared_experts.{j}.fc1/fc2 likewise (at least one).
/// Softmax (fp32) -> top-k -> renormalised; GELU (erf); y = routed + sum of the shared experts.
template <WeightPolicy W = float>
RsMoeTokenMoE<W> load_rs_moe_token(const SafetensorsFile& file, std::string prefix, index_t k = 2) {
    prefix = io::module_prefix(std::move(prefix));
    const std::string stem = prefix + "experts.", sstem = prefix + "shared_experts.";
    const index_t E = io::require_indexed(file, stem, stem + "0.fc1.weight");
    const index_t S = io::require_indexed(file, sstem, sstem + "0.fc1.weight");
    const std::string gname = prefix + "gate.weight", bname = prefix + "gate.bias";
    const index_t d = io::matrix(file, gname).dim(1);
    Gate g = loaders::gate(file, gname, E, d, file.contains(bname) ? &bname : nullptr);
    return {softmax_topk_router(std::move(g), k, true), loaders::gelu_mlp_experts<W>(file, stem, E, d),
            SharedExperts<MlpExperts<Gelu, W>>(loaders::gelu_mlp_experts<W>(file, sstem, S, d))};
}

}  // namespace moe::hf
