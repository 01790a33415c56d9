// rs/synth.hpp - a synthetic scene for runs without the real samples (examples, benchmarks,
// tests on machines without ../shared/data/rs).
//
// The scene is a land-cover map (water: a river and a lake; vegetation: fields; bare soil;
// urban blocks) rendered through typical reflectance spectra of those four surfaces, so band
// ratios behave like real data (vegetation's red edge, water dark in the NIR, soil brighter in
// the SWIR). The spectra are approximate piecewise-linear curves after the USGS spectral library's
// shapes, not measurements; the SAR backscatter levels are typical C-band values per class.
// Deterministic for a given seed; no global state.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "rs/image.hpp"
#include "rs/sensors.hpp"

namespace moe::rs {

/// The synthetic land-cover classes.
enum class Cover : std::uint8_t { water = 0, vegetation = 1, soil = 2, urban = 3 };

namespace detail {
struct SpectrumPoint {
    double um, refl;
};
inline const std::array<SpectrumPoint, 13>& cover_spectrum(Cover c) {
    // Typical top-of-atmosphere-like reflectances at Sentinel-2's band centres (B10 is in a water
    // vapour absorption band: near zero for every surface).
    static constexpr std::array<SpectrumPoint, 13> water{{{0.4427, 0.080}, {0.4927, 0.070}, {0.5598, 0.055}, {0.6646, 0.030}, {0.7041, 0.022}, {0.7405, 0.015}, {0.7828, 0.012}, {0.8328, 0.010}, {0.8647, 0.009}, {0.9451, 0.006}, {1.3735, 0.001}, {1.6137, 0.004}, {2.2024, 0.003}}};
    static constexpr std::array<SpectrumPoint, 13> veg{{{0.4427, 0.045}, {0.4927, 0.050}, {0.5598, 0.090}, {0.6646, 0.045}, {0.7041, 0.130}, {0.7405, 0.300}, {0.7828, 0.390}, {0.8328, 0.420}, {0.8647, 0.430}, {0.9451, 0.400}, {1.3735, 0.004}, {1.6137, 0.240}, {2.2024, 0.110}}};
    static constexpr std::array<SpectrumPoint, 13> soil{{{0.4427, 0.100}, {0.4927, 0.120}, {0.5598, 0.160}, {0.6646, 0.210}, {0.7041, 0.230}, {0.7405, 0.245}, {0.7828, 0.255}, {0.8328, 0.270}, {0.8647, 0.275}, {0.9451, 0.280}, {1.3735, 0.006}, {1.6137, 0.340}, {2.2024, 0.300}}};
    static constexpr std::array<SpectrumPoint, 13> urban{{{0.4427, 0.130}, {0.4927, 0.140}, {0.5598, 0.150}, {0.6646, 0.160}, {0.7041, 0.165}, {0.7405, 0.170}, {0.7828, 0.175}, {0.8328, 0.180}, {0.8647, 0.182}, {0.9451, 0.185}, {1.3735, 0.005}, {1.6137, 0.200}, {2.2024, 0.190}}};
    switch (c) {
        case Cover::water: return water;
        case Cover::vegetation: return veg;
        case Cover::soil: return soil;
        default: return urban;
    }
}
}  // namespace detail

/// Reflectance of `c` at `um` (linear between the table's points, flat beyond its ends).
inline double cover_reflectance(Cover c, double um) {
    const auto& s = detail::cover_spectrum(c);
    if (um <= s.front().um) return s.front().refl;
    if (um >= s.back().um) return s.back().refl;
    for (std::size_t i = 1; i < s.size(); ++i)
        if (um <= s[i].um) {
            const double t = (um - s[i - 1].um) / (s[i].um - s[i - 1].um);
            return s[i - 1].refl + t * (s[i].refl - s[i - 1].refl);
        }
    return s.back().refl;
}

/// A size x size land-cover map: a diagonal river, a lake, urban blocks, fields and soil.
inline std::vector<Cover> synth_cover(index_t size) {
    check<ShapeError>(size > 0, "rs::synth_cover", "size ", size, " must be positive");
    std::vector<Cover> m(static_cast<std::size_t>(size * size));
    const double s = double(size);
    for (index_t y = 0; y < size; ++y)
        for (index_t x = 0; x < size; ++x) {
            const double u = x / s, v = y / s;
            Cover c = ((int(u * 6) + int(v * 6)) % 3 == 0) ? Cover::soil : Cover::vegetation;
            if (u > 0.6 && v < 0.35 && (int(u * 24) % 2 == 0 || int(v * 24) % 2 == 0)) c = Cover::urban;
            if (std::abs(v - (0.15 + 0.8 * u)) < 0.04) c = Cover::water;  // river
            if ((u - 0.25) * (u - 0.25) + (v - 0.75) * (v - 0.75) < 0.02) c = Cover::water;  // lake
            m[static_cast<std::size_t>(y * size + x)] = c;
        }
    return m;
}

/// Reflectance image of `sensor`'s optical bands (wavelength < 3 um) over the synthetic cover,
/// with 2 % multiplicative noise.
inline Image synth_reflectance(const Sensor& sensor, index_t size, unsigned seed = 1) {
    const auto cover = synth_cover(size);
    std::vector<std::string> names;
    std::vector<double> wl;
    for (const auto& b : sensor.bands())
        if (b.wavelength_um > 0 && b.wavelength_um < 3.0) names.push_back(b.name), wl.push_back(b.wavelength_um);
    check<ConfigError>(!names.empty(), "rs::synth_reflectance", "sensor '", sensor.name(), "' has no optical band");
    Image img(names, size, size, sensor.modality());
    img.set_source("synthetic scene (" + sensor.name() + ")");
    std::mt19937 rng(seed);
    std::normal_distribution<float> noise(1.0f, 0.02f);
    for (std::size_t b = 0; b < names.size(); ++b) {
        auto d = img.band(static_cast<index_t>(b));
        for (std::size_t i = 0; i < d.size(); ++i)
            d[i] = static_cast<float>(cover_reflectance(cover[i], wl[b])) * noise(rng);
    }
    return img;
}

/// Sentinel-2 digital numbers (13 bands, ESA order): reflectance * 10000, + 1000 from processing
/// baseline 04.00 on; uint16-like integers.
inline Image synth_s2_dn(index_t size, double baseline = 2.14, unsigned seed = 1) {
    Image img = synth_reflectance(sentinel2(), size, seed);
    const float off = baseline >= 4.0 ? 1000.0f : 0.0f;
    for (auto& v : img.data()) v = std::clamp(std::round(v * 10000.0f + off), 1.0f, 65535.0f);
    img.set_source_type(SampleType::u16);
    img.geo().pixel_scale = std::array<double, 3>{10.0, 10.0, 0.0};
    return img;
}

/// Sentinel-1 VV, VH backscatter in dB per cover class (water -22/-29, vegetation -9/-15,
/// soil -13/-21, urban 0/-7) with speckle (1 dB).
inline Image synth_s1_db(index_t size, unsigned seed = 2) {
    const auto cover = synth_cover(size);
    Image img({"VV", "VH"}, size, size, Modality::sar);
    img.set_source("synthetic scene (sentinel1)");
    const float vv[4] = {-22, -9, -13, 0}, vh[4] = {-29, -15, -21, -7};
    std::mt19937 rng(seed);
    std::normal_distribution<float> speckle(0.0f, 1.0f);
    for (std::size_t i = 0; i < cover.size(); ++i) {
        img.band(0)[i] = vv[static_cast<int>(cover[i])] + speckle(rng);
        img.band(1)[i] = vh[static_cast<int>(cover[i])] + speckle(rng);
    }
    return img;
}

/// Quad-pol complex SAR (HH_re, HH_im, ..., VV_im) with per-class intensities and random phases.
inline Image synth_quadpol(index_t size, unsigned seed = 3) {
    const auto cover = synth_cover(size);
    Image img(quadpol_complex().band_names(), size, size, Modality::sar_complex);
    img.set_source("synthetic scene (quad-pol)");
    // Linear intensities |S|^2 per class for HH, HV, VH, VV.
    const float inten[4][4] = {{0.005f, 0.0005f, 0.0005f, 0.006f},
                               {0.08f, 0.03f, 0.03f, 0.07f},
                               {0.04f, 0.008f, 0.008f, 0.05f},
                               {0.8f, 0.1f, 0.1f, 0.6f}};
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> phase(0.0f, 6.2831853f);
    std::exponential_distribution<float> spk(1.0f);
    for (std::size_t i = 0; i < cover.size(); ++i)
        for (int p = 0; p < 4; ++p) {
            const float a = std::sqrt(inten[static_cast<int>(cover[i])][p] * spk(rng)), ph = phase(rng);
            img.band(2 * p)[i] = a * std::cos(ph);
            img.band(2 * p + 1)[i] = a * std::sin(ph);
        }
    return img;
}

/// 8-bit RGB (R, G, B) of the scene: reflectance * 255 / 0.3, clipped.
inline Image synth_rgb(index_t size, unsigned seed = 4) {
    Image img = synth_reflectance(rgb(), size, seed);
    for (auto& v : img.data()) v = std::clamp(std::round(v * 255.0f / 0.3f), 0.0f, 255.0f);
    img.set_source_type(SampleType::u8);
    return img;
}

}  // namespace moe::rs
