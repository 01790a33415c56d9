// moe/layer/concepts.hpp - optional capabilities of layers (FFN slots).
//
//   ModalityAware<L>   forward(x, modality ids, y) / forward(x, chunks, y) and modalities()
//                      (HierarchicalMoE; moe/prune runs such layers with the calibration
//                      batches' modality ids)
//   GroupReporting<L>  ModalityAware, and the plans and losses of its groups after a forward
//                      (HierarchicalMoE; RingMoE's routing reports and SimMIM's auxiliary loss)
#pragma once

#include <concepts>
#include <cstdint>
#include <span>

#include "moe/core/plan.hpp"
#include "moe/core/tensor.hpp"

namespace moe {

/// A layer that routes each token by its modality, given with the data.
///
/// Promises:
///  * modalities() == M >= 1 never changes after construction;
///  * forward(x, ids, y) with x, y: [T, d] and one id in [0, M) per token (ConfigError naming the
///    token otherwise) sets y to the layer's output, each token treated as its modality's;
///  * forward(x, chunks, y) computes the same for modalities given as contiguous chunks that cover
///    [0, T) in order (ShapeError otherwise).
template <class L>
concept ModalityAware = requires(L& l, const L& cl, ConstMatrixRef<float> x, std::span<const std::int32_t> ids,
                                 std::span<const ModalityChunk> chunks, MatrixRef<float> y) {
    { cl.modalities() } -> std::convertible_to<int>;
    l.forward(x, ids, y);
    l.forward(x, chunks, y);
};

/// A modality-aware layer that reports, after each forward, the routing plan of every group and
/// the auxiliary losses.
///
/// Promises:
///  * modal_plan(m) (m in [0, modalities())) and collab_plan() are the plans of the last
///    forward call: modality m's over its own tokens in order, the collaborative one over all;
///  * losses().total is the layer's auxiliary loss of that call (a finite double).
template <class L>
concept GroupReporting = ModalityAware<L> && requires(const L& cl) {
    { cl.modal_plan(0) } -> std::convertible_to<const RoutingPlan&>;
    { cl.collab_plan() } -> std::convertible_to<const RoutingPlan&>;
    { cl.losses().total } -> std::convertible_to<double>;
};

}  // namespace moe
