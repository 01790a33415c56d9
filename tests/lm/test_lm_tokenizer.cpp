// lm/tokenizer.hpp on small hand-written tokenizer.json files: each expectation is derived by
// hand from the format's rules (merge order, tie-breaking, byte fallback, unknown fusing, added
// tokens, WordPiece's greedy longest match, streaming decode), plus the errors bad files get.
// Parity with the reference on real files is tests/lm/test_tokenizer_parity.cpp.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "lm/tokenizer.hpp"

namespace moe_test_test_lm_tokenizer {

using moe::lm::DecodeStream;
using moe::lm::TokenId;
using moe::lm::Tokenizer;
using Ids = std::vector<TokenId>;

std::string bpe_json(const std::string& vocab, const std::string& merges, const std::string& extra_model = "",
                     const std::string& pipeline = R"("normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null)",
                     const std::string& added = "[]") {
    return moe::detail::cat(R"({"version": "1.0", "added_tokens": )", added, ", ", pipeline, R"(, "model": {"type": "BPE", )",
                            extra_model, R"("vocab": {)", vocab, R"(}, "merges": [)", merges, "]}}");
}

TEST_CASE("BPE: merges apply by rank, leftmost first among equal ranks", "[lm][tokenizer]") {
    // "abc": (b,c) has rank 0 and (a,b) rank 1, so b+c merges first and a stays alone.
    const auto t = Tokenizer::from_json(bpe_json(R"("a":0,"b":1,"c":2,"ab":3,"bc":4,"aa":5)", R"(["b","c"],["a","b"],["a","a"])"));
    CHECK(t.encode("abc") == Ids{0, 4});
    CHECK(t.encode("ab") == Ids{3});
    // "aaa": the two (a,a) pairs tie; the leftmost merges, leaving "aa","a".
    CHECK(t.encode("aaa") == Ids{5, 0});
    // Old "a b" merge strings mean the same.
    const auto old = Tokenizer::from_json(bpe_json(R"("a":0,"b":1,"c":2,"ab":3,"bc":4,"aa":5)", R"("b c","a b","a a")"));
    CHECK(old.encode("abcaaa") == Ids{0, 4, 5, 0});
    CHECK(t.vocab_size() == 6);
    CHECK(t.token_to_id("bc") == 4);
    CHECK(t.id_to_token(3) == "ab");
    CHECK(t.model_type() == "BPE");
}

TEST_CASE("BPE: byte fallback, the unknown token and fuse_unk", "[lm][tokenizer]") {
    // 'é' (C3 A9) is no token but both bytes are; '€' (E2 82 AC) lacks byte E2, so it is <unk>.
    const std::string vocab = R"("<unk>":0,"a":1,"<0xC3>":2,"<0xA9>":3,"<0x82>":4,"<0xAC>":5)";
    const auto t = Tokenizer::from_json(bpe_json(vocab, "", R"("unk_token":"<unk>","byte_fallback":true,"fuse_unk":true,)"));
    CHECK(t.encode("aé") == Ids{1, 2, 3});
    CHECK(t.encode("a€€a") == Ids{1, 0, 1});  // two unknowns in a row fuse into one
    const auto nofuse = Tokenizer::from_json(bpe_json(vocab, "", R"("unk_token":"<unk>","byte_fallback":true,)"));
    CHECK(nofuse.encode("a€€a") == Ids{1, 0, 0, 1});
    // Without an unknown token a character nothing covers is an error, not a silent drop.
    const auto strict = Tokenizer::from_json(bpe_json(R"("a":0)", ""));
    CHECK_THROWS_AS(strict.encode("ab"), moe::ConfigError);
}

TEST_CASE("added tokens are split out first, longest match, with lstrip/rstrip", "[lm][tokenizer]") {
    const std::string vocab = R"("a":0," ":1,"b":2)";
    const std::string added =
        R"([{"id":3,"content":"<x>","special":true,"lstrip":true,"rstrip":false,"single_word":false,"normalized":false},
            {"id":4,"content":"<x>>","special":false,"lstrip":false,"rstrip":true,"single_word":false,"normalized":false}])";
    const auto t = Tokenizer::from_json(bpe_json(vocab, "", "", R"("normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null)", added));
    CHECK(t.encode("a <x>b") == Ids{0, 3, 2});       // lstrip ate the space before <x>
    CHECK(t.encode("a <x>> b") == Ids{0, 1, 4, 2});  // the longer token wins; rstrip eats the space after
    CHECK(t.is_special(3));
    CHECK_FALSE(t.is_special(4));
    // skip_special_tokens; without a decoder the reference joins tokens with spaces.
    CHECK(t.decode(Ids{0, 3, 2}, {true, false}) == "a b");
    CHECK(t.decode(Ids{0, 3, 2}) == "a <x> b");
}

TEST_CASE("byte-level BPE: bytes map to printable code points and back", "[lm][tokenizer]") {
    // A vocabulary of the 256 byte symbols only (GPT-2's table): every byte is one token.
    const auto& table = moe::lm::PreTokenizer::byte_table();
    std::string vocab;
    for (unsigned b = 0; b < 256; ++b) {
        std::string sym;
        moe::lm::unicode::append_utf8(sym, table.to_char[b]);
        std::string quoted;
        moe::io::json::append_string(quoted, sym);
        vocab += moe::detail::cat(b ? "," : "", quoted, ":", b);
    }
    const auto t = Tokenizer::from_json(bpe_json(
        vocab, "", "",
        R"("normalizer": null, "pre_tokenizer": {"type":"ByteLevel","add_prefix_space":false,"use_regex":true},
           "post_processor": null, "decoder": {"type":"ByteLevel"})"));
    // Token id = byte value, whatever the character.
    CHECK(t.encode("A é") == Ids{0x41, 0x20, 0xC3, 0xA9});
    CHECK(t.id_to_token(0x20) == "\xC4\xA0");  // ' ' is U+0120 'Ġ'
    CHECK(t.decode(Ids{0x41, 0x20, 0xC3, 0xA9}) == "A é");
    // A lone continuation byte decodes to U+FFFD (TextDecoder), never to invalid UTF-8.
    CHECK(t.decode(Ids{0xA9}) == "\xEF\xBF\xBD");
    // Streaming: the first byte of 'é' prints nothing until the second arrives.
    DecodeStream s(t);
    CHECK(s.step(0x41) == "A");
    CHECK(s.step(0xC3).empty());
    CHECK(s.step(0xA9) == "é");
    CHECK(s.flush().empty());
    // Invalid UTF-8 input: replaced as TextDecoder does (one U+FFFD = EF BF BD), or an error.
    CHECK(t.encode("a\xFFz") == Ids{0x61, 0xEF, 0xBF, 0xBD, 0x7A});
    try {
        (void)t.encode("ab\xC3", {true, moe::lm::InvalidUtf8::error});
        FAIL("no error");
    } catch (const moe::ValueError& e) {
        CHECK_THAT(e.what(), Catch::Contains("byte 2"));
    }
}

TEST_CASE("WordPiece: greedy longest match with ## continuations, [UNK] per word", "[lm][tokenizer]") {
    const std::string json = R"({"added_tokens": [
        {"id":0,"content":"[UNK]","special":true},{"id":1,"content":"[CLS]","special":true},{"id":2,"content":"[SEP]","special":true}],
      "normalizer": {"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":null,"lowercase":true},
      "pre_tokenizer": {"type":"BertPreTokenizer"},
      "post_processor": {"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"[CLS]","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"[SEP]","type_id":0}}],
                         "pair":[], "special_tokens":{}},
      "decoder": {"type":"WordPiece","prefix":"##","cleanup":true},
      "model": {"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":10,
                "vocab": {"[UNK]":0,"[CLS]":1,"[SEP]":2,"un":3,"##aff":4,"##able":5,"aff":6,"!":7,"cafe":8,"中":9}}})";
    const auto t = Tokenizer::from_json(json);
    // Lowercased, then "un" + "##aff" + "##able"; '!' splits off as punctuation.
    CHECK(t.encode("UNaffable!") == Ids{1, 3, 4, 5, 7, 2});
    CHECK(t.encode("unaffable!", {false}) == Ids{3, 4, 5, 7});
    // A word with a remainder no entry matches is one [UNK]; so is a word over 10 characters.
    CHECK(t.encode("unx", {false}) == Ids{0});
    CHECK(t.encode("unaffableaff", {false}) == Ids{0});
    // Accents stripped (NFD, then marks dropped) and CJK ideographs split off.
    CHECK(t.encode("Café中", {false}) == Ids{8, 9});
    CHECK(t.decode(Ids{3, 4, 5, 7}) == "unaffable!");
    CHECK(t.model_type() == "WordPiece");
}

TEST_CASE("encode_batch equals one encode per text, on 1 and 2 threads", "[lm][tokenizer]") {
    const auto t = Tokenizer::from_json(bpe_json(R"("a":0,"b":1,"c":2,"ab":3,"bc":4,"aa":5,"<unk>":6)", R"(["b","c"],["a","b"],["a","a"])",
                                                 R"("unk_token":"<unk>",)"));
    std::vector<std::string> texts;
    for (int i = 0; i < 37; ++i) texts.push_back(std::string(static_cast<std::size_t>(i % 7), 'a') + "bc" + (i % 3 ? "x" : "ab"));
    std::vector<Ids> one;
    for (const auto& s : texts) one.push_back(t.encode(s));
    CHECK(t.encode_batch(texts, {}, moe::Exec(1)) == one);
    CHECK(t.encode_batch(texts, {}, moe::Exec(2)) == one);
    CHECK(t.encode_batch(std::vector<std::string>{}).empty());
}

std::string error_of(const std::string& json) {
    try {
        (void)Tokenizer::from_json(json);
    } catch (const moe::Error& e) {
        return e.what();
    }
    return "no error";
}

TEST_CASE("bad tokenizer.json files are clear errors naming what is wrong", "[lm][tokenizer]") {
    CHECK_THAT(error_of(R"({"added_tokens": []})"), Catch::Contains("missing \"model\""));
    CHECK_THAT(error_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []})"), !Catch::Contains("error"));
    CHECK_THAT(error_of(R"({"model": {"type": "Unigram", "vocab": {"a": 0}}})"), Catch::Contains("unsupported model type \"Unigram\""));
    CHECK_THAT(error_of(bpe_json(R"("a":0)", "", "", R"("normalizer": {"type":"Precompiled"}, "pre_tokenizer": null, "post_processor": null, "decoder": null)")),
               Catch::Contains("unsupported normalizer type \"Precompiled\""));
    CHECK_THAT(error_of(bpe_json(R"("a":0)", "", "", R"("normalizer": null, "pre_tokenizer": {"type":"UnicodeScripts"}, "post_processor": null, "decoder": null)")),
               Catch::Contains("unsupported pre-tokenizer type \"UnicodeScripts\""));
    CHECK_THAT(error_of(bpe_json(R"("a":0)", "", "", R"("normalizer": null, "pre_tokenizer": {"type":"Split","pattern":{"String":" "},"behavior":"MergedWithPrevious","invert":false}, "post_processor": null, "decoder": null)")),
               Catch::Contains("MergedWithPrevious"));
    CHECK_THAT(error_of(bpe_json(R"("a":0)", "", "", R"("normalizer": null, "pre_tokenizer": {"type":"Split","pattern":{"Regex":"(?<=a)b"},"behavior":"Isolated","invert":false}, "post_processor": null, "decoder": null)")),
               Catch::Contains("lookbehind"));
    CHECK_THAT(error_of(bpe_json(R"("a":0)", "", R"("dropout":0.1,)")), Catch::Contains("dropout"));
    CHECK_THAT(error_of(bpe_json(R"("a":0)", "", R"("unk_token":"<unk>",)")), Catch::Contains("unk_token \"<unk>\" is not in the vocabulary"));
    CHECK_THAT(error_of(bpe_json(R"("a":0,"a":1)", "")), Catch::Contains("duplicate"));
    CHECK_THAT(error_of(bpe_json(R"("a":0)", R"(["a"])")), Catch::Contains("merge"));
    CHECK_THAT(error_of(bpe_json(R"("a":-1)", "")), Catch::Contains("a"));
    CHECK_THAT(error_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [)"), Catch::Contains("byte"));  // truncated
    CHECK_THAT(error_of(""), Catch::Contains("byte 0"));
    CHECK_THROWS_AS(Tokenizer::from_file("/nonexistent/tokenizer.json"), moe::NotFoundError);
}

}  // namespace moe_test_test_lm_tokenizer
