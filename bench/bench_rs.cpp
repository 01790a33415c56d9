// bench/bench_rs.cpp - reading + preprocessing real Sentinel-2 samples (rs/tiff.hpp,
// rs/radiometry.hpp), to compare with Debian's GDAL Python bindings doing the same
// (tools/bench/gdal_read.py; bench/run_rs.sh runs both in one go).
//
//   rs/eurosat/read             one EuroSAT MS GeoTIFF (64 x 64 x 13 uint16, pixel-interleaved)
//                               into a float32 band-sequential image
//   rs/eurosat/preprocess       the same + EuroSAT -> ESA band order + DN -> reflectance (DN 0 =
//                               nodata) + per-band normalisation with EuroSAT statistics (in
//                               reflectance units)
//   rs/ssl4eo_l2a/read          the 12 single-band files of one SSL4EO-S12 L2A product, 20/60 m
//                               bands resampled (bilinear) to the 264 x 264 10 m grid
//   rs/ssl4eo_l2a/preprocess    the same + baseline from metadata.json + reflectance + normalisation
//                               with SSL4EO-S12 L2A statistics
// Needs the samples in ../shared/data/rs (or $MOE_DATA_DIR): skipped otherwise. One thread.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>

#include "moe/backend/cpu/simd.hpp"
#include "rs/radiometry.hpp"
#include "rs/tiff.hpp"

namespace {

namespace fs = std::filesystem;
using namespace moe::rs;

#if MOE_RS_HAS_TIFF
fs::path data_dir() {
    if (const char* e = std::getenv("MOE_DATA_DIR"); e && *e) return e;
    return fs::path(MOE_SOURCE_DIR) / ".." / "shared" / "data" / "rs";
}
fs::path eurosat_file() { return data_dir() / "EuroSAT_MS" / "AnnualCrop" / "AnnualCrop_1.tif"; }
fs::path ssl4eo_dir() {
    return data_dir() / "SSL4EO-S12" / "s2a" / "0000200" / "20200604T054639_20200604T054831_T43RCP";
}

void eurosat(benchmark::State& st, bool preprocess) {
    if (!fs::exists(eurosat_file())) {
        st.SkipWithError("EuroSAT sample not found (set MOE_DATA_DIR)");
        return;
    }
    const Sensor s2 = sentinel2();
    const NormStats stats = eurosat_stats();
    TiffReadOptions o;
    o.band_names = eurosat_band_order();
    o.modality = Modality::multispectral;
    if (preprocess) o.output_bands = s2_l1c_band_order();  // EuroSAT's order -> ESA's, while reading
    for (auto _ : st) {
        Image img = read_tiff(eurosat_file(), o);
        if (preprocess) {
            const S2Radiometry r;  // EuroSAT (2015-2017): before baseline 04.00
            s2_dn_to_reflectance(img, r);
            normalize(img, to_reflectance(stats, r), &s2);
        }
        benchmark::DoNotOptimize(img.data().data());
    }
    st.counters["pixels/s"] = benchmark::Counter(double(64 * 64 * 13) * double(st.iterations()), benchmark::Counter::kIsRate);
}

void ssl4eo(benchmark::State& st, bool preprocess) {
    if (!fs::is_directory(ssl4eo_dir())) {
        st.SkipWithError("SSL4EO-S12 sample not found (set MOE_DATA_DIR)");
        return;
    }
    const Sensor s2 = sentinel2();
    const NormStats stats = ssl4eo_s2_l2a_stats();
    const auto bands = s2_l2a_band_order();
    ProductOptions o;
    o.resampling = Resampling::bilinear;
    for (auto _ : st) {
        Image img = read_product(ssl4eo_dir(), s2, bands, o);
        if (preprocess) {
            const S2Radiometry r = s2_radiometry(ssl4eo_dir() / "metadata.json", 4.0);
            s2_dn_to_reflectance(img, r);
            normalize(img, to_reflectance(stats, r), &s2);
        }
        benchmark::DoNotOptimize(img.data().data());
    }
    st.counters["pixels/s"] = benchmark::Counter(double(264 * 264 * 12) * double(st.iterations()), benchmark::Counter::kIsRate);
}

BENCHMARK_CAPTURE(eurosat, read, false)->Name("rs/eurosat/read")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(eurosat, preprocess, true)->Name("rs/eurosat/preprocess")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(ssl4eo, read, false)->Name("rs/ssl4eo_l2a/read")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(ssl4eo, preprocess, true)->Name("rs/ssl4eo_l2a/preprocess")->Unit(benchmark::kMicrosecond)->UseRealTime();
#endif

// Which SIMD path these figures come from, in the context header of every run.
const bool simd_context_added = [] {
    benchmark::AddCustomContext("moe.simd", moe::cpu::simd_name());
    return true;
}();

}  // namespace
