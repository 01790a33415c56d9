// lm/decoder/rope.hpp - rotary position embeddings as Hugging Face computes them.
//
//   Rope(config)                     inverse frequencies [rot / 2] in fp32 (modeling_rope_utils:
//                                    default, linear, llama3)
//   rope.apply(row, heads, hd, pos)  rotates the first rot dims of each head of one token's row,
//                                    HF's rotate_half convention: emb = cat(freqs, freqs),
//                                    x * cos + rotate_half(x) * sin; dims rot .. hd pass through
//                                    (partial_rotary_factor < 1)
//
// Arithmetic as transformers': inv_freq = 1 / theta^(arange(0, rot, 2) / rot) in fp32; llama3
// scaling divides the low frequencies by `factor` and interpolates the band between;
// freqs = position * inv_freq in fp32; cos and sin in fp32.
#pragma once

#include <cmath>
#include <numbers>
#include <vector>

#include "lm/decoder/config.hpp"
#include "moe/core/tensor.hpp"

namespace moe::lm {

class Rope {
public:
    Rope() = default;
    explicit Rope(const DecoderConfig& c) : rot_(c.rotary_dim()) {
        const index_t half = rot_ / 2;
        inv_.resize(static_cast<std::size_t>(half));
        for (index_t i = 0; i < half; ++i) {
            const float e = static_cast<float>(2 * i) / static_cast<float>(rot_);
            inv_[static_cast<std::size_t>(i)] = 1.0f / std::pow(static_cast<float>(c.rope_theta), e);
        }
        const RopeScaling& r = c.rope_scaling;
        if (r.type == "linear") {
            for (float& f : inv_) f = f / static_cast<float>(r.factor);
        } else if (r.type == "llama3") {
            const double low_wavelen = r.original_max_position_embeddings / r.low_freq_factor;
            const double high_wavelen = r.original_max_position_embeddings / r.high_freq_factor;
            for (float& f : inv_) {
                const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
                const float scaled = wavelen > static_cast<float>(low_wavelen) ? f / static_cast<float>(r.factor) : f;
                const bool medium = !(wavelen < static_cast<float>(high_wavelen)) && !(wavelen > static_cast<float>(low_wavelen));
                if (medium) {
                    const float smooth = static_cast<float>(
                        (r.original_max_position_embeddings / wavelen - r.low_freq_factor) /
                        (r.high_freq_factor - r.low_freq_factor));
                    f = (1.0f - smooth) * scaled / static_cast<float>(r.factor) + smooth * scaled;
                } else {
                    f = scaled;
                }
            }
        }
    }

    /// Rotary dimensions per head.
    index_t rotary_dim() const noexcept { return rot_; }
    /// The inverse frequencies [rot / 2].
    const std::vector<float>& inv_freq() const noexcept { return inv_; }

    /// cos and sin of position `pos` for the rot / 2 frequencies (cs[2i] = cos, cs[2i + 1] = sin).
    void angles(index_t pos, float* cs) const noexcept {
        const float p = static_cast<float>(pos);
        for (std::size_t i = 0; i < inv_.size(); ++i) {
            const float f = inv_[i] * p;
            cs[2 * i] = std::cos(f);
            cs[2 * i + 1] = std::sin(f);
        }
    }

    /// Rotates `heads` heads of hd values each (head h at row + h * hd) with angles() `cs`.
    void apply(float* row, index_t heads, index_t hd, const float* cs) const noexcept {
        const index_t half = rot_ / 2;
        for (index_t h = 0; h < heads; ++h) {
            float* x = row + h * hd;
            for (index_t i = 0; i < half; ++i) {
                const float c = cs[2 * i], s = cs[2 * i + 1];
                const float a = x[i], b = x[i + half];
                x[i] = a * c + (-b) * s;
                x[i + half] = b * c + a * s;
            }
        }
    }

private:
    index_t rot_ = 0;
    std::vector<float> inv_;
};

}  // namespace moe::lm
