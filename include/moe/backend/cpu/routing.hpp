// moe/backend/cpu/routing.hpp - the fused routing kernel: scores -> (bias) -> (group mask)
// -> top-k -> weights, in one pass over the router logits.
//
// Two implementations give the same answer:
//  * route_row_exact: one token at a time, every option (softmax or sigmoid scores, selection
//    bias, group-limited choice, any k). It is the reference and the fallback.
//  * the SIMD path for the common case (softmax, no bias, no groups, k <= 8): L tokens at once
//    (L = SIMD width), one token per lane. Logits are turned into keys whose low b bits are
//    replaced by the expert index (b = bits needed for E), so keys are distinct and ordered as
//    (value, then lower index); max/min sorting networks then select the top k without carrying
//    indices. Truncating b mantissa bits can only misorder values that agree in all other bits,
//    so each lane checks the boundary between chosen and not chosen and between neighbours;
//    a lane where two keys tie in their truncated value is recomputed by the exact path. The
//    result is therefore exact, not approximate.
//
// Cost of the SIMD path (issue 14; measured on Zen 4 with AVX-512, docs/benchmarks.md): it is
// bound by vector instructions, not by memory. Per block of L tokens and group of L experts:
// L loads, 3 instructions per key (shift, xor, bit-select) and 1 for the inf/NaN check, an
// L x L transpose (64 shuffles at L = 16), then the sorting networks and bitonic merges (172
// min/max for M = 8, L = 16); once per block: k gathers, k - 1 exps, the ids and weights back
// to token-major order. So everything stays in registers:
//  * a group's chunks are merged into the running top M as soon as the group is transposed
//    (no pass through memory);
//  * the block kernels are flattened, so the transposes are not calls, and the k - 1 exps run
//    in one loop, so that the one copy of xsimd::exp is inlined (k copies would stay calls,
//    each spilling every live register);
//  * whole blocks are written straight to the output (16 tokens x 8 choices: a 24-shuffle
//    8 x 16 transpose instead of a 16 x 16 one with overlapping stores);
//  * E = 8 on 16 lanes (two token rows per register) has its own block: a 16 x 8
//    load-transpose instead of a padded copy and a 16 x 16 transpose of half-empty registers;
//  * at E = 64, k = 8 on 16 lanes the chosen logits are picked from each row by permutes
//    (arch::pick_64x8) instead of gathers.
// Every variant builds the same keys, chooses the same experts, sends the same tokens to the
// exact path and evaluates the weights with the same operations, so the results are
// bit-identical to the two-pass kernel they replace.
//
// Selection with softmax scores is made on the logits (softmax is strictly increasing);
// PyTorch selects on the rounded probabilities, which can tie where logits do not: the chosen
// set then differs only among experts whose fp32 probabilities are equal.
// Ties between equal scores go to the lower expert index (as torch.topk on CPU does).
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#include "moe/backend/cpu/arch.hpp"
#include "moe/backend/cpu/simd.hpp"
#include "moe/backend/rule.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/tensor.hpp"

namespace moe::cpu {

/// Scratch memory of the routing kernel; reuse one per thread to avoid allocations.
struct RouteWorkspace {
    Scratch<float> block;
    Scratch<float> row;
    Scratch<float> top;
    Scratch<std::int32_t> order;

    /// Scratch for route_row_exact with E experts.
    struct Row {
        float* scores;
        float* top;
        std::int32_t* order;
    };
    Row row_scratch(index_t E, const RouteRule& spec) {
        return {row.get(static_cast<std::size_t>(E)), top.get(static_cast<std::size_t>(spec.k)),
                order.get(static_cast<std::size_t>(std::max(spec.k, spec.groups)))};
    }
};

namespace detail {

[[noreturn]] inline void throw_bad_logit(index_t token, index_t expert, float v) {
    throw ValueError("moe::cpu::topk_route",
                     moe::detail::cat("logit of token ", token, ", expert ", expert, " is ", v,
                                      " (router logits must be finite or -inf)"));
}

}  // namespace detail

/// Routes one token exactly: writes k expert ids (best first) and weights.
/// `scores` is scratch of at least E floats, `top` of at least k floats, `order` of at least
/// max(k, groups) ints.
inline void route_row_exact(const float* logits, index_t E, const RouteRule& spec, index_t token,
                            std::int32_t* ids, float* w, float* scores, float* top, std::int32_t* order) {
    constexpr float kInf = std::numeric_limits<float>::infinity();
    // 1. validity and the row max (kept for the weights)
    float m = -kInf;
    for (index_t e = 0; e < E; ++e) {
        const float v = logits[e];
        if (std::isnan(v) || v == kInf) detail::throw_bad_logit(token, e, v);
        m = std::max(m, v);
    }
    if (m == -kInf)
        throw ValueError("moe::cpu::topk_route",
                         moe::detail::cat("every logit of token ", token, " is -inf: softmax is undefined"));
    // 2. selection scores. Bias-free softmax selects on the logits (softmax is increasing).
    const bool has_bias = !spec.bias.empty();
    const bool softmax = spec.scoring == Scoring::softmax;
    float total = 0.0f;  // softmax denominator
    if (softmax && (has_bias || !spec.renormalize))
        for (index_t e = 0; e < E; ++e) total += std::exp(logits[e] - m);
    const float* sel = logits;
    if (!softmax || has_bias) {
        for (index_t e = 0; e < E; ++e) {
            const float s = softmax ? std::exp(logits[e] - m) / total : 1.0f / (1.0f + std::exp(-logits[e]));
            scores[e] = has_bias ? s + spec.bias[static_cast<std::size_t>(e)] : s;
        }
        sel = scores;
    }
    // 3. group-limited masking
    if (spec.groups > 1) {
        const index_t G = spec.groups, gs = E / G;
        check<ConfigError>(G <= 1024, "moe::cpu::topk_route", "at most 1024 groups, got ", G);
        if (sel != scores) {
            std::copy(sel, sel + E, scores);
            sel = scores;
        }
        float gscore[1024];
        for (index_t g = 0; g < G; ++g) {
            float b1 = -kInf, b2 = -kInf;
            for (index_t i = 0; i < gs; ++i) {
                const float s = scores[g * gs + i];
                if (s > b1) {
                    b2 = b1;
                    b1 = s;
                } else if (s > b2) {
                    b2 = s;
                }
            }
            gscore[g] = (spec.group_score == GroupScore::max || gs == 1) ? b1 : b1 + b2;
        }
        for (index_t g = 0; g < G; ++g) order[g] = static_cast<std::int32_t>(g);
        std::partial_sort(order, order + spec.topk_groups, order + G, [&](std::int32_t a, std::int32_t b) {
            return gscore[a] > gscore[b] || (gscore[a] == gscore[b] && a < b);
        });
        bool keep[1024] = {};
        for (index_t i = 0; i < spec.topk_groups; ++i) keep[order[i]] = true;
        for (index_t g = 0; g < G; ++g)
            if (!keep[g]) std::fill(scores + g * gs, scores + (g + 1) * gs, spec.group_mask_value);
    }
    // 4. top-k by insertion: scanning e upwards, a strictly greater score moves ahead, so equal
    //    scores keep the lower index first.
    const index_t k = spec.k;
    index_t n = 0;
    for (index_t e = 0; e < E; ++e) {
        const float s = sel[e];
        if (n == k && !(s > top[k - 1])) continue;
        index_t pos = n < k ? n++ : k - 1;
        for (; pos > 0 && s > top[pos - 1]; --pos) {
            top[pos] = top[pos - 1];
            ids[pos] = ids[pos - 1];
        }
        top[pos] = s;
        ids[pos] = static_cast<std::int32_t>(e);
    }
    // 5. weights
    float sum = 0.0f;
    for (index_t j = 0; j < k; ++j) {
        const float l = logits[ids[j]];
        w[j] = softmax ? std::exp(l - m) : 1.0f / (1.0f + std::exp(-l));
        sum += w[j];
    }
    const float denom = spec.renormalize ? sum + spec.renorm_eps : (softmax ? total : 1.0f);
    for (index_t j = 0; j < k; ++j) w[j] = w[j] / denom * spec.scale;
}

#if !defined(MOE_NO_SIMD)
namespace detail {

/// Comparator: a gets the larger, b the smaller.
template <class B>
MOE_ALWAYS_INLINE void cswap(B& a, B& b) noexcept {
    const B hi = xsimd::max(a, b);
    b = xsimd::min(a, b);
    a = hi;
}

/// Sorts M batches lane-wise in descending order (optimal networks for M = 1, 2, 4, 8).
template <int M, class B>
MOE_ALWAYS_INLINE void sort_network(B* v) noexcept {
    if constexpr (M == 2) {
        cswap(v[0], v[1]);
    } else if constexpr (M == 4) {
        cswap(v[0], v[1]); cswap(v[2], v[3]);
        cswap(v[0], v[2]); cswap(v[1], v[3]);
        cswap(v[1], v[2]);
    } else if constexpr (M == 8) {
        cswap(v[0], v[2]); cswap(v[1], v[3]); cswap(v[4], v[6]); cswap(v[5], v[7]);
        cswap(v[0], v[4]); cswap(v[1], v[5]); cswap(v[2], v[6]); cswap(v[3], v[7]);
        cswap(v[0], v[1]); cswap(v[2], v[3]); cswap(v[4], v[5]); cswap(v[6], v[7]);
        cswap(v[2], v[4]); cswap(v[3], v[5]);
        cswap(v[1], v[4]); cswap(v[3], v[6]);
        cswap(v[1], v[2]); cswap(v[3], v[4]); cswap(v[5], v[6]);
    }
}

/// Sorts a bitonic sequence of M batches (descending) with half-cleaners of distance D, D/2, ..., 1.
template <int M, int D, class B>
MOE_ALWAYS_INLINE void half_clean(B* v) noexcept {
    if constexpr (D >= 1) {
        static_for<M>([&](auto i) {
            if constexpr ((i & D) == 0) cswap(v[i], v[i + D]);
        });
        half_clean<M, D / 2>(v);
    }
}

/// acc (sorted, descending) <- top M of acc U b (b sorted descending); D <- max(D, discarded).
template <int M, class B>
MOE_ALWAYS_INLINE void merge_top(B* acc, const B* b, B& D) noexcept {
    static_for<M>([&](auto i) {
        const B other = b[M - 1 - i];
        D = xsimd::max(D, xsimd::min(acc[i], other));
        acc[i] = xsimd::max(acc[i], other);
    });
    // acc is now bitonic; half-cleaners sort it.
    half_clean<M, M / 2>(acc);
}

/// The sortable key of a logit x whose expert code is c: x with its low cbits (cmask) replaced by
/// c for a negative x (a larger magnitude is a smaller value) and by cmask - c = cmask ^ c for a
/// positive one (the lower index is the larger key). code_pos = cmask ^ c; the arithmetic shift
/// turns it into c for a negative x. Three instructions (shift, xor, and a bit-select).
template <class A>
MOE_ALWAYS_INLINE xsimd::batch<float, A> make_key(const xsimd::batch<float, A>& x,
                                                  const xsimd::batch<std::int32_t, A>& code_pos,
                                                  const xsimd::batch<std::int32_t, A>& cmask,
                                                  const xsimd::batch<std::int32_t, A>& keep) noexcept {
    using I = xsimd::batch<std::int32_t, A>;
    const I b = xsimd::bitwise_cast<I>(x);
    const I sign = b >> 31;  // all ones for a negative x (sign bit set, -0.0 included)
    return xsimd::bitwise_cast<xsimd::batch<float, A>>((b & keep) | ((code_pos ^ sign) & cmask));
}

/// Sorts the N / M chunks of v (M batches each, lane-wise, descending) and merges them into acc
/// (the top M so far, sorted); D <- max(D, every key dropped). First: acc takes the first chunk.
template <bool First, int M, int N, class B>
MOE_ALWAYS_INLINE void select_chunks(B* v, B* acc, B& D) noexcept {
    static_for<N / M>([&](auto c) {
        sort_network<M>(v + c * M);
        if constexpr (First && c == 0) {
            static_for<M>([&](auto i) { acc[i] = v[i]; });
        } else {
            merge_top<M>(acc, v + c * M, D);
        }
    });
}

/// The full softmax denominator of each lane's row, sum_e exp(l_e - max) (out of line: only
/// renormalize = false needs it).
template <class A>
MOE_NOINLINE xsimd::batch<float, A> softmax_denominators(const float* rows, index_t stride, index_t E,
                                                        const xsimd::batch<float, A>& vmax) noexcept {
    using B = xsimd::batch<float, A>;
    constexpr int L = static_cast<int>(B::size);
    alignas(64) float mx[L], tot[L];
    vmax.store_aligned(mx);
    for (int r = 0; r < L; ++r) {
        const float* row = rows + r * stride;
        const B m(mx[r]);
        B s(0.0f);
        index_t e = 0;
        for (; e + L <= E; e += L) s += xsimd::exp(B::load_unaligned(row + e) - m);
        float t = xsimd::hadd(s);
        for (; e < E; ++e) t += std::exp(row[e] - mx[r]);
        tot[r] = t;
    }
    return B::load_aligned(tot);
}

/// From the top M keys per lane (acc, sorted) and the best key not kept (D): the lane mask of
/// tokens whose choice is ambiguous after truncation (redone exactly), the k chosen expert ids
/// (as float bits) in idxf[0..k) and their weights in wv[0..k). Lane r is the token whose row
/// starts at rows + r * stride.
template <class A, int M, bool Pick64 = false>
    requires(!Pick64 || (M == 8 && xsimd::batch<float, A>::size == 16))
MOE_ALWAYS_INLINE std::uint32_t finish_block(const xsimd::batch<float, A>* acc, const xsimd::batch<float, A>& D,
                                             const float* rows, index_t stride, index_t E,
                                             const xsimd::batch<std::int32_t, A>& cmask,
                                             const xsimd::batch<std::int32_t, A>& keep, const RouteRule& spec,
                                             xsimd::batch<float, A>* idxf, xsimd::batch<float, A>* wv) noexcept {
    using B = xsimd::batch<float, A>;
    using I = xsimd::batch<std::int32_t, A>;
    constexpr int L = static_cast<int>(B::size);
    // Exactness: neighbours among the chosen, and the last chosen against the best rejected,
    // must differ in their truncated value.
    const auto trunc = [&](const B& x) { return xsimd::bitwise_cast<B>(xsimd::bitwise_cast<I>(x) & keep); };
    const index_t k = spec.k;
    B next = D;
    static_for<M>([&](auto j) {
        if (j == k) next = acc[j];
    });
    auto ambiguous = trunc(acc[0]) != trunc(acc[0]);  // all false
    static_for<M>([&](auto j) {
        if constexpr (j + 1 < M) {
            if (j + 1 < k) ambiguous = ambiguous | (trunc(acc[j]) == trunc(acc[j + 1]));
        }
        if (j + 1 == k) ambiguous = ambiguous | (trunc(acc[j]) == trunc(next));
    });

    // Decode expert ids, fetch the exact logits, compute the weights.
    alignas(64) std::int32_t iota_arr[L];
    for (int i = 0; i < L; ++i) iota_arr[i] = i;
    const I row_off = I::load_aligned(iota_arr) * I(static_cast<std::int32_t>(stride));
    B val[M];
    static_for<M>([&](auto j) {
        if (j < k) {
            const I bits = xsimd::bitwise_cast<I>(acc[j]);
            const I code = bits & cmask;
            const I idx = arch::select_by_sign<A>(acc[j], code, cmask - code);
            idxf[j] = xsimd::bitwise_cast<B>(idx);
            if constexpr (!Pick64) val[j] = arch::gather<A>(rows, row_off + idx);
        }
    });
    if constexpr (Pick64) {  // E = 64, k = 8, 16 lanes: permutes within each row, no gathers
        B ids_rows[8], val_rows[8];
        arch::transpose_8x16<A>(idxf, ids_rows);
        arch::pick_64x8<A>(rows, stride, ids_rows, val_rows);
        arch::transpose_16x8<A>(val_rows, val);
    }
    const B vmax = val[0];
    alignas(64) float arg[M][L];  // l_j - l_0 (<= 0), then exp of it
    static_for<M>([&](auto j) {
        if (j >= 1 && j < k) (val[j] - vmax).store_aligned(arg[j]);
    });
    // One loop over the choices, not k - 1 copies of xsimd::exp: the compiler inlines a single
    // copy, where k copies would be left as calls (each spilling every live register).
    for (index_t j = 1; j < k; ++j) xsimd::exp(B::load_aligned(arg[j])).store_aligned(arg[j]);
    static_for<M>([&](auto j) {
        if constexpr (j == 0) wv[j] = B(1.0f);  // exp(0), as xsimd::exp computes it
        else if (j < k) wv[j] = B::load_aligned(arg[j]);
    });
    B denom(1.0f);
    if (spec.renormalize) {
        B sum = wv[0];
        static_for<M>([&](auto j) {
            if (j >= 1 && j < k) sum += wv[j];
        });
        denom = sum + B(spec.renorm_eps);
    } else {
        denom = softmax_denominators<A>(rows, stride, E, vmax);
    }
    const B scale(spec.scale);
    static_for<M>([&](auto j) {
        if (j < k) wv[j] = wv[j] / denom * scale;
    });
    return arch::movemask<A>(ambiguous);
}

/// True when route_block_simd writes exactly L * k ids and weights (no slack after them).
template <class A, int M>
constexpr bool block_store_is_exact(index_t k) noexcept {
    constexpr int L = static_cast<int>(xsimd::batch<float, A>::size);
    return k == M && (M == L || (L == 16 && M == 8));
}

/// Routes L tokens (one per lane) of a block whose rows hold E_pad >= E keys-to-be.
/// Writes L * k ids and weights token-major (plus up to L of slack unless
/// block_store_is_exact); returns a lane mask (bit r set) of tokens that must be redone by the
/// exact path.
///
/// Each group of L experts is loaded as L rows (lane = expert), turned into keys, transposed
/// (lane = token, batch = expert), cut into chunks of M batches that are sorted by a network
/// and merged straight into the running top M; nothing goes through memory.
template <class A, int M>
    requires(M <= static_cast<int>(xsimd::batch<float, A>::size))
MOE_FLATTEN inline std::uint32_t route_block_simd(const float* rows, index_t stride, index_t E, index_t E_pad,
                                                  const RouteRule& spec, std::int32_t* ids, float* w,
                                                  bool prefetch_next) {
    using B = xsimd::batch<float, A>;
    using I = xsimd::batch<std::int32_t, A>;
    constexpr int L = static_cast<int>(B::size);
    const auto cbits = static_cast<std::uint32_t>(std::bit_width(static_cast<std::uint64_t>(E_pad - 1)));
    const std::int32_t C = static_cast<std::int32_t>((1u << cbits) - 1u);
    const I cmask(C), keep(~C);
    const B zero(0.0f);
    alignas(64) std::int32_t iota_arr[L];
    for (int i = 0; i < L; ++i) iota_arr[i] = i;
    const I iota = I::load_aligned(iota_arr);

    B nonfinite(0.0f);  // NaN iff some key is inf or NaN
    B v[L];
    const auto load_group = [&](index_t g) {
        const I code_pos = cmask ^ (iota + I(static_cast<std::int32_t>(g)));
        static_for<L>([&](auto r) {
            if (prefetch_next && g % (64 / sizeof(float)) == 0) __builtin_prefetch(rows + (L + r) * stride + g);
            v[r] = make_key<A>(B::load_unaligned(rows + r * stride + g), code_pos, cmask, keep);
            nonfinite = xsimd::fma(v[r], zero, nonfinite);
        });
        arch::transpose_square<A>(v);
    };
    B acc[M];
    B D(-std::numeric_limits<float>::infinity());
    load_group(0);
    select_chunks<true, M, L>(v, acc, D);
    for (index_t g = L; g < E_pad; g += L) {
        load_group(g);
        select_chunks<false, M, L>(v, acc, D);
    }
    if (xsimd::any(nonfinite != nonfinite)) return (1u << L) - 1u;  // inf/NaN somewhere: exact path decides

    B idxf[L], wv[L];
    static_for<L>([&](auto j) { idxf[j] = wv[j] = zero; });
    const index_t k = spec.k;
    std::uint32_t ambiguous;
    if constexpr (L == 16 && M == 8) {
        if (E == 64 && k == 8) ambiguous = finish_block<A, M, true>(acc, D, rows, stride, E, cmask, keep, spec, idxf, wv);
        else ambiguous = finish_block<A, M>(acc, D, rows, stride, E, cmask, keep, spec, idxf, wv);
    } else {
        ambiguous = finish_block<A, M>(acc, D, rows, stride, E, cmask, keep, spec, idxf, wv);
    }
    // Back to token-major order.
    if constexpr (L == 16 && M == 8) {
        if (k == 8) {  // 16 tokens x 8 choices: 8 batches each, no overlap
            B out[8];
            arch::transpose_8x16<A>(idxf, out);
            static_for<8>([&](auto q) { out[q].store_unaligned(reinterpret_cast<float*>(ids) + q * L); });
            arch::transpose_8x16<A>(wv, out);
            static_for<8>([&](auto q) { out[q].store_unaligned(w + q * L); });
            return ambiguous;
        }
    }
    arch::transpose_square<A>(idxf);
    arch::transpose_square<A>(wv);
    // Row r of the transposes holds token r's k choices. Unless k == L, rows overlap by L - k
    // lanes; each later row overwrites the previous row's excess and the last row's excess lands
    // in the caller's L-element slack.
    static_for<L>([&](auto r) {
        idxf[r].store_unaligned(reinterpret_cast<float*>(ids) + r * k);
        wv[r].store_unaligned(w + r * k);
    });
    return ambiguous;
}

/// route_block_simd for 16 lanes and E = 8 experts (two token rows per register), k = M <= 2:
/// one 16 x 8 load-transpose (24 shuffles) instead of a padded copy and a 16 x 16 transpose, and
/// the ids and weights interleaved straight into the output. Keys use 4 code bits, as a
/// padding of E to 16 would (the padding keys lose to every real one, and k < E, so they never
/// reach the result): the answer, and the tokens sent to the exact path, are the same.
template <class A, int M>
    requires(xsimd::batch<float, A>::size == 16 && M <= 2)
MOE_FLATTEN inline std::uint32_t route_block_e8(const float* rows, index_t stride, const RouteRule& spec,
                                                std::int32_t* ids, float* w) {
    using B = xsimd::batch<float, A>;
    using I = xsimd::batch<std::int32_t, A>;
    constexpr std::int32_t C = 15;
    const I cmask(C), keep(~C);
    const B zero(0.0f);
    B v[8];
    arch::load_transpose_16x8<A>(rows, stride, v);  // lane = token, batch = expert
    B nonfinite(0.0f);
    static_for<8>([&](auto e) {
        v[e] = make_key<A>(v[e], I(C ^ static_cast<std::int32_t>(e)), cmask, keep);
        nonfinite = xsimd::fma(v[e], zero, nonfinite);
    });
    B acc[M];
    B D(-std::numeric_limits<float>::infinity());
    select_chunks<true, M, 8>(v, acc, D);
    if (xsimd::any(nonfinite != nonfinite)) return 0xffffu;

    B idxf[M], wv[M];
    const std::uint32_t ambiguous = finish_block<A, M>(acc, D, rows, stride, 8, cmask, keep, spec, idxf, wv);
    if constexpr (M == 1) {
        idxf[0].store_unaligned(reinterpret_cast<float*>(ids));
        wv[0].store_unaligned(w);
    } else {
        B out[2];
        arch::transpose_2x16<A>(idxf, out);
        out[0].store_unaligned(reinterpret_cast<float*>(ids));
        out[1].store_unaligned(reinterpret_cast<float*>(ids) + 16);
        arch::transpose_2x16<A>(wv, out);
        out[0].store_unaligned(w);
        out[1].store_unaligned(w + 16);
    }
    return ambiguous;
}

template <class A, int M>
    requires(M <= static_cast<int>(xsimd::batch<float, A>::size))
inline void route_range_simd(ConstMatrixRef<float> logits, const RouteRule& spec, index_t t_begin, index_t t_end,
                             std::int32_t* ids, float* w, RouteWorkspace& ws) {
    using B = xsimd::batch<float, A>;
    constexpr index_t L = static_cast<index_t>(B::size);
    const index_t E = logits.cols;
    const index_t E_pad = (std::max(E, static_cast<index_t>(M)) + L - 1) / L * L;
    const index_t k = spec.k;
    const auto rs = ws.row_scratch(E, spec);
    const bool padded = E_pad != E;
    float* block = padded ? ws.block.get(static_cast<std::size_t>(E_pad * L)) : nullptr;
    bool e8 = false;  // route_block_e8 applies to whole blocks
    if constexpr (L == 16 && M <= 2) e8 = E == 8 && k == M;
    alignas(64) std::int32_t blk_ids[L * 8 + L];  // L tokens x k <= 8 choices, + store slack
    alignas(64) float blk_w[L * 8 + L];
    for (index_t t0 = t_begin; t0 < t_end; t0 += L) {
        const index_t n = std::min(L, t_end - t0);
        std::uint32_t redo = 0;
        bool done = false;
        if constexpr (L == 16 && M <= 2) {
            if (e8 && n == L) {
                redo = route_block_e8<A, M>(logits.row(t0), logits.stride, spec, ids + t0 * k, w + t0 * k);
                done = true;
            }
        }
        if (!done) {
            const float* rows = logits.row(t0);
            index_t stride = logits.stride;
            if (padded || n < L) {
                // Copy the block into a padded buffer: padding keys lose to every finite logit.
                if (!block) block = ws.block.get(static_cast<std::size_t>(E_pad * L));
                for (index_t r = 0; r < L; ++r) {
                    float* dst = block + r * E_pad;
                    if (r < n) std::memcpy(dst, logits.row(t0 + r), static_cast<std::size_t>(E) * sizeof(float));
                    else std::fill(dst, dst + E, 0.0f);
                    std::fill(dst + E, dst + E_pad, -FLT_MAX);
                }
                rows = block;
                stride = E_pad;
            }
            const bool prefetch = !padded && t0 + 2 * L <= t_end;  // the next block is whole and in place
            const bool direct = n == L && block_store_is_exact<A, M>(k);  // straight into the output
            redo = route_block_simd<A, M>(rows, stride, E, E_pad, spec, direct ? ids + t0 * k : blk_ids,
                                          direct ? w + t0 * k : blk_w, prefetch);
            if (!direct) {
                std::memcpy(ids + t0 * k, blk_ids, static_cast<std::size_t>(n * k) * sizeof(std::int32_t));
                std::memcpy(w + t0 * k, blk_w, static_cast<std::size_t>(n * k) * sizeof(float));
            }
        }
        for (index_t r = 0; r < n; ++r)
            if (redo & (1u << r))
                route_row_exact(logits.row(t0 + r), E, spec, t0 + r, ids + (t0 + r) * k, w + (t0 + r) * k, rs.scores,
                                rs.top, rs.order);
    }
}
}  // namespace detail
#endif

/// Lanes of the SIMD routing path (tokens routed at once); 1 without SIMD.
inline constexpr index_t kRouteLanes = [] {
#if !defined(MOE_NO_SIMD)
    if constexpr (kHasSimd) return static_cast<index_t>(xsimd::batch<float, simd_arch>::size);
#endif
    return index_t{1};
}();

/// True when topk_route takes the SIMD path for this spec: softmax scores without bias or
/// groups, k <= min(8, lanes), E <= 1024.
inline bool topk_route_is_vectorised(const RouteRule& spec, index_t E) noexcept {
    return kHasSimd && spec.scoring == Scoring::softmax && spec.bias.empty() && spec.groups == 1 &&
           spec.k <= std::min<index_t>(8, kRouteLanes) && E <= 1024;
}

#if !defined(MOE_NO_SIMD)
namespace detail {
/// route_range_simd for the compiled instruction set when M fits its lanes (else never called).
template <int M>
inline void route_range_dispatch(ConstMatrixRef<float> logits, const RouteRule& spec, index_t b, index_t e,
                                 std::int32_t* ids, float* w, RouteWorkspace& ws) {
    if constexpr (M <= kRouteLanes) route_range_simd<simd_arch, M>(logits, spec, b, e, ids, w, ws);
}
}  // namespace detail
#endif

/// The fused routing kernel. logits: [T, E] row-major (any row stride); writes ids[T * k] (best
/// first) and weights[T * k]. Throws ValueError on a NaN or +inf logit (naming the token and
/// expert) and ConfigError on a spec that does not fit E. Runs on up to ex.threads() threads
/// (default Exec{}: all) in ranges of 1024 tokens.
inline void topk_route(ConstMatrixRef<float> logits, const RouteRule& spec, std::int32_t* ids, float* weights,
                       RouteWorkspace& ws, const Exec& ex = Exec{}) {
    const index_t T = logits.rows, E = logits.cols;
    spec.validate(E, "moe::cpu::topk_route");
    if (T == 0) return;
    auto run_range = [&](index_t b, index_t e, RouteWorkspace& w) {
#if !defined(MOE_NO_SIMD)
        if constexpr (kHasSimd) {
            if (topk_route_is_vectorised(spec, E)) {
                const index_t m = std::bit_ceil(static_cast<std::uint64_t>(spec.k));
                switch (m) {
                    case 1: return detail::route_range_dispatch<1>(logits, spec, b, e, ids, weights, w);
                    case 2: return detail::route_range_dispatch<2>(logits, spec, b, e, ids, weights, w);
                    case 4: return detail::route_range_dispatch<4>(logits, spec, b, e, ids, weights, w);
                    default: return detail::route_range_dispatch<8>(logits, spec, b, e, ids, weights, w);
                }
            }
        }
#endif
        const auto rs = w.row_scratch(E, spec);
        for (index_t t = b; t < e; ++t)
            route_row_exact(logits.row(t), E, spec, t, ids + t * spec.k, weights + t * spec.k, rs.scores, rs.top,
                            rs.order);
    };
    // Ranges of kTokensPerTask tokens (a multiple of every SIMD block), each with its own
    // workspace; tokens are independent, so results do not depend on the split.
    constexpr index_t kTokensPerTask = 1024;
    if (parallel_workers(ex, T, kTokensPerTask) > 1) {
        parallel_chunks(ex, T, kTokensPerTask, [&](index_t b, index_t e, int) {
            RouteWorkspace local;
            run_range(b, e, local);
        });
        return;
    }
    run_range(0, T, ws);
}

}  // namespace moe::cpu

MOE_SIMD_DIAGNOSTICS_POP
