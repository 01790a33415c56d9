// lm/decoder/beam_search.hpp - the parts of beam search that do not touch a model: its options,
// the finished-hypothesis list with its length normalisation and stopping rule, and the
// log-softmax its scores are sums of. generate() (generate.hpp) runs the search itself when
// GenerationOptions::beams.num_beams > 1.
//
//   BeamOptions       num_beams, length_penalty, early_stopping, num_return_sequences
//   EarlyStopping     heuristic (transformers' False), first_complete (True), never ("never")
//   BeamHypotheses    the best num_beams finished hypotheses of one prompt; is_done
//   top_candidates    the n best (beam, token) pairs of a prompt's beams' scores, best first
//   continue_beams    one step of transformers' BeamSearchScorer.process for one prompt
//   log_softmax       in place, x - max - log(sum exp(x - max))
//
// The reference is Hugging Face transformers' beam search as of 4.30-4.34 (GenerationMixin.
// beam_search, BeamSearchScorer and BeamHypotheses in src/transformers/generation/beam_search.py
// at 010654337d6b9f7fb2a812ec470d9c547e0794f9), which LAVIS's InstructBLIP calls with 5 beams:
//   * every step, each live beam's next-token logits go through log_softmax, then the logits
//     processors (the repetition penalty, min_new_tokens' ban of the stop ids, the user's), then
//     the beam's running score (fp32) is added; the 2 * num_beams best (beam, token) pairs over
//     all beams of a prompt are taken in descending order (before the first step only beam 0
//     counts: the others start at -1e9);
//   * in that order, a pair ending in a stop id becomes a finished hypothesis when its rank is
//     below num_beams (else it is skipped), any other pair continues as the next beam, until
//     num_beams beams continue;
//   * a hypothesis' score is its summed score over length ^ length_penalty, where length counts
//     the ids of transformers' input_ids before the stop id: the prompt's ids (for a prompt given
//     as ids; none for one given as embeddings, as LAVIS generates) and the generated ones;
//   * a prompt is done when num_beams hypotheses are finished and (early_stopping) first_complete:
//     at once; heuristic: the best candidate's score over cur_len ^ length_penalty (cur_len: the
//     length before this step's token) cannot beat the worst finished one; never: the same bound
//     at max_length when length_penalty > 0;
//   * after the last step (max_new_tokens) a prompt not done adds its open beams as hypotheses; the
//     num_return_sequences best are returned, best first.
// Where moe differs, on purpose: a returned sequence ends with the stop id its hypothesis
// produced (transformers appends the first eos id of its list); a hypothesis of length 0 (a stop
// id as the first token of a prompt given as embeddings) scores sum / 0^length_penalty in IEEE
// arithmetic (-inf for a positive penalty; transformers divides by zero); done prompts stop
// running (transformers pads them along).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"

namespace moe::lm {

/// When a prompt's beam search stops before max_new_tokens (transformers' early_stopping).
enum class EarlyStopping : std::uint8_t {
    heuristic,       ///< early_stopping=False: when the best candidate, at today's length, cannot beat the worst finished
    first_complete,  ///< early_stopping=True: as soon as num_beams hypotheses are finished
    never,           ///< early_stopping="never": when no candidate can beat the worst finished at any length
};

inline const char* early_stopping_name(EarlyStopping e) noexcept {
    switch (e) {
        case EarlyStopping::heuristic: return "heuristic";
        case EarlyStopping::first_complete: return "first_complete";
        case EarlyStopping::never: return "never";
    }
    return "?";
}

struct BeamOptions {
    index_t num_beams = 1;               ///< 1: no beam search (greedy or sampling); > 1: beam search
    float length_penalty = 1.0f;         ///< hypothesis score = summed log-probability / length ^ length_penalty
    EarlyStopping early_stopping = EarlyStopping::heuristic;
    index_t num_return_sequences = 1;    ///< best hypotheses returned per prompt (<= num_beams)

    bool enabled() const noexcept { return num_beams > 1; }

    /// ConfigError naming the first bad field.
    void validate() const {
        const char* where = "lm::BeamOptions";
        check<ConfigError>(num_beams >= 1, where, "num_beams = ", num_beams, ": must be >= 1");
        check<ConfigError>(std::isfinite(length_penalty), where, "length_penalty = ", length_penalty, ": must be finite");
        check<ConfigError>(num_return_sequences >= 1 && num_return_sequences <= num_beams, where,
                           "num_return_sequences = ", num_return_sequences, ": must be in [1, num_beams = ", num_beams,
                           "]");
    }
};

/// log_softmax in place: x - max - log(sum(exp(x - max))), the sum in double. -inf entries stay
/// -inf; all -inf (nothing allowed) or a NaN: ValueError.
inline void log_softmax(std::span<float> x) {
    const char* where = "lm::log_softmax";
    check<ShapeError>(!x.empty(), where, "no logits (empty vocabulary)");
    float m = -std::numeric_limits<float>::infinity();
    for (std::size_t i = 0; i < x.size(); ++i) {
        check<ValueError>(!std::isnan(x[i]), where, "logit of token ", i, " is NaN");
        m = std::max(m, x[i]);
    }
    check<ValueError>(std::isfinite(m), where, m > 0 ? "a logit is +inf" : "every logit is -inf");
    double s = 0;
    for (const float v : x) s += std::exp(static_cast<double>(v - m));
    const auto lse = static_cast<float>(std::log(s));
    for (float& v : x) v = (v - m) - lse;
}

/// The finished hypotheses of one prompt: at most num_beams, the best by score (transformers'
/// BeamHypotheses; see the file comment). Scores are double, as transformers computes them in
/// Python floats.
class BeamHypotheses {
public:
    struct Hypothesis {
        double score;                     ///< sum_logprobs / length ^ length_penalty
        std::vector<std::int32_t> ids;    ///< generated ids (a final stop id included)
    };

    BeamHypotheses(index_t num_beams, float length_penalty, EarlyStopping early, index_t max_length)
        : k_(num_beams), lp_(length_penalty), early_(early), max_length_(max_length) {}

    index_t size() const noexcept { return static_cast<index_t>(beams_.size()); }
    const std::vector<Hypothesis>& hypotheses() const noexcept { return beams_; }
    double worst_score() const noexcept { return worst_; }

    /// The normalised score of a hypothesis of `length` ids (see the file comment).
    double score_of(double sum_logprobs, index_t length) const noexcept {
        return sum_logprobs / std::pow(static_cast<double>(length), static_cast<double>(lp_));
    }

    /// Adds a hypothesis of `length` ids (transformers' input_ids length) when there is room or it
    /// beats the worst one, which then leaves.
    void add(std::vector<std::int32_t> ids, double sum_logprobs, index_t length) {
        const double score = score_of(sum_logprobs, length);
        if (size() < k_ || score > worst_) {
            beams_.push_back({score, std::move(ids)});
            if (size() > k_) {
                // remove the worst (the first of the lowest at ties, as Python's sorted on
                // (score, index) finds it); the worst score becomes the second lowest
                std::vector<std::pair<double, std::size_t>> order;
                for (std::size_t i = 0; i < beams_.size(); ++i) order.emplace_back(beams_[i].score, i);
                std::sort(order.begin(), order.end());
                beams_.erase(beams_.begin() + static_cast<std::ptrdiff_t>(order[0].second));
                worst_ = order[1].first;
            } else {
                worst_ = std::min(score, worst_);
            }
        }
    }

    /// Whether no open beam can still beat the worst finished hypothesis: `best_sum_logprobs` is
    /// this step's best candidate score, `cur_len` the length before this step's token.
    bool is_done(double best_sum_logprobs, index_t cur_len) const noexcept {
        if (size() < k_) return false;
        switch (early_) {
            case EarlyStopping::first_complete: return true;
            case EarlyStopping::heuristic: return worst_ >= score_of(best_sum_logprobs, cur_len);
            case EarlyStopping::never:
                return worst_ >= score_of(best_sum_logprobs, lp_ > 0.0f ? max_length_ : cur_len);
        }
        return false;
    }

    /// The n best, best first (at equal scores the later added first, as transformers pops from
    /// a stable ascending sort).
    std::vector<Hypothesis> best(index_t n) const {
        std::vector<std::size_t> order(beams_.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::stable_sort(order.begin(), order.end(),
                         [&](std::size_t a, std::size_t b) { return beams_[a].score < beams_[b].score; });
        std::vector<Hypothesis> out;
        for (index_t i = 0; i < n && !order.empty(); ++i) {
            out.push_back(beams_[order.back()]);
            order.pop_back();
        }
        return out;
    }

private:
    index_t k_;
    float lp_;
    EarlyStopping early_;
    index_t max_length_;
    std::vector<Hypothesis> beams_;
    double worst_ = 1e9;
};

/// A (beam, token) pair of one step and its score (the beam's score + the token's processed
/// log-probability).
struct BeamCandidate {
    float score;
    index_t beam;
    std::int32_t id;
    friend bool operator==(const BeamCandidate&, const BeamCandidate&) = default;
};

/// Whether candidate a ranks before b: the higher score, at equal scores the lower beam, then the
/// lower id (the order of torch.topk over a prompt's flattened beams x vocabulary scores).
inline bool ranks_before(const BeamCandidate& a, const BeamCandidate& b) noexcept {
    return a.score > b.score || (a.score == b.score && (a.beam < b.beam || (a.beam == b.beam && a.id < b.id)));
}

/// The n best of `scores` (num_beams rows of V, row b = beam b's candidate scores), best first in
/// ranks_before's order; -inf candidates come last. One pass over each row keeps its n best (the
/// n best overall are among them), so no K x V copy is sorted.
inline std::vector<BeamCandidate> top_candidates(std::span<const float> scores, index_t V, index_t n) {
    check<ShapeError>(V > 0 && static_cast<index_t>(scores.size()) % V == 0, "lm::top_candidates", scores.size(),
                      " scores are not whole rows of ", V);
    const index_t rows = static_cast<index_t>(scores.size()) / V, keep = std::clamp<index_t>(n, 0, V);
    std::vector<BeamCandidate> all, row_best;
    for (index_t b = 0; b < rows && keep > 0; ++b) {
        row_best.clear();
        const float* r = scores.data() + b * V;
        for (index_t i = 0; i < V; ++i) {
            const BeamCandidate c{r[i], b, static_cast<std::int32_t>(i)};
            if (static_cast<index_t>(row_best.size()) == keep && !ranks_before(c, row_best.back())) continue;
            row_best.insert(std::upper_bound(row_best.begin(), row_best.end(), c, ranks_before), c);
            if (static_cast<index_t>(row_best.size()) > keep) row_best.pop_back();
        }
        all.insert(all.end(), row_best.begin(), row_best.end());
    }
    std::sort(all.begin(), all.end(), ranks_before);
    if (static_cast<index_t>(all.size()) > n) all.resize(static_cast<std::size_t>(std::max<index_t>(n, 0)));
    return all;
}

/// One step of one prompt (transformers' BeamSearchScorer.process): walks `cands` (best first);
/// a stop id ranked below num_beams finishes its beam (ids_of(beam) + the stop id, added to `hyps`
/// at length `cur_len`: the length before this step's token), one ranked lower is skipped; any
/// other token continues its beam; stops when num_beams continue. Returns those, in rank order.
/// Fewer than num_beams non-stop candidates: ValueError.
template <class IdsOf, class IsStop>
std::vector<BeamCandidate> continue_beams(std::span<const BeamCandidate> cands, index_t num_beams, index_t cur_len,
                                          BeamHypotheses& hyps, IdsOf&& ids_of, IsStop&& is_stop) {
    std::vector<BeamCandidate> next;
    for (std::size_t rank = 0; rank < cands.size() && static_cast<index_t>(next.size()) < num_beams; ++rank) {
        const BeamCandidate& c = cands[rank];
        if (!is_stop(c.id)) {
            next.push_back(c);
        } else if (static_cast<index_t>(rank) < num_beams) {
            std::vector<std::int32_t> ids(ids_of(c.beam));
            ids.push_back(c.id);
            hyps.add(std::move(ids), c.score, cur_len);
        }
    }
    check<ValueError>(static_cast<index_t>(next.size()) == num_beams, "lm::continue_beams", "more than ",
                      cands.size() - next.size(), " of the ", cands.size(),
                      " best candidates are stop ids: fewer than ", num_beams, " beams continue");
    return next;
}

}  // namespace moe::lm
