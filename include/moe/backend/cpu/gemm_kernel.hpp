// moe/backend/cpu/gemm_kernel.hpp - a packed, register-blocked GEMM for C += A . W^T.
//
// BLIS-style loops around an MR x NR micro-kernel written once with xsimd batches
// (NR = 2 SIMD vectors; MR = 6 on 16-register ISAs, 14 with AVX-512's 32 registers):
//
//   for n-block (nc columns of C)            pack W rows n..n+nc, k-block, into NR-wide panels
//     for k-block (kc)                       (16-bit weights are widened here, once per panel)
//       for m in steps of MR                 micro-kernel: C[MR, NR] += A[MR, kc] . Wp[kc, NR]
//         for n-panel in steps of NR
//
// A is read in place (rows of activations, broadcast one element at a time); W, stored [out, in]
// or [in, out], is packed (transposed in registers, or copied row by row). Every
// element of C is summed over k in the same order whatever the blocking and the thread split,
// so results are bit-identical for any number of threads.
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "moe/backend/cpu/arch.hpp"
#include "moe/backend/cpu/simd.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/tensor.hpp"

namespace moe::cpu {

#if !defined(MOE_NO_SIMD)
namespace detail {

template <class A>
struct Blocking {
    using B = xsimd::batch<float, A>;
    static constexpr int L = static_cast<int>(B::size);
    static constexpr int NR = 2 * L;
    // Registers: MR x 2 accumulators + 2 for W + 1 broadcast.
    static constexpr int MR = std::is_base_of_v<xsimd::avx512f, A> ? 14 : 6;
    static constexpr index_t KC = 256;  // a packed panel of W: KC x NR floats stays in L1
    static constexpr index_t NC = 512;  // packed W block: KC x NC floats stays in L2
};

/// L consecutive elements of a weight row, widened to fp32.
template <class A, class W>
MOE_ALWAYS_INLINE xsimd::batch<float, A> load_row(const W* p) {
    if constexpr (std::is_same_v<W, float>) return xsimd::batch<float, A>::load_unaligned(p);
    else if constexpr (std::is_same_v<W, bf16>) return arch::load_bf16<A>(reinterpret_cast<const std::uint16_t*>(p));
    else {
        alignas(64) float t[xsimd::batch<float, A>::size];
        for (std::size_t j = 0; j < xsimd::batch<float, A>::size; ++j) t[j] = to_float(p[j]);
        return xsimd::batch<float, A>::load_aligned(t);
    }
}

/// Packs rows [n0, n0 + nb) of W (k range [k0, k0 + kb)) into panels of NR: panel p holds
/// Wp[k][j] = W[n0 + p * NR + j][k0 + k], zero-padded past nb. Full L x L tiles go through
/// register transposes; edges element by element.
template <class A, class W>
inline void pack_w(const W* Wm, index_t ldw, index_t n0, index_t nb, index_t k0, index_t kb, float* dst) {
    using B = xsimd::batch<float, A>;
    constexpr int L = Blocking<A>::L;
    constexpr int NR = Blocking<A>::NR;
    for (index_t p = 0; p < nb; p += NR) {
        const index_t cols = std::min<index_t>(NR, nb - p);
        float* panel = dst + (p / NR) * kb * NR;
        index_t j0 = 0;
        for (; j0 + L <= cols; j0 += L) {  // L rows of W at a time
            const W* src = Wm + (n0 + p + j0) * ldw + k0;
            index_t k = 0;
            for (; k + L <= kb; k += L) {
                B t[L];
                static_for<L>([&](auto r) { t[r] = load_row<A>(src + r * ldw + k); });
                arch::transpose_square<A>(t);
                static_for<L>([&](auto c) { t[c].store_unaligned(panel + (k + c) * NR + j0); });
            }
            for (; k < kb; ++k)
                for (index_t r = 0; r < L; ++r) panel[k * NR + j0 + r] = to_float(src[r * ldw + k]);
        }
        for (index_t j = j0; j < cols; ++j) {
            const W* src = Wm + (n0 + p + j) * ldw + k0;
            for (index_t k = 0; k < kb; ++k) panel[k * NR + j] = to_float(src[k]);
        }
        for (index_t j = cols; j < NR; ++j)
            for (index_t k = 0; k < kb; ++k) panel[k * NR + j] = 0.0f;
    }
}

/// The same panels from an [in, out] (K x N, row stride ldw) weight: panel p holds
/// Wp[k][j] = W[k0 + k][n0 + p * NR + j]. Rows of W are already panel rows: plain copies
/// (16-bit weights widened), no transposes. The packed values equal pack_w's for the same
/// matrix, so both layouts give bit-identical products.
template <class A, class W>
inline void pack_w_in_out(const W* Wm, index_t ldw, index_t n0, index_t nb, index_t k0, index_t kb, float* dst) {
    constexpr int L = Blocking<A>::L;
    constexpr int NR = Blocking<A>::NR;
    for (index_t p = 0; p < nb; p += NR) {
        const index_t cols = std::min<index_t>(NR, nb - p);
        float* panel = dst + (p / NR) * kb * NR;
        const W* src = Wm + k0 * ldw + n0 + p;
        if (cols == NR) {
            for (index_t k = 0; k < kb; ++k) {
                load_row<A>(src + k * ldw).store_unaligned(panel + k * NR);
                load_row<A>(src + k * ldw + L).store_unaligned(panel + k * NR + L);
            }
        } else {
            for (index_t k = 0; k < kb; ++k) {
                index_t j = 0;
                for (; j < cols; ++j) panel[k * NR + j] = to_float(src[k * ldw + j]);
                for (; j < NR; ++j) panel[k * NR + j] = 0.0f;
            }
        }
    }
}

/// c[ROWS, cols] += the accumulators of a micro-kernel (two vectors of L per row; cols <= 2L).
template <class B, int ROWS>
MOE_ALWAYS_INLINE void add_tile(const B* acc0, const B* acc1, float* c, index_t ldc, index_t cols) {
    constexpr index_t L = static_cast<index_t>(B::size);
    if (cols == 2 * L) {
        static_for<ROWS>([&](auto i) {
            float* ci = c + i * ldc;
            (B::load_unaligned(ci) + acc0[i]).store_unaligned(ci);
            (B::load_unaligned(ci + L) + acc1[i]).store_unaligned(ci + L);
        });
    } else {
        alignas(64) float tmp[2 * L];
        static_for<ROWS>([&](auto i) {
            acc0[i].store_aligned(tmp);
            acc1[i].store_aligned(tmp + L);
            float* ci = c + i * ldc;
            for (index_t j = 0; j < cols; ++j) ci[j] += tmp[j];
        });
    }
}

/// C[rows, NR] += A[rows, kb] . Wp[kb, NR]; `cols` <= NR columns of C are stored.
template <class A, int ROWS>
MOE_ALWAYS_INLINE void micro_kernel(index_t kb, const float* a, index_t lda, const float* wp, float* c, index_t ldc,
                                    index_t cols) {
    using B = xsimd::batch<float, A>;
    constexpr int L = Blocking<A>::L;
    B acc0[ROWS], acc1[ROWS];
    static_for<ROWS>([&](auto i) { acc0[i] = acc1[i] = B(0.0f); });
    for (index_t k = 0; k < kb; ++k) {
        const B w0 = B::load_unaligned(wp + k * 2 * L);
        const B w1 = B::load_unaligned(wp + k * 2 * L + L);
        static_for<ROWS>([&](auto i) {
            const B ai(a[i * lda + k]);
            acc0[i] = arch::fmadd<A>(ai, w0, acc0[i]);
            acc1[i] = arch::fmadd<A>(ai, w1, acc1[i]);
        });
    }
    add_tile<B, ROWS>(acc0, acc1, c, ldc, cols);
}

template <class A, int ROWS = Blocking<A>::MR>
MOE_ALWAYS_INLINE void micro_kernel_rows(index_t rows, index_t kb, const float* a, index_t lda, const float* wp,
                                         float* c, index_t ldc, index_t cols) {
    if constexpr (ROWS > 0) {
        if (rows == ROWS) return micro_kernel<A, ROWS>(kb, a, lda, wp, c, ldc, cols);
        micro_kernel_rows<A, ROWS - 1>(rows, kb, a, lda, wp, c, ldc, cols);
    }
}

}  // namespace detail

/// C[M, N] += A[M, K] . W^T with the packed kernel, W of N outputs and K inputs stored either
/// way (WeightMatrix::layout); `pack` must hold KC x NC floats (packed_gemm_workspace()).
/// Single-threaded.
template <class W>
inline void packed_gemm(index_t M, const float* A, index_t lda, WeightMatrix<W> w, float* C, index_t ldc, float* pack) {
    using Bk = detail::Blocking<simd_arch>;
    constexpr index_t MR = Bk::MR, NR = Bk::NR;
    const index_t N = w.out, K = w.in;
    for (index_t n0 = 0; n0 < N; n0 += Bk::NC) {
        const index_t nb = std::min(Bk::NC, N - n0);
        for (index_t k0 = 0; k0 < K; k0 += Bk::KC) {
            const index_t kb = std::min(Bk::KC, K - k0);
            if (w.layout == WeightLayout::out_in) detail::pack_w<simd_arch>(w.data, w.ld, n0, nb, k0, kb, pack);
            else detail::pack_w_in_out<simd_arch>(w.data, w.ld, n0, nb, k0, kb, pack);
            for (index_t m0 = 0; m0 < M; m0 += MR) {
                const index_t rows = std::min(MR, M - m0);
                for (index_t p = 0; p < nb; p += NR)
                    detail::micro_kernel_rows<simd_arch>(rows, kb, A + m0 * lda + k0, lda, pack + (p / NR) * kb * NR,
                                                              C + m0 * ldc + n0 + p, ldc, std::min(NR, nb - p));
            }
        }
    }
}

/// C[M, N] += A[M, K] . W[N, K]^T ([out, in] weights).
template <class W>
inline void packed_gemm(index_t M, index_t N, index_t K, const float* A, index_t lda, const W* Wm, index_t ldw,
                        float* C, index_t ldc, float* pack) {
    packed_gemm(M, A, lda, WeightMatrix<W>(Wm, N, K, ldw, WeightLayout::out_in), C, ldc, pack);
}

/// Floats of packing space packed_gemm needs.
constexpr std::size_t packed_gemm_workspace() {
    using Bk = detail::Blocking<simd_arch>;
    return static_cast<std::size_t>(Bk::KC * (Bk::NC + Bk::NR));
}
#endif

}  // namespace moe::cpu

MOE_SIMD_DIAGNOSTICS_POP
