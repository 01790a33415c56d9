// moe/router/gate.hpp - the router's linear layer: logits = x . W^T (+ b), W: [E, d].
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "moe/backend/cpu/gemm.hpp"
#include "moe/backend/cpu/linear.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"

namespace moe {

/// A router's Linear(d -> E), in fp32 (routing is always computed in fp32, as the reference
/// implementations do): a cpu::Linear<float> of E outputs with the router's names. The weight is
/// read in place when it is already fp32, else converted once (cpu::Linear does both).
class Gate {
public:
    Gate() = default;
    /// weight [E, d] (+ bias [E]); `owner` keeps their memory alive; `what` names them in errors.
    Gate(const TensorView& weight, const TensorView* bias, std::shared_ptr<const void> owner, std::string_view what)
        : Gate(cpu::Linear<float>(checked(weight, what), bias, std::move(owner), what), what) {}
    /// A Linear [E, d] (one matrix, stored [out, in]).
    explicit Gate(cpu::Linear<float> linear, std::string_view what = "Gate") : lin_(std::move(linear)) {
        check<ShapeError>(lin_.count() == 1 && lin_.layout() == WeightLayout::out_in, what,
                          "a gate is one [experts, hidden] matrix");
        check<ShapeError>(lin_.out_features() > 0 && lin_.in_features() > 0, what, "empty gate weight [",
                          lin_.out_features(), ", ", lin_.in_features(), "]");
    }
    /// Owns a copy of the given values: weight [E * d] row-major, optional bias [E].
    static Gate from_values(index_t E, index_t d, std::span<const float> weight, std::span<const float> bias = {}) {
        return Gate(cpu::Linear<float>::from_values(E, d, weight, bias, "Gate"));
    }
    /// Uniform in +-1/sqrt(d), as torch.nn.Linear initialises.
    static Gate random(index_t E, index_t d, std::uint64_t seed) {
        check<ConfigError>(E > 0 && d > 0, "Gate::random", "sizes must be positive");
        return Gate(cpu::Linear<float>::random(1, E, d, false, seed));
    }

    index_t num_experts() const noexcept { return lin_.out_features(); }
    index_t hidden_size() const noexcept { return lin_.in_features(); }
    ConstMatrixRef<float> weight() const noexcept { return lin_.count() ? lin_.weight().stored() : ConstMatrixRef<float>(); }
    const float* bias() const noexcept { return lin_.count() ? lin_.bias() : nullptr; }
    index_t parameters() const noexcept { return lin_.parameters(); }
    /// The gate as a Linear.
    const cpu::Linear<float>& linear() const noexcept { return lin_; }

    /// out [T, E] = x [T, d] . W^T (+ b).
    void logits(ConstMatrixRef<float> x, MatrixRef<float> out, cpu::GemmWorkspace& ws) const {
        check<ShapeError>(x.cols == hidden_size(), "Gate::logits", "input has ", x.cols, " features, the gate takes ",
                          hidden_size());
        lin_.apply(0, x, out, ws);
    }

    /// A gate over the listed experts only (rows of W, in that order): used by pruning.
    Gate select(std::span<const index_t> keep) const { return Gate(lin_.select_outputs(keep, "Gate::select")); }

private:
    static const TensorView& checked(const TensorView& weight, std::string_view what) {
        check<ShapeError>(weight.rank() == 2, what, "expected a gate weight [experts, hidden], found ",
                          weight.shape().str());
        return weight;
    }

    cpu::Linear<float> lin_;
};

}  // namespace moe
