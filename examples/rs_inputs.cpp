// rs_inputs: from real remote-sensing files to encoder tokens.
//
// Reads each sample folder of ../shared/data/rs (or $MOE_DATA_DIR), prints the bands, their value
// ranges after the usual preprocessing (Sentinel-2 DN -> reflectance with the processing-baseline
// offset; Sentinel-1 dB clipping and normalisation; EnMAP nodata masking), and the token grid each
// adapter produces. The adapters carry random weights here (shapes, not features: load a
// checkpoint with their load() functions for real use). Without the samples it runs on the
// synthesised scene (rs/synth.hpp) and says so.
//
//   build/<preset>/examples/rs_inputs [data dir]
//   build/<preset>/examples/rs_inputs --help
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "moe/backend/cpu/simd.hpp"
#include "rs/rs.hpp"

#ifndef MOE_DATA_DIR
#define MOE_DATA_DIR "../shared/data/rs"
#endif

using namespace moe::rs;
using moe::index_t;
namespace fs = std::filesystem;

namespace {

constexpr const char* kHelp = R"(rs_inputs - from real remote-sensing files to encoder tokens

usage: rs_inputs [DATA_DIR]

Reads every sample folder of DATA_DIR (default $MOE_DATA_DIR, else )" MOE_DATA_DIR R"(),
prints each image's bands and value ranges after the usual preprocessing and the token grid
each adapter (RingMoE, DOFA, SatMAE; random weights) makes of it. Where the default folder is
absent it runs on the synthesised scene and says so; a folder named by DATA_DIR or
$MOE_DATA_DIR must exist and hold the layout of the samples (EuroSAT_MS, EuroSAT_RGB,
BigEarthNet, SSL4EO-S12, UCMerced_LandUse, HySpecNet-11k).

  --help               this text

Exit status: 0 done, 2 a bad invocation (an unknown option, more than one DATA_DIR, a folder
that does not exist or lacks a sample folder: "rs_inputs: <what> '<value>': <what is wrong>" on
stderr), 1 any other failure.
)";

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// The sub-folders run_real() reads.
constexpr const char* kSampleDirs[] = {
    "EuroSAT_MS/AnnualCrop", "EuroSAT_MS/Pasture", "EuroSAT_MS/SeaLake", "EuroSAT_RGB/Pasture", "BigEarthNet",
    "SSL4EO-S12/s2a/0000200", "SSL4EO-S12/s2c/0000200", "SSL4EO-S12/s1/0000200", "UCMerced_LandUse/Images/airplane",
    "UCMerced_LandUse/Images/forest", "HySpecNet-11k"};

/// The data folder: DATA_DIR, else $MOE_DATA_DIR, else the built-in default. `from` says which
/// ("DATA_DIR", "$MOE_DATA_DIR" or empty for the default, which may be absent).
struct DataDir {
    fs::path root;
    std::string from;
};

DataDir parse(int argc, char** argv) {
    DataDir d{fs::path(MOE_DATA_DIR), ""};
    if (const char* e = std::getenv("MOE_DATA_DIR"); e && *e) d = {fs::path(e), "$MOE_DATA_DIR"};
    bool positional = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") throw UsageError("");
        if (arg.size() > 1 && arg[0] == '-') throw UsageError("unknown option '" + arg + "' (see --help)");
        if (positional)
            throw UsageError("unexpected argument '" + arg + "': one DATA_DIR at most (DATA_DIR '" + d.root.string() +
                             "' came first)");
        if (arg.empty()) throw UsageError("DATA_DIR '': needs a directory");
        d = {fs::path(arg), "DATA_DIR"};
        positional = true;
    }
    return d;
}

/// A folder named by DATA_DIR or $MOE_DATA_DIR exists; any folder read holds every sample folder.
void check_data_dir(const DataDir& d) {
    const std::string where = (d.from.empty() ? std::string("the default data folder") : d.from) + " '" + d.root.string() + "'";
    const std::string hint = d.from == "$MOE_DATA_DIR" ? " (unset MOE_DATA_DIR to use the default)" : "";
    std::error_code ec;
    const auto st = fs::status(d.root, ec);
    if (!fs::exists(st)) {
        if (d.from.empty()) return;  // the default may be absent: the synthesised scene, said so
        throw UsageError(where + ": no such directory" + hint);
    }
    if (!fs::is_directory(st)) throw UsageError(where + ": not a directory" + hint);
#if MOE_RS_HAS_TIFF
    for (const char* sub : kSampleDirs)
        if (!fs::is_directory(d.root / sub, ec)) {
            const std::string what = where + ": no " + sub + "/ in it (rs_inputs reads the layout of " MOE_DATA_DIR
                                     ", see its README)" + hint;
            if (d.from.empty()) throw std::runtime_error(what);  // not the caller's doing
            throw UsageError(what);
        }
#else
    if (!d.from.empty())
        throw UsageError(where + ": this build cannot read the samples (built without libtiff: install libtiff-dev "
                         "and rebuild); leave it out to run on the synthesised scene");
#endif
}

constexpr index_t kDim = 32, kPatch = 8;

std::vector<float> randn(std::size_t n, unsigned seed) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(0.0f, 0.05f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}
PatchEmbed random_embed(index_t c, unsigned seed, bool norm) {
    std::vector<float> g, b;
    if (norm) g.assign(kDim, 1.0f), b.assign(kDim, 0.0f);
    return PatchEmbed(c, kDim, kPatch, randn(static_cast<std::size_t>(kDim * c * kPatch * kPatch), seed),
                      randn(kDim, seed + 1), g, b);
}

struct Adapters {
    ModalityPatchEmbed ring;
    WavelengthPatchEmbed dofa;
    BandGroupEmbed satmae;
    Adapters() {
        std::array<PatchEmbed, 4> pe;
        for (int m = 0; m < 4; ++m) pe[static_cast<std::size_t>(m)] = random_embed(ModalityPatchEmbed::kChannels[m], 10u + unsigned(m), true);
        ring = ModalityPatchEmbed(pe);
        const index_t E = 32;
        WavelengthPatchEmbed::Weights w;
        w.wv_dim = E, w.dim = kDim, w.patch = kPatch;
        w.w1 = randn(E * E, 1), w.b1 = randn(E, 2), w.w2 = randn(E * E, 3), w.b2 = randn(E, 4);
        w.wk = randn(static_cast<std::size_t>(kPatch * kPatch * kDim * E), 5), w.bk = randn(kPatch * kPatch * kDim, 6);
        w.wb = randn(kDim * E, 7), w.bb = randn(kDim, 8);
        dofa = WavelengthPatchEmbed(w);
        std::vector<PatchEmbed> proj;
        for (const auto& g : satmae_s2_groups()) proj.push_back(random_embed(static_cast<index_t>(g.size()), 40u + unsigned(proj.size()), false));
        satmae = BandGroupEmbed(satmae_s2_groups(), proj, randn(3 * kDim, 50));
    }
};

void print_image(const std::string& label, const Image& img) {
    std::printf("  %s: %ld bands, %ld x %ld", label.c_str(), long(img.bands_count()), long(img.height()),
                long(img.width()));
    if (img.geo().epsg) std::printf(", EPSG:%d", img.geo().epsg);
    if (img.geo().pixel_scale) std::printf(", pixel %.4g", (*img.geo().pixel_scale)[0]);
    if (img.invalid_count()) std::printf(", %ld invalid samples", long(img.invalid_count()));
    std::printf("\n");
    const auto r = band_ranges(img);
    if (img.bands_count() <= 13) {
        std::printf("    ");
        for (index_t b = 0; b < img.bands_count(); ++b)
            std::printf("%s [%.3g, %.3g]%s", img.band_names()[static_cast<std::size_t>(b)].c_str(),
                        double(r[static_cast<std::size_t>(b)].min), double(r[static_cast<std::size_t>(b)].max),
                        b + 1 < img.bands_count() ? ((b % 5 == 4) ? "\n    " : ", ") : "\n");
    } else {
        float lo = r[0].min, hi = r[0].max;
        for (const auto& x : r) lo = std::min(lo, x.min), hi = std::max(hi, x.max);
        std::printf("    %s .. %s: values in [%.3g, %.3g]\n", img.band_names().front().c_str(),
                    img.band_names().back().c_str(), double(lo), double(hi));
    }
}

void print_tokens(const char* adapter, const Tokens& t) {
    std::printf("    -> %-22s %ld tokens x %ld (%ld group%s of %ld x %ld patches)\n", adapter, long(t.count()),
                long(t.dim()), long(t.groups), t.groups > 1 ? "s" : "", long(t.grid_h), long(t.grid_w));
}

/// Crops to a multiple of the patch size (adapters refuse other sizes).
Image crop_to_patches(const Image& img) {
    const index_t h = img.height() / kPatch * kPatch, w = img.width() / kPatch * kPatch;
    if (h == img.height() && w == img.width()) return img;
    Image out(img.band_names(), h, w, img.modality());
    out.copy_meta_from(img);
    for (index_t b = 0; b < img.bands_count(); ++b)
        for (index_t y = 0; y < h; ++y)
            for (index_t x = 0; x < w; ++x) out.at(b, y, x) = img.at(b, y, x);
    return out;
}

void multispectral_tokens(const Adapters& a, const Image& refl) {
    const Image img = crop_to_patches(refl);
    print_tokens("DOFA (all bands)", a.dofa.forward(img, sentinel2()));
    print_tokens("SatMAE (3 groups)", a.satmae.forward(img.select(a.satmae.accepted_bands())));
    print_tokens("RingMoE multispectral", a.ring.forward(img.select({"B02", "B03", "B04", "B08"})));
}

void sar_tokens(const Adapters& a, const Image& s1) {
    print_tokens("RingMoE SAR-L2 (VV)", a.ring.forward(crop_to_patches(s1).select({"VV"})));
}

#if MOE_RS_HAS_TIFF
void run_real(const fs::path& root, const Adapters& a) {
    const Sensor s2 = sentinel2();
    std::printf("[EuroSAT_MS] Sentinel-2 L1C, 13 bands in one file, B8A last\n");
    for (const auto& cls : {"AnnualCrop", "Pasture", "SeaLake"})
        for (const auto& e : fs::directory_iterator(root / "EuroSAT_MS" / cls)) {
            TiffReadOptions o;
            o.band_names = eurosat_band_order();
            o.modality = Modality::multispectral;
            Image img = read_tiff(e.path(), o).reorder(s2, s2_l1c_band_order());
            s2_dn_to_reflectance(img, s2_radiometry(std::nullopt, 2.0));  // EuroSAT: 2015-2017 data
            print_image(e.path().filename().string() + " (reflectance)", img);
            multispectral_tokens(a, img);
        }
    std::printf("[EuroSAT_RGB] JPEG files\n");
    for (const auto& e : fs::directory_iterator(root / "EuroSAT_RGB" / "Pasture")) {
        try {
            read_tiff(e.path());
        } catch (const moe::FormatError& err) {
            std::printf("  %s: refused: %s\n", e.path().filename().string().c_str(), err.what());
        }
    }
    std::printf("[BigEarthNet] S2 L2A one band per file (10/20/60 m -> 10 m grid), S1 dB, reference map\n");
    for (const auto& e : fs::recursive_directory_iterator(root / "BigEarthNet")) {
        const std::string n = e.path().filename().string();
        if (n.ends_with("_B02.tif")) {
            Image img = read_product(e.path().parent_path(), s2, s2_l2a_band_order());
            const auto r = s2_radiometry(std::nullopt, 2.08);  // N9999 name: 2017 data, before 04.00
            s2_dn_to_reflectance(img, r);
            print_image(e.path().parent_path().filename().string() + " (reflectance, " + r.origin + ")", img);
            multispectral_tokens(a, img);
        } else if (n.ends_with("_VV.tif")) {
            Image img = read_product(e.path().parent_path(), sentinel1(), {"VV", "VH"});
            clip(img, bigearthnet_s1_bounds());
            normalize(img, s1_db_stats());
            print_image(e.path().parent_path().filename().string() + " (dB clipped, normalised)", img);
            sar_tokens(a, img);
        } else if (n.ends_with("_reference_map.tif")) {
            print_image(n + " (class codes)", read_tiff(e.path()));
        }
    }
    std::printf("[SSL4EO-S12] S2 L2A (12 bands) and L1C (13 bands) per date, baseline from metadata.json; S1 dB\n");
    for (const char* level : {"s2a", "s2c"})
        for (const auto& e : fs::directory_iterator(root / "SSL4EO-S12" / level / "0000200")) {
            Image img = read_product(e.path(), s2, std::string(level) == "s2a" ? s2_l2a_band_order() : s2_l1c_band_order());
            const auto r = s2_radiometry(e.path() / "metadata.json", 4.0);
            s2_dn_to_reflectance(img, r);
            char base[32];
            std::snprintf(base, sizeof base, "%.2f", r.baseline.value_or(0));
            print_image(std::string(level) + "/" + e.path().filename().string() + " (reflectance, baseline " + base +
                            ", offset " + std::to_string(int(r.offset)) + ")",
                        img);
            multispectral_tokens(a, img);
        }
    for (const auto& e : fs::directory_iterator(root / "SSL4EO-S12" / "s1" / "0000200")) {
        Image img = read_product(e.path(), sentinel1(), {"VV", "VH"});
        normalize(img, ssl4eo_s1_stats());
        print_image("s1/" + e.path().filename().string().substr(0, 33) + " (dB normalised)", img);
        sar_tokens(a, img);
    }
    std::printf("[UCMerced_LandUse] aerial RGB, uint8\n");
    for (const auto& cls : {"airplane", "forest"})
        for (const auto& e : fs::directory_iterator(root / "UCMerced_LandUse" / "Images" / cls)) {
            TiffReadOptions o;
            o.band_names = {"R", "G", "B"};
            o.modality = Modality::optical;
            Image img = read_tiff(e.path(), o);
            for (auto& v : img.data()) v /= 255.0f;
            print_image(e.path().filename().string() + " (/255)", img);
            print_tokens("RingMoE optical", a.ring.forward(crop_to_patches(img)));
        }
    std::printf("[HySpecNet-11k] EnMAP L2A, 224 bands int16, nodata -32768 (nominal wavelengths: no METADATA.XML)\n");
    const Sensor en = enmap(enmap_nominal_wavelengths());
    for (const auto& e : fs::recursive_directory_iterator(root / "HySpecNet-11k")) {
        if (!e.path().filename().string().ends_with("SPECTRAL_IMAGE.TIF")) continue;
        TiffReadOptions o;
        o.band_names = en.band_names();
        o.modality = Modality::hyperspectral;
        Image img = read_tiff(e.path(), o);
        for (index_t b = 0; b < img.bands_count(); ++b) {  // EnMAP L2A reflectance scale 1e-4
            auto d = img.band(b);
            const auto m = img.mask(b);
            for (std::size_t i = 0; i < d.size(); ++i)
                if (m.empty() || m[i]) d[i] *= 1e-4f;
        }
        print_image(e.path().filename().string().substr(0, 24) + "...SPECTRAL_IMAGE (reflectance)", img);
        print_tokens("DOFA (224 bands)", a.dofa.forward(crop_to_patches(img), en));
    }
}
#endif

void run_synthetic(const Adapters& a) {
    Image s2 = synth_s2_dn(64, 2.14);
    s2_dn_to_reflectance(s2, s2_radiometry(std::nullopt, 2.14));
    print_image("synthetic Sentinel-2 (reflectance)", s2);
    multispectral_tokens(a, s2);
    Image s1 = synth_s1_db(64);
    normalize(s1, s1_db_stats());
    print_image("synthetic Sentinel-1 (dB normalised)", s1);
    sar_tokens(a, s1);
    Image rgbi = synth_rgb(64);
    for (auto& v : rgbi.data()) v /= 255.0f;
    print_image("synthetic RGB (/255)", rgbi);
    print_tokens("RingMoE optical", a.ring.forward(rgbi));
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const DataDir data = parse(argc, argv);
        check_data_dir(data);
        const Adapters adapters;
        std::printf("rs_inputs (moe %s)\n", moe::cpu::simd_name());
#if MOE_RS_HAS_TIFF
        const fs::path& root = data.root;
        if (fs::is_directory(root)) {  // an explicit DATA_DIR or $MOE_DATA_DIR is one (check_data_dir)
            std::printf("rs_inputs: real samples from %s\n", root.string().c_str());
            run_real(root, adapters);
        } else {
            std::printf("rs_inputs: no real samples at %s: running on the synthesised scene\n", root.string().c_str());
            run_synthetic(adapters);
        }
#else
        std::printf("rs_inputs: built without libtiff (libtiff-dev): running on the synthesised scene\n");
        run_synthetic(adapters);
#endif
        // No real quad-pol sample: the SAR-L1 branch and its span target on the synthetic scene.
        std::printf("[quad-pol SAR] synthetic complex HH/HV/VH/VV (no real sample)\n");
        const Image cx = synth_quadpol(64);
        Image span = quadpol_span(cx);
        power_to_db(span);
        print_image("span (dB), RingMoE's SAR-L1 reconstruction target", span);
        print_tokens("RingMoE SAR-L1", adapters.ring.forward(cx));
    } catch (const UsageError& e) {
        if (std::string(e.what()).empty()) {
            std::fputs(kHelp, stdout);
            return 0;
        }
        std::fprintf(stderr, "rs_inputs: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "rs_inputs: %s\n", e.what());
        return 1;
    }
    return 0;
}
