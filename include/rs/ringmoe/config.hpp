// rs/ringmoe/config.hpp - RingMoE's configurations and their parameter counts.
//
//   RingMoeConfig               a vision::SwinConfig (the encoder geometry) plus the FFN shape of
//                               every block: the hierarchical MoE (modalities with names and input
//                               channels, modal experts per modality, collaborative experts, shared
//                               experts, k, capacity factor) or one dense FFN (the folded model),
//                               and the optional heads (classes of the classification head, classes
//                               and source stage of the segmentation head).
//   swin_config()               the released encoder geometry (a vision::SwinConfig)
//   Named configurations        full()                the released 14.7B model (C 448, depths
//                                                      2-2-18-2, heads 14-28-56-112, window 12, 192 px,
//                                                      4 modalities x 4 modal + 4 collab + 1 shared,
//                                                      top-1, capacity factor 1.2)
//                               single_modality(m)    one modality's sub-model (4 modal + 4 collab + 1
//                                                      shared: 6.498B)
//                               pruned(m)             ... with the 25% most-used collaborative experts
//                                                      kept (1 of 4)
//                               folded_1b(m)          one dense FFN C -> 4C -> C per block (1.03B)
//                               tiny(), tiny_*()      the same chain at test size (64 px, C 32, depths
//                                                      2-2-2-2, heads 1-2-4-8, window 4)
//   Derivations                 extract(m), prune_collab(fraction), fold(), with_image(size):
//                               each deployment step's configuration from the previous one.
//   Counts                      formula_parameter_count(cfg)   the published arithmetic: sum over
//                                   blocks of C^2 (4 + 2 r E), r = mlp_ratio, E = FFNs per block
//                                   (attention q, k, v, proj + every expert's two matrices);
//                               exact_parameter_count(cfg)     every parameter the model holds
//                                   (biases, norms, routers, bias tables, merging, patch embeddings,
//                                   heads); equals the built model's parameters().
//
// Image size: the released model runs at 192 (grids 48, 24, 12, 6 with window 12; the last stage
// clips the window to 6). At 224 the grids are 56, 28, 14, 7 and window 12 divides none of the
// first three; the released code (like Swin-V1/V2) needs the grid to be a multiple of the window.
// with_image(224) therefore picks the window as Swin does at 224: the largest window not above
// the configured one that divides every stage's grid (clipped to the grid), which is 7 for 224
// (56 = 8 x 7, 28 = 4 x 7, 14 = 2 x 7, 7 = 1 x 7; shift 3 in stages 0-2). A window change changes
// the relative-position-bias table ((2w - 1)^2 rows): 192-px weights do not load into a 224-px
// configuration as they are (Swin resizes the table bicubically when it fine-tunes at another
// window; not done here). Random-weight checkpoints (random.hpp) are written for the
// configuration they are given, so the benchmarks run at both sizes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "vision/swin.hpp"

namespace moe::rs::ringmoe {

/// One input modality of the model: its name, its patch embedding's input channels and which
/// of the released model's four modalities it is (0 optical, 1 SAR-L1, 2 SAR-L2, 3 multispectral).
struct ModalitySpec {
    std::string name;
    index_t in_chans = 0;
    int source = 0;
};

/// What every block's FFN slot holds.
enum class FfnKind {
    moe,    ///< RingMoE's hierarchical MoE (Moe_modal)
    dense,  ///< one dense FFN C -> r C -> C (the folded "Swin-1B"; r = swin.mlp_ratio)
};

inline const char* ffn_kind_name(FfnKind k) noexcept { return k == FfnKind::moe ? "moe" : "dense"; }

/// The four modalities of the released model, in its batch order.
inline std::vector<ModalitySpec> released_modalities() {
    return {{"optical", 3, 0}, {"sar-l1", 8, 1}, {"sar-l2", 3, 2}, {"multispectral", 4, 3}};
}

/// RingMoE's encoder geometry (pretrain_simmim_swinv2_giant_p4_w12_aircas_192_200ep_moe_mm.yaml):
/// C 448, depths [2, 2, 18, 2], heads [14, 28, 56, 112], window 12, 192 input, 4 modalities.
inline vision::SwinConfig swin_config() { return {}; }

struct RingMoeConfig {
    std::string name = "full";
    /// Encoder geometry; swin.in_chans mirrors `modalities` (validate() checks it). The FFN
    /// hidden width of every expert, and of the dense FFN of a folded model, is
    /// swin.ffn_hidden(i) = mlp_ratio * C_i.
    vision::SwinConfig swin = swin_config();
    std::vector<ModalitySpec> modalities = released_modalities();
    FfnKind ffn = FfnKind::moe;
    index_t modal_experts = 4;   ///< per modality (moe)
    index_t collab_experts = 4;  ///< collaborative pool (moe)
    index_t shared_experts = 1;  ///< always-on experts (moe; the MindSpore layout holds exactly one: public_ffn)
    index_t k = 1;               ///< experts per token in each routed group
    double capacity_factor = 1.2;
    double expert_num = 8;       ///< moe_config.expert_num: the c of the auxiliary loss mean_e(f_e P_e) c^2
    double aux_loss_factor = 0.001;
    // Heads (heads.hpp); 0 classes = no such head.
    index_t num_classes = 0;     ///< classification head: mean-pooled final features -> Linear
    index_t seg_classes = 0;     ///< segmentation head: per-token Linear -> bilinear upsampling
    int seg_stage = -1;          ///< the stage whose output the segmentation head reads (-1: the last, normed)

    // ---------------------------------------------------------------------------------- names
    /// The released 14.7B model (pretrain_simmim_swinv2_giant_p4_w12_aircas_192_200ep_moe_mm.yaml).
    static RingMoeConfig full(index_t image = 192) {
        RingMoeConfig c;
        c.name = "full";
        c.sync_in_chans();
        return image == 192 ? c : c.with_image(image);
    }
    /// The test-size model every test uses: 64 px, patch 4, C 32, depths [2, 2, 2, 2], heads
    /// [1, 2, 4, 8], window 4 (grids 16, 8, 4, 2: the last stage clips the window to 2, shift 0),
    /// the released modalities and MoE shape.
    static RingMoeConfig tiny() {
        RingMoeConfig c;
        c.name = "tiny";
        c.swin.image_size = 64;
        c.swin.patch = 4;
        c.swin.embed_dim = 32;
        c.swin.depths = {2, 2, 2, 2};
        c.swin.heads = {1, 2, 4, 8};
        c.swin.window = 4;
        c.sync_in_chans();
        return c;
    }
    /// One modality's sub-model of the full model (6.498B at 192 px).
    static RingMoeConfig single_modality(int m, index_t image = 192) { return full(image).extract(m); }
    static RingMoeConfig single_modality(std::string_view m, index_t image = 192) { return full(image).extract(m); }
    /// ... with keep_fraction of the collaborative experts kept (0.25: 1 of 4).
    static RingMoeConfig pruned(int m, index_t image = 192, double keep_fraction = 0.25) {
        return single_modality(m, image).prune_collab(keep_fraction);
    }
    static RingMoeConfig pruned(std::string_view m, index_t image = 192, double keep_fraction = 0.25) {
        return single_modality(m, image).prune_collab(keep_fraction);
    }
    /// The folded dense model of one modality ("Swin-1B": 1.026B by the published formula).
    static RingMoeConfig folded_1b(int m = 0, index_t image = 192) { return pruned(m, image).fold(); }
    static RingMoeConfig folded_1b(std::string_view m, index_t image = 192) { return pruned(m, image).fold(); }
    static RingMoeConfig tiny_single_modality(int m) { return tiny().extract(m); }
    static RingMoeConfig tiny_single_modality(std::string_view m) { return tiny().extract(m); }
    static RingMoeConfig tiny_pruned(int m, double keep_fraction = 0.25) {
        return tiny_single_modality(m).prune_collab(keep_fraction);
    }
    static RingMoeConfig tiny_pruned(std::string_view m, double keep_fraction = 0.25) {
        return tiny_single_modality(m).prune_collab(keep_fraction);
    }
    static RingMoeConfig tiny_folded(int m = 0) { return tiny_pruned(m).fold(); }
    static RingMoeConfig tiny_folded(std::string_view m) { return tiny_pruned(m).fold(); }

    // ---------------------------------------------------------------------------- derivations
    /// The sub-model of modality m (an index into `modalities`): its patch embedding, its modal
    /// experts, the collaborative and shared experts.
    RingMoeConfig extract(int m) const {
        const std::string who = "rs::ringmoe::RingMoeConfig::extract (" + name + ")";
        check<ConfigError>(ffn == FfnKind::moe, who, "a dense (folded) model has no modality experts to extract");
        const int idx = modality_index(m, who);
        RingMoeConfig c = *this;
        c.modalities = {modalities[static_cast<std::size_t>(idx)]};
        c.sync_in_chans();
        c.name = base_name() + "single-modality (" + c.modalities.front().name + ")" + image_suffix();
        return c;
    }
    RingMoeConfig extract(std::string_view m) const {
        return extract(modality_index(m, "rs::ringmoe::RingMoeConfig::extract (" + name + ")"));
    }
    /// The configuration after keeping `fraction` of the collaborative experts (ceil(fraction E),
    /// at least 1: the rule of moe::KeepMostFrequent); k is lowered to the kept count if needed.
    RingMoeConfig prune_collab(double fraction) const {
        const std::string who = "rs::ringmoe::RingMoeConfig::prune_collab (" + name + ")";
        check<ConfigError>(ffn == FfnKind::moe, who, "a dense (folded) model has no experts to prune");
        check<ConfigError>(fraction > 0 && fraction <= 1, who, "fraction ", fraction, " is not in (0, 1]");
        RingMoeConfig c = *this;
        c.collab_experts = keep_count(collab_experts, fraction);
        c.name = base_name() + "pruned (" + modality_list() + ", collaborative " + std::to_string(c.collab_experts) +
                 " of " + std::to_string(collab_experts) + ")" + image_suffix();
        return c;
    }
    /// The folded model: one dense FFN per block (hidden width swin.ffn_hidden(i)).
    RingMoeConfig fold() const {
        RingMoeConfig c = *this;
        c.ffn = FfnKind::dense;
        c.modal_experts = c.collab_experts = c.shared_experts = 0;
        c.name = base_name() + "folded (" + modality_list() + ")" + image_suffix();
        return c;
    }
    /// The same model at another input size; window 0 = automatic (see the file comment: the
    /// configured window if every stage's grid is a multiple of it, else the largest smaller one
    /// that is; 7 at 224). A given window is used as it is (validate() checks it).
    RingMoeConfig with_image(index_t image, index_t window = 0) const {
        const std::string who = "rs::ringmoe::RingMoeConfig::with_image (" + name + ")";
        check<ConfigError>(image > 0 && image % swin.patch == 0, who, "image ", image, " is not a multiple of patch ",
                           swin.patch);
        RingMoeConfig c = *this;
        c.swin.image_size = image;
        if (window > 0) {
            c.swin.window = window;
        } else {
            index_t w = swin.window;
            while (w > 1 && !c.window_fits(w)) --w;
            c.swin.window = w;
        }
        const std::string old = image_suffix();
        std::string n = name;
        if (!old.empty() && n.size() >= old.size() && n.compare(n.size() - old.size(), old.size(), old) == 0)
            n.resize(n.size() - old.size());
        c.name = n;
        c.name += c.image_suffix();
        c.validate(who);
        return c;
    }

    // ----------------------------------------------------------------------------- queries
    int num_modalities() const noexcept { return static_cast<int>(modalities.size()); }
    /// Index of the modality named `key` (its name, or optical/rgb, sar-l1/sar_l1/quadpol,
    /// sar-l2/sar_l2/sar, multispectral/ms); ConfigError listing the model's modalities otherwise.
    int modality_index(std::string_view key, std::string_view who = "rs::ringmoe::RingMoeConfig") const {
        const std::string canon = canonical_modality(key);
        for (std::size_t i = 0; i < modalities.size(); ++i)
            if (modalities[i].name == key || modalities[i].name == canon) return static_cast<int>(i);
        throw ConfigError(std::string(who), moe::detail::cat("unknown modality '", key, "'; ", describe_modalities()));
    }
    /// m itself if it is a valid index; ConfigError listing the model's modalities otherwise.
    int modality_index(int m, std::string_view who = "rs::ringmoe::RingMoeConfig") const {
        if (m < 0 || m >= num_modalities())
            throw ConfigError(std::string(who), moe::detail::cat("unknown modality ", m, "; ", describe_modalities()));
        return m;
    }
    /// "this model (tiny) has modalities 0 optical (3 channels), ..."
    std::string describe_modalities() const {
        std::string s = "this model (" + name + ") has modalities ";
        for (std::size_t i = 0; i < modalities.size(); ++i)
            s += moe::detail::cat(i ? ", " : "", i, " ", modalities[i].name, " (", modalities[i].in_chans,
                                  " channels)");
        return s;
    }
    /// Experts in one block's FFN slot (1 for a dense FFN): M * modal + collab + shared.
    index_t ffns_per_block() const noexcept {
        if (ffn == FfnKind::dense) return 1;
        return static_cast<index_t>(modalities.size()) * modal_experts + collab_experts + shared_experts;
    }
    /// Experts a token goes through per block: k modal + k collab + shared (1 when dense).
    index_t active_ffns_per_block() const noexcept {
        return ffn == FfnKind::dense ? 1 : 2 * k + shared_experts;
    }
    index_t num_blocks() const noexcept {
        index_t n = 0;
        for (index_t d : swin.depths) n += d;
        return n;
    }
    /// The stage the segmentation head reads (seg_stage, -1 = the last).
    index_t seg_stage_index() const noexcept { return seg_stage < 0 ? swin.stages() - 1 : seg_stage; }

    /// Checks every size; ConfigError / ShapeError naming `what` and the problem.
    void validate(std::string_view what = "rs::ringmoe::RingMoeConfig") const {
        const std::string w = std::string(what) + " (" + name + ")";
        check<ConfigError>(!modalities.empty(), w, "at least one modality is needed");
        check<ConfigError>(swin.in_chans.size() == modalities.size(), w, "swin.in_chans lists ", swin.in_chans.size(),
                           " modalities, `modalities` ", modalities.size());
        for (std::size_t i = 0; i < modalities.size(); ++i) {
            check<ConfigError>(modalities[i].in_chans > 0 && modalities[i].in_chans == swin.in_chans[i], w,
                               "modality ", i, " (", modalities[i].name, "): ", modalities[i].in_chans,
                               " channels, swin.in_chans says ", swin.in_chans[i]);
            for (std::size_t j = 0; j < i; ++j)
                check<ConfigError>(modalities[i].name != modalities[j].name, w, "modality name '", modalities[i].name,
                                   "' appears twice");
        }
        swin.validate(w);
        if (ffn == FfnKind::moe) {
            check<ConfigError>(modal_experts > 0 && collab_experts > 0, w, "the hierarchical MoE needs modal (",
                               modal_experts, ") and collaborative (", collab_experts, ") experts");
            check<ConfigError>(shared_experts == 1, w, "the MindSpore layout holds exactly one shared expert "
                               "(public_ffn), config has ", shared_experts);
            check<ConfigError>(k >= 1 && k <= std::min(modal_experts, collab_experts), w, "k = ", k,
                               " must be in 1..", std::min(modal_experts, collab_experts));
            check<ConfigError>(capacity_factor > 0, w, "capacity factor ", capacity_factor, " must be positive");
        }
        check<ConfigError>(num_classes >= 0 && seg_classes >= 0, w, "negative class count");
        check<ConfigError>(seg_stage >= -1 && seg_stage < swin.stages(), w, "segmentation stage ", seg_stage,
                           " is not -1 or a stage 0..", swin.stages() - 1);
    }

    /// ceil(fraction * E - 1e-9) clamped to [1, E], as moe::KeepMostFrequent counts.
    static index_t keep_count(index_t E, double fraction) {
        const auto n = static_cast<index_t>(std::ceil(fraction * static_cast<double>(E) - 1e-9));
        return std::clamp<index_t>(n, 1, E);
    }
    /// The canonical name of a modality key (see modality_index); the key itself if unknown.
    static std::string canonical_modality(std::string_view key) {
        if (key == "optical" || key == "rgb") return "optical";
        if (key == "sar-l1" || key == "sar_l1" || key == "quadpol") return "sar-l1";
        if (key == "sar-l2" || key == "sar_l2" || key == "sar") return "sar-l2";
        if (key == "multispectral" || key == "ms") return "multispectral";
        return std::string(key);
    }

private:
    void sync_in_chans() {
        swin.in_chans.clear();
        for (const auto& m : modalities) swin.in_chans.push_back(m.in_chans);
    }
    bool window_fits(index_t w) const noexcept {
        for (index_t i = 0; i < swin.stages(); ++i) {
            const index_t r = (swin.image_size / swin.patch) >> i;
            if (r <= 0 || r % std::min(w, r) != 0) return false;
        }
        return true;
    }
    std::string base_name() const { return name.rfind("tiny", 0) == 0 ? "tiny " : ""; }
    std::string image_suffix() const {
        return swin.image_size == (base_name().empty() ? 192 : 64) ? std::string()
                                                                    : moe::detail::cat(" @", swin.image_size);
    }
    std::string modality_list() const {
        std::string s;
        for (std::size_t i = 0; i < modalities.size(); ++i) s += (i ? "+" : "") + modalities[i].name;
        return s;
    }
};

// -------------------------------------------------------------------------- parameter counts

/// The published arithmetic (reference-systems.md, RingMoE): sum over blocks of
/// C_i^2 (4 + 2 r E), with 4 C^2 for attention q, k, v, proj and 2 r C^2 for each of the E FFNs
/// of a block (r = mlp_ratio = 4: the "8"). full(): 172 x 85,499,904 = 14,705,983,488;
/// single_modality(): 76 x = 6,497,992,704; folded_1b(): 12 x = 1,025,998,848.
inline index_t formula_parameter_count(const RingMoeConfig& c) {
    const double per = 4.0 + 2.0 * c.swin.mlp_ratio * static_cast<double>(c.ffns_per_block());
    index_t sum = 0;  // sum over blocks of C^2
    for (index_t i = 0; i < c.swin.stages(); ++i) sum += c.swin.depths[static_cast<std::size_t>(i)] * c.swin.dim(i) * c.swin.dim(i);
    return static_cast<index_t>(std::llround(per * static_cast<double>(sum)));
}

/// The same arithmetic for the FFNs a token passes through (k modal + k collab + shared):
/// 28 x 85,499,904 = 2.39B for full().
inline index_t formula_active_parameter_count(const RingMoeConfig& c) {
    const double per = 4.0 + 2.0 * c.swin.mlp_ratio * static_cast<double>(c.active_ffns_per_block());
    index_t sum = 0;
    for (index_t i = 0; i < c.swin.stages(); ++i) sum += c.swin.depths[static_cast<std::size_t>(i)] * c.swin.dim(i) * c.swin.dim(i);
    return static_cast<index_t>(std::llround(per * static_cast<double>(sum)));
}

/// Parameters of the heads alone.
inline index_t head_parameter_count(const RingMoeConfig& c) {
    index_t p = 0;
    if (c.num_classes > 0) p += c.swin.dim(c.swin.stages() - 1) * c.num_classes + c.num_classes;
    if (c.seg_classes > 0) p += c.swin.dim(c.seg_stage_index()) * c.seg_classes + c.seg_classes;
    return p;
}

/// Every parameter of the model the configuration describes (not buffers such as the relative
/// position index or the shifted-window mask): per-modality patch embeddings (conv weight and
/// bias, norm), per block the norms, q/k/v/proj with biases, the relative-position-bias table
/// and the FFN slot (MoE: routers without bias, every expert's two matrices and biases; dense:
/// one FFN), the patch mergings (bias-free reduction, norm), the final norm, and the heads.
inline index_t exact_parameter_count(const RingMoeConfig& c) {
    const auto& s = c.swin;
    const index_t C0 = s.embed_dim;
    index_t p = 0;
    for (index_t cin : s.in_chans) p += C0 * cin * s.patch * s.patch + C0 + 2 * C0;
    const auto M = static_cast<index_t>(c.modalities.size());
    for (index_t i = 0; i < s.stages(); ++i) {
        const index_t C = s.dim(i), F = s.ffn_hidden(i), w = s.window_at(i), H = s.heads[static_cast<std::size_t>(i)];
        const index_t expert = 2 * C * F + F + C;
        index_t ffn = expert;
        if (c.ffn == FfnKind::moe)
            ffn = M * (c.modal_experts * C + c.modal_experts * expert) + c.collab_experts * C +
                  c.collab_experts * expert + c.shared_experts * expert;
        const index_t block = 4 * C + 4 * C * C + (s.qkv_bias ? 3 * C : 0) + C + (2 * w - 1) * (2 * w - 1) * H + ffn;
        p += s.depths[static_cast<std::size_t>(i)] * block;
        if (i + 1 < s.stages()) p += 4 * C * 2 * C + 2 * 2 * C;
    }
    p += 2 * s.dim(s.stages() - 1);
    return p + head_parameter_count(c);
}

}  // namespace moe::rs::ringmoe
