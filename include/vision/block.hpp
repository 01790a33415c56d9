// vision/block.hpp - transformer blocks whose FFN is a template parameter.
//
//   Block<Ffn, W>        global self-attention over each image's tokens (ViT, EVA, SigLIP)
//   (SwinBlock<Ffn, W>, windowed, lives in vision/swin.hpp)
//
// Ffn is any FFN-slot type: vision::Mlp<Act, W> (dense), moe::MoELayer<...> (forward(x, y)),
// or moe::HierarchicalMoE<...> (forward(x, chunks, y): the modality of every token range comes
// from FfnContext). The attention does not depend on it. Residual orders (NormOrder):
//   pre       x = x + ls1 * attn(LN1(x));  x = x + ls2 * ffn(LN2(x))
//   res_post  x = x + LN1(attn(x));        x = x + LN2(ffn(x))
//   post      x = LN1(x + attn(x));        x = LN2(x + ffn(x))
// ls1 / ls2 are optional per-channel layer scales (timm's ls{1,2}.gamma; empty = none).
#pragma once

#include <utility>

#include "moe/core/precision.hpp"
#include "vision/attention.hpp"
#include "vision/common.hpp"

namespace moe::vision {

namespace detail {

/// One residual step around a branch `f(in, out)` with the given order; x is updated in place.
template <class F>
void residual(NormOrder order, MatrixRef<float> x, const LayerNorm& norm, const Tensor& ls, F&& f, Scratch<float>& a,
              Scratch<float>& b) {
    const index_t T = x.rows, C = x.cols;
    MatrixRef<float> ta(a.get(static_cast<std::size_t>(T * C)), T, C);
    MatrixRef<float> tb(b.get(static_cast<std::size_t>(T * C)), T, C);
    const float* scale = empty(ls) ? nullptr : ls.data<float>();
    switch (order) {
        case NormOrder::pre:
            norm.forward(x, ta);
            f(ta, tb);
            add_scaled(x, tb, scale);
            break;
        case NormOrder::res_post:
            f(x, ta);
            norm.forward(ta, ta);
            add_scaled(x, ta, scale);
            break;
        case NormOrder::post:
            check<ConfigError>(scale == nullptr, "vision block", "layer scale is not defined for the post-norm order");
            f(x, ta);
            add_scaled(ta, x, nullptr);
            norm.forward(ta, x);
            break;
    }
}

inline Tensor layer_scale(Tensor g, index_t C, std::string_view what) {
    if (empty(g)) return Tensor();
    check<ShapeError>(g.rank() == 1 && g.dim(0) == C, what, "expected layer scale shape [", C, "], found ",
                      g.shape().str());
    return g.dtype() == DType::f32 ? std::move(g) : convert(g.view(), DType::f32);
}

}  // namespace detail

/// A ViT-style block: global attention over each image's `tokens` rows, then the FFN slot.
template <class Ffn, WeightPolicy W = float>
class Block {
public:
    using ffn_type = Ffn;
    Block() = default;
    Block(LayerNorm norm1, Attention<W> attn, LayerNorm norm2, Ffn ffn, NormOrder order = NormOrder::pre,
          Tensor ls1 = {}, Tensor ls2 = {}, std::string_view what = "vision::Block")
        : norm1_(std::move(norm1)), norm2_(std::move(norm2)), attn_(std::move(attn)), ffn_(std::move(ffn)),
          order_(order) {
        const index_t C = attn_.width();
        check<ShapeError>(norm1_.size() == C && norm2_.size() == C, what, "norms over ", norm1_.size(), " and ",
                          norm2_.size(), " features, attention width ", C);
        ls1_ = detail::layer_scale(std::move(ls1), C, what);
        ls2_ = detail::layer_scale(std::move(ls2), C, what);
    }

    index_t width() const noexcept { return attn_.width(); }
    NormOrder order() const noexcept { return order_; }
    Attention<W>& attn() noexcept { return attn_; }
    const Attention<W>& attn() const noexcept { return attn_; }
    Ffn& ffn() noexcept { return ffn_; }
    const Ffn& ffn() const noexcept { return ffn_; }
    /// Share o's activation buffers (residual branches, attention, the FFN slot's where it can):
    /// blocks that run one after the other need one set, not one each.
    void share_scratch(Block& o) {
        a_.share(o.a_);
        b_.share(o.b_);
        attn_.share_scratch(o.attn_);
        if constexpr (ScratchSharing<Ffn>) ffn_.share_scratch(o.ffn_);
    }
    /// Whether this block uses o's buffers.
    bool shares_scratch_with(const Block& o) const noexcept {
        return a_.shares_with(o.a_) && attn_.shares_scratch_with(o.attn_);
    }
    const LayerNorm& norm1() const noexcept { return norm1_; }
    const LayerNorm& norm2() const noexcept { return norm2_; }
    index_t parameters() const noexcept {
        return norm1_.parameters() + norm2_.parameters() + attn_.parameters() + ffn_parameters(ffn_) +
               size_of(ls1_) + size_of(ls2_);
    }

    /// x [B * tokens, C] in place; attention within each image's `tokens` consecutive rows.
    void forward(MatrixRef<float> x, index_t tokens, const FfnContext& ctx = {}) {
        check<ShapeError>(x.cols == width(), "vision::Block::forward", "input has ", x.cols, " features, block ",
                          width());
        detail::residual(order_, x, norm1_, ls1_,
                         [&](ConstMatrixRef<float> in, MatrixRef<float> out) {
                             attn_.forward(in, out, tokens, nullptr, nullptr, 0, ctx.exec);
                         },
                         a_, b_);
        detail::residual(order_, x, norm2_, ls2_,
                         [&](ConstMatrixRef<float> in, MatrixRef<float> out) { ffn_forward(ffn_, in, out, ctx); }, a_,
                         b_);
    }

private:
    LayerNorm norm1_, norm2_;
    Attention<W> attn_;
    Ffn ffn_;
    NormOrder order_ = NormOrder::pre;
    Tensor ls1_, ls2_;
    Scratch<float> a_, b_;
};

}  // namespace moe::vision
