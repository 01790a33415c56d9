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

/// 4 x 4 transpose of 128-bit blocks: x[i] block j <-> x[j] block i.
inline void transpose_blocks4(__m512* x) noexcept {
    const __m512 u0 = _mm512_shuffle_f32x4(x[0], x[1], 0x44), u1 = _mm512_shuffle_f32x4(x[0], x[1], 0xee);
    const __m512 u2 = _mm512_shuffle_f32x4(x[2], x[3], 0x44), u3 = _mm512_shuffle_f32x4(x[2], x[3], 0xee);
    x[0] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    x[1] = _mm512_shuffle_f32x4(u0, u2, 0xdd);
    x[2] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    x[3] = _mm512_shuffle_f32x4(u1, u3, 0xdd);
}

/// 8 x 16 -> 16 x 8: cols[j] lane t holds element (t, j); afterwards rows[q] holds rows 2q and
/// 2q + 1 (8 elements each), i.e. the 16 x 8 matrix row-major. 24 shuffles (a square 16 x 16
/// transpose takes 64): 32-bit and 64-bit unpacks, then 4 x 4 transposes of 128-bit blocks.
template <class A>
inline void transpose_8x16(const xsimd::batch<float, A>* cols, xsimd::batch<float, A>* rows,
                           xsimd::avx512f) noexcept {
    __m512 a[4], b[4], c[8];
    for (int i = 0; i < 4; ++i) {
        a[i] = _mm512_unpacklo_ps(cols[2 * i], cols[2 * i + 1]);  // (t, 2i), (t, 2i+1) for t = 4l, 4l+1
        b[i] = _mm512_unpackhi_ps(cols[2 * i], cols[2 * i + 1]);  // the same for t = 4l+2, 4l+3
    }
    const auto lo = [](__m512 x, __m512 y) {
        return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(x), _mm512_castps_pd(y)));
    };
    const auto hi = [](__m512 x, __m512 y) {
        return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(x), _mm512_castps_pd(y)));
    };
    // c[4h + m]: 128-bit block l holds row 4l + 2h + (m >> 1), columns 4 (m & 1) .. 4 (m & 1) + 3
    c[0] = lo(a[0], a[1]); c[2] = hi(a[0], a[1]); c[1] = lo(a[2], a[3]); c[3] = hi(a[2], a[3]);
    c[4] = lo(b[0], b[1]); c[6] = hi(b[0], b[1]); c[5] = lo(b[2], b[3]); c[7] = hi(b[2], b[3]);
    transpose_blocks4(c);
    transpose_blocks4(c + 4);
    for (int l = 0; l < 4; ++l) {
        rows[2 * l] = c[l];
        rows[2 * l + 1] = c[4 + l];
    }
}

/// The inverse of transpose_8x16: rows[q] holds rows 2q and 2q + 1 of a 16 x 8 matrix;
/// afterwards cols[j] lane t = element (t, j).
template <class A>
inline void transpose_16x8(const xsimd::batch<float, A>* rows, xsimd::batch<float, A>* cols,
                           xsimd::avx512f) noexcept {
    __m512 c[8], a[4], b[4];
    for (int q = 0; q < 8; ++q) c[(q & 1) * 4 + (q >> 1)] = rows[q];
    transpose_blocks4(c);
    transpose_blocks4(c + 4);
    const auto lo = [](__m512 x, __m512 y) {
        return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(x), _mm512_castps_pd(y)));
    };
    const auto hi = [](__m512 x, __m512 y) {
        return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(x), _mm512_castps_pd(y)));
    };
    a[0] = lo(c[0], c[2]); a[1] = hi(c[0], c[2]); a[2] = lo(c[1], c[3]); a[3] = hi(c[1], c[3]);
    b[0] = lo(c[4], c[6]); b[1] = hi(c[4], c[6]); b[2] = lo(c[5], c[7]); b[3] = hi(c[5], c[7]);
    for (int i = 0; i < 4; ++i) {
        cols[2 * i] = _mm512_shuffle_ps(a[i], b[i], 0x88);
        cols[2 * i + 1] = _mm512_shuffle_ps(a[i], b[i], 0xdd);
    }
}

/// Loads 16 rows of 8 floats (row r at p + r * stride) into cols[j] (lane t = element (t, j)).
template <class A>
inline void load_transpose_16x8(const float* p, std::ptrdiff_t stride, xsimd::batch<float, A>* cols,
                                xsimd::avx512f) noexcept {
    xsimd::batch<float, A> rows[8];
    for (int q = 0; q < 8; ++q) {
        const float* r = p + 2 * q * stride;
        rows[q] = stride == 8 ? _mm512_loadu_ps(r)
                              : _mm512_castpd_ps(_mm512_insertf64x4(
                                    _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(r))),
                                    _mm256_castps_pd(_mm256_loadu_ps(r + stride)), 1));
    }
    transpose_16x8<A>(rows, cols, xsimd::avx512f{});
}

/// Picks 8 of the 64 floats of each of 16 rows (row r at p + r * stride): ids[q] holds the 8
/// column indices of rows 2q and 2q + 1 (as transpose_8x16 leaves them, int bits in float
/// lanes); vals[q] gets the picked values in the same places. Two 32-entry permutes and a blend
/// per row instead of gathers (gathers cost about 4x as much on Zen 4).
template <class A>
inline void pick_64x8(const float* p, std::ptrdiff_t stride, const xsimd::batch<float, A>* ids,
                      xsimd::batch<float, A>* vals, xsimd::avx512f) noexcept {
    for (int q = 0; q < 8; ++q) {
        const __m512i id = _mm512_castps_si512(ids[q]);
        const __mmask16 upper = _mm512_test_epi32_mask(id, _mm512_set1_epi32(32));  // column >= 32
        __m512 v[2];
        for (int h = 0; h < 2; ++h) {
            const float* r = p + (2 * q + h) * stride;
            const __m512 lo = _mm512_permutex2var_ps(_mm512_loadu_ps(r), id, _mm512_loadu_ps(r + 16));
            const __m512 hi = _mm512_permutex2var_ps(_mm512_loadu_ps(r + 32), id, _mm512_loadu_ps(r + 48));
            v[h] = _mm512_mask_blend_ps(upper, lo, hi);
        }
        vals[q] = _mm512_mask_blend_ps(0xff00, v[0], v[1]);  // row 2q in lanes 0-7, 2q + 1 in 8-15
    }
}

/// 2 x 16 -> 16 x 2: cols[j] lane t = element (t, j); rows[0..1] = the 16 x 2 matrix row-major.
template <class A>
inline void transpose_2x16(const xsimd::batch<float, A>* cols, xsimd::batch<float, A>* rows,
                           xsimd::avx512f) noexcept {
    const __m512 lo = _mm512_unpacklo_ps(cols[0], cols[1]), hi = _mm512_unpackhi_ps(cols[0], cols[1]);
    rows[0] = _mm512_permutex2var_ps(lo, _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23), hi);
    rows[1] = _mm512_permutex2var_ps(lo, _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31), hi);
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

/// The 16-word vectors of a row of 32-bit words (words [0, n) from p, p 4-byte aligned), one
/// after the other, read with 64-byte aligned loads only: vector i is two-source-permuted from
/// aligned blocks i and i + 1 (one load and one vpermt2d per vector, also when p is aligned: a
/// branch on that in next() kept the reader out of registers and cost more than the permute). A row that starts off a
/// 64-byte boundary (safetensors aligns tensors to 8 bytes) otherwise makes every 64-byte load a
/// cache-line split, which on Zen 4 cost decoding's 3-row products about 1.5x. Only bytes of the
/// row are read: the blocks at its two ends are loaded under a mask. next() must not be asked for
/// a vector past words [0, n).
class AlignedWords16 {
public:
    AlignedWords16(const std::uint32_t* p, std::ptrdiff_t n) noexcept
        : shift_(static_cast<int>((reinterpret_cast<std::uintptr_t>(p) / 4) % 16)), base_(p - shift_), n_(n),
          idx_(_mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                _mm512_set1_epi32(shift_))) {
        lo_ = block(0);
    }
    /// The next vector: words [16 i, 16 i + 16) for the i-th call.
    MOE_ALWAYS_INLINE __m512i next() noexcept {
        ++block_;
        const __m512i hi = block(block_);
        const __m512i v = _mm512_permutex2var_epi32(lo_, idx_, hi);
        lo_ = hi;
        return v;
    }

private:
    // Aligned block b: row words [16 b - shift, 16 b + 16 - shift), those outside [0, n) masked.
    MOE_ALWAYS_INLINE __m512i block(std::ptrdiff_t b) const noexcept {
        const std::ptrdiff_t first = 16 * b - shift_;
        if (first >= 0 && first + 16 <= n_) return _mm512_load_si512(base_ + 16 * b);
        std::uint32_t m = 0xffffu;
        if (first < 0) m &= 0xffffu << static_cast<unsigned>(-first);
        if (first + 16 > n_) m &= n_ - first <= 0 ? 0u : (1u << static_cast<unsigned>(n_ - first)) - 1u;
        return _mm512_maskz_load_epi32(static_cast<__mmask16>(m), base_ + 16 * b);
    }

    int shift_;
    const std::uint32_t* base_;
    std::ptrdiff_t n_;
    __m512i idx_;
    __m512i lo_ = _mm512_setzero_si512();
    std::ptrdiff_t block_ = 0;
};

}  // namespace moe::cpu::arch
#endif

MOE_SIMD_DIAGNOSTICS_POP
