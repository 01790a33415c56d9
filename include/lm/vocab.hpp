// lm/vocab.hpp - a tokenizer's vocabulary: token strings <-> ids.
//
// One table serves every model (BPE, WordPiece) and the added tokens. As the reference
// (transformers.js) does, an added token whose content is also a vocabulary string takes that
// string's lookup (string -> id answers the added token's id); id -> string answers each id's own
// string.
//
// The string -> id index is an open-addressing table of (hash tag, id) pairs over the strings
// the vocabulary already stores: a lookup is one hash, usually one probe and one string compare,
// and loading 151k tokens allocates nothing per entry beyond the string itself.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moe/core/error.hpp"

namespace moe::lm {

/// A token id. Vocabularies above 2^31 entries do not exist.
using TokenId = std::int32_t;

/// A fast 64-bit string hash (word-at-a-time multiply-xorshift).
inline std::uint64_t hash_string(std::string_view s) noexcept {
    std::uint64_t h = 0x9E3779B97F4A7C15ull ^ (s.size() * 0xC2B2AE3D27D4EB4Full);
    std::size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
        std::uint64_t w = 0;
        for (std::size_t k = 0; k < 8; ++k) w |= static_cast<std::uint64_t>(static_cast<unsigned char>(s[i + k])) << (8 * k);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
    }
    std::uint64_t w = 0;
    for (std::size_t k = 0; i + k < s.size(); ++k) w |= static_cast<std::uint64_t>(static_cast<unsigned char>(s[i + k])) << (8 * k);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
    return h;
}

/// string -> small integer index over strings the caller keeps (an open-addressing hash table).
/// `key(i)` must return the string of index i for as long as the index is used.
class StringIndex {
public:
    /// Looks `s` up; key(i) gives the string stored for index i.
    template <class Key>
    std::optional<std::int32_t> find(std::string_view s, const Key& key) const noexcept {
        if (slots_.empty()) return std::nullopt;
        const std::uint64_t h = hash_string(s);
        const auto tag = static_cast<std::uint32_t>(h >> 32);
        for (std::size_t p = home(h);; p = (p + 1) & mask_) {
            const Slot& sl = slots_[p];
            if (sl.index < 0) return std::nullopt;
            if (sl.tag == tag && key(sl.index) == s) return sl.index;
        }
    }
    /// Sets s -> index (replacing the index of an equal string).
    template <class Key>
    void set(std::string_view s, std::int32_t index, const Key& key) {
        if ((count_ + 1) * 4 > slots_.size() * 3) grow(key);
        const std::uint64_t h = hash_string(s);
        const auto tag = static_cast<std::uint32_t>(h >> 32);
        for (std::size_t p = home(h);; p = (p + 1) & mask_) {
            Slot& sl = slots_[p];
            if (sl.index < 0) {
                sl = {tag, index};
                ++count_;
                return;
            }
            if (sl.tag == tag && key(sl.index) == s) {
                sl.index = index;
                return;
            }
        }
    }
    void reserve(std::size_t n) {
        std::size_t cap = 16;
        while (cap * 3 < n * 4 + 4) cap *= 2;
        if (cap > slots_.size()) rehash_empty(cap);
    }
    std::size_t size() const noexcept { return count_; }

private:
    struct Slot {
        std::uint32_t tag = 0;
        std::int32_t index = -1;
    };
    void rehash_empty(std::size_t cap) {
        // Only used before any insertion (reserve) or by grow(), which re-inserts.
        slots_.assign(cap, Slot{});
        mask_ = cap - 1;
        shift_ = 64 - static_cast<unsigned>(std::countr_zero(cap));
        count_ = 0;
    }
    // The home slot: the top bits of a Fibonacci-multiplied hash (linear probing clusters on
    // the plain low bits).
    std::size_t home(std::uint64_t h) const noexcept {
        return static_cast<std::size_t>((h * 0x9E3779B97F4A7C15ull) >> shift_);
    }
    template <class Key>
    void grow(const Key& key) {
        std::vector<Slot> old = std::move(slots_);
        rehash_empty(old.empty() ? 16 : old.size() * 2);
        for (const Slot& sl : old)
            if (sl.index >= 0) set(key(sl.index), sl.index, key);
    }

    std::vector<Slot> slots_;
    std::size_t mask_ = 0;
    unsigned shift_ = 64;
    std::size_t count_ = 0;
};

/// token string -> id, and id -> token string.
class Vocab {
private:
    struct Entry {
        std::uint32_t offset, length;  // in arena_
        TokenId id;
    };
    struct KeyOf {
        const Vocab* v;
        std::string_view operator()(std::int32_t e) const noexcept { return v->text_of(e); }
    };
    KeyOf key() const noexcept { return KeyOf{this}; }
    std::string_view text_of(std::int32_t e) const noexcept {
        const Entry& en = entries_[static_cast<std::size_t>(e)];
        return std::string_view(arena_).substr(en.offset, en.length);
    }


public:
    /// Adds (or, for an added token, overrides) `token` -> `id`. Ids may come in any order.
    void set(std::string_view token, TokenId id) {
        check<FormatError>(id >= 0, "vocab", "negative token id ", id, " for \"", token, "\"");
        const auto i = static_cast<std::size_t>(id);
        if (i >= strings_.size()) {
            check<FormatError>(i < (std::size_t{1} << 26), "vocab", "token id ", id, " is implausibly large");
            strings_.resize(i + 1);
            present_.resize(i + 1, 0);
        }
        // The index refers to entries by number; an id whose string changes must not leave the
        // old string findable through a stale slot, so strings live in their own store.
        const auto entry = static_cast<std::int32_t>(entries_.size());
        check<FormatError>(arena_.size() + token.size() < (std::size_t{1} << 32), "vocab", "vocabulary text above 4 GiB");
        entries_.push_back({static_cast<std::uint32_t>(arena_.size()), static_cast<std::uint32_t>(token.size()), id});
        arena_.append(token);
        strings_[i] = entry;
        present_[i] = 1;
        index_.set(token, entry, key());
    }
    /// Adds a vocabulary entry; a string already present is a moe::FormatError (a JSON object
    /// with a duplicate key).
    void add_unique(std::string_view token, TokenId id, std::string_view where) {
        check<FormatError>(!contains(token), where, "duplicate vocabulary entry \"", token, "\"");
        set(token, id);
    }
    /// The id of `token`, if any.
    std::optional<TokenId> find(std::string_view token) const noexcept {
        const auto e = index_.find(token, key());
        if (!e) return std::nullopt;
        return entries_[static_cast<std::size_t>(*e)].id;
    }
    bool contains(std::string_view token) const noexcept { return find(token).has_value(); }
    /// The string of `id` (valid while the vocabulary lives and is not modified); throws
    /// moe::ConfigError for an id outside the vocabulary.
    std::string_view token(TokenId id) const {
        check<ConfigError>(has_id(id), "vocab", "token id ", id, " is not in the vocabulary (size ", size(), ")");
        return text_of(strings_[static_cast<std::size_t>(id)]);
    }
    bool has_id(TokenId id) const noexcept {
        return id >= 0 && static_cast<std::size_t>(id) < strings_.size() && present_[static_cast<std::size_t>(id)];
    }
    /// One past the largest id (the embedding table's row count).
    std::size_t size() const noexcept { return strings_.size(); }
    /// Number of distinct strings.
    std::size_t strings() const noexcept { return index_.size(); }
    void reserve(std::size_t n, std::size_t text_bytes = 0) {
        arena_.reserve(text_bytes);
        entries_.reserve(n);
        strings_.reserve(n);
        present_.reserve(n);
        index_.reserve(n);
    }

private:
    std::string arena_;                // the text of every string ever set, back to back
    std::vector<Entry> entries_;       // every string ever set, with the id it maps to
    std::vector<std::int32_t> strings_;  // id -> entry of its string
    std::vector<std::uint8_t> present_;
    StringIndex index_;
};

}  // namespace moe::lm
