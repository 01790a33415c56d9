// vision/patch_embed.hpp - patch embedding (Conv2d with kernel = stride = patch) as one GEMM
// over unfolded patches, with an optional LayerNorm (Swin's patch_norm) and optional zero
// padding (DOFA's conv pads 1).
//
//   images [B, Cin, H, W] fp32 (NCHW, as PyTorch) -> tokens [B * gh * gw, C],
//   gh = (H + 2 pad - p) / p + 1, gw likewise (floor, as the convolution: SigLIP's 384 / 14 keeps
//   27 x 27 patches); token (b, i, j) = W_conv . patch(b, :, i p - pad .. i p - pad + p, ...)
//   + bias (zeros outside the image), where the conv weight [C, Cin, p, p] is used as a
//   [C, Cin p p] matrix (the unfold order c, ky, kx). The channels of one image may also be
//   given as separate planes (forward_planes: rs/ band images).
//   A NaN or infinite pixel is a ValueError naming its position.
#pragma once

#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "moe/core/precision.hpp"
#include "vision/common.hpp"

namespace moe::vision {

template <WeightPolicy W = float>
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

    /// Zero padding on every side before the convolution (0 to patch - 1).
    PatchEmbed& set_padding(index_t pad) {
        check<ConfigError>(pad >= 0 && pad < p_, "vision::PatchEmbed", "padding ", pad, " must be in [0, ", p_, ")");
        pad_ = pad;
        return *this;
    }
    index_t padding() const noexcept { return pad_; }
    index_t in_chans() const noexcept { return cin_; }
    index_t patch() const noexcept { return p_; }
    index_t width() const noexcept { return proj_.out_features(); }
    index_t parameters() const noexcept { return proj_.parameters() + (norm_ ? norm_->parameters() : 0); }
    /// The projection (weight [C, Cin * p * p], the conv weight reshaped) and the optional norm.
    const Linear<W>& proj() const noexcept { return proj_; }
    const std::optional<LayerNorm>& norm() const noexcept { return norm_; }

    /// The token grid of an H x W image (0 x 0 when it is smaller than a patch).
    std::pair<index_t, index_t> grid(index_t H, index_t Wd) const noexcept {
        const index_t h = H + 2 * pad_, w = Wd + 2 * pad_;
        if (h < p_ || w < p_) return {0, 0};
        return {(h - p_) / p_ + 1, (w - p_) / p_ + 1};
    }

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
        const index_t T = B * gh * gw, K = cin_ * p_ * p_;
        float* cols = cols_.get(static_cast<std::size_t>(T * K));
        std::vector<const float*> planes(static_cast<std::size_t>(cin_));
        for (index_t b = 0; b < B; ++b) {
            for (index_t c = 0; c < cin_; ++c) planes[static_cast<std::size_t>(c)] = img + (b * cin_ + c) * H * Wd;
            unfold(planes.data(), H, Wd, cols + b * gh * gw * K);
        }
        Tensor out(DType::f32, {T, width()});
        project(ConstMatrixRef<float>(cols, T, K), out.matrix<float>(), ex);
        return out;
    }

    /// The tokens of one image given as in_chans() planes of H x W floats (channel c at
    /// channels[c]) into out [gh * gw, C] (any row stride). The pixels are not checked.
    void forward_planes(const float* const* channels, index_t H, index_t Wd, MatrixRef<float> out,
                        const Exec& ex = Exec::serial()) const {
        const auto [gh, gw] = grid(H, Wd);
        const index_t T = gh * gw, K = cin_ * p_ * p_;
        check<ShapeError>(out.rows == T && out.cols == width(), "vision::PatchEmbed::forward_planes", "output is [",
                          out.rows, ", ", out.cols, "], expected [", T, ", ", width(), "]");
        float* cols = cols_.get(static_cast<std::size_t>(T * K));
        unfold(channels, H, Wd, cols);
        project(ConstMatrixRef<float>(cols, T, K), out, ex);
    }

private:
    // The patches of one image as rows of cols [gh * gw, Cin p p] (order c, ky, kx).
    void unfold(const float* const* channels, index_t H, index_t Wd, float* cols) const {
        const auto [gh, gw] = grid(H, Wd);
        const index_t K = cin_ * p_ * p_;
        for (index_t i = 0; i < gh; ++i)
            for (index_t j = 0; j < gw; ++j) {
                float* dst = cols + (i * gw + j) * K;
                for (index_t c = 0; c < cin_; ++c)
                    for (index_t ky = 0; ky < p_; ++ky) {
                        float* d = dst + (c * p_ + ky) * p_;
                        const index_t y = i * p_ + ky - pad_, x0 = j * p_ - pad_;
                        const float* plane = channels[c];
                        if (pad_ == 0) {
                            std::memcpy(d, plane + y * Wd + x0, static_cast<std::size_t>(p_) * sizeof(float));
                            continue;
                        }
                        for (index_t kx = 0; kx < p_; ++kx) {
                            const index_t x = x0 + kx;
                            d[kx] = (y >= 0 && y < H && x >= 0 && x < Wd) ? plane[y * Wd + x] : 0.0f;
                        }
                    }
            }
    }
    // tokens = cols . W^T + b, then the norm.
    void project(ConstMatrixRef<float> cols, MatrixRef<float> out, const Exec& ex) const {
        proj_.forward(cols, out, ex);
        if (norm_) norm_->forward(out, out);
    }

    Linear<W> proj_;
    std::optional<LayerNorm> norm_;
    index_t cin_ = 0, p_ = 0, pad_ = 0;
    mutable Scratch<float> cols_;
};

}  // namespace moe::vision
