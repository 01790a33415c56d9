// vision/swin.hpp - the hierarchical Swin encoder as RingMoE uses it.
//
//   SwinConfig                  run-time sizes; the defaults are RingMoE's encoder (C 448, depths
//                               [2, 2, 18, 2], heads [14, 28, 56, 112], window 12, 192 input, 4
//                               modalities; rs::ringmoe::swin_config())
//   SwinBlock<Ffn, W>           window attention with a learned relative-position-bias table
//                               (Swin-V1), shifted windows with the -100 mask; residual order
//                               res_post (Swin-V2, RingMoE: x + LN(attn(x)), x + LN(ffn(x))) or pre
//   PatchMerging<W>             2x2 concat [x(0::2, 0::2), x(1::2, 0::2), x(0::2, 1::2),
//                               x(1::2, 1::2)] -> Linear 4C -> 2C without bias -> LayerNorm 2C
//   SwinEncoder<Ffn, W>         per-modality patch embeddings (conv p x p + LayerNorm) -> stages
//                               (blocks, then merging except after the last) -> LayerNorm
//   swin_parameter_count(cfg)   dense-MLP parameter count, analytically
//
// Tokens are [B * H * W, C], row-major over (b, y, x). Each stage has a fixed resolution
// (image_size / patch / 2^i); when it is not larger than the window, the window is clipped to
// the resolution and the shift is 0 (the released code). Shifted blocks (odd j) roll the grid
// by -w/2 before partitioning into windows and by +w/2 after; the mask gives -100 to pairs of
// tokens from different regions of the rolled grid (Swin's img_mask slices).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "moe/core/precision.hpp"
#include "vision/attention.hpp"
#include "vision/block.hpp"
#include "vision/mlp.hpp"
#include "vision/patch_embed.hpp"

namespace moe::vision {

struct SwinConfig {
    index_t image_size = 192;
    index_t patch = 4;
    std::vector<index_t> in_chans{3, 8, 3, 4};  ///< one patch embedding per modality
    index_t embed_dim = 448;
    std::vector<index_t> depths{2, 2, 18, 2};
    std::vector<index_t> heads{14, 28, 56, 112};
    index_t window = 12;
    double mlp_ratio = 4.0;
    bool qkv_bias = true;
    float block_eps = 1e-6f;   ///< norm1 / norm2
    float patch_eps = 1e-6f;   ///< patch-embedding norm
    float merge_eps = 1e-4f;   ///< patch-merging norm (RingMoE: 1e-4)
    float final_eps = 1e-6f;
    NormOrder order = NormOrder::res_post;

    index_t stages() const noexcept { return static_cast<index_t>(depths.size()); }
    index_t dim(index_t i) const noexcept { return embed_dim << i; }
    index_t resolution(index_t i) const noexcept { return (image_size / patch) >> i; }
    index_t window_at(index_t i) const noexcept { return std::min(window, resolution(i)); }
    index_t shift_at(index_t i) const noexcept { return resolution(i) <= window ? 0 : window / 2; }
    index_t ffn_hidden(index_t i) const noexcept {
        return static_cast<index_t>(static_cast<double>(dim(i)) * mlp_ratio);
    }
    void validate(std::string_view what = "vision::SwinConfig") const {
        check<ConfigError>(!depths.empty() && depths.size() == heads.size(), what, depths.size(), " depths and ",
                           heads.size(), " head counts");
        check<ConfigError>(!in_chans.empty(), what, "at least one input modality is needed");
        check<ConfigError>(patch > 0 && image_size % patch == 0, what, "image ", image_size,
                           " is not a multiple of patch ", patch);
        for (index_t i = 0; i < stages(); ++i) {
            const index_t r = resolution(i);
            check<ConfigError>(r > 0 && (i == 0 || resolution(i - 1) == 2 * r), what, "stage ", i,
                               ": the grid does not halve evenly (", image_size / patch, " tokens per side)");
            check<ConfigError>(r % window_at(i) == 0, what, "stage ", i, ": resolution ", r,
                               " is not a multiple of window ", window_at(i));
            check<ConfigError>(heads[static_cast<std::size_t>(i)] > 0 && dim(i) % heads[static_cast<std::size_t>(i)] == 0,
                               what, "stage ", i, ": ", heads[static_cast<std::size_t>(i)], " heads do not divide ",
                               dim(i));
        }
    }
};

/// Parameters of a Swin with dense MLPs (one patch embedding per modality; no mask token).
inline index_t swin_parameter_count(const SwinConfig& c) noexcept {
    const index_t C0 = c.embed_dim;
    index_t p = 0;
    for (index_t cin : c.in_chans) p += C0 * cin * c.patch * c.patch + C0 + 2 * C0;
    for (index_t i = 0; i < c.stages(); ++i) {
        const index_t C = c.dim(i), F = c.ffn_hidden(i), w = c.window_at(i);
        const index_t H = c.heads[static_cast<std::size_t>(i)];
        const index_t block = 4 * C + 4 * C * C + (c.qkv_bias ? 3 * C : 0) + C + (2 * w - 1) * (2 * w - 1) * H +
                              2 * C * F + F + C;
        p += c.depths[static_cast<std::size_t>(i)] * block;
        if (i + 1 < c.stages()) p += 4 * C * 2 * C + 2 * 2 * C;
    }
    p += 2 * c.dim(c.stages() - 1);
    return p;
}

/// Swin-V1 relative position index of a w x w window: idx[a * w^2 + b] =
/// (ya - yb + w - 1) * (2w - 1) + (xa - xb + w - 1).
inline std::vector<std::int32_t> relative_position_index(index_t w) {
    const index_t n = w * w;
    std::vector<std::int32_t> idx(static_cast<std::size_t>(n * n));
    for (index_t a = 0; a < n; ++a)
        for (index_t b = 0; b < n; ++b)
            idx[static_cast<std::size_t>(a * n + b)] =
                static_cast<std::int32_t>((a / w - b / w + w - 1) * (2 * w - 1) + (a % w - b % w + w - 1));
    return idx;
}

/// The shifted-window mask [nW, w^2, w^2] (0 or -100) of an R x R grid, window w, shift s.
inline Tensor shifted_window_mask(index_t R, index_t w, index_t s) {
    std::vector<int> label(static_cast<std::size_t>(R * R));
    auto region = [&](index_t v) { return v < R - w ? 0 : (v < R - s ? 1 : 2); };
    for (index_t y = 0; y < R; ++y)
        for (index_t x = 0; x < R; ++x) label[static_cast<std::size_t>(y * R + x)] = static_cast<int>(region(y) * 3 + region(x));
    const index_t nw = R / w, n = w * w;
    Tensor m(DType::f32, {nw * nw, n, n});
    float* d = m.data<float>();
    for (index_t wy = 0; wy < nw; ++wy)
        for (index_t wx = 0; wx < nw; ++wx) {
            float* mw = d + (wy * nw + wx) * n * n;
            for (index_t a = 0; a < n; ++a) {
                const int la = label[static_cast<std::size_t>((wy * w + a / w) * R + wx * w + a % w)];
                for (index_t b = 0; b < n; ++b) {
                    const int lb = label[static_cast<std::size_t>((wy * w + b / w) * R + wx * w + b % w)];
                    mw[a * n + b] = la == lb ? 0.0f : -100.0f;
                }
            }
        }
    return m;
}

/// A Swin block at a fixed resolution R x R, window w, shift s.
template <class Ffn, WeightPolicy W = float>
class SwinBlock {
public:
    using ffn_type = Ffn;
    SwinBlock() = default;
    /// table: the relative-position-bias table [(2w - 1)^2, heads].
    SwinBlock(LayerNorm norm1, Attention<W> attn, Tensor table, LayerNorm norm2, Ffn ffn, index_t resolution,
              index_t window, index_t shift, NormOrder order = NormOrder::res_post,
              std::string_view what = "vision::SwinBlock")
        : norm1_(std::move(norm1)), norm2_(std::move(norm2)), attn_(std::move(attn)), ffn_(std::move(ffn)),
          R_(resolution), w_(window), s_(shift), order_(order) {
        const index_t C = attn_.width(), H = attn_.heads(), n = w_ * w_;
        check<ConfigError>(w_ > 0 && R_ % w_ == 0 && s_ >= 0 && s_ < w_, what, "window ", w_, " / shift ", s_,
                           " do not fit resolution ", R_);
        check<ShapeError>(norm1_.size() == C && norm2_.size() == C, what, "norms over ", norm1_.size(), " and ",
                          norm2_.size(), " features, attention width ", C);
        const index_t rows = (2 * w_ - 1) * (2 * w_ - 1);
        check<ShapeError>(table.rank() == 2 && table.dim(0) == rows && table.dim(1) == H, what,
                          "expected a relative-position-bias table [", rows, ", ", H, "], found ", table.shape().str());
        table_ = table.dtype() == DType::f32 ? std::move(table) : convert(table.view(), DType::f32);
        bias_ = Tensor(DType::f32, {H, n, n});
        const auto idx = relative_position_index(w_);
        const float* t = table_.data<float>();
        float* b = bias_.data<float>();
        for (index_t h = 0; h < H; ++h)
            for (index_t i = 0; i < n * n; ++i) b[h * n * n + i] = t[idx[static_cast<std::size_t>(i)] * H + h];
        if (s_ > 0) mask_ = shifted_window_mask(R_, w_, s_);
    }

    index_t width() const noexcept { return attn_.width(); }
    index_t resolution() const noexcept { return R_; }
    index_t window() const noexcept { return w_; }
    index_t shift() const noexcept { return s_; }
    const Tensor& attention_mask() const noexcept { return mask_; }
    const Tensor& relative_position_bias() const noexcept { return bias_; }
    Attention<W>& attn() noexcept { return attn_; }
    const Attention<W>& attn() const noexcept { return attn_; }
    Ffn& ffn() noexcept { return ffn_; }
    const Ffn& ffn() const noexcept { return ffn_; }
    index_t parameters() const noexcept {
        return norm1_.parameters() + norm2_.parameters() + attn_.parameters() + table_.numel() + ffn_parameters(ffn_);
    }

    /// This block with another FFN in its slot (attention, norms and geometry moved over): how a
    /// deployment step swaps a hierarchical MoE for a pruned or folded FFN.
    template <class Ffn2>
    SwinBlock<Ffn2, W> with_ffn(Ffn2 ffn) && {
        return SwinBlock<Ffn2, W>(std::move(norm1_), std::move(attn_), std::move(table_), std::move(norm2_),
                                  std::move(ffn), R_, w_, s_, order_);
    }
    const LayerNorm& norm1() const noexcept { return norm1_; }
    const LayerNorm& norm2() const noexcept { return norm2_; }
    /// Share o's activation buffers (window partitions, residual branches, attention, and the
    /// FFN slot's where it can): blocks that run one after the other need one set, not one each.
    void share_scratch(SwinBlock& o) {
        a_.share(o.a_);
        b_.share(o.b_);
        win_.share(o.win_);
        wout_.share(o.wout_);
        attn_.share_scratch(o.attn_);
        if constexpr (ScratchSharing<Ffn>) ffn_.share_scratch(o.ffn_);
    }
    /// Whether this block uses o's buffers.
    bool shares_scratch_with(const SwinBlock& o) const noexcept {
        return a_.shares_with(o.a_) && attn_.shares_scratch_with(o.attn_);
    }
    /// The relative-position-bias table [(2w - 1)^2, heads] as loaded.
    const Tensor& bias_table() const noexcept { return table_; }
    NormOrder order() const noexcept { return order_; }

    /// x [B * R * R, C] in place. ffn_input, when given, receives a copy of what the FFN slot
    /// saw ([B * R * R, C]: the calibration tokens of a deployment step).
    void forward(MatrixRef<float> x, const FfnContext& ctx = {}, Tensor* ffn_input = nullptr) {
        const char* w = "vision::SwinBlock::forward";
        const index_t C = width(), L = R_ * R_;
        check<ShapeError>(x.cols == C && x.rows % L == 0, w, "expected [B * ", L, ", ", C, "], found [", x.rows, ", ",
                          x.cols, "]");
        const index_t B = x.rows / L, nw = R_ / w_, n = w_ * w_;
        const Tensor none;
        detail::residual(order_, x, norm1_, none,
                         [&](ConstMatrixRef<float> in, MatrixRef<float> out) {
                             float* win = win_.get(static_cast<std::size_t>(x.rows * C));
                             float* wout = wout_.get(static_cast<std::size_t>(x.rows * C));
                             // roll by -s and partition: window row r of window (b, wy, wx) is grid
                             // position ((wy w + r / w + s) % R, (wx w + r % w + s) % R).
                             auto src_row = [&](index_t b, index_t wy, index_t wx, index_t r) {
                                 const index_t y = (wy * w_ + r / w_ + s_) % R_, xx = (wx * w_ + r % w_ + s_) % R_;
                                 return b * L + y * R_ + xx;
                             };
                             for (index_t b = 0; b < B; ++b)
                                 for (index_t wy = 0; wy < nw; ++wy)
                                     for (index_t wx = 0; wx < nw; ++wx)
                                         for (index_t r = 0; r < n; ++r)
                                             std::memcpy(win + (((b * nw + wy) * nw + wx) * n + r) * C,
                                                         in.row(src_row(b, wy, wx, r)),
                                                         static_cast<std::size_t>(C) * sizeof(float));
                             attn_.forward(ConstMatrixRef<float>(win, x.rows, C), MatrixRef<float>(wout, x.rows, C), n,
                                           bias_.data<float>(), s_ > 0 ? mask_.data<float>() : nullptr, nw * nw,
                                           ctx.exec);
                             for (index_t b = 0; b < B; ++b)
                                 for (index_t wy = 0; wy < nw; ++wy)
                                     for (index_t wx = 0; wx < nw; ++wx)
                                         for (index_t r = 0; r < n; ++r)
                                             std::memcpy(out.row(src_row(b, wy, wx, r)),
                                                         wout + (((b * nw + wy) * nw + wx) * n + r) * C,
                                                         static_cast<std::size_t>(C) * sizeof(float));
                         },
                         a_, b_);
        detail::residual(order_, x, norm2_, none,
                         [&](ConstMatrixRef<float> in, MatrixRef<float> out) {
                             if (ffn_input) {
                                 *ffn_input = Tensor(DType::f32, {in.rows, in.cols});
                                 auto d = ffn_input->matrix<float>();
                                 for (index_t r = 0; r < in.rows; ++r)
                                     std::memcpy(d.row(r), in.row(r), static_cast<std::size_t>(in.cols) * sizeof(float));
                             }
                             ffn_forward(ffn_, in, out, ctx);
                         },
                         a_, b_);
    }

private:
    LayerNorm norm1_, norm2_;
    Attention<W> attn_;
    Ffn ffn_;
    Tensor table_, bias_, mask_;
    index_t R_ = 0, w_ = 0, s_ = 0;
    NormOrder order_ = NormOrder::res_post;
    Scratch<float> a_, b_, win_, wout_;
};

/// Swin patch merging: [B * R * R, C] -> [B * (R/2) * (R/2), 2C].
template <WeightPolicy W = float>
class PatchMerging {
public:
    PatchMerging() = default;
    PatchMerging(Linear<W> reduction, LayerNorm norm, index_t resolution, std::string_view what = "vision::PatchMerging")
        : reduction_(std::move(reduction)), norm_(std::move(norm)), R_(resolution) {
        const index_t C4 = reduction_.in_features();
        check<ShapeError>(C4 % 4 == 0 && reduction_.out_features() == C4 / 2 && !reduction_.has_bias(), what,
                          "expected a bias-free reduction [", C4 / 2, ", ", C4, "], found [", reduction_.out_features(),
                          ", ", C4, "]", reduction_.has_bias() ? " with a bias" : "");
        check<ShapeError>(norm_.size() == C4 / 2, what, "norm over ", norm_.size(), " features, expected ", C4 / 2);
        check<ConfigError>(R_ % 2 == 0, what, "resolution ", R_, " is odd");
    }
    index_t parameters() const noexcept { return reduction_.parameters() + norm_.parameters(); }
    index_t in_width() const noexcept { return reduction_.in_features() / 4; }
    index_t resolution() const noexcept { return R_; }
    const Linear<W>& reduction() const noexcept { return reduction_; }
    const LayerNorm& norm() const noexcept { return norm_; }

    Tensor forward(ConstMatrixRef<float> x, const Exec& ex = Exec::serial()) const {
        const index_t C = in_width(), L = R_ * R_, h = R_ / 2;
        check<ShapeError>(x.cols == C && x.rows % L == 0, "vision::PatchMerging::forward", "expected [B * ", L, ", ",
                          C, "], found [", x.rows, ", ", x.cols, "]");
        const index_t B = x.rows / L, T = B * h * h;
        float* cat = cat_.get(static_cast<std::size_t>(T * 4 * C));
        constexpr index_t dy[4] = {0, 1, 0, 1}, dx[4] = {0, 0, 1, 1};
        for (index_t b = 0; b < B; ++b)
            for (index_t i = 0; i < h; ++i)
                for (index_t j = 0; j < h; ++j)
                    for (int q = 0; q < 4; ++q)
                        std::memcpy(cat + ((b * h + i) * h + j) * 4 * C + q * C,
                                    x.row(b * L + (2 * i + dy[q]) * R_ + 2 * j + dx[q]),
                                    static_cast<std::size_t>(C) * sizeof(float));
        Tensor out(DType::f32, {T, 2 * C});
        reduction_.forward(ConstMatrixRef<float>(cat, T, 4 * C), out.matrix<float>(), ex);
        norm_.forward(out.matrix<float>(), out.matrix<float>());
        return out;
    }

private:
    Linear<W> reduction_;
    LayerNorm norm_;
    index_t R_ = 0;
    mutable Scratch<float> cat_;
};

/// One batch of images of one modality (their own patch embedding).
struct ModalityImages {
    TensorView images;  ///< [B, Cin_m, H, W]
    int modality = 0;
};

/// Options of one SwinEncoder forward call.
struct SwinForward {
    std::vector<Tensor>* stage_outputs = nullptr;  ///< each stage's output before its merging [B * R_i^2, C_i]
    std::vector<Tensor>* block_outputs = nullptr;  ///< every block's output, in order
    std::vector<Tensor>* ffn_inputs = nullptr;     ///< every block's FFN-slot input, in order
    /// Wall-clock seconds of each part: [0] patch embeddings (+ masking), [1 + i] stage i (its
    /// blocks and its patch merging), [1 + stages] the final norm.
    std::vector<double>* stage_seconds = nullptr;
    /// SimMIM masking: one flag per stage-0 token ([B * R_0^2], row-major over (b, y, x) in the
    /// order of the batches; nonzero = masked) and the mask token [C_0]. A masked token's patch
    /// embedding is replaced by the mask token, x = x (1 - m) + t m, before the first block.
    std::span<const std::uint8_t> token_mask{};
    const float* mask_token = nullptr;
};

template <class Ffn, WeightPolicy W = float>
class SwinEncoder {
public:
    using block_type = SwinBlock<Ffn, W>;
    struct Stage {
        std::vector<block_type> blocks;
        std::optional<PatchMerging<W>> downsample;
    };

    SwinEncoder() = default;
    SwinEncoder(SwinConfig config, std::vector<PatchEmbed<W>> patch_embeds, std::vector<Stage> stages, LayerNorm norm,
                std::string_view what = "vision::SwinEncoder")
        : cfg_(std::move(config)), patch_(std::move(patch_embeds)), stages_(std::move(stages)), norm_(std::move(norm)) {
        cfg_.validate(what);
        check<ShapeError>(static_cast<index_t>(stages_.size()) == cfg_.stages(), what, stages_.size(),
                          " stages, config has ", cfg_.stages());
        check<ShapeError>(!patch_.empty(), what, "no patch embedding");
        for (const auto& p : patch_)
            check<ShapeError>(p.width() == cfg_.embed_dim && p.patch() == cfg_.patch, what,
                              "a patch embedding of width ", p.width(), " / patch ", p.patch(), ", config ",
                              cfg_.embed_dim, " / ", cfg_.patch);
        check<ShapeError>(norm_.size() == cfg_.dim(cfg_.stages() - 1), what, "final norm over ", norm_.size(),
                          " features, last stage has ", cfg_.dim(cfg_.stages() - 1));
        // The blocks run one after the other: one set of activation buffers serves them all.
        block_type* first = nullptr;
        for (auto& s : stages_)
            for (auto& b : s.blocks) {
                if (first) b.share_scratch(*first);
                else first = &b;
            }
    }

    const SwinConfig& config() const noexcept { return cfg_; }
    index_t modalities() const noexcept { return static_cast<index_t>(patch_.size()); }
    Stage& stage(index_t i) { return stages_.at(static_cast<std::size_t>(i)); }
    const Stage& stage(index_t i) const { return stages_.at(static_cast<std::size_t>(i)); }
    const PatchEmbed<W>& patch_embed(int m) const { return patch_.at(static_cast<std::size_t>(m)); }
    const LayerNorm& norm() const noexcept { return norm_; }
    /// Where the encoder runs (set_exec; default Exec::serial()).
    const Exec& exec() const noexcept { return exec_; }
    /// Blocks over all stages.
    index_t num_blocks() const noexcept {
        index_t n = 0;
        for (const auto& s : stages_) n += static_cast<index_t>(s.blocks.size());
        return n;
    }

    /// The same encoder with every FFN slot replaced: f(stage, block_in_stage, Ffn&&) -> Ffn2,
    /// called in block order; patch embeddings (keep = the modalities to keep, in their new
    /// order; empty = all), attention, merging and norms are moved over. The deployment chain
    /// uses it for one-modality extraction, expert pruning and the SVD fold.
    template <class Ffn2, class F>
    SwinEncoder<Ffn2, W> map_ffns(F&& f, std::span<const int> keep = {}) && {
        std::vector<PatchEmbed<W>> pe;
        SwinConfig cfg = cfg_;
        if (keep.empty()) {
            pe = std::move(patch_);
        } else {
            cfg.in_chans.clear();
            for (int m : keep) {
                check<ConfigError>(m >= 0 && m < modalities(), "vision::SwinEncoder::map_ffns", "modality ", m,
                                   " but the encoder has ", modalities());
                cfg.in_chans.push_back(cfg_.in_chans[static_cast<std::size_t>(m)]);
                pe.push_back(std::move(patch_[static_cast<std::size_t>(m)]));
            }
        }
        std::vector<typename SwinEncoder<Ffn2, W>::Stage> st;
        for (index_t i = 0; i < cfg_.stages(); ++i) {
            auto& s = stages_[static_cast<std::size_t>(i)];
            typename SwinEncoder<Ffn2, W>::Stage n;
            for (index_t j = 0; j < static_cast<index_t>(s.blocks.size()); ++j) {
                auto& b = s.blocks[static_cast<std::size_t>(j)];
                Ffn2 nf = f(i, j, std::move(b.ffn()));
                n.blocks.push_back(std::move(b).template with_ffn<Ffn2>(std::move(nf)));
            }
            n.downsample = std::move(s.downsample);
            st.push_back(std::move(n));
        }
        SwinEncoder<Ffn2, W> out(std::move(cfg), std::move(pe), std::move(st), std::move(norm_));
        out.set_exec(exec_);
        return out;
    }
    /// Runs every part (patch embeddings, attention, FFN slots, merging) on ex.
    void set_exec(const Exec& ex) noexcept { exec_ = ex; }
    index_t parameters() const noexcept {
        index_t p = norm_.parameters();
        for (const auto& pe : patch_) p += pe.parameters();
        for (const auto& s : stages_) {
            for (const auto& b : s.blocks) p += b.parameters();
            if (s.downsample) p += s.downsample->parameters();
        }
        return p;
    }

    /// Embedded tokens of several modality batches (concatenated in the given order) -> final
    /// normed features [B * R_last^2, C_last]; the FFN slots see one ModalityChunk per batch.
    Tensor forward(std::span<const ModalityImages> batches, const SwinForward& opt = {}) {
        const char* w = "vision::SwinEncoder::forward";
        check<ShapeError>(!batches.empty(), w, "no images");
        using clock = std::chrono::steady_clock;
        auto t0 = clock::now();
        auto lap = [&] {
            if (!opt.stage_seconds) return;
            const auto t = clock::now();
            opt.stage_seconds->push_back(std::chrono::duration<double>(t - t0).count());
            t0 = t;
        };
        if (opt.stage_seconds) opt.stage_seconds->clear();
        const index_t R0 = cfg_.resolution(0), C0 = cfg_.embed_dim;
        std::vector<ModalityChunk> images;
        std::vector<Tensor> parts;
        index_t total = 0;
        for (const auto& mb : batches) {
            check<ShapeError>(mb.modality >= 0 && mb.modality < modalities(), w, "modality ", mb.modality,
                              " but the encoder has ", modalities(), " patch embeddings");
            check<ShapeError>(mb.images.rank() == 4 && mb.images.dim(2) == cfg_.image_size &&
                                  mb.images.dim(3) == cfg_.image_size,
                              w, "expected images [B, C, ", cfg_.image_size, ", ", cfg_.image_size, "], found ",
                              mb.images.shape().str());
            const index_t B = mb.images.dim(0);
            images.push_back({total, total + B, mb.modality});
            total += B;
            parts.push_back(patch_[static_cast<std::size_t>(mb.modality)].forward(mb.images, exec_));
        }
        Tensor x(DType::f32, {total * R0 * R0, C0});
        std::size_t off = 0;
        for (const auto& p : parts) {
            std::memcpy(static_cast<std::byte*>(x.raw()) + off, p.raw(), p.nbytes());
            off += p.nbytes();
        }
        if (!opt.token_mask.empty()) {
            check<ShapeError>(static_cast<index_t>(opt.token_mask.size()) == x.dim(0), w, "token mask of ",
                              opt.token_mask.size(), " flags for ", x.dim(0), " stage-0 tokens");
            check<ConfigError>(opt.mask_token != nullptr, w, "a token mask needs the mask token");
            auto xm = x.matrix<float>();
            for (index_t t = 0; t < xm.rows; ++t)
                if (opt.token_mask[static_cast<std::size_t>(t)])
                    std::memcpy(xm.row(t), opt.mask_token, static_cast<std::size_t>(C0) * sizeof(float));
        }
        if (opt.stage_outputs) opt.stage_outputs->clear();
        if (opt.block_outputs) opt.block_outputs->clear();
        if (opt.ffn_inputs) opt.ffn_inputs->clear();
        lap();
        for (index_t i = 0; i < cfg_.stages(); ++i) {
            const index_t R = cfg_.resolution(i);
            const std::vector<ModalityChunk> chunks = scale_chunks(images, R * R);
            const FfnContext ctx{chunks, exec_};
            auto& st = stages_[static_cast<std::size_t>(i)];
            for (auto& blk : st.blocks) {
                Tensor* cap = nullptr;
                if (opt.ffn_inputs) cap = &opt.ffn_inputs->emplace_back();
                blk.forward(x.matrix<float>(), ctx, cap);
                if (opt.block_outputs) opt.block_outputs->push_back(Tensor::copy_of(x.view()));
            }
            if (opt.stage_outputs) opt.stage_outputs->push_back(Tensor::copy_of(x.view()));
            if (st.downsample) x = st.downsample->forward(x.matrix<float>(), exec_);
            lap();
        }
        norm_.forward(x.matrix<float>(), x.matrix<float>());
        lap();
        return x;
    }

    /// One batch of one modality.
    Tensor forward(const TensorView& images, int modality = 0, const SwinForward& opt = {}) {
        const ModalityImages b{images, modality};
        return forward(std::span<const ModalityImages>(&b, 1), opt);
    }

private:
    SwinConfig cfg_;
    std::vector<PatchEmbed<W>> patch_;
    std::vector<Stage> stages_;
    LayerNorm norm_;
    Exec exec_ = Exec::serial();
};

}  // namespace moe::vision
