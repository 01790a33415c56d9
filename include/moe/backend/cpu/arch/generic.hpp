// moe/backend/cpu/arch/generic.hpp - portable fallbacks of the per-instruction-set operations.
//
// Each operation is an overload set dispatched on the xsimd architecture tag; the most derived
// overload wins (fma3<avx2> -> avx2 -> avx -> generic), so an instruction set only overrides
// what it does better. This file holds the `xsimd::generic` versions, correct for any width.
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include "moe/backend/cpu/simd.hpp"

#if !defined(MOE_NO_SIMD)
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace moe::cpu::arch {

/// rows[0..L) hold an L x L matrix (L = batch size); afterwards rows[i] holds column i.
template <class A>
inline void transpose_square(xsimd::batch<float, A>* rows, xsimd::generic) noexcept {
    constexpr std::size_t L = xsimd::batch<float, A>::size;
    alignas(64) float buf[L * L];
    for (std::size_t i = 0; i < L; ++i) rows[i].store_aligned(buf + i * L);
    alignas(64) float col[L];
    for (std::size_t i = 0; i < L; ++i) {
        for (std::size_t j = 0; j < L; ++j) col[j] = buf[j * L + i];
        rows[i] = xsimd::batch<float, A>::load_aligned(col);
    }
}

/// Bit i set when lane i of m is true.
template <class A>
inline std::uint32_t movemask(const xsimd::batch_bool<float, A>& m, xsimd::generic) noexcept {
    constexpr std::size_t L = xsimd::batch<float, A>::size;
    alignas(64) float buf[L];
    xsimd::bitwise_cast(m).store_aligned(buf);
    std::uint32_t r = 0;
    for (std::size_t i = 0; i < L; ++i) {
        std::uint32_t u;
        std::memcpy(&u, buf + i, sizeof u);
        if (u) r |= 1u << i;
    }
    return r;
}

/// Per lane: if_neg where the sign bit of x is set (including -0.0 and negative NaN), else if_pos.
template <class A>
inline xsimd::batch<std::int32_t, A> select_by_sign(const xsimd::batch<float, A>& x,
                                                    const xsimd::batch<std::int32_t, A>& if_neg,
                                                    const xsimd::batch<std::int32_t, A>& if_pos,
                                                    xsimd::generic) noexcept {
    // An arithmetic shift makes the sign a full-lane mask: no integer xsimd::select, whose
    // xsimd 8.1 AVX-512BW overload does not compile at -O0, and no xsimd::bitwise_andnot, whose
    // integer overloads in xsimd 8.1 compute ~a & b where its documentation says a & ~b (SSE2
    // builds decoded wrong expert ids here and gathered logits from outside the rows).
    using I = xsimd::batch<std::int32_t, A>;
    const I neg = xsimd::bitwise_cast<I>(x) >> 31;
    return if_pos ^ ((if_pos ^ if_neg) & neg);
}

/// out[i] = base[idx[i]].
template <class A>
inline xsimd::batch<float, A> gather(const float* base, const xsimd::batch<std::int32_t, A>& idx,
                                     xsimd::generic) noexcept {
    constexpr std::size_t L = xsimd::batch<float, A>::size;
    alignas(64) std::int32_t i[L];
    alignas(64) float v[L];
    idx.store_aligned(i);
    for (std::size_t j = 0; j < L; ++j) v[j] = base[i[j]];
    return xsimd::batch<float, A>::load_aligned(v);
}

/// x * y + z per lane: xsimd's fma (one fused instruction on FMA3 targets; a multiply and an add
/// without FMA hardware, where the scalar tails use the same two steps, see madd()).
template <class A>
inline xsimd::batch<float, A> fmadd(const xsimd::batch<float, A>& x, const xsimd::batch<float, A>& y,
                                    const xsimd::batch<float, A>& z, xsimd::generic) noexcept {
    return xsimd::fma(x, y, z);
}

/// L consecutive bf16 values widened to fp32 (exact: bf16 is the upper half of an fp32).
template <class A>
inline xsimd::batch<float, A> load_bf16(const std::uint16_t* p, xsimd::generic) noexcept {
    constexpr std::size_t L = xsimd::batch<float, A>::size;
    alignas(64) std::uint32_t u[L];
    for (std::size_t j = 0; j < L; ++j) u[j] = static_cast<std::uint32_t>(p[j]) << 16;
    return xsimd::bitwise_cast<xsimd::batch<float, A>>(xsimd::batch<std::uint32_t, A>::load_aligned(u));
}

}  // namespace moe::cpu::arch
#endif

MOE_SIMD_DIAGNOSTICS_POP
