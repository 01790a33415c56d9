// moe/backend/cpu/gemm_bf16.hpp - the bf16 dot-product GEMM of the Bf16DotMath policy:
//
//   C[M, N] += bf16(A)[M, K] . W^T        W: N outputs x K inputs, bf16; fp32 accumulation
//
// Operands are laid out as AVX-512 BF16's vdpbf16ps reads them. A's rows are rounded to bf16
// (nearest even, as PyTorch's .to(torch.bfloat16)) and read as 32-bit words, each a pair of
// inputs (k = 2q in the low half, 2q + 1 in the high half; an odd K is padded with a zero). W is
// packed into panels of NR outputs: panel p holds, for each input pair q, NR words
// (W[n][2q] | W[n][2q + 1] << 16), n = p * NR .. p * NR + NR - 1 (zero past N). Panels are
// packed block by block on every call (the default: weights are read where they lie) or once,
// ahead of time (PackedBf16, Linear::pack()): the GEMM reads both the same way.
//
// The sum for one output element runs per KC block of k, from zero, pair by pair:
//
//     s = s + a[2q+1] * w[2q+1];   s = s + a[2q] * w[2q]        (then C += s, per block)
//
// Each product of two bf16 values is exact in fp32, so each step rounds once (nearest even).
// Subnormal inputs count as zero (DAZ, as vcvtne2ps2bf16 and vdpbf16ps read them), applied when
// A is rounded and W packed. For 1-8 rows (decoding, beams) the same steps run in another order, the
// small-M order of moe/backend/cpu/gemm.hpp (bf16_rows_dot), reading [out, in] weights where they
// lie without packing.
// Two micro-kernels compute these steps:
//   vdpbf16ps     compiled where the target has AVX-512 BF16 (__AVX512BF16__: Zen 4/5,
//                 Sapphire Rapids, Cooper Lake): 2 instructions per pair and NR outputs;
//   fp32 FMA      everywhere else (AVX2, AVX-512 without BF16, SSE): the halves of each word
//                 widened by shifts and masks, two FMAs per pair, in the order above.
// They agree bit for bit except where a partial sum s is subnormal (|s| < 2^-126), which
// vdpbf16ps flushes to zero (FTZ) and the FMA kernel keeps. Results do not depend on the thread
// split (every output is summed in the same order whatever the blocking).
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "moe/backend/cpu/arch.hpp"
#include "moe/backend/cpu/gemm_kernel.hpp"
#include "moe/backend/cpu/simd.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"

#if !defined(MOE_NO_SIMD) && defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace moe::cpu {

/// Micro-kernel policies of the bf16 dot GEMM.
struct Bf16DotKernel {  ///< vdpbf16ps (AVX-512 BF16 targets only)
    static constexpr const char* name = "vdpbf16ps";
};
struct Bf16FmaKernel {  ///< fp32 FMAs on the widened halves (any target)
    static constexpr const char* name = "fma";
};
/// Whether this build has the vdpbf16ps micro-kernel.
#if !defined(MOE_NO_SIMD) && defined(__AVX512BF16__)
inline constexpr bool kHasBf16Dot = true;
#else
inline constexpr bool kHasBf16Dot = false;
#endif
/// The micro-kernel Bf16DotMath uses on this target.
using DefaultBf16Kernel = std::conditional_t<kHasBf16Dot, Bf16DotKernel, Bf16FmaKernel>;

/// Blocking of the bf16 GEMM (NR outputs per panel, MR rows per micro-kernel, KC inputs per block
/// (even), NC outputs per packed block).
namespace detail {
template <class A>
constexpr index_t bf16_lanes() noexcept {
#if !defined(MOE_NO_SIMD)
    if constexpr (kHasSimd) return static_cast<index_t>(xsimd::batch<float, A>::size);
#endif
    return 8;
}
}  // namespace detail

struct Bf16Blocking {
    static constexpr index_t L = detail::bf16_lanes<simd_arch>();
#if !defined(MOE_NO_SIMD)
    static constexpr index_t MR = std::is_base_of_v<xsimd::avx512f, simd_arch> ? 14 : 6;
#else
    static constexpr index_t MR = 4;
#endif
    static constexpr index_t NR = 2 * L;
    static constexpr index_t KC = 256;
    static constexpr index_t NC = 512;
};

/// fp32 -> bf16 bits for the GEMM input, as AVX-512 BF16's vcvtne2ps2bf16 converts: a subnormal
/// input becomes a signed zero (DAZ), then round to nearest even; NaN stays NaN (quieted).
constexpr std::uint16_t round_bf16_daz(float f) noexcept {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
    if ((u & 0x7f800000u) == 0) return static_cast<std::uint16_t>((u >> 16) & 0x8000u);
    return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/// A pair of bf16 with subnormal halves replaced by signed zeros.
constexpr std::uint32_t daz_pair(std::uint32_t w) noexcept {
    if ((w & 0x7f80u) == 0) w &= ~0x7fu;
    if ((w & 0x7f800000u) == 0) w &= ~0x7f0000u;
    return w;
}

#if !defined(MOE_NO_SIMD)
/// daz_pair on every lane.
template <class Arch>
MOE_ALWAYS_INLINE xsimd::batch<std::uint32_t, Arch> daz_pairs(xsimd::batch<std::uint32_t, Arch> w) noexcept {
    using U = xsimd::batch<std::uint32_t, Arch>;
    // (e - 1) >> 31 is 1 exactly when the exponent bits e are zero (e <= 0x7f800000 < 2^31), so
    // 0 - that is an all-ones mask there (no integer select: xsimd 8.1's does not compile for
    // 32-bit lanes on AVX-512BW at -O0).
    const U one(1u), zero(0u);
    const U lo = zero - (((w & U(0x7f80u)) - one) >> 31), hi = zero - (((w & U(0x7f800000u)) - one) >> 31);
    return w & ~((lo & U(0x7fu)) | (hi & U(0x7f0000u)));
}
#endif

/// Words per row of a K-input operand (pairs, rounded up).
constexpr index_t bf16_pairs(index_t K) noexcept { return (K + 1) / 2; }

/// Rounds rows of A [M, K] (row stride lda) to bf16 pairs: dst [M, bf16_pairs(K)] words
/// (vcvtne2ps2bf16 where the target has it, round_bf16_daz elsewhere: the same bits).
inline void round_rows_bf16(ConstMatrixRef<float> A, std::uint32_t* dst) noexcept {
    const index_t K = A.cols, P = bf16_pairs(K);
    for (index_t m = 0; m < A.rows; ++m) {
        const float* a = A.row(m);
        auto* d = reinterpret_cast<std::uint16_t*>(dst + m * P);
#if !defined(MOE_NO_SIMD) && defined(__AVX512BF16__)
        const index_t kv = K - K % 32;
        for (index_t k = 0; k < kv; k += 32)
            _mm512_storeu_si512(d + k, std::bit_cast<__m512i>(
                                           _mm512_cvtne2ps_pbh(_mm512_loadu_ps(a + k + 16), _mm512_loadu_ps(a + k))));
#else
        const index_t kv = 0;
#endif
        for (index_t k = kv; k < K; ++k) d[k] = round_bf16_daz(a[k]);
        if (K % 2) d[K] = 0;
    }
}

/// The packed panels of one weight matrix, as the GEMM reads them: panel p starts at
/// data + p * panel_stride and holds `pairs` rows of NR words.
struct Bf16PanelsView {
    const std::uint32_t* data = nullptr;
    index_t out = 0, in = 0, pairs = 0;

    index_t panel_stride() const noexcept { return pairs * Bf16Blocking::NR; }
    /// Outputs [n0, n1), n0 a multiple of NR.
    Bf16PanelsView outputs(index_t n0, index_t n1) const noexcept {
        return {data + n0 / Bf16Blocking::NR * panel_stride(), n1 - n0, in, pairs};
    }
};

namespace detail {

/// Packs outputs [n0, n0 + nb) x inputs [k0, k0 + kb) (k0, kb even, or kb reaching K) of W into
/// panels of NR words: panel p (outputs n0 + p * NR ..) at dst + p * rows_stride, `pairs` rows
/// of NR words (zero-padded past the matrix).
template <class Arch = simd_arch>
inline void pack_bf16(WeightMatrix<bf16> w, index_t n0, index_t nb, index_t k0, index_t kb, std::uint32_t* dst,
                      index_t panel_stride) noexcept {
    constexpr index_t NR = Bf16Blocking::NR;
    const index_t kp = bf16_pairs(kb);
    const auto* bits = reinterpret_cast<const std::uint16_t*>(w.data);
    for (index_t p = 0; p < nb; p += NR) {
        std::uint32_t* panel = dst + (p / NR) * panel_stride;
        const index_t cols = std::min(NR, nb - p);
        if (w.layout == WeightLayout::in_out) {
            // Rows k0 + 2q and k0 + 2q + 1 of the [in, out] matrix interleaved.
            for (index_t q = 0; q < kp; ++q) {
                const std::uint16_t* r0 = bits + (k0 + 2 * q) * w.ld + n0 + p;
                const bool has1 = 2 * q + 1 < kb;
                const std::uint16_t* r1 = has1 ? r0 + w.ld : r0;  // no pointer past the last row
                std::uint32_t* d = panel + q * NR;
                for (index_t j = 0; j < cols; ++j)
                    d[j] = daz_pair(static_cast<std::uint32_t>(r0[j]) |
                                    (has1 ? static_cast<std::uint32_t>(r1[j]) << 16 : 0u));
                for (index_t j = cols; j < NR; ++j) d[j] = 0;
            }
            continue;
        }
        index_t j0 = 0;
#if !defined(MOE_NO_SIMD)
        if constexpr (kHasSimd) {
            // L rows x L words (2L inputs) at a time, transposed in registers.
            using B = xsimd::batch<float, Arch>;
            using U = xsimd::batch<std::uint32_t, Arch>;
            constexpr index_t L = static_cast<index_t>(B::size);
            for (; j0 + L <= cols; j0 += L) {
                const std::uint16_t* src = bits + (n0 + p + j0) * w.ld + k0;
                index_t q = 0;
                for (; q + L <= kb / 2; q += L) {
                    B t[L];
                    static_for<L>([&](auto r) {
                        t[r] = B::load_unaligned(reinterpret_cast<const float*>(src + r * w.ld + 2 * q));
                    });
                    arch::transpose_square<Arch>(t);
                    static_for<L>([&](auto c) {
                        daz_pairs<Arch>(xsimd::bitwise_cast<U>(t[c])).store_unaligned(panel + (q + c) * NR + j0);
                    });
                }
                for (; q < kp; ++q)
                    for (index_t r = 0; r < L; ++r) {
                        const std::uint16_t* s = src + r * w.ld + 2 * q;
                        const bool has1 = 2 * q + 1 < kb;
                        panel[q * NR + j0 + r] =
                            daz_pair(static_cast<std::uint32_t>(s[0]) | (has1 ? static_cast<std::uint32_t>(s[1]) << 16 : 0u));
                    }
            }
        }
#endif
        for (index_t j = j0; j < cols; ++j) {
            const std::uint16_t* src = bits + (n0 + p + j) * w.ld + k0;
            for (index_t q = 0; q < kp; ++q) {
                const bool has1 = 2 * q + 1 < kb;
                panel[q * NR + j] = daz_pair(static_cast<std::uint32_t>(src[2 * q]) |
                                             (has1 ? static_cast<std::uint32_t>(src[2 * q + 1]) << 16 : 0u));
            }
        }
        for (index_t j = cols; j < NR; ++j)
            for (index_t q = 0; q < kp; ++q) panel[q * NR + j] = 0;
    }
}

#if !defined(MOE_NO_SIMD)
/// C[ROWS, cols] += A[ROWS, kp pairs] . Wp[kp, NR] with fp32 FMAs on the widened halves.
template <int ROWS>
MOE_ALWAYS_INLINE void bf16_micro(Bf16FmaKernel, index_t kp, const std::uint32_t* a, index_t lda,
                                  const std::uint32_t* wp, float* c, index_t ldc, index_t cols) {
    using A = simd_arch;
    using B = xsimd::batch<float, A>;
    using U = xsimd::batch<std::uint32_t, A>;
    constexpr index_t L = static_cast<index_t>(B::size);
    const U hi(0xffff0000u);
    B acc0[ROWS], acc1[ROWS];
    static_for<ROWS>([&](auto i) { acc0[i] = acc1[i] = B(0.0f); });
    for (index_t q = 0; q < kp; ++q) {
        const U u0 = U::load_unaligned(wp + q * 2 * L), u1 = U::load_unaligned(wp + q * 2 * L + L);
        const B w0e = xsimd::bitwise_cast<B>(u0 << 16), w0o = xsimd::bitwise_cast<B>(u0 & hi);
        const B w1e = xsimd::bitwise_cast<B>(u1 << 16), w1o = xsimd::bitwise_cast<B>(u1 & hi);
        static_for<ROWS>([&](auto i) {
            const std::uint32_t aw = a[i * lda + q];
            const B ae(std::bit_cast<float>(aw << 16)), ao(std::bit_cast<float>(aw & 0xffff0000u));
            acc0[i] = arch::fmadd<A>(ao, w0o, acc0[i]);
            acc1[i] = arch::fmadd<A>(ao, w1o, acc1[i]);
            acc0[i] = arch::fmadd<A>(ae, w0e, acc0[i]);
            acc1[i] = arch::fmadd<A>(ae, w1e, acc1[i]);
        });
    }
    add_tile<B, ROWS>(acc0, acc1, c, ldc, cols);
}
#else
template <int ROWS>
inline void bf16_micro(Bf16FmaKernel, index_t kp, const std::uint32_t* a, index_t lda, const std::uint32_t* wp,
                       float* c, index_t ldc, index_t cols) {
    constexpr index_t NR = Bf16Blocking::NR;
    for (int i = 0; i < ROWS; ++i)
        for (index_t j = 0; j < cols; ++j) {
            float s = 0.0f;
            for (index_t q = 0; q < kp; ++q) {
                const std::uint32_t aw = a[i * lda + q], ww = wp[q * NR + j];
                s = std::fma(std::bit_cast<float>(aw & 0xffff0000u), std::bit_cast<float>(ww & 0xffff0000u), s);
                s = std::fma(std::bit_cast<float>(aw << 16), std::bit_cast<float>(ww << 16), s);
            }
            c[i * ldc + j] += s;
        }
}
#endif

#if !defined(MOE_NO_SIMD) && defined(__AVX512BF16__)
/// C[ROWS, cols] += A[ROWS, kp pairs] . Wp[kp, 32] with vdpbf16ps.
template <int ROWS>
MOE_ALWAYS_INLINE void bf16_micro(Bf16DotKernel, index_t kp, const std::uint32_t* a, index_t lda,
                                  const std::uint32_t* wp, float* c, index_t ldc, index_t cols) {
    static_assert(Bf16Blocking::L == 16, "the vdpbf16ps kernel works on 16-lane registers");
    using B = xsimd::batch<float, simd_arch>;
    __m512 acc0[ROWS], acc1[ROWS];
    static_for<ROWS>([&](auto i) { acc0[i] = acc1[i] = _mm512_setzero_ps(); });
    for (index_t q = 0; q < kp; ++q) {
        const __m512bh w0 = std::bit_cast<__m512bh>(_mm512_loadu_si512(wp + q * 32));
        const __m512bh w1 = std::bit_cast<__m512bh>(_mm512_loadu_si512(wp + q * 32 + 16));
        static_for<ROWS>([&](auto i) {
            const __m512bh ai = std::bit_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(a[i * lda + q])));
            acc0[i] = _mm512_dpbf16_ps(acc0[i], ai, w0);
            acc1[i] = _mm512_dpbf16_ps(acc1[i], ai, w1);
        });
    }
    B b0[ROWS], b1[ROWS];
    static_for<ROWS>([&](auto i) {
        b0[i] = acc0[i];
        b1[i] = acc1[i];
    });
    add_tile<B, ROWS>(b0, b1, c, ldc, cols);
}
#endif

/// One step of the model on every lane, for the small-M kernels (moe/backend/cpu/gemm.hpp),
/// which read weight words where they lie (not packed, so not flushed yet): lane j of s takes
/// s += a_hi w_hi, then s += a_lo w_lo, of the word pairs a[j], w[j].
template <class Kernel>
struct Bf16Step;
/// The same on one lane (scalar builds): w's subnormal halves read as zero.
MOE_ALWAYS_INLINE float bf16_step(float s, std::uint32_t a, std::uint32_t w) noexcept {
    w = daz_pair(w);
    s = std::fma(std::bit_cast<float>(a & 0xffff0000u), std::bit_cast<float>(w & 0xffff0000u), s);
    return std::fma(std::bit_cast<float>(a << 16), std::bit_cast<float>(w << 16), s);
}
#if !defined(MOE_NO_SIMD)
template <>
struct Bf16Step<Bf16FmaKernel> {
    using B = xsimd::batch<float, simd_arch>;
    using U = xsimd::batch<std::uint32_t, simd_arch>;
    static MOE_ALWAYS_INLINE B run(B s, U a, U w) noexcept {
        w = daz_pairs<simd_arch>(w);
        const U hi(0xffff0000u);
        s = arch::fmadd<simd_arch>(xsimd::bitwise_cast<B>(a & hi), xsimd::bitwise_cast<B>(w & hi), s);
        return arch::fmadd<simd_arch>(xsimd::bitwise_cast<B>(a << 16), xsimd::bitwise_cast<B>(w << 16), s);
    }
};
#endif
#if !defined(MOE_NO_SIMD) && defined(__AVX512BF16__)
template <>
struct Bf16Step<Bf16DotKernel> {  // vdpbf16ps reads subnormal halves as zero itself
    using B = xsimd::batch<float, simd_arch>;
    using U = xsimd::batch<std::uint32_t, simd_arch>;
    static MOE_ALWAYS_INLINE B run(B s, U a, U w) noexcept {
        return _mm512_dpbf16_ps(s, std::bit_cast<__m512bh>(static_cast<__m512i>(a)),
                                std::bit_cast<__m512bh>(static_cast<__m512i>(w)));
    }
};
#endif

template <class Kernel, int ROWS = static_cast<int>(Bf16Blocking::MR)>
MOE_ALWAYS_INLINE void bf16_micro_rows(index_t rows, index_t kp, const std::uint32_t* a, index_t lda,
                                       const std::uint32_t* wp, float* c, index_t ldc, index_t cols) {
    if constexpr (ROWS > 0) {
        if (rows == ROWS) return bf16_micro<ROWS>(Kernel{}, kp, a, lda, wp, c, ldc, cols);
        bf16_micro_rows<Kernel, ROWS - 1>(rows, kp, a, lda, wp, c, ldc, cols);
    }
}

/// The loops around the micro-kernel; panels(n0, nb, k0, kb) returns where the panels of that
/// block start and their stride (packing them first when they are not packed yet).
template <class Kernel, class Panels>
inline void bf16_gemm_loops(index_t M, index_t N, index_t K, const std::uint32_t* A, index_t lda, float* C,
                            index_t ldc, Panels&& panels) {
    constexpr index_t MR = Bf16Blocking::MR, NR = Bf16Blocking::NR, KC = Bf16Blocking::KC, NC = Bf16Blocking::NC;
    static_assert(KC % 2 == 0);
    for (index_t n0 = 0; n0 < N; n0 += NC) {
        const index_t nb = std::min(NC, N - n0);
        for (index_t k0 = 0; k0 < K; k0 += KC) {
            const index_t kb = std::min(KC, K - k0), kp = bf16_pairs(kb);
            const auto [wp, stride] = panels(n0, nb, k0, kb);
            for (index_t m0 = 0; m0 < M; m0 += MR) {
                const index_t rows = std::min(MR, M - m0);
                for (index_t p = 0; p < nb; p += NR)
                    bf16_micro_rows<Kernel>(rows, kp, A + m0 * lda + k0 / 2, lda, wp + (p / NR) * stride,
                                            C + m0 * ldc + n0 + p, ldc, std::min(NR, nb - p));
            }
        }
    }
}

}  // namespace detail

/// Words of packing space bf16_gemm needs for weights that are not packed ahead of time.
constexpr std::size_t bf16_gemm_workspace() noexcept {
    return static_cast<std::size_t>((Bf16Blocking::NC + Bf16Blocking::NR) * (Bf16Blocking::KC / 2));
}

/// C[M, N] += A . W^T, A given as bf16 pairs [M, bf16_pairs(K)] (row stride lda words), W read
/// where it lies and packed block by block into `pack` (bf16_gemm_workspace() words).
/// Single-threaded.
template <class Kernel = DefaultBf16Kernel>
inline void bf16_gemm(index_t M, const std::uint32_t* A, index_t lda, WeightMatrix<bf16> w, float* C, index_t ldc,
                      std::uint32_t* pack) {
    detail::bf16_gemm_loops<Kernel>(M, w.out, w.in, A, lda, C, ldc,
                                    [&](index_t n0, index_t nb, index_t k0, index_t kb) {
                                        const index_t stride = bf16_pairs(kb) * Bf16Blocking::NR;
                                        detail::pack_bf16(w, n0, nb, k0, kb, pack, stride);
                                        return std::pair<const std::uint32_t*, index_t>(pack, stride);
                                    });
}

/// The same with W packed ahead of time (PackedBf16).
template <class Kernel = DefaultBf16Kernel>
inline void bf16_gemm(index_t M, const std::uint32_t* A, index_t lda, Bf16PanelsView w, float* C, index_t ldc) {
    detail::bf16_gemm_loops<Kernel>(M, w.out, w.in, A, lda, C, ldc, [&](index_t n0, index_t, index_t k0, index_t) {
        return std::pair<const std::uint32_t*, index_t>(
            w.data + n0 / Bf16Blocking::NR * w.panel_stride() + k0 / 2 * Bf16Blocking::NR, w.panel_stride());
    });
}

/// One bf16 weight matrix packed once into the GEMM's panels (an owned copy: as many bytes as
/// the matrix, plus padding of the outputs to a multiple of NR and of the inputs to even).
class PackedBf16 {
public:
    PackedBf16() = default;
    explicit PackedBf16(WeightMatrix<bf16> w)
        : data_(DType::u32, Shape{(w.out + Bf16Blocking::NR - 1) / Bf16Blocking::NR,
                                  bf16_pairs(w.in) * Bf16Blocking::NR}),
          out_(w.out),
          in_(w.in) {
        const index_t stride = bf16_pairs(w.in) * Bf16Blocking::NR;
        detail::pack_bf16(w, 0, w.out, 0, w.in, data_.data<std::uint32_t>(), stride);
    }
    /// The panels (an empty view when default-constructed).
    Bf16PanelsView view() const {
        if (out_ == 0) return {};
        return {std::as_const(data_).data<std::uint32_t>(), out_, in_, bf16_pairs(in_)};
    }
    /// Bytes held.
    std::size_t bytes() const noexcept { return data_.nbytes(); }

private:
    Tensor data_;
    index_t out_ = 0, in_ = 0;
};

}  // namespace moe::cpu

MOE_SIMD_DIAGNOSTICS_POP
