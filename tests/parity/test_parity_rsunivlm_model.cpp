// Parity: the assembled RSUniVLM (rs/rsunivlm/) vs. tools/reference/rsunivlm.py, which mirrors
// the released LLaVA-NeXT code (encode_images, prepare_inputs_labels_for_multimodal's splicing,
// Qwen2GMoEDecoderLayer), on the tiny model fixtures_rsunivlm.py writes with the released names.
//
// Tolerances (relative: max |difference| / max |reference|):
//   resized uint8 image and SigLIP pixels      bit-identical (PIL's fixed-point bicubic)
//   image features (tower + projector + newline) 1e-5
//   logits, every position, each prompt alone  1e-4   (granularities 0, 1, 2; one and two images)
//   the four prompts in one step               1e-4 of the reference, 1e-5 of each alone
//   KV cache across image and text rows        1e-5 of the library's own full prefill
//   32 greedy tokens (one image; two images)   identical ids, both sequences in one generate()
// Also: the loader's parameter count equals the file's and the analytic count, and the full
// configuration's analytic count is the 1,657,325,600.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "parity_util.hpp"
#include "rs/rsunivlm.hpp"
#include "vision/preprocess.hpp"

namespace moe_test_parity_rsunivlm_model {

using namespace moe_test;
namespace rv = moe::rs::rsunivlm;
using moe::Tensor;
using moe::TensorView;

Tensor pixels_of(const SafetensorsFile& f, index_t k) {
    const TensorView im = f.get("__image_" + std::to_string(k) + "__");
    return moe::vision::siglip_pixels(planar(im), im.dim(0), im.dim(1), meta_int(f, "image_size"));
}

std::vector<rv::Request> requests(const SafetensorsFile& f) {
    std::vector<rv::Request> out;
    const TensorView g = f.get("__granularity__");
    for (index_t i = 0; i < 4; ++i) {
        rv::Request r;
        const TensorView ids = f.get("__prompt_" + std::to_string(i) + "__");
        r.ids.assign(ids.data<std::int32_t>(), ids.data<std::int32_t>() + ids.numel());
        const TensorView imgs = f.get("__prompt_images_" + std::to_string(i) + "__");
        for (index_t j = 0; j < imgs.numel(); ++j) r.images.push_back(pixels_of(f, imgs.data<std::int32_t>()[j]));
        r.granularity = g.data<std::int32_t>()[i];
        out.push_back(std::move(r));
    }
    return out;
}

TEST_CASE("parity: RSUniVLM image processor (PIL bicubic, rescale, normalize)", "[parity][rsunivlm]") {
    const auto f = open_fixture("rsunivlm_tiny");
    const index_t S = meta_int(f, "image_size");
    for (index_t k = 0; k < 4; ++k) {
        const TensorView im = f.get("__image_" + std::to_string(k) + "__");
        INFO("image " << k << " " << im.shape().str());
        const auto resized = moe::vision::resize_bicubic_u8(planar(im), 3, im.dim(0), im.dim(1), S, S);
        const auto want = planar(f.get("__uint8_" + std::to_string(k) + "__"));
        CHECK(resized == want);
        const Tensor px = pixels_of(f, k);
        const TensorView ref = f.get("__pixels_" + std::to_string(k) + "__");
        REQUIRE(px.numel() == ref.numel());
        CHECK(std::equal(px.data<float>(), px.data<float>() + px.numel(), ref.data<float>()));
    }
}

TEST_CASE("parity: RSUniVLM tiny model, logits of every granularity, one and two images",
          "[parity][rsunivlm]") {
    const auto f = open_fixture("rsunivlm_tiny");
    auto model = rv::load_rsunivlm<float>(moe_test::fixture_dir() / meta(f, "model_dir"));
    const auto& c = model.config();

    // Parameters: the loader's count, the file's and the analytic one.
    const auto file = moe::io::open_weights(moe_test::fixture_dir() / meta(f, "model_dir"));
    index_t stored = 0;
    for (const auto& name : file.names()) stored += file.get(name).numel();
    CHECK(model.parameters() == stored);
    CHECK(rv::rsunivlm_parameter_count(c) == stored);
    CHECK(stored == meta_int(f, "parameters"));
    CHECK(c.image_tokens() == meta_int(f, "image_tokens"));

    // Image features.
    for (index_t k = 0; k < 4; ++k) {
        Tensor px(moe::DType::f32, {1, 3, c.image_size(), c.image_size()});
        const Tensor p = pixels_of(f, k);
        std::copy_n(p.data<float>(), p.numel(), px.data<float>());
        const Tensor feat = model.encode_images(px);
        const TensorView ref = f.get("__features_" + std::to_string(k) + "__");
        REQUIRE(feat.numel() == ref.numel());
        const double e = max_rel(feat.data<float>(), ref.data<float>(), ref.numel());
        INFO("image " << k << " features relative error " << e);
        CHECK(e <= 1e-5);
    }

    const auto reqs = requests(f);
    const index_t V = c.text.vocab_size;
    std::vector<Tensor> alone;
    for (std::size_t i = 0; i < reqs.size(); ++i) {
        auto cache = model.make_cache(1, 128);
        Tensor lg = model.forward(std::span<const rv::Request>(&reqs[i], 1), cache, moe::lm::LogitRows::all);
        const TensorView ref = f.get("__logits_" + std::to_string(i) + "__");
        REQUIRE(lg.dim(0) == ref.dim(0));
        REQUIRE(lg.dim(0) == model.rows(reqs[i]));
        const double e = max_rel(lg.data<float>(), ref.data<float>(), ref.numel());
        INFO("prompt " << i << " (granularity " << reqs[i].granularity << ", " << reqs[i].images.size()
                       << " images) logits relative error " << e);
        CHECK(e <= 1e-4);
        alone.push_back(std::move(lg));
    }

    // All four in one step (mixed granularities, one or two images each).
    auto cache = model.make_cache(4, 128);
    const Tensor all = model.forward(reqs, cache, moe::lm::LogitRows::all);
    index_t row = 0;
    for (std::size_t i = 0; i < reqs.size(); ++i) {
        const index_t n = alone[i].dim(0);
        const double e_ref = max_rel(all.data<float>() + row * V, f.get("__logits_" + std::to_string(i) + "__").data<float>(), n * V);
        const double e_alone = max_rel(all.data<float>() + row * V, alone[i].data<float>(), n * V);
        INFO("batched prompt " << i << ": vs reference " << e_ref << ", vs alone " << e_alone);
        CHECK(e_ref <= 1e-4);
        CHECK(e_alone <= 1e-5);
        row += n;
    }
}

TEST_CASE("parity: RSUniVLM KV cache across image and text rows, greedy generation", "[parity][rsunivlm]") {
    const auto f = open_fixture("rsunivlm_tiny");
    auto model = rv::load_rsunivlm<float>(moe_test::fixture_dir() / meta(f, "model_dir"));
    const auto reqs = requests(f);
    const index_t V = model.config().text.vocab_size, H = model.config().hidden_size();

    // Prompt 3 (two images): 12 rows as a prefill (cut inside the first image), then one row per step.
    const rv::Request& r3 = reqs[3];
    const Tensor x = model.embed(r3);
    auto& lm = model.language_model();
    auto full_cache = lm.make_cache(1, 128);
    moe::lm::Step whole;
    whole.add(0, x.dim(0), r3.granularity);
    const Tensor full = lm.forward(moe::ConstMatrixRef<float>(x.matrix<float>()), whole, full_cache, moe::lm::LogitRows::all);
    auto cache = lm.make_cache(1, 128);
    const index_t cut = 12;
    Tensor rows(moe::DType::f32, {x.dim(0), V});
    {
        const Tensor lg = lm.prefill(cache, 0, moe::ConstMatrixRef<float>(x.data<float>(), cut, H), r3.granularity,
                                     moe::lm::LogitRows::all);
        std::copy_n(lg.data<float>(), lg.numel(), rows.data<float>());
    }
    for (index_t t = cut; t < x.dim(0); ++t) {
        moe::lm::Step st;
        st.add(0, 1, r3.granularity);
        const Tensor lg = lm.forward(moe::ConstMatrixRef<float>(x.data<float>() + t * H, 1, H), st, cache, moe::lm::LogitRows::all);
        std::copy_n(lg.data<float>(), V, rows.data<float>() + t * V);
    }
    const double e_self = max_rel(rows.data<float>(), full.data<float>(), full.numel());
    const double e_ref = max_rel(rows.data<float>(), f.get("__logits_3__").data<float>(), full.numel());
    INFO("cache path vs own full prefill " << e_self << ", vs reference " << e_ref);
    CHECK(e_self <= 1e-5);
    CHECK(e_ref <= 1e-4);

    // 32 greedy tokens after prompts 0 and 3, generated together.
    auto fresh = requests(f);
    std::vector<rv::Request> two;
    two.push_back(std::move(fresh[0]));
    two.push_back(std::move(fresh[3]));
    auto gcache = model.make_cache(2, 256);
    moe::lm::GenerationOptions opt;
    opt.max_new_tokens = meta_int(f, "greedy_tokens");
    opt.sampling.temperature = 0;
    opt.use_default_stops = false;
    const auto res = model.generate(two, gcache, opt);
    for (const auto& [k, name] : {std::pair<std::size_t, const char*>{0, "__greedy_ids__"}, {1, "__greedy3_ids__"}}) {
        const TensorView want = f.get(name);
        const std::vector<std::int32_t> w(want.data<std::int32_t>(), want.data<std::int32_t>() + want.numel());
        CHECK(res.sequences[k].ids == w);
    }
    CHECK(res.prefill_tokens == model.rows(reqs[0]) + model.rows(reqs[3]));
}

TEST_CASE("RSUniVLM: the learned granularity router picks the expert from the mean-pooled prompt",
          "[parity][rsunivlm]") {
    const auto f = open_fixture("rsunivlm_tiny");
    auto model = rv::load_rsunivlm<float>(moe_test::fixture_dir() / meta(f, "model_dir"));
    const index_t H = model.config().hidden_size();
    auto reqs = requests(f);
    rv::Request& r = reqs[3];  // two images, tag expert 0
    const Tensor x = model.embed(r);
    std::vector<float> pooled(static_cast<std::size_t>(H), 0.0f);  // the request's mean input embedding
    for (index_t t = 0; t < x.dim(0); ++t)
        for (index_t i = 0; i < H; ++i) pooled[static_cast<std::size_t>(i)] += x.data<float>()[t * H + i];
    for (float& v : pooled) v /= static_cast<float>(x.dim(0));
    r.granularity = rv::kLearnedGranularity;
    auto cache = model.make_cache(1, 128);
    CHECK_THROWS_WITH(model.forward(std::span<const rv::Request>(&r, 1), cache), Catch::Contains("set_granularity_router"));
    for (int want : {2, 1}) {
        // Gate rows: +pooled for the wanted expert, -pooled for the others: its logit is |pooled|^2 > 0 > theirs.
        std::vector<float> w(static_cast<std::size_t>(3 * H));
        for (int e = 0; e < 3; ++e)
            for (index_t i = 0; i < H; ++i)
                w[static_cast<std::size_t>(e * H + i)] = (e == want ? 1.0f : -1.0f) * pooled[static_cast<std::size_t>(i)];
        model.set_granularity_router(moe::LearnedGranularityRouter(moe::Gate::from_values(3, H, w)));
        cache.reset(0);
        const Tensor learned = model.forward(std::span<const rv::Request>(&r, 1), cache, moe::lm::LogitRows::all);
        auto fixed = requests(f);
        fixed[3].granularity = want;
        cache.reset(0);
        const Tensor direct = model.forward(std::span<const rv::Request>(&fixed[3], 1), cache, moe::lm::LogitRows::all);
        INFO("wanted expert " << want);
        REQUIRE(learned.numel() == direct.numel());
        CHECK(std::equal(learned.data<float>(), learned.data<float>() + learned.numel(), direct.data<float>()));
        CHECK(max_rel(learned.data<float>(), f.get("__logits_3__").data<float>(), learned.numel()) > 1e-3);  // not expert 0
    }
    CHECK_THROWS_AS(model.set_granularity_router(moe::LearnedGranularityRouter(moe::Gate::random(2, H, 1))),
                    moe::ConfigError);
}

TEST_CASE("RSUniVLM: errors for mismatched prompts and images", "[parity][rsunivlm]") {
    const auto f = open_fixture("rsunivlm_tiny");
    auto model = rv::load_rsunivlm<float>(moe_test::fixture_dir() / meta(f, "model_dir"));
    auto reqs = requests(f);
    reqs[3].images.pop_back();  // two placeholders, one image
    CHECK_THROWS_AS(model.embed(reqs[3]), moe::ConfigError);
    reqs[0].images[0] = Tensor(moe::DType::f32, {3, 8, 8});
    CHECK_THROWS_AS(model.embed(reqs[0]), moe::ShapeError);
    reqs[1].granularity = 3;
    CHECK_THROWS_AS(model.embed(reqs[1]), moe::ConfigError);
}

TEST_CASE("RSUniVLM: a sharded checkpoint (2 files + index) loads to the same model", "[parity][rsunivlm]") {
    const auto f = open_fixture("rsunivlm_tiny");
    const auto dir = moe_test::fixture_dir() / meta(f, "model_dir");
    auto one = rv::load_rsunivlm<float>(dir);
    auto two = rv::load_rsunivlm<float>(dir.string() + "_sharded");
    CHECK(two.parameters() == one.parameters());
    const auto reqs = requests(f);
    auto c1 = one.make_cache(1, 128);
    auto c2 = two.make_cache(1, 128);
    const Tensor a = one.forward(std::span<const rv::Request>(&reqs[3], 1), c1, moe::lm::LogitRows::all);
    const Tensor b = two.forward(std::span<const rv::Request>(&reqs[3], 1), c2, moe::lm::LogitRows::all);
    REQUIRE(a.numel() == b.numel());
    CHECK(std::equal(a.data<float>(), a.data<float>() + a.numel(), b.data<float>()));
}

TEST_CASE("RSUniVLM: a checkpoint missing a part or with a mis-shaped one is refused, naming the tensor",
          "[parity][rsunivlm]") {
    const auto f = open_fixture("rsunivlm_tiny");
    const auto dir = moe_test::fixture_dir() / meta(f, "model_dir");
    const auto cfg = rv::RsUniVlmConfig::from_file(dir / "config.json");
    const auto file = moe::io::open_weights(dir);
    for (const std::string name : {"model.mm_projector.2.weight", "model.image_newline", "lm_head.weight",
                                   "model.vision_tower.vision_tower.vision_model.encoder.layers.1.mlp.fc1.bias",
                                   "model.layers.1.mlp.2.down_proj.weight"}) {
        INFO(name);
        require_throws_mentioning<moe::NotFoundError>([&] { (void)rv::load_rsunivlm<float>(cfg, edited(file, name)); },
                                                      {name});
    }
    const Tensor wrong = zeros(64, 47);
    require_throws_mentioning<moe::ShapeError>(
        [&] { (void)rv::load_rsunivlm<float>(cfg, edited(file, "", "model.mm_projector.0.weight", &wrong)); },
        {"model.mm_projector.0.weight"});
}

TEST_CASE("RSUniVLM: configurations and the full model's parameter count", "[rsunivlm]") {
    const auto full = rv::RsUniVlmConfig::full();
    CHECK(rv::rsunivlm_parameter_count(full) == 1657325600);  // the count (3.31 GB in bf16)
    CHECK(full.image_tokens() == 730);
    CHECK(full.vision.depth == 26);
    CHECK(full.text.ffn == moe::lm::FfnKind::gmoe);
    // to_json round trip
    const auto back = rv::RsUniVlmConfig::from_json(full.to_json());
    CHECK(rv::rsunivlm_parameter_count(back) == 1657325600);
    CHECK(back.vision.heads == 16);
    const auto tiny = rv::RsUniVlmConfig::tiny();
    CHECK(tiny.image_tokens() == 17);
    // errors name the field
    std::string j = full.to_json();
    const std::string bad_proj = std::string(j).replace(j.find("mlp2x_gelu"), 10, "identity");
    CHECK_THROWS_WITH(rv::RsUniVlmConfig::from_json(bad_proj), Catch::Contains("mm_projector_type"));
    const std::string dense = std::string(j).replace(j.find("LlavaQwenGMoeForCausalLM"), 24, "LlavaQwenForCausalLM");
    CHECK_THROWS_AS(rv::RsUniVlmConfig::from_json(dense), moe::ConfigError);
}

TEST_CASE("RSUniVLM: prompts as the demo builds them", "[rsunivlm]") {
    CHECK(rv::granularity_of("[SEG] water.") == 2);
    CHECK(rv::granularity_of("[VG] Where is the windwill?") == 1);
    CHECK(rv::granularity_of("[REF] what is [1, 20, 9, 30]?") == 1);
    CHECK(rv::granularity_of("[CAP] Describe this image briefly.") == 0);
    CHECK(rv::granularity_of("[SEG] [VG] both") == 2);  // app.py tests [SEG] first
    CHECK(rv::user_text("[CAP] x", 1) == "<image>\n[CAP] x");
    CHECK(rv::user_text("[CCD] y", 2) == "<image> <image>\n[CCD] y");
    CHECK(rv::chat_prompt("[VQA] How many?", 1) ==
          "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n[VQA] How many?"
          "<|im_end|>\n<|im_start|>assistant\n");
}

TEST_CASE("RSUniVLM: a random-weight model folder loads, in fp32 and as bf16", "[rsunivlm]") {
    const auto dir = std::filesystem::temp_directory_path() / "moe_test_rsunivlm_random";
    std::filesystem::remove_all(dir);
    const auto cfg = rv::RsUniVlmConfig::tiny(512);
    rv::write_random_model(dir, cfg, {.seed = 3, .dtype = moe::DType::bf16});
    auto m32 = rv::load_rsunivlm<float>(dir);
    auto m16 = rv::load_rsunivlm<moe::bf16>(dir);
    CHECK(m32.parameters() == rv::rsunivlm_parameter_count(cfg));
    CHECK(m16.parameters() == m32.parameters());
    const auto file = moe::io::open_weights(dir);
    index_t stored = 0;
    for (const auto& name : file.names()) stored += file.get(name).numel();
    CHECK(stored == m32.parameters());
    // A request with one image: the bf16 weights give the fp32 model's logits (fp32 arithmetic on
    // the same values; only summation order may differ).
    rv::Request r;
    r.ids = {5, 6, rv::kImageTokenIndex, 7, 8, 9};
    std::vector<std::uint8_t> img(3 * 40 * 30);
    for (std::size_t i = 0; i < img.size(); ++i) img[i] = static_cast<std::uint8_t>((i * 37) % 251);
    r.images.push_back(moe::vision::siglip_pixels(img, 40, 30, cfg.image_size()));
    r.granularity = 2;
    auto c32 = m32.make_cache(1, 64);
    auto c16 = m16.make_cache(1, 64);
    const Tensor a = m32.forward(std::span<const rv::Request>(&r, 1), c32, moe::lm::LogitRows::all);
    const Tensor b = m16.forward(std::span<const rv::Request>(&r, 1), c16, moe::lm::LogitRows::all);
    REQUIRE(a.dim(0) == 5 + cfg.image_tokens());
    CHECK(max_rel(b.data<float>(), a.data<float>(), a.numel()) <= 1e-5);
    std::filesystem::remove_all(dir);
}

}  // namespace moe_test_parity_rsunivlm_model
