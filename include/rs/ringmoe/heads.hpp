// rs/ringmoe/heads.hpp - task heads on RingMoE's encoder features.
//
//   ClassificationHead<W>   logits [B, K] = Linear(mean over an image's tokens of the final
//                           (normed) features): Swin's avgpool + head, and the released code's
//                           FinetuneVit/FinetuneSwin top level. Weights "head.weight" [K, C_last]
//                           ([out, in], MindSpore Linear with transpose_b = True), "head.bias" [K].
//   SegmentationHead<W>     a simple dense head: per-token Linear on one stage's features
//                           [B * R^2, C_s] -> [B, K, R, R], then bilinear upsampling to the input
//                           pixel grid [B, K, S, S] exactly as torch.nn.functional.interpolate(
//                           mode="bilinear", align_corners=False) (half-pixel centres, source
//                           index clamped at 0, the upper neighbour clamped at R - 1; no
//                           antialiasing). Weights "seg_head.weight" [K, C_s], "seg_head.bias" [K].
//                           Stage s = the last reads the final normed features; an earlier stage
//                           reads that stage's output before its patch merging (not normed).
//   upsample_bilinear(x, S) the interpolation alone ([B, K, R, R] -> [B, K, S, S]).
//
// The released code has no segmentation head (downstream segmentation ran in mmsegmentation);
// the names seg_head.* are this library's.
#pragma once

#include <cmath>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include "moe/core/precision.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "vision/common.hpp"

namespace moe::rs::ringmoe {

/// F.interpolate(x, size=(S, S), mode="bilinear", align_corners=False) of x [B, K, R, R] (any
/// R x Rw input; square output S x S unless Sw is given).
inline Tensor upsample_bilinear(const TensorView& x, index_t S, index_t Sw = 0) {
    const char* w = "rs::ringmoe::upsample_bilinear";
    check<ShapeError>(x.rank() == 4 && x.contiguous(), w, "expected a contiguous [B, K, H, W] tensor, found ",
                      x.shape().str());
    if (Sw <= 0) Sw = S;
    check<ShapeError>(S > 0 && Sw > 0, w, "output size ", S, " x ", Sw, " is not positive");
    const index_t B = x.dim(0), K = x.dim(1), H = x.dim(2), Wd = x.dim(3);
    const float* in = x.data<float>(w);
    Tensor out(DType::f32, {B, K, S, Sw});
    float* o = out.data<float>();
    struct Tap {
        index_t i0, i1;
        float l0, l1;
    };
    // PyTorch's area_pixel_compute_source_index (align_corners = False) in float, as its CPU kernel.
    auto taps = [](index_t in_size, index_t out_size) {
        std::vector<Tap> t(static_cast<std::size_t>(out_size));
        const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
        for (index_t d = 0; d < out_size; ++d) {
            float src = scale * (static_cast<float>(d) + 0.5f) - 0.5f;
            if (src < 0) src = 0;
            const auto i0 = static_cast<index_t>(src);
            const index_t step = i0 < in_size - 1 ? 1 : 0;
            const float l1 = src - static_cast<float>(i0);
            t[static_cast<std::size_t>(d)] = {i0, i0 + step, 1.0f - l1, l1};
        }
        return t;
    };
    const auto ty = taps(H, S), tx = taps(Wd, Sw);
    for (index_t p = 0; p < B * K; ++p) {
        const float* src = in + p * H * Wd;
        float* dst = o + p * S * Sw;
        for (index_t y = 0; y < S; ++y) {
            const Tap a = ty[static_cast<std::size_t>(y)];
            const float* r0 = src + a.i0 * Wd;
            const float* r1 = src + a.i1 * Wd;
            for (index_t xx = 0; xx < Sw; ++xx) {
                const Tap b = tx[static_cast<std::size_t>(xx)];
                dst[y * Sw + xx] = a.l0 * (b.l0 * r0[b.i0] + b.l1 * r0[b.i1]) + a.l1 * (b.l0 * r1[b.i0] + b.l1 * r1[b.i1]);
            }
        }
    }
    return out;
}

/// Mean-pooled features -> Linear -> logits.
template <WeightPolicy W = float>
class ClassificationHead {
public:
    ClassificationHead() = default;
    /// fc: [K, C] with bias.
    explicit ClassificationHead(vision::Linear<W> fc, std::string_view what = "rs::ringmoe::ClassificationHead")
        : fc_(std::move(fc)) {
        check<ShapeError>(fc_.out_features() > 0 && fc_.has_bias(), what, "expected a Linear [classes, C] with bias");
    }
    index_t classes() const noexcept { return fc_.out_features(); }
    index_t width() const noexcept { return fc_.in_features(); }
    index_t parameters() const noexcept { return fc_.parameters(); }
    const vision::Linear<W>& fc() const noexcept { return fc_; }

    /// features [B * L, C] (L tokens per image, in image order) -> logits [B, K].
    Tensor forward(ConstMatrixRef<float> features, index_t batch, const Exec& ex = Exec::serial()) const {
        const char* w = "rs::ringmoe::ClassificationHead::forward";
        check<ShapeError>(batch > 0 && features.rows % batch == 0 && features.cols == width(), w, "features [",
                          features.rows, ", ", features.cols, "] are not ", batch, " images of ", width(),
                          " features");
        const index_t L = features.rows / batch, C = width();
        Tensor pooled(DType::f32, {batch, C});
        std::vector<double> acc(static_cast<std::size_t>(C));
        for (index_t b = 0; b < batch; ++b) {
            std::fill(acc.begin(), acc.end(), 0.0);
            for (index_t t = 0; t < L; ++t) {
                const float* r = features.row(b * L + t);
                for (index_t c = 0; c < C; ++c) acc[static_cast<std::size_t>(c)] += r[c];
            }
            float* d = pooled.data<float>() + b * C;
            for (index_t c = 0; c < C; ++c) d[c] = static_cast<float>(acc[static_cast<std::size_t>(c)] / double(L));
        }
        Tensor logits(DType::f32, {batch, classes()});
        fc_.forward(pooled.matrix<float>(), logits.matrix<float>(), ex);
        return logits;
    }

private:
    vision::Linear<W> fc_;
};

/// Per-token Linear on one stage's features -> bilinear upsampling to the input pixel grid.
template <WeightPolicy W = float>
class SegmentationHead {
public:
    SegmentationHead() = default;
    /// fc: [K, C_stage] with bias; stage: the stage whose features it reads.
    SegmentationHead(vision::Linear<W> fc, index_t stage, std::string_view what = "rs::ringmoe::SegmentationHead")
        : fc_(std::move(fc)), stage_(stage) {
        check<ShapeError>(fc_.out_features() > 0 && fc_.has_bias(), what, "expected a Linear [classes, C] with bias");
        check<ConfigError>(stage_ >= 0, what, "stage ", stage_, " is negative");
    }
    index_t classes() const noexcept { return fc_.out_features(); }
    index_t width() const noexcept { return fc_.in_features(); }
    index_t stage() const noexcept { return stage_; }
    index_t parameters() const noexcept { return fc_.parameters(); }
    const vision::Linear<W>& fc() const noexcept { return fc_; }

    /// features [B * R * R, C] (row-major over (b, y, x)) -> per-pixel logits [B, K, S, S].
    Tensor forward(ConstMatrixRef<float> features, index_t batch, index_t R, index_t S,
                   const Exec& ex = Exec::serial()) const {
        const char* w = "rs::ringmoe::SegmentationHead::forward";
        check<ShapeError>(batch > 0 && R > 0 && features.rows == batch * R * R && features.cols == width(), w,
                          "features [", features.rows, ", ", features.cols, "] are not ", batch, " grids of ", R,
                          " x ", R, " tokens of ", width(), " features");
        const index_t K = classes(), L = R * R;
        Tensor tok(DType::f32, {batch * L, K});
        fc_.forward(features, tok.matrix<float>(), ex);
        Tensor grid(DType::f32, {batch, K, R, R});
        const float* t = tok.data<float>();
        float* g = grid.data<float>();
        for (index_t b = 0; b < batch; ++b)
            for (index_t p = 0; p < L; ++p)
                for (index_t k = 0; k < K; ++k) g[(b * K + k) * L + p] = t[(b * L + p) * K + k];
        return upsample_bilinear(grid.view(), S);
    }

private:
    vision::Linear<W> fc_;
    index_t stage_ = 0;
};

}  // namespace moe::rs::ringmoe
