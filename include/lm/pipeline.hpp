// lm/pipeline.hpp - the steps of a tokenizer.json pipeline: normalizers, pre-tokenizers,
// post-processors and decoders, each read from its JSON object.
//
// Every step does what the reference (Hugging Face's JavaScript tokenizers, transformers.js)
// does with the same JSON; where that differs from Hugging Face's Rust `tokenizers`, the step's
// comment says so. A `type` the library does not implement, or an option whose meaning it cannot
// honour, is a moe::ConfigError naming it: never a silent approximation.
//
// Supported:
//   normalizers      NFC NFD NFKC NFKD Lowercase StripAccents Strip Prepend Replace
//                    BertNormalizer Sequence
//   pre-tokenizers   Split (Isolated / Removed) ByteLevel Metaspace BertPreTokenizer Whitespace
//                    WhitespaceSplit Punctuation Digits Replace Sequence
//   post-processors  TemplateProcessing BertProcessing RobertaProcessing ByteLevel Sequence
//   decoders         ByteLevel Replace ByteFallback Fuse Strip WordPiece Metaspace BPEDecoder
//                    Sequence
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "lm/byte_level.hpp"
#include "lm/regex.hpp"
#include "lm/unicode.hpp"
#include "lm/vocab.hpp"
#include "moe/core/error.hpp"
#include "moe/io/json.hpp"

namespace moe::lm {

namespace detail {

using io::json::Value;

inline const Value& member(const Value& obj, std::string_view key, std::string_view where) {
    const Value* v = obj.find(key);
    check<FormatError>(v != nullptr, where, "missing \"", key, "\"");
    return *v;
}
inline const Value* optional_member(const Value& obj, std::string_view key) {
    const Value* v = obj.find(key);
    return v && !v->is_null() ? v : nullptr;
}
inline bool get_bool(const Value& obj, std::string_view key, bool fallback, std::string_view where) {
    const Value* v = optional_member(obj, key);
    if (!v) return fallback;
    check<FormatError>(v->is_bool(), where, "\"", key, "\" must be a boolean");
    return v->as_bool();
}
inline std::string get_string(const Value& obj, std::string_view key, std::string_view where) {
    const Value& v = member(obj, key, where);
    check<FormatError>(v.is_string(), where, "\"", key, "\" must be a string");
    return v.as_string();
}
inline std::string get_string_or(const Value& obj, std::string_view key, std::string fallback, std::string_view where) {
    const Value* v = optional_member(obj, key);
    if (!v) return fallback;
    check<FormatError>(v->is_string(), where, "\"", key, "\" must be a string");
    return v->as_string();
}
inline std::string type_of(const Value& obj, std::string_view where) {
    check<FormatError>(obj.is_object(), where, "must be an object");
    return get_string(obj, "type", where);
}

/// Calls f(type, step, where) for each step of a pipeline part, flattening "Sequence" steps
/// (whose list is under `list_key`: "normalizers", "pretokenizers", ...).
template <class F>
void for_each_step(const Value& v, const std::string& where, std::string_view list_key, F&& f) {
    const std::string type = type_of(v, where);
    const std::string w = moe::detail::cat(where, " (", type, ")");
    if (type != "Sequence") {
        f(type, v, w);
        return;
    }
    const auto& list = member(v, list_key, w);
    check<FormatError>(list.is_array(), w, "\"", list_key, "\" must be an array");
    for (const auto& item : list.as_array()) for_each_step(item, where, list_key, f);
}

/// A Replace step's "content": taken literally, so a '$' (which JavaScript's replaceAll would
/// expand) is refused.
inline std::string replacement(const Value& v, std::string_view where) {
    std::string content = get_string(v, "content", where);
    check<ConfigError>(content.find('$') == std::string::npos, where,
                       "a replacement containing '$' is not supported (JavaScript would expand it)");
    return content;
}

/// JavaScript's String.prototype.trim set: White_Space plus U+FEFF (the same set as \s).
inline bool js_space(char32_t cp) noexcept { return unicode::flags(cp) & unicode::Flag::whitespace; }

inline std::string_view trim_start(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto d = unicode::decode_utf8(s, i);
        if (!js_space(d.cp)) break;
        i += d.len;
    }
    return s.substr(i);
}
inline std::string_view trim_end(std::string_view s) {
    std::size_t e = s.size();
    while (e > 0) {
        std::size_t b = e - 1;
        while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
        const auto d = unicode::decode_utf8(s, b);
        if (!js_space(d.cp)) break;
        e = b;
    }
    return s.substr(0, e);
}
inline std::string_view trim(std::string_view s) { return trim_end(trim_start(s)); }

inline void replace_all(std::string& s, std::string_view from, std::string_view to) {
    if (from.empty()) return;
    std::string out;
    std::size_t i = 0;
    while (true) {
        const std::size_t j = s.find(from, i);
        if (j == std::string::npos) break;
        out.append(s, i, j - i);
        out += to;
        i = j + from.size();
    }
    if (i == 0) return;
    out.append(s, i, std::string::npos);
    s = std::move(out);
}

}  // namespace detail

/// A pattern of Replace / Split steps: a literal string or a regex.
struct Pattern {
    std::string literal;            ///< the String pattern (when regex is empty)
    std::shared_ptr<const Regex> regex;  ///< the Regex pattern

    static Pattern from_json(const io::json::Value& v, std::string_view where) {
        check<FormatError>(v.is_object(), where, "\"pattern\" must be an object");
        Pattern p;
        if (const auto* s = v.find("String")) {
            check<FormatError>(s->is_string(), where, "pattern.String must be a string");
            p.literal = s->as_string();
            check<ConfigError>(!p.literal.empty(), where, "an empty String pattern is not supported");
        } else if (const auto* r = v.find("Regex")) {
            check<FormatError>(r->is_string(), where, "pattern.Regex must be a string");
            p.regex = std::make_shared<const Regex>(r->as_string());
        } else {
            throw FormatError(where, "pattern must have \"String\" or \"Regex\"");
        }
        return p;
    }

    /// All non-overlapping matches in `text` (byte offsets), as matchAll with the `g` flag.
    template <class F>
    void for_each_match(std::string_view text, std::u32string& u32, std::vector<std::size_t>& offs,
                        Regex::Scratch& rs, F&& f) const {
        if (!regex) {
            std::size_t i = 0;
            while ((i = text.find(literal, i)) != std::string_view::npos) {
                f(i, i + literal.size());
                i += literal.size();
            }
            return;
        }
        to_code_points(text, u32, offs);
        regex->for_each_match(u32, rs, [&](std::size_t a, std::size_t b) { f(offs[a], offs[b]); });
    }

    /// Decodes UTF-8 into code points with each one's byte offset (plus the end offset).
    static void to_code_points(std::string_view text, std::u32string& u32, std::vector<std::size_t>& offs) {
        u32.clear();
        offs.clear();
        u32.reserve(text.size());
        offs.reserve(text.size() + 1);
        for (std::size_t i = 0; i < text.size();) {
            const auto c = static_cast<unsigned char>(text[i]);
            if (c < 0x80) {
                u32.push_back(c);
                offs.push_back(i++);
                continue;
            }
            const auto d = unicode::decode_utf8(text, i);
            u32.push_back(d.cp);
            offs.push_back(i);
            i += d.len;
        }
        offs.push_back(text.size());
    }

    /// text with every match replaced by `content` (taken literally).
    std::string replace(std::string_view text, std::string_view content, std::u32string& u32,
                        std::vector<std::size_t>& offs, Regex::Scratch& rs) const {
        std::string out;
        std::size_t last = 0;
        for_each_match(text, u32, offs, rs, [&](std::size_t a, std::size_t b) {
            out.append(text.substr(last, a - last));
            out += content;
            last = b;
        });
        out.append(text.substr(last));
        return out;
    }
};

/// Scratch memory shared by the pipeline steps (one per thread).
struct PipelineScratch {
    std::u32string u32;
    std::vector<std::size_t> offsets;
    Regex::Scratch regex;
    std::string buf;
};

// ================================================================================================
// Normalizers
// ================================================================================================

namespace norm {
struct Nfc {};
struct Nfd {};
struct Nfkc {};
struct Nfkd {};
/// JS toLowerCase (full mappings, Final_Sigma).
struct Lowercase {};
/// The reference removes every \p{M} (Rust: combining marks only, expecting an NFD before it).
struct StripAccents {};
struct Strip { bool left = true, right = true; };
struct Prepend { std::string text; };
struct Replace { Pattern pattern; std::string content; };
/// BERT's: clean text (drop U+0000, U+FFFD and Cc/Cf/Co/Cs except \t\n\r; whitespace -> ' '),
/// spaces around CJK ideographs of the BMP (the reference walks UTF-16 code units, so the
/// supplementary CJK ranges are not split: Rust splits them), lowercase + strip accents.
struct Bert {
    bool clean_text = true, handle_chinese_chars = true, lowercase = true;
    std::optional<bool> strip_accents;
};
}  // namespace norm

using NormalizerStep = std::variant<norm::Nfc, norm::Nfd, norm::Nfkc, norm::Nfkd, norm::Lowercase, norm::StripAccents,
                                    norm::Strip, norm::Prepend, norm::Replace, norm::Bert>;

/// A sequence of normalizer steps (a Sequence in the file is flattened).
class Normalizer {
public:
    Normalizer() = default;
    static Normalizer from_json(const io::json::Value& v) {
        Normalizer n;
        if (!v.is_null()) n.add(v, "tokenizer.json: normalizer");
        return n;
    }
    bool empty() const noexcept { return steps_.empty(); }
    const std::vector<NormalizerStep>& steps() const noexcept { return steps_; }

    std::string apply(std::string text, PipelineScratch& s) const {
        for (const auto& step : steps_) text = std::visit([&](const auto& st) { return run(st, std::move(text), s); }, step);
        return text;
    }

private:
    void add(const io::json::Value& root, const std::string& where) {
        detail::for_each_step(root, where, "normalizers", [&](const std::string& type, const io::json::Value& v,
                                                              const std::string& w) { add_step(type, v, w, where); });
    }
    void add_step(const std::string& type, const io::json::Value& v, const std::string& w, const std::string& where) {
        using namespace detail;
        if (type == "NFC") steps_.emplace_back(norm::Nfc{});
        else if (type == "NFD") steps_.emplace_back(norm::Nfd{});
        else if (type == "NFKC") steps_.emplace_back(norm::Nfkc{});
        else if (type == "NFKD") steps_.emplace_back(norm::Nfkd{});
        else if (type == "Lowercase") steps_.emplace_back(norm::Lowercase{});
        else if (type == "StripAccents") steps_.emplace_back(norm::StripAccents{});
        else if (type == "Strip") {
            steps_.emplace_back(norm::Strip{get_bool(v, "strip_left", false, w), get_bool(v, "strip_right", false, w)});
        } else if (type == "Prepend") {
            steps_.emplace_back(norm::Prepend{get_string(v, "prepend", w)});
        } else if (type == "Replace") {
            steps_.emplace_back(norm::Replace{Pattern::from_json(member(v, "pattern", w), w), replacement(v, w)});
        } else if (type == "BertNormalizer") {
            norm::Bert b;
            b.clean_text = get_bool(v, "clean_text", true, w);
            b.handle_chinese_chars = get_bool(v, "handle_chinese_chars", true, w);
            b.lowercase = get_bool(v, "lowercase", true, w);
            if (const auto* sa = optional_member(v, "strip_accents")) {
                check<FormatError>(sa->is_bool(), w, "\"strip_accents\" must be a boolean or null");
                b.strip_accents = sa->as_bool();
            }
            steps_.emplace_back(b);
        } else {
            throw ConfigError(where, moe::detail::cat("unsupported normalizer type \"", type,
                                                 "\" (supported: NFC NFD NFKC NFKD Lowercase StripAccents Strip "
                                                 "Prepend Replace BertNormalizer Sequence)"));
        }
    }

    static std::string run(const norm::Nfc&, std::string t, PipelineScratch&) { return unicode::nfc(t); }
    static std::string run(const norm::Nfd&, std::string t, PipelineScratch&) { return unicode::nfd(t); }
    static std::string run(const norm::Nfkc&, std::string t, PipelineScratch&) { return unicode::nfkc(t); }
    static std::string run(const norm::Nfkd&, std::string t, PipelineScratch&) { return unicode::nfkd(t); }
    static std::string run(const norm::Lowercase&, std::string t, PipelineScratch&) { return unicode::to_lower(t); }
    static std::string run(const norm::StripAccents&, std::string t, PipelineScratch&) {
        return remove_if_flag(t, unicode::Flag::mark);
    }
    static std::string run(const norm::Strip& st, std::string t, PipelineScratch&) {
        std::string_view v = t;
        if (st.left) v = detail::trim_start(v);
        if (st.right) v = detail::trim_end(v);
        return std::string(v);
    }
    static std::string run(const norm::Prepend& p, std::string t, PipelineScratch&) { return p.text + t; }
    static std::string run(const norm::Replace& r, std::string t, PipelineScratch& s) {
        return r.pattern.replace(t, r.content, s.u32, s.offsets, s.regex);
    }
    static std::string run(const norm::Bert& b, std::string t, PipelineScratch&) {
        if (b.clean_text) {
            std::string out;
            out.reserve(t.size());
            for (std::size_t i = 0; i < t.size();) {
                const auto d = unicode::decode_utf8(t, i);
                const std::uint16_t f = unicode::flags(d.cp);
                const bool control = d.cp != '\t' && d.cp != '\n' && d.cp != '\r' &&
                                     ((f & (unicode::Flag::control | unicode::Flag::format)) ||
                                      is_private_or_surrogate(d.cp));
                if (d.cp == 0 || d.cp == 0xFFFD || control) {
                } else if (f & unicode::Flag::whitespace) {
                    out += ' ';
                } else {
                    out.append(t, i, d.len);
                }
                i += d.len;
            }
            t = std::move(out);
        }
        if (b.handle_chinese_chars) {
            std::string out;
            out.reserve(t.size());
            for (std::size_t i = 0; i < t.size();) {
                const auto d = unicode::decode_utf8(t, i);
                if (d.cp <= 0xFFFF && (unicode::flags(d.cp) & unicode::Flag::cjk)) {
                    out += ' ';
                    out.append(t, i, d.len);
                    out += ' ';
                } else {
                    out.append(t, i, d.len);
                }
                i += d.len;
            }
            t = std::move(out);
        }
        if (b.lowercase) {
            t = unicode::to_lower(t);
            if (b.strip_accents.value_or(true)) t = unicode::strip_accents(t);
        } else if (b.strip_accents.value_or(false)) {
            t = unicode::strip_accents(t);
        }
        return t;
    }
    // \p{Co} or \p{Cs} (the reference's _is_control: Cc Cf Co Cs; unassigned Cn is kept).
    static bool is_private_or_surrogate(char32_t cp) noexcept {
        const auto c = unicode::category(cp);
        return c == unicode::GeneralCategory::Co || c == unicode::GeneralCategory::Cs;
    }
    static std::string remove_if_flag(std::string_view t, std::uint16_t flag) {
        std::string out;
        out.reserve(t.size());
        for (std::size_t i = 0; i < t.size();) {
            const auto d = unicode::decode_utf8(t, i);
            if (!(unicode::flags(d.cp) & flag)) out.append(t.substr(i, d.len));
            i += d.len;
        }
        return out;
    }

    std::vector<NormalizerStep> steps_;
};

// ================================================================================================
// Pre-tokenizers
// ================================================================================================

/// Pre-tokenized pieces of one section: spans into one buffer.
struct Pieces {
    std::string text;
    std::vector<std::pair<std::uint32_t, std::uint32_t>> spans;

    void clear() noexcept {
        text.clear();
        spans.clear();
    }
    void add(std::string_view s) {
        const auto b = static_cast<std::uint32_t>(text.size());
        text.append(s);
        spans.emplace_back(b, static_cast<std::uint32_t>(text.size()));
    }
    std::size_t size() const noexcept { return spans.size(); }
    std::string_view operator[](std::size_t i) const noexcept {
        return std::string_view(text).substr(spans[i].first, spans[i].second - spans[i].first);
    }
};

namespace pre {
/// Split: Isolated (matches and the gaps between them are pieces), Removed (gaps only, as
/// JavaScript's String.split), invert (matches only). MergedWithPrevious / MergedWithNext /
/// Contiguous are refused: the reference treats them as Isolated, Rust does not.
struct Split { Pattern pattern; bool removed = false; bool invert = false; };
/// ByteLevel: optional prefix space (the reference adds it to every piece that lacks one),
/// GPT-2's regex when use_regex, then bytes -> printable code points.
/// map_bytes = false: the pieces stay raw bytes, for a BPE model that maps them itself (the
/// tokenizer's fast path when ByteLevel is the last step; same tokens).
struct ByteLevel { bool add_prefix_space = false; bool use_regex = true; bool map_bytes = true; };
/// Metaspace: ' ' -> replacement, prefix per prepend_scheme (always / first / never). The
/// reference does not split on the replacement (Rust does when "split" is true).
struct Metaspace { std::string replacement, str_rep; bool add_prefix_space = false; std::string prepend_scheme = "always"; };
/// A pre-tokenizer that keeps the matches of a fixed JavaScript regex (BertPreTokenizer after a
/// trim, Whitespace, WhitespaceSplit, Punctuation, Digits).
struct MatchAll { std::shared_ptr<const Regex> regex; bool trim_first = false; };
struct Replace { Pattern pattern; std::string content; };
}  // namespace pre

using PreTokenizerStep = std::variant<pre::Split, pre::ByteLevel, pre::Metaspace, pre::MatchAll, pre::Replace>;

class PreTokenizer {
public:
    PreTokenizer() = default;
    static PreTokenizer from_json(const io::json::Value& v) {
        PreTokenizer p;
        if (!v.is_null()) p.add(v, "tokenizer.json: pre_tokenizer");
        return p;
    }
    bool empty() const noexcept { return steps_.empty(); }
    /// Replaces steps (for LlamaTokenizer with legacy = false, as the reference does).
    void set_steps(std::vector<PreTokenizerStep> s) { steps_ = std::move(s); }
    /// When the last step is ByteLevel, leaves its pieces as raw bytes (the model maps them) and
    /// returns true; a pipeline whose last step is a plain ByteLevel with nothing to do is then
    /// dropped entirely.
    bool defer_byte_mapping() {
        if (steps_.empty()) return false;
        auto* bl = std::get_if<pre::ByteLevel>(&steps_.back());
        if (!bl) return false;
        bl->map_bytes = false;
        if (!bl->use_regex && !bl->add_prefix_space) steps_.pop_back();
        return true;
    }
    const std::vector<PreTokenizerStep>& steps() const noexcept { return steps_; }

    /// Pre-tokenizes one section into `out` (via `tmp`).
    void apply(std::string_view section, std::size_t section_index, Pieces& out, Pieces& tmp, PipelineScratch& s) const {
        out.clear();
        out.add(section);
        for (const auto& step : steps_) {
            tmp.clear();
            for (std::size_t i = 0; i < out.size(); ++i)
                std::visit([&](const auto& st) { run(st, out[i], section_index, tmp, s); }, step);
            std::swap(out, tmp);
        }
    }

    static const ByteLevelTable& byte_table() { return ByteLevelTable::get(); }
    /// GPT-2's pattern, which ByteLevel applies when use_regex is true.
    static constexpr std::string_view gpt2_pattern =
        R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
    static constexpr std::string_view punctuation_class =
        R"(\p{P}\u0021-\u002F\u003A-\u0040\u005B-\u0060\u007B-\u007E)";

private:
    void add(const io::json::Value& root, const std::string& where) {
        detail::for_each_step(root, where, "pretokenizers", [&](const std::string& type, const io::json::Value& v,
                                                                const std::string& w) { add_step(type, v, w, where); });
    }
    void add_step(const std::string& type, const io::json::Value& v, const std::string& w, const std::string& where) {
        using namespace detail;
        auto fixed = [](std::string_view pattern) { return std::make_shared<const Regex>(pattern); };
        if (type == "Split") {
            pre::Split sp{Pattern::from_json(member(v, "pattern", w), w)};
            sp.invert = get_bool(v, "invert", false, w);
            const std::string behavior = get_string_or(v, "behavior", "Isolated", w);
            if (behavior == "Removed") {
                // The reference wraps a String pattern in a capture group when not inverted, and
                // JavaScript's split keeps captured delimiters: Removed then acts as Isolated.
                sp.removed = sp.pattern.regex != nullptr || sp.invert;
            } else if (behavior != "Isolated") {
                throw ConfigError(w, moe::detail::cat("Split behavior \"", behavior, "\" is not supported (the reference "
                                                 "implementation treats it as Isolated, Hugging Face's Rust "
                                                 "tokenizers do not; refusing rather than guessing)"));
            }
            steps_.emplace_back(std::move(sp));
        } else if (type == "ByteLevel") {
            steps_.emplace_back(pre::ByteLevel{get_bool(v, "add_prefix_space", false, w), get_bool(v, "use_regex", true, w), true});
            if (std::get<pre::ByteLevel>(steps_.back()).use_regex && !gpt2_) gpt2_ = fixed(gpt2_pattern);
        } else if (type == "Metaspace") {
            pre::Metaspace m;
            m.replacement = get_string(v, "replacement", w);
            m.str_rep = get_string_or(v, "str_rep", m.replacement, w);
            m.add_prefix_space = get_bool(v, "add_prefix_space", false, w);
            m.prepend_scheme = get_string_or(v, "prepend_scheme", "always", w);
            check<ConfigError>(m.prepend_scheme == "always" || m.prepend_scheme == "first" || m.prepend_scheme == "never",
                               w, "unknown prepend_scheme \"", m.prepend_scheme, "\"");
            steps_.emplace_back(std::move(m));
        } else if (type == "BertPreTokenizer") {
            const std::string p = moe::detail::cat("[^\\s", punctuation_class, "]+|[", punctuation_class, "]");
            steps_.emplace_back(pre::MatchAll{fixed(p), true});
        } else if (type == "Whitespace") {
            steps_.emplace_back(pre::MatchAll{fixed(R"(\w+|[^\w\s]+)"), false});
        } else if (type == "WhitespaceSplit") {
            steps_.emplace_back(pre::MatchAll{fixed(R"(\S+)"), false});
        } else if (type == "Punctuation") {
            const std::string c(punctuation_class);
            steps_.emplace_back(pre::MatchAll{fixed(moe::detail::cat("[^", c, "]+|[", c, "]+")), false});
        } else if (type == "Digits") {
            const bool individual = get_bool(v, "individual_digits", false, w);
            steps_.emplace_back(pre::MatchAll{fixed(individual ? R"([^\d]+|\d)" : R"([^\d]+|\d+)"), false});
        } else if (type == "Replace") {
            steps_.emplace_back(pre::Replace{Pattern::from_json(member(v, "pattern", w), w), replacement(v, w)});
        } else {
            throw ConfigError(where, moe::detail::cat("unsupported pre-tokenizer type \"", type,
                                                 "\" (supported: Split ByteLevel Metaspace BertPreTokenizer Whitespace "
                                                 "WhitespaceSplit Punctuation Digits Replace Sequence)"));
        }
    }

    void run(const pre::Split& sp, std::string_view text, std::size_t, Pieces& out, PipelineScratch& s) const {
        if (sp.invert) {
            sp.pattern.for_each_match(text, s.u32, s.offsets, s.regex, [&](std::size_t a, std::size_t b) {
                if (b > a) out.add(text.substr(a, b - a));
            });
            return;
        }
        if (sp.removed) {
            split_removed(*sp.pattern.regex, text, out, s);
            return;
        }
        std::size_t prev = 0;
        sp.pattern.for_each_match(text, s.u32, s.offsets, s.regex, [&](std::size_t a, std::size_t b) {
            if (prev < a) out.add(text.substr(prev, a - prev));
            if (b > a) out.add(text.substr(a, b - a));
            prev = b;
        });
        if (prev < text.size()) out.add(text.substr(prev));
    }
    // JavaScript's String.prototype.split(regex) (ES2023 22.2.6.14), empty pieces dropped.
    static void split_removed(const Regex& re, std::string_view text, Pieces& out, PipelineScratch& s) {
        Pattern::to_code_points(text, s.u32, s.offsets);
        const std::u32string_view u(s.u32);
        const std::size_t size = u.size();
        if (size == 0) return;  // "".split(re) is [""] or []: nothing non-empty either way
        std::size_t p = 0, q = 0;
        while (q < size) {
            const auto m = re.match_at(u, q, s.regex);
            if (!m) { ++q; continue; }
            const std::size_t e = q + *m;
            if (e == p) { ++q; continue; }
            if (q > p) out.add(text.substr(s.offsets[p], s.offsets[q] - s.offsets[p]));
            p = e;
            q = p;
        }
        if (size > p) out.add(text.substr(s.offsets[p]));
    }
    void run(const pre::ByteLevel& bl, std::string_view text, std::size_t, Pieces& out, PipelineScratch& s) const {
        const auto& table = byte_table();
        std::string& buf = s.buf;
        std::string_view t = text;
        std::string prefixed;
        if (bl.add_prefix_space && (t.empty() || t.front() != ' ')) {
            prefixed.assign(1, ' ').append(t);
            t = prefixed;
        }
        auto emit = [&](std::string_view piece) {
            if (!bl.map_bytes) {
                out.add(piece);
                return;
            }
            buf.clear();
            table.map(piece, buf);
            out.add(buf);
        };
        if (!bl.use_regex) {
            emit(t);
            return;
        }
        Pattern::to_code_points(t, s.u32, s.offsets);
        gpt2_->for_each_match(s.u32, s.regex, [&](std::size_t a, std::size_t b) {
            if (b > a) emit(t.substr(s.offsets[a], s.offsets[b] - s.offsets[a]));
        });
    }
    static void run(const pre::Metaspace& m, std::string_view text, std::size_t section, Pieces& out, PipelineScratch&) {
        std::string t(text);
        detail::replace_all(t, " ", m.str_rep);
        if (m.add_prefix_space && t.compare(0, m.replacement.size(), m.replacement) != 0 &&
            (m.prepend_scheme == "always" || (m.prepend_scheme == "first" && section == 0)))
            t = m.str_rep + t;
        out.add(t);
    }
    static void run(const pre::MatchAll& ma, std::string_view text, std::size_t, Pieces& out, PipelineScratch& s) {
        const std::string_view t = ma.trim_first ? detail::trim(text) : text;
        Pattern::to_code_points(t, s.u32, s.offsets);
        ma.regex->for_each_match(s.u32, s.regex, [&](std::size_t a, std::size_t b) {
            if (b > a) out.add(t.substr(s.offsets[a], s.offsets[b] - s.offsets[a]));
        });
    }
    static void run(const pre::Replace& r, std::string_view text, std::size_t, Pieces& out, PipelineScratch& s) {
        out.add(r.pattern.replace(text, r.content, s.u32, s.offsets, s.regex));
    }

    std::vector<PreTokenizerStep> steps_;
    std::shared_ptr<const Regex> gpt2_;
};

// ================================================================================================
// Post-processors
// ================================================================================================

/// Adds the special tokens around one sequence (pairs are not needed by the models in scope).
class PostProcessor {
public:
    struct Item {
        bool is_sequence = false;   // the sequence itself, or a special token
        std::string token;          // the special token's string (the reference looks it up)
    };

    PostProcessor() = default;
    static PostProcessor from_json(const io::json::Value& v) {
        PostProcessor p;
        if (!v.is_null()) p.add(v, "tokenizer.json: post_processor");
        if (!p.configured_) p.single_ = {Item{true, {}}};
        return p;
    }
    /// The template for one sequence, special tokens as strings.
    const std::vector<Item>& single() const noexcept { return single_; }

    /// tokens of one sequence -> with the template's special tokens (when add_special).
    void apply(const std::vector<TokenId>& seq, bool add_special, const Vocab& vocab, TokenId unk,
               std::vector<TokenId>& out) const {
        for (const auto& it : single_) {
            if (it.is_sequence) {
                out.insert(out.end(), seq.begin(), seq.end());
            } else if (add_special) {
                const auto id = vocab.find(it.token);
                check<ConfigError>(id.has_value() || unk >= 0, "tokenizer: post_processor", "special token \"",
                                   it.token, "\" is not in the vocabulary");
                out.push_back(id ? *id : unk);
            }
        }
    }

private:
    void add(const io::json::Value& root, const std::string& where) {
        detail::for_each_step(root, where, "processors", [&](const std::string& type, const io::json::Value& v,
                                                             const std::string& w) { add_step(type, v, w, where); });
    }
    void add_step(const std::string& type, const io::json::Value& v, const std::string& w, const std::string& where) {
        using namespace detail;
        if (type == "ByteLevel") {
            // No token changes (offsets only).
        } else if (type == "TemplateProcessing") {
            const auto& single = member(v, "single", w);
            check<FormatError>(single.is_array(), w, "\"single\" must be an array");
            std::vector<Item> items;
            for (const auto& piece : single.as_array()) {
                check<FormatError>(piece.is_object(), w, "template items must be objects");
                if (const auto* st = piece.find("SpecialToken")) {
                    items.push_back({false, get_string(*st, "id", w)});
                } else if (const auto* sq = piece.find("Sequence")) {
                    const std::string id = get_string(*sq, "id", w);
                    check<ConfigError>(id == "A", w, "the single template refers to sequence \"", id, "\"");
                    items.push_back({true, {}});
                } else {
                    throw FormatError(w, "template item is neither SpecialToken nor Sequence");
                }
            }
            set(std::move(items), w);
        } else if (type == "BertProcessing" || type == "RobertaProcessing") {
            auto pair_token = [&](std::string_view key) {
                const auto& p = member(v, key, w);
                check<FormatError>(p.is_array() && p.as_array().size() == 2 && p.as_array()[0].is_string(), w,
                                   "\"", key, "\" must be [token, id]");
                return p.as_array()[0].as_string();
            };
            set({Item{false, pair_token("cls")}, Item{true, {}}, Item{false, pair_token("sep")}}, w);
        } else {
            throw ConfigError(where, moe::detail::cat("unsupported post-processor type \"", type,
                                                 "\" (supported: TemplateProcessing BertProcessing RobertaProcessing "
                                                 "ByteLevel Sequence)"));
        }
    }
    void set(std::vector<Item> items, const std::string& where) {
        check<ConfigError>(!configured_, where, "two post-processors that add tokens");
        single_ = std::move(items);
        configured_ = true;
    }

    std::vector<Item> single_;
    bool configured_ = false;
};

// ================================================================================================
// Decoders
// ================================================================================================

namespace dec {
struct ByteLevel {};
struct Replace { Pattern pattern; std::string content; };
struct ByteFallback {};
struct Fuse {};
struct Strip { std::string content; std::size_t start = 0, stop = 0; };
struct WordPiece { std::string prefix = "##"; bool cleanup = true; };
struct Metaspace { std::string replacement; bool add_prefix_space = false; };
struct BpeSuffix { std::string suffix; };
}  // namespace dec

using DecoderStep = std::variant<dec::ByteLevel, dec::Replace, dec::ByteFallback, dec::Fuse, dec::Strip,
                                 dec::WordPiece, dec::Metaspace, dec::BpeSuffix>;

/// The decoder chain: token strings -> text pieces -> joined.
class Decoder {
public:
    Decoder() = default;
    static Decoder from_json(const io::json::Value& v) {
        Decoder d;
        if (!v.is_null()) {
            d.add(v, "tokenizer.json: decoder");
            d.present_ = true;
        }
        return d;
    }
    /// Without a decoder the reference joins tokens with spaces.
    bool present() const noexcept { return present_; }
    /// Whether the WordPiece decoder asks for clean-up (the reference's decoder.cleanup).
    std::optional<bool> cleanup() const noexcept {
        for (const auto& st : steps_)
            if (const auto* w = std::get_if<dec::WordPiece>(&st)) return w->cleanup;
        return std::nullopt;
    }

    /// `tokens` are the token strings; `is_added(token)` says whether a string is an added
    /// token's content (the ByteLevel decoder passes those through unchanged, as the reference
    /// does, whatever step it runs at).
    template <class IsAdded>
    std::string apply(std::vector<std::string> tokens, IsAdded&& is_added, PipelineScratch& s) const {
        if (!present_) {
            std::string out;
            for (std::size_t i = 0; i < tokens.size(); ++i) {
                if (i) out += ' ';
                out += tokens[i];
            }
            return out;
        }
        for (const auto& step : steps_)
            tokens = std::visit([&](const auto& st) { return run(st, std::move(tokens), is_added, s); }, step);
        std::string out;
        for (const auto& t : tokens) out += t;
        return out;
    }

private:
    void add(const io::json::Value& root, const std::string& where) {
        detail::for_each_step(root, where, "decoders", [&](const std::string& type, const io::json::Value& v,
                                                           const std::string& w) { add_step(type, v, w, where); });
    }
    void add_step(const std::string& type, const io::json::Value& v, const std::string& w, const std::string& where) {
        using namespace detail;
        if (type == "ByteLevel") steps_.emplace_back(dec::ByteLevel{});
        else if (type == "ByteFallback") steps_.emplace_back(dec::ByteFallback{});
        else if (type == "Fuse") steps_.emplace_back(dec::Fuse{});
        else if (type == "Replace") {
            steps_.emplace_back(dec::Replace{Pattern::from_json(member(v, "pattern", w), w), replacement(v, w)});
        } else if (type == "Strip") {
            dec::Strip st;
            st.content = get_string(v, "content", w);
            check<ConfigError>(unicode::to_u32(st.content).size() == 1 && unicode::decode_utf8(st.content, 0).cp <= 0xFFFF,
                               w, "Strip content must be one BMP character");
            const auto& a = member(v, "start", w);
            const auto& b = member(v, "stop", w);
            check<FormatError>(a.as_u64().has_value() && b.as_u64().has_value(), w, "start/stop must be integers >= 0");
            st.start = static_cast<std::size_t>(*a.as_u64());
            st.stop = static_cast<std::size_t>(*b.as_u64());
            steps_.emplace_back(std::move(st));
        } else if (type == "WordPiece") {
            steps_.emplace_back(dec::WordPiece{get_string_or(v, "prefix", "##", w), get_bool(v, "cleanup", true, w)});
        } else if (type == "Metaspace") {
            steps_.emplace_back(dec::Metaspace{get_string(v, "replacement", w), get_bool(v, "add_prefix_space", false, w)});
        } else if (type == "BPEDecoder") {
            steps_.emplace_back(dec::BpeSuffix{get_string_or(v, "suffix", "</w>", w)});
        } else {
            throw ConfigError(where, moe::detail::cat("unsupported decoder type \"", type,
                                                 "\" (supported: ByteLevel Replace ByteFallback Fuse Strip WordPiece "
                                                 "Metaspace BPEDecoder Sequence)"));
        }
    }

    template <class IsAdded>
    static std::vector<std::string> run(const dec::ByteLevel&, std::vector<std::string> tokens, IsAdded& is_added,
                                        PipelineScratch&) {
        const auto& table = PreTokenizer::byte_table();
        std::vector<std::string> out;
        std::string bytes;
        auto flush = [&] {
            if (bytes.empty()) return;
            out.push_back(unicode::replace_invalid_utf8(bytes));
            bytes.clear();
        };
        bool pending = false;
        for (std::size_t i = 0; i < tokens.size(); ++i) {
            if (is_added(tokens[i])) {
                if (pending) flush();
                pending = false;
                out.push_back(std::move(tokens[i]));
                continue;
            }
            pending = true;
            const std::string& t = tokens[i];
            for (std::size_t k = 0; k < t.size();) {
                const auto d = unicode::decode_utf8(t, k);
                // A character outside the table becomes byte 0, as Uint8Array(undefined) does.
                const auto b = d.cp < table.to_byte.size() ? table.to_byte[d.cp] : -1;
                bytes += static_cast<char>(b < 0 ? 0 : b);
                k += d.len;
            }
        }
        if (pending) flush();
        return out;
    }
    template <class IsAdded>
    static std::vector<std::string> run(const dec::Replace& r, std::vector<std::string> tokens, IsAdded&,
                                        PipelineScratch& s) {
        for (auto& t : tokens) t = r.pattern.replace(t, r.content, s.u32, s.offsets, s.regex);
        return tokens;
    }
    template <class IsAdded>
    static std::vector<std::string> run(const dec::ByteFallback&, std::vector<std::string> tokens, IsAdded&,
                                        PipelineScratch&) {
        std::vector<std::string> out;
        std::string bytes;
        auto flush = [&] {
            if (bytes.empty()) return;
            out.push_back(unicode::replace_invalid_utf8(bytes));
            bytes.clear();
        };
        for (auto& t : tokens) {
            int byte = -1;
            if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') byte = parse_hex_prefix(t.substr(3, 2));
            if (byte >= 0) {
                bytes += static_cast<char>(byte);
            } else {
                flush();
                out.push_back(std::move(t));
            }
        }
        flush();
        return out;
    }
    // JavaScript's parseInt(s, 16) on two characters: the leading hex digits, NaN (-1) if none.
    static int parse_hex_prefix(std::string_view s) {
        int v = 0, n = 0;
        for (char c : s) {
            int d;
            if (c >= '0' && c <= '9') d = c - '0';
            else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
            else break;
            v = v * 16 + d;
            ++n;
        }
        return n ? v : -1;
    }
    template <class IsAdded>
    static std::vector<std::string> run(const dec::Fuse&, std::vector<std::string> tokens, IsAdded&, PipelineScratch&) {
        std::string all;
        for (const auto& t : tokens) all += t;
        return {std::move(all)};
    }
    // Strips up to `start` leading and `stop` trailing copies of one character; the reference
    // indexes UTF-16 code units (content is one BMP character, checked at load).
    template <class IsAdded>
    static std::vector<std::string> run(const dec::Strip& st, std::vector<std::string> tokens, IsAdded&, PipelineScratch&) {
        for (auto& t : tokens) {
            std::u32string u = unicode::to_u32(t);
            const char32_t c = unicode::decode_utf8(st.content, 0).cp;
            // The reference indexes UTF-16 code units; an astral character is two of them, neither
            // equal to c, so counting code points stops at the same characters.
            std::size_t start_cut = 0;
            for (std::size_t i = 0; i < st.start && i < u.size(); ++i) {
                if (u[i] == c) start_cut = i + 1;
                else break;
            }
            std::size_t stop_cut = u.size();
            for (std::size_t i = 0; i < st.stop && i < u.size(); ++i) {
                const std::size_t idx = u.size() - i - 1;
                if (u[idx] == c) stop_cut = idx;
                else break;
            }
            if (stop_cut < start_cut) stop_cut = start_cut;  // slice(a, b) with b < a is empty
            t = unicode::to_utf8(std::u32string_view(u).substr(start_cut, stop_cut - start_cut));
        }
        return tokens;
    }
    template <class IsAdded>
    static std::vector<std::string> run(const dec::WordPiece& wp, std::vector<std::string> tokens, IsAdded&,
                                        PipelineScratch&) {
        for (std::size_t i = 0; i < tokens.size(); ++i) {
            auto& t = tokens[i];
            if (i != 0) {
                if (t.compare(0, wp.prefix.size(), wp.prefix) == 0) t.erase(0, wp.prefix.size());
                else t.insert(0, 1, ' ');
            }
            if (wp.cleanup) t = clean_up_tokenization(t);
        }
        return tokens;
    }
    template <class IsAdded>
    static std::vector<std::string> run(const dec::Metaspace& m, std::vector<std::string> tokens, IsAdded&,
                                        PipelineScratch&) {
        for (std::size_t i = 0; i < tokens.size(); ++i) {
            auto& t = tokens[i];
            detail::replace_all(t, m.replacement, " ");
            if (m.add_prefix_space && i == 0 && !t.empty() && t[0] == ' ') t.erase(0, 1);
        }
        return tokens;
    }
    template <class IsAdded>
    static std::vector<std::string> run(const dec::BpeSuffix& b, std::vector<std::string> tokens, IsAdded&,
                                        PipelineScratch&) {
        for (std::size_t i = 0; i < tokens.size(); ++i)
            detail::replace_all(tokens[i], b.suffix, i + 1 == tokens.size() ? "" : " ");
        return tokens;
    }

    std::vector<DecoderStep> steps_;
    bool present_ = false;

public:
    /// The reference's clean_up_tokenization: " ." -> "." and the like.
    static std::string clean_up_tokenization(std::string t) {
        static constexpr std::pair<std::string_view, std::string_view> rules[] = {
            {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
            {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
        for (const auto& [from, to] : rules) detail::replace_all(t, from, to);
        return t;
    }
};

}  // namespace moe::lm
