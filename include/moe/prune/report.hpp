// moe/prune/report.hpp - what a pruning policy returns, and the PruningPolicy concept.
//
//   Pruned<L>     { L layer; PruneReport report; }   the smaller layer and what was done
//   PruneReport   parameters (stored and active per token) before/after, per-group changes
//                 (kept / removed / folded expert ids, k), fidelity on the calibration tokens
//   Fidelity      relative error and cosine similarity of the new layer's output against the
//                 unpruned layer's output
//   PruningPolicy a type whose apply(layer, calibration) returns a Pruned<...>
//
// The policies are written once per RoutedGroup (apply_group) and their layer overloads apply
// them to the layer's groups; detail::finish_report fills the parameter counts and the
// fidelity of every report.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "moe/core/precision.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/layer/concepts.hpp"
#include "moe/layer/hierarchical.hpp"
#include "moe/layer/moe_layer.hpp"
#include "moe/layer/routed_group.hpp"
#include "moe/prune/calibration.hpp"
#include "moe/expert/dense_ffn.hpp"
#include "moe/prune/stats.hpp"
#include "moe/router/concepts.hpp"

namespace moe {

/// How close an output y is to a reference output r over N tokens (all in double):
///   relative_error    = ||y - r||_F / ||r||_F
///   cosine            = <y, r> / (||y||_F ||r||_F)            (all tokens as one vector)
///   mean_token_cosine = mean over tokens of cos(y_t, r_t)
/// A zero reference gives relative_error 0 when y is zero too (else +inf); a zero vector's cosine
/// is 1 against a zero vector and 0 otherwise. With no tokens every figure is NaN.
struct Fidelity {
    double relative_error = std::numeric_limits<double>::quiet_NaN();
    double cosine = std::numeric_limits<double>::quiet_NaN();
    double mean_token_cosine = std::numeric_limits<double>::quiet_NaN();
    index_t tokens = 0;
};

/// Accumulates Fidelity over batches.
class FidelityAccumulator {
public:
    /// Adds y [T, d] against the reference r [T, d].
    void add(ConstMatrixRef<float> y, ConstMatrixRef<float> r) {
        check<ShapeError>(y.rows == r.rows && y.cols == r.cols, "FidelityAccumulator::add", "output is [", y.rows, ", ",
                          y.cols, "], reference [", r.rows, ", ", r.cols, "]");
        for (index_t t = 0; t < y.rows; ++t) {
            double yy = 0, rr = 0, yr = 0, dd = 0;
            for (index_t i = 0; i < y.cols; ++i) {
                const double a = y(t, i), b = r(t, i);
                yy += a * a;
                rr += b * b;
                yr += a * b;
                dd += (a - b) * (a - b);
            }
            yy_ += yy;
            rr_ += rr;
            yr_ += yr;
            dd_ += dd;
            token_cos_ += cosine(yr, yy, rr);
            ++tokens_;
        }
    }
    Fidelity result() const {
        Fidelity f;
        f.tokens = tokens_;
        if (tokens_ == 0) return f;
        f.relative_error = rr_ > 0 ? std::sqrt(dd_ / rr_) : (dd_ > 0 ? std::numeric_limits<double>::infinity() : 0.0);
        f.cosine = cosine(yr_, yy_, rr_);
        f.mean_token_cosine = token_cos_ / static_cast<double>(tokens_);
        return f;
    }

private:
    static double cosine(double yr, double yy, double rr) {
        if (yy == 0 && rr == 0) return 1.0;
        if (yy == 0 || rr == 0) return 0.0;
        return yr / std::sqrt(yy * rr);
    }
    double yy_ = 0, rr_ = 0, yr_ = 0, dd_ = 0, token_cos_ = 0;
    index_t tokens_ = 0;
};

/// What happened to one group of experts.
struct GroupChange {
    std::string group;               ///< "routed", "collab", "modal[m]", "shared", "modalities"
    index_t experts_before = 0;      ///< experts (or, for "modalities", modalities) before
    index_t experts_after = 0;       ///< ... and after (0 for a group folded away)
    std::vector<index_t> kept;       ///< original ids kept, ascending (new id = position)
    std::vector<index_t> removed;    ///< original ids removed, ascending
    std::vector<index_t> folded;     ///< original ids folded into a dense FFN
    std::vector<index_t> ranks;      ///< neurons each folded expert contributes (parallel to folded)
    std::vector<double> weights;     ///< weight each folded expert enters the sum with
    index_t k_before = 0, k_after = 0;  ///< choices per token (0: not a routed group)
};

/// The report every policy returns.
struct PruneReport {
    std::string policy;                    ///< the policy and its settings
    index_t parameters_before = 0;         ///< stored parameters (weights, biases, router gates)
    index_t parameters_after = 0;
    index_t active_parameters_before = 0;  ///< parameters one token uses (see active_parameters)
    index_t active_parameters_after = 0;
    std::vector<GroupChange> groups;
    Fidelity fidelity;                     ///< new layer vs. the unpruned layer on the calibration tokens
    std::optional<Fidelity> fold;          ///< SVD fold only: the dense FFN vs. the weighted expert sum it folds
    std::vector<std::string> notes;        ///< decisions worth knowing (k lowered, experts skipped, ...)

    /// The change of group `name`; NotFoundError when the report has none.
    const GroupChange& group(std::string_view name) const {
        for (const auto& g : groups)
            if (g.group == name) return g;
        throw NotFoundError("PruneReport::group", detail::cat("no group '", name, "' in the report of ", policy));
    }
    /// A human-readable summary, one fact per line.
    std::string str() const {
        std::ostringstream os;
        auto ids = [&](const std::vector<index_t>& v) {
            std::string s = "[";
            for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
            return s + "]";
        };
        os << policy << "\n  parameters " << parameters_before << " -> " << parameters_after << " (active per token "
           << active_parameters_before << " -> " << active_parameters_after << ")\n";
        for (const auto& g : groups) {
            os << "  " << g.group << ": " << g.experts_before << " -> " << g.experts_after;
            if (!g.kept.empty()) os << ", kept " << ids(g.kept);
            if (!g.removed.empty()) os << ", removed " << ids(g.removed);
            if (!g.folded.empty()) os << ", folded " << ids(g.folded) << " ranks " << ids(g.ranks);
            if (g.k_before) os << ", k " << g.k_before << " -> " << g.k_after;
            os << "\n";
        }
        os << "  fidelity on " << fidelity.tokens << " tokens: relative error " << fidelity.relative_error
           << ", cosine " << fidelity.cosine << ", mean token cosine " << fidelity.mean_token_cosine << "\n";
        if (fold)
            os << "  fold vs. weighted expert sum: relative error " << fold->relative_error << ", cosine "
               << fold->cosine << "\n";
        for (const auto& n : notes) os << "  note: " << n << "\n";
        return os.str();
    }
};

/// A policy's result: the new layer and the report.
template <class L>
struct Pruned {
    L layer;
    PruneReport report;
};

namespace detail {
template <class T>
struct is_pruned : std::false_type {};
template <class L>
struct is_pruned<Pruned<L>> : std::true_type {};
}  // namespace detail

/// A Pruned<L> for some L.
template <class T>
concept PrunedResult = detail::is_pruned<std::remove_cvref_t<T>>::value;

/// A pruning policy for layers of type L.
///
/// Promises:
///  * apply(layer, calibration) leaves `layer` unchanged and returns Pruned<L2>{layer2, report}
///    where L2 is the type of the smaller layer (L itself, or e.g. DenseFfn for a fold);
///  * report.parameters_before == layer.parameters(), report.parameters_after ==
///    layer2.parameters(), and the active counts follow active_parameters();
///  * report.fidelity compares layer2's output with layer's on the calibration tokens (each
///    calibration batch is one forward call of both);
///  * invalid settings are ConfigError, calibration tokens of the wrong width ShapeError,
///    before anything is built;
///  * name() describes the policy and its settings.
template <class P, class L>
concept PruningPolicy = requires(const P& p, const L& layer, const Calibration& cal) {
    { p.apply(layer, cal) } -> PrunedResult;
    { p.name() } -> std::convertible_to<std::string>;
};

// --- parameter counts ------------------------------------------------------------------------

/// Parameters a token uses: router gates (CountsParameters), k / E of each routed group's
/// experts (the experts of a group have equal sizes), the shared experts. For a HierarchicalMoE
/// the modal part is the largest over modalities. A router without k (not TopKRouterLike)
/// counts all its experts.
template <Router R, ExpertSet X>
index_t active_parameters(const RoutedGroup<R, X>& g) {
    index_t p = 0;
    if constexpr (CountsParameters<R>) p += static_cast<index_t>(g.router().parameters());
    if constexpr (TopKRouterLike<R>)
        p += g.experts().parameters() / g.num_experts() * std::min<index_t>(g.router().k(), g.num_experts());
    else
        p += g.experts().parameters();
    return p;
}
template <Router R, ExpertSet X, class S>
index_t active_parameters(const MoELayer<R, X, S>& l) {
    return l.shared().parameters() + active_parameters(l.group());
}
template <ExpertSet M, ExpertSet C, class S, Router R>
index_t active_parameters(const HierarchicalMoE<M, C, S, R>& l) {
    index_t modal = 0;
    for (int m = 0; m < l.modalities(); ++m) modal = std::max(modal, active_parameters(l.modal_group(m)));
    return l.shared().parameters() + active_parameters(l.collab_group()) + modal;
}
template <Activation A, WeightPolicy W>
index_t active_parameters(const DenseFfn<A, W>& l) {
    return l.parameters();
}

// --- running layers on calibration batches -----------------------------------------------------

namespace detail {

/// y = layer(batch): forward(x, y), or forward(x, modality ids, y) for ModalityAware layers.
template <class L>
void run(L& layer, const CalibrationBatch& b, MatrixRef<float> y, std::string_view where) {
    if constexpr (ModalityAware<L>) {
        const auto ids = modality_ids(b, layer.modalities(), where);
        layer.forward(b.matrix(), std::span<const std::int32_t>(ids), y);
    } else {
        layer.forward(b.matrix(), y);
    }
}

/// Fidelity of `candidate` against `reference` on every calibration batch (copies of both run).
template <class L1, class L2>
Fidelity compare(const L1& reference, const L2& candidate, const Calibration& cal, std::string_view where) {
    L1 ref = reference;
    L2 cand = candidate;
    FidelityAccumulator acc;
    for (const auto& b : cal.batches()) {
        if (b.rows() == 0) continue;
        Tensor yr(DType::f32, Shape{b.rows(), b.width}), yc(DType::f32, Shape{b.rows(), b.width});
        run(ref, b, yr.matrix<float>(), where);
        run(cand, b, yc.matrix<float>(), where);
        acc.add(yc.matrix<float>(), yr.matrix<float>());
    }
    return acc.result();
}

inline std::vector<index_t> complement(const std::vector<index_t>& kept, index_t n) {
    std::vector<index_t> out;
    for (index_t e = 0; e < n; ++e)
        if (!std::binary_search(kept.begin(), kept.end(), e)) out.push_back(e);
    return out;
}

inline std::vector<index_t> iota(index_t n) {
    std::vector<index_t> v(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
    return v;
}

/// The report's parameter counts: stored (parameters()) and active (active_parameters()) of the
/// layer before and after.
template <class L1, class L2>
void count_parameters(PruneReport& rep, const L1& before, const L2& after) {
    rep.parameters_before = before.parameters();
    rep.parameters_after = after.parameters();
    rep.active_parameters_before = active_parameters(before);
    rep.active_parameters_after = active_parameters(after);
}

/// Finishes a report: count_parameters, then the fidelity of `after` against `before` on every
/// calibration batch.
template <class L1, class L2>
void finish_report(PruneReport& rep, const L1& before, const L2& after, const Calibration& cal,
                   std::string_view where) {
    count_parameters(rep, before, after);
    rep.fidelity = compare(before, after, cal, where);
}

/// What a policy did to one routed group named `name`: `kept` of before's experts (original
/// ids, ascending) remain as after's; k before / after are the routers' (TopKRouterLike; 0
/// otherwise).
template <Router R, ExpertSet X>
GroupChange group_change(std::string name, const RoutedGroup<R, X>& before, const RoutedGroup<R, X>& after,
                         std::vector<index_t> kept) {
    GroupChange g;
    g.group = std::move(name);
    g.experts_before = before.num_experts();
    g.experts_after = after.num_experts();
    g.removed = complement(kept, before.num_experts());
    g.kept = std::move(kept);
    if constexpr (TopKRouterLike<R>) {
        g.k_before = before.router().k();
        g.k_after = after.router().k();
    }
    return g;
}

}  // namespace detail

}  // namespace moe
