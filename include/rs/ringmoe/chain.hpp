// rs/ringmoe/chain.hpp - RingMoE's deployment chain on a whole encoder.
//
//   full (M modalities)
//     -> 1. one modality m       extract_modality: prune::ExtractModality{m} in every block, only
//                                patch embedding m kept (SwinEncoder::map_ffns with keep = {m})
//     -> 2. expert-pruned        prune_collaborative: prune::KeepMostFrequent{0.25} in every block:
//                                the most-used 25% of the collaborative experts (1 of 4), counted
//                                on the block's FFN inputs from calibration images of modality m
//     -> 3. folded (dense)       fold_experts: prune::SvdFold in every block: the remaining modal,
//                                collaborative and shared experts folded into one dense FFN
//                                (rank F / N per expert by default), a plain Swin
//
// run_chain() runs the three steps; after each it writes a safetensors checkpoint
// (checkpoint.hpp), reloads it into the smaller configuration and continues from the reloaded
// encoder (so every step proves its round trip), and reports for each step: parameters (exact,
// checked against the count from the shapes, and the block-matrix count of the published
// arithmetic), whether the reloaded encoder reproduces the in-memory one bit for bit, and the
// fidelity of the encoder output on the evaluation images against the previous step and against
// the single-modality model (cosine similarity and relative error of each image's flattened
// output, mean / worst over images, and of the whole batch as one vector).
//
// Calibration (CalibrationMode): pruning or folding block b changes what blocks after b see.
//   progressive (default)  block b is calibrated on the inputs it receives once blocks 0..b-1
//                          are already pruned (folded): one forward pass over the calibration
//                          images per block, so every block's statistics and fold describe the
//                          inputs it will see in deployment (errors do not compound unseen).
//   once                   every block is calibrated on the inputs of the unpruned model of the
//                          step (one forward pass); cheaper, and what a per-layer offline tool
//                          that never runs the pruned model would do.
// Calibration images are fed in batches of ChainOptions::batch, evaluation images in batches of
// ChainOptions::eval_batch (default 1). Routing capacity is computed per forward call, as at
// inference: in a batch of similar images a group's favourite expert fills up and the later
// images' tokens are dropped from that group, so every model's output, the reference's included,
// depends on the batch composition; one image per call measures what a deployed model does.
//
// Exactness: step 1 is exact (bit for bit on modality m's images). The SVD fold reproduces the
// weighted sum of the experts it folds (SvdFold's own target); a routed group of E > 1 top-1
// experts is not that sum, so a fold is exact only where every routed group holds one expert
// (e.g. modal experts pruned to one as well) and the rank is full.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "moe/core/precision.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/io/safetensors.hpp"
#include "moe/prune/calibration.hpp"
#include "moe/prune/frequency.hpp"
#include "moe/prune/modality.hpp"
#include "moe/prune/report.hpp"
#include "moe/prune/svd_fold.hpp"
#include "rs/ringmoe/checkpoint.hpp"
#include "rs/ringmoe/encoder.hpp"
#include "rs/ringmoe/model.hpp"
#include "rs/ringmoe/moe_modal.hpp"
#include "vision/loaders.hpp"
#include "vision/mlp.hpp"
#include "vision/swin.hpp"

namespace moe::rs::ringmoe {

/// Where a block's calibration tokens come from (see the file comment).
enum class CalibrationMode { progressive, once };

inline const char* calibration_mode_name(CalibrationMode m) noexcept {
    return m == CalibrationMode::progressive ? "progressive" : "once";
}

// ------------------------------------------------------------------------------ images, outputs

namespace detail {

/// Images [first, first + count) of a contiguous f32 [N, C, H, W] view.
inline TensorView image_batch(const TensorView& images, index_t first, index_t count) {
    const index_t per = images.numel() / images.dim(0);
    return TensorView(images.data<float>("ringmoe chain images") + first * per, DType::f32,
                      Shape{count, images.dim(1), images.dim(2), images.dim(3)});
}

inline void check_images(const TensorView& images, std::string_view what, index_t channels, index_t size) {
    check<ShapeError>(images.rank() == 4 && images.dim(0) > 0 && images.dim(1) == channels && images.dim(2) == size &&
                          images.dim(3) == size,
                      what, "expected images [N > 0, ", channels, ", ", size, ", ", size, "], found ",
                      images.shape().str());
    check<DTypeError>(images.dtype() == DType::f32, what, "expected f32 images, found ", dtype_name(images.dtype()));
    check<ShapeError>(images.contiguous(), what, "images must be contiguous (NCHW)");
}

}  // namespace detail

/// The encoder's final features of every image, run in batches of `batch` images:
/// [N * R_last^2, C_last], image n's rows contiguous.
template <class Enc>
Tensor encode(Enc& enc, const TensorView& images, int modality, index_t batch) {
    const char* w = "ringmoe::encode";
    check<ConfigError>(batch > 0, w, "batch must be positive, got ", batch);
    detail::check_images(images, w, enc.config().in_chans.at(static_cast<std::size_t>(modality)),
                               enc.config().image_size);
    const index_t N = images.dim(0);
    Tensor out;
    index_t row = 0;
    for (index_t first = 0; first < N; first += batch) {
        const index_t n = std::min(batch, N - first);
        Tensor y = enc.forward(detail::image_batch(images, first, n), modality);
        if (first == 0) out = Tensor(DType::f32, Shape{y.dim(0) / n * N, y.dim(1)});
        std::memcpy(out.data<float>() + row * y.dim(1), y.raw(), y.nbytes());
        row += y.dim(0);
    }
    return out;
}

/// How close an encoder's outputs are to a reference's on the same images (each image's
/// output flattened to one vector; figures in double).
///
/// The plain figures compare whole outputs. When the reference's outputs of different images
/// are themselves nearly parallel (a common component, e.g. the final LayerNorm's beta, dominates
/// them), any output of the right kind scores a cosine near 1; reference_cross_cosine says how
/// near (the mean cosine between the reference outputs of two different images), and the
/// centered figures compare what is specific to each image: y_n - mu and r_n - mu with mu the
/// reference's mean output over the images.
struct EncoderFidelity {
    index_t images = 0;
    double mean_cosine = std::numeric_limits<double>::quiet_NaN();          ///< mean over images
    double min_cosine = std::numeric_limits<double>::quiet_NaN();           ///< worst image
    double mean_relative_error = std::numeric_limits<double>::quiet_NaN();  ///< mean of ||y - r|| / ||r||
    double max_relative_error = std::numeric_limits<double>::quiet_NaN();   ///< worst image
    double batch_cosine = std::numeric_limits<double>::quiet_NaN();         ///< all images as one vector
    double batch_relative_error = std::numeric_limits<double>::quiet_NaN();
    index_t worst_image = -1;                                               ///< the image of min_cosine
    double centered_mean_cosine = std::numeric_limits<double>::quiet_NaN();  ///< mean of cos(y_n - mu, r_n - mu)
    double centered_relative_error = std::numeric_limits<double>::quiet_NaN();  ///< ||y - r|| / ||r - mu|| (all images)
    double reference_cross_cosine = std::numeric_limits<double>::quiet_NaN();   ///< mean cos(r_i, r_j), i != j
};

/// Fidelity of outputs y against reference r, both [N * rows, C] with image n's rows contiguous.
inline EncoderFidelity compare_outputs(const Tensor& y, const Tensor& r, index_t images) {
    const char* w = "ringmoe::compare_outputs";
    check<ShapeError>(y.shape() == r.shape() && y.rank() == 2, w, "outputs ", y.shape().str(), " and ",
                      r.shape().str(), " differ");
    check<ShapeError>(images > 0 && y.dim(0) % images == 0, w, y.dim(0), " rows do not split into ", images,
                      " images");
    const index_t per = y.numel() / images;
    const float* a = y.data<float>();
    const float* b = r.data<float>();
    EncoderFidelity f;
    f.images = images;
    auto cosine = [](double ab, double aa, double bb) {
        if (aa == 0 && bb == 0) return 1.0;
        if (aa == 0 || bb == 0) return 0.0;
        return ab / std::sqrt(aa * bb);
    };
    auto rel = [](double dd, double bb) {
        return bb > 0 ? std::sqrt(dd / bb) : (dd > 0 ? std::numeric_limits<double>::infinity() : 0.0);
    };
    std::vector<double> mu(static_cast<std::size_t>(per), 0.0);
    for (index_t n = 0; n < images; ++n)
        for (index_t i = 0; i < per; ++i) mu[static_cast<std::size_t>(i)] += b[n * per + i];
    for (auto& v : mu) v /= static_cast<double>(images);
    double AB = 0, AA = 0, BB = 0, DD = 0, CC = 0, sc = 0, se = 0, scc = 0;
    f.min_cosine = std::numeric_limits<double>::infinity();
    f.max_relative_error = 0;
    for (index_t n = 0; n < images; ++n) {
        double ab = 0, aa = 0, bb = 0, dd = 0, cab = 0, caa = 0, cbb = 0;
        for (index_t i = 0; i < per; ++i) {
            const double x = a[n * per + i], z = b[n * per + i], m = mu[static_cast<std::size_t>(i)];
            ab += x * z;
            aa += x * x;
            bb += z * z;
            dd += (x - z) * (x - z);
            cab += (x - m) * (z - m);
            caa += (x - m) * (x - m);
            cbb += (z - m) * (z - m);
        }
        const double c = cosine(ab, aa, bb), e = rel(dd, bb);
        sc += c;
        se += e;
        scc += cosine(cab, caa, cbb);
        if (c < f.min_cosine) {
            f.min_cosine = c;
            f.worst_image = n;
        }
        f.max_relative_error = std::max(f.max_relative_error, e);
        AB += ab;
        AA += aa;
        BB += bb;
        DD += dd;
        CC += cbb;
    }
    f.mean_cosine = sc / static_cast<double>(images);
    f.mean_relative_error = se / static_cast<double>(images);
    f.batch_cosine = cosine(AB, AA, BB);
    f.batch_relative_error = rel(DD, BB);
    f.centered_mean_cosine = scc / static_cast<double>(images);
    f.centered_relative_error = rel(DD, CC);
    if (images > 1) {
        double s = 0;
        for (index_t i = 0; i < images; ++i)
            for (index_t j = i + 1; j < images; ++j) {
                double ab = 0, aa = 0, bb = 0;
                for (index_t k = 0; k < per; ++k) {
                    const double x = b[i * per + k], z = b[j * per + k];
                    ab += x * z;
                    aa += x * x;
                    bb += z * z;
                }
                s += cosine(ab, aa, bb);
            }
        f.reference_cross_cosine = s / static_cast<double>(images * (images - 1) / 2);
    }
    return f;
}

/// Whether two tensors hold the same bytes.
inline bool bit_identical(const Tensor& a, const Tensor& b) {
    return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// ------------------------------------------------------------------------------------- steps

namespace detail {

/// Every block's FFN-slot input over the calibration images (run in batches; one Calibration
/// batch per forward call), tagged with modality `tag` (0: the one-modality layer's id).
template <class Enc>
std::vector<Calibration> block_inputs(Enc& enc, const TensorView& images, int modality, index_t batch,
                                      std::optional<index_t> only_block = std::nullopt) {
    const index_t N = images.dim(0), L = enc.num_blocks();
    std::vector<Calibration> cal(static_cast<std::size_t>(L));
    std::vector<Tensor> caps;
    vision::SwinForward opt;
    opt.ffn_inputs = &caps;
    for (index_t first = 0; first < N; first += batch) {
        const index_t n = std::min(batch, N - first);
        enc.forward(image_batch(images, first, n), modality, opt);
        for (index_t b = 0; b < L; ++b)
            if (!only_block || *only_block == b)
                cal[static_cast<std::size_t>(b)].add(caps[static_cast<std::size_t>(b)].template matrix<float>(), 0);
    }
    return cal;
}

/// Block b of an encoder (blocks numbered over all stages).
template <class Enc>
auto& block_at(Enc& enc, index_t b) {
    for (index_t i = 0; i < enc.config().stages(); ++i) {
        auto& st = enc.stage(i);
        const auto n = static_cast<index_t>(st.blocks.size());
        if (b < n) return st.blocks[static_cast<std::size_t>(b)];
        b -= n;
    }
    throw ConfigError("ringmoe chain", moe::detail::cat("block index out of range (", enc.num_blocks(), " blocks)"));
}

/// A zero FFN of width 1 over C features: holds a block's FFN slot in the dense encoder until
/// the block is folded (its output is never calibrated on: block b's FFN inputs depend only on
/// blocks 0..b-1 and block b's attention).
template <Activation Act, WeightPolicy W>
DenseFfn<Act, W> placeholder_ffn(index_t C) {
    const std::vector<float> zeros(static_cast<std::size_t>(C), 0.0f);
    return DenseFfn<Act, W>::from_values(C, 1, zeros, {}, zeros, {});
}

template <WeightPolicy W, Activation Act>
void require_one_modality(const RingMoeSwin<W, Act>& enc, std::string_view where) {
    check<ConfigError>(enc.modalities() == 1, where, "the encoder has ", enc.modalities(),
                       " modalities; extract one first (extract_modality)");
}

}  // namespace detail

/// Step 1: modality m's sub-model: ExtractModality{m} in every block, patch embedding m only
/// (it becomes modality 0). Exact on modality m's images. `reports` receives one per block.
template <WeightPolicy W, Activation Act>
RingMoeSwin<W, Act> extract_modality(RingMoeSwin<W, Act>&& enc, int m,
                                             std::vector<PruneReport>* reports = nullptr) {
    check<ConfigError>(m >= 0 && m < enc.modalities(), "ringmoe::extract_modality", "modality ", m,
                       " but the encoder has ", enc.modalities());
    const ExtractModality policy{m};
    const Calibration none;
    if (reports) reports->clear();
    const int keep[1] = {m};
    return std::move(enc).template map_ffns<MoeModal<W, Act>>(
        [&](index_t, index_t, MoeModal<W, Act>&& layer) {
            auto p = policy.apply(layer, none);
            if (reports) reports->push_back(std::move(p.report));
            return std::move(p.layer);
        },
        std::span<const int>(keep, 1));
}

/// Step 2: KeepMostFrequent in every block of a one-modality encoder, counted on the block's
/// FFN inputs from `calibration` images [N, C_in, S, S] (see CalibrationMode).
template <WeightPolicy W, Activation Act>
RingMoeSwin<W, Act> prune_collaborative(RingMoeSwin<W, Act>&& enc, const TensorView& calibration,
                                                const KeepMostFrequent& policy = {},
                                                CalibrationMode mode = CalibrationMode::progressive,
                                                index_t batch = 8, std::vector<PruneReport>* reports = nullptr) {
    const char* w = "ringmoe::prune_collaborative";
    detail::require_one_modality(enc, w);
    check<ConfigError>(batch > 0, w, "batch must be positive, got ", batch);
    detail::check_images(calibration, w, enc.config().in_chans.front(), enc.config().image_size);
    if (reports) reports->clear();
    const index_t L = enc.num_blocks();
    std::vector<Calibration> once;
    if (mode == CalibrationMode::once) once = detail::block_inputs(enc, calibration, 0, batch);
    for (index_t b = 0; b < L; ++b) {
        Calibration cal = mode == CalibrationMode::once
                              ? std::move(once[static_cast<std::size_t>(b)])
                              : std::move(detail::block_inputs(enc, calibration, 0, batch, b)[static_cast<std::size_t>(b)]);
        auto& blk = detail::block_at(enc, b);
        blk.ffn().set_exec(enc.exec());
        auto p = policy.apply(blk.ffn(), cal);
        blk.ffn() = std::move(p.layer);
        if (reports) reports->push_back(std::move(p.report));
    }
    return std::move(enc);
}

/// Step 3: every block's experts (modal, collaborative, shared) folded into one dense FFN,
/// block (stage i, block j) by fold_for(i, j) (an SvdFold; e.g. a rank per stage), calibrated on
/// `calibration` images (see CalibrationMode); the result is a plain dense Swin.
template <WeightPolicy W, Activation Act, class FoldFor>
    requires std::is_invocable_r_v<SvdFold, FoldFor&, index_t, index_t>
DenseSwin<W, Act> fold_experts(RingMoeSwin<W, Act>&& enc, const TensorView& calibration,
                                       FoldFor&& fold_for, CalibrationMode mode = CalibrationMode::progressive,
                                       index_t batch = 8, std::vector<PruneReport>* reports = nullptr) {
    const char* w = "ringmoe::fold_experts";
    detail::require_one_modality(enc, w);
    check<ConfigError>(batch > 0, w, "batch must be positive, got ", batch);
    detail::check_images(calibration, w, enc.config().in_chans.front(), enc.config().image_size);
    if (reports) reports->clear();
    // The dense encoder with a placeholder in every FFN slot; the MoE layers wait aside, each
    // folded in turn and put into its slot (progressive: calibrated on the dense encoder, whose
    // blocks 0..b-1 are folded by then).
    std::vector<Calibration> once;
    if (mode == CalibrationMode::once) once = detail::block_inputs(enc, calibration, 0, batch);
    std::vector<std::optional<MoeModal<W, Act>>> moes;
    auto dense = std::move(enc).template map_ffns<vision::Mlp<Act, W>>(
        [&](index_t, index_t, MoeModal<W, Act>&& l) {
            const index_t C = l.hidden_size();
            moes.emplace_back(std::move(l));
            return detail::placeholder_ffn<Act, W>(C);
        });
    index_t b = 0;
    for (index_t i = 0; i < dense.config().stages(); ++i)
        for (index_t j = 0; j < static_cast<index_t>(dense.stage(i).blocks.size()); ++j, ++b) {
            Calibration cal =
                mode == CalibrationMode::once
                    ? std::move(once[static_cast<std::size_t>(b)])
                    : std::move(detail::block_inputs(dense, calibration, 0, batch, b)[static_cast<std::size_t>(b)]);
            auto& layer = moes[static_cast<std::size_t>(b)];
            const SvdFold fold = fold_for(i, j);
            layer->set_exec(dense.exec());
            auto p = fold.apply(*layer, cal);
            dense.stage(i).blocks[static_cast<std::size_t>(j)].ffn() = std::move(p.layer);
            layer.reset();
            if (reports) reports->push_back(std::move(p.report));
        }
    // Rebuilt once more so that the folded FFNs share their scratch as an encoder's do.
    return std::move(dense).template map_ffns<vision::Mlp<Act, W>>(
        [](index_t, index_t, vision::Mlp<Act, W>&& f) { return std::move(f); });
}

/// The same with one SvdFold for every block (rank 0: F / N per expert).
template <WeightPolicy W, Activation Act>
DenseSwin<W, Act> fold_experts(RingMoeSwin<W, Act>&& enc, const TensorView& calibration,
                                       const SvdFold& fold = {}, CalibrationMode mode = CalibrationMode::progressive,
                                       index_t batch = 8, std::vector<PruneReport>* reports = nullptr) {
    return fold_experts(std::move(enc), calibration, [&](index_t, index_t) { return fold; }, mode, batch, reports);
}

// ---------------------------------------------------------------------------------- the chain

struct ChainOptions {
    int modality = 0;                 ///< the modality kept (index into the full model's patch embeddings)
    KeepMostFrequent prune{};         ///< step 2 (fraction 0.25 of the collaborative experts)
    /// Step 3: rank 0 (F / N per expert, N experts folded), each expert weighted by its mean
    /// combine weight on the calibration tokens (its expected share of the routed output; the
    /// shared expert 1). SvdFold's own default (weighting sum) adds all 4 modal experts at
    /// weight 1 where a token uses one: on the trained tiny model (multispectral) the folded
    /// encoder's centered cosine to the pruned one is 0.90 with sum, 1.00 with combine_weight.
    SvdFold fold = [] {
        SvdFold f;
        f.weighting = FoldWeighting::combine_weight;
        return f;
    }();
    CalibrationMode calibration = CalibrationMode::progressive;
    index_t batch = 8;                ///< calibration images per forward call
    /// Evaluation images per forward call. 1 (default): every image on its own, as a deployed
    /// model sees it; routing capacity is per call, so in a larger batch of similar images the
    /// later images' tokens can be dropped by a group at capacity, and every model's output
    /// (the reference's too) then depends on the batch composition.
    index_t eval_batch = 1;
    Exec exec = Exec::serial();       ///< where every model of the chain runs
    std::filesystem::path dir;        ///< where the checkpoints go (empty: in memory only)
    std::string stem = "ringmoe";     ///< checkpoint file names: <stem>-<step>.safetensors
};

/// One row of the chain's report.
struct ChainStep {
    std::string name;                      ///< full, single_modality, expert_pruned, folded
    std::string ffn;                       ///< what every FFN slot holds, e.g. "4+4+1 experts"
    std::string checkpoint;                ///< the file written ("" for the input, "<memory>" in memory)
    std::uintmax_t checkpoint_bytes = 0;
    CheckpointInfo info;                   ///< the configuration the checkpoint records
    index_t parameters = 0;                ///< encoder.parameters() of the (reloaded) encoder
    index_t shape_parameters = 0;          ///< the same counted from the shapes (info.exact_parameters())
    index_t block_matrix_parameters = 0;   ///< the published arithmetic's count (info.block_matrix_parameters())
    bool reloaded = false;                 ///< written and read back
    bool reload_identical = false;         ///< the reloaded encoder's outputs equal the in-memory one's, bit for bit
    std::optional<EncoderFidelity> vs_previous, vs_single;
    std::vector<PruneReport> blocks;       ///< per-block reports of the step's policy
    double seconds = 0;                    ///< the step (calibration, pruning, save, reload), not the evaluation
};

struct ChainReport {
    int modality = 0;
    CalibrationMode calibration = CalibrationMode::progressive;
    index_t calibration_images = 0, evaluation_images = 0, batch = 0, eval_batch = 0;
    std::string prune_policy, fold_policy;
    std::vector<ChainStep> steps;

    const ChainStep& step(std::string_view name) const {
        for (const auto& s : steps)
            if (s.name == name) return s;
        throw NotFoundError("ringmoe::ChainReport", moe::detail::cat("no step '", name, "'"));
    }

    /// The summary table (one row per step): the mean over images of the cosine (cos), the
    /// relative error (err) and the centered cosine (c-cos, see EncoderFidelity) against the
    /// previous step and against the single-modality model.
    std::string table() const {
        std::ostringstream os;
        char buf[512];
        std::snprintf(buf, sizeof buf, "%-16s %-22s %11s %11s %7s | %-22s | %-22s\n", "step", "FFN per block",
                      "parameters", "block mat.", "reload", "vs previous step", "vs single-modality");
        os << buf;
        std::snprintf(buf, sizeof buf, "%-16s %-22s %11s %11s %7s | %-22s | %-22s\n", "", "", "", "", "",
                      "   cos    err  c-cos", "   cos    err  c-cos");
        os << buf;
        auto fid = [](const std::optional<EncoderFidelity>& f) {
            char b[64];
            if (!f) return std::string("     -      -      -");
            std::snprintf(b, sizeof b, "%6.4f %6.4f %6.3f", f->mean_cosine, f->mean_relative_error,
                          f->centered_mean_cosine);
            return std::string(b);
        };
        double cross = std::numeric_limits<double>::quiet_NaN();
        for (const auto& s : steps) {
            std::snprintf(buf, sizeof buf, "%-16s %-22s %11lld %11lld %7s | %-22s | %-22s\n", s.name.c_str(),
                          s.ffn.c_str(), static_cast<long long>(s.parameters),
                          static_cast<long long>(s.block_matrix_parameters),
                          !s.reloaded ? "-" : (s.reload_identical ? "exact" : "DIFFERS"), fid(s.vs_previous).c_str(),
                          fid(s.vs_single).c_str());
            os << buf;
            if (s.name == "single_modality" && s.vs_single) cross = s.vs_single->reference_cross_cosine;
        }
        std::snprintf(buf, sizeof buf,
                      "(means over %lld images; two different images score cos %.4f under the single-modality "
                      "model: c-cos, the cosine after removing the mean output, is what tells images apart)\n",
                      static_cast<long long>(evaluation_images), cross);
        os << buf;
        return os.str();
    }

    /// The table, then the settings and per-step details (kept experts, fold widths, worst images).
    std::string str() const {
        std::ostringstream os;
        os << "RingMoE deployment chain: modality " << modality << ", calibration " << calibration_mode_name(calibration)
           << " on " << calibration_images << " images (batches of " << batch << "), evaluation on "
           << evaluation_images << " images (batches of " << eval_batch << ")\n  step 2: " << prune_policy << "\n  step 3: " << fold_policy << "\n\n"
           << table() << "\n";
        for (const auto& s : steps) {
            os << s.name << ": " << s.parameters << " parameters (shapes: " << s.shape_parameters << ")";
            if (!s.checkpoint.empty()) os << ", checkpoint " << s.checkpoint << " (" << s.checkpoint_bytes << " bytes)";
            os << ", " << s.seconds << " s\n";
            auto batch = [&](const EncoderFidelity& f) {
                os << "whole batch: cosine " << f.batch_cosine << ", relative error " << f.batch_relative_error
                   << ", centered relative error " << f.centered_relative_error << "; ";
            };
            if (s.vs_previous) {
                os << "  vs previous: ";
                batch(*s.vs_previous);
                os << "worst image (" << s.vs_previous->worst_image << ") cosine "
                   << s.vs_previous->min_cosine << ", largest relative error "
                   << s.vs_previous->max_relative_error << "\n";
            }
            if (s.vs_single && s.name != "single_modality") {
                os << "  vs single:   ";
                batch(*s.vs_single);
                os << "worst image (" << s.vs_single->worst_image << ") cosine "
                   << s.vs_single->min_cosine << ", largest relative error "
                   << s.vs_single->max_relative_error << "\n";
            }
            for (std::size_t b = 0; b < s.blocks.size(); ++b) {
                const auto& r = s.blocks[b];
                if (s.name == "expert_pruned") {
                    const auto& g = r.group("collab");
                    os << "  block " << b << ": collaborative kept " << shape_str(g.kept) << " of " << g.experts_before
                       << "; layer on calibration tokens: cosine " << r.fidelity.cosine << ", relative error "
                       << r.fidelity.relative_error << "\n";
                } else if (s.name == "folded") {
                    index_t width = 0;
                    for (const auto& g : r.groups)
                        for (index_t k : g.ranks) width += k;
                    os << "  block " << b << ": FFN width " << width << "; layer on calibration tokens: cosine "
                       << r.fidelity.cosine << ", relative error " << r.fidelity.relative_error;
                    if (r.fold) os << " (vs the weighted expert sum: " << r.fold->relative_error << ")";
                    os << "\n";
                }
            }
        }
        return os.str();
    }
};

/// The chain's encoders (each the one reloaded from its checkpoint) and its report.
template <WeightPolicy W, Activation Act>
struct ChainResult {
    ChainReport report;
    RingMoeSwin<W, Act> single;
    RingMoeSwin<W, Act> pruned;
    DenseSwin<W, Act> folded;
};

namespace detail {

inline std::string ffn_summary(const CheckpointInfo& info) {
    if (info.ffn == FfnKind::dense) {
        index_t lo = info.blocks.front().ffn, hi = lo;
        for (const auto& b : info.blocks) {
            lo = std::min(lo, b.ffn);
            hi = std::max(hi, b.ffn);
        }
        return lo == hi ? moe::detail::cat("dense F=", lo) : moe::detail::cat("dense F=", lo, "..", hi);
    }
    const auto& b = info.blocks.front();
    std::string modal;
    for (std::size_t m = 0; m < b.modal_experts.size(); ++m) modal += (m ? "," : "") + std::to_string(b.modal_experts[m]);
    return moe::detail::cat(b.modal_experts.size() > 1 ? "(" + modal + ")" : modal, "+", b.collab_experts, "+",
                       b.shared_experts, " experts");
}

/// A checkpoint of `enc` on disk (dir non-empty) or in memory, opened.
template <class Ffn, WeightPolicy W>
io::SafetensorsFile write_and_open(const vision::SwinEncoder<Ffn, W>& enc, const CheckpointInfo& info,
                                   const ChainOptions& opt, ChainStep& row) {
    auto writer = checkpoint_writer(enc, info);
    if (opt.dir.empty()) {
        auto bytes = writer.to_bytes();
        row.checkpoint = "<memory>";
        row.checkpoint_bytes = bytes.size();
        return io::SafetensorsFile::from_buffer(std::move(bytes), opt.stem + "-" + info.step);
    }
    std::filesystem::create_directories(opt.dir);
    const auto path = opt.dir / (opt.stem + "-" + info.step + ".safetensors");
    writer.write(path);
    row.checkpoint = path.string();
    row.checkpoint_bytes = std::filesystem::file_size(path);
    return io::SafetensorsFile::open(path);
}

template <class Enc>
void count(ChainStep& row, const Enc& enc) {
    row.parameters = enc.parameters();
    row.shape_parameters = row.info.exact_parameters();
    row.block_matrix_parameters = row.info.block_matrix_parameters();
    row.ffn = ffn_summary(row.info);
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// What every step does after building its encoder `mem` in memory: write the checkpoint,
/// reload it with load(file), check that the reload encodes the evaluation images bit for bit
/// as `mem` did, and fill the row (metadata, counts, time since t0). Returns the reloaded
/// encoder, its output and the open checkpoint (the next step starts from it); `mem` is gone.
template <class Mem, class Load>
auto checkpoint_step(ChainStep& row, Mem mem, const std::vector<int>& source, Load&& load,
                     const TensorView& evaluation, const ChainOptions& opt, std::chrono::steady_clock::time_point t0) {
    row.info = describe(mem, row.name, source);
    io::SafetensorsFile file = write_and_open(mem, row.info, opt, row);
    auto enc = load(file);
    enc.set_exec(opt.exec);
    row.reloaded = true;
    row.seconds = seconds_since(t0);
    Tensor y = encode(enc, evaluation, 0, opt.eval_batch);
    row.reload_identical = bit_identical(encode(mem, evaluation, 0, opt.eval_batch), y);
    count(row, enc);
    return std::tuple{std::move(enc), std::move(y), std::move(file)};
}

}  // namespace detail

/// The deployment chain (see the file comment) on a full encoder. calibration / evaluation:
/// images [N, C_in_m, S, S] of modality opt.modality (the calibration images should be like the
/// deployment data; the evaluation images held out). Every step's checkpoint is written to
/// opt.dir (or kept in memory) and the next step starts from the reloaded encoder.
template <WeightPolicy W, Activation Act>
ChainResult<W, Act> run_chain(RingMoeSwin<W, Act> full, const TensorView& calibration,
                              const TensorView& evaluation, const ChainOptions& opt = {}) {
    const char* w = "ringmoe::run_chain";
    const int m = opt.modality;
    check<ConfigError>(m >= 0 && m < full.modalities(), w, "modality ", m, " but the encoder has ", full.modalities());
    check<ConfigError>(opt.batch > 0 && opt.eval_batch > 0, w, "batch sizes must be positive, got ", opt.batch,
                       " and ", opt.eval_batch);
    const index_t cin = full.config().in_chans.at(static_cast<std::size_t>(m)), S = full.config().image_size;
    detail::check_images(calibration, "ringmoe::run_chain calibration images", cin, S);
    detail::check_images(evaluation, "ringmoe::run_chain evaluation images", cin, S);
    using detail::seconds_since;
    using clock = std::chrono::steady_clock;
    const index_t N = evaluation.dim(0), B = opt.batch, E = opt.eval_batch;

    ChainReport rep;
    rep.modality = m;
    rep.calibration = opt.calibration;
    rep.calibration_images = calibration.dim(0);
    rep.evaluation_images = N;
    rep.batch = B;
    rep.eval_batch = E;
    rep.prune_policy = opt.prune.name();
    rep.fold_policy = opt.fold.name();

    // 0. the full model on modality m's images.
    full.set_exec(opt.exec);
    ChainStep s0;
    s0.name = "full";
    s0.info = describe(full, "full");
    detail::count(s0, full);
    const Tensor y0 = encode(full, evaluation, m, E);
    rep.steps.push_back(std::move(s0));

    // 1. one modality.
    const auto load_moe = [](const io::SafetensorsFile& f) { return load_moe_encoder<W, Act>(f); };
    auto t0 = clock::now();
    ChainStep s1;
    s1.name = "single_modality";
    const std::vector<int> source{rep.steps.front().info.source_modalities.at(static_cast<std::size_t>(m))};
    auto [single, y1, f1] = detail::checkpoint_step(s1, extract_modality(std::move(full), m, &s1.blocks), source,
                                                          load_moe, evaluation, opt, t0);
    s1.vs_previous = compare_outputs(y1, y0, N);
    s1.vs_single = compare_outputs(y1, y1, N);
    rep.steps.push_back(std::move(s1));

    // 2. the most-used collaborative experts.
    t0 = clock::now();
    ChainStep s2;
    s2.name = "expert_pruned";
    auto work = load_moe_encoder<W, Act>(f1);
    work.set_exec(opt.exec);
    auto [pruned, y2, f2] = detail::checkpoint_step(
        s2, prune_collaborative(std::move(work), calibration, opt.prune, opt.calibration, B, &s2.blocks), source,
        load_moe, evaluation, opt, t0);
    s2.vs_previous = compare_outputs(y2, y1, N);
    s2.vs_single = s2.vs_previous;
    rep.steps.push_back(std::move(s2));

    // 3. the SVD fold.
    t0 = clock::now();
    ChainStep s3;
    s3.name = "folded";
    auto work2 = load_moe_encoder<W, Act>(f2);
    work2.set_exec(opt.exec);
    auto [folded, y3, f3] = detail::checkpoint_step(
        s3, fold_experts(std::move(work2), calibration, opt.fold, opt.calibration, B, &s3.blocks), source,
        [](const io::SafetensorsFile& f) { return load_dense_encoder<W, Act>(f); }, evaluation, opt, t0);
    s3.vs_previous = compare_outputs(y3, y2, N);
    s3.vs_single = compare_outputs(y3, y1, N);
    rep.steps.push_back(std::move(s3));

    return {std::move(rep), std::move(single), std::move(pruned), std::move(folded)};
}

/// The chain on a model (rs/ringmoe/model.hpp): its encoder (heads play no part in the chain).
template <WeightPolicy W, Activation Act>
ChainResult<W, Act> run_chain(RingMoe<W, Act> model, const TensorView& calibration, const TensorView& evaluation,
                              const ChainOptions& opt = {}) {
    return run_chain(std::move(model.encoder()), calibration, evaluation, opt);
}

}  // namespace moe::rs::ringmoe
