// moe/expert/linear_stack.hpp - LinearStack<W>: the E linear maps an expert set is made of.
//
// The name the expert containers use for a stack of E Linears (cpu::Linear, the library's one
// weight holder: moe/backend/cpu/linear.hpp), built with from_stacked (one [E, out, in] or
// [E, in, out] tensor) or from_list (E separate tensors, as Hugging Face checkpoints name them,
// experts.{i}.w1.weight); weights are read in place when their dtype is W, else converted once.
#pragma once

#include "moe/core/precision.hpp"
#include "moe/backend/cpu/linear.hpp"
#include "moe/core/dtype.hpp"

namespace moe {

template <WeightPolicy W>
using LinearStack = cpu::Linear<W>;

}  // namespace moe
