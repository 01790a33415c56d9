// libFuzzer target for encoding and decoding arbitrary text (include/lm/tokenizer.hpp: the
// added-token splitter, NFC, the Qwen2 split regex, byte-level BPE, BertNormalizer,
// BertPreTokenizer, WordPiece, the decoders and DecodeStream).
//
// Two fixed tokenizers are built once from JSON written here: a byte-level BPE laid out as
// Qwen2's (NFC normalizer, Split with Qwen2's regex + ByteLevel(use_regex=false), ByteLevel
// post-processor and decoder; the 256 byte symbols plus a few merges; added tokens <|endoftext|>,
// <|im_start|>, <|im_end|> (special) and <tool_call> (not special); a tokenizer_config.json with
// clean_up_tokenization_spaces=false, as Qwen2's), and a BERT-style WordPiece (BertNormalizer
// with lowercasing, BertPreTokenizer, [CLS] A [SEP], WordPiece decoder, [UNK]). The input is
// arbitrary bytes, encoded with both. Oracles:
//   * with InvalidUtf8::replace, encode never throws; every id is < vocab_size(); with
//     InvalidUtf8::error an invalid input throws moe::ValueError and a valid one gives the same ids;
//   * byte-level: decode(encode(s)) is exactly expected(s): s with invalid UTF-8 replaced
//     (U+FFFD per maximal invalid subsequence), split at the added tokens (leftmost, longest),
//     every text section in NFC and every added token as its content (byte-level BPE loses
//     nothing and its ByteLevel decoder passes added tokens through). With skip_special_tokens
//     the special tokens' contents are left out and nothing else changes. add_special_tokens
//     adds nothing (a ByteLevel post-processor). DecodeStream's steps and flush, concatenated,
//     equal decode() of all the ids (with and without skip_special_tokens);
//   * WordPiece: decode and every DecodeStream step return valid UTF-8, and add_special_tokens
//     puts [CLS] first and [SEP] last.
// Anything else (an exception, a sanitizer report, a failed oracle, a timeout) is a finding.
//
// Build and run (clang; from the repository root):
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
//       -Iinclude tests/fuzz/fuzz_tokenizer_encode.cpp -o /tmp/fuzz_tokenizer_encode
//   mkdir -p /tmp/fuzz_te_corpus   # new inputs go here; the checked-in seeds are read only
//   /tmp/fuzz_tokenizer_encode -max_total_time=60 -timeout=2 -max_len=1024 /tmp/fuzz_te_corpus tests/fuzz/corpus/tokenizer_encode
// Seeds: tests/fuzz/corpus/tokenizer_encode/, written by tests/fuzz/make_tokenizer_seeds.py (text
// in several scripts, chat markup, combining marks, invalid UTF-8); regression-* are inputs that
// once misbehaved.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "lm/tokenizer.hpp"

namespace {

[[noreturn]] void finding(const char* what) {
    std::fprintf(stderr, "fuzz_tokenizer_encode: oracle failed: %s\n", what);
    std::abort();
}

using moe::lm::TokenId;
namespace unicode = moe::lm::unicode;

struct Added {
    std::string_view content;
    bool special;
};
constexpr Added kAdded[] = {
    {"<|endoftext|>", true}, {"<|im_start|>", true}, {"<|im_end|>", true}, {"<tool_call>", false}};

std::string quoted(std::string_view s) {
    std::string q;
    moe::io::json::append_string(q, s);
    return q;
}

// Qwen2's layout with the 256 byte symbols and merges that build a few words left to right.
std::string byte_level_json() {
    const auto& table = moe::lm::PreTokenizer::byte_table();
    std::map<std::string, int> vocab;
    std::vector<std::string> order;
    auto add = [&](const std::string& t) {
        if (vocab.emplace(t, static_cast<int>(order.size())).second) order.push_back(t);
    };
    auto sym = [&](unsigned char b) {
        std::string s;
        unicode::append_utf8(s, table.to_char[b]);
        return s;
    };
    for (unsigned b = 0; b < 256; ++b) add(sym(static_cast<unsigned char>(b)));
    std::string merges;
    for (std::string_view w : {" the", "in", " a", "er", "on", "\xE4\xB8\xAD\xE6\x96\x87", "Hello", "  ", "\n\n", "'s"}) {
        std::string cur = sym(static_cast<unsigned char>(w[0]));
        for (std::size_t i = 1; i < w.size(); ++i) {
            const std::string next = sym(static_cast<unsigned char>(w[i]));
            if (!vocab.count(cur + next)) {
                merges += moe::detail::cat(merges.empty() ? "" : ",", "[", quoted(cur), ",", quoted(next), "]");
                add(cur + next);
            }
            cur += next;
        }
    }
    std::string v;
    for (std::size_t i = 0; i < order.size(); ++i) v += moe::detail::cat(i ? "," : "", quoted(order[i]), ":", i);
    std::string added;
    for (std::size_t i = 0; i < std::size(kAdded); ++i)
        added += moe::detail::cat(i ? "," : "", R"({"id":)", order.size() + i, R"(,"content":)", quoted(kAdded[i].content),
                                  R"(,"single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":)",
                                  kAdded[i].special ? "true" : "false", "}");
    const std::string split =
        R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    return moe::detail::cat(
        R"({"version":"1.0","truncation":null,"padding":null,"added_tokens":[)", added, R"(],
"normalizer":{"type":"NFC"},
"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":)", quoted(split),
        R"(},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}]},
"post_processor":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false},
"decoder":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false},
"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":"","end_of_word_suffix":"","fuse_unk":false,
"byte_fallback":false,"ignore_merges":false,"vocab":{)", v, R"(},"merges":[)", merges, "]}}");
}

constexpr std::string_view kByteLevelConfig =
    R"({"bos_token":null,"eos_token":"<|im_end|>","pad_token":"<|endoftext|>","unk_token":null,
"additional_special_tokens":["<|im_start|>","<|im_end|>"],"clean_up_tokenization_spaces":false,
"tokenizer_class":"Qwen2Tokenizer"})";

constexpr std::string_view kWordPieceJson = R"({"version":"1.0","added_tokens":[
{"id":0,"content":"[PAD]","special":true},{"id":1,"content":"[UNK]","special":true},
{"id":2,"content":"[CLS]","special":true},{"id":3,"content":"[SEP]","special":true},
{"id":4,"content":"[MASK]","special":true}],
"normalizer":{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":null,"lowercase":true},
"pre_tokenizer":{"type":"BertPreTokenizer"},
"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"[CLS]","type_id":0}},
{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"[SEP]","type_id":0}}],"pair":[],"special_tokens":{}},
"decoder":{"type":"WordPiece","prefix":"##","cleanup":true},
"model":{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":20,
"vocab":{"[PAD]":0,"[UNK]":1,"[CLS]":2,"[SEP]":3,"[MASK]":4,"!":5,",":6,".":7,"'":8,"a":9,"b":10,"the":11,"un":12,
"##aff":13,"##able":14,"aff":15,"hello":16,"##lo":17,"hel":18,"world":19,"中":20,"文":21,"cafe":22,"##s":23,"##e":24,
"1":25,"##2":26,"é":27,"##a":28,"##b":29}}})";

const moe::lm::Tokenizer& byte_level() {
    static const moe::lm::Tokenizer t = moe::lm::Tokenizer::from_json(byte_level_json(), kByteLevelConfig);
    return t;
}
const moe::lm::Tokenizer& wordpiece() {
    static const moe::lm::Tokenizer t = moe::lm::Tokenizer::from_json(kWordPieceJson);
    return t;
}

// What decode(encode(s)) must give for the byte-level tokenizer (see the header comment).
std::string expected_roundtrip(std::string_view input, bool skip_special) {
    const std::string s = unicode::replace_invalid_utf8(input);
    std::string out, pending;
    std::size_t i = 0;
    while (i < s.size()) {
        const Added* best = nullptr;
        for (const auto& a : kAdded)
            if (s.compare(i, a.content.size(), a.content) == 0 && (!best || a.content.size() > best->content.size())) best = &a;
        if (best) {
            out += unicode::nfc(pending);
            pending.clear();
            if (!(skip_special && best->special)) out += best->content;
            i += best->content.size();
        } else {
            pending += s[i++];  // added tokens start with '<': never inside a UTF-8 sequence
        }
    }
    return out + unicode::nfc(pending);
}

std::vector<TokenId> encode_checked(const moe::lm::Tokenizer& tok, std::string_view s, bool add_special,
                                    moe::lm::EncodeWorkspace& ws) {
    std::vector<TokenId> ids;
    try {
        ids = tok.encode(s, {add_special, moe::lm::InvalidUtf8::replace}, ws);
    } catch (const moe::Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        finding("encode with InvalidUtf8::replace threw");
    }
    for (TokenId id : ids)
        if (id < 0 || static_cast<std::size_t>(id) >= tok.vocab_size()) finding("an id outside [0, vocab_size())");
    try {
        const auto strict = tok.encode(s, {add_special, moe::lm::InvalidUtf8::error}, ws);
        if (!unicode::valid_utf8(s)) finding("InvalidUtf8::error accepted invalid UTF-8");
        if (strict != ids) finding("InvalidUtf8::error and ::replace differ on valid UTF-8");
    } catch (const moe::ValueError&) {
        if (unicode::valid_utf8(s)) finding("InvalidUtf8::error refused valid UTF-8");
    }
    return ids;
}

std::string stream_decode(const moe::lm::Tokenizer& tok, const std::vector<TokenId>& ids, moe::lm::DecodeOptions opt) {
    moe::lm::DecodeStream stream(tok, opt);
    std::string all;
    for (TokenId id : ids) {
        const std::string piece = stream.step(id);
        if (!unicode::valid_utf8(piece)) finding("DecodeStream::step returned invalid UTF-8");
        all += piece;
    }
    const std::string rest = stream.flush();
    if (!unicode::valid_utf8(rest)) finding("DecodeStream::flush returned invalid UTF-8");
    return all + rest;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view s(reinterpret_cast<const char*>(data), size);
    static moe::lm::EncodeWorkspace ws_bl, ws_wp;  // one per tokenizer: the word caches persist

    // ---- byte-level BPE --------------------------------------------------------------------
    {
        const auto& tok = byte_level();
        const auto ids = encode_checked(tok, s, false, ws_bl);
        if (encode_checked(tok, s, true, ws_bl) != ids) finding("add_special_tokens changed byte-level ids");
        for (const bool skip : {false, true}) {
            moe::lm::DecodeOptions opt;
            opt.skip_special_tokens = skip;
            const std::string text = tok.decode(ids, opt);
            if (text != expected_roundtrip(s, skip)) finding("decode(encode(s)) != expected(s)");
            if (stream_decode(tok, ids, opt) != text) finding("DecodeStream pieces != decode()");
        }
    }

    // ---- WordPiece ---------------------------------------------------------------------------
    {
        const auto& tok = wordpiece();
        const auto ids = encode_checked(tok, s, false, ws_wp);
        const auto with = encode_checked(tok, s, true, ws_wp);
        if (with.size() != ids.size() + 2 || with.front() != 2 || with.back() != 3 ||
            !std::equal(ids.begin(), ids.end(), with.begin() + 1))
            finding("add_special_tokens is not [CLS] ids [SEP]");
        for (const bool skip : {false, true}) {
            moe::lm::DecodeOptions opt;
            opt.skip_special_tokens = skip;
            if (!unicode::valid_utf8(tok.decode(with, opt))) finding("WordPiece decode returned invalid UTF-8");
            (void)stream_decode(tok, with, opt);
        }
    }
    return 0;
}
