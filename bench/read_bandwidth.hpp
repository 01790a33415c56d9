// bench/read_bandwidth.hpp - the memory-read probe the benchmarks put beside their figures:
// read_once (one SIMD pass), BigBuffer, sum_parallel (a pass on an Exec's threads),
// BM_bandwidth (the Google Benchmark body; its best repetition is this run's bound at that thread
// count) and bandwidth(threads) (that figure, measured here when the benchmark was filtered out).
#pragma once

#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "moe/backend/cpu/simd.hpp"
#include "moe/core/parallel.hpp"

namespace moe_bench {

using moe::index_t;

/// Sum of n floats with 8 independent SIMD accumulators (enough to keep both FP add pipes busy,
/// so the loop is bound by loads, not by add latency).
inline float read_once(const float* p, std::size_t n) {
    using B = xsimd::batch<float, moe::cpu::simd_arch>;
    constexpr std::size_t L = B::size;
    B acc[8];
    for (auto& a : acc) a = B(0.0f);
    std::size_t i = 0;
    for (; i + 8 * L <= n; i += 8 * L)
        for (std::size_t j = 0; j < 8; ++j) acc[j] += B::load_unaligned(p + i + j * L);
    for (std::size_t j = 1; j < 8; ++j) acc[0] += acc[j];
    float s = xsimd::hadd(acc[0]);
    for (; i < n; ++i) s += p[i];
    return s;
}

/// The "<key> <n> kB" line of a /proc file, in bytes (0 when absent).
inline double proc_kb_line(const char* file, const char* key) {
    std::ifstream f(file);
    const std::string k(key);
    for (std::string line; std::getline(f, line);)
        if (line.rfind(k, 0) == 0) return std::strtod(line.c_str() + k.size(), nullptr) * 1024.0;
    return 0;
}

/// A line of /proc/self/smaps_rollup ("AnonHugePages:", "FilePmdMapped:", ...) in bytes.
inline double smaps_rollup_bytes(const char* key) { return proc_kb_line("/proc/self/smaps_rollup", key); }

inline std::map<int, double>& bandwidth_of() {  // bytes/s, the best repetition
    static std::map<int, double> m;
    return m;
}

/// A float buffer of its own pages (mmap), given back to the OS when it goes (so that the decode
/// benchmarks' VmRSS does not hold it).
class BigBuffer {
public:
    explicit BigBuffer(std::size_t n) : n_(n) {
        void* p = ::mmap(nullptr, n * sizeof(float), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) throw std::bad_alloc();
        p_ = static_cast<float*>(p);
#if defined(MADV_HUGEPAGE)
        // 2 MiB pages where the kernel gives them (THP "madvise" mode needs the hint): the probe
        // then measures the memory, not page walks every 4 KiB, as the weights read from a
        // huge-page mapping (moe::io::MappedFile asks for one) do.
        (void)::madvise(p, n * sizeof(float), MADV_HUGEPAGE);
#endif
        for (std::size_t i = 0; i < n; ++i) p_[i] = static_cast<float>(i & 1023) * (1.0f / 1024.0f);  // touched once
    }
    ~BigBuffer() { ::munmap(p_, n_ * sizeof(float)); }
    BigBuffer(const BigBuffer&) = delete;
    BigBuffer& operator=(const BigBuffer&) = delete;
    const float* data() const noexcept { return p_; }
    std::size_t size() const noexcept { return n_; }
    std::size_t bytes() const noexcept { return n_ * sizeof(float); }

private:
    float* p_ = nullptr;
    std::size_t n_ = 0;
};

/// One pass over the buffer on ex's threads: chunks of 4 Mi floats (16 MiB, 64 per GiB) taken
/// dynamically, so a preempted thread does not hold the others up.
inline float sum_parallel(const BigBuffer& buf, const moe::Exec& ex, std::vector<float>& partial) {
    constexpr index_t grain = index_t{1} << 22;
    const auto n = static_cast<index_t>(buf.size());
    partial.assign(static_cast<std::size_t>(moe::chunk_count(n, grain)), 0.0f);
    moe::parallel_chunks(ex, n, grain, [&](index_t b, index_t e, int) {
        partial[static_cast<std::size_t>(b / grain)] = read_once(buf.data() + b, static_cast<std::size_t>(e - b));
    });
    float s = 0;
    for (float x : partial) s += x;
    return s;
}

/// The probe's buffer: $MOE_BENCH_BW_MIB MiB (default 1024, much larger than the LLC).
inline std::size_t bandwidth_bytes() {
    const char* v = std::getenv("MOE_BENCH_BW_MIB");
    const long mib = v && *v ? std::strtol(v, nullptr, 10) : 1024;
    return static_cast<std::size_t>(mib > 0 ? mib : 1024) << 20;
}

inline void BM_bandwidth(benchmark::State& st, int threads) {
    const BigBuffer buf(bandwidth_bytes() / sizeof(float));
    const moe::Exec ex(threads);
    std::vector<float> partial;
    const auto t0 = std::chrono::steady_clock::now();
    for (auto _ : st) {
        float s = sum_parallel(buf, ex, partial);
        benchmark::DoNotOptimize(s);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (st.iterations() > 0 && secs > 0) {  // the best repetition: the decode bound at this thread count
        double& best = bandwidth_of()[threads];
        best = std::max(best, static_cast<double>(buf.bytes()) * static_cast<double>(st.iterations()) / secs);
    }
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(buf.bytes()));
    st.counters["GB/s"] = benchmark::Counter(static_cast<double>(buf.bytes()) * 1e-9,
                                             benchmark::Counter::kIsIterationInvariantRate);
    st.counters["huge_MB"] = smaps_rollup_bytes("AnonHugePages:") * 1e-6;  // of the buffer's pages
}

/// The read bandwidth at `threads` now (bytes/s): the best of 3 passes over a fresh buffer of
/// bandwidth_bytes() after one untimed pass.
inline double measure_bandwidth(int threads) {
    const BigBuffer buf(bandwidth_bytes() / sizeof(float));
    const moe::Exec ex(threads);
    std::vector<float> partial;
    float sink = sum_parallel(buf, ex, partial);
    double best = 1e300;
    for (int r = 0; r < 3; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        sink += sum_parallel(buf, ex, partial);
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    benchmark::DoNotOptimize(sink);
    return static_cast<double>(buf.bytes()) / best;
}
/// This run's bandwidth at `threads` (the bandwidth benchmark's, or measure_bandwidth's when that
/// benchmark was filtered out, kept for the run).
inline double bandwidth(int threads) {
    auto& m = bandwidth_of();
    if (auto it = m.find(threads); it != m.end()) return it->second;
    return m[threads] = measure_bandwidth(threads);
}


}  // namespace moe_bench
