// moe/backend/cpu/gemm.hpp - the Linear GEMM on row-major activations and [out, in] weights.
//
//   C[M, N] (= or +=) A[M, K] . W[N, K]^T (+ bias[N])
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
// thread count. For M = 1 .. 4 rows (decoding) with 16-bit weights a direct dot-product kernel
// reads the weights once, halving the memory traffic.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>

#include <Eigen/Core>

#include "moe/backend/cpu/arch.hpp"
#include "moe/backend/cpu/gemm_kernel.hpp"
#include "moe/backend/cpu/simd.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
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

/// Scratch of the GEMM (packed or widened weight panels).
struct GemmWorkspace {
    Scratch<float> panel;
};

namespace detail {

/// C += A . B with A [M, K] row-major (lda), B = W^T where W is [N, K] row-major (ldw), C row-major (ldc).
inline void gemm_f32(index_t M, index_t N, index_t K, const float* A, index_t lda, const float* W, index_t ldw,
                     float* C, index_t ldc) {
    if (M == 0 || N == 0 || K == 0) return;
    using namespace Eigen::internal;
    // Row-major destination; lhs A row-major; rhs W^T is column-major [K, N] with stride ldw.
    using Gemm = general_matrix_matrix_product<Eigen::Index, float, Eigen::RowMajor, false, float, Eigen::ColMajor,
                                               false, Eigen::RowMajor, 1>;
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
template <class W>
inline void gemm_small_m(index_t M, index_t N, index_t K, const float* A, index_t lda, const W* Wp, index_t ldw,
                         float* C, index_t ldc) noexcept {
    for (index_t n = 0; n < N; ++n) {
        const W* w = Wp + n * ldw;
        float acc[4] = {0, 0, 0, 0};
        index_t i = 0;
#if !defined(MOE_NO_SIMD)
        if constexpr (kHasSimd) {
            using B = xsimd::batch<float, simd_arch>;
            constexpr index_t L = static_cast<index_t>(B::size);
            B s[4] = {B(0.0f), B(0.0f), B(0.0f), B(0.0f)};
            alignas(64) float wf[L];
            for (; i + L <= K; i += L) {
                B wv;
                if constexpr (std::is_same_v<W, bf16>) {
                    wv = arch::load_bf16<simd_arch>(reinterpret_cast<const std::uint16_t*>(w) + i);
                } else if constexpr (std::is_same_v<W, float>) {
                    wv = B::load_unaligned(w + i);
                } else {
                    for (index_t j = 0; j < L; ++j) wf[j] = to_float(w[i + j]);
                    wv = B::load_aligned(wf);
                }
                for (index_t m = 0; m < M; ++m) s[m] = xsimd::fma(B::load_unaligned(A + m * lda + i), wv, s[m]);
            }
            for (index_t m = 0; m < M; ++m) acc[m] = xsimd::hadd(s[m]);
        }
#endif
        for (; i < K; ++i) {
            const float wv = to_float(w[i]);
            for (index_t m = 0; m < M; ++m) acc[m] += A[m * lda + i] * wv;
        }
        for (index_t m = 0; m < M; ++m) C[m * ldc + n] += acc[m];
    }
}

}  // namespace detail

/// C (= or +=) A . W^T (+ bias). A: [M, K]; W: [N, K] ([out, in], as torch.nn.Linear stores it),
/// f32, bf16 or f16; bias: [N] fp32 or null; C: [M, N]. Single-threaded; deterministic.
template <WeightType W, class Engine = DefaultGemm>
inline void linear(ConstMatrixRef<float> A, ConstMatrixRef<W> Wm, const float* bias, MatrixRef<float> C,
                   bool accumulate, GemmWorkspace& ws) {
    const index_t M = A.rows, K = A.cols, N = Wm.rows;
    check<ShapeError>(Wm.cols == K, "moe::cpu::linear", "input has ", K, " features but the weight is [", N, ", ",
                      Wm.cols, "]");
    check<ShapeError>(C.rows == M && C.cols == N, "moe::cpu::linear", "output is [", C.rows, ", ", C.cols,
                      "], expected [", M, ", ", N, "]");
    for (index_t m = 0; m < M; ++m) {
        float* c = C.row(m);
        if (!accumulate) {
            if (bias) std::memcpy(c, bias, static_cast<std::size_t>(N) * sizeof(float));
            else std::fill(c, c + N, 0.0f);
        } else if (bias) {
            for (index_t n = 0; n < N; ++n) c[n] += bias[n];
        }
    }
#if !defined(MOE_NO_SIMD)
    if constexpr (std::is_same_v<Engine, PackedGemm> && kHasSimd) {
        if (!std::is_same_v<W, float> && M <= 4) {
            detail::gemm_small_m(M, N, K, A.data, A.stride, Wm.data, Wm.stride, C.data, C.stride);
            return;
        }
        float* pack = ws.panel.get(packed_gemm_workspace());
        packed_gemm(M, N, K, A.data, A.stride, Wm.data, Wm.stride, C.data, C.stride, pack);
        return;
    }
#endif
    if constexpr (std::is_same_v<W, float>) {
        detail::gemm_f32(M, N, K, A.data, A.stride, Wm.data, Wm.stride, C.data, C.stride);
    } else {
        if (M <= 4) {
            detail::gemm_small_m(M, N, K, A.data, A.stride, Wm.data, Wm.stride, C.data, C.stride);
            return;
        }
        // Widen panels of output rows that fit in L2 (about 256 KiB of fp32) and multiply.
        const index_t panel = std::max<index_t>(16, std::min<index_t>(N, (256 * 1024 / 4) / std::max<index_t>(K, 1)));
        float* buf = ws.panel.get(static_cast<std::size_t>(panel * K));
        for (index_t n0 = 0; n0 < N; n0 += panel) {
            const index_t nb = std::min(panel, N - n0);
            detail::widen(Wm.data + n0 * Wm.stride, nb, K, Wm.stride, buf);
            detail::gemm_f32(M, nb, K, A.data, A.stride, buf, K, C.data + n0, C.stride);
        }
    }
}

/// The same product split over `threads` OpenMP threads by blocks of output columns; results
/// equal the single-threaded ones bit for bit.
template <WeightType W, class Engine = DefaultGemm>
inline void linear_parallel(ConstMatrixRef<float> A, ConstMatrixRef<W> Wm, const float* bias, MatrixRef<float> C,
                            bool accumulate, int threads = max_threads()) {
#if defined(_OPENMP)
    const index_t N = Wm.rows;
    const int nt = static_cast<int>(std::max<index_t>(1, std::min<index_t>(threads, N / 64)));
    if (nt <= 1) {
        GemmWorkspace ws;
        linear<W, Engine>(A, Wm, bias, C, accumulate, ws);
        return;
    }
    // Chunks are whole multiples of 48 rows of W (Eigen's largest register block, 3 x 16 floats),
    // so every output column is computed by the same micro-kernel path as in one thread.
    const index_t chunk = (N / nt + 47) / 48 * 48;
    std::exception_ptr error;
#pragma omp parallel num_threads(nt)
    {
        const index_t n0 = std::min(N, static_cast<index_t>(omp_get_thread_num()) * chunk);
        const index_t n1 = omp_get_thread_num() == nt - 1 ? N : std::min(N, n0 + chunk);
        GemmWorkspace ws;
        try {
            if (n0 < n1)
                linear<W, Engine>(A, ConstMatrixRef<W>(Wm.data + n0 * Wm.stride, n1 - n0, Wm.cols, Wm.stride),
                       bias ? bias + n0 : nullptr, MatrixRef<float>(C.data + n0, C.rows, n1 - n0, C.stride),
                       accumulate, ws);
        } catch (...) {
#pragma omp critical
            if (!error) error = std::current_exception();
        }
    }
    if (error) std::rethrow_exception(error);
#else
    (void)threads;
    GemmWorkspace ws;
    linear<W, Engine>(A, Wm, bias, C, accumulate, ws);
#endif
}

}  // namespace moe::cpu
