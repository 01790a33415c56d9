// vision/common.hpp - the pieces every vision module shares: a Linear layer that holds its
// weights (weight type W, [out, in] as PyTorch or [in, out] as MindSpore's transpose_b=False
// stores them, owned or borrowed from an mmapped file; fp32 bias), a LayerNorm, the FFN-slot
// adaptor, and small helpers.
//
// Activations are row-major [tokens, hidden] fp32.
// Threads: every module runs on a moe::Exec (moe/core/parallel.hpp; set_exec, default
// Exec::serial() = the calling thread only); kernels split work at boundaries that keep the
// result identical to one thread.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moe/backend/cpu/gemm.hpp"
#include "moe/backend/cpu/norm.hpp"
#include "moe/backend/cpu/simd.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/plan.hpp"
#include "moe/core/tensor.hpp"
#include "moe/io/safetensors.hpp"

namespace moe::vision {

/// How a block combines a branch f (attention or FFN) with its residual stream x.
enum class NormOrder {
    pre,       ///< x = x + ls * f(LN(x))          (ViT, EVA, SigLIP, Swin-V1)
    res_post,  ///< x = x + LN(f(x))               (Swin-V2 / RingMoE)
    post,      ///< x = LN(x + f(x))               (original Transformer / BERT)
};

inline const char* norm_order_name(NormOrder o) noexcept {
    switch (o) {
        case NormOrder::pre: return "pre";
        case NormOrder::res_post: return "res_post";
        default: return "post";
    }
}

/// Whether t holds no data (a default-constructed Tensor has rank 0 but no buffer).
inline bool empty(const Tensor& t) noexcept { return t.raw() == nullptr; }
/// Elements of t, 0 for an empty tensor.
inline index_t size_of(const Tensor& t) noexcept { return empty(t) ? 0 : t.numel(); }

/// y = x W^T + b with W (out x in, stored [out, in] or [in, out]) of type W (fp32, bf16 or f16;
/// fp32 accumulation), b fp32 or absent. A weight tensor of dtype W is kept as given: a borrowed
/// tensor (Tensor::borrow of an mmapped file) is read in place, never copied.
template <WeightType W = float>
class Linear {
public:
    Linear() = default;
    /// weight: [out, in] ([in, out] with layout in_out; any float dtype, converted to W); bias:
    /// [out] or an empty Tensor.
    Linear(Tensor weight, Tensor bias, std::string_view what = "vision::Linear",
           WeightLayout layout = WeightLayout::out_in)
        : layout_(layout) {
        check<ShapeError>(weight.rank() == 2, what, "expected a 2-D weight ", layout_name(layout), ", found ",
                          weight.shape().str());
        weight_ = weight.dtype() == dtype_v<W> ? std::move(weight) : convert(weight.view(), dtype_v<W>);
        if (!empty(bias)) {
            check<ShapeError>(bias.rank() == 1 && bias.dim(0) == out_features(), what, "expected bias shape [",
                              out_features(), "], found ", bias.shape().str());
            bias_ = bias.dtype() == DType::f32 ? std::move(bias) : convert(bias.view(), DType::f32);
        }
    }

    index_t in_features() const noexcept { return weight_.rank() == 2 ? weight_.dim(out_axis() ^ 1) : 0; }
    index_t out_features() const noexcept { return weight_.rank() == 2 ? weight_.dim(out_axis()) : 0; }
    bool has_bias() const noexcept { return !empty(bias_); }
    index_t parameters() const noexcept { return size_of(weight_) + size_of(bias_); }
    /// The weight as stored ([out, in], or [in, out] when layout() is in_out).
    const Tensor& weight() const noexcept { return weight_; }
    const Tensor& bias() const noexcept { return bias_; }
    WeightLayout layout() const noexcept { return layout_; }
    /// The weight as the GEMMs read it.
    WeightMatrix<W> weight_matrix() const {
        const ConstMatrixRef<W> m = weight_.matrix<W>("vision::Linear weight");
        return layout_ == WeightLayout::out_in ? WeightMatrix<W>(m) : WeightMatrix<W>::in_out(m.data, m.rows, m.cols);
    }

    /// y [M, out] (= or +=) x [M, in] W^T + b. With ex.threads() > 1 the output columns are cut
    /// into chunks of kChunk (a multiple of every register block) that the threads take
    /// dynamically (moe::parallel_chunks), so a thread the OS preempts does not hold the others
    /// up; every output element is computed by the same kernel path whatever the split
    /// (bit-identical results).
    void forward(ConstMatrixRef<float> x, MatrixRef<float> y, const Exec& ex = Exec::serial(),
                 bool accumulate = false) const {
        forward(x, y, ex, accumulate, [](MatrixRef<float>) {});
    }

    /// The same, then epilogue(block) on every finished block of output columns (e.g. the
    /// activation, fused into the parallel region). An exception from the GEMM or the epilogue on
    /// any thread reaches the caller.
    template <class Epilogue>
    void forward(ConstMatrixRef<float> x, MatrixRef<float> y, const Exec& ex, bool accumulate,
                 Epilogue&& epilogue) const {
        const WeightMatrix<W> w = weight_matrix();
        const float* b = has_bias() ? bias_.data<float>() : nullptr;
        const index_t N = w.out;
        check<ShapeError>(x.cols == w.in && y.rows == x.rows && y.cols == N, "vision::Linear::forward", "input [",
                          x.rows, ", ", x.cols, "], weight of ", N, " outputs and ", w.in, " inputs, output [",
                          y.rows, ", ", y.cols, "] do not fit");
        const int nt = parallel_workers(ex, N, kChunk);
        if (nt > 1 && x.rows > 4) {
            if (static_cast<int>(tws_.size()) < nt) tws_.resize(static_cast<std::size_t>(nt));
            parallel_chunks(ex, N, kChunk, [&](index_t n0, index_t n1, int worker) {
                const MatrixRef<float> yc(y.data + n0, y.rows, n1 - n0, y.stride);
                cpu::linear<W>(x, w.outputs(n0, n1), b ? b + n0 : nullptr, yc, accumulate,
                               tws_[static_cast<std::size_t>(worker)]);
                epilogue(yc);
            });
            return;
        }
        cpu::linear<W>(x, w, b, y, accumulate, ws_);
        epilogue(y);
    }

    static constexpr index_t kChunk = 192;  ///< output columns per parallel task (multiple of 48)

    /// Use o's GEMM workspaces from now on (layers that never run at the same time).
    void share_scratch(const Linear& o) {
        ws_.share(o.ws_);
        const auto n = static_cast<std::size_t>(std::max({max_threads(), static_cast<int>(tws_.size()),
                                                          static_cast<int>(o.tws_.size())}));
        tws_.resize(n);
        if (o.tws_.size() < n) o.tws_.resize(n);
        for (std::size_t i = 0; i < n; ++i) tws_[i].share(o.tws_[i]);
    }

private:
    int out_axis() const noexcept { return layout_ == WeightLayout::out_in ? 0 : 1; }

    Tensor weight_;
    Tensor bias_;
    WeightLayout layout_ = WeightLayout::out_in;
    mutable cpu::GemmWorkspace ws_;
    mutable std::vector<cpu::GemmWorkspace> tws_;
};

/// LayerNorm over the last axis with affine gamma/beta (fp32).
class LayerNorm {
public:
    LayerNorm() = default;
    LayerNorm(Tensor gamma, Tensor beta, float eps, std::string_view what = "vision::LayerNorm") : eps_(eps) {
        check<ShapeError>(gamma.rank() == 1 && beta.shape() == gamma.shape(), what, "expected gamma and beta of one "
                          "shape [C], found ", gamma.shape().str(), " and ", beta.shape().str());
        gamma_ = gamma.dtype() == DType::f32 ? std::move(gamma) : convert(gamma.view(), DType::f32);
        beta_ = beta.dtype() == DType::f32 ? std::move(beta) : convert(beta.view(), DType::f32);
    }
    index_t size() const noexcept { return size_of(gamma_); }
    float eps() const noexcept { return eps_; }
    index_t parameters() const noexcept { return size_of(gamma_) + size_of(beta_); }
    const Tensor& gamma() const noexcept { return gamma_; }
    const Tensor& beta() const noexcept { return beta_; }
    /// y = LN(x) row by row (y may alias x).
    void forward(ConstMatrixRef<float> x, MatrixRef<float> y) const {
        check<ShapeError>(x.cols == size(), "vision::LayerNorm", "input has ", x.cols, " features, the norm ",
                          size());
        cpu::layer_norm(x, y, gamma_.data<float>(), beta_.data<float>(), eps_);
    }

private:
    Tensor gamma_, beta_;
    float eps_ = 1e-6f;
};

/// What a block's FFN slot may need beyond its input: the modality of each token range (for
/// HierarchicalMoE), and where it runs.
struct FfnContext {
    std::span<const ModalityChunk> chunks;  ///< token ranges of one modality each, in order
    Exec exec = Exec::serial();             ///< the block's execution context
};

/// Runs any FFN-slot type: a dense Mlp, a MoELayer (forward(x, y)), or a modality-aware layer
/// such as HierarchicalMoE (forward(x, chunks, y)), which then needs ctx.chunks. An ExecAware
/// slot runs on ctx.exec.
template <class Ffn>
void ffn_forward(Ffn& ffn, ConstMatrixRef<float> x, MatrixRef<float> y, const FfnContext& ctx) {
    if constexpr (ExecAware<Ffn>) ffn.set_exec(ctx.exec);
    if constexpr (requires { ffn.forward(x, ctx.chunks, y); }) {
        check<ConfigError>(!ctx.chunks.empty(), "vision FFN slot",
                           "this FFN routes by modality: give the modality of every image (ModalityChunk list)");
        ffn.forward(x, ctx.chunks, y);
    } else {
        ffn.forward(x, y);
    }
}

/// Parameters of an FFN-slot type (0 when it cannot say).
template <class Ffn>
index_t ffn_parameters(const Ffn& ffn) noexcept {
    if constexpr (requires { ffn.parameters(); }) return static_cast<index_t>(ffn.parameters());
    else return 0;
}

/// Image-level modality ranges -> token ranges of `tokens_per_image` tokens per image.
inline std::vector<ModalityChunk> scale_chunks(std::span<const ModalityChunk> images, index_t tokens_per_image) {
    std::vector<ModalityChunk> out;
    out.reserve(images.size());
    for (const auto& c : images) out.push_back({c.begin * tokens_per_image, c.end * tokens_per_image, c.modality});
    return out;
}

namespace detail {

/// Throws ValueError naming `what` if x holds a NaN or an infinity.
inline void check_finite(ConstMatrixRef<float> x, std::string_view what) {
    for (index_t r = 0; r < x.rows; ++r) {
        const float* p = x.row(r);
        for (index_t c = 0; c < x.cols; ++c)
            if (!std::isfinite(p[c]))
                throw ValueError(std::string(what), moe::detail::cat("non-finite value ", p[c], " at row ", r,
                                                                     ", column ", c));
    }
}

/// dst[i] += src[i] * (scale ? scale[i % cols] : 1) over a [rows, cols] matrix.
inline void add_scaled(MatrixRef<float> dst, ConstMatrixRef<float> src, const float* scale) noexcept {
    for (index_t r = 0; r < dst.rows; ++r) {
        float* d = dst.row(r);
        const float* s = src.row(r);
        if (scale)
            for (index_t c = 0; c < dst.cols; ++c) d[c] += s[c] * scale[c];
        else
            for (index_t c = 0; c < dst.cols; ++c) d[c] += s[c];
    }
}

}  // namespace detail

}  // namespace moe::vision
