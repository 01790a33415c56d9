// moe::lm chat templates (lm/chat.hpp) against expectations written out by hand from the
// template definitions (LLaVA's conv_qwen / conv_vicuna_v1 and Meta's Llama 3 Jinja template),
// the behaviours kept from the references (empty content, Python's strip), and every error.
// The generated reference prompts are compared in tests/chat/ (ctest chat_fixtures_*).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "lm/chat.hpp"

namespace moe_test_lm_chat {  // this file's names (unity builds merge test files)

using moe::lm::ChatMessage;
using moe::lm::ChatOptions;

namespace {

std::vector<ChatMessage> msgs(std::initializer_list<std::pair<const char*, const char*>> list) {
    std::vector<ChatMessage> out;
    for (const auto& [role, content] : list) out.push_back({role, content});
    return out;
}

ChatOptions no_generation() {
    ChatOptions o;
    o.add_generation_prompt = false;
    return o;
}

}  // namespace

TEST_CASE("lm chat: ChatML (qwen_1_5) by hand", "[lm][chat]") {
    const moe::lm::ChatML f;
    CHECK(f.name() == "qwen_1_5");
    const auto m = msgs({{"user", "<image>\nWhat is shown?"}});
    CHECK(f.format(m) ==
          "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
          "<|im_start|>user\n<image>\nWhat is shown?<|im_end|>\n"
          "<|im_start|>assistant\n");

    const auto two = msgs({{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}});
    CHECK(f.format(two, no_generation()) ==
          "<|im_start|>system\nBe brief.<|im_end|>\n"
          "<|im_start|>user\nHi<|im_end|>\n"
          "<|im_start|>assistant\nHello.<|im_end|>\n");

    ChatOptions sys;
    sys.system = "";
    CHECK(f.format(msgs({{"user", "x"}}), sys) ==
          "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n");

    // LLaVA's `if message:`: empty content is written as an open turn (header line only).
    CHECK(f.format(msgs({{"user", ""}})) ==
          "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|im_start|>assistant\n");
    // Special-token-looking text is content, copied as it is.
    CHECK(f.format(msgs({{"user", "<|im_end|>\n<|im_start|>system"}}), no_generation()) ==
          "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
          "<|im_start|>user\n<|im_end|>\n<|im_start|>system<|im_end|>\n");
    // Turns need not alternate (the reference does not check).
    CHECK(f.format(msgs({{"user", "a"}, {"user", "b"}}), no_generation()) ==
          "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
          "<|im_start|>user\na<|im_end|>\n<|im_start|>user\nb<|im_end|>\n");
}

TEST_CASE("lm chat: Vicuna v1.1 (vicuna_v1) by hand", "[lm][chat]") {
    const moe::lm::Vicuna11 f;
    CHECK(f.name() == "vicuna_v1");
    const std::string sys =
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions.";
    const auto m = msgs({{"user", "<image>\nDescribe it."}, {"assistant", "A harbour."}, {"user", "Ships?"}});
    CHECK(f.format(m) == sys + " USER: <image>\nDescribe it. ASSISTANT: A harbour.</s>USER: Ships? ASSISTANT:");
    CHECK(f.format(std::span(m).first(2), no_generation()) ==
          sys + " USER: <image>\nDescribe it. ASSISTANT: A harbour.</s>");

    ChatOptions custom;
    custom.system = "SYS";
    CHECK(f.format(msgs({{"user", "q"}}), custom) == "SYS USER: q ASSISTANT:");
    CHECK(f.format(msgs({{"system", ""}, {"user", "q"}})) == " USER: q ASSISTANT:");
    // Empty content: "ROLE:" with no separator after it (LLaVA's `if message:`).
    CHECK(f.format(msgs({{"user", "a"}, {"assistant", ""}, {"user", "b"}})) ==
          sys + " USER: a ASSISTANT:USER: b ASSISTANT:");
}

TEST_CASE("lm chat: Llama 3 by hand", "[lm][chat]") {
    const moe::lm::Llama3 f;
    CHECK(f.name() == "llama3");
    CHECK(f.format(msgs({{"user", "Hi"}})) ==
          "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n");
    ChatOptions o = no_generation();
    o.system = "  Be brief.\n";
    CHECK(f.format(msgs({{"user", "\n Hi \t"}, {"assistant", "Hello!\n\n"}}), o) ==
          "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>");
    // Roles in any order, as the template allows.
    CHECK(f.format(msgs({{"assistant", "a"}, {"assistant", "b"}}), no_generation()) ==
          "<|begin_of_text|><|start_header_id|>assistant<|end_header_id|>\n\na<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nb<|eot_id|>");
}

TEST_CASE("lm chat: Llama 3 trims as Python's str.strip()", "[lm][chat]") {
    using moe::lm::chat_detail::py_strip;
    CHECK(py_strip(" \t\n\v\f\r x y \r\n") == "x y");
    CHECK(py_strip("\x1C\x1D\x1E\x1Fx\x1F") == "x");                           // Python: whitespace
    CHECK(py_strip("\xC2\x85\xC2\xA0x\xE3\x80\x80\xE2\x80\xAF") == "x");        // U+0085 U+00A0 / U+3000 U+202F
    CHECK(py_strip("\xE2\x80\x80\xE2\x80\x8Ax\xE2\x80\xA8\xE2\x80\xA9\xE2\x81\x9F\xE1\x9A\x80") == "x");
    CHECK(py_strip("\xEF\xBB\xBFx") == "\xEF\xBB\xBFx");                        // U+FEFF is not whitespace
    CHECK(py_strip("\xE2\x80\x8Bx") == "\xE2\x80\x8Bx");                        // nor U+200B
    CHECK(py_strip("  ").empty());
    CHECK(py_strip("").empty());
    CHECK(py_strip("\xC3\xA9") == "\xC3\xA9");  // a multi-byte letter stays
}

TEST_CASE("lm chat: apply_chat_template dispatches by name", "[lm][chat]") {
    const auto m = msgs({{"user", "Hi"}});
    CHECK(moe::lm::apply_chat_template("qwen_1_5", m) == moe::lm::ChatML{}.format(m));
    CHECK(moe::lm::apply_chat_template("chatml", m) == moe::lm::ChatML{}.format(m));
    CHECK(moe::lm::apply_chat_template("vicuna_v1", m) == moe::lm::Vicuna11{}.format(m));
    CHECK(moe::lm::apply_chat_template("llama3", m, no_generation()) == moe::lm::Llama3{}.format(m, no_generation()));
    CHECK_THROWS_MATCHES(moe::lm::apply_chat_template("llama_3", m), moe::ConfigError,
                         Catch::Matchers::Message("moe::lm::apply_chat_template: unknown chat template 'llama_3' "
                                                  "(known: qwen_1_5, chatml, vicuna_v1, llama3)"));
}

TEST_CASE("lm chat: invalid conversations are ConfigErrors naming the message", "[lm][chat]") {
    using Catch::Matchers::Contains;
    for (std::string_view name : moe::lm::chat_template_names) {
        INFO(name);
        CHECK_THROWS_WITH(moe::lm::apply_chat_template(name, std::vector<ChatMessage>{}), Contains("no messages"));
        CHECK_THROWS_AS(moe::lm::apply_chat_template(name, msgs({{"user", "a"}, {"tool", "b"}})), moe::ConfigError);
        CHECK_THROWS_WITH(moe::lm::apply_chat_template(name, msgs({{"user", "a"}, {"tool", "b"}})),
                          Contains("messages[1]: unknown role 'tool'"));
        CHECK_THROWS_WITH(moe::lm::apply_chat_template(name, msgs({{"user", "a"}, {"system", "b"}})),
                          Contains("messages[1]: a \"system\" message must be the first message"));
        ChatOptions twice;
        twice.system = "x";
        CHECK_THROWS_WITH(moe::lm::apply_chat_template(name, msgs({{"system", "s"}, {"user", "a"}}), twice),
                          Contains("give the system prompt once"));
    }
    const moe::lm::Vicuna11 v;
    CHECK_THROWS_WITH(v.format(msgs({{"assistant", "a"}})),
                      Contains("messages[0]: expected the role \"user\", found \"assistant\""));
    CHECK_THROWS_WITH(v.format(msgs({{"system", "s"}, {"user", "a"}, {"user", "b"}})),
                      Contains("messages[2]: expected the role \"assistant\", found \"user\""));
    CHECK_THROWS_WITH(v.format(msgs({{"user", "a"}, {"assistant", "b"}})),
                      Contains("add_generation_prompt needs the conversation to end with a \"user\" turn "
                               "(messages[1] is \"assistant\")"));
    CHECK_THROWS_WITH(v.format(msgs({{"system", "s"}})), Contains("(there is none)"));
    CHECK_THROWS_AS(v.format(msgs({{"user", "a"}, {"assistant", "b"}})), moe::ConfigError);
}

}  // namespace moe_test_lm_chat
