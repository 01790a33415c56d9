// moe/backend/cpu/gemm_int8.hpp - int8 weights: the symmetric quantiser and the GEMMs of the
// int8 policies (moe/core/precision.hpp: int8_dot, int8_weight_only).
//
// The format (docs/scaling.md, "The int8 format"). A weight matrix of N outputs x K inputs is held
// as q [N, K] int8 (input features last, whatever layout the float model stores) and fp32 scales
// s [N, G] (G = K / group groups of `group` consecutive inputs; G = 1, group = K: one scale per
// output channel). The weight it stands for is W[n, k] = s[n, k / group] * q[n, k]. The quantiser
// is symmetric, round to nearest even:
//
//     a = max |W[n, k]| over the group;   s = a / 127;   q = rint(W[n, k] * (127 / a))   (a = 0: s = q = 0)
//
// so |q| <= 127 (a checkpoint may hold -128; the GEMMs read it exactly).
//
// int8_dot (W8A8): each row x of the activations is quantised the same way on the fly, per token
// (sx = max|x| / 127, qx = rint(x * (127 / max|x|))), the products are summed exactly in int32,
// and then
//
//     per channel:  y[m, n] = fma(float(sum_k qx[m, k] q[n, k]), sx[m] * s[n], c[m, n])
//     grouped:      y[m, n] = fma(sx[m], sum_g float(sum_{k in g} qx[m, k] q[n, k]) * s[n, g], c[m, n])
//
// where c is the bias (or 0; or the output plus the bias when accumulating), with one explicit
// fused multiply-add (std::fma), so the bits do not depend on the compiler's contraction
// flags. The per-channel sum is exact, so every kernel gives
// the same bits; the grouped fp32 sum over groups runs in a kernel-specific order (not bit-equal
// between kernels: within a few ulp). A row holding NaN or infinity gives NaN outputs.
// Kernels (policy tags, as the bf16 GEMM's):
//   Int8VnniKernel    AVX-512 VNNI (vpdpbusd, 64 products per instruction; Zen 4/5, Ice Lake and
//                     later): unsigned x signed bytes, so the activations are stored offset by 128
//                     (qx + 128) and 128 * sum_k q[n, k] is subtracted (exactly, in int32);
//   Int8Avx2Kernel    AVX2 (Zen 3, Haswell and later): vpmaddubsw on |q| and qx * sign(q) (no
//                     offset; no int16 saturation since |qx| <= 127), vpmaddwd to int32;
//   Int8ScalarKernel  anywhere (portable builds).
// The weights are read where they lie, row by row (no packing): 4 output rows at a time against
// up to 4 activation rows, 64 (VNNI) or 32 (AVX2) inputs per step, one horizontal sum per output
// at the end.
//
// int8_weight_only: fp32 activations times the weights widened back to fp32 (W = s * float(q),
// exactly as PyTorch's q.float() * s), block by block of 64 outputs into the workspace, then the
// fp32 GEMM of moe/backend/cpu/gemm.hpp: the fp32 GEMM's arithmetic on the dequantised matrix, at a
// quarter of its weight bytes.
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "moe/backend/cpu/gemm.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"

#if !defined(MOE_NO_SIMD) && ((defined(__AVX512VNNI__) && defined(__AVX512BW__)) || defined(__AVX2__))
#include <immintrin.h>
#endif

namespace moe::cpu {

/// Micro-kernel policies of the int8 GEMM.
struct Int8VnniKernel {  ///< vpdpbusd (AVX-512 VNNI targets only)
    static constexpr const char* name = "vpdpbusd";
};
struct Int8Avx2Kernel {  ///< vpmaddubsw + vpmaddwd (AVX2 targets)
    static constexpr const char* name = "vpmaddubsw";
};
struct Int8ScalarKernel {  ///< plain integer loops (any target)
    static constexpr const char* name = "scalar";
};
#if !defined(MOE_NO_SIMD) && defined(__AVX512VNNI__) && defined(__AVX512BW__)
inline constexpr bool kHasInt8Vnni = true;
#else
inline constexpr bool kHasInt8Vnni = false;
#endif
#if !defined(MOE_NO_SIMD) && defined(__AVX2__)
inline constexpr bool kHasInt8Avx2 = true;
#else
inline constexpr bool kHasInt8Avx2 = false;
#endif
/// The micro-kernel int8_dot uses on this target.
using DefaultInt8Kernel = std::conditional_t<kHasInt8Vnni, Int8VnniKernel,
                                             std::conditional_t<kHasInt8Avx2, Int8Avx2Kernel, Int8ScalarKernel>>;

/// An int8 weight matrix as the GEMMs read it: N outputs x K inputs, q[n * ld + k], scales
/// scale[n * groups() + k / group].
struct Int8Matrix {
    const std::int8_t* q = nullptr;
    const float* scale = nullptr;
    index_t out = 0;
    index_t in = 0;
    index_t ld = 0;
    index_t group = 0;  ///< inputs per scale (== in: one scale per output channel)

    constexpr index_t groups() const noexcept { return group >= in ? 1 : in / group; }
    constexpr bool per_channel() const noexcept { return group >= in; }
    /// Output features [n0, n1) (the same storage).
    constexpr Int8Matrix outputs(index_t n0, index_t n1) const noexcept {
        return {q + n0 * ld, scale + n0 * groups(), n1 - n0, in, ld, group};
    }
    /// The weight it stands for: scale * q.
    float value(index_t n, index_t k) const noexcept {
        return scale[n * groups() + (per_channel() ? 0 : k / group)] * static_cast<float>(q[n * ld + k]);
    }
};

/// What the quantiser writes for one matrix: q [out, in] int8, scale [out, groups] fp32.
struct Int8Quantized {
    Tensor q, scale;
};

/// A per-channel int8 matrix packed for the VNNI panel kernel (PackedInt8): panel p holds outputs
/// [32p, 32p + 32) as ceil(in / 4) rows of 32 words (word j of row r: bytes 4r .. 4r + 3 of output
/// 32p + j, zero past the matrix), and corr[32p + j] = 128 * the sum of that output's weights.
struct Int8PanelsView {
    const std::uint32_t* words = nullptr;
    const std::int32_t* corr = nullptr;
    index_t out = 0, in = 0;

    static constexpr index_t kOutputs = 32;  ///< outputs per panel
    index_t panel_words() const noexcept { return (in + 3) / 4 * kOutputs; }
    /// Outputs [n0, n1), n0 a multiple of kOutputs.
    Int8PanelsView outputs(index_t n0, index_t n1) const noexcept {
        return {words + n0 / kOutputs * panel_words(), corr + n0, n1 - n0, in};
    }
};

/// Whether `group` is a valid group size for `in` inputs: 0 (one scale per output channel) or a
/// multiple of 32 that divides `in`.
constexpr bool valid_int8_group(index_t group, index_t in) noexcept {
    return group == 0 || (group > 0 && group % 32 == 0 && in % group == 0);
}

/// The group (inputs per scale) that scales of shape `s` give an int8 matrix of `out` x `in`:
/// `in` for [out] or [out, 1] (per output channel), in / G for [out, G] when that is a valid
/// group; 0 for any other shape.
inline index_t int8_group_of(const Shape& s, index_t out, index_t in) noexcept {
    if (s.rank() < 1 || s.rank() > 2 || s[0] != out) return 0;
    if (s.rank() == 1 || s[1] == 1) return in;
    const index_t g = s[1];
    return g > 0 && in % g == 0 && valid_int8_group(in / g, in) ? in / g : 0;
}

/// d [out, in] = the float matrix w stands for (Int8Matrix::value), as T (round to nearest even).
template <class T>
void dequantize_int8(const Int8Matrix& w, T* d) noexcept {
    for (index_t n = 0; n < w.out; ++n)
        for (index_t k = 0; k < w.in; ++k) d[n * w.in + k] = from_float<T>(w.value(n, k));
}

namespace detail {

/// Symmetric scale of a block whose largest magnitude is amax: (scale, 127 / amax); (0, 0) for
/// amax 0. Not finite for a non-finite amax.
inline void int8_scale(float amax, float& scale, float& inv) noexcept {
    if (amax == 0.0f) {
        scale = inv = 0.0f;
        return;
    }
    scale = amax / 127.0f;
    inv = 127.0f / amax;
}

/// rint(v * inv) clamped to [-127, 127] (inv finite).
inline std::int8_t int8_round(float v, float inv) noexcept {
    const float r = std::nearbyint(v * inv);
    return static_cast<std::int8_t>(std::clamp(r, -127.0f, 127.0f));
}

}  // namespace detail

/// Quantises an N x K float matrix (read through element(n, k)) to int8 with one scale per
/// output channel (group 0) or per `group` consecutive inputs. ConfigError for an invalid
/// group, ValueError (naming `what`, the row and the column) for a NaN or infinite weight.
template <class Element>
Int8Quantized quantize_int8(index_t out, index_t in, Element&& element, index_t group, std::string_view what) {
    check<ConfigError>(valid_int8_group(group, in), what, "int8 group size ", group, " is not 0 or a multiple of ",
                       "32 that divides the ", in, " inputs");
    const index_t G = group == 0 ? in : group, groups = in / G;
    Int8Quantized r{Tensor(DType::i8, Shape{out, in}), Tensor(DType::f32, Shape{out, groups})};
    std::int8_t* q = r.q.data<std::int8_t>();
    float* s = r.scale.data<float>();
    std::vector<float> row(static_cast<std::size_t>(in));
    for (index_t n = 0; n < out; ++n) {
        for (index_t k = 0; k < in; ++k) {
            const float v = element(n, k);
            check<ValueError>(std::isfinite(v), what, "weight [", n, ", ", k, "] is ", v,
                                ": only finite weights can be quantised");
            row[static_cast<std::size_t>(k)] = v;
        }
        for (index_t g = 0; g < groups; ++g) {
            float amax = 0.0f;
            for (index_t k = g * G; k < (g + 1) * G; ++k) amax = std::max(amax, std::fabs(row[static_cast<std::size_t>(k)]));
            float inv = 0.0f;
            detail::int8_scale(amax, s[n * groups + g], inv);
            for (index_t k = g * G; k < (g + 1) * G; ++k)
                q[n * in + k] = detail::int8_round(row[static_cast<std::size_t>(k)], inv);
        }
    }
    return r;
}

/// Bytes per quantised activation row of K inputs (padded for the kernels' full-width loads).
constexpr index_t int8_row_bytes(index_t K) noexcept { return (K + 63) / 64 * 64; }

/// Whether Kernel reads the activations offset by 128 (unsigned bytes).
template <class Kernel>
inline constexpr bool kInt8Offset = std::is_same_v<Kernel, Int8VnniKernel>;

namespace detail {

#if !defined(MOE_NO_SIMD) && defined(__AVX2__) && !(defined(__AVX512F__) && defined(__AVX512BW__))
/// x[k .. min(k + 8, K)) in the first lanes, 0 in the others (nothing read at or past x + K; k
/// may be K or more).
MOE_ALWAYS_INLINE __m256 avx2_load_first(const float* x, index_t k, index_t K) noexcept {
    if (K - k >= 8) return _mm256_loadu_ps(x + k);
    if (k >= K) return _mm256_setzero_ps();
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(x + k, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(K - k)), lane));
}
#endif

/// amax = max |x[k]| over a row; false (amax unspecified) when the row holds NaN or infinity.
inline bool row_absmax(const float* x, index_t K, float& amax) noexcept {
#if !defined(MOE_NO_SIMD) && defined(__AVX512F__) && defined(__AVX512BW__)
    __m512 mx = _mm512_setzero_ps();
    __mmask16 bad = 0;
    const __m512 big = _mm512_set1_ps(std::numeric_limits<float>::max());
    for (index_t k = 0; k < K; k += 16) {
        const __mmask16 mask = K - k >= 16 ? __mmask16(0xffff) : __mmask16((1u << (K - k)) - 1);
        const __m512 v = _mm512_abs_ps(_mm512_maskz_loadu_ps(mask, x + k));
        bad |= _mm512_cmp_ps_mask(v, big, _CMP_NLE_UQ);  // NaN or infinity
        mx = _mm512_max_ps(mx, v);
    }
    amax = _mm512_reduce_max_ps(mx);
    return bad == 0;
#elif !defined(MOE_NO_SIMD) && defined(__AVX2__)
    __m256 mx = _mm256_setzero_ps();
    int bad = 0;
    const __m256 big = _mm256_set1_ps(std::numeric_limits<float>::max());
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (index_t k = 0; k < K; k += 8) {
        const __m256 v = _mm256_and_ps(avx2_load_first(x, k, K), magnitude);
        bad |= _mm256_movemask_ps(_mm256_cmp_ps(v, big, _CMP_NLE_UQ));
        mx = _mm256_max_ps(mx, v);
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 0x55)));
    return bad == 0;
#else
    float a = 0.0f;
    bool finite = true;
    for (index_t k = 0; k < K; ++k) {
        const float v = std::fabs(x[k]);
        finite = finite && v <= std::numeric_limits<float>::max();
        a = std::max(a, v);
    }
    amax = a;
    return finite;
#endif
}

/// d[k] = byte(int8_round(x[k], inv)) ^ zero for k < K, zero up to ld (a multiple of 64).
inline void quantize_row(const float* x, index_t K, index_t ld, float inv, std::uint8_t zero,
                         std::uint8_t* d) noexcept {
#if !defined(MOE_NO_SIMD) && defined(__AVX512F__) && defined(__AVX512BW__)
    // The same operations as int8_round, 16 lanes at a time: the product, rounding in the
    // current mode (nearbyint's), the clamp, an exact conversion; masked-off lanes give 0.
    const __m512 vinv = _mm512_set1_ps(inv), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    const __m128i z = _mm_set1_epi8(static_cast<char>(zero));
    for (index_t k = 0; k < ld; k += 16) {
        const __mmask16 mask =
            K - k >= 16 ? __mmask16(0xffff) : (K > k ? __mmask16((1u << (K - k)) - 1) : __mmask16(0));
        const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + std::min(k, K)), vinv),
                                              _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
        const __m128i b = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(r, lo), hi)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + k), _mm_xor_si128(b, z));
    }
#elif !defined(MOE_NO_SIMD) && defined(__AVX2__)
    const __m256 vinv = _mm256_set1_ps(inv), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i z = _mm256_set1_epi8(static_cast<char>(zero)), order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (index_t k = 0; k < ld; k += 32) {
        __m256i i32[4];
        for (int j = 0; j < 4; ++j) {
            const __m256 r = _mm256_round_ps(_mm256_mul_ps(avx2_load_first(x, k + 8 * j, K), vinv),
                                             _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
            i32[j] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
        }
        // packs works within 128-bit lanes: bytes come out as 4-word groups of j = 0, 1, 2, 3 per
        // lane; the permutation restores input order.
        const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(i32[0], i32[1]), _mm256_packs_epi32(i32[2], i32[3]));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + k),
                            _mm256_xor_si256(_mm256_permutevar8x32_epi32(b, order), z));
    }
#else
    for (index_t k = 0; k < K; ++k)
        d[k] = static_cast<std::uint8_t>(static_cast<std::uint8_t>(int8_round(x[k], inv)) ^ zero);
    std::fill(d + K, d + ld, zero);
#endif
}

}  // namespace detail

/// Quantises the rows of A [M, K] per token: dst [M, int8_row_bytes(K)] bytes (qx, or qx + 128
/// for the VNNI kernel; the padding encodes 0) and scales[M] (max|x| / 127; NaN for a row
/// holding NaN or infinity, whose bytes are then 0).
template <class Kernel = DefaultInt8Kernel>
inline void quantize_rows_int8(ConstMatrixRef<float> A, std::uint8_t* dst, float* scales) noexcept {
    const index_t K = A.cols, ld = int8_row_bytes(K);
    const std::uint8_t zero = kInt8Offset<Kernel> ? 128 : 0;
    for (index_t m = 0; m < A.rows; ++m) {
        const float* x = A.row(m);
        std::uint8_t* d = dst + m * ld;
        float amax = 0.0f;
        if (!detail::row_absmax(x, K, amax)) {  // NaN or infinity
            scales[m] = std::numeric_limits<float>::quiet_NaN();
            std::fill(d, d + ld, zero);
            continue;
        }
        float inv = 0.0f;
        detail::int8_scale(amax, scales[m], inv);
        detail::quantize_row(x, K, ld, inv, zero, d);
    }
}

namespace detail {

// One MB x NB block: C[m0 + i, n0 + j] += the int8 product of activation rows A + i * lda
// (scales sa[i]) and weight rows n0 + j of w.
template <class Kernel, int MB, int NB>
struct Int8Block;

template <int MB, int NB>
struct Int8Block<Int8ScalarKernel, MB, NB> {
    static void run(index_t K, const std::uint8_t* A, index_t lda, const float* sa, const Int8Matrix& w, index_t n0,
                    float* C, index_t ldc) noexcept {
        const index_t ng = w.groups(), G = w.per_channel() ? K : w.group;
        for (int i = 0; i < MB; ++i) {
            const auto* a = reinterpret_cast<const std::int8_t*>(A + i * lda);
            for (int j = 0; j < NB; ++j) {
                const std::int8_t* q = w.q + (n0 + j) * w.ld;
                const float* s = w.scale + (n0 + j) * ng;
                float& c = C[i * ldc + n0 + j];
                if (w.per_channel()) {
                    std::int32_t acc = 0;
                    for (index_t k = 0; k < K; ++k) acc += static_cast<std::int32_t>(a[k]) * q[k];
                    c = std::fma(static_cast<float>(acc), sa[i] * s[0], c);
                } else {
                    float y = 0.0f;
                    for (index_t g = 0; g < ng; ++g) {
                        std::int32_t acc = 0;
                        for (index_t k = g * G; k < (g + 1) * G; ++k) acc += static_cast<std::int32_t>(a[k]) * q[k];
                        y += static_cast<float>(acc) * s[g];
                    }
                    c = std::fma(sa[i], y, c);
                }
            }
        }
    }
};

#if !defined(MOE_NO_SIMD) && defined(__AVX512VNNI__) && defined(__AVX512BW__)
/// acc += vpdpbusd(a, w), in place. GCC 12 treats the intrinsic's accumulator as a separate input
/// and copies every accumulator on every step (eight rows of two accumulators then spill to the
/// stack); one instruction in inline assembly keeps them in their registers. Clang's own
/// intrinsic already does.
MOE_ALWAYS_INLINE void dpbusd(__m512i& acc, __m512i a, __m512i w) noexcept {
#if defined(__GNUC__) && !defined(__clang__)
    asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(w));
#else
    acc = _mm512_dpbusd_epi32(acc, a, w);
#endif
}

template <int MB, int NB>
struct Int8Block<Int8VnniKernel, MB, NB> {
    static void run(index_t K, const std::uint8_t* A, index_t lda, const float* sa, const Int8Matrix& w, index_t n0,
                    float* C, index_t ldc) noexcept {
        const std::int8_t* q[NB];
        for (int j = 0; j < NB; ++j) q[j] = w.q + (n0 + j) * w.ld;
        const __m512i offset = _mm512_set1_epi8(static_cast<char>(0x80));
        if (w.per_channel()) {
            __m512i acc[MB][NB], corr[NB];
            for (int j = 0; j < NB; ++j) corr[j] = _mm512_setzero_si512();
            for (int i = 0; i < MB; ++i)
                for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_setzero_si512();
            for (index_t k = 0; k < K; k += 64) {
                const __mmask64 mask = K - k >= 64 ? ~__mmask64{0} : (__mmask64{1} << (K - k)) - 1;
                __m512i b[NB];
                for (int j = 0; j < NB; ++j) {
                    b[j] = _mm512_maskz_loadu_epi8(mask, q[j] + k);
                    dpbusd(corr[j], offset, b[j]);
                }
#pragma GCC unroll 8
                for (int i = 0; i < MB; ++i) {
                    const __m512i a = _mm512_loadu_si512(A + i * lda + k);
#pragma GCC unroll 8
                    for (int j = 0; j < NB; ++j) dpbusd(acc[i][j], a, b[j]);
                }
            }
            std::int32_t c[NB];
            for (int j = 0; j < NB; ++j) c[j] = _mm512_reduce_add_epi32(corr[j]);
            for (int i = 0; i < MB; ++i)
                for (int j = 0; j < NB; ++j) {
                    const std::int32_t s = _mm512_reduce_add_epi32(acc[i][j]) - c[j];
                    float& c = C[i * ldc + n0 + j];
                    c = std::fma(static_cast<float>(s), sa[i] * w.scale[n0 + j], c);
                }
            return;
        }
        // Grouped: each 64-input step converted to fp32 and scaled lane by lane (a group of 32
        // fills half the lanes), the offset correction 128 * sum q computed on the fly.
        const index_t ng = w.groups(), G = w.group;
        __m512 acc[MB][NB];
        for (int i = 0; i < MB; ++i)
            for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_setzero_ps();
        for (index_t k = 0; k < K; k += 64) {
            const __mmask64 mask = K - k >= 64 ? ~__mmask64{0} : (__mmask64{1} << (K - k)) - 1;
            __m512i b[NB], corr[NB];
            __m512 sv[NB];
            const index_t g0 = k / G, g1 = std::min(ng - 1, (k + 32) / G);
            for (int j = 0; j < NB; ++j) {
                b[j] = _mm512_maskz_loadu_epi8(mask, q[j] + k);
                corr[j] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, b[j]);
                const float* s = w.scale + (n0 + j) * ng;
                sv[j] = _mm512_insertf32x8(_mm512_set1_ps(s[g0]), _mm256_set1_ps(s[g1]), 1);
            }
            for (int i = 0; i < MB; ++i) {
                const __m512i a = _mm512_loadu_si512(A + i * lda + k);
                for (int j = 0; j < NB; ++j) {
                    const __m512i t = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), a, b[j]), corr[j]);
                    acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), sv[j], acc[i][j]);
                }
            }
        }
        for (int i = 0; i < MB; ++i)
            for (int j = 0; j < NB; ++j) {
                float& c = C[i * ldc + n0 + j];
                c = std::fma(sa[i], _mm512_reduce_add_ps(acc[i][j]), c);
            }
    }
};

/// Outputs per packed panel of the VNNI panel kernel (two registers of 16).
inline constexpr index_t kVnniPanel = 32;

/// 16 x 16 words: r[j] holds row j's words 0..15; on return r[t] holds word t of rows 0..15.
MOE_ALWAYS_INLINE void transpose_16x16_words(__m512i r[16]) noexcept {
    __m512i t[16];
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    __m512i u[16];  // u[4i + c], 128-bit lane L: rows 4i .. 4i + 3 of word 4L + c
    for (int i = 0; i < 4; ++i) {
        u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i + 0], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i + 0], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int c = 0; c < 4; ++c) {  // a 4 x 4 transpose of 128-bit lanes
        const __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44), v1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xEE);
        const __m512i v2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44),
                      v3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xEE);
        r[0 + c] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        r[4 + c] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
        r[8 + c] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
    }
}

/// Packs outputs [n0, n0 + nb) (nb <= 32) of a per-channel matrix for the panel kernel: dst
/// [ceil(K / 4)][32] words, word (q, j) = bytes q[n0 + j][4q .. 4q + 3] (zero past nb and K), and
/// corr[j] = 128 * sum_k q[n0 + j, k] (the activations' offset, subtracted exactly; 0 past nb).
/// 16 rows x 64 bytes at a time, by a 16 x 16 word transpose; one pass over the weights.
inline void pack_vnni_panel(const Int8Matrix& w, index_t n0, index_t nb, std::uint32_t* dst,
                            std::int32_t* corr) noexcept {
    const index_t K = w.in, Kq = (K + 3) / 4;
    const __m512i offset = _mm512_set1_epi8(static_cast<char>(0x80));
    for (index_t h = 0; h < 2; ++h) {
        // Lane j of sum: 128 * sum_k q[n0 + 16h + j, k], from the transposed words as they are
        // stored (each word's 4 bytes against 4 bytes of 128).
        __m512i sum = _mm512_setzero_si512();
        for (index_t k = 0; k < K; k += 64) {
            const __mmask64 mask = K - k >= 64 ? ~__mmask64{0} : (__mmask64{1} << (K - k)) - 1;
            __m512i r[16];
            for (index_t j = 0; j < 16; ++j) {
                const index_t n = 16 * h + j;
                r[j] = n < nb ? _mm512_maskz_loadu_epi8(mask, w.q + (n0 + n) * w.ld + k) : _mm512_setzero_si512();
            }
            transpose_16x16_words(r);
            const index_t q0 = k / 4, qn = std::min<index_t>(16, Kq - q0);
            for (index_t t = 0; t < qn; ++t) {
                _mm512_storeu_si512(dst + (q0 + t) * kVnniPanel + 16 * h, r[t]);
                dpbusd(sum, offset, r[t]);
            }
        }
        _mm512_storeu_si512(corr + 16 * h, sum);
    }
}

/// MR rows of offset activations (4 bytes broadcast per step) against one packed panel of 32
/// outputs: exact int32 sums in 2 x MR registers, then C = fma(float(sum - corr), sa * s, C)
/// lane by lane (the per-channel definition, the same bits as the row kernels).
template <int MR>
MOE_ALWAYS_INLINE void vnni_panel_store(const __m512i (&acc)[MR], index_t n, index_t nb, const float* sa,
                                        const std::int32_t* corr, const float* scale, float* C, index_t ldc) noexcept {
    const __mmask16 mask = nb - n >= 16 ? __mmask16(0xffff) : __mmask16((1u << (nb - n)) - 1);
    const __m512i cv = _mm512_maskz_loadu_epi32(mask, corr + n);
    const __m512 sv = _mm512_maskz_loadu_ps(mask, scale + n);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
        float* c = C + i * ldc + n;
        const __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i], cv)),
                                         _mm512_mul_ps(_mm512_set1_ps(sa[i]), sv), _mm512_maskz_loadu_ps(mask, c));
        _mm512_mask_storeu_ps(c, mask, y);
    }
}

/// MR rows of offset activations (4 bytes broadcast per step) against one packed panel of 32
/// outputs: exact int32 sums in 2 x MR registers, then C = fma(float(sum - corr), sa * s, C)
/// lane by lane (the per-channel definition, the same bits as the row kernels). The two halves'
/// accumulators are separate arrays, indexed only by constants once unrolled, so that they stay
/// in registers (16 of them at MR = 8).
template <int MR>
inline void vnni_panel_rows(index_t K, const std::uint8_t* A, index_t lda, const float* sa, const std::uint32_t* panel,
                            const std::int32_t* corr, const float* scale, index_t nb, float* C, index_t ldc) noexcept {
    const index_t Kq = (K + 3) / 4;
    __m512i acc0[MR], acc1[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm512_setzero_si512();
    for (index_t q = 0; q < Kq; ++q) {
        const __m512i w0 = _mm512_loadu_si512(panel + q * kVnniPanel);
        const __m512i w1 = _mm512_loadu_si512(panel + q * kVnniPanel + 16);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
            std::int32_t v;
            std::memcpy(&v, A + i * lda + 4 * q, 4);
            const __m512i a = _mm512_set1_epi32(v);
            dpbusd(acc0[i], a, w0);
            dpbusd(acc1[i], a, w1);
        }
    }
    vnni_panel_store<MR>(acc0, 0, nb, sa, corr, scale, C, ldc);
    if (nb > 16) vnni_panel_store<MR>(acc1, 16, nb, sa, corr, scale, C, ldc);
}

/// Rows of the panel kernel's blocks, at most.
inline constexpr int kVnniPanelRowsMax = 8;

/// Every row against one panel, in blocks of at most kVnniPanelRowsMax rows, split evenly (M = 10:
/// 5 + 5, not 8 + 2: a block of few rows reads the panel for little work).
inline void vnni_panel_all_rows(index_t M, index_t K, const std::uint8_t* A, index_t lda, const float* sa,
                                const std::uint32_t* panel, const std::int32_t* corr, const float* scale, index_t nb,
                                float* C, index_t ldc) noexcept {
    static_assert(kVnniPanelRowsMax == 8);
    for (index_t m = 0; m < M;) {
        const index_t left = M - m, blocks = (left + kVnniPanelRowsMax - 1) / kVnniPanelRowsMax;
        const index_t mr = (left + blocks - 1) / blocks;
        const std::uint8_t* a = A + m * lda;
        float* c = C + m * ldc;
        switch (mr) {
            case 1: vnni_panel_rows<1>(K, a, lda, sa + m, panel, corr, scale, nb, c, ldc); break;
            case 2: vnni_panel_rows<2>(K, a, lda, sa + m, panel, corr, scale, nb, c, ldc); break;
            case 3: vnni_panel_rows<3>(K, a, lda, sa + m, panel, corr, scale, nb, c, ldc); break;
            case 4: vnni_panel_rows<4>(K, a, lda, sa + m, panel, corr, scale, nb, c, ldc); break;
            case 5: vnni_panel_rows<5>(K, a, lda, sa + m, panel, corr, scale, nb, c, ldc); break;
            case 6: vnni_panel_rows<6>(K, a, lda, sa + m, panel, corr, scale, nb, c, ldc); break;
            case 7: vnni_panel_rows<7>(K, a, lda, sa + m, panel, corr, scale, nb, c, ldc); break;
            default: vnni_panel_rows<8>(K, a, lda, sa + m, panel, corr, scale, nb, c, ldc); break;
        }
        m += mr;
    }
}
#endif

#if !defined(MOE_NO_SIMD) && defined(__AVX2__)
MOE_ALWAYS_INLINE std::int32_t hsum_epi32(__m256i v) noexcept {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}
MOE_ALWAYS_INLINE float hsum_ps(__m256 v) noexcept {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
}

template <int MB, int NB>
struct Int8Block<Int8Avx2Kernel, MB, NB> {
    static void run(index_t K, const std::uint8_t* A, index_t lda, const float* sa, const Int8Matrix& w, index_t n0,
                    float* C, index_t ldc) noexcept {
        const std::int8_t* q[NB];
        for (int j = 0; j < NB; ++j) q[j] = w.q + (n0 + j) * w.ld;
        const bool grouped = !w.per_channel();
        const index_t ng = w.groups(), G = grouped ? w.group : K;
        const __m256i ones = _mm256_set1_epi16(1);
        __m256i acc[MB][NB];
        __m256 facc[MB][NB];
        for (int i = 0; i < MB; ++i)
            for (int j = 0; j < NB; ++j) {
                acc[i][j] = _mm256_setzero_si256();
                facc[i][j] = _mm256_setzero_ps();
            }
        alignas(32) std::int8_t tail[NB][32];
        for (index_t k = 0; k < K; k += 32) {
            __m256i b[NB], ub[NB];
            for (int j = 0; j < NB; ++j) {
                if (K - k >= 32) {
                    b[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q[j] + k));
                } else {
                    std::memset(tail[j], 0, 32);
                    std::memcpy(tail[j], q[j] + k, static_cast<std::size_t>(K - k));
                    b[j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(tail[j]));
                }
                ub[j] = _mm256_abs_epi8(b[j]);
            }
            for (int i = 0; i < MB; ++i) {
                const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(A + i * lda + k));
                for (int j = 0; j < NB; ++j) {
                    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(ub[j], _mm256_sign_epi8(a, b[j])), ones);
                    if (grouped)
                        facc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p),
                                                     _mm256_set1_ps(w.scale[(n0 + j) * ng + k / G]), facc[i][j]);
                    else
                        acc[i][j] = _mm256_add_epi32(acc[i][j], p);
                }
            }
        }
        for (int i = 0; i < MB; ++i)
            for (int j = 0; j < NB; ++j) {
                float& c = C[i * ldc + n0 + j];
                if (grouped)
                    c = std::fma(sa[i], hsum_ps(facc[i][j]), c);
                else
                    c = std::fma(static_cast<float>(hsum_epi32(acc[i][j])), sa[i] * w.scale[n0 + j], c);
            }
    }
};
#endif

template <class Kernel>
struct Int8Tile {
    static constexpr int MB = std::is_same_v<Kernel, Int8Avx2Kernel> ? 2 : 4;
    static constexpr int NB = 4;
};

template <class Kernel, int MB, int NB>
inline void int8_rows(index_t M, index_t K, const std::uint8_t* A, index_t lda, const float* sa, const Int8Matrix& w,
                      index_t n0, float* C, index_t ldc) noexcept {
    index_t m = 0;
    for (; m + MB <= M; m += MB) Int8Block<Kernel, MB, NB>::run(K, A + m * lda, lda, sa + m, w, n0, C + m * ldc, ldc);
    if constexpr (MB > 1)
        if (m < M) int8_rows<Kernel, MB - 1, NB>(M - m, K, A + m * lda, lda, sa + m, w, n0, C + m * ldc, ldc);
}

}  // namespace detail

/// Rows from which int8_gemm packs per-channel weights into panels (VNNI; fewer rows read the
/// weights where they lie, row by row).
inline constexpr index_t kInt8PanelRows = 5;

/// Words of the panel buffer int8_gemm needs for K inputs (VNNI panels; 0 elsewhere).
constexpr std::size_t int8_panel_words(index_t K) noexcept {
    return static_cast<std::size_t>((K + 3) / 4 * 32 + 32);
}

/// C[M, N] += the int8_dot product of activations quantised by quantize_rows_int8<Kernel>
/// (A [M, int8_row_bytes(K)] bytes, row stride lda; scales sa[M]) and w. Single-threaded;
/// deterministic; per-channel results are the same bits for every kernel and path. With a
/// `panel` buffer of int8_panel_words(K) words, the VNNI kernel packs per-channel weights 32
/// outputs at a time (4-byte groups of the 32 outputs side by side) and runs every row against
/// each panel with broadcast activations (kInt8PanelRows rows or more); otherwise, and for
/// grouped scales, it reads the weights row by row. Given w's panels packed once (`packed`, a
/// PackedInt8 of w: int8_dot_packed), the VNNI kernel runs every row count against them instead,
/// with the same bits; other kernels ignore them.
template <class Kernel = DefaultInt8Kernel>
inline void int8_gemm(index_t M, const std::uint8_t* A, index_t lda, const float* sa, const Int8Matrix& w, float* C,
                      index_t ldc, std::uint32_t* panel = nullptr, const Int8PanelsView* packed = nullptr) noexcept {
    using T = detail::Int8Tile<Kernel>;
    const index_t K = w.in;
#if !defined(MOE_NO_SIMD) && defined(__AVX512VNNI__) && defined(__AVX512BW__)
    if constexpr (std::is_same_v<Kernel, Int8VnniKernel>) {
        if (packed && packed->words) {
            const index_t stride = packed->panel_words();
            for (index_t n0 = 0; n0 < w.out; n0 += detail::kVnniPanel)
                detail::vnni_panel_all_rows(M, K, A, lda, sa, packed->words + n0 / detail::kVnniPanel * stride,
                                            packed->corr + n0, w.scale + n0, std::min(detail::kVnniPanel, w.out - n0),
                                            C + n0, ldc);
            return;
        }
        if (panel && w.per_channel() && M >= kInt8PanelRows) {
            std::int32_t* corr = reinterpret_cast<std::int32_t*>(panel + (K + 3) / 4 * detail::kVnniPanel);
            for (index_t n0 = 0; n0 < w.out; n0 += detail::kVnniPanel) {
                const index_t nb = std::min(detail::kVnniPanel, w.out - n0);
                detail::pack_vnni_panel(w, n0, nb, panel, corr);
                detail::vnni_panel_all_rows(M, K, A, lda, sa, panel, corr, w.scale + n0, nb, C + n0, ldc);
            }
            return;
        }
    }
#else
    (void)panel;
    (void)packed;
#endif
    index_t n = 0;
    for (; n + T::NB <= w.out; n += T::NB) detail::int8_rows<Kernel, T::MB, T::NB>(M, K, A, lda, sa, w, n, C, ldc);
    // The last 1 .. NB - 1 outputs in one block (a switch, not a loop: GCC 12's loop analysis
    // warns of overflowing indices in a loop over them).
    static_assert(T::NB == 4);
    switch (w.out - n) {
        case 1: detail::int8_rows<Kernel, T::MB, 1>(M, K, A, lda, sa, w, n, C, ldc); break;
        case 2: detail::int8_rows<Kernel, T::MB, 2>(M, K, A, lda, sa, w, n, C, ldc); break;
        case 3: detail::int8_rows<Kernel, T::MB, 3>(M, K, A, lda, sa, w, n, C, ldc); break;
        default: break;
    }
}

/// Whether this build packs int8 panels (AVX-512 VNNI): PackedInt8 exists and int8_gemm reads
/// its panels; elsewhere the int8_dot_packed policy packs nothing.
inline constexpr bool kInt8Packs =
#if !defined(MOE_NO_SIMD) && defined(__AVX512VNNI__) && defined(__AVX512BW__)
    true;
#else
    false;
#endif

#if !defined(MOE_NO_SIMD) && defined(__AVX512VNNI__) && defined(__AVX512BW__)
/// A per-channel int8 matrix packed once into Int8PanelsView's layout (the panels int8_gemm packs
/// on every call, kept): an owned copy of about the int8 weights' size.
class PackedInt8 {
public:
    PackedInt8() = default;
    explicit PackedInt8(const Int8Matrix& w)
        : words_(DType::u32, Shape{std::max<index_t>(1, (w.out + 31) / 32 * ((w.in + 3) / 4 * 32))}),
          corr_(DType::i32, Shape{std::max<index_t>(1, (w.out + 31) / 32 * 32)}),
          out_(w.out),
          in_(w.in) {
        check<ConfigError>(w.per_channel(), "moe::cpu::PackedInt8", "only per-channel scales are packed (group ",
                           w.group, " of ", w.in, " inputs)");
        const index_t stride = (w.in + 3) / 4 * 32;
        for (index_t n0 = 0; n0 < w.out; n0 += 32)
            detail::pack_vnni_panel(w, n0, std::min<index_t>(32, w.out - n0),
                                    words_.data<std::uint32_t>() + n0 / 32 * stride, corr_.data<std::int32_t>() + n0);
    }
    Int8PanelsView view() const {
        if (out_ == 0) return {};
        return {std::as_const(words_).data<std::uint32_t>(), std::as_const(corr_).data<std::int32_t>(), out_, in_};
    }
    /// Bytes held.
    std::size_t bytes() const noexcept { return static_cast<std::size_t>(words_.nbytes() + corr_.nbytes()); }

private:
    Tensor words_, corr_;
    index_t out_ = 0, in_ = 0;
};

#endif

/// C (= or +=) the int8_dot product of A [M, K] and w (+ bias): A quantised here, then int8_gemm
/// (with w's panels when packed once).
template <class Kernel = DefaultInt8Kernel>
inline void linear_int8(ConstMatrixRef<float> A, const Int8Matrix& w, const float* bias, MatrixRef<float> C,
                        bool accumulate, GemmWorkspace& ws, const Int8PanelsView* packed = nullptr) {
    check<ShapeError>(w.in == A.cols, "moe::cpu::linear (int8)", "input has ", A.cols, " features but the weight has ",
                      w.in, " inputs (", w.out, " outputs)");
    check<ShapeError>(C.rows == A.rows && C.cols == w.out, "moe::cpu::linear (int8)", "output is [", C.rows, ", ",
                      C.cols, "], expected [", A.rows, ", ", w.out, "]");
    detail::init_output(C, bias, accumulate);
    if (A.rows == 0 || w.out == 0 || w.in == 0) return;
    const index_t ld = int8_row_bytes(A.cols);
    std::uint8_t* q = ws.int8_rows.get(static_cast<std::size_t>(A.rows * ld));
    float* sa = ws.int8_scales.get(static_cast<std::size_t>(A.rows));
    quantize_rows_int8<Kernel>(A, q, sa);
    int8_gemm<Kernel>(A.rows, q, ld, sa, w, C.data, C.stride, ws.pair_panel.get(int8_panel_words(A.cols)), packed);
}

/// Outputs dequantised per block by linear_int8_widened.
inline constexpr index_t kInt8WidenBlock = 64;

/// C (= or +=) A . (s * float(q))^T (+ bias): the int8_weight_only product. The matrix is widened
/// kInt8WidenBlock outputs at a time into ws.widened and multiplied by the fp32 GEMM (bias added
/// as linear<float> adds it).
inline void linear_int8_widened(ConstMatrixRef<float> A, const Int8Matrix& w, const float* bias, MatrixRef<float> C,
                                bool accumulate, GemmWorkspace& ws) {
    check<ShapeError>(w.in == A.cols, "moe::cpu::linear (int8 weight-only)", "input has ", A.cols,
                      " features but the weight has ", w.in, " inputs (", w.out, " outputs)");
    check<ShapeError>(C.rows == A.rows && C.cols == w.out, "moe::cpu::linear (int8 weight-only)", "output is [",
                      C.rows, ", ", C.cols, "], expected [", A.rows, ", ", w.out, "]");
    if (A.rows == 0 || w.out == 0) {
        detail::init_output(C, bias, accumulate);
        return;
    }
    const index_t K = w.in;
    float* d = ws.widened.get(static_cast<std::size_t>(kInt8WidenBlock * std::max<index_t>(K, 1)));
    for (index_t n0 = 0; n0 < w.out; n0 += kInt8WidenBlock) {
        const index_t nb = std::min(kInt8WidenBlock, w.out - n0);
        for (index_t n = 0; n < nb; ++n)
            for (index_t k = 0; k < K; ++k) d[n * K + k] = w.value(n0 + n, k);
        linear<float>(A, ConstMatrixRef<float>(d, nb, K, K), bias ? bias + n0 : nullptr,
                      MatrixRef<float>(C.data + n0, C.rows, nb, C.stride), accumulate, ws);
    }
}

}  // namespace moe::cpu

MOE_SIMD_DIAGNOSTICS_POP
