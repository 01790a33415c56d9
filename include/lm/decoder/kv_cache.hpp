// lm/decoder/kv_cache.hpp - KvCache<T>: every layer's keys and values for several independent
// sequences, preallocated for max_seq positions.
//
//   KvCache<float> / KvCache<bf16>(layers, kv_heads, head_dim, slots, max_seq)
//   length(slot), reset(slot), reset_all(), truncate(slot, n), copy_slot(from, to)
//   keys(layer, slot, head) / values(...)    [max_seq, head_dim] rows, the first length(slot) valid
//
// A slot is one sequence: its own length, its own rows; a batch step may run any subset of the
// slots, each with its own number of new tokens (CausalLM::forward). Keys are stored after the
// rotary embedding, as Hugging Face's cache holds them. T = bf16 halves the memory (values are
// rounded to nearest even when written; attention accumulates in fp32 either way). Layout per
// layer: [slots, kv_heads, max_seq, head_dim], so one (slot, head)'s keys are one contiguous
// block. Writing past max_seq is a ConfigError naming the slot and the lengths.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"

namespace moe::lm {

template <class T = float>
class KvCache {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>, "KvCache holds float or bf16");

public:
    using value_type = T;

    KvCache() = default;
    KvCache(index_t layers, index_t kv_heads, index_t head_dim, index_t slots, index_t max_seq)
        : L_(layers), H_(kv_heads), D_(head_dim), S_(slots), N_(max_seq), len_(static_cast<std::size_t>(slots), 0) {
        check<ConfigError>(layers > 0 && kv_heads > 0 && head_dim > 0 && slots > 0 && max_seq > 0, "KvCache",
                           "sizes must be positive (layers ", layers, ", kv heads ", kv_heads, ", head dim ", head_dim,
                           ", slots ", slots, ", max_seq ", max_seq, ")");
        const auto n = static_cast<std::size_t>(layers * slots * kv_heads * max_seq * head_dim);
        k_.assign(n, T{});
        v_.assign(n, T{});
    }

    index_t layers() const noexcept { return L_; }
    index_t kv_heads() const noexcept { return H_; }
    index_t head_dim() const noexcept { return D_; }
    index_t slots() const noexcept { return S_; }
    index_t max_seq() const noexcept { return N_; }
    /// Bytes held (keys and values).
    std::size_t bytes() const noexcept { return (k_.size() + v_.size()) * sizeof(T); }

    /// Positions filled in `slot`.
    index_t length(index_t slot) const { return len_[check_slot(slot)]; }
    /// Forgets a sequence (its slot can take a new one).
    void reset(index_t slot) { len_[check_slot(slot)] = 0; }
    void reset_all() { std::fill(len_.begin(), len_.end(), 0); }
    /// Keeps the first n positions of `slot` (n <= length): rewinds a sequence.
    void truncate(index_t slot, index_t n) {
        const std::size_t s = check_slot(slot);
        check<ConfigError>(n >= 0 && n <= len_[s], "KvCache::truncate", "slot ", slot, " holds ", len_[s],
                           " positions; cannot keep ", n);
        len_[s] = n;
    }

    /// Makes slot `to` a copy of slot `from`: its length and its valid rows (beam search moves a
    /// continued beam's cache this way).
    void copy_slot(index_t from, index_t to) {
        const std::size_t f = check_slot(from), t = check_slot(to);
        if (f == t) return;
        const auto n = static_cast<std::size_t>(len_[f] * D_);
        for (index_t l = 0; l < L_; ++l)
            for (index_t h = 0; h < H_; ++h) {
                std::copy_n(k_.data() + offset(l, from, h), n, k_.data() + offset(l, to, h));
                std::copy_n(v_.data() + offset(l, from, h), n, v_.data() + offset(l, to, h));
            }
        len_[t] = len_[f];
    }

    T* keys(index_t layer, index_t slot, index_t head) noexcept { return k_.data() + offset(layer, slot, head); }
    T* values(index_t layer, index_t slot, index_t head) noexcept { return v_.data() + offset(layer, slot, head); }
    const T* keys(index_t layer, index_t slot, index_t head) const noexcept { return k_.data() + offset(layer, slot, head); }
    const T* values(index_t layer, index_t slot, index_t head) const noexcept {
        return v_.data() + offset(layer, slot, head);
    }

    /// Checks that `slot` has room for n more positions (ConfigError otherwise).
    void reserve(index_t slot, index_t n) const {
        const std::size_t s = check_slot(slot);
        check<ConfigError>(n >= 0 && len_[s] + n <= N_, "KvCache", "slot ", slot, " holds ", len_[s], " positions; ",
                           n, " more exceed max_seq ", N_, " (make the cache with a larger max_seq)");
    }
    /// Records n more positions of `slot` (after every layer has written them).
    void advance(index_t slot, index_t n) {
        reserve(slot, n);
        len_[static_cast<std::size_t>(slot)] += n;
    }

private:
    std::size_t check_slot(index_t slot) const {
        check<ConfigError>(slot >= 0 && slot < S_, "KvCache", "slot ", slot, " out of range [0, ", S_, ")");
        return static_cast<std::size_t>(slot);
    }
    std::size_t offset(index_t layer, index_t slot, index_t head) const noexcept {
        return static_cast<std::size_t>(((layer * S_ + slot) * H_ + head) * N_ * D_);
    }

    index_t L_ = 0, H_ = 0, D_ = 0, S_ = 0, N_ = 0;
    std::vector<index_t> len_;
    std::vector<T> k_, v_;
};

}  // namespace moe::lm
