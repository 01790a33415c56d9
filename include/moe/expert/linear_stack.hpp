// moe/expert/linear_stack.hpp - E linear maps out x in (+ bias [out]): what experts are made of.
//
// Each expert's weight is one contiguous row-major matrix, [out, in] as torch.nn.Linear stores it
// or [in, out] as MindSpore's stacked experts do (RingMoE: [E, in, out]); the GEMMs read either
// layout (WeightMatrix). The E matrices may be slices of one stacked tensor or E separate tensors
// (as Hugging Face checkpoints name them, experts.{i}.w1.weight); either way they are referenced
// in place when the dtype already matches W (zero copy from an mmapped file), and converted once
// otherwise (keeping their layout). Biases are kept in fp32. `owners` keeps the memory alive.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"

namespace moe {

template <WeightType W>
class LinearStack {
public:
    LinearStack() = default;

    index_t experts() const noexcept { return static_cast<index_t>(weight_.size()); }
    index_t out_features() const noexcept { return out_; }
    index_t in_features() const noexcept { return in_; }
    bool has_bias() const noexcept { return !bias_.empty(); }
    /// How every expert's matrix is stored.
    WeightLayout layout() const noexcept { return layout_; }

    /// Expert e's weight (out x in, stored as layout() says).
    WeightMatrix<W> weight(index_t e) const noexcept {
        return {weight_[static_cast<std::size_t>(e)], out_, in_, layout_ == WeightLayout::out_in ? in_ : out_, layout_};
    }
    /// Expert e's bias [out], or null.
    const float* bias(index_t e) const noexcept { return bias_.empty() ? nullptr : bias_[static_cast<std::size_t>(e)]; }
    /// Parameters held (weights and biases).
    index_t parameters() const noexcept { return experts() * (out_ * in_ + (has_bias() ? out_ : 0)); }

    /// From one stacked tensor w ([E, out, in], or [E, in, out] with layout in_out) and optional
    /// bias [E, out]. `owner` keeps their memory alive (e.g. SafetensorsFile::keep_alive());
    /// `what` names them in errors.
    static LinearStack from_stacked(const TensorView& w, const TensorView* b, std::shared_ptr<const void> owner,
                                    std::string_view what, WeightLayout layout = WeightLayout::out_in) {
        const bool oi = layout == WeightLayout::out_in;
        check<ShapeError>(w.rank() == 3, what, "expected a stacked weight ", oi ? "[E, out, in]" : "[E, in, out]",
                          ", found ", w.shape().str());
        std::vector<TensorView> ws, bs;
        for (index_t e = 0; e < w.dim(0); ++e) ws.push_back(w[e]);
        if (b) {
            const index_t out = w.dim(oi ? 1 : 2);
            check<ShapeError>(b->rank() == 2 && b->dim(0) == w.dim(0) && b->dim(1) == out, what, "expected bias [",
                              w.dim(0), ", ", out, "], found ", b->shape().str());
            for (index_t e = 0; e < b->dim(0); ++e) bs.push_back((*b)[e]);
        }
        return from_list(ws, bs, std::move(owner), what, layout);
    }

    /// From E separate weights ([out, in], or [in, out] with layout in_out) and (empty or E)
    /// biases [out].
    static LinearStack from_list(std::span<const TensorView> ws, std::span<const TensorView> bs,
                                 std::shared_ptr<const void> owner, std::string_view what,
                                 WeightLayout layout = WeightLayout::out_in) {
        check<ShapeError>(!ws.empty(), what, "no expert weights");
        check<ShapeError>(bs.empty() || bs.size() == ws.size(), what, ws.size(), " weights but ", bs.size(), " biases");
        const bool oi = layout == WeightLayout::out_in;
        LinearStack s;
        s.layout_ = layout;
        s.owners_.push_back(std::move(owner));
        s.out_ = ws[0].rank() == 2 ? ws[0].dim(oi ? 0 : 1) : -1;
        s.in_ = ws[0].rank() == 2 ? ws[0].dim(oi ? 1 : 0) : -1;
        for (std::size_t e = 0; e < ws.size(); ++e) {
            const std::string name = std::string(what) + "[" + std::to_string(e) + "]";
            ws[e].expect_shape(oi ? Shape{s.out_, s.in_} : Shape{s.in_, s.out_}, name);
            check<DTypeError>(ws[e].dtype() == DType::f32 || ws[e].dtype() == DType::bf16 || ws[e].dtype() == DType::f16,
                              name, "weights must be F32, BF16 or F16, found ", dtype_name(ws[e].dtype()));
            s.weight_.push_back(s.adopt<W>(ws[e], name));
            if (!bs.empty()) {
                bs[e].expect_shape({s.out_}, name + " bias");
                s.bias_.push_back(s.adopt<float>(bs[e], name + " bias"));
            }
        }
        return s;
    }

    /// E experts with weights uniform in +-1/sqrt(in) (torch.nn.Linear's default) from `seed`.
    static LinearStack random(index_t E, index_t out, index_t in, bool bias, std::uint64_t seed) {
        check<ConfigError>(E > 0 && out > 0 && in > 0, "LinearStack::random", "sizes must be positive");
        auto t = std::make_shared<Tensor>(dtype_v<W>, Shape{E, out, in});
        auto tb = std::make_shared<Tensor>(DType::f32, Shape{E, out});
        std::mt19937_64 rng(seed);
        const float a = 1.0f / std::sqrt(static_cast<float>(in));
        std::uniform_real_distribution<float> u(-a, a);
        for (auto& v : t->template span<W>()) v = from_float<W>(u(rng));
        for (auto& v : tb->template span<float>()) v = u(rng);
        LinearStack s;
        s.out_ = out;
        s.in_ = in;
        for (index_t e = 0; e < E; ++e) {
            s.weight_.push_back(t->template data<W>() + e * out * in);
            if (bias) s.bias_.push_back(tb->template data<float>() + e * out);
        }
        s.owners_.push_back(t);
        s.owners_.push_back(tb);
        return s;
    }

    /// Keeps only the experts listed (in that order); shares the memory.
    LinearStack select(std::span<const index_t> keep) const {
        LinearStack s;
        s.out_ = out_;
        s.in_ = in_;
        s.layout_ = layout_;
        s.owners_ = owners_;
        for (index_t e : keep) {
            check<ConfigError>(e >= 0 && e < experts(), "LinearStack::select", "expert ", e, " out of range [0, ",
                               experts(), ")");
            s.weight_.push_back(weight_[static_cast<std::size_t>(e)]);
            if (has_bias()) s.bias_.push_back(bias_[static_cast<std::size_t>(e)]);
        }
        return s;
    }

private:
    // Returns a pointer to v's data as T: in place when dtype and layout fit, else a converted copy.
    template <class T>
    const T* adopt(const TensorView& v, const std::string& name) {
        if (v.dtype() == dtype_v<T> && v.contiguous()) return v.data<T>(name);
        check<DTypeError>(v.dtype() == DType::f32 || v.dtype() == DType::bf16 || v.dtype() == DType::f16, name,
                          "cannot convert ", dtype_name(v.dtype()), " to ", dtype_name(dtype_v<T>));
        auto t = std::make_shared<Tensor>(convert(v, dtype_v<T>));
        owners_.push_back(t);
        return t->template data<T>();
    }

    std::vector<const W*> weight_;
    std::vector<const float*> bias_;
    index_t out_ = 0, in_ = 0;
    WeightLayout layout_ = WeightLayout::out_in;
    std::vector<std::shared_ptr<const void>> owners_;
};

}  // namespace moe
