// rs/tiff.hpp - GeoTIFF reading with libtiff (the optional target moe::rs_tiff).
//
// read_tiff() turns a (Geo)TIFF into an rs::Image: uint8, uint16, int16 and float32 samples;
// strips or tiles; pixel-interleaved (PlanarConfiguration 1) or band-separate (2) layouts; any
// compression this libtiff decodes (none, Deflate, LZW, PackBits, ZSTD, ...) with horizontal (2)
// or floating-point (3) predictors, which libtiff undoes. It reads the GDAL nodata tag (42113)
// into a validity mask and the GeoTIFF georeferencing that is present: ModelPixelScale (33550),
// ModelTiepoint (33922) and the EPSG code from the GeoKeyDirectory (34735).
//
// read_bands() / read_product() assemble a multi-file product (one band per file, as
// BigEarthNet and SSL4EO-S12 store Sentinel-2) into one image on a common grid, resampling the
// 20 m and 60 m bands (nearest or bilinear, rs/image.hpp).
//
// Every failure is a moe::FormatError (corrupt, truncated, unsupported), NotFoundError (missing
// file or band) or IOError (the OS refused), whose message names the file and says what is wrong.
// What a header claims is checked against the file before anything is allocated: every strip or
// tile to decode must have bytes in the file, and (for the codecs whose best ratio is known: none,
// PackBits, LZW, Deflate, LZMA, ZSTD) no more samples than that ratio makes of them; so the work
// is close to linear in the file's size (at most max_bytes for LERC, WebP, JPEG, ...).
// libtiff's own messages go to a per-handle handler (TIFFOpenOptions) and end up in the
// exception text; nothing is printed, no global handler is touched.
//
// Needs <tiffio.h> (Debian: libtiff-dev) and linking libtiff: link moe::rs_tiff. Without
// <tiffio.h>, or with MOE_RS_NO_TIFF defined, this header declares nothing and defines
// MOE_RS_HAS_TIFF as 0.
#pragma once

#if __has_include(<tiffio.h>) && !defined(MOE_RS_NO_TIFF)
#define MOE_RS_HAS_TIFF 1

#include <tiffio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "moe/core/error.hpp"
#include "rs/image.hpp"
#include "rs/sensors.hpp"

namespace moe::rs {

/// Options of read_tiff().
struct TiffReadOptions {
    /// Names of the bands, in file order; empty: "band1", "band2", ... (or the file's single-band
    /// name given by read_bands()).
    std::vector<std::string> band_names;
    /// The bands to return, by name, in this order (a subset and/or a reordering, e.g. EuroSAT's
    /// file order to ESA's); empty: all, in file order. Bands not asked for are not converted
    /// (band-separate files: not even decoded). NotFoundError names a band the file lacks.
    std::vector<std::string> output_bands;
    Modality modality = Modality::unknown;
    /// Refuse images whose decoded float32 pixels would exceed this many bytes (protects against
    /// hostile headers claiming huge sizes). The strips/tiles decoded for them may hold at most
    /// 4 x max(max_bytes, 16 MiB) bytes, which only blocks much larger than the image exceed.
    std::size_t max_bytes = std::size_t{1} << 31;
    /// Mark pixels equal to the GDAL nodata value invalid.
    bool apply_nodata = true;
};

/// What the file's first directory says (read_tiff_info()).
struct TiffInfo {
    std::uint32_t width = 0, height = 0;
    std::uint16_t samples_per_pixel = 1, bits_per_sample = 1, sample_format = 1;
    std::uint16_t planar_config = 1, compression = 1, predictor = 1, photometric = 1;
    bool tiled = false;
    std::uint32_t tile_width = 0, tile_height = 0, rows_per_strip = 0;
    std::optional<double> nodata;
    GeoInfo geo;
};

namespace detail {

/// libtiff's view of an in-memory file.
struct TiffMemory {
    const unsigned char* data = nullptr;
    std::uint64_t size = 0;
    std::uint64_t pos = 0;
};

inline tmsize_t tiff_mem_read(thandle_t h, void* buf, tmsize_t n) {
    auto* m = static_cast<TiffMemory*>(h);
    if (n <= 0 || m->pos >= m->size) return 0;
    const std::uint64_t k = std::min<std::uint64_t>(static_cast<std::uint64_t>(n), m->size - m->pos);
    std::memcpy(buf, m->data + m->pos, static_cast<std::size_t>(k));
    m->pos += k;
    return static_cast<tmsize_t>(k);
}
inline tmsize_t tiff_mem_write(thandle_t, void*, tmsize_t) { return 0; }
inline toff_t tiff_mem_seek(thandle_t h, toff_t off, int whence) {
    auto* m = static_cast<TiffMemory*>(h);
    std::uint64_t base = 0;
    if (whence == SEEK_CUR) base = m->pos;
    else if (whence == SEEK_END) base = m->size;
    if (off > std::numeric_limits<std::uint64_t>::max() - base) return static_cast<toff_t>(-1);
    m->pos = base + off;  // past the end is allowed (reads then return 0)
    return m->pos;
}
inline int tiff_mem_close(thandle_t) { return 0; }
inline toff_t tiff_mem_size(thandle_t h) { return static_cast<TiffMemory*>(h)->size; }
inline int tiff_mem_map(thandle_t h, void** base, toff_t* size) {
    auto* m = static_cast<TiffMemory*>(h);
    *base = const_cast<unsigned char*>(m->data);  // libtiff only reads through the mapping ("r" mode)
    *size = m->size;
    return 1;
}
inline void tiff_mem_unmap(thandle_t, void*, toff_t) {}

/// Collects libtiff's error messages of one handle.
struct TiffMessages {
    std::string errors;
};
inline int tiff_error_handler(TIFF*, void* user, const char* module, const char* fmt, va_list ap) {
    auto* msg = static_cast<TiffMessages*>(user);
    char buf[512];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    if (msg->errors.size() < 2000) {
        if (!msg->errors.empty()) msg->errors.append("; ");
        if (module && *module) msg->errors.append(module).append(": ");
        msg->errors.append(buf);
    }
    return 1;
}
inline int tiff_warning_handler(TIFF*, void*, const char*, const char*, va_list) { return 1; }

struct TiffCloser {
    void operator()(TIFF* t) const noexcept { TIFFClose(t); }
};
struct TiffOptionsFree {
    void operator()(TIFFOpenOptions* o) const noexcept { TIFFOpenOptionsFree(o); }
};
struct TiffBufFree {
    void operator()(void* p) const noexcept { _TIFFfree(p); }
};

/// An open TIFF over memory with its message sink.
class TiffHandle {
public:
    TiffHandle(std::span<const unsigned char> bytes, std::string name, std::size_t max_alloc)
        : name_(std::move(name)) {
        mem_.data = bytes.data();
        mem_.size = bytes.size();
        std::unique_ptr<TIFFOpenOptions, TiffOptionsFree> opts(TIFFOpenOptionsAlloc());
        check<IOError>(opts != nullptr, name_, "out of memory opening the TIFF");
        TIFFOpenOptionsSetErrorHandlerExtR(opts.get(), &tiff_error_handler, &msg_);
        TIFFOpenOptionsSetWarningHandlerExtR(opts.get(), &tiff_warning_handler, nullptr);
        TIFFOpenOptionsSetMaxSingleMemAlloc(opts.get(), static_cast<tmsize_t>(max_alloc));
        check<FormatError>(bytes.size() >= 8, name_, "not a TIFF file: only ", bytes.size(), " bytes");
        const bool magic = (bytes[0] == 'I' && bytes[1] == 'I') || (bytes[0] == 'M' && bytes[1] == 'M');
        check<FormatError>(magic, name_, "not a TIFF file (no II/MM byte-order mark)");
        tif_.reset(TIFFClientOpenExt(name_.c_str(), "r", static_cast<thandle_t>(&mem_), &tiff_mem_read,
                                     &tiff_mem_write, &tiff_mem_seek, &tiff_mem_close, &tiff_mem_size,
                                     &tiff_mem_map, &tiff_mem_unmap, opts.get()));
        if (!tif_) fail("cannot open the TIFF");
        size_ = mem_.size;
    }
    /// Opens a file (libtiff maps it into memory).
    TiffHandle(const std::filesystem::path& path, std::size_t max_alloc) : name_(path.string()) {
        std::error_code ec;
        if (!std::filesystem::exists(path, ec)) throw NotFoundError(name_, "no such file");
        check<IOError>(!std::filesystem::is_directory(path, ec), name_, "is a directory, not a TIFF file");
        {
            std::ifstream in(path, std::ios::binary);
            check<IOError>(in.good(), name_, "cannot open for reading: ", std::strerror(errno));
            unsigned char head[8] = {};
            in.read(reinterpret_cast<char*>(head), 8);
            const auto n = static_cast<std::size_t>(in.gcount());
            check<FormatError>(n >= 8, name_, "not a TIFF file: only ", n, " bytes");
            const bool magic = (head[0] == 'I' && head[1] == 'I') || (head[0] == 'M' && head[1] == 'M');
            check<FormatError>(magic, name_, "not a TIFF file (no II/MM byte-order mark)");
        }
        std::unique_ptr<TIFFOpenOptions, TiffOptionsFree> opts(TIFFOpenOptionsAlloc());
        check<IOError>(opts != nullptr, name_, "out of memory opening the TIFF");
        TIFFOpenOptionsSetErrorHandlerExtR(opts.get(), &tiff_error_handler, &msg_);
        TIFFOpenOptionsSetWarningHandlerExtR(opts.get(), &tiff_warning_handler, nullptr);
        TIFFOpenOptionsSetMaxSingleMemAlloc(opts.get(), static_cast<tmsize_t>(max_alloc));
        tif_.reset(TIFFOpenExt(name_.c_str(), "r", opts.get()));
        if (!tif_) fail("cannot open the TIFF");
        size_ = static_cast<std::uint64_t>(TIFFGetSizeProc(tif_.get())(TIFFClientdata(tif_.get())));
    }
    TIFF* get() const noexcept { return tif_.get(); }
    const std::string& name() const noexcept { return name_; }
    /// The file's size in bytes.
    std::uint64_t size() const noexcept { return size_; }
    [[noreturn]] void fail(const std::string& what) const {
        std::string m = what;
        if (!msg_.errors.empty()) m.append(" (libtiff: ").append(msg_.errors).append(")");
        throw FormatError(name_, m);
    }

private:
    TiffMemory mem_;
    TiffMessages msg_;
    std::string name_;
    std::uint64_t size_ = 0;
    std::unique_ptr<TIFF, TiffCloser> tif_;
};

/// The values of tag `tag` if present and of libtiff type `type` (any registration: known,
/// anonymous, counted or not). T must match `type`'s C type.
template <class T>
std::optional<std::vector<T>> tiff_tag_array(TIFF* tif, ttag_t tag, TIFFDataType type) {
    const TIFFField* f = TIFFFindField(tif, tag, TIFF_ANY);
    if (!f || TIFFFieldDataType(f) != type) return std::nullopt;
    T* ptr = nullptr;
    std::uint64_t count = 0;
    if (TIFFFieldPassCount(f)) {
        if (TIFFFieldReadCount(f) == TIFF_VARIABLE2) {
            std::uint32_t c = 0;
            if (TIFFGetField(tif, tag, &c, &ptr) != 1) return std::nullopt;
            count = c;
        } else {
            std::uint16_t c = 0;
            if (TIFFGetField(tif, tag, &c, &ptr) != 1) return std::nullopt;
            count = c;
        }
    } else {
        if (TIFFGetField(tif, tag, &ptr) != 1) return std::nullopt;
        if constexpr (std::is_same_v<T, char>) {
            count = ptr ? std::strlen(ptr) : 0;
        } else {
            const int rc = TIFFFieldReadCount(f);
            if (rc <= 0) return std::nullopt;
            count = static_cast<std::uint64_t>(rc);
        }
    }
    if (!ptr) return std::nullopt;
    return std::vector<T>(ptr, ptr + count);
}

/// Parses the GDAL nodata string ("0", "-32768", "nan", "-1e+30"); nullopt when not a number.
inline std::optional<double> parse_nodata(std::string s) {
    while (!s.empty() && (s.back() == '\0' || s.back() == ' ')) s.pop_back();
    while (!s.empty() && s.front() == ' ') s.erase(s.begin());
    if (s.empty()) return std::nullopt;
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(s.c_str(), &end);
    if (end == s.c_str() || *end != '\0') return std::nullopt;
    return v;
}

inline TiffInfo tiff_info(const TiffHandle& h) {
    TIFF* tif = h.get();
    TiffInfo info;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &info.width) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &info.height))
        h.fail("no ImageWidth / ImageLength");
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &info.samples_per_pixel);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &info.bits_per_sample);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &info.sample_format);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &info.planar_config);
    TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &info.compression);
    if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &info.photometric)) info.photometric = 1;
    if (!TIFFGetField(tif, TIFFTAG_PREDICTOR, &info.predictor)) info.predictor = 1;
    info.tiled = TIFFIsTiled(tif) != 0;
    if (info.tiled) {
        TIFFGetField(tif, TIFFTAG_TILEWIDTH, &info.tile_width);
        TIFFGetField(tif, TIFFTAG_TILELENGTH, &info.tile_height);
    } else {
        TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &info.rows_per_strip);
    }
    if (auto nd = tiff_tag_array<char>(tif, TIFFTAG_GDAL_NODATA, TIFF_ASCII))
        info.nodata = parse_nodata(std::string(nd->begin(), nd->end()));
    if (auto ps = tiff_tag_array<double>(tif, 33550, TIFF_DOUBLE); ps && ps->size() >= 2)
        info.geo.pixel_scale = std::array<double, 3>{(*ps)[0], (*ps)[1], ps->size() > 2 ? (*ps)[2] : 0.0};
    if (auto tp = tiff_tag_array<double>(tif, 33922, TIFF_DOUBLE); tp && tp->size() >= 6)
        info.geo.tie_point = std::array<double, 6>{(*tp)[0], (*tp)[1], (*tp)[2], (*tp)[3], (*tp)[4], (*tp)[5]};
    if (auto gk = tiff_tag_array<std::uint16_t>(tif, 34735, TIFF_SHORT); gk && gk->size() >= 4) {
        const auto& k = *gk;
        const std::size_t n = k[3];
        for (std::size_t i = 0; i < n && 4 + 4 * i + 3 < k.size(); ++i) {
            const std::uint16_t id = k[4 + 4 * i], loc = k[4 + 4 * i + 1], val = k[4 + 4 * i + 3];
            if (loc != 0) continue;  // inline SHORT values only: the keys read here are all inline
            if (id == 3072 && val != 0 && val != 32767) info.geo.epsg = val, info.geo.projected = true;
            if (id == 2048 && val != 0 && val != 32767 && !info.geo.projected) info.geo.epsg = val;
            if (id == 1025) info.geo.pixel_is_point = val == 2;
        }
    }
    return info;
}

inline std::string compression_name(std::uint16_t c) {
    const TIFFCodec* codec = TIFFFindCODEC(c);
    if (codec && codec->name) return codec->name;
    return std::string("compression ").append(std::to_string(c));
}

/// The most bytes that one byte of a `compression` stream can decode to (an upper bound for any
/// stream, with a margin of at least 4 over the format's true maximum), or 0 when no such bound
/// is known here: JPEG (arithmetic coding), LERC and WebP (a constant block costs a few bytes
/// whatever its size) and the rest; for those only TiffReadOptions::max_bytes bounds a claim.
inline std::uint64_t max_expansion(std::uint16_t compression) noexcept {
    switch (compression) {
        case COMPRESSION_NONE: return 1;  // the samples themselves
        case COMPRESSION_PACKBITS: return 256;  // a 2-byte run codes at most 128 bytes: 64
        // Every code (>= 9 bits) adds a table entry and the k-th entry's string has <= k + 1
        // bytes; a 12-bit code names < 3840 bytes: < 2600 per compressed byte (~1700 on average).
        case COMPRESSION_LZW: return 8192;
        case COMPRESSION_ADOBE_DEFLATE:
        case COMPRESSION_DEFLATE: return 4096;  // 258 bytes per match of >= 2 bits: 1032
        case COMPRESSION_LZMA: return 65536;  // >= 14 range-coded decisions per 273-byte match: ~7100
        case COMPRESSION_ZSTD: return 131072;  // >= 4 bytes (an RLE block) per 128 KiB block: 32768
        default: return 0;
    }
}

template <class T>
inline void scatter_samples(const unsigned char* src, index_t count, index_t stride, float* dst) {
    for (index_t i = 0; i < count; ++i) {
        T v;
        std::memcpy(&v, src + static_cast<std::size_t>(i * stride) * sizeof(T), sizeof(T));
        dst[i] = static_cast<float>(v);
    }
}

/// Converts `count` samples starting at `src`, taking every `stride`-th, into floats.
inline void convert_run(SampleType t, const unsigned char* src, index_t count, index_t stride, float* dst) {
    switch (t) {
        case SampleType::u8: scatter_samples<std::uint8_t>(src, count, stride, dst); break;
        case SampleType::u16: scatter_samples<std::uint16_t>(src, count, stride, dst); break;
        case SampleType::i16: scatter_samples<std::int16_t>(src, count, stride, dst); break;
        default: scatter_samples<float>(src, count, stride, dst); break;
    }
}

}  // namespace detail

/// The first directory's layout, sample type, nodata and georeferencing of an in-memory TIFF.
inline TiffInfo read_tiff_info(std::span<const unsigned char> bytes, const std::string& name = "(memory)") {
    detail::TiffHandle h(bytes, name, std::size_t{1} << 28);
    return detail::tiff_info(h);
}
inline TiffInfo read_tiff_info(const std::filesystem::path& path) {
    const detail::TiffHandle h(path, std::size_t{1} << 28);
    return detail::tiff_info(h);
}

/// Reads the first image of an in-memory TIFF; `name` is used in messages and as the source.
namespace detail {
// libtiff's own allocations (directory, one strip or tile) are capped too, at least 16 MiB.
inline std::size_t libtiff_alloc_cap(const TiffReadOptions& opt) {
    return std::max<std::size_t>(opt.max_bytes, std::size_t{1} << 24);
}

inline Image read_tiff_handle(const TiffHandle& h, const TiffReadOptions& opt) {
    const std::string& name = h.name();
    TIFF* tif = h.get();
    const TiffInfo info = detail::tiff_info(h);

    // Sample type.
    SampleType st{};
    const auto bps = info.bits_per_sample;
    const auto fmt = info.sample_format;
    if (bps == 8 && fmt == SAMPLEFORMAT_UINT) st = SampleType::u8;
    else if (bps == 16 && fmt == SAMPLEFORMAT_UINT) st = SampleType::u16;
    else if (bps == 16 && fmt == SAMPLEFORMAT_INT) st = SampleType::i16;
    else if (bps == 32 && fmt == SAMPLEFORMAT_IEEEFP) st = SampleType::f32;
    else {
        const char* kind = fmt == SAMPLEFORMAT_UINT ? "unsigned integer"
                           : fmt == SAMPLEFORMAT_INT ? "signed integer"
                           : fmt == SAMPLEFORMAT_IEEEFP ? "floating-point"
                                                         : "other-format";
        throw FormatError(name, moe::detail::cat("unsupported sample type: ", bps, "-bit ", kind,
                                            " (SampleFormat ", fmt, "); supported: uint8, uint16, int16, float32"));
    }
    const std::size_t bytes_per_sample = bps / 8;
    check<FormatError>(info.photometric != PHOTOMETRIC_YCBCR, name,
                       "YCbCr (JPEG-in-TIFF colour) images are not supported: convert to RGB first");
    check<FormatError>(TIFFIsCODECConfigured(info.compression) == 1, name, "unsupported ",
                       detail::compression_name(info.compression), ": this libtiff cannot decode it");
    const index_t W = info.width, H = info.height, S = info.samples_per_pixel;
    check<FormatError>(W > 0 && H > 0, name, "empty image ", W, " x ", H);
    check<FormatError>(S > 0, name, "SamplesPerPixel is 0");
    check<FormatError>(info.planar_config == PLANARCONFIG_CONTIG || info.planar_config == PLANARCONFIG_SEPARATE,
                       name, "invalid PlanarConfiguration ", info.planar_config);
    const double total = double(W) * double(H) * double(S) * 4.0;
    check<FormatError>(total <= double(opt.max_bytes), name, "image of ", W, " x ", H, " x ", S,
                       " samples exceeds the reader's limit of ", opt.max_bytes, " bytes");
    if (!opt.band_names.empty())
        check<ShapeError>(static_cast<index_t>(opt.band_names.size()) == S, name, opt.band_names.size(),
                          " band names given for a file with ", S, " bands");

    // Layout. What the header claims is bounded by the file before anything is allocated or any
    // loop runs over bands or blocks (a 757-byte file may claim 55553 bands of 16 x 16 tiles).
    const bool separate = info.planar_config == PLANARCONFIG_SEPARATE && S > 1;
    const index_t planes = separate ? S : 1;
    const index_t spp_in_block = separate ? 1 : S;  // samples per pixel inside one strip/tile
    index_t bw = W, bh = 0;                          // block (tile or strip) width and height
    if (info.tiled) {
        bw = info.tile_width, bh = info.tile_height;
        check<FormatError>(bw > 0 && bh > 0 && bw % 16 == 0 && bh % 16 == 0, name, "invalid tile size ", bw, " x ",
                           bh, " (must be positive multiples of 16)");
    } else {
        bh = info.rows_per_strip;
        if (bh <= 0 || bh > H) bh = H;
    }
    const index_t across = (W + bw - 1) / bw, down = (H + bh - 1) / bh, per_plane = across * down;
    const std::uint64_t file_size = h.size();
    const std::uint64_t expansion = detail::max_expansion(info.compression);
    const char* const block_kind = info.tiled ? "tile" : "strip";
    // Bytes of one decoded strip or tile (the read buffer's size) and the blocks the file lists.
    const tmsize_t bsize = info.tiled ? TIFFTileSize(tif) : TIFFStripSize(tif);
    if (bsize <= 0) h.fail(moe::detail::cat("invalid ", block_kind, " size"));
    const std::uint64_t listed = info.tiled ? TIFFNumberOfTiles(tif) : TIFFNumberOfStrips(tif);
    {
        // Every block must decode from bytes of the file: one block's samples cannot exceed what
        // the codec's best ratio makes of the whole file (blocks may share bytes, so only one).
        const auto b = static_cast<std::uint64_t>(bsize);
        if (expansion != 0 && (b + expansion - 1) / expansion > file_size)  // b > expansion * file_size
            throw FormatError(name, moe::detail::cat(
                "SamplesPerPixel ", S, ", ", bw, " x ", bh, " ", block_kind, "s of ", bps, "-bit samples: one ",
                block_kind, " decodes to ", b, " bytes, more than ", detail::compression_name(info.compression),
                " can expand the whole ", file_size, "-byte file to (at most ", expansion, ":1, ",
                expansion * file_size, " bytes); corrupt or hostile header"));
        // (per_plane * planes <= W * H * S: no overflow after the max_bytes check above.)
        const auto needed = static_cast<std::uint64_t>(per_plane * planes);
        check<FormatError>(needed <= listed, name, "the file lists ", listed, " ", block_kind, "s, the layout (",
                           planes, " plane(s) of ", across, " x ", down, " ", block_kind, "s) needs ", needed);
    }

    std::vector<std::string> names = opt.band_names;
    if (names.empty()) {
        names.reserve(static_cast<std::size_t>(S));
        for (index_t b = 0; b < S; ++b) names.push_back(std::string("band").append(std::to_string(b + 1)));
    } else if (const std::size_t d = first_duplicate_name(names); d != std::string::npos) {
        throw ConfigError(name, moe::detail::cat("band '", names[d], "' appears twice in the band names given"));
    }
    // dest[file band] = output band, or -1 when not asked for.
    std::vector<index_t> dest(static_cast<std::size_t>(S));
    if (opt.output_bands.empty()) {
        for (index_t b = 0; b < S; ++b) dest[static_cast<std::size_t>(b)] = b;
    } else {
        std::fill(dest.begin(), dest.end(), index_t{-1});
        const auto index = lower_name_index(names);  // lower-cased name -> file band
        std::vector<std::string> out_names;
        for (std::size_t o = 0; o < opt.output_bands.size(); ++o) {
            const auto it = index.find(lower_name(opt.output_bands[o]));
            if (it == index.end()) {
                // At most 64 names in the message (a file may have 65535 bands).
                std::vector<std::string> shown(names.begin(), names.begin() + std::min<std::ptrdiff_t>(64, S));
                if (names.size() > shown.size()) shown.push_back(moe::detail::cat("... (", names.size(), " bands)"));
                throw NotFoundError(name, std::string("no band '").append(opt.output_bands[o]).append(
                                              "'; the file's bands are ").append(join(shown)));
            }
            dest[it->second] = static_cast<index_t>(o);
            out_names.push_back(names[it->second]);
        }
        names = std::move(out_names);
    }

    // Every block that will be decoded: listed, with bytes in the file, within the codec's ratio
    // of them; and all of them together within a multiple of the reader's limit (only blocks far
    // larger than the image, e.g. 4096 x 4096 tiles on a 1 x 1 image, can exceed that).
    {
        const std::uint64_t tile_bytes = info.tiled ? static_cast<std::uint64_t>(bsize) : 0;
        const std::uint64_t cap = libtiff_alloc_cap(opt);
        const std::uint64_t work_limit = cap > UINT64_MAX / 4 ? UINT64_MAX : 4 * cap;
        std::uint64_t work = 0;
        for (index_t p = 0; p < planes; ++p) {
            if (separate && dest[static_cast<std::size_t>(p)] < 0) continue;
            for (index_t i = 0; i < per_plane; ++i) {
                const index_t bx = i % across, by = i / across;
                const std::uint64_t block =
                    info.tiled ? TIFFComputeTile(tif, static_cast<std::uint32_t>(bx * bw),
                                                 static_cast<std::uint32_t>(by * bh), 0, static_cast<std::uint16_t>(p))
                               : static_cast<std::uint64_t>(p * per_plane + i);
                check<FormatError>(block < listed, name, block_kind, " ", block, " (plane ", p,
                                   ") is not listed: the file has ", listed, " ", block_kind, "s");
                const std::uint64_t decoded =
                    info.tiled ? tile_bytes
                               : static_cast<std::uint64_t>(std::min(bh, H - by * bh) * W * spp_in_block) *
                                     bytes_per_sample;
                const auto strile = static_cast<std::uint32_t>(block);
                const std::uint64_t offset = TIFFGetStrileOffset(tif, strile);
                const std::uint64_t count = TIFFGetStrileByteCount(tif, strile);
                const std::uint64_t present = offset < file_size ? std::min(count, file_size - offset) : 0;
                if (present == 0)
                    throw FormatError(name, moe::detail::cat(block_kind, " ", block, " (plane ", p, ") has no data: ",
                                                             count, " bytes at offset ", offset, " of a ", file_size,
                                                             "-byte file (", info.tiled ? "Tile" : "Strip",
                                                             "ByteCounts)"));
                if (expansion != 0 && (decoded + expansion - 1) / expansion > present)  // decoded > expansion * present
                    throw FormatError(name, moe::detail::cat(
                        block_kind, " ", block, " (plane ", p, ") decodes to ", decoded, " bytes from ", present,
                        " bytes of ", detail::compression_name(info.compression), " data, which expands at most ",
                        expansion, ":1 (SamplesPerPixel ", S, "); corrupt or hostile header"));
                work += decoded;
                check<FormatError>(work <= work_limit, name, "the ", block_kind, "s to decode hold more than ",
                                   work_limit, " bytes (4 x the reader's limit of ", cap,
                                   ") for an image of ", W, " x ", H, " x ", S, " samples");
            }
        }
    }

    Image img(std::move(names), H, W, opt.modality);
    img.set_source(name);
    img.set_source_type(st);
    img.geo() = info.geo;
    img.set_nodata(info.nodata);
    float* out = img.data().data();

    if (info.tiled) {
        const index_t tw = bw, th = bh;
        const tmsize_t tsize = bsize;
        const std::size_t need = static_cast<std::size_t>(tw * th * spp_in_block) * bytes_per_sample;
        check<FormatError>(static_cast<std::size_t>(tsize) >= need, name, "tile size ", tsize, " bytes < ", need);
        std::unique_ptr<void, detail::TiffBufFree> buf(_TIFFmalloc(tsize));
        check<IOError>(buf != nullptr, name, "out of memory for a ", tsize, "-byte tile");
        const auto* tb = static_cast<const unsigned char*>(buf.get());
        for (index_t p = 0; p < planes; ++p) {
            if (separate && dest[static_cast<std::size_t>(p)] < 0) continue;
            for (index_t ty = 0; ty < H; ty += th)
                for (index_t tx = 0; tx < W; tx += tw) {
                    const ttile_t tile = TIFFComputeTile(tif, static_cast<std::uint32_t>(tx),
                                                         static_cast<std::uint32_t>(ty), 0,
                                                         static_cast<std::uint16_t>(p));
                    // A decoder may report success on a damaged stream without filling the whole
                    // buffer: clear it, so nothing of the previous tile leaks into this one.
                    if (info.compression != COMPRESSION_NONE) std::memset(buf.get(), 0, static_cast<std::size_t>(tsize));
                    if (TIFFReadEncodedTile(tif, tile, buf.get(), tsize) < 0)
                        h.fail(moe::detail::cat("cannot decode tile ", tile, " (plane ", p, ", x ", tx, ", y ", ty,
                                           "): corrupt or truncated"));
                    const index_t rows = std::min(th, H - ty), cols = std::min(tw, W - tx);
                    for (index_t r = 0; r < rows; ++r) {
                        const unsigned char* row = tb + static_cast<std::size_t>(r * tw * spp_in_block) * bytes_per_sample;
                        for (index_t s = 0; s < spp_in_block; ++s) {
                            const index_t band = dest[static_cast<std::size_t>(separate ? p : s)];
                            if (band < 0) continue;
                            detail::convert_run(st, row + static_cast<std::size_t>(s) * bytes_per_sample, cols,
                                                spp_in_block, out + (band * H + ty + r) * W + tx);
                        }
                    }
                }
        }
    } else {
        const index_t rps = bh, strips_per_plane = per_plane;  // listed: checked above
        const tmsize_t ssize = bsize;
        std::unique_ptr<void, detail::TiffBufFree> buf(_TIFFmalloc(ssize));
        check<IOError>(buf != nullptr, name, "out of memory for a ", ssize, "-byte strip");
        const auto* sb = static_cast<const unsigned char*>(buf.get());
        for (index_t p = 0; p < planes; ++p)
            for (index_t i = 0; i < strips_per_plane; ++i) {
                if (separate && dest[static_cast<std::size_t>(p)] < 0) break;
                const index_t y0 = i * rps, rows = std::min(rps, H - y0);
                const std::size_t need = static_cast<std::size_t>(rows * W * spp_in_block) * bytes_per_sample;
                const auto strip = static_cast<tstrip_t>(p * strips_per_plane + i);
                if (need > static_cast<std::size_t>(ssize))
                    h.fail(moe::detail::cat("strip ", strip, " needs ", need, " bytes, the strip size is ", ssize));
                if (info.compression != COMPRESSION_NONE) std::memset(buf.get(), 0, need);  // as for tiles
                const tmsize_t got = TIFFReadEncodedStrip(tif, strip, buf.get(), static_cast<tmsize_t>(need));
                if (got < 0) h.fail(moe::detail::cat("cannot decode strip ", strip, ": corrupt or truncated"));
                if (static_cast<std::size_t>(got) < need)
                    h.fail(moe::detail::cat("strip ", strip, " is truncated: ", got, " of ", need, " bytes"));
                for (index_t r = 0; r < rows; ++r) {
                    const unsigned char* row = sb + static_cast<std::size_t>(r * W * spp_in_block) * bytes_per_sample;
                    for (index_t s = 0; s < spp_in_block; ++s) {
                        const index_t band = dest[static_cast<std::size_t>(separate ? p : s)];
                        if (band < 0) continue;
                        detail::convert_run(st, row + static_cast<std::size_t>(s) * bytes_per_sample, W,
                                            spp_in_block, out + (band * H + y0 + r) * W);
                    }
                }
            }
    }
    if (opt.apply_nodata && info.nodata) img.mask_value(static_cast<float>(*info.nodata));
    return img;
}
}  // namespace detail

/// Reads the first image of an in-memory TIFF; `name` is used in messages and as the source.
inline Image read_tiff(std::span<const unsigned char> bytes, const std::string& name = "(memory)",
                       const TiffReadOptions& opt = {}) {
    const detail::TiffHandle h(bytes, name, detail::libtiff_alloc_cap(opt));
    return detail::read_tiff_handle(h, opt);
}

/// Reads the first image of the TIFF file at `path`.
inline Image read_tiff(const std::filesystem::path& path, const TiffReadOptions& opt = {}) {
    const detail::TiffHandle h(path, detail::libtiff_alloc_cap(opt));
    return detail::read_tiff_handle(h, opt);
}

// ------------------------------------------------------------------------------------------------
// Multi-file products
// ------------------------------------------------------------------------------------------------

/// One band stored in its own single-band file.
struct BandFile {
    std::string band;
    std::filesystem::path path;
};

/// Options of read_bands() / read_product().
struct ProductOptions {
    Resampling resampling = Resampling::bilinear;
    /// The common grid: the grid of this band when named, else height x width when set, else the
    /// largest band's grid.
    std::string grid_band;
    index_t height = 0, width = 0;
    Modality modality = Modality::unknown;
    std::size_t max_bytes = std::size_t{1} << 31;
};

/// Reads each single-band file into one image (bands in the order given) on the common grid.
inline Image read_bands(const std::vector<BandFile>& files, const ProductOptions& opt = {}) {
    check<ConfigError>(!files.empty(), "rs::read_bands", "no band files given");
    std::vector<Image> bands;
    for (const auto& f : files) {
        TiffReadOptions o;
        o.modality = opt.modality;
        o.max_bytes = opt.max_bytes;
        Image b = read_tiff(f.path, o);
        check<FormatError>(b.bands_count() == 1, f.path.string(), "expected a single-band file for band ", f.band,
                           ", found ", b.bands_count(), " bands");
        b.set_band_names({f.band});
        bands.push_back(std::move(b));
    }
    index_t H = opt.height, W = opt.width;
    std::size_t ref = 0;
    if (!opt.grid_band.empty()) {
        bool found = false;
        for (std::size_t i = 0; i < files.size(); ++i)
            if (detail::iequals(files[i].band, opt.grid_band)) ref = i, found = true;
        check<NotFoundError>(found, "rs::read_bands", "grid band '", opt.grid_band, "' is not among the bands read");
        H = bands[ref].height(), W = bands[ref].width();
    } else if (H <= 0 || W <= 0) {
        for (std::size_t i = 0; i < bands.size(); ++i)
            if (bands[i].pixels() > bands[ref].pixels()) ref = i;
        H = bands[ref].height(), W = bands[ref].width();
    } else {
        for (std::size_t i = 0; i < bands.size(); ++i)
            if (bands[i].height() == H && bands[i].width() == W) { ref = i; break; }
    }
    // Georeferencing of the grid: the reference band's (pixel scale rescaled if it was resampled).
    GeoInfo g = bands[ref].geo();
    if (g.pixel_scale && (bands[ref].width() != W || bands[ref].height() != H)) {
        (*g.pixel_scale)[0] *= double(bands[ref].width()) / double(W);
        (*g.pixel_scale)[1] *= double(bands[ref].height()) / double(H);
    }
    std::vector<std::string> names;
    bool any_mask = false;
    for (const auto& b : bands) names.push_back(b.band_names()[0]), any_mask = any_mask || b.has_mask();
    Image out(names, H, W, opt.modality);
    out.copy_meta_from(bands[ref]);
    for (std::size_t i = 0; i < bands.size(); ++i) {
        const Image& b = bands[i];
        const auto bi = static_cast<index_t>(i);
        const auto m = b.mask(0);
        std::uint8_t* dm = any_mask ? out.mask(bi).data() : nullptr;
        if (b.height() == H && b.width() == W) {
            std::copy(b.data().begin(), b.data().end(), out.band(bi).begin());
            if (dm && !m.empty()) std::copy(m.begin(), m.end(), dm);
        } else {
            const float fill = b.nodata() ? static_cast<float>(*b.nodata()) : 0.0f;
            detail::resample_band(b.data().data(), m.empty() ? nullptr : m.data(), b.height(), b.width(),
                                  out.band(bi).data(), m.empty() ? nullptr : dm, H, W, opt.resampling, fill);
        }
    }
    out.geo() = g;
    out.set_modality(opt.modality);
    out.set_source(files.front().path.parent_path().string());
    return out;
}

/// The files of `bands` in directory `dir`: a .tif/.tiff file whose stem is the band name or
/// ends with "_<name>", for the band's canonical name or any alias in `sensor` ("B01", "B1").
/// NotFoundError lists the bands without a file; FormatError when a band matches two files.
inline std::vector<BandFile> find_band_files(const std::filesystem::path& dir, const Sensor& sensor,
                                             const std::vector<std::string>& bands) {
    std::error_code ec;
    check<NotFoundError>(std::filesystem::is_directory(dir, ec), dir.string(), "is not a directory");
    std::vector<std::filesystem::path> tifs;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        if (!e.is_regular_file()) continue;
        std::string ext = e.path().extension().string();
        for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (ext == ".tif" || ext == ".tiff") tifs.push_back(e.path());
    }
    std::sort(tifs.begin(), tifs.end());
    std::vector<BandFile> out;
    std::vector<std::string> missing;
    for (const auto& name : bands) {
        const Band& b = sensor.band(name);
        std::vector<std::string> spellings{b.name};
        spellings.insert(spellings.end(), b.aliases.begin(), b.aliases.end());
        std::vector<std::filesystem::path> hits;
        for (const auto& p : tifs) {
            const std::string stem = p.stem().string();
            for (const auto& s : spellings) {
                const bool eq = detail::iequals(stem, s);
                const bool suffix = stem.size() > s.size() + 1 && stem[stem.size() - s.size() - 1] == '_' &&
                                    detail::iequals(std::string_view(stem).substr(stem.size() - s.size()), s);
                if (eq || suffix) {
                    hits.push_back(p);
                    break;
                }
            }
        }
        if (hits.empty()) {
            missing.push_back(b.name);
            continue;
        }
        if (hits.size() > 1)
            throw FormatError(dir.string(), moe::detail::cat("band ", b.name, " matches ", hits.size(), " files: ",
                                                        hits[0].filename().string(), ", ",
                                                        hits[1].filename().string()));
        out.push_back({b.name, hits.front()});
    }
    if (!missing.empty())
        throw NotFoundError(dir.string(),
                            std::string("no file for band(s) ").append(detail::join(missing)).append(
                                " (looked for <band>.tif or *_<band>.tif)"));
    return out;
}

/// Reads the bands `bands` of `sensor` from the one-band-per-file product in `dir`.
inline Image read_product(const std::filesystem::path& dir, const Sensor& sensor,
                          const std::vector<std::string>& bands, ProductOptions opt = {}) {
    if (opt.modality == Modality::unknown) opt.modality = sensor.modality();
    return read_bands(find_band_files(dir, sensor, bands), opt);
}

}  // namespace moe::rs

#else
#define MOE_RS_HAS_TIFF 0
#endif
