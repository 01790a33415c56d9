// vision/mlp.hpp - the dense FFN of a transformer block: y = fc2(Act(fc1(x))).
//
// Act is GELU (moe::Gelu, erf: timm ViT, EVA) or its tanh form (moe::GeluTanh: SigLIP,
// MindSpore's nn.GELU default as RingMoE uses it), or any moe::Activation. It is one possible
// type of a block's FFN slot; a MoELayer or a HierarchicalMoE fits the same slot.
#pragma once

#include <utility>

#include "moe/backend/cpu/activation.hpp"
#include "vision/common.hpp"

namespace moe::vision {

template <Activation Act = Gelu, WeightType W = float>
class Mlp {
public:
    using activation = Act;
    Mlp() = default;
    Mlp(Linear<W> fc1, Linear<W> fc2, std::string_view what = "vision::Mlp") : fc1_(std::move(fc1)), fc2_(std::move(fc2)) {
        check<ShapeError>(fc2_.in_features() == fc1_.out_features() && fc2_.out_features() == fc1_.in_features(),
                          what, "fc1 [", fc1_.out_features(), ", ", fc1_.in_features(), "] and fc2 [",
                          fc2_.out_features(), ", ", fc2_.in_features(), "] do not chain");
    }
    index_t hidden_size() const noexcept { return fc1_.in_features(); }
    index_t ffn_size() const noexcept { return fc1_.out_features(); }
    index_t parameters() const noexcept { return fc1_.parameters() + fc2_.parameters(); }
    /// Where the two GEMMs run (default Exec::serial()).
    void set_exec(const Exec& ex) noexcept { exec_ = ex; }
    const Linear<W>& fc1() const noexcept { return fc1_; }
    const Linear<W>& fc2() const noexcept { return fc2_; }
    /// Share o's activation and GEMM buffers (MLPs of blocks that run one after the other).
    void share_scratch(const Mlp& o) {
        hidden_.share(o.hidden_);
        fc1_.share_scratch(o.fc1_);
        fc2_.share_scratch(o.fc2_);
    }

    /// y [T, C] = fc2(Act(fc1(x))).
    void forward(ConstMatrixRef<float> x, MatrixRef<float> y) const {
        const index_t T = x.rows, F = ffn_size();
        float* h = hidden_.get(static_cast<std::size_t>(T * F));
        MatrixRef<float> hm(h, T, F);
        // The activation runs on each finished block of fc1's output inside the parallel region.
        fc1_.forward(x, hm, exec_, false, [](MatrixRef<float> blk) {
            for (index_t r = 0; r < blk.rows; ++r) Act::apply(blk.row(r), blk.cols);
        });
        fc2_.forward(hm, y, exec_);
    }

private:
    Linear<W> fc1_, fc2_;
    Exec exec_ = Exec::serial();
    mutable Scratch<float> hidden_;
};

}  // namespace moe::vision
