// lm/decoder/attention.hpp - causal grouped-query attention over a KvCache, tiled.
//
//   SequenceRows{slot, row0, rows, past}      one sequence of a batch step: its new tokens are
//                                             rows [row0, row0 + rows) of q / out and take the
//                                             positions past .. past + rows - 1 of cache slot `slot`
//   causal_attention(q, out, cache, layer, seqs, groups, scale, exec, scratch)
//
// For every sequence, KV head j and query tile (kQueryTile tokens), the g = groups query heads
// that share KV head j (heads j*g .. j*g+g-1, as repeat_kv orders them) are stacked as the rows
// of one matrix Q [tile * g, hd] and the keys are visited in blocks of kKeyBlock positions with
// an online softmax (running max and sum, rescaled per block; FlashAttention's recurrence), so
// the scratch is O(tile * block), never O(T^2), and one pass reads each key and value once per
// tile. S = Q K_blk^T and O += P V_blk are moe's GEMMs (moe::cpu::linear, keys read as an
// [out, in] weight and values as an [in, out] one, fp32 or bf16 from the cache, fp32
// accumulation), or for items of at most kDirectRows rows (decode steps) direct kernels that
// read the cache where it lies instead of packing it first; scores are scaled by `scale`
// (hd^-0.5) after the product, as HF's eager attention does, and key p is visible to the query
// at position t iff p <= t. A decode step is the same code with one token: Q holds the g heads.
// Work items (sequence, KV head, tile) are shared dynamically between threads; each is computed
// the same way whatever thread runs it, so results do not depend on the thread count.
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "lm/decoder/kv_cache.hpp"
#include "moe/backend/cpu/activation.hpp"
#include "moe/backend/cpu/arch.hpp"
#include "moe/backend/cpu/gemm.hpp"
#include "moe/backend/cpu/simd.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/tensor.hpp"

namespace moe::lm {

/// One sequence of a batch step.
struct SequenceRows {
    index_t slot = 0;  ///< its cache slot
    index_t row0 = 0;  ///< its first row in the step's activations
    index_t rows = 0;  ///< its new tokens
    index_t past = 0;  ///< positions already in the cache before this step
};

/// Per-worker scratch of causal_attention (reused across calls).
struct AttentionScratch {
    struct Worker {
        Scratch<float> q, s, o, m, l, kt;
        cpu::GemmWorkspace gemm;
    };
    std::vector<Worker> workers;
};

inline constexpr index_t kQueryTile = 32;  ///< query tokens per work item
inline constexpr index_t kKeyBlock = 256;  ///< key positions per online-softmax block
/// Items of at most this many query rows (a decode step: the g heads of one token) take the
/// direct kernels below instead of moe's GEMM, which packs each block of keys and values before
/// reading it: a decode step reads them once, and the packing was ~4 % of a Qwen2-0.5B step.
inline constexpr index_t kDirectRows = 16;

namespace detail {

#if !defined(MOE_NO_SIMD)
/// Whether the direct kernels take an item of R rows and head dim hd (SIMD, hd a whole number
/// of vectors).
inline bool direct_attention(index_t R, index_t hd) noexcept {
    if constexpr (cpu::kHasSimd) {
        constexpr auto L = static_cast<index_t>(xsimd::batch<float, cpu::simd_arch>::size);
        return R <= kDirectRows && hd % L == 0;
    }
    return false;
}

/// S[r, p] = Q[r, :] . K[p, :] for r < R, p < nb (S with row stride lds), L keys at a time: the
/// group's keys transposed into kt [hd][L] (as packing would), then each row's L scores one
/// vector, summed over d = 0 .. hd-1 in order; keys past the last whole group as zero-padded.
template <int Rows, class B>
MOE_ALWAYS_INLINE void scores_rows(const float* Q, index_t hd, const float* kt, float* out, index_t ldo) noexcept {
    constexpr auto L = static_cast<index_t>(B::size);
    B acc[Rows];
    for (int r = 0; r < Rows; ++r) acc[r] = B(0.0f);
    for (index_t d = 0; d < hd; ++d) {
        const B k = B::load_aligned(kt + d * L);
        for (int r = 0; r < Rows; ++r) acc[r] = cpu::arch::fmadd<cpu::simd_arch>(B(Q[r * hd + d]), k, acc[r]);
    }
    for (int r = 0; r < Rows; ++r) acc[r].store_unaligned(out + r * ldo);
}

template <class T>
void scores_direct(const float* Q, index_t R, index_t hd, const T* K, index_t nb, float* S, index_t lds,
                   Scratch<float>& buf) {
    if constexpr (cpu::kHasSimd) {
        using B = xsimd::batch<float, cpu::simd_arch>;
        constexpr auto L = static_cast<index_t>(B::size);
        float* kt = buf.get(static_cast<std::size_t>(hd * L + kDirectRows * L));  // [hd][L], then [R][L] scores
        float* tmp = kt + hd * L;
        for (index_t p0 = 0; p0 < nb; p0 += L) {
            const index_t n = std::min(L, nb - p0);
            if (p0 + 3 * L <= nb)  // the group after next (the cache is read once: from memory)
                cpu::detail::prefetch_lines(K + (p0 + 2 * L) * hd, L * hd * static_cast<index_t>(sizeof(T)));
            for (index_t c = 0; c < hd; c += L) {
                B t[L];
                for (index_t p = 0; p < L; ++p)
                    t[p] = p < n ? cpu::detail::load_row<cpu::simd_arch>(K + (p0 + p) * hd + c) : B(0.0f);
                cpu::arch::transpose_square<cpu::simd_arch>(t);  // t[i]: input c + i of every key
                for (index_t i = 0; i < L; ++i) t[i].store_aligned(kt + (c + i) * L);
            }
            const bool whole = n == L;  // else the scores go to tmp, the valid ones then to S
            float* out = whole ? S + p0 : tmp;
            const index_t ldo = whole ? lds : L;
            for (index_t r0 = 0; r0 < R; r0 += cpu::kSmallMRows)
                cpu::detail::with_small_rows<cpu::kSmallMRows>(std::min(cpu::kSmallMRows, R - r0), [&](auto rows) {
                    scores_rows<decltype(rows)::value, B>(Q + r0 * hd, hd, kt, out + r0 * ldo, ldo);
                });
            if (!whole)
                for (index_t r = 0; r < R; ++r) std::copy_n(tmp + r * L, n, S + r * lds + p0);
        }
    }
}

/// O[r, :] += sum_p P[r, p] V[p, :] for Rows rows and C vectors of columns (P with row stride
/// ldp): value row p read once, its C vectors into the Rows x C accumulators.
template <int Rows, int C, class T>
MOE_ALWAYS_INLINE void values_block(const float* P, index_t ldp, index_t nb, const T* V, index_t hd, float* O) noexcept {
    using B = xsimd::batch<float, cpu::simd_arch>;
    constexpr auto L = static_cast<index_t>(B::size);
    B acc[Rows][C];
    for (int r = 0; r < Rows; ++r)
        for (int j = 0; j < C; ++j) acc[r][j] = B(0.0f);
    for (index_t p = 0; p < nb; ++p) {
        if (p + 16 < nb)  // 16 rows ahead (the cache is read once: from memory)
            cpu::detail::prefetch_lines(V + (p + 16) * hd, C * L * static_cast<index_t>(sizeof(T)));
        B v[C];
        for (int j = 0; j < C; ++j) v[j] = cpu::detail::load_row<cpu::simd_arch>(V + p * hd + j * L);
        for (int r = 0; r < Rows; ++r) {
            const B w(P[r * ldp + p]);
            for (int j = 0; j < C; ++j) acc[r][j] = cpu::arch::fmadd<cpu::simd_arch>(w, v[j], acc[r][j]);
        }
    }
    for (int r = 0; r < Rows; ++r)
        for (int j = 0; j < C; ++j)
            (B::load_unaligned(O + r * hd + j * L) + acc[r][j]).store_unaligned(O + r * hd + j * L);
}

/// values_block over R rows (4 at a time) and hd columns (4 vectors at a time).
template <class T>
void values_direct(const float* P, index_t ldp, index_t R, index_t nb, const T* V, index_t hd, float* O) noexcept {
    if constexpr (cpu::kHasSimd) {
        constexpr auto L = static_cast<index_t>(xsimd::batch<float, cpu::simd_arch>::size);
        for (index_t r0 = 0; r0 < R; r0 += 4)
            cpu::detail::with_small_rows<4>(std::min<index_t>(4, R - r0), [&](auto rows) {
                constexpr int Rows = decltype(rows)::value;
                for (index_t c = 0; c < hd; c += 4 * L)
                    cpu::detail::with_small_rows<4>(std::min<index_t>(4, (hd - c) / L), [&](auto cols) {
                        values_block<Rows, decltype(cols)::value>(P + r0 * ldp, ldp, nb, V + c, hd, O + r0 * hd + c);
                    });
            });
    }
}
#else
inline bool direct_attention(index_t, index_t) noexcept { return false; }
template <class T>
void scores_direct(const float*, index_t, index_t, const T*, index_t, float*, index_t, Scratch<float>&) {}
template <class T>
void values_direct(const float*, index_t, index_t, index_t, const T*, index_t, float*) noexcept {}
#endif

}  // namespace detail

/// out[rows, nH * hd] = softmax(q k^T * scale, causal) v for every sequence of the step; q is
/// [rows, nH * hd] (after the rotary embedding), the step's keys and values already written to
/// `cache` at layer `layer`. nH = cache.kv_heads() * groups.
template <class T>
void causal_attention(ConstMatrixRef<float> q, MatrixRef<float> out, const KvCache<T>& cache, index_t layer,
                      std::span<const SequenceRows> seqs, index_t groups, float scale, const Exec& ex,
                      AttentionScratch& scratch) {
    const index_t nkv = cache.kv_heads(), hd = cache.head_dim(), g = groups;
    check<ShapeError>(q.cols == nkv * g * hd && out.cols == q.cols && out.rows == q.rows, "causal_attention",
                      "q [", q.rows, ", ", q.cols, "] / out [", out.rows, ", ", out.cols, "] do not hold ", nkv * g,
                      " heads of ", hd);
    struct Item {
        index_t seq, head, t0, t1;
    };
    std::vector<Item> items;
    for (index_t s = 0; s < static_cast<index_t>(seqs.size()); ++s)
        for (index_t j = 0; j < nkv; ++j)
            for (index_t t0 = 0; t0 < seqs[static_cast<std::size_t>(s)].rows; t0 += kQueryTile)
                items.push_back({s, j, t0, std::min(seqs[static_cast<std::size_t>(s)].rows, t0 + kQueryTile)});
    const index_t n_items = static_cast<index_t>(items.size());
    const int nw = parallel_workers(ex, n_items, 1);
    if (static_cast<int>(scratch.workers.size()) < nw) scratch.workers.resize(static_cast<std::size_t>(nw));

    parallel_chunks(ex, n_items, 1, [&](index_t b, index_t e, int worker) {
        AttentionScratch::Worker& w = scratch.workers[static_cast<std::size_t>(worker)];
        for (index_t it = b; it < e; ++it) {
            const Item item = items[static_cast<std::size_t>(it)];
            const SequenceRows& sq = seqs[static_cast<std::size_t>(item.seq)];
            const index_t nt = item.t1 - item.t0, R = nt * g;
            float* Q = w.q.get(static_cast<std::size_t>(R * hd));
            float* S = w.s.get(static_cast<std::size_t>(R * kKeyBlock));
            float* O = w.o.get(static_cast<std::size_t>(R * hd));
            float* M = w.m.get(static_cast<std::size_t>(R));
            float* Lsum = w.l.get(static_cast<std::size_t>(R));
            for (index_t t = 0; t < nt; ++t)
                for (index_t h = 0; h < g; ++h)
                    std::copy_n(q.row(sq.row0 + item.t0 + t) + (item.head * g + h) * hd, hd, Q + (t * g + h) * hd);
            std::fill(O, O + R * hd, 0.0f);
            std::fill(M, M + R, -std::numeric_limits<float>::infinity());
            std::fill(Lsum, Lsum + R, 0.0f);
            const T* K = cache.keys(layer, sq.slot, item.head);
            const T* V = cache.values(layer, sq.slot, item.head);
            const index_t kend = sq.past + item.t1;  // the last query sees keys [0, kend)
            const bool direct = detail::direct_attention(R, hd);
            for (index_t k0 = 0; k0 < kend; k0 += kKeyBlock) {
                const index_t nb = std::min(kKeyBlock, kend - k0);
                const MatrixRef<float> Sb(S, R, nb, nb);
                if (direct)
                    detail::scores_direct(Q, R, hd, K + k0 * hd, nb, S, nb, w.kt);
                else
                    cpu::linear<T>(ConstMatrixRef<float>(Q, R, hd, hd),
                                   WeightMatrix<T>(K + k0 * hd, nb, hd, hd, WeightLayout::out_in), nullptr, Sb, false,
                                   w.gemm);
                for (index_t r = 0; r < R; ++r) {
                    const index_t limit = sq.past + item.t0 + r / g;  // this query's position
                    float* srow = Sb.row(r);
                    const index_t visible = std::clamp<index_t>(limit - k0 + 1, 0, nb);
                    float mx = -std::numeric_limits<float>::infinity();
                    for (index_t c = 0; c < visible; ++c) {
                        srow[c] *= scale;
                        mx = std::max(mx, srow[c]);
                    }
                    if (visible == 0) {  // every key of the block lies in this query's future
                        std::fill(srow, srow + nb, 0.0f);
                        continue;
                    }
                    const float m_new = std::max(M[r], mx);
                    const float alpha = std::exp(M[r] - m_new);  // 0 on the first visible block
                    const float sum = cpu::exp_shift_sum(srow, visible, m_new);
                    std::fill(srow + visible, srow + nb, 0.0f);
                    Lsum[r] = Lsum[r] * alpha + sum;
                    M[r] = m_new;
                    if (alpha != 1.0f)
                        for (index_t c = 0; c < hd; ++c) O[r * hd + c] *= alpha;
                }
                if (direct)
                    detail::values_direct(S, nb, R, nb, V + k0 * hd, hd, O);
                else
                    cpu::linear<T>(ConstMatrixRef<float>(S, R, nb, nb), WeightMatrix<T>::in_out(V + k0 * hd, nb, hd),
                                   nullptr, MatrixRef<float>(O, R, hd, hd), true, w.gemm);
            }
            for (index_t t = 0; t < nt; ++t)
                for (index_t h = 0; h < g; ++h) {
                    const index_t r = t * g + h;
                    const float inv = 1.0f / Lsum[r];
                    float* dst = out.row(sq.row0 + item.t0 + t) + (item.head * g + h) * hd;
                    for (index_t c = 0; c < hd; ++c) dst[c] = O[r * hd + c] * inv;
                }
        }
    });
}

}  // namespace moe::lm

MOE_SIMD_DIAGNOSTICS_POP
