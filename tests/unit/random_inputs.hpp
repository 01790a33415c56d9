// tests/unit/random_inputs.hpp - deterministic random test inputs shared by the unit tests.
#pragma once

#include <cstddef>
#include <random>
#include <vector>

namespace moe_test {

/// n standard-normal floats from the given seed (the same values on every run and machine
/// with the same standard library).
inline std::vector<float> randn(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d;
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

}  // namespace moe_test
