// rs/png.hpp - PNG writing with zlib (no libpng): label masks and RGB pictures for viewing.
//
// encode_png() turns an 8-bit raster (PngView: width, height, channels and the interleaved
// row-major bytes) into a PNG file's bytes; write_png() writes them to a file. Colour types:
//   channels 1              greyscale (colour type 0)
//   channels 2              greyscale + alpha (4)
//   channels 3              RGB (2)
//   channels 4              RGBA (6)
//   channels 1 + palette    indexed (3): palette holds 1..256 RGB triples, pixels index it
// Rows are filtered with the adaptive heuristic the PNG specification recommends (per row the
// filter None / Sub / Up / Average / Paeth with the smallest sum of absolute signed bytes; None
// for indexed images), compressed with zlib's compress2 at PngOptions::level and split into IDAT
// chunks of at most 1 MiB; chunk CRCs are zlib's crc32. No interlacing, no ancillary chunks.
//
// Errors: moe::ShapeError (width / height not positive or beyond PNG's 2^31 - 1, channel count
// not 1..4, a pixel span whose size is not width x height x channels, a palette with a channel
// count other than 1 or not 1..256 whole triples), ValueError (an index beyond the palette),
// ConfigError (level outside -1..9), IOError (the file cannot be created or written; zlib out of
// memory). Messages name the file (or "rs::encode_png").
//
// Needs <zlib.h> (Debian: zlib1g-dev) and linking zlib: link moe::rs_tiff. Without <zlib.h>, or
// with MOE_RS_NO_PNG defined, this header declares nothing and defines MOE_RS_HAS_PNG as 0.
#pragma once

#if __has_include(<zlib.h>) && !defined(MOE_RS_NO_PNG)
#define MOE_RS_HAS_PNG 1

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"

namespace moe::rs {

/// An 8-bit raster to encode: `pixels` holds height rows of width x channels bytes, interleaved.
/// A non-empty `palette` (RGB triples) makes it an indexed PNG; then channels must be 1.
struct PngView {
    index_t width = 0, height = 0;
    int channels = 1;
    std::span<const std::uint8_t> pixels;
    std::span<const std::uint8_t> palette;

    static PngView gray(index_t w, index_t h, std::span<const std::uint8_t> px) { return {w, h, 1, px, {}}; }
    static PngView rgb(index_t w, index_t h, std::span<const std::uint8_t> px) { return {w, h, 3, px, {}}; }
    /// Class labels (one byte per pixel) with a colour per class: palette[3c..3c+2] for class c.
    static PngView indexed(index_t w, index_t h, std::span<const std::uint8_t> px,
                           std::span<const std::uint8_t> palette_rgb) {
        return {w, h, 1, px, palette_rgb};
    }
};

/// Options of encode_png() / write_png().
struct PngOptions {
    int level = 6;  ///< zlib compression level, -1 (zlib's default) or 0..9
};

namespace detail {

inline void png_put_u32(std::vector<unsigned char>& out, std::uint32_t v) {
    out.push_back(static_cast<unsigned char>(v >> 24));
    out.push_back(static_cast<unsigned char>(v >> 16));
    out.push_back(static_cast<unsigned char>(v >> 8));
    out.push_back(static_cast<unsigned char>(v));
}

/// Appends one chunk: length, type, data, CRC-32 of type and data.
inline void png_chunk(std::vector<unsigned char>& out, const char (&type)[5], const unsigned char* data,
                      std::size_t n) {
    png_put_u32(out, static_cast<std::uint32_t>(n));
    const std::size_t start = out.size();
    out.insert(out.end(), type, type + 4);
    if (n) out.insert(out.end(), data, data + n);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, out.data() + start, static_cast<uInt>(4 + n));  // n <= 1 MiB: fits uInt
    png_put_u32(out, static_cast<std::uint32_t>(crc));
}

inline unsigned char png_paeth(int a, int b, int c) noexcept {
    const int p = a + b - c;
    const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
    if (pa <= pb && pa <= pc) return static_cast<unsigned char>(a);
    if (pb <= pc) return static_cast<unsigned char>(b);
    return static_cast<unsigned char>(c);
}

/// Filters row `cur` (previous row `prev`, or null for the first) with filter `f` into `dst`.
inline void png_filter_row(int f, const std::uint8_t* cur, const std::uint8_t* prev, std::size_t n, std::size_t bpp,
                           unsigned char* dst) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        const int x = cur[i];
        const int a = i >= bpp ? cur[i - bpp] : 0;
        const int b = prev ? prev[i] : 0;
        const int c = (prev && i >= bpp) ? prev[i - bpp] : 0;
        int v = x;
        switch (f) {
            case 1: v = x - a; break;
            case 2: v = x - b; break;
            case 3: v = x - ((a + b) >> 1); break;
            case 4: v = x - png_paeth(a, b, c); break;
            default: break;
        }
        dst[i] = static_cast<unsigned char>(v & 0xFF);
    }
}

/// The filtered image data: each row prefixed by its filter type byte.
inline std::vector<unsigned char> png_filtered(const PngView& v, bool adaptive) {
    const std::size_t W = static_cast<std::size_t>(v.width), H = static_cast<std::size_t>(v.height);
    const std::size_t bpp = static_cast<std::size_t>(v.channels), row = W * bpp;
    std::vector<unsigned char> out((row + 1) * H);
    std::vector<unsigned char> trial(row);
    for (std::size_t y = 0; y < H; ++y) {
        const std::uint8_t* cur = v.pixels.data() + y * row;
        const std::uint8_t* prev = y ? cur - row : nullptr;
        unsigned char* dst = out.data() + y * (row + 1);
        if (!adaptive) {
            dst[0] = 0;
            std::memcpy(dst + 1, cur, row);
            continue;
        }
        std::uint64_t best_cost = ~std::uint64_t{0};
        for (int f = 0; f < 5; ++f) {
            png_filter_row(f, cur, prev, row, bpp, trial.data());
            std::uint64_t cost = 0;
            for (unsigned char t : trial) cost += static_cast<std::uint64_t>(t < 128 ? t : 256 - t);
            if (cost < best_cost) {
                best_cost = cost;
                dst[0] = static_cast<unsigned char>(f);
                std::memcpy(dst + 1, trial.data(), row);
            }
        }
    }
    return out;
}

}  // namespace detail

/// The PNG file for `v` (see the file comment for the colour types and errors).
inline std::vector<unsigned char> encode_png(const PngView& v, const PngOptions& opt = {}) {
    const char* where = "rs::encode_png";
    constexpr index_t kMaxDim = 0x7FFFFFFF;
    check<ShapeError>(v.width > 0 && v.height > 0 && v.width <= kMaxDim && v.height <= kMaxDim, where, "size ",
                      v.width, " x ", v.height, " is not 1 .. 2^31-1 in each direction");
    check<ShapeError>(v.channels >= 1 && v.channels <= 4, where, v.channels, " channels; PNG has 1 to 4");
    check<ConfigError>(opt.level >= -1 && opt.level <= 9, where, "zlib level ", opt.level, " is not -1 .. 9");
    const bool indexed = !v.palette.empty();
    const auto W = static_cast<std::uint64_t>(v.width), H = static_cast<std::uint64_t>(v.height);
    const auto C = static_cast<std::uint64_t>(v.channels);
    check<ShapeError>(W * C < (std::uint64_t{1} << 40) / H, where, "image of ", W, " x ", H, " x ", C,
                      " bytes is too large");
    check<ShapeError>(v.pixels.size() == W * H * C, where, v.pixels.size(), " bytes for ", W, " x ", H, " x ", C,
                      " = ", W * H * C);
    if (indexed) {
        check<ShapeError>(v.channels == 1, where, "an indexed (palette) PNG has 1 channel, not ", v.channels);
        check<ShapeError>(v.palette.size() % 3 == 0 && v.palette.size() >= 3 && v.palette.size() <= 768, where,
                          "palette of ", v.palette.size(), " bytes is not 1..256 RGB triples");
        const std::size_t entries = v.palette.size() / 3;
        if (entries < 256) {
            const auto it = std::find_if(v.pixels.begin(), v.pixels.end(),
                                         [entries](std::uint8_t p) { return p >= entries; });
            check<ValueError>(it == v.pixels.end(), where, "pixel ", it - v.pixels.begin(), " has index ",
                              it == v.pixels.end() ? 0 : int(*it), " beyond the palette's ", entries, " entries");
        }
    }

    const std::vector<unsigned char> raw = detail::png_filtered(v, !indexed);
    uLongf zlen = compressBound(static_cast<uLong>(raw.size()));
    std::vector<unsigned char> z(zlen);
    const int rc = compress2(z.data(), &zlen, raw.data(), static_cast<uLong>(raw.size()), opt.level);
    check<IOError>(rc == Z_OK, where, "zlib compress2 failed (", rc == Z_MEM_ERROR ? "out of memory" : "error ", rc,
                   ")");
    z.resize(zlen);

    std::vector<unsigned char> out;
    out.reserve(z.size() + z.size() / 1000 + 128 + v.palette.size());
    static constexpr unsigned char kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    out.insert(out.end(), kSignature, kSignature + 8);
    std::vector<unsigned char> ihdr;
    detail::png_put_u32(ihdr, static_cast<std::uint32_t>(W));
    detail::png_put_u32(ihdr, static_cast<std::uint32_t>(H));
    static constexpr unsigned char kColourType[5] = {0, 0, 4, 2, 6};
    const unsigned char tail[5] = {8, indexed ? static_cast<unsigned char>(3) : kColourType[v.channels], 0, 0, 0};
    ihdr.insert(ihdr.end(), tail, tail + 5);
    detail::png_chunk(out, "IHDR", ihdr.data(), ihdr.size());
    if (indexed) detail::png_chunk(out, "PLTE", v.palette.data(), v.palette.size());
    constexpr std::size_t kIdatMax = std::size_t{1} << 20;
    for (std::size_t off = 0; off < z.size(); off += kIdatMax)
        detail::png_chunk(out, "IDAT", z.data() + off, std::min(kIdatMax, z.size() - off));
    detail::png_chunk(out, "IEND", nullptr, 0);
    return out;
}

/// Writes encode_png(v) to `path` (replacing it). IOError when the file cannot be written.
inline void write_png(const std::filesystem::path& path, const PngView& v, const PngOptions& opt = {}) {
    const std::vector<unsigned char> bytes = encode_png(v, opt);
    const std::string name = path.string();
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    check<IOError>(out.is_open(), name, "cannot create the PNG file: ", std::strerror(errno));
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    out.close();
    check<IOError>(!out.fail(), name, "writing the PNG file failed: ", std::strerror(errno));
}

}  // namespace moe::rs

#else
#define MOE_RS_HAS_PNG 0
#endif
