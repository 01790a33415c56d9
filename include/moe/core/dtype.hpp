// moe/core/dtype.hpp - element types: the DType tag, bf16 and f16 storage types, conversions.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>

#include "moe/core/error.hpp"

namespace moe {

/// Element type of a tensor. The names follow safetensors ("F32", "BF16", ...).
enum class DType : std::uint8_t { f32, bf16, f16, f64, i64, i32, i16, i8, u8, boolean, u16, u32, u64 };

/// Size in bytes of one element of `t`.
constexpr std::size_t dtype_size(DType t) noexcept {
    switch (t) {
        case DType::f64: case DType::i64: case DType::u64: return 8;
        case DType::f32: case DType::i32: case DType::u32: return 4;
        case DType::bf16: case DType::f16: case DType::i16: case DType::u16: return 2;
        case DType::i8: case DType::u8: case DType::boolean: return 1;
    }
    return 0;
}

/// The safetensors spelling of `t` ("F32", "BF16", ...).
constexpr std::string_view dtype_name(DType t) noexcept {
    switch (t) {
        case DType::f32: return "F32";
        case DType::bf16: return "BF16";
        case DType::f16: return "F16";
        case DType::f64: return "F64";
        case DType::i64: return "I64";
        case DType::i32: return "I32";
        case DType::i16: return "I16";
        case DType::i8: return "I8";
        case DType::u8: return "U8";
        case DType::boolean: return "BOOL";
        case DType::u16: return "U16";
        case DType::u32: return "U32";
        case DType::u64: return "U64";
    }
    return "?";
}

/// Parses a safetensors dtype name; false when the name is not a dtype this library knows.
constexpr bool parse_dtype(std::string_view name, DType& out) noexcept {
    constexpr DType all[] = {DType::f32, DType::bf16, DType::f16, DType::f64, DType::i64,
                             DType::i32, DType::i16,  DType::i8,  DType::u8,  DType::boolean,
                             DType::u16, DType::u32,  DType::u64};
    for (DType t : all)
        if (dtype_name(t) == name) {
            out = t;
            return true;
        }
    return false;
}

/// bfloat16 storage: the upper 16 bits of an IEEE binary32. Arithmetic happens in float.
struct bf16 {
    std::uint16_t bits = 0;

    bf16() = default;
    /// Round to nearest even, as PyTorch's `tensor.to(torch.bfloat16)` does; NaN stays NaN.
    explicit bf16(float f) noexcept : bits(from_float(f)) {}
    explicit operator float() const noexcept { return to_float(bits); }

    static constexpr bf16 from_bits(std::uint16_t b) noexcept {
        bf16 r;
        r.bits = b;
        return r;
    }
    static std::uint16_t from_float(float f) noexcept {
        std::uint32_t u = std::bit_cast<std::uint32_t>(f);
        if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);  // quiet NaN
        u += 0x7fffu + ((u >> 16) & 1u);
        return static_cast<std::uint16_t>(u >> 16);
    }
    static float to_float(std::uint16_t b) noexcept {
        return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
    }
    friend bool operator==(bf16 a, bf16 b) noexcept { return a.bits == b.bits; }
};

/// IEEE binary16 storage. Arithmetic happens in float.
struct f16 {
    std::uint16_t bits = 0;

    f16() = default;
    /// Round to nearest even; overflow gives infinity, NaN stays NaN.
    explicit f16(float f) noexcept : bits(from_float(f)) {}
    explicit operator float() const noexcept { return to_float(bits); }

    static constexpr f16 from_bits(std::uint16_t b) noexcept {
        f16 r;
        r.bits = b;
        return r;
    }
    static std::uint16_t from_float(float f) noexcept {
        const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
        const std::uint32_t sign = (u >> 16) & 0x8000u;
        const std::uint32_t absu = u & 0x7fffffffu;
        if (absu > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);  // NaN
        if (absu >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to inf
        if (absu < 0x38800000u) {  // result is subnormal or zero: let the FPU round
            const float a = std::bit_cast<float>(absu);
            const float scaled = a * 16777216.0f;  // 2^24: one half-subnormal ulp becomes 1
            return static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(std::nearbyint(scaled)));
        }
        std::uint32_t m = absu + ((15u - 127u) << 23);  // rebias the exponent
        m += 0xfffu + ((m >> 13) & 1u);                 // round to nearest even on 13 dropped bits
        return static_cast<std::uint16_t>(sign | (m >> 13));
    }
    static float to_float(std::uint16_t h) noexcept {
        const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
        const std::uint32_t exp = (h >> 10) & 0x1fu;
        const std::uint32_t man = h & 0x3ffu;
        if (exp == 0) {  // zero or subnormal: man * 2^-24
            const float v = static_cast<float>(man) * 5.9604644775390625e-8f;
            return sign ? -v : v;
        }
        if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));
        return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (man << 13));
    }
    friend bool operator==(f16 a, f16 b) noexcept { return a.bits == b.bits; }
};

static_assert(sizeof(bf16) == 2 && sizeof(f16) == 2);

/// Maps a C++ element type to its DType.
template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<f16> { static constexpr DType value = DType::f16; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<std::int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<std::int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<std::int16_t> { static constexpr DType value = DType::i16; };
template <> struct dtype_of<std::int8_t> { static constexpr DType value = DType::i8; };
template <> struct dtype_of<std::uint8_t> { static constexpr DType value = DType::u8; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::boolean; };
template <> struct dtype_of<std::uint16_t> { static constexpr DType value = DType::u16; };
template <> struct dtype_of<std::uint32_t> { static constexpr DType value = DType::u32; };
template <> struct dtype_of<std::uint64_t> { static constexpr DType value = DType::u64; };
template <class T> inline constexpr DType dtype_v = dtype_of<std::remove_cv_t<T>>::value;

/// True for the floating-point dtypes moe reads and converts weights from (F32, BF16, F16).
constexpr bool is_float_dtype(DType t) noexcept { return t == DType::f32 || t == DType::bf16 || t == DType::f16; }

/// True for the floating-point types a weight may be stored in (f32, bf16, f16).
template <class T>
concept WeightType = std::is_same_v<T, float> || std::is_same_v<T, bf16> || std::is_same_v<T, f16>;

/// Converts a stored element to float.
inline float to_float(float v) noexcept { return v; }
inline float to_float(bf16 v) noexcept { return static_cast<float>(v); }
inline float to_float(f16 v) noexcept { return static_cast<float>(v); }

/// Converts a float to the storage type T (rounding to nearest even).
template <WeightType T>
inline T from_float(float v) noexcept {
    if constexpr (std::is_same_v<T, float>) return v;
    else return T(v);
}

}  // namespace moe
