// rs/radiometry.hpp - radiometric preprocessing: Sentinel-2 digital numbers to reflectance,
// SAR power <-> dB, percentile clipping, per-band normalisation, quad-pol SAR features.
//
// Every step works in place on an rs::Image (or returns a new one), skips pixels the validity mask
// marks invalid and leaves them invalid: nodata is carried through, never turned into numbers that
// look valid.
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "moe/core/error.hpp"
#include "rs/image.hpp"
#include "rs/sensors.hpp"

namespace moe::rs {

// ------------------------------------------------------------------------------------------------
// Sentinel-2: digital numbers to reflectance
// ------------------------------------------------------------------------------------------------

/// The processing baseline (e.g. 2.14 for "02.14") found in product metadata text: the value of a
/// "PROCESSING_BASELINE" key (SSL4EO-S12 metadata.json, Earth Engine properties), else the
/// "_Nxxyy_" field of an ESA product name (S2B_MSIL2A_20200813T054639_N0214_...). "N9999" (products
/// re-processed outside ESA, e.g. BigEarthNet's sen2cor runs) is no baseline: nullopt.
inline std::optional<double> s2_processing_baseline(std::string_view text) {
    const std::string_view key = "PROCESSING_BASELINE";
    if (auto k = text.find(key); k != std::string_view::npos) {
        std::size_t i = k + key.size();
        while (i < text.size() && (text[i] == '"' || text[i] == ':' || text[i] == ' ' || text[i] == '=' ||
                                   text[i] == '>' || text[i] == '\t'))
            ++i;
        std::size_t j = i;
        while (j < text.size() && (std::isdigit(static_cast<unsigned char>(text[j])) || text[j] == '.')) ++j;
        if (j > i) {
            const double v = std::strtod(std::string(text.substr(i, j - i)).c_str(), nullptr);
            if (v > 0 && v < 99) return v;
        }
    }
    for (std::size_t p = text.find("_N"); p != std::string_view::npos; p = text.find("_N", p + 1)) {
        if (p + 7 > text.size() || text[p + 6] != '_') continue;
        bool digits = true;
        for (std::size_t q = p + 2; q < p + 6; ++q) digits = digits && std::isdigit(static_cast<unsigned char>(text[q]));
        if (!digits) continue;
        const int n = std::stoi(std::string(text.substr(p + 2, 4)));
        if (n == 9999) return std::nullopt;
        return n / 100.0;
    }
    return std::nullopt;
}

/// s2_processing_baseline() of a metadata file (metadata.json, MTD_MSIL2A.xml, ...).
inline std::optional<double> s2_processing_baseline_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    check<NotFoundError>(in.good(), path.string(), "cannot open the product metadata");
    std::ostringstream ss;
    ss << in.rdbuf();
    return s2_processing_baseline(ss.str());
}

/// The radiometric offset of a processing baseline: -1000 DN from baseline 04.00 (25 January 2022,
/// BOA_ADD_OFFSET / RADIO_ADD_OFFSET in the product metadata), 0 before.
inline double s2_offset_for_baseline(double baseline) noexcept { return baseline >= 4.0 - 1e-9 ? -1000.0 : 0.0; }

/// How to turn Sentinel-2 DNs into reflectance.
struct S2Radiometry {
    double offset = 0;              ///< added to DN before the division
    double quantification = 10000;  ///< QUANTIFICATION_VALUE
    std::optional<double> baseline; ///< the baseline the offset came from, if known
    std::string origin;             ///< where the offset came from (for logs)
};

/// The radiometry of a product: from its metadata file when that states a baseline, else from
/// `fallback_baseline` (the caller's knowledge of the data set, e.g. 2.0 for data from before 2022).
inline S2Radiometry s2_radiometry(const std::optional<std::filesystem::path>& metadata, double fallback_baseline) {
    S2Radiometry r;
    if (metadata && std::filesystem::exists(*metadata)) {
        r.baseline = s2_processing_baseline_file(*metadata);
        if (r.baseline) r.origin = std::string("processing baseline from ").append(metadata->filename().string());
    }
    if (!r.baseline) {
        r.baseline = fallback_baseline;
        r.origin = "configured processing baseline";
    }
    r.offset = s2_offset_for_baseline(*r.baseline);
    return r;
}

/// reflectance = (DN + offset) / quantification, in place. DN 0 is Sentinel-2's nodata: such
/// pixels (and already-invalid ones) are marked invalid and left unchanged.
inline void s2_dn_to_reflectance(Image& img, const S2Radiometry& r) {
    check<ConfigError>(r.quantification > 0, "rs::s2_dn_to_reflectance", "quantification value ", r.quantification,
                       " must be positive");
    const float inv = static_cast<float>(1.0 / r.quantification);
    const float off = static_cast<float>(r.offset);
    for (index_t b = 0; b < img.bands_count(); ++b) {
        auto d = img.band(b);
        std::size_t zeros = 0;
        for (const float v : d) zeros += v == 0.0f;
        if (!img.has_mask() && zeros == 0) {  // the common case: one vectorisable pass
            for (float& v : d) v = (v + off) * inv;
            continue;
        }
        std::span<std::uint8_t> m = img.mask(b);
        for (std::size_t i = 0; i < d.size(); ++i) {
            if (!m[i]) continue;
            if (d[i] == 0.0f) {
                m[i] = 0;
                continue;
            }
            d[i] = (d[i] + off) * inv;
        }
    }
}

// ------------------------------------------------------------------------------------------------
// SAR: power <-> dB
// ------------------------------------------------------------------------------------------------

/// dB = 10 log10(power), in place. Non-positive power has no dB value: marked invalid.
inline void power_to_db(Image& img) {
    for (index_t b = 0; b < img.bands_count(); ++b) {
        auto d = img.band(b);
        std::span<std::uint8_t> m = img.has_mask() ? img.mask(b) : std::span<std::uint8_t>();
        for (std::size_t i = 0; i < d.size(); ++i) {
            if (!m.empty() && !m[i]) continue;
            if (!(d[i] > 0.0f)) {
                if (m.empty()) m = img.mask(b);
                m[i] = 0;
                continue;
            }
            d[i] = 10.0f * std::log10(d[i]);
        }
    }
}
/// power = 10^(dB / 10), in place (valid pixels).
inline void db_to_power(Image& img) {
    for (index_t b = 0; b < img.bands_count(); ++b) {
        auto d = img.band(b);
        const auto m = img.mask(b);
        for (std::size_t i = 0; i < d.size(); ++i)
            if (m.empty() || m[i]) d[i] = std::pow(10.0f, d[i] / 10.0f);
    }
}

// ------------------------------------------------------------------------------------------------
// Clipping
// ------------------------------------------------------------------------------------------------

/// The p-th percentile (0..100) of `v` with linear interpolation between order statistics
/// (numpy.percentile's default): rank p/100 * (n - 1). `v` is reordered.
inline double percentile(std::vector<float>& v, double p) {
    check<ValueError>(!v.empty(), "rs::percentile", "no values");
    check<ConfigError>(p >= 0 && p <= 100, "rs::percentile", "percentile ", p, " is outside 0..100");
    const double rank = p / 100.0 * double(v.size() - 1);
    const auto lo = static_cast<std::size_t>(std::floor(rank));
    const std::size_t hi = std::min(lo + 1, v.size() - 1);
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(lo), v.end());
    const double a = v[lo];
    double b = a;
    if (hi != lo) b = *std::min_element(v.begin() + static_cast<std::ptrdiff_t>(lo) + 1, v.end());
    return a + (rank - double(lo)) * (b - a);
}

/// Clips band b's valid pixels to [lo, hi].
inline void clip_band(Image& img, index_t b, float lo, float hi) {
    check<ConfigError>(lo <= hi, "rs::clip_band", "lower bound ", lo, " exceeds upper bound ", hi);
    auto d = img.band(b);
    const auto m = img.mask(b);
    for (std::size_t i = 0; i < d.size(); ++i)
        if (m.empty() || m[i]) d[i] = std::clamp(d[i], lo, hi);
}

/// Clips each band to fixed bounds given by band name (e.g. BigEarthNet's S1 bounds VV [-48, 6]);
/// NotFoundError when a band has no bounds.
struct BandBounds {
    std::vector<std::string> bands;
    std::vector<float> lo, hi;
};
inline void clip(Image& img, const BandBounds& bounds) {
    check<ShapeError>(bounds.lo.size() == bounds.bands.size() && bounds.hi.size() == bounds.bands.size(), "rs::clip",
                      "bounds need one lo and one hi per band");
    for (index_t b = 0; b < img.bands_count(); ++b) {
        std::size_t k = bounds.bands.size();
        for (std::size_t j = 0; j < bounds.bands.size(); ++j)
            if (detail::iequals(bounds.bands[j], img.band_names()[static_cast<std::size_t>(b)])) k = j;
        check<NotFoundError>(k < bounds.bands.size(), "rs::clip", "no bounds for band '",
                             img.band_names()[static_cast<std::size_t>(b)], "'; bounds cover ",
                             detail::join(bounds.bands));
        clip_band(img, b, bounds.lo[k], bounds.hi[k]);
    }
}

/// Clips every band to its own [lo_pct, hi_pct] percentiles over its valid pixels (e.g. 2 and 98)
/// and returns the bounds used. A band without valid pixels is left alone (bounds NaN).
inline BandBounds percentile_clip(Image& img, double lo_pct, double hi_pct) {
    check<ConfigError>(lo_pct <= hi_pct, "rs::percentile_clip", "lower percentile ", lo_pct, " exceeds upper ",
                       hi_pct);
    BandBounds out;
    std::vector<float> v;
    for (index_t b = 0; b < img.bands_count(); ++b) {
        const auto d = img.band(b);
        const auto m = img.mask(b);
        v.clear();
        for (std::size_t i = 0; i < d.size(); ++i)
            if (m.empty() || m[i]) v.push_back(d[i]);
        out.bands.push_back(img.band_names()[static_cast<std::size_t>(b)]);
        if (v.empty()) {
            out.lo.push_back(std::numeric_limits<float>::quiet_NaN());
            out.hi.push_back(std::numeric_limits<float>::quiet_NaN());
            continue;
        }
        const auto lo = static_cast<float>(percentile(v, lo_pct));
        const auto hi = static_cast<float>(percentile(v, hi_pct));
        out.lo.push_back(lo);
        out.hi.push_back(hi);
        clip_band(img, b, lo, hi);
    }
    return out;
}

// ------------------------------------------------------------------------------------------------
// Normalisation
// ------------------------------------------------------------------------------------------------

/// Per-band mean and standard deviation, by band name.
struct NormStats {
    std::string name;
    std::vector<std::string> bands;
    std::vector<double> mean, std;

    /// Index of the statistics for band `band` (names compared through `sensor`'s aliases when given).
    index_t index_of(std::string_view band, const Sensor* sensor = nullptr) const {
        for (std::size_t j = 0; j < bands.size(); ++j) {
            if (detail::iequals(bands[j], band)) return static_cast<index_t>(j);
            if (sensor) {
                const auto a = sensor->find(bands[j]), b = sensor->find(band);
                if (a && b && *a == *b) return static_cast<index_t>(j);
            }
        }
        throw NotFoundError(std::string("rs::NormStats ").append(name),
                            std::string("no statistics for band '").append(band).append("'; they cover ").append(
                                detail::join(bands)));
    }
};

/// (x - mean) / std per band, in place; statistics matched by band name (through `sensor`'s
/// aliases when given). NotFoundError names a band without statistics.
inline void normalize(Image& img, const NormStats& s, const Sensor* sensor = nullptr) {
    check<ShapeError>(s.mean.size() == s.bands.size() && s.std.size() == s.bands.size(), "rs::normalize",
                      "statistics '", s.name, "' need one mean and one std per band");
    for (index_t b = 0; b < img.bands_count(); ++b) {
        const auto k = static_cast<std::size_t>(s.index_of(img.band_names()[static_cast<std::size_t>(b)], sensor));
        check<ValueError>(s.std[k] > 0, "rs::normalize", "statistics '", s.name, "' band ", s.bands[k],
                          ": std ", s.std[k], " is not positive");
        const auto mean = static_cast<float>(s.mean[k]), inv = static_cast<float>(1.0 / s.std[k]);
        auto d = img.band(b);
        const auto m = static_cast<const Image&>(img).mask(b);
        if (m.empty()) {
            for (float& v : d) v = (v - mean) * inv;
            continue;
        }
        for (std::size_t i = 0; i < d.size(); ++i)
            if (m[i]) d[i] = (d[i] - mean) * inv;
    }
}

/// Statistics published for digital numbers, converted to reflectance units with `r`
/// ((mean + offset) / quantification, std / quantification): normalise after s2_dn_to_reflectance.
inline NormStats to_reflectance(NormStats s, const S2Radiometry& r) {
    for (auto& m : s.mean) m = (m + r.offset) / r.quantification;
    for (auto& v : s.std) v /= r.quantification;
    s.name.append(" (reflectance)");
    return s;
}

/// Mean and (population) standard deviation of each band over its valid pixels.
inline NormStats compute_stats(const Image& img) {
    NormStats s;
    s.name = "computed";
    for (index_t b = 0; b < img.bands_count(); ++b) {
        const auto d = img.band(b);
        const auto m = img.mask(b);
        double sum = 0, sq = 0;
        index_t n = 0;
        for (std::size_t i = 0; i < d.size(); ++i)
            if (m.empty() || m[i]) sum += d[i], sq += double(d[i]) * d[i], ++n;
        check<ValueError>(n > 0, "rs::compute_stats", "band ", img.band_names()[static_cast<std::size_t>(b)],
                          " has no valid pixel");
        const double mean = sum / double(n);
        s.bands.push_back(img.band_names()[static_cast<std::size_t>(b)]);
        s.mean.push_back(mean);
        s.std.push_back(std::sqrt(std::max(0.0, sq / double(n) - mean * mean)));
    }
    return s;
}

/// EuroSAT (13-band MS, DN) statistics published with TorchGeo's EuroSAT datamodule. TorchGeo
/// lists them in the files' band order (B01..B12, then B8A); named here accordingly (B09 water
/// vapour ~732, B10 cirrus ~12, B8A ~2594).
inline NormStats eurosat_stats() {
    return {"eurosat",
            eurosat_band_order(),
            {1354.40546513, 1118.24399958, 1042.92983953, 947.62620298, 1199.47283961, 1999.79090914, 2369.22292565,
             2296.82608323, 732.08340178, 12.11327804, 1819.01027855, 1118.92391149, 2594.14080798},
            {245.71762908, 333.00778264, 395.09249139, 593.75055589, 566.4170017, 861.18399006, 1086.63139075,
             1117.98170791, 404.91978886, 4.77584468, 1002.58768311, 761.30323499, 1231.58581042}};
}
/// SSL4EO-S12 Sentinel-2 L1C (13 bands, DN) statistics from the dataset's repository (50k patches).
inline NormStats ssl4eo_s2_l1c_stats() {
    return {"ssl4eo_s2_l1c",
            s2_l1c_band_order(),
            {1605.57504906, 1390.78157673, 1314.8729939, 1363.52445545, 1549.44374991, 2091.74883118, 2371.7172463,
             2299.90463006, 2560.29504086, 830.06605044, 22.10351321, 2177.07172323, 1524.06546312},
            {786.78685367, 850.34818441, 875.06484736, 1138.84957046, 1122.17775652, 1161.59187054, 1274.39184232,
             1248.42891965, 1345.52684884, 577.31607053, 51.15431158, 1336.09932639, 1136.53823676}};
}
/// SSL4EO-S12 Sentinel-2 L2A (12 bands, DN).
inline NormStats ssl4eo_s2_l2a_stats() {
    return {"ssl4eo_s2_l2a",
            s2_l2a_band_order(),
            {752.40087073, 884.29673756, 1144.16202635, 1297.47289228, 1624.90992062, 2194.6423161, 2422.21248945,
             2517.76053101, 2581.64687018, 2645.51888987, 2368.51236873, 1805.06846033},
            {1108.02887453, 1155.15170768, 1183.6292542, 1368.11351514, 1370.265037, 1355.55390699, 1416.51487101,
             1474.78900051, 1439.3086061, 1582.28010962, 1455.52084939, 1343.48379601}};
}
/// SSL4EO-S12 Sentinel-1 GRD (VV, VH in dB).
inline NormStats ssl4eo_s1_stats() {
    return {"ssl4eo_s1", {"VV", "VH"}, {-12.54847273, -20.19237134}, {5.25697717, 5.91150917}};
}
/// The common Sentinel-1 dB normalisation (VV, VH): mean (-12.59, -20.26), std (5.26, 5.91).
inline NormStats s1_db_stats() { return {"s1_db", {"VV", "VH"}, {-12.59, -20.26}, {5.26, 5.91}}; }
/// BigEarthNet's Sentinel-1 dB clipping bounds (2nd / 98th percentiles): VV [-48, 6], VH [-42, 16].
inline BandBounds bigearthnet_s1_bounds() { return {{"VV", "VH"}, {-48.0f, -42.0f}, {6.0f, 16.0f}}; }

// ------------------------------------------------------------------------------------------------
// Quad-pol complex SAR
// ------------------------------------------------------------------------------------------------

namespace detail {
inline const char* const kQuadPols[4] = {"HH", "HV", "VH", "VV"};

/// Calls fn(out, pixel, |S_p|^2 [4], valid_p [4]) for a complex image with bands <p>_re, <p>_im.
template <class Fn>
Image quadpol_map(const Image& img, const std::vector<std::string>& out_names, Fn fn) {
    index_t re[4], im[4];
    for (int p = 0; p < 4; ++p) {
        re[p] = img.index_of(std::string(kQuadPols[p]).append("_re"));
        im[p] = img.index_of(std::string(kQuadPols[p]).append("_im"));
    }
    Image out(out_names, img.height(), img.width(), Modality::sar);
    out.copy_meta_from(img);
    out.set_modality(Modality::sar);
    out.set_nodata(std::nullopt);
    const index_t n = img.pixels();
    for (index_t i = 0; i < n; ++i) {
        float pw[4];
        bool ok[4] = {true, true, true, true};
        for (int p = 0; p < 4; ++p) {
            const float a = img.band(re[p])[static_cast<std::size_t>(i)], b = img.band(im[p])[static_cast<std::size_t>(i)];
            pw[p] = a * a + b * b;
            if (img.has_mask())
                ok[p] = img.mask(re[p])[static_cast<std::size_t>(i)] && img.mask(im[p])[static_cast<std::size_t>(i)];
        }
        fn(out, i, pw, ok);
    }
    return out;
}
}  // namespace detail

/// Intensity |S|^2 = re^2 + im^2 of HH, HV, VH, VV (bands "HH", "HV", "VH", "VV") from a complex
/// quad-pol image with bands HH_re, HH_im, ..., VV_im. A polarisation's pixel is invalid if its
/// real or imaginary part is; the span is invalid if any part is.
inline Image quadpol_intensity(const Image& img) {
    return detail::quadpol_map(img, {"HH", "HV", "VH", "VV"}, [](Image& out, index_t i, const float* pw, const bool* ok) {
        for (index_t p = 0; p < 4; ++p) {
            out.band(p)[static_cast<std::size_t>(i)] = pw[p];
            if (!ok[p]) out.mask(p)[static_cast<std::size_t>(i)] = 0;
        }
    });
}
/// Amplitude |S| = sqrt(re^2 + im^2) of HH, HV, VH, VV.
inline Image quadpol_amplitude(const Image& img) {
    return detail::quadpol_map(img, {"HH", "HV", "VH", "VV"}, [](Image& out, index_t i, const float* pw, const bool* ok) {
        for (index_t p = 0; p < 4; ++p) {
            out.band(p)[static_cast<std::size_t>(i)] = std::sqrt(pw[p]);
            if (!ok[p]) out.mask(p)[static_cast<std::size_t>(i)] = 0;
        }
    });
}
/// Total polarimetric power (span) |HH|^2 + |HV|^2 + |VH|^2 + |VV|^2, one band "span": the
/// physics-informed reconstruction target of RingMoE's SAR-L1 branch.
inline Image quadpol_span(const Image& img) {
    return detail::quadpol_map(img, {"span"}, [](Image& out, index_t i, const float* pw, const bool* ok) {
        out.band(0)[static_cast<std::size_t>(i)] = (pw[0] + pw[1]) + (pw[2] + pw[3]);
        if (!(ok[0] && ok[1] && ok[2] && ok[3])) out.mask(0)[static_cast<std::size_t>(i)] = 0;
    });
}

}  // namespace moe::rs
