// moe/backend/cuda/routing.cuh - the fused routing kernel and the routing plan on the GPU.
//
// Mirrors moe/backend/cpu/routing.hpp and moe/core/plan.hpp: the same rule (moe::RouteRule,
// moe/backend/rule.hpp, with its bias in device memory) (scores -> optional selection bias
// -> optional group-limited masking -> top-k with ties to the lower expert index -> weights) and
// the same plan layout (DevicePlan holds the RoutingPlan arrays in device memory). Only nvcc
// compiles this header; the CPU side never includes it.
//
// Layers (CUTLASS style):  device  route_topk(), build_plan()     host entry points
//                          kernel  topk_route_kernel, plan_kernel  one launch each
//                          warp    warp_argmax()                    the collective step
#pragma once

#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>
#include <string>
#include <vector>

#include "moe/backend/rule.hpp"
#include "moe/core/error.hpp"

namespace moe::cuda {

/// Throws moe::IOError naming the call when a CUDA API call fails.
inline void check_cuda(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw IOError("moe::cuda", std::string(what) + ": " + cudaGetErrorString(e));
}

/// Largest expert count the kernel handles (experts per warp kept in shared memory).
inline constexpr int kMaxExperts = 1024;
inline constexpr int kMaxK = 32;
inline constexpr int kWarpsPerBlock = 4;

namespace warp {

/// Warp-wide argmax of (value, index): larger value wins, the lower index on ties.
__device__ inline void argmax(float& v, int& i) {
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, off);
        const int oi = __shfl_xor_sync(0xffffffffu, i, off);
        if (ov > v || (ov == v && oi < i)) {
            v = ov;
            i = oi;
        }
    }
}

__device__ inline float sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ inline float max(float v) {
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

}  // namespace warp

namespace kernel {

/// One warp per token. Selection scores live in shared memory; k rounds of warp argmax pick
/// the experts. `bad` receives 1 + token of the first NaN/+inf logit found (0: none).
__global__ void topk_route_kernel(const float* __restrict__ logits, int T, int E, RouteRule spec,
                                  const float* __restrict__ bias, std::int32_t* __restrict__ ids, float* __restrict__ weights, int* bad) {
    __shared__ float sel_all[kWarpsPerBlock][kMaxExperts];
    __shared__ float gscore_all[kWarpsPerBlock][32];
    const int lane = threadIdx.x & 31;
    const int w = threadIdx.x >> 5;
    const int t = blockIdx.x * kWarpsPerBlock + w;
    if (t >= T) return;
    float* sel = sel_all[w];
    const float* row = logits + static_cast<long long>(t) * E;

    // max, validity
    float m = -INFINITY;
    for (int e = lane; e < E; e += 32) {
        const float v = row[e];
        if (isnan(v) || v == INFINITY) atomicCAS(bad, 0, t + 1);
        m = fmaxf(m, v);
    }
    m = warp::max(m);
    const bool softmax = spec.scoring == Scoring::softmax;
    float total = 0.0f;
    if (softmax) {
        for (int e = lane; e < E; e += 32) total += expf(row[e] - m);
        total = warp::sum(total);
    }
    // selection scores
    for (int e = lane; e < E; e += 32) {
        const float l = row[e];
        float s;
        if (softmax) s = bias ? expf(l - m) / total + bias[e] : l;
        else {
            s = 1.0f / (1.0f + expf(-l));
            if (bias) s += bias[e];
        }
        sel[e] = s;
    }
    __syncwarp();
    // group-limited masking
    if (spec.groups > 1) {
        const int gs = E / spec.groups;
        if (lane < spec.groups) {
            float b1 = -INFINITY, b2 = -INFINITY;
            for (int i = 0; i < gs; ++i) {
                const float s = sel[lane * gs + i];
                if (s > b1) {
                    b2 = b1;
                    b1 = s;
                } else if (s > b2) {
                    b2 = s;
                }
            }
            gscore_all[w][lane] = (spec.group_score == GroupScore::top2_sum && gs > 1) ? b1 + b2 : b1;
        }
        __syncwarp();
        unsigned keep = 0;
        for (int r = 0; r < spec.topk_groups; ++r) {
            float v = (lane < spec.groups && !((keep >> lane) & 1u)) ? gscore_all[w][lane] : -INFINITY;
            int i = lane < spec.groups && !((keep >> lane) & 1u) ? lane : 1 << 30;
            warp::argmax(v, i);
            keep |= 1u << i;
        }
        for (int e = lane; e < E; e += 32)
            if (!((keep >> (e / gs)) & 1u)) sel[e] = spec.group_mask_value;
        __syncwarp();
    }
    // top-k: k rounds of argmax; a chosen expert is removed by index
    std::int32_t chosen = -1;  // lane j < k keeps choice j
    float wj = 0.0f;
    for (int j = 0; j < spec.k; ++j) {
        float v = -INFINITY;
        int i = 1 << 30;
        for (int e = lane; e < E; e += 32) {
            const float s = sel[e];
            if (s > v || (s == v && e < i)) {
                v = s;
                i = e;
            }
        }
        warp::argmax(v, i);
        if (i >= E) i = 0;  // unreachable for k <= E; keeps the index valid
        if (lane == j) chosen = i;
        // NaN never compares greater or equal, so later rounds skip the chosen expert
        if (lane == 0) sel[i] = NAN;
        __syncwarp();
    }
    if (lane < spec.k) {
        const float l = row[chosen];
        wj = softmax ? expf(l - m) : 1.0f / (1.0f + expf(-l));
    }
    const float sum = warp::sum(lane < spec.k ? wj : 0.0f);
    const float denom = spec.renormalize ? sum + spec.renorm_eps : (softmax ? total : 1.0f);
    if (lane < spec.k) {
        ids[static_cast<long long>(t) * spec.k + lane] = chosen;
        weights[static_cast<long long>(t) * spec.k + lane] = wj / denom * spec.scale;
    }
}

/// One block per expert: counts its choices in token order (block-wide prefix sums over chunks
/// of 256 choices), applies token-order capacity, and writes its slots in ascending token order.
/// Pass 1 (write = false) fills counts and load; pass 2 (after the host-side scan) the slots.
__global__ void plan_kernel(const std::int32_t* __restrict__ ids, const float* __restrict__ w, int T, int k,
                            int capacity, const std::int32_t* __restrict__ offsets, std::int32_t* counts,
                            long long* load, std::int32_t* slot_to_token, float* slot_weights,
                            std::int32_t* token_to_slot, bool write) {
    __shared__ int scan[256];
    const int e = blockIdx.x;
    const int n = T * k;
    int asked = 0;
    for (int base = 0; base < n; base += 256) {
        const int c = base + static_cast<int>(threadIdx.x);
        const int mine = (c < n && ids[c] == e) ? 1 : 0;
        scan[threadIdx.x] = mine;
        __syncthreads();
        for (int off = 1; off < 256; off <<= 1) {  // inclusive Hillis-Steele scan
            const int v = threadIdx.x >= static_cast<unsigned>(off) ? scan[threadIdx.x - off] : 0;
            __syncthreads();
            scan[threadIdx.x] += v;
            __syncthreads();
        }
        const int pos = asked + scan[threadIdx.x] - 1;  // rank of this choice among e's requests
        if (mine) {
            const bool keep = capacity <= 0 || pos < capacity;
            if (write) {
                if (keep) {
                    const int s = offsets[e] + pos;
                    slot_to_token[s] = c / k;
                    slot_weights[s] = w[c];
                    token_to_slot[c] = s;
                } else {
                    token_to_slot[c] = -1;
                }
            }
        }
        asked += scan[255];
        __syncthreads();
    }
    const int kept = capacity > 0 && asked > capacity ? capacity : asked;
    if (!write && threadIdx.x == 0) {
        counts[e] = kept;
        load[e] = asked;
    }
}

}  // namespace kernel

/// Routes logits [T, E] (device, row-major) into ids/weights [T, k] (device).
/// Throws ConfigError for a spec that does not fit, ValueError for a NaN or +inf logit (naming
/// the token), IOError for CUDA failures.
inline void route_topk(const float* logits, int T, int E, const RouteRule& spec, std::int32_t* ids, float* weights,
                       cudaStream_t stream = nullptr) {
    const char* where = "moe::cuda::route_topk";
    spec.validate(E, where);
    check<ConfigError>(E >= 1 && E <= kMaxExperts, where, "expert count ", E, " out of range [1, ", kMaxExperts, "]");
    check<ConfigError>(spec.k >= 1 && spec.k <= E && spec.k <= kMaxK, where, "k = ", spec.k, " must be in [1, ",
                       E < kMaxK ? E : kMaxK, "] (the expert count)");
    check<ConfigError>(spec.groups >= 1 && spec.groups <= 32 && E % spec.groups == 0 && spec.topk_groups >= 1 &&
                           spec.topk_groups <= spec.groups,
                       where, "bad group configuration: ", spec.groups, " groups, ", spec.topk_groups, " kept");
    if (T == 0) return;
    int* bad = nullptr;
    check_cuda(cudaMallocAsync(&bad, sizeof(int), stream), "cudaMallocAsync");
    check_cuda(cudaMemsetAsync(bad, 0, sizeof(int), stream), "cudaMemsetAsync");
    const int blocks = (T + kWarpsPerBlock - 1) / kWarpsPerBlock;
    kernel::topk_route_kernel<<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(logits, T, E, spec, spec.bias.data(), ids,
                                                                          weights, bad);
    check_cuda(cudaGetLastError(), "topk_route_kernel launch");
    int h_bad = 0;
    check_cuda(cudaMemcpyAsync(&h_bad, bad, sizeof(int), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
    check_cuda(cudaStreamSynchronize(stream), "topk_route_kernel");
    check_cuda(cudaFreeAsync(bad, stream), "cudaFreeAsync");
    check<ValueError>(h_bad == 0, where, "a logit of token ", h_bad - 1, " is NaN or +inf");
}

/// The RoutingPlan arrays in device memory (same names, same meaning; owned by the caller).
struct DevicePlan {
    int num_tokens = 0, num_experts = 0, k = 0, capacity = 0;
    std::int32_t* counts = nullptr;         // [E]
    std::int32_t* offsets = nullptr;        // [E + 1]
    long long* load = nullptr;              // [E]
    std::int32_t* slot_to_token = nullptr;  // [T * k] (first num_slots used)
    float* slot_weights = nullptr;          // [T * k]
    std::int32_t* token_to_slot = nullptr;  // [T * k]
};

/// Builds counts, offsets, both permutation maps and load from ids/weights on the device, with
/// token-order capacity (capacity 0 = unlimited). Deterministic: slots in ascending token order.
/// Returns the number of slots.
inline int build_plan(const std::int32_t* ids, const float* weights, DevicePlan& p, cudaStream_t stream = nullptr) {
    const int E = p.num_experts;
    kernel::plan_kernel<<<E, 256, 0, stream>>>(ids, weights, p.num_tokens, p.k, p.capacity, nullptr, p.counts,
                                               p.load, nullptr, nullptr, nullptr, false);
    check_cuda(cudaGetLastError(), "plan_kernel launch");
    // offsets on the host: E is small and this keeps the kernel simple
    std::vector<std::int32_t> hv(static_cast<std::size_t>(E) * 2 + 1);
    std::int32_t* h = hv.data();
    check_cuda(cudaMemcpyAsync(h, p.counts, sizeof(std::int32_t) * E, cudaMemcpyDeviceToHost, stream), "counts");
    check_cuda(cudaStreamSynchronize(stream), "plan_kernel");
    std::int32_t* off = h + E;
    off[0] = 0;
    for (int e = 0; e < E; ++e) off[e + 1] = off[e] + h[e];
    const int slots = off[E];
    check_cuda(cudaMemcpyAsync(p.offsets, off, sizeof(std::int32_t) * (E + 1), cudaMemcpyHostToDevice, stream),
               "offsets");
    check_cuda(cudaMemsetAsync(p.token_to_slot, 0xff, sizeof(std::int32_t) * p.num_tokens * p.k, stream),
               "token_to_slot");
    kernel::plan_kernel<<<E, 256, 0, stream>>>(ids, weights, p.num_tokens, p.k, p.capacity, p.offsets, p.counts,
                                               p.load, p.slot_to_token, p.slot_weights, p.token_to_slot, true);
    check_cuda(cudaGetLastError(), "plan_kernel launch");
    check_cuda(cudaStreamSynchronize(stream), "plan_kernel");
    return slots;
}

}  // namespace moe::cuda
