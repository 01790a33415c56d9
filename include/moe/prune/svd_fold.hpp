// moe/prune/svd_fold.hpp - SVD folding: N experts -> one ordinary FFN.
//
// The fold (RingMoE deployment chain, step 3: "fold the remaining experts into one dense FFN per
// block by truncated SVD, rank d_ffn / N each, concatenated") builds
//
//   y = W2 Act(W1 x + b1) + b2   ~   sum_e c_e * expert_e(x),   expert_e(x) = V_e Act(U_e x + a_e) + o_e
//
// with hidden width R = sum_e r_e: each expert e (FFN width F_e, weight c_e) contributes r_e of
// its own neurons, whose input rows and biases are copied unchanged into W1 / b1, and an output
// block W2_e' [d, r_e] that replaces its output weights. Because Act is elementwise, a neuron can
// only be kept or dropped (mixing neurons before the activation would change the function), so
// the truncation acts on the space of hidden activations, per expert (basis = activations):
//
//   1. H_e = Act(X U_e^T + a_e) [n, F_e] on the n calibration tokens X, computed by the same
//      kernels as the experts;
//   2. neuron selection: the columns of H_e are scaled by the norms of the matching output
//      columns, G_e = H_e diag(||V_e[:, j]||) (a neuron's contribution to the output), and a
//      rank-revealing decomposition of G_e picks r_e neurons S_e spanning G_e's dominant column
//      space: column-pivoted Householder QR (selection = pivoted_qr: the first r_e pivots, nested
//      in r_e) or the truncated SVD G_e ~ P S Q^T followed by a pivoted QR of Q_r^T (selection =
//      svd, Golub-Klema-Stewart subset selection);
//   3. refit: V_e' and an output correction delta_e minimise, in double precision,
//         || H_e[:, S_e] V_e'^T + 1 delta_e^T - H_e V_e^T ||_F        (least squares, minimum norm)
//      so the kept neurons also carry what the dropped ones contributed (refit_bias = false
//      leaves delta_e = 0);
//   4. concatenate: W1 = [U_e[S_e]], b1 = [a_e[S_e]], W2 = [c_e V_e'], b2 = sum_e c_e (o_e + delta_e).
//
// Consequences: (a) when r_e >= F_e nothing is dropped and V_e' = V_e exactly (no refit), so a
// fold to full rank reproduces sum_e c_e expert_e(x) for every input up to fp32 rounding;
// (b) when G_e has rank <= r_e ("already low-rank" experts: duplicated neurons, neurons with zero
// output weights, a linear activation over a rank-r_e input map) the kept neurons span every
// column of H_e that reaches the output and the refit is exact: duplicated neurons always have
// equal activations, so the fold is exact beyond the calibration tokens too; (c) with
// pivoted_qr the selected sets are nested, so the calibration error never increases with r_e.
// The calibration tokens should outnumber F_e (otherwise the least squares is underdetermined
// and only the calibration tokens are matched).
//
// basis = weights needs no calibration: S_e are the first r_e pivots of a pivoted QR (or the
// GKS selection) of the output weights V_e [d, F_e] and V_e' = V_e[:, S_e] (no refit): exact
// only when the dropped neurons' output columns are zero.
//
// c_e (SvdFold::weighting): sum -> 1 for every expert (the experts' summed output);
// frequency -> the expert's routing frequency in its group on the calibration tokens (choices
// before capacity / tokens); combine_weight -> its mean combine weight (kept choices' weights /
// tokens), the expected share of the layer output it carries. Shared experts enter with 1.
// Experts with c_e = 0 are left out (rank 0). Default rank: r_e = max(1, F_e / N), N = number
// of experts folded (RingMoE's d_ffn / N); the hidden width is the sum of the ranks.
#pragma once

#include "moe/core/precision.hpp"
#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Dense>

#include "moe/backend/cpu/activation.hpp"
#include "moe/backend/cpu/gemm.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/ffn.hpp"
#include "moe/layer/hierarchical.hpp"
#include "moe/layer/moe_layer.hpp"
#include "moe/layer/routed_group.hpp"
#include "moe/layer/shared.hpp"
#include "moe/prune/calibration.hpp"
#include "moe/expert/dense_ffn.hpp"
#include "moe/prune/report.hpp"
#include "moe/prune/stats.hpp"
#include "moe/router/concepts.hpp"

namespace moe {

/// Where neurons are selected.
enum class FoldBasis : std::uint8_t {
    activations,  ///< hidden activations on calibration tokens, with a least-squares refit
    weights,      ///< output weights only (no calibration, no refit)
};
/// How r neurons are selected from a matrix whose columns are neurons.
enum class NeuronSelection : std::uint8_t {
    pivoted_qr,  ///< column-pivoted Householder QR: the first r pivots (nested in r)
    svd,         ///< truncated SVD, then a pivoted QR of the r leading right singular vectors (GKS)
};
/// The weight c_e each routed expert enters the folded sum with.
enum class FoldWeighting : std::uint8_t {
    sum,             ///< 1: the experts' summed output
    frequency,       ///< routing frequency on the calibration tokens (choices before capacity / tokens)
    combine_weight,  ///< mean combine weight on the calibration tokens (expected contribution)
};

/// One expert as the fold used it.
struct FoldedExpert {
    std::string group;
    index_t expert = 0;            ///< id within its group
    index_t ffn = 0;               ///< F_e
    index_t rank = 0;              ///< r_e (0: left out)
    double weight = 1.0;           ///< c_e
    std::vector<index_t> neurons;  ///< S_e, ascending
};

namespace detail {

/// The first r columns a rank-revealing selection picks from M (columns = neurons), ascending.
/// A template (only ever Eigen::MatrixXd) so that Eigen's SVD and QR are instantiated where a fold
/// runs, not in every translation unit that includes this header (that cost ~10 s of parsing each).
template <class Matrix = Eigen::MatrixXd>
std::vector<index_t> select_columns(const Matrix& M, index_t r, NeuronSelection how) {
    Eigen::VectorXi perm;
    if (how == NeuronSelection::svd && M.rows() > 0) {
        Eigen::BDCSVD<Matrix> svd(M, Eigen::ComputeThinV);
        const Eigen::Index q = std::min<Eigen::Index>(static_cast<Eigen::Index>(r), svd.matrixV().cols());
        const Matrix Qt = svd.matrixV().leftCols(q).transpose();
        Eigen::ColPivHouseholderQR<Matrix> qr(Qt);
        perm = qr.colsPermutation().indices();
    } else {
        Eigen::ColPivHouseholderQR<Matrix> qr(M);
        perm = qr.colsPermutation().indices();
    }
    std::vector<index_t> s(perm.data(), perm.data() + r);
    std::sort(s.begin(), s.end());
    return s;
}

/// The weight as a double [out, in] matrix (either stored layout).
template <WeightType W>
Eigen::MatrixXd to_double(WeightMatrix<W> m) {
    Eigen::MatrixXd out(m.out, m.in);
    for (index_t i = 0; i < m.out; ++i)
        for (index_t j = 0; j < m.in; ++j) out(i, j) = static_cast<double>(to_float(m(i, j)));
    return out;
}

}  // namespace detail

/// Options of FoldBuilder (the selection part of SvdFold).
struct FoldOptions {
    FoldBasis basis = FoldBasis::activations;
    NeuronSelection selection = NeuronSelection::pivoted_qr;
    bool refit_bias = true;  ///< activations basis: refit an output correction delta_e too
};

/// Folds experts one at a time into the parts of one dense FFN (see the file comment); build()
/// concatenates them into a DenseFfn<Act, W>. The calibration tokens are copied.
template <Activation Act, WeightPolicy W = float>
class FoldBuilder {
public:
    /// d: token width; calibration [n, d] (may be empty for basis = weights).
    FoldBuilder(index_t d, ConstMatrixRef<float> calibration, FoldOptions options = {}) : d_(d), opt_(options) {
        check<ConfigError>(d > 0, "FoldBuilder", "token width must be positive, got ", d);
        check<ShapeError>(calibration.rows == 0 || calibration.cols == d, "FoldBuilder", "calibration tokens have ",
                          calibration.cols, " features, expected ", d);
        x_ = Tensor(DType::f32, Shape{calibration.rows, d});
        for (index_t t = 0; t < calibration.rows; ++t)
            std::copy(calibration.row(t), calibration.row(t) + d, x_.data<float>() + t * d);
        b2_ = Eigen::VectorXd::Zero(d);
    }

    /// Folds expert e of `x` with rank r (1 <= r <= F) and weight c (c = 0: left out).
    template <WeightPolicy W2>
    void add(const MlpExperts<Act, W2>& x, index_t e, index_t r, double c, std::string group = "experts") {
        const char* w = "FoldBuilder::add";
        const index_t F = x.ffn_size();
        check<ShapeError>(x.hidden_size() == d_, w, group, " experts take ", x.hidden_size(), " features, expected ", d_);
        check<ConfigError>(e >= 0 && e < x.num_experts(), w, group, ": expert ", e, " out of range [0, ",
                           x.num_experts(), ")");
        check<ConfigError>(r >= 1 && r <= F, w, group, ": rank ", r, " must be in [1, F = ", F, "]");
        check<ConfigError>(std::isfinite(c), w, group, ": expert ", e, " has a non-finite weight ", c);
        FoldedExpert info{std::move(group), e, F, 0, c, {}};
        if (c == 0.0) {
            folded_.push_back(std::move(info));
            return;
        }
        const auto U = x.fc1().weight(e), V = x.fc2().weight(e);
        const float* a = x.fc1().bias(e);
        const float* o = x.fc2().bias(e);
        const Eigen::MatrixXd Vd = detail::to_double(V);  // [d, F]
        Eigen::MatrixXd Vnew;                                    // [d, r]
        Eigen::VectorXd delta = Eigen::VectorXd::Zero(d_);
        std::vector<index_t> S;
        if (r >= F) {
            S = detail::iota(F);
            Vnew = Vd;
        } else if (opt_.basis == FoldBasis::weights) {
            S = detail::select_columns(Vd, r, opt_.selection);
            Vnew.resize(d_, r);
            for (index_t j = 0; j < r; ++j) Vnew.col(j) = Vd.col(S[static_cast<std::size_t>(j)]);
        } else {
            const index_t n = x_.dim(0);
            check<ConfigError>(n > 0, w, "folding by activations needs calibration tokens");
            Tensor h(DType::f32, Shape{n, F});
            cpu::GemmWorkspace ws;
            cpu::linear(x_.matrix<float>(), U, a, h.matrix<float>(), false, ws);
            Act::apply(h.data<float>(), n * F);
            const Eigen::MatrixXd H =
                Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
                    h.data<float>(), n, F)
                    .cast<double>();
            const Eigen::VectorXd scale = Vd.colwise().norm().transpose();
            S = detail::select_columns<Eigen::MatrixXd>(H * scale.asDiagonal(), r, opt_.selection);
            const Eigen::MatrixXd Y = H * Vd.transpose();  // [n, d]: the expert's output minus o
            const index_t cols = r + (opt_.refit_bias ? 1 : 0);
            Eigen::MatrixXd A(n, cols);
            for (index_t j = 0; j < r; ++j) A.col(j) = H.col(S[static_cast<std::size_t>(j)]);
            if (opt_.refit_bias) A.col(r).setOnes();
            const Eigen::MatrixXd sol = Eigen::CompleteOrthogonalDecomposition<Eigen::MatrixXd>(A).solve(Y);
            Vnew = sol.topRows(r).transpose();
            if (opt_.refit_bias) delta = sol.row(r).transpose();
        }
        // Append the part.
        for (index_t j = 0; j < r; ++j) {
            const index_t s = S[static_cast<std::size_t>(j)];
            for (index_t i = 0; i < d_; ++i) w1_.push_back(to_float(U(s, i)));
            b1_.push_back(a ? a[s] : 0.0f);
        }
        parts_.push_back(c * Vnew);
        for (index_t i = 0; i < d_; ++i) b2_(i) += c * ((o ? static_cast<double>(o[i]) : 0.0) + delta(i));
        info.rank = r;
        info.neurons = std::move(S);
        width_ += r;
        folded_.push_back(std::move(info));
    }

    /// Hidden width so far (sum of the ranks).
    index_t width() const noexcept { return width_; }
    const std::vector<FoldedExpert>& folded() const noexcept { return folded_; }

    /// The dense FFN: d -> width() -> d, with both biases.
    DenseFfn<Act, W> build() const {
        check<ConfigError>(width_ > 0, "FoldBuilder::build", "nothing folded: no expert with a nonzero weight");
        const index_t R = width_;
        std::vector<float> w2(static_cast<std::size_t>(d_ * R)), b2(static_cast<std::size_t>(d_));
        index_t off = 0;
        for (const auto& p : parts_) {
            for (index_t i = 0; i < d_; ++i)
                for (index_t j = 0; j < p.cols(); ++j)
                    w2[static_cast<std::size_t>(i * R + off + j)] = static_cast<float>(p(i, j));
            off += p.cols();
        }
        for (index_t i = 0; i < d_; ++i) b2[static_cast<std::size_t>(i)] = static_cast<float>(b2_(i));
        return DenseFfn<Act, W>::from_values(d_, R, w1_, b1_, w2, b2);
    }

private:
    index_t d_;
    FoldOptions opt_;
    Tensor x_;
    std::vector<float> w1_, b1_;
    std::vector<Eigen::MatrixXd> parts_;
    Eigen::VectorXd b2_;
    index_t width_ = 0;
    std::vector<FoldedExpert> folded_;
};

namespace detail {

template <class S, class A>
struct foldable_shared : std::false_type {};
template <class A>
struct foldable_shared<NoSharedExperts, A> : std::true_type {};
template <class A, WeightPolicy W>
struct foldable_shared<SharedExperts<MlpExperts<A, W>>, A> : std::true_type {};

/// One expert the fold policy folds: its group, id, width, weight, how to add it, how to run it.
template <Activation Act, WeightPolicy W>
struct FoldTerm {
    std::string group;
    index_t id = 0, ffn = 0;
    double weight = 1.0;
    std::function<void(FoldBuilder<Act, W>&, index_t rank, double weight)> add;
    std::function<void(ConstMatrixRef<float>, MatrixRef<float>, ExpertScratch&)> forward;
};

template <Activation Act, WeightPolicy W, WeightPolicy W2>
void push_terms(std::vector<FoldTerm<Act, W>>& terms, const MlpExperts<Act, W2>& x, const std::string& group,
                const std::vector<double>& weights) {
    for (index_t e = 0; e < x.num_experts(); ++e)
        terms.push_back({group, e, x.ffn_size(), weights[static_cast<std::size_t>(e)],
                         [&x, e, group](FoldBuilder<Act, W>& b, index_t r, double c) { b.add(x, e, r, c, group); },
                         [&x, e](ConstMatrixRef<float> in, MatrixRef<float> out, ExpertScratch& s) {
                             x.expert_forward(e, in, out, s);
                         }});
}

template <Activation Act, WeightPolicy W, class S>
void push_shared(std::vector<FoldTerm<Act, W>>& terms, const S& shared) {
    if constexpr (S::enabled) {
        check<ConfigError>(shared.parameters() == shared.experts().parameters(), "SvdFold",
                           "gated shared experts (sigmoid(x . g) per token) cannot be folded into a dense FFN");
        push_terms(terms, shared.experts(), "shared",
                   std::vector<double>(static_cast<std::size_t>(shared.experts().num_experts()), 1.0));
    }
}

}  // namespace detail

/// SVD folding of a layer's experts into one DenseFfn (see the file comment).
struct SvdFold {
    index_t rank = 0;  ///< neurons kept per expert (<= its F); 0: max(1, F_e / N)
    FoldWeighting weighting = FoldWeighting::sum;
    FoldBasis basis = FoldBasis::activations;
    NeuronSelection selection = NeuronSelection::pivoted_qr;
    bool refit_bias = true;

    std::string name() const {
        static constexpr const char* ws[] = {"sum", "frequency", "combine_weight"};
        return detail::cat("SvdFold(rank ", rank == 0 ? std::string("F/N") : std::to_string(rank), ", ",
                           ws[static_cast<int>(weighting)], ", ", basis == FoldBasis::weights ? "weights" : "activations",
                           ", ", selection == NeuronSelection::svd ? "svd" : "pivoted_qr",
                           refit_bias ? "" : ", no bias refit", ")");
    }

    /// One routed group of MLP experts: adds each expert as a fold term of group `name` with
    /// weight `weights[e]` (weights_of), and the group's k (TopKRouterLike; 0 otherwise) to `ks`.
    template <Router R, Activation A, WeightPolicy W, WeightPolicy W2>
    void apply_group(const RoutedGroup<R, MlpExperts<A, W2>>& group, const std::string& name,
                     const std::vector<double>& weights, std::vector<detail::FoldTerm<A, W>>& terms,
                     std::vector<std::pair<std::string, index_t>>& ks) const {
        detail::push_terms(terms, group.experts(), name, weights);
        index_t k = 0;
        if constexpr (TopKRouterLike<R>) k = group.router().k();
        ks.emplace_back(name, k);
    }

    /// MoELayer with MLP experts (and ungated MLP shared experts, weight 1).
    template <Router R, Activation A, WeightPolicy W, class S>
        requires detail::foldable_shared<S, A>::value
    Pruned<DenseFfn<A, W>> apply(const MoELayer<R, MlpExperts<A, W>, S>& layer, const Calibration& cal) const {
        check_settings(layer.hidden_size(), cal);
        std::vector<detail::FoldTerm<A, W>> terms;
        std::vector<std::pair<std::string, index_t>> ks;
        RoutingStats stats;
        if (weighting != FoldWeighting::sum) collect(stats, "", layer, cal);
        apply_group(layer.group(), "routed", weights_of(stats, {"", "routed", -1}, layer.num_experts()), terms, ks);
        detail::push_shared(terms, layer.shared());
        return fold(layer, terms, cal, ks);
    }

    /// One-modality HierarchicalMoE (apply ExtractModality first): modal, collaborative and
    /// shared experts all fold into one FFN.
    template <Activation A, WeightPolicy W, WeightPolicy W2, class S, Router R>
        requires detail::foldable_shared<S, A>::value
    Pruned<DenseFfn<A, W>> apply(const HierarchicalMoE<MlpExperts<A, W>, MlpExperts<A, W2>, S, R>& layer,
                                 const Calibration& cal) const {
        check<ConfigError>(layer.modalities() == 1, "SvdFold", "the layer has ", layer.modalities(),
                           " modalities; fold a one-modality layer (apply ExtractModality first)");
        check_settings(layer.hidden_size(), cal);
        std::vector<detail::FoldTerm<A, W>> terms;
        std::vector<std::pair<std::string, index_t>> ks;
        RoutingStats stats;
        if (weighting != FoldWeighting::sum) collect(stats, "", layer, cal);
        const auto& mg = layer.modal_group(0);
        const auto& cg = layer.collab_group();
        apply_group(mg, "modal[0]", weights_of(stats, {"", "modal", 0}, mg.num_experts()), terms, ks);
        apply_group(cg, "collab", weights_of(stats, {"", "collab", -1}, cg.num_experts()), terms, ks);
        detail::push_shared(terms, layer.shared());
        return fold(layer, terms, cal, ks);
    }

private:
    void check_settings(index_t d, const Calibration& cal) const {
        check<ConfigError>(rank >= 0, "SvdFold", "rank must be >= 0 (0: F / N), got ", rank);
        cal.expect_hidden(d, "SvdFold");
        check<ConfigError>(!cal.empty() || (basis == FoldBasis::weights && weighting == FoldWeighting::sum), "SvdFold",
                           "no calibration tokens: folding by activations and routing-frequency weights need them");
    }

    std::vector<double> weights_of(const RoutingStats& stats, const StatsKey& key, index_t E) const {
        std::vector<double> w(static_cast<std::size_t>(E), 1.0);
        if (weighting == FoldWeighting::sum) return w;
        if (!stats.contains(key)) {
            std::fill(w.begin(), w.end(), 0.0);  // the group saw no calibration token
            return w;
        }
        const auto& g = stats.at(key);
        for (index_t e = 0; e < E; ++e)
            w[static_cast<std::size_t>(e)] =
                g.frequency(e, weighting == FoldWeighting::frequency ? CountKind::any : CountKind::weight);
        return w;
    }

    template <class L, Activation A, WeightPolicy W>
    Pruned<DenseFfn<A, W>> fold(const L& layer, const std::vector<detail::FoldTerm<A, W>>& terms,
                                const Calibration& cal, const std::vector<std::pair<std::string, index_t>>& ks) const {
        const index_t d = layer.hidden_size();
        index_t N = 0;
        for (const auto& t : terms) N += t.weight != 0.0 ? 1 : 0;
        check<ConfigError>(N > 0, "SvdFold", "no expert has a nonzero weight on the calibration tokens");
        for (const auto& t : terms)
            check<ConfigError>(rank <= t.ffn, "SvdFold", "rank ", rank, " exceeds the FFN width F = ", t.ffn, " of ",
                               t.group, " expert ", t.id);
        const Tensor X = cal.stacked();
        FoldBuilder<A, W> builder(d, X.matrix<float>(), FoldOptions{basis, selection, refit_bias});
        for (const auto& t : terms) {
            const index_t r = rank > 0 ? rank : std::max<index_t>(1, t.ffn / N);
            t.add(builder, r, t.weight);
        }
        DenseFfn<A, W> dense = builder.build();

        PruneReport rep;
        rep.policy = name();
        for (const auto& f : builder.folded()) {
            auto it = std::find_if(rep.groups.begin(), rep.groups.end(), [&](const GroupChange& g) { return g.group == f.group; });
            if (it == rep.groups.end()) {
                rep.groups.push_back({f.group, 0, 0, {}, {}, {}, {}, {}, 0, 0});
                it = rep.groups.end() - 1;
                for (const auto& [g, k] : ks)
                    if (g == f.group) it->k_before = k;
            }
            ++it->experts_before;
            it->folded.push_back(f.expert);
            it->ranks.push_back(f.rank);
            it->weights.push_back(f.weight);
            if (f.rank == 0)
                rep.notes.push_back(detail::cat(f.group, " expert ", f.expert, " left out: weight 0 on the calibration tokens"));
        }
        detail::finish_report(rep, layer, dense, cal, "SvdFold");
        // The fold's own target: sum_e c_e expert_e(x) over the calibration tokens.
        if (X.dim(0) > 0) {
            const index_t n = X.dim(0);
            Tensor target(DType::f32, Shape{n, d}), part(DType::f32, Shape{n, d}), y(DType::f32, Shape{n, d});
            ExpertScratch scratch;
            float* tg = target.data<float>();
            for (const auto& t : terms) {
                if (t.weight == 0.0) continue;
                t.forward(X.matrix<float>(), part.matrix<float>(), scratch);
                const float* p = part.data<float>();
                for (index_t i = 0; i < n * d; ++i) tg[i] += static_cast<float>(t.weight) * p[i];
            }
            DenseFfn<A, W> run = dense;
            run.forward(X.matrix<float>(), y.matrix<float>());
            FidelityAccumulator acc;
            acc.add(y.matrix<float>(), target.matrix<float>());
            rep.fold = acc.result();
        } else {
            rep.notes.push_back("no calibration tokens: fidelity not measured");
        }
        return {std::move(dense), std::move(rep)};
    }
};

}  // namespace moe

MOE_SIMD_DIAGNOSTICS_POP
