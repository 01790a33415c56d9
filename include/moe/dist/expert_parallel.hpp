// moe/dist/expert_parallel.hpp - expert parallelism over MPI: ExpertParallel<X>, an expert set
// whose E experts are spread over the ranks of a communicator (needs <mpi.h>: not in moe.hpp).
//
// Every rank holds the router (small) and its own experts (a local GroupedExpertSet X holding
// placement.experts_of(rank), ascending), routes its own tokens, and calls forward with its plan
// over all E experts. One forward is, on every rank:
//
//   1. header    MPI_Alltoallv of ints: to each rank p, a status flag and this rank's slot count
//                for each of p's experts (the plan's counts). A rank whose inputs are wrong sets
//                the flag, so every rank learns of it and all throw RankError (no rank is left
//                waiting in a collective).
//   2. dispatch  MPI_Alltoallv of the activation rows (fp32, one MPI datatype = one row of d
//                floats): to rank p, the slots of p's experts, expert by expert in ascending
//                order, each expert's rows in the plan's (ascending token) order. No per-row
//                metadata travels: the counts of step 1 say which rows belong to which expert,
//                and the sender remembers where each of its slots went.
//   3. compute   each rank runs its experts over what it received, one block per (source rank,
//                local expert): exactly the rows the single-process container would give that
//                expert for the source rank's tokens, in the same order (grouped_compute).
//   4. return    MPI_Alltoallv of the expert outputs, the reverse of step 2.
//   5. combine   on the sender, out[t] (+)= sum_j w(t, j) * y[slot(t, j)] in choice order: the
//                single-process container's combine step (grouped_combine), on the same values.
//
// So each rank's output for its tokens is bit for bit what the single-process layer computes on
// the same weights for those tokens alone (capacity and dropping are decided by the rank's own
// router over its own tokens, as the single-process layer does), for any thread count.
//
// ExpertParallel<X> is an ExpertSet, a ThreadedExpertSet and a CollectiveExpertSet, so it goes
// wherever an expert set goes: MoELayer<R, ExpertParallel<X>> (and so the decoder's MoE FFN
// slot), HierarchicalMoE's modal and collaborative groups. Its forward is a collective: every
// rank calls it, in the same order (SPMD), also with zero tokens (RoutedGroup::clear does that
// for a group a batch does not reach). parameters() counts this rank's experts only.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/plan.hpp"
#include "moe/core/tensor.hpp"
#include "moe/dist/comm.hpp"
#include "moe/dist/placement.hpp"
#include "moe/backend/cpu/activation.hpp"
#include "moe/expert/concepts.hpp"
#include "moe/expert/ffn.hpp"
#include "moe/expert/grouped.hpp"

namespace moe::dist {

/// What one forward call moved between this rank and the others (rows to or from itself are
/// not counted: they are copied in memory by MPI).
struct Traffic {
    index_t rows_sent = 0;          ///< activation rows dispatched to other ranks
    index_t rows_received = 0;      ///< activation rows received from other ranks (to compute)
    std::int64_t bytes_sent = 0;    ///< all bytes sent to other ranks: headers, rows, returned outputs
    std::int64_t bytes_received = 0;
};

template <GroupedExpertSet X>
class ExpertParallel {
public:
    using local_type = X;
    /// CollectiveExpertSet: forward is a collective over the communicator.
    static constexpr bool collective_forward = true;

    ExpertParallel() = default;
    /// A collective over comm (every rank constructs its own, together). `local` holds this
    /// rank's experts, placement.experts_of(rank) in ascending order. Every rank throws
    /// RankError when any rank's arguments are wrong (placement over another rank count, a local
    /// expert count that is not its share) or when the ranks disagree on E or the width d.
    /// comm is used, not owned: it must outlive this object.
    ExpertParallel(MPI_Comm comm, Placement placement, X local)
        : comm_(comm), placement_(std::move(placement)), local_(std::move(local)) {
        const char* w = "dist::ExpertParallel";
        rank_ = rank_of(comm_);
        size_ = size_of(comm_);
        on_all_ranks(comm_, w, [&] {
            check<ConfigError>(placement_.num_ranks() == size_, w, "the placement is over ", placement_.num_ranks(),
                               " ranks, the communicator has ", size_);
            const auto n = static_cast<index_t>(placement_.experts_of(rank_).size());
            check<ShapeError>(local_.num_experts() == n, w, "rank ", rank_, "'s local expert set holds ",
                              local_.num_experts(), " experts, the placement gives it ", n);
        });
        // Every rank must agree on E and d (its own experts and its router's).
        long long mine[4] = {placement_.num_experts(), -placement_.num_experts(), local_.hidden_size(),
                             -local_.hidden_size()};
        long long all[4] = {};
        mpi_check(MPI_Allreduce(mine, all, 4, MPI_LONG_LONG, MPI_MIN, comm_), w, "MPI_Allreduce");
        check<ConfigError>(all[0] == -all[1], w, "the ranks' placements disagree on the expert count (", all[0],
                           " to ", -all[1], ")");
        check<ShapeError>(all[2] == -all[3], w, "the ranks' experts disagree on the width d (", all[2], " to ",
                          -all[3], ")");
    }

    index_t num_experts() const noexcept { return placement_.num_experts(); }
    index_t hidden_size() const noexcept { return local_.hidden_size(); }
    /// The parameters this rank holds (its experts').
    index_t parameters() const noexcept { return local_.parameters(); }
    const Placement& placement() const noexcept { return placement_; }
    const X& local() const noexcept { return local_; }
    X& local() noexcept { return local_; }
    MPI_Comm comm() const noexcept { return comm_; }
    int rank() const noexcept { return rank_; }
    /// What the last forward call moved between this rank and the others.
    const Traffic& traffic() const noexcept { return traffic_; }

    /// out (+)= sum over each token's kept choices of weight * expert(x), the experts running
    /// on their ranks. A collective: every rank calls it (see the file comment).
    void forward(ConstMatrixRef<float> x, const RoutingPlan& plan, MatrixRef<float> out,
                 Combine combine = Combine::overwrite, const Exec& ex = Exec{}) {
        const char* w = "dist::ExpertParallel::forward";
        check<ConfigError>(comm_ != MPI_COMM_NULL, w, "a default-constructed ExpertParallel has no communicator");
        const index_t d = hidden_size(), E = num_experts();
        const int P = size_;
        const auto nl = static_cast<index_t>(placement_.experts_of(rank_).size());

        // 1. header: [status, counts of p's experts] to every rank p.
        std::string error;
        try {
            check_grouped_shapes(x, plan, out, E, d, w);
        } catch (const std::exception& e) {
            error = e.what();
        }
        const bool bad = !error.empty();
        std::vector<int> scount(static_cast<std::size_t>(P)), sdispl(static_cast<std::size_t>(P));
        std::vector<int> rcount(static_cast<std::size_t>(P)), rdispl(static_cast<std::size_t>(P));
        std::vector<int> shead, rhead(static_cast<std::size_t>(P * (nl + 1)));
        for (int p = 0; p < P; ++p) {
            const auto& theirs = placement_.experts_of(p);
            sdispl[static_cast<std::size_t>(p)] = static_cast<int>(shead.size());
            shead.push_back(bad ? 1 : 0);
            for (const index_t e : theirs) shead.push_back(bad ? 0 : plan.counts[static_cast<std::size_t>(e)]);
            scount[static_cast<std::size_t>(p)] = static_cast<int>(theirs.size()) + 1;
            rcount[static_cast<std::size_t>(p)] = static_cast<int>(nl) + 1;
            rdispl[static_cast<std::size_t>(p)] = p * static_cast<int>(nl + 1);
        }
        mpi_check(MPI_Alltoallv(shead.data(), scount.data(), sdispl.data(), MPI_INT, rhead.data(), rcount.data(),
                                rdispl.data(), MPI_INT, comm_),
                  w, "MPI_Alltoallv (header)");
        bool any_bad = false;
        for (int p = 0; p < P; ++p) any_bad = any_bad || rhead[static_cast<std::size_t>(p * (nl + 1))] != 0;
        if (any_bad) agree(comm_, bad, error, w);  // every rank saw the flag: all throw together

        // 2. dispatch. Row counts and displacements per rank, in rows (one datatype = one row).
        const index_t S = plan.num_slots();
        std::vector<int> srows(static_cast<std::size_t>(P), 0), sroff(static_cast<std::size_t>(P), 0);
        std::vector<int> rrows(static_cast<std::size_t>(P), 0), rroff(static_cast<std::size_t>(P), 0);
        std::vector<std::int32_t> spos(static_cast<std::size_t>(E), 0);  // first send row of each expert
        int at = 0;
        for (int p = 0; p < P; ++p) {
            sroff[static_cast<std::size_t>(p)] = at;
            for (const index_t e : placement_.experts_of(p)) {
                spos[static_cast<std::size_t>(e)] = at;
                at += plan.counts[static_cast<std::size_t>(e)];
            }
            srows[static_cast<std::size_t>(p)] = at - sroff[static_cast<std::size_t>(p)];
        }
        // Received blocks: (source rank p, local expert i) = block p * nl + i.
        block_offsets_.assign(static_cast<std::size_t>(P * nl + 1), 0);
        index_t R = 0;
        for (int p = 0; p < P; ++p) {
            rroff[static_cast<std::size_t>(p)] = static_cast<int>(R);
            for (index_t i = 0; i < nl; ++i) {
                block_offsets_[static_cast<std::size_t>(p * nl + i)] = static_cast<std::int32_t>(R);
                R += rhead[static_cast<std::size_t>(p * (nl + 1) + 1 + i)];
            }
            rrows[static_cast<std::size_t>(p)] = static_cast<int>(R) - rroff[static_cast<std::size_t>(p)];
        }
        // Only this rank knows R: a throw here would leave the others in the dispatch, so the
        // 32-bit row index is the one limit that is not agreed on (2^31 rows of d floats).
        check<ShapeError>(R < std::numeric_limits<std::int32_t>::max(), w, "rank ", rank_, " would receive ", R,
                          " rows, over the 32-bit row index");
        block_offsets_.back() = static_cast<std::int32_t>(R);

        const auto rows = [d](index_t n) { return static_cast<std::size_t>(std::max<index_t>(n * d, 1)); };
        float* xs = ws_.xp.get(rows(S));  // rows to send, grouped by destination rank
        float* ys = ws_.yp.get(rows(S));  // their outputs, back in the same order
        float* xr = xr_.get(rows(R));     // rows received, grouped by source rank
        float* yr = yr_.get(rows(R));     // their outputs
        const bool ordered = placement_.rank_ordered();  // then send row == slot
        if (!ordered) {
            slot_row_.resize(static_cast<std::size_t>(S));
            for (index_t e = 0; e < E; ++e)
                for (index_t s = plan.begin(e); s < plan.end(e); ++s)
                    slot_row_[static_cast<std::size_t>(s)] = spos[static_cast<std::size_t>(e)] + (s - plan.begin(e));
        }
        parallel_for(
            ex, S,
            [&](index_t s) {
                const index_t r = ordered ? s : slot_row_[static_cast<std::size_t>(s)];
                std::memcpy(xs + r * d, x.row(plan.slot_to_token[static_cast<std::size_t>(s)]),
                            static_cast<std::size_t>(d) * sizeof(float));
            },
            moe::detail::kGroupedRowsPerTask);

        MPI_Datatype row = MPI_DATATYPE_NULL;
        mpi_check(MPI_Type_contiguous(static_cast<int>(d), MPI_FLOAT, &row), w, "MPI_Type_contiguous");
        struct FreeType {
            MPI_Datatype* t;
            ~FreeType() { MPI_Type_free(t); }
        } free_row{&row};
        mpi_check(MPI_Type_commit(&row), w, "MPI_Type_commit");
        mpi_check(MPI_Alltoallv(xs, srows.data(), sroff.data(), row, xr, rrows.data(), rroff.data(), row, comm_), w,
                  "MPI_Alltoallv (dispatch)");

        // 3. compute: block p * nl + i is local expert i over rank p's rows for it.
        grouped_compute(local_, block_offsets_, [nl](index_t b) { return b % nl; }, xr, yr, ws_, ex);

        // 4. return
        mpi_check(MPI_Alltoallv(yr, rrows.data(), rroff.data(), row, ys, srows.data(), sroff.data(), row, comm_), w,
                  "MPI_Alltoallv (return)");

        // 5. combine, exactly as the single-process container does, over slot-ordered outputs.
        const float* yp = ys;
        if (!ordered) {
            float* ypp = yp_.get(rows(S));
            parallel_for(
                ex, S,
                [&](index_t s) {
                    std::memcpy(ypp + s * d, ys + static_cast<index_t>(slot_row_[static_cast<std::size_t>(s)]) * d,
                                static_cast<std::size_t>(d) * sizeof(float));
                },
                moe::detail::kGroupedRowsPerTask);
            yp = ypp;
        }
        grouped_combine(plan, yp, out, combine, ex);

        traffic_ = {};
        for (int p = 0; p < P; ++p) {
            if (p == rank_) continue;
            traffic_.rows_sent += srows[static_cast<std::size_t>(p)];
            traffic_.rows_received += rrows[static_cast<std::size_t>(p)];
            traffic_.bytes_sent += static_cast<std::int64_t>(scount[static_cast<std::size_t>(p)]) * 4;
            traffic_.bytes_received += static_cast<std::int64_t>(rcount[static_cast<std::size_t>(p)]) * 4;
        }
        const std::int64_t row_bytes = static_cast<std::int64_t>(d) * 4;
        traffic_.bytes_sent += (traffic_.rows_sent + traffic_.rows_received) * row_bytes;
        traffic_.bytes_received += (traffic_.rows_sent + traffic_.rows_received) * row_bytes;
    }

    /// Share o's scratch buffers (layers that never run at the same time).
    void share_scratch(ExpertParallel& o) {
        ws_.share(o.ws_);
        xr_.share(o.xr_);
        yr_.share(o.yr_);
        yp_.share(o.yp_);
    }

private:
    MPI_Comm comm_ = MPI_COMM_NULL;
    Placement placement_;
    X local_;
    int rank_ = 0, size_ = 1;
    Traffic traffic_;
    GroupedWorkspace ws_;  // xp: rows to send, yp: their returned outputs; per-worker expert scratch
    Scratch<float> xr_, yr_, yp_;
    std::vector<std::int32_t> block_offsets_, slot_row_;
};

// The capabilities the layers use, checked here rather than silently skipped (docs/architecture.md).
static_assert(GroupedExpertSet<GluExperts<Silu>> && GroupedExpertSet<MlpExperts<Gelu>>);
static_assert(ThreadedExpertSet<ExpertParallel<GluExperts<Silu>>> && CollectiveExpertSet<ExpertParallel<GluExperts<Silu>>> &&
              ScratchSharing<ExpertParallel<GluExperts<Silu>>>);

}  // namespace moe::dist
