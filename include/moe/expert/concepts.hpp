// moe/expert/concepts.hpp - the ExpertSet contract.
#pragma once

#include <concepts>

#include "moe/core/tensor.hpp"
#include "moe/expert/grouped.hpp"
#include "moe/router/plan.hpp"

namespace moe {

/// A set of E experts mapping d features to d features, driven by a RoutingPlan.
///
/// Promises:
///  * num_experts() == E and hidden_size() == d never change after construction;
///  * forward(x, plan, out, combine) requires x: [T, d], out: [T, d], plan for T tokens and E
///    experts (ShapeError otherwise), and sets (Combine::overwrite) or adds to (Combine::add)
///    out[t] the sum over t's kept choices j of plan.weights[t, j] * expert_{e(t, j)}(x[t]);
///    dropped and empty choices contribute nothing; tokens without kept choices get 0 (or keep
///    their value under Combine::add);
///  * results do not depend on the number of threads;
///  * parameters() is the count of stored weights and biases.
template <class X>
concept ExpertSet = requires(X& x, const X& cx, ConstMatrixRef<float> in, const RoutingPlan& plan,
                             MatrixRef<float> out, Combine combine) {
    { cx.num_experts() } -> std::convertible_to<index_t>;
    { cx.hidden_size() } -> std::convertible_to<index_t>;
    { cx.parameters() } -> std::convertible_to<index_t>;
    x.forward(in, plan, out, combine);
};

}  // namespace moe
