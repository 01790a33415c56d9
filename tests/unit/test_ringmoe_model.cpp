// Unit tests of include/rs/ringmoe/ (config, model, heads, random): the published parameter
// counts (formula), exact counts against built models, the 224-px window rule, random-weight
// checkpoints (determinism, streaming = in-memory, initialisation statistics, layout), heads
// against hand-derived values, routing statistics bookkeeping, and the error paths (unknown
// modality, wrong channels, wrong image size, missing tensor).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "moe/io/safetensors.hpp"
#include "rs/ringmoe.hpp"

namespace moe_test_ringmoe_model {  // this file's names (unity builds merge test files)

using moe::index_t;
using moe::Tensor;
namespace rr = moe::rs::ringmoe;
namespace vis = moe::vision;

namespace {

template <class E, class Fn>
void throws_mentioning(Fn&& fn, std::initializer_list<std::string> needles) {
    bool thrown = false;
    try {
        fn();
    } catch (const E& e) {
        thrown = true;
        const std::string what = e.what();
        INFO("message: " << what);
        for (const auto& n : needles) CHECK(what.find(n) != std::string::npos);
    }
    CHECK(thrown);
}

Tensor images(index_t B, index_t C, index_t S, std::uint64_t seed) {
    Tensor t(moe::DType::f32, {B, C, S, S});
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (auto& v : t.span<float>()) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        v = static_cast<float>(static_cast<double>(x >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    return t;
}

bool all_equal(const float* p, index_t n, float v) {
    for (index_t i = 0; i < n; ++i)
        if (p[i] != v) return false;
    return n > 0;
}

template <class Any>
index_t params_of(const Any& any) {
    return std::visit([](const auto& m) { return m.parameters(); }, any);
}

}  // namespace

TEST_CASE("ringmoe config: the published parameter counts (formula)", "[ringmoe]") {
    // sum over blocks of C^2: 2 * 448^2 + 2 * 896^2 + 18 * 1792^2 + 2 * 3584^2.
    const index_t S = 2 * 448 * 448 + 2 * 896 * 896 + 18 * 1792 * 1792 + 2 * 3584 * 3584;
    REQUIRE(S == 85'499'904);
    const auto full = rr::RingMoeConfig::full();
    CHECK(full.ffns_per_block() == 21);
    CHECK(rr::formula_parameter_count(full) == 14'705'983'488);  // (4 + 21 * 8) S = 14.706B
    CHECK(rr::formula_active_parameter_count(full) == 28 * S);   // 2.39B
    for (int m = 0; m < 4; ++m) {
        const auto single = rr::RingMoeConfig::single_modality(m);
        CHECK(single.num_modalities() == 1);
        CHECK(single.modalities.front().source == m);
        CHECK(rr::formula_parameter_count(single) == 6'497'992'704);  // (4 + 9 * 8) S = 6.498B
        const auto pruned = rr::RingMoeConfig::pruned(m);
        CHECK(pruned.collab_experts == 1);                               // 25% of 4
        CHECK(rr::formula_parameter_count(pruned) == (4 + 6 * 8) * S);   // 4.446B
        const auto folded = rr::RingMoeConfig::folded_1b(m);
        CHECK(folded.ffn == rr::FfnKind::dense);
        CHECK(rr::formula_parameter_count(folded) == 1'025'998'848);     // (4 + 8) S = 1.03B
    }
}

TEST_CASE("ringmoe config: exact full-size counts are within a stated margin of the formula", "[ringmoe]") {
    // The formula leaves out biases, norms, routers, bias tables, patch embeddings and the patch
    // mergings (8 C^2 + 4 C per merge: 33.7M, the largest part). Margins: full 0.3%,
    // single-modality 0.6%, pruned 0.9%, folded 3.5%.
    struct Case {
        rr::RingMoeConfig c;
        double margin;
    };
    for (const auto& [c, margin] : {Case{rr::RingMoeConfig::full(), 0.003}, Case{rr::RingMoeConfig::single_modality(0), 0.006},
                                    Case{rr::RingMoeConfig::pruned(0), 0.009}, Case{rr::RingMoeConfig::folded_1b(0), 0.035},
                                    Case{rr::RingMoeConfig::folded_1b(0, 224), 0.035}}) {
        const index_t exact = rr::exact_parameter_count(c), formula = rr::formula_parameter_count(c);
        std::printf("ringmoe %-40s formula %14lld  exact %14lld  (+%.3f%%)\n", c.name.c_str(),
                    static_cast<long long>(formula), static_cast<long long>(exact),
                    100.0 * (double(exact) / double(formula) - 1.0));
        INFO(c.name);
        CHECK(exact > formula);
        CHECK(double(exact) / double(formula) - 1.0 <= margin);
    }
    // A dense configuration's exact count is the vision Swin count (an independent implementation).
    const auto folded = rr::RingMoeConfig::folded_1b(1);
    CHECK(rr::exact_parameter_count(folded) == vis::swin_parameter_count(folded.swin));
    // The MoE count by hand for full(): the dense Swin plus, per block, 20 more experts and routers.
    const auto full = rr::RingMoeConfig::full();
    auto dense = full.swin;
    index_t extra = 0;
    for (index_t i = 0; i < 4; ++i) {
        const index_t C = dense.dim(i), F = 4 * C;
        extra += dense.depths[static_cast<std::size_t>(i)] * (20 * (2 * C * F + F + C) + 20 * C);
    }
    CHECK(rr::exact_parameter_count(full) == vis::swin_parameter_count(dense) + extra);
}

TEST_CASE("ringmoe config: image size 224 picks window 7; derivations and names", "[ringmoe]") {
    const auto c192 = rr::RingMoeConfig::folded_1b(0);
    CHECK(c192.swin.window == 12);
    const auto c224 = rr::RingMoeConfig::folded_1b(0, 224);
    CHECK(c224.swin.image_size == 224);
    CHECK(c224.swin.window == 7);  // 56, 28, 14, 7 are multiples of 7; not of 8..12
    for (index_t i = 0; i < 4; ++i) {
        CHECK(c224.swin.resolution(i) == (56 >> i));
        CHECK(c224.swin.window_at(i) == 7);
        CHECK(c224.swin.shift_at(i) == (i < 3 ? 3 : 0));
    }
    CHECK(rr::RingMoeConfig::full(224).swin.window == 7);
    CHECK(rr::RingMoeConfig::tiny().with_image(96).swin.window == 3);  // 24, 12, 6, 3
    CHECK(rr::RingMoeConfig::tiny().with_image(128).swin.window == 4);
    throws_mentioning<moe::ConfigError>([] { (void)rr::RingMoeConfig::full().with_image(224, 8); },
                                        {"resolution 28 is not a multiple of window 8"});

    CHECK(rr::RingMoeConfig::single_modality("sar").modalities.front().name == "sar-l2");
    CHECK(rr::RingMoeConfig::tiny_pruned("ms").modalities.front().in_chans == 4);
    CHECK(rr::RingMoeConfig::tiny_pruned(0, 0.5).collab_experts == 2);
    CHECK(rr::RingMoeConfig::tiny_folded(1).name == "tiny folded (sar-l1)");
    CHECK(c224.name == "folded (optical) @224");
    CHECK(rr::RingMoeConfig::tiny().modality_index("quadpol") == 1);
    throws_mentioning<moe::ConfigError>([] { (void)rr::RingMoeConfig::tiny().extract("lidar"); },
                                        {"unknown modality 'lidar'", "optical", "multispectral"});
    throws_mentioning<moe::ConfigError>([] { (void)rr::RingMoeConfig::tiny_folded(0).extract(0); }, {"dense"});
    throws_mentioning<moe::ConfigError>([] { (void)rr::RingMoeConfig::tiny().prune_collab(0.0); }, {"(0, 1]"});
    auto bad = rr::RingMoeConfig::tiny();
    bad.seg_stage = 4;
    throws_mentioning<moe::ConfigError>([&] { bad.validate(); }, {"segmentation stage 4"});
    bad = rr::RingMoeConfig::tiny();
    bad.shared_experts = 2;
    throws_mentioning<moe::ConfigError>([&] { bad.validate(); }, {"public_ffn"});
}

TEST_CASE("ringmoe model: built tiny models hold exactly the counted parameters", "[ringmoe]") {
    auto with_heads = [](rr::RingMoeConfig c) {
        c.num_classes = 6;
        c.seg_classes = 3;
        c.seg_stage = 2;
        return c;
    };
    for (const auto& c : {rr::RingMoeConfig::tiny(), with_heads(rr::RingMoeConfig::tiny_single_modality("sar-l1")),
                          rr::RingMoeConfig::tiny_pruned(3), with_heads(rr::RingMoeConfig::tiny_folded(2))}) {
        INFO(c.name);
        const auto model = rr::random_ringmoe<float>(c);
        CHECK(params_of(model) == rr::exact_parameter_count(c));
        CHECK(std::holds_alternative<rr::RingMoeDense<float>>(model) == (c.ffn == rr::FfnKind::dense));
    }
}

TEST_CASE("ringmoe random checkpoints: deterministic, streamed = in memory, released initialisation", "[ringmoe]") {
    auto cfg = rr::RingMoeConfig::tiny_pruned("optical");
    cfg.num_classes = 4;
    rr::RandomWeightOptions opt;
    opt.seed = 7;
    const auto a = rr::random_checkpoint_bytes(cfg, opt);
    CHECK(a == rr::random_checkpoint_bytes(cfg, opt));
    CHECK(a.size() == rr::random_checkpoint_size(cfg, opt));
    opt.seed = 8;
    CHECK(a != rr::random_checkpoint_bytes(cfg, opt));
    opt.seed = 7;

    const auto path = std::filesystem::temp_directory_path() / "moe_test_ringmoe_random.safetensors";
    rr::write_random_checkpoint(path, cfg, opt);
    {
        std::ifstream in(path, std::ios::binary);
        std::vector<char> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        REQUIRE(b.size() == a.size());
        CHECK(std::memcmp(b.data(), a.data(), a.size()) == 0);
    }
    const auto file = moe::io::SafetensorsFile::open(path);
    std::filesystem::remove(path);
    CHECK(file.metadata().at("moe.config") == cfg.name);

    // Every tensor the layout lists is there, with its shape; data = 4 bytes per parameter plus
    // the int32 position-index buffers.
    const auto layout = rr::checkpoint_layout(cfg, opt);
    CHECK(file.size() == layout.size());
    index_t values = 0, index_values = 0;
    for (const auto& s : layout) {
        (s.dtype == moe::DType::i32 ? index_values : values) += s.numel();
        CHECK(file.get(s.name).numel() == s.numel());
    }
    CHECK(values == rr::exact_parameter_count(cfg));

    // Initialisation: trunc-normal(0.02, +-2 std) has std 0.02 * 0.87962 and no value beyond 0.04.
    const auto w = file.get("encoder.layers.3.blocks.0.mlp.special_ffn.0.mapping.weight");  // [4, 256, 1024]
    double s1 = 0, s2 = 0, mx = 0;
    const float* d = w.data<float>();
    for (index_t i = 0; i < w.numel(); ++i) {
        s1 += d[i];
        s2 += double(d[i]) * d[i];
        mx = std::max(mx, std::abs(double(d[i])));
    }
    const double n = double(w.numel()), mean = s1 / n, sd = std::sqrt(s2 / n - mean * mean);
    CHECK(std::abs(mean) < 4 * 0.0176 / std::sqrt(n));
    CHECK(sd == Approx(0.02 * 0.87962).epsilon(0.01));
    CHECK(mx <= 0.04);
    CHECK(mx > 0.039);
    for (const char* z : {"encoder.layers.0.blocks.0.attn.q.bias", "encoder.layers.2.blocks.1.mlp.cross_ffn.mapping.bias",
                          "head.bias", "encoder.norm.beta"}) {
        const auto t = file.get(z);
        CHECK(all_equal(t.data<float>(), t.numel(), 0.0f));
    }
    const auto g = file.get("encoder.layers.1.downsample.norm.gamma");
    CHECK(all_equal(g.data<float>(), g.numel(), 1.0f));
    const auto idx = file.get("encoder.layers.0.blocks.1.attn.relative_position_bias.relative_position_index");
    const auto ref = vis::relative_position_index(4);
    REQUIRE(idx.numel() == static_cast<index_t>(ref.size()));
    CHECK(std::memcmp(idx.raw(), ref.data(), ref.size() * 4) == 0);

    // bf16: weight matrices BF16 (the f32 values rounded), routers, biases, norms, tables F32.
    opt.dtype = moe::DType::bf16;
    const auto hb = moe::io::SafetensorsFile::from_buffer(rr::random_checkpoint_bytes(cfg, opt), "bf16");
    const auto wb = hb.get("encoder.layers.3.blocks.0.mlp.special_ffn.0.mapping.weight");
    CHECK(wb.dtype() == moe::DType::bf16);
    CHECK(hb.get("encoder.layers.3.blocks.0.mlp.special_router.0.dense.weight").dtype() == moe::DType::f32);
    CHECK(hb.get("encoder.layers.0.blocks.0.attn.relative_position_bias.relative_position_bias_table").dtype() ==
          moe::DType::f32);
    CHECK(hb.get("head.weight").dtype() == moe::DType::bf16);
    for (index_t i = 0; i < 1000; ++i) CHECK(static_cast<float>(wb.data<moe::bf16>()[i]) == static_cast<float>(moe::bf16(d[i])));

    // Full-size layouts cost nothing to list: the folded 1B file is 4 bytes per parameter.
    const auto big = rr::RingMoeConfig::folded_1b(0);
    rr::RandomWeightOptions no_index;
    no_index.relative_position_index = false;
    index_t big_values = 0;
    for (const auto& s : rr::checkpoint_layout(big, no_index)) big_values += s.numel();
    CHECK(big_values == rr::exact_parameter_count(big));
}

TEST_CASE("ringmoe heads: bilinear upsampling and mean pooling by hand", "[ringmoe]") {
    // F.interpolate([[1, 2], [3, 4]], size 4, bilinear, align_corners=False): source x = (d + 0.5) / 2 - 0.5,
    // clamped at 0.
    Tensor x = Tensor::from<float>({1, 1, 2, 2}, std::vector<float>{1, 2, 3, 4});
    const Tensor y = rr::upsample_bilinear(x.view(), 4);
    const float ref[16] = {1, 1.25f, 1.75f, 2, 1.5f, 1.75f, 2.25f, 2.5f, 2.5f, 2.75f, 3.25f, 3.5f, 3, 3.25f, 3.75f, 4};
    for (int i = 0; i < 16; ++i) CHECK(y.data<float>()[i] == Approx(ref[i]).margin(1e-6));
    const Tensor same = rr::upsample_bilinear(x.view(), 2);
    CHECK(std::memcmp(same.raw(), x.raw(), x.nbytes()) == 0);

    // Classification: logits = W mean(tokens) + b.
    Tensor w = Tensor::from<float>({2, 3}, std::vector<float>{1, 0, -1, 0.5f, 2, 0});
    Tensor b = Tensor::from<float>({2}, std::vector<float>{0.25f, -1});
    rr::ClassificationHead<float> head(vis::Linear<float>(std::move(w), std::move(b)));
    Tensor f = Tensor::from<float>({4, 3}, std::vector<float>{1, 2, 3, 3, 2, 1, 0, 0, 0, 2, 2, 2});  // 2 images x 2 tokens
    const Tensor lg = head.forward(f.matrix<float>(), 2);
    // image 0: mean (2, 2, 2) -> (0 + 0.25, 1 + 4 - 1); image 1: mean (1, 1, 1) -> (0.25, 0.5 + 2 - 1).
    CHECK(lg.data<float>()[0] == Approx(0.25));
    CHECK(lg.data<float>()[1] == Approx(4.0));
    CHECK(lg.data<float>()[2] == Approx(0.25));
    CHECK(lg.data<float>()[3] == Approx(1.5));
}

TEST_CASE("ringmoe model: routing statistics and input errors", "[ringmoe]") {
    auto cfg = rr::RingMoeConfig::tiny();
    cfg.num_classes = 3;
    cfg.seg_classes = 2;
    auto any = rr::random_ringmoe<float>(cfg);
    auto& model = std::get<rr::RingMoe<float>>(any);
    CHECK(model.routing().empty());
    // Only SAR-L2 and optical, out of modality order.
    const Tensor sar = images(2, 3, 64, 1), opt = images(1, 3, 64, 2);
    const std::vector<vis::ModalityImages> batches{{sar.view(), model.modality("sar-l2")}, {opt.view(), 0}};
    const auto out = model.forward(batches);
    CHECK(out.batch == 3);
    CHECK(out.features.dim(0) == 3 * 4);
    CHECK(out.logits.dim(0) == 3);
    CHECK(out.segmentation.dim(2) == 64);
    const auto r = model.routing();
    REQUIRE(r.size() == 8);
    for (const auto& b : r) {
        const index_t L = cfg.swin.resolution(b.stage) * cfg.swin.resolution(b.stage);
        CHECK(b.modal[0].tokens == L);
        CHECK(b.modal[1].tokens == 0);
        CHECK(b.modal[2].tokens == 2 * L);
        CHECK(b.modal[3].tokens == 0);
        index_t sar_kept = 0, opt_kept = 0, ms_kept = 0;
        for (auto v : b.collab_kept_by_modality[2]) sar_kept += v;
        for (auto v : b.collab_kept_by_modality[0]) opt_kept += v;
        for (auto v : b.collab_kept_by_modality[3]) ms_kept += v;
        CHECK(ms_kept == 0);
        CHECK(sar_kept + opt_kept + b.collab.dropped == 3 * L);
    }
    // Errors: unknown modality, wrong channels, wrong size, no images.
    throws_mentioning<moe::ConfigError>([&] { (void)model.forward(sar.view(), 4); },
                                        {"unknown modality 4", "0 optical", "3 multispectral"});
    throws_mentioning<moe::ConfigError>([&] { (void)model.forward(sar.view(), "lidar"); }, {"unknown modality 'lidar'"});
    throws_mentioning<moe::ShapeError>([&] { (void)model.forward(sar.view(), "sar-l1"); },
                                       {"sar-l1", "[B, 8, 64, 64]", "[2, 3, 64, 64]"});
    const Tensor small = images(1, 3, 32, 3);
    throws_mentioning<moe::ShapeError>([&] { (void)model.forward(small.view(), "optical"); },
                                       {"64 x 64", "[1, 3, 32, 32]"});
    throws_mentioning<moe::ShapeError>([&] { (void)model.forward(std::span<const vis::ModalityImages>{}); },
                                       {"no images"});
    // A single-modality model knows only its own modality.
    auto single = rr::random_ringmoe<float>(rr::RingMoeConfig::tiny_single_modality("multispectral"));
    throws_mentioning<moe::ConfigError>(
        [&] { (void)std::get<0>(single).forward(opt.view(), "optical"); },
        {"unknown modality 'optical'", "0 multispectral (4 channels)"});
    const Tensor ms = images(1, 4, 64, 4);
    CHECK(std::get<0>(single).forward(ms.view(), "ms").features.dim(1) == 256);
}

TEST_CASE("ringmoe loader: a missing tensor is named", "[ringmoe]") {
    const auto cfg = rr::RingMoeConfig::tiny_folded("optical");
    const auto bytes = rr::random_checkpoint_bytes(cfg);
    const auto full = moe::io::SafetensorsFile::from_buffer(bytes, "random");
    moe::io::SafetensorsWriter w;
    for (const auto& n : full.names())
        if (n != "encoder.layers.2.blocks.1.mlp.projection.weight") w.add(n, full.get(n));
    const auto edited = moe::io::SafetensorsFile::from_buffer(w.to_bytes(), "edited");
    throws_mentioning<moe::NotFoundError>([&] { (void)rr::load_ringmoe<float>(edited, cfg); },
                                          {"encoder.layers.2.blocks.1.mlp.projection.weight"});
    auto with_head = cfg;
    with_head.num_classes = 5;
    throws_mentioning<moe::NotFoundError>([&] { (void)rr::load_ringmoe<float>(full, with_head); }, {"'head."});
}

}  // namespace moe_test_ringmoe_model

namespace moe_test_ringmoe_model {

TEST_CASE("ringmoe int8 experts: the random writer is the quantiser, loads borrow it, fidelity", "[ringmoe][int8]") {
    auto cfg = rr::RingMoeConfig::tiny();
    cfg.num_classes = 0;
    cfg.seg_classes = 0;
    rr::RandomWeightOptions o;
    o.seed = 5;
    const auto f32 = moe::io::SafetensorsFile::from_buffer(rr::random_checkpoint_bytes(cfg, o), "f32");
    o.int8_experts = true;
    const auto q8 = moe::io::SafetensorsFile::from_buffer(rr::random_checkpoint_bytes(cfg, o), "int8");
    REQUIRE(q8.metadata().at("moe.quantization") == "int8");

    // The writer's int8 tensors are io::quantize_checkpoint's of the F32 file (MindSpore [E, in,
    // out] stacks written [E, out, in]), byte for byte; everything else is the F32 file's.
    std::vector<std::string> int8_names;
    for (const auto& n : q8.names())
        if (q8.get(n).dtype() == moe::DType::i8) int8_names.push_back(n);
    REQUIRE(int8_names.size() == 8 * (2 * 4 + 2 + 2));  // 8 blocks x (4 modal + collab + shared) x 2 matrices
    const std::filesystem::path tmp =
        std::filesystem::temp_directory_path() / ("moe_ringmoe_int8_" + std::to_string(::getpid()) + ".safetensors");
    moe::io::QuantizeOptions qo;
    qo.select = [&](const std::string& n, const moe::TensorView&) {
        return std::find(int8_names.begin(), int8_names.end(), n) != int8_names.end();
    };
    qo.in_out = [](const std::string&) { return true; };
    moe::io::quantize_checkpoint(f32, tmp, qo);
    {
        const auto mine = moe::io::SafetensorsFile::open(tmp);
        for (const auto& n : q8.names()) {
            INFO(n);
            const moe::TensorView a = q8.get(n), b = mine.get(n);
            REQUIRE(a.dtype() == b.dtype());
            REQUIRE(a.shape() == b.shape());
            REQUIRE(std::memcmp(a.raw(), b.raw(), static_cast<std::size_t>(a.nbytes())) == 0);
        }
    }
    std::filesystem::remove(tmp);

    // The int8 file's experts are read in place; quantising the F32 file at load gives the same model.
    using M8 = rr::RingMoe<float, moe::GeluTanh, moe::int8_dot>;
    auto a = rr::load_ringmoe<float, moe::GeluTanh, moe::int8_dot>(q8, cfg);
    auto b = rr::load_ringmoe<float, moe::GeluTanh, moe::int8_dot>(f32, cfg);
    auto& ma = std::get<M8>(a);
    auto& mb = std::get<M8>(b);
    const auto& ffn = ma.encoder().stage(1).blocks[0].ffn();
    CHECK(static_cast<const void*>(ffn.collab_experts().fc1().int8_weight(0).q) ==
          q8.get("encoder.layers.1.blocks.0.mlp.cross_ffn.mapping.weight").raw());
    const Tensor x = images(2, 3, 64, 7);
    const std::vector<vis::ModalityImages> in{{x.view(), 0}};
    const rr::Capture ca = rr::capture(ma, in), cb = rr::capture(mb, in);
    REQUIRE(ca.blocks.size() == 8);
    for (std::size_t i = 0; i < ca.blocks.size(); ++i)
        REQUIRE(std::memcmp(ca.blocks[i].raw(), cb.blocks[i].raw(), static_cast<std::size_t>(ca.blocks[i].nbytes())) == 0);

    // Fidelity: exact against itself; close to the fp32 model in the first block (before routing
    // near-ties of random weights amplify differences), and the report has a row per block.
    rr::RandomWeightOptions of;
    of.seed = 5;
    auto f = rr::random_ringmoe<float>(cfg, of);
    const rr::Capture cf = rr::capture(std::get<rr::RingMoe<float>>(f), in);
    const rr::ModelFidelity self = rr::fidelity(ca, ca);
    CHECK(self.encoder.relative_error == 0.0);
    CHECK(self.encoder.cosine == Approx(1.0).epsilon(1e-12));
    const rr::ModelFidelity q = rr::fidelity(ca, cf);
    CHECK(q.blocks[0].cosine > 0.9999);
    CHECK(q.blocks[0].relative_error < 0.02);
    const std::string table = rr::fidelity_table(q, cfg);
    CHECK(table.find("stage 3 block 1") != std::string::npos);
    CHECK(table.find("encoder output") != std::string::npos);
    rr::Capture short_one = rr::capture(ma, in);
    short_one.blocks.pop_back();
    CHECK_THROWS_AS(rr::fidelity(short_one, cf), moe::ShapeError);

    // Routing imposed: a model run with its own plans is the same bits; the int8 model with the
    // fp32 model's plans is at least as close to it in every block as without (no flipped
    // top-1 choice or capacity drop adds to the experts' error), and its encoder output within
    // the per-block int8 error; the plans are released afterwards; plans of other inputs are a
    // ShapeError naming the group.
    auto& mf = std::get<rr::RingMoe<float>>(f);
    REQUIRE(cf.plans.size() == 8);
    const rr::Capture again = rr::capture(mf, in, &cf);
    for (std::size_t i = 0; i < cf.blocks.size(); ++i)
        REQUIRE(std::memcmp(again.blocks[i].raw(), cf.blocks[i].raw(), static_cast<std::size_t>(cf.blocks[i].nbytes())) == 0);
    const rr::ModelFidelity held = rr::fidelity(rr::capture(ma, in, &cf), cf);
    for (std::size_t i = 0; i < held.blocks.size(); ++i) {
        INFO("block " << i << ": imposed " << held.blocks[i].cosine << ", free " << q.blocks[i].cosine);
        CHECK(held.blocks[i].cosine >= q.blocks[i].cosine - 1e-6);
    }
    CHECK(held.encoder.cosine > 0.9995);
    CHECK(held.encoder.cosine > q.encoder.cosine);
    CHECK(!ma.encoder().stage(0).blocks[0].ffn().collab_group().imposed());
    const rr::Capture ca2 = rr::capture(ma, in);  // free again: the first capture's bits
    CHECK(std::memcmp(ca2.features.raw(), ca.features.raw(), static_cast<std::size_t>(ca.features.nbytes())) == 0);
    const Tensor x3 = images(3, 3, 64, 8);
    const std::vector<vis::ModalityImages> in3{{x3.view(), 0}};
    CHECK_THROWS_AS(rr::capture(ma, in3, &cf), moe::ShapeError);
    CHECK(!ma.encoder().stage(0).blocks[0].ffn().collab_group().imposed());  // released on the error too
}

}  // namespace moe_test_ringmoe_model
