// moe/backend/cuda/spec.hpp - the CUDA routing specification: plain data shared by host code
// (which needs no CUDA headers to fill it) and moe/backend/cuda/routing.cuh.
#pragma once

#include <cmath>

namespace moe::cuda {

enum class Scoring : int { softmax = 0, sigmoid = 1 };

/// The routing specification (moe::cpu::TopKSpec) with the bias in device memory.
struct RouteSpec {
    int k = 1;
    Scoring scoring = Scoring::softmax;
    bool renormalize = true;
    float scale = 1.0f;
    float renorm_eps = 0.0f;
    const float* bias = nullptr;  ///< device [E] or null
    int groups = 1;
    int topk_groups = 1;
    bool group_top2_sum = true;   ///< false: a group's score is its best score
    float group_mask_value = -INFINITY;
};

}  // namespace moe::cuda
