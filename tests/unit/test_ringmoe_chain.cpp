// RingMoE checkpoints and the deployment chain (rs/ringmoe/checkpoint.hpp, chain.hpp) on the tiny
// configuration with random weights, written as a checkpoint in the MindSpore names here.
// Expectations are properties: a reload reproduces the encoder bit for bit; step 1 is exact on
// its modality's images; step 2 keeps ceil(0.25 * 4) = 1 collaborative expert, the one the
// router picks most often on the calibration tokens (argmax of the logits, computed here in
// double); an SVD fold at full rank of one-expert groups reproduces step 2 to fp32 rounding
// (the fold's construction, svd_fold.hpp); parameter counts equal the counts from the shapes and
// RingMoeConfig's (config.hpp) exact and published-formula counts.
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "moe/io/safetensors.hpp"
#include "rs/ringmoe/chain.hpp"
#include "rs/ringmoe/checkpoint.hpp"
#include "rs/ringmoe/config.hpp"
#include "rs/ringmoe/encoder.hpp"
#include "vision/loaders.hpp"

namespace moe_test_ringmoe_chain {  // this file's names (unity builds merge test files)

using namespace moe;
namespace rr = moe::rs::ringmoe;
namespace vis = moe::vision;

namespace {

/// A random RingMoE encoder checkpoint in the MindSpore names (prefix "encoder.").
struct RandomRingMoe {
    vis::SwinConfig swin = rr::RingMoeConfig::tiny().swin;
    index_t modal = 4, collab = 4;
    std::uint64_t seed = 1;
    bool bf16_weights = false;

    io::SafetensorsFile file() const {
        // xorshift64*: 30M values in a fraction of a second (the tiny model has 30M parameters).
        std::uint64_t state = 0x9E3779B97F4A7C15ull * (seed + 1);
        io::SafetensorsWriter w;
        const DType wt = bf16_weights ? DType::bf16 : DType::f32;
        auto uniform = [&](Shape s, double a, double offset = 0.0, DType dt = DType::f32) {
            Tensor t(DType::f32, s);
            const auto fa = static_cast<float>(a), fo = static_cast<float>(offset);
            for (auto& v : t.span<float>()) {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                const float u = static_cast<float>((state * 2685821657736338717ull) >> 40) * (1.0f / 16777216.0f);
                v = fo + fa * (2.0f * u - 1.0f);
            }
            return dt == DType::f32 ? std::move(t) : convert(t.view(), dt);
        };
        auto put = [&](const std::string& n, const Tensor& t) { w.add("encoder." + n, t.view()); };
        auto norm = [&](const std::string& m, index_t C) {
            put(m + "gamma", uniform({C}, 0.2, 1.0));
            put(m + "beta", uniform({C}, 0.1));
        };
        auto stacked = [&](const std::string& m, index_t E, index_t C, index_t F) {
            put(m + "mapping.weight", uniform({E, C, F}, 1.0 / std::sqrt(double(C)), 0.0, wt));
            put(m + "mapping.bias", uniform({1, E, 1, F}, 0.1));
            put(m + "projection.weight", uniform({E, F, C}, 1.0 / std::sqrt(double(F)), 0.0, wt));
            put(m + "projection.bias", uniform({1, E, 1, C}, 0.1));
        };
        const index_t C0 = swin.embed_dim, p = swin.patch;
        for (std::size_t m = 0; m < swin.in_chans.size(); ++m) {
            const std::string pe = "patch_embed" + std::to_string(m) + ".";
            const index_t cin = swin.in_chans[m];
            put(pe + "projection.weight", uniform({C0, cin, p, p}, 1.0 / std::sqrt(double(cin * p * p)), 0.0, wt));
            put(pe + "projection.bias", uniform({C0}, 0.1));
            norm(pe + "norm.", C0);
        }
        for (index_t i = 0; i < swin.stages(); ++i) {
            const index_t C = swin.dim(i), F = swin.ffn_hidden(i), H = swin.heads[static_cast<std::size_t>(i)];
            const index_t wn = swin.window_at(i);
            const std::string L = "layers." + std::to_string(i) + ".";
            for (index_t j = 0; j < swin.depths[static_cast<std::size_t>(i)]; ++j) {
                const std::string b = L + "blocks." + std::to_string(j) + ".";
                norm(b + "norm1.", C);
                norm(b + "norm2.", C);
                for (const char* n : {"q.", "k.", "v.", "proj."}) {
                    put(b + "attn." + n + "weight", uniform({C, C}, 1.0 / std::sqrt(double(C)), 0.0, wt));
                    put(b + "attn." + n + "bias", uniform({C}, 0.1));
                }
                put(b + "attn.relative_position_bias.relative_position_bias_table",
                    uniform({(2 * wn - 1) * (2 * wn - 1), H}, 0.5));
                const std::string mlp = b + "mlp.";
                for (std::size_t m = 0; m < swin.in_chans.size(); ++m) {
                    put(mlp + "special_router." + std::to_string(m) + ".dense.weight", uniform({modal, C}, 1.0));
                    stacked(mlp + "special_ffn." + std::to_string(m) + ".", modal, C, F);
                }
                put(mlp + "cross_router.dense.weight", uniform({collab, C}, 1.0));
                stacked(mlp + "cross_ffn.", collab, C, F);
                put(mlp + "public_ffn.mapping.weight", uniform({C, F}, 1.0 / std::sqrt(double(C)), 0.0, wt));
                put(mlp + "public_ffn.mapping.bias", uniform({F}, 0.1));
                put(mlp + "public_ffn.projection.weight", uniform({F, C}, 1.0 / std::sqrt(double(F)), 0.0, wt));
                put(mlp + "public_ffn.projection.bias", uniform({C}, 0.1));
            }
            if (i + 1 < swin.stages()) {
                put(L + "downsample.reduction.weight", uniform({2 * C, 4 * C}, 1.0 / std::sqrt(double(4 * C)), 0.0, wt));
                norm(L + "downsample.norm.", 2 * C);
            }
        }
        norm("norm.", swin.dim(swin.stages() - 1));
        return io::SafetensorsFile::from_buffer(w.to_bytes(), "random-ringmoe");
    }
    template <WeightType W = float>
    rr::RingMoeSwin<W> encoder() const {
        return rr::load_ringmoe_swin<W>(file(), "encoder.", swin);
    }
};

/// Random images [N, C, S, S] (a smooth field plus noise, so tokens differ in structure).
Tensor images(index_t N, index_t C, index_t S, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    Tensor t(DType::f32, {N, C, S, S});
    float* p = t.data<float>();
    for (index_t n = 0; n < N; ++n)
        for (index_t c = 0; c < C; ++c) {
            const float a = d(rng), b = d(rng), f = 0.05f + 0.2f * std::abs(d(rng));
            for (index_t y = 0; y < S; ++y)
                for (index_t x = 0; x < S; ++x)
                    *p++ = a * std::sin(f * static_cast<float>(x)) + b * std::cos(f * static_cast<float>(y)) + 0.3f * d(rng);
        }
    return t;
}

template <class E1, class E2>
void same_outputs(E1& a, E2& b, const Tensor& imgs, int ma, int mb) {
    const Tensor ya = rr::encode(a, imgs.view(), ma, 4), yb = rr::encode(b, imgs.view(), mb, 4);
    REQUIRE(rr::bit_identical(ya, yb));
}

io::SafetensorsFile reopen(const io::SafetensorsWriter& w, const std::string& name = "ckpt") {
    return io::SafetensorsFile::from_buffer(w.to_bytes(), name);
}

}  // namespace

TEST_CASE("ringmoe checkpoint: full, single-modality, pruned and folded encoders reload bit for bit",
          "[ringmoe][chain]") {
    const RandomRingMoe spec;
    const auto& sw = spec.swin;
    auto full = spec.encoder();
    const Tensor opt_imgs = images(4, 3, 64, 11), sar_imgs = images(4, 8, 64, 12);

    SECTION("full model, four modalities in one batch") {
        const auto info = rr::describe(full, "full");
        CHECK(info.blocks.size() == 8);
        CHECK(info.blocks[0].modal_experts == std::vector<index_t>{4, 4, 4, 4});
        CHECK(info.exact_parameters() == full.parameters());
        CHECK(info.exact_parameters() == rr::exact_parameter_count(rr::RingMoeConfig::tiny()));
        CHECK(info.block_matrix_parameters() == rr::formula_parameter_count(rr::RingMoeConfig::tiny()));
        const auto f = reopen(rr::checkpoint_writer(full, info));
        const auto back = rr::read_checkpoint_info(f);
        CHECK(back.blocks == info.blocks);
        CHECK(back.swin.in_chans == sw.in_chans);
        CHECK(back.swin.block_eps == sw.block_eps);
        CHECK(back.swin.merge_eps == sw.merge_eps);
        CHECK(back.moe.capacity_factor == 1.2);
        auto re = rr::load_moe_encoder(f);
        CHECK(re.parameters() == full.parameters());
        // All four modalities in one forward call.
        const Tensor l2 = images(2, 3, 64, 13), ms = images(2, 4, 64, 14);
        const vis::ModalityImages batch[4] = {{opt_imgs.view(), 0}, {sar_imgs.view(), 1}, {l2.view(), 2}, {ms.view(), 3}};
        const Tensor ya = full.forward(std::span<const vis::ModalityImages>(batch, 4));
        const Tensor yb = re.forward(std::span<const vis::ModalityImages>(batch, 4));
        CHECK(rr::bit_identical(ya, yb));
        // The plain vision loader reads the same file (the names are the released ones).
        auto plain = rr::load_ringmoe_swin(f, "encoder.", sw);
        same_outputs(full, plain, sar_imgs, 1, 1);
    }
    SECTION("bf16 weights stay bf16 and reload bit for bit") {
        RandomRingMoe s2 = spec;
        s2.bf16_weights = true;
        auto enc = s2.encoder<bf16>();
        const auto info = rr::describe(enc, "full");
        CHECK(info.weights == "BF16");
        const auto f = reopen(rr::checkpoint_writer(enc, info));
        CHECK(f.get("encoder.layers.0.blocks.0.mlp.cross_ffn.mapping.weight").dtype() == DType::bf16);
        CHECK(f.get("encoder.layers.0.blocks.0.mlp.cross_router.dense.weight").dtype() == DType::f32);
        auto re = rr::load_moe_encoder<bf16>(f);
        same_outputs(enc, re, opt_imgs, 0, 0);
    }
    SECTION("single modality, then fewer collaborative than modal experts (pruned), then dense") {
        auto single = rr::extract_modality(std::move(full), 1);
        CHECK(single.modalities() == 1);
        const auto i1 = rr::describe(single, "single_modality", {1});
        CHECK(i1.exact_parameters() == rr::exact_parameter_count(rr::RingMoeConfig::tiny_single_modality(1)));
        CHECK(i1.blocks == rr::checkpoint_info(rr::RingMoeConfig::tiny_single_modality(1)).blocks);
        const auto f1 = reopen(rr::checkpoint_writer(single, i1));
        CHECK(rr::read_checkpoint_info(f1).source_modalities == std::vector<int>{1});
        auto s_re = rr::load_moe_encoder(f1);
        same_outputs(single, s_re, sar_imgs, 0, 0);

        auto pruned = rr::prune_collaborative(std::move(single), sar_imgs.view(), {}, rr::CalibrationMode::once, 4);
        const auto i2 = rr::describe(pruned, "expert_pruned", {1});
        CHECK(i2.blocks[3].collab_experts == 1);
        CHECK(i2.blocks[3].modal_experts == std::vector<index_t>{4});
        CHECK(i2.exact_parameters() == pruned.parameters());
        CHECK(i2.exact_parameters() == rr::exact_parameter_count(rr::RingMoeConfig::tiny_pruned(1)));
        const auto f2 = reopen(rr::checkpoint_writer(pruned, i2));
        CHECK(f2.get("encoder.layers.2.blocks.1.mlp.cross_ffn.mapping.weight").shape() == Shape{1, 128, 512});
        auto p_re = rr::load_moe_encoder(f2);  // load_moe_modal takes each group's count from its shapes
        same_outputs(pruned, p_re, sar_imgs, 0, 0);

        auto dense = rr::fold_experts(std::move(pruned), sar_imgs.view(), {}, rr::CalibrationMode::once, 4);
        const auto i3 = rr::describe(dense, "folded", {1});
        // rank F / N per expert, N = 4 modal + 1 collaborative + 1 shared: 6 * floor(4C / 6).
        CHECK(i3.blocks[0].ffn == 6 * (128 / 6));
        CHECK(i3.blocks[7].ffn == 6 * (1024 / 6));
        CHECK(i3.exact_parameters() == dense.parameters());
        const auto f3 = reopen(rr::checkpoint_writer(dense, i3));
        auto d_re = rr::load_dense_encoder(f3);
        same_outputs(dense, d_re, sar_imgs, 0, 0);
        // The vision loader (no metadata) takes each block's width from its mapping.weight too.
        auto cfg1 = sw;
        cfg1.in_chans = {8};
        auto d_vis = rr::load_ringmoe_swin_dense(f3, "encoder.", cfg1);
        CHECK(d_vis.stage(3).blocks.at(1).ffn().ffn_size() == 6 * (1024 / 6));
        same_outputs(dense, d_vis, sar_imgs, 0, 0);
        // Loading the wrong kind, or a file without the metadata, is a FormatError.
        CHECK_THROWS_AS(rr::load_moe_encoder(f3), FormatError);
        CHECK_THROWS_AS(rr::load_dense_encoder(f2), FormatError);
        CHECK_THROWS_AS(rr::load_moe_encoder(spec.file()), FormatError);
    }
    SECTION("metadata that disagrees with the tensors is a FormatError") {
        auto info = rr::describe(full, "full");
        auto w = rr::checkpoint_writer(full, info);
        auto meta = rr::checkpoint_metadata(info);
        io::SafetensorsWriter bad;
        const auto f = reopen(w);
        for (const auto& n : f.names()) bad.add(n, f.get(n));
        for (auto [k, v] : meta) {
            if (k == "blocks.collab_experts") v = "4;4;4;4;4;4;4;2";
            bad.add_metadata(k, v);
        }
        CHECK_THROWS_AS(rr::load_moe_encoder(reopen(bad)), FormatError);
    }
}

TEST_CASE("ringmoe chain: exact step 1, most-used collaborative expert kept, counts, checkpoints",
          "[ringmoe][chain]") {
    const RandomRingMoe spec;
    const int m = 0;
    const Tensor cal = images(6, 3, 64, 21), eval = images(6, 3, 64, 22);
    rr::ChainOptions opt;
    opt.modality = m;
    opt.calibration = rr::CalibrationMode::once;
    opt.batch = 3;
    const auto dir = std::filesystem::temp_directory_path() / ("moe_ringmoe_chain_" + std::to_string(::getpid()));
    opt.dir = dir;
    auto res = rr::run_chain(spec.encoder(), cal.view(), eval.view(), opt);
    const auto& rep = res.report;
    INFO(rep.str());
    REQUIRE(rep.steps.size() == 4);

    // Step 1 is exact on modality m's images; every reload reproduces its encoder bit for bit.
    const auto& s1 = rep.step("single_modality");
    CHECK(s1.vs_previous->batch_relative_error == 0.0);
    CHECK(s1.vs_previous->max_relative_error == 0.0);
    for (const char* s : {"single_modality", "expert_pruned", "folded"}) {
        CHECK(rep.step(s).reloaded);
        CHECK(rep.step(s).reload_identical);
        CHECK(std::filesystem::exists(rep.step(s).checkpoint));
    }
    // The checkpoints on disk load into the smaller configurations.
    {
        auto single = rr::load_moe_encoder(std::filesystem::path(rep.step("single_modality").checkpoint));
        same_outputs(single, res.single, eval, 0, 0);
        auto dense = rr::load_dense_encoder(std::filesystem::path(rep.step("folded").checkpoint));
        same_outputs(dense, res.folded, eval, 0, 0);
    }

    // Parameters: the encoders' own counts equal the counts from the shapes and RingMoeConfig's.
    for (const auto& s : rep.steps) CHECK(s.parameters == s.shape_parameters);
    CHECK(rep.step("full").parameters == rr::exact_parameter_count(rr::RingMoeConfig::tiny()));
    CHECK(rep.step("single_modality").parameters == rr::exact_parameter_count(rr::RingMoeConfig::tiny_single_modality(m)));
    CHECK(rep.step("expert_pruned").parameters == rr::exact_parameter_count(rr::RingMoeConfig::tiny_pruned(m)));
    CHECK(rep.step("full").block_matrix_parameters == rr::formula_parameter_count(rr::RingMoeConfig::tiny()));
    CHECK(rep.step("single_modality").block_matrix_parameters ==
          rr::formula_parameter_count(rr::RingMoeConfig::tiny_single_modality(m)));
    CHECK(rep.step("expert_pruned").block_matrix_parameters ==
          rr::formula_parameter_count(rr::RingMoeConfig::tiny_pruned(m)));
    {
        // Folded: every expert with a nonzero weight (mean combine weight) keeps F / N neurons,
        // N = the number of such experts (at most 4 modal + 1 collaborative + 1 shared); per
        // block 4 C^2 + 2 C F_fold.
        const auto& sw = spec.swin;
        const auto& s3 = rep.step("folded");
        REQUIRE(s3.blocks.size() == 8);
        index_t expect = 0, b = 0;
        for (index_t i = 0; i < sw.stages(); ++i)
            for (index_t j = 0; j < sw.depths[static_cast<std::size_t>(i)]; ++j, ++b) {
                const index_t C = sw.dim(i), F = 4 * C;
                index_t N = 0, width = 0;
                for (const auto& g : s3.blocks[static_cast<std::size_t>(b)].groups)
                    for (std::size_t e = 0; e < g.ranks.size(); ++e) N += g.weights[e] != 0.0 ? 1 : 0;
                CHECK(N >= 3);  // the shared expert, the kept collaborative one, at least one modal
                CHECK(N <= 6);
                for (const auto& g : s3.blocks[static_cast<std::size_t>(b)].groups)
                    for (std::size_t e = 0; e < g.ranks.size(); ++e) {
                        CHECK(g.ranks[e] == (g.weights[e] != 0.0 ? F / N : 0));
                        width += g.ranks[e];
                    }
                CHECK(s3.info.blocks[static_cast<std::size_t>(b)].ffn == width);
                expect += 4 * C * C + 2 * C * width;
            }
        CHECK(s3.block_matrix_parameters == expect);
    }

    // Step 2: ceil(0.25 * 4) = 1 collaborative expert per block, the one the collaborative router
    // picks most often on the block's calibration tokens. With CalibrationMode::once those are
    // the single-modality encoder's FFN inputs over the calibration images, in batches of 3.
    std::vector<Tensor> caps;
    vis::SwinForward fo;
    fo.ffn_inputs = &caps;
    std::vector<std::vector<std::int64_t>> counts(8, std::vector<std::int64_t>(4, 0));
    std::vector<std::vector<std::int64_t>> loads(8, std::vector<std::int64_t>(4, 0));
    for (index_t first = 0; first < 6; first += 3) {
        const Tensor part = Tensor::copy_of(TensorView(cal.data<float>() + first * 3 * 64 * 64, DType::f32, {3, 3, 64, 64}));
        res.single.forward(part.view(), 0, fo);
        REQUIRE(caps.size() == 8);
        index_t b = 0;
        for (index_t i = 0; i < 4; ++i)
            for (auto& blk : res.single.stage(i).blocks) {
                const auto x = caps[static_cast<std::size_t>(b)].matrix<float>();
                const auto g = blk.ffn().collab_router().gate().weight();
                for (index_t t = 0; t < x.rows; ++t) {
                    index_t best = 0;
                    double bv = -1e300;
                    for (index_t e = 0; e < g.rows; ++e) {
                        double s = 0;
                        for (index_t c = 0; c < x.cols; ++c) s += double(x(t, c)) * double(g(e, c));
                        if (s > bv) bv = s, best = e;
                    }
                    ++counts[static_cast<std::size_t>(b)][static_cast<std::size_t>(best)];
                }
                auto layer = blk.ffn();
                Tensor y(DType::f32, {x.rows, x.cols});
                const ModalityChunk ch{0, x.rows, 0};
                layer.forward(x, std::span<const ModalityChunk>(&ch, 1), y.matrix<float>());
                for (index_t e = 0; e < 4; ++e)
                    loads[static_cast<std::size_t>(b)][static_cast<std::size_t>(e)] += layer.collab_plan().load[static_cast<std::size_t>(e)];
                ++b;
            }
    }
    const auto& s2 = rep.step("expert_pruned");
    REQUIRE(s2.blocks.size() == 8);
    for (std::size_t b = 0; b < 8; ++b) {
        INFO("block " << b);
        CHECK(counts[b] == loads[b]);  // the plans count what the logits say
        const auto& c = counts[b];
        const auto best = static_cast<index_t>(std::max_element(c.begin(), c.end()) - c.begin());
        const auto& g = s2.blocks[b].group("collab");
        CHECK(g.experts_after == 1);
        CHECK(g.kept == std::vector<index_t>{best});
        CHECK(s2.info.blocks[b].collab_experts == 1);
    }
    // The pruned encoder's collaborative gate is the kept row of the single-modality one.
    {
        const auto& a = res.single.stage(1).blocks[0].ffn().collab_router().gate().weight();
        const auto& p = res.pruned.stage(1).blocks[0].ffn().collab_router().gate().weight();
        const index_t kept = s2.blocks[2].group("collab").kept.front();
        REQUIRE(p.rows == 1);
        CHECK(std::memcmp(p.row(0), a.row(kept), static_cast<std::size_t>(a.cols) * sizeof(float)) == 0);
    }
    // Step 3 (rank F / N) is an approximation and says how good: finite, below 1.
    const auto& s3 = rep.step("folded");
    CHECK(std::isfinite(s3.vs_previous->mean_cosine));
    CHECK(s3.vs_previous->mean_cosine < 1.0);
    CHECK(s3.vs_previous->batch_relative_error > 0.0);
    CHECK(s3.vs_single.has_value());
    CHECK_FALSE(rep.table().empty());
    std::filesystem::remove_all(dir);
}

TEST_CASE("ringmoe chain: a full-rank fold of one-expert groups reproduces the pruned model; truncation costs",
          "[ringmoe][chain]") {
    // One modal expert per modality: after step 2 every routed group holds one expert, so the
    // routed output is the plain sum the fold reproduces (top-1 of one expert: weight 1, capacity
    // ceil(1.2 T) >= T, nothing dropped). Full rank r_e = F_e keeps every neuron and the output
    // weights unchanged; what differs is the order of the fp32 sums (one GEMM over 3F neurons
    // instead of three expert outputs added), so the encoder outputs agree to fp32 rounding.
    RandomRingMoe spec;
    spec.modal = 1;
    spec.seed = 5;
    const auto& sw = spec.swin;
    const Tensor cal = images(4, 4, 64, 31), eval = images(4, 4, 64, 32);
    auto single = rr::extract_modality(spec.encoder(), 3);
    auto pruned = rr::prune_collaborative(std::move(single), cal.view(), {}, rr::CalibrationMode::progressive, 2);
    const auto f = reopen(rr::checkpoint_writer(pruned, rr::describe(pruned, "expert_pruned", {3})));
    const Tensor y2 = rr::encode(pruned, eval.view(), 0, 2);

    auto full_rank = [&](index_t stage, index_t) {
        SvdFold s;
        s.rank = sw.ffn_hidden(stage);
        return s;
    };
    std::vector<PruneReport> reps;
    auto dense = rr::fold_experts(rr::load_moe_encoder(f), cal.view(), full_rank, rr::CalibrationMode::progressive, 2,
                                  &reps);
    const auto info = rr::describe(dense, "folded");
    CHECK(info.blocks[0].ffn == 3 * 128);
    CHECK(info.blocks[7].ffn == 3 * 1024);
    const Tensor y3 = rr::encode(dense, eval.view(), 0, 2);
    const auto exact = rr::compare_outputs(y3, y2, 4);
    CHECK(exact.batch_relative_error < 2e-5);
    CHECK(exact.max_relative_error < 2e-5);
    CHECK(exact.min_cosine > 1 - 1e-9);
    for (const auto& r : reps) CHECK(r.fidelity.relative_error < 1e-5);

    // Truncated rank F / N (N = 3 here: F / 3 each, 3 floor(F / 3) in all): a real approximation,
    // measurably worse, with its fidelity reported per block.
    auto truncated = rr::fold_experts(rr::load_moe_encoder(f), cal.view(), SvdFold{}, rr::CalibrationMode::progressive,
                                      2, &reps);
    CHECK(rr::describe(truncated, "folded").blocks[0].ffn == 3 * (128 / 3));
    const auto approx = rr::compare_outputs(rr::encode(truncated, eval.view(), 0, 2), y2, 4);
    CHECK(approx.batch_relative_error > 100 * exact.batch_relative_error);
    CHECK(approx.mean_cosine < exact.mean_cosine);
    for (const auto& r : reps) {
        CHECK(std::isfinite(r.fidelity.relative_error));
        CHECK(r.fold.has_value());
    }
}

TEST_CASE("ringmoe chain: progressive and once calibration agree on the first block; bad input is an error",
          "[ringmoe][chain]") {
    const RandomRingMoe spec;
    const Tensor cal = images(4, 3, 64, 41);
    std::vector<PruneReport> a, b;
    auto p1 = rr::prune_collaborative(rr::extract_modality(spec.encoder(), 0), cal.view(), {},
                                      rr::CalibrationMode::progressive, 2, &a);
    auto p2 = rr::prune_collaborative(rr::extract_modality(spec.encoder(), 0), cal.view(), {},
                                      rr::CalibrationMode::once, 2, &b);
    REQUIRE(a.size() == 8);
    REQUIRE(b.size() == 8);
    // Block 0's input does not depend on any pruning.
    CHECK(a[0].group("collab").kept == b[0].group("collab").kept);
    CHECK(a[0].fidelity.tokens == 4 * 256);

    CHECK_THROWS_AS(rr::extract_modality(spec.encoder(), 4), ConfigError);
    CHECK_THROWS_AS(rr::prune_collaborative(spec.encoder(), cal.view()), ConfigError);  // four modalities
    const Tensor wrong = images(2, 8, 64, 42);
    CHECK_THROWS_AS(rr::prune_collaborative(rr::extract_modality(spec.encoder(), 0), wrong.view()), ShapeError);
    rr::ChainOptions opt;
    opt.batch = 0;
    CHECK_THROWS_AS(rr::run_chain(spec.encoder(), cal.view(), cal.view(), opt), ConfigError);
}

TEST_CASE("ringmoe chain: encoder-output fidelity figures, hand-derived", "[ringmoe][chain]") {
    // Two images of one 2-wide token each: r0 = (1, 1), r1 = (1, -1); y0 = (1, 1), y1 = (1, 1).
    // Per image: cos 1 and 0, relative error 0 and ||(0, 2)|| / ||(1, -1)|| = sqrt 2.
    // Whole batch: <y, r> = 2, ||y||^2 = ||r||^2 = 4 -> cos 0.5; ||y - r|| / ||r|| = 2 / 2 = 1.
    // Centered on mu = (1, 0): (0, 1) vs (0, 1) -> 1, (0, 1) vs (0, -1) -> -1: mean 0;
    // ||y - r|| / ||r - mu|| = 2 / sqrt 2. Cross-image cosine of the reference: cos(r0, r1) = 0.
    const Tensor r = Tensor::from<float>({2, 2}, std::vector<float>{1, 1, 1, -1});
    const Tensor y = Tensor::from<float>({2, 2}, std::vector<float>{1, 1, 1, 1});
    const auto f = rr::compare_outputs(y, r, 2);
    CHECK(f.images == 2);
    CHECK(f.mean_cosine == Approx(0.5));
    CHECK(f.min_cosine == Approx(0.0).margin(1e-15));
    CHECK(f.worst_image == 1);
    CHECK(f.mean_relative_error == Approx(std::sqrt(2.0) / 2));
    CHECK(f.max_relative_error == Approx(std::sqrt(2.0)));
    CHECK(f.batch_cosine == Approx(0.5));
    CHECK(f.batch_relative_error == Approx(1.0));
    CHECK(f.centered_mean_cosine == Approx(0.0).margin(1e-15));
    CHECK(f.centered_relative_error == Approx(std::sqrt(2.0)));
    CHECK(f.reference_cross_cosine == Approx(0.0).margin(1e-15));
    const auto same = rr::compare_outputs(r, r, 2);
    CHECK(same.mean_cosine == 1.0);
    CHECK(same.batch_relative_error == 0.0);
    CHECK(same.centered_mean_cosine == Approx(1.0));
    CHECK_THROWS_AS(rr::compare_outputs(y, r, 3), ShapeError);
    // The chain folds with each expert's mean combine weight by default (see ChainOptions).
    CHECK(rr::ChainOptions{}.fold.weighting == FoldWeighting::combine_weight);
}

TEST_CASE("ringmoe chain: bf16 weights through the whole chain; counts of the full-size configurations",
          "[ringmoe][chain]") {
    RandomRingMoe spec;
    spec.bf16_weights = true;
    const Tensor cal = images(2, 4, 64, 51), eval = images(2, 4, 64, 52);
    rr::ChainOptions opt;
    opt.modality = 3;
    opt.calibration = rr::CalibrationMode::once;
    opt.batch = 2;
    auto res = rr::run_chain(spec.encoder<bf16>(), cal.view(), eval.view(), opt);
    INFO(res.report.str());
    for (const char* s : {"single_modality", "expert_pruned", "folded"}) {
        CHECK(res.report.step(s).reload_identical);
        CHECK(res.report.step(s).info.weights == "BF16");
        CHECK(res.report.step(s).parameters == res.report.step(s).shape_parameters);
    }
    CHECK(res.report.step("single_modality").vs_previous->max_relative_error == 0.0);
    // The shapes' counts agree with RingMoeConfig's for the released sizes (no weights needed).
    for (const auto& cfg : {rr::RingMoeConfig::full(), rr::RingMoeConfig::single_modality(0),
                            rr::RingMoeConfig::pruned(0), rr::RingMoeConfig::folded_1b(0)}) {
        INFO(cfg.name);
        const auto info = rr::checkpoint_info(cfg);
        CHECK(info.exact_parameters() == rr::exact_parameter_count(cfg));
        CHECK(info.block_matrix_parameters() == rr::formula_parameter_count(cfg));
    }
    CHECK(rr::checkpoint_info(rr::RingMoeConfig::full()).block_matrix_parameters() == 14'705'983'488);
}

}  // namespace moe_test_ringmoe_chain
