// moe/backend/cpu/norm.hpp - LayerNorm and RMSNorm over the last dimension, row by row.
//
// LayerNorm: y = (x - mean) / sqrt(var + eps) * gamma + beta, biased variance (torch.nn.LayerNorm).
// RMSNorm:   y = x / sqrt(mean(x^2) + eps) * weight (Llama/Qwen2/Mixtral RMSNorm, fp32 math).
// Statistics are accumulated in double so the result does not depend on the SIMD width.
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include <algorithm>
#include <cmath>

#include "moe/backend/cpu/arch.hpp"
#include "moe/backend/cpu/simd.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"

namespace moe::cpu {

namespace detail {

/// sum of (x - shift) and of (x - shift)^2 over x[0..n): per lane in float within blocks of
/// 64 vectors, in double across blocks.
inline void moments(const float* x, index_t n, float shift, double& sum, double& sumsq) noexcept {
    sum = 0.0;
    sumsq = 0.0;
    index_t i = 0;
#if !defined(MOE_NO_SIMD)
    if constexpr (kHasSimd) {
        using B = xsimd::batch<float, simd_arch>;
        constexpr index_t L = static_cast<index_t>(B::size);
        const B sh(shift);
        while (i + L <= n) {
            B s(0.0f), q(0.0f);
            const index_t stop = std::min(n - L, i + 63 * L);
            for (; i <= stop; i += L) {
                const B v = B::load_unaligned(x + i) - sh;
                s += v;
                q = arch::fmadd<simd_arch>(v, v, q);
            }
            sum += static_cast<double>(xsimd::hadd(s));
            sumsq += static_cast<double>(xsimd::hadd(q));
        }
    }
#endif
    for (; i < n; ++i) {
        const double v = static_cast<double>(x[i]) - static_cast<double>(shift);
        sum += v;
        sumsq += v * v;
    }
}

/// y[i] = ((x[i] - shift) - shift2) * scale * g[i] + b[i]  (g, b may be null: 1 and 0).
/// Two shifts: x - shift is exact for x near shift, shift2 carries the rest of the mean.
inline void affine(const float* x, float* y, index_t n, float shift, float shift2, float scale, const float* g,
                   const float* b) noexcept {
    index_t i = 0;
#if !defined(MOE_NO_SIMD)
    if constexpr (kHasSimd) {
        using B = xsimd::batch<float, simd_arch>;
        constexpr index_t L = static_cast<index_t>(B::size);
        const B sh(shift), sh2(shift2), sc(scale);
        for (; i + L <= n; i += L) {
            B v = ((B::load_unaligned(x + i) - sh) - sh2) * sc;
            if (g) v *= B::load_unaligned(g + i);
            if (b) v += B::load_unaligned(b + i);
            v.store_unaligned(y + i);
        }
    }
#endif
    for (; i < n; ++i) {
        float v = ((x[i] - shift) - shift2) * scale;
        if (g) v *= g[i];
        if (b) v += b[i];
        y[i] = v;
    }
}

}  // namespace detail

/// LayerNorm of every row of x into y (y may alias x). gamma/beta: [cols] or null.
inline void layer_norm(ConstMatrixRef<float> x, MatrixRef<float> y, const float* gamma, const float* beta,
                       float eps) {
    check<ShapeError>(x.rows == y.rows && x.cols == y.cols, "moe::cpu::layer_norm", "input ", x.rows, "x", x.cols,
                      " and output ", y.rows, "x", y.cols, " differ");
    const index_t n = x.cols;
    for (index_t r = 0; r < x.rows; ++r) {
        const float* in = x.row(r);
        // Two passes: the mean, then moments about it (accurate when |mean| >> std).
        double s, q;
        detail::moments(in, n, 0.0f, s, q);
        const auto mean = static_cast<float>(s / static_cast<double>(n));
        detail::moments(in, n, mean, s, q);
        const double d = s / static_cast<double>(n);  // residual of the rounded mean
        const double var = std::max(0.0, q / static_cast<double>(n) - d * d);
        const float inv = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(eps)));
        detail::affine(in, y.row(r), n, mean, static_cast<float>(d), inv, gamma, beta);
    }
}

/// RMSNorm of every row of x into y (y may alias x). weight: [cols] or null.
inline void rms_norm(ConstMatrixRef<float> x, MatrixRef<float> y, const float* weight, float eps) {
    check<ShapeError>(x.rows == y.rows && x.cols == y.cols, "moe::cpu::rms_norm", "input ", x.rows, "x", x.cols,
                      " and output ", y.rows, "x", y.cols, " differ");
    const index_t n = x.cols;
    for (index_t r = 0; r < x.rows; ++r) {
        double s, q;
        detail::moments(x.row(r), n, 0.0f, s, q);
        const float inv = static_cast<float>(1.0 / std::sqrt(q / static_cast<double>(n) + static_cast<double>(eps)));
        detail::affine(x.row(r), y.row(r), n, 0.0f, 0.0f, inv, weight, nullptr);
    }
}

}  // namespace moe::cpu

MOE_SIMD_DIAGNOSTICS_POP
