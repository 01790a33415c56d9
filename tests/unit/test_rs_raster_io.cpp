// Raster outputs and JPEG input of the remote-sensing floor:
//  - rs/png.hpp: every colour type decoded again by this file's own small decoder (zlib's
//    uncompress, CRC check, all five filters undone) and by PIL (/usr/bin/python3; skipped
//    visibly without it); the errors;
//  - rs/jpeg.hpp: the EuroSAT_RGB samples (MOE_DATA_DIR) pixel for pixel against PIL's decode of
//    the same files (same libjpeg-turbo), greyscale / progressive / CMYK files PIL writes, and
//    truncated, byte-flipped and non-JPEG input -> FormatError, never a crash;
//  - rs/tiff_write.hpp: masks written and read back by rs::read_tiff (values and GeoInfo equal),
//    rescaled georeferencing, GDAL's reading of the tags (skipped without python3-gdal);
//  - rs/draw.hpp: rectangles hand-checked pixel by pixel, clipping, overlays, canvases.
#include <catch2/catch.hpp>

#include "rs/draw.hpp"
#include "rs/jpeg.hpp"
#include "rs/png.hpp"
#include "rs/tiff_write.hpp"
#include "skip.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

namespace moe_test_test_rs_raster_io {  // this file's names (unity builds merge test files)

#ifndef MOE_DATA_DIR
#define MOE_DATA_DIR "../shared/data/rs"
#endif

using namespace moe::rs;
using moe::index_t;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
    auto d = fs::temp_directory_path() / ("moe_raster_io_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

std::vector<unsigned char> slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Empty when /usr/bin/python3 imports PIL (and `extra` modules), else why not.
std::string python_missing(const std::string& modules = "PIL") {
    if (!fs::exists("/usr/bin/python3")) return "/usr/bin/python3 not found";
    const std::string cmd = "/usr/bin/python3 -c 'import " + modules + "' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) return "/usr/bin/python3 cannot import " + modules;
    return {};
}

/// Runs /usr/bin/python3 on `script` (written to dir/script.py) with `args`; true when it exits 0.
bool run_python(const fs::path& dir, const std::string& script, const std::string& args) {
    const fs::path py = dir / "script.py";
    std::ofstream(py) << script;
    const std::string cmd = "/usr/bin/python3 '" + py.string() + "' " + args;
    return std::system(cmd.c_str()) == 0;
}

// Writes, for each file argument, file.raw (PIL's pixel bytes) and file.txt (mode, size, palette).
constexpr const char* kPilDump = R"(import sys
from PIL import Image
for p in sys.argv[1:]:
    im = Image.open(p)
    im.load()
    with open(p + '.raw', 'wb') as f:
        f.write(im.tobytes())
    pal = im.getpalette() if im.mode == 'P' else []
    with open(p + '.txt', 'w') as f:
        f.write('%s %d %d %s\n' % (im.mode, im.size[0], im.size[1], ' '.join(map(str, pal or []))))
)";

// ------------------------------------------------------------------------------------------------
// A small independent PNG decoder (8-bit, non-interlaced): chunks, CRCs, zlib, the five filters.
// ------------------------------------------------------------------------------------------------
struct Decoded {
    std::uint32_t width = 0, height = 0;
    int colour_type = -1;
    std::vector<std::uint8_t> pixels, palette;
    std::vector<int> filters;  // filter type of each row
};

std::uint32_t be32(const unsigned char* p) {
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

Decoded decode_png(const std::vector<unsigned char>& f) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    REQUIRE(f.size() > 8);
    REQUIRE(std::equal(sig, sig + 8, f.begin()));
    Decoded d;
    std::vector<unsigned char> idat;
    std::size_t pos = 8;
    bool end = false;
    std::vector<std::string> order;
    while (pos + 12 <= f.size()) {
        const std::uint32_t n = be32(&f[pos]);
        REQUIRE(pos + 12 + n <= f.size());
        const std::string type(reinterpret_cast<const char*>(&f[pos + 4]), 4);
        order.push_back(type);
        const unsigned char* data = &f[pos + 8];
        const uLong crc = crc32(crc32(0L, Z_NULL, 0), &f[pos + 4], 4 + n);
        CHECK(crc == be32(data + n));
        if (type == "IHDR") {
            REQUIRE(n == 13);
            d.width = be32(data);
            d.height = be32(data + 4);
            CHECK(data[8] == 8);
            d.colour_type = data[9];
            CHECK(data[10] == 0);
            CHECK(data[11] == 0);
            CHECK(data[12] == 0);
        } else if (type == "PLTE") {
            d.palette.assign(data, data + n);
        } else if (type == "IDAT") {
            idat.insert(idat.end(), data, data + n);
        } else if (type == "IEND") {
            CHECK(n == 0);
            end = true;
        }
        pos += 12 + n;
    }
    CHECK(end);
    CHECK(pos == f.size());
    REQUIRE(!order.empty());
    CHECK(order.front() == "IHDR");
    CHECK(order.back() == "IEND");
    const int channels_of[7] = {1, 0, 3, 1, 2, 0, 4};
    REQUIRE(d.colour_type >= 0);
    const std::size_t bpp = static_cast<std::size_t>(channels_of[d.colour_type]);
    const std::size_t row = d.width * bpp;
    std::vector<unsigned char> raw((row + 1) * d.height);
    uLongf len = raw.size();
    REQUIRE(uncompress(raw.data(), &len, idat.data(), idat.size()) == Z_OK);
    REQUIRE(len == raw.size());
    d.pixels.resize(row * d.height);
    for (std::size_t y = 0; y < d.height; ++y) {
        const int ft = raw[y * (row + 1)];
        d.filters.push_back(ft);
        REQUIRE(ft <= 4);
        const unsigned char* src = &raw[y * (row + 1) + 1];
        std::uint8_t* cur = &d.pixels[y * row];
        const std::uint8_t* prev = y ? cur - row : nullptr;
        for (std::size_t i = 0; i < row; ++i) {
            const int a = i >= bpp ? cur[i - bpp] : 0, b = prev ? prev[i] : 0, c = prev && i >= bpp ? prev[i - bpp] : 0;
            int pred = 0;
            if (ft == 1) pred = a;
            if (ft == 2) pred = b;
            if (ft == 3) pred = (a + b) / 2;
            if (ft == 4) {
                const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
                pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
            }
            cur[i] = static_cast<std::uint8_t>((src[i] + pred) & 0xFF);
        }
    }
    return d;
}

/// Pixels with smooth parts, edges and noise, so that every filter is the best for some row.
std::vector<std::uint8_t> pattern(index_t w, index_t h, int channels, unsigned seed) {
    std::vector<std::uint8_t> v(static_cast<std::size_t>(w * h * channels));
    unsigned s = seed;
    for (index_t y = 0; y < h; ++y)
        for (index_t x = 0; x < w; ++x)
            for (int c = 0; c < channels; ++c) {
                s = s * 1103515245u + 12345u;
                const auto i = static_cast<std::size_t>((y * w + x) * channels + c);
                switch ((y / 3) % 4) {
                    case 0: v[i] = static_cast<std::uint8_t>(x * 3 + c * 40); break;       // horizontal ramp
                    case 1: v[i] = static_cast<std::uint8_t>(y * 5 + c); break;            // vertical ramp
                    case 2: v[i] = static_cast<std::uint8_t>((s >> 16) & 0xFF); break;     // noise
                    default: v[i] = static_cast<std::uint8_t>((x + y) * 7 + c * 11); break;  // diagonal
                }
            }
    return v;
}

template <class E, class Fn>
void require_throws_mentioning(Fn&& fn, const std::string& needle) {
    try {
        fn();
        FAIL("no exception; expected one mentioning '" << needle << "'");
    } catch (const E& e) {
        INFO("message: " << e.what());
        CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
}

}  // namespace

// ================================================================================================
// PNG
// ================================================================================================
#if MOE_RS_HAS_PNG

TEST_CASE("rs png: every colour type decodes back to the same bytes (own decoder: CRCs, zlib, filters)",
          "[rs][png]") {
    for (int channels = 1; channels <= 4; ++channels)
        for (index_t w : {1, 7, 64})
            for (index_t h : {1, 13}) {
                INFO(channels << " channels, " << w << " x " << h);
                const auto px = pattern(w, h, channels, static_cast<unsigned>(w * 31 + h));
                const auto png = encode_png(PngView{w, h, channels, px, {}});
                const Decoded d = decode_png(png);
                CHECK(d.width == w);
                CHECK(d.height == h);
                const int expect_type[5] = {0, 0, 4, 2, 6};
                CHECK(d.colour_type == expect_type[channels]);
                CHECK(d.pixels == px);
            }
    // The adaptive filter choice uses more than one filter on a mixed image.
    const auto px = pattern(64, 24, 3, 7);
    const Decoded d = decode_png(encode_png(PngView::rgb(64, 24, px)));
    std::vector<int> used = d.filters;
    std::sort(used.begin(), used.end());
    used.erase(std::unique(used.begin(), used.end()), used.end());
    CHECK(used.size() >= 2);
    // Levels 0 (stored) and 9, and an image that needs several IDAT chunks (> 1 MiB compressed).
    for (int level : {-1, 0, 9}) {
        PngOptions o;
        o.level = level;
        CHECK(decode_png(encode_png(PngView::rgb(64, 24, px), o)).pixels == px);
    }
    const auto big = pattern(700, 600, 3, 99);  // ~1.26 MB of mostly noise rows at level 0
    PngOptions stored;
    stored.level = 0;
    const auto big_png = encode_png(PngView::rgb(700, 600, big), stored);
    CHECK(big_png.size() > (std::size_t{1} << 20));
    CHECK(decode_png(big_png).pixels == big);
}

TEST_CASE("rs png: indexed (palette) class masks", "[rs][png]") {
    const index_t w = 9, h = 5;
    std::vector<std::uint8_t> labels(static_cast<std::size_t>(w * h));
    for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::uint8_t>((i * 7) % 4);
    const auto pal = palette_bytes(class_palette(4));
    const Decoded d = decode_png(encode_png(PngView::indexed(w, h, labels, pal)));
    CHECK(d.colour_type == 3);
    CHECK(d.palette == pal);
    CHECK(d.pixels == labels);
    for (int f : d.filters) CHECK(f == 0);  // None for indexed images, as the specification advises
}

TEST_CASE("rs png: errors", "[rs][png]") {
    const std::vector<std::uint8_t> px(12, 1);
    require_throws_mentioning<moe::ShapeError>([&] { encode_png(PngView{3, 2, 3, px, {}}); }, "12 bytes for 3 x 2 x 3 = 18");
    require_throws_mentioning<moe::ShapeError>([&] { encode_png(PngView{0, 2, 3, px, {}}); }, "size 0 x 2");
    require_throws_mentioning<moe::ShapeError>([&] { encode_png(PngView{1, 2, 6, px, {}}); }, "6 channels");
    const std::vector<std::uint8_t> pal = {0, 0, 0, 255, 255, 255};
    require_throws_mentioning<moe::ShapeError>([&] { encode_png(PngView{4, 1, 3, px, pal}); }, "1 channel");
    require_throws_mentioning<moe::ShapeError>(
        [&] { encode_png(PngView::indexed(4, 3, px, std::vector<std::uint8_t>{1, 2})); }, "not 1..256 RGB triples");
    std::vector<std::uint8_t> idx(12, 1);
    idx[5] = 2;
    require_throws_mentioning<moe::ValueError>([&] { encode_png(PngView::indexed(4, 3, idx, pal)); },
                                               "pixel 5 has index 2 beyond the palette's 2 entries");
    PngOptions bad;
    bad.level = 12;
    require_throws_mentioning<moe::ConfigError>([&] { encode_png(PngView::gray(4, 3, px), bad); }, "level 12");
    require_throws_mentioning<moe::IOError>(
        [&] { write_png("/nonexistent_dir_moe/x.png", PngView::gray(4, 3, px)); }, "cannot create the PNG file");
}

TEST_CASE("rs png: PIL reads every colour type back to the same bytes", "[rs][png]") {
    if (const auto why = python_missing(); !why.empty()) MOE_SKIP("PNG not checked by PIL: " << why);
    const auto dir = scratch("png_pil");
    struct Case {
        std::string file, mode;
        int channels;
        bool indexed;
    };
    const std::vector<Case> cases = {{"g.png", "L", 1, false},   {"ga.png", "LA", 2, false}, {"rgb.png", "RGB", 3, false},
                                     {"rgba.png", "RGBA", 4, false}, {"p.png", "P", 1, true}};
    const index_t w = 33, h = 17;
    const auto pal = palette_bytes(class_palette(6));
    std::vector<std::vector<std::uint8_t>> pixels;
    std::string args;
    for (const auto& c : cases) {
        auto px = pattern(w, h, c.channels, 5);
        if (c.indexed)
            for (auto& p : px) p = static_cast<std::uint8_t>(p % 6);
        write_png(dir / c.file, PngView{w, h, c.channels, px, c.indexed ? std::span<const std::uint8_t>(pal)
                                                                         : std::span<const std::uint8_t>()});
        pixels.push_back(px);
        args += " '" + (dir / c.file).string() + "'";
    }
    REQUIRE(run_python(dir, kPilDump, args));
    for (std::size_t i = 0; i < cases.size(); ++i) {
        INFO(cases[i].file);
        std::ifstream txt(dir / (cases[i].file + ".txt"));
        std::string mode;
        int pw = 0, ph = 0;
        txt >> mode >> pw >> ph;
        CHECK(mode == cases[i].mode);
        CHECK(pw == w);
        CHECK(ph == h);
        CHECK(slurp(dir / (cases[i].file + ".raw")) == std::vector<unsigned char>(pixels[i].begin(), pixels[i].end()));
        if (cases[i].indexed) {
            std::vector<int> got;
            int v;
            while (txt >> v) got.push_back(v);
            REQUIRE(got.size() >= pal.size());
            for (std::size_t k = 0; k < pal.size(); ++k) CHECK(got[k] == pal[k]);
        }
    }
    fs::remove_all(dir);
}

#endif  // MOE_RS_HAS_PNG

// ================================================================================================
// JPEG
// ================================================================================================
#if MOE_RS_HAS_JPEG

namespace {
std::vector<fs::path> eurosat_jpegs() {
    std::vector<fs::path> out;
    const fs::path root = fs::path(MOE_DATA_DIR) / "EuroSAT_RGB";
    std::error_code ec;
    if (!fs::is_directory(root, ec)) return out;
    for (const auto& e : fs::recursive_directory_iterator(root))
        if (e.is_regular_file() && e.path().extension() == ".jpg") out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
}

/// PIL's RGB/L bytes (file.raw) vs the image, every pixel; returns the mismatch count.
long compare_with_pil(const Image& img, const fs::path& raw) {
    const auto bytes = slurp(raw);
    const auto C = static_cast<std::size_t>(img.bands_count()), P = static_cast<std::size_t>(img.pixels());
    REQUIRE(bytes.size() == C * P);
    long bad = 0;
    for (std::size_t i = 0; i < P; ++i)
        for (std::size_t c = 0; c < C; ++c)
            if (img.data()[c * P + i] != float(bytes[i * C + c])) ++bad;
    return bad;
}
}  // namespace

TEST_CASE("rs jpeg: the EuroSAT_RGB samples decode exactly as PIL decodes them", "[rs][jpeg]") {
    const auto files = eurosat_jpegs();
    if (files.empty()) MOE_SKIP("no EuroSAT_RGB JPEGs under " << MOE_DATA_DIR << "/EuroSAT_RGB");
    if (const auto why = python_missing(); !why.empty()) MOE_SKIP("JPEGs not compared with PIL: " << why);
    const auto dir = scratch("jpeg_eurosat");
    std::string args;
    for (std::size_t i = 0; i < files.size(); ++i) {
        fs::copy_file(files[i], dir / (std::to_string(i) + ".jpg"));
        args += " '" + (dir / (std::to_string(i) + ".jpg")).string() + "'";
    }
    REQUIRE(run_python(dir, kPilDump, args));
    for (std::size_t i = 0; i < files.size(); ++i) {
        INFO(files[i].string());
        const Image img = read_jpeg(files[i]);
        CHECK(img.band_names() == std::vector<std::string>{"R", "G", "B"});
        CHECK(img.width() == 64);
        CHECK(img.height() == 64);
        CHECK(img.source_type() == SampleType::u8);
        CHECK(img.modality() == Modality::optical);
        CHECK(img.source() == files[i].string());
        CHECK_FALSE(img.has_mask());
        CHECK(compare_with_pil(img, dir / (std::to_string(i) + ".jpg.raw")) == 0);
        // The in-memory reader gives the same pixels.
        const auto bytes = slurp(files[i]);
        const Image mem = read_jpeg(std::span<const unsigned char>(bytes), "mem");
        CHECK(std::equal(mem.data().begin(), mem.data().end(), img.data().begin()));
        // And the canvas of a photo at 0..255 is its bytes.
        const Canvas c = to_canvas(img, 0.0f, 255.0f);
        std::ifstream raw(dir / (std::to_string(i) + ".jpg.raw"), std::ios::binary);
        CHECK(std::vector<std::uint8_t>(std::istreambuf_iterator<char>(raw), std::istreambuf_iterator<char>()) == c.rgb);
    }
    fs::remove_all(dir);
}

TEST_CASE("rs jpeg: greyscale, progressive and odd-sized files PIL writes; CMYK is refused", "[rs][jpeg]") {
    if (const auto why = python_missing(); !why.empty()) MOE_SKIP("no JPEGs written by PIL: " << why);
    const auto dir = scratch("jpeg_pil");
    const std::string make = R"(import sys, os
from PIL import Image
d = sys.argv[1]
def img(mode, w, h):
    im = Image.new(mode, (w, h))
    px = im.load()
    for y in range(h):
        for x in range(w):
            v = (x * 13 + y * 7 + (x * y) % 17) % 256
            px[x, y] = v if mode == 'L' else ((v, 255 - v, (v * 3) % 256) if mode == 'RGB' else (v, 0, 255 - v, 40))
    return im
img('L', 23, 11).save(os.path.join(d, 'gray.jpg'), quality=85)
img('RGB', 37, 19).save(os.path.join(d, 'prog.jpg'), quality=90, progressive=True)
img('RGB', 17, 9).save(os.path.join(d, 's444.jpg'), quality=95, subsampling=0)
img('RGB', 17, 9).save(os.path.join(d, 's420.jpg'), quality=75, subsampling=2)
img('CMYK', 8, 8).save(os.path.join(d, 'cmyk.jpg'))
)";
    REQUIRE(run_python(dir, make, "'" + dir.string() + "'"));
    std::string args;
    for (const char* f : {"gray.jpg", "prog.jpg", "s444.jpg", "s420.jpg"}) args += " '" + (dir / f).string() + "'";
    REQUIRE(run_python(dir, kPilDump, args));
    const Image g = read_jpeg(dir / "gray.jpg");
    CHECK(g.band_names() == std::vector<std::string>{"gray"});
    CHECK(g.width() == 23);
    CHECK(g.height() == 11);
    CHECK(compare_with_pil(g, dir / "gray.jpg.raw") == 0);
    for (const char* f : {"prog.jpg", "s444.jpg", "s420.jpg"}) {
        INFO(f);
        const Image c = read_jpeg(dir / f);
        CHECK(c.bands_count() == 3);
        CHECK(compare_with_pil(c, dir / (std::string(f) + ".raw")) == 0);
    }
    require_throws_mentioning<moe::FormatError>([&] { read_jpeg(dir / "cmyk.jpg"); }, "CMYK");
    // The size limit is checked before decoding.
    JpegReadOptions small;
    small.max_bytes = 37 * 19 * 3 * 4 - 1;
    require_throws_mentioning<moe::FormatError>([&] { read_jpeg(dir / "prog.jpg", small); }, "max_bytes");
    small.max_bytes += 1;
    CHECK(read_jpeg(dir / "prog.jpg", small).width() == 37);
    // Too many progressive scans for the limit.
    JpegReadOptions scans;
    scans.max_scans = 2;
    require_throws_mentioning<moe::FormatError>([&] { read_jpeg(dir / "prog.jpg", scans); }, "progressive scans");
    fs::remove_all(dir);
}

TEST_CASE("rs jpeg: truncated, corrupt and non-JPEG input is a FormatError, never a crash", "[rs][jpeg]") {
    auto files = eurosat_jpegs();
    if (files.empty()) MOE_SKIP("no EuroSAT_RGB JPEGs under " << MOE_DATA_DIR << "/EuroSAT_RGB");
    const auto good = slurp(files.front());
    const std::string name = files.front().filename().string();
    // Cut in half, and at many other lengths: always FormatError with the name.
    std::vector<unsigned char> half(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(good.size() / 2));
    require_throws_mentioning<moe::FormatError>([&] { read_jpeg(std::span<const unsigned char>(half), name); }, name);
    for (std::size_t n = 0; n + 2 < good.size(); n += 1 + n / 8) {
        INFO("cut at " << n << " of " << good.size());
        const std::span<const unsigned char> cut(good.data(), n);
        CHECK_THROWS_AS(read_jpeg(cut, name), moe::FormatError);
    }
    // With warnings allowed, libjpeg's repair of the truncated file is returned.
    JpegReadOptions lax;
    lax.allow_warnings = true;
    CHECK(read_jpeg(std::span<const unsigned char>(half), name, lax).width() == 64);
    // Flipped bytes anywhere: an image or a FormatError, nothing else.
    int refused = 0, decoded = 0;
    for (std::size_t i = 2; i < good.size(); i += 3) {
        auto bad = good;
        bad[i] ^= static_cast<unsigned char>(0x5A + i);
        try {
            const Image img = read_jpeg(std::span<const unsigned char>(bad), name);
            CHECK(img.data().size() == static_cast<std::size_t>(img.bands_count() * img.pixels()));
            ++decoded;
        } catch (const moe::FormatError& e) {
            CHECK(std::string(e.what()).find(name) != std::string::npos);
            ++refused;
        }
    }
    INFO(decoded << " decoded, " << refused << " refused");
    CHECK(refused > 0);
    // Not a JPEG at all; a missing file; a directory.
    const std::vector<unsigned char> text = {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'};
    require_throws_mentioning<moe::FormatError>([&] { read_jpeg(std::span<const unsigned char>(text), "t.jpg"); },
                                                "not a JPEG file");
    const std::vector<unsigned char> soi_only = {0xFF, 0xD8, 0xFF, 0xD9};
    require_throws_mentioning<moe::FormatError>([&] { read_jpeg(std::span<const unsigned char>(soi_only), "e.jpg"); },
                                                "e.jpg: JPEG header");
    CHECK_THROWS_AS(read_jpeg(fs::path("/nonexistent_moe/x.jpg")), moe::NotFoundError);
    CHECK_THROWS_AS(read_jpeg(fs::temp_directory_path()), moe::IOError);
}

#endif  // MOE_RS_HAS_JPEG

// ================================================================================================
// GeoTIFF
// ================================================================================================
#if MOE_RS_HAS_TIFF_WRITE

namespace {
GeoInfo utm_geo() {
    GeoInfo g;
    g.pixel_scale = std::array<double, 3>{10.0, 10.0, 0.0};
    g.tie_point = std::array<double, 6>{0, 0, 0, 399960.0, 5800020.0, 0};
    g.epsg = 32633;
    g.projected = true;
    return g;
}
void check_geo_equal(const GeoInfo& a, const GeoInfo& b) {
    CHECK(a.pixel_scale == b.pixel_scale);
    CHECK(a.tie_point == b.tie_point);
    CHECK(a.epsg == b.epsg);
    CHECK(a.projected == b.projected);
    CHECK(a.pixel_is_point == b.pixel_is_point);
}
}  // namespace

TEST_CASE("rs geotiff: uint8 / uint16 masks read back with their values and georeferencing", "[rs][geotiff]") {
    const auto dir = scratch("geotiff");
    const index_t w = 70, h = 45;
    std::vector<std::uint8_t> labels(static_cast<std::size_t>(w * h));
    for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::uint8_t>((i / 7 + i % 5) % 10);
    GeoInfo geographic;
    geographic.pixel_scale = std::array<double, 3>{0.0001, 0.0001, 0.0};
    geographic.tie_point = std::array<double, 6>{0.5, 0.5, 0, 11.25, 48.125, 0};
    geographic.epsg = 4326;
    geographic.pixel_is_point = true;
    for (const GeoInfo& g : {utm_geo(), geographic, GeoInfo{}})
        for (bool deflate : {true, false}) {
            INFO("epsg " << g.epsg << (deflate ? " deflate" : " uncompressed"));
            GeoTiffWriteOptions o;
            o.deflate = deflate;
            o.nodata = 255;
            write_geotiff(dir / "m.tif", labels, w, h, g, o);
            const TiffInfo info = read_tiff_info(dir / "m.tif");
            CHECK(info.compression == (deflate ? 8 : 1));
            CHECK(info.bits_per_sample == 8);
            REQUIRE(info.nodata.has_value());
            CHECK(*info.nodata == 255.0);
            const Image img = read_tiff(dir / "m.tif");
            REQUIRE(img.bands_count() == 1);
            REQUIRE(img.width() == w);
            REQUIRE(img.height() == h);
            CHECK(img.source_type() == SampleType::u8);
            CHECK(std::equal(labels.begin(), labels.end(), img.data().begin(),
                             [](std::uint8_t a, float b) { return float(a) == b; }));
            check_geo_equal(img.geo(), g);
        }
    // uint16, a raster large enough for many strips.
    const index_t W = 1000, H = 300;
    std::vector<std::uint16_t> v(static_cast<std::size_t>(W * H));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint16_t>(i * 37 % 65536);
    write_geotiff(dir / "u16.tif", v, W, H, utm_geo());
    const Image img = read_tiff(dir / "u16.tif");
    CHECK(img.source_type() == SampleType::u16);
    CHECK(std::equal(v.begin(), v.end(), img.data().begin(), [](std::uint16_t a, float b) { return float(a) == b; }));
    check_geo_equal(img.geo(), utm_geo());
    fs::remove_all(dir);
}

TEST_CASE("rs geotiff: a mask carries its image's georeferencing, rescaled at another size", "[rs][geotiff]") {
    const auto dir = scratch("geotiff_mask");
    Image scene({"R", "G", "B"}, 40, 60);
    scene.geo() = utm_geo();
    scene.geo().tie_point = std::array<double, 6>{2, 4, 0, 400000.0, 5800000.0, 0};
    std::vector<std::uint8_t> same(60 * 40, 3), half(30 * 20, 4);
    write_mask_geotiff(dir / "same.tif", same, 60, 40, scene);
    check_geo_equal(read_tiff(dir / "same.tif").geo(), scene.geo());
    write_mask_geotiff(dir / "half.tif", half, 30, 20, scene);
    GeoInfo expect = scene.geo();
    expect.pixel_scale = std::array<double, 3>{20.0, 20.0, 0.0};
    expect.tie_point = std::array<double, 6>{1, 2, 0, 400000.0, 5800000.0, 0};  // same point, raster / 2
    check_geo_equal(read_tiff(dir / "half.tif").geo(), expect);
    // PixelIsPoint: the tie point's raster coordinates are pixel centres.
    GeoInfo pt = utm_geo();
    pt.pixel_is_point = true;
    const GeoInfo r = rescale_geo(pt, 60, 40, 30, 20);
    CHECK((*r.tie_point)[0] == Approx(-0.25));  // (0 + 0.5) / 2 - 0.5
    CHECK((*r.tie_point)[3] == 399960.0);
    CHECK((*r.pixel_scale)[0] == 20.0);
    // Model coordinates of the outer corner agree between the two grids (area).
    const GeoInfo a = rescale_geo(utm_geo(), 60, 40, 90, 25);
    CHECK(399960.0 + 60 * 10.0 == Approx((*a.tie_point)[3] + 90 * (*a.pixel_scale)[0]));
    CHECK(5800020.0 - 40 * 10.0 == Approx((*a.tie_point)[4] - 25 * (*a.pixel_scale)[1]));
    fs::remove_all(dir);
}

TEST_CASE("rs geotiff: GDAL reads the written georeferencing", "[rs][geotiff]") {
    if (const auto why = python_missing("osgeo.gdal, osgeo.osr"); !why.empty())
        MOE_SKIP("GeoTIFF tags not checked by GDAL: " << why);
    const auto dir = scratch("geotiff_gdal");
    std::vector<std::uint8_t> labels(20 * 10);
    for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::uint8_t>(i % 7);
    write_geotiff(dir / "m.tif", labels, 20, 10, utm_geo());
    const std::string script = R"(import sys
from osgeo import gdal, osr
ds = gdal.Open(sys.argv[1])
srs = osr.SpatialReference(wkt=ds.GetProjection())
srs.AutoIdentifyEPSG()
b = ds.GetRasterBand(1).ReadAsArray()
with open(sys.argv[2], 'w') as f:
    f.write('%r %s %d %d %d %s\n' % (ds.GetGeoTransform(), srs.GetAuthorityCode(None), ds.RasterXSize, ds.RasterYSize,
                                     int(b.sum()), ds.GetMetadataItem('AREA_OR_POINT')))
)";
    REQUIRE(run_python(dir, script, "'" + (dir / "m.tif").string() + "' '" + (dir / "out.txt").string() + "'"));
    std::ifstream in(dir / "out.txt");
    std::string line;
    std::getline(in, line);
    long sum = 0;
    for (auto v : labels) sum += v;
    std::ostringstream expect;
    expect << "(399960.0, 10.0, 0.0, 5800020.0, 0.0, -10.0) 32633 20 10 " << sum << " Area";
    CHECK(line == expect.str());
    fs::remove_all(dir);
}

TEST_CASE("rs geotiff: errors", "[rs][geotiff]") {
    const auto dir = scratch("geotiff_err");
    std::vector<std::uint8_t> px(12, 1);
    require_throws_mentioning<moe::ShapeError>([&] { write_geotiff(dir / "a.tif", px, 5, 3); }, "12 samples for 5 x 3");
    require_throws_mentioning<moe::ShapeError>([&] { write_geotiff(dir / "a.tif", px, 0, 3); }, "size 0 x 3");
    GeoInfo g = utm_geo();
    g.epsg = 70000;
    require_throws_mentioning<moe::ConfigError>([&] { write_geotiff(dir / "a.tif", px, 4, 3, g); }, "EPSG code 70000");
    CHECK_FALSE(fs::exists(dir / "a.tif"));
    require_throws_mentioning<moe::IOError>([&] { write_geotiff("/nonexistent_moe/a.tif", px, 4, 3); },
                                            "cannot create the TIFF file");
    fs::remove_all(dir);
}

#endif  // MOE_RS_HAS_TIFF_WRITE

// ================================================================================================
// Drawing
// ================================================================================================
namespace {
/// The canvas as text: '#' where the pixel has colour `on`, '.' elsewhere.
std::string picture(const Canvas& c, Rgb on) {
    std::string s;
    for (index_t y = 0; y < c.height; ++y) {
        for (index_t x = 0; x < c.width; ++x) s += c.at(x, y) == on ? '#' : '.';
        s += '\n';
    }
    return s;
}
}  // namespace

TEST_CASE("rs draw: rectangles, by hand, with clipping", "[rs][draw][png]") {
    const Rgb red{255, 0, 0};
    Canvas c(10, 8);
    draw_rectangle(c, 2, 1, 6, 5, red, 1);
    CHECK(picture(c, red) ==
          "..........\n"
          "..#####...\n"
          "..#...#...\n"
          "..#...#...\n"
          "..#...#...\n"
          "..#####...\n"
          "..........\n"
          "..........\n");
    Canvas t2(10, 8);
    draw_rectangle(t2, 6, 5, 2, 2, red);  // corners in either order; thickness 2: extra pixel outside
    CHECK(picture(t2, red) ==
          "..........\n"
          ".#######..\n"
          ".#######..\n"
          ".##...##..\n"
          ".##...##..\n"
          ".#######..\n"
          ".#######..\n"
          "..........\n");
    Canvas t3(10, 8);
    draw_rectangle(t3, 2, 2, 7, 5, red, 3);
    CHECK(picture(t3, red) ==
          "..........\n"
          ".########.\n"
          ".########.\n"
          ".########.\n"
          ".########.\n"
          ".########.\n"
          ".########.\n"
          "..........\n");
    Canvas clip(6, 4);
    draw_rectangle(clip, -3, 1, 3, 20, red, 1);  // left, bottom edges outside
    CHECK(picture(clip, red) ==
          "......\n"
          "####..\n"
          "...#..\n"
          "...#..\n");
    Canvas outside(6, 4);
    draw_rectangle(outside, -5, -5, 20, 20, red, 1);
    CHECK(picture(outside, red) == "......\n......\n......\n......\n");
    Canvas filled(6, 4);
    draw_rectangle(filled, 4, 2, 9, 9, red, -1);
    CHECK(picture(filled, red) == "......\n......\n....##\n....##\n");
    CHECK(filled.at(0, 0) == Rgb{0, 0, 0});
    CHECK_THROWS_AS(draw_rectangle(filled, 0, 0, 1, 1, red, 0), moe::ConfigError);
}

TEST_CASE("rs draw: canvases from images, overlays, palettes", "[rs][draw][png]") {
    Image img({"B", "G", "R"}, 2, 3);  // R/G/B found by name, whatever the order
    for (index_t x = 0; x < 3; ++x) {
        img.at(2, 0, x) = float(x * 100);  // R
        img.at(1, 0, x) = 10.0f;           // G
        img.at(0, 0, x) = -5.0f;           // B, below the range
        img.at(2, 1, x) = 300.0f;          // above the range
    }
    img.mask(1)[4] = 0;  // G invalid at (y 1, x 1)
    const Canvas c = to_canvas(img, 0.0f, 255.0f);
    CHECK(c.at(0, 0) == Rgb{0, 10, 0});
    CHECK(c.at(1, 0) == Rgb{100, 10, 0});
    CHECK(c.at(2, 0) == Rgb{200, 10, 0});
    CHECK(c.at(0, 1) == Rgb{255, 0, 0});
    CHECK(c.at(1, 1) == Rgb{255, 0, 0});  // invalid G -> 0
    // Percentile stretch: R spans 0..300 on row 0/1; 0th..100th percentile -> the full range.
    const Canvas s = to_canvas_stretch(img, 0, 100);
    CHECK(s.at(0, 0).r == 0);
    CHECK(s.at(2, 1).r == 255);
    CHECK(s.at(1, 0).r == 85);  // 100 / 300 * 255
    CHECK(s.at(0, 0).g == 255);  // G: 10 on row 0, 0 on row 1 (one invalid pixel, ignored)
    CHECK(s.at(0, 1).g == 0);
    Image flat({"gray"}, 1, 2);
    flat.at(0, 0, 0) = flat.at(0, 0, 1) = 7.0f;
    CHECK(to_canvas_stretch(flat).rgb == std::vector<std::uint8_t>(6, 0));  // empty range -> 0
    CHECK_THROWS_AS(to_canvas(Image({"a", "b"}, 2, 2), 0.0f, 1.0f), moe::ShapeError);
    const Canvas grey = to_canvas(Image({"gray"}, 1, 1), -1.0f, 1.0f);
    CHECK(grey.at(0, 0) == Rgb{128, 128, 128});

    Canvas o(3, 1, Rgb{100, 100, 100});
    const std::vector<std::uint8_t> m = {0, 1, 2};
    overlay_mask(o, m, Rgb{200, 0, 50}, 0.25f);
    CHECK(o.at(0, 0) == Rgb{100, 100, 100});
    CHECK(o.at(1, 0) == Rgb{125, 75, 88});  // 0.75 * 100 + 0.25 * c, rounded
    CHECK(o.at(2, 0) == Rgb{125, 75, 88});
    const auto pal = class_palette(3);
    CHECK(pal.size() == 3);
    CHECK(pal[0] == Rgb{0, 0, 0});
    CHECK_FALSE(pal[1] == pal[2]);
    Canvas k(3, 1, Rgb{10, 20, 30});
    overlay_classes(k, m, pal, 1.0f);
    CHECK(k.at(0, 0) == Rgb{10, 20, 30});  // background class 0 untouched
    CHECK(k.at(1, 0) == pal[1]);
    CHECK(k.at(2, 0) == pal[2]);
    const std::vector<std::uint8_t> beyond = {0, 3, 1};
    CHECK_THROWS_AS(overlay_classes(k, beyond, pal, 0.5f), moe::ValueError);
    CHECK_THROWS_AS(overlay_mask(k, std::vector<std::uint8_t>(2), Rgb{}, 0.5f), moe::ShapeError);
    CHECK_THROWS_AS(overlay_mask(k, m, Rgb{}, 1.5f), moe::ConfigError);
}

}  // namespace moe_test_test_rs_raster_io
