// lm/decoder/generate.hpp - text generation with a CausalLM: prefill, then decode steps, each
// sequence's next token chosen by the Sampler, until a stop condition.
//
//   generate(model, cache, prompts, options, tokenizer, on_token, processors...)
//                        several sequences at once (one cache slot each; decode steps batched)
//   generate(model, cache, prompt, options, ...)   one sequence in slot 0
//
// Options: max_new_tokens, sampling (SamplingOptions: temperature 0 = greedy, top-k, top-p,
// min-p, repetition penalty, seed), stop token ids (the tokenizer's eos and the config's
// eos_token_id unless use_default_stops is false), stop strings (matched in the decoded text; the
// text ends before the match), the expert each sequence asks for (RequestRouted FFN slots), the
// LoRA adapter each sequence runs with (CausalLM::add_adapter; all in one batch).
// Sampling draws from the counter-based RNG keyed by (seed, stream = the sequence's index,
// step), so a sequence's tokens depend neither on the thread count nor on the other sequences
// of the batch. Streaming: on_token(sequence, id, piece) is called for every generated token
// with the text it completes (the tokenizer's DecodeStream; text that might be the start of a
// stop string is held back until it cannot be); returning false stops that sequence. The
// logits processors (LogitsProcessor, sampling.hpp) run in the Sampler's chain on every step.
// min_new_tokens bans the stop ids until that many tokens are generated.
//
// Beam search (options.beams.num_beams > 1; beam_search.hpp says what it computes, after
// transformers): deterministic (sampling.temperature must be 0), num_beams cache slots per
// prompt (prompt i's beams in slots [i * num_beams, (i + 1) * num_beams): size the cache with
// cache_slots_for), all live beams of all prompts in one decode step; a continued beam that
// another beam also continues gets a copy of its cache slot (KvCache::copy_slot). The result
// holds num_return_sequences sequences per prompt (prompt i's best first from i * n), each with
// its score. No streaming and no stop strings with beams (ConfigError): the best beam is known
// only at the end.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lm/decoder/beam_search.hpp"
#include "lm/decoder/kv_cache.hpp"
#include "lm/decoder/model.hpp"
#include "lm/decoder/sampling.hpp"
#include "lm/tokenizer.hpp"

namespace moe::lm {

struct GenerationOptions {
    index_t max_new_tokens = 128;
    SamplingOptions sampling;               ///< temperature 0: greedy
    std::vector<std::int32_t> stop_ids;     ///< a sequence ends after producing one of these
    bool use_default_stops = true;          ///< also stop at the tokenizer's eos and config's eos_token_id
    std::vector<std::string> stop_strings;  ///< a sequence ends when its text contains one
    std::vector<int> experts;               ///< per sequence (RequestRouted FFN slots); empty: none
    std::vector<int> adapters;              ///< per sequence LoRA adapter id (-1: base); empty: none
    index_t min_new_tokens = 0;             ///< the stop ids are banned (-inf) before this many new tokens
    BeamOptions beams;                      ///< num_beams > 1: beam search (beam_search.hpp)
    DecodeOptions decode{.skip_special_tokens = true, .clean_up_tokenization_spaces = std::nullopt};
};

/// Cache slots generate() needs for `prompts` prompts with these options (num_beams per prompt).
inline index_t cache_slots_for(index_t prompts, const GenerationOptions& opt) noexcept {
    return prompts * std::max<index_t>(1, opt.beams.num_beams);
}

/// Why a sequence stopped.
enum class StopReason : std::uint8_t { max_new_tokens, stop_id, stop_string, callback, cache_full };

inline const char* stop_reason_name(StopReason r) noexcept {
    switch (r) {
        case StopReason::max_new_tokens: return "max_new_tokens";
        case StopReason::stop_id: return "stop_id";
        case StopReason::stop_string: return "stop_string";
        case StopReason::callback: return "callback";
        case StopReason::cache_full: return "cache_full";
    }
    return "?";
}

struct Generation {
    std::vector<std::int32_t> ids;  ///< generated ids (a final stop id included)
    std::string text;               ///< their text (without special tokens; cut before a stop string)
    StopReason stop = StopReason::max_new_tokens;
    double score = 0;  ///< beam search: the hypothesis' score (transformers' sequence_scores); else 0
};

struct GenerationResult {
    std::vector<Generation> sequences;
    index_t prefill_tokens = 0, decode_tokens = 0;  ///< tokens through the model in each phase
    double prefill_seconds = 0, decode_seconds = 0;
    double prefill_tokens_per_second() const noexcept { return prefill_seconds > 0 ? prefill_tokens / prefill_seconds : 0; }
    double decode_tokens_per_second() const noexcept { return decode_seconds > 0 ? decode_tokens / decode_seconds : 0; }
};

/// on_token(sequence, id, piece) -> bool (false: stop that sequence).
using TokenCallback = std::function<bool(index_t, std::int32_t, std::string_view)>;

namespace detail {

/// The longest suffix of `text` that is a proper prefix of some stop string (held back while
/// streaming: it may still become a stop string).
inline std::size_t stop_prefix_overlap(std::string_view text, const std::vector<std::string>& stops) {
    std::size_t best = 0;
    for (const std::string& s : stops)
        for (std::size_t n = std::min(text.size(), s.size() - 1); n > best; --n)
            if (text.substr(text.size() - n) == std::string_view(s).substr(0, n)) {
                best = n;
                break;
            }
    return best;
}

}  // namespace detail

/// A prompt given as input embeddings rather than ids: a vision-language model's prompt with
/// image features spliced in. `x` [n, hidden] (borrowed: it must outlive the call); `context`:
/// the ids the repetition penalty sees before the generated ones (LLaVA's generate passes
/// inputs_embeds only, so its penalty sees the generated tokens alone: leave it empty).
struct EmbeddedPrompt {
    ConstMatrixRef<float> x;
    std::vector<std::int32_t> context;
};

namespace detail {

/// Prompt s's expert (RequestRouted FFN slots) and LoRA adapter: -1 when the options give none.
inline int expert_of(const GenerationOptions& opt, index_t s) {
    return opt.experts.empty() ? -1 : opt.experts[static_cast<std::size_t>(s)];
}
inline int adapter_of(const GenerationOptions& opt, index_t s) {
    return opt.adapters.empty() ? -1 : opt.adapters[static_cast<std::size_t>(s)];
}

/// One batched decode step being gathered: a row per live sequence (its cache slot, its last
/// token, its prompt's expert and adapter when the options give them).
struct DecodeBatch {
    std::vector<index_t> slots;
    std::vector<std::int32_t> next;
    std::vector<int> experts, adapters;

    void clear() {
        slots.clear();
        next.clear();
        experts.clear();
        adapters.clear();
    }
    void add(const GenerationOptions& opt, index_t prompt, index_t slot, std::int32_t id) {
        slots.push_back(slot);
        next.push_back(id);
        if (!opt.experts.empty()) experts.push_back(expert_of(opt, prompt));
        if (!opt.adapters.empty()) adapters.push_back(adapter_of(opt, prompt));
    }
    /// model.decode over the rows (logits [rows, V], in row order), timed and counted into res.
    template <class Model, class KV>
    Tensor run(Model& model, KvCache<KV>& cache, GenerationResult& res) const {
        const auto t0 = std::chrono::steady_clock::now();
        Tensor lg = model.decode(cache, slots, next, experts, adapters);
        res.decode_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        res.decode_tokens += static_cast<index_t>(slots.size());
        return lg;
    }
};

/// -inf for every id of `ids` inside the vocabulary (min_new_tokens' ban of the stop ids).
inline void ban_ids(std::span<float> logits, std::span<const std::int32_t> ids) noexcept {
    for (const std::int32_t id : ids)
        if (id >= 0 && static_cast<std::size_t>(id) < logits.size()) logits[static_cast<std::size_t>(id)] = neg_inf;
}

/// Beam search over S prompts (see beam_search.hpp and this file's comment); generate_loop's
/// arguments, its checks done.
template <class Model, class KV, class Prefill, class... P>
GenerationResult beam_loop(Model& model, KvCache<KV>& cache, index_t S, Prefill& prefill, const GenerationOptions& opt,
                           std::span<const std::int32_t> stops, const Tokenizer* tokenizer,
                           const TokenCallback& on_token, const Sampler& sampler, const P&... processors) {
    const char* where = "lm::generate (beam search)";
    const BeamOptions& bo = opt.beams;
    check<ConfigError>(opt.sampling.greedy(), where, "beam search is deterministic: set sampling.temperature = 0 (got ",
                       opt.sampling.temperature, "); beam sampling is not supported");
    check<ConfigError>(opt.stop_strings.empty(), where, "stop strings are not supported with beams");
    check<ConfigError>(!on_token, where, "streaming (on_token) is not supported with beams: the best beam is known at the end");
    const index_t K = bo.num_beams, V = model.vocab_size();
    const auto is_stop = [&](std::int32_t id) { return std::find(stops.begin(), stops.end(), id) != stops.end(); };

    struct Beam {
        std::vector<std::int32_t> ids;  // generated
        float score = 0;                // summed processed log-probabilities (fp32, as transformers)
        index_t slot = 0;               // its cache slot
    };
    struct Prompt {
        std::vector<std::int32_t> context;  // the ids before the generated ones (penalty, length)
        std::vector<Beam> beams;
        std::optional<BeamHypotheses> hyps;
        bool done = false;
        StopReason stop = StopReason::max_new_tokens;
    };
    std::vector<Prompt> ps(static_cast<std::size_t>(S));
    GenerationResult res;

    // Prefill each prompt once, into its first slot: before the first step every beam's cache is
    // that one (the step's slot moves copy it to the beams that need it). Beam 0 starts at score
    // 0, the others at -1e9, so that the first step continues beam 0 only.
    const auto t0 = std::chrono::steady_clock::now();
    Tensor logits(DType::f32, {S * K, V});
    for (index_t s = 0; s < S; ++s) {
        Prompt& p = ps[static_cast<std::size_t>(s)];
        const index_t first = s * K;
        cache.reset(first);
        const std::pair<Tensor, index_t> r = prefill(s, first, expert_of(opt, s), adapter_of(opt, s), p.context);
        res.prefill_tokens += r.second;
        const auto L0 = static_cast<index_t>(p.context.size());
        p.hyps.emplace(K, bo.length_penalty, bo.early_stopping, L0 + opt.max_new_tokens);
        for (index_t b = 0; b < K; ++b) {
            std::copy_n(r.first.data<float>(), V, logits.data<float>() + (first + b) * V);
            p.beams.push_back({{}, b == 0 ? 0.0f : -1e9f, first + b});
        }
    }
    const auto t1 = std::chrono::steady_clock::now();
    res.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

    std::vector<float> cand;  // K * V candidate scores of one prompt
    std::vector<std::int32_t> ctx;
    DecodeBatch batch;
    std::vector<char> stepped(static_cast<std::size_t>(S));  // the prompts decoded in this step
    for (index_t step = 0; step < opt.max_new_tokens; ++step) {
        batch.clear();
        std::fill(stepped.begin(), stepped.end(), 0);
        for (index_t s = 0; s < S; ++s) {
            Prompt& p = ps[static_cast<std::size_t>(s)];
            if (p.done) continue;
            const auto L0 = static_cast<index_t>(p.context.size());
            cand.resize(static_cast<std::size_t>(K * V));
            for (index_t b = 0; b < K; ++b) {
                const Beam& beam = p.beams[static_cast<std::size_t>(b)];
                std::span<float> row(cand.data() + b * V, static_cast<std::size_t>(V));
                std::copy_n(logits.data<float>() + (s * K + b) * V, V, row.data());
                log_softmax(row);
                if (step < opt.min_new_tokens) ban_ids(row, stops);
                ctx = p.context;
                ctx.insert(ctx.end(), beam.ids.begin(), beam.ids.end());
                sampler.process(row, ctx, processors...);
                for (float& v : row) v += beam.score;
            }
            const std::vector<BeamCandidate> top = top_candidates(cand, V, std::min(2 * K, K * V));
            check<ValueError>(top.front().score != neg_inf, where, "prompt ", s, ": every candidate is -inf after processing");
            const std::vector<BeamCandidate> cont = continue_beams(
                top, K, L0 + step, *p.hyps, [&](index_t b) -> const std::vector<std::int32_t>& { return p.beams[static_cast<std::size_t>(b)].ids; },
                is_stop);
            p.done = p.hyps->is_done(top.front().score, L0 + step);
            std::vector<Beam> nb;
            std::vector<index_t> src;
            for (const BeamCandidate& c : cont) {
                Beam b;
                b.ids = p.beams[static_cast<std::size_t>(c.beam)].ids;
                b.ids.push_back(c.id);
                b.score = c.score;
                nb.push_back(std::move(b));
                src.push_back(c.beam);
            }

            // Cache slots: the first beam continuing an old beam takes its slot, any other the slot
            // of an old beam nobody continues; a beam whose slot does not hold its source's cache
            // (the old beam's, or before the first step the prompt's, in its first slot) gets a
            // copy. A copy never overwrites a source: targets are unclaimed slots (or, before the
            // first step, slots that hold nothing yet).
            std::vector<char> taken(static_cast<std::size_t>(K), 0);
            for (index_t j = 0; j < K; ++j) {
                const auto b = static_cast<std::size_t>(src[static_cast<std::size_t>(j)]);
                nb[static_cast<std::size_t>(j)].slot = taken[b] ? -1 : p.beams[b].slot;
                taken[b] = 1;
            }
            std::size_t free_b = 0;
            for (index_t j = 0; j < K; ++j) {
                Beam& c = nb[static_cast<std::size_t>(j)];
                if (c.slot < 0) {
                    while (taken[free_b]) ++free_b;
                    taken[free_b] = 1;
                    c.slot = p.beams[free_b].slot;
                }
                const index_t from = step == 0 ? s * K : p.beams[static_cast<std::size_t>(src[static_cast<std::size_t>(j)])].slot;
                if (c.slot != from) cache.copy_slot(from, c.slot);
            }
            p.beams = std::move(nb);
            if (p.done) { p.stop = StopReason::stop_id; continue; }
            if (step + 1 == opt.max_new_tokens) continue;
            for (const Beam& c : p.beams)
                if (cache.length(c.slot) + 1 > cache.max_seq()) { p.done = true; p.stop = StopReason::cache_full; }
            if (p.done) continue;
            stepped[static_cast<std::size_t>(s)] = 1;
            for (const Beam& c : p.beams) batch.add(opt, s, c.slot, c.ids.back());
        }
        if (batch.slots.empty()) break;
        const Tensor lg = batch.run(model, cache, res);
        // decode's rows are in `slots` order: prompt by prompt, beam by beam
        index_t i = 0;
        for (index_t s = 0; s < S; ++s) {
            if (!stepped[static_cast<std::size_t>(s)]) continue;
            for (index_t j = 0; j < K; ++j, ++i)
                std::copy_n(lg.data<float>() + i * V, V, logits.data<float>() + (s * K + j) * V);
        }
    }

    // Prompts not done add their open beams (transformers' finalize), then the best are returned.
    for (index_t s = 0; s < S; ++s) {
        Prompt& p = ps[static_cast<std::size_t>(s)];
        if (opt.max_new_tokens == 0) {  // nothing generated: empty sequences
            res.sequences.resize(res.sequences.size() + static_cast<std::size_t>(bo.num_return_sequences));
            continue;
        }
        const auto L0 = static_cast<index_t>(p.context.size());
        if (p.stop != StopReason::stop_id)
            for (const Beam& c : p.beams) p.hyps->add(c.ids, c.score, L0 + static_cast<index_t>(c.ids.size()));
        for (BeamHypotheses::Hypothesis& h : p.hyps->best(bo.num_return_sequences)) {
            Generation g;
            g.score = h.score;
            g.ids = std::move(h.ids);
            g.stop = !g.ids.empty() && is_stop(g.ids.back()) ? StopReason::stop_id
                     : p.stop == StopReason::cache_full        ? StopReason::cache_full
                                                               : StopReason::max_new_tokens;
            if (tokenizer) g.text = tokenizer->decode(g.ids, opt.decode);
            res.sequences.push_back(std::move(g));
        }
    }
    return res;
}

/// The generation loop over S prompts: prefill(s, slot, expert, adapter, context) fills `slot`
/// (reset first) with prompt s, sets `context` to the ids the repetition penalty starts from and
/// returns {last-token logits [1, V], prompt rows}.
template <class Model, class KV, class Prefill, class... P>
GenerationResult generate_loop(Model& model, KvCache<KV>& cache, index_t S, Prefill&& prefill,
                               const GenerationOptions& opt, const Tokenizer* tokenizer, const TokenCallback& on_token,
                               const P&... processors) {
    const char* where = "lm::generate";
    check<ConfigError>(S > 0, where, "no prompts");
    check<ConfigError>(opt.max_new_tokens >= 0, where, "max_new_tokens must be >= 0, got ", opt.max_new_tokens);
    check<ConfigError>(opt.min_new_tokens >= 0, where, "min_new_tokens must be >= 0, got ", opt.min_new_tokens);
    check<ConfigError>(opt.experts.empty() || static_cast<index_t>(opt.experts.size()) == S, where,
                       opt.experts.size(), " experts for ", S, " prompts");
    check<ConfigError>(opt.adapters.empty() || static_cast<index_t>(opt.adapters.size()) == S, where,
                       opt.adapters.size(), " adapters for ", S, " prompts");
    check<ConfigError>(opt.stop_strings.empty() || tokenizer != nullptr, where, "stop strings need a tokenizer");
    for (const auto& s : opt.stop_strings) check<ConfigError>(!s.empty(), where, "an empty stop string");
    opt.beams.validate();
    check<ConfigError>(cache_slots_for(S, opt) <= cache.slots(), where, S, " prompts",
                       opt.beams.enabled() ? moe::detail::cat(" with ", opt.beams.num_beams, " beams each") : "",
                       " need ", cache_slots_for(S, opt), " cache slots; the cache has ", cache.slots(),
                       " (lm::cache_slots_for)");
    const Sampler sampler(opt.sampling);
    std::vector<std::int32_t> stops = opt.stop_ids;
    if (opt.use_default_stops) {
        for (const std::int32_t e : model.config().eos_token_ids) stops.push_back(e);
        if (tokenizer && tokenizer->eos() && tokenizer->eos()->id) stops.push_back(*tokenizer->eos()->id);
    }
    if (opt.beams.enabled())
        return beam_loop(model, cache, S, prefill, opt, stops, tokenizer, on_token, sampler, processors...);
    const index_t V = model.vocab_size();

    GenerationResult res;
    res.sequences.resize(static_cast<std::size_t>(S));
    struct Live {
        std::vector<std::int32_t> context;  // prompt + generated (repetition penalty)
        std::optional<DecodeStream> stream;
        std::string pending;  // decoded, not yet streamed (may start a stop string)
        bool done = false;
    };
    std::vector<Live> live(static_cast<std::size_t>(S));

    // Prefill: each prompt in its own slot, one after the other (CausalLM::prefill chunks it).
    const auto t0 = std::chrono::steady_clock::now();
    Tensor logits(DType::f32, {S, V});
    for (index_t s = 0; s < S; ++s) {
        cache.reset(s);
        Live& l = live[static_cast<std::size_t>(s)];
        const std::pair<Tensor, index_t> r = prefill(s, s, expert_of(opt, s), adapter_of(opt, s), l.context);
        std::copy_n(r.first.data<float>(), V, logits.data<float>() + s * V);
        res.prefill_tokens += r.second;
        if (tokenizer) l.stream.emplace(*tokenizer, opt.decode);
    }
    const auto t1 = std::chrono::steady_clock::now();
    res.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

    DecodeBatch batch;
    for (index_t step = 0; step < opt.max_new_tokens; ++step) {
        batch.clear();
        for (index_t s = 0; s < S; ++s) {
            Live& l = live[static_cast<std::size_t>(s)];
            if (l.done) continue;
            Generation& g = res.sequences[static_cast<std::size_t>(s)];
            std::span<float> row(logits.data<float>() + s * V, static_cast<std::size_t>(V));
            if (step < opt.min_new_tokens) ban_ids(row, stops);
            const std::int32_t id = sampler.sample_with(row, l.context, static_cast<std::uint64_t>(s),
                                                        static_cast<std::uint64_t>(step), processors...);
            g.ids.push_back(id);
            l.context.push_back(id);
            const bool is_stop = std::find(stops.begin(), stops.end(), id) != stops.end();
            const bool last = step + 1 == opt.max_new_tokens;
            std::string piece;
            if (l.stream) {
                piece = l.stream->step(id);
                if (is_stop || last) piece += l.stream->flush();
            }
            // Stop strings: a match always starts in `pending` (the text that could start one is
            // held back), so the streamed text never holds one.
            l.pending += piece;
            std::size_t cut = std::string::npos;
            for (const std::string& ss : opt.stop_strings) cut = std::min(cut, l.pending.find(ss));
            if (cut != std::string::npos) l.pending.resize(cut);
            const bool ends = is_stop || last || cut != std::string::npos;
            const std::size_t hold = ends ? 0 : detail::stop_prefix_overlap(l.pending, opt.stop_strings);
            const std::string out = l.pending.substr(0, l.pending.size() - hold);
            l.pending.erase(0, out.size());
            g.text += out;
            bool keep = true;
            if (on_token) keep = on_token(s, id, out);
            if (cut != std::string::npos) { l.done = true; g.stop = StopReason::stop_string; }
            else if (is_stop) { l.done = true; g.stop = StopReason::stop_id; }
            else if (!keep) { l.done = true; g.stop = StopReason::callback; }
            else if (cache.length(s) + 1 > cache.max_seq()) { l.done = true; g.stop = StopReason::cache_full; }
            if (!l.done && !last) batch.add(opt, s, s, id);
        }
        if (batch.slots.empty()) break;
        const Tensor lg = batch.run(model, cache, res);
        for (std::size_t i = 0; i < batch.slots.size(); ++i)
            std::copy_n(lg.data<float>() + static_cast<index_t>(i) * V, V, logits.data<float>() + batch.slots[i] * V);
    }
    return res;
}

}  // namespace detail

/// Generates for every prompt at once: prompt i in cache slot i (the slots are reset first).
/// `tokenizer` may be null (then no text, no stop strings, no tokenizer eos).
template <class Model, class KV, class... P>
    requires(LogitsProcessor<P> && ...)
GenerationResult generate(Model& model, KvCache<KV>& cache, const std::vector<std::vector<std::int32_t>>& prompts,
                          const GenerationOptions& opt, const Tokenizer* tokenizer = nullptr,
                          const TokenCallback& on_token = {}, const P&... processors) {
    return detail::generate_loop(
        model, cache, static_cast<index_t>(prompts.size()),
        [&](index_t s, index_t slot, int expert, int adapter, std::vector<std::int32_t>& context) {
            const auto& p = prompts[static_cast<std::size_t>(s)];
            check<ConfigError>(!p.empty(), "lm::generate", "prompt ", s, " is empty");
            context = p;
            return std::pair<Tensor, index_t>(model.prefill(cache, slot, p, expert, LogitRows::last, adapter),
                                              static_cast<index_t>(p.size()));
        },
        opt, tokenizer, on_token, processors...);
}

/// The same for prompts given as input embeddings (EmbeddedPrompt).
template <class Model, class KV, class... P>
    requires(LogitsProcessor<P> && ...)
GenerationResult generate(Model& model, KvCache<KV>& cache, std::span<const EmbeddedPrompt> prompts,
                          const GenerationOptions& opt, const Tokenizer* tokenizer = nullptr,
                          const TokenCallback& on_token = {}, const P&... processors) {
    return detail::generate_loop(
        model, cache, static_cast<index_t>(prompts.size()),
        [&](index_t s, index_t slot, int expert, int adapter, std::vector<std::int32_t>& context) {
            const EmbeddedPrompt& p = prompts[static_cast<std::size_t>(s)];
            check<ConfigError>(p.x.rows > 0, "lm::generate", "prompt ", s, " is empty");
            context = p.context;
            return std::pair<Tensor, index_t>(model.prefill(cache, slot, p.x, expert, LogitRows::last, adapter), p.x.rows);
        },
        opt, tokenizer, on_token, processors...);
}

/// One prompt in slot 0.
template <class Model, class KV, class... P>
    requires(LogitsProcessor<P> && ...)
GenerationResult generate(Model& model, KvCache<KV>& cache, std::span<const std::int32_t> prompt,
                          const GenerationOptions& opt, const Tokenizer* tokenizer = nullptr,
                          const TokenCallback& on_token = {}, const P&... processors) {
    return generate(model, cache, std::vector<std::vector<std::int32_t>>{{prompt.begin(), prompt.end()}}, opt, tokenizer,
                    on_token, processors...);
}

}  // namespace moe::lm
