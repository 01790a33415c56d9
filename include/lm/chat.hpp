// lm/chat.hpp - chat templates: a conversation rendered as the prompt string a chat LM was
// trained on, one named formatter per template, exact against the reference implementations.
//
//   ChatFormatter<F>       the contract: format(messages, options), name()
//   ChatML                 "qwen_1_5" (alias "chatml"): LLaVA's conv_qwen, ChatML with the system
//                          prompt "You are a helpful assistant." (RSUniVLM: LLaVA-OneVision + Qwen2)
//   Vicuna11               "vicuna_v1": LLaVA's conv_vicuna_v1, Vicuna v1.1 (RS-MoE's LLM experts)
//   Llama3                 "llama3": the Jinja chat template of Meta-Llama-3-8B-Instruct
//   apply_chat_template    the formatter named by a string
//
// The references (tools/reference/chat_reference.py and .mjs, docs/lm.md):
//   * ChatML and Vicuna11 mirror Conversation.get_prompt() of LLaVA-VL/LLaVA-NeXT
//     llava/conversation.py (last changed in b0eb49300f0a80723424e2c5cbb1bc54a9e5c3a0, identical
//     at df179663ae8b83207df100a1f7af24caec633ff9), SeparatorStyle.CHATML and SeparatorStyle.TWO,
//     with the generation prompt added as LLaVA's inference code adds it:
//     conv.append_message(conv.roles[1], None).
//   * Llama3 mirrors Meta's template as transformers renders it (jinja2; its `trim` filter is
//     Python's str.strip()), with the generation prompt under `{% if add_generation_prompt %}`.
//
// Image placeholders ("<image>") and text that looks like a special token ("<|im_end|>", "</s>")
// are content like any other: left in place, byte for byte. No formatter escapes anything.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "moe/core/error.hpp"

namespace moe::lm {

/// One turn of a conversation. role is "system", "user" or "assistant"; content is UTF-8 text.
struct ChatMessage {
    std::string role;
    std::string content;
};

/// How a conversation is rendered.
struct ChatOptions {
    /// End the prompt with the opening of an assistant turn (what generation continues from).
    bool add_generation_prompt = true;
    /// The system prompt, replacing the template's default (ChatML, Vicuna11) or adding one
    /// (Llama3 has none). Giving it and a "system" message as well is a ConfigError.
    std::optional<std::string> system;
};

/// Something that renders a conversation as a chat model's prompt.
///
/// Promises:
///  * format(messages, options) is a pure function of its arguments (no state, no locale): the
///    same conversation gives the same bytes, equal to the reference implementation the type
///    names for every input the reference accepts;
///  * message contents are copied verbatim (or as the reference transforms them, e.g. Llama3's
///    trim), never escaped: "<image>" and special-token-looking text stay as they are;
///  * invalid input is a moe::ConfigError naming the message by its index: an empty message
///    list, a role other than "system", "user" and "assistant", a "system" message that is not
///    messages[0], a system prompt given twice (a "system" message and ChatOptions::system),
///    and whatever the template itself cannot express (documented with the type);
///  * name() is the name apply_chat_template() knows it by.
template <class F>
concept ChatFormatter = requires(const F& f, std::span<const ChatMessage> messages, const ChatOptions& options) {
    { f.format(messages, options) } -> std::same_as<std::string>;
    { f.name() } -> std::convertible_to<std::string_view>;
};

namespace chat_detail {

enum class Role { system, user, assistant };

inline Role parse_role(const ChatMessage& m, std::size_t index, std::string_view where) {
    if (m.role == "system") return Role::system;
    if (m.role == "user") return Role::user;
    if (m.role == "assistant") return Role::assistant;
    throw ConfigError(where, moe::detail::cat("messages[", index, "]: unknown role '", m.role,
                                         "' (expected \"system\", \"user\" or \"assistant\")"));
}

/// A conversation checked against the rules every formatter shares: the system prompt (from a
/// leading "system" message or the options; none if neither) and the turns after it.
struct Conversation {
    std::optional<std::string_view> system;
    std::span<const ChatMessage> turns;  ///< user and assistant messages only
    std::size_t first_index = 0;         ///< index of turns[0] in the caller's messages
};

inline Conversation split(std::span<const ChatMessage> messages, const ChatOptions& options,
                          std::string_view where) {
    check<ConfigError>(!messages.empty(), where, "no messages to format");
    Conversation c;
    for (std::size_t i = 0; i < messages.size(); ++i) {
        const Role r = parse_role(messages[i], i, where);
        if (r != Role::system) continue;
        check<ConfigError>(i == 0, where, "messages[", i, "]: a \"system\" message must be the first message");
        check<ConfigError>(!options.system.has_value(), where,
                           "messages[0] is a \"system\" message and ChatOptions::system is set too: "
                           "give the system prompt once");
        c.system = messages[0].content;
        c.first_index = 1;
    }
    if (!c.system && options.system) c.system = *options.system;
    c.turns = messages.subspan(c.first_index);
    return c;
}

/// The non-ASCII code points of Python's str.isspace(), UTF-8 encoded.
inline constexpr std::array<std::string_view, 19> py_multibyte_spaces = {
    "\xC2\x85", "\xC2\xA0", "\xE1\x9A\x80", "\xE2\x80\x80", "\xE2\x80\x81", "\xE2\x80\x82",
    "\xE2\x80\x83", "\xE2\x80\x84", "\xE2\x80\x85", "\xE2\x80\x86", "\xE2\x80\x87",
    "\xE2\x80\x88", "\xE2\x80\x89", "\xE2\x80\x8A", "\xE2\x80\xA8", "\xE2\x80\xA9",
    "\xE2\x80\xAF", "\xE2\x81\x9F", "\xE3\x80\x80"};

/// Python's str.strip() (what jinja2's `trim` filter calls): removes, at both ends, the code
/// points Python's str.isspace() accepts: U+0009-000D, U+001C-001F, U+0020, U+0085, U+00A0,
/// U+1680, U+2000-200A, U+2028, U+2029, U+202F, U+205F, U+3000. Text is UTF-8; every entry below
/// starts with an ASCII byte or a UTF-8 lead byte, so matching bytes at either end of valid
/// UTF-8 matches whole code points.
inline std::string_view py_strip(std::string_view s) {
    const auto ascii_space = [](char c) {
        return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1C' && c <= '\x1F');
    };
    for (bool changed = true; changed && !s.empty();) {
        changed = false;
        if (ascii_space(s.front())) {
            s.remove_prefix(1);
            changed = true;
            continue;
        }
        for (std::string_view w : py_multibyte_spaces)
            if (s.starts_with(w)) {
                s.remove_prefix(w.size());
                changed = true;
                break;
            }
    }
    for (bool changed = true; changed && !s.empty();) {
        changed = false;
        if (ascii_space(s.back())) {
            s.remove_suffix(1);
            changed = true;
            continue;
        }
        for (std::string_view w : py_multibyte_spaces)
            if (s.ends_with(w)) {
                s.remove_suffix(w.size());
                changed = true;
                break;
            }
    }
    return s;
}

}  // namespace chat_detail

/// ChatML as LLaVA's `qwen_1_5` template renders it (conv_qwen, SeparatorStyle.CHATML, sep
/// "<|im_end|>"), the prompt format of RSUniVLM and LLaVA-OneVision's Qwen2 models:
///
///     <|im_start|>system\n{system}<|im_end|>\n
///     <|im_start|>user\n{content}<|im_end|>\n          (each turn, in order)
///     <|im_start|>assistant\n{content}<|im_end|>\n
///     <|im_start|>assistant\n                          (the generation prompt)
///
/// {system} is ChatOptions::system, else a leading "system" message, else default_system. An
/// empty system prompt still writes its block ("<|im_start|>system\n<|im_end|>\n").
///
/// What the reference does, kept exactly (not errors):
///  * a turn with **empty content** is written as LLaVA writes an open turn (its get_prompt tests
///    `if message:`, and "" is false): the header line only, "<|im_start|>user\n", no
///    "<|im_end|>\n". (Hugging Face's Qwen2 Jinja template writes "<|im_start|>user\n<|im_end|>\n"
///    instead: the only difference between the two on this formatter's inputs.)
///  * turns need not alternate: user and assistant turns are written in the order given, and a
///    generation prompt after an assistant turn opens a second one.
struct ChatML {
    static constexpr std::string_view default_system = "You are a helpful assistant.";
    static constexpr std::string_view where = "moe::lm::ChatML";

    std::string_view name() const noexcept { return "qwen_1_5"; }

    std::string format(std::span<const ChatMessage> messages, const ChatOptions& options = {}) const {
        const auto c = chat_detail::split(messages, options, where);
        std::string out = "<|im_start|>system\n";
        out += c.system.value_or(default_system);
        out += "<|im_end|>\n";
        for (const ChatMessage& m : c.turns) {
            out += m.role == "user" ? "<|im_start|>user\n" : "<|im_start|>assistant\n";
            if (m.content.empty()) continue;  // LLaVA: `if message:` is false for ""
            out += m.content;
            out += "<|im_end|>\n";
        }
        if (options.add_generation_prompt) out += "<|im_start|>assistant\n";
        return out;
    }
};

/// Vicuna v1.1 as LLaVA's `vicuna_v1` template renders it (conv_vicuna_v1, SeparatorStyle.TWO,
/// roles "USER" / "ASSISTANT", sep " ", sep2 "</s>"), the prompt format of Vicuna-based LLaVA
/// models and RS-MoE's LLaMA-family experts:
///
///     {system} USER: {content} ASSISTANT: {content}</s>USER: {content} ASSISTANT:
///
/// i.e. the system prompt and a space, then each turn as "ROLE: content" followed by " " after a
/// user turn and "</s>" after an assistant turn, and the generation prompt "ASSISTANT:" (no
/// trailing space). {system} is ChatOptions::system, else a leading "system" message, else
/// default_system.
///
/// Errors (ConfigError naming the message): the reference picks the separator by position
/// (seps[i % 2]), so turns must alternate user, assistant, user, ... starting with a user turn,
/// and a generation prompt must follow a user turn.
/// What the reference does, kept exactly: a turn with **empty content** is written as an open
/// turn, "USER:" or "ASSISTANT:" with no separator after it (get_prompt's `if message:`).
struct Vicuna11 {
    static constexpr std::string_view default_system =
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions.";
    static constexpr std::string_view where = "moe::lm::Vicuna11";

    std::string_view name() const noexcept { return "vicuna_v1"; }

    std::string format(std::span<const ChatMessage> messages, const ChatOptions& options = {}) const {
        const auto c = chat_detail::split(messages, options, where);
        std::string out(c.system.value_or(default_system));
        out += ' ';
        for (std::size_t i = 0; i < c.turns.size(); ++i) {
            const ChatMessage& m = c.turns[i];
            const bool user_turn = i % 2 == 0;
            check<ConfigError>(m.role == (user_turn ? "user" : "assistant"), where, "messages[",
                               c.first_index + i, "]: expected the role \"", user_turn ? "user" : "assistant",
                               "\", found \"", m.role,
                               "\" (Vicuna v1.1 alternates user and assistant turns, starting with user)");
            out += user_turn ? "USER:" : "ASSISTANT:";
            if (m.content.empty()) continue;  // LLaVA: `if message:` is false for ""
            out += ' ';
            out += m.content;
            out += user_turn ? " " : "</s>";
        }
        if (options.add_generation_prompt) {
            check<ConfigError>(c.turns.size() % 2 == 1, where,
                               "add_generation_prompt needs the conversation to end with a \"user\" turn ",
                               c.turns.empty() ? std::string("(there is none)")
                                               : moe::detail::cat("(messages[", c.first_index + c.turns.size() - 1,
                                                             "] is \"", c.turns.back().role, "\")"));
            out += "ASSISTANT:";
        }
        return out;
    }
};

/// Meta-Llama-3-Instruct's chat template (tokenizer_config.json of
/// meta-llama/Meta-Llama-3-8B-Instruct, the version whose generation prompt is conditional):
///
///     <|begin_of_text|>                                     (before the first message only)
///     <|start_header_id|>{role}<|end_header_id|>\n\n{trim(content)}<|eot_id|>   (each message)
///     <|start_header_id|>assistant<|end_header_id|>\n\n     (the generation prompt)
///
/// There is no default system prompt: ChatOptions::system, when set, is written as a leading
/// system message. trim is the template's `| trim` filter as transformers runs it, Python's
/// str.strip() (chat_detail::py_strip); Hugging Face's JS renderer trims with String.trim(),
/// which differs on U+001C-001F and U+0085 (not stripped) and U+FEFF (stripped).
/// The template accepts any role order, and so does this formatter.
/// (The template as first published, 2024-04-18, wrote the generation prompt unconditionally;
/// with add_generation_prompt = true both give the same string.)
struct Llama3 {
    static constexpr std::string_view where = "moe::lm::Llama3";

    std::string_view name() const noexcept { return "llama3"; }

    std::string format(std::span<const ChatMessage> messages, const ChatOptions& options = {}) const {
        const auto c = chat_detail::split(messages, options, where);
        std::string out = "<|begin_of_text|>";
        const auto turn = [&out](std::string_view role, std::string_view content) {
            out += "<|start_header_id|>";
            out += role;
            out += "<|end_header_id|>\n\n";
            out += chat_detail::py_strip(content);
            out += "<|eot_id|>";
        };
        if (c.system) turn("system", *c.system);
        for (const ChatMessage& m : c.turns) turn(m.role, m.content);
        if (options.add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
        return out;
    }
};

static_assert(ChatFormatter<ChatML>);
static_assert(ChatFormatter<Vicuna11>);
static_assert(ChatFormatter<Llama3>);

/// The names apply_chat_template() knows, in the order its error message lists them.
inline constexpr std::array<std::string_view, 4> chat_template_names = {"qwen_1_5", "chatml", "vicuna_v1",
                                                                        "llama3"};

/// Renders messages with the template called `name`: "qwen_1_5" or "chatml" (ChatML),
/// "vicuna_v1" (Vicuna11), "llama3" (Llama3). An unknown name is a ConfigError that lists the
/// known ones; the formatter's own errors pass through.
inline std::string apply_chat_template(std::string_view name, std::span<const ChatMessage> messages,
                                       const ChatOptions& options = {}) {
    if (name == "qwen_1_5" || name == "chatml") return ChatML{}.format(messages, options);
    if (name == "vicuna_v1") return Vicuna11{}.format(messages, options);
    if (name == "llama3") return Llama3{}.format(messages, options);
    std::string known;
    for (std::string_view n : chat_template_names) known += moe::detail::cat(known.empty() ? "" : ", ", n);
    throw ConfigError("moe::lm::apply_chat_template",
                      moe::detail::cat("unknown chat template '", name, "' (known: ", known, ")"));
}

}  // namespace moe::lm
