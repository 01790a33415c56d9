// vision/mlp.hpp - the dense FFN of a transformer block: y = fc2(Act(fc1(x))).
//
// vision::Mlp is the library's one dense FFN, moe::DenseFfn (moe/expert/dense_ffn.hpp), with
// the vision defaults: Act = GELU (moe::Gelu, erf: timm ViT, EVA; moe::GeluTanh for SigLIP and
// RingMoE's MindSpore nn.GELU), weights fp32. It is one possible type of a block's FFN slot; a
// MoELayer or a HierarchicalMoE fits the same slot.
#pragma once

#include "moe/core/precision.hpp"
#include "moe/backend/cpu/activation.hpp"
#include "moe/expert/dense_ffn.hpp"
#include "vision/common.hpp"

namespace moe::vision {

template <Activation Act = Gelu, WeightPolicy W = float>
using Mlp = DenseFfn<Act, W>;

}  // namespace moe::vision
