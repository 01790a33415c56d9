// moe/core/utf8.hpp - UTF-8: the one definition of well-formed, decoding and encoding.
//
// Well-formed is Unicode's Table 3-7 (no overlong forms, no surrogates, nothing above U+10FFFF).
// decode_utf8 reports an invalid sequence with the length of its maximal subpart (the bytes that
// began a well-formed sequence before it broke off), as the WHATWG TextDecoder does, so callers
// that replace invalid input by U+FFFD replace exactly what a browser or Node would. Used by the
// JSON reader (moe/io/json.hpp) and the text floor (lm/unicode.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

namespace moe::utf8 {

inline constexpr char32_t replacement_character = 0xFFFD;
inline constexpr char32_t max_code_point = 0x10FFFF;

/// One decoded character: the code point (U+FFFD when invalid), its length in bytes.
struct Utf8Char {
    char32_t cp;
    std::uint8_t len;
    bool valid;
};

/// Decodes the character at byte i of s. Invalid input gives {U+FFFD, len, false} with len the
/// length of the maximal subpart (1 to 3 bytes), as TextDecoder does. i >= s.size() gives
/// {U+FFFD, 0, false}.
constexpr Utf8Char decode_utf8(std::string_view s, std::size_t i) noexcept {
    const std::size_t n = s.size();
    if (i >= n) return {replacement_character, 0, false};
    const unsigned b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) return {char32_t(b0), 1, true};
    unsigned need = 0, lo = 0x80, hi = 0xBF;
    char32_t cp = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
        cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        cp = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;        // no overlong forms
        else if (b0 == 0xED) hi = 0x9F;   // no surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        cp = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;        // no overlong forms
        else if (b0 == 0xF4) hi = 0x8F;   // nothing above U+10FFFF
    } else {
        return {replacement_character, 1, false};  // continuation byte, C0, C1, F5-FF
    }
    for (unsigned k = 1; k <= need; ++k) {
        if (i + k >= n) return {replacement_character, std::uint8_t(k), false};
        const unsigned b = static_cast<unsigned char>(s[i + k]);
        if (b < lo || b > hi) return {replacement_character, std::uint8_t(k), false};
        lo = 0x80;
        hi = 0xBF;
        cp = (cp << 6) | (b & 0x3F);
    }
    return {cp, std::uint8_t(need + 1), true};
}

/// Appends cp as UTF-8; a surrogate or cp > U+10FFFF is written as U+FFFD.
inline void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out.push_back(char(cp));
        return;
    }
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > max_code_point) cp = replacement_character;
    char b[4];
    std::size_t n;
    if (cp < 0x800) {
        b[0] = char(0xC0 | (cp >> 6));
        b[1] = char(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = char(0xE0 | (cp >> 12));
        b[1] = char(0x80 | ((cp >> 6) & 0x3F));
        b[2] = char(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = char(0xF0 | (cp >> 18));
        b[1] = char(0x80 | ((cp >> 12) & 0x3F));
        b[2] = char(0x80 | ((cp >> 6) & 0x3F));
        b[3] = char(0x80 | (cp & 0x3F));
        n = 4;
    }
    out.append(b, n);
}

/// Offset of the first byte >= 0x80 in s[i, n), or n; eight bytes at a time at run time.
constexpr std::size_t skip_ascii(std::string_view s, std::size_t i) noexcept {
    const char* p = s.data() + i;
    const char* const end = s.data() + s.size();
    if (!std::is_constant_evaluated()) {
        for (; end - p >= 8; p += 8) {
            std::uint64_t w;
            std::memcpy(&w, p, 8);
            if (w & 0x8080808080808080ull) break;
        }
    }
    while (p != end && static_cast<unsigned char>(*p) < 0x80) ++p;
    return static_cast<std::size_t>(p - s.data());
}

/// Whether s is well-formed UTF-8.
constexpr bool valid_utf8(std::string_view s) noexcept {
    std::size_t i = 0;
    while ((i = skip_ascii(s, i)) < s.size()) {
        const Utf8Char c = decode_utf8(s, i);
        if (!c.valid) return false;
        i += c.len;
    }
    return true;
}

}  // namespace moe::utf8
