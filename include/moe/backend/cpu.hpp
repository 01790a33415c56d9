// moe/backend/cpu.hpp - the CPU backend: instruction-set selection, per-ISA operations,
// activations, norms, GEMM, the Linear weight holder and the fused routing kernel.
#pragma once

#include "moe/backend/cpu/activation.hpp"
#include "moe/backend/cpu/arch.hpp"
#include "moe/backend/cpu/gemm.hpp"
#include "moe/backend/cpu/gemm_int8.hpp"
#include "moe/backend/cpu/linear.hpp"
#include "moe/backend/cpu/norm.hpp"
#include "moe/backend/cpu/routing.hpp"
#include "moe/backend/cpu/simd.hpp"
