// Radiometry (rs/radiometry.hpp) against values derived by hand.
#include <catch2/catch.hpp>

#include <cmath>

#include "rs/radiometry.hpp"

namespace moe_test_rs_radiometry {  // this file's names (unity builds merge test files)

using namespace moe::rs;

TEST_CASE("rs radiometry: processing baseline from metadata and product names", "[rs][radiometry]") {
    CHECK(s2_processing_baseline(R"({"CLOUDY": 1.9, "PROCESSING_BASELINE": "02.14", "X": 1})") == Approx(2.14));
    CHECK(s2_processing_baseline(R"({"PROCESSING_BASELINE": "04.00"})") == Approx(4.0));
    CHECK(s2_processing_baseline("<PROCESSING_BASELINE>05.09</PROCESSING_BASELINE>") == Approx(5.09));
    CHECK(s2_processing_baseline("S2B_MSIL2A_20220813T054639_N0400_R048_T43RCP_20220813T083230") == Approx(4.0));
    CHECK_FALSE(s2_processing_baseline("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP").has_value());
    CHECK_FALSE(s2_processing_baseline("no baseline here").has_value());
    CHECK(s2_offset_for_baseline(2.14) == 0);
    CHECK(s2_offset_for_baseline(4.0) == -1000);
    CHECK(s2_offset_for_baseline(5.1) == -1000);
}

TEST_CASE("rs radiometry: DN -> reflectance before and after baseline 04.00; DN 0 is nodata", "[rs][radiometry]") {
    Image img({"B02", "B03"}, 1, 3);
    const float dn[2][3] = {{0, 1500, 11000}, {999, 1000, 2500}};
    for (int b = 0; b < 2; ++b)
        for (int x = 0; x < 3; ++x) img.at(b, 0, x) = dn[b][x];
    Image old = img, neu = img;
    S2Radiometry r_old;  // offset 0
    S2Radiometry r_new;
    r_new.offset = s2_offset_for_baseline(4.0);
    s2_dn_to_reflectance(old, r_old);
    s2_dn_to_reflectance(neu, r_new);
    CHECK_FALSE(old.valid(0, 0, 0));
    CHECK(old.at(0, 0, 0) == 0);  // left unchanged
    CHECK(old.at(0, 0, 1) == Approx(0.15));
    CHECK(old.at(0, 0, 2) == Approx(1.1));
    CHECK(old.at(1, 0, 0) == Approx(0.0999));
    CHECK(neu.at(0, 0, 1) == Approx(0.05));   // (1500 - 1000) / 10000
    CHECK(neu.at(0, 0, 2) == Approx(1.0));
    CHECK(neu.at(1, 0, 0) == Approx(-0.0001));  // below the offset: slightly negative, as ESA defines
    CHECK(neu.at(1, 0, 1) == Approx(0.0).margin(1e-9));
    CHECK_FALSE(neu.valid(0, 0, 0));
    CHECK(neu.valid(1, 0, 0));

    // Configured fallback when the metadata has no baseline.
    const S2Radiometry cfg = s2_radiometry(std::nullopt, 4.0);
    CHECK(cfg.offset == -1000);
    CHECK(cfg.origin == "configured processing baseline");
}

TEST_CASE("rs radiometry: power <-> dB", "[rs][radiometry]") {
    Image img({"VV"}, 1, 4);
    const float p[4] = {1.0f, 0.1f, 100.0f, 0.0f};
    for (int x = 0; x < 4; ++x) img.at(0, 0, x) = p[x];
    power_to_db(img);
    CHECK(img.at(0, 0, 0) == Approx(0.0).margin(1e-6));
    CHECK(img.at(0, 0, 1) == Approx(-10.0));
    CHECK(img.at(0, 0, 2) == Approx(20.0));
    CHECK_FALSE(img.valid(0, 0, 3));  // log of 0 is undefined: invalid, not -inf
    db_to_power(img);
    CHECK(img.at(0, 0, 1) == Approx(0.1));
    CHECK(img.at(0, 0, 2) == Approx(100.0));
    CHECK(img.at(0, 0, 3) == 0.0f);  // invalid pixel untouched
}

TEST_CASE("rs radiometry: percentiles (numpy's linear rule) and clipping", "[rs][radiometry]") {
    std::vector<float> v{4, 1, 3, 2, 5};
    CHECK(percentile(v, 0) == 1);
    CHECK(percentile(v, 100) == 5);
    CHECK(percentile(v, 50) == 3);
    CHECK(percentile(v, 10) == Approx(1.4));  // rank 0.4 between 1 and 2
    CHECK(percentile(v, 98) == Approx(4.92)); // rank 3.92 between 4 and 5
    // 0..100 in one band, plus an invalid outlier that must not move the percentiles.
    Image img({"VV", "VH"}, 1, 102);
    for (int x = 0; x <= 100; ++x) img.at(0, 0, x) = float(x), img.at(1, 0, x) = float(-x);
    img.at(0, 0, 101) = 1e6f, img.at(1, 0, 101) = 1e6f;
    img.mask(0)[101] = 0;
    img.mask(1)[101] = 0;
    const BandBounds b = percentile_clip(img, 2, 98);
    CHECK(b.lo[0] == Approx(2));
    CHECK(b.hi[0] == Approx(98));
    CHECK(b.lo[1] == Approx(-98));
    CHECK(b.hi[1] == Approx(-2));
    CHECK(img.at(0, 0, 0) == 2);
    CHECK(img.at(0, 0, 100) == 98);
    CHECK(img.at(0, 0, 50) == 50);
    CHECK(img.at(0, 0, 101) == 1e6f);  // invalid: untouched
    Image s1({"VV", "VH"}, 1, 2);
    s1.at(0, 0, 0) = -60, s1.at(0, 0, 1) = 10, s1.at(1, 0, 0) = -60, s1.at(1, 0, 1) = 20;
    clip(s1, bigearthnet_s1_bounds());
    CHECK(s1.at(0, 0, 0) == -48);
    CHECK(s1.at(0, 0, 1) == 6);
    CHECK(s1.at(1, 0, 0) == -42);
    CHECK(s1.at(1, 0, 1) == 16);
    Image other({"HH"}, 1, 1);
    CHECK_THROWS_WITH(clip(other, bigearthnet_s1_bounds()), Catch::Contains("no bounds for band 'HH'"));
}

TEST_CASE("rs radiometry: normalisation with published and computed statistics", "[rs][radiometry]") {
    Image img({"VH", "VV"}, 1, 2);  // order differs from the statistics': matched by name
    img.at(0, 0, 0) = -20.26f, img.at(0, 0, 1) = -20.26f + 5.91f;
    img.at(1, 0, 0) = -12.59f - 2 * 5.26f, img.at(1, 0, 1) = 0;
    img.mask(1)[1] = 0;
    normalize(img, s1_db_stats());
    CHECK(img.at(0, 0, 0) == Approx(0).margin(1e-6));
    CHECK(img.at(0, 0, 1) == Approx(1));
    CHECK(img.at(1, 0, 0) == Approx(-2));
    CHECK(img.at(1, 0, 1) == 0);  // invalid: untouched
    // EuroSAT statistics are named in the files' order: B8A last, B10 cirrus tiny.
    const NormStats e = eurosat_stats();
    CHECK(e.bands.back() == "B8A");
    CHECK(e.mean[static_cast<std::size_t>(e.index_of("B10"))] == Approx(12.11327804));
    // SSL4EO spellings through the sensor's aliases.
    Image s2({"B1", "B10"}, 1, 1);
    s2.at(0, 0, 0) = 1605.57504906f + 786.78685367f;
    s2.at(1, 0, 0) = 22.10351321f;
    const Sensor sen = sentinel2();
    normalize(s2, ssl4eo_s2_l1c_stats(), &sen);
    CHECK(s2.at(0, 0, 0) == Approx(1));
    CHECK(s2.at(1, 0, 0) == Approx(0).margin(1e-5));
    Image l2a({"B10"}, 1, 1);
    CHECK_THROWS_WITH(normalize(l2a, ssl4eo_s2_l2a_stats(), &sen), Catch::Contains("no statistics for band 'B10'"));
    // Computed: population mean / std of valid pixels.
    Image c({"a"}, 1, 5);
    const float vals[5] = {2, 4, 4, 4, 1000};
    for (int x = 0; x < 5; ++x) c.at(0, 0, x) = vals[x];
    c.mask(0)[4] = 0;
    const NormStats cs = compute_stats(c);
    CHECK(cs.mean[0] == Approx(3.5));
    CHECK(cs.std[0] == Approx(std::sqrt(0.75)));
    normalize(c, cs);
    CHECK(c.at(0, 0, 0) == Approx(-1.5 / std::sqrt(0.75)));
}

TEST_CASE("rs radiometry: quad-pol amplitude, intensity and span", "[rs][radiometry]") {
    Image img(quadpol_complex().band_names(), 1, 2, Modality::sar_complex);
    // Pixel 0: HH = 3 + 4i, HV = 1 - 1i, VH = 1 + 1i, VV = 0 + 2i.
    const float v[8] = {3, 4, 1, -1, 1, 1, 0, 2};
    for (int b = 0; b < 8; ++b) img.at(b, 0, 0) = v[b], img.at(b, 0, 1) = 1;
    img.mask(7)[1] = 0;  // VV_im invalid at pixel 1
    const Image amp = quadpol_amplitude(img);
    CHECK(amp.band_names() == std::vector<std::string>{"HH", "HV", "VH", "VV"});
    CHECK(amp.at(0, 0, 0) == Approx(5));
    CHECK(amp.at(1, 0, 0) == Approx(std::sqrt(2.0)));
    CHECK(amp.at(3, 0, 0) == Approx(2));
    const Image in = quadpol_intensity(img);
    CHECK(in.at(0, 0, 0) == Approx(25));
    CHECK(in.at(2, 0, 0) == Approx(2));
    const Image span = quadpol_span(img);
    CHECK(span.band_names() == std::vector<std::string>{"span"});
    CHECK(span.at(0, 0, 0) == Approx(25 + 2 + 2 + 4));
    CHECK(span.modality() == Modality::sar);
    CHECK_FALSE(span.valid(0, 0, 1));
    CHECK(span.valid(0, 0, 0));
    CHECK_FALSE(in.valid(3, 0, 1));
    CHECK(in.valid(0, 0, 1));  // HH's parts are valid at pixel 1: only VV (and the span) are not
    Image missing({"HH_re", "HH_im"}, 1, 1);
    CHECK_THROWS_WITH(quadpol_span(missing), Catch::Contains("no band 'HV_re'"));
}

}  // namespace moe_test_rs_radiometry
