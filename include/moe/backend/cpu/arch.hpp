// moe/backend/cpu/arch.hpp - the per-instruction-set operations (one header per instruction
// set under arch/), and entry points that pick the best overload for an architecture A.
#pragma once

#include "moe/core/simd_diagnostics.hpp"
MOE_SIMD_DIAGNOSTICS_PUSH

#include "moe/backend/cpu/arch/generic.hpp"
#include "moe/backend/cpu/arch/sse.hpp"
#include "moe/backend/cpu/arch/avx.hpp"
#include "moe/backend/cpu/arch/avx512.hpp"

#if !defined(MOE_NO_SIMD)
namespace moe::cpu::arch {

template <class A>
inline void transpose_square(xsimd::batch<float, A>* rows) noexcept {
    transpose_square<A>(rows, A{});
}
/// AVX-512 only (16 lanes): see arch/avx512.hpp.
template <class A>
inline void transpose_8x16(const xsimd::batch<float, A>* cols, xsimd::batch<float, A>* rows) noexcept {
    transpose_8x16<A>(cols, rows, A{});
}
template <class A>
inline void transpose_2x16(const xsimd::batch<float, A>* cols, xsimd::batch<float, A>* rows) noexcept {
    transpose_2x16<A>(cols, rows, A{});
}
template <class A>
inline void transpose_16x8(const xsimd::batch<float, A>* rows, xsimd::batch<float, A>* cols) noexcept {
    transpose_16x8<A>(rows, cols, A{});
}
template <class A>
inline void pick_64x8(const float* p, std::ptrdiff_t stride, const xsimd::batch<float, A>* ids,
                      xsimd::batch<float, A>* vals) noexcept {
    pick_64x8<A>(p, stride, ids, vals, A{});
}
template <class A>
inline void load_transpose_16x8(const float* p, std::ptrdiff_t stride, xsimd::batch<float, A>* cols) noexcept {
    load_transpose_16x8<A>(p, stride, cols, A{});
}
template <class A>
inline std::uint32_t movemask(const xsimd::batch_bool<float, A>& m) noexcept {
    return movemask<A>(m, A{});
}
template <class A>
inline xsimd::batch<std::int32_t, A> select_by_sign(const xsimd::batch<float, A>& x,
                                                    const xsimd::batch<std::int32_t, A>& if_neg,
                                                    const xsimd::batch<std::int32_t, A>& if_pos) noexcept {
    return select_by_sign<A>(x, if_neg, if_pos, A{});
}
template <class A>
inline xsimd::batch<float, A> gather(const float* base, const xsimd::batch<std::int32_t, A>& idx) noexcept {
    return gather<A>(base, idx, A{});
}

/// x * y + z per lane, fused wherever the target has FMA (see madd() for the scalar twin).
template <class A>
inline xsimd::batch<float, A> fmadd(const xsimd::batch<float, A>& x, const xsimd::batch<float, A>& y,
                                    const xsimd::batch<float, A>& z) noexcept {
    return fmadd<A>(x, y, z, A{});
}

/// L consecutive bf16 values (as raw bits) widened to fp32.
template <class A>
inline xsimd::batch<float, A> load_bf16(const std::uint16_t* p) noexcept {
    return load_bf16<A>(p, A{});
}

}  // namespace moe::cpu::arch
#endif

MOE_SIMD_DIAGNOSTICS_POP
