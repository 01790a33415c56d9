// Parity: RingMoE's SimMIM objective (include/rs/ringmoe/simmim.hpp) vs. its PyTorch reference
// (tools/reference/ringmoe_simmim.py; fixture from fixtures_ringmoe_simmim.py): the tiny RingMoE
// with Moe_modal in every block, two images of each of the four modalities in one batch, each
// with its SimMIM mask.
//
// Tolerances (fp32 on both sides):
//   reconstructions (decoder + DepthToSpace)      relative Frobenius error <= 1e-4
//   per-modality losses, their sum, the aux loss  relative difference <= 1e-4
// (the encoder output itself is checked at 1e-4 by the vision parity tests; the losses are means
// of absolute differences, as close as their inputs). The fixture's input was drawn so that every
// routing decision has a top-1/top-2 logit gap > 1e-3.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "parity_util.hpp"
#include "rs/ringmoe/encoder.hpp"
#include "rs/ringmoe/simmim.hpp"
#include "vision/loaders.hpp"

namespace moe_test_parity_ringmoe_simmim {  // this file's names (unity builds merge test files)

using namespace moe_test;
using moe::Tensor;
using moe::TensorView;
namespace vis = moe::vision;
namespace rr = moe::rs::ringmoe;

namespace {

constexpr double kTol = 1e-4;

vis::SwinConfig tiny() {
    vis::SwinConfig c;
    c.image_size = 64;
    c.patch = 4;
    c.in_chans = {3, 8, 3, 4};
    c.embed_dim = 32;
    c.depths = {2, 2, 2, 2};
    c.heads = {1, 2, 4, 8};
    c.window = 4;
    return c;
}

std::vector<std::uint8_t> mask_of(const SafetensorsFile& f, int m) {
    const TensorView v = f.get("__mask_" + std::to_string(m) + "__");
    REQUIRE(v.dtype() == moe::DType::i32);
    std::vector<std::uint8_t> out(static_cast<std::size_t>(v.numel()));
    for (index_t i = 0; i < v.numel(); ++i) out[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v.data<std::int32_t>()[i]);
    return out;
}

/// The head's tensors only (mask token, decoders), without `drop` and with `replace` added: the
/// loaders' error paths without copying the whole 140 MB fixture.
SafetensorsFile head_only(const SafetensorsFile& f, const std::string& drop, const std::string& replace_name = {},
                          const Tensor* replace = nullptr) {
    moe::io::SafetensorsWriter w;
    for (const auto& n : f.names())
        if ((n == "encoder.mask_token" || n.rfind("decoder_", 0) == 0) && n != drop && n != replace_name)
            w.add(n, f.get(n));
    if (replace) w.add(replace_name, replace->view());
    return SafetensorsFile::from_buffer(w.to_bytes(), "head of " + f.path());
}

double scalar(const SafetensorsFile& f, const std::string& name) { return f.get(name).data<float>()[0]; }

double rel(const Tensor& a, const TensorView& b) {
    REQUIRE(a.numel() == b.numel());
    return rel_error(moe::ConstMatrixRef<float>(a.data<float>(), 1, a.numel()),
                     moe::ConstMatrixRef<float>(b.data<float>(), 1, b.numel()));
}

void check_value(const std::string& what, double ours, double ref) {
    const double e = rel_diff(ours, ref);
    std::printf("parity %-32s ours %.7f ref %.7f rel %.2e\n", what.c_str(), ours, ref, e);
    INFO(what << ": ours " << ours << ", reference " << ref);
    CHECK(e <= kTol);
}

struct Inputs {
    std::vector<std::vector<std::uint8_t>> masks;
    std::vector<rr::SimMimBatch> batches;
};

Inputs inputs(const SafetensorsFile& f) {
    Inputs in;
    for (int m = 0; m < 4; ++m) in.masks.push_back(mask_of(f, m));
    for (int m = 0; m < 4; ++m)
        in.batches.push_back({f.get("__images_" + std::to_string(m) + "__"), in.masks[static_cast<std::size_t>(m)], m});
    return in;
}

}  // namespace

TEST_CASE("ringmoe simmim: reconstructions, per-modality losses, aux and total match PyTorch",
          "[parity][ringmoe][simmim]") {
    const auto f = open_fixture("ringmoe_simmim");
    const auto cfg = tiny();
    auto enc = rr::load_ringmoe_swin<float>(f, "encoder.", cfg);
    const auto head = rr::load_simmim_head<float>(f, cfg);
    REQUIRE(head.decoders.size() == 4);
    CHECK(head.parameters() == 32 + 1024 * (3 + 8 + 3 + 4) * (256 + 1));
    const Inputs in = inputs(f);
    const auto out = rr::simmim_forward(enc, head, std::span<const rr::SimMimBatch>(in.batches));
    REQUIRE(out.reconstructions.size() == 4);
    for (int m = 0; m < 4; ++m) {
        const auto s = std::to_string(m);
        const double e = rel(out.reconstructions[static_cast<std::size_t>(m)], f.get("__rec_" + s + "__"));
        std::printf("parity %-32s rel %.2e\n", ("simmim reconstruction " + s).c_str(), e);
        CHECK(e <= kTol);
        check_value("simmim loss modality " + s, out.losses[static_cast<std::size_t>(m)], scalar(f, "__loss_" + s + "__"));
    }
    check_value("simmim sim (sum)", out.sim, scalar(f, "__sim__"));
    check_value("simmim aux", out.aux, scalar(f, "__aux__"));
    check_value("simmim total", out.total, scalar(f, "__total__"));
    CHECK(out.aux > 0.0);

    // The other SAR-L1 targets on the same reconstruction.
    rr::SimMimConfig c = head.config;
    c.sar_l1_target = rr::SarL1Target::channels;
    check_value("simmim SAR-L1 channels target",
                rr::modality_loss(1, in.batches[1].images, out.reconstructions[1].view(), in.masks[1], 4, c),
                scalar(f, "__loss_sar_l1_channels__"));
    c.sar_l1_target = rr::SarL1Target::both;
    check_value("simmim SAR-L1 both targets",
                rr::modality_loss(1, in.batches[1].images, out.reconstructions[1].view(), in.masks[1], 4, c),
                scalar(f, "__loss_sar_l1_both__"));

    // The mask token matters: with no patch masked, the features differ.
    std::vector<std::vector<std::uint8_t>> none(4);
    std::vector<rr::SimMimBatch> unmasked = in.batches;
    for (int m = 0; m < 4; ++m) {
        none[static_cast<std::size_t>(m)].assign(in.masks[static_cast<std::size_t>(m)].size(), 0);
        unmasked[static_cast<std::size_t>(m)].mask = none[static_cast<std::size_t>(m)];
    }
    const auto out0 = rr::simmim_forward(enc, head, std::span<const rr::SimMimBatch>(unmasked));
    CHECK(rel(out0.features, out.features.view()) > 1e-2);
    CHECK(out0.sim == 0.0);  // nothing masked: every loss is 0 / (0 + 1e-5)
}

TEST_CASE("ringmoe simmim: bad input and missing weights name what and where", "[parity][ringmoe][simmim]") {
    const auto f = open_fixture("ringmoe_simmim");
    const auto cfg = tiny();
    auto enc = rr::load_ringmoe_swin<float>(f, "encoder.", cfg);
    const auto head = rr::load_simmim_head<float>(f, cfg);
    Inputs in = inputs(f);
    auto run = [&](std::vector<rr::SimMimBatch> b) {
        (void)rr::simmim_forward(enc, head, std::span<const rr::SimMimBatch>(b));
    };
    // a mask one flag short
    {
        auto b = in.batches;
        const std::vector<std::uint8_t> short_mask(in.masks[2].begin(), in.masks[2].end() - 1);
        b[2].mask = short_mask;
        require_throws_mentioning<moe::ShapeError>([&] { run(b); }, {"batch 2", "mask of 511 flags", "2 x 16 x 16"});
    }
    // a mask value other than 0 / 1
    {
        auto b = in.batches;
        std::vector<std::uint8_t> bad = in.masks[0];
        bad[5] = 2;
        b[0].mask = bad;
        require_throws_mentioning<moe::ValueError>([&] { run(b); }, {"batch 0", "mask flag 5 is 2"});
    }
    // images of another modality's channel count
    {
        auto b = in.batches;
        b[3].modality = 1;
        require_throws_mentioning<moe::ShapeError>([&] { run(b); }, {"batch 3", "modality 1", "[B, 8, 64, 64]"});
    }
    // a NaN pixel
    {
        Tensor x = Tensor::copy_of(in.batches[0].images);
        x.data<float>()[7] = std::numeric_limits<float>::quiet_NaN();
        auto b = in.batches;
        b[0].images = x.view();
        require_throws_mentioning<moe::ValueError>([&] { run(b); }, {"batch 0", "pixel 7 is not finite"});
    }
    // missing and mis-shaped head tensors
    require_throws_mentioning<moe::NotFoundError>(
        [&] { (void)rr::load_simmim_head<float>(head_only(f, "decoder_2.bias"), cfg); }, {"decoder_2.bias"});
    require_throws_mentioning<moe::NotFoundError>(
        [&] { (void)rr::load_simmim_head<float>(head_only(f, "encoder.mask_token"), cfg); }, {"encoder.mask_token"});
    const Tensor bad = zeros(3072, 255);
    require_throws_mentioning<moe::ShapeError>(
        [&] { (void)rr::load_simmim_head<float>(head_only(f, "", "decoder_0.weight", &bad), cfg); },
        {"decoder_0.weight", "[3072, 256, 1, 1]", "[3072, 255]"});
}

}  // namespace moe_test_parity_ringmoe_simmim
