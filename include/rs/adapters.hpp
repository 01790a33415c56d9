// rs/adapters.hpp - turning an rs::Image into encoder tokens.
//
//  PatchEmbed            Conv2d(C, D, kernel = stride = p) (+ LayerNorm): the ViT / Swin patch
//                        embedding, as an im2col + moe::cpu::linear.
//  ModalityPatchEmbed    RingMoE: one patch embedding per modality (optical RGB 3 channels,
//                        SAR-L1 complex quad-pol 8, SAR-L2 amplitude replicated to 3,
//                        multispectral 4), each with its own weights, chosen by the image's
//                        modality. Checkpoint names encoder.patch_embed{m}.projection.* / .norm.*.
//  WavelengthPatchEmbed  DOFA style: a small network generates the patch projection's weights from
//                        the bands' central wavelengths, so any band subset works with one set of
//                        weights (a sincos wavelength embedding -> residual MLP -> per-band kernel
//                        and a shared bias). DOFA's generator is a one-layer transformer over the
//                        wavelength embeddings; this one is the MLP part only (see
//                        docs/remote-sensing.md).
//  BandGroupEmbed        SatMAE style: bands split into groups, each group with its own patch
//                        projection, plus a learned group encoding; tokens group-major.
//
// Tokens are f32 [N, D] with N = (H / p) * (W / p) per group, row-major over the patch grid. Each
// adapter states which bands it accepts (accepted_bands()) and refuses images with missing or
// other bands (ConfigError naming them): select() the bands first.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "moe/backend/cpu/gemm.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/io/safetensors.hpp"
#include "rs/image.hpp"
#include "rs/sensors.hpp"

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

/// Conv2d(in, dim, kernel = stride = patch) with bias, optionally followed by LayerNorm(dim).
class PatchEmbed {
public:
    PatchEmbed() = default;
    /// weight [dim, in, p, p] (Conv2d layout), bias [dim]; gamma/beta [dim] or empty (no norm).
    PatchEmbed(index_t in, index_t dim, index_t patch, std::vector<float> weight, std::vector<float> bias,
               std::vector<float> gamma = {}, std::vector<float> beta = {}, float eps = 1e-6f)
        : in_(in), dim_(dim), patch_(patch), w_(std::move(weight)), b_(std::move(bias)), gamma_(std::move(gamma)),
          beta_(std::move(beta)), eps_(eps) {
        check<ConfigError>(in > 0 && dim > 0 && patch > 0, "rs::PatchEmbed", "in ", in, ", dim ", dim, ", patch ",
                           patch, " must be positive");
        check<ShapeError>(static_cast<index_t>(w_.size()) == dim * in * patch * patch, "rs::PatchEmbed", "weight has ",
                          w_.size(), " values, expected [", dim, ", ", in, ", ", patch, ", ", patch, "]");
        check<ShapeError>(static_cast<index_t>(b_.size()) == dim, "rs::PatchEmbed", "bias has ", b_.size(),
                          " values, expected ", dim);
        check<ShapeError>(gamma_.size() == beta_.size() && (gamma_.empty() || static_cast<index_t>(gamma_.size()) == dim),
                          "rs::PatchEmbed", "norm gamma/beta must both be [", dim, "] or both absent");
    }
    /// Conv2d weight/bias at `<conv>.weight` / `<conv>.bias` and, when `norm` is not empty,
    /// LayerNorm at `<norm>.gamma|weight` / `<norm>.beta|bias` (MindSpore or PyTorch names).
    static PatchEmbed load(const io::SafetensorsFile& f, const std::string& conv, const std::string& norm = {},
                           float eps = 1e-6f) {
        const Shape ws = detail::shape_of(f, conv + ".weight");
        check<ShapeError>(ws.rank() == 4 && ws[2] == ws[3], conv + ".weight",
                          "expected a Conv2d weight [out, in, p, p], found ", ws.str(), " in ", f.path());
        const index_t D = ws[0], C = ws[1], p = ws[2];
        auto w = detail::load_floats(f, conv + ".weight", ws);
        auto b = detail::load_floats(f, conv + ".bias", Shape{D});
        std::vector<float> g, be;
        if (!norm.empty()) {
            const bool ms = f.contains(norm + ".gamma");
            g = detail::load_floats(f, norm + (ms ? ".gamma" : ".weight"), Shape{D});
            be = detail::load_floats(f, norm + (ms ? ".beta" : ".bias"), Shape{D});
        }
        return PatchEmbed(C, D, p, std::move(w), std::move(b), std::move(g), std::move(be), eps);
    }

    index_t in_channels() const noexcept { return in_; }
    index_t dim() const noexcept { return dim_; }
    index_t patch() const noexcept { return patch_; }
    bool has_norm() const noexcept { return !gamma_.empty(); }

    /// x: `in` channels of height x width, band-sequential (channel c at x + c * plane_stride).
    /// Writes (H / p) * (W / p) tokens to out (rows of `dim`, `out_stride` floats apart).
    void forward(const float* const* channels, index_t height, index_t width, float* out, index_t out_stride) const {
        check<ShapeError>(height % patch_ == 0 && width % patch_ == 0 && height > 0 && width > 0, "rs::PatchEmbed",
                          "image ", height, " x ", width, " is not a multiple of the patch size ", patch_);
        const index_t gh = height / patch_, gw = width / patch_, N = gh * gw, K = in_ * patch_ * patch_;
        float* cols = cols_.get(static_cast<std::size_t>(N * K));
        for (index_t ty = 0; ty < gh; ++ty)
            for (index_t tx = 0; tx < gw; ++tx) {
                float* row = cols + (ty * gw + tx) * K;
                for (index_t c = 0; c < in_; ++c)
                    for (index_t ky = 0; ky < patch_; ++ky) {
                        const float* src = channels[c] + (ty * patch_ + ky) * width + tx * patch_;
                        std::copy_n(src, patch_, row + (c * patch_ + ky) * patch_);
                    }
            }
        cpu::linear<float>(ConstMatrixRef<float>(cols, N, K), ConstMatrixRef<float>(w_.data(), dim_, K), b_.data(),
                           MatrixRef<float>(out, N, dim_, out_stride), false, ws_);
        if (gamma_.empty()) return;
        for (index_t t = 0; t < N; ++t) {
            float* y = out + t * out_stride;
            double mean = 0, var = 0;
            for (index_t d = 0; d < dim_; ++d) mean += y[d];
            mean /= double(dim_);
            for (index_t d = 0; d < dim_; ++d) var += (y[d] - mean) * (y[d] - mean);
            const auto inv = static_cast<float>(1.0 / std::sqrt(var / double(dim_) + double(eps_)));
            const auto m = static_cast<float>(mean);
            for (index_t d = 0; d < dim_; ++d)
                y[d] = (y[d] - m) * inv * gamma_[static_cast<std::size_t>(d)] + beta_[static_cast<std::size_t>(d)];
        }
    }

    /// Tokens of the image channels `idx` (in that order).
    Tokens forward(const Image& img, const std::vector<index_t>& idx) const {
        check<ShapeError>(static_cast<index_t>(idx.size()) == in_, "rs::PatchEmbed", "expects ", in_,
                          " channels, given ", idx.size());
        std::vector<const float*> ch;
        for (auto i : idx) ch.push_back(img.band(i).data());
        Tokens t;
        t.grid_h = img.height() / patch_;
        t.grid_w = img.width() / patch_;
        t.tokens = Tensor(DType::f32, Shape{t.grid_h * t.grid_w, dim_});
        forward(ch.data(), img.height(), img.width(), t.tokens.data<float>(), dim_);
        return t;
    }

private:
    index_t in_ = 0, dim_ = 0, patch_ = 0;
    std::vector<float> w_, b_, gamma_, beta_;
    float eps_ = 1e-6f;
    mutable Scratch<float> cols_;
    mutable cpu::GemmWorkspace ws_;
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

/// DOFA's 1-D sincos embedding of dimension `dim` (even) of positions `pos`:
/// omega_i = 1 / 10000^(i / (dim / 2)), emb = [sin(pos * omega), cos(pos * omega)].
inline std::vector<float> sincos_embedding(const std::vector<double>& pos, index_t dim) {
    check<ConfigError>(dim > 0 && dim % 2 == 0, "rs::sincos_embedding", "dimension ", dim, " must be even");
    const index_t h = dim / 2;
    std::vector<float> out(static_cast<std::size_t>(index_t(pos.size()) * dim));
    for (std::size_t p = 0; p < pos.size(); ++p)
        for (index_t i = 0; i < h; ++i) {
            const double omega = 1.0 / std::pow(10000.0, double(i) / double(h));
            const double a = pos[p] * omega;
            out[p * static_cast<std::size_t>(dim) + static_cast<std::size_t>(i)] = static_cast<float>(std::sin(a));
            out[p * static_cast<std::size_t>(dim) + static_cast<std::size_t>(h + i)] = static_cast<float>(std::cos(a));
        }
    return out;
}

/// Patch embedding whose kernel is generated from the bands' wavelengths:
///   e_c = sincos(1000 * lambda_c [um], E)                      (wavelength in nm, DOFA's scale)
///   h_c = e_c + relu(W2 relu(W1 e_c + b1) + b2)                (DOFA's FCResLayer)
///   K_c = Wk h_c + bk  -> [p, p, D] -> kernel[:, c] (D, p, p)  (DOFA's view + permute)
///   bias = Wb mean_c(h_c) + bb
///   tokens = conv2d(x, 0.01 * kernel, 0.01 * bias, stride p)    (DOFA's scaler)
/// Accepts any bands whose wavelength the given sensor knows and which lie in [min_um, max_um].
class WavelengthPatchEmbed {
public:
    struct Weights {
        index_t wv_dim = 0, dim = 0, patch = 0;
        std::vector<float> w1, b1, w2, b2;  // [E, E], [E]
        std::vector<float> wk, bk;          // [p * p * D, E], [p * p * D]
        std::vector<float> wb, bb;          // [D, E], [D]
    };
    WavelengthPatchEmbed() = default;
    explicit WavelengthPatchEmbed(Weights w, double min_um = 0.35, double max_um = 15.0, float scaler = 0.01f)
        : w_(std::move(w)), min_um_(min_um), max_um_(max_um), scaler_(scaler) {
        const index_t E = w_.wv_dim, D = w_.dim, p = w_.patch;
        check<ConfigError>(E > 0 && E % 2 == 0 && D > 0 && p > 0, "rs::WavelengthPatchEmbed", "bad sizes");
        auto expect = [](const std::vector<float>& v, index_t n, const char* what) {
            check<ShapeError>(static_cast<index_t>(v.size()) == n, "rs::WavelengthPatchEmbed", what, " has ", v.size(),
                              " values, expected ", n);
        };
        expect(w_.w1, E * E, "fclayer.w1.weight"), expect(w_.b1, E, "fclayer.w1.bias");
        expect(w_.w2, E * E, "fclayer.w2.weight"), expect(w_.b2, E, "fclayer.w2.bias");
        expect(w_.wk, p * p * D * E, "weight_generator.fc_weight.weight"), expect(w_.bk, p * p * D, "fc_weight.bias");
        expect(w_.wb, D * E, "weight_generator.fc_bias.weight"), expect(w_.bb, D, "fc_bias.bias");
    }
    /// <prefix>fclayer.w1.*, fclayer.w2.*, weight_generator.fc_weight.*, weight_generator.fc_bias.*;
    /// `patch` is not stored in the weights (fc_weight's rows are p * p * D).
    static WavelengthPatchEmbed load(const io::SafetensorsFile& f, index_t patch, const std::string& prefix = "patch_embed.") {
        Weights w;
        const Shape s1 = detail::shape_of(f, prefix + "fclayer.w1.weight");
        check<ShapeError>(s1.rank() == 2 && s1[0] == s1[1], prefix + "fclayer.w1.weight", "expected [E, E], found ", s1.str());
        const index_t E = s1[0];
        const Shape sb = detail::shape_of(f, prefix + "weight_generator.fc_bias.weight");
        check<ShapeError>(sb.rank() == 2 && sb[1] == E, prefix + "weight_generator.fc_bias.weight", "expected [D, ", E,
                          "], found ", sb.str());
        const index_t D = sb[0];
        w.wv_dim = E, w.dim = D, w.patch = patch;
        w.w1 = detail::load_floats(f, prefix + "fclayer.w1.weight", Shape{E, E});
        w.b1 = detail::load_floats(f, prefix + "fclayer.w1.bias", Shape{E});
        w.w2 = detail::load_floats(f, prefix + "fclayer.w2.weight", Shape{E, E});
        w.b2 = detail::load_floats(f, prefix + "fclayer.w2.bias", Shape{E});
        w.wk = detail::load_floats(f, prefix + "weight_generator.fc_weight.weight", Shape{patch * patch * D, E});
        w.bk = detail::load_floats(f, prefix + "weight_generator.fc_weight.bias", Shape{patch * patch * D});
        w.wb = detail::load_floats(f, prefix + "weight_generator.fc_bias.weight", Shape{D, E});
        w.bb = detail::load_floats(f, prefix + "weight_generator.fc_bias.bias", Shape{D});
        return WavelengthPatchEmbed(std::move(w));
    }

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
        std::vector<double> nm;
        for (double l : wavelengths_um) nm.push_back(l * 1000.0);
        std::vector<float> e = sincos_embedding(nm, E);
        std::vector<float> t1(static_cast<std::size_t>(C * E)), h(static_cast<std::size_t>(C * E));
        cpu::GemmWorkspace ws;
        cpu::linear<float>(ConstMatrixRef<float>(e.data(), C, E), ConstMatrixRef<float>(w_.w1.data(), E, E), w_.b1.data(),
                           MatrixRef<float>(t1.data(), C, E), false, ws);
        for (auto& v : t1) v = std::max(v, 0.0f);
        cpu::linear<float>(ConstMatrixRef<float>(t1.data(), C, E), ConstMatrixRef<float>(w_.w2.data(), E, E), w_.b2.data(),
                           MatrixRef<float>(h.data(), C, E), false, ws);
        for (std::size_t i = 0; i < h.size(); ++i) h[i] = e[i] + std::max(h[i], 0.0f);
        const index_t P = p * p * D;
        std::vector<float> k(static_cast<std::size_t>(C * P));
        cpu::linear<float>(ConstMatrixRef<float>(h.data(), C, E), ConstMatrixRef<float>(w_.wk.data(), P, E), w_.bk.data(),
                           MatrixRef<float>(k.data(), C, P), false, ws);
        // k[c] viewed as [p, p, D] -> kernel[d, c, ky, kx] = k[c][(ky * p + kx) * D + d]
        std::vector<float> kernel(static_cast<std::size_t>(D * C * p * p));
        for (index_t d = 0; d < D; ++d)
            for (index_t c = 0; c < C; ++c)
                for (index_t q = 0; q < p * p; ++q)
                    kernel[static_cast<std::size_t>((d * C + c) * p * p + q)] =
                        scaler_ * k[static_cast<std::size_t>(c * P + q * D + d)];
        std::vector<float> hm(static_cast<std::size_t>(E), 0.0f);
        for (index_t c = 0; c < C; ++c)
            for (index_t i = 0; i < E; ++i) hm[static_cast<std::size_t>(i)] += h[static_cast<std::size_t>(c * E + i)];
        for (auto& v : hm) v /= float(C);
        std::vector<float> bias(static_cast<std::size_t>(D));
        cpu::linear<float>(ConstMatrixRef<float>(hm.data(), 1, E), ConstMatrixRef<float>(w_.wb.data(), D, E), w_.bb.data(),
                           MatrixRef<float>(bias.data(), 1, D), false, ws);
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
        const PatchEmbed pe(img.bands_count(), w_.dim, w_.patch, std::move(kernel), std::move(bias));
        std::vector<index_t> idx;
        for (index_t b = 0; b < img.bands_count(); ++b) idx.push_back(b);
        return pe.forward(img, idx);
    }

private:
    Weights w_;
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
