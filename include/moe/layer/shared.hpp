// moe/layer/shared.hpp - always-on shared experts.
//
//   SharedExperts<X>  every token goes through every expert of X with weight 1 and the outputs
//                     are summed (DeepSeek's shared experts, RS-MoE's public experts, RingMoE's
//                     shared expert). An optional gate g [d] scales the sum by sigmoid(x . g)
//                     per token (Qwen2-MoE's shared_expert_gate).
//   NoSharedExperts   nothing (the default of MoELayer).
#pragma once

#include <cmath>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/concepts.hpp"
#include "moe/core/plan.hpp"

namespace moe {

struct NoSharedExperts {
    static constexpr bool enabled = false;
    index_t parameters() const noexcept { return 0; }
    void forward(ConstMatrixRef<float>, MatrixRef<float>, const Exec& = Exec::serial()) {}
};

template <ExpertSet X>
class SharedExperts {
public:
    static constexpr bool enabled = true;

    SharedExperts() = default;
    explicit SharedExperts(X experts, std::vector<float> gate = {}) : x_(std::move(experts)), gate_(std::move(gate)) {
        check<ShapeError>(gate_.empty() || static_cast<index_t>(gate_.size()) == x_.hidden_size(), "SharedExperts",
                          "gate has ", gate_.size(), " entries, expected ", x_.hidden_size());
    }

    const X& experts() const noexcept { return x_; }
    X& experts() noexcept { return x_; }
    index_t hidden_size() const noexcept { return x_.hidden_size(); }
    index_t parameters() const noexcept { return x_.parameters() + static_cast<index_t>(gate_.size()); }
    /// Share o's expert scratch (layers that never run at the same time).
    void share_scratch(SharedExperts& o) {
        if constexpr (ScratchSharing<X>) x_.share_scratch(o.x_);
    }

    /// out += sum_e expert_e(x) (times sigmoid(x . g) with a gate). `ex` reaches the experts when X
    /// is a ThreadedExpertSet.
    void forward(ConstMatrixRef<float> x, MatrixRef<float> out, const Exec& ex = Exec{}) {
        const index_t T = x.rows, E = x_.num_experts();
        if (plan_.num_tokens != T || plan_.num_experts != E || plan_.k != E) {
            plan_.reset(T, E, E);
            for (index_t t = 0; t < T; ++t)
                for (index_t e = 0; e < E; ++e) plan_.expert_ids[static_cast<std::size_t>(t * E + e)] = static_cast<std::int32_t>(e);
        }
        for (index_t t = 0; t < T; ++t) {
            float w = 1.0f;
            if (!gate_.empty()) {
                double dot = 0;
                for (index_t i = 0; i < x.cols; ++i) dot += double(x(t, i)) * gate_[static_cast<std::size_t>(i)];
                w = 1.0f / (1.0f + std::exp(-static_cast<float>(dot)));
            }
            for (index_t e = 0; e < E; ++e) plan_.weights[static_cast<std::size_t>(t * E + e)] = w;
        }
        plan_.finalize();
        const RoutingPlan& plan = plan_;
        if constexpr (ThreadedExpertSet<X>)
            x_.forward(x, plan, out, Combine::add, ex);
        else
            x_.forward(x, plan, out, Combine::add);
    }

private:
    X x_;
    std::vector<float> gate_;
    RoutingPlan plan_;
};

}  // namespace moe
