// moe/backend/backend.hpp - the Backend contract and the CPU backend tag.
//
// A backend is an empty tag type (CUTLASS-style policy) naming where data lives and providing
// the routing primitive every router needs. Components receive data already in the backend's
// memory space; the routing plan and the routing specification have the same fields on every
// backend (moe::RoutingPlan / moe::cuda::DevicePlan, moe::cpu::TopKSpec / moe::cuda::RouteSpec).
//
//   moe::CpuBackend          host memory; xsimd kernels, Eigen GEMM, optional OpenMP
//   moe::cuda::CudaBackend   device memory; defined in moe/backend/cuda/routing.cuh (nvcc only)
#pragma once

#include <concepts>
#include <cstdint>

#include "moe/backend/cpu/routing.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/plan.hpp"
#include "moe/core/tensor.hpp"

namespace moe {

/// Memory-space tags.
struct HostSpace {};
struct DeviceSpace {};

/// A backend names its memory space and provides `route`: logits [T, E] in its memory space ->
/// ids, weights [T, k] in its memory space, with the rule of moe::cpu::TopKSpec.
template <class B>
concept Backend = requires {
    typename B::memory_space;
    { B::name() } -> std::convertible_to<const char*>;
};

struct CpuBackend {
    using memory_space = HostSpace;
    static constexpr const char* name() noexcept { return "cpu"; }

    static void route(ConstMatrixRef<float> logits, const cpu::TopKSpec& spec, std::int32_t* ids, float* weights,
                      cpu::RouteWorkspace& ws, const Exec& ex = Exec{}) {
        cpu::topk_route(logits, spec, ids, weights, ws, ex);
    }
};

static_assert(Backend<CpuBackend>);

}  // namespace moe
