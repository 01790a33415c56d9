// vision/pos_embed.hpp - learned absolute position embeddings and their bicubic resize.
//
// resize_bicubic reproduces torch.nn.functional.interpolate(mode='bicubic',
// align_corners=False, antialias=False) on a [gh, gw, C] grid (channels last): source
// coordinate (dst + 0.5) * in / out - 0.5, Keys cubic convolution with A = -0.75, taps at
// floor(src) - 1 .. floor(src) + 2 clamped to the border. timm's resample_abs_pos_embed and
// HF's interpolate_pos_encoding call it on the grid part (the CLS row, if any, is kept).
#pragma once

#include <array>
#include <cmath>
#include <map>
#include <utility>

#include "vision/common.hpp"

namespace moe::vision {

namespace detail {

/// The four Keys weights (A = -0.75) of fractional offset t in [0, 1), as PyTorch's
/// get_cubic_upsample_coefficients.
inline std::array<float, 4> cubic_coeffs(float t) noexcept {
    constexpr float A = -0.75f;
    auto c1 = [](float x) { return ((A + 2) * x - (A + 3)) * x * x + 1; };          // |x| <= 1
    auto c2 = [](float x) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; };    // 1 < |x| < 2
    return {c2(t + 1.0f), c1(t), c1(1.0f - t), c2(2.0f - t)};
}

}  // namespace detail

/// [gh * gw, C] (row-major grid, channels last) -> [nh * nw, C], bicubic, align_corners=False.
inline Tensor resize_bicubic(ConstMatrixRef<float> grid, index_t gh, index_t gw, index_t nh, index_t nw) {
    const char* w = "vision::resize_bicubic";
    check<ShapeError>(gh > 0 && gw > 0 && grid.rows == gh * gw, w, "a ", gh, " x ", gw, " grid needs ", gh * gw,
                      " rows, found ", grid.rows);
    check<ShapeError>(nh > 0 && nw > 0, w, "target grid ", nh, " x ", nw, " is empty");
    const index_t C = grid.cols;
    Tensor out(DType::f32, {nh * nw, C});
    float* o = out.data<float>();
    // PyTorch computes the scale as in / out in float (area_pixel_compute_scale) and the source
    // index in float.
    const float sh = static_cast<float>(gh) / static_cast<float>(nh);
    const float sw = static_cast<float>(gw) / static_cast<float>(nw);
    auto clampi = [](index_t v, index_t n) { return std::max<index_t>(0, std::min<index_t>(v, n - 1)); };
    std::vector<float> row(static_cast<std::size_t>(4 * C));
    for (index_t y = 0; y < nh; ++y) {
        const float ry = sh * (static_cast<float>(y) + 0.5f) - 0.5f;
        const auto iy = static_cast<index_t>(std::floor(ry));
        const auto wy = detail::cubic_coeffs(ry - static_cast<float>(iy));
        for (index_t x = 0; x < nw; ++x) {
            const float rx = sw * (static_cast<float>(x) + 0.5f) - 0.5f;
            const auto ix = static_cast<index_t>(std::floor(rx));
            const auto wx = detail::cubic_coeffs(rx - static_cast<float>(ix));
            float* dst = o + (y * nw + x) * C;
            // PyTorch: interpolate along x for each of the 4 rows, then along y.
            for (int a = 0; a < 4; ++a) {
                const index_t sy = clampi(iy - 1 + a, gh);
                float* r = row.data() + a * C;
                for (index_t c = 0; c < C; ++c) {
                    float v = 0;
                    for (int b = 0; b < 4; ++b) v += grid(sy * gw + clampi(ix - 1 + b, gw), c) * wx[static_cast<std::size_t>(b)];
                    r[c] = v;
                }
            }
            for (index_t c = 0; c < C; ++c) {
                float v = 0;
                for (int a = 0; a < 4; ++a) v += row[static_cast<std::size_t>(a * C + c)] * wy[static_cast<std::size_t>(a)];
                dst[c] = v;
            }
        }
    }
    return out;
}

/// A learned absolute position embedding: `prefix` rows (CLS) then a gh x gw grid, [prefix +
/// gh * gw, C]. at(nh, nw) returns the table for another grid (grid part resized bicubically,
/// cached per grid).
class PosEmbed {
public:
    PosEmbed() = default;
    PosEmbed(Tensor table, index_t prefix, index_t gh, index_t gw, std::string_view what = "vision::PosEmbed")
        : prefix_(prefix), gh_(gh), gw_(gw) {
        if (table.rank() == 3 && table.dim(0) == 1) table.reshape({table.dim(1), table.dim(2)});
        check<ShapeError>(table.rank() == 2 && table.dim(0) == prefix + gh * gw, what, "expected [", prefix + gh * gw,
                          ", C] (", prefix, " prefix rows + a ", gh, " x ", gw, " grid), found ", table.shape().str());
        table_ = table.dtype() == DType::f32 ? std::move(table) : convert(table.view(), DType::f32);
    }
    index_t width() const noexcept { return table_.rank() == 2 ? table_.dim(1) : 0; }
    index_t prefix() const noexcept { return prefix_; }
    std::pair<index_t, index_t> grid() const noexcept { return {gh_, gw_}; }
    index_t parameters() const noexcept { return table_.numel(); }
    const Tensor& table() const noexcept { return table_; }

    /// The [prefix + nh * nw, C] table for an nh x nw grid.
    ConstMatrixRef<float> at(index_t nh, index_t nw) const {
        if (nh == gh_ && nw == gw_) return table_.matrix<float>();
        auto it = cache_.find({nh, nw});
        if (it == cache_.end()) {
            const index_t C = width();
            const auto m = table_.matrix<float>();
            Tensor grid = resize_bicubic(m.block_rows(prefix_, gh_ * gw_), gh_, gw_, nh, nw);
            Tensor t(DType::f32, {prefix_ + nh * nw, C});
            std::memcpy(t.data<float>(), m.data, static_cast<std::size_t>(prefix_ * C) * sizeof(float));
            std::memcpy(t.data<float>() + prefix_ * C, grid.data<float>(), grid.nbytes());
            it = cache_.emplace(std::make_pair(nh, nw), std::move(t)).first;
        }
        return it->second.matrix<float>();
    }

private:
    Tensor table_;
    index_t prefix_ = 0, gh_ = 0, gw_ = 0;
    mutable std::map<std::pair<index_t, index_t>, Tensor> cache_;
};

}  // namespace moe::vision
