// lm/byte_level.hpp - GPT-2's byte <-> printable code point table (the ByteLevel pre-tokenizer
// and decoder of tokenizer.json).
//
// Bytes 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF stand for themselves; the other 68 map to U+0100 ...
// U+0143 in byte order, so every byte is one printable character and a BPE vocabulary over
// them covers any byte string.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "lm/unicode.hpp"

namespace moe::lm {

struct ByteLevelTable {
    std::array<char32_t, 256> to_char{};
    std::array<std::array<char, 2>, 256> utf8{};   // each mapped char is 1 or 2 UTF-8 bytes
    std::array<std::uint8_t, 256> utf8_len{};
    std::array<std::int16_t, 324> to_byte{};        // mapped code point -> byte (-1: none)

    ByteLevelTable() {
        to_byte.fill(-1);
        unsigned n = 0;
        for (unsigned b = 0; b < 256; ++b) {
            const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            to_char[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
        }
        for (unsigned b = 0; b < 256; ++b) {
            std::string s;
            unicode::append_utf8(s, to_char[b]);
            utf8_len[b] = static_cast<std::uint8_t>(s.size());
            utf8[b] = {s[0], s.size() > 1 ? s[1] : '\0'};
            to_byte[to_char[b]] = static_cast<std::int16_t>(b);
        }
    }
    /// Appends the mapped characters of `bytes` to `out`.
    void map(std::string_view bytes, std::string& out) const {
        for (unsigned char b : bytes) out.append(utf8[b].data(), utf8_len[b]);
    }
    /// The one table (immutable once built; built on first use, thread-safely).
    static const ByteLevelTable& get() {
        static const ByteLevelTable table;
        return table;
    }
};

}  // namespace moe::lm
