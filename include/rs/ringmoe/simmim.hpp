// rs/ringmoe/simmim.hpp - RingMoE's SimMIM pre-training objective (evaluation / fine-tuning use).
//
//   SimMimConfig            mask patch 32, ratio 0.6, encoder stride 32, the SAR-L1 target
//   MaskGenerator           MaskPolicyForSim: ceil(cells * ratio) of the (image / 32)^2 mask cells,
//                           each expanded to (32 / patch)^2 model patches; deterministic per seed
//   SimMimDecoder<W>        decoder_{m}: 1x1 conv C_last -> stride^2 * cin (bias), then
//                           DepthToSpace(stride) in the released DCR layout
//   SimMimHead<W>           encoder.mask_token + one decoder per modality; load_simmim_head()
//   masked_l1(), span_tensor(), modality_loss()   the loss pieces
//   simmim_forward(enc, head, batches)             masking -> encoder -> decoders -> losses
//
// What the released code (HanboBizl/RingMoE, ringmoe_framework/arch/simmim_moe.py, SimMIM_Moe)
// computes, and what is computed here:
//   * masking: after each modality's patch embedding (conv + LayerNorm), x = x (1 - w) + t w with
//     w the model-patch mask and t the one shared learnable mask token [C0] (vision::SwinForward
//     token_mask / mask_token);
//   * decoder: nn.Conv2d(C_last, 32^2 cin_m, 1, has_bias) named decoder_{m}, weight
//     [32^2 cin_m, C_last, 1, 1], then DepthToSapce(32): out[b, c, y*32 + by, x*32 + bx] =
//     z[b, (by*32 + bx) cin + c, y, x] (DCR; PyTorch's PixelShuffle is CRD and differs);
//   * loss per modality: the mask repeated to pixels [B, 1, H, W] (one channel),
//     loss = sum(|x - x_rec| mask) / (sum(mask) + 1e-5) / cin  (mean absolute error per masked
//     pixel and channel);
//   * total: the released construct ADDS the four modality losses and the MoE auxiliary loss
//     (sum over modalities, not a mean): total = sum_m loss_m + aux; aux is the sum over blocks of
//     each hierarchical layer's 0.001 (L_collab + mean over present modalities of L_modal).
//   * SAR-L1 (modality 1: HH, HV, VH, VV as real / imaginary pairs, 8 channels): the
//     physics-informed target is the total polarimetric power (span) |HH|^2 + |HV|^2 + |VH|^2 +
//     |VV|^2. The released HEAD is not self-consistent here (its data pipeline prepends a span
//     channel while patch_embed1 / decoder_1 take 8 channels); SarL1Target::span (default) keeps
//     the released 8-channel decoder and compares the span of the reconstruction with the span of
//     the input (rs::quadpol_span), channel count 1; ::channels is HEAD's 8-channel L1 (/ 8);
//     ::both is their sum. The span is of the values given (Power_generation's clip at 1 and
//     per-image min-max are a data step for the caller).
// Bad input (mask of the wrong size or with values other than 0 / 1, channel counts that do not
// fit the modality, non-finite pixels, a modality without a decoder) throws, naming what and where.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "moe/core/precision.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/io/checkpoint.hpp"
#include "moe/io/safetensors.hpp"
#include "moe/layer/concepts.hpp"
#include "rs/image.hpp"
#include "rs/radiometry.hpp"
#include "vision/common.hpp"
#include "vision/swin.hpp"

namespace moe::rs::ringmoe {

/// How the SAR-L1 branch's loss is formed (see the file comment).
enum class SarL1Target { span, channels, both };

struct SimMimConfig {
    index_t mask_patch = 32;       ///< mask cell size in pixels
    double mask_ratio = 0.6;       ///< share of cells masked (rounded up)
    index_t encoder_stride = 32;   ///< the decoder's DepthToSpace block (image / final grid)
    SarL1Target sar_l1_target = SarL1Target::span;
    int sar_l1_modality = 1;       ///< modality index of the complex quad-pol branch (-1: none)
};

namespace detail {

/// splitmix64: a small, fully specified generator (the same numbers on every platform).
struct SplitMix64 {
    std::uint64_t s;
    std::uint64_t next() noexcept {
        std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    /// Uniform in [0, n) without modulo bias (rejection).
    std::uint64_t below(std::uint64_t n) noexcept {
        const std::uint64_t limit = ~std::uint64_t{0} - (~std::uint64_t{0} % n);
        std::uint64_t v;
        do v = next();
        while (v >= limit);
        return v % n;
    }
};

}  // namespace detail

/// SimMIM's mask generator (MaskPolicyForSim): an image of `image_size` pixels has
/// (image_size / mask_patch)^2 cells, ceil(cells * ratio) of them masked, each covering
/// (mask_patch / model_patch)^2 model patches. Masks are row-major over the model-patch grid
/// (image_size / model_patch per side), 1 = masked.
class MaskGenerator {
public:
    MaskGenerator(index_t image_size, index_t model_patch, index_t mask_patch = 32, double ratio = 0.6)
        : image_(image_size), patch_(model_patch), mask_patch_(mask_patch), ratio_(ratio) {
        const char* w = "rs::ringmoe::MaskGenerator";
        check<ConfigError>(model_patch > 0 && mask_patch > 0 && image_size > 0, w, "sizes must be positive (image ",
                           image_size, ", model patch ", model_patch, ", mask patch ", mask_patch, ")");
        check<ConfigError>(image_size % mask_patch == 0, w, "image ", image_size, " is not a multiple of mask patch ",
                           mask_patch);
        check<ConfigError>(mask_patch % model_patch == 0, w, "mask patch ", mask_patch,
                           " is not a multiple of model patch ", model_patch);
        check<ConfigError>(ratio >= 0.0 && ratio <= 1.0, w, "mask ratio ", ratio, " is outside [0, 1]");
        // numpy: int(np.ceil(token_count * mask_ratio)), the same double product.
        count_ = static_cast<index_t>(std::ceil(static_cast<double>(cell_count()) * ratio_));
    }

    index_t cells_per_side() const noexcept { return image_ / mask_patch_; }
    index_t cell_count() const noexcept { return cells_per_side() * cells_per_side(); }
    index_t mask_count() const noexcept { return count_; }
    /// Model patches per cell side (mask_patch / model_patch).
    index_t scale() const noexcept { return mask_patch_ / patch_; }
    /// Model patches per image side.
    index_t grid() const noexcept { return image_ / patch_; }

    /// The cell mask [cells_per_side^2] of one image: exactly mask_count() ones, chosen by a
    /// partial Fisher-Yates shuffle driven by splitmix64(seed).
    std::vector<std::uint8_t> cells(std::uint64_t seed) const {
        const index_t n = cell_count();
        std::vector<index_t> perm(static_cast<std::size_t>(n));
        for (index_t i = 0; i < n; ++i) perm[static_cast<std::size_t>(i)] = i;
        detail::SplitMix64 rng{seed};
        std::vector<std::uint8_t> out(static_cast<std::size_t>(n), 0);
        for (index_t i = 0; i < count_; ++i) {
            const auto j = static_cast<index_t>(i + static_cast<index_t>(rng.below(static_cast<std::uint64_t>(n - i))));
            std::swap(perm[static_cast<std::size_t>(i)], perm[static_cast<std::size_t>(j)]);
            out[static_cast<std::size_t>(perm[static_cast<std::size_t>(i)])] = 1;
        }
        return out;
    }

    /// A cell mask expanded to the model-patch grid [grid^2].
    std::vector<std::uint8_t> expand(std::span<const std::uint8_t> cell_mask) const {
        const index_t r = cells_per_side(), s = scale(), g = grid();
        check<ShapeError>(static_cast<index_t>(cell_mask.size()) == r * r, "rs::ringmoe::MaskGenerator::expand",
                          "expected ", r * r, " cells, found ", cell_mask.size());
        std::vector<std::uint8_t> out(static_cast<std::size_t>(g * g));
        for (index_t y = 0; y < g; ++y)
            for (index_t x = 0; x < g; ++x)
                out[static_cast<std::size_t>(y * g + x)] = cell_mask[static_cast<std::size_t>((y / s) * r + x / s)] ? 1 : 0;
        return out;
    }

    /// One image's model-patch mask.
    std::vector<std::uint8_t> operator()(std::uint64_t seed) const { return expand(cells(seed)); }

    /// Masks of `images` images [images * grid^2]; image i uses seed + i.
    std::vector<std::uint8_t> batch(index_t images, std::uint64_t seed) const {
        std::vector<std::uint8_t> out;
        out.reserve(static_cast<std::size_t>(images * grid() * grid()));
        for (index_t i = 0; i < images; ++i) {
            const auto m = (*this)(seed + static_cast<std::uint64_t>(i));
            out.insert(out.end(), m.begin(), m.end());
        }
        return out;
    }

private:
    index_t image_, patch_, mask_patch_;
    double ratio_;
    index_t count_ = 0;
};

/// One modality's decoder: 1x1 conv C_last -> stride^2 * cin with bias, then DepthToSpace(stride)
/// in the DCR layout (channel (by * stride + bx) * cin + c goes to pixel (y * stride + by,
/// x * stride + bx) of channel c).
template <WeightPolicy W = float>
class SimMimDecoder {
public:
    SimMimDecoder() = default;
    /// conv: weight [stride^2 * out_chans, C_last] (the 1x1 kernel flattened) with bias.
    SimMimDecoder(vision::Linear<W> conv, index_t out_chans, index_t stride,
                  std::string_view what = "rs::ringmoe::SimMimDecoder")
        : conv_(std::move(conv)), cout_(out_chans), stride_(stride) {
        check<ShapeError>(cout_ > 0 && stride_ > 0 && conv_.out_features() == stride_ * stride_ * cout_, what,
                          "expected a 1x1 conv to ", stride_ * stride_ * cout_, " = ", stride_, "^2 x ", cout_,
                          " channels, found ", conv_.out_features());
        check<ShapeError>(conv_.has_bias(), what, "the decoder conv needs its bias");
    }
    index_t out_chans() const noexcept { return cout_; }
    index_t stride() const noexcept { return stride_; }
    index_t in_features() const noexcept { return conv_.in_features(); }
    index_t parameters() const noexcept { return conv_.parameters(); }
    const vision::Linear<W>& conv() const noexcept { return conv_; }

    /// z [B * h * h, C_last] (rows (b, y, x)) -> [B, cin, h * stride, h * stride].
    Tensor forward(ConstMatrixRef<float> z, index_t batch, const Exec& ex = Exec::serial()) const {
        const char* w = "rs::ringmoe::SimMimDecoder::forward";
        check<ShapeError>(batch > 0 && z.rows % batch == 0 && z.cols == in_features(), w, "expected [", batch,
                          " * h * h, ", in_features(), "], found [", z.rows, ", ", z.cols, "]");
        const index_t L = z.rows / batch;
        const auto h = static_cast<index_t>(std::lround(std::sqrt(static_cast<double>(L))));
        check<ShapeError>(h * h == L, w, L, " tokens per image are not a square grid");
        Tensor y(DType::f32, {z.rows, conv_.out_features()});
        conv_.forward(z, y.matrix<float>(), ex);
        const index_t s = stride_, C = cout_, H = h * s;
        Tensor out(DType::f32, {batch, C, H, H});
        const float* src = y.data<float>();
        float* dst = out.data<float>();
        for (index_t b = 0; b < batch; ++b)
            for (index_t yy = 0; yy < h; ++yy)
                for (index_t xx = 0; xx < h; ++xx) {
                    const float* row = src + ((b * h + yy) * h + xx) * s * s * C;
                    for (index_t by = 0; by < s; ++by)
                        for (index_t bx = 0; bx < s; ++bx)
                            for (index_t c = 0; c < C; ++c)
                                dst[((b * C + c) * H + yy * s + by) * H + xx * s + bx] = row[(by * s + bx) * C + c];
                }
        return out;
    }

private:
    vision::Linear<W> conv_;
    index_t cout_ = 0, stride_ = 0;
};

/// The objective's own parameters: the shared mask token and one decoder per modality.
template <WeightPolicy W = float>
struct SimMimHead {
    SimMimConfig config;
    Tensor mask_token;                         ///< [C0] fp32
    std::vector<SimMimDecoder<W>> decoders;    ///< per modality, in the encoder's modality order
    index_t parameters() const noexcept {
        index_t p = mask_token.numel();
        for (const auto& d : decoders) p += d.parameters();
        return p;
    }
};

/// Loads `<encoder_prefix>mask_token` [1, 1, C0] and `<decoder_prefix>decoder_{m}.weight`
/// [stride^2 cin_m, C_last, 1, 1] / `.bias` [stride^2 cin_m] for every modality of `enc`
/// (SimMIM_Moe's names). A missing tensor is a NotFoundError naming it, a mis-shaped one a
/// ShapeError with both shapes.
template <WeightPolicy W = float>
SimMimHead<W> load_simmim_head(const io::SafetensorsFile& f, const vision::SwinConfig& enc, SimMimConfig cfg = {},
                               const std::string& encoder_prefix = "encoder.", const std::string& decoder_prefix = "") {
    enc.validate("rs::ringmoe::load_simmim_head");
    SimMimHead<W> head;
    head.config = cfg;
    const index_t C0 = enc.embed_dim, CL = enc.dim(enc.stages() - 1), s = cfg.encoder_stride;
    head.mask_token = Tensor::copy_of(io::tensor(f, encoder_prefix + "mask_token", {1, 1, C0}));
    head.mask_token.reshape({C0});
    for (std::size_t m = 0; m < enc.in_chans.size(); ++m) {
        const std::string d = decoder_prefix + "decoder_" + std::to_string(m) + ".";
        const index_t cin = enc.in_chans[m];
        Tensor w = Tensor::copy_of(io::tensor(f, d + "weight", {s * s * cin, CL, 1, 1}));
        w.reshape({s * s * cin, CL});
        Tensor b = Tensor::copy_of(io::tensor(f, d + "bias", {s * s * cin}));
        head.decoders.emplace_back(vision::Linear<W>(std::move(w), std::move(b), d + "weight"), cin, s, d);
    }
    return head;
}

// ------------------------------------------------------------------------------------------------
// Losses
// ------------------------------------------------------------------------------------------------

namespace detail {

inline void check_images(const TensorView& x, std::string_view what) {
    check<ShapeError>(x.rank() == 4 && x.dtype() == DType::f32 && x.contiguous(), what,
                      "expected contiguous fp32 images [B, C, H, W], found ", x.shape().str(), " ",
                      dtype_name(x.dtype()));
}

/// The [B, G, G] model-patch mask of images [B, *, G * patch, G * patch]: size and 0 / 1 values.
inline index_t check_mask(const TensorView& x, std::span<const std::uint8_t> mask, index_t patch,
                          std::string_view what) {
    const index_t B = x.dim(0), H = x.dim(2), W = x.dim(3);
    check<ShapeError>(patch > 0 && H == W && H % patch == 0, what, "images ", H, " x ", W,
                      " are not square multiples of the patch ", patch);
    const index_t G = H / patch;
    check<ShapeError>(static_cast<index_t>(mask.size()) == B * G * G, what, "mask of ", mask.size(),
                      " flags, expected ", B, " x ", G, " x ", G, " = ", B * G * G, " (one per model patch)");
    for (std::size_t i = 0; i < mask.size(); ++i)
        check<ValueError>(mask[i] <= 1, what, "mask flag ", i, " is ", int(mask[i]), ", expected 0 or 1");
    return G;
}

}  // namespace detail

/// SimMIM's sim_loss: sum(|x - x_rec| m) / (sum(m) + 1e-5) / C with m the model-patch mask
/// [B, G, G] repeated to [B, 1, H, W] (patch pixels per side); double accumulation.
inline double masked_l1(const TensorView& x, const TensorView& x_rec, std::span<const std::uint8_t> mask,
                        index_t patch, std::string_view what = "rs::ringmoe::masked_l1") {
    detail::check_images(x, what);
    detail::check_images(x_rec, what);
    check<ShapeError>(x.shape() == x_rec.shape(), what, "image ", x.shape().str(), " and reconstruction ",
                      x_rec.shape().str(), " differ");
    const index_t G = detail::check_mask(x, mask, patch, what);
    const index_t B = x.dim(0), C = x.dim(1), H = x.dim(2);
    const float* a = x.data<float>();
    const float* r = x_rec.data<float>();
    double num = 0.0, masked_px = 0.0;
    for (index_t b = 0; b < B; ++b) {
        const std::uint8_t* mb = mask.data() + b * G * G;
        for (index_t c = 0; c < C; ++c)
            for (index_t y = 0; y < H; ++y) {
                const std::uint8_t* mrow = mb + (y / patch) * G;
                const float* pa = a + ((b * C + c) * H + y) * H;
                const float* pr = r + ((b * C + c) * H + y) * H;
                for (index_t xx = 0; xx < H; ++xx)
                    if (mrow[xx / patch]) num += std::abs(double(pa[xx]) - double(pr[xx]));
            }
        for (index_t g = 0; g < G * G; ++g) masked_px += mb[g] ? double(patch * patch) : 0.0;
    }
    return num / (masked_px + 1e-5) / double(C);
}

/// The total polarimetric power of quad-pol images [B, 8, H, W] (HH_re, HH_im, HV_re, HV_im,
/// VH_re, VH_im, VV_re, VV_im) -> [B, 1, H, W], through rs::quadpol_span.
inline Tensor span_tensor(const TensorView& x, std::string_view what = "rs::ringmoe::span_tensor") {
    detail::check_images(x, what);
    check<ShapeError>(x.dim(1) == 8, what, "expected 8 channels (HH, HV, VH, VV as real / imaginary pairs), found ",
                      x.dim(1));
    const index_t B = x.dim(0), H = x.dim(2), W = x.dim(3), n = H * W;
    Tensor out(DType::f32, {B, 1, H, W});
    const std::vector<std::string> names{"HH_re", "HH_im", "HV_re", "HV_im", "VH_re", "VH_im", "VV_re", "VV_im"};
    for (index_t b = 0; b < B; ++b) {
        Image img(names, H, W, Modality::sar);
        for (index_t c = 0; c < 8; ++c) {
            const float* src = x.data<float>() + (b * 8 + c) * n;
            std::memcpy(img.band(c).data(), src, static_cast<std::size_t>(n) * sizeof(float));
        }
        const Image s = quadpol_span(img);
        std::memcpy(out.data<float>() + b * n, s.band(0).data(), static_cast<std::size_t>(n) * sizeof(float));
    }
    return out;
}

/// The loss of one batch of modality `m` (cfg's SAR-L1 target for cfg.sar_l1_modality).
inline double modality_loss(int m, const TensorView& x, const TensorView& x_rec, std::span<const std::uint8_t> mask,
                            index_t patch, const SimMimConfig& cfg = {},
                            std::string_view what = "rs::ringmoe::modality_loss") {
    if (m != cfg.sar_l1_modality || cfg.sar_l1_target == SarL1Target::channels)
        return masked_l1(x, x_rec, mask, patch, what);
    const Tensor sx = span_tensor(x, what), sr = span_tensor(x_rec, what);
    const double span_loss = masked_l1(sx.view(), sr.view(), mask, patch, what);
    return cfg.sar_l1_target == SarL1Target::span ? span_loss : masked_l1(x, x_rec, mask, patch, what) + span_loss;
}

// ------------------------------------------------------------------------------------------------
// The objective
// ------------------------------------------------------------------------------------------------

/// One batch of one modality with its model-patch mask [B * G * G] (row-major (b, y, x), 1 = masked).
struct SimMimBatch {
    TensorView images;  ///< [B, cin_m, H, W] fp32
    std::span<const std::uint8_t> mask;
    int modality = 0;
};

struct SimMimOutput {
    std::vector<Tensor> reconstructions;  ///< per batch [B, cin_m, H, W]
    std::vector<double> losses;           ///< per batch
    double sim = 0.0;                     ///< sum of the batch losses
    double aux = 0.0;                     ///< MoE auxiliary loss summed over blocks (0 without MoE)
    double total = 0.0;                   ///< sim + aux (SimMIM_Moe.construct)
    Tensor features;                      ///< the encoder output [sum B * h^2, C_last]
};

/// Masks each batch's patch embeddings with the head's mask token, runs the encoder on all
/// batches at once (one modality chunk each, in order), decodes each batch with its modality's
/// decoder and computes the losses.
template <class Ffn, WeightPolicy W, WeightPolicy WD>
SimMimOutput simmim_forward(vision::SwinEncoder<Ffn, W>& enc, const SimMimHead<WD>& head,
                            std::span<const SimMimBatch> batches) {
    const char* w = "rs::ringmoe::simmim_forward";
    const auto& cfg = enc.config();
    check<ShapeError>(!batches.empty(), w, "no images");
    check<ShapeError>(static_cast<index_t>(head.decoders.size()) == enc.modalities(), w, "the head has ",
                      head.decoders.size(), " decoders, the encoder ", enc.modalities(), " modalities");
    check<ShapeError>(head.mask_token.numel() == cfg.embed_dim && head.mask_token.dtype() == DType::f32, w,
                      "mask token of ", head.mask_token.numel(), " values, the encoder's width is ", cfg.embed_dim);
    const index_t CL = cfg.dim(cfg.stages() - 1), hL = cfg.resolution(cfg.stages() - 1);
    std::vector<std::uint8_t> flags;
    std::vector<vision::ModalityImages> mb;
    for (std::size_t i = 0; i < batches.size(); ++i) {
        const auto& b = batches[i];
        const std::string where = std::string(w) + " (batch " + std::to_string(i) + ", modality " +
                                  std::to_string(b.modality) + ")";
        check<ShapeError>(b.modality >= 0 && b.modality < enc.modalities(), where, "modality ", b.modality,
                          " but the encoder has ", enc.modalities());
        detail::check_images(b.images, where);
        const index_t cin = cfg.in_chans[static_cast<std::size_t>(b.modality)];
        check<ShapeError>(b.images.dim(1) == cin && b.images.dim(2) == cfg.image_size &&
                              b.images.dim(3) == cfg.image_size,
                          where, "expected images [B, ", cin, ", ", cfg.image_size, ", ", cfg.image_size, "], found ",
                          b.images.shape().str());
        const auto& dec = head.decoders[static_cast<std::size_t>(b.modality)];
        check<ShapeError>(dec.out_chans() == cin && dec.in_features() == CL && hL * dec.stride() == cfg.image_size,
                          where, "decoder to ", dec.out_chans(), " channels from ", dec.in_features(), " x stride ",
                          dec.stride(), " does not fit ", cin, " channels, C_last ", CL, ", final grid ", hL);
        const float* p = b.images.data<float>();
        for (index_t k = 0; k < b.images.numel(); ++k)
            check<ValueError>(std::isfinite(p[k]), where, "pixel ", k, " is not finite (", p[k], ")");
        detail::check_mask(b.images, b.mask, cfg.patch, where);
        flags.insert(flags.end(), b.mask.begin(), b.mask.end());
        mb.push_back({b.images, b.modality});
    }
    vision::SwinForward opt;
    opt.token_mask = flags;
    opt.mask_token = head.mask_token.template data<float>();
    SimMimOutput out;
    out.features = enc.forward(std::span<const vision::ModalityImages>(mb), opt);
    if constexpr (GroupReporting<Ffn>) {
        for (index_t i = 0; i < cfg.stages(); ++i)
            for (auto& blk : enc.stage(i).blocks) out.aux += blk.ffn().losses().total;
    }
    const auto z = out.features.template matrix<float>();
    index_t row = 0;
    for (std::size_t i = 0; i < batches.size(); ++i) {
        const auto& b = batches[i];
        const index_t B = b.images.dim(0), rows = B * hL * hL;
        const ConstMatrixRef<float> zb(z.data + row * z.stride, rows, z.cols, z.stride);
        row += rows;
        Tensor rec = head.decoders[static_cast<std::size_t>(b.modality)].forward(zb, B, enc.exec());
        const std::string where = std::string(w) + " loss (batch " + std::to_string(i) + ")";
        out.losses.push_back(modality_loss(b.modality, b.images, rec.view(), b.mask, cfg.patch, head.config, where));
        out.sim += out.losses.back();
        out.reconstructions.push_back(std::move(rec));
    }
    out.total = out.sim + out.aux;
    return out;
}

}  // namespace moe::rs::ringmoe
