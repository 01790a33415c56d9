// vision/attention.hpp - multi-head self-attention over sequences of n tokens.
//
//   qkv = x Wqkv^T + b            one fused [3C, C] weight, or three [C, C] q, k, v weights (as
//                                 MindSpore's RingMoE stores them: read in place, each GEMM
//                                 writing its third of the qkv rows); a missing bias (EVA's k) is zero
//   per sequence s and head h:    S = (q_h * d^-0.5) k_h^T (+ bias[h]) (+ mask[s % n_mask])
//                                 P = softmax(S) in fp32;  o_h = P v_h
//   y = concat_h(o_h) Wproj^T + bproj
//
// Heads are split head-major (channel c of head h is h * d + c), as timm, HF and MindSpore do.
// The input holds `rows / n` sequences of n consecutive rows: a ViT batch (n = tokens per
// image) or Swin windows (n = w^2, sequence s is window s, masks indexed by s % n_mask).
//
// The score/softmax/value steps: S and P V are packed register-blocked GEMMs (moe's kernel:
// q_h . k_h^T reads k_h as an [n, d] "weight"; P . v_h reads v_h^T, transposed once per head; under
// the Bf16DotMath policy both are bf16 dot GEMMs, k_h and v_h rounded to bf16 once per head);
// bias + mask + softmax is one SIMD pass per row (max, exp, sum, scale; xsimd). Work is split
// over (sequence, head) pairs between threads (dynamically: a preempted thread does not stall
// the others); each pair is computed the same way whatever the split, so results do not depend
// on the thread count.
#pragma once

#include "moe/core/precision.hpp"
#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "moe/backend/cpu/activation.hpp"
#include "moe/backend/cpu/gemm.hpp"
#include "moe/backend/cpu/simd.hpp"
#include "vision/common.hpp"

namespace moe::vision {

namespace kernel {

/// In place: row <- softmax(row + bias_row + mask_row) over n columns (bias/mask may be null).
/// A template on the instruction set so that the SIMD branches are discarded without one.
template <class A = cpu::simd_arch>
inline void softmax_row(float* row, const float* bias, const float* mask, index_t n) noexcept {
    index_t i = 0;
    float mx = -INFINITY;
#if !defined(MOE_NO_SIMD)
    if constexpr (cpu::kHasSimd) {
        using B = xsimd::batch<float, A>;
        constexpr index_t L = static_cast<index_t>(B::size);
        B vmx(-INFINITY);
        for (; i + L <= n; i += L) {
            B v = B::load_unaligned(row + i);
            if (bias) v += B::load_unaligned(bias + i);
            if (mask) v += B::load_unaligned(mask + i);
            v.store_unaligned(row + i);
            vmx = xsimd::max(vmx, v);
        }
        alignas(64) float t[L];
        vmx.store_aligned(t);
        for (index_t j = 0; j < L; ++j) mx = std::max(mx, t[j]);
    }
#endif
    for (; i < n; ++i) {
        float v = row[i];
        if (bias) v += bias[i];
        if (mask) v += mask[i];
        row[i] = v;
        mx = std::max(mx, v);
    }
    const float sum = cpu::exp_shift_sum(row, n, mx);
    const float inv = 1.0f / sum;
    i = 0;
#if !defined(MOE_NO_SIMD)
    if constexpr (cpu::kHasSimd) {
        using B = xsimd::batch<float, A>;
        constexpr index_t L = static_cast<index_t>(B::size);
        const B vi(inv);
        for (; i + L <= n; i += L) (B::load_unaligned(row + i) * vi).store_unaligned(row + i);
    }
#endif
    for (; i < n; ++i) row[i] *= inv;
}

/// Per-thread scratch of one (sequence, head) attention.
struct HeadScratch {
    Scratch<float> scores;  // [nq, nk]
    Scratch<float> vt;      // [d, nk]
    Scratch<float> q;       // [nq, d] scaled q
    Scratch<std::uint32_t> kv;  // k, then v, rounded to bf16 pairs (Bf16DotMath)
    cpu::GemmWorkspace ws;
};

/// o [nq, d] (stride ldo) = softmax(q k^T * scale + bias + mask) v for one head: q [nq, d] (row
/// stride ldq), k and v [nk, d] (row stride ldkv); bias and mask [nq, nk] or null. Self-attention
/// has nq = nk and one stride (slices of one fused qkv buffer); cross-attention (the Q-Former's
/// queries over image tokens) reads q and k, v from different buffers. Math says how the two
/// products multiply: ExactMath in fp32; Bf16DotMath as every other GEMM of that policy (both
/// operands rounded to bf16 at the GEMM input, k read as an [nk, d] weight and v as an [in, out]
/// one, vdpbf16ps), the softmax in fp32 either way.
template <class Math = ExactMath>
inline void attend(const float* q, index_t ldq, index_t nq, const float* k, const float* v, index_t ldkv, index_t nk,
                   index_t d, float scale, const float* bias, const float* mask, float* o, index_t ldo,
                   HeadScratch& s) {
    float* qs = s.q.get(static_cast<std::size_t>(nq * d));
    for (index_t r = 0; r < nq; ++r)
        for (index_t c = 0; c < d; ++c) qs[r * d + c] = q[r * ldq + c] * scale;
    float* S = s.scores.get(static_cast<std::size_t>(nq * nk));
    // An [nk, d] slice of k or v rounded to bf16 (as every GEMM input): rows of 2 bf16_pairs(d).
    const index_t kv_ld = 2 * cpu::bf16_pairs(d);
    auto rounded = [&](const float* src) {
        std::uint32_t* dst = s.kv.get(static_cast<std::size_t>(nk * cpu::bf16_pairs(d)));
        cpu::round_rows_bf16(ConstMatrixRef<float>(src, nk, d, ldkv), dst);
        return reinterpret_cast<const bf16*>(dst);
    };
    if constexpr (std::is_same_v<Math, Bf16DotMath>)
        cpu::linear_bf16(ConstMatrixRef<float>(qs, nq, d),
                         WeightMatrix<bf16>(rounded(k), nk, d, kv_ld, WeightLayout::out_in), nullptr, nullptr,
                         MatrixRef<float>(S, nq, nk), false, s.ws);
    else
        cpu::linear<float>(ConstMatrixRef<float>(qs, nq, d), ConstMatrixRef<float>(k, nk, d, ldkv), nullptr,
                           MatrixRef<float>(S, nq, nk), false, s.ws);
    for (index_t r = 0; r < nq; ++r)
        softmax_row(S + r * nk, bias ? bias + r * nk : nullptr, mask ? mask + r * nk : nullptr, nk);
    if constexpr (std::is_same_v<Math, Bf16DotMath>) {
        cpu::linear_bf16(ConstMatrixRef<float>(S, nq, nk),
                         WeightMatrix<bf16>(rounded(v), d, nk, kv_ld, WeightLayout::in_out), nullptr, nullptr,
                         MatrixRef<float>(o, nq, d, ldo), false, s.ws);
        return;
    }
    float* vt = s.vt.get(static_cast<std::size_t>(d * nk));
    for (index_t r = 0; r < nk; ++r)
        for (index_t c = 0; c < d; ++c) vt[c * nk + r] = v[r * ldkv + c];
    cpu::linear<float>(ConstMatrixRef<float>(S, nq, nk), ConstMatrixRef<float>(vt, d, nk), nullptr,
                       MatrixRef<float>(o, nq, d, ldo), false, s.ws);
}

/// Self-attention of one head over n rows: attend() with nq = nk = n and one row stride ld.
template <class Math = ExactMath>
inline void attend_head(const float* q, const float* k, const float* v, index_t ld, index_t n, index_t d, float scale,
                        const float* bias, const float* mask, float* o, index_t ldo, HeadScratch& s) {
    attend<Math>(q, ld, n, k, v, ld, n, d, scale, bias, mask, o, ldo, s);
}

}  // namespace kernel

/// Multi-head self-attention with a fused (or split) qkv projection and an output projection.
template <WeightPolicy W = float>
class Attention {
public:
    Attention() = default;
    /// qkv: [3C, C] (+ bias [3C] or none); proj: [C, C] (+ bias [C] or none); heads divides C.
    Attention(Linear<W> qkv, Linear<W> proj, index_t heads, std::string_view what = "vision::Attention")
        : proj_(std::move(proj)), heads_(heads) {
        parts_[0] = std::move(qkv);
        init(what, 3);
    }
    /// Separate q, k, v: [C, C] each (+ bias [C] or none), read where they are (no fusing copy).
    Attention(Linear<W> q, Linear<W> k, Linear<W> v, Linear<W> proj, index_t heads,
              std::string_view what = "vision::Attention")
        : parts_{std::move(q), std::move(k), std::move(v)}, proj_(std::move(proj)), heads_(heads), split_(true) {
        init(what, 1);
    }

    index_t width() const noexcept { return proj_.out_features(); }
    index_t heads() const noexcept { return heads_; }
    index_t head_dim() const noexcept { return heads_ ? width() / heads_ : 0; }
    index_t parameters() const noexcept {
        index_t n = proj_.parameters() - constant_bias_;
        for (const auto& p : parts_) n += p.parameters();
        return n;
    }
    /// Declares `n` entries of the qkv bias constant zeros, not parameters (EVA's k bias).
    void set_constant_bias(index_t n) noexcept { constant_bias_ = n; }
    /// Whether q, k and v are three Linears (then part(0..2)), not one fused qkv().
    bool split() const noexcept { return split_; }
    /// The fused qkv projection (split() == false).
    const Linear<W>& qkv() const {
        check<ConfigError>(!split_, "vision::Attention::qkv", "q, k and v are separate here: use part(0..2)");
        return parts_[0];
    }
    /// Projection i of q, k, v: a third of the fused qkv is not a Linear of its own, so with a
    /// fused projection only part(0) (the whole qkv) exists.
    const Linear<W>& part(int i) const {
        check<ConfigError>(i >= 0 && i < (split_ ? 3 : 1), "vision::Attention::part", "no projection ", i,
                           split_ ? " (q, k, v are 0, 1, 2)" : " (the qkv projection is fused: part(0))");
        return parts_[static_cast<std::size_t>(i)];
    }
    const Linear<W>& proj() const noexcept { return proj_; }
    /// Share o's activation and GEMM buffers (attentions of blocks that run one after the other).
    void share_scratch(const Attention& o) {
        qkv_buf_.share(o.qkv_buf_);
        out_buf_.share(o.out_buf_);
        const auto n = static_cast<std::size_t>(std::max({max_threads(), static_cast<int>(scratch_.size()),
                                                          static_cast<int>(o.scratch_.size())}));
        scratch_.resize(n);
        if (o.scratch_.size() < n) o.scratch_.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
            auto &a = scratch_[i], &b = o.scratch_[i];
            a.scores.share(b.scores);
            a.vt.share(b.vt);
            a.q.share(b.q);
            a.ws.share(b.ws);
        }
        for (std::size_t i = 0; i < parts_.size(); ++i) parts_[i].share_scratch(o.parts_[i]);
        proj_.share_scratch(o.proj_);
    }
    /// Whether this attention uses o's qkv activation buffer (share_scratch).
    bool shares_scratch_with(const Attention& o) const noexcept { return qkv_buf_.shares_with(o.qkv_buf_); }
    /// Overrides the d^-0.5 score scale.
    void set_scale(float s) noexcept { scale_ = s; }

    /// y [rows, C] = attention over the rows / n sequences of n rows of x [rows, C].
    /// bias: [heads, n, n] or null; mask: [n_mask, n, n] (sequence s uses mask s % n_mask) or null.
    void forward(ConstMatrixRef<float> x, MatrixRef<float> y, index_t n, const float* bias = nullptr,
                 const float* mask = nullptr, index_t n_mask = 0, const Exec& ex = Exec::serial()) const {
        const char* w = "vision::Attention::forward";
        const index_t C = width(), rows = x.rows, d = head_dim();
        check<ShapeError>(x.cols == C && y.cols == C && y.rows == rows, w, "expected input and output [T, ", C,
                          "], found [", x.rows, ", ", x.cols, "] and [", y.rows, ", ", y.cols, "]");
        check<ShapeError>(n > 0 && rows % n == 0, w, rows, " rows are not whole sequences of ", n, " tokens");
        check<ShapeError>(mask == nullptr || n_mask > 0, w, "a mask needs n_mask > 0");
        float* qkv = qkv_buf_.get(static_cast<std::size_t>(rows * 3 * C));
        if (split_)
            for (index_t i = 0; i < 3; ++i)
                parts_[static_cast<std::size_t>(i)].forward(x, MatrixRef<float>(qkv + i * C, rows, C, 3 * C), ex);
        else
            parts_[0].forward(x, MatrixRef<float>(qkv, rows, 3 * C), ex);
        float* o = out_buf_.get(static_cast<std::size_t>(rows * C));
        const index_t seqs = rows / n, jobs = seqs * heads_;
        // One task per (sequence, head), taken dynamically; each worker has its own scratch.
        const int nt = parallel_workers(ex, jobs, 1);
        if (static_cast<int>(scratch_.size()) < nt) scratch_.resize(static_cast<std::size_t>(nt));
        auto job = [&](index_t j, kernel::HeadScratch& s) {
            const index_t sq = j / heads_, h = j % heads_;
            const float* base = qkv + sq * n * 3 * C + h * d;
            kernel::attend_head<math_t<W>>(base, base + C, base + 2 * C, 3 * C, n, d, scale_, bias ? bias + h * n * n : nullptr,
                                mask ? mask + (sq % n_mask) * n * n : nullptr, o + sq * n * C + h * d, C, s);
        };
        parallel_chunks(ex, jobs, 1, [&](index_t b, index_t e, int worker) {
            for (index_t j = b; j < e; ++j) job(j, scratch_[static_cast<std::size_t>(worker)]);
        });
        proj_.forward(ConstMatrixRef<float>(o, rows, C), y, ex);
    }

private:
    // Checks the shapes: every part maps C -> `per_part` * C.
    void init(std::string_view what, index_t per_part) {
        const index_t C = proj_.out_features();
        check<ConfigError>(heads_ > 0 && C % heads_ == 0, what, heads_, " heads do not divide width ", C);
        for (int i = 0; i < (split_ ? 3 : 1); ++i) {
            const auto& p = parts_[static_cast<std::size_t>(i)];
            check<ShapeError>(p.out_features() == per_part * C && p.in_features() == C, what, "expected ",
                              split_ ? "q/k/v weights" : "a qkv weight", " of ", per_part * C, " x ", C,
                              " features, found ", p.out_features(), " x ", p.in_features());
        }
        check<ShapeError>(proj_.in_features() == C, what, "expected a proj weight [", C, ", ", C, "], found [",
                          proj_.out_features(), ", ", proj_.in_features(), "]");
        scale_ = static_cast<float>(1.0 / std::sqrt(static_cast<double>(C / heads_)));
    }

    std::array<Linear<W>, 3> parts_;  // the fused qkv in parts_[0], or q, k, v
    Linear<W> proj_;
    index_t heads_ = 0;
    bool split_ = false;
    float scale_ = 1.0f;
    index_t constant_bias_ = 0;
    mutable Scratch<float> qkv_buf_, out_buf_;
    mutable std::vector<kernel::HeadScratch> scratch_;
};

}  // namespace moe::vision

MOE_SIMD_DIAGNOSTICS_POP
