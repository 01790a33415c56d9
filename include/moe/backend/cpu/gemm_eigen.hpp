// moe/backend/cpu/gemm_eigen.hpp - the EigenGemm engine of moe::cpu::linear: Eigen's GEMM kernel
// (general_matrix_matrix_product), single-threaded; 16-bit weights are widened panel by panel
// (panels of output features that fit in L2), 1-4 rows take the row-dot kernels.
//
// Scalar builds (MOE_NO_SIMD, or a target xsimd does not know) get it from gemm.hpp, as their
// default engine; a SIMD build that asks for linear<W, EigenGemm> includes this header itself.
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH  // Eigen's AVX-512 packets (GCC 12 bug 105593; -march=native scalar builds)

#include <algorithm>
#include <type_traits>

#include <Eigen/Core>

#include "moe/backend/cpu/gemm.hpp"

static_assert(EIGEN_WORLD_VERSION == 3 && EIGEN_MAJOR_VERSION >= 3, "moe needs Eigen 3.3 or 3.4");

namespace moe::cpu::detail {

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

template <>
struct EngineBody<EigenGemm> {
    template <WeightType W>
    static void run(ConstMatrixRef<float> A, WeightMatrix<W> Wm, MatrixRef<float> C, bool in_out, GemmWorkspace& ws) {
        const index_t M = A.rows, K = A.cols, N = Wm.out;
        if constexpr (std::is_same_v<W, float>) {
            if (in_out) gemm_f32<WeightLayout::in_out>(M, N, K, A.data, A.stride, Wm.data, Wm.ld, C.data, C.stride);
            else gemm_f32(M, N, K, A.data, A.stride, Wm.data, Wm.ld, C.data, C.stride);
        } else {
            if (M <= kSmallMRowsF32) {
                gemm_small_m(M, N, K, A.data, A.stride, Wm.data, Wm.ld, C.data, C.stride, in_out);
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
                    gemm_f32<WeightLayout::in_out>(M, nb, K, A.data, A.stride, buf, nb, C.data + n0, C.stride);
                } else {
                    widen(Wm.data + n0 * Wm.ld, nb, K, Wm.ld, buf);
                    gemm_f32(M, nb, K, A.data, A.stride, buf, K, C.data + n0, C.stride);
                }
            }
        }
    }
};

}  // namespace moe::cpu::detail

MOE_SIMD_DIAGNOSTICS_POP
