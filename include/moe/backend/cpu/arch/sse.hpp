// moe/backend/cpu/arch/sse.hpp - SSE2 / SSE4.1 overloads (4 lanes).
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include "moe/backend/cpu/arch/generic.hpp"

#if !defined(MOE_NO_SIMD) && defined(__SSE2__)
#include <immintrin.h>

namespace moe::cpu::arch {

template <class A>
inline void transpose_square(xsimd::batch<float, A>* rows, xsimd::sse2) noexcept {
    __m128 r0 = rows[0], r1 = rows[1], r2 = rows[2], r3 = rows[3];
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    rows[0] = r0;
    rows[1] = r1;
    rows[2] = r2;
    rows[3] = r3;
}

template <class A>
inline std::uint32_t movemask(const xsimd::batch_bool<float, A>& m, xsimd::sse2) noexcept {
    return static_cast<std::uint32_t>(_mm_movemask_ps(m));
}

#if defined(__SSE4_1__)
template <class A>
inline xsimd::batch<std::int32_t, A> select_by_sign(const xsimd::batch<float, A>& x,
                                                    const xsimd::batch<std::int32_t, A>& if_neg,
                                                    const xsimd::batch<std::int32_t, A>& if_pos,
                                                    xsimd::sse4_1) noexcept {
    return _mm_castps_si128(_mm_blendv_ps(_mm_castsi128_ps(if_pos), _mm_castsi128_ps(if_neg), x));
}
#endif

#if defined(__SSE4_1__)
template <class A>
inline xsimd::batch<float, A> load_bf16(const std::uint16_t* p, xsimd::sse4_1) noexcept {
    const __m128i h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(h), 16));
}
#endif

}  // namespace moe::cpu::arch
#endif

MOE_SIMD_DIAGNOSTICS_POP
