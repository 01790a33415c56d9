// The synthetic scene (rs/synth.hpp) behaves like real surfaces where the examples rely on it.
#include <catch2/catch.hpp>

#include "rs/radiometry.hpp"
#include "rs/synth.hpp"

namespace moe_test_rs_synth {  // this file's names (unity builds merge test files)

using namespace moe::rs;

TEST_CASE("rs synth: spectra and scene are physically plausible and deterministic", "[rs][synth]") {
    // Vegetation's red edge, water dark in the NIR, soil brighter in the SWIR than in the blue.
    CHECK(cover_reflectance(Cover::vegetation, 0.8328) > 5 * cover_reflectance(Cover::vegetation, 0.6646));
    CHECK(cover_reflectance(Cover::water, 0.8328) < cover_reflectance(Cover::water, 0.5598));
    CHECK(cover_reflectance(Cover::soil, 1.6137) > cover_reflectance(Cover::soil, 0.4927));
    CHECK(cover_reflectance(Cover::urban, 0.6) == Approx(0.15 + (0.6 - 0.5598) / (0.6646 - 0.5598) * 0.01));
    const auto cover = synth_cover(64);
    int counts[4] = {};
    for (auto c : cover) ++counts[static_cast<int>(c)];
    for (int c : counts) CHECK(c > 64);  // every class present
    Image dn = synth_s2_dn(32, 4.0);
    CHECK(dn.bands_count() == 13);
    CHECK(band_ranges(dn)[1].min >= 1000.0f);  // baseline 04.00: +1000 offset in the DNs
    Image again = synth_s2_dn(32, 4.0);
    CHECK(std::equal(dn.data().begin(), dn.data().end(), again.data().begin()));
    s2_dn_to_reflectance(dn, s2_radiometry(std::nullopt, 4.0));
    CHECK(band_ranges(dn)[7].max < 0.6f);
    const Image cx = synth_quadpol(16);
    CHECK(cx.modality() == Modality::sar_complex);
    const Image span = quadpol_span(cx);
    CHECK(band_ranges(span)[0].min > 0.0f);
    CHECK(synth_s1_db(16).band_names() == std::vector<std::string>{"VV", "VH"});
    CHECK(band_ranges(synth_rgb(16))[0].max <= 255.0f);
}

}  // namespace moe_test_rs_synth
