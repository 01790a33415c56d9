// moe/router/concepts.hpp - the Router contract.
#pragma once

#include <concepts>

#include "moe/core/tensor.hpp"
#include "moe/core/plan.hpp"

namespace moe {

/// Something that assigns tokens to experts.
///
/// Promises:
///  * num_experts() == E and hidden_size() == d never change after construction;
///  * route(x, plan) with x: [T, d] (ShapeError otherwise) fills every field of plan for T
///    tokens and E experts (RoutingPlan::reset then finalize), deterministically: the same x
///    gives the same plan, ties go to the lower expert index, capacity (if any) drops choices in
///    a documented priority order;
///  * invalid values are errors, never undefined behaviour: a NaN or +inf router logit is a
///    ValueError naming the token;
///  * it is move-constructible (MoELayer holds its router by value).
///
/// Optional (used when present): parameters(), the count of the router's weights, which
/// MoELayer::parameters() adds. moe/prune copies routers and layers (collect(), the policies),
/// and its policies state what else they need (Selectable, TopKRouterLike).
template <class R>
concept Router = std::move_constructible<R> &&
                 requires(R& r, const R& cr, ConstMatrixRef<float> x, RoutingPlan& plan) {
                     { cr.num_experts() } -> std::convertible_to<index_t>;
                     { cr.hidden_size() } -> std::convertible_to<index_t>;
                     r.route(x, plan);
                 };

/// A router whose k can change at run time (k must stay in [1, E]: ConfigError otherwise).
template <class R>
concept TopKRouterLike = Router<R> && requires(R& r, const R& cr, index_t k) {
    { cr.k() } -> std::convertible_to<index_t>;
    r.set_k(k);
};

}  // namespace moe
