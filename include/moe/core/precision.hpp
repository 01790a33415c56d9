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
//   int8_dot                  Int8DotMath (W8A8): int8 weights with fp32 scales per output channel
//   = Weights<std::int8_t,    (or per group of 32k inputs); activations quantised per token on the
//       Int8DotMath>          fly; exact int32 dot products (AVX-512 VNNI vpdpbusd, AVX2
//                             vpmaddubsw), scaled to fp32 (moe/backend/cpu/gemm_int8.hpp).
//   int8_weight_only          the same int8 weights widened back to fp32 (scale * q) and
//   = Weights<std::int8_t>    multiplied by the fp32 GEMM: fp32 activations, a quarter of the bytes.
//   bf16_dot_packed           the same, with every weight matrix packed once at load into the
//   = Weights<bf16,           GEMM's panel layout (PackOnce) instead of block by block on every
//       Bf16DotMath,          call (PackPerCall): an owned copy the size of the weights, the
//       PackOnce>             same bits.
//   int8_dot_packed           int8_dot with every per-channel matrix packed once at load into the
//   = Weights<std::int8_t,    VNNI kernel's panels (an owned copy the size of the int8 weights;
//       Int8DotMath,          the same bits). Where the build has no AVX-512 VNNI, or for grouped
//       PackOnce>             scales, it packs nothing and runs as int8_dot.
//
// Which CPUs run which kernel for Bf16DotMath: with AVX-512 BF16 (Zen 4/5, Sapphire Rapids and
// later, Cooper Lake) the vdpbf16ps micro-kernel; elsewhere (AVX2 Zen 3, AVX-512 without BF16)
// the same pair order computed with fp32 FMAs, giving the same bits (see
// moe/backend/cpu/gemm_bf16.hpp for the one documented exception, subnormal partial sums).
#pragma once

#include <cstdint>
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

/// int8 activations (quantised per token) x int8 weights, exact int32 sums, fp32 scaling.
struct Int8DotMath {
    static constexpr const char* name = "int8-dot";
};

/// Weights read where they lie and packed for the GEMM block by block on every call (default).
struct PackPerCall {
    static constexpr const char* name = "per-call";
};
/// Weights packed once, at load, into the GEMM's panels (Bf16DotMath, Int8DotMath).
struct PackOnce {
    static constexpr const char* name = "once";
};

/// What a weight policy may store: a float WeightType, or int8 (with fp32 scales beside it).
template <class S>
concept StorageType = WeightType<S> || std::is_same_v<S, std::int8_t>;

/// A weight policy: weights stored as S, multiplied by Math, packed as Packing says.
template <StorageType S, class Math = ExactMath, class Packing = PackPerCall>
struct Weights {
    using storage = S;
    using math = Math;
    using packing = Packing;
};

/// bf16 weights multiplied by bf16 dot products (PyTorch's bf16 modules' arithmetic).
using bf16_dot = Weights<bf16, Bf16DotMath>;
/// The same, packed once at load.
using bf16_dot_packed = Weights<bf16, Bf16DotMath, PackOnce>;
/// int8 weights, int8 activations per token, int32 sums (W8A8).
using int8_dot = Weights<std::int8_t, Int8DotMath>;
/// The same, per-channel matrices packed once at load (AVX-512 VNNI builds).
using int8_dot_packed = Weights<std::int8_t, Int8DotMath, PackOnce>;
/// int8 weights widened to fp32 (weight-only quantisation).
using int8_weight_only = Weights<std::int8_t, ExactMath>;

namespace detail {
template <class W>
struct weight_policy_traits {
    using storage = W;
    using math = ExactMath;
    using packing = PackPerCall;
};
template <StorageType S, class M, class P>
struct weight_policy_traits<Weights<S, M, P>> {
    using storage = S;
    using math = M;
    using packing = P;
};
}  // namespace detail

/// The element type a policy stores its weights in (float, bf16, f16 or std::int8_t).
template <class W>
using storage_t = typename detail::weight_policy_traits<W>::storage;
/// The math a policy multiplies with (ExactMath, Bf16DotMath or Int8DotMath).
template <class W>
using math_t = typename detail::weight_policy_traits<W>::math;

/// When a policy packs its weights (PackPerCall or PackOnce).
template <class W>
using packing_t = typename detail::weight_policy_traits<W>::packing;

/// A weight policy the library can run: a WeightType (exact math), Weights<S> with ExactMath
/// packed per call (S a WeightType or int8), Bf16DotMath over bf16 storage packed per call or
/// once, or Int8DotMath over int8 storage packed per call or once.
template <class W>
concept WeightPolicy =
    StorageType<storage_t<W>> &&
    ((std::is_same_v<math_t<W>, ExactMath> && std::is_same_v<packing_t<W>, PackPerCall>) ||
     (std::is_same_v<math_t<W>, Bf16DotMath> && std::is_same_v<storage_t<W>, bf16> &&
      (std::is_same_v<packing_t<W>, PackPerCall> || std::is_same_v<packing_t<W>, PackOnce>)) ||
     (std::is_same_v<math_t<W>, Int8DotMath> && std::is_same_v<storage_t<W>, std::int8_t> &&
      (std::is_same_v<packing_t<W>, PackPerCall> || std::is_same_v<packing_t<W>, PackOnce>)));

/// A policy whose weights are int8 with scales (int8_dot, int8_weight_only).
template <class W>
concept Int8Policy = WeightPolicy<W> && std::is_same_v<storage_t<W>, std::int8_t>;

/// The policy's name for logs and benchmarks ("f32", "bf16", "f16", "bf16-dot",
/// "bf16-dot-packed", "int8-dot", "int8-dot-packed", "int8-weight-only").
template <WeightPolicy W>
constexpr const char* policy_name() noexcept {
    if constexpr (std::is_same_v<packing_t<W>, PackOnce>)
        return std::is_same_v<math_t<W>, Int8DotMath> ? "int8-dot-packed" : "bf16-dot-packed";
    else if constexpr (std::is_same_v<math_t<W>, Bf16DotMath>) return "bf16-dot";
    else if constexpr (std::is_same_v<math_t<W>, Int8DotMath>) return "int8-dot";
    else if constexpr (std::is_same_v<storage_t<W>, std::int8_t>) return "int8-weight-only";
    else if constexpr (std::is_same_v<storage_t<W>, float>) return "f32";
    else if constexpr (std::is_same_v<storage_t<W>, bf16>) return "bf16";
    else return "f16";
}

}  // namespace moe
