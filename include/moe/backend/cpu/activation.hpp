// moe/backend/cpu/activation.hpp - elementwise activations, vectorised with xsimd.
//
// Each activation is an empty tag type with
//   static float scalar(float x)            the definition, as PyTorch computes it
//   static void apply(float* x, index_t n)  in place, SIMD where available
// GLU-style experts use glu<Act>(gate, up, n): gate <- Act(gate) * up (SwiGLU for Act = Silu).
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include <cmath>
#include <cstdint>

#include "moe/backend/cpu/simd.hpp"
#include "moe/core/tensor.hpp"

namespace moe {

namespace cpu::detail {

/// Applies f (batch -> batch) and s (float -> float) over x[0..n).
template <class VecF, class ScalarF>
MOE_ALWAYS_INLINE void map_inplace(float* x, index_t n, VecF&& f, ScalarF&& s) {
    index_t i = 0;
#if !defined(MOE_NO_SIMD)
    if constexpr (kHasSimd) {
        using B = xsimd::batch<float, simd_arch>;
        constexpr index_t L = static_cast<index_t>(B::size);
        const index_t nv = n - n % L;
        for (; i < nv; i += L) f(B::load_unaligned(x + i)).store_unaligned(x + i);
    }
#endif
    for (; i < n; ++i) x[i] = s(x[i]);
}

}  // namespace cpu::detail

/// GELU with the exact erf form: 0.5 x (1 + erf(x / sqrt 2)) (torch.nn.GELU(), timm, BERT).
struct Gelu {
    static constexpr const char* name = "gelu";
    static float scalar(float x) noexcept { return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f)); }
    static void apply(float* x, index_t n) noexcept {
#if !defined(MOE_NO_SIMD)
        cpu::detail::map_inplace(
            x, n,
            [](auto v) {
                using B = decltype(v);
                return B(0.5f) * v * (B(1.0f) + xsimd::erf(v * B(0.70710678118654752f)));
            },
            scalar);
#else
        for (index_t i = 0; i < n; ++i) x[i] = scalar(x[i]);
#endif
    }
};

/// GELU with the tanh approximation (GELU(approximate='tanh'), SigLIP's gelu_pytorch_tanh):
/// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
struct GeluTanh {
    static constexpr const char* name = "gelu_tanh";
    static float scalar(float x) noexcept {
        const float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        return 0.5f * x * (1.0f + std::tanh(inner));
    }
    static void apply(float* x, index_t n) noexcept {
#if !defined(MOE_NO_SIMD)
        cpu::detail::map_inplace(
            x, n,
            [](auto v) {
                using B = decltype(v);
                const B inner = B(0.7978845608028654f) * (v + B(0.044715f) * v * v * v);
                return B(0.5f) * v * (B(1.0f) + xsimd::tanh(inner));
            },
            scalar);
#else
        for (index_t i = 0; i < n; ++i) x[i] = scalar(x[i]);
#endif
    }
};

/// SiLU / swish: x * sigmoid(x) = x / (1 + exp(-x)) (Mixtral, Qwen, DeepSeek experts).
struct Silu {
    static constexpr const char* name = "silu";
    static float scalar(float x) noexcept { return x / (1.0f + std::exp(-x)); }
    static void apply(float* x, index_t n) noexcept {
#if !defined(MOE_NO_SIMD)
        cpu::detail::map_inplace(
            x, n, [](auto v) { return v / (decltype(v)(1.0f) + xsimd::exp(-v)); }, scalar);
#else
        for (index_t i = 0; i < n; ++i) x[i] = scalar(x[i]);
#endif
    }
};

/// ReLU: max(x, 0).
struct Relu {
    static constexpr const char* name = "relu";
    static float scalar(float x) noexcept { return x > 0.0f ? x : 0.0f; }
    static void apply(float* x, index_t n) noexcept {
#if !defined(MOE_NO_SIMD)
        cpu::detail::map_inplace(
            x, n, [](auto v) { return xsimd::max(v, decltype(v)(0.0f)); }, scalar);
#else
        for (index_t i = 0; i < n; ++i) x[i] = scalar(x[i]);
#endif
    }
};

/// Identity (for experts without a nonlinearity, e.g. folded linear maps in tests).
struct Identity {
    static constexpr const char* name = "identity";
    static float scalar(float x) noexcept { return x; }
    static void apply(float*, index_t) noexcept {}
};

/// An activation tag: a scalar definition and an in-place array form.
template <class A>
concept Activation = requires(float* p, index_t n, float x) {
    { A::scalar(x) } -> std::convertible_to<float>;
    A::apply(p, n);
    { A::name } -> std::convertible_to<const char*>;
};

namespace cpu {

/// x[i] <- exp(x[i] - m) for i < n; returns their sum (fp32: SIMD lanes, then the lanes' sum,
/// then the tail in order). The exponentials of a softmax row (vision and decoder attention).
inline float exp_shift_sum(float* x, index_t n, float m) noexcept {
    index_t i = 0;
    float sum = 0.0f;
#if !defined(MOE_NO_SIMD)
    if constexpr (kHasSimd) {
        using B = xsimd::batch<float, simd_arch>;
        constexpr index_t L = static_cast<index_t>(B::size);
        const B vm(m);
        B vs(0.0f);
        for (; i + L <= n; i += L) {
            const B e = xsimd::exp(B::load_unaligned(x + i) - vm);
            e.store_unaligned(x + i);
            vs += e;
        }
        sum = xsimd::hadd(vs);
    }
#endif
    for (; i < n; ++i) {
        x[i] = std::exp(x[i] - m);
        sum += x[i];
    }
    return sum;
}

/// gate[i] <- Act(gate[i]) * up[i] for i < n (SwiGLU for Act = Silu, GeGLU for Gelu).
template <Activation Act>
inline void glu(float* gate, const float* up, index_t n) noexcept {
    Act::apply(gate, n);
    index_t i = 0;
#if !defined(MOE_NO_SIMD)
    if constexpr (kHasSimd) {
        using B = xsimd::batch<float, simd_arch>;
        constexpr index_t L = static_cast<index_t>(B::size);
        const index_t nv = n - n % L;
        for (; i < nv; i += L) (B::load_unaligned(gate + i) * B::load_unaligned(up + i)).store_unaligned(gate + i);
    }
#endif
    for (; i < n; ++i) gate[i] *= up[i];
}

}  // namespace cpu
}  // namespace moe

MOE_SIMD_DIAGNOSTICS_POP
