// moe/expert/concepts.hpp - the ExpertSet contract and its optional capabilities.
//
//   ExpertSet<X>          what RoutedGroup, MoELayer, SharedExperts and HierarchicalMoE require
//   ThreadedExpertSet<X>  optional: forward(x, plan, out, combine, exec) (used when present)
//   ScratchSharing<X>     optional: share_scratch(other) (used by the layers' share_scratch)
//   GroupedExpertSet<X>   optional: expert_forward(e, x, y, scratch), one expert over a block of
//                         rows (grouped execution; what moe::dist::ExpertParallel runs locally)
//   ThreadedGroupedExpertSet<X> optional: expert_forward(e, x, y, scratch, exec), one expert on
//                         several threads (declared in moe/expert/grouped.hpp, which uses it)
//   CollectiveExpertSet<X> optional: forward is a collective over processes (moe/dist/), so a
//                         group calls it even when a call brings it no tokens (RoutedGroup::clear)
//
// The layers use an optional capability only through these concepts (`if constexpr`), so a
// container with exactly ExpertSet's members works everywhere an ExpertSet is accepted.
// docs/usage.md, "Writing an expert container", and examples/custom_experts.cpp show one.
#pragma once

#include <concepts>

#include "moe/core/parallel.hpp"
#include "moe/core/plan.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/grouped.hpp"

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
///  * parameters() is the count of stored weights and biases;
///  * it is move-constructible (layers hold their expert sets by value).
template <class X>
concept ExpertSet = std::move_constructible<X> &&
                    requires(X& x, const X& cx, ConstMatrixRef<float> in, const RoutingPlan& plan,
                             MatrixRef<float> out, Combine combine) {
                        { cx.num_experts() } -> std::convertible_to<index_t>;
                        { cx.hidden_size() } -> std::convertible_to<index_t>;
                        { cx.parameters() } -> std::convertible_to<index_t>;
                        x.forward(in, plan, out, combine);
                    };

/// An ExpertSet whose forward also takes the execution context (moe::Exec, moe/core/parallel.hpp).
/// Optional: MoELayer, SharedExperts and HierarchicalMoE pass their set_exec() context when X has
/// it and call the four-argument forward otherwise.
///
/// Promises:
///  * forward(x, plan, out, combine, ex) computes exactly what forward(x, plan, out, combine)
///    computes (bit for bit, whatever ex.threads() is), using at most ex.threads() threads;
///  * an exception thrown by any thread reaches the caller (moe::parallel_for does this).
template <class X>
concept ThreadedExpertSet = ExpertSet<X> && requires(X& x, ConstMatrixRef<float> in, const RoutingPlan& plan,
                                                     MatrixRef<float> out, Combine combine, const Exec& ex) {
    x.forward(in, plan, out, combine, ex);
};

/// A type (expert container, shared experts) that can use another object's scratch buffers.
/// Optional: the layers' share_scratch(o) forwards to it when present and does nothing otherwise.
///
/// Promises:
///  * after a.share_scratch(b), a and b use one set of scratch buffers (so they must never run
///    at the same time); results do not change, and neither object's weights are touched.
template <class X>
concept ScratchSharing = requires(X& a, X& b) { a.share_scratch(b); };

/// An ExpertSet whose experts run one at a time over blocks of rows (grouped_compute,
/// moe/expert/grouped.hpp): MlpExperts, GluExperts. Optional.
///
/// Promises:
///  * expert_forward(e, x, y, scratch) sets y [n, d] to expert e (0 <= e < num_experts())
///    applied to every row of x [n, d], using only `scratch` for buffers (so blocks may run on
///    several threads with one scratch each); a row's result depends only on e, the block's rows
///    and their order.
template <class X>
concept GroupedExpertSet = ExpertSet<X> && requires(const X& cx, index_t e, ConstMatrixRef<float> in,
                                                    MatrixRef<float> out, ExpertScratch& scratch) {
    cx.expert_forward(e, in, out, scratch);
};

/// An ExpertSet whose forward is a collective operation over several processes (expert
/// parallelism, moe/dist/expert_parallel.hpp): every process must call it, in the same order,
/// even with no tokens. Optional: RoutedGroup::clear() (a group a call does not reach, such as
/// an absent modality of HierarchicalMoE) runs it over zero tokens when X has it.
///
/// Promises: X::collective_forward is true; forward over a 0-token plan changes no output.
template <class X>
concept CollectiveExpertSet = ExpertSet<X> && requires { requires X::collective_forward; };

}  // namespace moe
