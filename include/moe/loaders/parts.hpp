// moe/loaders/parts.hpp - the parts of a model loader: routers and expert stacks built from a
// checkpoint's tensors by name (namespace moe::loaders).
//
//   gate(file, weight_name, E, d, bias_name = nullptr)        Gate [E, d] (+ bias [E])
//   linear_stack<W>(file, E, out, in, name(i), bias(i), what) E linear maps [out, in] (+ biases [out])
//   linear_stack<W>(file, E, out, in, stem, suffix)           ... named stem + "<i>" + suffix, no bias
//   glu_experts<W>(file, stem, E, d, gate_sfx, up_sfx, down_sfx)
//                                                             SiLU-GLU experts stem + "<i>" + suffix
//   linear_stack / glu_experts / gelu_mlp_experts with a list of expert ids in place of E:
//                                                             those experts only, in that order
//                                                             (a rank's share: moe/dist/loaders.hpp)
//   glu_single<W>(file, module, d)                            one SiLU-GLU MLP
//                                                             "<module>{gate,up,down}_proj.weight"
//   gelu_mlp_experts<W>(file, stem, E, d)                     GELU MLP experts "<stem><i>.fc1/fc2.*"
//
// Tensors are read through moe/io/checkpoint.hpp (NotFoundError with suggestions, DTypeError,
// ShapeError naming the tensor). Zero copy: weights whose dtype is W, and router weights in
// fp32, are referenced in the file's mapping (the modules hold file.keep_alive()); any other
// float dtype is converted once.
#pragma once

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "moe/core/precision.hpp"
#include "moe/backend/cpu/activation.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/ffn.hpp"
#include "moe/expert/linear_stack.hpp"
#include "moe/io/checkpoint.hpp"
#include "moe/io/quantize.hpp"
#include "moe/io/safetensors.hpp"
#include "moe/router/gate.hpp"

namespace moe::loaders {

using io::SafetensorsFile;

/// The router gate `weight_name` [E, d] (+ optional bias), referenced in place when fp32.
inline Gate gate(const SafetensorsFile& f, const std::string& weight_name, index_t E, index_t d,
                 const std::string* bias_name = nullptr) {
    const TensorView w = io::tensor(f, weight_name, {E, d});
    if (bias_name) {
        const TensorView b = io::tensor(f, *bias_name, {E});
        return Gate(w, &b, f.keep_alive(), weight_name);
    }
    return Gate(w, nullptr, f.keep_alive(), weight_name);
}

/// E linear maps named name(i) (each [out, in]) and, if bias(i) is non-empty, their biases [out].
template <WeightPolicy W, class NameFn, class BiasFn>
LinearStack<W> linear_stack(const SafetensorsFile& f, index_t E, index_t out, index_t in, NameFn name, BiasFn bias,
                            const std::string& what) {
    std::vector<std::string> ws;
    std::vector<TensorView> bs;
    ws.reserve(static_cast<std::size_t>(E));
    for (index_t i = 0; i < E; ++i) {
        ws.push_back(name(i));
        (void)io::linear_matrix(f, ws.back());  // a missing weight is named before its bias
        const std::string b = bias(i);
        if (!b.empty()) bs.push_back(io::tensor(f, b, {out}));
    }
    return io::load_linears<W>(f, ws, bs, out, in, WeightLayout::out_in, what);
}

/// The ids 0 .. E-1: every expert of a checkpoint.
inline std::vector<index_t> all_experts(index_t E) {
    std::vector<index_t> ids(static_cast<std::size_t>(std::max<index_t>(E, 0)));
    std::iota(ids.begin(), ids.end(), index_t{0});
    return ids;
}

/// The linear maps stem + "<id>" + suffix for the experts `ids`, in that order, no bias.
template <WeightPolicy W>
LinearStack<W> linear_stack(const SafetensorsFile& f, std::span<const index_t> ids, index_t out, index_t in,
                            const std::string& stem, const std::string& suffix) {
    return linear_stack<W>(
        f, static_cast<index_t>(ids.size()), out, in,
        [&](index_t i) { return stem + std::to_string(ids[static_cast<std::size_t>(i)]) + suffix; },
        [](index_t) { return std::string(); }, stem + "*" + suffix);
}

template <WeightPolicy W>
LinearStack<W> linear_stack(const SafetensorsFile& f, index_t E, index_t out, index_t in,
                            const std::string& stem, const std::string& suffix) {
    return linear_stack<W>(f, std::span<const index_t>(all_experts(E)), out, in, stem, suffix);
}

/// SiLU-GLU experts "<stem><id>.{gate,up,down}_proj.weight" (names given by the three suffixes)
/// for the experts `ids` (at least one), in that order.
template <WeightPolicy W>
GluExperts<Silu, W> glu_experts(const SafetensorsFile& f, const std::string& stem, std::span<const index_t> ids,
                                index_t d, const std::string& gate_sfx, const std::string& up_sfx,
                                const std::string& down_sfx) {
    check<ConfigError>(!ids.empty(), stem + "*" + gate_sfx, "no experts to load");
    const index_t F = io::linear_matrix(f, stem + std::to_string(ids[0]) + gate_sfx).dim(0);
    return {linear_stack<W>(f, ids, F, d, stem, gate_sfx), linear_stack<W>(f, ids, F, d, stem, up_sfx),
            linear_stack<W>(f, ids, d, F, stem, down_sfx)};
}

/// The same for every expert 0 .. E-1.
template <WeightPolicy W>
GluExperts<Silu, W> glu_experts(const SafetensorsFile& f, const std::string& stem, index_t E, index_t d,
                                const std::string& gate_sfx, const std::string& up_sfx, const std::string& down_sfx) {
    return glu_experts<W>(f, stem, std::span<const index_t>(all_experts(E)), d, gate_sfx, up_sfx, down_sfx);
}

/// One SiLU-GLU MLP "<module>{gate,up,down}_proj.weight" as a one-expert set.
template <WeightPolicy W>
GluExperts<Silu, W> glu_single(const SafetensorsFile& f, const std::string& module, index_t d) {
    const std::string g = module + "gate_proj.weight", u = module + "up_proj.weight", dn = module + "down_proj.weight";
    const index_t F = io::linear_matrix(f, g).dim(0);
    auto one = [&](const std::string& n, index_t out, index_t in) {
        return io::load_linears<W>(f, std::span(&n, 1), {}, out, in, WeightLayout::out_in, n);
    };
    return {one(g, F, d), one(u, F, d), one(dn, d, F)};
}

/// GELU MLP experts "<stem><id>.fc1.{weight,bias}", "<stem><id>.fc2.{weight,bias}" for the
/// experts `ids` (at least one), in that order; the biases are used when the first one's fc1.bias
/// exists and are then required for every expert.
template <WeightPolicy W>
MlpExperts<Gelu, W> gelu_mlp_experts(const SafetensorsFile& f, const std::string& stem, std::span<const index_t> ids,
                                     index_t d) {
    check<ConfigError>(!ids.empty(), stem + "*.fc1", "no experts to load");
    const std::string first = stem + std::to_string(ids[0]);
    const index_t F = io::linear_matrix(f, first + ".fc1.weight").dim(0);
    const bool b1 = f.contains(first + ".fc1.bias"), b2 = f.contains(first + ".fc2.bias");
    auto id = [ids](index_t i) { return std::to_string(ids[static_cast<std::size_t>(i)]); };
    auto name = [&](const char* sfx) { return [&stem, id, sfx](index_t i) { return stem + id(i) + sfx; }; };
    auto bias = [&](bool on, const char* sfx) {
        return [&stem, id, on, sfx](index_t i) { return on ? stem + id(i) + sfx : std::string(); };
    };
    const auto n = static_cast<index_t>(ids.size());
    return {linear_stack<W>(f, n, F, d, name(".fc1.weight"), bias(b1, ".fc1.bias"), stem + "*.fc1"),
            linear_stack<W>(f, n, d, F, name(".fc2.weight"), bias(b2, ".fc2.bias"), stem + "*.fc2")};
}

/// The same for every expert 0 .. E-1.
template <WeightPolicy W>
MlpExperts<Gelu, W> gelu_mlp_experts(const SafetensorsFile& f, const std::string& stem, index_t E, index_t d) {
    return gelu_mlp_experts<W>(f, stem, std::span<const index_t>(all_experts(E)), d);
}

}  // namespace moe::loaders
