// moe/router/gate.hpp - the router's linear layer: logits = x . W^T (+ b), W: [E, d].
#pragma once

#include <memory>
#include <random>
#include <span>
#include <string>

#include "moe/backend/cpu/gemm.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"

namespace moe {

/// A router's Linear(d -> E), in fp32 (routing is always computed in fp32, as the reference
/// implementations do). The weight is referenced in place when it is already fp32.
class Gate {
public:
    Gate() = default;
    /// weight [E, d] (+ bias [E]); `owner` keeps their memory alive; `what` names them in errors.
    Gate(const TensorView& weight, const TensorView* bias, std::shared_ptr<const void> owner, std::string_view what)
        : owner_(std::move(owner)) {
        check<ShapeError>(weight.rank() == 2, what, "expected a gate weight [experts, hidden], found ",
                          weight.shape().str());
        experts_ = weight.dim(0);
        hidden_ = weight.dim(1);
        check<ShapeError>(experts_ > 0 && hidden_ > 0, what, "empty gate weight ", weight.shape().str());
        w_ = adopt(weight, std::string(what));
        if (bias) {
            bias->expect_shape({experts_}, std::string(what) + " bias");
            b_ = adopt(*bias, std::string(what) + " bias");
        }
    }
    /// Owns a copy of the given values: weight [E * d] row-major, optional bias [E].
    static Gate from_values(index_t E, index_t d, std::span<const float> weight, std::span<const float> bias = {}) {
        auto t = std::make_shared<Tensor>(Tensor::from<float>({E, d}, weight));
        Gate g(t->view(), nullptr, t, "Gate");
        if (!bias.empty()) {
            auto tb = std::make_shared<Tensor>(Tensor::from<float>({E}, bias));
            g.b_ = tb->data<float>();
            g.extra_ = tb;
        }
        return g;
    }
    /// Uniform in +-1/sqrt(d), as torch.nn.Linear initialises.
    static Gate random(index_t E, index_t d, std::uint64_t seed) {
        check<ConfigError>(E > 0 && d > 0, "Gate::random", "sizes must be positive");
        std::vector<float> w(static_cast<std::size_t>(E * d));
        std::mt19937_64 rng(seed);
        std::uniform_real_distribution<float> u(-1.0f / std::sqrt(float(d)), 1.0f / std::sqrt(float(d)));
        for (auto& v : w) v = u(rng);
        return from_values(E, d, w);
    }

    index_t experts() const noexcept { return experts_; }
    index_t hidden() const noexcept { return hidden_; }
    ConstMatrixRef<float> weight() const noexcept { return {w_, experts_, hidden_}; }
    const float* bias() const noexcept { return b_; }
    index_t parameters() const noexcept { return experts_ * hidden_ + (b_ ? experts_ : 0); }

    /// out [T, E] = x [T, d] . W^T (+ b).
    void logits(ConstMatrixRef<float> x, MatrixRef<float> out, cpu::GemmWorkspace& ws) const {
        check<ShapeError>(x.cols == hidden_, "Gate::logits", "input has ", x.cols, " features, the gate takes ",
                          hidden_);
        cpu::linear(x, weight(), b_, out, false, ws);
    }

    /// A gate over the listed experts only (rows of W, in that order): used by pruning.
    Gate select(std::span<const index_t> keep) const {
        std::vector<float> w, b;
        for (index_t e : keep) {
            check<ConfigError>(e >= 0 && e < experts_, "Gate::select", "expert ", e, " out of range [0, ", experts_,
                               ")");
            w.insert(w.end(), w_ + e * hidden_, w_ + (e + 1) * hidden_);
            if (b_) b.push_back(b_[e]);
        }
        return from_values(static_cast<index_t>(keep.size()), hidden_, w, b);
    }

private:
    const float* adopt(const TensorView& v, const std::string& name) {
        if (v.dtype() == DType::f32 && v.contiguous()) return v.data<float>(name);
        auto t = std::make_shared<Tensor>(convert(v, DType::f32));
        (extra_ ? extra2_ : extra_) = t;
        return t->data<float>();
    }

    std::shared_ptr<const void> owner_, extra_, extra2_;
    const float* w_ = nullptr;
    const float* b_ = nullptr;
    index_t experts_ = 0, hidden_ = 0;
};

}  // namespace moe
