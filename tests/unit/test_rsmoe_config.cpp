// RS-MoE's configuration and routers without a model: rsmoe.json (fields, defaults, errors naming
// the field, to_json round trip), the instruction templates, and the two PromptRouters over a
// stand-in Q-Former (what each asks the Q-Former for, and what each expert gets).
#include <catch2/catch.hpp>

#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "rs/rsmoe/config.hpp"
#include "rs/rsmoe/router.hpp"

namespace moe_test_rsmoe_config {

namespace rm = moe::rs::rsmoe;
using moe::index_t;
using moe::Tensor;

TEST_CASE("rsmoe.json: defaults are the released parts' sizes and the paper's three experts", "[rsmoe]") {
    const rm::RsMoeConfig c = rm::RsMoeConfig::from_json("{}");
    CHECK(c.vision.width == 1408);
    CHECK(c.vision.depth == 39);
    CHECK(c.vision.mlp_hidden == 6144);
    CHECK(c.vision.tokens() == 257);
    CHECK(c.qformer.hidden_size == 768);
    CHECK(c.qformer.num_query_tokens == 32);
    CHECK(c.qformer.vocab_size == 30523);
    CHECK(c.qformer.encoder_width == 1408);
    CHECK(c.max_txt_len == 128);
    CHECK(c.router == rm::RouterKind::text);
    CHECK(c.expert_kind == rm::ExpertKind::lora);
    REQUIRE(c.num_experts() == 3);
    CHECK(c.experts[0].name == "theme");
    CHECK(c.experts[1].name == "objects");
    CHECK(c.experts[2].name == "relations");
    CHECK(c.llm_bos == "</s>");
    CHECK(c.instruction == "Take a look at this image and describe what you notice.");
}

TEST_CASE("rsmoe.json: to_json reads back to the same configuration", "[rsmoe]") {
    rm::RsMoeConfig c;
    c.router = rm::RouterKind::soft;
    c.expert_kind = rm::ExpertKind::llm;
    c.aggregator = "fusion";
    c.separator = " | ";
    c.experts = {{"a \"quoted\" name", "experts/a", "{instruction}\nfirst"}, {"b", "experts/b", "only b"}};
    c.vision.width = 64;
    c.vision.heads = 4;
    c.qformer.encoder_width = 64;
    c.llm_bos = "";
    const rm::RsMoeConfig d = rm::RsMoeConfig::from_json(c.to_json());
    CHECK(d.router == rm::RouterKind::soft);
    CHECK(d.expert_kind == rm::ExpertKind::llm);
    CHECK(d.aggregator == "fusion");
    CHECK(d.separator == " | ");
    REQUIRE(d.num_experts() == 2);
    CHECK(d.experts[0].name == "a \"quoted\" name");
    CHECK(d.experts[0].instruction == "{instruction}\nfirst");
    CHECK(d.vision.width == 64);
    CHECK(d.qformer.encoder_width == 64);
    CHECK(d.llm_bos.empty());
    CHECK(d.to_json() == c.to_json());
}

TEST_CASE("rsmoe.json: bad fields are ConfigErrors naming the field", "[rsmoe]") {
    using Catch::Contains;
    auto parse = [](const char* text) { return rm::RsMoeConfig::from_json(text, "test/rsmoe.json"); };
    CHECK_THROWS_AS(parse(R"({"routr": "text"})"), moe::ConfigError);
    CHECK_THROWS_WITH(parse(R"({"routr": "text"})"), Contains("unknown field 'routr'") && Contains("test/rsmoe.json"));
    CHECK_THROWS_WITH(parse(R"({"router": "learned"})"), Contains("router 'learned' is not supported"));
    CHECK_THROWS_WITH(parse(R"({"experts": {"kind": "moe"}})"), Contains("experts.kind 'moe'"));
    CHECK_THROWS_WITH(parse(R"({"experts": {"members": []}})"), Contains("non-empty array"));
    CHECK_THROWS_WITH(parse(R"({"experts": {"members": [{"name": "x"}]}})"), Contains("a name and a path"));
    CHECK_THROWS_WITH(parse(R"({"experts": {"members": [{"name": "x", "path": "p", "prompt": "y"}]}})"),
                      Contains("unknown field 'prompt'"));
    CHECK_THROWS_WITH(parse(R"({"aggregator": {"type": "vote"}})"), Contains("aggregator.type 'vote'"));
    CHECK_THROWS_WITH(parse(R"({"aggregator": {"type": "fusion", "template": "no placeholder"}})"),
                      Contains("{captions}"));
    CHECK_THROWS_WITH(parse(R"({"qformer": {"encoder_width": 1024}})"), Contains("encoder_width 1024"));
    CHECK_THROWS_WITH(parse(R"({"vision": {"hidden_size": 100}})"), Contains("multiple of the heads"));
    CHECK_THROWS_WITH(parse(R"({"max_txt_len": 0})"), Contains("max_txt_len must be a positive integer"));
    CHECK_THROWS_WITH(parse(R"({"llm_bos": 2})"), Contains("llm_bos must be a string"));
    CHECK_THROWS_AS(parse("{\"router\": "), moe::Error);  // truncated JSON
    CHECK_THROWS_AS(parse("[1, 2]"), moe::ConfigError);
}

TEST_CASE("instruction templates and the VQA prompt", "[rsmoe]") {
    CHECK(rm::expand_instruction("{instruction} Focus.", "Look.") == "Look. Focus.");
    CHECK(rm::expand_instruction("a {instruction} b {instruction}", "X") == "a X b X");
    CHECK(rm::expand_instruction("no placeholder", "X") == "no placeholder");
    CHECK(rm::expand_instruction("{instruction}", "") == "");
    CHECK(rm::vqa_instruction("Is there a river?") == "Question: Is there a river? Short answer:");
}

/// A stand-in Q-Former: records the texts it is asked about and returns [Q + len(text), H] rows
/// whose values depend on the text.
struct FakeQFormer {
    index_t Q = 4, H = 6;
    std::vector<std::string> asked;
    rm::RouterContext context(std::string_view instruction, index_t experts) {
        return {instruction, experts, Q, [this](std::string_view text) {
                    asked.emplace_back(text);
                    Tensor t(moe::DType::f32, {Q + static_cast<index_t>(text.size()), H});
                    float* p = t.data<float>();
                    for (index_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>((i * 7 + text.size()) % 11) / 11.0f;
                    return t;
                }};
    }
};

TEST_CASE("TextRouter: one Q-Former pass per distinct sub-instruction, each expert its own", "[rsmoe]") {
    const rm::TextRouter r({"{instruction} A.", "{instruction} B.", "{instruction} A."});
    FakeQFormer q;
    const std::vector<rm::ExpertPrompt> p = r.route(q.context("Look.", 3));
    REQUIRE(p.size() == 3);
    CHECK(p[0].text == "Look. A.");
    CHECK(p[1].text == "Look. B.");
    CHECK(p[2].text == "Look. A.");
    CHECK(q.asked == std::vector<std::string>{"Look. A.", "Look. B."});  // the repeated text once
    float sum = 0;
    for (const auto& e : p) {
        CHECK(e.active);
        CHECK(e.soft_prompt.rank() == 0);
        CHECK(e.query_output.dim(0) == q.Q + static_cast<index_t>(e.text.size()));
        sum += e.weight;
    }
    CHECK(sum == Approx(1.0f));
    CHECK_THROWS_WITH(r.route(q.context("Look.", 2)), Catch::Contains("3 sub-instructions for 2 experts"));
}

TEST_CASE("SoftRouter: one pass of the global instruction, weights and prompts from InstructionRouter", "[rsmoe]") {
    FakeQFormer q;
    const std::vector<index_t> widths{8, 5, 8};
    const moe::InstructionRouter ir = moe::InstructionRouter::random(q.H, q.H, 4, 3, 7, widths, 99);
    rm::SoftRouter r(moe::InstructionRouter::random(q.H, q.H, 4, 3, 7, widths, 99));  // the same weights
    const std::vector<rm::ExpertPrompt> p = r.route(q.context("Describe.", 3));
    CHECK(q.asked == std::vector<std::string>{"Describe."});
    REQUIRE(p.size() == 3);
    // the same routing straight from InstructionRouter: q = mean of the text rows, image = query rows
    const Tensor g = q.context("Describe.", 3).qformer("Describe.");
    const index_t T = g.dim(0) - q.Q;
    std::vector<float> mean(static_cast<std::size_t>(q.H), 0.0f);
    for (index_t c = 0; c < q.H; ++c) {
        double s = 0;
        for (index_t t = 0; t < T; ++t) s += g.data<float>()[(q.Q + t) * q.H + c];
        mean[static_cast<std::size_t>(c)] = static_cast<float>(s / double(T));
    }
    const moe::InstructionRouting want = ir.route(mean, moe::ConstMatrixRef<float>(g.data<float>(), q.Q, q.H, q.H));
    float sum = 0;
    for (std::size_t e = 0; e < 3; ++e) {
        CHECK(p[e].active);
        CHECK(p[e].text == "Describe.");
        CHECK(p[e].weight == Approx(want.weights[e]).epsilon(1e-6));
        REQUIRE(p[e].soft_prompt.rank() == 2);
        CHECK(p[e].soft_prompt.dim(0) == 3);
        CHECK(p[e].soft_prompt.dim(1) == widths[e]);
        for (index_t i = 0; i < p[e].soft_prompt.numel(); ++i)
            CHECK(p[e].soft_prompt.data<float>()[i] == want.prompts[e].data<float>()[i]);
        sum += p[e].weight;
    }
    CHECK(sum == Approx(1.0f));
    // top-1: only the best expert runs, with weight 1
    r.router().set_k(1);
    const std::vector<rm::ExpertPrompt> one = r.route(q.context("Describe.", 3));
    int active = 0;
    for (const auto& e : one) {
        active += e.active;
        if (e.active) CHECK(e.weight == Approx(1.0f));
        else CHECK(e.soft_prompt.rank() == 0);
    }
    CHECK(active == 1);
}

}  // namespace moe_test_rsmoe_config
