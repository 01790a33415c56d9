// The reader and the preprocessing on the real samples in ../shared/data/rs (MOE_DATA_DIR):
//  - every file there is read, or refused with a clear reason (the JPEGs, JSON, README);
//  - every TIFF's values match Python's independent reading of the same file
//    (tools/reference/rs_read_stats.py: tifffile, or GDAL where tifffile cannot decode);
//  - the products assemble into the band orders their datasets use, with the right radiometry.
// Without the data folder, or without Python's tifffile/GDAL, the affected cases say so and pass.
#include <catch2/catch.hpp>

#include "rs/radiometry.hpp"
#include "rs/tiff.hpp"
#include "skip.hpp"

#if MOE_RS_HAS_TIFF

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace moe_test_rs_real {  // this file's names (unity builds merge test files)

#ifndef MOE_DATA_DIR
#define MOE_DATA_DIR "../shared/data/rs"
#endif
#ifndef MOE_SOURCE_DIR
#define MOE_SOURCE_DIR "."
#endif

using namespace moe::rs;
namespace fs = std::filesystem;

namespace {

fs::path data_dir() {
    if (const char* e = std::getenv("MOE_DATA_DIR"); e && *e) return e;
    return MOE_DATA_DIR;
}
bool have_data() { return fs::is_directory(data_dir()); }
#define MOE_SKIP_WITHOUT_DATA() \
    if (!have_data()) MOE_SKIP("real samples not found at " << data_dir().string() << " (set MOE_DATA_DIR)")

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::string cur;
    std::istringstream in(s);
    while (std::getline(in, cur, sep)) out.push_back(cur);
    return out;
}

/// Runs the Python reader; an empty map and the reason in `why` when it is unavailable.
std::map<std::string, std::vector<std::string>> python_stats(std::string& why) {
    std::map<std::string, std::vector<std::string>> out;
    if (!fs::exists("/usr/bin/python3")) {
        why = "/usr/bin/python3 not found";
        return out;
    }
    const std::string cmd = std::string("/usr/bin/python3 '") + MOE_SOURCE_DIR + "/tools/reference/rs_read_stats.py' '" +
                            data_dir().string() + "' 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) {
        why = "could not start /usr/bin/python3";
        return out;
    }
    std::string text;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
    const int rc = pclose(p);
    if (rc != 0) {
        why = "rs_read_stats.py exited with " + std::to_string(rc) + " (needs python3-tifffile or python3-gdal)";
        return out;
    }
    for (const auto& line : split(text, '\n')) {
        auto f = split(line, '|');
        if (f.size() == 13 || (f.size() == 2 && f[1] == "unreadable")) out[f[0]] = f;
    }
    return out;
}

bool is_tiff_name(const fs::path& p) {
    std::string e = p.extension().string();
    for (auto& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return e == ".tif" || e == ".tiff";
}

/// Reads every file of the data folder: TIFFs must read, the rest must be refused with the
/// reason. With `py` (Python's reading, by relative path) the values are compared too.
void read_every_file(const std::map<std::string, std::vector<std::string>>& py) {
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(data_dir()))
        if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    REQUIRE(files.size() > 50);
    int read = 0, refused = 0, compared = 0, uncompared = 0;
    for (const auto& path : files) {
        const std::string rel = fs::relative(path, data_dir()).string();
        INFO(rel);
        if (!is_tiff_name(path)) {
            // JPEG, JSON, README: not TIFFs, refused with the reason.
            try {
                read_tiff(path);
                FAIL("a non-TIFF file was accepted");
            } catch (const moe::FormatError& e) {
                CHECK(std::string(e.what()).find("not a TIFF file") != std::string::npos);
                ++refused;
            }
            continue;
        }
        Image img = read_tiff(path);
        ++read;
        const auto it = py.find(rel);
        if (py.empty()) continue;
        REQUIRE(it != py.end());
        const auto& f = it->second;
        if (f.size() == 2) {  // e.g. LZW with tifffile but neither imagecodecs nor GDAL
            WARN(rel << ": Python could not read it (install python3-gdal): values not compared");
            ++uncompared;
            continue;
        }
        INFO("python (" << f[12] << "): " << f[1] << " x " << f[2] << " x " << f[3] << " " << f[4] << " sum " << f[5]);
        CHECK(img.bands_count() == std::stoll(f[1]));
        CHECK(img.height() == std::stoll(f[2]));
        CHECK(img.width() == std::stoll(f[3]));
        const std::string dtype = f[4] == "float32" ? "float32" : f[4];
        CHECK(std::string(sample_type_name(img.source_type())) == dtype);
        double sum = 0, sq = 0, mn = INFINITY, mx = -INFINITY;
        for (float v : img.data()) sum += v, sq += double(v) * v, mn = std::min<double>(mn, v), mx = std::max<double>(mx, v);
        const double psum = std::stod(f[5]), psq = std::stod(f[6]);
        if (img.source_type() == SampleType::f32) {  // summation order differs: a relative tolerance
            CHECK(sum == Approx(psum).epsilon(1e-10));
            CHECK(sq == Approx(psq).epsilon(1e-10));
        } else {  // integers: sums are exact in double
            CHECK(sum == psum);
            CHECK(sq == psq);
        }
        CHECK(mn == std::stod(f[7]));
        CHECK(mx == std::stod(f[8]));
        if (f[9] == "none") {
            CHECK_FALSE(img.nodata().has_value());
            CHECK_FALSE(img.has_mask());
        } else {
            REQUIRE(img.nodata().has_value());
            CHECK(*img.nodata() == std::stod(f[9]));
            CHECK(img.invalid_count() == std::stoll(f[10]));
        }
        CHECK(img.geo().epsg == std::stoi(f[11]));
        ++compared;
    }
    CHECK(read >= 80);
    CHECK(refused >= 5);
    if (!py.empty()) {
        CHECK(compared + uncompared == read);
        CHECK(compared > 0);
    }
    std::printf("rs real data: %d TIFFs read (%d compared with Python), %d other files refused\n", read, compared, refused);
}

}  // namespace

TEST_CASE("rs real data: every file is read or refused with a clear reason", "[rs][real]") {
    MOE_SKIP_WITHOUT_DATA();
    read_every_file({});
}

TEST_CASE("rs real data: the values read match Python's reading (tifffile / GDAL)", "[rs][real]") {
    MOE_SKIP_WITHOUT_DATA();
    std::string why;
    const auto py = python_stats(why);
    if (py.empty()) MOE_SKIP("no reference reading: " << why);
    read_every_file(py);
}

TEST_CASE("rs real data: a truncated real GeoTIFF is refused", "[rs][real]") {
    MOE_SKIP_WITHOUT_DATA();
    const auto path = data_dir() / "EuroSAT_MS" / "AnnualCrop" / "AnnualCrop_1.tif";
    std::ifstream in(path, std::ios::binary);
    std::vector<unsigned char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    REQUIRE(bytes.size() > 100000);
    for (double frac : {0.5, 0.9, 0.999}) {
        const auto n = static_cast<std::size_t>(double(bytes.size()) * frac);
        INFO("cut at " << n << " of " << bytes.size());
        CHECK_THROWS_AS(read_tiff(std::span<const unsigned char>(bytes.data(), n), "cut.tif"), moe::FormatError);
    }
}

TEST_CASE("rs real data: EuroSAT MS to ESA order, normalised with EuroSAT statistics", "[rs][real]") {
    MOE_SKIP_WITHOUT_DATA();
    TiffReadOptions o;
    o.band_names = eurosat_band_order();
    o.modality = Modality::multispectral;
    const Image raw = read_tiff(data_dir() / "EuroSAT_MS" / "SeaLake" / "SeaLake_3000.tif", o);
    CHECK(raw.geo().epsg == 32635);
    REQUIRE(raw.geo().pixel_scale.has_value());
    CHECK((*raw.geo().pixel_scale)[0] == Approx(10.0).epsilon(0.01));
    Image img = raw.reorder(sentinel2(), s2_l1c_band_order());
    CHECK(img.band_names()[8] == "B8A");
    for (moe::index_t i = 0; i < img.pixels(); ++i)
        CHECK(img.band("B8A")[static_cast<std::size_t>(i)] == raw.band(12)[static_cast<std::size_t>(i)]);
    // Water: NIR (B08) darker than green (B03) on average.
    const auto mean = [&](const char* b) {
        double s = 0;
        for (float v : img.band(b)) s += v;
        return s / double(img.pixels());
    };
    CHECK(mean("B08") < mean("B03"));
    normalize(img, eurosat_stats());
    const auto st = compute_stats(img);
    for (std::size_t b = 0; b < st.mean.size(); ++b) CHECK(std::abs(st.mean[b]) < 10);
}

TEST_CASE("rs real data: BigEarthNet S2 L2A (12 files, 10/20/60 m) on the 10 m grid", "[rs][real]") {
    MOE_SKIP_WITHOUT_DATA();
    fs::path dir;
    for (const auto& e : fs::recursive_directory_iterator(data_dir() / "BigEarthNet" / "BigEarthNet-S2"))
        if (e.is_regular_file() && e.path().filename().string().ends_with("_B02.tif")) dir = e.path().parent_path();
    REQUIRE(!dir.empty());
    const Image img = read_product(dir, sentinel2(), s2_l2a_band_order());
    CHECK(img.bands_count() == 12);
    CHECK(img.height() == 120);
    CHECK(img.width() == 120);
    CHECK(img.geo().epsg == 32633);
    CHECK((*img.geo().pixel_scale)[0] == 10.0);
    CHECK(img.nodata() == 0.0);
    CHECK(img.modality() == Modality::multispectral);
    // 10 m bands are not resampled: identical to the file.
    const Image b02 = read_tiff(dir / (dir.filename().string() + "_B02.tif"));
    for (moe::index_t i = 0; i < img.pixels(); ++i)
        CHECK(img.band("B02")[static_cast<std::size_t>(i)] == b02.band(0)[static_cast<std::size_t>(i)]);
    // The product name has N9999 (BigEarthNet's own sen2cor run): no ESA baseline, so the
    // configured one (2017 data: before 04.00) applies.
    CHECK_FALSE(s2_processing_baseline(dir.filename().string()).has_value());
    Image refl = img;
    s2_dn_to_reflectance(refl, s2_radiometry(std::nullopt, 2.08));
    const auto r = band_ranges(refl);
    for (const auto& b : r) {
        CHECK(b.min >= 0.0f);
        CHECK(b.max <= 1.5f);
    }
}

TEST_CASE("rs real data: SSL4EO-S12 L2A and L1C with the baseline from metadata.json; S1 dB", "[rs][real]") {
    MOE_SKIP_WITHOUT_DATA();
    const fs::path s2a = data_dir() / "SSL4EO-S12" / "s2a" / "0000200";
    const fs::path s2c = data_dir() / "SSL4EO-S12" / "s2c" / "0000200";
    for (const auto& e : fs::directory_iterator(s2a)) {
        const Image img = read_product(e.path(), sentinel2(), s2_l2a_band_order());
        CHECK(img.bands_count() == 12);
        CHECK(img.height() == 264);
        CHECK(img.geo().epsg == 4326);
        const S2Radiometry r = s2_radiometry(e.path() / "metadata.json", 5.0);
        REQUIRE(r.baseline.has_value());
        CHECK(*r.baseline == Approx(2.14).margin(0.2));  // 2020 products: 02.xx
        CHECK(r.offset == 0);
        CHECK(r.origin.find("metadata.json") != std::string::npos);
    }
    for (const auto& e : fs::directory_iterator(s2c)) {
        const Image img = read_product(e.path(), sentinel2(), s2_l1c_band_order());
        CHECK(img.bands_count() == 13);
        CHECK(img.band_names()[10] == "B10");
    }
    // L2A has no B10: asking for it names the band.
    const auto first = *fs::directory_iterator(s2a);
    CHECK_THROWS_WITH(read_product(first.path(), sentinel2(), s2_l1c_band_order()), Catch::Contains("B10"));
    for (const auto& e : fs::directory_iterator(data_dir() / "SSL4EO-S12" / "s1" / "0000200")) {
        Image s1 = read_product(e.path(), sentinel1(), {"VV", "VH"});
        CHECK(s1.modality() == Modality::sar);
        const auto r = band_ranges(s1);
        CHECK(r[0].max < 15.0f);   // already dB
        CHECK(r[1].min > -50.0f);
        normalize(s1, ssl4eo_s1_stats());
    }
}

TEST_CASE("rs real data: EnMAP int16 band-separate Deflate cube with nodata -32768", "[rs][real]") {
    MOE_SKIP_WITHOUT_DATA();
    int cubes = 0;
    for (const auto& e : fs::recursive_directory_iterator(data_dir() / "HySpecNet-11k")) {
        if (!e.path().filename().string().ends_with("SPECTRAL_IMAGE.TIF")) continue;
        const auto w = enmap_nominal_wavelengths();
        TiffReadOptions o;
        o.band_names = enmap(w).band_names();
        o.modality = Modality::hyperspectral;
        const Image img = read_tiff(e.path(), o);
        CHECK(img.bands_count() == 224);
        CHECK(img.source_type() == SampleType::i16);
        CHECK(img.nodata() == -32768.0);
        CHECK(img.invalid_count() > 0);
        for (const auto& b : band_ranges(img)) CHECK((b.valid == 0 || b.min > -32768.0f));
        ++cubes;
    }
    CHECK(cubes == 2);
}

}  // namespace moe_test_rs_real

#endif
