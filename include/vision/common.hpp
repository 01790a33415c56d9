// vision/common.hpp - the pieces every vision module shares: Linear (the library's weight holder,
// cpu::Linear: weight type W, [out, in] as PyTorch or [in, out] as MindSpore's transpose_b=False
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
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moe/core/precision.hpp"
#include "moe/backend/cpu/gemm.hpp"
#include "moe/backend/cpu/linear.hpp"
#include "moe/backend/cpu/norm.hpp"
#include "moe/backend/cpu/simd.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/plan.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/concepts.hpp"
#include "moe/layer/concepts.hpp"
#include "moe/router/concepts.hpp"
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
/// fp32 accumulation), b fp32 or absent: the library's one weight holder (cpu::Linear, one
/// matrix). A weight tensor of dtype W is kept as given: a borrowed tensor (Tensor::borrow of an
/// mmapped file) is read in place, never copied; other dtypes are converted once.
template <WeightPolicy W = float>
using Linear = cpu::Linear<W>;

/// LayerNorm over the last axis with affine gamma/beta (fp32). Copies share the (read-only)
/// parameters.
class LayerNorm {
public:
    LayerNorm() = default;
    LayerNorm(Tensor gamma, Tensor beta, float eps, std::string_view what = "vision::LayerNorm") : eps_(eps) {
        check<ShapeError>(gamma.rank() == 1 && beta.shape() == gamma.shape(), what, "expected gamma and beta of one "
                          "shape [C], found ", gamma.shape().str(), " and ", beta.shape().str());
        gamma_ = std::make_shared<const Tensor>(gamma.dtype() == DType::f32 ? std::move(gamma)
                                                                            : convert(gamma.view(), DType::f32));
        beta_ = std::make_shared<const Tensor>(beta.dtype() == DType::f32 ? std::move(beta)
                                                                          : convert(beta.view(), DType::f32));
    }
    index_t size() const noexcept { return gamma_ ? size_of(*gamma_) : 0; }
    float eps() const noexcept { return eps_; }
    index_t parameters() const noexcept { return 2 * size(); }
    const Tensor& gamma() const { return params("gamma", gamma_); }
    const Tensor& beta() const { return params("beta", beta_); }
    /// y = LN(x) row by row (y may alias x).
    void forward(ConstMatrixRef<float> x, MatrixRef<float> y) const {
        check<ShapeError>(x.cols == size(), "vision::LayerNorm", "input has ", x.cols, " features, the norm ",
                          size());
        cpu::layer_norm(x, y, gamma_ ? gamma_->data<float>() : nullptr, beta_ ? beta_->data<float>() : nullptr, eps_);
    }

private:
    static const Tensor& params(const char* which, const std::shared_ptr<const Tensor>& t) {
        check<ConfigError>(t != nullptr, "vision::LayerNorm", "no ", which, " (a default-constructed norm)");
        return *t;
    }

    std::shared_ptr<const Tensor> gamma_, beta_;
    float eps_ = 1e-6f;
};

/// What a block's FFN slot may need beyond its input: the modality of each token range (for
/// HierarchicalMoE), and where it runs.
struct FfnContext {
    std::span<const ModalityChunk> chunks;  ///< token ranges of one modality each, in order
    Exec exec = Exec::serial();             ///< the block's execution context
};

/// What a block's FFN slot holds: a token-wise FFN (a dense Mlp, a MoELayer: forward(x, y)) or
/// a modality-aware layer (moe::ModalityAware, such as HierarchicalMoE: forward(x, chunks, y)).
/// Optional: ExecAware (runs on the block's Exec), CountsParameters, ScratchSharing.
template <class Ffn>
concept FfnSlot = ModalityAware<Ffn> || requires(Ffn& f, ConstMatrixRef<float> x, MatrixRef<float> y) {
    f.forward(x, y);
};

/// Runs any FFN slot; a modality-aware one needs ctx.chunks. An ExecAware slot runs on ctx.exec.
template <FfnSlot Ffn>
void ffn_forward(Ffn& ffn, ConstMatrixRef<float> x, MatrixRef<float> y, const FfnContext& ctx) {
    if constexpr (ExecAware<Ffn>) ffn.set_exec(ctx.exec);
    if constexpr (ModalityAware<Ffn>) {
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
    if constexpr (CountsParameters<Ffn>) return static_cast<index_t>(ffn.parameters());
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
