// lm/unicode.hpp - the Unicode layer of the tokenizers: character properties, UTF-8 decoding as
// a WHATWG TextDecoder does it, the four normalization forms and JavaScript's toLowerCase.
//
// The reference of the tokenizers is Hugging Face's JavaScript tokenizers, so every answer here
// is the one Node gives: the tables (lm/unicode_data.hpp) are generated from Node's own Unicode
// data by tools/gen_unicode_data.mjs (unicode_version says which), and the ctest fixture
// `unicode_fixture` compares this header with Node code point by code point.
//
// * flags(cp): a bit set of JavaScript regex classes (\p{L}, \p{N}, \s, ...), O(1).
// * decode_utf8 / to_u32 / replace_invalid_utf8: invalid input becomes U+FFFD, one per maximal
//   subpart (Unicode 3.9 "U+FFFD substitution of maximal subparts", the WHATWG Encoding
//   Standard), which is what `new TextDecoder().decode(bytes)` does.
// * nfc / nfd / nfkc / nfkd: UTF-8 in, UTF-8 out (invalid input decoded as above), the full
//   algorithm of UAX #15 with a quick check that copies normalized input (ASCII in 8-byte words).
// * to_lower: String.prototype.toLowerCase (full mappings, Final_Sigma as V8/ICU apply it, no
//   language-specific rules). strip_accents: NFD, then drop \p{Mn} (BERT's normalizer).
//
// Code points above U+10FFFF have the properties of an unassigned code point (flags() ==
// other, category() == Cn). A surrogate code point in a UTF-32 string is an unassigned-like Cs
// code point to normalization, and to_utf8 / append_utf8 write U+FFFD for it (UTF-8 cannot
// encode it). Nothing here throws except std::bad_alloc; there is no state.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>

#include "lm/unicode_data.hpp"
#include "moe/core/utf8.hpp"

namespace moe::lm::unicode {

/// Character classes as JavaScript regexes (with the u flag) see them; flags(cp) is their union.
enum Flag : std::uint16_t {
    letter = 1,             ///< \p{L}
    number = 2,             ///< \p{N}
    whitespace = 4,         ///< \s (WhiteSpace and LineTerminator)
    punctuation = 8,        ///< \p{P}
    symbol = 16,            ///< \p{S}
    mark = 32,              ///< \p{M}
    mark_nonspacing = 64,   ///< \p{Mn}
    control = 128,          ///< \p{Cc}
    format = 256,           ///< \p{Cf}
    separator = 512,        ///< \p{Z}
    other = 1024,           ///< \p{Cn} | \p{Co} | \p{Cs}
    cjk = 2048,             ///< BERT's _is_chinese_char ranges (4E00-9FFF 3400-4DBF 20000-2A6DF
                            ///< 2A700-2B73F 2B740-2B81F 2B820-2CEAF F900-FAFF 2F800-2FA1F)
    lowercase = 4096,       ///< \p{Ll}
    uppercase = 8192,       ///< \p{Lu}
};

/// The 30 general categories, in the UCD's order (L, M, N, P, S, Z, C).
enum class GeneralCategory : std::uint8_t {
    Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No, Pc, Pd, Ps, Pe,
    Pi, Pf, Po, Sm, Sc, Sk, So, Zs, Zl, Zp, Cc, Cf, Cs, Co, Cn,
};

/// The Unicode version of the tables (Node's process.versions.unicode when they were generated).
inline constexpr std::string_view unicode_version{data::unicode_version};
using utf8::max_code_point;
using utf8::replacement_character;

/// The normalization forms.
enum class Form : std::uint8_t { nfc, nfd, nfkc, nfkd };

namespace detail {

// record_info bits (tools/gen_unicode_data.mjs)
inline constexpr std::uint32_t nfd_no = 1u << 13, nfkd_no = 1u << 14, nfc_no = 1u << 15,
                               nfc_maybe = 1u << 16, nfkc_no = 1u << 17, nfkc_maybe = 1u << 18,
                               changes_lower = 1u << 19, sigma_cased = 1u << 20,
                               sigma_ignorable = 1u << 21;

constexpr std::size_t record(char32_t cp) noexcept {
    if (cp > max_code_point) cp = max_code_point;  // an unassigned noncharacter
    constexpr unsigned shift = data::block_shift;
    return data::stage2[(std::size_t(data::stage1[cp >> shift]) << shift) | (cp & ((1u << shift) - 1))];
}
constexpr std::uint32_t info(char32_t cp) noexcept { return data::record_info[record(cp)]; }
/// Rank of the canonical combining class (0 = starter); ranks compare as the classes do.
constexpr unsigned ccc(char32_t cp) noexcept { return (info(cp) >> 5) & 0xFF; }

// Hangul syllables (Unicode 3.12).
inline constexpr char32_t s_base = 0xAC00, l_base = 0x1100, v_base = 0x1161, t_base = 0x11A7;
inline constexpr char32_t l_count = 19, v_count = 21, t_count = 28, n_count = v_count * t_count,
                          s_count = l_count * n_count;

/// Index of key in the sorted table keys[0, n), or n.
constexpr std::size_t find(const std::uint32_t* keys, std::size_t n, char32_t key) noexcept {
    const auto* it = std::lower_bound(keys, keys + n, std::uint32_t(key));
    return (it != keys + n && *it == key) ? std::size_t(it - keys) : n;
}

using utf8::skip_ascii;


}  // namespace detail

// ---- properties -----------------------------------------------------------------------------

/// The Flag bits of cp; `other` for cp > U+10FFFF.
constexpr std::uint16_t flags(char32_t cp) noexcept { return data::record_flags[detail::record(cp)]; }
/// Whether cp has flag f.
constexpr bool has(char32_t cp, Flag f) noexcept { return (flags(cp) & f) != 0; }
/// Whether cp has any of the flags in mask (e.g. letter | number).
constexpr bool has_any(char32_t cp, std::uint16_t mask) noexcept { return (flags(cp) & mask) != 0; }
/// The general category of cp; Cn for cp > U+10FFFF.
constexpr GeneralCategory category(char32_t cp) noexcept {
    return static_cast<GeneralCategory>(detail::info(cp) & 31);
}

// ---- UTF-8 ----------------------------------------------------------------------------------

// The UTF-8 primitives are the core floor's (moe/core/utf8.hpp: one definition of well-formed
// for the JSON reader and the tokenizers).
using utf8::Utf8Char;
using utf8::append_utf8;
using utf8::decode_utf8;
using utf8::valid_utf8;

/// s with every maximal invalid subpart replaced by U+FFFD (TextDecoder's decoding, re-encoded).
inline std::string replace_invalid_utf8(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    std::size_t i = 0;
    while (i < s.size()) {
        const std::size_t j = detail::skip_ascii(s, i);
        out.append(s.data() + i, j - i);
        if ((i = j) >= s.size()) break;
        const Utf8Char c = decode_utf8(s, i);
        if (c.valid) out.append(s.data() + i, c.len);
        else append_utf8(out, replacement_character);
        i += c.len;
    }
    return out;
}

/// The code points of s (invalid subparts as U+FFFD, as decode_utf8).
inline std::u32string to_u32(std::string_view s) {
    std::u32string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        const Utf8Char c = decode_utf8(s, i);
        out.push_back(c.cp);
        i += c.len;
    }
    return out;
}

/// s as UTF-8 (surrogates and values above U+10FFFF as U+FFFD).
inline std::string to_utf8(std::u32string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char32_t cp : s) append_utf8(out, cp);
    return out;
}

// ---- normalization --------------------------------------------------------------------------

namespace detail {

/// Appends the full decomposition of cp (canonical, or compatibility when compat) to out.
inline void decompose(char32_t cp, bool compat, std::u32string& out) {
    const std::uint32_t in = info(cp);
    if (!(in & (compat ? nfkd_no : nfd_no))) {
        out.push_back(cp);
        return;
    }
    if (cp >= s_base && cp < s_base + s_count) {
        const char32_t s = cp - s_base;
        out.push_back(l_base + s / n_count);
        out.push_back(v_base + (s % n_count) / t_count);
        if (s % t_count != 0) out.push_back(t_base + s % t_count);
        return;
    }
    constexpr std::size_t n = std::size(data::decomp_keys);
    const std::size_t k = find(data::decomp_keys, n, cp);
    if (k == n) {  // unreachable with consistent tables
        out.push_back(cp);
        return;
    }
    const std::uint32_t m = compat ? data::decomp_compat[k] : data::decomp_canonical[k];
    out.append(data::pool + (m >> 5), m & 31);
}

/// Canonical ordering of s[from, end): each run of non-starters sorted (stably) by class.
inline void canonical_order(std::u32string& s, std::size_t from) {
    const std::size_t n = s.size();
    std::size_t i = from;
    while (i < n) {
        if (ccc(s[i]) == 0) {
            ++i;
            continue;
        }
        std::size_t j = i + 1;
        while (j < n && ccc(s[j]) != 0) ++j;
        if (j - i <= 16) {
            for (std::size_t a = i + 1; a < j; ++a) {  // insertion sort: stable
                const char32_t c = s[a];
                const unsigned k = ccc(c);
                std::size_t b = a;
                for (; b > i && k < ccc(s[b - 1]); --b) s[b] = s[b - 1];
                s[b] = c;
            }
        } else {  // a long run (adversarial input): a stable counting sort, linear
            std::size_t start[257] = {};
            for (std::size_t a = i; a < j; ++a) ++start[ccc(s[a]) + 1];
            for (std::size_t k = 1; k < 257; ++k) start[k] += start[k - 1];
            const std::u32string run(s, i, j - i);
            for (char32_t c : run) s[i + start[ccc(c)]++] = c;
        }
        i = j;
    }
}

/// The primary composite of (a, b), or 0 when there is none.
constexpr char32_t compose_pair(char32_t a, char32_t b) noexcept {
    if (a >= l_base && a < l_base + l_count && b >= v_base && b < v_base + v_count)
        return s_base + ((a - l_base) * v_count + (b - v_base)) * t_count;
    if (a >= s_base && a < s_base + s_count && (a - s_base) % t_count == 0 && b > t_base &&
        b < t_base + t_count)
        return a + (b - t_base);
    constexpr std::size_t n = std::size(data::comp_keys_first);
    const auto* first = data::comp_keys_first;
    const auto* lo = std::lower_bound(first, first + n, std::uint32_t(a));
    const auto* hi = std::upper_bound(lo, first + n, std::uint32_t(a));
    if (lo == hi) return 0;
    const std::size_t l = std::size_t(lo - first), h = std::size_t(hi - first);
    const auto* second = data::comp_keys_second;
    const auto* it = std::lower_bound(second + l, second + h, std::uint32_t(b));
    return (it != second + h && *it == b) ? char32_t(data::comp_values[it - second]) : 0;
}

/// Canonical composition of s[from, end) (which is decomposed and canonically ordered).
inline void compose(std::u32string& s, std::size_t from) {
    const std::size_t n = s.size();
    if (n - from < 2) return;
    std::size_t starter = from;
    unsigned last = ccc(s[from]);
    if (last != 0) last = 256;  // no starter yet: nothing composes
    std::size_t out = from + 1;
    for (std::size_t i = from + 1; i < n; ++i) {
        const char32_t c = s[i];
        const std::uint32_t in = info(c);
        const unsigned cls = (in >> 5) & 0xFF;
        if ((in & nfc_maybe) && (last < cls || last == 0) && last != 256) {
            if (const char32_t comp = compose_pair(s[starter], c)) {
                s[starter] = comp;
                continue;
            }
        }
        if (cls == 0) {
            starter = out;
            last = 0;
        } else {
            // a non-starter after a starter it could not join; with no starter, still blocked
            if (last != 256) last = cls;
        }
        s[out++] = c;
    }
    s.resize(out);
}

inline void normalize_tail(std::u32string& s, std::size_t from, Form f) {
    canonical_order(s, from);
    if (f == Form::nfc || f == Form::nfkc) compose(s, from);
}

}  // namespace detail

/// Whether s is certainly in form f (UAX #15 quick check, "yes"): well-formed UTF-8, no
/// character that the form changes or that may compose with the one before, classes in order.
/// false means "no or maybe".
inline bool quick_check(std::string_view s, Form f) noexcept {
    using namespace detail;
    const std::uint32_t stop = f == Form::nfc    ? (nfc_no | nfc_maybe)
                               : f == Form::nfd  ? nfd_no
                               : f == Form::nfkc ? (nfkc_no | nfkc_maybe)
                                                 : nfkd_no;
    unsigned last = 0;
    std::size_t i = 0;
    while (i < s.size()) {
        const std::size_t j = skip_ascii(s, i);
        if (j != i) {
            last = 0;
            if ((i = j) >= s.size()) break;
        }
        const Utf8Char c = decode_utf8(s, i);
        if (!c.valid) return false;
        const std::uint32_t in = info(c.cp);
        const unsigned cls = (in >> 5) & 0xFF;
        if ((in & stop) || (cls != 0 && last > cls)) return false;
        last = cls;
        i += c.len;
    }
    return true;
}

/// s in form f (UTF-8; invalid subparts become U+FFFD first, as TextDecoder would).
inline std::string normalize(std::string_view s, Form f) {
    using namespace detail;
    const bool compat = f == Form::nfkc || f == Form::nfkd;
    const std::uint32_t stop = f == Form::nfc    ? (nfc_no | nfc_maybe)
                               : f == Form::nfd  ? nfd_no
                               : f == Form::nfkc ? (nfkc_no | nfkc_maybe)
                                                 : nfkd_no;
    // Quick check; `safe` is the last starter that cannot combine with what precedes it: the
    // normalization of s is s[0, safe) + the normalization of s[safe, end).
    std::size_t i = 0, safe = 0;
    unsigned last = 0;
    bool ok = true;
    while (i < s.size()) {
        const std::size_t j = skip_ascii(s, i);
        if (j != i) {
            safe = j - 1;
            last = 0;
            if ((i = j) >= s.size()) break;
        }
        const Utf8Char c = decode_utf8(s, i);
        if (!c.valid) {
            ok = false;
            break;
        }
        const std::uint32_t in = info(c.cp);
        const unsigned cls = (in >> 5) & 0xFF;
        if ((in & stop) || (cls != 0 && last > cls)) {
            ok = false;
            break;
        }
        if (cls == 0) safe = i;
        last = cls;
        i += c.len;
    }
    if (ok) return std::string(s);

    std::u32string buf;
    buf.reserve(s.size() - safe + 8);
    for (std::size_t k = safe; k < s.size();) {
        const Utf8Char c = decode_utf8(s, k);
        decompose(c.cp, compat, buf);
        k += c.len;
    }
    normalize_tail(buf, 0, f);
    std::string out;
    out.reserve(s.size() + s.size() / 4);
    out.append(s.data(), safe);
    for (char32_t cp : buf) append_utf8(out, cp);
    return out;
}

/// s in form f (UTF-32).
inline std::u32string normalize(std::u32string_view s, Form f) {
    const bool compat = f == Form::nfkc || f == Form::nfkd;
    std::u32string buf;
    buf.reserve(s.size() + 8);
    for (char32_t cp : s) detail::decompose(cp, compat, buf);
    detail::normalize_tail(buf, 0, f);
    return buf;
}

inline std::string nfc(std::string_view s) { return normalize(s, Form::nfc); }
inline std::string nfd(std::string_view s) { return normalize(s, Form::nfd); }
inline std::string nfkc(std::string_view s) { return normalize(s, Form::nfkc); }
inline std::string nfkd(std::string_view s) { return normalize(s, Form::nfkd); }
inline std::u32string nfc(std::u32string_view s) { return normalize(s, Form::nfc); }
inline std::u32string nfd(std::u32string_view s) { return normalize(s, Form::nfd); }
inline std::u32string nfkc(std::u32string_view s) { return normalize(s, Form::nfkc); }
inline std::u32string nfkd(std::u32string_view s) { return normalize(s, Form::nfkd); }

// ---- case -----------------------------------------------------------------------------------

/// String.prototype.toLowerCase of s (UTF-8; invalid subparts become U+FFFD): full lowercase
/// mappings (U+0130 -> "i\u0307"), U+03A3 -> final ς when preceded by a cased letter and not
/// followed by one (case-ignorable characters skipped, as ICU's root locale does), σ otherwise.
inline std::string to_lower(std::string_view s) {
    using namespace detail;
    std::string out;
    out.reserve(s.size());
    const std::size_t n = s.size();
    if (skip_ascii(s, 0) == n) {
        for (char ch : s) out.push_back(static_cast<unsigned char>(ch - 'A') < 26u ? char(ch + 32) : ch);
        return out;
    }
    bool after_cased = false;  // Final_Sigma: a cased letter, then case-ignorables, precede
    for (std::size_t i = 0; i < n;) {
        const Utf8Char c = decode_utf8(s, i);
        const std::uint32_t in = info(c.cp);
        if (!(in & changes_lower)) {
            if (c.valid) out.append(s.data() + i, c.len);
            else append_utf8(out, replacement_character);
        } else if (c.cp == 0x03A3) {
            bool final_sigma = false;
            if (after_cased) {
                final_sigma = true;  // unless a cased letter follows the case-ignorables
                for (std::size_t k = i + c.len; k < n;) {
                    const Utf8Char d = decode_utf8(s, k);
                    const std::uint32_t din = info(d.cp);
                    if (din & sigma_ignorable) {
                        k += d.len;
                        continue;
                    }
                    if (din & sigma_cased) final_sigma = false;
                    break;
                }
            }
            append_utf8(out, final_sigma ? 0x03C2 : 0x03C3);
        } else {
            constexpr std::size_t nk = std::size(data::lower_keys);
            const std::size_t k = find(data::lower_keys, nk, c.cp);
            if (k == nk) {
                append_utf8(out, c.cp);  // unreachable with consistent tables
            } else {
                const std::uint32_t m = data::lower_values[k];
                for (std::uint32_t j = 0; j < (m & 31); ++j) append_utf8(out, data::pool[(m >> 5) + j]);
            }
        }
        if (!(in & sigma_ignorable)) after_cased = (in & sigma_cased) != 0;
        i += c.len;
    }
    return out;
}

/// BERT's accent stripping: NFD, then every \p{Mn} removed (UTF-8 in and out).
inline std::string strip_accents(std::string_view s) {
    if (detail::skip_ascii(s, 0) == s.size()) return std::string(s);
    std::u32string buf;
    buf.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        const Utf8Char c = decode_utf8(s, i);
        detail::decompose(c.cp, false, buf);
        i += c.len;
    }
    detail::canonical_order(buf, 0);
    std::string out;
    out.reserve(s.size());
    for (char32_t cp : buf)
        if (category(cp) != GeneralCategory::Mn) append_utf8(out, cp);
    return out;
}

}  // namespace moe::lm::unicode
