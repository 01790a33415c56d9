// lm/unicode.hpp on hand-derived cases: flags, UTF-8 decoding with TextDecoder's maximal
// subparts, the four normalization forms (composition, Hangul, canonical reordering,
// compatibility), toLowerCase (İ, final sigma) and accent stripping. The exhaustive comparison
// with Node is tests/unicode/test_unicode_reference.cpp.
#include <catch2/catch.hpp>

#include <string>

#include "lm/unicode.hpp"

namespace moe_test_lm_unicode {  // this file's names (unity builds merge test files)

namespace u = moe::lm::unicode;

TEST_CASE("unicode flags of single characters", "[lm][unicode]") {
    using namespace moe::lm::unicode;
    CHECK(flags(U'a') == (letter | lowercase));
    CHECK(flags(U'A') == (letter | uppercase));
    CHECK(flags(U'5') == number);
    CHECK(flags(U' ') == (whitespace | separator));
    CHECK(flags(U'\t') == (whitespace | control));
    CHECK(flags(U'\u3000') == (whitespace | separator));   // ideographic space
    CHECK(flags(U'\u3002') == punctuation);                 // 。
    CHECK(flags(U'\U0001F600') == symbol);                  // 😀
    CHECK(flags(U'\u200D') == format);                      // zero width joiner: not \s
    CHECK(flags(U'\u0301') == (mark | mark_nonspacing));
    CHECK(flags(U'\u4E2D') == (letter | cjk));              // 中
    CHECK(flags(U'\uAC00') == letter);                      // 가: not in BERT's CJK ranges
    CHECK(flags(U'\uFEFF') == (whitespace | format));       // \s includes U+FEFF
    CHECK(flags(U'\u0378') == other);                       // unassigned
    CHECK(flags(U'\uE000') == other);                       // private use
    CHECK(flags(char32_t(0x110000)) == other);
    CHECK(has(U'x', letter));
    CHECK_FALSE(has(U'x', number));
    CHECK(has_any(U'7', letter | number));
    CHECK(category(U'a') == GeneralCategory::Ll);
    CHECK(category(U'\u01C5') == GeneralCategory::Lt);
    CHECK(category(U'\u0903') == GeneralCategory::Mc);
    CHECK(category(U'$') == GeneralCategory::Sc);
    CHECK(category(U'\u2028') == GeneralCategory::Zl);
    CHECK(category(U'\U0010FFFF') == GeneralCategory::Cn);
    CHECK(!unicode_version.empty());
}

TEST_CASE("utf-8 decoding: valid sequences and TextDecoder's maximal subparts", "[lm][unicode]") {
    const auto d = [](std::string_view s, std::size_t i = 0) { return u::decode_utf8(s, i); };
    CHECK(d("a").cp == U'a');
    CHECK(d("\xC3\xA9").cp == U'\u00E9');
    CHECK(d("\xC3\xA9").len == 2);
    CHECK(d("\xE2\x82\xAC").cp == U'\u20AC');
    CHECK(d("\xF0\x9F\x98\x80").cp == U'\U0001F600');
    CHECK(d("\xF0\x9F\x98\x80").len == 4);
    CHECK(d("ab", 2).len == 0);
    // A truncated 4-byte sequence is one maximal subpart: one U+FFFD.
    const auto t = d("\xF0\x9F\x98");
    CHECK((t.cp == u::replacement_character && t.len == 3 && !t.valid));
    CHECK(u::to_u32("\xF0\x9F\x98") == U"\uFFFD");
    CHECK(u::to_u32("\xF0\x9F\x98z") == U"\uFFFDz");
    // An overlong 2-byte form: C0 never starts a sequence, AF is a lone continuation byte.
    CHECK(u::to_u32("\xC0\xAF") == U"\uFFFD\uFFFD");
    // A surrogate encoded in UTF-8: ED A0 is not a valid prefix (ED takes 80-9F): three.
    CHECK(u::to_u32("\xED\xA0\x80") == U"\uFFFD\uFFFD\uFFFD");
    // E0 80: overlong; F4 90: above U+10FFFF; F5: never valid.
    CHECK(u::to_u32("\xE0\x80\x80") == U"\uFFFD\uFFFD\uFFFD");
    CHECK(u::to_u32("\xF4\x90\x80\x80") == U"\uFFFD\uFFFD\uFFFD\uFFFD");
    CHECK(u::to_u32("\xF5") == U"\uFFFD");
    CHECK(u::to_u32("\xE2\x82") == U"\uFFFD");  // truncated 3-byte: one
    CHECK(u::to_u32("\xE2\x82\xE2\x82\xAC") == U"\uFFFD\u20AC");
    CHECK(u::valid_utf8("plain ascii, long enough for the 8-byte path"));
    CHECK(u::valid_utf8("caf\xC3\xA9 \xF0\x9F\x98\x80"));
    CHECK_FALSE(u::valid_utf8("abcdefghij\xC0\xAF"));
    CHECK(u::replace_invalid_utf8("a\xC0\xAF" "b") == "a\xEF\xBF\xBD\xEF\xBF\xBD" "b");
    CHECK(u::to_utf8(U"\u00E9\U0001F600") == "\xC3\xA9\xF0\x9F\x98\x80");
    CHECK(u::to_utf8(std::u32string{char32_t(0xD800)}) == "\xEF\xBF\xBD");
    std::string s;
    u::append_utf8(s, U'\u07FF');
    u::append_utf8(s, U'\uFFFF');
    CHECK(s == "\xDF\xBF\xEF\xBF\xBF");
}

TEST_CASE("normalization: composition, Hangul, reordering, compatibility", "[lm][unicode]") {
    const std::string e_acute = "\xC3\xA9", e_combining = "e\xCC\x81";
    CHECK(u::nfc(e_combining) == e_acute);
    CHECK(u::nfd(e_acute) == e_combining);
    CHECK(u::nfc(e_acute) == e_acute);
    CHECK(u::nfkd(e_acute) == e_combining);
    // 한 (U+D55C) <-> ᄒ ᅡ ᆫ (U+1112 U+1161 U+11AB)
    const std::string han = "\xED\x95\x9C", jamo = "\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB";
    CHECK(u::nfd(han) == jamo);
    CHECK(u::nfc(jamo) == han);
    CHECK(u::nfc(u::to_utf8(U"\u1112\u1161")) == u::to_utf8(U"\uD558"));  // 하: LV
    // Canonical reordering: U+0301 (class 230) after U+0323 (class 220): "a ◌́ ◌̣" -> "a ◌̣ ◌́".
    CHECK(u::nfd(u::to_utf8(U"a\u0301\u0323")) == u::to_utf8(U"a\u0323\u0301"));
    // ... and NFC composes a + dot below first (ạ U+1EA1), then keeps the acute apart (no ạ́).
    CHECK(u::nfc(u::to_utf8(U"a\u0301\u0323")) == u::to_utf8(U"\u1EA1\u0301"));
    // A long run of marks (the linear sort past 16): all dots below (220) before all acutes (230).
    std::u32string run = U"a", sorted = U"a";
    for (int k = 0; k < 20; ++k) run += U"\u0301\u0323";
    sorted += std::u32string(20, U'\u0323') + std::u32string(20, U'\u0301');
    CHECK(u::nfd(std::u32string_view(run)) == sorted);
    std::u32string composed = U"\u1EA1";  // (appended, not operator+: GCC 12's false -Wrestrict)
    composed.append(sorted, 2);
    CHECK(u::nfc(u::to_utf8(run)) == u::to_utf8(composed));
    // Same class: no reordering, and the second mark is blocked from the base.
    CHECK(u::nfc(u::to_utf8(U"a\u0308\u0301")) == u::to_utf8(U"\u00E4\u0301"));
    // Composition exclusion: U+0958 (क़) stays decomposed under NFC.
    CHECK(u::nfc(u::to_utf8(U"\u0958")) == u::to_utf8(U"\u0915\u093C"));
    // Singleton: U+212B ANGSTROM SIGN -> U+00C5.
    CHECK(u::nfc(u::to_utf8(U"\u212B")) == u::to_utf8(U"\u00C5"));
    // Compatibility: ﬁ -> fi, ① -> 1, full-width Ａ -> A; NFC keeps them.
    CHECK(u::nfkc(u::to_utf8(U"\uFB01")) == "fi");
    CHECK(u::nfkc(u::to_utf8(U"\u2460\uFF21")) == "1A");
    CHECK(u::nfc(u::to_utf8(U"\uFB01")) == u::to_utf8(U"\uFB01"));
    // A leading non-starter composes with nothing.
    CHECK(u::nfc(u::to_utf8(U"\u0301e")) == u::to_utf8(U"\u0301e"));
    // ASCII and already-normalized text come back unchanged; invalid bytes become U+FFFD.
    const std::string ascii(100, 'x');
    CHECK(u::nfc(ascii) == ascii);
    CHECK(u::nfkd(ascii) == ascii);
    CHECK(u::nfc("\xE4\xB8\xAD\xE6\x96\x87") == "\xE4\xB8\xAD\xE6\x96\x87");  // 中文
    CHECK(u::nfc("ab\xC0") == "ab\xEF\xBF\xBD");
    CHECK(u::quick_check(ascii, u::Form::nfc));
    CHECK_FALSE(u::quick_check(e_combining, u::Form::nfc));
    CHECK(u::quick_check(e_combining, u::Form::nfd));
    CHECK_FALSE(u::quick_check(e_acute, u::Form::nfd));
    // A long ASCII prefix is kept, the tail normalized.
    CHECK(u::nfc(ascii + e_combining) == ascii + e_acute);
    // UTF-32 overloads.
    CHECK(u::nfd(std::u32string_view(U"\u00E9")) == U"e\u0301");
    CHECK(u::nfc(std::u32string_view(U"\u1100\u1161\u11A8")) == U"\uAC01");
}

TEST_CASE("toLowerCase: full mappings and final sigma", "[lm][unicode]") {
    CHECK(u::to_lower("Hello WORLD") == "hello world");
    CHECK(u::to_lower(u::to_utf8(U"\u0130")) == u::to_utf8(U"i\u0307"));  // İ -> i̇
    CHECK(u::to_lower(u::to_utf8(U"\u00C9COLE")) == u::to_utf8(U"\u00E9cole"));
    // Σ at the end of a word is ς, inside a word σ, alone σ.
    CHECK(u::to_lower(u::to_utf8(U"\u039F\u0394\u039F\u03A3")) == u::to_utf8(U"\u03BF\u03B4\u03BF\u03C2"));
    CHECK(u::to_lower(u::to_utf8(U"\u039F\u03A3\u039F")) == u::to_utf8(U"\u03BF\u03C3\u03BF"));
    CHECK(u::to_lower(u::to_utf8(U"\u03A3")) == u::to_utf8(U"\u03C3"));
    CHECK(u::to_lower(u::to_utf8(U"\u039F\u03A3 \u039F")) == u::to_utf8(U"\u03BF\u03C2 \u03BF"));
    // Case-ignorables (the apostrophe) are skipped on both sides.
    CHECK(u::to_lower(u::to_utf8(U"\u039F'\u03A3'")) == u::to_utf8(U"\u03BF'\u03C2'"));
    CHECK(u::to_lower(u::to_utf8(U"\u039F\u03A3'\u039F")) == u::to_utf8(U"\u03BF\u03C3'\u03BF"));
    CHECK(u::to_lower("A\xC0") == "a\xEF\xBF\xBD");
    CHECK(u::to_lower(u::to_utf8(U"\u212A")) == "k");  // KELVIN SIGN
}

TEST_CASE("strip_accents: NFD without nonspacing marks", "[lm][unicode]") {
    CHECK(u::strip_accents(u::to_utf8(U"caf\u00E9 na\u00EFve")) == "cafe naive");
    CHECK(u::strip_accents(u::to_utf8(U"\uD55C")) == u::to_utf8(U"\u1112\u1161\u11AB"));
    CHECK(u::strip_accents("plain") == "plain");
    CHECK(u::strip_accents(u::to_utf8(U"\u0915\u093F")) == u::to_utf8(U"\u0915\u093F"));  // Mc kept
}

}  // namespace moe_test_lm_unicode
