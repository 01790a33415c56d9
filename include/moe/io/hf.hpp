// moe/io/hf.hpp - MoE layers built from checkpoints by their real (Hugging Face) parameter names.
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
// file's mapping (LinearStack::from_list / Gate with file.keep_alive() as owner, so the layer
// keeps the mapping alive on its own); any other float dtype is converted once at load time
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

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moe/backend/cpu/activation.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/ffn.hpp"
#include "moe/expert/linear_stack.hpp"
#include "moe/io/safetensors.hpp"
#include "moe/layer/moe_layer.hpp"
#include "moe/layer/shared.hpp"
#include "moe/router/gate.hpp"
#include "moe/router/topk.hpp"

namespace moe::hf {

using io::SafetensorsFile;

/// Mixtral: softmax top-k router, SiLU-GLU experts (w1 = gate, w3 = up, w2 = down).
template <WeightType W = float>
using MixtralMoE = MoELayer<TopKRouter<SoftmaxScores>, GluExperts<Silu, W>>;
/// Switch Transformer: top-1 with capacity, ReLU MLP experts without bias.
template <WeightType W = float>
using SwitchMoE = MoELayer<TopKRouter<SoftmaxScores>, MlpExperts<Relu, W>>;
/// DeepSeek-V3: sigmoid group-limited router, SiLU-GLU experts, one SiLU-GLU shared MLP.
template <WeightType W = float>
using DeepSeekV3MoE = MoELayer<TopKRouter<SigmoidScores>, GluExperts<Silu, W>, SharedExperts<GluExperts<Silu, W>>>;
/// Qwen2-MoE: softmax top-k router, SiLU-GLU experts, one gated SiLU-GLU shared expert.
template <WeightType W = float>
using Qwen2MoE = MoELayer<TopKRouter<SoftmaxScores>, GluExperts<Silu, W>, SharedExperts<GluExperts<Silu, W>>>;
/// RS-MoE token MoE: softmax top-k router, GELU MLP experts with biases, always-on shared experts.
template <WeightType W = float>
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

namespace detail {

/// "a.b" -> "a.b."; "" stays "".
inline std::string module_prefix(std::string prefix) {
    if (!prefix.empty() && prefix.back() != '.') prefix += '.';
    return prefix;
}

/// 1 + the largest i such that a tensor is named stem + "<i>." + ..., or 0 when there is none.
inline index_t count_indexed(const SafetensorsFile& f, std::string_view stem) {
    const auto& tensors = f.header().tensors;
    index_t n = 0;
    for (auto it = tensors.lower_bound(stem); it != tensors.end(); ++it) {
        const std::string_view name = it->first;
        if (name.substr(0, stem.size()) != stem) break;  // sorted: past the names starting with stem
        const char* b = name.data() + stem.size();
        const char* e = name.data() + name.size();
        index_t i = 0;
        const auto [p, ec] = std::from_chars(b, e, i);
        if (ec != std::errc() || p == b || p == e || *p != '.' || i < 0) continue;
        n = std::max(n, i + 1);
    }
    return n;
}

inline bool is_float(DType t) noexcept { return t == DType::f32 || t == DType::bf16 || t == DType::f16; }

/// Tensor `name`: NotFoundError when absent, DTypeError unless F32/BF16/F16.
inline TensorView float_tensor(const SafetensorsFile& f, const std::string& name) {
    TensorView v = f.get(name);
    check<DTypeError>(is_float(v.dtype()), name, "expected a floating-point tensor (F32, BF16 or F16), found ",
                      dtype_name(v.dtype()), " in ", f.path());
    return v;
}

/// Tensor `name` of exactly `expected` shape (ShapeError with both shapes otherwise).
inline TensorView tensor(const SafetensorsFile& f, const std::string& name, const Shape& expected) {
    TensorView v = float_tensor(f, name);
    check<ShapeError>(v.shape() == expected, name, "expected shape ", expected.str(), ", found ", v.shape().str(),
                      " in ", f.path());
    return v;
}

/// A non-empty 2-D tensor [out, in] whose sizes define the others (the first expert, the gate).
inline TensorView matrix(const SafetensorsFile& f, const std::string& name) {
    TensorView v = float_tensor(f, name);
    check<ShapeError>(v.rank() == 2 && v.dim(0) > 0 && v.dim(1) > 0, name,
                      "expected a non-empty 2-D weight [out, in], found shape ", v.shape().str(), " in ", f.path());
    return v;
}

/// A float tensor of `expected` shape, as fp32 values.
inline std::vector<float> floats(const SafetensorsFile& f, const std::string& name, const Shape& expected) {
    const TensorView v = tensor(f, name, expected);
    const Tensor t = convert(v, DType::f32);
    const auto s = t.span<float>();
    return {s.begin(), s.end()};
}

/// The number of experts under stem ("<prefix>experts."); NotFoundError naming `first` if none.
inline index_t expert_count(const SafetensorsFile& f, const std::string& stem, const std::string& first) {
    const index_t n = count_indexed(f, stem);
    if (n == 0)
        throw NotFoundError(f.path(), moe::detail::cat("no tensor named '", first, "' (no expert found under '", stem,
                                                       "'; the file has ", f.size(), " tensors)"));
    return n;
}

/// The router gate `<name>` [E, d] (+ optional bias), referenced in place when fp32.
inline Gate gate(const SafetensorsFile& f, const std::string& weight_name, index_t E, index_t d,
                 const std::string* bias_name = nullptr) {
    const TensorView w = tensor(f, weight_name, {E, d});
    if (bias_name) {
        const TensorView b = tensor(f, *bias_name, {E});
        return Gate(w, &b, f.keep_alive(), weight_name);
    }
    return Gate(w, nullptr, f.keep_alive(), weight_name);
}

/// E linear maps named name(i) (each [out, in]) and, if bias(i) is non-empty, their biases [out].
template <WeightType W, class NameFn, class BiasFn>
LinearStack<W> stack(const SafetensorsFile& f, index_t E, index_t out, index_t in, NameFn name, BiasFn bias,
                     const std::string& what) {
    std::vector<TensorView> ws, bs;
    ws.reserve(static_cast<std::size_t>(E));
    for (index_t i = 0; i < E; ++i) {
        ws.push_back(tensor(f, name(i), {out, in}));
        const std::string b = bias(i);
        if (!b.empty()) bs.push_back(tensor(f, b, {out}));
    }
    return LinearStack<W>::from_list(ws, bs, f.keep_alive(), what);
}

template <WeightType W>
LinearStack<W> stack(const SafetensorsFile& f, index_t E, index_t out, index_t in,
                     const std::string& stem, const std::string& suffix) {
    return stack<W>(
        f, E, out, in, [&](index_t i) { return stem + std::to_string(i) + suffix; },
        [](index_t) { return std::string(); }, stem + "*" + suffix);
}

/// SiLU-GLU experts "<stem><i>.{gate,up,down}_proj.weight" (names given by the three suffixes).
template <WeightType W>
GluExperts<Silu, W> glu_experts(const SafetensorsFile& f, const std::string& stem, index_t E, index_t d,
                                const std::string& gate_sfx, const std::string& up_sfx, const std::string& down_sfx) {
    const index_t F = matrix(f, stem + "0" + gate_sfx).dim(0);
    return {stack<W>(f, E, F, d, stem, gate_sfx), stack<W>(f, E, F, d, stem, up_sfx),
            stack<W>(f, E, d, F, stem, down_sfx)};
}

/// One SiLU-GLU MLP "<module>{gate,up,down}_proj.weight" as a one-expert set.
template <WeightType W>
GluExperts<Silu, W> glu_single(const SafetensorsFile& f, const std::string& module, index_t d) {
    const std::string g = module + "gate_proj.weight", u = module + "up_proj.weight", dn = module + "down_proj.weight";
    const index_t F = matrix(f, g).dim(0);
    auto one = [&](const std::string& n, index_t out, index_t in) {
        const std::vector<TensorView> ws{tensor(f, n, {out, in})};
        return LinearStack<W>::from_list(ws, {}, f.keep_alive(), n);
    };
    return {one(g, F, d), one(u, F, d), one(dn, d, F)};
}

/// GELU MLP experts "<stem><i>.fc1.{weight,bias}", "<stem><i>.fc2.{weight,bias}"; the biases are
/// used when "<stem>0.fc1.bias" exists and are then required for every expert.
template <WeightType W>
MlpExperts<Gelu, W> gelu_mlp_experts(const SafetensorsFile& f, const std::string& stem, index_t E, index_t d) {
    const index_t F = matrix(f, stem + "0.fc1.weight").dim(0);
    const bool b1 = f.contains(stem + "0.fc1.bias"), b2 = f.contains(stem + "0.fc2.bias");
    auto name = [&](const char* sfx) { return [&stem, sfx](index_t i) { return stem + std::to_string(i) + sfx; }; };
    auto bias = [&](bool on, const char* sfx) {
        return [&stem, on, sfx](index_t i) { return on ? stem + std::to_string(i) + sfx : std::string(); };
    };
    return {stack<W>(f, E, F, d, name(".fc1.weight"), bias(b1, ".fc1.bias"), stem + "*.fc1"),
            stack<W>(f, E, d, F, name(".fc2.weight"), bias(b2, ".fc2.bias"), stem + "*.fc2")};
}

}  // namespace detail

/// Mixtral's MixtralSparseMoeBlock under `prefix` (e.g. "model.layers.0.block_sparse_moe."):
/// gate.weight [E, d]; experts.{i}.w1.weight [F, d] (gate), w3.weight [F, d] (up),
/// w2.weight [d, F] (down). Softmax (fp32) -> top-k -> renormalised.
template <WeightType W = float>
MixtralMoE<W> load_mixtral_block(const SafetensorsFile& file, std::string prefix, index_t k = 2) {
    prefix = detail::module_prefix(std::move(prefix));
    const std::string stem = prefix + "experts.";
    const index_t E = detail::expert_count(file, stem, stem + "0.w1.weight");
    const index_t d = detail::matrix(file, prefix + "gate.weight").dim(1);
    Gate g = detail::gate(file, prefix + "gate.weight", E, d);
    return {softmax_topk_router(std::move(g), k, true),
            detail::glu_experts<W>(file, stem, E, d, ".w1.weight", ".w3.weight", ".w2.weight")};
}

/// A Switch Transformer sparse MLP under `prefix` with Hugging Face SwitchTransformers names
/// (e.g. "encoder.block.1.layer.1.mlp."): router.classifier.weight [E, d];
/// experts.expert_{i}.wi.weight [F, d], experts.expert_{i}.wo.weight [d, F]; ReLU, no bias.
/// Top-1, weight = router probability, capacity ceil(T * capacity_factor / E) in token order
/// (0: no limit). Dropped tokens get a zero output (Mesh-TF / GShard; HF instead passes them
/// through scaled by their probability).
template <WeightType W = float>
SwitchMoE<W> load_switch_mlp(const SafetensorsFile& file, std::string prefix, double capacity_factor) {
    prefix = detail::module_prefix(std::move(prefix));
    const std::string stem = prefix + "experts.expert_";
    const index_t E = detail::expert_count(file, stem, stem + "0.wi.weight");
    const std::string gname = prefix + "router.classifier.weight";
    const index_t d = detail::matrix(file, gname).dim(1);
    Gate g = detail::gate(file, gname, E, d);
    const index_t F = detail::matrix(file, stem + "0.wi.weight").dim(0);
    return {switch_router(std::move(g), capacity_factor),
            MlpExperts<Relu, W>(detail::stack<W>(file, E, F, d, stem, ".wi.weight"),
                                detail::stack<W>(file, E, d, F, stem, ".wo.weight"))};
}

/// transformers' DeepseekV3MoE under `prefix` (e.g. "model.layers.3.mlp."): gate.weight [E, d],
/// gate.e_score_correction_bias [E]; experts.{i}.{gate,up,down}_proj.weight;
/// shared_experts.{gate,up,down}_proj.weight (one MLP of width moe_intermediate * n_shared).
/// Sigmoid scores, bias for the choice only, n_group groups scored by their two best biased
/// scores, topk_group kept, the others' experts scored 0.0 (as transformers masks), top-k,
/// weights = unbiased scores / (sum + 1e-20) if norm_topk_prob, times routed_scaling_factor.
template <WeightType W = float>
DeepSeekV3MoE<W> load_deepseek_v3_moe(const SafetensorsFile& file, std::string prefix,
                                      const DeepSeekV3Config& config = {}) {
    prefix = detail::module_prefix(std::move(prefix));
    const std::string stem = prefix + "experts.";
    const index_t E = detail::expert_count(file, stem, stem + "0.gate_proj.weight");
    const index_t d = detail::matrix(file, prefix + "gate.weight").dim(1);
    Gate g = detail::gate(file, prefix + "gate.weight", E, d);
    TopKOptions o;
    o.k = config.k;
    o.renormalize = config.norm_topk_prob;
    o.scale = config.routed_scaling_factor;
    o.renorm_eps = 1e-20f;         // topk_weights.sum(-1, keepdim=True) + 1e-20
    o.group_mask_value = 0.0f;     // scores_for_choice.masked_fill(~score_mask, 0.0)
    o.selection_bias = detail::floats(file, prefix + "gate.e_score_correction_bias", {E});
    o.groups = config.n_group;
    o.topk_groups = config.topk_group;
    o.group_score = GroupScore::top2_sum;
    return {TopKRouter<SigmoidScores>(std::move(g), std::move(o)),
            detail::glu_experts<W>(file, stem, E, d, ".gate_proj.weight", ".up_proj.weight", ".down_proj.weight"),
            SharedExperts<GluExperts<Silu, W>>(detail::glu_single<W>(file, prefix + "shared_experts.", d))};
}

/// transformers' Qwen2MoeSparseMoeBlock under `prefix` (e.g. "model.layers.0.mlp."):
/// gate.weight [E, d]; experts.{i}.{gate,up,down}_proj.weight; shared_expert.{gate,up,down}_proj.weight;
/// shared_expert_gate.weight [1, d]. Softmax (fp32) -> top-k (renormalised iff norm_topk_prob,
/// false for Qwen1.5-MoE / Qwen2-MoE); y = routed + sigmoid(x . g) * shared_expert(x).
template <WeightType W = float>
Qwen2MoE<W> load_qwen2_moe(const SafetensorsFile& file, std::string prefix, index_t k = 4,
                           bool norm_topk_prob = false) {
    prefix = detail::module_prefix(std::move(prefix));
    const std::string stem = prefix + "experts.";
    const index_t E = detail::expert_count(file, stem, stem + "0.gate_proj.weight");
    const index_t d = detail::matrix(file, prefix + "gate.weight").dim(1);
    Gate g = detail::gate(file, prefix + "gate.weight", E, d);
    std::vector<float> sg = detail::floats(file, prefix + "shared_expert_gate.weight", {1, d});
    return {softmax_topk_router(std::move(g), k, norm_topk_prob),
            detail::glu_experts<W>(file, stem, E, d, ".gate_proj.weight", ".up_proj.weight", ".down_proj.weight"),
            SharedExperts<GluExperts<Silu, W>>(detail::glu_single<W>(file, prefix + "shared_expert.", d),
                                               std::move(sg))};
}

/// RS-MoE's token MoE under `prefix` (names of tools/reference/rs_moe_token.py):
/// gate.weight [E, d] (+ gate.bias [E] if present); experts.{i}.fc1.{weight,bias} [F, d], [F];
/// experts.{i}.fc2.{weight,bias} [d, F], [d]; shared_experts.{j}.fc1/fc2 likewise (at least one).
/// Softmax (fp32) -> top-k -> renormalised; GELU (erf); y = routed + sum of the shared experts.
template <WeightType W = float>
RsMoeTokenMoE<W> load_rs_moe_token(const SafetensorsFile& file, std::string prefix, index_t k = 2) {
    prefix = detail::module_prefix(std::move(prefix));
    const std::string stem = prefix + "experts.", sstem = prefix + "shared_experts.";
    const index_t E = detail::expert_count(file, stem, stem + "0.fc1.weight");
    const index_t S = detail::expert_count(file, sstem, sstem + "0.fc1.weight");
    const std::string gname = prefix + "gate.weight", bname = prefix + "gate.bias";
    const index_t d = detail::matrix(file, gname).dim(1);
    Gate g = detail::gate(file, gname, E, d, file.contains(bname) ? &bname : nullptr);
    return {softmax_topk_router(std::move(g), k, true), detail::gelu_mlp_experts<W>(file, stem, E, d),
            SharedExperts<MlpExperts<Gelu, W>>(detail::gelu_mlp_experts<W>(file, sstem, S, d))};
}

}  // namespace moe::hf
