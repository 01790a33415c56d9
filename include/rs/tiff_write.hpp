// rs/tiff_write.hpp - GeoTIFF writing with libtiff (the optional target moe::rs_tiff): single-band
// uint8 or uint16 rasters such as class-label masks, with their georeferencing.
//
// write_geotiff() writes width x height samples (row-major) as a one-band, pixel-interleaved,
// stripped TIFF (Photometric MinIsBlack, SampleFormat unsigned), Deflate-compressed unless
// GeoTiffWriteOptions::deflate is false, BigTIFF when the samples exceed 2 GiB. The GeoInfo parts
// that are present become the GeoTIFF tags rs::read_tiff() reads back to an equal GeoInfo:
//   pixel_scale      -> ModelPixelScaleTag (33550)
//   tie_point        -> ModelTiepointTag (33922)
//   and, when either is present or epsg != 0, a GeoKeyDirectoryTag (34735) with
//   GTModelTypeGeoKey (1024: 1 projected / 2 geographic, only with an EPSG code),
//   GTRasterTypeGeoKey (1025: 1 PixelIsArea / 2 PixelIsPoint) and ProjectedCSTypeGeoKey (3072)
//   or GeographicTypeGeoKey (2048) = epsg.
// A nodata value becomes the GDAL_NODATA tag (42113).
//
// A mask for an image read from a GeoTIFF of W x H pixels and written at W x H needs exactly that
// image's GeoInfo: write_mask_geotiff(path, labels, W, H, image) does that. A mask at another
// size covering the same extent (e.g. a model's output at a lower resolution) needs the pixel
// scale and tie point rescaled: rescale_geo() does it, write_mask_geotiff() calls it whenever
// the sizes differ. It keeps the tie point's model coordinates and moves its raster coordinates
// (PixelIsArea: i' = i * W'/W; PixelIsPoint: i' = (i + 0.5) * W'/W - 0.5, pixel centres), and
// divides the pixel scale by W'/W (x) and H'/H (y).
//
// detail::register_geotiff_tags() / detail::set_geotiff_tags() are what the writer uses to make
// libtiff accept and write the GeoTIFF and GDAL tags; the tests' TIFF writer uses them too.
//
// Errors: moe::ShapeError (size not positive, beyond 2^32 - 1, or not matching the samples),
// ConfigError (an EPSG code over 65535, which a GeoKey SHORT cannot hold), IOError (the file
// cannot be created or written; libtiff's message is included). Messages name the file. libtiff's
// messages go to a per-handle handler: nothing is printed.
//
// Needs <tiffio.h> (Debian: libtiff-dev) and linking libtiff: link moe::rs_tiff. Without
// <tiffio.h>, or with MOE_RS_NO_TIFF defined, this header declares nothing and defines
// MOE_RS_HAS_TIFF_WRITE as 0.
#pragma once

#include "rs/tiff.hpp"

#if MOE_RS_HAS_TIFF
#define MOE_RS_HAS_TIFF_WRITE 1

#include <algorithm>
#include <cstdio>
#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "moe/core/error.hpp"
#include "rs/image.hpp"

namespace moe::rs {

/// Options of write_geotiff().
struct GeoTiffWriteOptions {
    bool deflate = true;            ///< Deflate (zlib) compression; false: uncompressed
    std::optional<double> nodata;   ///< written as the GDAL_NODATA tag (42113) when set
};

/// The georeferencing of a raster of dst_width x dst_height covering the same extent as a raster
/// of src_width x src_height with georeferencing `g` (see the file comment). Equal sizes: `g`.
inline GeoInfo rescale_geo(const GeoInfo& g, index_t src_width, index_t src_height, index_t dst_width,
                           index_t dst_height) {
    check<ShapeError>(src_width > 0 && src_height > 0 && dst_width > 0 && dst_height > 0, "rs::rescale_geo",
                      "sizes ", src_width, " x ", src_height, " -> ", dst_width, " x ", dst_height, " must be positive");
    if (src_width == dst_width && src_height == dst_height) return g;
    GeoInfo out = g;
    const double rx = double(dst_width) / double(src_width), ry = double(dst_height) / double(src_height);
    if (out.pixel_scale) {
        (*out.pixel_scale)[0] /= rx;
        (*out.pixel_scale)[1] /= ry;
    }
    if (out.tie_point) {
        auto& t = *out.tie_point;
        const double half = g.pixel_is_point ? 0.5 : 0.0;
        t[0] = (t[0] + half) * rx - half;
        t[1] = (t[1] + half) * ry - half;
    }
    return out;
}

namespace detail {

/// Makes libtiff know the GeoTIFF tags and GDAL_NODATA on `tif` (needed before setting them).
inline void register_geotiff_tags(TIFF* tif) {
    static const TIFFFieldInfo info[] = {
        {33550, TIFF_VARIABLE, TIFF_VARIABLE, TIFF_DOUBLE, FIELD_CUSTOM, 1, 1, const_cast<char*>("ModelPixelScaleTag")},
        {33922, TIFF_VARIABLE, TIFF_VARIABLE, TIFF_DOUBLE, FIELD_CUSTOM, 1, 1, const_cast<char*>("ModelTiepointTag")},
        {34735, TIFF_VARIABLE, TIFF_VARIABLE, TIFF_SHORT, FIELD_CUSTOM, 1, 1, const_cast<char*>("GeoKeyDirectoryTag")},
        {42113, TIFF_VARIABLE, TIFF_VARIABLE, TIFF_ASCII, FIELD_CUSTOM, 1, 0, const_cast<char*>("GDALNoDataTag")},
    };
    for (const auto& f : info)
        if (!TIFFFindField(tif, f.field_tag, TIFF_ANY)) TIFFMergeFieldInfo(tif, &f, 1);
}

/// The GeoKeyDirectory for `g` (version 1.1.0 header, keys sorted by id); empty when `g` has
/// no georeferencing.
inline std::vector<std::uint16_t> geo_key_directory(const GeoInfo& g, const std::string& where) {
    if (!g.pixel_scale && !g.tie_point && g.epsg == 0) return {};
    check<ConfigError>(g.epsg >= 0 && g.epsg <= 65535, where, "EPSG code ", g.epsg,
                       " does not fit a GeoKey (0..65535)");
    std::vector<std::uint16_t> k = {1, 1, 0, 0};
    const auto key = [&k](std::uint16_t id, std::uint16_t value) {
        k.insert(k.end(), {id, 0, 1, value});
        ++k[3];
    };
    if (g.epsg != 0) key(1024, g.projected ? 1 : 2);
    key(1025, g.pixel_is_point ? 2 : 1);
    if (g.epsg != 0) key(g.projected ? 3072 : 2048, static_cast<std::uint16_t>(g.epsg));
    return k;
}

/// Sets the GeoTIFF tags of `g` (those present) and GDAL_NODATA (when `nodata` is not empty) on
/// `tif`, which register_geotiff_tags() has prepared. False when libtiff refuses one.
inline bool set_geotiff_tags(TIFF* tif, const GeoInfo& g, const std::string& nodata = {},
                             const std::string& where = "rs::write_geotiff") {
    bool ok = true;
    if (g.pixel_scale) ok &= TIFFSetField(tif, 33550, 3, g.pixel_scale->data()) == 1;
    if (g.tie_point) ok &= TIFFSetField(tif, 33922, 6, g.tie_point->data()) == 1;
    const std::vector<std::uint16_t> keys = geo_key_directory(g, where);
    if (!keys.empty()) ok &= TIFFSetField(tif, 34735, static_cast<int>(keys.size()), keys.data()) == 1;
    if (!nodata.empty()) {
        const TIFFField* f = TIFFFindField(tif, 42113, TIFF_ANY);
        if (f && TIFFFieldPassCount(f))
            ok &= TIFFSetField(tif, 42113, static_cast<int>(nodata.size() + 1), nodata.c_str()) == 1;
        else
            ok &= TIFFSetField(tif, 42113, nodata.c_str()) == 1;
    }
    return ok;
}

/// The GDAL nodata text for v ("0", "255", "-9999", "nan"; 17 significant digits otherwise).
inline std::string nodata_text(double v) {
    if (v != v) return "nan";
    if (v == static_cast<double>(static_cast<long long>(v)) && v > -1e15 && v < 1e15)
        return std::to_string(static_cast<long long>(v));
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

template <class T>
void write_geotiff_samples(const std::filesystem::path& path, std::span<const T> px, index_t width, index_t height,
                           const GeoInfo& geo, const GeoTiffWriteOptions& opt) {
    const std::string name = path.string();
    check<ShapeError>(width > 0 && height > 0 && width <= 0xFFFFFFFFll && height <= 0xFFFFFFFFll, name, "size ",
                      width, " x ", height, " is not 1 .. 2^32-1 in each direction");
    const auto W = static_cast<std::uint64_t>(width), H = static_cast<std::uint64_t>(height);
    check<ShapeError>(px.size() / W == H && px.size() % W == 0 && px.size() == W * H, name, px.size(),
                      " samples for ", width, " x ", height);
    (void)geo_key_directory(geo, name);  // EPSG range, before the file is created
    TiffMessages msg;
    std::unique_ptr<TIFFOpenOptions, TiffOptionsFree> opts(TIFFOpenOptionsAlloc());
    check<IOError>(opts != nullptr, name, "out of memory opening the TIFF");
    TIFFOpenOptionsSetErrorHandlerExtR(opts.get(), &tiff_error_handler, &msg);
    TIFFOpenOptionsSetWarningHandlerExtR(opts.get(), &tiff_warning_handler, nullptr);
    bool created = false;
    const bool big = W * H * sizeof(T) > (std::uint64_t{1} << 31);
    std::unique_ptr<TIFF, TiffCloser> tif(TIFFOpenExt(name.c_str(), big ? "w8" : "w", opts.get()));
    const auto fail = [&](const char* what) {
        std::string m = what;
        tif.reset();  // close (libtiff may add messages), then remove the partial file
        if (!msg.errors.empty()) m.append(" (libtiff: ").append(msg.errors).append(")");
        std::error_code ec;
        if (created) std::filesystem::remove(path, ec);
        throw IOError(name, m);
    };
    if (!tif) fail("cannot create the TIFF file");
    created = true;
    TIFF* t = tif.get();
    register_geotiff_tags(t);
    // Strips of about 64 KiB of samples.
    const auto rows = static_cast<std::uint32_t>(std::clamp<std::uint64_t>(65536 / (W * sizeof(T)), 1, H));
    bool ok = TIFFSetField(t, TIFFTAG_IMAGEWIDTH, static_cast<std::uint32_t>(W)) == 1;
    ok &= TIFFSetField(t, TIFFTAG_IMAGELENGTH, static_cast<std::uint32_t>(H)) == 1;
    ok &= TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 1) == 1;
    ok &= TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, static_cast<int>(8 * sizeof(T))) == 1;
    ok &= TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, SAMPLEFORMAT_UINT) == 1;
    ok &= TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK) == 1;
    ok &= TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG) == 1;
    ok &= TIFFSetField(t, TIFFTAG_COMPRESSION, opt.deflate ? COMPRESSION_ADOBE_DEFLATE : COMPRESSION_NONE) == 1;
    ok &= TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, rows) == 1;
    ok &= set_geotiff_tags(t, geo, opt.nodata ? nodata_text(*opt.nodata) : std::string(), name);
    if (!ok) fail("libtiff refused a tag");
    std::vector<T> strip(static_cast<std::size_t>(rows * W));  // libtiff may modify what it encodes
    for (std::uint64_t y0 = 0, s = 0; y0 < H; y0 += rows, ++s) {
        const std::uint64_t n = std::min<std::uint64_t>(rows, H - y0) * W;
        std::copy_n(px.data() + y0 * W, n, strip.data());
        if (TIFFWriteEncodedStrip(t, static_cast<std::uint32_t>(s), strip.data(),
                                  static_cast<tmsize_t>(n * sizeof(T))) < 0)
            fail("writing a strip failed");
    }
    if (!TIFFWriteDirectory(t)) fail("writing the TIFF directory failed");
    tif.reset();
    if (!msg.errors.empty()) fail("closing the TIFF file failed");
}

}  // namespace detail

/// Writes `labels` (width x height, row-major) as a one-band uint8 GeoTIFF with `geo`.
inline void write_geotiff(const std::filesystem::path& path, std::span<const std::uint8_t> labels, index_t width,
                          index_t height, const GeoInfo& geo = {}, const GeoTiffWriteOptions& opt = {}) {
    detail::write_geotiff_samples(path, labels, width, height, geo, opt);
}
/// Writes `values` (width x height, row-major) as a one-band uint16 GeoTIFF with `geo`.
inline void write_geotiff(const std::filesystem::path& path, std::span<const std::uint16_t> values, index_t width,
                          index_t height, const GeoInfo& geo = {}, const GeoTiffWriteOptions& opt = {}) {
    detail::write_geotiff_samples(path, values, width, height, geo, opt);
}

/// Writes a width x height label mask for `image`: with image.geo() when the sizes agree, else
/// with rescale_geo(image.geo(), image size -> width x height).
inline void write_mask_geotiff(const std::filesystem::path& path, std::span<const std::uint8_t> labels,
                               index_t width, index_t height, const Image& image,
                               const GeoTiffWriteOptions& opt = {}) {
    write_geotiff(path, labels, width, height, rescale_geo(image.geo(), image.width(), image.height(), width, height),
                  opt);
}

}  // namespace moe::rs

#else
#define MOE_RS_HAS_TIFF_WRITE 0
#endif
