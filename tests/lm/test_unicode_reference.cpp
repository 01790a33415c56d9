// lm/unicode.hpp against Node, exhaustively: every code point's flags and category, the four
// normalization forms and toLowerCase of every code point they change, 5,000 random strings of
// letters, marks of several classes, Hangul jamo and Greek sigmas, and 3,000 random byte strings
// through TextDecoder. The reference is written by tools/reference/unicode_reference.mjs (ctest
// fixture unicode_fixture); without it (no node, or another Unicode version) the cases skip.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "lm/unicode.hpp"
#include "unit/skip.hpp"

namespace moe_test_unicode_reference {  // this file's names (unity builds merge test files)

namespace u = moe::lm::unicode;

namespace {

const std::string kPath = std::string(MOE_FIXTURE_DIR) + "/unicode/unicode_reference.txt";

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : s) {
        if (c == sep) {
            out.push_back(cur);
            cur.clear();
        } else {
            cur.push_back(c);
        }
    }
    out.push_back(cur);
    return out;
}

std::u32string cps(const std::string& hex) {
    std::u32string out;
    std::istringstream is(hex);
    std::string tok;
    while (is >> tok) out.push_back(char32_t(std::stoul(tok, nullptr, 16)));
    return out;
}

std::string bytes(const std::string& hex) {
    std::string out;
    std::istringstream is(hex);
    std::string tok;
    while (is >> tok) out.push_back(char(std::stoul(tok, nullptr, 16)));
    return out;
}

std::string show(const std::u32string& s) {
    std::ostringstream os;
    os << std::hex;
    for (char32_t c : s) os << std::uint32_t(c) << ' ';
    return os.str();
}

struct Reference {
    std::vector<std::string> lines;
    bool load() {
        std::ifstream in(kPath);
        if (!in) return false;
        for (std::string l; std::getline(in, l);) lines.push_back(l);
        return !lines.empty();
    }
};

/// Counts mismatches, keeps the first few for the message.
struct Mismatches {
    std::size_t count = 0;
    std::string first;
    void add(const std::string& what) {
        if (count++ < 10) first += what + "\n";
    }
};

std::u32string apply(char form, const std::u32string& s) {
    const std::string in = u::to_utf8(s);
    switch (form) {
        case 'C': return u::to_u32(u::nfc(in));
        case 'D': return u::to_u32(u::nfd(in));
        case 'K': return u::to_u32(u::nfkc(in));
        case 'k': return u::to_u32(u::nfkd(in));
        case 'L': return u::to_u32(u::to_lower(in));
        default: return u::to_u32(u::strip_accents(in));
    }
}

}  // namespace

TEST_CASE("unicode reference: the tables' version is node's", "[.][unicode-reference]") {
    Reference ref;
    if (!ref.load()) MOE_SKIP(kPath << " not found (ctest fixture unicode_fixture needs node)");
    REQUIRE(ref.lines[0] == "V " + std::string(u::unicode_version));
}

TEST_CASE("unicode reference: flags and category of every code point", "[.][unicode-reference]") {
    Reference ref;
    if (!ref.load()) MOE_SKIP(kPath << " not found (ctest fixture unicode_fixture needs node)");
    Mismatches bad;
    char32_t next = 0;
    for (const auto& l : ref.lines) {
        if (l.rfind("P ", 0) != 0) continue;
        std::istringstream is(l.substr(2));
        std::string a, b;
        unsigned f = 0, cat = 0;
        is >> a >> b >> f >> cat;
        const auto first = char32_t(std::stoul(a, nullptr, 16)), last = char32_t(std::stoul(b, nullptr, 16));
        REQUIRE(first == next);
        for (char32_t cp = first; cp <= last; ++cp) {
            if (u::flags(cp) != f || unsigned(u::category(cp)) != cat)
                bad.add(l + ": U+" + show({cp}) + "flags " + std::to_string(u::flags(cp)) + " category " +
                        std::to_string(unsigned(u::category(cp))));
        }
        next = last + 1;
    }
    REQUIRE(next == 0x110000);
    INFO(bad.first);
    REQUIRE(bad.count == 0);
}

TEST_CASE("unicode reference: NFC, NFD, NFKC, NFKD and toLowerCase of every code point", "[.][unicode-reference]") {
    Reference ref;
    if (!ref.load()) MOE_SKIP(kPath << " not found (ctest fixture unicode_fixture needs node)");
    // Every code point not listed maps to itself.
    std::vector<std::vector<bool>> listed(5, std::vector<bool>(0x110000, false));
    const std::string forms = "CDKkL";
    Mismatches bad;
    std::size_t n = 0;
    for (const auto& l : ref.lines) {
        if (l.rfind("M ", 0) != 0) continue;
        const auto parts = split(l.substr(2), ':');
        std::istringstream is(parts[0]);
        std::string form, cp_hex;
        is >> form >> cp_hex;
        const char f = form == "C" ? 'C' : form == "D" ? 'D' : form == "KC" ? 'K' : form == "KD" ? 'k' : 'L';
        const auto cp = char32_t(std::stoul(cp_hex, nullptr, 16));
        listed[forms.find(f)][cp] = true;
        const std::u32string want = cps(parts[1]), got = apply(f, {cp});
        if (got != want) bad.add(l + " got " + show(got));
        ++n;
    }
    REQUIRE(n > 5000);
    for (std::size_t k = 0; k < forms.size(); ++k)
        for (char32_t cp = 0; cp < 0x110000; ++cp) {
            if (listed[k][cp] || (cp >= 0xD800 && cp <= 0xDFFF)) continue;
            const std::u32string got = apply(forms[k], {cp});
            if (got != std::u32string{cp}) bad.add(std::string(1, forms[k]) + " U+" + show({cp}) + "got " + show(got));
        }
    INFO(bad.first);
    REQUIRE(bad.count == 0);
}

TEST_CASE("unicode reference: random strings, all forms, lowercase and accent stripping", "[.][unicode-reference]") {
    Reference ref;
    if (!ref.load()) MOE_SKIP(kPath << " not found (ctest fixture unicode_fixture needs node)");
    const std::string forms = "CDKkLs";
    Mismatches bad;
    std::size_t n = 0;
    for (const auto& l : ref.lines) {
        if (l.rfind("S ", 0) != 0) continue;
        const auto f = split(l.substr(2), '|');
        REQUIRE(f.size() == 7);
        const std::u32string in = cps(f[0]);
        for (std::size_t k = 0; k < forms.size(); ++k) {
            const std::u32string want = cps(f[k + 1]), got = apply(forms[k], in);
            if (got != want) bad.add(std::string(1, forms[k]) + ": " + l + " got " + show(got));
        }
        // The UTF-32 overloads agree with the UTF-8 ones.
        if (u::nfc(std::u32string_view(in)) != cps(f[1]) || u::nfkd(std::u32string_view(in)) != cps(f[4]))
            bad.add("u32: " + l);
        ++n;
    }
    REQUIRE(n >= 4000);
    INFO(bad.first);
    REQUIRE(bad.count == 0);
}

TEST_CASE("unicode reference: random bytes decode as TextDecoder decodes them", "[.][unicode-reference]") {
    Reference ref;
    if (!ref.load()) MOE_SKIP(kPath << " not found (ctest fixture unicode_fixture needs node)");
    Mismatches bad;
    std::size_t n = 0;
    for (const auto& l : ref.lines) {
        if (l.rfind("B ", 0) != 0) continue;
        const auto parts = split(l.substr(2), ':');
        const std::string in = bytes(parts[0]);
        const std::u32string want = cps(parts[1]);
        const std::u32string got = u::to_u32(in);
        if (got != want) bad.add(l + " got " + show(got));
        if (u::replace_invalid_utf8(in) != u::to_utf8(want)) bad.add("replace_invalid_utf8: " + l);
        if (u::valid_utf8(in) != (u::to_utf8(want) == in)) bad.add("valid_utf8: " + l);
        ++n;
    }
    REQUIRE(n >= 2000);
    INFO(bad.first);
    REQUIRE(bad.count == 0);
}

}  // namespace moe_test_unicode_reference
