// rs/random_weights.hpp - deterministic random tensors for the models' random-weight
// checkpoints (rs/ringmoe/random.hpp, rs/rsunivlm/random.hpp): a layout of TensorSpecs, each
// written streaming by io::SafetensorsWriter.
//
//   TensorSpec { name, shape, dtype, init, std }    one tensor (Init: trunc_normal, zeros, ones,
//                                                  Swin's relative position index)
//   random_weights_writer(specs, seed)            a SafetensorsWriter whose tensors are made
//                                                  chunk by chunk when the file is written
//
// Values are a counter-based function of (seed, tensor name, element index): value i of a tensor
// is component i % 2 of the first fp32 Box-Muller pair splitmix64(key, i / 2, attempt) whose
// component lies within +-2, so a file is the same bit for bit whatever the thread count or
// chunking, and two tensors never share a stream. bf16 tensors are the fp32 values rounded to
// nearest even.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/precision.hpp"
#include "moe/core/tensor.hpp"
#include "moe/io/safetensors.hpp"
#include "vision/swin.hpp"

namespace moe::rs {

/// How a tensor of a random checkpoint is initialised.
enum class Init : std::uint8_t {
    trunc_normal,    ///< N(0, std^2) truncated at +-2 std
    zeros,
    ones,
    position_index,  ///< the Swin-V1 relative position index of a w x w window (int32)
};

/// One tensor of a checkpoint.
struct TensorSpec {
    std::string name;
    std::vector<index_t> shape;
    DType dtype = DType::f32;
    Init init = Init::zeros;
    double std = 0.0;   ///< trunc_normal only
    index_t window = 0; ///< position_index only
    index_t numel() const noexcept {
        index_t n = 1;
        for (index_t d : shape) n *= d;
        return n;
    }
    std::size_t nbytes() const noexcept { return static_cast<std::size_t>(numel()) * dtype_size(dtype); }
};

namespace detail {

inline std::uint64_t splitmix64(std::uint64_t x) noexcept {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/// The stream key of a tensor: FNV-1a of its name mixed with the seed.
inline std::uint64_t tensor_key(std::uint64_t seed, std::string_view name) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
    return splitmix64(h ^ splitmix64(seed));
}

/// Draw `a` of pair j of stream `key`: two standard normals (Box-Muller in fp32 from one
/// 64-bit splitmix output: 24 bits for the radius, 24 for the angle).
inline void normal_pair(std::uint64_t key, std::uint64_t j, std::uint64_t a, float& z0, float& z1) noexcept {
    constexpr float kTwoPi = 6.28318530717958647692f;
    const std::uint64_t h = splitmix64(key + (j * 64 + a) * 0xD1B54A32D192ED03ull);
    const float u1 = static_cast<float>((h >> 40) + 1) * (1.0f / 16777216.0f);             // (0, 1]
    const float u2 = static_cast<float>((h >> 16) & 0xFFFFFFull) * (1.0f / 16777216.0f);   // [0, 1)
    const float r = std::sqrt(-2.0f * std::log(u1));
    z0 = r * std::cos(kTwoPi * u2);
    z1 = r * std::sin(kTwoPi * u2);
}

/// Value i of the truncated standard normal stream `key` (|z| <= 2): component i % 2 of the
/// first draw of pair i / 2 whose component is within the bounds.
inline float trunc_normal(std::uint64_t key, std::uint64_t i) noexcept {
    for (std::uint64_t a = 0;; ++a) {
        float z0, z1;
        normal_pair(key, i >> 1, a, z0, z1);
        const float z = (i & 1) ? z1 : z0;
        if (std::abs(z) <= 2.0f) return z;
    }
}

/// Values [begin, begin + n) of tensor `s` (key from tensor_key) as fp32.
inline void fill_values(const TensorSpec& s, std::uint64_t key, index_t begin, index_t n, float* out) {
    switch (s.init) {
        case Init::zeros: std::fill(out, out + n, 0.0f); return;
        case Init::ones: std::fill(out, out + n, 1.0f); return;
        case Init::trunc_normal: {
            const auto sd = static_cast<float>(s.std);
            const index_t p0 = begin >> 1, p1 = (begin + n + 1) >> 1;  // pairs covering the range
            // All threads, in tasks of 65536 pairs (one task, on this thread, up to 131072 values).
            parallel_for(Exec{}, p1 - p0, [&](index_t jj) {
                const index_t j = p0 + jj;
                float z[2];
                normal_pair(key, static_cast<std::uint64_t>(j), 0, z[0], z[1]);
                for (index_t c = 0; c < 2; ++c) {
                    const index_t i = 2 * j + c;
                    if (i < begin || i >= begin + n) continue;
                    const float v = std::abs(z[c]) <= 2.0f ? z[c] : trunc_normal(key, static_cast<std::uint64_t>(i));
                    out[i - begin] = v * sd;
                }
            }, 65536);
            return;
        }
        case Init::position_index: return;  // int32: written by write_values
    }
}

/// Streams the bytes of tensor `s` to sink(const void*, size_t) in chunks.
template <class Sink>
void write_values(const TensorSpec& s, std::uint64_t seed, Sink&& sink) {
    if (s.init == Init::position_index) {
        const auto idx = vision::relative_position_index(s.window);
        check<ShapeError>(static_cast<index_t>(idx.size()) == s.numel() && s.dtype == DType::i32, s.name,
                          "position index of window ", s.window, " does not fit ", s.numel(), " int32 values");
        sink(idx.data(), idx.size() * sizeof(std::int32_t));
        return;
    }
    constexpr index_t kChunk = index_t{1} << 22;
    const std::uint64_t key = tensor_key(seed, s.name);
    const index_t n = s.numel();
    std::vector<float> buf(static_cast<std::size_t>(std::min(n, kChunk)));
    std::vector<bf16> half(s.dtype == DType::bf16 ? buf.size() : 0);
    for (index_t b = 0; b < n; b += kChunk) {
        const index_t m = std::min(kChunk, n - b);
        fill_values(s, key, b, m, buf.data());
        if (s.dtype == DType::bf16) {
            for (index_t i = 0; i < m; ++i) half[static_cast<std::size_t>(i)] = bf16(buf[static_cast<std::size_t>(i)]);
            sink(half.data(), static_cast<std::size_t>(m) * sizeof(bf16));
        } else {
            sink(buf.data(), static_cast<std::size_t>(m) * sizeof(float));
        }
    }
}

inline int dtype_order(DType t) noexcept { return t == DType::f32 ? 0 : (t == DType::i32 ? 1 : 2); }

}  // namespace detail

/// A writer of the tensors `specs` (values made when the file is written, chunk by chunk), with
/// metadata {"format": "pt"} plus `metadata`.
inline io::SafetensorsWriter random_weights_writer(std::vector<TensorSpec> specs, std::uint64_t seed,
                                                   const std::vector<std::pair<std::string, std::string>>& metadata = {}) {
    io::SafetensorsWriter w;
    w.add_metadata("format", "pt");
    for (const auto& [k, v] : metadata) w.add_metadata(k, v);
    for (auto& s : specs) {
        const Shape shape(s.shape.begin(), s.shape.end());
        const DType dtype = s.dtype;
        std::string name = s.name;
        w.add_streamed(std::move(name), dtype, shape,
                       [spec = std::move(s), seed](const io::SafetensorsWriter::ByteSink& sink) {
                           detail::write_values(spec, seed, sink);
                       });
    }
    return w;
}

}  // namespace moe::rs
