// rs/rsmoe/encoder.hpp - the released half of RS-MoE: InstructBLIP's image side, exactly as
// LAVIS's Blip2VicunaInstruct computes it.
//
//   InstructBlipEncoder<W>    EVA ViT-g/14 (vision::DenseVit, no final norm) -> ln_vision
//                             (LayerNorm, eps 1e-5) -> the instruction-aware Q-Former
//                             (vision::QFormer: 32 learned queries + the instruction's WordPiece
//                             ids, cross-attention to the image every second layer)
//   load_instructblip<W>(file, config)   by LAVIS's names: visual_encoder.*, ln_vision.*,
//                             Qformer.bert.*, query_tokens
//
// image_embeds(pixels [3, S, S]) -> [N, width] (N = grid^2 + 1 with the CLS token), then
// qformer(image_embeds, ids) -> the last hidden state [Q + T, 768]: the Q query rows (what
// llm_proj turns into the LLM's visual tokens) then the T text rows. The llm_proj Linear belongs
// to the experts (rs/rsmoe/experts.hpp): separate expert LLMs of other widths each have their own.
#pragma once

#include <span>
#include <utility>

#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/tensor.hpp"
#include "moe/io/safetensors.hpp"
#include "rs/rsmoe/config.hpp"
#include "vision/loaders.hpp"
#include "vision/qformer.hpp"
#include "vision/vit.hpp"

namespace moe::rs::rsmoe {

template <WeightPolicy W = float>
class InstructBlipEncoder {
public:
    using Vit = vision::DenseVit<W>;
    using QFormer = vision::QFormer<W>;

    InstructBlipEncoder(Vit vit, vision::LayerNorm ln_vision, QFormer qformer)
        : vit_(std::move(vit)), ln_(std::move(ln_vision)), qf_(std::move(qformer)) {
        check<ShapeError>(ln_.size() == vit_.config().width, "InstructBlipEncoder", "ln_vision has ", ln_.size(),
                          " features, the vision tower ", vit_.config().width);
        check<ShapeError>(qf_.config().encoder_width == vit_.config().width, "InstructBlipEncoder",
                          "the Q-Former attends to ", qf_.config().encoder_width,
                          "-wide image tokens, the vision tower gives ", vit_.config().width);
    }

    const vision::VitConfig& vision_config() const noexcept { return vit_.config(); }
    const vision::QFormerConfig& qformer_config() const noexcept { return qf_.config(); }
    index_t query_tokens() const noexcept { return qf_.config().num_query_tokens; }
    index_t image_size() const noexcept { return vit_.config().image_size; }
    Vit& vision_tower() noexcept { return vit_; }
    QFormer& qformer() noexcept { return qf_; }
    index_t parameters() const { return vit_.parameters() + ln_.parameters() + qf_.parameters(); }
    void set_exec(const Exec& ex) {
        vit_.set_exec(ex);
        qf_.set_exec(ex);
    }

    /// ln_vision(visual_encoder(pixels)): pixels f32 [3, S, S] (or [1, 3, S, S]) -> [N, width].
    Tensor image_embeds(const TensorView& pixels) {
        const index_t S = image_size();
        check<ShapeError>(pixels.dtype() == DType::f32 && pixels.numel() == 3 * S * S &&
                              (pixels.rank() == 3 || (pixels.rank() == 4 && pixels.dim(0) == 1)),
                          "InstructBlipEncoder::image_embeds", "pixels are ", pixels.shape().str(), " ",
                          dtype_name(pixels.dtype()), ", expected F32 [3, ", S, ", ", S, "]");
        Tensor x = vit_.forward(pixels.reshape(Shape{1, 3, S, S}));  // [N, width]
        ln_.forward(x.matrix<float>(), x.matrix<float>());
        return x;
    }

    /// The Q-Former's last hidden state [Q + T, H] for one image's embeddings and one
    /// instruction's ids ([CLS] ... [SEP]; empty: the queries alone).
    Tensor qformer(ConstMatrixRef<float> image_embeds, std::span<const std::int32_t> ids) {
        return qf_.forward(ids, image_embeds);
    }

private:
    Vit vit_;
    vision::LayerNorm ln_;
    QFormer qf_;
};

/// The encoder from a file with LAVIS's names.
template <WeightPolicy W = float>
InstructBlipEncoder<W> load_instructblip(const io::SafetensorsFile& f, const RsMoeConfig& c) {
    vision::VitConfig vc = c.vision;
    vc.k_bias = false;
    vc.final_norm = false;
    auto vit = vision::load_eva_vit<W>(f, "visual_encoder.", vc);
    auto ln = vision::load_layer_norm(f, "ln_vision.", vc.width, c.ln_vision_eps);
    auto qf = vision::load_qformer<W>(f, "Qformer.bert.", "query_tokens", c.qformer);
    return InstructBlipEncoder<W>(std::move(vit), std::move(ln), std::move(qf));
}

}  // namespace moe::rs::rsmoe
