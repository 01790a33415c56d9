// vision/vit.hpp - the ViT family: timm ViT, EVA ViT-g (LAVIS), SigLIP (Hugging Face).
//
//   VitConfig                 run-time sizes; presets timm_vit_b16(), eva_vit_g14(), siglip_so400m14()
//   Vit<Ffn, W>               patch embedding -> [CLS] -> + position embedding -> blocks -> [norm]
//   vit_parameter_count(cfg)  the parameter count of a config with dense MLPs, analytically
//
// forward(images [B, Cin, H, W]) returns [B * T, C] (T = [1 +] gh * gw tokens per image, the
// CLS token first); hidden states as Hugging Face numbers them: index 0 = the embeddings,
// index i = the output of block i - 1 (before the final norm). Another input size resizes the
// position grid bicubically (vision/pos_embed.hpp). keep_blocks(n) drops all blocks after the
// first n (SigLIP as RSUniVLM uses it: 26 of 27).
#pragma once

#include <optional>
#include <utility>
#include <vector>

#include "moe/core/precision.hpp"
#include "vision/block.hpp"
#include "vision/mlp.hpp"
#include "vision/patch_embed.hpp"
#include "vision/pos_embed.hpp"

namespace moe::vision {

enum class GeluKind { erf, tanh };

struct VitConfig {
    index_t image_size = 224;
    index_t patch = 16;
    index_t in_chans = 3;
    index_t width = 768;
    index_t depth = 12;
    index_t heads = 12;
    index_t mlp_hidden = 3072;
    bool cls_token = true;
    bool pos_embed = true;
    bool final_norm = true;
    bool qkv_bias = true;   ///< q and v biases (and k unless k_bias is false)
    bool k_bias = true;     ///< false: EVA's cat(q_bias, 0, v_bias)
    bool layer_scale = false;
    float eps = 1e-6f;
    GeluKind gelu = GeluKind::erf;
    NormOrder order = NormOrder::pre;

    index_t grid() const noexcept { return image_size / patch; }
    index_t tokens() const noexcept { return grid() * grid() + (cls_token ? 1 : 0); }

    /// timm vit_base_patch16_224 (and torchvision vit_b_16): 768 wide, 12 blocks of 12 heads, MLP 3072.
    static VitConfig timm_vit_b16() { return {}; }
    /// EVA-CLIP ViT-g/14 as LAVIS builds it (create_eva_vit_g): 1408 wide, 39 blocks, 16 heads,
    /// MLP 6144, q/v biases only, no final norm, exact GELU, 224 input.
    static VitConfig eva_vit_g14() {
        VitConfig c;
        c.patch = 14;
        c.width = 1408;
        c.depth = 39;
        c.heads = 16;
        c.mlp_hidden = 6144;
        c.k_bias = false;
        c.final_norm = false;
        return c;
    }
    /// SigLIP so400m/14 at 384: 1152 wide, 16 heads of 72, MLP 4304, tanh GELU, no CLS;
    /// `blocks` of 27 (RSUniVLM keeps 26 and uses the raw last block output: no post_layernorm).
    static VitConfig siglip_so400m14(index_t blocks = 26, bool post_layernorm = false) {
        VitConfig c;
        c.image_size = 384;
        c.patch = 14;
        c.width = 1152;
        c.depth = blocks;
        c.heads = 16;
        c.mlp_hidden = 4304;
        c.cls_token = false;
        c.final_norm = post_layernorm;
        c.gelu = GeluKind::tanh;
        return c;
    }
};

/// Parameters of one dense block of `c`.
inline index_t vit_block_parameter_count(const VitConfig& c) noexcept {
    const index_t C = c.width, F = c.mlp_hidden;
    const index_t qkv_b = c.qkv_bias ? (c.k_bias ? 3 * C : 2 * C) : 0;
    return 4 * C                                  // norm1, norm2
           + 3 * C * C + qkv_b + C * C + C        // qkv, proj
           + C * F + F + F * C + C                // fc1, fc2
           + (c.layer_scale ? 2 * C : 0);
}

/// Parameters of a ViT of config `c` with dense MLPs (embeddings included).
inline index_t vit_parameter_count(const VitConfig& c) noexcept {
    const index_t C = c.width, g = c.grid();
    index_t p = C * c.in_chans * c.patch * c.patch + C;  // patch embedding
    if (c.cls_token) p += C;
    if (c.pos_embed) p += (g * g + (c.cls_token ? 1 : 0)) * C;
    p += c.depth * vit_block_parameter_count(c);
    if (c.final_norm) p += 2 * C;
    return p;
}

/// Options of one forward call.
struct VitForward {
    std::vector<Tensor>* hidden_states = nullptr;  ///< filled with depth + 1 tensors [B * T, C]
    std::span<const ModalityChunk> image_chunks;    ///< modality of each image range (modality-routed FFNs)
};

template <class Ffn, WeightPolicy W = float>
class Vit {
public:
    using block_type = Block<Ffn, W>;
    Vit() = default;
    Vit(VitConfig config, PatchEmbed<W> patch, Tensor cls_token, std::optional<PosEmbed> pos,
        std::vector<block_type> blocks, std::optional<LayerNorm> norm, std::string_view what = "vision::Vit")
        : cfg_(config), patch_(std::move(patch)), pos_(std::move(pos)), blocks_(std::move(blocks)),
          norm_(std::move(norm)) {
        const index_t C = patch_.width();
        check<ShapeError>(C == cfg_.width, what, "patch embedding width ", C, ", config width ", cfg_.width);
        if (cfg_.cls_token) {
            if (cls_token.rank() == 3) cls_token.reshape({cls_token.numel()});
            check<ShapeError>(cls_token.rank() == 1 && cls_token.dim(0) == C, what, "expected a CLS token of ", C,
                              " values, found ", cls_token.shape().str());
            cls_ = cls_token.dtype() == DType::f32 ? std::move(cls_token) : convert(cls_token.view(), DType::f32);
        }
        check<ShapeError>(!pos_ || (pos_->width() == C && pos_->prefix() == (cfg_.cls_token ? 1 : 0)), what,
                          "position embedding does not match width ", C, " / CLS ", cfg_.cls_token);
        for (const auto& b : blocks_)
            check<ShapeError>(b.width() == C, what, "a block of width ", b.width(), " in a ViT of width ", C);
        cfg_.depth = static_cast<index_t>(blocks_.size());
        // The blocks run one after the other: one set of activation buffers serves them all
        // (EVA ViT-g's 39 blocks would otherwise hold 39 sets, ~660 MB at 257 tokens).
        for (std::size_t i = 1; i < blocks_.size(); ++i) blocks_[i].share_scratch(blocks_[0]);
    }

    const VitConfig& config() const noexcept { return cfg_; }
    index_t width() const noexcept { return cfg_.width; }
    index_t depth() const noexcept { return static_cast<index_t>(blocks_.size()); }
    block_type& block(index_t i) { return blocks_.at(static_cast<std::size_t>(i)); }
    const block_type& block(index_t i) const { return blocks_.at(static_cast<std::size_t>(i)); }
    const PatchEmbed<W>& patch_embed() const noexcept { return patch_; }
    const std::optional<PosEmbed>& pos_embed() const noexcept { return pos_; }
    /// Runs every part (patch embedding, attention, FFN slots) on ex (default Exec::serial()).
    void set_exec(const Exec& ex) noexcept { exec_ = ex; }
    const Exec& exec() const noexcept { return exec_; }

    /// Keeps the first n blocks (SigLIP in RSUniVLM: 26 of 27).
    void keep_blocks(index_t n) {
        check<ConfigError>(n >= 0 && n <= depth(), "vision::Vit::keep_blocks", "cannot keep ", n, " of ", depth(),
                           " blocks");
        blocks_.resize(static_cast<std::size_t>(n));
        cfg_.depth = n;
    }

    index_t parameters() const noexcept {
        index_t p = patch_.parameters() + size_of(cls_) + (pos_ ? pos_->parameters() : 0) +
                    (norm_ ? norm_->parameters() : 0);
        for (const auto& b : blocks_) p += b.parameters();
        return p;
    }

    /// Tokens per image for an H x W input.
    index_t tokens_per_image(index_t H, index_t Wd) const noexcept {
        const auto [gh, gw] = patch_.grid(H, Wd);
        return gh * gw + (cfg_.cls_token ? 1 : 0);
    }

    /// images [B, Cin, H, W] -> [B * T, C].
    Tensor forward(const TensorView& images, const VitForward& opt = {}) {
        const char* w = "vision::Vit::forward";
        check<ShapeError>(images.rank() == 4, w, "expected images [B, C, H, W], found ", images.shape().str());
        const index_t B = images.dim(0), C = width();
        const auto [gh, gw] = patch_.grid(images.dim(2), images.dim(3));
        const index_t N = gh * gw, pre = cfg_.cls_token ? 1 : 0, T = N + pre;
        Tensor patches = patch_.forward(images, exec_);
        Tensor x(DType::f32, {B * T, C});
        float* xd = x.data<float>();
        const float* pd = patches.data<float>();
        const ConstMatrixRef<float> pos = pos_ ? pos_->at(gh, gw) : ConstMatrixRef<float>();
        for (index_t b = 0; b < B; ++b) {
            float* dst = xd + b * T * C;
            if (pre) std::memcpy(dst, cls_.data<float>(), static_cast<std::size_t>(C) * sizeof(float));
            std::memcpy(dst + pre * C, pd + b * N * C, static_cast<std::size_t>(N * C) * sizeof(float));
            if (pos_)
                for (index_t t = 0; t < T; ++t)
                    for (index_t c = 0; c < C; ++c) dst[t * C + c] += pos(t, c);
        }
        const std::vector<ModalityChunk> chunks = scale_chunks(opt.image_chunks, T);
        FfnContext ctx{chunks, exec_};
        if (opt.hidden_states) {
            opt.hidden_states->clear();
            opt.hidden_states->push_back(Tensor::copy_of(x.view()));
        }
        for (auto& blk : blocks_) {
            blk.forward(x.matrix<float>(), T, ctx);
            if (opt.hidden_states) opt.hidden_states->push_back(Tensor::copy_of(x.view()));
        }
        if (norm_) norm_->forward(x.matrix<float>(), x.matrix<float>());
        return x;
    }

private:
    VitConfig cfg_;
    PatchEmbed<W> patch_;
    Tensor cls_;
    std::optional<PosEmbed> pos_;
    std::vector<block_type> blocks_;
    std::optional<LayerNorm> norm_;
    Exec exec_ = Exec::serial();
};

/// A dense ViT with erf GELU (timm ViT, EVA) or tanh GELU (SigLIP).
template <WeightPolicy W = float>
using DenseVit = Vit<Mlp<Gelu, W>, W>;
template <WeightPolicy W = float>
using DenseVitTanh = Vit<Mlp<GeluTanh, W>, W>;

}  // namespace moe::vision
