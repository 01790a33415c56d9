// Parity: the assembled RS-MoE (rs/rsmoe/) vs. tools/reference/rsmoe.py, which mirrors LAVIS's
// Blip2VicunaInstruct (EVA ViT-g, ln_vision, the instruction-aware Q-Former, llm_proj, the
// embedding concatenation) and builds the MoE block as docs/rsmoe.md describes it, on the tiny
// model folders fixtures_rsmoe.py writes with LAVIS / Hugging Face / PEFT names:
//   rsmoe_tiny        text router, three LoRA experts over one base (decoded as one batch)
//   rsmoe_tiny_soft   soft router (moe::InstructionRouter prompts), the same LoRA experts
//   rsmoe_tiny_llm    text router, three separate LLMs of different sizes
//   rsmoe_tiny_soft_llm  soft router, three separate LLMs of different sizes
//
// Tolerances (relative: max |difference| / max |reference|):
//   blip_image_eval pixels                     bit-identical
//   ln_vision(EVA(pixels)), Q-Former outputs   1e-4
//   each expert's LLM input and all logits     1e-4
//   greedy ids (repetition penalty 1.5, eos)   identical, every expert in one caption() call
//   beam ids (LAVIS: 5 beams, min_length 1)    identical (tools/reference/beam_search.py)
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "parity_util.hpp"
#include "rs/rsmoe.hpp"
#include "vision/preprocess.hpp"

namespace moe_test_parity_rsmoe {

using namespace moe_test;
namespace rm = moe::rs::rsmoe;
using moe::Tensor;
using moe::TensorView;

std::vector<std::int32_t> ints(const SafetensorsFile& f, const std::string& name) {
    const TensorView v = f.get(name);
    return {v.data<std::int32_t>(), v.data<std::int32_t>() + v.numel()};
}

/// Text encoders that give the fixture's ids for the texts the model asks about (every expert's
/// text for the text router, the global instruction for the soft router); any other text fails.
template <class Model>
void fixture_encoders(Model& m, const SafetensorsFile& f, bool soft,
                      std::map<std::string, std::vector<std::int32_t>> l = {}) {
    std::map<std::string, std::vector<std::int32_t>> q;
    for (int e = 0; e < 3; ++e) {
        const std::string text = soft ? meta(f, "instruction") : meta(f, "texts_" + std::to_string(e));
        q[text] = ints(f, "__qformer_ids_" + std::to_string(e) + "__");
        l[text] = ints(f, "__llm_ids_" + std::to_string(e) + "__");
    }
    auto lookup = [](std::map<std::string, std::vector<std::int32_t>> table) {
        return [table](std::string_view t) {
            const auto it = table.find(std::string(t));
            if (it == table.end()) throw moe::ConfigError("fixture text encoder", "unexpected text: " + std::string(t));
            return it->second;
        };
    };
    m.set_text_encoders(lookup(q), lookup(l));
}

template <class Router, class Experts>
void check_case(const std::string& name) {
    const auto f = open_fixture(name);
    const bool soft = meta(f, "router") == "soft";
    auto m = rm::load_rsmoe<float, Router, Experts>(fixture_dir() / name);
    fixture_encoders(m, f, soft);

    // the image processor and the encoder
    const TensorView im = f.get("__image__");
    const Tensor pixels = moe::vision::blip_pixels(planar(im), im.dim(0), im.dim(1), m.encoder().image_size());
    const TensorView want_pix = f.get("__pixels__");
    REQUIRE(pixels.numel() == want_pix.numel());
    CHECK(std::equal(pixels.data<float>(), pixels.data<float>() + pixels.numel(), want_pix.data<float>()));
    const Tensor emb = m.image_embeds(pixels.view());
    const TensorView want_emb = f.get("__image_embeds__");
    REQUIRE(emb.shape() == want_emb.shape());
    const double e_emb = max_rel(emb.data<float>(), want_emb.data<float>(), emb.numel());
    CHECK(e_emb < 1e-4);

    // the router's prompts and every expert's LLM input and logits
    const std::vector<rm::ExpertInput> inputs = m.expert_inputs(emb, meta(f, "instruction"));
    REQUIRE(inputs.size() == 3);
    double e_q = 0, e_x = 0, e_l = 0;
    for (int e = 0; e < 3; ++e) {
        INFO(name << " expert " << e);
        const rm::ExpertInput& in = inputs[static_cast<std::size_t>(e)];
        REQUIRE(in.expert == e);
        const TensorView qo = f.get("__query_output_" + std::to_string(e) + "__");
        REQUIRE(in.prompt.query_output.shape() == qo.shape());
        e_q = std::max(e_q, max_rel(in.prompt.query_output.data<float>(), qo.data<float>(), qo.numel()));
        const TensorView x = f.get("__inputs_" + std::to_string(e) + "__");
        REQUIRE(in.x.shape() == x.shape());
        e_x = std::max(e_x, max_rel(in.x.data<float>(), x.data<float>(), x.numel()));
        // all positions' logits on the expert's own model (LoRA: its adapter over the base)
        const TensorView want = f.get("__logits_" + std::to_string(e) + "__");
        if constexpr (std::is_same_v<Experts, rm::LoraExperts<float>>) {
            auto& base = m.experts().base();
            auto cache = base.make_cache(1, in.x.dim(0));
            moe::lm::Step st;
            st.add(0, in.x.dim(0), -1, e);
            const Tensor lg = base.forward(in.x.matrix<float>(), st, cache, moe::lm::LogitRows::all);
            e_l = std::max(e_l, max_rel(lg.data<float>(), want.data<float>(), want.numel()));
        } else {
            auto& llm = m.experts().model(e);
            auto cache = llm.make_cache(1, in.x.dim(0));
            const Tensor lg = llm.prefill(cache, 0, in.x.matrix<float>(), -1, moe::lm::LogitRows::all);
            e_l = std::max(e_l, max_rel(lg.data<float>(), want.data<float>(), want.numel()));
        }
    }
    CHECK(e_q < 1e-4);
    CHECK(e_x < 1e-4);
    CHECK(e_l < 1e-4);
    if (soft) {
        const TensorView w = f.get("__weights__");
        for (int e = 0; e < 3; ++e)
            CHECK(std::abs(inputs[static_cast<std::size_t>(e)].prompt.weight - w.data<float>()[e]) < 1e-5);
    }

    // the whole caption: every expert's greedy ids (LoRA experts in one batch)
    rm::CaptionOptions opt;
    opt.generation.max_new_tokens = meta_int(f, "greedy_tokens");
    const rm::Caption cap = m.caption(pixels.view(), meta(f, "instruction"), opt);
    REQUIRE(cap.experts.size() == 3);
    for (int e = 0; e < 3; ++e) {
        INFO(name << " expert " << e);
        CHECK(cap.experts[static_cast<std::size_t>(e)].ids == ints(f, "__greedy_ids_" + std::to_string(e) + "__"));
    }
    // LAVIS's generation: 5 beams per expert (LoRA experts: 15 beams in one batch), min_length 1
    opt.generation.beams.num_beams = meta_int(f, "beams");
    opt.generation.min_new_tokens = 1;
    const rm::Caption beams = m.caption(pixels.view(), meta(f, "instruction"), opt);
    REQUIRE(beams.experts.size() == 3);
    const double gap = std::stod(meta(f, "beam_min_gap"));
    if (gap < 1e-4)  // fp32 sums of a dozen log-probabilities differ by ~1e-6 from PyTorch's
        WARN(name << ": a decision of the reference's beam search has a margin of " << gap << ": beam ids not compared");
    for (int e = 0; e < 3 && gap >= 1e-4; ++e) {
        INFO(name << " expert " << e << ", " << opt.generation.beams.num_beams << " beams");
        CHECK(beams.experts[static_cast<std::size_t>(e)].ids == ints(f, "__beam_ids_" + std::to_string(e) + "__"));
    }
    WARN(name << ": image embeds " << e_emb << ", Q-Former " << e_q << ", LLM inputs " << e_x << ", logits " << e_l
              << " (max relative)");
}

TEST_CASE("parity: RS-MoE, text router, LoRA experts in one batch", "[parity][rsmoe]") {
    check_case<rm::TextRouter, rm::LoraExperts<float>>("rsmoe_tiny");
}

TEST_CASE("parity: RS-MoE, soft-prompt router, LoRA experts", "[parity][rsmoe]") {
    check_case<rm::SoftRouter, rm::LoraExperts<float>>("rsmoe_tiny_soft");
}

TEST_CASE("parity: RS-MoE, text router, separate LLMs of different sizes", "[parity][rsmoe]") {
    check_case<rm::TextRouter, rm::SeparateLlms<float>>("rsmoe_tiny_llm");
}

TEST_CASE("parity: RS-MoE, soft-prompt router, separate LLMs of different sizes", "[parity][rsmoe]") {
    check_case<rm::SoftRouter, rm::SeparateLlms<float>>("rsmoe_tiny_soft_llm");
}

TEST_CASE("RS-MoE fusion aggregator: the base LLM over the sub-captions", "[parity][rsmoe]") {
    const auto f = open_fixture("rsmoe_tiny");
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("moe_rsmoe_fusion_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::copy(fixture_dir() / "rsmoe_tiny", dir, fs::copy_options::recursive);
    rm::RsMoeConfig c = rm::RsMoeConfig::from_file(dir / "rsmoe.json");
    c.aggregator = "fusion";
    c.fusion_template = "Join:\n{captions}Caption:";
    c.fusion_max_new_tokens = 6;
    std::ofstream(dir / "rsmoe.json") << c.to_json();
    auto m = rm::load_rsmoe<float, rm::TextRouter, rm::LoraExperts<float>>(dir);

    // a first caption gives the sub-captions' texts (no tokenizer: empty); the fusion prompt is
    // then exactly the template with one "- name: text" line per expert
    std::string fusion_text = "Join:\n";
    for (const auto& e : c.experts) fusion_text += "- " + e.name + ": \n";
    fusion_text += "Caption:";
    const std::vector<std::int32_t> fusion_ids{2, 17, 33, 90, 5, 61, 200, 7};
    fixture_encoders(m, f, false, {{fusion_text, fusion_ids}});
    const TensorView im = f.get("__image__");
    const Tensor pixels = moe::vision::blip_pixels(planar(im), im.dim(0), im.dim(1), m.encoder().image_size());
    rm::CaptionOptions opt;
    opt.generation.max_new_tokens = 4;
    const rm::Caption cap = m.caption(pixels.view(), meta(f, "instruction"), opt);
    REQUIRE(cap.fusion_ids.size() == 6);

    // the expectation: the base model alone (no adapter) generating from those ids' embeddings
    auto& base = m.experts().base();
    Tensor x(moe::DType::f32, {static_cast<index_t>(fusion_ids.size()), base.hidden_size()});
    base.embed(fusion_ids, x.matrix<float>());
    auto cache = base.make_cache(1, 64);
    const moe::lm::EmbeddedPrompt p{x.matrix<float>(), {}};
    moe::lm::GenerationOptions o = opt.generation;
    o.max_new_tokens = 6;
    const auto g = moe::lm::generate(base, cache, std::span<const moe::lm::EmbeddedPrompt>(&p, 1), o);
    CHECK(cap.fusion_ids == g.sequences[0].ids);
    // the base, not an expert: the adapters would say something else
    int differ = 0;
    for (int e = 0; e < 3; ++e) {
        o.adapters = {e};
        const auto ge = moe::lm::generate(base, cache, std::span<const moe::lm::EmbeddedPrompt>(&p, 1), o);
        differ += ge.sequences[0].ids != g.sequences[0].ids;
    }
    CHECK(differ > 0);
    fs::remove_all(dir);
}

TEST_CASE("RS-MoE loader: the folder's kinds must match the model type", "[parity][rsmoe]") {
    (void)open_fixture("rsmoe_tiny");
    CHECK_THROWS_WITH((rm::load_rsmoe<float, rm::SoftRouter, rm::LoraExperts<float>>(fixture_dir() / "rsmoe_tiny")),
                      Catch::Contains("router is 'text'"));
    CHECK_THROWS_WITH((rm::load_rsmoe<float, rm::TextRouter, rm::SeparateLlms<float>>(fixture_dir() / "rsmoe_tiny")),
                      Catch::Contains("LoRA adapters"));
}

}  // namespace moe_test_parity_rsmoe
