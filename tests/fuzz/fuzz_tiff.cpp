// libFuzzer target for the GeoTIFF reader (include/rs/tiff.hpp) and, through it, libtiff's
// decoders as the reader drives them (strips, tiles, planar configurations, Deflate / LZW /
// PackBits, predictors, GeoTIFF and GDAL tags).
//
// Every input is read with read_tiff_info() and read_tiff() from memory, with a 16 MiB limit
// on the decoded image. Only moe::Error is caught. When an image comes back the oracle checks
// that its shape is consistent (bands x height x width samples, a mask of the same size or none,
// invalid count within bounds) and reads every sample (so ASan/UBSan see the accesses); a band
// selection of the last band read again must give that band's samples bit for bit. Anything else
// (another exception, a sanitizer report, a failed oracle) is a finding.
//
// Build and run (clang; from the repository root):
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
//       -Iinclude tests/fuzz/fuzz_tiff.cpp -ltiff -o /tmp/fuzz_tiff
//   /tmp/fuzz_tiff -max_total_time=60 -timeout=2 -max_len=8192 /tmp/fuzz_tiff_corpus tests/fuzz/corpus/tiff
// Seeds: tests/fuzz/corpus/tiff/ (tiny files of each layout: seed0-11 written with libtiff,
// seed12- by tests/fuzz/make_tiff_seeds.py; regression-* are inputs that once misbehaved).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>

#include "rs/tiff.hpp"

#if MOE_RS_HAS_TIFF

namespace {
[[noreturn]] void finding(const char* what) {
    std::fprintf(stderr, "fuzz_tiff: oracle failed: %s\n", what);
    std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const unsigned char> bytes(data, size);
    try {
        (void)moe::rs::read_tiff_info(bytes, "fuzz");
    } catch (const moe::Error&) {
    }
    moe::rs::TiffReadOptions opt;
    opt.max_bytes = std::size_t{1} << 24;
    moe::rs::Image img;
    try {
        img = moe::rs::read_tiff(bytes, "fuzz", opt);
    } catch (const moe::Error&) {
        return 0;
    }
    const auto C = img.bands_count(), H = img.height(), W = img.width();
    if (C <= 0 || H <= 0 || W <= 0) finding("empty image returned");
    if (static_cast<moe::index_t>(img.data().size()) != C * H * W) finding("data size != bands * height * width");
    if (double(C) * double(H) * double(W) * 4.0 > double(opt.max_bytes)) finding("size limit not enforced");
    double acc = 0;
    for (float v : img.data()) acc += std::isfinite(v) ? double(v) : 0.0;
    if (img.invalid_count() < 0 || img.invalid_count() > C * H * W) finding("invalid count out of range");
    if (img.has_mask() && !img.nodata()) finding("a mask without a nodata value");
    (void)moe::rs::band_ranges(img);
    // Reading just the last band must give the same samples.
    moe::rs::TiffReadOptions one = opt;
    one.output_bands = {img.band_names().back()};
    try {
        const moe::rs::Image last = moe::rs::read_tiff(bytes, "fuzz", one);
        if (last.bands_count() != 1) finding("band selection returned the wrong band count");
        const std::span<const float> a = img.band(C - 1), b = last.band(0);
        if (std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) != 0) finding("band selection changed the samples");
    } catch (const moe::Error&) {
        finding("the same file failed when one band was selected");
    }
    return acc == 12345.678 ? 1 : 0;
}

#else
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }
#endif
