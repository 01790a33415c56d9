// moe/core/precision.hpp - compute policies: how a Linear multiplies its weights.
//
// Every module that holds Linear weights (experts, attention, MLPs, patch embeddings, heads) is a
// template over a weight policy W. A plain storage type is the exact policy; Weights<S, Math>
// names another one (CUTLASS-style: the math operator is a tag beside the element type):
//
//   float, bf16, f16          ExactMath: fp32 activations times the weights widened to fp32
//                             exactly, fp32 FMA accumulation. The default; PyTorch fp32 parity.
//   bf16_dot                  Bf16DotMath: bf16 weights; activations rounded to bf16 (round to
//   = Weights<bf16,           nearest even) at the GEMM input only; products summed in pairs into
//       Bf16DotMath>          fp32 as AVX-512 BF16's vdpbf16ps does, and as PyTorch's / oneDNN's
//                             bf16 Linear computes. Everything outside the GEMMs (norms,
//                             softmax, activations, residuals) stays fp32.
//
// Which CPUs run which kernel for Bf16DotMath: with AVX-512 BF16 (Zen 4/5, Sapphire Rapids and
// later, Cooper Lake) the vdpbf16ps micro-kernel; elsewhere (AVX2 Zen 3, AVX-512 without BF16)
// the same pair order computed with fp32 FMAs, giving the same bits (see
// moe/backend/cpu/gemm_bf16.hpp for the one documented exception, subnormal partial sums).
#pragma once

#include <type_traits>

#include "moe/core/dtype.hpp"

namespace moe {

/// fp32 activations x weights widened to fp32, fp32 FMA accumulation (the default).
struct ExactMath {
    static constexpr const char* name = "exact";
};
/// bf16 activations x bf16 weights, pairs of products accumulated in fp32 (vdpbf16ps).
struct Bf16DotMath {
    static constexpr const char* name = "bf16-dot";
};

/// A weight policy: weights stored as S, multiplied by Math.
template <WeightType S, class Math = ExactMath>
struct Weights {
    using storage = S;
    using math = Math;
};

/// bf16 weights multiplied by bf16 dot products (PyTorch's bf16 modules' arithmetic).
using bf16_dot = Weights<bf16, Bf16DotMath>;

namespace detail {
template <class W>
struct weight_policy_traits {
    using storage = W;
    using math = ExactMath;
};
template <WeightType S, class M>
struct weight_policy_traits<Weights<S, M>> {
    using storage = S;
    using math = M;
};
}  // namespace detail

/// The element type a policy stores its weights in (float, bf16 or f16).
template <class W>
using storage_t = typename detail::weight_policy_traits<W>::storage;
/// The math a policy multiplies with (ExactMath or Bf16DotMath).
template <class W>
using math_t = typename detail::weight_policy_traits<W>::math;

/// A weight policy the library can run: a WeightType (exact math), or Weights<S, Math> with
/// ExactMath, or Bf16DotMath over bf16 storage.
template <class W>
concept WeightPolicy =
    WeightType<storage_t<W>> && (std::is_same_v<math_t<W>, ExactMath> ||
                                 (std::is_same_v<math_t<W>, Bf16DotMath> && std::is_same_v<storage_t<W>, bf16>));

/// The policy's name for logs and benchmarks ("f32", "bf16", "f16", "bf16-dot").
template <WeightPolicy W>
constexpr const char* policy_name() noexcept {
    if constexpr (std::is_same_v<math_t<W>, Bf16DotMath>) return "bf16-dot";
    else if constexpr (std::is_same_v<storage_t<W>, float>) return "f32";
    else if constexpr (std::is_same_v<storage_t<W>, bf16>) return "bf16";
    else return "f16";
}

}  // namespace moe
