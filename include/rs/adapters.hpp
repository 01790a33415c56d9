// rs/adapters.hpp - turning an rs::Image into encoder tokens.
//
//  PatchEmbed            Conv2d(C, D, kernel = stride = p) (+ LayerNorm): the ViT / Swin patch
//                        embedding (vision::PatchEmbed) on an image's bands.
//  ModalityPatchEmbed    RingMoE: one patch embedding per modality (optical RGB 3 channels,
//                        SAR-L1 complex quad-pol 8, SAR-L2 amplitude replicated to 3,
//                        multispectral 4), each with its own weights, chosen by the image's
//                        modality. Checkpoint names encoder.patch_embed{m}.projection.* / .norm.*.
//  WavelengthPatchEmbed  DOFA: a small network generates the patch projection's weights from the
//                        bands' central wavelengths, so any band subset works with one set of
//                        weights. With DOFA's transformer weight generator (loaded by DOFA's
//                        names) it is DOFA's Dynamic_MLP_OFA, conv padding 1 included; without,
//                        a lighter MLP generator.
//  BandGroupEmbed        SatMAE style: bands split into groups, each group with its own patch
//                        projection, plus a learned group encoding; tokens group-major.
//
// Tokens are f32 [N, D] with N = (H / p) * (W / p) per group, row-major over the patch grid. Each
// adapter states which bands it accepts (accepted_bands()) and refuses images with missing or
// other bands (ConfigError naming them): select() the bands first.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "moe/backend/cpu/activation.hpp"
#include "moe/backend/cpu/gemm.hpp"
#include "moe/backend/cpu/norm.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/io/safetensors.hpp"
#include "rs/image.hpp"
#include "rs/sensors.hpp"
#include "vision/common.hpp"
#include "vision/patch_embed.hpp"

namespace moe::rs {

/// Encoder tokens and the grid they cover.
struct Tokens {
    Tensor tokens;        ///< f32 [groups * grid_h * grid_w, dim]
    index_t grid_h = 0, grid_w = 0, groups = 1;
    index_t dim() const { return tokens.dim(1); }
    index_t count() const { return tokens.dim(0); }
};

namespace detail {
/// Tensor `name` of `f` as fp32 values, of shape `expected`.
inline std::vector<float> load_floats(const io::SafetensorsFile& f, const std::string& name, const Shape& expected) {
    const TensorView v = f.get(name);
    check<ShapeError>(v.shape() == expected, name, "expected shape ", expected.str(), ", found ", v.shape().str(),
                      " in ", f.path());
    const Tensor t = convert(v, DType::f32);
    const auto s = t.span<float>();
    return {s.begin(), s.end()};
}
inline Shape shape_of(const io::SafetensorsFile& f, const std::string& name) { return f.get(name).shape(); }

/// Checks that `img` holds exactly the bands `want` (any order); returns their indices in
/// `want`'s order. ConfigError names the missing and the other bands.
inline std::vector<index_t> require_bands(const Image& img, const std::vector<std::string>& want,
                                          std::string_view who) {
    std::vector<index_t> idx;
    std::vector<std::string> missing, other;
    for (const auto& w : want) {
        const auto i = img.find(w);
        if (i) idx.push_back(*i);
        else missing.push_back(w);
    }
    for (const auto& n : img.band_names()) {
        bool ok = false;
        for (const auto& w : want) ok = ok || iequals(n, w);
        if (!ok) other.push_back(n);
    }
    if (!missing.empty() || !other.empty()) {
        std::string m = std::string("accepts exactly the bands ").append(join(want));
        if (!missing.empty()) m.append("; missing ").append(join(missing));
        if (!other.empty()) m.append("; refuses ").append(join(other)).append(" (select() the accepted bands first)");
        throw ConfigError(who, m);
    }
    return idx;
}
}  // namespace detail

/// Conv2d(in, dim, kernel = stride = patch) with bias, optionally followed by LayerNorm(dim), on
/// an image's bands: vision::PatchEmbed (fp32 weights) with the band handling of rs/.
class PatchEmbed {
public:
    PatchEmbed() = default;
    /// weight [dim, in, p, p] (Conv2d layout), bias [dim]; gamma/beta [dim] or empty (no norm).
    PatchEmbed(index_t in, index_t dim, index_t patch, std::vector<float> weight, std::vector<float> bias,
               std::vector<float> gamma = {}, std::vector<float> beta = {}, float eps = 1e-6f) {
        const char* w = "rs::PatchEmbed";
        check<ConfigError>(in > 0 && dim > 0 && patch > 0, w, "in ", in, ", dim ", dim, ", patch ", patch,
                           " must be positive");
        check<ShapeError>(static_cast<index_t>(weight.size()) == dim * in * patch * patch, w, "weight has ",
                          weight.size(), " values, expected [", dim, ", ", in, ", ", patch, ", ", patch, "]");
        check<ShapeError>(static_cast<index_t>(bias.size()) == dim, w, "bias has ", bias.size(), " values, expected ",
                          dim);
        check<ShapeError>(gamma.size() == beta.size() && (gamma.empty() || static_cast<index_t>(gamma.size()) == dim),
                          w, "norm gamma/beta must both be [", dim, "] or both absent");
        std::optional<vision::LayerNorm> norm;
        if (!gamma.empty())
            norm.emplace(Tensor::from<float>({dim}, gamma), Tensor::from<float>({dim}, beta), eps, w);
        pe_ = vision::PatchEmbed<float>(
            vision::Linear<float>(Tensor::from<float>({dim, in * patch * patch}, weight), Tensor::from<float>({dim}, bias),
                                  w),
            in, patch, std::move(norm), w);
    }
    /// An embedding built elsewhere (e.g. borrowing a checkpoint's weights).
    explicit PatchEmbed(vision::PatchEmbed<float> pe) : pe_(std::move(pe)) {}

    /// Zero padding on every side before the convolution (DOFA's conv uses 1): the grid is then
    /// ((H + 2 pad - p) / p + 1) x ((W + 2 pad - p) / p + 1), any H, W >= p - 2 pad.
    PatchEmbed& set_padding(index_t pad) {
        check<ConfigError>(pad >= 0 && pad < patch(), "rs::PatchEmbed", "padding ", pad, " must be in [0, ", patch(),
                           ")");
        pe_.set_padding(pad);
        return *this;
    }
    index_t padding() const noexcept { return pe_.padding(); }
    /// The token grid of a height x width input.
    std::pair<index_t, index_t> grid(index_t height, index_t width) const {
        const index_t p = patch(), pad = padding();
        if (pad == 0)
            check<ShapeError>(height % p == 0 && width % p == 0 && height > 0 && width > 0, "rs::PatchEmbed", "image ",
                              height, " x ", width, " is not a multiple of the patch size ", p);
        else
            check<ShapeError>(height + 2 * pad >= p && width + 2 * pad >= p, "rs::PatchEmbed", "image ", height, " x ",
                              width, " is smaller than the patch size ", p);
        return pe_.grid(height, width);
    }

    /// Conv2d weight/bias at `<conv>.weight` / `<conv>.bias` and, when `norm` is not empty,
    /// LayerNorm at `<norm>.gamma|weight` / `<norm>.beta|bias` (MindSpore or PyTorch names).
    /// fp32 weights are read in place from the mapping; other dtypes are converted once.
    static PatchEmbed load(const io::SafetensorsFile& f, const std::string& conv, const std::string& norm = {},
                           float eps = 1e-6f) {
        const TensorView wv = f.get(conv + ".weight");
        const Shape ws = wv.shape();
        check<ShapeError>(ws.rank() == 4 && ws[2] == ws[3], conv + ".weight",
                          "expected a Conv2d weight [out, in, p, p], found ", ws.str(), " in ", f.path());
        const index_t D = ws[0], C = ws[1], p = ws[2];
        const TensorView bv = f.get(conv + ".bias");
        check<ShapeError>(bv.shape() == Shape{D}, conv + ".bias", "expected shape ", Shape{D}.str(), ", found ",
                          bv.shape().str(), " in ", f.path());
        vision::Linear<float> proj(wv.reshape({D, C * p * p}), &bv, f.keep_alive(), conv + ".weight");
        std::optional<vision::LayerNorm> ln;
        if (!norm.empty()) {
            const bool ms = f.contains(norm + ".gamma");
            auto param = [&](const std::string& name) {
                const TensorView v = f.get(name);
                check<ShapeError>(v.shape() == Shape{D}, name, "expected shape ", Shape{D}.str(), ", found ",
                                  v.shape().str(), " in ", f.path());
                return Tensor::borrow(v, f.keep_alive());
            };
            ln.emplace(param(norm + (ms ? ".gamma" : ".weight")), param(norm + (ms ? ".beta" : ".bias")), eps, norm);
        }
        return PatchEmbed(vision::PatchEmbed<float>(std::move(proj), C, p, std::move(ln), conv));
    }

    index_t in_channels() const noexcept { return pe_.in_chans(); }
    index_t dim() const noexcept { return pe_.width(); }
    index_t patch() const noexcept { return pe_.patch(); }
    bool has_norm() const noexcept { return pe_.norm().has_value(); }
    /// The embedding (projection, norm, padding).
    const vision::PatchEmbed<float>& embed() const noexcept { return pe_; }

    /// x: `in` channels of height x width, band-sequential (channel c at x + c * plane_stride).
    /// Writes the grid(height, width) tokens to out (rows of `dim`, `out_stride` floats apart).
    void forward(const float* const* channels, index_t height, index_t width, float* out, index_t out_stride) const {
        const auto [gh, gw] = grid(height, width);
        pe_.forward_planes(channels, height, width, MatrixRef<float>(out, gh * gw, dim(), out_stride));
    }

    /// Tokens of the image channels `idx` (in that order).
    Tokens forward(const Image& img, const std::vector<index_t>& idx) const {
        check<ShapeError>(static_cast<index_t>(idx.size()) == in_channels(), "rs::PatchEmbed", "expects ",
                          in_channels(), " channels, given ", idx.size());
        std::vector<const float*> ch;
        for (auto i : idx) ch.push_back(img.band(i).data());
        Tokens t;
        std::tie(t.grid_h, t.grid_w) = grid(img.height(), img.width());
        t.tokens = Tensor(DType::f32, Shape{t.grid_h * t.grid_w, dim()});
        forward(ch.data(), img.height(), img.width(), t.tokens.data<float>(), dim());
        return t;
    }

private:
    vision::PatchEmbed<float> pe_;
};

// ------------------------------------------------------------------------------------------------
// RingMoE: per-modality patch embeddings
// ------------------------------------------------------------------------------------------------

/// RingMoE's four input modalities, in checkpoint order (patch_embed0 .. patch_embed3).
enum class RingModality { optical = 0, sar_l1 = 1, sar_l2 = 2, multispectral = 3 };

inline std::string_view ring_modality_name(RingModality m) noexcept {
    switch (m) {
        case RingModality::optical: return "optical";
        case RingModality::sar_l1: return "SAR-L1";
        case RingModality::sar_l2: return "SAR-L2";
        default: return "multispectral";
    }
}

/// One patch embedding per RingMoE modality, chosen by the image's modality:
///   optical (Modality::optical)           R, G, B                       (3 channels)
///   SAR-L1  (Modality::sar_complex)       HH_re, HH_im, ..., VV_im      (8)
///   SAR-L2  (Modality::sar)               one amplitude band, replicated (3)
///   multispectral (Modality::multispectral) B, G, R, NIR or B02, B03, B04, B08 (4)
class ModalityPatchEmbed {
public:
    static constexpr index_t kChannels[4] = {3, 8, 3, 4};

    ModalityPatchEmbed() = default;
    explicit ModalityPatchEmbed(std::array<PatchEmbed, 4> embeds) : pe_(std::move(embeds)) {
        for (int m = 0; m < 4; ++m)
            check<ShapeError>(pe_[static_cast<std::size_t>(m)].in_channels() == kChannels[m], "rs::ModalityPatchEmbed",
                              ring_modality_name(static_cast<RingModality>(m)), " embedding takes ",
                              pe_[static_cast<std::size_t>(m)].in_channels(), " channels, RingMoE's takes ", kChannels[m]);
    }
    /// encoder.patch_embed{m}.projection.{weight,bias} and .norm.{gamma,beta} (LayerNorm eps 1e-6).
    static ModalityPatchEmbed load(const io::SafetensorsFile& f, const std::string& prefix = "encoder.") {
        std::array<PatchEmbed, 4> pe;
        for (int m = 0; m < 4; ++m) {
            const std::string base = prefix + "patch_embed" + std::to_string(m);
            pe[static_cast<std::size_t>(m)] = PatchEmbed::load(f, base + ".projection", base + ".norm", 1e-6f);
        }
        return ModalityPatchEmbed(std::move(pe));
    }

    /// The RingMoE modality an image modality maps to; ConfigError for the others.
    static RingModality ring_modality(Modality m) {
        switch (m) {
            case Modality::optical: return RingModality::optical;
            case Modality::sar_complex: return RingModality::sar_l1;
            case Modality::sar: return RingModality::sar_l2;
            case Modality::multispectral: return RingModality::multispectral;
            default:
                throw ConfigError("rs::ModalityPatchEmbed",
                                  std::string("RingMoE has no patch embedding for modality '")
                                      .append(modality_name(m))
                                      .append("' (it takes optical, sar_complex, sar, multispectral): set the image's modality"));
        }
    }
    /// The band sets a modality accepts (any one of them, exactly).
    static std::vector<std::vector<std::string>> accepted_bands(RingModality m) {
        switch (m) {
            case RingModality::optical: return {{"R", "G", "B"}, {"B04", "B03", "B02"}};
            case RingModality::sar_l1: return {quadpol_complex().band_names()};
            case RingModality::sar_l2: return {{"HH"}, {"HV"}, {"VH"}, {"VV"}, {"amplitude"}};
            default: return {{"B", "G", "R", "NIR"}, {"B02", "B03", "B04", "B08"}};
        }
    }
    const PatchEmbed& embed(RingModality m) const { return pe_[static_cast<std::size_t>(m)]; }

    /// Tokens of `img` through its modality's embedding.
    Tokens forward(const Image& img) const {
        const RingModality m = ring_modality(img.modality());
        const auto sets = accepted_bands(m);
        std::string who = std::string("rs::ModalityPatchEmbed (").append(ring_modality_name(m)).append(")");
        for (const auto& s : sets) {
            if (img.bands_count() != static_cast<index_t>(s.size())) continue;
            bool all = true;
            for (const auto& b : s) all = all && img.find(b).has_value();
            if (!all) continue;
            auto idx = detail::require_bands(img, s, who);
            if (m == RingModality::sar_l2) idx = {idx[0], idx[0], idx[0]};  // amplitude, replicated
            return pe_[static_cast<std::size_t>(m)].forward(img, idx);
        }
        std::string alts;
        for (const auto& s : sets) {
            if (!alts.empty()) alts.append(" | ");
            alts.append(detail::join(s));
        }
        throw ConfigError(who, std::string("accepts the bands ").append(alts).append("; the image has ").append(
                                   detail::join(img.band_names())));
    }

private:
    std::array<PatchEmbed, 4> pe_;
};

// ------------------------------------------------------------------------------------------------
// DOFA-style wavelength-conditioned patch embedding
// ------------------------------------------------------------------------------------------------

/// DOFA's 1-D sincos embedding of dimension `dim` (even) of positions `pos`, in float32 as DOFA
/// computes it: omega_i = 1 / 10000^(i / (dim / 2)), emb = [sin(pos * omega), cos(pos * omega)].
inline std::vector<float> sincos_embedding(const std::vector<float>& pos, index_t dim) {
    check<ConfigError>(dim > 0 && dim % 2 == 0, "rs::sincos_embedding", "dimension ", dim, " must be even");
    const index_t h = dim / 2;
    std::vector<float> out(static_cast<std::size_t>(index_t(pos.size()) * dim));
    for (std::size_t p = 0; p < pos.size(); ++p)
        for (index_t i = 0; i < h; ++i) {
            const float omega = 1.0f / std::pow(10000.0f, float(i) / float(h));
            const float a = pos[p] * omega;
            out[p * static_cast<std::size_t>(dim) + static_cast<std::size_t>(i)] = std::sin(a);
            out[p * static_cast<std::size_t>(dim) + static_cast<std::size_t>(h + i)] = std::cos(a);
        }
    return out;
}

namespace detail {
/// y[M, N] = x[M, K] W[N, K]^T + b.
inline std::vector<float> dense(const std::vector<float>& x, index_t M, index_t K, const std::vector<float>& w,
                                const std::vector<float>& b, index_t N) {
    std::vector<float> y(static_cast<std::size_t>(M * N));
    cpu::GemmWorkspace ws;
    cpu::linear<float>(ConstMatrixRef<float>(x.data(), M, K), ConstMatrixRef<float>(w.data(), N, K),
                       b.empty() ? nullptr : b.data(), MatrixRef<float>(y.data(), M, N), false, ws);
    return y;
}
/// LayerNorm over rows of x [M, E] in place (cpu::layer_norm).
inline void layer_norm_rows(std::vector<float>& x, index_t M, index_t E, const std::vector<float>& g,
                            const std::vector<float>& b, float eps) {
    const MatrixRef<float> m(x.data(), M, E);
    cpu::layer_norm(m, m, g.data(), b.data(), eps);
}
}  // namespace detail

/// Patch embedding whose kernel is generated from the bands' wavelengths (DOFA's Dynamic_MLP_OFA):
///   e_c = sincos(1000 * lambda_c [um], E)                      (wavelength in nm, float32)
///   h_c = e_c + relu(W2 relu(W1 e_c + b1) + b2)                (FCResLayer)
///   with DOFA's generator (Weights::encoder present):
///     z = TransformerEncoderLayer([weight_tokens; h_1..h_C; bias_token])   (post-norm, GELU)
///     K_c = fc_weight(z_{T+c} + h_c),  bias = fc_bias(z_last)
///   without it (a lighter generator): K_c = fc_weight(h_c),  bias = fc_bias(mean_c h_c)
///   K_c -> [p, p, D] -> kernel[:, c]                            (DOFA's view + permute)
///   tokens = conv2d(x, 0.01 * kernel, 0.01 * bias, stride p, padding)  (DOFA: padding 1)
/// Accepts any bands whose wavelength the given sensor knows and which lie in [min_um, max_um].
class WavelengthPatchEmbed {
public:
    /// One nn.TransformerEncoderLayer (norm_first = False, activation GELU, no dropout) and the
    /// learnable tokens around the wavelength features.
    struct Encoder {
        index_t heads = 4, ff = 0, tokens = 0;
        std::vector<float> in_w, in_b, out_w, out_b;  // [3E, E], [3E], [E, E], [E]
        std::vector<float> l1_w, l1_b, l2_w, l2_b;    // [F, E], [F], [E, F], [E]
        std::vector<float> n1_g, n1_b, n2_g, n2_b;    // [E] (eps 1e-5)
        std::vector<float> weight_tokens, bias_token; // [T, E], [E]
    };
    struct Weights {
        index_t wv_dim = 0, dim = 0, patch = 0;
        std::vector<float> w1, b1, w2, b2;  // [E, E], [E]
        std::vector<float> wk, bk;          // [p * p * D, E], [p * p * D]
        std::vector<float> wb, bb;          // [D, E], [D]
        std::optional<Encoder> encoder;     // DOFA's transformer generator
    };
    WavelengthPatchEmbed() = default;
    explicit WavelengthPatchEmbed(Weights w, index_t padding = 0, double min_um = 0.35, double max_um = 15.0,
                                  float scaler = 0.01f)
        : w_(std::move(w)), pad_(padding), min_um_(min_um), max_um_(max_um), scaler_(scaler) {
        const index_t E = w_.wv_dim, D = w_.dim, p = w_.patch;
        check<ConfigError>(E > 0 && E % 2 == 0 && D > 0 && p > 0, "rs::WavelengthPatchEmbed", "bad sizes");
        check<ConfigError>(pad_ >= 0 && pad_ < p, "rs::WavelengthPatchEmbed", "padding ", pad_, " must be in [0, ", p, ")");
        auto expect = [](const std::vector<float>& v, index_t n, const char* what) {
            check<ShapeError>(static_cast<index_t>(v.size()) == n, "rs::WavelengthPatchEmbed", what, " has ", v.size(),
                              " values, expected ", n);
        };
        expect(w_.w1, E * E, "fclayer.w1.weight"), expect(w_.b1, E, "fclayer.w1.bias");
        expect(w_.w2, E * E, "fclayer.w2.weight"), expect(w_.b2, E, "fclayer.w2.bias");
        expect(w_.wk, p * p * D * E, "weight_generator.fc_weight.weight"), expect(w_.bk, p * p * D, "fc_weight.bias");
        expect(w_.wb, D * E, "weight_generator.fc_bias.weight"), expect(w_.bb, D, "fc_bias.bias");
        if (w_.encoder) {
            const Encoder& t = *w_.encoder;
            const index_t F = t.ff, T = t.tokens;
            check<ConfigError>(t.heads > 0 && E % t.heads == 0 && F > 0 && T > 0, "rs::WavelengthPatchEmbed",
                               "transformer generator: heads ", t.heads, " must divide ", E, "; ff ", F, ", tokens ", T);
            expect(t.in_w, 3 * E * E, "self_attn.in_proj_weight"), expect(t.in_b, 3 * E, "self_attn.in_proj_bias");
            expect(t.out_w, E * E, "self_attn.out_proj.weight"), expect(t.out_b, E, "self_attn.out_proj.bias");
            expect(t.l1_w, F * E, "linear1.weight"), expect(t.l1_b, F, "linear1.bias");
            expect(t.l2_w, E * F, "linear2.weight"), expect(t.l2_b, E, "linear2.bias");
            expect(t.n1_g, E, "norm1.weight"), expect(t.n1_b, E, "norm1.bias");
            expect(t.n2_g, E, "norm2.weight"), expect(t.n2_b, E, "norm2.bias");
            expect(t.weight_tokens, T * E, "weight_tokens"), expect(t.bias_token, E, "bias_token");
        }
    }
    /// <prefix>fclayer.w{1,2}.*, <prefix>weight_generator.fc_weight.*, .fc_bias.* and, when
    /// present, DOFA's <prefix>weight_generator.transformer_encoder.layers.0.* (self_attn.in_proj_*,
    /// self_attn.out_proj.*, linear1.*, linear2.*, norm1.*, norm2.*), .weight_tokens, .bias_token
    /// (heads: `heads`, DOFA: 4). `patch` is not stored in the weights (fc_weight's rows are
    /// p * p * D). padding < 0: DOFA's 1 when the transformer generator is present, else 0.
    static WavelengthPatchEmbed load(const io::SafetensorsFile& f, index_t patch, const std::string& prefix = "patch_embed.",
                                     index_t padding = -1, index_t heads = 4) {
        Weights w;
        const Shape s1 = detail::shape_of(f, prefix + "fclayer.w1.weight");
        check<ShapeError>(s1.rank() == 2 && s1[0] == s1[1], prefix + "fclayer.w1.weight", "expected [E, E], found ", s1.str());
        const index_t E = s1[0];
        const std::string g = prefix + "weight_generator.";
        const Shape sb = detail::shape_of(f, g + "fc_bias.weight");
        check<ShapeError>(sb.rank() == 2 && sb[1] == E, g + "fc_bias.weight", "expected [D, ", E, "], found ", sb.str());
        const index_t D = sb[0];
        w.wv_dim = E, w.dim = D, w.patch = patch;
        w.w1 = detail::load_floats(f, prefix + "fclayer.w1.weight", Shape{E, E});
        w.b1 = detail::load_floats(f, prefix + "fclayer.w1.bias", Shape{E});
        w.w2 = detail::load_floats(f, prefix + "fclayer.w2.weight", Shape{E, E});
        w.b2 = detail::load_floats(f, prefix + "fclayer.w2.bias", Shape{E});
        w.wk = detail::load_floats(f, g + "fc_weight.weight", Shape{patch * patch * D, E});
        w.bk = detail::load_floats(f, g + "fc_weight.bias", Shape{patch * patch * D});
        w.wb = detail::load_floats(f, g + "fc_bias.weight", Shape{D, E});
        w.bb = detail::load_floats(f, g + "fc_bias.bias", Shape{D});
        const std::string t = g + "transformer_encoder.layers.0.";
        if (f.contains(t + "self_attn.in_proj_weight")) {
            check<ConfigError>(!f.contains(g + "transformer_encoder.layers.1.self_attn.in_proj_weight"), g,
                               "transformer generators of more than one layer are not supported");
            Encoder e;
            e.heads = heads;
            const Shape sl = detail::shape_of(f, t + "linear1.weight");
            check<ShapeError>(sl.rank() == 2 && sl[1] == E, t + "linear1.weight", "expected [F, ", E, "], found ", sl.str());
            e.ff = sl[0];
            const Shape st = detail::shape_of(f, g + "weight_tokens");
            check<ShapeError>(st.rank() == 2 && st[1] == E, g + "weight_tokens", "expected [T, ", E, "], found ", st.str());
            e.tokens = st[0];
            e.in_w = detail::load_floats(f, t + "self_attn.in_proj_weight", Shape{3 * E, E});
            e.in_b = detail::load_floats(f, t + "self_attn.in_proj_bias", Shape{3 * E});
            e.out_w = detail::load_floats(f, t + "self_attn.out_proj.weight", Shape{E, E});
            e.out_b = detail::load_floats(f, t + "self_attn.out_proj.bias", Shape{E});
            e.l1_w = detail::load_floats(f, t + "linear1.weight", Shape{e.ff, E});
            e.l1_b = detail::load_floats(f, t + "linear1.bias", Shape{e.ff});
            e.l2_w = detail::load_floats(f, t + "linear2.weight", Shape{E, e.ff});
            e.l2_b = detail::load_floats(f, t + "linear2.bias", Shape{E});
            e.n1_g = detail::load_floats(f, t + "norm1.weight", Shape{E});
            e.n1_b = detail::load_floats(f, t + "norm1.bias", Shape{E});
            e.n2_g = detail::load_floats(f, t + "norm2.weight", Shape{E});
            e.n2_b = detail::load_floats(f, t + "norm2.bias", Shape{E});
            e.weight_tokens = detail::load_floats(f, g + "weight_tokens", st);
            e.bias_token = detail::load_floats(f, g + "bias_token", Shape{1, E});
            w.encoder = std::move(e);
        }
        const index_t pad = padding >= 0 ? padding : (w.encoder ? 1 : 0);
        return WavelengthPatchEmbed(std::move(w), pad);
    }

    bool dofa_generator() const noexcept { return w_.encoder.has_value(); }
    index_t padding() const noexcept { return pad_; }

    /// Accepted: any band of `sensor` with a wavelength in [min_um, max_um].
    std::vector<std::string> accepted_bands(const Sensor& sensor) const {
        std::vector<std::string> v;
        for (const auto& b : sensor.bands())
            if (b.wavelength_um >= min_um_ && b.wavelength_um <= max_um_) v.push_back(b.name);
        return v;
    }

    /// The generated Conv2d kernel [D, C, p, p] and bias [D] (scaled) for these wavelengths.
    std::pair<std::vector<float>, std::vector<float>> generate(const std::vector<double>& wavelengths_um) const {
        const index_t E = w_.wv_dim, D = w_.dim, p = w_.patch, C = static_cast<index_t>(wavelengths_um.size());
        check<ConfigError>(C > 0, "rs::WavelengthPatchEmbed", "no bands");
        std::vector<float> nm;
        for (double l : wavelengths_um) nm.push_back(static_cast<float>(l) * 1000.0f);
        const std::vector<float> e = sincos_embedding(nm, E);
        std::vector<float> h = detail::dense(e, C, E, w_.w1, w_.b1, E);
        for (auto& v : h) v = std::max(v, 0.0f);
        h = detail::dense(h, C, E, w_.w2, w_.b2, E);
        for (std::size_t i = 0; i < h.size(); ++i) h[i] = e[i] + std::max(h[i], 0.0f);
        const index_t P = p * p * D;
        std::vector<float> kin, bin;  // fc_weight and fc_bias inputs
        if (w_.encoder) {
            const auto z = encode(h, C);
            const index_t T = w_.encoder->tokens;
            kin.assign(z.begin() + T * E, z.begin() + (T + C) * E);
            for (std::size_t i = 0; i < kin.size(); ++i) kin[i] += h[i];
            bin.assign(z.end() - E, z.end());
        } else {
            kin = h;
            bin.assign(static_cast<std::size_t>(E), 0.0f);
            for (index_t c = 0; c < C; ++c)
                for (index_t i = 0; i < E; ++i) bin[static_cast<std::size_t>(i)] += h[static_cast<std::size_t>(c * E + i)];
            for (auto& v : bin) v /= float(C);
        }
        const std::vector<float> k = detail::dense(kin, C, E, w_.wk, w_.bk, P);
        // k[c] viewed as [p, p, D] -> kernel[d, c, ky, kx] = k[c][(ky * p + kx) * D + d]
        std::vector<float> kernel(static_cast<std::size_t>(D * C * p * p));
        for (index_t d = 0; d < D; ++d)
            for (index_t c = 0; c < C; ++c)
                for (index_t q = 0; q < p * p; ++q)
                    kernel[static_cast<std::size_t>((d * C + c) * p * p + q)] =
                        scaler_ * k[static_cast<std::size_t>(c * P + q * D + d)];
        std::vector<float> bias = detail::dense(bin, 1, E, w_.wb, w_.bb, D);
        for (auto& v : bias) v *= scaler_;
        return {std::move(kernel), std::move(bias)};
    }

    /// Tokens of `img`; the bands' wavelengths come from `sensor` (names matched through its aliases).
    Tokens forward(const Image& img, const Sensor& sensor) const {
        std::vector<double> wl;
        std::vector<std::string> refused;
        for (const auto& n : img.band_names()) {
            const auto i = sensor.find(n);
            if (!i) {
                refused.push_back(n);
                continue;
            }
            const double l = sensor.bands()[static_cast<std::size_t>(*i)].wavelength_um;
            if (l < min_um_ || l > max_um_) refused.push_back(n);
            wl.push_back(l);
        }
        if (!refused.empty())
            throw ConfigError("rs::WavelengthPatchEmbed",
                              moe::detail::cat("refuses band(s) ", detail::join(refused), ": not a band of sensor '",
                                               sensor.name(), "' with a wavelength in [", min_um_, ", ", max_um_,
                                               "] um; accepted: ", detail::join(accepted_bands(sensor))));
        auto [kernel, bias] = generate(wl);
        PatchEmbed pe(img.bands_count(), w_.dim, w_.patch, std::move(kernel), std::move(bias));
        pe.set_padding(pad_);
        std::vector<index_t> idx;
        for (index_t b = 0; b < img.bands_count(); ++b) idx.push_back(b);
        return pe.forward(img, idx);
    }

private:
    /// The transformer layer over [weight_tokens; h; bias_token]: S = T + C + 1 rows of E.
    std::vector<float> encode(const std::vector<float>& h, index_t C) const {
        const Encoder& t = *w_.encoder;
        const index_t E = w_.wv_dim, T = t.tokens, S = T + C + 1, H = t.heads, hd = E / H;
        std::vector<float> x(t.weight_tokens);
        x.insert(x.end(), h.begin(), h.end());
        x.insert(x.end(), t.bias_token.begin(), t.bias_token.end());
        // Self-attention (nn.MultiheadAttention: q scaled by 1/sqrt(hd) before q k^T).
        const std::vector<float> qkv = detail::dense(x, S, E, t.in_w, t.in_b, 3 * E);
        std::vector<float> att(static_cast<std::size_t>(S * E)), sc(static_cast<std::size_t>(S));
        const float scale = 1.0f / std::sqrt(float(hd));
        for (index_t hh = 0; hh < H; ++hh)
            for (index_t i = 0; i < S; ++i) {
                const float* q = qkv.data() + i * 3 * E + hh * hd;
                float mx = -INFINITY;
                for (index_t j = 0; j < S; ++j) {
                    const float* k = qkv.data() + j * 3 * E + E + hh * hd;
                    float d = 0;
                    for (index_t a = 0; a < hd; ++a) d += (q[a] * scale) * k[a];
                    sc[static_cast<std::size_t>(j)] = d;
                    mx = std::max(mx, d);
                }
                double sum = 0;
                for (auto& v : sc) v = std::exp(v - mx), sum += v;
                float* o = att.data() + i * E + hh * hd;
                for (index_t a = 0; a < hd; ++a) o[a] = 0;
                for (index_t j = 0; j < S; ++j) {
                    const float pj = static_cast<float>(sc[static_cast<std::size_t>(j)] / sum);
                    const float* v = qkv.data() + j * 3 * E + 2 * E + hh * hd;
                    for (index_t a = 0; a < hd; ++a) o[a] += pj * v[a];
                }
            }
        std::vector<float> y = detail::dense(att, S, E, t.out_w, t.out_b, E);
        for (std::size_t i = 0; i < y.size(); ++i) y[i] += x[i];
        detail::layer_norm_rows(y, S, E, t.n1_g, t.n1_b, 1e-5f);
        std::vector<float> f = detail::dense(y, S, E, t.l1_w, t.l1_b, t.ff);
        for (auto& v : f) v = moe::Gelu::scalar(v);
        std::vector<float> z = detail::dense(f, S, t.ff, t.l2_w, t.l2_b, E);
        for (std::size_t i = 0; i < z.size(); ++i) z[i] += y[i];
        detail::layer_norm_rows(z, S, E, t.n2_g, t.n2_b, 1e-5f);
        return z;
    }

    Weights w_;
    index_t pad_ = 0;
    double min_um_ = 0.35, max_um_ = 15.0;
    float scaler_ = 0.01f;
};

// ------------------------------------------------------------------------------------------------
// SatMAE-style band groups
// ------------------------------------------------------------------------------------------------

/// SatMAE's Sentinel-2 grouping: (B02, B03, B04, B08), (B05, B06, B07, B8A), (B11, B12).
inline std::vector<std::vector<std::string>> satmae_s2_groups() {
    return {{"B02", "B03", "B04", "B08"}, {"B05", "B06", "B07", "B8A"}, {"B11", "B12"}};
}

/// Band groups, each with its own patch projection, plus a learned group encoding [G, D] added
/// to the group's tokens. Output: G * N tokens, group-major.
class BandGroupEmbed {
public:
    BandGroupEmbed() = default;
    BandGroupEmbed(std::vector<std::vector<std::string>> groups, std::vector<PatchEmbed> proj,
                   std::vector<float> group_embed)
        : groups_(std::move(groups)), proj_(std::move(proj)), ge_(std::move(group_embed)) {
        check<ConfigError>(!groups_.empty() && groups_.size() == proj_.size(), "rs::BandGroupEmbed", groups_.size(),
                           " groups but ", proj_.size(), " projections");
        for (std::size_t g = 0; g < groups_.size(); ++g) {
            check<ShapeError>(proj_[g].in_channels() == static_cast<index_t>(groups_[g].size()), "rs::BandGroupEmbed",
                              "group ", g, " has ", groups_[g].size(), " bands but its projection takes ",
                              proj_[g].in_channels());
            check<ShapeError>(proj_[g].dim() == proj_[0].dim() && proj_[g].patch() == proj_[0].patch(),
                              "rs::BandGroupEmbed", "group ", g, " differs in dim or patch size");
        }
        check<ShapeError>(static_cast<index_t>(ge_.size()) == index_t(groups_.size()) * proj_[0].dim(),
                          "rs::BandGroupEmbed", "group encoding has ", ge_.size(), " values, expected [",
                          groups_.size(), ", ", proj_[0].dim(), "]");
    }
    /// <prefix>{g}.proj.{weight,bias} per group and <prefix_group_embed> [G, D] (or [1, G, D]).
    static BandGroupEmbed load(const io::SafetensorsFile& f, std::vector<std::vector<std::string>> groups,
                               const std::string& prefix = "patch_embed.", const std::string& group_embed = "group_embed") {
        std::vector<PatchEmbed> proj;
        for (std::size_t g = 0; g < groups.size(); ++g)
            proj.push_back(PatchEmbed::load(f, prefix + std::to_string(g) + ".proj"));
        const Shape s = detail::shape_of(f, group_embed);
        const index_t G = static_cast<index_t>(groups.size()), D = proj.empty() ? 0 : proj[0].dim();
        check<ShapeError>(s.numel() == G * D, group_embed, "expected ", G, " x ", D, " values, found shape ", s.str());
        auto ge = detail::load_floats(f, group_embed, s);
        return BandGroupEmbed(std::move(groups), std::move(proj), std::move(ge));
    }
    const std::vector<std::vector<std::string>>& groups() const noexcept { return groups_; }
    std::vector<std::string> accepted_bands() const {
        std::vector<std::string> v;
        for (const auto& g : groups_) v.insert(v.end(), g.begin(), g.end());
        return v;
    }

    Tokens forward(const Image& img) const {
        const auto all = detail::require_bands(img, accepted_bands(), "rs::BandGroupEmbed");
        const index_t p = proj_[0].patch(), D = proj_[0].dim();
        check<ShapeError>(img.height() % p == 0 && img.width() % p == 0, "rs::BandGroupEmbed", "image ", img.height(),
                          " x ", img.width(), " is not a multiple of the patch size ", p);
        Tokens t;
        t.grid_h = img.height() / p, t.grid_w = img.width() / p, t.groups = index_t(groups_.size());
        const index_t N = t.grid_h * t.grid_w;
        t.tokens = Tensor(DType::f32, Shape{t.groups * N, D});
        float* out = t.tokens.data<float>();
        std::size_t k = 0;
        for (std::size_t g = 0; g < groups_.size(); ++g) {
            std::vector<const float*> ch;
            for (std::size_t j = 0; j < groups_[g].size(); ++j) ch.push_back(img.band(all[k++]).data());
            float* og = out + index_t(g) * N * D;
            proj_[g].forward(ch.data(), img.height(), img.width(), og, D);
            const float* e = ge_.data() + g * static_cast<std::size_t>(D);
            for (index_t n = 0; n < N; ++n)
                for (index_t d = 0; d < D; ++d) og[n * D + d] += e[d];
        }
        return t;
    }

private:
    std::vector<std::vector<std::string>> groups_;
    std::vector<PatchEmbed> proj_;
    std::vector<float> ge_;
};

}  // namespace moe::rs
