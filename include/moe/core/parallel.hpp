// moe/core/parallel.hpp - the execution layer: one execution context and one parallel loop.
//
//   Exec                      where work runs (today: at most threads() OpenMP threads); a small
//                             value passed down by const reference, as Kokkos passes an
//                             execution space instance. Exec{} = all OpenMP threads.
//   parallel_chunks(ex, n, grain, f)   f(begin, end, worker) over the chunks of [0, n)
//   parallel_for(ex, n, f[, grain])    f(i) for every i in [0, n)
//   parallel_reduce(ex, n, grain, init, map, join)   a reduction whose result does not depend
//                                                    on the thread count
//   parallel_workers(ex, n, grain)     how many workers a call will use (per-worker scratch)
//
// Rules every call keeps:
//  * chunking is deterministic: chunk c is [c * grain, min(n, (c + 1) * grain)), whatever the
//    thread count; workers take chunks dynamically (one shared counter), so a preempted thread
//    does not hold the others up, but which chunk a worker gets never changes a chunk's bounds;
//  * the first exception thrown by any chunk is rethrown on the calling thread after the region;
//    once one is thrown, workers take no new chunks;
//  * worker ids are in [0, parallel_workers(ex, n, grain)), one per thread of the region, so a
//    caller can index per-worker scratch by them (size it before the call);
//  * without OpenMP (or with one thread) the chunks run in order on the calling thread.
// Nothing here is global or mutable.
#pragma once

#include <algorithm>
#include <atomic>
#include <concepts>
#include <exception>
#include <utility>
#include <vector>

#include "moe/core/tensor.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace moe {

/// The most threads an Exec{} uses: OpenMP's current maximum (omp_get_max_threads(), set by
/// OMP_NUM_THREADS or omp_set_num_threads), or 1 without OpenMP.
inline int max_threads() noexcept {
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/// The execution context of a computation: today, how many threads it may use.
class Exec {
public:
    /// All OpenMP threads (max_threads() at construction).
    Exec() noexcept : threads_(std::max(1, max_threads())) {}
    /// At most `threads` threads (values below 1 mean 1).
    explicit Exec(int threads) noexcept : threads_(threads < 1 ? 1 : threads) {}
    /// The calling thread only.
    static Exec serial() noexcept { return Exec(1); }

    /// The most threads work may use (>= 1).
    int threads() const noexcept { return threads_; }

    friend bool operator==(const Exec&, const Exec&) = default;

private:
    int threads_;
};

/// A type whose computations run on an Exec it stores: set_exec(ex) sets it for the calls that
/// follow (modules: layers, routers, encoders, FFN slots).
template <class T>
concept ExecAware = requires(T& t, const Exec& ex) { t.set_exec(ex); };

/// Number of chunks of [0, n) at `grain` elements per chunk (grain < 1 counts as 1).
inline index_t chunk_count(index_t n, index_t grain) noexcept {
    grain = std::max<index_t>(1, grain);
    return n <= 0 ? 0 : (n + grain - 1) / grain;
}

/// Workers a parallel_chunks(ex, n, grain, f) call uses: min(threads, chunks), at least 1, and
/// 1 without OpenMP. Worker ids passed to f are below it.
inline int parallel_workers(const Exec& ex, index_t n, index_t grain) noexcept {
#if defined(_OPENMP)
    return static_cast<int>(std::max<index_t>(1, std::min<index_t>(ex.threads(), chunk_count(n, grain))));
#else
    (void)ex;
    (void)n;
    (void)grain;
    return 1;
#endif
}

/// Calls f(begin, end, worker) once for every chunk [begin, end) of [0, n) (chunk c =
/// [c * grain, min(n, (c + 1) * grain))) on at most ex.threads() threads. See the file comment
/// for the guarantees (deterministic chunks, first exception rethrown here, worker ids).
template <class F>
void parallel_chunks(const Exec& ex, index_t n, index_t grain, F&& f) {
    grain = std::max<index_t>(1, grain);
    const index_t chunks = chunk_count(n, grain);
    if (chunks == 0) return;
#if defined(_OPENMP)
    const int workers = parallel_workers(ex, n, grain);
    if (workers > 1) {
        std::atomic<index_t> next{0};
        std::atomic<bool> failed{false};
        std::exception_ptr error;
#pragma omp parallel num_threads(workers)
        {
            const int worker = omp_get_thread_num();
            while (!failed.load(std::memory_order_relaxed)) {
                const index_t c = next.fetch_add(1, std::memory_order_relaxed);
                if (c >= chunks) break;
                try {
                    f(c * grain, std::min(n, (c + 1) * grain), worker);
                } catch (...) {
#pragma omp critical(moe_parallel_error)
                    {
                        if (!error) error = std::current_exception();
                    }
                    failed.store(true, std::memory_order_relaxed);
                }
            }
        }
        if (error) std::rethrow_exception(error);
        return;
    }
#else
    (void)ex;
#endif
    for (index_t c = 0; c < chunks; ++c) f(c * grain, std::min(n, (c + 1) * grain), 0);
}

/// Calls f(i) for every i in [0, n), in chunks of `grain` consecutive indices (parallel_chunks).
template <class F>
void parallel_for(const Exec& ex, index_t n, F&& f, index_t grain = 1) {
    parallel_chunks(ex, n, grain, [&f](index_t b, index_t e, int) {
        for (index_t i = b; i < e; ++i) f(i);
    });
}

/// join(...join(join(init, map(c0)), map(c1))..., map(c_last)) over the chunks [b, e) of [0, n)
/// in order: each chunk's map(b, e) may run on any thread, the joins run on the calling thread,
/// so the result (floating-point sums included) does not depend on the thread count.
template <class T, class Map, class Join>
T parallel_reduce(const Exec& ex, index_t n, index_t grain, T init, Map&& map, Join&& join) {
    std::vector<T> part(static_cast<std::size_t>(chunk_count(n, grain)), init);
    const index_t g = std::max<index_t>(1, grain);
    parallel_chunks(ex, n, g, [&](index_t b, index_t e, int) { part[static_cast<std::size_t>(b / g)] = map(b, e); });
    for (auto& p : part) init = join(std::move(init), std::move(p));
    return init;
}

}  // namespace moe
