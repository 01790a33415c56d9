// moe/backend/cpu/arch/avx512.hpp - AVX-512F overloads (16 lanes).
//
// Compiled whenever the target enables AVX-512F (-march=native on an AVX-512 CPU, or the
// avx512-compile preset). The test suite exercises them on an AVX-512 host (the development
// machine since 2026-12-03; before that, an AVX2-only one compiled them without running them).
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include "moe/backend/cpu/arch/generic.hpp"

#if !defined(MOE_NO_SIMD) && defined(__AVX512F__)
#include <immintrin.h>

namespace moe::cpu::arch {

/// 16 x 16 transpose: unpacks, 64-bit unpacks (4 x 4 blocks inside each 128-bit lane), then two
/// rounds of 128-bit lane exchanges.
template <class A>
inline void transpose_square(xsimd::batch<float, A>* rows, xsimd::avx512f) noexcept {
    __m512 t[16], r[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(rows[i], rows[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(rows[i], rows[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    for (int i = 0; i < 4; ++i) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; ++i) {
        rows[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        rows[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
        rows[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
        rows[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

template <class A>
inline std::uint32_t movemask(const xsimd::batch_bool<float, A>& m, xsimd::avx512f) noexcept {
    return static_cast<std::uint32_t>(static_cast<__mmask16>(m));
}

template <class A>
inline xsimd::batch<std::int32_t, A> select_by_sign(const xsimd::batch<float, A>& x,
                                                    const xsimd::batch<std::int32_t, A>& if_neg,
                                                    const xsimd::batch<std::int32_t, A>& if_pos,
                                                    xsimd::avx512f) noexcept {
    const __mmask16 neg = _mm512_cmplt_epi32_mask(_mm512_castps_si512(x), _mm512_setzero_si512());
    return _mm512_mask_blend_epi32(neg, if_pos, if_neg);
}

template <class A>
inline xsimd::batch<float, A> gather(const float* base, const xsimd::batch<std::int32_t, A>& idx,
                                     xsimd::avx512f) noexcept {
    return _mm512_i32gather_ps(idx, base, 4);
}

/// Fused: xsimd 8.1 has no AVX-512 fma and falls back to x * y + z, which GCC contracts into
/// one instruction (-ffp-contract=fast) but clang does not (two roundings, two instructions).
template <class A>
inline xsimd::batch<float, A> fmadd(const xsimd::batch<float, A>& x, const xsimd::batch<float, A>& y,
                                    const xsimd::batch<float, A>& z, xsimd::avx512f) noexcept {
    return _mm512_fmadd_ps(x, y, z);
}

template <class A>
inline xsimd::batch<float, A> load_bf16(const std::uint16_t* p, xsimd::avx512f) noexcept {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

}  // namespace moe::cpu::arch
#endif

MOE_SIMD_DIAGNOSTICS_POP
