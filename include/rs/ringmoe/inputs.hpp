// rs/ringmoe/inputs.hpp - from remote-sensing images to RingMoE's per-modality input tensors.
//
//   to_model_input(img, modality, size)   one preprocessed rs::Image -> [1, C_m, size, size]
//   stack_inputs(list)                    [1, C, S, S] x N -> [N, C, S, S]
//   sample_scenes(root, size)             the real samples of ../shared/data/rs, per modality
//   synthetic_scenes(size)                the same from the synthesised scene (rs/synth.hpp)
//
// RingMoE's four modalities and the bands each takes (rs::ModalityPatchEmbed::accepted_bands):
//   optical        R, G, B (or Sentinel-2 B04, B03, B02)                        3 channels
//   SAR-L1         HH, HV, VH, VV as real / imaginary pairs                       8
//   SAR-L2         one amplitude band (VV, VH, HH, HV or "amplitude"), replicated 3
//   multispectral  B, G, R, NIR (or Sentinel-2 B02, B03, B04, B08)                4
// The image is resampled to size x size (bilinear, edge-clamped as torch's F.interpolate with
// align_corners=False and no antialiasing) after band selection; values are taken as they are,
// so the caller preprocesses (reflectance, dB normalisation, /255) as sample_scenes() does:
//   optical        UC Merced aerial RGB uint8 / 255
//   multispectral  EuroSAT Sentinel-2 L1C DN -> reflectance (DN / 10000, baseline before 04.00),
//                  bands B02, B03, B04, B08
//   SAR-L2         Sentinel-1 GRD VV in dB (BigEarthNet, SSL4EO-S12), BigEarthNet's clip bounds,
//                  then normalised with the common dB statistics (mean -12.59, std 5.26)
//   SAR-L1         no real complex quad-pol sample exists in the folder: the synthesised one
//                  (rs::synth_quadpol), said so in its Scene::source.
// A scene whose band set does not fit its modality is a ConfigError naming the bands it has and
// the sets that modality accepts.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "rs/adapters.hpp"
#include "rs/image.hpp"
#include "rs/radiometry.hpp"
#include "rs/sensors.hpp"
#include "rs/synth.hpp"
#include "rs/tiff.hpp"

namespace moe::rs::ringmoe {

/// One input image of one RingMoE modality, preprocessed, and where it came from.
struct Scene {
    RingModality modality = RingModality::optical;
    Image image;
    std::string source;  ///< file path, or "synthesised ..." for a scene made by rs/synth.hpp
};

/// Model input channels of RingMoE modality m (3, 8, 3, 4).
inline index_t modality_channels(RingModality m) noexcept {
    return ModalityPatchEmbed::kChannels[static_cast<int>(m)];
}

/// The short names the command line and docs use: optical, sar-l1, sar-l2, multispectral.
inline std::string_view modality_key(RingModality m) noexcept {
    switch (m) {
        case RingModality::optical: return "optical";
        case RingModality::sar_l1: return "sar-l1";
        case RingModality::sar_l2: return "sar-l2";
        default: return "multispectral";
    }
}

/// The modality named `key` (modality_key() names, or "ms", "rgb", "sar"); ConfigError otherwise.
inline RingModality parse_modality(std::string_view key) {
    if (key == "optical" || key == "rgb") return RingModality::optical;
    if (key == "sar-l1" || key == "sar_l1" || key == "quadpol") return RingModality::sar_l1;
    if (key == "sar-l2" || key == "sar_l2" || key == "sar") return RingModality::sar_l2;
    if (key == "multispectral" || key == "ms") return RingModality::multispectral;
    throw ConfigError("rs::ringmoe::parse_modality",
                      std::string("unknown modality '").append(key).append(
                          "'; expected optical, sar-l1, sar-l2 or multispectral"));
}

/// img (preprocessed) -> [1, C_m, size, size] f32 for modality m: the modality's band set,
/// replicated amplitude for SAR-L2, bilinear resampling to size x size. Invalid (masked)
/// samples after resampling become 0.
inline Tensor to_model_input(const Image& img, RingModality m, index_t size) {
    const std::string who = std::string("rs::ringmoe::to_model_input (").append(ring_modality_name(m)).append(")");
    check<ShapeError>(size > 0, who, "size ", size, " is not positive");
    const auto sets = ModalityPatchEmbed::accepted_bands(m);
    const std::vector<std::string>* chosen = nullptr;
    for (const auto& s : sets) {
        bool all = true;
        for (const auto& b : s) all = all && img.find(b).has_value();
        if (all) {
            chosen = &s;
            break;
        }
    }
    if (!chosen) {
        std::string alts;
        for (const auto& s : sets) alts.append(alts.empty() ? "" : " | ").append(moe::rs::detail::join(s));
        throw ConfigError(who, std::string("takes the bands ").append(alts).append("; the image has ").append(
                                   moe::rs::detail::join(img.band_names())));
    }
    Image sel = img.select(*chosen);
    if (sel.height() != size || sel.width() != size) sel = resample(sel, size, size, Resampling::bilinear);
    const index_t C = modality_channels(m), P = size * size;
    Tensor out(DType::f32, {1, C, size, size});
    float* d = out.data<float>();
    for (index_t c = 0; c < C; ++c) {
        const index_t src = m == RingModality::sar_l2 ? 0 : c;
        const auto band = sel.band(src);
        const auto mask = sel.mask(src);
        for (index_t i = 0; i < P; ++i) {
            const float v = band[static_cast<std::size_t>(i)];
            const bool ok = mask.empty() || mask[static_cast<std::size_t>(i)];
            check<ValueError>(!ok || std::isfinite(v), who, "band ", sel.band_names()[static_cast<std::size_t>(src)],
                              " of ", img.source().empty() ? std::string("(in memory)") : img.source(),
                              " holds a non-finite value at pixel ", i);
            d[c * P + i] = ok ? v : 0.0f;
        }
    }
    return out;
}

/// [1, C, S, S] tensors of one modality -> [N, C, S, S].
inline Tensor stack_inputs(const std::vector<Tensor>& xs) {
    check<ShapeError>(!xs.empty(), "rs::ringmoe::stack_inputs", "no images");
    const Shape& s = xs.front().shape();
    for (const auto& x : xs)
        check<ShapeError>(x.rank() == 4 && x.dim(0) == 1 && x.shape() == s, "rs::ringmoe::stack_inputs",
                          "expected tensors of one shape [1, C, S, S]; found ", s.str(), " and ", x.shape().str());
    Tensor out(DType::f32, {static_cast<index_t>(xs.size()), s[1], s[2], s[3]});
    std::size_t off = 0;
    for (const auto& x : xs) {
        std::memcpy(static_cast<std::byte*>(out.raw()) + off, x.raw(), x.nbytes());
        off += x.nbytes();
    }
    return out;
}

/// The synthesised scene of every modality (size x size pixels), preprocessed as sample_scenes().
inline std::vector<Scene> synthetic_scenes(index_t size, unsigned seed = 1) {
    std::vector<Scene> out;
    Image rgb = synth_rgb(size, seed + 3);
    for (auto& v : rgb.data()) v /= 255.0f;
    out.push_back({RingModality::optical, std::move(rgb), "synthesised RGB (rs::synth_rgb)"});
    out.push_back({RingModality::sar_l1, synth_quadpol(size, seed + 2), "synthesised quad-pol SAR (rs::synth_quadpol)"});
    Image s1 = synth_s1_db(size, seed + 1);
    normalize(s1, s1_db_stats());
    out.push_back({RingModality::sar_l2, std::move(s1), "synthesised Sentinel-1 dB (rs::synth_s1_db)"});
    Image s2 = synth_s2_dn(size, 2.14, seed);
    s2_dn_to_reflectance(s2, s2_radiometry(std::nullopt, 2.14));
    out.push_back({RingModality::multispectral, s2.select({"B02", "B03", "B04", "B08"}),
                   "synthesised Sentinel-2 (rs::synth_s2_dn)"});
    return out;
}

#if MOE_RS_HAS_TIFF
/// The real samples under `root` (../shared/data/rs), preprocessed, per modality: UC Merced RGB
/// (optical), EuroSAT Sentinel-2 (multispectral), BigEarthNet and SSL4EO-S12 Sentinel-1 VV
/// (SAR-L2); SAR-L1 from the synthesised scene (no real quad-pol sample). Files are taken in
/// sorted order. NotFoundError when `root` is not a directory.
inline std::vector<Scene> sample_scenes(const std::filesystem::path& root, index_t synth_size = 64) {
    namespace fs = std::filesystem;
    check<NotFoundError>(fs::is_directory(root), "rs::ringmoe::sample_scenes", "no sample folder at ", root.string());
    auto sorted = [](const fs::path& dir, auto&& keep) {
        std::vector<fs::path> v;
        if (!fs::is_directory(dir)) return v;
        for (const auto& e : fs::recursive_directory_iterator(dir))
            if (e.is_regular_file() && keep(e.path())) v.push_back(e.path());
        std::sort(v.begin(), v.end());
        return v;
    };
    auto ends = [](const fs::path& p, std::string_view s) { return p.filename().string().ends_with(s); };
    std::vector<Scene> out;
    for (const auto& p : sorted(root / "UCMerced_LandUse" / "Images", [&](const fs::path& q) { return ends(q, ".tif"); })) {
        TiffReadOptions o;
        o.band_names = {"R", "G", "B"};
        o.modality = Modality::optical;
        Image img = read_tiff(p, o);
        for (auto& v : img.data()) v /= 255.0f;
        out.push_back({RingModality::optical, std::move(img), p.string()});
    }
    const Sensor s2 = sentinel2();
    for (const auto& p : sorted(root / "EuroSAT_MS", [&](const fs::path& q) { return ends(q, ".tif"); })) {
        TiffReadOptions o;
        o.band_names = eurosat_band_order();
        o.modality = Modality::multispectral;
        Image img = read_tiff(p, o);
        s2_dn_to_reflectance(img, s2_radiometry(std::nullopt, 2.0));  // EuroSAT: 2015-2017, before 04.00
        out.push_back({RingModality::multispectral, img.select({"B02", "B03", "B04", "B08"}), p.string()});
    }
    auto s1_dirs = [&](const fs::path& dir) {
        std::vector<fs::path> d;
        for (const auto& p : sorted(dir, [&](const fs::path& q) {
                 const auto n = q.filename().string();
                 return n.ends_with("_VV.tif") || n == "VV.tif";
             }))
            d.push_back(p.parent_path());
        return d;
    };
    for (const auto& d : s1_dirs(root / "BigEarthNet" / "BigEarthNet-S1")) {
        Image img = read_product(d, sentinel1(), {"VV", "VH"});
        clip(img, bigearthnet_s1_bounds());
        normalize(img, s1_db_stats());
        out.push_back({RingModality::sar_l2, img.select({"VV"}), d.string()});
    }
    for (const auto& d : s1_dirs(root / "SSL4EO-S12" / "s1")) {
        Image img = read_product(d, sentinel1(), {"VV", "VH"});
        clip(img, bigearthnet_s1_bounds());
        normalize(img, s1_db_stats());
        out.push_back({RingModality::sar_l2, img.select({"VV"}), d.string()});
    }
    out.push_back({RingModality::sar_l1, synth_quadpol(synth_size, 3),
                   "synthesised quad-pol SAR (rs::synth_quadpol; the sample folder has no complex SAR)"});
    return out;
}
#endif

}  // namespace moe::rs::ringmoe
