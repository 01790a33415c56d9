// rs/sensors.hpp - sensors, their bands, and the band orders datasets use.
//
// A Sensor is a named list of Bands (name, aliases, central wavelength in micrometres, native
// ground resolution in metres) and a Modality. The built-in sensors are returned by value from
// functions (no global state); a SensorRegistry is an object the caller owns, pre-filled with the
// built-ins, to which users add their own sensors.
//
// Band names are the ones ESA / USGS use (Sentinel-2 "B01".."B12", "B8A"); lookups accept the
// aliases datasets use ("B1" for "B01" in SSL4EO-S12) and ignore case. Every image carries its
// band names (rs/image.hpp), so reordering between dataset conventions is by name:
//   EuroSAT MS files:     B01 .. B12 with B8A last (13 bands)
//   Sentinel-2 L1C:       B01 .. B08, B8A, B09, B10, B11, B12 (13 bands, ESA order)
//   Sentinel-2 L2A:       the same without B10 (12 bands; SSL4EO-S12 s2a, BigEarthNet)
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"

namespace moe::rs {

/// What kind of measurement an image holds; the per-modality adapters choose their weights by it.
enum class Modality {
    unknown,        ///< not stated
    optical,        ///< RGB (aerial or true-colour satellite)
    multispectral,  ///< a few to ~15 broad optical bands (Sentinel-2, Landsat)
    hyperspectral,  ///< many narrow contiguous bands (EnMAP)
    sar,            ///< SAR backscatter (amplitude, intensity or dB) per polarisation
    sar_complex,    ///< complex SAR: real/imaginary pairs per polarisation (quad-pol SLC)
};

inline std::string_view modality_name(Modality m) noexcept {
    switch (m) {
        case Modality::optical: return "optical";
        case Modality::multispectral: return "multispectral";
        case Modality::hyperspectral: return "hyperspectral";
        case Modality::sar: return "sar";
        case Modality::sar_complex: return "sar_complex";
        default: return "unknown";
    }
}

/// One spectral band or polarisation channel.
struct Band {
    std::string name;                  ///< canonical name ("B8A", "VV", "R")
    double wavelength_um = 0;          ///< central wavelength in micrometres (SAR: radar wavelength)
    double resolution_m = 0;           ///< native ground sampling distance; 0 when not fixed
    std::vector<std::string> aliases;  ///< other spellings datasets use ("B1" for "B01")
};

namespace detail {
inline bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}
inline std::string join(const std::vector<std::string>& v, std::string_view sep = ", ") {
    std::string s;
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i) s.append(sep);
        s.append(v[i]);
    }
    return s;
}
}  // namespace detail

/// A named sensor: its bands in the sensor's own order, and its modality.
class Sensor {
public:
    Sensor() = default;
    Sensor(std::string name, Modality modality, std::vector<Band> bands)
        : name_(std::move(name)), modality_(modality), bands_(std::move(bands)) {
        check<ConfigError>(!name_.empty(), "rs::Sensor", "a sensor needs a name");
        check<ConfigError>(!bands_.empty(), "rs::Sensor", "sensor '", name_, "' has no bands");
        for (std::size_t i = 0; i < bands_.size(); ++i) {
            check<ConfigError>(!bands_[i].name.empty(), "rs::Sensor", "sensor '", name_, "' band ", i, " has no name");
            check<ConfigError>(std::isfinite(bands_[i].wavelength_um) && bands_[i].wavelength_um >= 0, "rs::Sensor",
                               "sensor '", name_, "' band ", bands_[i].name, ": wavelength ", bands_[i].wavelength_um,
                               " is not a non-negative number");
            for (std::size_t j = 0; j < i; ++j)
                check<ConfigError>(!matches(bands_[j], bands_[i].name), "rs::Sensor", "sensor '", name_,
                                   "' names band ", bands_[i].name, " twice");
        }
    }

    const std::string& name() const noexcept { return name_; }
    Modality modality() const noexcept { return modality_; }
    const std::vector<Band>& bands() const noexcept { return bands_; }
    index_t size() const noexcept { return static_cast<index_t>(bands_.size()); }

    /// Canonical band names in the sensor's order.
    std::vector<std::string> band_names() const {
        std::vector<std::string> v;
        for (const auto& b : bands_) v.push_back(b.name);
        return v;
    }
    /// Index of the band called `name` (or one of its aliases; case-insensitive), if any.
    std::optional<index_t> find(std::string_view name) const noexcept {
        for (std::size_t i = 0; i < bands_.size(); ++i)
            if (matches(bands_[i], name)) return static_cast<index_t>(i);
        return std::nullopt;
    }
    bool has(std::string_view name) const noexcept { return find(name).has_value(); }
    /// Index of band `name`; NotFoundError listing the sensor's bands otherwise.
    index_t index_of(std::string_view name) const {
        const auto i = find(name);
        if (!i)
            throw NotFoundError(std::string("rs::Sensor ").append(name_),
                                std::string("unknown band '").append(name).append("'; this sensor has ").append(
                                    detail::join(band_names())));
        return *i;
    }
    const Band& band(std::string_view name) const { return bands_[static_cast<std::size_t>(index_of(name))]; }
    /// The canonical spelling of `name` ("B1" -> "B01"); NotFoundError when unknown.
    const std::string& canonical(std::string_view name) const { return band(name).name; }
    /// Central wavelengths (micrometres) of `names`, in that order.
    std::vector<double> wavelengths(const std::vector<std::string>& names) const {
        std::vector<double> w;
        for (const auto& n : names) w.push_back(band(n).wavelength_um);
        return w;
    }

private:
    static bool matches(const Band& b, std::string_view name) noexcept {
        if (detail::iequals(b.name, name)) return true;
        for (const auto& a : b.aliases)
            if (detail::iequals(a, name)) return true;
        return false;
    }

    std::string name_;
    Modality modality_ = Modality::unknown;
    std::vector<Band> bands_;
};

// ------------------------------------------------------------------------------------------------
// Built-in sensors
// ------------------------------------------------------------------------------------------------

/// Sentinel-2 MSI, 13 bands in ESA order (B01..B08, B8A, B09..B12). Central wavelengths: the
/// Sentinel-2A spectral response (ESA S2 MSI technical guide), micrometres.
inline Sensor sentinel2() {
    return Sensor("sentinel2", Modality::multispectral,
                  {{"B01", 0.4427, 60, {"B1"}},
                   {"B02", 0.4927, 10, {"B2"}},
                   {"B03", 0.5598, 10, {"B3"}},
                   {"B04", 0.6646, 10, {"B4"}},
                   {"B05", 0.7041, 20, {"B5"}},
                   {"B06", 0.7405, 20, {"B6"}},
                   {"B07", 0.7828, 20, {"B7"}},
                   {"B08", 0.8328, 10, {"B8"}},
                   {"B8A", 0.8647, 20, {"B08A"}},
                   {"B09", 0.9451, 60, {"B9"}},
                   {"B10", 1.3735, 60, {}},
                   {"B11", 1.6137, 20, {}},
                   {"B12", 2.2024, 20, {}}});
}

/// Sentinel-1 C-band SAR (5.405 GHz, wavelength 5.547 cm): VV, VH (IW dual-pol) and HH, HV.
inline Sensor sentinel1() {
    constexpr double c_band_um = 55465.76;  // 299792458 / 5.405e9 m, in micrometres
    return Sensor("sentinel1", Modality::sar,
                  {{"VV", c_band_um, 10, {}}, {"VH", c_band_um, 10, {}}, {"HH", c_band_um, 10, {}},
                   {"HV", c_band_um, 10, {}}});
}

/// Landsat 8/9 OLI (B1..B9) and TIRS (B10, B11); USGS band centres, micrometres.
inline Sensor landsat89() {
    return Sensor("landsat89", Modality::multispectral,
                  {{"B1", 0.443, 30, {"coastal"}},
                   {"B2", 0.482, 30, {"blue"}},
                   {"B3", 0.562, 30, {"green"}},
                   {"B4", 0.655, 30, {"red"}},
                   {"B5", 0.865, 30, {"nir"}},
                   {"B6", 1.609, 30, {"swir1"}},
                   {"B7", 2.201, 30, {"swir2"}},
                   {"B8", 0.590, 15, {"pan"}},
                   {"B9", 1.373, 30, {"cirrus"}},
                   {"B10", 10.895, 100, {"tirs1"}},
                   {"B11", 12.005, 100, {"tirs2"}}});
}

/// A plain RGB camera (aerial photos, EuroSAT RGB): R, G, B; nominal centres of sRGB primaries.
inline Sensor rgb() {
    return Sensor("rgb", Modality::optical,
                  {{"R", 0.665, 0, {"red"}}, {"G", 0.560, 0, {"green"}}, {"B", 0.490, 0, {"blue"}}});
}

/// Names of EnMAP bands: "B001" .. "B224" (1-based, as in the product's band list).
inline std::string enmap_band_name(index_t i) {
    std::string s = std::to_string(i + 1);
    while (s.size() < 3) s.insert(s.begin(), '0');
    return std::string("B").append(s);
}

/// EnMAP HSI, 224 bands (VNIR + SWIR), 30 m. The central wavelengths vary between products and
/// are listed in each product's METADATA.XML: they are given here at run time (micrometres).
inline Sensor enmap(std::span<const double> wavelengths_um) {
    check<ConfigError>(wavelengths_um.size() == 224, "rs::enmap", "EnMAP has 224 bands, ", wavelengths_um.size(),
                       " wavelengths given");
    std::vector<Band> bands;
    for (std::size_t i = 0; i < wavelengths_um.size(); ++i) {
        check<ConfigError>(wavelengths_um[i] > 0.3 && wavelengths_um[i] < 2.6, "rs::enmap", "band ", i + 1,
                           ": wavelength ", wavelengths_um[i], " um is outside EnMAP's 0.42 .. 2.45 um range");
        bands.push_back({enmap_band_name(static_cast<index_t>(i)), wavelengths_um[i], 30, {}});
    }
    return Sensor("enmap", Modality::hyperspectral, std::move(bands));
}

/// Nominal EnMAP wavelengths for when a product's METADATA.XML is not at hand: 91 VNIR bands
/// evenly from 0.4184 to 0.9930 um and 133 SWIR bands evenly from 0.9025 to 2.4455 um (the
/// instrument's ranges). Approximate (a few nm off the per-product values): for demonstrations.
inline std::vector<double> enmap_nominal_wavelengths() {
    std::vector<double> w;
    for (int i = 0; i < 91; ++i) w.push_back(0.4184 + (0.9930 - 0.4184) * i / 90.0);
    for (int i = 0; i < 133; ++i) w.push_back(0.9025 + (2.4455 - 0.9025) * i / 132.0);
    return w;
}

/// Quad-pol complex SAR channels as RingMoE's SAR-L1 input orders them: HH, HV, VH, VV, each as a
/// (real, imaginary) pair: "HH_re", "HH_im", ... "VV_im".
inline Sensor quadpol_complex(double wavelength_um = 55465.76) {
    std::vector<Band> b;
    for (const char* p : {"HH", "HV", "VH", "VV"})
        for (const char* part : {"_re", "_im"}) b.push_back({std::string(p).append(part), wavelength_um, 0, {}});
    return Sensor("quadpol_complex", Modality::sar_complex, std::move(b));
}

// ------------------------------------------------------------------------------------------------
// Dataset band orders
// ------------------------------------------------------------------------------------------------

/// EuroSAT multispectral GeoTIFFs: B01 .. B12 in order, then B8A last (13 bands).
inline std::vector<std::string> eurosat_band_order() {
    return {"B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"};
}
/// Sentinel-2 L1C in ESA order (13 bands; SSL4EO-S12 s2c).
inline std::vector<std::string> s2_l1c_band_order() { return sentinel2().band_names(); }
/// Sentinel-2 L2A in ESA order, no B10 (12 bands; SSL4EO-S12 s2a, BigEarthNet-S2).
inline std::vector<std::string> s2_l2a_band_order() {
    return {"B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"};
}

/// For each name in `to`, its index in `from` (both matched through `sensor`'s names and aliases).
/// NotFoundError names a band of `to` missing from `from`.
inline std::vector<index_t> band_permutation(const Sensor& sensor, const std::vector<std::string>& from,
                                             const std::vector<std::string>& to) {
    std::vector<index_t> canon_from;
    for (const auto& n : from) canon_from.push_back(sensor.index_of(n));
    std::vector<index_t> perm;
    for (const auto& n : to) {
        const index_t c = sensor.index_of(n);
        const auto it = std::find(canon_from.begin(), canon_from.end(), c);
        if (it == canon_from.end())
            throw NotFoundError("rs::band_permutation",
                                std::string("band '").append(n).append("' is not among the source bands ").append(
                                    detail::join(from)));
        perm.push_back(static_cast<index_t>(it - canon_from.begin()));
    }
    return perm;
}

// ------------------------------------------------------------------------------------------------
// Registry: an object the caller owns.
// ------------------------------------------------------------------------------------------------

/// Sensors by name. Starts with the built-ins (sentinel2, sentinel1, landsat89, rgb,
/// quadpol_complex); add() registers the caller's own (EnMAP with a product's wavelengths, a
/// drone camera, ...).
class SensorRegistry {
public:
    SensorRegistry() : sensors_{sentinel2(), sentinel1(), landsat89(), rgb(), quadpol_complex()} {}

    /// Registers `s`; ConfigError if a sensor of that name exists (unless replace is true).
    void add(Sensor s, bool replace = false) {
        for (auto& e : sensors_)
            if (detail::iequals(e.name(), s.name())) {
                check<ConfigError>(replace, "rs::SensorRegistry", "sensor '", s.name(),
                                   "' is already registered (pass replace = true to replace it)");
                e = std::move(s);
                return;
            }
        sensors_.push_back(std::move(s));
    }
    bool has(std::string_view name) const noexcept {
        for (const auto& e : sensors_)
            if (detail::iequals(e.name(), name)) return true;
        return false;
    }
    const Sensor& get(std::string_view name) const {
        for (const auto& e : sensors_)
            if (detail::iequals(e.name(), name)) return e;
        throw NotFoundError("rs::SensorRegistry",
                            std::string("unknown sensor '").append(name).append("'; registered: ").append(
                                detail::join(names())));
    }
    std::vector<std::string> names() const {
        std::vector<std::string> v;
        for (const auto& e : sensors_) v.push_back(e.name());
        return v;
    }

private:
    std::vector<Sensor> sensors_;
};

}  // namespace moe::rs
