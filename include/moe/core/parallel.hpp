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
//   parallel_shares(ex, n, align, piece, f)   f(begin, end, worker) over [0, n) in one even
//                             share per worker (even_share), each taken front to back in pieces;
//                             a worker done with its share takes pieces from the backs of the
//                             others' (streams that must stay contiguous: decode GEMVs)
//
// Rules every call keeps:
//  * chunking is deterministic: chunk c is [c * grain, min(n, (c + 1) * grain)), whatever the
//    thread count; workers take chunks dynamically (one shared counter), so a preempted thread
//    does not hold the others up, but which chunk a worker gets never changes a chunk's bounds;
//  * the first exception thrown by any chunk is rethrown on the calling thread after the region;
//    once one is thrown, workers take no new chunks;
//  * worker ids are in [0, parallel_workers(ex, n, grain)), one per thread of the region, so a
//    caller can index per-worker scratch by them (size it before the call);
//  * without OpenMP (or with one thread) the chunks run in order on the calling thread;
//  * parallel_shares' pieces have bounds on multiples of `align` (or n) and lie inside one share,
//    but where they are cut depends on which worker takes them: use it only where f's result for
//    an index does not depend on the piece it comes in (each output column computed alone).
// Nothing here is global or mutable.
#pragma once

#include <algorithm>
#include <atomic>
#include <concepts>
#include <cstdint>
#include <exception>
#include <memory>
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

#if defined(_OPENMP)
namespace detail {
/// The first exception of a parallel region's tasks: run(task) runs one, keeping the first
/// exception any task throws (none escapes an OpenMP region, which would end the process);
/// failed() says once one has, so workers take no new task; rethrow() on the calling thread.
class FirstError {
public:
    template <class Task>
    void run(Task&& task) noexcept {
        try {
            task();
        } catch (...) {
#pragma omp critical(moe_parallel_error)
            {
                if (!error_) error_ = std::current_exception();
            }
            failed_.store(true, std::memory_order_relaxed);
        }
    }
    bool failed() const noexcept { return failed_.load(std::memory_order_relaxed); }
    void rethrow() const {
        if (error_) std::rethrow_exception(error_);
    }

private:
    std::atomic<bool> failed_{false};
    std::exception_ptr error_;
};
}  // namespace detail
#endif

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
        detail::FirstError error;
#pragma omp parallel num_threads(workers)
        {
            const int worker = omp_get_thread_num();
            while (!error.failed()) {
                const index_t c = next.fetch_add(1, std::memory_order_relaxed);
                if (c >= chunks) break;
                error.run([&] { f(c * grain, std::min(n, (c + 1) * grain), worker); });
            }
        }
        error.rethrow();
        return;
    }
#else
    (void)ex;
#endif
    for (index_t c = 0; c < chunks; ++c) f(c * grain, std::min(n, (c + 1) * grain), 0);
}

/// The size of one even share of [0, n) per thread, rounded up to a multiple of `align` (at least
/// `align`; threads < 1 count as 1): shares [0, s), [s, 2s), ... with s = even_share(n, threads,
/// align), at most `threads` of them (e.g. 900 on 3 threads at 32: 320, 320, 260).
inline index_t even_share(index_t n, int threads, index_t align) noexcept {
    const index_t t = std::max(1, threads), a = std::max<index_t>(1, align);
    return std::max<index_t>(a, ((n + t - 1) / t + a - 1) / a * a);
}

/// Calls f(begin, end, worker) over pieces that cover [0, n) exactly once, on
/// parallel_workers(ex, n, even_share(n, ex.threads(), align)) workers. Worker w owns share w
/// ([w s, min(n, (w + 1) s)), s = even_share(...)) and takes it front to back in pieces of at most
/// `piece` (rounded up to a multiple of align), so its reads stay one forward stream; a worker done
/// with its own share takes pieces from the back of the others', so a thread the OS or a busier
/// core slows down is helped rather than waited for. Piece bounds are multiples of `align` (or
/// n). Exceptions as parallel_chunks: the first is rethrown here, and workers take no new piece
/// after it. With one worker (or without OpenMP) the shares' pieces run in order on the calling
/// thread.
template <class F>
void parallel_shares(const Exec& ex, index_t n, index_t align, index_t piece, F&& f) {
    if (n <= 0) return;
    align = std::max<index_t>(1, align);
    const index_t units = (n + align - 1) / align;                           // in `align` steps
    const index_t step = std::max<index_t>(1, (piece + align - 1) / align);  // units per piece
    const index_t share = even_share(units, ex.threads(), 1);               // units per share
    const auto cols = [&](index_t u) { return std::min(n, u * align); };
    // Units [b, e) of one share, front to back, on the calling thread as worker w.
    const auto in_order = [&](index_t b, index_t e, int w) {
        for (index_t u = b; u < e; u += step) f(cols(u), cols(std::min(e, u + step)), w);
    };
#if defined(_OPENMP)
    const int workers = parallel_workers(ex, units, share);
    // A share's state is one word: its front (high 32 bits) and back (low 32 bits) in units, so
    // the owner and a helper claim pieces with one compare-exchange each.
    if (workers > 1 && units <= index_t{0xffffffff}) {
        struct alignas(64) Share {
            std::atomic<std::uint64_t> front_back;
        };
        const auto shares = std::make_unique<Share[]>(static_cast<std::size_t>(workers));
        for (int w = 0; w < workers; ++w) {
            const auto lo = static_cast<std::uint64_t>(std::min(units, share * w));
            const auto hi = static_cast<std::uint64_t>(std::min(units, share * (w + 1)));
            shares[static_cast<std::size_t>(w)].front_back.store(lo << 32 | hi, std::memory_order_relaxed);
        }
        // Claims up to `step` units from the front (own share) or the back (another's); false when
        // the share is done.
        const auto claim = [&](int w, bool front, index_t& u0, index_t& u1) {
            std::atomic<std::uint64_t>& a = shares[static_cast<std::size_t>(w)].front_back;
            std::uint64_t cur = a.load(std::memory_order_relaxed), next = 0;
            do {
                const auto lo = static_cast<index_t>(cur >> 32), hi = static_cast<index_t>(cur & 0xffffffffu);
                if (lo >= hi) return false;
                const index_t take = std::min(step, hi - lo);
                u0 = front ? lo : hi - take;
                u1 = u0 + take;
                next = front ? static_cast<std::uint64_t>(u1) << 32 | static_cast<std::uint64_t>(hi)
                             : static_cast<std::uint64_t>(lo) << 32 | static_cast<std::uint64_t>(u0);
            } while (!a.compare_exchange_weak(cur, next, std::memory_order_relaxed));
            return true;
        };
        detail::FirstError error;
#pragma omp parallel num_threads(workers)
        {
            const int me = omp_get_thread_num();
            index_t u0 = 0, u1 = 0;
            for (int k = 0; k < workers; ++k) {  // own share first, then the next ones' backs
                const int w = (me + k) % workers;
                while (!error.failed() && claim(w, k == 0, u0, u1)) error.run([&] { f(cols(u0), cols(u1), me); });
            }
        }
        error.rethrow();
        return;
    }
    if (workers > 1) {  // more than 2^32 units: whole shares, no help
        parallel_chunks(ex, units, share, in_order);
        return;
    }
#endif
    for (index_t b = 0; b < units; b += share) in_order(b, std::min(units, b + share), 0);
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
