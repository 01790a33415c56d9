// bench/read_bandwidth.hpp - the memory-read probe the benchmarks put beside their figures.
#pragma once

#include <cstddef>

#include "moe/backend/cpu/simd.hpp"

namespace moe_bench {

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

}  // namespace moe_bench
