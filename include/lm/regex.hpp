// lm/regex.hpp - the regular expressions tokenizer.json files contain, matched as the reference
// (JavaScript's RegExp with the `u` flag, which Hugging Face's JS tokenizers use) matches them.
//
// Tokenizers split text with a pattern written in the file (Qwen2's pre-tokenizer:
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// ), so the library needs a regex engine whose answers are the reference's, on code points.
// This is a small backtracking engine with leftmost-first alternation (as JavaScript, PCRE and
// Oniguruma), compiled once to a program of a few instructions:
//
//   syntax       literals (UTF-8), `.`, `^`, `$`, classes `[...]` / `[^...]` with ranges, the
//                escapes \s \S \d \D \w \W \p{X} \P{X} \r \n \t \f \v \0 \xHH \uHHHH \u{H...}
//                and escaped punctuation; groups `( )`, `(?: )`, `(?i: )`; lookahead `(?= )`,
//                `(?! )`; quantifiers `? * + {n} {n,} {n,m}`, each greedy or lazy (`??` ...);
//                alternation `|`.
//   \p{X}        L Lu Ll Lt Lm Lo N Nd Nl No P S M Mn Z C Cc Cf Co Cn Cs (and the long names
//                Letter, Number, Punctuation, Symbol, Mark, Separator, Other); tables from
//                lm/unicode_data.hpp, the Unicode version of the reference.
//   \s \d \w     as JavaScript: \s is Unicode White_Space plus U+FEFF, \d is [0-9], \w is
//                [A-Za-z0-9_].
//   (?i: )       folds ASCII letters only. The reference cannot parse inline flags and rewrites
//                the one group real files contain, Qwen2/LLaMA-3's (?i:'s|'t|...), to [sS] ...
//                (transformers.js PROBLEMATIC_REGEX_MAP), which is exactly ASCII folding.
//                Oniguruma (Hugging Face's Rust tokenizers) also folds U+017F and U+212A there.
//   anything else  (backreferences, lookbehind, possessive quantifiers, named groups, \b, ...)
//                is a moe::ConfigError naming the construct and its offset: never a silent
//                approximation.
//
// Matching cost: a greedy or lazy repeat of a single class (\p{L}+, \s*, [^\r\n]{1,3}, the
// common case) is one instruction that scans its run and backtracks over it without a stack
// entry per character; classes answer ASCII from a bitmap and other code points from the
// Unicode property table.
#pragma once

#include <algorithm>
#include <array>
#include <bitset>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lm/unicode.hpp"
#include "moe/core/error.hpp"

namespace moe::lm {

namespace detail {
/// The general category of a two-letter name ("Lu", "Nd", ...), if it is one.
inline std::optional<unicode::GeneralCategory> category_from_name(std::string_view name) noexcept {
    static constexpr std::string_view names[] = {"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl",
                                                 "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc",
                                                 "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"};
    for (std::size_t i = 0; i < std::size(names); ++i)
        if (names[i] == name) return static_cast<unicode::GeneralCategory>(i);
    return std::nullopt;
}
}  // namespace detail

/// A set of code points: ASCII as a bitmap, the rest as ranges and Unicode property flags.
struct CharClass {
    std::bitset<128> ascii;                                 ///< membership of U+0000..U+007F (final)
    std::vector<std::pair<char32_t, char32_t>> ranges;      ///< inclusive ranges (non-ASCII part)
    std::uint16_t any_flags = 0;     ///< member when flags(cp) & any_flags (e.g. \p{L})
    std::vector<std::uint16_t> not_flags;  ///< member when !(flags(cp) & f) for one f (\P{L}, \S)
    std::vector<std::uint8_t> categories;  ///< member when category(cp) is one of these (\p{Lu})
    bool negated = false;            ///< [^...]: the complement of the above (non-ASCII part)

    bool contains(char32_t cp) const noexcept {
        if (cp < 128) return ascii[cp];
        return contains_other(cp);
    }
    /// The non-ASCII part of contains().
    bool contains_other(char32_t cp) const noexcept {
        bool in = false;
        const std::uint16_t f = unicode::flags(cp);
        if (f & any_flags) in = true;
        for (std::size_t i = 0; !in && i < not_flags.size(); ++i) in = !(f & not_flags[i]);
        if (!in && !categories.empty()) {
            const auto c = static_cast<std::uint8_t>(unicode::category(cp));
            in = std::find(categories.begin(), categories.end(), c) != categories.end();
        }
        for (std::size_t i = 0; !in && i < ranges.size(); ++i)
            in = cp >= ranges[i].first && cp <= ranges[i].second;
        return in != negated;
    }
};

/// A compiled regular expression (see the file comment for the syntax and the semantics).
class Regex {
public:
    /// Reusable matcher memory (the backtracking stack); one per thread.
    struct Scratch {
        struct Entry {
            std::uint32_t pc;
            std::size_t pos;
            std::size_t low;  // for run entries: positions pos, pos-1, ... low remain to try
            std::int8_t step; // 0: plain, -1: greedy run (pos down to low), +1: lazy run (pos up to low)
        };
        std::vector<Entry> stack;
    };

    Regex() = default;
    /// Compiles `pattern` (UTF-8). Throws moe::ConfigError("regex", ...) naming the offending
    /// construct and its byte offset for anything outside the supported syntax.
    explicit Regex(std::string_view pattern) : pattern_(pattern) {
        Parser p{pattern, *this};
        const int root = p.parse();
        programs_.emplace_back();
        compile(root, 0);
        programs_[0].push_back({Op::match, 0, 0, 0, 0});
        // Lookahead bodies were compiled into programs 1..n by compile().
        compute_starts();
    }

    const std::string& pattern() const noexcept { return pattern_; }

    /// Length (in code points) of the leftmost-first match that starts exactly at `pos`, or
    /// nullopt. An empty match returns 0.
    std::optional<std::size_t> match_at(std::u32string_view text, std::size_t pos, Scratch& s) const {
        const std::size_t end = run(0, text, pos, s);
        if (end == kNoMatch) return std::nullopt;
        return end - pos;
    }
    std::optional<std::size_t> match_at(std::u32string_view text, std::size_t pos) const {
        Scratch s;
        return match_at(text, pos, s);
    }

    /// The first match at or after `from`: {start, end} in code points, or nullopt.
    std::optional<std::pair<std::size_t, std::size_t>> search(std::u32string_view text, std::size_t from,
                                                              Scratch& s) const {
        for (std::size_t i = from; i <= text.size(); ++i) {
            if (!can_start(0, 0, text, i)) continue;
            const std::size_t end = run(0, text, i, s);
            if (end != kNoMatch) return std::make_pair(i, end);
        }
        return std::nullopt;
    }

    /// Every match, left to right, as JavaScript's String.prototype.matchAll with the `g` flag
    /// finds them (after an empty match the search resumes one code point further on).
    template <class F>
    void for_each_match(std::u32string_view text, Scratch& s, F&& f) const {
        std::size_t i = 0;
        while (i <= text.size()) {
            const auto m = search(text, i, s);
            if (!m) return;
            f(m->first, m->second);
            i = m->second > m->first ? m->second : m->second + 1;
        }
    }

private:
    static constexpr std::size_t kNoMatch = std::numeric_limits<std::size_t>::max();
    static constexpr std::uint32_t kInf = std::numeric_limits<std::uint32_t>::max();

    // ---- the syntax tree ----------------------------------------------------------------------
    enum class Kind : std::uint8_t { empty, cls, cat, alt, repeat, look, bol, eol };
    struct Node {
        Kind kind = Kind::empty;
        int cls = -1;                // class index (cls)
        std::vector<int> kids;       // cat, alt, repeat (1), look (1)
        std::uint32_t min = 0, max = 0;
        bool greedy = true;
        bool negative = false;       // look
    };

    // ---- the program ------------------------------------------------------------------------
    enum class Op : std::uint8_t { cls, split, jmp, match, run, look, bol, eol };
    struct Inst {
        Op op;
        std::uint32_t x;     // cls: class; split: preferred target; jmp: target; run: class; look: program
        std::uint32_t y;     // split: other target; run: min; look: 1 = negative
        std::uint32_t z;     // run: max
        std::uint32_t lazy;  // run: 1 = lazy
    };
    using Program = std::vector<Inst>;


    // ---- parser ------------------------------------------------------------------------------
    struct Parser {
        std::string_view s;
        Regex& re;
        std::size_t i = 0;
        bool icase = false;

        [[noreturn]] void fail(std::string_view what, std::size_t at) const {
            throw ConfigError("regex", moe::detail::cat(what, " at byte ", at, " of the pattern \"",
                                                   std::string(s.substr(0, 200)), "\""));
        }
        bool eof() const { return i >= s.size(); }
        char peek() const { return eof() ? '\0' : s[i]; }

        int add(Node n) {
            re.nodes_.push_back(std::move(n));
            return static_cast<int>(re.nodes_.size() - 1);
        }
        int add_class(CharClass c) {
            re.classes_.push_back(std::move(c));
            Node n;
            n.kind = Kind::cls;
            n.cls = static_cast<int>(re.classes_.size() - 1);
            return add(std::move(n));
        }

        int parse() {
            const int r = alternation();
            if (!eof()) fail(peek() == ')' ? "unbalanced ')'" : "unexpected character", i);
            return r;
        }

        int alternation() {
            std::vector<int> alts{sequence()};
            while (!eof() && peek() == '|') {
                ++i;
                alts.push_back(sequence());
            }
            if (alts.size() == 1) return alts[0];
            Node n;
            n.kind = Kind::alt;
            n.kids = std::move(alts);
            return add(std::move(n));
        }

        int sequence() {
            std::vector<int> items;
            while (!eof() && peek() != '|' && peek() != ')') {
                int a = atom();
                a = quantified(a);
                items.push_back(a);
            }
            if (items.size() == 1) return items[0];
            Node n;
            n.kind = items.empty() ? Kind::empty : Kind::cat;
            n.kids = std::move(items);
            return add(std::move(n));
        }

        std::uint32_t number() {
            const std::size_t start = i;
            std::uint64_t v = 0;
            while (!eof() && peek() >= '0' && peek() <= '9') {
                v = v * 10 + static_cast<unsigned>(peek() - '0');
                if (v > 100000) fail("repeat count too large", start);
                ++i;
            }
            if (i == start) fail("expected a number in {n,m}", start);
            return static_cast<std::uint32_t>(v);
        }

        int quantified(int a) {
            if (eof()) return a;
            const std::size_t at = i;
            std::uint32_t lo = 0, hi = 0;
            const char c = peek();
            if (c == '*') { lo = 0; hi = kInf; ++i; }
            else if (c == '+') { lo = 1; hi = kInf; ++i; }
            else if (c == '?') { lo = 0; hi = 1; ++i; }
            else if (c == '{') {
                ++i;
                lo = number();
                hi = lo;
                if (peek() == ',') {
                    ++i;
                    hi = peek() == '}' ? kInf : number();
                }
                if (peek() != '}') fail("unterminated {n,m} quantifier", at);
                ++i;
                if (hi < lo) fail("{n,m} with m < n", at);
            } else {
                return a;
            }
            const Kind k = re.nodes_[static_cast<std::size_t>(a)].kind;
            if (k == Kind::look || k == Kind::bol || k == Kind::eol) fail("quantifier after an assertion", at);
            bool greedy = true;
            if (peek() == '?') { greedy = false; ++i; }
            else if (peek() == '+') fail("possessive quantifiers are not supported", i);
            if (!eof() && (peek() == '*' || peek() == '+' || peek() == '{'))
                fail("nothing to repeat", i);
            Node n;
            n.kind = Kind::repeat;
            n.kids = {a};
            n.min = lo;
            n.max = hi;
            n.greedy = greedy;
            return add(std::move(n));
        }

        int atom() {
            const std::size_t at = i;
            const char c = peek();
            switch (c) {
                case '(': return group();
                case '[': return bracket();
                case '.': {
                    ++i;
                    CharClass cc;  // JavaScript: any code point except line terminators
                    cc.ascii.set();
                    cc.ascii.reset('\n');
                    cc.ascii.reset('\r');
                    cc.ranges = {{0x80, 0x2027}, {0x202A, 0x10FFFF}};
                    return add_class(std::move(cc));
                }
                case '^': { ++i; Node n; n.kind = Kind::bol; return add(std::move(n)); }
                case '$': { ++i; Node n; n.kind = Kind::eol; return add(std::move(n)); }
                case '*': case '+': case '?': fail("nothing to repeat", at);
                case '{': fail("a lone '{' (write \\{)", at);
                case '}': fail("a lone '}' (write \\})", at);
                case ']': fail("a lone ']' (write \\])", at);
                case '\\': {
                    CharClass cc;
                    escape(cc, false);
                    return add_class(std::move(cc));
                }
                default: {
                    CharClass cc;
                    add_char(cc, literal());
                    return add_class(std::move(cc));
                }
            }
        }

        char32_t literal() {
            const auto d = unicode::decode_utf8(s, i);
            if (!d.valid) fail("invalid UTF-8 in the pattern", i);
            i += d.len;
            return d.cp;
        }

        void add_char(CharClass& cc, char32_t cp) const { add_range(cc, cp, cp); }
        void add_range(CharClass& cc, char32_t a, char32_t b) const {
            for (char32_t c = a; c <= b && c < 128; ++c) {
                cc.ascii.set(c);
                if (icase && ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')) cc.ascii.set(c ^ 0x20);
            }
            if (b >= 128) cc.ranges.emplace_back(std::max<char32_t>(a, 128), b);
        }
        void add_flag(CharClass& cc, std::uint16_t f, bool negate) const {
            for (unsigned c = 0; c < 128; ++c)
                if (((unicode::flags(static_cast<char32_t>(c)) & f) != 0) != negate) cc.ascii.set(c);
            if (negate) cc.not_flags.push_back(f);
            else cc.any_flags = static_cast<std::uint16_t>(cc.any_flags | f);
        }

        // \p{...} / \P{...}: a flag set or a list of general categories.
        void property(CharClass& cc, bool negate, std::size_t at) {
            if (peek() != '{') fail("expected '{' after \\p", at);
            const std::size_t close = s.find('}', i);
            if (close == std::string_view::npos) fail("unterminated \\p{...}", at);
            const std::string_view name = s.substr(i + 1, close - i - 1);
            i = close + 1;
            using unicode::Flag;
            struct Named { std::string_view a, b; std::uint16_t flag; };
            static constexpr Named groups[] = {
                {"L", "Letter", Flag::letter}, {"N", "Number", Flag::number},
                {"P", "Punctuation", Flag::punctuation}, {"S", "Symbol", Flag::symbol},
                {"M", "Mark", Flag::mark}, {"Z", "Separator", Flag::separator},
                {"C", "Other", static_cast<std::uint16_t>(Flag::control | Flag::format | Flag::other)},
                {"Mn", "Nonspacing_Mark", Flag::mark_nonspacing}, {"Cc", "Control", Flag::control},
                {"Cf", "Format", Flag::format}, {"Lu", "Uppercase_Letter", Flag::uppercase},
                {"Ll", "Lowercase_Letter", Flag::lowercase}};
            for (const auto& g : groups) {
                if (name == g.a || name == g.b) {
                    add_flag(cc, g.flag, negate);
                    return;
                }
            }
            const auto cat = detail::category_from_name(name);
            if (!cat) fail(moe::detail::cat("unsupported Unicode property \\p{", std::string(name), "}"), at);
            if (negate) fail(moe::detail::cat("unsupported negated category \\P{", std::string(name), "}"), at);
            for (unsigned c = 0; c < 128; ++c)
                if (unicode::category(static_cast<char32_t>(c)) == *cat) cc.ascii.set(c);
            cc.categories.push_back(static_cast<std::uint8_t>(*cat));
        }

        unsigned hex(std::size_t n, std::size_t at) {
            unsigned v = 0;
            for (std::size_t k = 0; k < n; ++k) {
                const char h = peek();
                int d = -1;
                if (h >= '0' && h <= '9') d = h - '0';
                else if (h >= 'a' && h <= 'f') d = h - 'a' + 10;
                else if (h >= 'A' && h <= 'F') d = h - 'A' + 10;
                if (d < 0) fail("invalid hexadecimal escape", at);
                v = v * 16 + static_cast<unsigned>(d);
                ++i;
            }
            return v;
        }

        // One escape after '\\'. Adds to cc; returns the code point when it is a single one
        // (for ranges inside brackets), or nullopt for a class escape.
        std::optional<char32_t> escape(CharClass& cc, bool in_bracket) {
            const std::size_t at = i;
            ++i;  // the backslash
            if (eof()) fail("pattern ends with '\\'", at);
            const char c = s[i++];
            auto single = [&](char32_t cp) -> std::optional<char32_t> {
                add_char(cc, cp);
                return cp;
            };
            switch (c) {
                case 's': add_flag(cc, unicode::Flag::whitespace, false); return std::nullopt;
                case 'S': add_flag(cc, unicode::Flag::whitespace, true); return std::nullopt;
                case 'd': add_range(cc, '0', '9'); return std::nullopt;
                case 'D': {
                    CharClass d;
                    add_range(d, '0', '9');
                    for (unsigned k = 0; k < 128; ++k) if (!d.ascii[k]) cc.ascii.set(k);
                    cc.ranges.emplace_back(128, 0x10FFFF);
                    return std::nullopt;
                }
                case 'w': case 'W': {
                    std::bitset<128> w;
                    for (unsigned k = 0; k < 128; ++k)
                        w[k] = (k >= '0' && k <= '9') || (k >= 'a' && k <= 'z') || (k >= 'A' && k <= 'Z') || k == '_';
                    if (c == 'w') cc.ascii |= w;
                    else {
                        cc.ascii |= ~w;
                        cc.ranges.emplace_back(128, 0x10FFFF);
                    }
                    return std::nullopt;
                }
                case 'p': property(cc, false, at); return std::nullopt;
                case 'P': property(cc, true, at); return std::nullopt;
                case 'r': return single('\r');
                case 'n': return single('\n');
                case 't': return single('\t');
                case 'f': return single('\f');
                case 'v': return single('\v');
                case '0':
                    if (!eof() && peek() >= '0' && peek() <= '9') fail("octal escapes are not supported", at);
                    return single(0);
                case 'x': return single(hex(2, at));
                case 'u': {
                    if (peek() == '{') {
                        ++i;
                        unsigned v = 0;
                        std::size_t n = 0;
                        while (!eof() && peek() != '}') {
                            v = v * 16 + hex(1, at);
                            if (++n > 6 || v > 0x10FFFF) fail("\\u{...} out of range", at);
                        }
                        if (eof() || n == 0) fail("unterminated \\u{...}", at);
                        ++i;
                        return single(v);
                    }
                    return single(hex(4, at));
                }
                case 'b':
                    if (in_bracket) return single('\b');
                    fail("word boundaries (\\b) are not supported", at);
                case 'B': fail("\\B is not supported", at);
                case 'k': fail("named backreferences are not supported", at);
                case 'c': fail("control escapes (\\cX) are not supported", at);
                default:
                    if (c >= '1' && c <= '9') fail("backreferences are not supported", at);
                    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
                        fail(moe::detail::cat("unknown escape \\", c), at);
                    if (static_cast<unsigned char>(c) >= 0x80) {
                        --i;
                        return single(literal());
                    }
                    return single(static_cast<char32_t>(static_cast<unsigned char>(c)));
            }
        }

        int bracket() {
            const std::size_t at = i;
            ++i;  // '['
            CharClass cc;
            bool negate = false;
            if (peek() == '^') { negate = true; ++i; }
            bool first = true;
            while (true) {
                if (eof()) fail("unterminated character class", at);
                if (peek() == ']' && !first) break;
                if (peek() == ']' && first) fail("empty character class []", at);
                if (peek() == '[' ) fail("nested character classes are not supported", i);
                first = false;
                std::optional<char32_t> lo;
                CharClass item;
                if (peek() == '\\') lo = escape(item, true);
                else { lo = literal(); add_char(item, *lo); }
                if (peek() == '-' && i + 1 < s.size() && s[i + 1] != ']') {
                    const std::size_t dash = i;
                    ++i;
                    if (!lo) fail("a class escape cannot start a range", dash);
                    std::optional<char32_t> hi;
                    CharClass tmp;
                    if (peek() == '\\') hi = escape(tmp, true);
                    else hi = literal();
                    if (!hi) fail("a class escape cannot end a range", dash);
                    if (*hi < *lo) fail("range out of order", dash);
                    add_range(cc, *lo, *hi);
                    continue;
                }
                merge(cc, item);
            }
            ++i;  // ']'
            if (negate) {
                cc.ascii = ~cc.ascii;
                cc.negated = true;
            }
            return add_class(std::move(cc));
        }

        static void merge(CharClass& into, const CharClass& from) {
            into.ascii |= from.ascii;
            into.ranges.insert(into.ranges.end(), from.ranges.begin(), from.ranges.end());
            into.any_flags = static_cast<std::uint16_t>(into.any_flags | from.any_flags);
            into.not_flags.insert(into.not_flags.end(), from.not_flags.begin(), from.not_flags.end());
            into.categories.insert(into.categories.end(), from.categories.begin(), from.categories.end());
        }

        int group() {
            const std::size_t at = i;
            ++i;  // '('
            Node look;
            bool is_look = false;
            const bool saved_icase = icase;
            if (peek() == '?') {
                ++i;
                const char k = peek();
                if (k == ':') ++i;
                else if (k == '=' || k == '!') {
                    ++i;
                    is_look = true;
                    look.kind = Kind::look;
                    look.negative = k == '!';
                } else if (k == 'i' && i + 1 < s.size() && s[i + 1] == ':') {
                    i += 2;
                    icase = true;
                } else if (k == '<') {
                    fail((i + 1 < s.size() && (s[i + 1] == '=' || s[i + 1] == '!'))
                             ? "lookbehind is not supported" : "named groups are not supported", at);
                } else {
                    fail("unsupported group or inline flag", at);
                }
            }
            const int body = alternation();
            icase = saved_icase;
            if (peek() != ')') fail("unterminated group", at);
            ++i;
            if (!is_look) return body;
            look.kids = {body};
            return add(std::move(look));
        }
    };

    // ---- compiler ----------------------------------------------------------------------------
    static constexpr std::size_t kMaxProgram = std::size_t{1} << 16;  // instructions per program
    void emit(std::size_t prog, Inst in) {
        if (programs_[prog].size() >= kMaxProgram)
            throw ConfigError("regex", moe::detail::cat("the pattern compiles to more than ", kMaxProgram,
                                                        " instructions (nested counted repeats?): \"",
                                                        pattern_.substr(0, 200), "\""));
        programs_[prog].push_back(in);
    }
    std::uint32_t here(std::size_t prog) const { return static_cast<std::uint32_t>(programs_[prog].size()); }

    bool nullable(int n) const {
        const Node& nd = nodes_[static_cast<std::size_t>(n)];
        switch (nd.kind) {
            case Kind::empty: case Kind::look: case Kind::bol: case Kind::eol: return true;
            case Kind::cls: return false;
            case Kind::cat:
                return std::all_of(nd.kids.begin(), nd.kids.end(), [&](int k) { return nullable(k); });
            case Kind::alt:
                return std::any_of(nd.kids.begin(), nd.kids.end(), [&](int k) { return nullable(k); });
            case Kind::repeat: return nd.min == 0 || nullable(nd.kids[0]);
        }
        return true;
    }

    void compile(int n, std::size_t prog) {
        const Node nd = nodes_[static_cast<std::size_t>(n)];  // copy: nodes_ is not resized here
        switch (nd.kind) {
            case Kind::empty: return;
            case Kind::cls: emit(prog, {Op::cls, static_cast<std::uint32_t>(nd.cls), 0, 0, 0}); return;
            case Kind::bol: emit(prog, {Op::bol, 0, 0, 0, 0}); return;
            case Kind::eol: emit(prog, {Op::eol, 0, 0, 0, 0}); return;
            case Kind::cat:
                for (int k : nd.kids) compile(k, prog);
                return;
            case Kind::alt: {
                std::vector<std::uint32_t> jumps;
                for (std::size_t a = 0; a < nd.kids.size(); ++a) {
                    if (a + 1 < nd.kids.size()) {
                        const std::uint32_t split = here(prog);
                        emit(prog, {Op::split, split + 1, 0, 0, 0});
                        compile(nd.kids[a], prog);
                        jumps.push_back(here(prog));
                        emit(prog, {Op::jmp, 0, 0, 0, 0});
                        programs_[prog][split].y = here(prog);
                    } else {
                        compile(nd.kids[a], prog);
                    }
                }
                for (auto j : jumps) programs_[prog][j].x = here(prog);
                return;
            }
            case Kind::look: {
                const auto sub = static_cast<std::uint32_t>(programs_.size());
                programs_.emplace_back();
                compile(nd.kids[0], sub);
                emit(sub, {Op::match, 0, 0, 0, 0});
                emit(prog, {Op::look, sub, nd.negative ? 1u : 0u, 0, 0});
                return;
            }
            case Kind::repeat: {
                const Node& child = nodes_[static_cast<std::size_t>(nd.kids[0])];
                if (child.kind == Kind::cls) {
                    emit(prog, {Op::run, static_cast<std::uint32_t>(child.cls), nd.min, nd.max, nd.greedy ? 0u : 1u});
                    return;
                }
                // JavaScript rejects an optional iteration that matches the empty string (ES2023
                // 22.2.2.3.1 RepeatMatcher step 2.b); rather than carry that rule, such repeats
                // are refused. No tokenizer pattern has one.
                if (nd.max > nd.min && nullable(nd.kids[0]))
                    throw ConfigError("regex", moe::detail::cat("an optional repeat of a group that can match "
                                                           "the empty string is not supported, in \"",
                                                           pattern_, "\""));
                if (nd.min > 64 || (nd.max != kInf && nd.max > 64))
                    throw ConfigError("regex", moe::detail::cat("a counted repeat of a group above 64 is not "
                                                           "supported, in \"", pattern_, "\""));
                for (std::uint32_t k = 0; k < nd.min; ++k) compile(nd.kids[0], prog);
                if (nd.max == kInf) {
                    const std::uint32_t loop = here(prog);
                    emit(prog, {Op::split, loop + 1, 0, 0, 0});
                    compile(nd.kids[0], prog);
                    emit(prog, {Op::jmp, loop, 0, 0, 0});
                    fix_split(prog, loop, here(prog), nd.greedy);
                } else {
                    std::vector<std::uint32_t> splits;
                    for (std::uint32_t k = nd.min; k < nd.max; ++k) {
                        splits.push_back(here(prog));
                        emit(prog, {Op::split, here(prog) + 1, 0, 0, 0});
                        compile(nd.kids[0], prog);
                    }
                    for (auto sp : splits) fix_split(prog, sp, here(prog), nd.greedy);
                }
                return;
            }
        }
    }
    // A split at `at` whose body starts at at+1 and whose exit is `exit`: greedy prefers the body.
    void fix_split(std::size_t prog, std::uint32_t at, std::uint32_t exit, bool greedy) {
        Inst& in = programs_[prog][at];
        if (greedy) { in.x = at + 1; in.y = exit; }
        else { in.x = exit; in.y = at + 1; }
    }

    // ---- start sets: which characters can begin a match from each instruction ----------------
    // A split whose preferred branch cannot start with the next character goes straight to the
    // other one, and a branch that cannot start there is never pushed: most alternatives of a
    // tokenizer pattern are ruled out by one bitmap test. The sets are supersets (a lookahead or
    // an anchor passes on its successor's set), so pruning never changes a result.
    struct Start {
        std::bitset<128> ascii;
        std::vector<std::uint32_t> classes;  // non-ASCII: the union of these classes ...
        bool any_other = false;              // ... or anything, when there are too many
        bool empty = false;                  // can match without consuming a character
        bool operator==(const Start&) const = default;
    };
    static void unite(Start& into, const Start& from) {
        into.ascii |= from.ascii;
        into.empty = into.empty || from.empty;
        into.any_other = into.any_other || from.any_other;
        for (auto c : from.classes)
            if (std::find(into.classes.begin(), into.classes.end(), c) == into.classes.end()) into.classes.push_back(c);
        if (into.classes.size() > 8) {
            into.any_other = true;
            into.classes.clear();
        }
        if (into.any_other) into.classes.clear();
    }
    void compute_starts() {
        starts_.resize(programs_.size());
        for (std::size_t p = 0; p < programs_.size(); ++p) {
            const Program& prog = programs_[p];
            std::vector<Start>& st = starts_[p];
            st.assign(prog.size(), Start{});
            for (bool changed = true; changed;) {
                changed = false;
                for (std::size_t k = prog.size(); k-- > 0;) {
                    const Inst& in = prog[k];
                    Start s;
                    switch (in.op) {
                        case Op::cls: case Op::run: {
                            s.ascii = classes_[in.x].ascii;
                            s.classes = {in.x};
                            if (in.op == Op::run && in.y == 0) unite(s, st[k + 1]);
                            break;
                        }
                        case Op::split: s = st[in.x]; unite(s, st[in.y]); break;
                        case Op::jmp: s = st[in.x]; break;
                        case Op::match: s.empty = true; break;
                        case Op::look: case Op::bol: case Op::eol: s = st[k + 1]; break;
                    }
                    if (!(s == st[k])) {
                        st[k] = std::move(s);
                        changed = true;
                    }
                }
            }
        }
    }
    bool can_start(std::size_t prog, std::uint32_t pc, std::u32string_view text, std::size_t pos) const noexcept {
        const Start& s = starts_[prog][pc];
        if (s.empty) return true;
        if (pos >= text.size()) return false;
        const char32_t c = text[pos];
        if (c < 128) return s.ascii[c];
        if (s.any_other) return true;
        for (auto k : s.classes)
            if (classes_[k].contains_other(c)) return true;
        return false;
    }

    // ---- matcher -----------------------------------------------------------------------------
    // Backtracking is exponential on patterns such as (?:a|a)*b or (?:a+)+b (JavaScript's is too).
    // A match attempt that takes more steps than a tokenizer pattern ever needs (linear in the
    // text) restarts with a memo of the (instruction, position) states already explored: a
    // state reached again has failed before, so it fails again, and the attempt is linear in
    // instructions x positions. The answer is the same either way; only the time differs.
    static constexpr std::size_t kMaxMemoBits = std::size_t{1} << 31;  // 256 MiB
    std::size_t run(std::size_t prog_index, std::u32string_view text, std::size_t start, Scratch& s) const {
        const std::size_t budget = 1024 + 32 * (text.size() - start);
        const std::size_t r = run_impl<false>(prog_index, text, start, s, nullptr, budget);
        if (r != kBudget) return r;
        const std::size_t width = text.size() - start + 1;
        const std::size_t states = programs_[prog_index].size() * width;
        if (states / width != programs_[prog_index].size() || states > kMaxMemoBits)
            throw ValueError("regex", moe::detail::cat("matching \"", pattern_.substr(0, 120), "\" against ",
                                                      text.size() - start, " code points backtracks too much (the memo "
                                                      "would need ", states / 8, " bytes)"));
        std::vector<std::uint64_t> memo((states + 63) / 64, 0);
        return run_impl<true>(prog_index, text, start, s, &memo, 0);
    }

    static constexpr std::size_t kBudget = kNoMatch - 1;  // run_impl: the step budget ran out

    template <bool Memo>
    std::size_t run_impl(std::size_t prog_index, std::u32string_view text, std::size_t start, Scratch& s,
                         std::vector<std::uint64_t>* memo, std::size_t budget) const {
        const Program& prog = programs_[prog_index];
        auto& st = s.stack;
        const std::size_t base = st.size();
        std::uint32_t pc = 0;
        std::size_t pos = start;
        const std::size_t n = text.size();
        const std::size_t width = n - start + 1;
        std::size_t steps = 0;
        while (true) {
            bool fail = false;
            const Inst& in = prog[pc];
            if constexpr (Memo) {
                const std::size_t bit = pc * width + (pos - start);
                std::uint64_t& w = (*memo)[bit >> 6];
                const std::uint64_t m = std::uint64_t{1} << (bit & 63);
                if (w & m) fail = true;
                w |= m;
            } else if (++steps > budget) {
                st.resize(base);
                return kBudget;
            }
            if (!fail) switch (in.op) {
                case Op::cls:
                    if (pos < n && classes_[in.x].contains(text[pos])) { ++pos; ++pc; }
                    else fail = true;
                    break;
                case Op::split:
                    if (!can_start(prog_index, in.x, text, pos)) {
                        pc = in.y;
                        break;
                    }
                    if (can_start(prog_index, in.y, text, pos)) st.push_back({in.y, pos, 0, 0});
                    pc = in.x;
                    break;
                case Op::jmp: pc = in.x; break;
                case Op::match:
                    st.resize(base);
                    return pos;
                case Op::run: {
                    const CharClass& cc = classes_[in.x];
                    const std::size_t limit = in.z == kInf ? n : std::min(n, pos + in.z);
                    if (in.lazy == 0) {
                        std::size_t e = pos;
                        while (e < limit && cc.contains(text[e])) ++e;
                        if (e - pos < in.y) { fail = true; break; }
                        const std::size_t lowest = pos + in.y;
                        if (e > lowest) st.push_back({pc + 1, e - 1, lowest, -1});
                        pos = e;
                        ++pc;
                    } else {
                        std::size_t e = pos;
                        while (e < pos + in.y && e < n && cc.contains(text[e])) ++e;
                        if (e - pos < in.y) { fail = true; break; }
                        // Remaining: one more character at a time, while the class allows.
                        if (e < limit && cc.contains(text[e]))
                            st.push_back({pc, e, limit, +1});  // resume: extend by one
                        pos = e;
                        ++pc;
                    }
                    break;
                }
                case Op::look: {
                    const bool found = run(in.x, text, pos, s) != kNoMatch;
                    if (found == (in.y == 1)) fail = true;
                    else ++pc;
                    break;
                }
                case Op::bol: if (pos == 0) ++pc; else fail = true; break;
                case Op::eol: if (pos == n) ++pc; else fail = true; break;
            }
            if (!fail) continue;
            // Backtrack.
            while (true) {
                if (st.size() == base) return kNoMatch;
                auto& e = st.back();
                if (e.step == 0) {
                    pc = e.pc;
                    pos = e.pos;
                    st.pop_back();
                    break;
                }
                if (e.step < 0) {  // greedy run: try pos, then one shorter
                    pc = e.pc;
                    pos = e.pos;
                    if (e.pos > e.low) --e.pos;
                    else st.pop_back();
                    break;
                }
                // lazy run: the entry's pc is the run instruction; extend by one character
                const Inst& r = prog[e.pc];
                const std::size_t p = e.pos;  // text[p] is known to be in the class
                const std::size_t limit = e.low;
                pc = e.pc + 1;
                pos = p + 1;
                if (pos < limit && classes_[r.x].contains(text[pos])) e.pos = pos;
                else st.pop_back();
                break;
            }
        }
    }

    std::string pattern_;
    std::vector<Node> nodes_;
    std::vector<CharClass> classes_;
    std::vector<Program> programs_;
    std::vector<std::vector<Start>> starts_;  // per program, per instruction
};

}  // namespace moe::lm
