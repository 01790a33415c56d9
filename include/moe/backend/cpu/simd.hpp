// moe/backend/cpu/simd.hpp - instruction-set selection for the CPU kernels.
//
// The instruction set is chosen at compile time from the target flags (-mavx2 -mfma,
// -mavx512f ..., or -march=native), as xsimd does: `simd_arch` is the best one enabled.
// Kernels are written once against xsimd batches; the few steps xsimd does not offer
// (register transposes, a fused multiply-add on AVX-512) have one overload per instruction
// set in moe/backend/cpu/arch/, with a generic fallback. Defining MOE_NO_SIMD, or compiling for a target
// xsimd does not know, selects the scalar code paths.
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#if !defined(MOE_NO_SIMD)
#include <xsimd/xsimd.hpp>
#endif

#if defined(__GNUC__) || defined(__clang__)
/// Forces inlining of the small helpers that keep SIMD state in registers.
#define MOE_ALWAYS_INLINE inline __attribute__((always_inline))
/// Inlines every call inside a hot kernel (arrays of registers passed to helpers, xsimd::exp)
/// that the compiler would otherwise leave out of line, making the arrays go through memory.
#define MOE_FLATTEN __attribute__((flatten))
/// Keeps a function out of line (inline linkage), e.g. so that a flattened caller stays small.
#define MOE_NOINLINE inline __attribute__((noinline))
#else
#define MOE_ALWAYS_INLINE inline
#define MOE_FLATTEN
#define MOE_NOINLINE inline
#endif

namespace moe::cpu {

#if !defined(MOE_NO_SIMD)
/// The instruction set the kernels are compiled for.
using simd_arch = xsimd::default_arch;
inline constexpr bool kHasSimd = !std::is_same_v<simd_arch, xsimd::unavailable>;
#else
struct no_simd {};
using simd_arch = no_simd;
inline constexpr bool kHasSimd = false;
#endif

/// Scalar twin of the kernels' SIMD multiply-add (arch::fmadd): fused on an FMA target (and in
/// scalar-only builds), a multiply then an add where the SIMD lanes do the same, so a scalar
/// tail of a kernel gives the bits its SIMD lanes would.
MOE_ALWAYS_INLINE float madd(float a, float b, float c) noexcept {
#if defined(__FMA__) || defined(MOE_NO_SIMD)
    return std::fma(a, b, c);
#else
    if constexpr (kHasSimd) return a * b + c;
    else return std::fma(a, b, c);
#endif
}

namespace detail {
template <class F, int... I>
MOE_ALWAYS_INLINE void static_for_impl(F& f, std::integer_sequence<int, I...>) {
    (f(std::integral_constant<int, I>{}), ...);
}
}  // namespace detail

/// Calls f(std::integral_constant<int, I>{}) for I = 0 .. N-1, unrolled at compile time, so that
/// arrays of SIMD registers indexed by I stay in registers.
template <int N, class F>
MOE_ALWAYS_INLINE void static_for(F&& f) {
    detail::static_for_impl(f, std::make_integer_sequence<int, N>{});
}

/// Name of the compiled instruction set ("avx512bw", "fma3+avx2", ..., or "scalar").
inline const char* simd_name() noexcept {
#if !defined(MOE_NO_SIMD)
    if constexpr (kHasSimd) return simd_arch::name();
#endif
    return "scalar";
}

}  // namespace moe::cpu

MOE_SIMD_DIAGNOSTICS_POP
