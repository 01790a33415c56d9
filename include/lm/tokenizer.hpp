// lm/tokenizer.hpp - a Hugging Face tokenizer.json (+ tokenizer_config.json): encode, decode,
// special tokens, streaming decode.
//
//   auto tok = moe::lm::Tokenizer::from_file("Qwen2-0.5B/tokenizer.json");   // + its config
//   std::vector<moe::lm::TokenId> ids = tok.encode("<|im_start|>user\nHi<|im_end|>");
//   std::string text = tok.decode(ids);
//
// The pipeline is the file's: added tokens are split out first (longest match; lstrip/rstrip
// trim their neighbours), each remaining section is normalized, pre-tokenized and run through the
// model (BPE or WordPiece), then the post-processor adds the special tokens when
// add_special_tokens is true (Hugging Face's default). Every step matches the reference
// implementation, Hugging Face's JavaScript tokenizers (transformers.js; parity-tested on a
// corpus of 10,000+ strings with real Qwen2, LLaMA-2, LLaMA-3, GPT-2 and BERT files).
//
// Text is UTF-8. Invalid UTF-8 input is replaced, each maximal invalid subsequence by one U+FFFD,
// exactly as the reference sees bytes decoded by TextDecoder (InvalidUtf8::replace, the default),
// or refused with a moe::ValueError naming the byte offset (InvalidUtf8::error).
//
// Thread safety: a Tokenizer is immutable after loading; encode/decode are const. The
// overloads taking an EncodeWorkspace reuse its memory and word cache (one workspace per
// thread); the others make a fresh one per call.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "lm/bpe.hpp"
#include "lm/pipeline.hpp"
#include "lm/unicode.hpp"
#include "lm/vocab.hpp"
#include "lm/wordpiece.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/io/json.hpp"
#include "moe/io/mapped_file.hpp"

namespace moe::lm {

/// A token the file adds on top of the model's vocabulary ("added_tokens").
struct AddedToken {
    std::string content;
    TokenId id = 0;
    bool special = false;
    bool lstrip = false, rstrip = false;
    bool single_word = false;  ///< read; the reference ignores it, and so does the splitter
    bool normalized = false;   ///< read; the reference ignores it, and so does the splitter
};

/// What to do with bytes that are not UTF-8.
enum class InvalidUtf8 : std::uint8_t {
    replace,  ///< each maximal invalid subsequence -> U+FFFD (TextDecoder; what the reference sees)
    error,    ///< moe::ValueError naming the byte offset
};

struct EncodeOptions {
    /// Hugging Face's add_special_tokens: the post-processor's BOS/EOS/[CLS]/[SEP]. Special
    /// tokens written in the text are recognised either way.
    bool add_special_tokens = true;
    InvalidUtf8 invalid_utf8 = InvalidUtf8::replace;
};

struct DecodeOptions {
    /// Leave out the special tokens (added tokens marked special, additional_special_tokens).
    bool skip_special_tokens = false;
    /// clean_up_tokenization_spaces; nullopt = tokenizer_config.json's (default true).
    std::optional<bool> clean_up_tokenization_spaces;
};

/// A special token named by tokenizer_config.json (bos_token, ...): its string and id.
struct SpecialToken {
    std::string token;
    std::optional<TokenId> id;
};

/// Per-thread memory for encoding: pipeline scratch and the BPE word cache.
struct EncodeWorkspace {
    PipelineScratch pipeline;
    BpeScratch bpe;
    WordPieceScratch wordpiece;
    Pieces pieces, tmp;
    std::vector<TokenId> seq;
};

class Tokenizer {
public:
    /// Loads tokenizer.json and, when `config` is not given, the tokenizer_config.json beside it
    /// if there is one. Errors name the file.
    static Tokenizer from_file(const std::filesystem::path& tokenizer_json,
                               std::optional<std::filesystem::path> config = std::nullopt) {
        if (!config) {
            auto sibling = tokenizer_json.parent_path() / "tokenizer_config.json";
            if (std::filesystem::exists(sibling)) config = sibling;
        }
        const io::MappedFile text = io::MappedFile::open(tokenizer_json);
        std::optional<io::MappedFile> cfg;
        if (config) cfg = io::MappedFile::open(*config);
        return from_json(text.text(), cfg ? std::optional<std::string_view>(cfg->text()) : std::nullopt,
                         tokenizer_json.string(), config ? config->string() : std::string());
    }

    /// Loads from the texts of tokenizer.json and (optionally) tokenizer_config.json.
    static Tokenizer from_json(std::string_view tokenizer_json, std::optional<std::string_view> config_json = std::nullopt,
                               std::string where = "tokenizer.json", std::string config_where = "tokenizer_config.json") {
        Tokenizer t;
        t.load(tokenizer_json, where);
        if (config_json) t.load_config(*config_json, config_where);
        else t.finish_config();
        return t;
    }

    // ---- encode ------------------------------------------------------------------------------
    std::vector<TokenId> encode(std::string_view text, const EncodeOptions& opt = {}) const {
        EncodeWorkspace ws;
        return encode(text, opt, ws);
    }
    std::vector<TokenId> encode(std::string_view text, const EncodeOptions& opt, EncodeWorkspace& ws) const {
        std::vector<TokenId> out;
        encode_into(text, opt, ws, out);
        return out;
    }
    /// Appends the ids of `text` to `out`.
    void encode_into(std::string_view text, const EncodeOptions& opt, EncodeWorkspace& ws, std::vector<TokenId>& out) const {
        std::string repaired;
        if (!unicode::valid_utf8(text)) {
            if (opt.invalid_utf8 == InvalidUtf8::error) {
                std::size_t i = 0;
                while (i < text.size()) {
                    const auto d = unicode::decode_utf8(text, i);
                    if (!d.valid) break;
                    i += d.len;
                }
                throw ValueError("tokenizer: encode", moe::detail::cat("invalid UTF-8 at byte ", i, " of the input"));
            }
            repaired = unicode::replace_invalid_utf8(text);
            text = repaired;
        }
        ws.seq.clear();
        if (legacy_false_llama_ && !text.empty()) {
            std::string t = "\xE2\x96\x81";  // U+2581
            std::string body(text);
            detail::replace_all(body, "\xE2\x96\x81", " ");
            t += body;
            encode_text(t, ws, ws.seq);
            if (ws.seq.size() > 1 && vocab_->has_id(ws.seq[0]) && vocab_->token(ws.seq[0]) == "\xE2\x96\x81" &&
                is_special(ws.seq[1]))
                ws.seq.erase(ws.seq.begin());
        } else {
            encode_text(text, ws, ws.seq);
        }
        post_.apply(ws.seq, opt.add_special_tokens, *vocab_, unk_id_.value_or(-1), out);
    }

    /// Encodes many texts; with an Exec of several threads, texts are split among them (the
    /// result does not depend on the thread count).
    std::vector<std::vector<TokenId>> encode_batch(std::span<const std::string> texts, const EncodeOptions& opt = {},
                                                   const Exec& exec = {}) const {
        std::vector<std::vector<TokenId>> out(texts.size());
        const std::size_t n = texts.size();
        const std::size_t chunks = std::min<std::size_t>(n, std::max<std::size_t>(1, static_cast<std::size_t>(exec.threads())));
        parallel_for(exec, chunks, [&](std::size_t c) {
            EncodeWorkspace ws;
            for (std::size_t i = c * n / chunks; i < (c + 1) * n / chunks; ++i) out[i] = encode(texts[i], opt, ws);
        });
        return out;
    }

    // ---- decode ------------------------------------------------------------------------------
    std::string decode(std::span<const TokenId> ids, const DecodeOptions& opt = {}) const {
        PipelineScratch s;
        std::vector<std::string> tokens;
        tokens.reserve(ids.size());
        for (TokenId id : ids) {
            std::string_view t;
            if (vocab_->has_id(id)) t = vocab_->token(id);
            else if (unk_token_) t = *unk_token_;
            else throw ConfigError("tokenizer: decode", moe::detail::cat("token id ", id, " is not in the vocabulary (size ",
                                                                   vocab_->size(), ") and there is no unk_token"));
            if (opt.skip_special_tokens && special_strings_contains(t)) continue;
            tokens.emplace_back(t);
        }
        std::string text = decoder_.apply(std::move(tokens), [&](const std::string& tok) {
            return added_contents_contains(tok);
        }, s);
        if (!end_of_word_suffix_.empty() && decoder_.present()) {
            detail::replace_all(text, end_of_word_suffix_, " ");
            if (opt.skip_special_tokens) text = std::string(detail::trim(text));
        }
        if (opt.clean_up_tokenization_spaces.value_or(clean_up_tokenization_spaces_))
            text = Decoder::clean_up_tokenization(std::move(text));
        return text;
    }

    // ---- vocabulary --------------------------------------------------------------------------
    /// One past the largest id, added tokens included (the embedding table's row count).
    std::size_t vocab_size() const noexcept { return vocab_->size(); }
    std::optional<TokenId> token_to_id(std::string_view token) const noexcept { return vocab_->find(token); }
    /// Throws moe::ConfigError for an id outside the vocabulary.
    std::string_view id_to_token(TokenId id) const { return vocab_->token(id); }
    const std::vector<AddedToken>& added_tokens() const noexcept { return added_; }
    /// Whether `id` is a special token (an added token marked special, or one of
    /// additional_special_tokens).
    bool is_special(TokenId id) const { return vocab_->has_id(id) && special_strings_contains(vocab_->token(id)); }
    /// The model family: "BPE" or "WordPiece".
    std::string_view model_type() const noexcept { return std::holds_alternative<Bpe>(model_) ? "BPE" : "WordPiece"; }

    const SpecialToken* bos() const noexcept { return bos_ ? &*bos_ : nullptr; }
    const SpecialToken* eos() const noexcept { return eos_ ? &*eos_ : nullptr; }
    const SpecialToken* pad() const noexcept { return pad_ ? &*pad_ : nullptr; }
    const SpecialToken* unk() const noexcept { return unk_ ? &*unk_ : nullptr; }
    const SpecialToken* sep() const noexcept { return sep_ ? &*sep_ : nullptr; }
    const SpecialToken* cls() const noexcept { return cls_ ? &*cls_ : nullptr; }
    const SpecialToken* mask() const noexcept { return mask_ ? &*mask_ : nullptr; }

    const Normalizer& normalizer() const noexcept { return normalizer_; }
    const PreTokenizer& pre_tokenizer() const noexcept { return pre_; }
    const PostProcessor& post_processor() const noexcept { return post_; }
    const Decoder& decoder() const noexcept { return decoder_; }

private:
    using Model = std::variant<Bpe, WordPiece>;

    Tokenizer() = default;  // only from_file / from_json make one (a model needs its vocabulary)

    // ---- loading tokenizer.json --------------------------------------------------------------
    void load(std::string_view text, const std::string& where) {
        text_size_hint_ = text.size();
        io::json::Options jo;
        jo.subject = "tokenizer.json";
        io::json::Reader r(text, where, jo);
        std::optional<io::json::Value> normalizer, pre, post, decoder;
        std::string model_type;
        LoadState st;
        bool have_model = false;
        std::vector<std::pair<std::string, io::json::Value>> opts;  // "model" members but vocab, merges
        r.begin_object();
        std::string key;
        std::vector<std::string> seen;
        while (r.next_key(key)) {
            check<FormatError>(std::find(seen.begin(), seen.end(), key) == seen.end(), where, "duplicate key \"", key, "\"");
            seen.push_back(key);
            if (key == "model") {
                have_model = true;
                read_model(r, where, st, opts);
            } else if (key == "normalizer") normalizer = r.read_value();
            else if (key == "pre_tokenizer") pre = r.read_value();
            else if (key == "post_processor") post = r.read_value();
            else if (key == "decoder") decoder = r.read_value();
            else if (key == "added_tokens") st.added = r.read_value();
            else if (key == "truncation" || key == "padding") {
                // Truncation and padding are batch-shaping options, not tokenization: the library
                // returns every id (callers pad and truncate); a set value is ignored, as
                // documented in docs/lm.md.
                r.skip_value();
            } else {
                r.skip_value();  // "version" and future fields
            }
        }
        r.finish();
        check<FormatError>(have_model, where, "missing \"model\"");

        const std::string mw = moe::detail::cat(where, ": model");
        auto opt_value = [&](std::string_view k) -> const io::json::Value* {
            for (const auto& [n, v] : opts)
                if (n == k) return v.is_null() ? nullptr : &v;
            return nullptr;
        };
        auto opt_bool = [&](std::string_view k, bool fb) {
            const auto* v = opt_value(k);
            if (!v) return fb;
            check<FormatError>(v->is_bool(), mw, "\"", k, "\" must be a boolean");
            return v->as_bool();
        };
        auto opt_string = [&](std::string_view k) -> std::optional<std::string> {
            const auto* v = opt_value(k);
            if (!v) return std::nullopt;
            check<FormatError>(v->is_string(), mw, "\"", k, "\" must be a string");
            return v->as_string();
        };
        if (const auto* t = opt_value("type")) {
            check<FormatError>(t->is_string(), mw, "\"type\" must be a string");
            model_type = t->as_string();
        } else {
            model_type = merges_seen_ ? "BPE" : "WordPiece";  // older files, as the reference infers
        }

        // Added tokens override the vocabulary's string lookups (the reference's tokens_to_ids).
        if (st.added && !st.added_applied) read_added(*st.added, where);

        if (model_type == "BPE") {
            if (const auto* d = opt_value("dropout")) {
                check<ConfigError>(d->is_number() && d->as_double() == 0.0, mw,
                                   "BPE dropout is not supported (it makes encoding random)");
            }
            const auto prefix = opt_string("continuing_subword_prefix");
            check<ConfigError>(!prefix || prefix->empty(), mw, "a non-empty continuing_subword_prefix is not supported "
                                                               "(the reference ignores it)");
            BpeOptions bo;
            bo.unk_token = opt_string("unk_token");
            bo.fuse_unk = opt_bool("fuse_unk", false);
            bo.byte_fallback = opt_bool("byte_fallback", false);
            bo.ignore_merges = opt_bool("ignore_merges", false);
            bo.end_of_word_suffix = opt_string("end_of_word_suffix").value_or("");
            end_of_word_suffix_ = bo.end_of_word_suffix;
            if (!st.bpe) {
                // The merges came before the added tokens: intern them now.
                st.bpe.emplace(*vocab_);
                st.bpe->reserve_merges(st.raw_merges.size());
                for (const auto& [a, b] : st.raw_merges) st.bpe->add_merge(a, b);
            }
            st.bpe->finish(std::move(bo));
            model_.emplace<Bpe>(std::move(*st.bpe));
        } else if (model_type == "WordPiece") {
            WordPieceOptions wo;
            if (auto u = opt_string("unk_token")) wo.unk_token = *u;
            if (auto p = opt_string("continuing_subword_prefix")) wo.continuing_subword_prefix = *p;
            if (const auto* m = opt_value("max_input_chars_per_word")) {
                check<FormatError>(m->as_u64().has_value(), mw, "max_input_chars_per_word must be an integer >= 0");
                wo.max_input_chars_per_word = static_cast<std::size_t>(*m->as_u64());
            }
            model_.emplace<WordPiece>(*vocab_, std::move(wo));
        } else {
            throw ConfigError(mw, moe::detail::cat("unsupported model type \"", model_type, "\" (supported: BPE, WordPiece)"));
        }

        const io::json::Value null_value;
        normalizer_ = Normalizer::from_json(normalizer ? *normalizer : null_value);
        pre_ = PreTokenizer::from_json(pre ? *pre : null_value);
        post_ = PostProcessor::from_json(post ? *post : null_value);
        decoder_ = Decoder::from_json(decoder ? *decoder : null_value);
        build_splitter();
    }

    /// What load() collects on its way through the file.
    struct LoadState {
        std::optional<io::json::Value> added;  // "added_tokens"
        bool added_applied = false;
        std::optional<Bpe> bpe;                // merges interned as they are read
        std::vector<std::pair<std::string, std::string>> raw_merges;  // ... or kept for later
    };

    void read_model(io::json::Reader& r, const std::string& where, LoadState& st,
                    std::vector<std::pair<std::string, io::json::Value>>& opts) {
        const std::string mw = moe::detail::cat(where, ": model");
        check<FormatError>(r.peek() == io::json::Type::object, mw, "must be an object");
        r.begin_object();
        std::string key, tok;
        bool have_vocab = false;
        vocab_->reserve(text_size_hint_ / 64, text_size_hint_ / 8);
        while (r.next_key(key)) {
            if (key == "vocab") {
                check<FormatError>(!have_vocab, mw, "duplicate \"vocab\"");
                have_vocab = true;
                check<FormatError>(r.peek() == io::json::Type::object, mw,
                                   "\"vocab\" must be an object of token -> id (Unigram's list form is not supported)");
                r.begin_object();
                while (r.next_key(tok)) {
                    check<FormatError>(r.peek() == io::json::Type::integer, mw, "id of \"", tok, "\" must be an integer");
                    const std::uint64_t id = r.read_u64();
                    check<FormatError>(id < (1u << 26), mw, "id ", id, " of \"", tok, "\" is implausibly large");
                    vocab_->add_unique(tok, static_cast<TokenId>(id), mw);
                }
            } else if (key == "merges") {
                check<FormatError>(!merges_seen_, mw, "duplicate \"merges\"");
                merges_seen_ = true;
                check<FormatError>(r.peek() == io::json::Type::array, mw, "\"merges\" must be an array");
                // With the vocabulary read and the added tokens known (they come first in files
                // the tokenizers library writes), merges are interned as they stream by.
                if (have_vocab && st.added) {
                    read_added(*st.added, where);
                    st.added_applied = true;
                }
                if (have_vocab && st.added_applied) {
                    st.bpe.emplace(*vocab_);
                    st.bpe->reserve_merges(vocab_->size());
                }
                r.begin_array();
                std::string a, b;
                while (r.next_element()) {
                    if (r.peek() == io::json::Type::string) {
                        // Older files: "a b" (split at the first space, as the reference does).
                        r.read_string(a);
                        const std::size_t sp = a.find(' ');
                        check<FormatError>(sp != std::string::npos, mw, "merge \"", a, "\" has no space");
                        b = a.substr(sp + 1);
                        const std::size_t sp2 = b.find(' ');
                        if (sp2 != std::string::npos) b.resize(sp2);  // JS split(" ", 2)
                        a.resize(sp);
                    } else {
                        check<FormatError>(r.peek() == io::json::Type::array, mw, "a merge must be \"a b\" or [a, b]");
                        r.begin_array();
                        check<FormatError>(r.next_element() && r.peek() == io::json::Type::string, mw, "merge [a, b]: a");
                        r.read_string(a);
                        check<FormatError>(r.next_element() && r.peek() == io::json::Type::string, mw, "merge [a, b]: b");
                        r.read_string(b);
                        check<FormatError>(!r.next_element(), mw, "a merge has more than two parts");
                    }
                    if (st.bpe) st.bpe->add_merge(a, b);
                    else st.raw_merges.emplace_back(a, b);
                }
            } else {
                for (const auto& [n, v] : opts) check<FormatError>(n != key, mw, "duplicate key \"", key, "\"");
                opts.emplace_back(key, r.read_value());
            }
        }
        check<FormatError>(have_vocab, mw, "missing \"vocab\"");
    }

    void read_added(const io::json::Value& list, const std::string& where) {
        const std::string w = moe::detail::cat(where, ": added_tokens");
        check<FormatError>(list.is_array(), w, "must be an array");
        for (const auto& item : list.as_array()) {
            check<FormatError>(item.is_object(), w, "each added token must be an object");
            AddedToken a;
            a.content = detail::get_string(item, "content", w);
            check<FormatError>(!a.content.empty(), w, "an added token with empty content");
            const auto& id = detail::member(item, "id", w);
            check<FormatError>(id.as_u64().has_value() && *id.as_u64() < (1u << 26), w, "id of \"", a.content,
                               "\" must be an integer in range");
            a.id = static_cast<TokenId>(*id.as_u64());
            a.special = detail::get_bool(item, "special", false, w);
            a.lstrip = detail::get_bool(item, "lstrip", false, w);
            a.rstrip = detail::get_bool(item, "rstrip", false, w);
            a.single_word = detail::get_bool(item, "single_word", false, w);
            a.normalized = detail::get_bool(item, "normalized", false, w);
            vocab_->set(a.content, a.id);
            if (a.special) special_strings_.push_back(a.content);
            added_.push_back(std::move(a));
        }
    }

    // ---- tokenizer_config.json ---------------------------------------------------------------
    void load_config(std::string_view text, const std::string& where) {
        io::json::Options jo;
        jo.subject = "tokenizer_config.json";
        jo.big_integers_as_real = true;
        const io::json::Value cfg = io::json::parse(text, where, jo);
        check<FormatError>(cfg.is_object(), where, "must be an object");
        auto token_of = [&](std::string_view key) -> std::optional<std::string> {
            const io::json::Value* v = detail::optional_member(cfg, key);
            if (!v) return std::nullopt;
            if (v->is_string()) {
                if (v->as_string().empty()) return std::nullopt;
                return v->as_string();
            }
            check<FormatError>(v->is_object(), where, "\"", key, "\" must be a string or an AddedToken object");
            return detail::get_string(*v, "content", moe::detail::cat(where, ": ", key));
        };
        auto named = [&](std::string_view key) -> std::optional<SpecialToken> {
            auto t = token_of(key);
            if (!t) return std::nullopt;
            return SpecialToken{*t, vocab_->find(*t)};
        };
        bos_ = named("bos_token");
        eos_ = named("eos_token");
        pad_ = named("pad_token");
        if (!pad_) pad_ = eos_;  // the reference's getToken("pad_token", "eos_token")
        unk_ = named("unk_token");
        sep_ = named("sep_token");
        cls_ = named("cls_token");
        mask_ = named("mask_token");
        if (const auto* extra = detail::optional_member(cfg, "additional_special_tokens")) {
            check<FormatError>(extra->is_array(), where, "\"additional_special_tokens\" must be an array");
            for (const auto& e : extra->as_array()) {
                if (e.is_string()) special_strings_.push_back(e.as_string());
                else special_strings_.push_back(detail::get_string(e, "content", where));
            }
        }
        clean_up_tokenization_spaces_ = detail::get_bool(cfg, "clean_up_tokenization_spaces", true, where);
        remove_space_ = detail::get_bool(cfg, "remove_space", false, where);
        lowercase_remove_accent_ = detail::get_bool(cfg, "do_lowercase_and_remove_accent", false, where);
        const std::string cls = detail::get_string_or(cfg, "tokenizer_class", "", where);
        if (cls == "LlamaTokenizer" && !detail::get_bool(cfg, "legacy", true, where)) {
            // The reference's LlamaTokenizer with legacy = false: no normalizer, a Metaspace
            // pre-tokenizer (prefix on the first section only), and "▁" + text.
            legacy_false_llama_ = true;
            normalizer_ = Normalizer();
            pre::Metaspace m;
            m.replacement = m.str_rep = "\xE2\x96\x81";
            m.add_prefix_space = true;
            m.prepend_scheme = "first";
            pre_.set_steps({std::move(m)});
        }
        finish_config();
    }
    void finish_config() {
        // A final ByteLevel step's mapping moves into the BPE model (same tokens, fewer copies:
        // the word cache is keyed by the raw piece).
        if (auto* b = std::get_if<Bpe>(&model_); b && pre_.defer_byte_mapping()) b->set_byte_level_input(true);
        if (const auto* b = std::get_if<Bpe>(&model_)) unk_id_ = b->unk_id();
        else unk_id_ = std::get<WordPiece>(model_).unk_id();
        // The model's unk string (decode of an unknown id).
        if (unk_) unk_token_ = unk_->token;
        else if (unk_id_ && vocab_->has_id(*unk_id_)) unk_token_ = vocab_->token(*unk_id_);
        std::sort(special_strings_.begin(), special_strings_.end());
        special_strings_.erase(std::unique(special_strings_.begin(), special_strings_.end()), special_strings_.end());
    }

    bool special_strings_contains(std::string_view s) const {
        return std::binary_search(special_strings_.begin(), special_strings_.end(), s);
    }
    bool added_contents_contains(std::string_view s) const {
        if (s.empty()) return false;
        for (auto idx : by_first_byte_[static_cast<unsigned char>(s[0])])
            if (added_[idx].content == s) return true;
        return false;
    }

    // ---- the added-token splitter ------------------------------------------------------------
    void build_splitter() {
        for (std::uint32_t i = 0; i < added_.size(); ++i)
            by_first_byte_[static_cast<unsigned char>(added_[i].content[0])].push_back(i);
        for (auto& v : by_first_byte_)
            std::stable_sort(v.begin(), v.end(), [&](auto a, auto b) { return added_[a].content.size() > added_[b].content.size(); });
    }
    /// The longest added token starting at byte i, or -1.
    int added_at(std::string_view text, std::size_t i) const {
        for (auto idx : by_first_byte_[static_cast<unsigned char>(text[i])]) {
            const auto& c = added_[idx].content;
            if (text.compare(i, c.size(), c) == 0) return static_cast<int>(idx);
        }
        return -1;
    }

    struct Section {
        std::string_view text;
        int added = -1;  // index into added_, or -1 for text
    };

    void encode_text(std::string_view text, EncodeWorkspace& ws, std::vector<TokenId>& out) const {
        // 1. Split out the added tokens (leftmost, longest), at code point boundaries.
        std::vector<Section> sections;
        std::size_t start = 0, i = 0;
        while (i < text.size()) {
            const int a = added_.empty() ? -1 : added_at(text, i);
            if (a >= 0) {
                if (i > start) sections.push_back({text.substr(start, i - start), -1});
                sections.push_back({text.substr(i, added_[static_cast<std::size_t>(a)].content.size()), a});
                i += added_[static_cast<std::size_t>(a)].content.size();
                start = i;
            } else {
                i += unicode::decode_utf8(text, i).len;
            }
        }
        if (start < text.size()) sections.push_back({text.substr(start), -1});
        // 2. lstrip / rstrip trim the neighbouring sections.
        for (std::size_t k = 0; k < sections.size(); ++k) {
            if (sections[k].added < 0) continue;
            const auto& a = added_[static_cast<std::size_t>(sections[k].added)];
            if (a.lstrip && k > 0 && sections[k - 1].added < 0) sections[k - 1].text = detail::trim_end(sections[k - 1].text);
            if (a.rstrip && k + 1 < sections.size() && sections[k + 1].added < 0)
                sections[k + 1].text = detail::trim_start(sections[k + 1].text);
        }
        // 3. Each text section through normalizer, pre-tokenizer and model.
        for (std::size_t k = 0; k < sections.size(); ++k) {
            const Section& s = sections[k];
            if (s.text.empty()) continue;
            if (s.added >= 0) {
                out.push_back(*vocab_->find(added_[static_cast<std::size_t>(s.added)].content));
                continue;
            }
            std::string norm(s.text);
            if (remove_space_) norm = collapse_spaces(norm);
            if (lowercase_remove_accent_) {
                norm = unicode::to_lower(norm);
                std::string kept;
                for (std::size_t b = 0; b < norm.size();) {
                    const auto d = unicode::decode_utf8(norm, b);
                    if (!(unicode::flags(d.cp) & unicode::Flag::mark)) kept.append(norm, b, d.len);
                    b += d.len;
                }
                norm = std::move(kept);
            }
            if (!normalizer_.empty()) norm = normalizer_.apply(std::move(norm), ws.pipeline);
            if (norm.empty()) continue;
            const std::size_t first = out.size();
            if (pre_.empty()) {
                encode_piece(norm, ws, out);
            } else {
                pre_.apply(norm, k, ws.pieces, ws.tmp, ws.pipeline);
                for (std::size_t p = 0; p < ws.pieces.size(); ++p) encode_piece(ws.pieces[p], ws, out);
            }
            if (const auto* b = std::get_if<Bpe>(&model_)) b->fuse_unknowns(out, first);
        }
    }
    void encode_piece(std::string_view piece, EncodeWorkspace& ws, std::vector<TokenId>& out) const {
        if (const auto* b = std::get_if<Bpe>(&model_)) b->encode(piece, out, ws.bpe);
        else std::get<WordPiece>(model_).encode(piece, out, ws.wordpiece);
    }
    // remove_space: trim, then runs of whitespace -> one space (x.trim().split(/\s+/).join(" ")).
    static std::string collapse_spaces(std::string_view t) {
        t = detail::trim(t);
        std::string out;
        bool in_space = false;
        for (std::size_t i = 0; i < t.size();) {
            const auto d = unicode::decode_utf8(t, i);
            if (detail::js_space(d.cp)) {
                in_space = true;
            } else {
                if (in_space) out += ' ';
                in_space = false;
                out.append(t.substr(i, d.len));
            }
            i += d.len;
        }
        return out;
    }

    std::shared_ptr<Vocab> vocab_ = std::make_shared<Vocab>();  // stable address: the models point to it
    Model model_;
    bool merges_seen_ = false;
    std::size_t text_size_hint_ = 0;
    std::vector<AddedToken> added_;
    std::array<std::vector<std::uint32_t>, 256> by_first_byte_;
    std::vector<std::string> special_strings_;  // sorted after loading
    Normalizer normalizer_;
    PreTokenizer pre_;
    PostProcessor post_;
    Decoder decoder_;
    std::string end_of_word_suffix_;
    std::optional<SpecialToken> bos_, eos_, pad_, unk_, sep_, cls_, mask_;
    std::optional<TokenId> unk_id_;
    std::optional<std::string> unk_token_;
    bool clean_up_tokenization_spaces_ = true;
    bool remove_space_ = false;
    bool lowercase_remove_accent_ = false;
    bool legacy_false_llama_ = false;
};

/// Streaming decode: feed ids one at a time, get the text they complete. A token that ends in the
/// middle of a UTF-8 character (or whose text the next token may still change) prints nothing
/// until the character is complete.
class DecodeStream {
public:
    explicit DecodeStream(const Tokenizer& tok, DecodeOptions opt = {}) : tok_(&tok), opt_(opt) {}

    /// The new text that `id` completes (possibly empty).
    std::string step(TokenId id) {
        ids_.push_back(id);
        const std::string prefix = tok_->decode(std::span(ids_).subspan(prefix_, read_ - prefix_), opt_);
        const std::string full = tok_->decode(std::span(ids_).subspan(prefix_), opt_);
        if (full.size() > prefix.size() && !ends_with_replacement(full) && full.compare(0, prefix.size(), prefix) == 0) {
            std::string out = full.substr(prefix.size());
            prefix_ = read_;
            read_ = ids_.size();
            return out;
        }
        return {};
    }
    /// Whatever is still held back (an incomplete character at the end of the stream).
    std::string flush() {
        const std::string prefix = tok_->decode(std::span(ids_).subspan(prefix_, read_ - prefix_), opt_);
        const std::string full = tok_->decode(std::span(ids_).subspan(prefix_), opt_);
        prefix_ = read_ = ids_.size();
        return full.size() > prefix.size() && full.compare(0, prefix.size(), prefix) == 0 ? full.substr(prefix.size()) : std::string();
    }

private:
    static bool ends_with_replacement(std::string_view s) {
        return s.size() >= 3 && s.compare(s.size() - 3, 3, "\xEF\xBF\xBD") == 0;
    }
    const Tokenizer* tok_;
    DecodeOptions opt_;
    std::vector<TokenId> ids_;
    std::size_t prefix_ = 0, read_ = 0;
};

}  // namespace moe::lm
