// Properties of the adapters (include/rs/adapters.hpp) that follow from their definitions; the
// values themselves are checked against PyTorch in tests/parity/test_parity_rs_adapters.cpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "rs/adapters.hpp"
#include "random_inputs.hpp"

namespace moe_test_rs_adapters {  // this file's names (unity builds merge test files)

using namespace moe::rs;
using moe::index_t;

namespace {

std::vector<float> randn(std::size_t n, unsigned seed, float scale = 0.1f) { return moe_test::randn(n, seed, scale); }

Image random_image(std::vector<std::string> bands, index_t h, index_t w, Modality m, unsigned seed) {
    Image img(std::move(bands), h, w, m);
    auto v = randn(img.data().size(), seed, 1.0f);
    std::copy(v.begin(), v.end(), img.data().begin());
    return img;
}

PatchEmbed random_embed(index_t c, index_t d, index_t p, unsigned seed, bool norm) {
    std::vector<float> g, b;
    if (norm) g.assign(static_cast<std::size_t>(d), 1.0f), b.assign(static_cast<std::size_t>(d), 0.0f);
    return PatchEmbed(c, d, p, randn(static_cast<std::size_t>(d * c * p * p), seed),
                      randn(static_cast<std::size_t>(d), seed + 1), g, b);
}

}  // namespace

TEST_CASE("rs adapters: a one-hot patch embedding returns the patch pixels (im2col order c, ky, kx)",
          "[rs][adapters]") {
    const index_t C = 2, p = 2, D = C * p * p;
    std::vector<float> w(static_cast<std::size_t>(D * D), 0.0f);
    for (index_t i = 0; i < D; ++i) w[static_cast<std::size_t>(i * D + i)] = 1.0f;
    const PatchEmbed pe(C, D, p, w, std::vector<float>(static_cast<std::size_t>(D), 0.5f));
    Image img({"a", "b"}, 4, 6);
    for (index_t i = 0; i < static_cast<index_t>(img.data().size()); ++i) img.data()[static_cast<std::size_t>(i)] = float(i);
    const Tokens t = pe.forward(img, {0, 1});
    REQUIRE(t.grid_h == 2);
    REQUIRE(t.grid_w == 3);
    const float* y = t.tokens.data<float>();
    for (index_t ty = 0; ty < 2; ++ty)
        for (index_t tx = 0; tx < 3; ++tx)
            for (index_t c = 0; c < C; ++c)
                for (index_t ky = 0; ky < p; ++ky)
                    for (index_t kx = 0; kx < p; ++kx)
                        CHECK(y[(ty * 3 + tx) * D + (c * p + ky) * p + kx] == img.at(c, ty * p + ky, tx * p + kx) + 0.5f);
    CHECK_THROWS_WITH(pe.forward(Image({"a", "b"}, 5, 6), {0, 1}), Catch::Contains("not a multiple of the patch size 2"));

    // Zero padding 1 (DOFA's conv): a 5 x 6 image gives a ((5 + 2 - 2) / 2 + 1) x ((6 + 2 - 2) / 2 + 1)
    // = 3 x 4 grid; patch (ty, tx) starts at pixel (2 ty - 1, 2 tx - 1), zeros outside the image.
    PatchEmbed padded = pe;
    padded.set_padding(1);
    Image odd({"a", "b"}, 5, 6);
    for (index_t i = 0; i < static_cast<index_t>(odd.data().size()); ++i) odd.data()[static_cast<std::size_t>(i)] = float(i + 1);
    const Tokens tp = padded.forward(odd, {0, 1});
    REQUIRE(tp.grid_h == 3);
    REQUIRE(tp.grid_w == 4);
    const float* yp = tp.tokens.data<float>();
    for (index_t ty = 0; ty < 3; ++ty)
        for (index_t tx = 0; tx < 4; ++tx)
            for (index_t c = 0; c < C; ++c)
                for (index_t ky = 0; ky < p; ++ky)
                    for (index_t kx = 0; kx < p; ++kx) {
                        const index_t y = ty * p + ky - 1, x = tx * p + kx - 1;
                        const float want = (y >= 0 && y < 5 && x >= 0 && x < 6) ? odd.at(c, y, x) : 0.0f;
                        CHECK(yp[(ty * 4 + tx) * D + (c * p + ky) * p + kx] == want + 0.5f);
                    }
    CHECK_THROWS_AS(padded.set_padding(2), moe::ConfigError);
}

TEST_CASE("rs adapters: RingMoE embeddings are chosen by modality and refuse other bands", "[rs][adapters]") {
    std::array<PatchEmbed, 4> pes;
    for (int m = 0; m < 4; ++m) pes[static_cast<std::size_t>(m)] = random_embed(ModalityPatchEmbed::kChannels[m], 16, 4, 10u + unsigned(m), true);
    const ModalityPatchEmbed rm(pes);
    // LayerNorm with gamma 1, beta 0: every token has mean 0, variance ~1.
    const Image opt = random_image({"R", "G", "B"}, 8, 8, Modality::optical, 1);
    const Tokens t = rm.forward(opt);
    const float* y = t.tokens.data<float>();
    for (index_t n = 0; n < t.count(); ++n) {
        double s = 0, q = 0;
        for (index_t d = 0; d < 16; ++d) s += y[n * 16 + d], q += double(y[n * 16 + d]) * y[n * 16 + d];
        CHECK(s / 16 == Approx(0).margin(1e-5));
        CHECK(q / 16 == Approx(1).epsilon(1e-3));
    }
    // The same pixels as S2 true colour (B04, B03, B02) go through the same optical embedding.
    Image s2 = opt;
    s2.set_band_names({"B04", "B03", "B02"});
    const Tokens t2 = rm.forward(s2);
    for (index_t i = 0; i < t.tokens.numel(); ++i) CHECK(t2.tokens.data<float>()[i] == y[i]);
    // SAR-L2: one amplitude band replicated = the 3-channel embedding of three copies.
    const Image vv = random_image({"VV"}, 8, 8, Modality::sar, 2);
    const Tokens ts = rm.forward(vv);
    const Tokens direct = rm.embed(RingModality::sar_l2).forward(vv, {0, 0, 0});
    for (index_t i = 0; i < ts.tokens.numel(); ++i) CHECK(ts.tokens.data<float>()[i] == direct.tokens.data<float>()[i]);
    // SAR-L1 takes the 8 complex channels in any band order (selected by name).
    const Image cx = random_image(quadpol_complex().band_names(), 8, 8, Modality::sar_complex, 3);
    const Image cx_rev = cx.select({"VV_im", "VV_re", "VH_im", "VH_re", "HV_im", "HV_re", "HH_im", "HH_re"});
    const Tokens a = rm.forward(cx), b = rm.forward(cx_rev);
    for (index_t i = 0; i < a.tokens.numel(); ++i) CHECK(a.tokens.data<float>()[i] == b.tokens.data<float>()[i]);
    // Refusals.
    CHECK_THROWS_WITH(rm.forward(random_image({"R", "G", "B", "NIR"}, 8, 8, Modality::optical, 4)),
                      Catch::Contains("optical") && Catch::Contains("R, G, B | B04, B03, B02"));
    CHECK_THROWS_WITH(rm.forward(random_image({"B001"}, 8, 8, Modality::hyperspectral, 5)),
                      Catch::Contains("no patch embedding for modality 'hyperspectral'"));
    std::array<PatchEmbed, 4> wrong = pes;
    wrong[1] = random_embed(3, 16, 4, 99, true);
    CHECK_THROWS_WITH(ModalityPatchEmbed(wrong), Catch::Contains("SAR-L1 embedding takes 3 channels, RingMoE's takes 8"));
}

TEST_CASE("rs adapters: the wavelength-conditioned embedding is band-order invariant and takes any subset",
          "[rs][adapters]") {
    const index_t E = 16, D = 12, p = 2;
    WavelengthPatchEmbed::Weights w;
    w.wv_dim = E, w.dim = D, w.patch = p;
    w.w1 = randn(static_cast<std::size_t>(E * E), 1), w.b1 = randn(static_cast<std::size_t>(E), 2);
    w.w2 = randn(static_cast<std::size_t>(E * E), 3), w.b2 = randn(static_cast<std::size_t>(E), 4);
    w.wk = randn(static_cast<std::size_t>(p * p * D * E), 5), w.bk = randn(static_cast<std::size_t>(p * p * D), 6);
    w.wb = randn(static_cast<std::size_t>(D * E), 7), w.bb = randn(static_cast<std::size_t>(D), 8);
    const WavelengthPatchEmbed pe(w);
    const Sensor s2 = sentinel2();
    const Image img = random_image({"B02", "B03", "B04", "B08", "B11"}, 6, 8, Modality::multispectral, 9);
    const Tokens a = pe.forward(img, s2);
    // Reordering the bands reorders their generated kernels with them: same tokens (up to rounding).
    const Tokens b = pe.forward(img.select({"B11", "B04", "B02", "B08", "B03"}), s2);
    for (index_t i = 0; i < a.tokens.numel(); ++i)
        CHECK(b.tokens.data<float>()[i] == Approx(a.tokens.data<float>()[i]).margin(1e-5));
    // Any subset works with the same weights; SSL4EO spellings resolve through the sensor.
    Image sub = img.select({"B04", "B03", "B02"});
    sub.set_band_names({"B4", "B3", "B2"});
    CHECK(pe.forward(sub, s2).count() == 12);
    // Landsat's thermal band (10.9 um) is in range; S1's radar wavelength is not.
    CHECK(pe.accepted_bands(landsat89()).size() == 11);
    CHECK(pe.accepted_bands(sentinel1()).empty());
    CHECK_THROWS_WITH(pe.forward(random_image({"VV"}, 2, 2, Modality::sar, 1), sentinel1()),
                      Catch::Contains("refuses band(s) VV"));
    // The generated kernel depends on the wavelength: two bands' kernels differ.
    const auto [k, bias] = pe.generate({0.49, 0.56});
    bool differ = false;
    for (index_t d = 0; d < D; ++d)
        for (index_t q = 0; q < p * p; ++q)
            differ = differ || k[static_cast<std::size_t>((d * 2 + 0) * p * p + q)] != k[static_cast<std::size_t>((d * 2 + 1) * p * p + q)];
    CHECK(differ);
    CHECK(bias.size() == static_cast<std::size_t>(D));
}

TEST_CASE("rs adapters: band groups are independent and group-major", "[rs][adapters]") {
    const auto groups = satmae_s2_groups();
    std::vector<PatchEmbed> proj;
    for (std::size_t g = 0; g < groups.size(); ++g)
        proj.push_back(random_embed(static_cast<index_t>(groups[g].size()), 8, 2, 20u + unsigned(g), false));
    std::vector<float> ge(3 * 8);
    for (std::size_t i = 0; i < ge.size(); ++i) ge[i] = float(i / 8);  // group g adds g
    const BandGroupEmbed sat(groups, proj, ge);
    CHECK(sat.accepted_bands().size() == 10);
    Image img = random_image({"B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"}, 4, 4,
                             Modality::multispectral, 30);
    const Tokens a = sat.forward(img);
    CHECK(a.groups == 3);
    CHECK(a.count() == 3 * 4);
    // Changing a group-2 band (B11) changes only group 2's tokens.
    img.band("B11")[0] += 1.0f;
    const Tokens b = sat.forward(img);
    for (index_t n = 0; n < 12; ++n)
        for (index_t d = 0; d < 8; ++d) {
            const float x = a.tokens.data<float>()[n * 8 + d], y = b.tokens.data<float>()[n * 8 + d];
            if (n < 8) CHECK(x == y);
        }
    bool changed = false;
    for (index_t d = 0; d < 8; ++d) changed = changed || a.tokens.data<float>()[8 * 8 + d] != b.tokens.data<float>()[8 * 8 + d];
    CHECK(changed);
    // Extra bands are refused (B01 is not in any group), missing ones named.
    Image with_b01 = img;
    with_b01.append(random_image({"B01"}, 4, 4, Modality::multispectral, 31));
    CHECK_THROWS_WITH(sat.forward(with_b01), Catch::Contains("refuses B01"));
    CHECK_THROWS_WITH(sat.forward(img.select({"B02"})), Catch::Contains("missing B03"));
}

}  // namespace moe_test_rs_adapters
