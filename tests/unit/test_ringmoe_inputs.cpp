// RingMoE's input preparation (rs/ringmoe/inputs.hpp): band sets per modality, replicated SAR
// amplitude, resampling, errors; and the real samples of ../shared/data/rs (skipped without them).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>

#include "rs/ringmoe/inputs.hpp"
#include "skip.hpp"

namespace moe_test_ringmoe_inputs {  // this file's names (unity builds merge test files)

using namespace moe::rs;
using namespace moe::rs::ringmoe;
using moe::index_t;

#ifndef MOE_DATA_DIR
#define MOE_DATA_DIR "../shared/data/rs"
#endif

namespace {

Image ramp(std::vector<std::string> bands, index_t n, Modality m) {
    Image img(std::move(bands), n, n, m);
    for (index_t b = 0; b < img.bands_count(); ++b)
        for (index_t y = 0; y < n; ++y)
            for (index_t x = 0; x < n; ++x) img.at(b, y, x) = float(100 * b + 10 * y + x);
    return img;
}

}  // namespace

TEST_CASE("ringmoe inputs: band sets, order and replication per modality", "[ringmoe][inputs]") {
    // Multispectral takes B02, B03, B04, B08 in that order whatever the image's order.
    const Image s2 = ramp({"B08", "B04", "B03", "B02", "B11"}, 8, Modality::multispectral);
    const auto x = to_model_input(s2, RingModality::multispectral, 8);
    REQUIRE(x.shape() == moe::Shape{1, 4, 8, 8});
    const float* d = x.data<float>();
    CHECK(d[0 * 64 + 9] == s2.at(3, 1, 1));  // B02 is band 3 of the image
    CHECK(d[3 * 64 + 9] == s2.at(0, 1, 1));  // B08 is band 0
    // SAR-L2: one amplitude band replicated into 3 identical channels.
    const Image s1 = ramp({"VV"}, 8, Modality::sar);
    const auto a = to_model_input(s1, RingModality::sar_l2, 8);
    REQUIRE(a.shape() == moe::Shape{1, 3, 8, 8});
    for (index_t i = 0; i < 64; ++i) {
        CHECK(a.data<float>()[i] == a.data<float>()[64 + i]);
        CHECK(a.data<float>()[i] == a.data<float>()[128 + i]);
    }
    // SAR-L1: the eight real/imaginary channels of the quad-pol scene.
    const auto q = to_model_input(synth_quadpol(8), RingModality::sar_l1, 8);
    CHECK(q.shape() == moe::Shape{1, 8, 8, 8});
    CHECK(modality_channels(RingModality::sar_l1) == 8);
}

TEST_CASE("ringmoe inputs: resampling a linear ramp keeps it linear inside the grid", "[ringmoe][inputs]") {
    // Bilinear (align_corners = false) of f(y, x) = 10 y + x from 8 to 16 pixels: output pixel
    // centre o maps to source coordinate (o + 0.5) / 2 - 0.5; away from the clamped border the
    // result is exactly the ramp at that coordinate.
    const Image img = ramp({"R", "G", "B"}, 8, Modality::optical);
    const auto x = to_model_input(img, RingModality::optical, 16);
    REQUIRE(x.shape() == moe::Shape{1, 3, 16, 16});
    for (index_t oy = 1; oy < 15; ++oy)
        for (index_t ox = 1; ox < 15; ++ox) {
            const double sy = (oy + 0.5) / 2 - 0.5, sx = (ox + 0.5) / 2 - 0.5;
            CHECK(x.data<float>()[2 * 256 + oy * 16 + ox] == Approx(200 + 10 * sy + sx).margin(1e-4));
        }
}

TEST_CASE("ringmoe inputs: bad input gives errors that say what", "[ringmoe][inputs]") {
    const Image s2 = ramp({"B02", "B03", "B04"}, 8, Modality::multispectral);
    CHECK_THROWS_WITH(to_model_input(s2, RingModality::multispectral, 8),
                      Catch::Contains("B02, B03, B04, B08") && Catch::Contains("the image has"));
    Image bad = ramp({"R", "G", "B"}, 8, Modality::optical);
    bad.at(1, 2, 3) = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_AS(to_model_input(bad, RingModality::optical, 8), moe::ValueError);
    CHECK_THROWS_AS(to_model_input(bad, RingModality::optical, 0), moe::ShapeError);
    CHECK_THROWS_WITH(parse_modality("lidar"), Catch::Contains("unknown modality 'lidar'"));
    CHECK(parse_modality("ms") == RingModality::multispectral);
    CHECK_THROWS_AS(stack_inputs({}), moe::ShapeError);
    std::vector<moe::Tensor> two;
    two.emplace_back(moe::DType::f32, moe::Shape{1, 3, 8, 8});
    two.emplace_back(moe::DType::f32, moe::Shape{1, 3, 4, 4});
    CHECK_THROWS_AS(stack_inputs(two), moe::ShapeError);
}

TEST_CASE("ringmoe inputs: the synthesised scene covers every modality", "[ringmoe][inputs]") {
    const auto scenes = synthetic_scenes(32);
    REQUIRE(scenes.size() == 4);
    for (const auto& s : scenes) {
        const auto x = to_model_input(s.image, s.modality, 32);
        CHECK(x.dim(1) == modality_channels(s.modality));
        for (index_t i = 0; i < x.numel(); ++i) REQUIRE(std::isfinite(x.data<float>()[i]));
        CHECK(s.source.find("synthesised") != std::string::npos);
    }
}

#if MOE_RS_HAS_TIFF
TEST_CASE("ringmoe inputs: the real samples, preprocessed, per modality", "[ringmoe][inputs][real]") {
    std::filesystem::path root = MOE_DATA_DIR;
    if (const char* e = std::getenv("MOE_DATA_DIR"); e && *e) root = e;
    if (!std::filesystem::is_directory(root))
        MOE_SKIP("real samples not found at " << root.string() << " (set MOE_DATA_DIR)");
    const auto scenes = sample_scenes(root);
    int per[4] = {};
    for (const auto& s : scenes) {
        ++per[static_cast<int>(s.modality)];
        const auto x = to_model_input(s.image, s.modality, 64);
        double lo = 1e30, hi = -1e30;
        for (index_t i = 0; i < x.numel(); ++i) lo = std::min(lo, double(x.data<float>()[i])), hi = std::max(hi, double(x.data<float>()[i]));
        INFO(s.source);
        CHECK(hi > lo);  // not a constant image
        if (s.modality == RingModality::optical) CHECK((lo >= 0.0 && hi <= 1.0));
        if (s.modality == RingModality::multispectral) CHECK((lo >= 0.0 && hi < 1.5));  // reflectance
        if (s.modality == RingModality::sar_l2) CHECK((lo > -10.0 && hi < 10.0));         // normalised dB
    }
    CHECK(per[0] == 4);  // UC Merced: 4 aerial images
    CHECK(per[3] == 3);  // EuroSAT: 3 Sentinel-2 patches
    CHECK(per[2] >= 2);  // BigEarthNet S1 + SSL4EO S1 dates
    CHECK(per[1] == 1);  // synthesised quad-pol
}
#endif

}  // namespace moe_test_ringmoe_inputs
