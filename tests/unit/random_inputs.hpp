// tests/unit/random_inputs.hpp - deterministic random test inputs (and their transposes) shared
// by the unit tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace moe_test {

/// n floats drawn from N(0, scale^2) with the given seed (the same values on every run and
/// machine with the same standard library).
inline std::vector<float> randn(std::size_t n, unsigned seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

/// w [N, K] row-major -> [K, N] (an [out, in] matrix stored [in, out]).
template <class T>
std::vector<T> transposed(const std::vector<T>& w, std::int64_t N, std::int64_t K) {
    std::vector<T> t(w.size());
    for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t k = 0; k < K; ++k) t[static_cast<std::size_t>(k * N + n)] = w[static_cast<std::size_t>(n * K + k)];
    return t;
}

}  // namespace moe_test
