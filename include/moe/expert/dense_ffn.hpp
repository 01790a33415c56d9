// moe/expert/dense_ffn.hpp - DenseFfn<Act, W>: the dense FFN  y = fc2(Act(fc1(x))), or in its
// gated form (DenseFfn::glu) y = fc2(Act(fc1(x)) * up(x)): the SwiGLU MLP of LLaMA / Qwen2
// (fc1 = gate_proj, up = up_proj, fc2 = down_proj).
//
// The one dense feed-forward block of the library: a dense model's FFN slot (ViT, Swin, EVA,
// SigLIP: vision::Mlp is this type), what an SVD fold of a layer's experts produces, and a
// block's FFN in a dense RingMoE encoder. fc1 [F, d] (+ bias [F]) and fc2 [d, F] (+ bias [d]) are
// cpu::Linear<W> (one matrix each, stored [out, in] or [in, out], borrowed from a file or
// converted once), weights of type W with fp32 accumulation, biases fp32. Act is GELU
// (moe::Gelu, erf: timm ViT, EVA), its tanh form (moe::GeluTanh: SigLIP, MindSpore's nn.GELU
// as RingMoE uses it), or any moe::Activation. experts() views it as a one-expert MlpExperts
// (weights shared), so it also plugs into SharedExperts or any ExpertSet consumer.
// DenseFfn::projection(fc1 [F, d_in], fc2 [d_out, F]) is the same block between two widths (a
// vision-language projector, LLaVA's mlp2x_gelu: Linear(1152, 896), GELU, Linear(896, 896)):
// forward() then maps [T, d_in] to [T, d_out] (output_size()).
#pragma once

#include <memory>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "moe/core/precision.hpp"
#include "moe/backend/cpu/activation.hpp"
#include "moe/backend/cpu/linear.hpp"
#include "moe/backend/cpu/simd.hpp"
#include "moe/core/error.hpp"
#include "moe/core/plan.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/ffn.hpp"

namespace moe {

template <Activation Act, WeightPolicy W = float>
class DenseFfn {
public:
    using activation = Act;
    using weight_type = W;

    DenseFfn() = default;
    /// fc1 [F, d] and fc2 [d, F] (one matrix each, either layout; biases optional).
    DenseFfn(cpu::Linear<W> fc1, cpu::Linear<W> fc2, std::string_view what = "DenseFfn")
        : DenseFfn(std::move(fc1), std::move(fc2), what, true) {}
    /// fc1 [F, d_in] and fc2 [d_out, F]: a projection from d_in to d_out features (d_out may
    /// differ from d_in; ungated). Everything else is as the square form.
    static DenseFfn projection(cpu::Linear<W> fc1, cpu::Linear<W> fc2, std::string_view what = "DenseFfn") {
        return DenseFfn(std::move(fc1), std::move(fc2), what, false);
    }
    /// The gated form: y = fc2(Act(fc1 x) * up x). gate (fc1) and up [F, d], down (fc2) [d, F].
    static DenseFfn glu(cpu::Linear<W> gate, cpu::Linear<W> up, cpu::Linear<W> down, std::string_view what = "DenseFfn") {
        DenseFfn f(std::move(gate), std::move(down), what);
        check<ShapeError>(up.count() == 1 && up.out_features() == f.ffn_size() && up.in_features() == f.hidden_size(),
                          what, "up [", up.out_features(), ", ", up.in_features(), "] does not match gate [",
                          f.ffn_size(), ", ", f.hidden_size(), "]");
        f.up_ = std::move(up);
        return f;
    }
    /// From a one-expert MlpExperts (weights shared).
    explicit DenseFfn(const MlpExperts<Act, W>& experts, std::string_view what = "DenseFfn")
        : DenseFfn(one(experts.fc1(), experts.num_experts(), what), one(experts.fc2(), experts.num_experts(), what),
                   what) {}
    /// Owns copies of fp32 values (converted to W): w1 [F * d], b1 [F], w2 [d * F], b2 [d],
    /// row-major [out, in]; an empty bias means none.
    static DenseFfn from_values(index_t d, index_t F, std::span<const float> w1, std::span<const float> b1,
                                std::span<const float> w2, std::span<const float> b2) {
        const char* w = "DenseFfn::from_values";
        check<ConfigError>(d > 0 && F > 0, w, "sizes must be positive, got d = ", d, ", F = ", F);
        return {cpu::Linear<W>::from_values(F, d, w1, b1, "DenseFfn::from_values fc1"),
                cpu::Linear<W>::from_values(d, F, w2, b2, "DenseFfn::from_values fc2")};
    }
    /// Random weights (torch.nn.Linear's default init) for tests and benchmarks.
    static DenseFfn random(index_t d, index_t F, std::uint64_t seed, bool bias = true) {
        return DenseFfn(MlpExperts<Act, W>::random(1, d, F, seed, bias));
    }

    /// Input features (d; d_in of a projection).
    index_t hidden_size() const noexcept { return fc1_.in_features(); }
    index_t ffn_size() const noexcept { return fc1_.out_features(); }
    /// Output features: hidden_size(), or d_out of a projection.
    index_t output_size() const noexcept { return fc2_.out_features(); }
    index_t parameters() const noexcept { return fc1_.parameters() + fc2_.parameters() + (gated() ? up_.parameters() : 0); }
    const cpu::Linear<W>& fc1() const noexcept { return fc1_; }
    const cpu::Linear<W>& fc2() const noexcept { return fc2_; }
    /// The gated form's up projection (gated() only).
    const cpu::Linear<W>& up() const noexcept { return up_; }
    /// True for the gated form (DenseFfn::glu).
    bool gated() const noexcept { return up_.count() > 0; }
    /// The same FFN as a one-expert set (weights shared), e.g. for SharedExperts (ungated form).
    MlpExperts<Act, W> experts() const {
        check<ConfigError>(!gated(), "DenseFfn::experts", "a gated FFN is not an MlpExperts");
        check<ConfigError>(output_size() == hidden_size(), "DenseFfn::experts", "a projection (", hidden_size(),
                           " -> ", output_size(), " features) is not an MlpExperts");
        return {fc1_, fc2_};
    }

    /// Where the GEMMs run (default Exec{}: all OpenMP threads; output columns split, results do
    /// not depend on the thread count).
    void set_exec(const Exec& ex) noexcept { exec_ = ex; }
    const Exec& exec() const noexcept { return exec_; }
    /// Share o's activation and GEMM buffers (FFNs of blocks that run one after the other).
    void share_scratch(const DenseFfn& o) {
        h_.share(o.h_);
        u_.share(o.u_);
        fc1_.share_scratch(o.fc1_);
        if (gated() && o.gated()) up_.share_scratch(o.up_);
        fc2_.share_scratch(o.fc2_);
    }

    /// y [T, d] = FFN(x [T, d]) (Combine::add: y +=). y must not alias x.
    void forward(ConstMatrixRef<float> x, MatrixRef<float> y, Combine combine = Combine::overwrite) const {
        const char* w = "DenseFfn::forward";
        const index_t d = hidden_size(), F = ffn_size(), T = x.rows, out = output_size();
        check<ShapeError>(x.cols == d, w, "input has ", x.cols, " features, expected ", d);
        check<ShapeError>(y.rows == T && y.cols == out, w, "output is [", y.rows, ", ", y.cols, "], expected [", T,
                          ", ", out, "]");
        if (T == 0) return;
        MatrixRef<float> h(h_.get(static_cast<std::size_t>(T * F)), T, F);
        if (gated()) {
            // u = up(x) first; then h = Act(fc1 x) * u on each finished block of fc1's output.
            MatrixRef<float> u(u_.get(static_cast<std::size_t>(T * F)), T, F);
            up_.forward(x, u, exec_);
            fc1_.forward(x, h, exec_, false, [&](MatrixRef<float> blk) {
                const index_t c0 = blk.data - h.data;  // the block's first column (row 0)
                for (index_t r = 0; r < blk.rows; ++r) cpu::glu<Act>(blk.row(r), u.row(r) + c0, blk.cols);
            });
            fc2_.forward(ConstMatrixRef<float>(h), y, exec_, combine == Combine::add);
            return;
        }
        // The activation runs on each finished block of fc1's output inside the parallel region.
        fc1_.forward(x, h, exec_, false, [](MatrixRef<float> blk) {
            for (index_t r = 0; r < blk.rows; ++r) Act::apply(blk.row(r), blk.cols);
        });
        fc2_.forward(ConstMatrixRef<float>(h), y, exec_, combine == Combine::add);
    }
    /// Convenience: a new [T, output_size()] tensor.
    Tensor forward(const Tensor& x) const {
        const ConstMatrixRef<float> xm = x.matrix<float>("DenseFfn::forward input");
        Tensor y(DType::f32, {xm.rows, output_size()});
        forward(xm, y.matrix<float>());
        return y;
    }

private:
    DenseFfn(cpu::Linear<W> fc1, cpu::Linear<W> fc2, std::string_view what, bool square)
        : fc1_(std::move(fc1)), fc2_(std::move(fc2)) {
        check<ShapeError>(fc1_.count() == 1 && fc2_.count() == 1, what, "expected one matrix each, fc1 holds ",
                          fc1_.count(), ", fc2 ", fc2_.count());
        check<ShapeError>(fc2_.in_features() == fc1_.out_features() &&
                              (!square || fc2_.out_features() == fc1_.in_features()),
                          what, "fc1 [", fc1_.out_features(), ", ", fc1_.in_features(), "] and fc2 [",
                          fc2_.out_features(), ", ", fc2_.in_features(), "] do not chain");
    }
    static cpu::Linear<W> one(const cpu::Linear<W>& l, index_t experts, std::string_view what) {
        check<ShapeError>(experts == 1, what, "expected one expert, got ", experts);
        return l;
    }

    cpu::Linear<W> fc1_, fc2_, up_;
    Exec exec_;
    mutable Scratch<float> h_, u_;
};

}  // namespace moe
