// moe/core/simd_diagnostics.hpp - scoped silencing of GCC 12's false warnings from its own
// AVX/AVX-512 intrinsics headers.
//
// GCC 12's avxintrin.h / avx512fintrin.h implement _mm256_undefined_* / _mm512_undefined_* as
// `__m512 __Y = __Y;`, which -Wuninitialized / -Wmaybe-uninitialized report wherever such an
// intrinsic is inlined (GCC bug 105593, fixed in GCC 13): hundreds of warnings in a user's
// -Wall -Wextra -march=native build, or errors under -Werror. Every moe header that includes
// <immintrin.h>, xsimd or Eigen, or calls SIMD intrinsics, wraps its contents in
//
//     MOE_SIMD_DIAGNOSTICS_PUSH
//     ...
//     MOE_SIMD_DIAGNOSTICS_POP
//
// which ignores exactly these two warnings in moe's own code and in the intrinsics headers that
// moe includes first, and restores the user's settings afterwards (push/pop). Nothing else is
// silenced; clang (no such bug) and GCC >= 13 get nothing.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#define MOE_SIMD_DIAGNOSTICS_PUSH                                     \
    _Pragma("GCC diagnostic push")                                    \
    _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")             \
    _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define MOE_SIMD_DIAGNOSTICS_POP _Pragma("GCC diagnostic pop")
#else
#define MOE_SIMD_DIAGNOSTICS_PUSH
#define MOE_SIMD_DIAGNOSTICS_POP
#endif
