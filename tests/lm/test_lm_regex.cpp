// lm/regex.hpp: hand-derived matches of the tokenizer patterns, errors for unsupported syntax,
// and a differential test against std::regex (ECMAScript: the same leftmost-first backtracking
// semantics as JavaScript) on random ASCII patterns and texts.
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "lm/regex.hpp"

// libstdc++ 12's <regex> trips GCC's -Wmaybe-uninitialized inside std::function when compiled
// with -O1 and sanitizers (the asan preset): a false positive in the standard library's own
// code, silenced for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <regex>

namespace moe_test_test_lm_regex {

using moe::lm::Regex;
using moe::lm::unicode::to_u32;
using moe::lm::unicode::to_utf8;

std::vector<std::string> all_matches(const Regex& re, const std::string& text) {
    const std::u32string u = to_u32(text);
    std::vector<std::string> out;
    Regex::Scratch s;
    re.for_each_match(u, s, [&](std::size_t a, std::size_t b) { out.push_back(to_utf8(std::u32string_view(u).substr(a, b - a))); });
    return out;
}

const char* const kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

TEST_CASE("regex: Qwen2's pre-tokenizer pattern splits as derived by hand", "[lm][regex]") {
    const Regex re(kQwen2);
    // Contractions fold case (the (?i:) group); a non-letter may lead a word; digits one by one.
    CHECK(all_matches(re, "He'S here") == std::vector<std::string>{"He", "'S", " here"});
    CHECK(all_matches(re, "x=123") == std::vector<std::string>{"x", "=", "1", "2", "3"});
    // \s+(?!\S) leaves the last space of a run to the next word; newline runs are one piece.
    CHECK(all_matches(re, "a   b") == std::vector<std::string>{"a", "  ", " b"});
    CHECK(all_matches(re, "a\n\n b") == std::vector<std::string>{"a", "\n\n", " b"});
    CHECK(all_matches(re, "ok!!\n") == std::vector<std::string>{"ok", "!!\n"});
    // \p{L} covers CJK and accented letters; fullwidth punctuation is not a letter.
    CHECK(all_matches(re, "你好，世界") == std::vector<std::string>{"你好", "，世界"});
    CHECK(all_matches(re, "café") == std::vector<std::string>{"café"});
}

TEST_CASE("regex: GPT-2's pattern (ByteLevel use_regex) as derived by hand", "[lm][regex]") {
    const Regex re(kGpt2);
    CHECK(all_matches(re, "I'll go  now") == std::vector<std::string>{"I", "'ll", " go", " ", " now"});
    CHECK(all_matches(re, " 2024 and 7") == std::vector<std::string>{" 2024", " and", " 7"});
    CHECK(all_matches(re, "trailing   ") == std::vector<std::string>{"trailing", "   "});
}

TEST_CASE("regex: quantifiers, alternation order, lookahead, classes", "[lm][regex]") {
    auto first = [](const char* pattern, const char* text) {
        const Regex re(pattern);
        const auto m = re.match_at(to_u32(text), 0);
        return m ? static_cast<int>(*m) : -1;
    };
    CHECK(first("a|ab", "ab") == 1);       // leftmost alternative wins, not the longest
    CHECK(first("ab|a", "ab") == 2);
    CHECK(first("a+?", "aaa") == 1);       // lazy
    CHECK(first("a+?b", "aaab") == 4);     // lazy extends when it must
    CHECK(first("a{2,3}", "aaaa") == 3);
    CHECK(first("a{2,3}?", "aaaa") == 2);
    CHECK(first("a{2}", "a") == -1);
    CHECK(first("(?:ab)+", "ababa") == 4);
    CHECK(first("(?:ab){2,}?c", "abababc") == 7);
    CHECK(first("a(?=b)", "ab") == 1);
    CHECK(first("a(?!b)", "ab") == -1);
    CHECK(first("\\d+", "0123x") == 4);
    CHECK(first("\\w+", "ab_9-") == 4);
    CHECK(first("[^\\s\\d]+", "ab c") == 2);
    CHECK(first("[a-c\\u00e9]+", "cabé!") == 4);
    CHECK(first("\\x41\\u{1F600}", "A😀") == 2);
    CHECK(first("^a$", "a") == 1);
    CHECK(first(".+", "ab\ncd") == 2);     // '.' stops at line terminators
    CHECK(first("(?i:ab)c", "ABc") == 3);
    CHECK(first("(?i:ab)c", "ABC") == -1);  // the flag ends with its group
    CHECK(first("\\p{Lu}\\p{Ll}+", "Hello") == 5);
    CHECK(first("\\P{L}+", "12a") == 2);
}

TEST_CASE("regex: unsupported syntax is a ConfigError naming it", "[lm][regex]") {
    auto message = [](const char* pattern) {
        try {
            Regex re(pattern);
        } catch (const moe::ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK_THAT(message("(?<=a)b"), Catch::Contains("lookbehind"));
    CHECK_THAT(message("(a)\\1"), Catch::Contains("backreferences"));
    CHECK_THAT(message("a{3,2}"), Catch::Contains("m < n"));
    CHECK_THAT(message("(ab"), Catch::Contains("unterminated group"));
    CHECK_THAT(message("[ab"), Catch::Contains("unterminated character class"));
    CHECK_THAT(message("\\p{Foo}"), Catch::Contains("\\p{Foo}"));
    CHECK_THAT(message("a++"), Catch::Contains("possessive"));
    CHECK_THAT(message("\\bword"), Catch::Contains("word boundaries"));
    CHECK_THAT(message("(?:a*)*"), Catch::Contains("empty string"));
    CHECK_THAT(message("*a"), Catch::Contains("nothing to repeat"));
    CHECK_THAT(message("a)"), Catch::Contains("unbalanced"));
}

TEST_CASE("regex: exponential backtracking becomes linear; huge programs are refused", "[lm][regex]") {
    // Plain backtracking (JavaScript's too) takes 2^n steps on these; past the step budget the
    // matcher memoises failed (instruction, position) states and answers the same.
    const std::u32string as(200, U'a');
    for (const char* pattern : {"(?:a|a)*b", "(?:a+)+b", "(?:a|aa)+c", "(?:(?:a*)a)+b"}) {
        const Regex re(pattern);
        INFO(pattern);
        CHECK_FALSE(re.match_at(as, 0).has_value());
        const auto m = re.match_at(as + U"b", 0);
        if (std::string(pattern).back() == 'b') {
            REQUIRE(m.has_value());
            CHECK(*m == 201);
        } else {
            CHECK_FALSE(m.has_value());
        }
    }
    // Nested counted repeats unroll multiplicatively: refused past 65536 instructions.
    try {
        Regex re("(?:(?:(?:(?:a{64}){64}){64}){64}){64}");
        FAIL("no error");
    } catch (const moe::ConfigError& e) {
        CHECK_THAT(e.what(), Catch::Contains("65536 instructions"));
    }
}

// Random patterns over a small ASCII alphabet, checked against std::regex's ECMAScript grammar,
// which matches with the same leftmost-first backtracking as JavaScript.
std::string random_pattern(std::mt19937& rng, int depth) {
    static const char* atoms[] = {"a", "b", "c", " ", ".", "[ab]", "[^a]", "\\s", "\\S", "\\d", "[a-c ]", "\\w"};
    static const char* quants[] = {"", "", "", "*", "+", "?", "{1,2}", "*?", "+?", "??", "{2}"};
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    std::string p;
    const int items = 1 + pick(3);
    for (int i = 0; i < items; ++i) {
        const int kind = depth > 0 ? pick(10) : 0;
        std::string atom;
        if (kind < 7) atom = atoms[pick(12)];
        else if (kind < 9) atom = "(?:" + random_pattern(rng, depth - 1) + "|" + random_pattern(rng, depth - 1) + ")";
        else {
            p += pick(2) ? "(?=" : "(?!";
            p += random_pattern(rng, depth - 1) + ")";
            continue;
        }
        p += atom;
        if (atom.rfind("(?:", 0) == 0 && false) continue;
        p += quants[pick(11)];
    }
    return p;
}

TEST_CASE("regex: agrees with std::regex (ECMAScript) on 3000 random patterns", "[lm][regex]") {
    std::mt19937 rng(20261205);
    const char alphabet[] = "abc 1\t";
    int compared = 0;
    for (int t = 0; t < 3000; ++t) {
        const std::string pattern = random_pattern(rng, 2);
        std::unique_ptr<Regex> ours;
        try {
            ours = std::make_unique<Regex>(pattern);
        } catch (const moe::ConfigError&) {
            continue;  // e.g. (?:a*)* : refused by design
        }
        const std::regex theirs(pattern, std::regex::ECMAScript);
        std::string text;
        for (int k = 0, n = static_cast<int>(rng() % 10); k < n; ++k) text += alphabet[rng() % 6];
        const std::u32string u = to_u32(text);
        for (std::size_t i = 0; i <= text.size(); ++i) {
            std::smatch m;
            const bool found = std::regex_search(text.cbegin() + static_cast<std::ptrdiff_t>(i), text.cend(), m, theirs,
                                                 std::regex_constants::match_continuous);
            const auto mine = ours->match_at(u, i);
            INFO("pattern " << pattern << " text \"" << text << "\" at " << i);
            REQUIRE(found == mine.has_value());
            if (found) REQUIRE(static_cast<std::size_t>(m.length(0)) == *mine);
            ++compared;
        }
    }
    CHECK(compared > 10000);
}

}  // namespace moe_test_test_lm_regex

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
