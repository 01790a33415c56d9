// rs/image.hpp - a multi-band raster that carries its band names, a validity mask and its
// georeferencing.
//
// Pixels are float32, band-sequential ("planar", [bands, height, width], row-major), the layout
// the patch embeddings consume. Integer samples (uint8, uint16, int16) convert exactly. The
// validity mask has one byte per band and pixel (1 = valid); an empty mask means all valid.
// Processing steps skip invalid pixels and keep them invalid, so nodata is carried through.
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "rs/sensors.hpp"

namespace moe::rs {

/// The GeoTIFF georeferencing that a file had (each part only if present).
struct GeoInfo {
    std::optional<std::array<double, 3>> pixel_scale;  ///< ModelPixelScaleTag (33550): sx, sy, sz
    std::optional<std::array<double, 6>> tie_point;    ///< ModelTiepointTag (33922): i, j, k, x, y, z
    int epsg = 0;             ///< ProjectedCSTypeGeoKey (3072) or GeographicTypeGeoKey (2048); 0 if none
    bool projected = false;   ///< true when the EPSG code came from ProjectedCSTypeGeoKey
    bool pixel_is_point = false;  ///< GTRasterTypeGeoKey (1025) == 2
};

/// The sample type a raster had on disk.
enum class SampleType { u8, u16, i16, f32 };

inline std::string_view sample_type_name(SampleType t) noexcept {
    switch (t) {
        case SampleType::u8: return "uint8";
        case SampleType::u16: return "uint16";
        case SampleType::i16: return "int16";
        default: return "float32";
    }
}

namespace detail {
/// `s` in ASCII lower case: the key under which band names compare (iequals' equivalence).
inline std::string lower_name(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}
/// Lower-cased name -> index of the first name with that key: case-insensitive lookups in O(1)
/// each instead of a scan of every name (band selection, appending, the TIFF reader).
inline std::unordered_map<std::string, std::size_t> lower_name_index(const std::vector<std::string>& names) {
    std::unordered_map<std::string, std::size_t> m;
    m.reserve(names.size());
    for (std::size_t i = 0; i < names.size(); ++i) m.emplace(lower_name(names[i]), i);
    return m;
}
/// Index of the first name equal (case-insensitively) to an earlier one, or npos when all are
/// unique. O(n log n) whatever the names (a sort, no hashing an adversary could flood).
inline std::size_t first_duplicate_name(const std::vector<std::string>& names) {
    std::vector<std::pair<std::string, std::size_t>> keyed;
    keyed.reserve(names.size());
    for (std::size_t i = 0; i < names.size(); ++i) keyed.emplace_back(lower_name(names[i]), i);
    std::sort(keyed.begin(), keyed.end());
    // In a run of equal keys the indices ascend; the run's second index is its first repeat.
    std::size_t first = std::string::npos;
    for (std::size_t k = 1; k < keyed.size(); ++k)
        if (keyed[k].first == keyed[k - 1].first && (k < 2 || keyed[k - 2].first != keyed[k].first))
            first = std::min(first, keyed[k].second);
    return first;
}
}  // namespace detail

/// A multi-band image: float32 [bands, height, width] with band names, a per-band validity mask,
/// the modality, the georeferencing and where it came from.
class Image {
public:
    Image() = default;
    /// A zero image of `bands.size()` bands of height x width.
    Image(std::vector<std::string> bands, index_t height, index_t width, Modality modality = Modality::unknown)
        : names_(std::move(bands)), h_(height), w_(width), modality_(modality) {
        check<ShapeError>(height > 0 && width > 0, "rs::Image", "size ", height, " x ", width, " is empty");
        check<ShapeError>(!names_.empty(), "rs::Image", "an image needs at least one band");
        if (const std::size_t i = detail::first_duplicate_name(names_); i != std::string::npos)
            throw ConfigError("rs::Image", moe::detail::cat("band '", names_[i], "' appears twice"));
        data_.assign(static_cast<std::size_t>(bands_count() * h_ * w_), 0.0f);
    }

    index_t bands_count() const noexcept { return static_cast<index_t>(names_.size()); }
    index_t height() const noexcept { return h_; }
    index_t width() const noexcept { return w_; }
    index_t pixels() const noexcept { return h_ * w_; }
    const std::vector<std::string>& band_names() const noexcept { return names_; }
    Modality modality() const noexcept { return modality_; }
    void set_modality(Modality m) noexcept { modality_ = m; }
    const GeoInfo& geo() const noexcept { return geo_; }
    GeoInfo& geo() noexcept { return geo_; }
    /// The nodata value the source declared (GDAL_NODATA), if any.
    const std::optional<double>& nodata() const noexcept { return nodata_; }
    void set_nodata(std::optional<double> v) noexcept { nodata_ = v; }
    SampleType source_type() const noexcept { return source_type_; }
    void set_source_type(SampleType t) noexcept { source_type_ = t; }
    const std::string& source() const noexcept { return source_; }
    void set_source(std::string s) { source_ = std::move(s); }

    /// Index of band `name` (case-insensitive), if present.
    std::optional<index_t> find(std::string_view name) const noexcept {
        for (std::size_t i = 0; i < names_.size(); ++i)
            if (detail::iequals(names_[i], name)) return static_cast<index_t>(i);
        return std::nullopt;
    }
    /// Index of band `name`; NotFoundError listing the image's bands otherwise.
    index_t index_of(std::string_view name) const {
        const auto i = find(name);
        if (!i)
            throw NotFoundError(std::string("rs::Image ").append(source_.empty() ? "(in memory)" : source_),
                                std::string("no band '").append(name).append("'; the image has ").append(
                                    detail::join(names_)));
        return *i;
    }
    void rename_band(index_t b, std::string name) {
        check_band(b);
        names_[static_cast<std::size_t>(b)] = std::move(name);
    }
    /// Renames every band at once (a dataset convention's names for a file that has none).
    void set_band_names(std::vector<std::string> names) {
        check<ShapeError>(static_cast<index_t>(names.size()) == bands_count(), "rs::Image::set_band_names",
                          names.size(), " names for ", bands_count(), " bands");
        names_ = std::move(names);
    }

    /// All pixels, band-sequential.
    std::span<float> data() noexcept { return data_; }
    std::span<const float> data() const noexcept { return data_; }
    /// Band b's pixels (height * width, row-major).
    std::span<float> band(index_t b) {
        check_band(b);
        return {data_.data() + b * pixels(), static_cast<std::size_t>(pixels())};
    }
    std::span<const float> band(index_t b) const {
        check_band(b);
        return {data_.data() + b * pixels(), static_cast<std::size_t>(pixels())};
    }
    std::span<float> band(std::string_view name) { return band(index_of(name)); }
    std::span<const float> band(std::string_view name) const { return band(index_of(name)); }
    float at(index_t b, index_t y, index_t x) const noexcept { return data_[static_cast<std::size_t>((b * h_ + y) * w_ + x)]; }
    float& at(index_t b, index_t y, index_t x) noexcept { return data_[static_cast<std::size_t>((b * h_ + y) * w_ + x)]; }

    /// True when any pixel is marked invalid (the mask exists).
    bool has_mask() const noexcept { return !mask_.empty(); }
    bool valid(index_t b, index_t y, index_t x) const noexcept {
        return mask_.empty() || mask_[static_cast<std::size_t>((b * h_ + y) * w_ + x)] != 0;
    }
    /// The mask of band b (1 = valid); creates an all-valid mask when there is none.
    std::span<std::uint8_t> mask(index_t b) {
        check_band(b);
        if (mask_.empty()) mask_.assign(data_.size(), 1);
        return {mask_.data() + b * pixels(), static_cast<std::size_t>(pixels())};
    }
    /// Band b's mask, or an empty span when every pixel is valid.
    std::span<const std::uint8_t> mask(index_t b) const {
        check_band(b);
        if (mask_.empty()) return {};
        return {mask_.data() + b * pixels(), static_cast<std::size_t>(pixels())};
    }
    /// Number of invalid pixels over all bands.
    index_t invalid_count() const noexcept {
        return static_cast<index_t>(std::count(mask_.begin(), mask_.end(), std::uint8_t{0}));
    }
    /// Marks every pixel equal to `value` invalid (NaN: every NaN pixel).
    void mask_value(float value) {
        for (index_t b = 0; b < bands_count(); ++b) {
            const auto d = band(b);
            std::span<std::uint8_t> m;
            for (std::size_t i = 0; i < d.size(); ++i)
                if (d[i] == value || (std::isnan(value) && std::isnan(d[i]))) {
                    if (m.empty()) m = mask(b);
                    m[i] = 0;
                }
        }
    }

    /// A new image holding `names` in that order (matched case-insensitively); NotFoundError names
    /// the first missing band. Mask, modality, georeferencing and source are kept.
    Image select(const std::vector<std::string>& names) const {
        // One index of this image's bands, so that selecting m of n bands is O(n + m), not O(n m).
        const auto index = detail::lower_name_index(names_);
        Image out(names, h_, w_, modality_);
        for (std::size_t i = 0; i < names.size(); ++i) {
            const auto it = index.find(detail::lower_name(names[i]));
            const index_t src = it != index.end() ? static_cast<index_t>(it->second)
                                                  : index_of(names[i]);  // index_of throws NotFoundError
            out.names_[i] = names_[static_cast<std::size_t>(src)];
            std::copy_n(band(src).begin(), pixels(), out.band(static_cast<index_t>(i)).begin());
            if (has_mask()) {
                const auto m = mask(src);
                std::copy(m.begin(), m.end(), out.mask(static_cast<index_t>(i)).begin());
            }
        }
        out.copy_meta_from(*this);
        return out;
    }
    /// The same image with the bands of `sensor` ordered as `order` (names matched through the
    /// sensor's aliases, output names canonical): e.g. EuroSAT's order to ESA's.
    Image reorder(const Sensor& sensor, const std::vector<std::string>& order) const {
        const auto perm = band_permutation(sensor, names_, order);
        std::vector<std::string> src;
        for (auto p : perm) src.push_back(names_[static_cast<std::size_t>(p)]);
        Image out = select(src);
        for (std::size_t i = 0; i < order.size(); ++i) out.names_[i] = sensor.canonical(order[i]);
        return out;
    }

    /// Appends the bands of `other` (same size); band names must stay unique.
    void append(const Image& other) {
        check<ShapeError>(other.h_ == h_ && other.w_ == w_, "rs::Image::append", "cannot append a ", other.h_, " x ",
                          other.w_, " image to a ", h_, " x ", w_, " one (resample it first)");
        const auto index = detail::lower_name_index(names_);  // O(n + m) rather than a scan per appended band
        for (const auto& n : other.names_)
            check<ConfigError>(index.find(detail::lower_name(n)) == index.end(), "rs::Image::append", "band '", n,
                               "' is already present");
        const bool mask_needed = has_mask() || other.has_mask();
        if (mask_needed && mask_.empty()) mask_.assign(data_.size(), 1);
        data_.insert(data_.end(), other.data_.begin(), other.data_.end());
        if (mask_needed) {
            if (other.has_mask())
                mask_.insert(mask_.end(), other.mask_.begin(), other.mask_.end());
            else
                mask_.resize(data_.size(), 1);
        }
        names_.insert(names_.end(), other.names_.begin(), other.names_.end());
    }

    /// The pixels as a moe::Tensor f32 [bands, height, width].
    Tensor tensor() const {
        return Tensor::from<float>(Shape{bands_count(), h_, w_}, std::span<const float>(data_));
    }

    /// Copies modality, nodata, georeferencing, source and sample type from `o`.
    void copy_meta_from(const Image& o) {
        modality_ = o.modality_;
        nodata_ = o.nodata_;
        geo_ = o.geo_;
        source_ = o.source_;
        source_type_ = o.source_type_;
    }

private:
    void check_band(index_t b) const {
        check<ShapeError>(b >= 0 && b < bands_count(), "rs::Image", "band index ", b, " out of range for ",
                          bands_count(), " bands");
    }

    std::vector<std::string> names_;
    index_t h_ = 0, w_ = 0;
    std::vector<float> data_;
    std::vector<std::uint8_t> mask_;
    Modality modality_ = Modality::unknown;
    std::optional<double> nodata_;
    GeoInfo geo_;
    std::string source_;
    SampleType source_type_ = SampleType::f32;
};

/// Per-band minimum and maximum over valid pixels (NaN, NaN for a band with none).
struct BandRange {
    float min = std::numeric_limits<float>::quiet_NaN(), max = std::numeric_limits<float>::quiet_NaN();
    index_t valid = 0;
};
inline std::vector<BandRange> band_ranges(const Image& img) {
    std::vector<BandRange> r(static_cast<std::size_t>(img.bands_count()));
    for (index_t b = 0; b < img.bands_count(); ++b) {
        const auto d = img.band(b);
        const auto m = img.mask(b);
        auto& e = r[static_cast<std::size_t>(b)];
        for (std::size_t i = 0; i < d.size(); ++i) {
            if (!m.empty() && !m[i]) continue;
            if (e.valid == 0 || d[i] < e.min) e.min = d[i];
            if (e.valid == 0 || d[i] > e.max) e.max = d[i];
            ++e.valid;
        }
    }
    return r;
}


/// Resampling kernels. Both use pixel centres (GDAL's convention, and torch's
/// interpolate(mode="nearest-exact") / mode="bilinear", align_corners=False): output pixel i
/// maps to source coordinate (i + 0.5) * in / out - 0.5.
enum class Resampling { nearest, bilinear };

/// `img` on a height x width grid covering the same extent. Nearest takes the source pixel under
/// the output pixel's centre (mask included). Bilinear blends the 2 x 2 surrounding source pixels
/// (edge-clamped like torch); invalid source pixels get weight 0 and the others are renormalised,
/// an output pixel with no valid neighbour is invalid.
namespace detail {
/// Resamples one band (src H x W, optional mask) into dst h x w (dst mask written when src has one).
inline void resample_band(const float* src, const std::uint8_t* m, index_t H, index_t W, float* dst,
                          std::uint8_t* dm, index_t height, index_t width, Resampling method, float fill) {
    const double sy = double(H) / double(height), sx = double(W) / double(width);
    if (method == Resampling::nearest) {
        std::vector<index_t> xs(static_cast<std::size_t>(width));
        for (index_t x = 0; x < width; ++x)
            xs[static_cast<std::size_t>(x)] = std::min<index_t>(static_cast<index_t>(std::floor((x + 0.5) * sx)), W - 1);
        for (index_t y = 0; y < height; ++y) {
            const index_t sy0 = std::min<index_t>(static_cast<index_t>(std::floor((y + 0.5) * sy)), H - 1);
            const float* srow = src + sy0 * W;
            float* drow = dst + y * width;
            for (index_t x = 0; x < width; ++x) drow[x] = srow[xs[static_cast<std::size_t>(x)]];
            if (m)
                for (index_t x = 0; x < width; ++x) dm[y * width + x] = m[sy0 * W + xs[static_cast<std::size_t>(x)]];
        }
        return;
    }
    struct Tap {
        index_t i0, i1;
        float l0, l1;
    };
    auto taps = [](index_t n_out, index_t n_in, double scale) {
        std::vector<Tap> t(static_cast<std::size_t>(n_out));
        for (index_t i = 0; i < n_out; ++i) {
            const double s = std::max(0.0, (i + 0.5) * scale - 0.5);
            const index_t i0 = std::min<index_t>(static_cast<index_t>(s), n_in - 1);
            const index_t i1 = i0 + (i0 < n_in - 1 ? 1 : 0);
            const float l1 = static_cast<float>(s - double(i0));
            t[static_cast<std::size_t>(i)] = {i0, i1, 1.0f - l1, l1};
        }
        return t;
    };
    const auto tx = taps(width, W, sx), ty = taps(height, H, sy);
    if (!m) {
        // Separable: interpolate the two source rows along x once per output column, then blend.
        std::vector<float> r0(static_cast<std::size_t>(width)), r1(static_cast<std::size_t>(width));
        index_t c0 = -1, c1 = -1;
        auto row_x = [&](index_t sr, std::vector<float>& out) {
            const float* s = src + sr * W;
            for (index_t x = 0; x < width; ++x) {
                const Tap& c = tx[static_cast<std::size_t>(x)];
                out[static_cast<std::size_t>(x)] = c.l0 * s[c.i0] + c.l1 * s[c.i1];
            }
        };
        for (index_t y = 0; y < height; ++y) {
            const Tap& a = ty[static_cast<std::size_t>(y)];
            if (a.i0 != c0) {
                if (a.i0 == c1) std::swap(r0, r1), std::swap(c0, c1);
                else row_x(a.i0, r0), c0 = a.i0;
            }
            if (a.i1 != c1) row_x(a.i1, r1), c1 = a.i1;
            float* d = dst + y * width;
            for (index_t x = 0; x < width; ++x)
                d[x] = a.l0 * r0[static_cast<std::size_t>(x)] + a.l1 * r1[static_cast<std::size_t>(x)];
        }
        return;
    }
    for (index_t y = 0; y < height; ++y) {
        const Tap& a = ty[static_cast<std::size_t>(y)];
        for (index_t x = 0; x < width; ++x) {
            const Tap& c = tx[static_cast<std::size_t>(x)];
            const index_t p00 = a.i0 * W + c.i0, p01 = a.i0 * W + c.i1, p10 = a.i1 * W + c.i0, p11 = a.i1 * W + c.i1;
            const index_t o = y * width + x;
            const float w00 = m[p00] ? a.l0 * c.l0 : 0.0f, w01 = m[p01] ? a.l0 * c.l1 : 0.0f;
            const float w10 = m[p10] ? a.l1 * c.l0 : 0.0f, w11 = m[p11] ? a.l1 * c.l1 : 0.0f;
            const float ws = w00 + w01 + w10 + w11;
            if (ws <= 0.0f) {
                dst[o] = fill;
                dm[o] = 0;
                continue;
            }
            dst[o] = (w00 * src[p00] + w01 * src[p01] + w10 * src[p10] + w11 * src[p11]) / ws;
            dm[o] = 1;
        }
    }
}
}  // namespace detail

/// `img` on a height x width grid covering the same extent. Nearest takes the source pixel under
/// the output pixel's centre (mask included). Bilinear blends the 2 x 2 surrounding source pixels
/// (edge-clamped like torch); invalid source pixels get weight 0 and the others are renormalised,
/// an output pixel with no valid neighbour is invalid.
inline Image resample(const Image& img, index_t height, index_t width, Resampling method) {
    check<ShapeError>(height > 0 && width > 0, "rs::resample", "target size ", height, " x ", width, " is empty");
    Image out(img.band_names(), height, width, img.modality());
    out.copy_meta_from(img);
    if (out.geo().pixel_scale) {
        (*out.geo().pixel_scale)[0] *= double(img.width()) / double(width);
        (*out.geo().pixel_scale)[1] *= double(img.height()) / double(height);
    }
    const float fill = img.nodata() ? static_cast<float>(*img.nodata()) : 0.0f;
    for (index_t b = 0; b < img.bands_count(); ++b) {
        const auto m = img.mask(b);
        detail::resample_band(img.band(b).data(), m.empty() ? nullptr : m.data(), img.height(), img.width(),
                              out.band(b).data(), m.empty() ? nullptr : out.mask(b).data(), height, width, method, fill);
    }
    return out;
}

}  // namespace moe::rs
