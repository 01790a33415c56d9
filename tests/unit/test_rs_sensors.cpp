// Sensors, band lookup by name and alias, dataset band orders, the user-owned registry.
#include <catch2/catch.hpp>

#include "rs/sensors.hpp"

namespace moe_test_rs_sensors {  // this file's names (unity builds merge test files)

using namespace moe::rs;

TEST_CASE("rs sensors: Sentinel-2 bands, wavelengths and resolutions", "[rs][sensors]") {
    const Sensor s2 = sentinel2();
    REQUIRE(s2.size() == 13);
    CHECK(s2.modality() == Modality::multispectral);
    CHECK(s2.band_names() == std::vector<std::string>{"B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                                                      "B09", "B10", "B11", "B12"});
    CHECK(s2.band("B8A").wavelength_um == 0.8647);
    CHECK(s2.band("B10").wavelength_um == 1.3735);
    CHECK(s2.band("b1").name == "B01");  // alias, case-insensitive
    CHECK(s2.canonical("B9") == "B09");
    // Native resolutions: 10 m B02-B04, B08; 20 m B05-B07, B8A, B11, B12; 60 m B01, B09, B10.
    for (const char* b : {"B02", "B03", "B04", "B08"}) CHECK(s2.band(b).resolution_m == 10);
    for (const char* b : {"B05", "B06", "B07", "B8A", "B11", "B12"}) CHECK(s2.band(b).resolution_m == 20);
    for (const char* b : {"B01", "B09", "B10"}) CHECK(s2.band(b).resolution_m == 60);
    // Wavelengths increase along ESA's order.
    for (int i = 1; i < 13; ++i) CHECK(s2.bands()[i].wavelength_um > s2.bands()[i - 1].wavelength_um);
    CHECK_THROWS_WITH(s2.index_of("B13"), Catch::Contains("unknown band 'B13'") && Catch::Contains("B8A"));
    CHECK_THROWS_AS(s2.band("VV"), moe::NotFoundError);
}

TEST_CASE("rs sensors: Sentinel-1, Landsat 8/9, RGB, EnMAP, quad-pol", "[rs][sensors]") {
    const Sensor s1 = sentinel1();
    CHECK(s1.band_names() == std::vector<std::string>{"VV", "VH", "HH", "HV"});
    CHECK(s1.modality() == Modality::sar);
    CHECK(s1.band("VV").wavelength_um == Approx(299792458.0 / 5.405e9 * 1e6));
    const Sensor l8 = landsat89();
    CHECK(l8.size() == 11);
    CHECK(l8.band("nir").name == "B5");
    CHECK(l8.band("B8").resolution_m == 15);
    CHECK(rgb().band_names() == std::vector<std::string>{"R", "G", "B"});
    const auto w = enmap_nominal_wavelengths();
    REQUIRE(w.size() == 224);
    const Sensor en = enmap(w);
    CHECK(en.size() == 224);
    CHECK(en.bands().front().name == "B001");
    CHECK(en.bands().back().name == "B224");
    CHECK(en.band("B224").wavelength_um == Approx(2.4455));
    CHECK(en.modality() == Modality::hyperspectral);
    CHECK_THROWS_AS(enmap(std::vector<double>(10, 0.5)), moe::ConfigError);
    auto bad = w;
    bad[3] = 5.0;
    CHECK_THROWS_WITH(enmap(bad), Catch::Contains("band 4"));
    CHECK(quadpol_complex().band_names() ==
          std::vector<std::string>{"HH_re", "HH_im", "HV_re", "HV_im", "VH_re", "VH_im", "VV_re", "VV_im"});
}

TEST_CASE("rs sensors: dataset band orders and permutations", "[rs][sensors]") {
    const Sensor s2 = sentinel2();
    // EuroSAT -> ESA: B8A moves from last to after B08.
    const auto p = band_permutation(s2, eurosat_band_order(), s2_l1c_band_order());
    CHECK(p == std::vector<moe::index_t>{0, 1, 2, 3, 4, 5, 6, 7, 12, 8, 9, 10, 11});
    // L1C -> L2A: drop B10.
    const auto q = band_permutation(s2, s2_l1c_band_order(), s2_l2a_band_order());
    CHECK(q == std::vector<moe::index_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12});
    // SSL4EO spellings (B1, B8A) map onto canonical names.
    const auto r = band_permutation(s2, {"B1", "B2", "B3"}, {"B03", "B01"});
    CHECK(r == std::vector<moe::index_t>{2, 0});
    // L2A has no B10: asking for it fails with the band named.
    CHECK_THROWS_WITH(band_permutation(s2, s2_l2a_band_order(), s2_l1c_band_order()),
                      Catch::Contains("band 'B10' is not among the source bands"));
}

TEST_CASE("rs sensors: a user-owned registry with user sensors", "[rs][sensors]") {
    SensorRegistry reg;
    CHECK(reg.has("sentinel2"));
    CHECK(reg.get("Sentinel1").name() == "sentinel1");
    CHECK_THROWS_WITH(reg.get("worldview3"), Catch::Contains("unknown sensor 'worldview3'") && Catch::Contains("landsat89"));
    reg.add(Sensor("drone_rgbn", Modality::multispectral,
                   {{"R", 0.668, 0.05, {}}, {"G", 0.560, 0.05, {}}, {"B", 0.475, 0.05, {}}, {"NIR", 0.842, 0.05, {}}}));
    CHECK(reg.get("drone_rgbn").band("nir").wavelength_um == 0.842);
    CHECK_THROWS_AS(reg.add(rgb()), moe::ConfigError);
    reg.add(Sensor("rgb", Modality::optical, {{"R", 0.6, 0, {}}}), true);
    CHECK(reg.get("rgb").size() == 1);
    SensorRegistry fresh;  // registries are independent objects
    CHECK(fresh.get("rgb").size() == 3);
    CHECK_FALSE(fresh.has("drone_rgbn"));
    CHECK_THROWS_AS(Sensor("x", Modality::sar, {{"A", 1, 0, {}}, {"a", 2, 0, {}}}), moe::ConfigError);
    CHECK_THROWS_AS(Sensor("x", Modality::sar, {}), moe::ConfigError);
}

}  // namespace moe_test_rs_sensors
