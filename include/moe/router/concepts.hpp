// moe/router/concepts.hpp - the Router contract and its optional capabilities.
//
//   Router<R>            what MoELayer, RoutedGroup and HierarchicalMoE require
//   TopKRouterLike<R>    k() / set_k(k)                     (ReduceK, the pruning reports)
//   LogitRouter<R>       last_logits()                      (the routed group's auxiliary loss)
//   CountsParameters<T>  parameters()                       (parameter counts of layers and reports)
//
// Code uses an optional capability only through these concepts, so a router with exactly
// Router's members works everywhere a Router is accepted, and one whose member drifts from the
// signature a concept names loses that capability visibly (static_assert it next to the type).
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
/// Optional capabilities (used when present): CountsParameters, LogitRouter, ExecAware (core/parallel.hpp),
/// TopKRouterLike, below. moe/prune copies routers and layers (collect(), the policies), and its
/// policies state what else they need (Selectable, TopKRouterLike).
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

/// Something whose stored weights can be counted (routers, expert sets, layers, FFN slots).
/// Optional for routers: a router without it counts 0 in the layers' parameters().
///
/// Promises:
///  * parameters() is the count of its stored weights and biases (a router: its gate's), and
///    does not change unless the object is rebuilt.
template <class T>
concept CountsParameters = requires(const T& t) {
    { t.parameters() } -> std::convertible_to<index_t>;
};

/// A router that keeps the logits it routed from. Optional: a RoutedGroup computes its
/// auxiliary loss (sequential_group_loss, moe/layer/routed_group.hpp) from them; a router
/// without it gives the group a loss of 0.
///
/// Promises:
///  * after route(x, plan) with x: [T, d], last_logits() is [T, E]: row t holds the scores
///    whose softmax is token t's routing distribution (what the plan's choices were made from),
///    valid until the next route() call;
///  * before the first route() call it throws (moe::Error).
template <class R>
concept LogitRouter = Router<R> && requires(const R& cr) {
    { cr.last_logits() } -> std::convertible_to<ConstMatrixRef<float>>;
};

}  // namespace moe
