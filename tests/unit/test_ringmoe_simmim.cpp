// RingMoE's SimMIM objective (include/rs/ringmoe/simmim.hpp): the mask generator's properties,
// hand-derived loss values, the span target and the decoder's DCR layout. The PyTorch parity of
// the whole objective is tests/parity/test_parity_ringmoe_simmim.cpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

#include "rs/ringmoe/simmim.hpp"

namespace moe_test_ringmoe_simmim {  // this file's names (unity builds merge test files)

namespace rr = moe::rs::ringmoe;
using moe::DType;
using moe::index_t;
using moe::Tensor;

namespace {

/// [B, C, H, W] with value f(b, c, y, x).
template <class F>
Tensor images(index_t B, index_t C, index_t H, F f) {
    Tensor t(DType::f32, {B, C, H, H});
    float* d = t.data<float>();
    for (index_t b = 0; b < B; ++b)
        for (index_t c = 0; c < C; ++c)
            for (index_t y = 0; y < H; ++y)
                for (index_t x = 0; x < H; ++x) d[((b * C + c) * H + y) * H + x] = f(b, c, y, x);
    return t;
}

index_t ones(const std::vector<std::uint8_t>& v) {
    index_t n = 0;
    for (auto f : v) n += f;
    return n;
}

}  // namespace

TEST_CASE("simmim mask generator: ceil(ratio * cells) cells, each 8 x 8 model patches, per seed",
          "[ringmoe][simmim]") {
    const rr::MaskGenerator tiny(64, 4);  // mask patch 32, ratio 0.6
    CHECK(tiny.cells_per_side() == 2);
    CHECK(tiny.cell_count() == 4);
    CHECK(tiny.mask_count() == 3);  // ceil(2.4)
    CHECK(tiny.scale() == 8);
    CHECK(tiny.grid() == 16);
    const rr::MaskGenerator full(192, 4);
    CHECK(full.cell_count() == 36);
    CHECK(full.mask_count() == 22);  // ceil(21.6)
    CHECK(rr::MaskGenerator(224, 4).mask_count() == 30);  // 7 x 7 cells: ceil(29.4)

    for (const auto* g : {&tiny, &full}) {
        std::set<std::uint64_t> distinct;  // the cell patterns as bit sets (at most 36 cells)
        for (std::uint64_t seed = 0; seed < 20; ++seed) {
            const auto cells = g->cells(seed);
            CHECK(ones(cells) == g->mask_count());
            CHECK(cells == g->cells(seed));  // deterministic
            std::uint64_t key = 0;
            for (std::size_t i = 0; i < cells.size(); ++i) key |= std::uint64_t{cells[i]} << i;
            distinct.insert(key);
            const auto m = g->expand(cells);
            REQUIRE(static_cast<index_t>(m.size()) == g->grid() * g->grid());
            CHECK(ones(m) == g->mask_count() * g->scale() * g->scale());
            // every model patch carries its cell's flag
            for (index_t y = 0; y < g->grid(); ++y)
                for (index_t x = 0; x < g->grid(); ++x)
                    CHECK(m[static_cast<std::size_t>(y * g->grid() + x)] ==
                          cells[static_cast<std::size_t>((y / 8) * g->cells_per_side() + x / 8)]);
            CHECK((*g)(seed) == m);
        }
        CHECK(distinct.size() > 1);
    }
    // Each of the 4 cells is masked in about 3/4 of the draws (a fair choice of cells).
    std::vector<int> hits(4, 0);
    const int draws = 4000;
    for (int s = 0; s < draws; ++s) {
        const auto c = tiny.cells(static_cast<std::uint64_t>(s) * 7919u);
        for (int i = 0; i < 4; ++i) hits[static_cast<std::size_t>(i)] += c[static_cast<std::size_t>(i)];
    }
    for (int h : hits) CHECK(std::abs(h / double(draws) - 0.75) < 0.03);
    // A batch: image i uses seed + i.
    const auto b = tiny.batch(3, 40);
    REQUIRE(b.size() == 3 * 256);
    CHECK(std::vector<std::uint8_t>(b.begin() + 256, b.begin() + 512) == tiny(41));
    // Extremes and bad configurations.
    CHECK(rr::MaskGenerator(64, 4, 32, 0.0).mask_count() == 0);
    CHECK(rr::MaskGenerator(64, 4, 32, 1.0).mask_count() == 4);
    CHECK_THROWS_AS(rr::MaskGenerator(60, 4), moe::ConfigError);
    CHECK_THROWS_AS(rr::MaskGenerator(64, 5), moe::ConfigError);
    CHECK_THROWS_AS(rr::MaskGenerator(64, 4, 32, 1.5), moe::ConfigError);
    CHECK_THROWS_AS(tiny.expand(std::vector<std::uint8_t>(3, 1)), moe::ShapeError);
}

TEST_CASE("simmim masked L1: hand-derived values", "[ringmoe][simmim]") {
    // 2 images, 3 channels, 8 x 8 pixels, patch 4: a 2 x 2 model-patch grid per image.
    const index_t B = 2, C = 3, H = 8, p = 4;
    const Tensor x = images(B, C, H, [](index_t b, index_t c, index_t y, index_t xx) {
        return float(b) - 0.5f * float(c) + 0.25f * float(y) - 0.125f * float(xx);
    });
    // image 0: patches 0 and 3 masked; image 1: patch 1 masked -> 3 patches of 16 pixels
    const std::vector<std::uint8_t> mask{1, 0, 0, 1, 0, 1, 0, 0};
    auto masked = [&](index_t b, index_t y, index_t xx) { return mask[static_cast<std::size_t>(b * 4 + (y / p) * 2 + xx / p)] != 0; };
    const double N = 3 * 16;  // masked pixels (one channel)

    CHECK(rr::masked_l1(x.view(), x.view(), mask, p) == 0.0);  // perfect reconstruction
    // a constant error e on every masked pixel (and a large one elsewhere, which must not count)
    const float e = 0.75f;
    const Tensor r1 = images(B, C, H, [&](index_t b, index_t c, index_t y, index_t xx) {
        return x.data<float>()[((b * C + c) * H + y) * H + xx] + (masked(b, y, xx) ? e : 100.0f);
    });
    CHECK(rr::masked_l1(x.view(), r1.view(), mask, p) == Approx(e * N / (N + 1e-5)).epsilon(1e-12));
    // error (c + 1) on channel c: the mean over channels is 2
    const Tensor r2 = images(B, C, H, [&](index_t b, index_t c, index_t y, index_t xx) {
        return x.data<float>()[((b * C + c) * H + y) * H + xx] - (masked(b, y, xx) ? float(c + 1) : 0.0f);
    });
    CHECK(rr::masked_l1(x.view(), r2.view(), mask, p) == Approx(2.0 * N / (N + 1e-5)).epsilon(1e-12));
    // nothing masked: 0 / (0 + 1e-5) = 0
    CHECK(rr::masked_l1(x.view(), r1.view(), std::vector<std::uint8_t>(8, 0), p) == 0.0);
    // bad masks and shapes
    CHECK_THROWS_AS(rr::masked_l1(x.view(), x.view(), std::vector<std::uint8_t>(7, 0), p), moe::ShapeError);
    CHECK_THROWS_AS(rr::masked_l1(x.view(), x.view(), std::vector<std::uint8_t>{0, 0, 3, 0, 0, 0, 0, 0}, p),
                    moe::ValueError);
    const Tensor other(DType::f32, {B, 2, H, H});
    CHECK_THROWS_AS(rr::masked_l1(x.view(), other.view(), mask, p), moe::ShapeError);
}

TEST_CASE("simmim SAR-L1 span target: |HH|^2 + |HV|^2 + |VH|^2 + |VV|^2", "[ringmoe][simmim]") {
    // HH = 1 + 2i, HV = 0 + 1i, VH = 3 + 0i, VV = 1 + 1i: span 5 + 1 + 9 + 2 = 17 everywhere.
    const float v[8] = {1, 2, 0, 1, 3, 0, 1, 1};
    const Tensor x = images(1, 8, 8, [&](index_t, index_t c, index_t, index_t) { return v[c]; });
    const Tensor s = rr::span_tensor(x.view());
    REQUIRE(s.shape() == moe::Shape{1, 1, 8, 8});
    for (index_t i = 0; i < 64; ++i) CHECK(s.data<float>()[i] == 17.0f);

    const std::vector<std::uint8_t> mask{1, 1, 0, 1};  // 3 of 4 patches (48 pixels)
    const double N = 48;
    rr::SimMimConfig cfg;  // SAR-L1 is modality 1, span target
    // Conjugating / negating every channel keeps the power: span loss 0, channel loss not.
    const Tensor neg = images(1, 8, 8, [&](index_t, index_t c, index_t, index_t) { return -v[c]; });
    CHECK(rr::modality_loss(1, x.view(), neg.view(), mask, 4, cfg) == 0.0);
    // channel loss: mean |2 v_c| over the 8 channels = 2 * 9 / 8
    const double chan = 2.0 * (1 + 2 + 0 + 1 + 3 + 0 + 1 + 1) / 8.0 * N / (N + 1e-5);
    cfg.sar_l1_target = rr::SarL1Target::channels;
    CHECK(rr::modality_loss(1, x.view(), neg.view(), mask, 4, cfg) == Approx(chan).epsilon(1e-12));
    // Scaling the field by 2 multiplies the power by 4: span error 3 * 17 per masked pixel.
    const Tensor twice = images(1, 8, 8, [&](index_t, index_t c, index_t, index_t) { return 2 * v[c]; });
    cfg.sar_l1_target = rr::SarL1Target::span;
    CHECK(rr::modality_loss(1, x.view(), twice.view(), mask, 4, cfg) == Approx(51.0 * N / (N + 1e-5)).epsilon(1e-12));
    cfg.sar_l1_target = rr::SarL1Target::both;
    const double chan2 = 9.0 / 8.0 * N / (N + 1e-5);  // |2 v - v| = |v|
    CHECK(rr::modality_loss(1, x.view(), twice.view(), mask, 4, cfg) ==
          Approx(chan2 + 51.0 * N / (N + 1e-5)).epsilon(1e-12));
    // Another modality ignores the SAR-L1 target.
    CHECK(rr::modality_loss(0, x.view(), twice.view(), mask, 4, cfg) == Approx(chan2).epsilon(1e-12));
    // The span needs the 8 quad-pol channels.
    const Tensor four(DType::f32, {1, 4, 8, 8});
    CHECK_THROWS_AS(rr::span_tensor(four.view()), moe::ShapeError);
}

TEST_CASE("simmim decoder: 1x1 conv then DepthToSpace in the released DCR layout", "[ringmoe][simmim]") {
    // stride 2, 3 output channels: conv 12 -> 12 as the identity plus a bias of 0.5, so pixel
    // (c, y*2 + by, x*2 + bx) must hold token (y, x)'s feature (by*2 + bx)*3 + c, plus 0.5.
    const index_t s = 2, cout = 3, Cl = s * s * cout, B = 2, h = 2;
    Tensor w(DType::f32, {Cl, Cl}), bias(DType::f32, {Cl});
    for (index_t i = 0; i < Cl; ++i) {
        w.data<float>()[i * Cl + i] = 1.0f;
        bias.data<float>()[i] = 0.5f;
    }
    const rr::SimMimDecoder<float> dec(moe::vision::Linear<float>(std::move(w), std::move(bias)), cout, s);
    Tensor z(DType::f32, {B * h * h, Cl});
    for (index_t t = 0; t < B * h * h; ++t)
        for (index_t k = 0; k < Cl; ++k) z.data<float>()[t * Cl + k] = float(100 * t + k);
    const Tensor out = dec.forward(z.matrix<float>(), B);
    REQUIRE(out.shape() == moe::Shape{B, cout, h * s, h * s});
    for (index_t b = 0; b < B; ++b)
        for (index_t c = 0; c < cout; ++c)
            for (index_t Y = 0; Y < h * s; ++Y)
                for (index_t X = 0; X < h * s; ++X) {
                    const index_t t = (b * h + Y / s) * h + X / s, k = ((Y % s) * s + X % s) * cout + c;
                    CHECK(out.data<float>()[((b * cout + c) * h * s + Y) * h * s + X] == float(100 * t + k) + 0.5f);
                }
    // a conv of the wrong width, a batch that does not divide the tokens
    Tensor w2(DType::f32, {10, Cl}), b2(DType::f32, {10});
    CHECK_THROWS_AS(rr::SimMimDecoder<float>(moe::vision::Linear<float>(std::move(w2), std::move(b2)), cout, s),
                    moe::ShapeError);
    CHECK_THROWS_AS(dec.forward(z.matrix<float>(), 3), moe::ShapeError);
}

}  // namespace moe_test_ringmoe_simmim
