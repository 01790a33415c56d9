// moe/expert/grouped.hpp - grouped execution of experts over a RoutingPlan.
//
//   1. permute: xp[s] = x[slot_to_token[s]] so that each expert's tokens are one contiguous block
//   2. compute (grouped_compute): every non-empty expert runs its FFN over its block (one GEMM
//      per weight when single-threaded; with several threads large blocks are split in row tiles
//      so that all threads have work, and when that still leaves fewer blocks than threads, as
//      in a decode step routed to one expert, a ThreadedGroupedExpertSet runs them one at a time
//      on all threads), writing yp[s]
//   3. combine (grouped_combine): out[t] (+)= sum_j weight(t, j) * yp[token_to_slot(t, j)] over
//      kept choices
//
// Each step is parallel (moe::parallel_chunks) over independent rows or row tiles, so the result
// does not depend on the thread count. Any type with `expert_forward(e, x_block, y_block,
// scratch)` can use it. grouped_forward runs the three steps in one process; expert parallelism
// (moe/dist/expert_parallel.hpp) runs steps 2 and 3 with the rows sent to other processes
// between them, so both compute the same values.
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include <algorithm>
#include <cstring>
#include <span>
#include <vector>

#include "moe/backend/cpu/arch.hpp"
#include "moe/backend/cpu/gemm.hpp"
#include "moe/backend/cpu/simd.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/plan.hpp"
#include "moe/core/tensor.hpp"

namespace moe {

/// Whether an expert container overwrites its output or adds to it.
enum class Combine : std::uint8_t { overwrite, add };

/// Per-worker scratch of one expert computation.
struct ExpertScratch {
    Scratch<float> h;         ///< hidden activations [rows, ffn]
    Scratch<float> h2;        ///< second hidden buffer (GLU up projection)
    cpu::GemmWorkspace gemm;  ///< widened weight panels
    void share(ExpertScratch& o) {
        h.share(o.h);
        h2.share(o.h2);
        gemm.share(o.gemm);
    }
};

/// Buffers of grouped execution, owned by the expert container.
struct GroupedWorkspace {
    Scratch<float> xp, yp;
    std::vector<ExpertScratch> workers;  ///< one per worker of the compute step
    ExpertScratch& worker(int i) {
        if (static_cast<int>(workers.size()) <= i) workers.resize(static_cast<std::size_t>(i) + 1);
        return workers[static_cast<std::size_t>(i)];
    }
    /// Use o's buffers from now on (expert containers of layers that run one after the other);
    /// per-worker buffers are shared for up to max_threads() workers.
    void share(GroupedWorkspace& o) {
        xp.share(o.xp);
        yp.share(o.yp);
        const int n = std::max({max_threads(), static_cast<int>(workers.size()), static_cast<int>(o.workers.size())});
        for (int i = 0; i < n; ++i) worker(i).share(o.worker(i));
    }
};

namespace detail {
/// Rows per task of the permute and combine steps (copies and multiply-adds of whole rows).
inline constexpr index_t kGroupedRowsPerTask = 64;
}  // namespace detail

/// A GroupedExpertSet that can also run one expert on several threads: grouped_compute uses it
/// when a step has fewer blocks than threads (a decode step of one sequence routed to one expert:
/// RSUniVLM's G-MoE, top-1 layers), where one block per thread would leave threads idle. Optional.
///
/// Promises:
///  * expert_forward(e, x, y, scratch, ex) sets y to the same bits as expert_forward(e, x, y,
///    scratch), whatever ex's thread count, using ex's threads inside; calls on one set must not
///    overlap (it may use the set's own buffers besides `scratch`).
template <class X>
concept ThreadedGroupedExpertSet = requires(const X& cx, index_t e, ConstMatrixRef<float> in, MatrixRef<float> out,
                                            ExpertScratch& scratch, const Exec& ex) {
    cx.expert_forward(e, in, out, scratch);  // GroupedExpertSet's (moe/expert/concepts.hpp)
    cx.expert_forward(e, in, out, scratch, ex);
};

/// Step 2 of grouped execution: for every block b, expert `expert_of(b)` over rows
/// `offsets[b] .. offsets[b+1]-1` of xp ([offsets.back(), d]) into the same rows of yp. The
/// blocks of grouped_forward are the plan's experts (expert_of(b) = b); expert parallelism
/// (moe/dist/) runs one block per (source rank, local expert). A row's result depends only on
/// its block (its rows and their order), never on the thread count.
template <class X, class ExpertOf>
inline void grouped_compute(const X& experts, std::span<const std::int32_t> offsets, ExpertOf expert_of,
                            const float* xp, float* yp, GroupedWorkspace& ws, const Exec& ex) {
    const index_t d = experts.hidden_size();
    const auto blocks = static_cast<index_t>(offsets.empty() ? 0 : offsets.size() - 1);
    const index_t S = blocks == 0 ? 0 : offsets.back();
    const int threads = ex.threads();
    // Work items are (expert, first row, row count), one task each.
    struct Item {
        index_t e, r0, n;
    };
    std::vector<Item> items;
    index_t tile = S;
    // Tiles are multiples of 16 rows so each row takes the same GEMM micro-kernel path whatever
    // the thread count (bit-identical results); a last piece of 1-8 rows joins the tile before
    // it, as 1-8 rows of 16-bit weights may take a small-M kernel (another summation order) and an
    // expert's rows must take it only when the expert has no more.
    if (threads > 1) tile = (std::max<index_t>(32, (S + 2 * threads - 1) / (2 * threads)) + 15) / 16 * 16;
    for (index_t b = 0; b < blocks; ++b) {
        const index_t end = offsets[static_cast<std::size_t>(b) + 1];
        for (index_t r = offsets[static_cast<std::size_t>(b)]; r < end;) {
            const index_t left = end - r;
            const index_t n = left <= tile + cpu::kSmallMRows ? left : tile;
            items.push_back({static_cast<index_t>(expert_of(b)), r, n});
            r += n;
        }
    }
    const auto run = [&](const Item& it, ExpertScratch& scratch) {
        experts.expert_forward(it.e, ConstMatrixRef<float>(xp + it.r0 * d, it.n, d),
                               MatrixRef<float>(yp + it.r0 * d, it.n, d), scratch);
    };
    const auto n_items = static_cast<index_t>(items.size());
    if constexpr (ThreadedGroupedExpertSet<X>) {
        // Fewer items than threads (a decode step's one or two tokens on fewer experts than
        // threads): one item at a time on all threads, the same bits as one item per thread.
        if (threads > 1 && n_items < threads) {
            for (const Item& it : items)
                experts.expert_forward(it.e, ConstMatrixRef<float>(xp + it.r0 * d, it.n, d),
                                       MatrixRef<float>(yp + it.r0 * d, it.n, d), ws.worker(0), ex);
            return;
        }
    }
    const int workers = parallel_workers(ex, n_items, 1);
    for (int i = 0; i < workers; ++i) ws.worker(i);
    parallel_chunks(ex, n_items, 1, [&](index_t b, index_t e, int w) {
        for (index_t i = b; i < e; ++i) run(items[static_cast<std::size_t>(i)], ws.workers[static_cast<std::size_t>(w)]);
    });
}

/// Step 3 of grouped execution: out[t] (=, or +=) sum over t's kept choices j, in choice order
/// j = 0 .. k-1, of plan.weights[t, j] * yp[token_to_slot(t, j)] (yp: [plan.num_slots(), d]).
inline void grouped_combine(const RoutingPlan& plan, const float* yp, MatrixRef<float> out, Combine combine,
                            const Exec& ex) {
    const index_t d = out.cols, k = plan.k;
    const auto combine_row = [&](index_t t) {
        float* o = out.row(t);
        if (combine == Combine::overwrite) std::fill(o, o + d, 0.0f);
        for (index_t j = 0; j < k; ++j) {
            const auto c = static_cast<std::size_t>(t * k + j);
            const std::int32_t s = plan.token_to_slot[c];
            if (s < 0) continue;
            const float w = plan.weights[c];
            const float* y = yp + static_cast<index_t>(s) * d;
            index_t i = 0;
#if !defined(MOE_NO_SIMD)
            if constexpr (cpu::kHasSimd) {
                using B = xsimd::batch<float, cpu::simd_arch>;
                constexpr index_t L = static_cast<index_t>(B::size);
                const B wb(w);
                for (; i + L <= d; i += L)
                    cpu::arch::fmadd<cpu::simd_arch>(wb, B::load_unaligned(y + i), B::load_unaligned(o + i))
                        .store_unaligned(o + i);
            }
#endif
            for (; i < d; ++i) o[i] = cpu::madd(w, y[i], o[i]);
        }
    };
    parallel_for(ex, out.rows, combine_row, detail::kGroupedRowsPerTask);
}

/// Checks that x, out and the plan fit an expert set of E experts taking d features
/// (ShapeError naming `where` otherwise).
inline void check_grouped_shapes(ConstMatrixRef<float> x, const RoutingPlan& plan, MatrixRef<float> out, index_t E,
                                 index_t d, const char* where) {
    check<ShapeError>(x.cols == d, where, "input has ", x.cols, " features, the experts take ", d);
    check<ShapeError>(out.rows == x.rows && out.cols == d, where, "output is [", out.rows, ", ", out.cols,
                      "], expected [", x.rows, ", ", d, "]");
    check<ShapeError>(plan.num_tokens == x.rows, where, "plan routes ", plan.num_tokens, " tokens, input has ", x.rows);
    check<ShapeError>(plan.num_experts == E, where, "plan is for ", plan.num_experts, " experts, the container holds ",
                      E);
}

/// Runs `experts.expert_forward` over the plan's blocks and combines the weighted outputs.
template <class X>
inline void grouped_forward(const X& experts, ConstMatrixRef<float> x, const RoutingPlan& plan, MatrixRef<float> out,
                            Combine combine, GroupedWorkspace& ws, const Exec& ex) {
    const index_t d = experts.hidden_size();
    check_grouped_shapes(x, plan, out, experts.num_experts(), d, "moe::grouped_forward");
    const index_t S = plan.num_slots();
    float* xp = ws.xp.get(static_cast<std::size_t>(std::max<index_t>(S * d, 1)));
    float* yp = ws.yp.get(static_cast<std::size_t>(std::max<index_t>(S * d, 1)));

    // 1. permute
    const auto permute_row = [&](index_t s) {
        std::memcpy(xp + s * d, x.row(plan.slot_to_token[static_cast<std::size_t>(s)]),
                    static_cast<std::size_t>(d) * sizeof(float));
    };
    parallel_for(ex, S, permute_row, detail::kGroupedRowsPerTask);
    // 2. compute, one block per expert
    grouped_compute(experts, plan.offsets, [](index_t e) { return e; }, xp, yp, ws, ex);
    // 3. combine, in choice order j = 0 .. k-1 for every token
    grouped_combine(plan, yp, out, combine, ex);
}

}  // namespace moe

MOE_SIMD_DIAGNOSTICS_POP
