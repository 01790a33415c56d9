// lm/bpe.hpp - the BPE model of tokenizer.json: merges by rank, byte fallback, unknown tokens.
//
// A piece (one pre-tokenized word) starts as its code points; the adjacent pair with the lowest
// merge rank is merged, the leftmost first among equal ranks, until no pair has a rank; each
// resulting symbol becomes its vocabulary id, or its bytes as <0xNN> tokens (byte_fallback), or
// the unknown token. This is the reference's algorithm (transformers.js BPE.bpe: a priority queue
// keyed by rank plus position), written over interned symbol ids instead of strings: every string
// a merge mentions (its two parts and their concatenation) is interned once at load time, so a
// merge is one hash lookup of two integers.
//
// Options read from the file: unk_token, fuse_unk, byte_fallback, ignore_merges (a piece that
// is itself a vocabulary string is emitted whole), end_of_word_suffix. `dropout` (random merges)
// and a non-empty continuing_subword_prefix are refused: the first is not deterministic, the
// second the reference ignores (so no reference defines its meaning).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <functional>
#include <cstdint>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lm/byte_level.hpp"
#include "lm/unicode.hpp"
#include "lm/vocab.hpp"
#include "moe/core/error.hpp"

namespace moe::lm {

/// What the BPE model reads from tokenizer.json's "model" object (besides vocab and merges).
struct BpeOptions {
    std::optional<std::string> unk_token;
    bool fuse_unk = false;
    bool byte_fallback = false;
    bool ignore_merges = false;
    std::string end_of_word_suffix;
};

/// piece -> its token ids: an open-addressing table over two arenas (no allocation per entry).
/// When it holds `capacity` entries it starts over (a bounded cache, as the reference's).
class WordCache {
public:
    WordCache() : WordCache(std::size_t{1} << 17) {}
    /// Holds at most `capacity` entries; the table starts small and doubles as it fills, so a
    /// workspace made for one short text costs nothing up front.
    explicit WordCache(std::size_t capacity) : capacity_(capacity) {}
    /// The cached ids of `key`, or nullptr; `hash` is set either way (for insert()).
    const TokenId* find(std::string_view key, std::uint64_t& hash, std::size_t& count) const noexcept {
        hash = hash_string(key);
        if (hash == 0) hash = 1;  // 0 marks an empty slot
        if (slots_.empty()) return nullptr;
        for (std::size_t p = home(hash);; p = (p + 1) & mask_) {
            const Slot& s = slots_[p];
            if (s.hash == 0) return nullptr;
            if (s.hash == hash && s.key_len == key.size() && std::string_view(keys_).substr(s.key_off, s.key_len) == key) {
                count = s.ids_len;
                return ids_.data() + s.ids_off;
            }
        }
    }
    void insert(std::string_view key, std::uint64_t hash, const TokenId* ids, std::size_t n) {
        if (count_ >= capacity_ || keys_.size() + key.size() > (std::size_t{1} << 31)) clear();
        if ((count_ + 1) * 2 > slots_.size()) grow();
        std::size_t p = home(hash);
        while (slots_[p].hash != 0) p = (p + 1) & mask_;
        slots_[p] = {hash, static_cast<std::uint32_t>(keys_.size()), static_cast<std::uint32_t>(key.size()),
                     static_cast<std::uint32_t>(ids_.size()), static_cast<std::uint32_t>(n)};
        keys_.append(key);
        ids_.insert(ids_.end(), ids, ids + n);
        ++count_;
    }
    void clear() {
        std::fill(slots_.begin(), slots_.end(), Slot{});
        keys_.clear();
        ids_.clear();
        count_ = 0;
    }
    std::size_t size() const noexcept { return count_; }

private:
    // The home slot: the top bits of a Fibonacci-multiplied hash (linear probing clusters on
    // the plain low bits).
    std::size_t home(std::uint64_t hash) const noexcept {
        return static_cast<std::size_t>((hash * 0x9E3779B97F4A7C15ull) >> shift_);
    }
    void grow() {
        std::vector<Slot> old = std::move(slots_);
        slots_.assign(old.empty() ? 256 : old.size() * 2, Slot{});
        mask_ = slots_.size() - 1;
        shift_ = 64 - static_cast<unsigned>(std::countr_zero(slots_.size()));
        for (const Slot& o : old) {
            if (o.hash == 0) continue;
            std::size_t p = home(o.hash);
            while (slots_[p].hash != 0) p = (p + 1) & mask_;
            slots_[p] = o;
        }
    }
    struct Slot {
        std::uint64_t hash = 0;  // 0: empty
        std::uint32_t key_off = 0, key_len = 0, ids_off = 0, ids_len = 0;
    };
    std::vector<Slot> slots_;
    std::size_t mask_ = 0;
    unsigned shift_ = 64;
    std::string keys_;
    std::vector<TokenId> ids_;
    std::size_t count_ = 0;
    std::size_t capacity_;
};

/// Per-thread memory of the BPE model: its word cache and merge scratch.
struct BpeScratch {
    struct Sym {
        std::int32_t sym;    // interned symbol id, or -1: a string no merge or token knows
        std::int32_t prev, next;
        std::uint32_t begin, end;  // byte range in the piece
    };
    struct Cand {
        std::uint32_t rank;
        std::uint32_t left;   // index of the left symbol (its position breaks ties: leftmost first)
        std::int32_t left_sym, right_sym;
        bool operator>(const Cand& o) const noexcept {
            return rank != o.rank ? rank > o.rank : left > o.left;
        }
    };
    std::vector<Sym> syms;
    std::vector<Cand> heap;
    std::string mapped;  // a byte-level piece as its printable characters
    WordCache cache;
    std::size_t cache_hits = 0, cache_misses = 0;
};

class Bpe {
public:
    Bpe() = default;

    /// Starts a model over `vocab` (which must already hold the added tokens' overrides, as the
    /// reference's lookups see them, and must outlive the model). Then add_merge() for each merge
    /// in rank order and finish() with the options.
    explicit Bpe(const Vocab& vocab) : vocab_(&vocab), extra_base_(static_cast<std::int32_t>(vocab.size())) {}

    /// Adds the merge of rank merges() (its position in the file): `a` + `b`. A pair listed
    /// twice takes its last rank, as the reference's Map does.
    void add_merge(std::string_view a, std::string_view b) {
        check<FormatError>(!a.empty() && !b.empty(), "tokenizer.json: model.merges", "merge ", count_,
                           " has an empty part");
        const std::int32_t sa = intern(a), sb = intern(b);
        joined_.assign(a).append(b);
        const std::int32_t sm = intern(joined_);
        merges_.set(key(sa, sb), Merge{count_++, sm});
    }
    void reserve_merges(std::size_t n) { merges_.reserve(n); }
    std::size_t merges() const noexcept { return count_; }

    void finish(BpeOptions opt) {
        opt_ = std::move(opt);
        if (opt_.unk_token) {
            const auto id = vocab_->find(*opt_.unk_token);
            check<FormatError>(id.has_value(), "tokenizer.json: model", "unk_token \"", *opt_.unk_token,
                               "\" is not in the vocabulary");
            unk_ = *id;
        }
        for (unsigned b = 0; b < 256; ++b) {
            const char name[6] = {'<', '0', 'x', hexdigit(b >> 4), hexdigit(b & 15), '>'};
            const auto id = vocab_->find(std::string_view(name, 6));
            byte_tokens_[b] = id ? *id : -1;
        }
        // Single code points (the symbols every piece starts from), U+0000..U+07FF in a table.
        std::string s;
        for (char32_t cp = 0; cp < kSmall; ++cp) {
            s.clear();
            unicode::append_utf8(s, cp);
            small_[cp] = lookup_symbol(s);
        }
        joined_ = std::string();
    }

    const BpeOptions& options() const noexcept { return opt_; }
    std::optional<TokenId> unk_id() const noexcept {
        return unk_ >= 0 ? std::optional<TokenId>(unk_) : std::nullopt;
    }

    /// Takes pieces as raw bytes and maps them through GPT-2's byte table itself (what a final
    /// ByteLevel pre-tokenizer step would have done): the cache is then keyed by the raw piece,
    /// and a piece starts as one symbol per byte, without decoding the mapped characters.
    void set_byte_level_input(bool on) {
        byte_input_ = on;
        const auto& table = ByteLevelTable::get();
        std::string s;
        for (unsigned b = 0; b < 256; ++b) {
            s.assign(table.utf8[b].data(), table.utf8_len[b]);
            byte_sym_[b] = lookup_symbol(s);
        }
    }
    bool byte_level_input() const noexcept { return byte_input_; }

    /// Appends the tokens of one piece (UTF-8, or raw bytes with set_byte_level_input) to `out`.
    void encode(std::string_view piece, std::vector<TokenId>& out, BpeScratch& s) const {
        if (piece.empty()) return;
        std::uint64_t hash = 0;
        std::size_t n = 0;
        if (const TokenId* hit = s.cache.find(piece, hash, n)) {
            ++s.cache_hits;
            out.insert(out.end(), hit, hit + n);
            return;
        }
        ++s.cache_misses;
        const std::size_t first = out.size();
        std::string_view text = piece;  // the piece as the vocabulary spells it
        if (byte_input_) {
            s.mapped.clear();
            ByteLevelTable::get().map(piece, s.mapped);
            text = s.mapped;
        }
        if (opt_.ignore_merges) {
            if (const auto id = vocab_->find(text)) {
                out.push_back(*id);
                s.cache.insert(piece, hash, out.data() + first, 1);
                return;
            }
        }
        if (byte_input_ && opt_.end_of_word_suffix.empty()) {
            merge_bytes(piece, s);
            for (std::int32_t i = 0; i >= 0; i = s.syms[static_cast<std::size_t>(i)].next) {
                const auto& y = s.syms[static_cast<std::size_t>(i)];
                if (y.sym >= 0 && y.sym < extra_base_) out.push_back(y.sym);
                else emit(y.sym, mapped_range(piece, y.begin, y.end), false, out);
            }
        } else {
            merge(text, s);
            for (std::int32_t i = 0; i >= 0; i = s.syms[static_cast<std::size_t>(i)].next) {
                const auto& y = s.syms[static_cast<std::size_t>(i)];
                emit(y.sym, text.substr(y.begin, y.end - y.begin), y.next < 0, out);
            }
        }
        s.cache.insert(piece, hash, out.data() + first, out.size() - first);
    }

    /// Folds runs of unknown tokens in out[from..] into one (fuse_unk), as the reference does
    /// over one section's tokens.
    void fuse_unknowns(std::vector<TokenId>& out, std::size_t from) const {
        if (!opt_.fuse_unk || unk_ < 0) return;
        std::size_t w = from;
        for (std::size_t r = from; r < out.size(); ++r) {
            if (out[r] == unk_ && w > from && out[w - 1] == unk_) continue;
            out[w++] = out[r];
        }
        out.resize(w);
    }

private:
    struct Merge {
        std::uint32_t rank;
        std::int32_t result;
    };
    static constexpr char32_t kSmall = 0x800;
    static constexpr char hexdigit(unsigned v) { return static_cast<char>(v < 10 ? '0' + v : 'A' + v - 10); }
    static std::uint64_t key(std::int32_t a, std::int32_t b) noexcept {
        return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
    }
    /// (left, right) -> Merge: open addressing, linear probing.
    class MergeMap {
    public:
        void reserve(std::size_t n) {
            std::size_t cap = 16;
            while (cap * 3 < n * 4) cap *= 2;
            slots_.assign(cap, Slot{});
            mask_ = cap - 1;
            count_ = 0;
        }
        void set(std::uint64_t k, Merge m) {
            if ((count_ + 1) * 4 > slots_.size() * 3) {
                std::vector<Slot> old = std::move(slots_);
                slots_.assign(old.size() * 2, Slot{});
                mask_ = slots_.size() - 1;
                count_ = 0;
                for (const Slot& s : old) if (s.merge.result >= 0) set(s.key, s.merge);
            }
            for (std::size_t p = mix(k) & mask_;; p = (p + 1) & mask_) {
                Slot& s = slots_[p];
                if (s.merge.result < 0) { s = {k, m}; ++count_; return; }
                if (s.key == k) { s.merge = m; return; }  // listed twice: the last rank wins
            }
        }
        const Merge* find(std::uint64_t k) const noexcept {
            for (std::size_t p = mix(k) & mask_;; p = (p + 1) & mask_) {
                const Slot& s = slots_[p];
                if (s.merge.result < 0) return nullptr;
                if (s.key == k) return &s.merge;
            }
        }

    private:
        struct Slot {  // 16 bytes; an empty slot has result -1
            std::uint64_t key = 0;
            Merge merge{0, -1};
        };
        static std::size_t mix(std::uint64_t k) noexcept {
            k ^= k >> 33;
            k *= 0xff51afd7ed558ccdull;
            k ^= k >> 33;
            return static_cast<std::size_t>(k);
        }
        std::vector<Slot> slots_ = std::vector<Slot>(16);
        std::size_t mask_ = 15;
        std::size_t count_ = 0;
    };

    auto extra_key() const noexcept {
        return [this](std::int32_t i) -> std::string_view { return extra_strings_[static_cast<std::size_t>(i)]; };
    }
    std::int32_t lookup_symbol(std::string_view s) const {
        if (const auto id = vocab_->find(s)) return *id;
        const auto e = extra_.find(s, extra_key());
        return e ? extra_base_ + *e : -1;
    }
    std::int32_t intern(std::string_view s) {
        if (const auto id = vocab_->find(s)) return *id;
        if (const auto e = extra_.find(s, extra_key())) return extra_base_ + *e;
        const auto e = static_cast<std::int32_t>(extra_strings_.size());
        extra_strings_.emplace_back(s);
        extra_.set(s, e, extra_key());
        return extra_base_ + e;
    }
    std::int32_t symbol_of_char(std::string_view piece, std::size_t b, std::size_t e) const {
        const auto d = unicode::decode_utf8(piece, b);
        if (d.cp < kSmall && e - b == d.len) return small_[d.cp];
        return lookup_symbol(piece.substr(b, e - b));
    }

    void push_candidate(BpeScratch& s, std::int32_t left) const {
        const auto& l = s.syms[static_cast<std::size_t>(left)];
        if (l.next < 0 || l.sym < 0) return;
        const auto& r = s.syms[static_cast<std::size_t>(l.next)];
        if (r.sym < 0) return;
        const Merge* m = merges_.find(key(l.sym, r.sym));
        if (!m) return;
        s.heap.push_back({m->rank, static_cast<std::uint32_t>(left), l.sym, r.sym});
        std::push_heap(s.heap.begin(), s.heap.end(), std::greater<>{});
    }

    // Leaves the merged symbols of `piece` as a linked list in s.syms starting at index 0.
    void merge(std::string_view piece, BpeScratch& s) const {
        s.syms.clear();
        s.heap.clear();
        std::size_t i = 0;
        while (i < piece.size()) {
            const auto d = unicode::decode_utf8(piece, i);
            const std::size_t e = i + d.len;
            const auto n = static_cast<std::int32_t>(s.syms.size());
            s.syms.push_back({0, n - 1, n + 1, static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(e)});
            i = e;
        }
        s.syms.back().next = -1;
        for (std::size_t k = 0; k < s.syms.size(); ++k) {
            auto& y = s.syms[k];
            if (k + 1 == s.syms.size() && !opt_.end_of_word_suffix.empty()) {
                std::string last(piece.substr(y.begin, y.end - y.begin));
                last += opt_.end_of_word_suffix;
                y.sym = lookup_symbol(last);
            } else {
                y.sym = symbol_of_char(piece, y.begin, y.end);
            }
        }
        run_merges(s);
    }

    // Merges the symbols in s.syms (a linked list from index 0) by rank, leftmost first.
    void run_merges(BpeScratch& s) const {
        s.heap.clear();
        if (s.syms.size() == 1) return;
        for (std::int32_t k = 0; k + 1 < static_cast<std::int32_t>(s.syms.size()); ++k) push_candidate(s, k);
        while (!s.heap.empty()) {
            std::pop_heap(s.heap.begin(), s.heap.end(), std::greater<>{});
            const BpeScratch::Cand c = s.heap.back();
            s.heap.pop_back();
            auto& l = s.syms[c.left];
            if (l.sym != c.left_sym || l.next < 0) continue;  // stale: the left symbol changed
            auto& r = s.syms[static_cast<std::size_t>(l.next)];
            if (r.sym != c.right_sym) continue;              // stale: the right symbol changed
            l.sym = merges_.find(key(l.sym, r.sym))->result;
            l.end = r.end;
            const std::int32_t after = r.next;
            r.sym = -2;  // dead
            l.next = after;
            if (after >= 0) s.syms[static_cast<std::size_t>(after)].prev = static_cast<std::int32_t>(c.left);
            if (l.prev >= 0) push_candidate(s, l.prev);
            push_candidate(s, static_cast<std::int32_t>(c.left));
        }
    }

    static std::string mapped_range(std::string_view bytes, std::size_t b, std::size_t e) {
        std::string m;
        ByteLevelTable::get().map(bytes.substr(b, e - b), m);
        return m;
    }

    // merge() for raw bytes under set_byte_level_input: one starting symbol per byte.
    void merge_bytes(std::string_view piece, BpeScratch& s) const {
        s.syms.resize(piece.size());
        for (std::size_t k = 0; k < piece.size(); ++k) {
            const auto n = static_cast<std::int32_t>(k);
            s.syms[k] = {byte_sym_[static_cast<unsigned char>(piece[k])], n - 1, n + 1, static_cast<std::uint32_t>(k),
                         static_cast<std::uint32_t>(k + 1)};
        }
        s.syms.back().next = -1;
        run_merges(s);
    }

    void emit(std::int32_t sym, std::string_view text, bool last, std::vector<TokenId>& out) const {
        if (sym >= 0 && sym < extra_base_) {
            out.push_back(sym);
            return;
        }
        // A symbol that is no vocabulary token (a character no merge reaches, or an intermediate
        // merge result missing from the vocabulary).
        std::string str;
        if (sym >= extra_base_) {
            str = extra_strings_[static_cast<std::size_t>(sym - extra_base_)];
        } else {
            str = std::string(text);
            if (last) str += opt_.end_of_word_suffix;
        }
        if (opt_.byte_fallback) {
            bool all = true;
            for (unsigned char b : str) all = all && byte_tokens_[b] >= 0;
            if (all) {
                for (unsigned char b : str) out.push_back(byte_tokens_[b]);
                return;
            }
        }
        check<ConfigError>(unk_ >= 0, "tokenizer: BPE", "no token for \"", str,
                           "\" and the model has no unk_token (nor byte fallback for it)");
        out.push_back(unk_);
    }

    const Vocab* vocab_ = nullptr;
    std::uint32_t count_ = 0;
    std::string joined_;  // scratch of add_merge
    BpeOptions opt_;
    TokenId unk_ = -1;
    std::int32_t extra_base_ = 0;
    StringIndex extra_;                        // strings merges mention that are no token
    std::vector<std::string> extra_strings_;
    MergeMap merges_;
    std::int32_t byte_tokens_[256] = {};
    bool byte_input_ = false;
    std::int32_t byte_sym_[256] = {};
    std::vector<std::int32_t> small_ = std::vector<std::int32_t>(kSmall, -1);
};

}  // namespace moe::lm
