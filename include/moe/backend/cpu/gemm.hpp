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
//               the default of scalar builds, and the baseline the benchmarks compare with.
// Both accumulate in fp32 and are single-threaded: threading is decided by the caller (per
// expert, per row tile, or by column blocks in linear_parallel), and the packed kernel sums
// every output over k in the same order whatever the split, so results do not depend on the
// thread count. For M = 1 .. 4 rows (decoding) with 16-bit weights a direct kernel reads the
// weights once (no packing), summing in the packed kernel's order: the same bits again.
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <Eigen/Core>

#include "moe/backend/cpu/arch.hpp"
#include "moe/backend/cpu/gemm_bf16.hpp"
#include "moe/backend/cpu/gemm_kernel.hpp"
#include "moe/backend/cpu/simd.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/tensor.hpp"

static_assert(EIGEN_WORLD_VERSION == 3 && EIGEN_MAJOR_VERSION >= 3, "moe needs Eigen 3.3 or 3.4");

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

/// Scratch of the GEMMs (packed or widened weight panels; bf16 input pairs and panels).
struct GemmWorkspace {
    Scratch<float> panel;
    Scratch<std::uint32_t> input_pairs, pair_panel;
    /// Use o's buffers from now on (modules that never run at the same time).
    void share(GemmWorkspace& o) {
        panel.share(o.panel);
        input_pairs.share(o.input_pairs);
        pair_panel.share(o.pair_panel);
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

/// C += A . B with A [M, K] row-major (lda), C row-major (ldc) and B = W^T where W is [N, K]
/// row-major (out_in) or B = W where W is [K, N] row-major (in_out), row stride ldw.
template <WeightLayout L = WeightLayout::out_in>
inline void gemm_f32(index_t M, index_t N, index_t K, const float* A, index_t lda, const float* W, index_t ldw,
                     float* C, index_t ldc) {
    if (M == 0 || N == 0 || K == 0) return;
    using namespace Eigen::internal;
    // Row-major destination and lhs; the rhs [K, N] is column-major (W^T of an [N, K] matrix) or
    // row-major (an [in, out] matrix), with stride ldw.
    constexpr int rhs_order = L == WeightLayout::out_in ? Eigen::ColMajor : Eigen::RowMajor;
    using Gemm = general_matrix_matrix_product<Eigen::Index, float, Eigen::RowMajor, false, float, rhs_order, false,
                                               Eigen::RowMajor, 1>;
    gemm_blocking_space<Eigen::RowMajor, float, float, Eigen::Dynamic, Eigen::Dynamic, Eigen::Dynamic> blocking(
        M, N, K, 1, true);
    Gemm::run(M, N, K, A, lda, W, ldw, C, 1, ldc, 1.0f, blocking, nullptr);
}

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

/// Small-M path: C[m, :] += A[m, :] . W^T reading each 16-bit weight row once for all m < M.
/// L output rows at a time, their k-chunks transposed in registers as the packer does; the sums
/// run in the packed kernel's order (per KC block of k, from zero, then added to C), so the
/// results equal packed_gemm's bit for bit whatever rows the caller gives together.
/// How far ahead the small-M kernel prefetches along each weight row (bytes).
inline constexpr std::size_t kPrefetchBytes = 4096;

template <class W>
inline void gemm_small_m(index_t M, index_t N, index_t K, const float* A, index_t lda, const W* Wp, index_t ldw,
                         float* C, index_t ldc) noexcept {
    constexpr index_t KC = 256;  // the packed kernel's k block
    index_t n = 0;
#if !defined(MOE_NO_SIMD)
    if constexpr (kHasSimd) {
        using B = xsimd::batch<float, simd_arch>;
        constexpr int L = static_cast<int>(B::size);
        static_assert(detail::Blocking<simd_arch>::KC == KC);
        for (; n + L <= N; n += L) {
            const W* w = Wp + n * ldw;
            for (index_t k0 = 0; k0 < K; k0 += KC) {
                const index_t k1 = std::min(K, k0 + KC);
                B s[4] = {B(0.0f), B(0.0f), B(0.0f), B(0.0f)};
                index_t k = k0;
                for (; k + L <= k1; k += L) {
                    B t[L];
                    // L rows are read side by side, more streams than the hardware prefetcher
                    // follows: each row asks for the memory kPrefetchBytes further on (its own
                    // next columns, or past its end the rows that follow) every 128 bytes. A
                    // prefetch never faults, even past the matrix. Measured on Zen 4 (decode of
                    // a Qwen2-0.5B): 4 KiB beat 0.5, 1, 2 and 8 KiB and the next block's rows.
                    if (k % (128 / static_cast<index_t>(sizeof(W))) == 0)
                        static_for<L>([&](auto r) {
                            __builtin_prefetch(reinterpret_cast<const char*>(w + r * ldw + k) + kPrefetchBytes);
                        });
                    static_for<L>([&](auto r) { t[r] = detail::load_row<simd_arch>(w + r * ldw + k); });
                    arch::transpose_square<simd_arch>(t);  // t[c] = W[n .. n + L)[k + c]
                    static_for<L>([&](auto c) {
                        for (index_t m = 0; m < M; ++m) s[m] = arch::fmadd<simd_arch>(B(A[m * lda + k + c]), t[c], s[m]);
                    });
                }
                for (; k < k1; ++k) {
                    alignas(64) float col[L];
                    for (int r = 0; r < L; ++r) col[r] = to_float(w[r * ldw + k]);
                    const B t = B::load_aligned(col);
                    for (index_t m = 0; m < M; ++m) s[m] = arch::fmadd<simd_arch>(B(A[m * lda + k]), t, s[m]);
                }
                for (index_t m = 0; m < M; ++m)
                    (B::load_unaligned(C + m * ldc + n) + s[m]).store_unaligned(C + m * ldc + n);
            }
        }
    }
#endif
    for (; n < N; ++n) {
        const W* w = Wp + n * ldw;
        for (index_t k0 = 0; k0 < K; k0 += KC) {
            const index_t k1 = std::min(K, k0 + KC);
            float acc[4] = {0, 0, 0, 0};
            for (index_t k = k0; k < k1; ++k) {
                const float wv = to_float(w[k]);
                for (index_t m = 0; m < M; ++m) acc[m] = madd(A[m * lda + k], wv, acc[m]);
            }
            for (index_t m = 0; m < M; ++m) C[m * ldc + n] += acc[m];
        }
    }
}

/// Small-M path for an [in, out] weight: C[m, n] += sum_k A[m, k] W[k, n], each weight row read
/// once for all m < M, L outputs at a time. The sums run in the packed kernel's order (per KC
/// block of k, from zero, then added to C), so the results equal packed_gemm's bit for bit and
/// do not depend on how the caller splits rows between threads.
template <class W>
inline void gemm_small_m_in_out(index_t M, index_t N, index_t K, const float* A, index_t lda, const W* Wp,
                                index_t ldw, float* C, index_t ldc) noexcept {
    constexpr index_t KC = 256;  // the packed kernel's k block
    index_t n = 0;
#if !defined(MOE_NO_SIMD)
    if constexpr (kHasSimd) {
        using B = xsimd::batch<float, simd_arch>;
        constexpr index_t L = static_cast<index_t>(B::size);
        static_assert(detail::Blocking<simd_arch>::KC == KC);
        for (; n + L <= N; n += L)
            for (index_t k0 = 0; k0 < K; k0 += KC) {
                const index_t k1 = std::min(K, k0 + KC);
                B s[4] = {B(0.0f), B(0.0f), B(0.0f), B(0.0f)};
                for (index_t k = k0; k < k1; ++k) {
                    const B wv = detail::load_row<simd_arch>(Wp + k * ldw + n);
                    for (index_t m = 0; m < M; ++m) s[m] = arch::fmadd<simd_arch>(B(A[m * lda + k]), wv, s[m]);
                }
                for (index_t m = 0; m < M; ++m)
                    (B::load_unaligned(C + m * ldc + n) + s[m]).store_unaligned(C + m * ldc + n);
            }
    }
#endif
    for (; n < N; ++n)
        for (index_t k0 = 0; k0 < K; k0 += KC) {
            const index_t k1 = std::min(K, k0 + KC);
            float acc[4] = {0, 0, 0, 0};
            for (index_t k = k0; k < k1; ++k) {
                const float wv = to_float(Wp[k * ldw + n]);
                for (index_t m = 0; m < M; ++m) acc[m] = madd(A[m * lda + k], wv, acc[m]);
            }
            for (index_t m = 0; m < M; ++m) C[m * ldc + n] += acc[m];
        }
}

}  // namespace detail

/// C (= or +=) A . W^T (+ bias). A: [M, K]; W: N outputs x K inputs, stored [out, in] (as
/// torch.nn.Linear) or [in, out] (WeightMatrix::layout), f32, bf16 or f16, read in place; bias:
/// [N] fp32 or null; C: [M, N]. Single-threaded; deterministic. The packed engine gives
/// bit-identical results for both layouts of the same matrix (M > 4, or fp32 weights).
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
        if (!std::is_same_v<W, float> && M <= 4) {
            if (in_out) detail::gemm_small_m_in_out(M, N, K, A.data, A.stride, Wm.data, Wm.ld, C.data, C.stride);
            else detail::gemm_small_m(M, N, K, A.data, A.stride, Wm.data, Wm.ld, C.data, C.stride);
            return;
        }
        float* pack = ws.panel.get(packed_gemm_workspace());
        packed_gemm(M, A.data, A.stride, Wm, C.data, C.stride, pack);
        return;
    }
#endif
    if constexpr (std::is_same_v<W, float>) {
        if (in_out) detail::gemm_f32<WeightLayout::in_out>(M, N, K, A.data, A.stride, Wm.data, Wm.ld, C.data, C.stride);
        else detail::gemm_f32(M, N, K, A.data, A.stride, Wm.data, Wm.ld, C.data, C.stride);
    } else {
        if (M <= 4) {
            if (in_out) detail::gemm_small_m_in_out(M, N, K, A.data, A.stride, Wm.data, Wm.ld, C.data, C.stride);
            else detail::gemm_small_m(M, N, K, A.data, A.stride, Wm.data, Wm.ld, C.data, C.stride);
            return;
        }
        // Widen panels of output features that fit in L2 (about 256 KiB of fp32) and multiply.
        const index_t panel = std::max<index_t>(16, std::min<index_t>(N, (256 * 1024 / 4) / std::max<index_t>(K, 1)));
        float* buf = ws.panel.get(static_cast<std::size_t>(panel * K));
        for (index_t n0 = 0; n0 < N; n0 += panel) {
            const index_t nb = std::min(panel, N - n0);
            if (in_out) {  // [K, nb] block of rows of stride ld -> contiguous [K, nb]
                for (index_t k = 0; k < K; ++k)
                    for (index_t j = 0; j < nb; ++j) buf[k * nb + j] = to_float(Wm.data[k * Wm.ld + n0 + j]);
                detail::gemm_f32<WeightLayout::in_out>(M, nb, K, A.data, A.stride, buf, nb, C.data + n0, C.stride);
            } else {
                detail::widen(Wm.data + n0 * Wm.ld, nb, K, Wm.ld, buf);
                detail::gemm_f32(M, nb, K, A.data, A.stride, buf, K, C.data + n0, C.stride);
            }
        }
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
    // Blocks are whole multiples of 48 rows of W (Eigen's largest register block, 3 x 16 floats),
    // so every output column is computed by the same micro-kernel path as in one thread.
    const index_t block = (N / nt + 47) / 48 * 48;
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
