// moe/backend/cpu/gemm.hpp - the Linear GEMM on row-major activations and weights stored
// [out, in] (PyTorch) or [in, out] (MindSpore's transpose_b=False), read in place either way.
//
//   C[M, N] (= or +=) A[M, K] . W^T (+ bias[N])      W: N outputs x K inputs (WeightMatrix)
//
// Two engines, chosen by a policy tag (CUTLASS style):
//   PackedGemm  moe's packed, register-blocked kernel (moe/backend/cpu/gemm_kernel.hpp): W is
//               packed (and 16-bit weights widened) panel by panel, an MR x NR micro-kernel
//               written with xsimd does the FMAs. The default wherever SIMD is available.
//   EigenGemm   Eigen's GEMM kernel (general_matrix_matrix_product), called single-threaded;
//               the default of scalar builds, and the baseline the tests compare with. Its
//               implementation is moe/backend/cpu/gemm_eigen.hpp, which scalar builds include
//               here; a SIMD build that asks for EigenGemm includes it itself (parsing Eigen costs
//               every translation unit ~2 s, so the SIMD default does not).
// Both accumulate in fp32 and are single-threaded: threading is decided by the caller (per
// expert, per row tile, or by column blocks in linear_parallel), and the packed kernel sums
// every output over k in the same order whatever the split, so results do not depend on the
// thread count. For a few rows (decoding, beams: M <= kSmallMRowsF32 with fp32 arithmetic,
// kSmallMRowsBf16Dot with bf16 products) with 16-bit weights a row-dot kernel reads the weights
// once, front to back (no packing): its sums differ from the packed kernel's by rounding, and are
// again the same bits whatever the rows, columns or threads.
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "moe/backend/cpu/arch.hpp"
#include "moe/backend/cpu/gemm_bf16.hpp"
#include "moe/backend/cpu/gemm_kernel.hpp"
#include "moe/backend/cpu/simd.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/tensor.hpp"

namespace moe::cpu {

/// GEMM engine policies.
struct EigenGemm {
    static constexpr const char* name = "eigen";
};
struct PackedGemm {
    static constexpr const char* name = "packed";
};
/// The engine `linear` uses unless told otherwise.
using DefaultGemm = std::conditional_t<kHasSimd, PackedGemm, EigenGemm>;

/// Scratch of the GEMMs (packed or widened weight panels; bf16 input pairs and panels; int8
/// input rows, their scales and widened int8 weights: moe/backend/cpu/gemm_int8.hpp).
struct GemmWorkspace {
    Scratch<float> panel;
    Scratch<std::uint32_t> input_pairs, pair_panel;
    Scratch<std::uint8_t> int8_rows;
    Scratch<float> int8_scales, widened;
    /// Use o's buffers from now on (modules that never run at the same time).
    void share(GemmWorkspace& o) {
        panel.share(o.panel);
        input_pairs.share(o.input_pairs);
        pair_panel.share(o.pair_panel);
        int8_rows.share(o.int8_rows);
        int8_scales.share(o.int8_scales);
        widened.share(o.widened);
    }
};

namespace detail {

/// C = bias (or 0), or C += bias when accumulating: the part of a Linear outside the GEMM.
inline void init_output(MatrixRef<float> C, const float* bias, bool accumulate) noexcept {
    const index_t N = C.cols;
    for (index_t m = 0; m < C.rows; ++m) {
        float* c = C.row(m);
        if (!accumulate) {
            if (bias) std::memcpy(c, bias, static_cast<std::size_t>(N) * sizeof(float));
            else std::fill(c, c + N, 0.0f);
        } else if (bias) {
            for (index_t n = 0; n < N; ++n) c[n] += bias[n];
        }
    }
}

/// The EigenGemm engine's body (moe/backend/cpu/gemm_eigen.hpp defines it for EigenGemm).
template <class Engine>
struct EngineBody;

/// Widens rows [0, n) of a 16-bit [n, K] matrix to fp32 (row stride ld) into dst [n, K].
template <class W>
inline void widen(const W* src, index_t n, index_t K, index_t ld, float* dst) noexcept {
    for (index_t r = 0; r < n; ++r) {
        const W* s = src + r * ld;
        float* d = dst + r * K;
        index_t i = 0;
#if !defined(MOE_NO_SIMD)
        if constexpr (kHasSimd && std::is_same_v<W, bf16>) {
            using B = xsimd::batch<float, simd_arch>;
            constexpr index_t L = static_cast<index_t>(B::size);
            const auto* bits = reinterpret_cast<const std::uint16_t*>(s);
            for (; i + L <= K; i += L) arch::load_bf16<simd_arch>(bits + i).store_unaligned(d + i);
        }
#endif
        for (; i < K; ++i) d[i] = to_float(s[i]);
    }
}

}  // namespace detail

/// The most rows a small-M (row-dot) kernel takes: decoding one to a few sequences, or a
/// prompt's beams (LAVIS's 5). They read the weight once for all rows where the packed GEMM packs
/// it first. Callers that split rows between threads keep every piece of a larger block above it
/// (or the same bits change). Which rows each kernel takes: kSmallMRowsF32 and kSmallMRowsBf16Dot.
inline constexpr index_t kSmallMRows = 8;
/// Rows up to which linear() (fp32 arithmetic on 16-bit weights) takes the row-dot kernel. Its
/// time grows with the rows (an FMA and an input load per weight and row): on Zen 5 (1 thread,
/// [8192, 2048] bf16 at an 8-byte offset) it reads 10-11 GB/s at 5 rows where the packed GEMM
/// reads 9, 7.6 at 6 where the packed GEMM reads ~8.5 (bench_gemm `gemm/small_m/f32/...`).
inline constexpr index_t kSmallMRowsF32 = 5;
/// Rows up to which linear_bf16() (bf16 products, vdpbf16ps) takes the row-dot kernel: 8 rows
/// read 9-11 GB/s where its packed GEMM reads 8.6, 5 rows 16-19 (the same benchmark).
inline constexpr index_t kSmallMRowsBf16Dot = 8;
static_assert(kSmallMRowsF32 <= kSmallMRows && kSmallMRowsBf16Dot <= kSmallMRows);

namespace detail {

/// The small-M kernels' summation order for one output (M <= kSmallMRowsF32 rows, 16-bit weights): 2L
/// partial sums over k (L = the SIMD width; partial j takes k = j, j + 2L, j + 4L, ... over the
/// whole 2L-chunks of k, then j < L takes the half chunk left, if any), paired j + (j + L), then
/// halved as a tree (j += j + L/2, ... down to one), then the k tail one by one. Both layouts
/// follow it: [out, in] with the partials as lanes (a row-dot kernel), [in, out] with them as
/// separate accumulators of L outputs at a time; so a matrix gives the same bits in either
/// layout, whatever rows (up to kSmallMRowsF32), columns or threads the caller gives together.
inline constexpr index_t small_m_lanes() noexcept {
#if !defined(MOE_NO_SIMD)
    if constexpr (kHasSimd) return static_cast<index_t>(xsimd::batch<float, simd_arch>::size);
#endif
    return 1;
}

/// Halving tree over L partials (L a power of two): v[j] += v[j + h] for h = L/2, L/4, .. 1.
template <class T, index_t L>
MOE_ALWAYS_INLINE T tree_sum(T* v) noexcept {
    for (index_t h = L / 2; h >= 1; h /= 2)
        for (index_t j = 0; j < h; ++j) v[j] = v[j] + v[j + h];
    return v[0];
}

/// f(std::integral_constant<int, M>{}) for M = 1 .. Max (<= kSmallMRows); nothing for other M.
template <index_t Max, class F>
MOE_ALWAYS_INLINE void with_small_rows(index_t M, F&& f) {
    static_assert(Max >= 1 && Max <= kSmallMRows);
    [&]<int... I>(std::integer_sequence<int, I...>) {
        (void)((M == I + 1 ? (f(std::integral_constant<int, I + 1>{}), true) : false) || ...);
    }(std::make_integer_sequence<int, static_cast<int>(Max)>{});
}

/// tree_sum over the lanes of a SIMD batch.
template <class B>
MOE_ALWAYS_INLINE float lane_sum(const B& v) noexcept {
    constexpr index_t L = static_cast<index_t>(B::size);
    alignas(64) float t[L];
    v.store_aligned(t);
    return tree_sum<float, L>(t);
}

/// How far ahead of its loads a small-M row-dot kernel asks for weight bytes (software prefetch
/// into L2). The hardware prefetchers alone keep too few lines in flight once the core is busy
/// with 2-4 rows of arithmetic per weight (and restart at every 4 KB page, i.e. every row of a
/// 2048-wide bf16 matrix): on Zen 4 (2 threads, [16384, 2048] bf16) prefetching 8 KB ahead took
/// 3 rows from 1.98 to 1.59 ms (fp32 arithmetic) and 2.02 to 1.35 ms (vdpbf16ps), 1 row from
/// 1.09 to 1.0-1.1 ms (bench/bench_gemm.cpp `gemm/small_m/...`).
inline constexpr std::ptrdiff_t kSmallMPrefetchBytes = 8192;
/// Software prefetch is for 2 rows and more: one row (a decode step of one sequence) keeps too
/// little arithmetic per byte for the hardware prefetchers to fall behind, and the prefetch
/// instructions only cost there (Zen 5, 1 thread, one row over 512 MB of [N, K] bf16 weights in
/// 2 MiB pages, the same process: 28.1 GB/s without, 25.9 with at K = 896; 24.4 vs 23.1 at
/// K = 4864; level on 4 KiB pages).
inline constexpr int kSmallMPrefetchFromRows = 2;

/// Prefetches the cache lines of [p, p + bytes) for reading (a hint: never faults, even past the
/// end of an allocation); Locality as __builtin_prefetch's (3: into L1, 1: into L2).
template <int Locality = 3>
MOE_ALWAYS_INLINE void prefetch_lines(const void* p, std::ptrdiff_t bytes) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    for (std::ptrdiff_t b = 0; b < bytes; b += 64) __builtin_prefetch(static_cast<const char*>(p) + b, 0, Locality);
#else
    (void)p;
    (void)bytes;
#endif
}

/// Prefetches the cache lines of `Bytes` bytes kSmallMPrefetchBytes past p into L2 (a hint: never
/// faults, even past the end of the matrix).
template <std::size_t Bytes>
MOE_ALWAYS_INLINE void prefetch_ahead(const void* p, std::ptrdiff_t distance = kSmallMPrefetchBytes) noexcept {
    if (distance == 0) return;  // no prefetch (kSmallMPrefetchFromRows)
    prefetch_lines<1>(static_cast<const char*>(p) + distance, static_cast<std::ptrdiff_t>(Bytes));
}

/// Above this many inputs (or bf16 pairs) per row, 2-4 input rows no longer stay in L1 beside
/// the weight stream (3 rows of LLaMA-1B's down projection, 8192 inputs: 96 KB of fp32, 48 KB
/// of pairs): the row-dot kernels then sum blocks of kSegmentRows weight rows a segment of
/// kSegment inputs (pairs) at a time, the rows' partials kept in memory between segments (the
/// same order, the same bits). On Zen 4 (2 threads, 3 rows, [2048, 8192] bf16, vdpbf16ps) this
/// took the product from 1.31-1.38 to 0.93-0.99 ms.
inline constexpr index_t kSegment = 2048;
inline constexpr index_t kSegmentRows = 32;

/// Runs copies of a row-dot state `start` (partials zero; run(row, i, i_end, A, lda, ahead) over
/// whole chunks, in units of `unit_bytes` weight bytes; finish(row, i, A, lda, acc)) over the N
/// rows of W (row n at W + n * ld, `body` units of whole chunks each) and adds the results to C.
/// For M >= 2 and long rows, in segments (see kSegment); each row is summed in the same order
/// either way.
template <int M, class St, class T, class In>
inline void rows_dot(const St& start, index_t N, const T* W, index_t ld, index_t body, std::ptrdiff_t unit_bytes,
                     const In* A, index_t lda, float* C, index_t ldc) noexcept {
    float acc[M];
    const std::ptrdiff_t row_bytes = static_cast<std::ptrdiff_t>(ld * sizeof(T));
    if (M >= 2 && body > kSegment) {
        St st[kSegmentRows];
        for (index_t n0 = 0; n0 < N; n0 += kSegmentRows) {
            const index_t nb = std::min(kSegmentRows, N - n0);
            const T* first = W + n0 * ld;
            for (index_t r = 0; r < nb; ++r) st[r] = start;
            for (index_t i0 = 0; i0 < body; i0 += kSegment) {
                const index_t i1 = std::min(body, i0 + kSegment);
                for (index_t r = 0; r < nb; ++r) {
                    // Prefetch the piece read next: the next row's segment, or after the block's
                    // last row the first row's next segment (or the next block's first).
                    const std::ptrdiff_t next = r + 1 < nb ? row_bytes
                                                : i1 < body ? unit_bytes * (i1 - i0) - (nb - 1) * row_bytes
                                                            : row_bytes - unit_bytes * i0;
                    st[r].run(first + r * ld, i0, i1, A, lda, next);
                }
            }
            for (index_t r = 0; r < nb; ++r) {
                st[r].finish(first + r * ld, body, A, lda, acc);
                for (int m = 0; m < M; ++m) C[m * ldc + n0 + r] += acc[m];
            }
        }
        return;
    }
    constexpr std::ptrdiff_t ahead = M >= kSmallMPrefetchFromRows ? kSmallMPrefetchBytes : 0;
    for (index_t n = 0; n < N; ++n) {
        St st = start;
        st.finish(W + n * ld, st.run(W + n * ld, 0, body, A, lda, ahead), A, lda, acc);
        for (int m = 0; m < M; ++m) C[m * ldc + n] += acc[m];
    }
}

#if !defined(MOE_NO_SIMD)
/// What a row-dot state holds: the 2L partials of one weight row with each input row.
template <class B, int M>
struct RowPartials {
    index_t K = 0;  ///< the row's length (inputs)
    B s0[M], s1[M];  ///< even and odd chunks' partials, per input row

    /// A state of this type (Derived) for a row of K inputs, the partials zero.
    template <class Derived>
    static Derived start_for(index_t K) noexcept {
        Derived d;
        d.K = K;
        for (int m = 0; m < M; ++m) d.s0[m] = d.s1[m] = B(0.0f);
        return d;
    }
};

/// gemm_rows_dot's SIMD state for one weight row (of K 16-bit weights), as rows_dot drives it.
template <int M, class W>
struct RowDot : RowPartials<xsimd::batch<float, simd_arch>, M> {
    using B = xsimd::batch<float, simd_arch>;
    using RowPartials<B, M>::K, RowPartials<B, M>::s0, RowPartials<B, M>::s1;
    static constexpr index_t L = static_cast<index_t>(B::size);

    static RowDot start(index_t K) noexcept { return RowDot::template start_for<RowDot>(K); }
    /// Inputs [k, k_end) (whole 2L-chunks). Returns k_end.
    MOE_ALWAYS_INLINE index_t run(const W* w, index_t k, index_t k_end, const float* A, index_t lda,
                                  std::ptrdiff_t ahead) noexcept {
        B t0[M], t1[M];  // in registers for the loop (the members may live in memory)
        for (int m = 0; m < M; ++m) t0[m] = s0[m], t1[m] = s1[m];
        for (; k < k_end; k += 2 * L) {
            prefetch_ahead<2 * L * sizeof(W)>(w + k, ahead);
            const B w0 = detail::load_row<simd_arch>(w + k), w1 = detail::load_row<simd_arch>(w + k + L);
            for (int m = 0; m < M; ++m) {
                t0[m] = arch::fmadd<simd_arch>(B::load_unaligned(A + m * lda + k), w0, t0[m]);
                t1[m] = arch::fmadd<simd_arch>(B::load_unaligned(A + m * lda + k + L), w1, t1[m]);
            }
        }
        for (int m = 0; m < M; ++m) s0[m] = t0[m], s1[m] = t1[m];
        return k;
    }
    /// The half chunk left (if any), the sums, then the inputs past the last chunk one by one.
    MOE_ALWAYS_INLINE void finish(const W* w, index_t k, const float* A, index_t lda, float (&acc)[M]) noexcept {
        if (k + L <= K) {
            const B w0 = detail::load_row<simd_arch>(w + k);
            for (int m = 0; m < M; ++m) s0[m] = arch::fmadd<simd_arch>(B::load_unaligned(A + m * lda + k), w0, s0[m]);
            k += L;
        }
        for (int m = 0; m < M; ++m) acc[m] = lane_sum(s0[m] + s1[m]);
        for (; k < K; ++k) {
            const float wv = to_float(w[k]);
            for (int m = 0; m < M; ++m) acc[m] = madd(A[m * lda + k], wv, acc[m]);
        }
    }
};
#endif

/// Small-M path (decoding) for an [out, in] weight: C[m, :] += A[m, :] . W^T for
/// M = 1 .. kSmallMRowsF32, reading the weight matrix once, front to back (rows longer than
/// kSegment inputs: a block of rows a segment at a time): output n is the dot product of weight
/// row n with each input row, its 2L partials as the lanes of two accumulators. One sequential
/// stream (with software prefetch from kSmallMPrefetchFromRows rows on, kSmallMPrefetchBytes
/// ahead) is what the memory system follows best: on Zen 4 it reads at ~90 % of the measured
/// read bandwidth, where reading 16 rows side by side (the packed kernel's order, which needs
/// register transposes) reached ~50 %. Not packed_gemm's order: the two differ by rounding.
template <int M, class W>
inline void gemm_rows_dot(index_t N, index_t K, const float* A, index_t lda, const W* Wp, index_t ldw, float* C,
                          index_t ldc) noexcept {
#if !defined(MOE_NO_SIMD)
    if constexpr (kHasSimd) {
        using St = RowDot<M, W>;
        const index_t body = K / (2 * St::L) * (2 * St::L);  // the inputs in whole 2L-chunks
        return rows_dot<M>(St::start(K), N, Wp, ldw, body, sizeof(W), A, lda, C, ldc);
    }
#endif
    for (index_t n = 0; n < N; ++n) {
        const W* w = Wp + n * ldw;
        float acc[M] = {};
        for (index_t k = 0; k < K; ++k) {
            const float wv = to_float(w[k]);
            for (int m = 0; m < M; ++m) acc[m] = madd(A[m * lda + k], wv, acc[m]);
        }
        for (int m = 0; m < M; ++m) C[m * ldc + n] += acc[m];
    }
}

/// Small-M path for an [in, out] weight, in gemm_rows_dot's order: L outputs at a time, each of
/// their 2L partials a separate accumulator (a vector over the L outputs), each weight row read
/// once per block; the outputs past the last whole block one by one, with scalar partials.
template <class W>
inline void gemm_rows_dot_in_out(index_t M, index_t N, index_t K, const float* A, index_t lda, const W* Wp,
                                 index_t ldw, float* C, index_t ldc) noexcept {
    constexpr index_t L = small_m_lanes();
    index_t n = 0;
#if !defined(MOE_NO_SIMD)
    if constexpr (kHasSimd) {
        using B = xsimd::batch<float, simd_arch>;
        for (; n + L <= N; n += L) {
            B s[kSmallMRowsF32][2 * L];
            for (index_t m = 0; m < M; ++m)
                for (index_t j = 0; j < 2 * L; ++j) s[m][j] = B(0.0f);
            index_t k = 0;
            for (; k + 2 * L <= K; k += 2 * L)
                for (index_t j = 0; j < 2 * L; ++j) {
                    const B wv = detail::load_row<simd_arch>(Wp + (k + j) * ldw + n);
                    for (index_t m = 0; m < M; ++m) s[m][j] = arch::fmadd<simd_arch>(B(A[m * lda + k + j]), wv, s[m][j]);
                }
            if (k + L <= K) {
                for (index_t j = 0; j < L; ++j) {
                    const B wv = detail::load_row<simd_arch>(Wp + (k + j) * ldw + n);
                    for (index_t m = 0; m < M; ++m) s[m][j] = arch::fmadd<simd_arch>(B(A[m * lda + k + j]), wv, s[m][j]);
                }
                k += L;
            }
            for (index_t m = 0; m < M; ++m) {
                for (index_t j = 0; j < L; ++j) s[m][j] = s[m][j] + s[m][j + L];
                B t = tree_sum<B, L>(s[m]);
                for (index_t kk = k; kk < K; ++kk)
                    t = arch::fmadd<simd_arch>(B(A[m * lda + kk]), detail::load_row<simd_arch>(Wp + kk * ldw + n), t);
                (B::load_unaligned(C + m * ldc + n) + t).store_unaligned(C + m * ldc + n);
            }
        }
    }
#endif
    for (; n < N; ++n)
        for (index_t m = 0; m < M; ++m) {
            float s[2 * L] = {};
            index_t k = 0;
            if constexpr (L > 1) {
                for (; k + 2 * L <= K; k += 2 * L)
                    for (index_t j = 0; j < 2 * L; ++j) s[j] = madd(A[m * lda + k + j], to_float(Wp[(k + j) * ldw + n]), s[j]);
                if (k + L <= K) {
                    for (index_t j = 0; j < L; ++j) s[j] = madd(A[m * lda + k + j], to_float(Wp[(k + j) * ldw + n]), s[j]);
                    k += L;
                }
                for (index_t j = 0; j < L; ++j) s[j] = s[j] + s[j + L];
            }
            float t = L > 1 ? tree_sum<float, L>(s) : 0.0f;
            for (; k < K; ++k) t = madd(A[m * lda + k], to_float(Wp[k * ldw + n]), t);
            C[m * ldc + n] += t;
        }
}

/// C[m, :] += A[m, :] . W^T for M = 1 .. kSmallMRowsF32 rows of 16-bit weights stored [out, in] or [in, out].
template <class W>
inline void gemm_small_m(index_t M, index_t N, index_t K, const float* A, index_t lda, const W* Wp, index_t ldw,
                         float* C, index_t ldc, bool in_out) noexcept {
    if (in_out) return gemm_rows_dot_in_out(M, N, K, A, lda, Wp, ldw, C, ldc);  // rows as a run-time count
    with_small_rows<kSmallMRowsF32>(M, [&](auto rows) { gemm_rows_dot<decltype(rows)::value>(N, K, A, lda, Wp, ldw, C, ldc); });
}

/// The bf16 dot small-M order (M = 1 .. kSmallMRowsBf16Dot rows, Bf16DotMath): as the fp32 one over input pairs
/// instead of inputs. The P = ceil(K / 2) pairs of a row, padded with zero pairs to a multiple
/// of L, go in chunks of L to 2L partials (chunk c to partials (c mod 2) L .. (c mod 2) L + L - 1,
/// pair by pair, each step the model's s += a_hi w_hi; s += a_lo w_lo), partial j is added to
/// j + L, then the halving tree; the result is added to C. [out, in] weights: a row-dot kernel
/// reading each row's words where they lie; [in, out] (or packed ahead of time) weights: NR
/// outputs of the packed panels at a time with the partials as separate accumulators; the same
/// bits either way.
/// One output in the bf16 small-M order, one lane at a time (scalar builds): a(q) and w(q) give
/// the input and weight words of pair q < P.
template <class InputWord, class WeightWord>
inline float bf16_dot_one(index_t P, InputWord&& a, WeightWord&& w) noexcept {
    constexpr index_t L = Bf16Blocking::L;
    float part[2 * L] = {};
    const index_t padded = (P + L - 1) / L * L;
    for (index_t q = 0; q < padded; ++q)
        part[q % (2 * L)] = bf16_step(part[q % (2 * L)], q < P ? a(q) : 0u, q < P ? w(q) : 0u);
    for (index_t j = 0; j < L; ++j) part[j] = part[j] + part[j + L];
    return tree_sum<float, L>(part);
}

#if !defined(MOE_NO_SIMD)
/// A row's words [0, whole) as consecutive L-word vectors by unaligned loads (the fallback of
/// arch::AlignedWords16).
template <class U>
struct UnalignedWords {
    const std::uint16_t* row;
    index_t v = 0;
    MOE_ALWAYS_INLINE U next() noexcept {
        using F = xsimd::batch<float, typename U::arch_type>;
        const U u = xsimd::bitwise_cast<U>(F::load_unaligned(reinterpret_cast<const float*>(row + 2 * v)));
        v += static_cast<index_t>(U::size);
        return u;
    }
};

/// bf16_rows_dot's SIMD state for one weight row (of K bf16 weights): its 2L partials with each
/// input row (pairs), as rows_dot drives it.
template <class Kernel, int M>
struct Bf16RowDot : RowPartials<typename Bf16Step<Kernel>::B, M> {
    using S = Bf16Step<Kernel>;
    using B = typename S::B;
    using U = typename S::U;
    using RowPartials<B, M>::K, RowPartials<B, M>::s0, RowPartials<B, M>::s1;
    static constexpr index_t L = Bf16Blocking::L;
    static_assert(static_cast<index_t>(B::size) == L);

    static Bf16RowDot start(index_t K) noexcept { return Bf16RowDot::template start_for<Bf16RowDot>(K); }
    /// Pairs [q, q_end) of the row (whole 2L-chunks). Returns q_end.
    MOE_ALWAYS_INLINE index_t run(const std::uint16_t* row, index_t q, index_t q_end, const std::uint32_t* A,
                                  index_t lda, std::ptrdiff_t ahead) noexcept {
        const auto body = [&](auto& rd) {
            B t0[M], t1[M];  // in registers for the loop (the members may live in memory)
            for (int m = 0; m < M; ++m) t0[m] = s0[m], t1[m] = s1[m];
            for (; q < q_end; q += 2 * L) {
                prefetch_ahead<2 * L * sizeof(std::uint32_t)>(row + 2 * q, ahead);
                const U w0(rd.next()), w1(rd.next());
                for (int m = 0; m < M; ++m) {
                    t0[m] = S::run(t0[m], U::load_unaligned(A + m * lda + q), w0);
                    t1[m] = S::run(t1[m], U::load_unaligned(A + m * lda + q + L), w1);
                }
            }
            for (int m = 0; m < M; ++m) s0[m] = t0[m], s1[m] = t1[m];
        };
#if defined(__AVX512F__)
        if (L == 16 && reinterpret_cast<std::uintptr_t>(row + 2 * q) % 4 == 0) {  // aligned loads, permutes
            arch::AlignedWords16 rd(reinterpret_cast<const std::uint32_t*>(row + 2 * q), q_end - q);
            body(rd);
            return q;
        }
#endif
        UnalignedWords<U> rd{row + 2 * q};
        body(rd);
        return q;
    }
    /// The rest of the row from pair q (the end of its whole 2L-chunks): the half chunk left, if
    /// any, and the zero-padded last chunk; then the sums.
    MOE_ALWAYS_INLINE void finish(const std::uint16_t* row, index_t q, const std::uint32_t* A, index_t lda,
                                  float (&acc)[M]) noexcept {
        const index_t whole = K / 2, P = bf16_pairs(K);
        bool odd_chunk = false;  // whether the next chunk goes to s1
        if (q + L <= whole) {
            const U w0 = xsimd::bitwise_cast<U>(B::load_unaligned(reinterpret_cast<const float*>(row + 2 * q)));
            for (int m = 0; m < M; ++m) s0[m] = S::run(s0[m], U::load_unaligned(A + m * lda + q), w0);
            q += L;
            odd_chunk = true;
        }
        if (q < P) {  // the last chunk, zero-padded
            alignas(64) std::uint32_t ww[L] = {}, aa[L];
            for (index_t j = 0; q + j < P; ++j)  // the words of the pairs left (zero high half past an odd K)
                ww[j] = static_cast<std::uint32_t>(row[2 * (q + j)]) |
                        (2 * (q + j) + 1 < K ? static_cast<std::uint32_t>(row[2 * (q + j) + 1]) << 16 : 0u);
            const U w0 = U::load_aligned(ww);
            for (int m = 0; m < M; ++m) {
                for (index_t j = 0; j < L; ++j) aa[j] = q + j < P ? A[m * lda + q + j] : 0u;
                B& t = odd_chunk ? s1[m] : s0[m];
                t = S::run(t, U::load_aligned(aa), w0);
            }
        }
        for (int m = 0; m < M; ++m) acc[m] = lane_sum(s0[m] + s1[m]);
    }
};
#endif

template <class Kernel, int M>
inline void bf16_rows_dot(index_t N, const std::uint32_t* A, index_t lda, WeightMatrix<bf16> w, float* C,
                          index_t ldc) noexcept {
    const index_t K = w.in;
    const auto* bits = reinterpret_cast<const std::uint16_t*>(w.data);
#if !defined(MOE_NO_SIMD)
    if constexpr (kHasSimd) {
        using St = Bf16RowDot<Kernel, M>;
        const index_t body = K / 2 / (2 * St::L) * (2 * St::L);  // the pairs in whole 2L-chunks
        return rows_dot<M>(St::start(K), N, bits, w.ld, body, 2 * sizeof(std::uint16_t), A, lda, C, ldc);
    }
#endif
    for (index_t n = 0; n < N; ++n) {
        const std::uint16_t* r = bits + n * w.ld;
        // The word of pair q (zero high half past an odd K).
        const auto word = [&](index_t q) {
            return static_cast<std::uint32_t>(r[2 * q]) | (2 * q + 1 < K ? static_cast<std::uint32_t>(r[2 * q + 1]) << 16 : 0u);
        };
        for (int m = 0; m < M; ++m)
            C[m * ldc + n] += bf16_dot_one(bf16_pairs(K), [&](index_t q) { return A[m * lda + q]; }, word);
    }
}

/// bf16_rows_dot's order on packed panels (NR = 2L outputs each, `pairs` words per output per
/// panel, zero past the matrix): panels [0, ceil(N / NR)) of `panels`, outputs [0, N).
template <class Kernel>
inline void bf16_panels_dot(index_t M, index_t N, index_t P, const std::uint32_t* A, index_t lda, const std::uint32_t* panels,
                            index_t panel_stride, float* C, index_t ldc) noexcept {
    constexpr index_t NR = Bf16Blocking::NR;
    for (index_t p = 0; p < N; p += NR) {
        const std::uint32_t* wp = panels + (p / NR) * panel_stride;
        const index_t cols = std::min(NR, N - p);
        alignas(64) float out[NR];
#if !defined(MOE_NO_SIMD)
        if constexpr (kHasSimd) {
            using S = Bf16Step<Kernel>;
            using B = typename S::B;
            using U = typename S::U;
            constexpr index_t L = Bf16Blocking::L;
            const index_t padded = (P + L - 1) / L * L;
            for (index_t m = 0; m < M; ++m) {
                B s[2 * L][2];  // partial j of outputs 0 .. L - 1 and L .. 2L - 1
                for (index_t j = 0; j < 2 * L; ++j) s[j][0] = s[j][1] = B(0.0f);
                for (index_t q = 0; q < padded; ++q) {
                    const index_t j = q % (2 * L);
                    const U a(q < P ? A[m * lda + q] : 0u);
                    const U w0 = q < P ? U::load_unaligned(wp + q * NR) : U(0u);
                    const U w1 = q < P ? U::load_unaligned(wp + q * NR + L) : U(0u);
                    s[j][0] = S::run(s[j][0], a, w0);
                    s[j][1] = S::run(s[j][1], a, w1);
                }
                for (int h = 0; h < 2; ++h) {
                    B t[L];
                    for (index_t j = 0; j < L; ++j) t[j] = s[j][h] + s[j + L][h];
                    tree_sum<B, L>(t).store_aligned(out + h * L);
                }
                for (index_t c = 0; c < cols; ++c) C[m * ldc + p + c] += out[c];
            }
            continue;
        }
#endif
        for (index_t m = 0; m < M; ++m) {
            for (index_t c = 0; c < NR; ++c)
                out[c] = bf16_dot_one(P, [&](index_t q) { return A[m * lda + q]; }, [&](index_t q) { return wp[q * NR + c]; });
            for (index_t c = 0; c < cols; ++c) C[m * ldc + p + c] += out[c];
        }
    }
}

/// C[M, :] += bf16(A) . W^T for M = 1 .. kSmallMRowsBf16Dot rows in the small-M order: [out, in] weights read where
/// they lie; [in, out] weights from their packed panels (`packed`) or packed here, one panel at a
/// time, into `buf` (bf16_pairs(K) * NR words).
template <class Kernel>
inline void bf16_small_m(index_t M, const std::uint32_t* A, index_t lda, WeightMatrix<bf16> w,
                         const Bf16PanelsView* packed, float* C, index_t ldc, Scratch<std::uint32_t>& buf) {
    constexpr index_t NR = Bf16Blocking::NR;
    const index_t N = w.out, P = bf16_pairs(w.in);
    if (w.layout == WeightLayout::in_out) {  // rows as a run-time count
        if (packed) return bf16_panels_dot<Kernel>(M, N, P, A, lda, packed->data, packed->panel_stride(), C, ldc);
        std::uint32_t* panel = buf.get(static_cast<std::size_t>(P * NR));
        for (index_t n = 0; n < N; n += NR) {
            const index_t nb = std::min(NR, N - n);
            pack_bf16(w, n, nb, 0, w.in, panel, P * NR);
            bf16_panels_dot<Kernel>(M, nb, P, A, lda, panel, P * NR, C + n, ldc);
        }
        return;
    }
    with_small_rows<kSmallMRowsBf16Dot>(M, [&](auto rows) { bf16_rows_dot<Kernel, decltype(rows)::value>(N, A, lda, w, C, ldc); });
}

}  // namespace detail

/// C (= or +=) A . W^T (+ bias). A: [M, K]; W: N outputs x K inputs, stored [out, in] (as
/// torch.nn.Linear) or [in, out] (WeightMatrix::layout), f32, bf16 or f16, read in place; bias:
/// [N] fp32 or null; C: [M, N]. Single-threaded; deterministic. The packed engine gives
/// bit-identical results for both layouts of the same matrix (M > kSmallMRowsF32, or fp32 weights).
template <WeightType W, class Engine = DefaultGemm>
inline void linear(ConstMatrixRef<float> A, WeightMatrix<W> Wm, const float* bias, MatrixRef<float> C,
                   bool accumulate, GemmWorkspace& ws) {
    const index_t M = A.rows, K = A.cols, N = Wm.out;
    check<ShapeError>(Wm.in == K, "moe::cpu::linear", "input has ", K, " features but the weight has ", Wm.in,
                      " inputs (", N, " outputs, stored ", layout_name(Wm.layout), ")");
    check<ShapeError>(C.rows == M && C.cols == N, "moe::cpu::linear", "output is [", C.rows, ", ", C.cols,
                      "], expected [", M, ", ", N, "]");
    const bool in_out = Wm.layout == WeightLayout::in_out;
    detail::init_output(C, bias, accumulate);
#if !defined(MOE_NO_SIMD)
    if constexpr (std::is_same_v<Engine, PackedGemm> && kHasSimd) {
        if (!std::is_same_v<W, float> && M <= kSmallMRowsF32) {
            detail::gemm_small_m(M, N, K, A.data, A.stride, Wm.data, Wm.ld, C.data, C.stride, in_out);
            return;
        }
        float* pack = ws.panel.get(packed_gemm_workspace());
        packed_gemm(M, A.data, A.stride, Wm, C.data, C.stride, pack);
        return;
    } else
#endif
    {
        // EigenGemm (and PackedGemm without SIMD): an incomplete detail::EngineBody here means
        // moe/backend/cpu/gemm_eigen.hpp was not included.
        detail::EngineBody<std::conditional_t<std::is_same_v<Engine, PackedGemm>, EigenGemm, Engine>>::run(
            A, Wm, C, in_out, ws);
    }
}

/// The same with an [out, in] matrix.
template <WeightType W, class Engine = DefaultGemm>
inline void linear(ConstMatrixRef<float> A, ConstMatrixRef<W> Wm, const float* bias, MatrixRef<float> C,
                   bool accumulate, GemmWorkspace& ws) {
    linear<W, Engine>(A, WeightMatrix<W>(Wm), bias, C, accumulate, ws);
}

/// C (= or +=) bf16(A) . W^T (+ bias) with the Bf16DotMath GEMM (moe/backend/cpu/gemm_bf16.hpp),
/// A given already rounded: `pairs` [M, bf16_pairs(K)] words, row stride lda. W is read where it
/// lies (packed block by block in ws) or, when `packed` is not null, from its panels packed ahead
/// of time (the same matrix: the same bits). Single-threaded; deterministic.
template <class Kernel = DefaultBf16Kernel>
inline void linear_bf16_pairs(index_t M, const std::uint32_t* pairs, index_t lda, WeightMatrix<bf16> Wm,
                              const Bf16PanelsView* packed, const float* bias, MatrixRef<float> C, bool accumulate,
                              GemmWorkspace& ws) {
    check<ShapeError>(C.rows == M && C.cols == Wm.out, "moe::cpu::linear (bf16 dot)", "output is [", C.rows, ", ",
                      C.cols, "], expected [", M, ", ", Wm.out, "]");
    detail::init_output(C, bias, accumulate);
    if (M == 0 || Wm.out == 0 || Wm.in == 0) return;
    if (M <= kSmallMRowsBf16Dot) {
        detail::bf16_small_m<Kernel>(M, pairs, lda, Wm, packed, C.data, C.stride, ws.pair_panel);
        return;
    }
    if (packed) bf16_gemm<Kernel>(M, pairs, lda, *packed, C.data, C.stride);
    else bf16_gemm<Kernel>(M, pairs, lda, Wm, C.data, C.stride, ws.pair_panel.get(bf16_gemm_workspace()));
}

/// C (= or +=) bf16(A) . W^T (+ bias): A [M, K] rounded to bf16 (nearest even) here, then
/// linear_bf16_pairs.
template <class Kernel = DefaultBf16Kernel>
inline void linear_bf16(ConstMatrixRef<float> A, WeightMatrix<bf16> Wm, const Bf16PanelsView* packed,
                        const float* bias, MatrixRef<float> C, bool accumulate, GemmWorkspace& ws) {
    check<ShapeError>(Wm.in == A.cols, "moe::cpu::linear (bf16 dot)", "input has ", A.cols,
                      " features but the weight has ", Wm.in, " inputs (", Wm.out, " outputs, stored ",
                      layout_name(Wm.layout), ")");
    const index_t P = bf16_pairs(A.cols);
    std::uint32_t* pairs = ws.input_pairs.get(static_cast<std::size_t>(std::max<index_t>(1, A.rows * P)));
    round_rows_bf16(A, pairs);
    linear_bf16_pairs<Kernel>(A.rows, pairs, P, Wm, packed, bias, C, accumulate, ws);
}

/// The same product split over up to ex.threads() threads by blocks of output columns, one
/// block per thread; results equal the single-threaded ones bit for bit.
template <WeightType W, class Engine = DefaultGemm>
inline void linear_parallel(ConstMatrixRef<float> A, WeightMatrix<W> Wm, const float* bias, MatrixRef<float> C,
                            bool accumulate, const Exec& ex = Exec{}) {
    const index_t N = Wm.out;
    const index_t nt = std::max<index_t>(1, std::min<index_t>(ex.threads(), N / 64));
    // One even share per thread (moe::even_share), cut on multiples of 48 rows of W (Eigen's
    // largest register block, 3 x 16 floats), so every output column is computed by the same
    // micro-kernel path as in one thread.
    const index_t block = even_share(N, static_cast<int>(nt), 48);
    if (nt <= 1 || parallel_workers(ex, N, block) <= 1) {
        GemmWorkspace ws;
        linear<W, Engine>(A, Wm, bias, C, accumulate, ws);
        return;
    }
    parallel_chunks(ex, N, block, [&](index_t n0, index_t n1, int) {
        GemmWorkspace ws;
        linear<W, Engine>(A, Wm.outputs(n0, n1), bias ? bias + n0 : nullptr,
                          MatrixRef<float>(C.data + n0, C.rows, n1 - n0, C.stride), accumulate, ws);
    });
}

/// The same with an [out, in] matrix.
template <WeightType W, class Engine = DefaultGemm>
inline void linear_parallel(ConstMatrixRef<float> A, ConstMatrixRef<W> Wm, const float* bias, MatrixRef<float> C,
                            bool accumulate, const Exec& ex = Exec{}) {
    linear_parallel<W, Engine>(A, WeightMatrix<W>(Wm), bias, C, accumulate, ex);
}

}  // namespace moe::cpu

MOE_SIMD_DIAGNOSTICS_POP

// Scalar builds: the default engine is EigenGemm.
#if defined(MOE_NO_SIMD) || !(XSIMD_WITH_SSE2 || XSIMD_WITH_NEON || XSIMD_WITH_NEON64)
#include "moe/backend/cpu/gemm_eigen.hpp"
#endif
