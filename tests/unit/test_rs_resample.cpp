// Resampling (rs/image.hpp) on hand-derived values.
#include <catch2/catch.hpp>

#include "rs/image.hpp"

namespace moe_test_rs_resample {  // this file's names (unity builds merge test files)

using namespace moe::rs;

TEST_CASE("rs resample: 2x2 -> 4x4 bilinear with pixel centres and edge clamp, by hand", "[rs][resample]") {
    Image img({"a"}, 2, 2);
    img.at(0, 0, 0) = 0, img.at(0, 0, 1) = 1, img.at(0, 1, 0) = 2, img.at(0, 1, 1) = 3;
    // Output i maps to source (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> clamped taps give
    // fractional positions 0, 0.25, 0.75, 1 along each axis; the value is 2 * ry + rx.
    const double r[4] = {0, 0.25, 0.75, 1};
    const Image out = resample(img, 4, 4, Resampling::bilinear);
    for (int y = 0; y < 4; ++y)
        for (int x = 0; x < 4; ++x) CHECK(out.at(0, y, x) == Approx(2 * r[y] + r[x]).margin(1e-6));
    const Image nn = resample(img, 4, 4, Resampling::nearest);
    for (int y = 0; y < 4; ++y)
        for (int x = 0; x < 4; ++x) CHECK(nn.at(0, y, x) == img.at(0, y / 2, x / 2));
}

TEST_CASE("rs resample: downsampling 4 -> 2 averages pairs; nearest takes the centre pixel", "[rs][resample]") {
    Image img({"a"}, 1, 4);
    for (int x = 0; x < 4; ++x) img.at(0, 0, x) = float(x * x);  // 0 1 4 9
    // Source positions (i + 0.5) * 2 - 0.5 = 0.5, 2.5: the mean of pixels (0,1) and (2,3).
    const Image b = resample(img, 1, 2, Resampling::bilinear);
    CHECK(b.at(0, 0, 0) == Approx(0.5));
    CHECK(b.at(0, 0, 1) == Approx(6.5));
    // Nearest: floor((i + 0.5) * 2) = 1, 3.
    const Image n = resample(img, 1, 2, Resampling::nearest);
    CHECK(n.at(0, 0, 0) == 1);
    CHECK(n.at(0, 0, 1) == 9);
}

TEST_CASE("rs resample: invalid pixels get no weight and stay invalid when alone", "[rs][resample]") {
    Image img({"a"}, 1, 2);
    img.at(0, 0, 0) = 10, img.at(0, 0, 1) = -9999;
    img.set_nodata(-9999.0);
    img.mask_value(-9999.0f);
    const Image b = resample(img, 1, 4, Resampling::bilinear);
    // Positions -0.25 -> 0, 0.25, 0.75, 1.25 -> 1: the last one only sees the invalid pixel.
    CHECK(b.at(0, 0, 0) == 10);
    CHECK(b.at(0, 0, 1) == 10);  // renormalised over the one valid neighbour
    CHECK(b.at(0, 0, 2) == 10);
    CHECK(b.valid(0, 0, 2));
    CHECK_FALSE(b.valid(0, 0, 3));
    CHECK(b.at(0, 0, 3) == -9999);
    const Image n = resample(img, 1, 4, Resampling::nearest);
    CHECK(n.valid(0, 0, 1));
    CHECK_FALSE(n.valid(0, 0, 2));
    CHECK_THROWS_AS(resample(img, 0, 3, Resampling::nearest), moe::ShapeError);
}

TEST_CASE("rs image: select, reorder, append, errors", "[rs][image]") {
    Image img(eurosat_band_order(), 2, 3, Modality::multispectral);
    for (int b = 0; b < 13; ++b) img.band(b)[0] = float(b);
    const Image esa = img.reorder(sentinel2(), s2_l1c_band_order());
    CHECK(esa.band_names() == s2_l1c_band_order());
    CHECK(esa.band("B8A")[0] == 12);  // EuroSAT stores B8A last (index 12)
    CHECK(esa.band("B09")[0] == 8);
    CHECK(esa.band_names()[8] == "B8A");
    const Image l2a = img.reorder(sentinel2(), {"B1", "B2", "B8a"});
    CHECK(l2a.band_names() == std::vector<std::string>{"B01", "B02", "B8A"});
    CHECK_THROWS_AS(img.select({"B13"}), moe::NotFoundError);
    CHECK_THROWS_WITH(img.index_of("VV"), Catch::Contains("no band 'VV'") && Catch::Contains("B8A"));
    Image extra({"X"}, 2, 3);
    Image copy = img;
    copy.append(extra);
    CHECK(copy.bands_count() == 14);
    CHECK_THROWS_AS(copy.append(extra), moe::ConfigError);
    CHECK_THROWS_AS(copy.append(Image({"Y"}, 3, 3)), moe::ShapeError);
    CHECK_THROWS_AS(Image({"a", "A"}, 1, 1), moe::ConfigError);
}

}  // namespace moe_test_rs_resample
