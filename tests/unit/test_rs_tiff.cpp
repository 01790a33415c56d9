// The GeoTIFF reader (include/rs/tiff.hpp) on files this test writes itself with libtiff: every
// sample type, strips and tiles, both planar configurations, no compression / Deflate / LZW with
// and without predictors, both byte orders; nodata and georeferencing tags; multi-file products
// with resampling; and the error paths (truncated, corrupt, unsupported, missing).
#include <catch2/catch.hpp>

#include "rs/tiff.hpp"

#if MOE_RS_HAS_TIFF

#include <cmath>
#include <filesystem>
#include <string>

#include "rs_tiff_writer.hpp"

using namespace moe::rs;
using rs_test::Kind;
using rs_test::TiffSpec;

namespace {

std::string kind_name(Kind k) {
    switch (k) {
        case Kind::u8: return "u8";
        case Kind::u16: return "u16";
        case Kind::i16: return "i16";
        case Kind::f32: return "f32";
        case Kind::u32: return "u32";
        default: return "f64";
    }
}

/// Number of pixels whose value differs from value_at().
long mismatches(const Image& img, const TiffSpec& s) {
    long bad = 0;
    for (int b = 0; b < s.bands; ++b)
        for (int y = 0; y < int(s.height); ++y)
            for (int x = 0; x < int(s.width); ++x)
                if (double(img.at(b, y, x)) != double(static_cast<float>(rs_test::value_at(s.kind, b, y, x)))) ++bad;
    return bad;
}

template <class Fn>
void require_error_mentioning(Fn&& fn, const std::string& needle) {
    try {
        fn();
        FAIL("no exception; expected one mentioning '" << needle << "'");
    } catch (const moe::Error& e) {
        INFO("message: " << e.what());
        CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
}

}  // namespace

TEST_CASE("rs tiff: every sample type, layout, compression and predictor reads back exactly", "[rs][tiff]") {
    const auto dir = rs_test::scratch_dir("layouts");
    int files = 0;
    for (Kind k : {Kind::u8, Kind::u16, Kind::i16, Kind::f32})
        for (bool separate : {false, true})
            for (bool tiled : {false, true})
                for (std::uint16_t comp : {std::uint16_t(COMPRESSION_NONE), std::uint16_t(COMPRESSION_ADOBE_DEFLATE),
                                           std::uint16_t(COMPRESSION_LZW)})
                    for (std::uint16_t pred : {std::uint16_t(1), std::uint16_t(k == Kind::f32 ? 3 : 2)}) {
                        if (comp == COMPRESSION_NONE && pred != 1) continue;
                        TiffSpec s;
                        s.kind = k;
                        s.separate = separate;
                        s.tiled = tiled;
                        s.compression = comp;
                        s.predictor = pred;
                        // Some files big-endian. Not with the floating-point predictor: libtiff 4.5
                        // writes those wrongly on little-endian hosts (GDAL reads the same garbage).
                        s.big_endian = (files % 3) == 1 && pred != 3;
                        const auto path = dir / (kind_name(k) + "_" + std::to_string(files) + ".tif");
                        rs_test::write_tiff(path, s);
                        const Image img = read_tiff(path);
                        INFO(path.filename().string() << ": " << kind_name(k) << (separate ? " separate" : " contig")
                                                      << (tiled ? " tiled" : " strips") << " compression " << comp
                                                      << " predictor " << pred << (s.big_endian ? " BE" : " LE"));
                        REQUIRE(img.bands_count() == s.bands);
                        REQUIRE(img.height() == s.height);
                        REQUIRE(img.width() == s.width);
                        CHECK(mismatches(img, s) == 0);
                        CHECK(sample_type_name(img.source_type()) ==
                              std::string(k == Kind::u8 ? "uint8" : k == Kind::u16 ? "uint16" : k == Kind::i16 ? "int16" : "float32"));
                        CHECK_FALSE(img.has_mask());
                        const TiffInfo info = read_tiff_info(path);
                        CHECK(info.planar_config == (separate ? 2 : 1));
                        CHECK(info.tiled == tiled);
                        CHECK(info.compression == comp);
                        CHECK(info.predictor == pred);
                        ++files;
                    }
    CHECK(files == 4 * 2 * 2 * 5);
    std::filesystem::remove_all(dir);
}

TEST_CASE("rs tiff: band names, single-band files, one-row strips", "[rs][tiff]") {
    const auto dir = rs_test::scratch_dir("names");
    TiffSpec s;
    s.bands = 1;
    s.rows_per_strip = 1;
    rs_test::write_tiff(dir / "a.tif", s);
    TiffReadOptions o;
    o.band_names = {"VV"};
    o.modality = Modality::sar;
    const Image img = read_tiff(dir / "a.tif", o);
    CHECK(img.band_names() == std::vector<std::string>{"VV"});
    CHECK(img.modality() == Modality::sar);
    CHECK(mismatches(img, s) == 0);
    o.band_names = {"VV", "VH"};
    require_error_mentioning([&] { read_tiff(dir / "a.tif", o); }, "2 band names given for a file with 1 bands");
    // Selecting and reordering bands while reading, both layouts (separate planes are skipped).
    for (bool separate : {false, true}) {
        TiffSpec m;
        m.bands = 4;
        m.separate = separate;
        rs_test::write_tiff(dir / "m.tif", m);
        TiffReadOptions sel;
        sel.band_names = {"B02", "B03", "B04", "B08"};
        sel.output_bands = {"b08", "B02"};
        const Image img2 = read_tiff(dir / "m.tif", sel);
        CHECK(img2.band_names() == std::vector<std::string>{"B08", "B02"});
        for (int y = 0; y < int(m.height); ++y)
            for (int x = 0; x < int(m.width); ++x) {
                CHECK(double(img2.at(0, y, x)) == rs_test::value_at(m.kind, 3, y, x));
                CHECK(double(img2.at(1, y, x)) == rs_test::value_at(m.kind, 0, y, x));
            }
        sel.output_bands = {"B8A"};
        require_error_mentioning([&] { read_tiff(dir / "m.tif", sel); }, "no band 'B8A'; the file's bands are B02, B03, B04, B08");
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("rs tiff: GDAL nodata becomes the validity mask; georeferencing is read", "[rs][tiff]") {
    const auto dir = rs_test::scratch_dir("nodata");
    TiffSpec s;
    s.kind = Kind::i16;
    s.geo = true;
    // value_at(i16, 0, 0, 0) = (0 - 125) * 203 = -25375: declare it nodata.
    s.nodata = "-25375";
    rs_test::write_tiff(dir / "n.tif", s);
    const Image img = read_tiff(dir / "n.tif");
    REQUIRE(img.nodata().has_value());
    CHECK(*img.nodata() == -25375.0);
    long expected_invalid = 0;
    for (int b = 0; b < s.bands; ++b)
        for (int y = 0; y < int(s.height); ++y)
            for (int x = 0; x < int(s.width); ++x) {
                const bool nd = rs_test::value_at(s.kind, b, y, x) == -25375.0;
                expected_invalid += nd;
                CHECK(img.valid(b, y, x) == !nd);
            }
    CHECK(expected_invalid > 0);
    CHECK(img.invalid_count() == expected_invalid);
    REQUIRE(img.geo().pixel_scale.has_value());
    CHECK((*img.geo().pixel_scale)[0] == 10.0);
    CHECK((*img.geo().pixel_scale)[1] == 10.0);
    REQUIRE(img.geo().tie_point.has_value());
    CHECK((*img.geo().tie_point)[3] == 399960.0);
    CHECK((*img.geo().tie_point)[4] == 5800020.0);
    CHECK(img.geo().epsg == 32633);
    CHECK(img.geo().projected);
    CHECK_FALSE(img.geo().pixel_is_point);

    TiffReadOptions keep;
    keep.apply_nodata = false;
    CHECK_FALSE(read_tiff(dir / "n.tif", keep).has_mask());

    TiffSpec f;
    f.kind = Kind::f32;
    f.nodata = "nan";
    rs_test::write_tiff(dir / "f.tif", f);
    const Image fi = read_tiff(dir / "f.tif");
    REQUIRE(fi.nodata().has_value());
    CHECK(std::isnan(*fi.nodata()));
    CHECK(fi.invalid_count() == 0);  // no NaN pixels in the file
    std::filesystem::remove_all(dir);
}

TEST_CASE("rs tiff: unsupported, corrupt, truncated and missing files give clear errors", "[rs][tiff]") {
    const auto dir = rs_test::scratch_dir("errors");
    SECTION("unsupported sample types") {
        TiffSpec s;
        s.kind = Kind::u32;
        rs_test::write_tiff(dir / "u32.tif", s);
        require_error_mentioning([&] { read_tiff(dir / "u32.tif"); }, "unsupported sample type: 32-bit unsigned integer");
        s.kind = Kind::f64;
        rs_test::write_tiff(dir / "f64.tif", s);
        require_error_mentioning([&] { read_tiff(dir / "f64.tif"); }, "unsupported sample type: 64-bit floating-point");
    }
    SECTION("not a TIFF") {
        const std::string junk = "this is not a tiff file at all";
        const auto* p = reinterpret_cast<const unsigned char*>(junk.data());
        require_error_mentioning([&] { read_tiff(std::span<const unsigned char>(p, junk.size()), "junk"); },
                                 "not a TIFF file");
        require_error_mentioning([&] { read_tiff(std::span<const unsigned char>(p, 4), "tiny"); }, "only 4 bytes");
    }
    SECTION("truncated uncompressed and compressed files") {
        for (std::uint16_t comp : {std::uint16_t(COMPRESSION_NONE), std::uint16_t(COMPRESSION_ADOBE_DEFLATE)}) {
            TiffSpec s;
            s.compression = comp;
            s.rows_per_strip = 21;
            rs_test::write_tiff(dir / "t.tif", s);
            auto bytes = rs_test::file_bytes(dir / "t.tif");
            // libtiff writes the image data first and the directory last: cutting the file keeps
            // the header's offset valid but loses the directory, or (cut later) loses data.
            for (double frac : {0.3, 0.6}) {
                const auto n = static_cast<std::size_t>(double(bytes.size()) * frac);
                INFO("compression " << comp << ", cut at " << n << " of " << bytes.size() << " bytes");
                CHECK_THROWS_AS(read_tiff(std::span<const unsigned char>(bytes.data(), n), "cut"), moe::FormatError);
            }
        }
    }
    SECTION("directory moved to the front, image data gone: refused") {
        TiffSpec s;
        s.rows_per_strip = 21;
        rs_test::write_tiff(dir / "t.tif", s);
        auto bytes = rs_test::file_bytes(dir / "t.tif");
        const TiffInfo info = read_tiff_info(bytes, "t");
        REQUIRE(info.rows_per_strip == 21);
        // Move the 8-byte header's IFD offset: rewrite the file as header + IFD copy, so the strip
        // offset points past the end.
        std::uint32_t ifd = 0;
        std::memcpy(&ifd, bytes.data() + 4, 4);
        std::vector<unsigned char> cut(bytes.begin(), bytes.begin() + 8);
        const std::uint32_t new_ifd = 8;
        std::memcpy(cut.data() + 4, &new_ifd, 4);
        // IFD entries refer to absolute offsets of out-of-line values (BitsPerSample etc. are
        // inline here; StripOffsets is inline for one strip): copying the IFD keeps it valid.
        cut.insert(cut.end(), bytes.begin() + ifd, bytes.end());
        require_error_mentioning([&] { read_tiff(cut, "moved"); }, "moved");
        CHECK_THROWS_AS(read_tiff(cut, "moved"), moe::FormatError);
    }
    SECTION("corrupt Deflate stream") {
        TiffSpec s;
        s.compression = COMPRESSION_ADOBE_DEFLATE;
        s.rows_per_strip = 21;
        rs_test::write_tiff(dir / "c.tif", s);
        auto bytes = rs_test::file_bytes(dir / "c.tif");
        for (std::size_t i = 10; i < 60; ++i) bytes[i] = static_cast<unsigned char>(bytes[i] ^ 0x5a);
        require_error_mentioning([&] { read_tiff(bytes, "corrupt.tif"); }, "corrupt.tif");
        CHECK_THROWS_AS(read_tiff(bytes, "corrupt.tif"), moe::FormatError);
    }
    SECTION("hostile sizes are refused before allocating") {
        TiffSpec s;
        rs_test::write_tiff(dir / "s.tif", s);
        TiffReadOptions o;
        o.max_bytes = 1000;
        require_error_mentioning([&] { read_tiff(dir / "s.tif", o); }, "exceeds the reader's limit");
    }
    SECTION("missing file, directory") {
        CHECK_THROWS_AS(read_tiff(dir / "nope.tif"), moe::NotFoundError);
        CHECK_THROWS_AS(read_tiff(dir), moe::IOError);
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("rs tiff: a one-band-per-file product on a common grid", "[rs][tiff]") {
    const auto dir = rs_test::scratch_dir("product");
    // B02 at 10 m (16 x 12), B05 at 20 m (8 x 6), B01 at 60 m... kept simple: 16x12 and 8x6.
    TiffSpec hi;
    hi.bands = 1;
    hi.width = 16;
    hi.height = 12;
    TiffSpec lo = hi;
    lo.width = 8;
    lo.height = 6;
    rs_test::write_tiff(dir / "TILE_B02.tif", hi);
    rs_test::write_tiff(dir / "TILE_B05.tif", lo);
    rs_test::write_tiff(dir / "B8A.tif", lo);
    const Sensor s2 = sentinel2();
    const auto files = find_band_files(dir, s2, {"B2", "B05", "b8a"});
    REQUIRE(files.size() == 3);
    CHECK(files[0].band == "B02");
    CHECK(files[0].path.filename() == "TILE_B02.tif");
    CHECK(files[2].path.filename() == "B8A.tif");

    for (Resampling r : {Resampling::nearest, Resampling::bilinear}) {
        ProductOptions o;
        o.resampling = r;
        const Image img = read_product(dir, s2, {"B02", "B05", "B8A"}, o);
        REQUIRE(img.bands_count() == 3);
        CHECK(img.height() == 12);
        CHECK(img.width() == 16);
        CHECK(img.band_names() == std::vector<std::string>{"B02", "B05", "B8A"});
        CHECK(img.modality() == Modality::multispectral);
        CHECK(mismatches(img.select({"B02"}), hi) == 0);
        const Image direct = resample(read_tiff(dir / "TILE_B05.tif"), 12, 16, r);
        for (int y = 0; y < 12; ++y)
            for (int x = 0; x < 16; ++x) CHECK(img.at(1, y, x) == direct.at(0, y, x));
        if (r == Resampling::nearest)  // 2x upsampling: each source pixel becomes a 2 x 2 block
            for (int y = 0; y < 12; ++y)
                for (int x = 0; x < 16; ++x)
                    CHECK(double(img.at(1, y, x)) == rs_test::value_at(Kind::u16, 0, y / 2, x / 2));
    }
    // An explicit grid (the 20 m one): B02 is downsampled.
    ProductOptions o;
    o.grid_band = "B05";
    const Image low = read_product(dir, s2, {"B02", "B05"}, o);
    CHECK(low.height() == 6);
    CHECK(low.width() == 8);
    // Missing band, and a multi-band file given as one band.
    require_error_mentioning([&] { find_band_files(dir, s2, {"B02", "B11", "B12"}); }, "no file for band(s) B11, B12");
    require_error_mentioning([&] { find_band_files(dir, s2, {"B13"}); }, "unknown band 'B13'");
    TiffSpec multi;
    rs_test::write_tiff(dir / "X_B03.tif", multi);
    require_error_mentioning([&] { read_product(dir, s2, {"B03"}); }, "expected a single-band file for band B03");
    std::filesystem::remove_all(dir);
}

#else
TEST_CASE("rs tiff: skipped (built without <tiffio.h>)", "[rs][tiff]") { WARN("libtiff-dev not found: reader not tested"); }
#endif
