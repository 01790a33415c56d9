// lm/decoder/sampling.hpp - choosing the next token from a language model's logits: greedy,
// temperature, top-k, top-p, min-p, repetition penalty, user constraints, and a counter-based
// random number generator, so that a sampled token depends only on (seed, stream, step).
//
//   SamplingOptions        temperature (0 = greedy), top_k, top_p, min_p, repetition_penalty, seed
//   LogitsProcessor<P>     the contract of a step that rewrites one sequence's next-token logits
//   RepetitionPenalty, Temperature, TopK, TopP, MinP     Hugging Face's processors, exactly
//   AllowedTokens          every token outside a set banned (-inf): e.g. digits only
//   philox4x32_10, uniform01                             the counter-based generator
//   Sampler                options -> sample(logits, context, stream, step) [+ user processors]
//   argmax, draw           the two ways a token is picked from processed logits
//
// The reference is Hugging Face transformers:
//   * the processors mirror src/transformers/generation/logits_process.py at
//     aa5108b449965084a90a4c8ce130a156aebf28f1 (RepetitionPenaltyLogitsProcessor,
//     TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper, each with
//     filter_value -inf and min_tokens_to_keep 1);
//   * the order is GenerationMixin._get_logits_processor's in src/transformers/generation/utils.py
//     at 000034a44ef887621d9b36001a5eb7c46e64cb3f: the processors (among them the repetition
//     penalty), then the user's `logits_processor` list (_merge_criteria_processor_list appends
//     custom processors after the built-in ones), then, only when sampling (do_sample), the
//     former warpers: temperature (when != 1), top-k (when != 0), top-p (when < 1), min-p.
//     With do_sample=False (here: temperature == 0) the warpers are not applied and the token is
//     the argmax: the repetition penalty and the user's processors still are.
// tools/reference/fixtures_sampling.py re-implements those five processors line for line and
// tests/lm/test_lm_sampling.cpp compares every chain with it ([sampling-reference]).
//
// Where moe differs from the reference, on purpose:
//   * top-p's probabilities and cumulative sums are computed in double (transformers: an fp32
//     softmax, its cumsum); the removal threshold is (float)(1 - top_p) as torch compares it. Only
//     a token whose cumulative probability lies within ~1e-7 of the threshold can come out
//     differently.
//   * top-p at ties: transformers sorts with torch.sort (not stable on the CPU for long rows), so
//     which of several equal logits straddling the cut survive depends on torch's sort. moe sorts
//     stably, ascending by (logit, id), as torch.sort(stable=True) does: among equal logits at the
//     cut the lower ids are removed first and the higher ids survive (also when top_p is so small
//     that only one of several tied maxima is kept: the highest id). On the fixture's short
//     hand-made rows (4 to 12 values) torch 1.13's default sort gives the same result; on its
//     1000-value tied row it does not.
//   * min-p compares exp(logit - max) < min_p in double (transformers: fp32 probabilities
//     p < min_p * p_max): the same test up to ~1e-7 rounding.
//   * TopP(1.0) and MinP(0.0) are the identity (transformers' generate does not build them; the
//     bare TopPLogitsWarper(1.0) would also ban tokens whose fp32 probability underflows to 0).
//   * top_p must be in (0, 1] (transformers' warper accepts 0).
// Temperature, top-k and the repetition penalty are fp32 arithmetic exactly as torch does it
// (bit-identical).
//
// The random numbers (uniform01): Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random
// numbers: as easy as 1, 2, 3", SC 2011; the Random123 known-answer vectors are in the unit test),
// keyed by the 64-bit seed, its 128-bit counter holding (step, stream). Each draw is a pure
// function of (seed, stream, step): no state, no sequence of calls, so a sequence's tokens do not
// depend on the thread count, on which other sequences share its batch, or on the order in which
// sequences are sampled. Give every sequence its own stream (e.g. its index in the request) and
// count its steps from 0. Nothing here reproduces torch.multinomial's draws: the same options give
// the same distribution as transformers, not the same tokens.
//
// Thread safety: everything here is const after construction; a Sampler may be shared by threads.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <span>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"

namespace moe::lm {

// ------------------------------------------------------------------------------------------------
// Options

/// What to sample with. The defaults: plain sampling from the softmax (temperature 1, no top-k,
/// top-p 1, no min-p, no repetition penalty; transformers' GenerationConfig defaults but top_k,
/// which is 50 there). Greedy (temperature 0) ignores temperature, top_k, top_p and min_p, as
/// transformers' do_sample=False does; the repetition penalty still applies.
struct SamplingOptions {
    float temperature = 1.0f;         ///< > 0: logits / temperature; 0: greedy (argmax)
    index_t top_k = 0;                ///< keep the k highest logits (ties at the k-th kept); 0: off
    float top_p = 1.0f;               ///< (0, 1]: keep the most probable tokens whose mass reaches top_p; 1: off
    float min_p = 0.0f;               ///< [0, 1]: drop tokens with p < min_p * p_max; 0: off
    float repetition_penalty = 1.0f;  ///< > 0: logits of tokens in the context (<0: * p, else / p); 1: off
    std::uint64_t seed = 0;           ///< the random generator's key

    /// temperature == 0: argmax of the (penalized) logits, no random numbers.
    bool greedy() const noexcept { return temperature == 0.0f; }

    /// Throws ConfigError naming the field and its value when one is out of range.
    void validate() const {
        constexpr const char* where = "lm::SamplingOptions";
        check<ConfigError>(std::isfinite(temperature) && temperature >= 0.0f, where, "temperature = ", temperature,
                           ": must be finite and >= 0 (0 = greedy)");
        check<ConfigError>(top_k >= 0, where, "top_k = ", top_k, ": must be >= 0 (0 = off)");
        check<ConfigError>(top_p > 0.0f && top_p <= 1.0f, where, "top_p = ", top_p, ": must be in (0, 1] (1 = off)");
        check<ConfigError>(min_p >= 0.0f && min_p <= 1.0f, where, "min_p = ", min_p, ": must be in [0, 1] (0 = off)");
        check<ConfigError>(std::isfinite(repetition_penalty) && repetition_penalty > 0.0f, where,
                           "repetition_penalty = ", repetition_penalty, ": must be finite and > 0 (1 = off)");
    }
};

// ------------------------------------------------------------------------------------------------
// The processor contract

/// A step that rewrites one sequence's next-token logits in place: p(logits, context), where
/// logits[i] is token i's logit (the vocabulary is logits.size()) and context holds the sequence's
/// ids so far (prompt + generated tokens), oldest first. Built-ins: RepetitionPenalty, Temperature,
/// TopK, TopP, MinP, AllowedTokens; a lambda or std::function with that signature is one too.
///
/// Promises:
///  * it is deterministic: the same (logits, context) give the same result, whatever thread calls
///    it and whatever was called before (it is called through a const reference, and a Sampler
///    may be shared by threads: keep no mutable state);
///  * it changes only the logits it means to (a constraint bans tokens; a penalty rewrites the
///    tokens it penalizes) and never resizes or reorders them;
///  * -inf marks a banned token; it never writes NaN or +inf (the Sampler throws ValueError);
///  * it leaves at least one finite logit, or the Sampler throws ValueError (nothing to sample).
/// The Sampler runs the user's processors after the repetition penalty and before temperature,
/// top-k, top-p and min-p, where transformers runs a `logits_processor` list.
template <class P>
concept LogitsProcessor = requires(const P& p, std::span<float> logits, std::span<const std::int32_t> context) {
    p(logits, context);
};

namespace detail {

inline constexpr float neg_inf = -std::numeric_limits<float>::infinity();

/// ValueError at the first NaN (and, with no_pos_inf, +inf), naming the token id.
inline void check_no_nan(std::span<const float> logits, const char* where, const char* stage, bool no_pos_inf) {
    for (std::size_t i = 0; i < logits.size(); ++i) {
        const float v = logits[i];
        if (std::isnan(v)) [[unlikely]]
            throw ValueError(where, moe::detail::cat("logit of token ", i, " is NaN", stage));
        if (no_pos_inf && v == std::numeric_limits<float>::infinity()) [[unlikely]]
            throw ValueError(where, moe::detail::cat("logit of token ", i, " is +inf", stage));
    }
}

/// The largest logit (-inf when all are -inf).
inline float max_logit(std::span<const float> logits) noexcept {
    float m = neg_inf;
    for (float v : logits) m = std::max(m, v);
    return m;
}

}  // namespace detail

// ------------------------------------------------------------------------------------------------
// The built-in processors (transformers' logits_process.py; see the header comment)

/// RepetitionPenaltyLogitsProcessor: every distinct token of the context, once:
/// logit < 0 ? logit * penalty : logit / penalty (fp32). Context ids outside [0, vocab) are a
/// ValueError naming their position (drop placeholders such as LLaVA's -200 image id first).
class RepetitionPenalty {
public:
    explicit RepetitionPenalty(float penalty) : penalty_(penalty) {
        check<ConfigError>(std::isfinite(penalty) && penalty > 0.0f, "lm::RepetitionPenalty", "penalty = ", penalty,
                           ": must be finite and > 0");
    }
    float penalty() const noexcept { return penalty_; }

    void operator()(std::span<float> logits, std::span<const std::int32_t> context) const {
        const auto V = static_cast<std::int64_t>(logits.size());
        std::vector<std::int32_t> ids(context.begin(), context.end());
        for (std::size_t i = 0; i < ids.size(); ++i)
            check<ValueError>(ids[i] >= 0 && ids[i] < V, "lm::RepetitionPenalty", "context[", i, "] = ", ids[i],
                              " is outside the vocabulary [0, ", V, ")");
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        for (const std::int32_t id : ids) {
            float& v = logits[static_cast<std::size_t>(id)];
            v = v < 0.0f ? v * penalty_ : v / penalty_;
        }
    }

private:
    float penalty_;
};

/// TemperatureLogitsWarper: logit / temperature (fp32).
class Temperature {
public:
    explicit Temperature(float temperature) : t_(temperature) {
        check<ConfigError>(std::isfinite(temperature) && temperature > 0.0f, "lm::Temperature", "temperature = ",
                           temperature, ": must be finite and > 0 (greedy is Sampler's temperature 0)");
    }
    float temperature() const noexcept { return t_; }

    void operator()(std::span<float> logits, std::span<const std::int32_t> = {}) const noexcept {
        for (float& v : logits) v /= t_;
    }

private:
    float t_;
};

/// TopKLogitsWarper: tokens whose logit is below the k-th largest (counted with repeats, as
/// torch.topk returns them) become -inf; every token tied with the k-th largest is kept. k larger
/// than the vocabulary keeps everything. NaN logits: ValueError.
class TopK {
public:
    explicit TopK(index_t k) : k_(k) { check<ConfigError>(k >= 1, "lm::TopK", "k = ", k, ": must be >= 1"); }
    index_t k() const noexcept { return k_; }

    void operator()(std::span<float> logits, std::span<const std::int32_t> = {}) const {
        detail::check_no_nan(logits, "lm::TopK", "", false);
        if (k_ >= static_cast<index_t>(logits.size())) return;
        std::vector<float> v(logits.begin(), logits.end());
        const auto kth = v.begin() + (k_ - 1);
        std::nth_element(v.begin(), kth, v.end(), std::greater<float>());
        const float threshold = *kth;
        for (float& x : logits)
            if (x < threshold) x = detail::neg_inf;
    }

private:
    index_t k_;
};

/// TopPLogitsWarper: sort ascending, cumulate the softmax; tokens whose cumulative probability is
/// <= 1 - top_p become -inf, except the last (the largest logit). Sorting is stable by (logit,
/// id): see the header comment for ties and precision. top_p == 1: identity. NaN: ValueError.
class TopP {
public:
    explicit TopP(float top_p) : p_(top_p) {
        check<ConfigError>(top_p > 0.0f && top_p <= 1.0f, "lm::TopP", "top_p = ", top_p, ": must be in (0, 1]");
    }
    float top_p() const noexcept { return p_; }

    void operator()(std::span<float> logits, std::span<const std::int32_t> = {}) const {
        detail::check_no_nan(logits, "lm::TopP", "", false);
        if (p_ >= 1.0f || logits.size() < 2) return;
        const float m = detail::max_logit(logits);
        if (m == detail::neg_inf) return;  // nothing finite: nothing to keep or remove
        std::vector<std::int32_t> order(logits.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int32_t>(i);
        std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
            const float la = logits[static_cast<std::size_t>(a)], lb = logits[static_cast<std::size_t>(b)];
            return la < lb || (la == lb && a < b);
        });
        double total = 0.0;
        for (const std::int32_t i : order) total += std::exp(double(logits[static_cast<std::size_t>(i)]) - double(m));
        // torch compares the fp32 cumulative probabilities with (1 - top_p) rounded to fp32.
        const double threshold = double(static_cast<float>(1.0 - double(p_)));
        double cum = 0.0;
        for (std::size_t j = 0; j + 1 < order.size(); ++j) {  // the last (largest) is always kept
            float& v = logits[static_cast<std::size_t>(order[j])];
            cum += std::exp(double(v) - double(m));
            if (cum / total > threshold) break;  // cumulative sums only grow: the rest are kept
            v = detail::neg_inf;
        }
    }

private:
    float p_;
};

/// MinPLogitsWarper: tokens with probability < min_p * (the largest probability) become -inf,
/// i.e. exp(logit - max) < min_p; the largest is always kept. min_p == 0: identity. NaN:
/// ValueError.
class MinP {
public:
    explicit MinP(float min_p) : p_(min_p) {
        check<ConfigError>(min_p >= 0.0f && min_p <= 1.0f, "lm::MinP", "min_p = ", min_p, ": must be in [0, 1]");
    }
    float min_p() const noexcept { return p_; }

    void operator()(std::span<float> logits, std::span<const std::int32_t> = {}) const {
        detail::check_no_nan(logits, "lm::MinP", "", false);
        if (p_ <= 0.0f) return;
        const float m = detail::max_logit(logits);
        if (m == detail::neg_inf) return;
        for (float& v : logits)
            if (std::exp(double(v) - double(m)) < double(p_)) v = detail::neg_inf;
    }

private:
    float p_;
};

/// Every token outside a set of ids becomes -inf (e.g. RSUniVLM's box coordinates: the digit,
/// comma, bracket and end tokens only). The set is sorted and deduplicated; an empty set or a
/// negative id is a ConfigError, and so, at the call, is an id outside the vocabulary.
class AllowedTokens {
public:
    explicit AllowedTokens(std::span<const std::int32_t> ids) : ids_(ids.begin(), ids.end()) {
        std::sort(ids_.begin(), ids_.end());
        ids_.erase(std::unique(ids_.begin(), ids_.end()), ids_.end());
        check<ConfigError>(!ids_.empty(), "lm::AllowedTokens", "the set of allowed ids is empty");
        check<ConfigError>(ids_.front() >= 0, "lm::AllowedTokens", "id ", ids_.front(), " is negative");
    }
    AllowedTokens(std::initializer_list<std::int32_t> ids)
        : AllowedTokens(std::span<const std::int32_t>(ids.begin(), ids.size())) {}

    /// The allowed ids, ascending, each once.
    std::span<const std::int32_t> ids() const noexcept { return ids_; }
    bool allows(std::int32_t id) const noexcept { return std::binary_search(ids_.begin(), ids_.end(), id); }

    void operator()(std::span<float> logits, std::span<const std::int32_t> = {}) const {
        check<ConfigError>(static_cast<std::size_t>(ids_.back()) < logits.size(), "lm::AllowedTokens", "allowed id ",
                           ids_.back(), " is outside the vocabulary [0, ", logits.size(), ")");
        std::size_t next = 0;  // index into ids_ of the next allowed id
        for (std::size_t i = 0; i < logits.size(); ++i) {
            if (next < ids_.size() && static_cast<std::size_t>(ids_[next]) == i)
                ++next;
            else
                logits[i] = detail::neg_inf;
        }
    }

private:
    std::vector<std::int32_t> ids_;
};

static_assert(LogitsProcessor<RepetitionPenalty> && LogitsProcessor<Temperature> && LogitsProcessor<TopK> &&
              LogitsProcessor<TopP> && LogitsProcessor<MinP> && LogitsProcessor<AllowedTokens>);

// ------------------------------------------------------------------------------------------------
// The counter-based generator

/// Philox4x32-10 (Random123): one 128-bit block from a 128-bit counter and a 64-bit key.
inline std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> ctr,
                                                  std::array<std::uint32_t, 2> key) noexcept {
    constexpr std::uint64_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
    constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            key[0] += W0;
            key[1] += W1;
        }
        const std::uint64_t p0 = M0 * ctr[0], p1 = M1 * ctr[2];
        const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
        const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
        ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
    }
    return ctr;
}

/// A uniform double in [0, 1) (53 random bits) that depends only on (seed, stream, step):
/// Philox4x32-10 with key = seed and counter = (step low, step high, stream low, stream high).
inline double uniform01(std::uint64_t seed, std::uint64_t stream, std::uint64_t step) noexcept {
    const auto lo = [](std::uint64_t v) { return static_cast<std::uint32_t>(v); };
    const auto hi = [](std::uint64_t v) { return static_cast<std::uint32_t>(v >> 32); };
    const auto r = philox4x32_10({lo(step), hi(step), lo(stream), hi(stream)}, {lo(seed), hi(seed)});
    const std::uint64_t bits = ((std::uint64_t(r[0]) << 32) | r[1]) >> 11;
    return double(bits) * 0x1.0p-53;
}

// ------------------------------------------------------------------------------------------------
// Picking a token

/// The id of the largest logit, the lowest id at ties (torch.argmax). Empty: ShapeError; NaN:
/// ValueError naming the token.
inline std::int32_t argmax(std::span<const float> logits) {
    check<ShapeError>(!logits.empty(), "lm::argmax", "no logits (empty vocabulary)");
    detail::check_no_nan(logits, "lm::argmax", "", false);
    std::size_t best = 0;
    for (std::size_t i = 1; i < logits.size(); ++i)
        if (logits[i] > logits[best]) best = i;
    return static_cast<std::int32_t>(best);
}

/// Inverse-CDF draw from softmax(logits) with u in [0, 1): the first id, in id order, at which the
/// cumulative sum of exp(logit - max) (fp64) exceeds u * total. A -inf token (weight 0) is never
/// drawn. Empty: ShapeError; NaN or +inf: ValueError naming the token; all -inf: ValueError.
inline std::int32_t draw(std::span<const float> logits, double u) {
    constexpr const char* where = "lm::draw";
    check<ShapeError>(!logits.empty(), where, "no logits (empty vocabulary)");
    detail::check_no_nan(logits, where, "", true);
    check<ConfigError>(u >= 0.0 && u < 1.0, where, "u = ", u, " is outside [0, 1)");
    const double m = detail::max_logit(logits);
    check<ValueError>(m != double(detail::neg_inf), where, "every logit is -inf: no token is allowed");
    double total = 0.0;
    for (float v : logits) total += std::exp(double(v) - m);
    const double target = u * total;
    double cum = 0.0;
    std::size_t last = 0;  // the last token with a positive weight (a guard against rounding)
    for (std::size_t i = 0; i < logits.size(); ++i) {
        const double w = std::exp(double(logits[i]) - m);
        if (w <= 0.0) continue;
        cum += w;
        last = i;
        if (cum > target) return static_cast<std::int32_t>(i);
    }
    return static_cast<std::int32_t>(last);
}

// ------------------------------------------------------------------------------------------------
// The sampler

/// Built from SamplingOptions (validated): process() applies the chain in transformers' order,
/// sample() then picks the token.
///
///   moe::lm::Sampler s({.temperature = 0.7f, .top_p = 0.9f, .seed = 42});
///   std::int32_t next = s.sample(logits, context, /*stream=*/seq, /*step=*/t);
///   std::int32_t box  = s.sample_with(logits, context, seq, t, moe::lm::AllowedTokens(digit_ids));
///
/// User processors are passed by const reference to sample_with / process, as many as wanted, of
/// any LogitsProcessor type (a list known only at run time: one lambda that loops over it). They
/// run in the order given, after the repetition penalty and before temperature / top-k / top-p /
/// min-p (transformers' order for a custom `logits_processor` list). Logits are rewritten in place.
class Sampler {
public:
    Sampler() : Sampler(SamplingOptions{}) {}
    explicit Sampler(const SamplingOptions& options) : o_(options) { o_.validate(); }

    const SamplingOptions& options() const noexcept { return o_; }

    /// The chain on one sequence's logits, in place: repetition penalty (!= 1), the user's
    /// processors, then, unless greedy, temperature (!= 1), top-k (!= 0), top-p (< 1), min-p (> 0).
    /// Empty logits: ShapeError; a NaN or +inf logit (in the input or after a user processor):
    /// ValueError naming the token.
    template <class... P>
        requires(LogitsProcessor<P> && ...)
    void process(std::span<float> logits, std::span<const std::int32_t> context, const P&... user) const {
        constexpr const char* where = "lm::Sampler";
        check<ShapeError>(!logits.empty(), where, "no logits (empty vocabulary)");
        detail::check_no_nan(logits, where, "", true);
        if (o_.repetition_penalty != 1.0f) RepetitionPenalty(o_.repetition_penalty)(logits, context);
        if constexpr (sizeof...(P) > 0) {
            (user(logits, context), ...);
            detail::check_no_nan(logits, where, " after the user's logits processors", true);
        }
        if (o_.greedy()) return;
        if (o_.temperature != 1.0f) Temperature(o_.temperature)(logits, context);
        if (o_.top_k != 0) TopK(o_.top_k)(logits, context);
        if (o_.top_p < 1.0f) TopP(o_.top_p)(logits, context);
        if (o_.min_p > 0.0f) MinP(o_.min_p)(logits, context);
    }

    /// The next token of stream `stream` at step `step`: process(), then argmax when greedy, else
    /// draw(logits, uniform01(seed, stream, step)). All -inf after processing: ValueError.
    std::int32_t sample(std::span<float> logits, std::span<const std::int32_t> context, std::uint64_t stream,
                        std::uint64_t step) const {
        return sample_with(logits, context, stream, step);
    }

    /// sample() with the user's processors in the chain (see process()).
    template <class... P>
        requires(LogitsProcessor<P> && ...)
    std::int32_t sample_with(std::span<float> logits, std::span<const std::int32_t> context, std::uint64_t stream,
                             std::uint64_t step, const P&... user) const {
        process(logits, context, user...);
        check<ValueError>(detail::max_logit(logits) != detail::neg_inf, "lm::Sampler",
                          "every logit is -inf after processing: no token is allowed");
        if (o_.greedy()) return argmax(logits);
        return draw(logits, uniform01(o_.seed, stream, step));
    }

private:
    SamplingOptions o_;
};

}  // namespace moe::lm
