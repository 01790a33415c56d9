// vision/preprocess.hpp - image processors as Hugging Face's run them (PIL resampling, rescale,
// normalise), so that an encoder sees bit for bit the pixels its reference sees.
//
//   resize_bicubic_u8(src, channels, h, w, out_h, out_w)   PIL's Image.resize(..., BICUBIC) on
//                                                          8-bit planar channels, exactly
//   rescale_normalize(u8, channels, h, w, mean, std, scale)  transformers' rescale + normalize
//   to_tensor_normalize(u8, channels, h, w, mean, std)      torchvision's ToTensor + Normalize
//   siglip_pixels(u8, h, w, size)                           SigLipImageProcessor (LLaVA-NeXT,
//                                                          RSUniVLM): RGB -> [3, size, size]
//   blip_pixels(u8, h, w, size = 224)                       LAVIS's blip_image_eval (InstructBLIP,
//                                                          RS-MoE): RGB -> [3, size, size]
//
// The resampler is Pillow's (libImaging/Resample.c, 9.x): separable, horizontal pass then
// vertical pass; bicubic kernel a = -0.5 with support 2 widened by the scale when downsampling
// (antialiasing); coefficients normalised per output pixel, then rounded to fixed point with 22
// fractional bits; each pass rounds to 8 bits and clips. A pass whose size does not change is
// skipped (PIL copies). transformers' rescale multiplies in float64 and stores float32;
// normalize subtracts and divides in float32.
//
// Layout: planar channels ([channels, h, w], row-major), the layout of rs::Image and of the
// patch embeddings. Errors: empty sizes or a buffer of the wrong length: ShapeError.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"

namespace moe::vision {

namespace detail {

/// Pillow's bicubic_filter (a = -0.5).
inline double pil_bicubic(double x) noexcept {
    constexpr double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/// Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis: per output index its first
/// input index, its tap count and ksize fixed-point coefficients.
struct PilAxis {
    static constexpr int kPrecisionBits = 32 - 8 - 2;
    index_t ksize = 0;
    std::vector<index_t> first, count;
    std::vector<std::int32_t> k;

    PilAxis(index_t in_size, index_t out_size) : first(static_cast<std::size_t>(out_size)), count(first.size()) {
        const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
        const double filterscale = scale < 1.0 ? 1.0 : scale;
        const double support = 2.0 * filterscale;
        ksize = static_cast<index_t>(std::ceil(support)) * 2 + 1;
        k.assign(static_cast<std::size_t>(out_size * ksize), 0);
        std::vector<double> w(static_cast<std::size_t>(ksize));
        for (index_t xx = 0; xx < out_size; ++xx) {
            const double center = (static_cast<double>(xx) + 0.5) * scale;
            const double ss = 1.0 / filterscale;
            auto xmin = static_cast<index_t>(center - support + 0.5);  // C's (int): toward zero
            if (xmin < 0) xmin = 0;
            auto xmax = static_cast<index_t>(center + support + 0.5);
            if (xmax > in_size) xmax = in_size;
            xmax -= xmin;
            double ww = 0.0;
            for (index_t x = 0; x < xmax; ++x) {
                const double v = pil_bicubic((static_cast<double>(x + xmin) - center + 0.5) * ss);
                w[static_cast<std::size_t>(x)] = v;
                ww += v;
            }
            for (index_t x = 0; x < xmax; ++x) {
                double v = w[static_cast<std::size_t>(x)];
                if (ww != 0.0) v /= ww;
                const double f = v * static_cast<double>(1 << kPrecisionBits);
                k[static_cast<std::size_t>(xx * ksize + x)] = static_cast<std::int32_t>(v < 0 ? -0.5 + f : 0.5 + f);
            }
            first[static_cast<std::size_t>(xx)] = xmin;
            count[static_cast<std::size_t>(xx)] = xmax;
        }
    }
    /// Pillow's clip8 of an accumulated sum.
    static std::uint8_t clip8(std::int64_t v) noexcept {
        const std::int64_t s = v >> kPrecisionBits;  // arithmetic shift: floor
        return static_cast<std::uint8_t>(s < 0 ? 0 : (s > 255 ? 255 : s));
    }
};

}  // namespace detail

/// Pillow's Image.resize((out_w, out_h), Image.BICUBIC) of 8-bit planar channels [c, h, w]:
/// the same bytes PIL returns (channels are independent in PIL's RGB path).
inline std::vector<std::uint8_t> resize_bicubic_u8(std::span<const std::uint8_t> src, index_t channels, index_t h,
                                                   index_t w, index_t out_h, index_t out_w) {
    const char* where = "vision::resize_bicubic_u8";
    check<ShapeError>(channels > 0 && h > 0 && w > 0 && out_h > 0 && out_w > 0, where, "empty size: ", channels,
                      " channels, ", h, " x ", w, " -> ", out_h, " x ", out_w);
    check<ShapeError>(static_cast<index_t>(src.size()) == channels * h * w, where, "buffer of ", src.size(),
                      " bytes for ", channels, " x ", h, " x ", w);
    std::vector<std::uint8_t> cur(src.begin(), src.end());
    constexpr std::int64_t half = std::int64_t{1} << (detail::PilAxis::kPrecisionBits - 1);
    if (out_w != w) {  // horizontal pass (rows of every channel)
        const detail::PilAxis ax(w, out_w);
        std::vector<std::uint8_t> next(static_cast<std::size_t>(channels * h * out_w));
        for (index_t r = 0; r < channels * h; ++r) {
            const std::uint8_t* in = cur.data() + r * w;
            std::uint8_t* out = next.data() + r * out_w;
            for (index_t xx = 0; xx < out_w; ++xx) {
                const std::int32_t* k = ax.k.data() + xx * ax.ksize;
                const index_t x0 = ax.first[static_cast<std::size_t>(xx)], n = ax.count[static_cast<std::size_t>(xx)];
                std::int64_t s = half;
                for (index_t x = 0; x < n; ++x) s += static_cast<std::int64_t>(in[x0 + x]) * k[x];
                out[xx] = detail::PilAxis::clip8(s);
            }
        }
        cur.swap(next);
        w = out_w;
    }
    if (out_h != h) {  // vertical pass
        const detail::PilAxis ax(h, out_h);
        std::vector<std::uint8_t> next(static_cast<std::size_t>(channels * out_h * w));
        for (index_t c = 0; c < channels; ++c) {
            const std::uint8_t* in = cur.data() + c * h * w;
            std::uint8_t* out = next.data() + c * out_h * w;
            for (index_t yy = 0; yy < out_h; ++yy) {
                const std::int32_t* k = ax.k.data() + yy * ax.ksize;
                const index_t y0 = ax.first[static_cast<std::size_t>(yy)], n = ax.count[static_cast<std::size_t>(yy)];
                for (index_t x = 0; x < w; ++x) {
                    std::int64_t s = half;
                    for (index_t y = 0; y < n; ++y) s += static_cast<std::int64_t>(in[(y0 + y) * w + x]) * k[y];
                    out[yy * w + x] = detail::PilAxis::clip8(s);
                }
            }
        }
        cur.swap(next);
    }
    return cur;
}

namespace detail {

/// (to_float(u) - mean) / std per planar channel, in float32: u8 [c, h, w] -> Tensor f32.
template <class ToFloat>
Tensor normalize_u8(std::span<const std::uint8_t> u8, index_t channels, index_t h, index_t w,
                    std::span<const float> mean, std::span<const float> stddev, const char* where, ToFloat to_float) {
    check<ShapeError>(static_cast<index_t>(u8.size()) == channels * h * w, where, "buffer of ", u8.size(),
                      " bytes for ", channels, " x ", h, " x ", w);
    check<ShapeError>(static_cast<index_t>(mean.size()) == channels && static_cast<index_t>(stddev.size()) == channels,
                      where, mean.size(), " means and ", stddev.size(), " deviations for ", channels, " channels");
    Tensor out(DType::f32, {channels, h, w});
    float* o = out.data<float>();
    for (index_t c = 0; c < channels; ++c) {
        const float m = mean[static_cast<std::size_t>(c)], s = stddev[static_cast<std::size_t>(c)];
        for (index_t i = 0; i < h * w; ++i) o[c * h * w + i] = (to_float(u8[static_cast<std::size_t>(c * h * w + i)]) - m) / s;
    }
    return out;
}

}  // namespace detail

/// transformers' rescale (u * scale in float64, stored float32) then normalize ((x - mean) / std
/// in float32), per planar channel: u8 [c, h, w] -> Tensor f32 [c, h, w].
inline Tensor rescale_normalize(std::span<const std::uint8_t> u8, index_t channels, index_t h, index_t w,
                                std::span<const float> mean, std::span<const float> stddev, double scale = 1.0 / 255.0) {
    return detail::normalize_u8(u8, channels, h, w, mean, stddev, "vision::rescale_normalize",
                                [scale](std::uint8_t u) { return static_cast<float>(static_cast<double>(u) * scale); });
}

/// torchvision's ToTensor (u / 255 in float32) then Normalize ((x - mean) / std in float32), per
/// planar channel: u8 [c, h, w] -> Tensor f32 [c, h, w]. (ToTensor divides in float32 where
/// transformers' rescale multiplies by 1/255 in float64: a few values differ in the last bit.)
inline Tensor to_tensor_normalize(std::span<const std::uint8_t> u8, index_t channels, index_t h, index_t w,
                                  std::span<const float> mean, std::span<const float> stddev) {
    return detail::normalize_u8(u8, channels, h, w, mean, stddev, "vision::to_tensor_normalize",
                                [](std::uint8_t u) { return static_cast<float>(u) / 255.0f; });
}

/// OpenAI CLIP's normalisation (LAVIS's BlipImageEvalProcessor default).
inline constexpr std::array<float, 3> kClipMean{0.48145466f, 0.4578275f, 0.40821073f};
inline constexpr std::array<float, 3> kClipStd{0.26862954f, 0.26130258f, 0.27577711f};

/// LAVIS's blip_image_eval processor (InstructBLIP, RS-MoE): torchvision's
/// Resize((size, size), BICUBIC) on the PIL image (Pillow's bicubic), ToTensor, Normalize with
/// CLIP's mean and std: RGB u8 [3, h, w] -> Tensor f32 [3, size, size].
inline Tensor blip_pixels(std::span<const std::uint8_t> rgb, index_t h, index_t w, index_t size = 224) {
    const std::vector<std::uint8_t> r = resize_bicubic_u8(rgb, 3, h, w, size, size);
    return to_tensor_normalize(r, 3, size, size, kClipMean, kClipStd);
}

/// SigLipImageProcessor (LLaVA-NeXT's, as RSUniVLM uses it): RGB u8 [3, h, w] -> PIL bicubic
/// resize to size x size -> * 1/255 -> (x - 0.5) / 0.5: Tensor f32 [3, size, size].
inline Tensor siglip_pixels(std::span<const std::uint8_t> rgb, index_t h, index_t w, index_t size) {
    const std::vector<std::uint8_t> r = resize_bicubic_u8(rgb, 3, h, w, size, size);
    constexpr std::array<float, 3> half{0.5f, 0.5f, 0.5f};
    return rescale_normalize(r, 3, size, size, half, half);
}

}  // namespace moe::vision
