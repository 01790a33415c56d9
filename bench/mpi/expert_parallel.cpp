// Expert parallelism over MPI: time per MoE layer and bytes moved per rank, run under mpirun
// (not Google Benchmark: its adaptive iteration counts would differ between ranks, whose
// collectives must meet; every rank here runs the same fixed number of iterations).
//
//   mpirun -np P build/<preset>/bench/expert_parallel [--tokens 512] [--experts 16] [--hidden 512]
//          [--ffn 1024] [--k 2] [--iters 20] [--threads 1]
//
// Weak scaling: every rank routes --tokens tokens of its own through one Mixtral-style layer
// (softmax top-k, SiLU-GLU experts, fp32 weights) whose --experts experts are spread over the P
// ranks in contiguous runs. It prints (rank 0):
//   * the layer's time per call: the mean over iterations of the slowest rank's time, and the
//     same for the single-process layer (all experts in every rank) on each rank's own tokens,
//     all ranks at once: the same arithmetic per rank when the load is balanced, no all-to-all;
//   * what one call moves per rank: rows and bytes to and from the other ranks (Traffic);
//   * the expert compute alone (this rank's experts over the rows it received, ms) and the
//     all-to-all alone: MPI_Alltoallv of the same row counts, its time and bandwidth per rank
//     (bytes to other ranks / time), the inputs of the model in docs/scaling.md.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "moe/dist/expert_parallel.hpp"
#include "moe/moe.hpp"

using namespace moe;

namespace {

double now() { return MPI_Wtime(); }

/// The mean over iterations of the slowest rank's time of fn(), in ms.
template <class F>
double time_max(int iters, F&& fn) {
    double total = 0;
    for (int i = 0; i < iters; ++i) {
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = now();
        fn();
        double dt = now() - t0, slowest = 0;
        MPI_Allreduce(&dt, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        total += slowest;
    }
    return total / iters * 1e3;
}

index_t arg(int argc, char** argv, const char* name, index_t def) {
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], name) == 0) return std::atol(argv[i + 1]);
    return def;
}

}  // namespace

int main(int argc, char** argv) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    const int r = dist::rank_of(MPI_COMM_WORLD), P = dist::size_of(MPI_COMM_WORLD);
    const index_t T = arg(argc, argv, "--tokens", 512), E = arg(argc, argv, "--experts", 16);
    const index_t d = arg(argc, argv, "--hidden", 512), F = arg(argc, argv, "--ffn", 1024);
    const index_t k = arg(argc, argv, "--k", 2);
    const int iters = static_cast<int>(arg(argc, argv, "--iters", 20));
    const int threads = static_cast<int>(arg(argc, argv, "--threads", 1));
    try {
        const Gate gate = Gate::random(E, d, 1);
        const auto full = GluExperts<Silu>::random(E, d, F, 2);
        const auto placement = dist::Placement::contiguous(E, P);
        MoELayer<TopKRouter<SoftmaxScores>, dist::ExpertParallel<GluExperts<Silu>>> layer(
            softmax_topk_router(gate, k),
            dist::ExpertParallel<GluExperts<Silu>>(MPI_COMM_WORLD, placement, full.select(placement.experts_of(r))));
        MoELayer<TopKRouter<SoftmaxScores>, GluExperts<Silu>> single(softmax_topk_router(gate, k), full);
        layer.set_exec(Exec(threads));
        single.set_exec(Exec(threads));
        std::vector<float> x(static_cast<std::size_t>(T * d)), y(x.size());
        for (std::size_t i = 0; i < x.size(); ++i)
            x[i] = static_cast<float>((i * 2654435761u + static_cast<std::size_t>(r) * 97u) % 1999) / 1999.0f - 0.5f;

        layer.forward({x.data(), T, d}, {y.data(), T, d});  // warm-up (buffers, pages)
        const double layer_ms = time_max(iters, [&] { layer.forward({x.data(), T, d}, {y.data(), T, d}); });
        const dist::Traffic tr = layer.experts().traffic();

        // The single-process layer (all experts) on each rank's own tokens, all ranks at once:
        // the same arithmetic per rank when the load is balanced, without the all-to-alls.
        single.forward({x.data(), T, d}, {y.data(), T, d});
        const double single_ms = time_max(iters, [&] { single.forward({x.data(), T, d}, {y.data(), T, d}); });

        // The expert compute alone: this rank's experts over the rows it would receive.
        const RoutingPlan& plan = layer.plan();
        std::vector<long long> counts(plan.counts.begin(), plan.counts.end()), total(counts.size());
        MPI_Allreduce(counts.data(), total.data(), static_cast<int>(E), MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
        const auto& mine = placement.experts_of(r);
        std::vector<std::int32_t> offsets{0};
        for (const index_t e : mine) offsets.push_back(offsets.back() + static_cast<std::int32_t>(total[static_cast<std::size_t>(e)]));
        const auto local = full.select(mine);
        std::vector<float> xr(static_cast<std::size_t>(std::max<index_t>(offsets.back() * d, 1)), 0.25f), yr(xr.size());
        GroupedWorkspace ws;
        const double compute_ms = time_max(iters, [&] {
            grouped_compute(local, offsets, [](index_t b) { return b; }, xr.data(), yr.data(), ws, Exec(threads));
        });

        // The all-to-all alone, with the dispatch's row counts (bytes per rank = its rows * d * 4).
        std::vector<int> sc(static_cast<std::size_t>(P)), sd(static_cast<std::size_t>(P)), rc(static_cast<std::size_t>(P)),
            rd(static_cast<std::size_t>(P));
        int at = 0;
        for (int p = 0; p < P; ++p) {
            sd[static_cast<std::size_t>(p)] = at;
            for (const index_t e : placement.experts_of(p)) at += plan.counts[static_cast<std::size_t>(e)] * static_cast<int>(d);
            sc[static_cast<std::size_t>(p)] = at - sd[static_cast<std::size_t>(p)];
        }
        MPI_Alltoall(sc.data(), 1, MPI_INT, rc.data(), 1, MPI_INT, MPI_COMM_WORLD);
        int rt = 0;
        for (int p = 0; p < P; ++p) {
            rd[static_cast<std::size_t>(p)] = rt;
            rt += rc[static_cast<std::size_t>(p)];
        }
        std::vector<float> sb(static_cast<std::size_t>(std::max(at, 1)), 1.0f), rb(static_cast<std::size_t>(std::max(rt, 1)));
        const double a2a_ms = time_max(iters, [&] {
            MPI_Alltoallv(sb.data(), sc.data(), sd.data(), MPI_FLOAT, rb.data(), rc.data(), rd.data(), MPI_FLOAT,
                          MPI_COMM_WORLD);
        });
        long long off_rank = 0, max_off = 0;
        for (int p = 0; p < P; ++p)
            if (p != r) off_rank += sc[static_cast<std::size_t>(p)] * 4LL;
        MPI_Allreduce(&off_rank, &max_off, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
        long long sent = tr.bytes_sent, sent_max = 0, rows = tr.rows_sent + tr.rows_received, rows_max = 0;
        MPI_Allreduce(&sent, &sent_max, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
        MPI_Allreduce(&rows, &rows_max, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
        double cmax = 0;
        MPI_Allreduce(&compute_ms, &cmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (r == 0) {
            std::printf("expert_parallel: %s, ranks %d, tokens/rank %ld, E %ld, d %ld, F %ld, k %ld, threads/rank %d, iters %d\n",
                        cpu::simd_name(), P, static_cast<long>(T), static_cast<long>(E), static_cast<long>(d),
                        static_cast<long>(F), static_cast<long>(k), threads, iters);
            std::printf("  layer (slowest rank)        %9.3f ms   single-process layers, all ranks at once: %.3f ms\n",
                        layer_ms, single_ms);
            std::printf("  moved per call, per rank    %9.3f MB sent and as many received (max over ranks; rows "
                        "out+in %lld)\n",
                        static_cast<double>(sent_max) / 1e6, rows_max);
            std::printf("  expert compute (slowest)    %9.3f ms\n", cmax);
            std::printf("  one all-to-all of the rows  %9.3f ms   %.3f MB to other ranks -> %.2f GB/s per rank\n",
                        a2a_ms, static_cast<double>(max_off) / 1e6,
                        a2a_ms > 0 ? static_cast<double>(max_off) / (a2a_ms * 1e-3) / 1e9 : 0.0);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: %s\n", r, e.what());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Finalize();
    return 0;
}
