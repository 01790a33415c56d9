// moe/backend/cpu/arch/avx.hpp - AVX / AVX2 overloads (8 lanes).
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include "moe/backend/cpu/arch/generic.hpp"

#if !defined(MOE_NO_SIMD) && defined(__AVX__)
#include <immintrin.h>

namespace moe::cpu::arch {

/// 8 x 8 transpose: 8 unpacks, 8 shuffles, 8 128-bit lane permutes.
template <class A>
inline void transpose_square(xsimd::batch<float, A>* rows, xsimd::avx) noexcept {
    const __m256 t0 = _mm256_unpacklo_ps(rows[0], rows[1]);
    const __m256 t1 = _mm256_unpackhi_ps(rows[0], rows[1]);
    const __m256 t2 = _mm256_unpacklo_ps(rows[2], rows[3]);
    const __m256 t3 = _mm256_unpackhi_ps(rows[2], rows[3]);
    const __m256 t4 = _mm256_unpacklo_ps(rows[4], rows[5]);
    const __m256 t5 = _mm256_unpackhi_ps(rows[4], rows[5]);
    const __m256 t6 = _mm256_unpacklo_ps(rows[6], rows[7]);
    const __m256 t7 = _mm256_unpackhi_ps(rows[6], rows[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    rows[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    rows[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    rows[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    rows[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    rows[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    rows[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    rows[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    rows[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

template <class A>
inline std::uint32_t movemask(const xsimd::batch_bool<float, A>& m, xsimd::avx) noexcept {
    return static_cast<std::uint32_t>(_mm256_movemask_ps(m));
}

/// One blendv on the sign bit instead of a compare and a blend.
template <class A>
inline xsimd::batch<std::int32_t, A> select_by_sign(const xsimd::batch<float, A>& x,
                                                    const xsimd::batch<std::int32_t, A>& if_neg,
                                                    const xsimd::batch<std::int32_t, A>& if_pos,
                                                    xsimd::avx) noexcept {
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(if_pos), _mm256_castsi256_ps(if_neg), x));
}

#if defined(__AVX2__)
template <class A>
inline xsimd::batch<float, A> load_bf16(const std::uint16_t* p, xsimd::avx2) noexcept {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
#endif

#if defined(__AVX2__)
template <class A>
inline xsimd::batch<float, A> gather(const float* base, const xsimd::batch<std::int32_t, A>& idx,
                                     xsimd::avx2) noexcept {
    return _mm256_i32gather_ps(base, idx, 4);
}
#endif

}  // namespace moe::cpu::arch
#endif

MOE_SIMD_DIAGNOSTICS_POP
