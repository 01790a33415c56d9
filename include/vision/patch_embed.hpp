// vision/patch_embed.hpp - patch embedding (Conv2d with kernel = stride = patch) as one GEMM
// over unfolded patches, with an optional LayerNorm (Swin's patch_norm).
//
//   images [B, Cin, H, W] fp32 (NCHW, as PyTorch) -> tokens [B * gh * gw, C], gh = H / p,
//   gw = W / p (floor, as the convolution: SigLIP's 384 / 14 keeps 27 x 27 patches);
//   token (b, i, j) = W_conv . patch(b, :, i p .. i p + p, j p .. j p + p) + bias, where the
//   conv weight [C, Cin, p, p] is used as a [C, Cin p p] matrix (the unfold order c, ky, kx).
//   A NaN or infinite pixel is a ValueError naming its position.
#pragma once

#include <optional>
#include <utility>

#include "vision/common.hpp"

namespace moe::vision {

template <WeightType W = float>
class PatchEmbed {
public:
    PatchEmbed() = default;
    /// proj: weight [C, Cin * p * p] (a conv weight reshaped), bias [C]; norm: optional.
    PatchEmbed(Linear<W> proj, index_t in_chans, index_t patch, std::optional<LayerNorm> norm = std::nullopt,
               std::string_view what = "vision::PatchEmbed")
        : proj_(std::move(proj)), norm_(std::move(norm)), cin_(in_chans), p_(patch) {
        check<ConfigError>(patch > 0 && in_chans > 0, what, "patch ", patch, " and channels ", in_chans,
                           " must be positive");
        check<ShapeError>(proj_.in_features() == in_chans * patch * patch, what, "expected a projection over ",
                          in_chans, " x ", patch, " x ", patch, " = ", in_chans * patch * patch, " inputs, found ",
                          proj_.in_features());
        check<ShapeError>(!norm_ || norm_->size() == proj_.out_features(), what, "norm over ",
                          norm_ ? norm_->size() : 0, " features, embedding has ", proj_.out_features());
    }

    index_t in_chans() const noexcept { return cin_; }
    index_t patch() const noexcept { return p_; }
    index_t width() const noexcept { return proj_.out_features(); }
    index_t parameters() const noexcept { return proj_.parameters() + (norm_ ? norm_->parameters() : 0); }
    /// The projection (weight [C, Cin * p * p], the conv weight reshaped) and the optional norm.
    const Linear<W>& proj() const noexcept { return proj_; }
    const std::optional<LayerNorm>& norm() const noexcept { return norm_; }

    /// The token grid of an H x W image.
    std::pair<index_t, index_t> grid(index_t H, index_t Wd) const noexcept { return {H / p_, Wd / p_}; }

    /// tokens [B * gh * gw, C] of images [B, Cin, H, W].
    Tensor forward(const TensorView& images, const Exec& ex = Exec::serial()) const {
        const char* w = "vision::PatchEmbed::forward";
        check<ShapeError>(images.rank() == 4 && images.dim(1) == cin_, w, "expected images [B, ", cin_,
                          ", H, W], found ", images.shape().str());
        check<ShapeError>(images.contiguous(), w, "images must be contiguous (NCHW)");
        const index_t B = images.dim(0), H = images.dim(2), Wd = images.dim(3);
        const auto [gh, gw] = grid(H, Wd);
        check<ShapeError>(gh > 0 && gw > 0, w, "a ", H, " x ", Wd, " image is smaller than one ", p_, " x ", p_,
                          " patch");
        const float* img = images.data<float>(w);
        detail::check_finite(ConstMatrixRef<float>(img, 1, images.numel()), w);
        const index_t K = cin_ * p_ * p_, T = B * gh * gw;
        float* cols = cols_.get(static_cast<std::size_t>(T * K));
        for (index_t b = 0; b < B; ++b)
            for (index_t i = 0; i < gh; ++i)
                for (index_t j = 0; j < gw; ++j) {
                    float* dst = cols + ((b * gh + i) * gw + j) * K;
                    for (index_t c = 0; c < cin_; ++c)
                        for (index_t ky = 0; ky < p_; ++ky) {
                            const float* src = img + ((b * cin_ + c) * H + i * p_ + ky) * Wd + j * p_;
                            std::memcpy(dst + (c * p_ + ky) * p_, src, static_cast<std::size_t>(p_) * sizeof(float));
                        }
                }
        Tensor out(DType::f32, {T, width()});
        proj_.forward(ConstMatrixRef<float>(cols, T, K), out.matrix<float>(), ex);
        if (norm_) norm_->forward(out.matrix<float>(), out.matrix<float>());
        return out;
    }

private:
    Linear<W> proj_;
    std::optional<LayerNorm> norm_;
    index_t cin_ = 0, p_ = 0;
    mutable Scratch<float> cols_;
};

}  // namespace moe::vision
