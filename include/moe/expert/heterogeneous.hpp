// moe/expert/heterogeneous.hpp - RS-MoE's heterogeneous expert container, whose experts may be
// whole sub-models of different types and widths, and pluggable aggregators.
//
// HeterogeneousExperts<X...>: experts in a std::tuple, called at compile time (no virtual
// dispatch). Each X has `Tensor run(const ExpertInput&)` (the SubModelExpert concept). Which
// experts run, with which weights and prompts, comes from moe::InstructionRouter
// (moe/router/instruction.hpp). Aggregators combine their outputs: WeightedSum (same shapes),
// Concat (along the last axis), or any callable taking (std::vector<Tensor> outputs,
// std::span<const float> weights).
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <tuple>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/router/instruction.hpp"

namespace moe {

/// What an expert sub-model receives: its prompt [Lp, d_e] and the shared context (e.g. the
/// visual tokens, [n, dc]); `weight` is its routing weight.
struct ExpertInput {
    ConstMatrixRef<float> prompt;
    ConstMatrixRef<float> context;
    float weight = 1.0f;
};

/// An expert sub-model of a heterogeneous container.
template <class X>
concept SubModelExpert = requires(X& x, const ExpertInput& in) {
    { x.run(in) } -> std::same_as<Tensor>;
};

/// Weighted sum of same-shaped outputs.
struct WeightedSum {
    Tensor operator()(const std::vector<Tensor>& outs, std::span<const float> w) const {
        Tensor r;
        for (std::size_t e = 0; e < outs.size(); ++e) {
            if (outs[e].numel() == 0 && outs[e].rank() == 0) continue;  // inactive
            if (r.rank() == 0) r = Tensor(DType::f32, outs[e].shape());
            check<ShapeError>(outs[e].shape() == r.shape(), "WeightedSum", "expert ", e, " output ",
                              outs[e].shape().str(), " differs from ", r.shape().str());
            const float* o = outs[e].data<float>();
            float* d = r.data<float>();
            for (index_t i = 0; i < r.numel(); ++i) d[i] += w[e] * o[i];
        }
        return r;
    }
};

/// Concatenation of the active experts' outputs along the last axis (rows must agree).
struct Concat {
    Tensor operator()(const std::vector<Tensor>& outs, std::span<const float>) const {
        index_t rows = -1, cols = 0;
        for (std::size_t e = 0; e < outs.size(); ++e) {
            if (outs[e].rank() == 0) continue;
            check<ShapeError>(outs[e].rank() == 2, "Concat", "expert ", e, " output must be 2-D");
            check<ShapeError>(rows < 0 || outs[e].dim(0) == rows, "Concat", "expert ", e, " has ", outs[e].dim(0),
                              " rows, expected ", rows);
            rows = outs[e].dim(0);
            cols += outs[e].dim(1);
        }
        Tensor r({std::max<index_t>(rows, 0), cols});
        index_t c0 = 0;
        for (const auto& o : outs) {
            if (o.rank() == 0) continue;
            for (index_t i = 0; i < rows; ++i)
                for (index_t j = 0; j < o.dim(1); ++j) r.data<float>()[i * cols + c0 + j] = o.data<float>()[i * o.dim(1) + j];
            c0 += o.dim(1);
        }
        return r;
    }
};

template <SubModelExpert... X>
class HeterogeneousExperts {
public:
    explicit HeterogeneousExperts(X... experts) : experts_(std::move(experts)...) {}
    static constexpr index_t size() noexcept { return sizeof...(X); }
    template <std::size_t I>
    auto& get() noexcept {
        return std::get<I>(experts_);
    }

    /// Runs the active experts (compile-time dispatch over the tuple) on their prompts and the
    /// shared context; returns one output per expert (an empty tensor for inactive ones).
    std::vector<Tensor> run(const InstructionRouting& routing, ConstMatrixRef<float> context) {
        check<ShapeError>(static_cast<index_t>(routing.weights.size()) == size(), "HeterogeneousExperts::run",
                          "routing is for ", routing.weights.size(), " experts, the container holds ", size());
        std::vector<Tensor> outs(sizeof...(X));
        run_each(routing, context, outs, std::index_sequence_for<X...>{});
        return outs;
    }

    /// Runs and aggregates.
    template <class Aggregator = WeightedSum>
    Tensor forward(const InstructionRouting& routing, ConstMatrixRef<float> context, Aggregator&& agg = {}) {
        const auto outs = run(routing, context);
        return agg(outs, std::span<const float>(routing.weights));
    }

private:
    template <std::size_t... I>
    void run_each(const InstructionRouting& r, ConstMatrixRef<float> ctx, std::vector<Tensor>& outs,
                  std::index_sequence<I...>) {
        (
            [&] {
                if (!r.active[I]) return;
                ExpertInput in{r.prompts[I].template matrix<float>(), ctx, r.weights[I]};
                outs[I] = std::get<I>(experts_).run(in);
            }(),
            ...);
    }

    std::tuple<X...> experts_;
};

}  // namespace moe
