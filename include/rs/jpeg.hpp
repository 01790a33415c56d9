// rs/jpeg.hpp - JPEG reading with libjpeg (the optional target moe::rs_tiff, which links it).
//
// read_jpeg() decodes a baseline or progressive 8-bit JPEG (a file or bytes in memory) into an
// rs::Image: colour JPEGs as three bands "R", "G", "B" (the names rs/ringmoe/inputs.hpp and the
// sensor table use for UC Merced's RGB), greyscale ones as one band "gray"; samples are the uint8
// values 0..255 as float, modality optical, source type uint8, no georeferencing, no mask.
// Decoding uses libjpeg's defaults (DCT method JDCT_ISLOW, fancy upsampling, no block smoothing
// beyond the library's default), so the pixels equal what PIL decodes with the same libjpeg
// (Debian 12: libjpeg-turbo 2.1.5 under both; checked on the EuroSAT_RGB samples by the tests).
//
// Errors: moe::FormatError (not a JPEG, corrupt or truncated data, CMYK/YCCK or other colour
// spaces than greyscale / YCbCr / RGB, 12-bit data, more than max_scans progressive scans, an image
// larger than max_bytes); NotFoundError (missing file); IOError (the OS refused to read). Messages
// name the file and carry libjpeg's own text. libjpeg's warnings (e.g. "Premature end of JPEG
// file", "Corrupt JPEG data: ... extraneous bytes") are errors unless allow_warnings is set; then
// libjpeg's repair (grey fill of what is missing) is returned. Nothing is printed.
//
// libjpeg reports errors through error_exit, which must not return; here it longjmps back into
// the small C-style functions that call libjpeg (they hold no objects with destructors, and
// everything they change lives behind a pointer), and the C++ caller then throws: no exception
// ever crosses libjpeg's C frames.
//
// Needs <jpeglib.h> (Debian: libjpeg62-turbo-dev / libjpeg-dev) and linking libjpeg: link
// moe::rs_tiff. Without <jpeglib.h>, or with MOE_RS_NO_JPEG defined, this header declares nothing
// and defines MOE_RS_HAS_JPEG as 0.
#pragma once

#if __has_include(<jpeglib.h>) && !defined(MOE_RS_NO_JPEG)
#define MOE_RS_HAS_JPEG 1

#include <cstddef>
#include <cstdio>  // jpeglib.h needs FILE and size_t declared first

#include <jpeglib.h>

#include <cerrno>
#include <csetjmp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "moe/core/error.hpp"
#include "rs/image.hpp"

namespace moe::rs {

/// Options of read_jpeg().
struct JpegReadOptions {
    /// Refuse images whose decoded float32 pixels (bands x height x width x 4 bytes) would exceed
    /// this many bytes; checked after the header is read, before anything is allocated for them.
    std::size_t max_bytes = std::size_t{1} << 31;
    /// Progressive JPEGs with more scans than this are refused (a hostile file can hold many
    /// thousands of tiny scans that each cost a full pass); libjpeg-turbo's own tools use 500.
    int max_scans = 500;
    /// Accept data libjpeg warns about (truncated files, extraneous bytes) and return its repair.
    bool allow_warnings = false;
};

namespace detail {

/// Everything the setjmp-guarded functions touch: they only write through a pointer to it.
struct JpegContext {
    jpeg_decompress_struct cinfo;
    jpeg_error_mgr err;
    jpeg_progress_mgr progress;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX + 64];
    int max_scans = 500;
    bool allow_warnings = false;
    bool created = false;
};

inline JpegContext* jpeg_context(j_common_ptr cinfo) noexcept {
    // cinfo is the first member of JpegContext (standard layout).
    return reinterpret_cast<JpegContext*>(cinfo);
}

/// error_exit: keep libjpeg's message and jump back (never returns into libjpeg).
inline void moe_jpeg_error_exit(j_common_ptr cinfo) {
    JpegContext* c = jpeg_context(cinfo);
    (*cinfo->err->format_message)(cinfo, c->message);
    std::longjmp(c->jump, 1);
}
/// emit_message: warnings (level -1) are errors unless allowed; trace messages are dropped.
inline void moe_jpeg_emit_message(j_common_ptr cinfo, int level) {
    JpegContext* c = jpeg_context(cinfo);
    if (level < 0) {
        cinfo->err->num_warnings++;
        if (!c->allow_warnings) {
            (*cinfo->err->format_message)(cinfo, c->message);
            std::longjmp(c->jump, 1);
        }
    }
}
/// output_message: nothing is printed.
inline void moe_jpeg_output_message(j_common_ptr) {}
/// progress_monitor: stops progressive files with too many scans.
inline void moe_jpeg_progress(j_common_ptr cinfo) {
    JpegContext* c = jpeg_context(cinfo);
    if (cinfo->is_decompressor) {
        auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
        if (d->input_scan_number > c->max_scans) {
            std::snprintf(c->message, sizeof c->message, "more than %d progressive scans (max_scans)", c->max_scans);
            std::longjmp(c->jump, 1);
        }
    }
}

// The two functions below hold no C++ objects and change nothing but *c (and the output buffer):
// a longjmp out of libjpeg back to their setjmp skips no destructor and leaves no stale local.
// They return false after an error, with the message in c->message.

/// Creates the decompressor over `size` bytes at `data` and reads the header.
inline bool jpeg_open_and_read_header(JpegContext* c, const unsigned char* data, unsigned long size) {
    c->cinfo.err = jpeg_std_error(&c->err);
    c->err.error_exit = &moe_jpeg_error_exit;
    c->err.emit_message = &moe_jpeg_emit_message;
    c->err.output_message = &moe_jpeg_output_message;
    if (setjmp(c->jump)) return false;
    jpeg_create_decompress(&c->cinfo);
    c->created = true;
    c->progress.progress_monitor = &moe_jpeg_progress;
    c->cinfo.progress = &c->progress;
    jpeg_mem_src(&c->cinfo, data, size);
    if (jpeg_read_header(&c->cinfo, TRUE) != JPEG_HEADER_OK) {
        std::snprintf(c->message, sizeof c->message, "no image in the JPEG stream (tables only)");
        return false;
    }
    return true;
}

/// Decodes every scanline into `out` (output_height x row_bytes bytes, allocated by the caller
/// from the dimensions jpeg_start_decompress computes: see jpeg_output_dims) and finishes.
inline bool jpeg_decode_rows(JpegContext* c, unsigned char* out, std::size_t row_bytes, JDIMENSION rows) {
    if (setjmp(c->jump)) return false;
    while (c->cinfo.output_scanline < rows) {
        JSAMPROW row = out + static_cast<std::size_t>(c->cinfo.output_scanline) * row_bytes;
        if (jpeg_read_scanlines(&c->cinfo, &row, 1) != 1) {
            std::snprintf(c->message, sizeof c->message, "libjpeg returned no scanline");
            return false;
        }
    }
    jpeg_finish_decompress(&c->cinfo);
    return true;
}

/// jpeg_start_decompress (which may read all scans of a progressive file).
inline bool jpeg_start(JpegContext* c) {
    if (setjmp(c->jump)) return false;
    jpeg_start_decompress(&c->cinfo);
    return true;
}

/// Owns the context; destroys the decompressor (no longjmp can come from jpeg_destroy).
struct JpegDecoder {
    JpegContext ctx{};
    JpegDecoder() = default;
    JpegDecoder(const JpegDecoder&) = delete;
    JpegDecoder& operator=(const JpegDecoder&) = delete;
    ~JpegDecoder() {
        if (ctx.created) jpeg_destroy_decompress(&ctx.cinfo);
    }
};

inline std::vector<unsigned char> read_whole_file(const std::filesystem::path& path, const char* what) {
    const std::string name = path.string();
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw NotFoundError(name, "no such file");
    check<IOError>(!std::filesystem::is_directory(path, ec), name, "is a directory, not a ", what, " file");
    std::ifstream in(path, std::ios::binary);
    check<IOError>(in.good(), name, "cannot open for reading: ", std::strerror(errno));
    std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    check<IOError>(!in.bad(), name, "read failed: ", std::strerror(errno));
    return bytes;
}

}  // namespace detail

/// Decodes the JPEG in `bytes`; `name` names it in error messages and becomes the image's source.
inline Image read_jpeg(std::span<const unsigned char> bytes, const std::string& name = "(memory)",
                       const JpegReadOptions& opt = {}) {
    check<FormatError>(bytes.size() >= 4 && bytes[0] == 0xFF && bytes[1] == 0xD8, name,
                       "not a JPEG file (no SOI marker FF D8)");
    check<FormatError>(bytes.size() <= 0xFFFFFFFFul, name, "JPEG data larger than 4 GiB");
    detail::JpegDecoder dec;
    detail::JpegContext* c = &dec.ctx;
    c->max_scans = opt.max_scans;
    c->allow_warnings = opt.allow_warnings;
    const auto fail = [&](const char* stage) {
        throw FormatError(name, std::string("JPEG ").append(stage).append(": ").append(c->message));
    };
    if (!detail::jpeg_open_and_read_header(c, bytes.data(), static_cast<unsigned long>(bytes.size())))
        fail("header");
    jpeg_decompress_struct& ci = c->cinfo;
    switch (ci.jpeg_color_space) {
        case JCS_GRAYSCALE: ci.out_color_space = JCS_GRAYSCALE; break;
        case JCS_YCbCr:
        case JCS_RGB: ci.out_color_space = JCS_RGB; break;
        case JCS_CMYK:
        case JCS_YCCK:
            throw FormatError(name, "CMYK / YCCK JPEGs are not supported (only greyscale and RGB / YCbCr)");
        default:
            throw FormatError(name, moe::detail::cat("JPEG colour space ", int(ci.jpeg_color_space), " with ",
                                                     ci.num_components, " components is not supported"));
    }
    const int bands = ci.out_color_space == JCS_GRAYSCALE ? 1 : 3;
    const std::uint64_t need = std::uint64_t{ci.image_width} * ci.image_height * std::uint64_t(bands) * 4u;
    check<FormatError>(ci.image_width > 0 && ci.image_height > 0, name, "JPEG image is empty");
    check<FormatError>(need <= opt.max_bytes, name, "JPEG image of ", ci.image_width, " x ", ci.image_height,
                       " x ", bands, " needs ", need, " bytes as float32, over the limit of ", opt.max_bytes,
                       " (JpegReadOptions::max_bytes)");
    // libjpeg's own working memory (progressive coefficient buffers: ~2 bytes per sample) is
    // bounded by the same size check; no backing store is used.
    if (!detail::jpeg_start(c)) fail("decoding");
    check<FormatError>(ci.output_components == bands && ci.output_width == ci.image_width &&
                           ci.output_height == ci.image_height,
                       name, "unexpected JPEG output layout");
    const std::size_t W = ci.output_width, H = ci.output_height;
    const std::size_t row_bytes = W * static_cast<std::size_t>(bands);
    std::vector<unsigned char> pix(row_bytes * H);
    if (!detail::jpeg_decode_rows(c, pix.data(), row_bytes, ci.output_height)) fail("decoding");

    std::vector<std::string> names = bands == 1 ? std::vector<std::string>{"gray"}
                                                : std::vector<std::string>{"R", "G", "B"};
    Image img(std::move(names), static_cast<index_t>(H), static_cast<index_t>(W), Modality::optical);
    const std::size_t P = W * H;
    float* dst = img.data().data();
    for (std::size_t i = 0; i < P; ++i)
        for (int b = 0; b < bands; ++b)
            dst[static_cast<std::size_t>(b) * P + i] = static_cast<float>(pix[i * static_cast<std::size_t>(bands) + static_cast<std::size_t>(b)]);
    img.set_source_type(SampleType::u8);
    img.set_source(name);
    return img;
}

/// Reads and decodes a JPEG file.
inline Image read_jpeg(const std::filesystem::path& path, const JpegReadOptions& opt = {}) {
    const auto bytes = detail::read_whole_file(path, "JPEG");
    return read_jpeg(std::span<const unsigned char>(bytes), path.string(), opt);
}

}  // namespace moe::rs

#else
#define MOE_RS_HAS_JPEG 0
#endif
