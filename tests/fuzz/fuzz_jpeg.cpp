// libFuzzer target for the JPEG reader (include/rs/jpeg.hpp) and, through it, libjpeg-turbo's
// decoder as the reader drives it (markers, Huffman / progressive scans, colour conversion,
// upsampling) with its error manager (setjmp/longjmp back into the reader, then FormatError).
//
// Every input is decoded from memory with a 16 MiB limit on the decoded image, once strictly and
// once with allow_warnings (libjpeg's repair of truncated / corrupt data). Only moe::Error is
// caught. When an image comes back the oracle checks its shape (1 or 3 bands named gray or R, G,
// B; bands x height x width samples; no mask), that every sample is a whole number in 0..255, and
// that a strict success gives the same samples as the lenient decode. Anything else (another
// exception, a sanitizer report, a failed oracle) is a finding.
//
// Build and run (clang; from the repository root):
//   cmake --preset fuzz && cmake --build --preset fuzz --target moe_fuzz_jpeg
//   build/fuzz/tests/moe_fuzz_jpeg -max_total_time=30 -rss_limit_mb=4096 /tmp/fuzz_jpeg_corpus tests/fuzz/corpus/jpeg
// or by hand:
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
//       -Iinclude tests/fuzz/fuzz_jpeg.cpp -ljpeg -o /tmp/fuzz_jpeg
// Seeds: tests/fuzz/corpus/jpeg/ (written by tests/fuzz/make_jpeg_seeds.py).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>

#include "rs/jpeg.hpp"

#if MOE_RS_HAS_JPEG

namespace {
[[noreturn]] void finding(const char* what) {
    std::fprintf(stderr, "fuzz_jpeg: oracle failed: %s\n", what);
    std::abort();
}

void check_image(const moe::rs::Image& img, const moe::rs::JpegReadOptions& opt) {
    const auto C = img.bands_count(), H = img.height(), W = img.width();
    if (C != 1 && C != 3) finding("band count is not 1 or 3");
    if (H <= 0 || W <= 0) finding("empty image returned");
    if (static_cast<moe::index_t>(img.data().size()) != C * H * W) finding("data size != bands * height * width");
    if (double(C) * double(H) * double(W) * 4.0 > double(opt.max_bytes)) finding("size limit not enforced");
    if (img.has_mask()) finding("a JPEG image with a mask");
    if (C == 1 && img.band_names()[0] != "gray") finding("one band not named gray");
    if (C == 3 && (img.band_names()[0] != "R" || img.band_names()[1] != "G" || img.band_names()[2] != "B"))
        finding("three bands not named R, G, B");
    for (float v : img.data())
        if (!(v >= 0.0f && v <= 255.0f) || v != std::floor(v)) finding("a sample that is not an integer in 0..255");
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const unsigned char> bytes(data, size);
    moe::rs::JpegReadOptions strict;
    strict.max_bytes = std::size_t{1} << 24;
    moe::rs::JpegReadOptions lax = strict;
    lax.allow_warnings = true;
    moe::rs::Image a, b;
    bool strict_ok = false, lax_ok = false;
    try {
        a = moe::rs::read_jpeg(bytes, "fuzz", strict);
        check_image(a, strict);
        strict_ok = true;
    } catch (const moe::Error&) {
    }
    try {
        b = moe::rs::read_jpeg(bytes, "fuzz", lax);
        check_image(b, lax);
        lax_ok = true;
    } catch (const moe::Error&) {
    }
    if (strict_ok) {
        if (!lax_ok) finding("a strict success failed with warnings allowed");
        if (a.bands_count() != b.bands_count() || a.height() != b.height() || a.width() != b.width() ||
            std::memcmp(a.data().data(), b.data().data(), a.data().size() * sizeof(float)) != 0)
            finding("strict and lenient decodes differ");
    }
    return 0;
}

#else
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }
#endif
