// Parity: the remote-sensing adapters (include/rs/adapters.hpp) and resampling (rs/image.hpp)
// vs. tools/reference/rs_adapters.py and torch.nn.functional.interpolate (fixtures written by
// tools/reference/fixtures_rs.py):
//   rs_ringmoe_embed   RingMoE's four per-modality patch embeddings (Conv2d 4x4 + LayerNorm),
//                      loaded by their checkpoint names, one image per modality; the embedding is
//                      chosen from the image's modality
//   rs_dofa_embed      wavelength-conditioned embedding (MLP generator), one set of weights, two
//                      band subsets
//   rs_dofa_transformer  the same with DOFA's transformer generator, loaded by DOFA's names, conv
//                      padding 1 (grids of non-multiple sizes)
//   rs_satmae_embed    band groups + group encoding
//   rs_resample        bilinear (align_corners=False) and nearest-exact, x2, x6 and downsampling
// Tolerances: tokens relative Frobenius error <= 1e-5 (fp32 both sides; DOFA <= 1e-5 too: the
// kernel generation is fp32 in both); resampling max |diff| <= 1e-3 on values of magnitude 1000
// (float rounding of the taps).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "parity_util.hpp"
#include "rs/adapters.hpp"

namespace moe_test_parity_rs_adapters {  // this file's names (unity builds merge test files)

using namespace moe_test;
using namespace moe::rs;

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::string cur;
    std::istringstream in(s);
    while (std::getline(in, cur, sep)) out.push_back(cur);
    return out;
}

Image image_from(const moe::TensorView& x, const std::vector<std::string>& bands, Modality m) {
    REQUIRE(x.rank() == 3);
    REQUIRE(x.dim(0) == static_cast<index_t>(bands.size()));
    Image img(bands, x.dim(1), x.dim(2), m);
    const float* p = x.data<float>();
    std::copy(p, p + x.numel(), img.data().begin());
    return img;
}

double check_tokens(const Tokens& t, const moe::TensorView& ref, const std::string& what) {
    REQUIRE(ref.rank() == 2);
    REQUIRE(t.count() == ref.dim(0));
    REQUIRE(t.dim() == ref.dim(1));
    const double err = rel_error(t.tokens.matrix<float>(), ref.matrix<float>());
    INFO(what << ": relative error " << err);
    CHECK(err <= 1e-5);
    return err;
}

Modality modality_from(const std::string& s) {
    if (s == "optical") return Modality::optical;
    if (s == "sar_complex") return Modality::sar_complex;
    if (s == "sar") return Modality::sar;
    if (s == "multispectral") return Modality::multispectral;
    FAIL("unknown modality " << s);
    return Modality::unknown;
}

}  // namespace

TEST_CASE("parity: RingMoE per-modality patch embeddings, chosen by modality", "[parity][rs]") {
    const auto f = open_fixture("rs_ringmoe_embed");
    const ModalityPatchEmbed pe = ModalityPatchEmbed::load(f, "encoder.");
    double worst = 0;
    for (int m = 0; m < 4; ++m) {
        const auto bands = split(meta(f, "bands_" + std::to_string(m)), ',');
        const Image img = image_from(f.get("__input_" + std::to_string(m) + "__"), bands,
                                     modality_from(meta(f, "modality_" + std::to_string(m))));
        const Tokens t = pe.forward(img);
        CHECK(t.grid_h == img.height() / 4);
        CHECK(t.grid_w == img.width() / 4);
        worst = std::max(worst, check_tokens(t, f.get("__output_" + std::to_string(m) + "__"), "modality " + std::to_string(m)));
    }
    std::printf("parity rs_ringmoe_embed   max rel %.2e (4 modalities)\n", worst);
    // An optical image fed as multispectral is refused, naming the bands it accepts.
    Image rgb_as_ms = image_from(f.get("__input_0__"), {"R", "G", "B"}, Modality::multispectral);
    CHECK_THROWS_WITH(pe.forward(rgb_as_ms), Catch::Contains("multispectral") && Catch::Contains("B, G, R, NIR"));
    // A mis-shaped checkpoint tensor is named.
    const auto bad = edited(f, "encoder.patch_embed1.projection.weight", "encoder.patch_embed1.projection.weight",
                            nullptr);
    CHECK_THROWS_AS(ModalityPatchEmbed::load(bad, "encoder."), moe::NotFoundError);
}

TEST_CASE("parity: DOFA-style wavelength-conditioned embedding, two band subsets, one set of weights",
          "[parity][rs]") {
    const auto f = open_fixture("rs_dofa_embed");
    const WavelengthPatchEmbed pe = WavelengthPatchEmbed::load(f, meta_int(f, "patch"), "patch_embed.");
    const Sensor s2 = sentinel2();
    double worst = 0;
    for (int i = 0; i < 2; ++i) {
        const auto bands = split(meta(f, "bands_" + std::to_string(i)), ',');
        const Image img = image_from(f.get("__input_" + std::to_string(i) + "__"), bands, Modality::multispectral);
        worst = std::max(worst, check_tokens(pe.forward(img, s2), f.get("__output_" + std::to_string(i) + "__"),
                                             "subset " + std::to_string(i)));
    }
    std::printf("parity rs_dofa_embed      max rel %.2e (3 and 10 bands)\n", worst);
    // A band the sensor does not know is refused.
    Image img = image_from(f.get("__input_0__"), {"B04", "B03", "XX"}, Modality::multispectral);
    CHECK_THROWS_WITH(pe.forward(img, s2), Catch::Contains("refuses band(s) XX"));
}

TEST_CASE("parity: DOFA's transformer weight generator (DOFA names, conv padding 1)", "[parity][rs]") {
    const auto f = open_fixture("rs_dofa_transformer");
    const WavelengthPatchEmbed pe = WavelengthPatchEmbed::load(f, meta_int(f, "patch"), "patch_embed.");
    REQUIRE(pe.dofa_generator());
    CHECK(pe.padding() == meta_int(f, "padding"));
    const Sensor s2 = sentinel2();
    double worst = 0;
    for (int i = 0; i < 2; ++i) {
        const auto bands = split(meta(f, "bands_" + std::to_string(i)), ',');
        const Image img = image_from(f.get("__input_" + std::to_string(i) + "__"), bands, Modality::multispectral);
        worst = std::max(worst, check_tokens(pe.forward(img, s2), f.get("__output_" + std::to_string(i) + "__"),
                                             "subset " + std::to_string(i)));
    }
    std::printf("parity rs_dofa_transformer max rel %.2e (4 and 10 bands, 16x16 and 13x18 px)\n", worst);
    // A missing generator tensor is named.
    const auto bad = edited(f, "patch_embed.weight_generator.bias_token");
    CHECK_THROWS_WITH(WavelengthPatchEmbed::load(bad, 4, "patch_embed."), Catch::Contains("bias_token"));
}

TEST_CASE("parity: SatMAE-style band groups with group encoding", "[parity][rs]") {
    const auto f = open_fixture("rs_satmae_embed");
    std::vector<std::vector<std::string>> groups;
    for (const auto& g : split(meta(f, "groups"), ';')) groups.push_back(split(g, ','));
    REQUIRE(groups == satmae_s2_groups());
    const BandGroupEmbed pe = BandGroupEmbed::load(f, groups, "patch_embed.", "group_embed");
    const Image img = image_from(f.get("__input__"), split(meta(f, "bands"), ','), Modality::multispectral);
    const Tokens t = pe.forward(img);
    CHECK(t.groups == 3);
    const double err = check_tokens(t, f.get("__output__"), "satmae");
    std::printf("parity rs_satmae_embed    rel %.2e\n", err);
    // Missing and extra bands are named.
    CHECK_THROWS_WITH(pe.forward(img.select({"B02", "B03", "B04", "B08"})), Catch::Contains("missing B05"));
}

TEST_CASE("parity: resampling vs torch interpolate (bilinear, nearest-exact)", "[parity][rs]") {
    const auto f = open_fixture("rs_resample");
    const Image img = image_from(f.get("__input__"), {"a", "b"}, Modality::multispectral);
    double worst = 0;
    for (const char* name : {"up2", "up6", "down"})
        for (const char* kind : {"bilinear", "nearest"}) {
            const moe::TensorView ref = f.get(std::string("__") + kind + "_" + name + "__");
            const Image out = resample(img, ref.dim(1), ref.dim(2),
                                       std::string(kind) == "bilinear" ? Resampling::bilinear : Resampling::nearest);
            const float* r = ref.data<float>();
            double maxd = 0;
            for (index_t i = 0; i < ref.numel(); ++i)
                maxd = std::max(maxd, std::abs(double(out.data()[static_cast<std::size_t>(i)]) - double(r[i])));
            INFO(kind << " " << name << ": max |diff| " << maxd);
            CHECK(maxd <= 1e-3);
            if (std::string(kind) == "nearest") CHECK(maxd == 0);
            worst = std::max(worst, maxd);
        }
    std::printf("parity rs_resample        max |diff| %.2e (values ~1e3)\n", worst);
}

}  // namespace moe_test_parity_rs_adapters
