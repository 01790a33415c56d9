// Unit tests of include/vision: configurations and parameter counts of the full-size encoders
// (analytic, no allocation), the attention kernel against a scalar reference, the Swin window
// geometry, and the FFN slot with MoE layers (checked against a hand composition of the parts).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "moe/expert/ffn.hpp"
#include "moe/layer/moe_layer.hpp"
#include "moe/router/topk.hpp"
#include "rs/ringmoe/config.hpp"
#include "vision/vision.hpp"

namespace moe_test_vision {  // this file's names (unity builds merge test files)

using moe::index_t;
using moe::Tensor;
namespace vis = moe::vision;

namespace {

Tensor randn(moe::Shape s, std::uint32_t seed, float scale = 1.0f) {
    Tensor t(moe::DType::f32, s);
    std::mt19937 g(seed);
    std::normal_distribution<float> n(0.0f, scale);
    for (auto& v : t.span<float>()) v = n(g);
    return t;
}

Tensor ones_plus(index_t n, std::uint32_t seed) {
    Tensor t = randn({n}, seed, 0.1f);
    for (auto& v : t.span<float>()) v += 1.0f;
    return t;
}

double max_abs_diff(const float* a, const float* b, index_t n) {
    double m = 0;
    for (index_t i = 0; i < n; ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
    return m;
}

vis::Attention<float> random_attention(index_t C, index_t H, std::uint32_t seed) {
    const float s = 1.0f / std::sqrt(float(C));
    return vis::Attention<float>(vis::Linear<float>(randn({3 * C, C}, seed, s), randn({3 * C}, seed + 1, 0.1f)),
                                 vis::Linear<float>(randn({C, C}, seed + 2, s), randn({C}, seed + 3, 0.1f)), H);
}

vis::LayerNorm random_norm(index_t C, std::uint32_t seed) {
    return vis::LayerNorm(ones_plus(C, seed), randn({C}, seed + 1, 0.1f), 1e-6f);
}

// An E-expert GELU-MLP MoE layer (softmax top-k router) with random weights.
using GeluMoE = moe::MoELayer<moe::TopKRouter<moe::SoftmaxScores>, moe::MlpExperts<moe::Gelu, float>>;
GeluMoE random_moe(index_t C, index_t F, index_t E, index_t k, std::uint32_t seed, std::vector<Tensor>* keep = nullptr) {
    auto owner = std::make_shared<std::vector<Tensor>>();
    owner->push_back(randn({E, C}, seed));
    owner->push_back(randn({E, F, C}, seed + 1, 1.0f / std::sqrt(float(C))));
    owner->push_back(randn({E, F}, seed + 2, 0.1f));
    owner->push_back(randn({E, C, F}, seed + 3, 1.0f / std::sqrt(float(F))));
    owner->push_back(randn({E, C}, seed + 4, 0.1f));
    if (keep)
        for (const auto& t : *owner) keep->push_back(Tensor::copy_of(t.view()));
    const auto& o = *owner;
    const moe::TensorView b1 = o[2].view(), b2 = o[4].view();
    moe::Gate gate(o[0].view(), nullptr, owner, "gate");
    auto fc1 = moe::LinearStack<float>::from_stacked(o[1].view(), &b1, owner, "fc1");
    auto fc2 = moe::LinearStack<float>::from_stacked(o[3].view(), &b2, owner, "fc2");
    return GeluMoE(moe::softmax_topk_router(std::move(gate), k), moe::MlpExperts<moe::Gelu, float>(std::move(fc1), std::move(fc2)));
}

}  // namespace

TEST_CASE("vision: parameter counts of the full-size configurations", "[vision]") {
    // timm vit_base_patch16_224 / torchvision vit_b_16: 86,567,656 parameters with the
    // 1000-class head (768 x 1000 + 1000), which the encoder does not hold.
    CHECK(vis::vit_parameter_count(vis::VitConfig::timm_vit_b16()) + 768 * 1000 + 1000 == 86567656);
    // SigLIP so400m/14 with 26 of 27 blocks, embeddings included, no post_layernorm: 397.7M.
    const auto siglip = vis::VitConfig::siglip_so400m14(26);
    CHECK(siglip.grid() == 27);
    CHECK(siglip.tokens() == 729);
    const index_t ps = vis::vit_parameter_count(siglip);
    CHECK(ps == 397745440);
    CHECK(std::round(double(ps) / 1e5) / 10.0 == Approx(397.7));
    CHECK(vis::vit_parameter_count(vis::VitConfig::siglip_so400m14(27, true)) == 397745440 + 15239504 + 2304);
    // EVA ViT-g/14 (LAVIS, 39 blocks, no final norm): 257 tokens.
    const auto eva = vis::VitConfig::eva_vit_g14();
    CHECK(eva.tokens() == 257);
    CHECK(vis::vit_block_parameter_count(eva) == 4 * 1408 + 3 * 1408 * 1408 + 2 * 1408 + 1408 * 1408 + 1408 +
                                                     2 * 1408 * 6144 + 6144 + 1408);
    // patch 829,312 + CLS 1,408 + position 361,856 + 39 x 25,248,768 = 985,894,528.
    CHECK(vis::vit_parameter_count(eva) == 829312 + 1408 + 361856 + 39 * 25248768);
    CHECK(vis::vit_block_parameter_count(eva) == 25248768);

    // RingMoE's dense Swin ("Swin-1B"): the block Linear weights are 12 * sum_i depth_i C_i^2 =
    // 12 * 85,499,904 = 1.026B (the "about 1.03B"); with biases, norms, bias tables, the 4
    // patch embeddings and the patch mergings the encoder holds 1,061,023,460.
    const auto sw = moe::rs::ringmoe::swin_config();
    sw.validate();
    index_t sum = 0;
    for (index_t i = 0; i < sw.stages(); ++i) sum += sw.depths[static_cast<std::size_t>(i)] * sw.dim(i) * sw.dim(i);
    CHECK(sum == 85499904);
    CHECK(vis::swin_parameter_count(sw) == 1061023460);
    CHECK(double(vis::swin_parameter_count(sw)) / 1.03e9 == Approx(1.0).epsilon(0.035));
}

TEST_CASE("vision: RingMoE Swin stage geometry (window clipping, shift, mask, bias table)", "[vision]") {
    const auto c = moe::rs::ringmoe::swin_config();
    const index_t res[4] = {48, 24, 12, 6}, win[4] = {12, 12, 12, 6}, shift[4] = {6, 6, 0, 0};
    for (index_t i = 0; i < 4; ++i) {
        CHECK(c.resolution(i) == res[i]);
        CHECK(c.window_at(i) == win[i]);
        CHECK(c.shift_at(i) == shift[i]);
        CHECK(c.dim(i) / c.heads[static_cast<std::size_t>(i)] == 32);
    }
    CHECK(c.dim(3) == 3584);
    // Index: (ya - yb + w - 1) (2w - 1) + (xa - xb + w - 1); range [0, (2w-1)^2).
    const auto idx = vis::relative_position_index(3);
    CHECK(idx.size() == 81);
    CHECK(idx[0] == 2 * 5 + 2);           // a = b = (0, 0)
    CHECK(idx[8] == (0 - 2 + 2) * 5 + 0);  // a = (0, 0), b = (2, 2)
    CHECK(idx[8 * 9] == 4 * 5 + 4);        // a = (2, 2), b = (0, 0)
    // Shifted mask of stage 0 at RingMoE size: 16 windows; the first window is one region.
    const Tensor m = vis::shifted_window_mask(48, 12, 6);
    CHECK(m.shape() == moe::Shape{16, 144, 144});
    const float* d = m.data<float>();
    index_t nz0 = 0, nz15 = 0;
    for (index_t i = 0; i < 144 * 144; ++i) {
        nz0 += d[i] != 0.0f;
        nz15 += d[15 * 144 * 144 + i] != 0.0f;
    }
    CHECK(nz0 == 0);
    // Last window: 4 regions of 36 tokens each: 144^2 - 4 * 36^2 pairs differ.
    CHECK(nz15 == 144 * 144 - 4 * 36 * 36);
    CHECK_THROWS_AS(
        [] {
            auto bad = moe::rs::ringmoe::swin_config();
            bad.image_size = 200;
            bad.validate();
        }(),
        moe::ConfigError);
}

TEST_CASE("vision: attention kernel matches a scalar reference (bias, mask, threads)", "[vision]") {
    const index_t C = 24, H = 3, d = 8, n = 13, seqs = 4, T = n * seqs;
    auto attn = random_attention(C, H, 10);
    const Tensor x = randn({T, C}, 20);
    const Tensor bias = randn({H, n, n}, 21);
    Tensor mask = randn({2, n, n}, 22);
    for (auto& v : mask.span<float>()) v = v > 0.5f ? -100.0f : 0.0f;
    Tensor y(moe::DType::f32, {T, C});
    attn.forward(x.matrix<float>(), y.matrix<float>(), n, bias.data<float>(), mask.data<float>(), 2, moe::Exec(1));

    // Scalar reference in double.
    std::vector<double> qkv(static_cast<std::size_t>(T * 3 * C)), o(static_cast<std::size_t>(T * C));
    const float* W = attn.qkv().weight().data;
    const float* B = attn.qkv().bias();
    const float* X = x.data<float>();
    for (index_t t = 0; t < T; ++t)
        for (index_t j = 0; j < 3 * C; ++j) {
            double s = B[j];
            for (index_t c = 0; c < C; ++c) s += double(X[t * C + c]) * W[j * C + c];
            qkv[static_cast<std::size_t>(t * 3 * C + j)] = s;
        }
    for (index_t sq = 0; sq < seqs; ++sq)
        for (index_t h = 0; h < H; ++h)
            for (index_t a = 0; a < n; ++a) {
                std::vector<double> p(static_cast<std::size_t>(n));
                double mx = -1e300;
                for (index_t b = 0; b < n; ++b) {
                    double s = 0;
                    for (index_t c = 0; c < d; ++c)
                        s += qkv[static_cast<std::size_t>((sq * n + a) * 3 * C + h * d + c)] *
                             qkv[static_cast<std::size_t>((sq * n + b) * 3 * C + C + h * d + c)];
                    s = s / std::sqrt(double(d)) + bias.data<float>()[(h * n + a) * n + b] +
                        mask.data<float>()[((sq % 2) * n + a) * n + b];
                    p[static_cast<std::size_t>(b)] = s;
                    mx = std::max(mx, s);
                }
                double z = 0;
                for (auto& v : p) z += (v = std::exp(v - mx));
                for (index_t c = 0; c < d; ++c) {
                    double s = 0;
                    for (index_t b = 0; b < n; ++b)
                        s += p[static_cast<std::size_t>(b)] / z * qkv[static_cast<std::size_t>((sq * n + b) * 3 * C + 2 * C + h * d + c)];
                    o[static_cast<std::size_t>((sq * n + a) * C + h * d + c)] = s;
                }
            }
    const float* PW = attn.proj().weight().data;
    const float* PB = attn.proj().bias();
    double err = 0;
    for (index_t t = 0; t < T; ++t)
        for (index_t j = 0; j < C; ++j) {
            double s = PB[j];
            for (index_t c = 0; c < C; ++c) s += o[static_cast<std::size_t>(t * C + c)] * PW[j * C + c];
            err = std::max(err, std::abs(s - double(y.data<float>()[t * C + j])));
        }
    CHECK(err < 1e-5);

    Tensor y2(moe::DType::f32, {T, C});
    attn.forward(x.matrix<float>(), y2.matrix<float>(), n, bias.data<float>(), mask.data<float>(), 2, moe::Exec(2));
    CHECK(std::memcmp(y.raw(), y2.raw(), y.nbytes()) == 0);
    CHECK_THROWS_AS(attn.forward(x.matrix<float>(), y.matrix<float>(), 7), moe::ShapeError);
    CHECK_THROWS_AS(random_attention(24, 5, 1), moe::ConfigError);
}

TEST_CASE("vision: bicubic resize to the same grid is the identity", "[vision]") {
    const Tensor g = randn({20, 6}, 30);
    const Tensor r = vis::resize_bicubic(g.matrix<float>(), 4, 5, 4, 5);
    CHECK(max_abs_diff(r.data<float>(), g.data<float>(), g.numel()) == 0.0);
}

TEST_CASE("vision: a ViT block with a MoELayer in its FFN slot equals the hand-composed parts", "[vision]") {
    const index_t C = 32, F = 64, E = 4, n = 10, B = 3;
    std::vector<Tensor> w;
    vis::Block<GeluMoE, float> blk(random_norm(C, 40), random_attention(C, 4, 41), random_norm(C, 42),
                                   random_moe(C, F, E, 2, 43, &w));
    Tensor x = randn({B * n, C}, 44);
    Tensor expect = Tensor::copy_of(x.view());
    blk.forward(x.matrix<float>(), n);

    // Hand composition: t = x + attn(LN1(x)); y = t + moe(LN2(t)).
    Tensor a(moe::DType::f32, {B * n, C}), b(moe::DType::f32, {B * n, C});
    blk.norm1().forward(expect.matrix<float>(), a.matrix<float>());
    blk.attn().forward(a.matrix<float>(), b.matrix<float>(), n);
    for (index_t i = 0; i < B * n * C; ++i) expect.data<float>()[i] += b.data<float>()[i];
    blk.norm2().forward(expect.matrix<float>(), a.matrix<float>());
    auto moe2 = random_moe(C, F, E, 2, 43);
    moe2.forward(a.matrix<float>(), b.matrix<float>());
    for (index_t i = 0; i < B * n * C; ++i) expect.data<float>()[i] += b.data<float>()[i];
    CHECK(max_abs_diff(x.data<float>(), expect.data<float>(), x.numel()) == 0.0);
    CHECK(blk.parameters() == 4 * C + 4 * C * C + 4 * C + E * C + E * (2 * C * F + F + C));
}

TEST_CASE("vision: a Swin block with a one-expert MoELayer equals the same block with a dense MLP", "[vision]") {
    // One expert, top-1, renormalised weight 1, no capacity: the MoE computes exactly the MLP.
    const index_t C = 16, F = 48, R = 8, win = 4, s = 2, H = 2;
    std::vector<Tensor> w;
    auto moe1 = random_moe(C, F, 1, 1, 50, &w);
    auto reshaped = [](const Tensor& t, moe::Shape s) {
        Tensor c = Tensor::copy_of(t.view());
        c.reshape(s);
        return c;
    };
    vis::Mlp<moe::Gelu, float> mlp(vis::Linear<float>(reshaped(w[1], {F, C}), reshaped(w[2], {F})),
                                   vis::Linear<float>(reshaped(w[3], {C, F}), reshaped(w[4], {C})));
    const Tensor table = randn({(2 * win - 1) * (2 * win - 1), H}, 51);
    vis::SwinBlock<GeluMoE, float> a(random_norm(C, 52), random_attention(C, H, 53), Tensor::copy_of(table.view()),
                                     random_norm(C, 54), std::move(moe1), R, win, s);
    vis::SwinBlock<vis::Mlp<moe::Gelu, float>, float> b(random_norm(C, 52), random_attention(C, H, 53),
                                                         Tensor::copy_of(table.view()), random_norm(C, 54),
                                                         std::move(mlp), R, win, s);
    Tensor x1 = randn({2 * R * R, C}, 55);
    Tensor x2 = Tensor::copy_of(x1.view());
    a.forward(x1.matrix<float>());
    b.forward(x2.matrix<float>());
    CHECK(max_abs_diff(x1.data<float>(), x2.data<float>(), x1.numel()) < 1e-6);
    CHECK(a.attention_mask().shape() == moe::Shape{4, 16, 16});
}

TEST_CASE("vision: bad inputs are errors that say what and where", "[vision]") {
    const index_t C = 16;
    vis::PatchEmbed<float> pe(vis::Linear<float>(randn({C, 3 * 16}, 60), randn({C}, 61)), 3, 4);
    CHECK(pe.forward(randn({1, 3, 8, 8}, 62)).shape() == moe::Shape{4, C});
    CHECK_THROWS_AS(pe.forward(randn({1, 4, 8, 8}, 63)), moe::ShapeError);
    Tensor nan = randn({1, 3, 8, 8}, 64);
    nan.data<float>()[17] = std::nanf("");
    CHECK_THROWS_AS(pe.forward(nan), moe::ValueError);
    CHECK_THROWS_AS(vis::PatchEmbed<float>(vis::Linear<float>(randn({C, 40}, 65), Tensor()), 3, 4), moe::ShapeError);
    CHECK_THROWS_AS(vis::Linear<float>(randn({C, 8}, 66), randn({C + 1}, 67)), moe::ShapeError);
}

TEST_CASE("vision: full-size ViT-B/16 and a RingMoE stage-0 block built with random weights", "[vision]") {
    std::mt19937 g(70);
    auto rnd = [&](moe::Shape s, float scale) {
        Tensor t(moe::DType::f32, s);
        std::uniform_real_distribution<float> u(-scale, scale);
        for (auto& v : t.span<float>()) v = u(g);
        return t;
    };
    auto lin = [&](index_t out, index_t in, bool bias) {
        const float s = 1.0f / std::sqrt(float(in));
        return vis::Linear<moe::bf16>(rnd({out, in}, s), bias ? rnd({out}, s) : Tensor());
    };
    auto norm = [&](index_t C) { return vis::LayerNorm(ones_plus(C, 71), rnd({C}, 0.1f), 1e-6f); };
    const auto cfg = vis::VitConfig::timm_vit_b16();
    const index_t C = cfg.width;
    using Mlp = vis::Mlp<moe::Gelu, moe::bf16>;
    std::vector<vis::Block<Mlp, moe::bf16>> blocks;
    for (index_t i = 0; i < cfg.depth; ++i)
        blocks.emplace_back(norm(C), vis::Attention<moe::bf16>(lin(3 * C, C, true), lin(C, C, true), cfg.heads), norm(C),
                            Mlp(lin(cfg.mlp_hidden, C, true), lin(C, cfg.mlp_hidden, true)));
    std::optional<vis::PosEmbed> pos;
    pos.emplace(rnd({197, C}, 0.02f), 1, 14, 14);
    vis::DenseVit<moe::bf16> vit(cfg, vis::PatchEmbed<moe::bf16>(lin(C, 3 * 16 * 16, true), 3, 16), rnd({C}, 0.02f),
                                 std::move(pos), std::move(blocks), norm(C));
    CHECK(vit.parameters() == vis::vit_parameter_count(cfg));
    vit.set_exec(moe::Exec(2));
    const Tensor y = vit.forward(rnd({1, 3, 224, 224}, 1.0f));
    CHECK(y.shape() == moe::Shape{197, 768});
    CHECK(std::count_if(y.span<float>().begin(), y.span<float>().end(), [](float v) { return !std::isfinite(v); }) == 0);

    // RingMoE stage 0 at full size: C 448, 14 heads of 32, 48 x 48 tokens, window 12, shift 6.
    const auto sw = moe::rs::ringmoe::swin_config();
    const index_t C0 = sw.dim(0), F0 = sw.ffn_hidden(0), R = sw.resolution(0), w = sw.window_at(0);
    using SMlp = vis::Mlp<moe::GeluTanh, moe::bf16>;
    vis::SwinBlock<SMlp, moe::bf16> blk(norm(C0), vis::Attention<moe::bf16>(lin(3 * C0, C0, true), lin(C0, C0, true), 14),
                                        rnd({(2 * w - 1) * (2 * w - 1), 14}, 0.5f), norm(C0),
                                        SMlp(lin(F0, C0, true), lin(C0, F0, true)), R, w, sw.shift_at(0));
    CHECK(blk.attention_mask().shape() == moe::Shape{16, 144, 144});
    CHECK(blk.relative_position_bias().shape() == moe::Shape{14, 144, 144});
    CHECK(blk.parameters() == 4 * C0 + 4 * C0 * C0 + 4 * C0 + 529 * 14 + 2 * C0 * F0 + F0 + C0);
    Tensor x = rnd({R * R, C0}, 1.0f);
    vis::FfnContext ctx;
    ctx.exec = moe::Exec(2);
    blk.forward(x.matrix<float>(), ctx);
    CHECK(std::count_if(x.span<float>().begin(), x.span<float>().end(), [](float v) { return !std::isfinite(v); }) == 0);
}

}  // namespace moe_test_vision
