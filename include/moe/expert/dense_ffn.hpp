// moe/expert/dense_ffn.hpp - DenseFfn<Act, W>: an ordinary FFN  y = W2 Act(W1 x + b1) + b2.
//
// The dense feed-forward block that an SVD fold produces (and that a dense model's FFN slot
// holds): fc1 [F, d] + bias [F], fc2 [d, F] + bias [d], weights of type W (fp32 accumulation),
// biases fp32. It is stored as a one-expert MlpExperts (fc1()/fc2() are one-expert
// LinearStacks), so experts() also plugs it into SharedExperts or any ExpertSet consumer
// without a copy.
#pragma once

#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "moe/backend/cpu/activation.hpp"
#include "moe/backend/cpu/gemm.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/ffn.hpp"
#include "moe/expert/linear_stack.hpp"

namespace moe {

template <Activation Act, WeightType W = float>
class DenseFfn {
public:
    using activation = Act;
    using weight_type = W;

    DenseFfn() = default;
    /// From one-expert stacks fc1 [F, d] and fc2 [d, F] (biases optional).
    DenseFfn(LinearStack<W> fc1, LinearStack<W> fc2) : x_(std::move(fc1), std::move(fc2)) {
        check<ShapeError>(x_.num_experts() == 1, "DenseFfn", "expected one-expert stacks, got ", x_.num_experts());
    }
    /// From a one-expert MlpExperts.
    explicit DenseFfn(MlpExperts<Act, W> experts) : x_(std::move(experts)) {
        check<ShapeError>(x_.num_experts() == 1, "DenseFfn", "expected one expert, got ", x_.num_experts());
    }
    /// Owns copies of fp32 values (converted to W): w1 [F * d], b1 [F], w2 [d * F], b2 [d],
    /// row-major [out, in]; an empty bias means none.
    static DenseFfn from_values(index_t d, index_t F, std::span<const float> w1, std::span<const float> b1,
                                std::span<const float> w2, std::span<const float> b2) {
        const char* w = "DenseFfn::from_values";
        check<ConfigError>(d > 0 && F > 0, w, "sizes must be positive, got d = ", d, ", F = ", F);
        check<ShapeError>(static_cast<index_t>(w1.size()) == F * d, w, "w1 holds ", w1.size(), " values, expected ",
                          F * d);
        check<ShapeError>(static_cast<index_t>(w2.size()) == F * d, w, "w2 holds ", w2.size(), " values, expected ",
                          F * d);
        check<ShapeError>(b1.empty() || static_cast<index_t>(b1.size()) == F, w, "b1 holds ", b1.size(),
                          " values, expected ", F);
        check<ShapeError>(b2.empty() || static_cast<index_t>(b2.size()) == d, w, "b2 holds ", b2.size(),
                          " values, expected ", d);
        return {stack(F, d, w1, b1, "DenseFfn.fc1"), stack(d, F, w2, b2, "DenseFfn.fc2")};
    }
    /// Random weights (torch.nn.Linear's default init) for tests and benchmarks.
    static DenseFfn random(index_t d, index_t F, std::uint64_t seed, bool bias = true) {
        return DenseFfn(MlpExperts<Act, W>::random(1, d, F, seed, bias));
    }

    index_t hidden_size() const noexcept { return x_.hidden_size(); }
    index_t ffn_size() const noexcept { return x_.ffn_size(); }
    index_t parameters() const noexcept { return x_.parameters(); }
    const LinearStack<W>& fc1() const noexcept { return x_.fc1(); }
    const LinearStack<W>& fc2() const noexcept { return x_.fc2(); }
    /// The same FFN as a one-expert set (weights shared), e.g. for SharedExperts.
    const MlpExperts<Act, W>& experts() const noexcept { return x_; }

    /// y [T, d] = FFN(x [T, d]) (Combine::add: y +=). y must not alias x. The GEMMs are split
    /// over exec()'s threads by output columns; results do not depend on the thread count.
    void forward(ConstMatrixRef<float> x, MatrixRef<float> y, Combine combine = Combine::overwrite) {
        const char* w = "DenseFfn::forward";
        const index_t d = hidden_size(), F = ffn_size(), T = x.rows;
        check<ShapeError>(x.cols == d, w, "input has ", x.cols, " features, expected ", d);
        check<ShapeError>(y.rows == T && y.cols == d, w, "output is [", y.rows, ", ", y.cols, "], expected [", T, ", ",
                          d, "]");
        if (T == 0) return;
        MatrixRef<float> h(h_.get(static_cast<std::size_t>(T * F)), T, F);
        cpu::linear_parallel(x, fc1().weight(0), fc1().bias(0), h, false, exec_);
        Act::apply(h.data, T * F);
        cpu::linear_parallel(ConstMatrixRef<float>(h), fc2().weight(0), fc2().bias(0), y, combine == Combine::add,
                             exec_);
    }
    /// Convenience: a new [T, d] tensor.
    Tensor forward(const Tensor& x) {
        Tensor y(DType::f32, x.shape());
        forward(x.matrix<float>("DenseFfn::forward input"), y.matrix<float>());
        return y;
    }
    /// Where the GEMMs run (default Exec{}: all OpenMP threads).
    void set_exec(const Exec& ex) noexcept { exec_ = ex; }
    const Exec& exec() const noexcept { return exec_; }

private:
    static LinearStack<W> stack(index_t out, index_t in, std::span<const float> w, std::span<const float> b,
                                std::string_view what) {
        auto tw = std::make_shared<Tensor>(Tensor::from<float>({out, in}, w));
        std::vector<TensorView> ws{tw->view()}, bs;
        std::shared_ptr<Tensor> tb;
        if (!b.empty()) {
            tb = std::make_shared<Tensor>(Tensor::from<float>({out}, b));
            bs.push_back(tb->view());
        }
        auto owner = std::make_shared<std::pair<std::shared_ptr<Tensor>, std::shared_ptr<Tensor>>>(tw, tb);
        return LinearStack<W>::from_list(ws, bs, owner, what);
    }

    MlpExperts<Act, W> x_;
    Scratch<float> h_;
    Exec exec_;
};

}  // namespace moe
