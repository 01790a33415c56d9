// Test helper: writes small TIFFs with libtiff in a chosen layout, so the reader's tests do not
// depend on any file they did not make. Values are a known function of (band, y, x).
#pragma once

#include <tiffio.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "rs/tiff_write.hpp"

namespace rs_test {

enum class Kind { u8, u16, i16, f32, u32, f64 };

struct TiffSpec {
    Kind kind = Kind::u16;
    std::uint32_t width = 37, height = 21;
    std::uint16_t bands = 3;
    bool separate = false;       // PlanarConfiguration 2
    bool tiled = false;          // 16 x 16 tiles
    std::uint32_t rows_per_strip = 4;
    std::uint16_t compression = COMPRESSION_NONE;
    std::uint16_t predictor = 1;
    bool big_endian = false;
    std::string nodata;          // GDAL_NODATA text, empty: none
    bool geo = false;            // pixel scale 10 m, tie point, EPSG 32633
};

/// The value every test expects at (b, y, x) for `kind` (exactly representable in the type).
inline double value_at(Kind k, int b, int y, int x) {
    const int v = (b * 7919 + y * 131 + x * 17) % 251;
    switch (k) {
        case Kind::u8: return v;
        case Kind::u16: return v * 211 + b;           // up to ~53000
        case Kind::i16: return (v - 125) * 203 - b;   // negative and positive
        case Kind::u32: return v * 100000.0;
        default: return (v - 100) * 0.375 + b * 1e-3f;  // float values with fractions
    }
}

inline int bytes_of(Kind k) {
    switch (k) {
        case Kind::u8: return 1;
        case Kind::u16: case Kind::i16: return 2;
        case Kind::f64: return 8;
        default: return 4;
    }
}

inline void put(Kind k, unsigned char* dst, double v) {
    switch (k) {
        case Kind::u8: { auto t = static_cast<std::uint8_t>(v); std::memcpy(dst, &t, 1); break; }
        case Kind::u16: { auto t = static_cast<std::uint16_t>(v); std::memcpy(dst, &t, 2); break; }
        case Kind::i16: { auto t = static_cast<std::int16_t>(v); std::memcpy(dst, &t, 2); break; }
        case Kind::u32: { auto t = static_cast<std::uint32_t>(v); std::memcpy(dst, &t, 4); break; }
        case Kind::f64: { std::memcpy(dst, &v, 8); break; }
        default: { auto t = static_cast<float>(v); std::memcpy(dst, &t, 4); break; }
    }
}

/// The library's registration of the GeoTIFF and GDAL tags (rs/tiff_write.hpp).
inline void register_geo_tags(TIFF* tif) { moe::rs::detail::register_geotiff_tags(tif); }

/// Writes `spec` to `path` with values value_at().
inline void write_tiff(const std::filesystem::path& path, const TiffSpec& s) {
    TIFF* tif = TIFFOpen(path.c_str(), s.big_endian ? "wb" : "wl");
    if (!tif) throw std::runtime_error("cannot create " + path.string());
    register_geo_tags(tif);
    const int bps = bytes_of(s.kind) * 8;
    const std::uint16_t fmt = (s.kind == Kind::f32 || s.kind == Kind::f64) ? SAMPLEFORMAT_IEEEFP
                              : s.kind == Kind::i16                        ? SAMPLEFORMAT_INT
                                                                           : SAMPLEFORMAT_UINT;
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, s.width);
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, s.height);
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, s.bands);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, bps);
    TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, fmt);
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, s.bands == 3 && s.kind == Kind::u8 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK);
    TIFFSetField(tif, TIFFTAG_PLANARCONFIG, s.separate ? PLANARCONFIG_SEPARATE : PLANARCONFIG_CONTIG);
    TIFFSetField(tif, TIFFTAG_COMPRESSION, s.compression);
    if (s.compression != COMPRESSION_NONE && s.predictor != 1) TIFFSetField(tif, TIFFTAG_PREDICTOR, s.predictor);
    if (s.bands > 1 && !(s.bands == 3 && s.kind == Kind::u8)) {
        std::vector<std::uint16_t> extra(static_cast<std::size_t>(s.bands - 1), EXTRASAMPLE_UNSPECIFIED);
        TIFFSetField(tif, TIFFTAG_EXTRASAMPLES, static_cast<std::uint16_t>(extra.size()), extra.data());
    }
    // The tags through the library's writer code (rs/tiff_write.hpp): pixel scale 10 m, tie point
    // (0, 0) -> (399960, 5800020), projected EPSG 32633, PixelIsArea; GDAL_NODATA as given.
    moe::rs::GeoInfo geo;
    if (s.geo) {
        geo.pixel_scale = std::array<double, 3>{10.0, 10.0, 0.0};
        geo.tie_point = std::array<double, 6>{0, 0, 0, 399960.0, 5800020.0, 0};
        geo.epsg = 32633;
        geo.projected = true;
    }
    if (!moe::rs::detail::set_geotiff_tags(tif, geo, s.nodata)) throw std::runtime_error("TIFFSetField failed");
    const int B = bytes_of(s.kind);
    const int spp_block = s.separate ? 1 : s.bands;
    const int planes = s.separate ? s.bands : 1;
    if (s.tiled) {
        const std::uint32_t tw = 16, th = 16;
        TIFFSetField(tif, TIFFTAG_TILEWIDTH, tw);
        TIFFSetField(tif, TIFFTAG_TILELENGTH, th);
        std::vector<unsigned char> buf(static_cast<std::size_t>(tw * th * spp_block * B));
        for (int p = 0; p < planes; ++p)
            for (std::uint32_t ty = 0; ty < s.height; ty += th)
                for (std::uint32_t tx = 0; tx < s.width; tx += tw) {
                    std::fill(buf.begin(), buf.end(), 0);
                    for (std::uint32_t r = 0; r < th; ++r)
                        for (std::uint32_t c = 0; c < tw; ++c)
                            for (int k = 0; k < spp_block; ++k) {
                                const int b = s.separate ? p : k;
                                const std::uint32_t y = ty + r, x = tx + c;
                                const double v = (y < s.height && x < s.width) ? value_at(s.kind, b, int(y), int(x)) : 0;
                                put(s.kind, &buf[static_cast<std::size_t>(((r * tw + c) * spp_block + k) * B)], v);
                            }
                    if (TIFFWriteTile(tif, buf.data(), tx, ty, 0, static_cast<std::uint16_t>(p)) < 0)
                        throw std::runtime_error("TIFFWriteTile failed");
                }
    } else {
        TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, s.rows_per_strip);
        std::vector<unsigned char> row(static_cast<std::size_t>(s.width * spp_block * B));
        for (int p = 0; p < planes; ++p)
            for (std::uint32_t y = 0; y < s.height; ++y) {
                for (std::uint32_t x = 0; x < s.width; ++x)
                    for (int k = 0; k < spp_block; ++k) {
                        const int b = s.separate ? p : k;
                        put(s.kind, &row[static_cast<std::size_t>((x * spp_block + k) * B)], value_at(s.kind, b, int(y), int(x)));
                    }
                if (TIFFWriteScanline(tif, row.data(), y, static_cast<std::uint16_t>(p)) < 0)
                    throw std::runtime_error("TIFFWriteScanline failed");
            }
    }
    TIFFClose(tif);
}

inline std::vector<unsigned char> file_bytes(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A fresh scratch directory under the system temp dir for one test.
inline std::filesystem::path scratch_dir(const std::string& name) {
    auto d = std::filesystem::temp_directory_path() / ("moe_rs_test_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    return d;
}

}  // namespace rs_test
