// rs/ringmoe/model.hpp - RingMoE as a composition of the library's parts.
//
//   per-modality patch embeddings -> Swin encoder (vision::SwinEncoder) whose every FFN slot
//   holds Ffn -> output LayerNorm -> heads (heads.hpp)
//
//   RingMoeModel<Ffn, W>        the model; Ffn = the hierarchical MoE (RingMoe<W, Act>: the full,
//                               single-modality and pruned configurations) or a dense MLP
//                               (RingMoeDense<W, Act>: the folded model); W = weight type (float,
//                               bf16); activations fp32.
//   forward(batches)            several modality batches (vision::ModalityImages, concatenated in
//                               the given order) in one call -> RingMoeOutput {features [B R^2, C],
//                               logits [B, K], segmentation [B, K_seg, S, S]}. The hierarchical MoE
//                               sends each batch's tokens to its modality's router and experts.
//   routing()                   per block, after a forward: requested / kept tokens per expert of
//                               every modality's group and of the collaborative group (also split
//                               by the tokens' modality), capacities, dropped tokens, aux loss.
//   map_ffns<Ffn2>(f, cfg2)     the same model with every FFN slot rebuilt (deployment steps).
//   load_ringmoe_moe / load_ringmoe_dense / load_ringmoe
//                               a model from a safetensors checkpoint by the released MindSpore
//                               names ("encoder." + encoder.hpp's names, "head.*",
//                               "seg_head.*"), checked against the configuration.
//
// Errors: an unknown modality (index or name) is a ConfigError listing the model's modalities; images
// with the wrong channel count or size a ShapeError naming the modality, the expected and the found
// shape; a missing tensor a NotFoundError naming it; a checkpoint of another shape (expert counts,
// modalities, widths) a ShapeError naming the tensor or block.
#pragma once

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "moe/core/precision.hpp"
#include "moe/io/safetensors.hpp"
#include "moe/layer/concepts.hpp"
#include "rs/ringmoe/config.hpp"
#include "rs/ringmoe/encoder.hpp"
#include "rs/ringmoe/heads.hpp"
#include "rs/ringmoe/moe_modal.hpp"
#include "rs/ringmoe/names.hpp"
#include "vision/loaders.hpp"
#include "vision/swin.hpp"

namespace moe::rs::ringmoe {

/// The hierarchical MoE of every block (MoeModal, moe_modal.hpp: modal + collaborative + shared).
template <WeightPolicy W = float, Activation Act = GeluTanh>
using MoeFfn = MoeModal<W, Act>;
/// The dense FFN of the folded model.
template <WeightPolicy W = float, Activation Act = GeluTanh>
using DenseMlp = vision::Mlp<Act, W>;

/// moe_config of the hierarchical layer for `cfg`.
inline MoeModalConfig moe_modal_config(const RingMoeConfig& cfg) {
    MoeModalConfig m;
    m.num_experts_chosen = cfg.k;
    m.capacity_factor = cfg.capacity_factor;
    m.expert_num = cfg.expert_num;
    m.aux_loss_factor = cfg.aux_loss_factor;
    return m;
}

/// One routed group's statistics in one block.
struct GroupRouting {
    index_t tokens = 0;    ///< tokens routed in this group
    index_t capacity = 0;  ///< per-expert capacity (0 = unlimited)
    index_t dropped = 0;   ///< choices dropped by capacity
    std::vector<index_t> requested;  ///< [E] choices that asked for each expert (before capacity)
    std::vector<index_t> kept;       ///< [E] tokens each expert processed
};

/// Routing statistics of one block's hierarchical MoE (last forward call).
struct BlockRouting {
    index_t stage = 0, block = 0;  ///< block `block` of stage `stage`
    std::vector<GroupRouting> modal;  ///< one per model modality (tokens 0: absent from the batch)
    GroupRouting collab;
    std::vector<std::vector<index_t>> collab_kept_by_modality;  ///< [m][e]: kept collaborative tokens of modality m
    double aux_loss = 0;  ///< the layer's auxiliary loss
    index_t dropped() const noexcept {
        index_t d = collab.dropped;
        for (const auto& g : modal) d += g.dropped;
        return d;
    }
};

/// Options of one forward call.
struct RingMoeForward {
    vision::SwinForward encoder{};  ///< captures (stage/block outputs, FFN inputs) and SimMIM masking
    bool heads = true;              ///< run the heads the model has
};

/// What a forward call returns.
struct RingMoeOutput {
    Tensor features;      ///< [B * R_last^2, C_last]: the encoder output after its final LayerNorm
    Tensor logits;        ///< [B, num_classes] (empty without a classification head)
    Tensor segmentation;  ///< [B, seg_classes, S, S] per-pixel logits (empty without a segmentation head)
    index_t batch = 0;    ///< images in the call
};

template <class Ffn, WeightPolicy W = float>
class RingMoeModel {
public:
    using ffn_type = Ffn;
    using weight_type = W;
    using encoder_type = vision::SwinEncoder<Ffn, W>;
    /// Whether the FFN slots route (hierarchical MoE) and routing() has something to say.
    static constexpr bool routed = GroupReporting<Ffn>;

    RingMoeModel() = default;
    RingMoeModel(RingMoeConfig config, encoder_type encoder, std::optional<ClassificationHead<W>> cls = std::nullopt,
                 std::optional<SegmentationHead<W>> seg = std::nullopt)
        : cfg_(std::move(config)), enc_(std::move(encoder)), cls_(std::move(cls)), seg_(std::move(seg)) {
        const std::string w = "rs::ringmoe::RingMoeModel (" + cfg_.name + ")";
        cfg_.validate(w);
        const auto& e = enc_.config();
        const auto& s = cfg_.swin;
        check<ConfigError>(e.image_size == s.image_size && e.patch == s.patch && e.embed_dim == s.embed_dim &&
                               e.depths == s.depths && e.heads == s.heads && e.window == s.window &&
                               e.mlp_ratio == s.mlp_ratio,
                           w, "the encoder's geometry differs from the configuration's");
        check<ConfigError>(enc_.modalities() == cfg_.num_modalities() && e.in_chans == s.in_chans, w, "the encoder has ",
                           enc_.modalities(), " patch embeddings, the configuration ", cfg_.num_modalities(),
                           " modalities");
        check<ConfigError>((cfg_.ffn == FfnKind::moe) == routed, w, "configuration FFN '", ffn_kind_name(cfg_.ffn),
                           "' does not match the model's FFN type");
        const index_t CL = s.dim(s.stages() - 1);
        check<ConfigError>(cfg_.num_classes == (cls_ ? cls_->classes() : 0), w, "configuration num_classes ",
                           cfg_.num_classes, ", classification head ", cls_ ? cls_->classes() : 0);
        check<ShapeError>(!cls_ || cls_->width() == CL, w, "classification head over ", cls_ ? cls_->width() : 0,
                          " features, the encoder gives ", CL);
        check<ConfigError>(cfg_.seg_classes == (seg_ ? seg_->classes() : 0), w, "configuration seg_classes ",
                           cfg_.seg_classes, ", segmentation head ", seg_ ? seg_->classes() : 0);
        if (seg_) {
            check<ConfigError>(seg_->stage() == cfg_.seg_stage_index(), w, "segmentation head reads stage ",
                               seg_->stage(), ", configuration ", cfg_.seg_stage_index());
            check<ShapeError>(seg_->width() == s.dim(seg_->stage()), w, "segmentation head over ", seg_->width(),
                              " features, stage ", seg_->stage(), " gives ", s.dim(seg_->stage()));
        }
        if constexpr (routed) {
            for (index_t i = 0; i < s.stages(); ++i)
                for (std::size_t j = 0; j < enc_.stage(i).blocks.size(); ++j) {
                    const auto& f = enc_.stage(i).blocks[j].ffn();
                    check<ShapeError>(f.modalities() == cfg_.num_modalities(), w, "stage ", i, " block ", j, ": ",
                                      f.modalities(), " modal groups, configuration ", cfg_.num_modalities());
                    for (int m = 0; m < f.modalities(); ++m)
                        check<ShapeError>(f.modal_router(m).num_experts() == cfg_.modal_experts, w, "stage ", i,
                                          " block ", j, " modality ", m, ": ", f.modal_router(m).num_experts(),
                                          " modal experts, configuration ", cfg_.modal_experts);
                    check<ShapeError>(f.collab_router().num_experts() == cfg_.collab_experts, w, "stage ", i,
                                      " block ", j, ": ", f.collab_router().num_experts(),
                                      " collaborative experts, configuration ", cfg_.collab_experts);
                }
        }
    }

    const RingMoeConfig& config() const noexcept { return cfg_; }
    encoder_type& encoder() noexcept { return enc_; }
    const encoder_type& encoder() const noexcept { return enc_; }
    const std::optional<ClassificationHead<W>>& classification_head() const noexcept { return cls_; }
    const std::optional<SegmentationHead<W>>& segmentation_head() const noexcept { return seg_; }
    index_t parameters() const noexcept {
        return enc_.parameters() + (cls_ ? cls_->parameters() : 0) + (seg_ ? seg_->parameters() : 0);
    }
    /// Runs the encoder and the heads on ex (default Exec::serial()).
    void set_exec(const Exec& ex) noexcept {
        exec_ = ex;
        enc_.set_exec(ex);
    }
    const Exec& exec() const noexcept { return exec_; }
    /// Index of a modality by name (ConfigError listing the model's modalities if unknown).
    int modality(std::string_view name) const { return cfg_.modality_index(name, "rs::ringmoe::RingMoeModel"); }

    /// Several modality batches in one call (their images concatenated in order).
    RingMoeOutput forward(std::span<const vision::ModalityImages> batches, const RingMoeForward& opt = {}) {
        const std::string w = "rs::ringmoe::RingMoeModel::forward (" + cfg_.name + ")";
        check<ShapeError>(!batches.empty(), w, "no images");
        const index_t S = cfg_.swin.image_size;
        index_t B = 0;
        images_.clear();
        for (const auto& b : batches) {
            const int m = cfg_.modality_index(b.modality, w);
            const auto& spec = cfg_.modalities[static_cast<std::size_t>(m)];
            check<ShapeError>(b.images.rank() == 4 && b.images.dim(1) == spec.in_chans, w, "modality ", m, " (",
                              spec.name, ") takes images [B, ", spec.in_chans, ", ", S, ", ", S, "], found ",
                              b.images.shape().str());
            check<ShapeError>(b.images.dim(2) == S && b.images.dim(3) == S, w, "this configuration takes ", S, " x ",
                              S, " images; modality ", m, " (", spec.name, ") batch is ", b.images.shape().str());
            images_.push_back({B, B + b.images.dim(0), m});
            B += b.images.dim(0);
        }
        const index_t last = cfg_.swin.stages() - 1;
        const bool seg_early = opt.heads && seg_ && seg_->stage() != last;
        std::vector<Tensor> stages_local;
        vision::SwinForward eo = opt.encoder;
        if (seg_early && !eo.stage_outputs) eo.stage_outputs = &stages_local;
        RingMoeOutput out;
        out.batch = B;
        out.features = enc_.forward(batches, eo);
        if (opt.heads) {
            if (cls_) out.logits = cls_->forward(out.features.template matrix<float>(), B, exec_);
            if (seg_) {
                const index_t st = seg_->stage();
                const Tensor& f = st == last ? out.features : (*eo.stage_outputs)[static_cast<std::size_t>(st)];
                out.segmentation = seg_->forward(f.template matrix<float>(), B, cfg_.swin.resolution(st), S, exec_);
            }
        }
        return out;
    }
    /// One batch of one modality (by index or name).
    RingMoeOutput forward(const TensorView& images, int modality = 0, const RingMoeForward& opt = {}) {
        const vision::ModalityImages b{images, modality};
        return forward(std::span<const vision::ModalityImages>(&b, 1), opt);
    }
    RingMoeOutput forward(const TensorView& images, std::string_view modality, const RingMoeForward& opt = {}) {
        return forward(images, cfg_.modality_index(modality, "rs::ringmoe::RingMoeModel::forward (" + cfg_.name + ")"),
                       opt);
    }

    /// Per-block routing statistics of the last forward call (empty for a dense model or
    /// before the first call), in block order.
    std::vector<BlockRouting> routing() const {
        std::vector<BlockRouting> out;
        if constexpr (routed) {
            if (images_.empty()) return out;
            const int M = cfg_.num_modalities();
            for (index_t i = 0; i < cfg_.swin.stages(); ++i) {
                const index_t R = cfg_.swin.resolution(i);
                const auto chunks = vision::scale_chunks(images_, R * R);
                for (std::size_t j = 0; j < enc_.stage(i).blocks.size(); ++j) {
                    const auto& f = enc_.stage(i).blocks[j].ffn();
                    BlockRouting br;
                    br.stage = i;
                    br.block = static_cast<index_t>(j);
                    for (int m = 0; m < M; ++m) br.modal.push_back(group(f.modal_plan(m)));
                    const RoutingPlan& cp = f.collab_plan();
                    br.collab = group(cp);
                    br.collab_kept_by_modality.assign(static_cast<std::size_t>(M),
                                                      std::vector<index_t>(static_cast<std::size_t>(cp.num_experts), 0));
                    for (const auto& c : chunks)
                        for (index_t t = c.begin; t < c.end && t < cp.num_tokens; ++t)
                            for (index_t q = 0; q < cp.k; ++q) {
                                const auto ch = static_cast<std::size_t>(t * cp.k + q);
                                if (cp.expert_ids[ch] >= 0 && cp.token_to_slot[ch] >= 0)
                                    ++br.collab_kept_by_modality[static_cast<std::size_t>(c.modality)]
                                                                [static_cast<std::size_t>(cp.expert_ids[ch])];
                            }
                    br.aux_loss = f.losses().total;
                    out.push_back(std::move(br));
                }
            }
        }
        return out;
    }

    /// This model with every FFN slot rebuilt by f(stage, block, Ffn&&) -> Ffn2 and the patch
    /// embeddings of `keep` (empty: all) kept; `config` describes the result (checked).
    template <class Ffn2, class F>
    RingMoeModel<Ffn2, W> map_ffns(F&& f, RingMoeConfig config, std::span<const int> keep = {}) && {
        auto enc = std::move(enc_).template map_ffns<Ffn2>(std::forward<F>(f), keep);
        RingMoeModel<Ffn2, W> out(std::move(config), std::move(enc), std::move(cls_), std::move(seg_));
        out.set_exec(exec_);
        return out;
    }

private:
    static GroupRouting group(const RoutingPlan& p) {
        GroupRouting g;
        g.tokens = p.num_tokens;
        g.capacity = p.capacity;
        g.dropped = static_cast<index_t>(p.dropped.size());
        for (auto l : p.load) g.requested.push_back(static_cast<index_t>(l));
        for (auto c : p.counts) g.kept.push_back(static_cast<index_t>(c));
        if (g.requested.empty()) g.requested.assign(static_cast<std::size_t>(p.num_experts), 0);
        if (g.kept.empty()) g.kept.assign(static_cast<std::size_t>(p.num_experts), 0);
        return g;
    }

    RingMoeConfig cfg_;
    encoder_type enc_;
    std::optional<ClassificationHead<W>> cls_;
    std::optional<SegmentationHead<W>> seg_;
    std::vector<ModalityChunk> images_;  // image ranges of the last forward call, by model modality
    Exec exec_ = Exec::serial();
};

/// RingMoE with the hierarchical MoE in every block (full, single-modality, pruned).
template <WeightPolicy W = float, Activation Act = GeluTanh, WeightPolicy We = W>
using RingMoe = RingMoeModel<MoeFfn<We, Act>, W>;
/// The folded model: one dense MLP per block.
template <WeightPolicy W = float, Activation Act = GeluTanh>
using RingMoeDense = RingMoeModel<DenseMlp<W, Act>, W>;
/// Either, as load_ringmoe returns it.
template <WeightPolicy W = float, Activation Act = GeluTanh, WeightPolicy We = W>
using AnyRingMoe = std::variant<RingMoe<W, Act, We>, RingMoeDense<W, Act>>;

namespace detail {

/// The heads `cfg` asks for, from "head.*" and "seg_head.*".
template <WeightPolicy W>
std::pair<std::optional<ClassificationHead<W>>, std::optional<SegmentationHead<W>>> load_heads(
    const io::SafetensorsFile& f, const RingMoeConfig& cfg) {
    std::optional<ClassificationHead<W>> cls;
    std::optional<SegmentationHead<W>> seg;
    const auto& s = cfg.swin;
    if (cfg.num_classes > 0)
        cls.emplace(vision::load_linear<W>(f, names::kHead, cfg.num_classes, s.dim(s.stages() - 1), true),
                    names::kHead);
    if (cfg.seg_classes > 0) {
        const index_t st = cfg.seg_stage_index();
        seg.emplace(vision::load_linear<W>(f, names::kSegHead, cfg.seg_classes, s.dim(st), true), st,
                    names::kSegHead);
    }
    return {std::move(cls), std::move(seg)};
}

}  // namespace detail

/// The MoE model `cfg` describes (cfg.ffn == moe) from `file`; We: the experts' policy (their
/// weights may be int8 in the file: moe/io/quantize.hpp).
template <WeightPolicy W = float, Activation Act = GeluTanh, WeightPolicy We = W>
RingMoe<W, Act, We> load_ringmoe_moe(const io::SafetensorsFile& file, const RingMoeConfig& cfg) {
    const std::string w = "rs::ringmoe::load_ringmoe_moe (" + cfg.name + ")";
    cfg.validate(w);
    check<ConfigError>(cfg.ffn == FfnKind::moe, w, "the configuration is dense (folded): use load_ringmoe_dense");
    auto enc = load_ringmoe_swin<W, Act, We>(file, names::kEncoder, cfg.swin, moe_modal_config(cfg));
    auto [cls, seg] = detail::load_heads<W>(file, cfg);
    return RingMoe<W, Act, We>(cfg, std::move(enc), std::move(cls), std::move(seg));
}

/// The dense (folded) model `cfg` describes (cfg.ffn == dense) from `file`.
template <WeightPolicy W = float, Activation Act = GeluTanh>
RingMoeDense<W, Act> load_ringmoe_dense(const io::SafetensorsFile& file, const RingMoeConfig& cfg) {
    const std::string w = "rs::ringmoe::load_ringmoe_dense (" + cfg.name + ")";
    cfg.validate(w);
    check<ConfigError>(cfg.ffn == FfnKind::dense, w, "the configuration has MoE blocks: use load_ringmoe_moe");
    auto enc = load_ringmoe_swin_dense<W, Act>(file, names::kEncoder, cfg.swin);
    auto [cls, seg] = detail::load_heads<W>(file, cfg);
    return RingMoeDense<W, Act>(cfg, std::move(enc), std::move(cls), std::move(seg));
}

/// The model `cfg` describes, MoE or dense (We: the experts' policy; a dense model's FFNs are W).
template <WeightPolicy W = float, Activation Act = GeluTanh, WeightPolicy We = W>
AnyRingMoe<W, Act, We> load_ringmoe(const io::SafetensorsFile& file, const RingMoeConfig& cfg) {
    if (cfg.ffn == FfnKind::dense) return load_ringmoe_dense<W, Act>(file, cfg);
    return load_ringmoe_moe<W, Act, We>(file, cfg);
}
template <WeightPolicy W = float, Activation Act = GeluTanh, WeightPolicy We = W>
AnyRingMoe<W, Act, We> load_ringmoe(const std::filesystem::path& path, const RingMoeConfig& cfg) {
    return load_ringmoe<W, Act, We>(io::SafetensorsFile::open(path), cfg);
}

}  // namespace moe::rs::ringmoe
