// libFuzzer target for loading Hugging Face tokenizer.json (+ tokenizer_config.json) files
// (include/lm/tokenizer.hpp and, through it, the JSON reader, the pipeline steps' loaders, the
// regex compiler, BPE and WordPiece).
//
// The input is a tokenizer.json text, optionally followed by a NUL byte and a
// tokenizer_config.json text (NUL cannot occur in valid JSON). Tokenizer::from_json must either
// throw moe::Error or load. When it loads, a few fixed strings (ASCII, CJK, emoji, combining
// marks, invalid UTF-8, and the content of the first added tokens) are encoded with and without
// add_special_tokens (encoding may throw moe::Error, e.g. a character no token covers and no
// unk_token); the ids are decoded (with and without skip_special_tokens) and stepped through a
// DecodeStream. Oracles: encode without add_special_tokens yields ids < vocab_size(); with
// InvalidUtf8::error an invalid input throws moe::ValueError and a valid one gives replace's ids;
// decode, every DecodeStream step and flush return valid UTF-8; ids outside the vocabulary are
// refused with moe::Error (or decode as the unk token). Only moe::Error is caught; anything else
// (another exception, a sanitizer report, a failed oracle, a timeout) is a finding.
//
// Build and run (clang; from the repository root):
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
//       -Iinclude tests/fuzz/fuzz_tokenizer_json.cpp -o /tmp/fuzz_tokenizer_json
//   mkdir -p /tmp/fuzz_tj_corpus   # new inputs go here; the checked-in seeds are read only
//   /tmp/fuzz_tokenizer_json -max_total_time=60 -timeout=2 -max_len=8192 /tmp/fuzz_tj_corpus tests/fuzz/corpus/tokenizer_json
// Seeds: tests/fuzz/corpus/tokenizer_json/, written by tests/fuzz/make_tokenizer_seeds.py (tiny
// byte-level, SentencePiece-style and WordPiece files, with and without a config, and near-valid
// ones); regression-* are inputs that once misbehaved.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lm/tokenizer.hpp"

namespace {

[[noreturn]] void finding(const char* what) {
    std::fprintf(stderr, "fuzz_tokenizer_json: oracle failed: %s\n", what);
    std::abort();
}

using moe::lm::TokenId;
using moe::lm::unicode::valid_utf8;

void check_decode(const moe::lm::Tokenizer& tok, const std::vector<TokenId>& ids) {
    for (const bool skip : {false, true}) {
        moe::lm::DecodeOptions dopt;
        dopt.skip_special_tokens = skip;
        try {
            if (!valid_utf8(tok.decode(ids, dopt))) finding("decode returned invalid UTF-8");
        } catch (const moe::Error&) {
        }
    }
    try {
        moe::lm::DecodeStream stream(tok);
        for (TokenId id : ids)
            if (!valid_utf8(stream.step(id))) finding("DecodeStream::step returned invalid UTF-8");
        if (!valid_utf8(stream.flush())) finding("DecodeStream::flush returned invalid UTF-8");
    } catch (const moe::Error&) {
    }
}

void exercise(const moe::lm::Tokenizer& tok, std::string_view text, moe::lm::EncodeWorkspace& ws) {
    const auto n = tok.vocab_size();
    std::vector<TokenId> plain;
    bool encoded = false;
    try {
        plain = tok.encode(text, {false, moe::lm::InvalidUtf8::replace}, ws);
        encoded = true;
    } catch (const moe::Error&) {
    }
    if (encoded) {
        for (TokenId id : plain)
            if (id < 0 || static_cast<std::size_t>(id) >= n) finding("encode gave an id outside [0, vocab_size())");
        check_decode(tok, plain);
    }
    // InvalidUtf8::error: refuses invalid input with ValueError, agrees with replace otherwise.
    try {
        const auto strict = tok.encode(text, {false, moe::lm::InvalidUtf8::error}, ws);
        if (!valid_utf8(text)) finding("InvalidUtf8::error accepted invalid UTF-8");
        if (encoded && strict != plain) finding("InvalidUtf8::error and ::replace differ on valid UTF-8");
    } catch (const moe::ValueError&) {
        if (valid_utf8(text) && encoded) finding("InvalidUtf8::error refused what ::replace encoded");
    } catch (const moe::Error&) {
        if (!valid_utf8(text)) finding("InvalidUtf8::error: invalid UTF-8 not refused with ValueError");
    }
    try {
        const auto with = tok.encode(text, {}, ws);  // add_special_tokens = true
        check_decode(tok, with);
    } catch (const moe::Error&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    const std::size_t nul = in.find('\0');
    std::optional<std::string_view> config;
    if (nul != std::string_view::npos) config = in.substr(nul + 1);

    std::optional<moe::lm::Tokenizer> tok;
    try {
        tok.emplace(moe::lm::Tokenizer::from_json(in.substr(0, nul), config));
    } catch (const moe::Error&) {
        return 0;  // rejected: fine
    }

    static const std::string_view fixed[] = {
        "Hello, world! It's  the\tend.\n",
        "\xE4\xB8\xAD\xE6\x96\x87\xE5\x88\x86\xE8\xAF\x8D \xE3\x83\x86\xE3\x82\xB9\xE3\x83\x88",  // 中文分词 テスト
        "hi \xF0\x9F\x98\x80\xF0\x9F\x87\xAB\xF0\x9F\x87\xB7!",                                        // emoji, flag
        "cafe\xCC\x81 A\xCC\x8A",                                                                      // combining marks
        "ab\xFF\xC3(\xE4\xB8 \xF0\x9F\x98 \xED\xA0\x80z\x80",                                          // invalid UTF-8
        "",
    };
    // One workspace for the input's encodes (its word cache then serves repeated pieces):
    // encode() without one allocates and zero-fills a fresh 6 MiB word cache per call.
    moe::lm::EncodeWorkspace ws;
    for (const auto text : fixed) exercise(*tok, text, ws);
    const auto& added = tok->added_tokens();
    for (std::size_t i = 0; i < added.size() && i < 3; ++i) {
        exercise(*tok, added[i].content, ws);
        exercise(*tok, "x " + added[i].content + " y", ws);
    }

    // Ids outside the vocabulary: refused with moe::Error, or the unk token's text.
    const std::vector<TokenId> bad[] = {{static_cast<TokenId>(tok->vocab_size())}, {-1}, {0, 1, 2, 3}};
    for (const auto& ids : bad) check_decode(*tok, ids);
    return 0;
}
