// rs/ringmoe/checkpoint.hpp - RingMoE encoder checkpoints: write an encoder back to safetensors in
// the MindSpore names that load_ringmoe_swin (encoder.hpp) reads, with metadata recording the
// configuration, and load it back into the configuration the metadata describes.
//
//   CheckpointInfo                 what the metadata records: the SwinConfig, the MoE options, the
//                                  FFN shape of every block (expert counts per group and width, or
//                                  the dense width), the deployment step, the source modalities
//   describe(encoder, step)        the CheckpointInfo of an encoder in memory
//   checkpoint_writer(encoder, info) / save_encoder(encoder, path, info)   safetensors in MindSpore names
//   read_checkpoint_info(file)     parses (and checks) the metadata
//   load_moe_encoder<W, Act>(file)   -> RingMoeSwin<W, Act>  (any modality / expert counts)
//   load_dense_encoder<W, Act>(file) -> DenseSwin<W, Act>    (FFN width from the file)
//   CheckpointInfo::exact_parameters() / block_matrix_parameters()   parameter counts from the shapes
//
// Names (prefix "encoder." by default; spelled by names.hpp, which documents them):
//   patch_embed{m}.projection.{weight [C, Cin_m, p, p], bias}, patch_embed{m}.norm.{gamma, beta}
//   layers.{i}.blocks.{j}.norm1/norm2.{gamma, beta}, attn.{q,k,v,proj}.{weight [out, in], bias},
//   attn.relative_position_bias.relative_position_bias_table [(2w-1)^2, H] (and the Swin-V1
//   relative_position_index as int32, which the loader checks)
//   FFN slot, hierarchical MoE (Moe_modal):
//     mlp.special_router.{m}.dense.weight [E_m, C], mlp.special_ffn.{m}.mapping.weight [E_m, C, F]
//     ([E, in, out]: the experts' fc1 [E, F, C] transposed back), mapping.bias [1, E_m, 1, F],
//     projection.weight [E_m, F, C], projection.bias [1, E_m, 1, C]; mlp.cross_router.*,
//     mlp.cross_ffn.* (the collaborative group, likewise: its expert count may differ from the
//     modal groups', e.g. after expert pruning); mlp.public_ffn.mapping.weight [C, F] (2-D), ...
//   FFN slot, dense: mlp.mapping.weight [C, F], mapping.bias [F], projection.weight [F, C], bias [C]
//   layers.{i}.downsample.reduction.weight [2C, 4C], downsample.norm.*, norm.{gamma, beta}
// Weights are written in the encoder's weight type W (f32 or bf16); biases, norms, tables and
// routers in f32 (as the modules hold them), so a reload into the same W is bit-identical.
//
// Metadata ("__metadata__", all strings): ringmoe.format = "moe.ringmoe.encoder/1",
// ringmoe.step, ringmoe.prefix, ringmoe.ffn ("moe" | "dense"), ringmoe.source_modalities,
// ringmoe.weights, ringmoe.parameters, swin.* (every SwinConfig field), moe.* (MoeModalConfig),
// blocks.modal_experts ("4,4,4,4;4,4,4,4;..." one group per block), blocks.collab_experts,
// blocks.shared_experts, blocks.ffn ("128;128;256;..."). Floats are written in the shortest form
// that reads back to the same value.
//
// Errors: an FFN slot that cannot be written in these names (a router with a bias, gated shared
// experts, blocks with different routing options) is a ConfigError; a file without the metadata
// or with metadata that disagrees with its tensors is a FormatError naming the key or tensor.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "moe/core/precision.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/dense_ffn.hpp"
#include "moe/io/checkpoint.hpp"
#include "moe/io/safetensors.hpp"
#include "rs/ringmoe/config.hpp"
#include "rs/ringmoe/encoder.hpp"
#include "rs/ringmoe/moe_modal.hpp"
#include "rs/ringmoe/names.hpp"
#include "vision/loaders.hpp"
#include "vision/mlp.hpp"
#include "vision/swin.hpp"

namespace moe::rs::ringmoe {

inline constexpr std::string_view kCheckpointFormat = "moe.ringmoe.encoder/1";

/// The FFN slot of one block.
struct BlockFfnShape {
    std::vector<index_t> modal_experts;  ///< experts per modality (MoE; empty for dense)
    index_t collab_experts = 0;          ///< collaborative experts (MoE)
    index_t shared_experts = 0;          ///< always-on experts, 0 or 1 (MoE)
    index_t ffn = 0;                     ///< an expert's FFN width (MoE) or the dense FFN width
    bool operator==(const BlockFfnShape&) const = default;
};

/// The configuration a checkpoint records (see the file comment).
struct CheckpointInfo {
    std::string step = "full";           ///< deployment step ("full", "single_modality", ...)
    std::string prefix = names::kEncoder;
    FfnKind ffn = FfnKind::moe;
    vision::SwinConfig swin;
    MoeModalConfig moe;    ///< routing options (MoE only)
    std::vector<BlockFfnShape> blocks;   ///< in block order over all stages
    std::vector<int> source_modalities;  ///< original modality id of each patch embedding
    std::string weights = "F32";         ///< dtype of the weight matrices ("F32", "BF16", "F16")

    index_t num_blocks() const noexcept {
        index_t n = 0;
        for (index_t d : swin.depths) n += d;
        return n;
    }
    /// The stage of block b (blocks numbered over all stages).
    index_t stage_of(index_t b) const {
        for (index_t i = 0; i < swin.stages(); ++i) {
            if (b < swin.depths[static_cast<std::size_t>(i)]) return i;
            b -= swin.depths[static_cast<std::size_t>(i)];
        }
        throw ConfigError("ringmoe::CheckpointInfo", moe::detail::cat("block out of range (", num_blocks(), " blocks)"));
    }

    /// Every stored parameter (weights, biases, norms, bias tables, routers), from the shapes:
    /// equals encoder.parameters() of the encoder this describes.
    index_t exact_parameters() const {
        const vision::SwinConfig& c = swin;
        const index_t C0 = c.embed_dim;
        index_t p = 0;
        for (index_t cin : c.in_chans) p += C0 * cin * c.patch * c.patch + C0 + 2 * C0;
        index_t b = 0;
        for (index_t i = 0; i < c.stages(); ++i) {
            const index_t C = c.dim(i), w = c.window_at(i), H = c.heads[static_cast<std::size_t>(i)];
            for (index_t j = 0; j < c.depths[static_cast<std::size_t>(i)]; ++j, ++b) {
                const BlockFfnShape& s = blocks.at(static_cast<std::size_t>(b));
                p += 4 * C + 4 * C * C + (c.qkv_bias ? 3 * C : 0) + C + (2 * w - 1) * (2 * w - 1) * H;
                const index_t F = s.ffn, expert = 2 * C * F + F + C;
                if (ffn == FfnKind::dense) {
                    p += expert;
                } else {
                    for (index_t e : s.modal_experts) p += e * C + e * expert;
                    p += s.collab_experts * C + s.collab_experts * expert + s.shared_experts * expert;
                }
            }
            if (i + 1 < c.stages()) p += 4 * C * 2 * C + 2 * 2 * C;
        }
        return p + 2 * c.dim(c.stages() - 1);
    }

    /// The block-matrix count RingMoE's published figures use: per block the four attention
    /// projections (4 C^2) and the two matrices of every FFN it stores (2 C F each); no biases,
    /// norms, routers, tables, embeddings or merging. For F = 4C this is (4 + 8 n) sum_blocks C^2
    /// with n the FFNs per block (full model: n = 21 -> 14.706B).
    index_t block_matrix_parameters() const {
        index_t p = 0, b = 0;
        for (index_t i = 0; i < swin.stages(); ++i) {
            const index_t C = swin.dim(i);
            for (index_t j = 0; j < swin.depths[static_cast<std::size_t>(i)]; ++j, ++b) {
                const BlockFfnShape& s = blocks.at(static_cast<std::size_t>(b));
                index_t n = 1;
                if (ffn == FfnKind::moe) {
                    n = s.collab_experts + s.shared_experts;
                    for (index_t e : s.modal_experts) n += e;
                }
                p += 4 * C * C + n * 2 * C * s.ffn;
            }
        }
        return p;
    }

    /// ConfigError unless the shapes are consistent with the Swin configuration.
    void validate(std::string_view what = "ringmoe::CheckpointInfo") const {
        swin.validate(what);
        check<ConfigError>(static_cast<index_t>(blocks.size()) == num_blocks(), what, blocks.size(),
                           " block FFN shapes for ", num_blocks(), " blocks");
        check<ConfigError>(source_modalities.empty() || source_modalities.size() == swin.in_chans.size(), what,
                           source_modalities.size(), " source modalities for ", swin.in_chans.size(),
                           " patch embeddings");
        for (std::size_t b = 0; b < blocks.size(); ++b) {
            const auto& s = blocks[b];
            check<ConfigError>(s.ffn > 0, what, "block ", b, ": FFN width ", s.ffn);
            if (ffn == FfnKind::moe) {
                check<ConfigError>(s.modal_experts.size() == swin.in_chans.size(), what, "block ", b, ": ",
                                   s.modal_experts.size(), " modal groups for ", swin.in_chans.size(), " modalities");
                for (index_t e : s.modal_experts) check<ConfigError>(e > 0, what, "block ", b, ": empty modal group");
                check<ConfigError>(s.collab_experts > 0, what, "block ", b, ": no collaborative expert");
                check<ConfigError>(s.shared_experts == 0 || s.shared_experts == 1, what, "block ", b, ": ",
                                   s.shared_experts, " shared experts (the names hold 0 or 1)");
            }
        }
    }
};

/// The CheckpointInfo a RingMoeConfig implies (every block alike; a dense FFN of width
/// swin.ffn_hidden(i), the configuration's convention; an SVD fold to rank F / N per expert
/// stores N * floor(F / N) instead, which describe() of the folded encoder records).
inline CheckpointInfo checkpoint_info(const RingMoeConfig& c, std::string step = {}) {
    c.validate("ringmoe::checkpoint_info");
    CheckpointInfo info;
    info.step = step.empty() ? c.name : std::move(step);
    info.ffn = c.ffn;
    info.swin = c.swin;
    for (const auto& m : c.modalities) info.source_modalities.push_back(m.source);
    info.moe.num_experts_chosen = c.k;
    info.moe.capacity_factor = c.capacity_factor;
    info.moe.expert_num = c.expert_num;
    info.moe.aux_loss_factor = c.aux_loss_factor;
    for (index_t i = 0; i < c.swin.stages(); ++i)
        for (index_t j = 0; j < c.swin.depths[static_cast<std::size_t>(i)]; ++j) {
            BlockFfnShape s;
            s.ffn = c.swin.ffn_hidden(i);
            if (c.ffn == FfnKind::moe) {
                s.modal_experts.assign(c.modalities.size(), c.modal_experts);
                s.collab_experts = c.collab_experts;
                s.shared_experts = c.shared_experts;
            }
            info.blocks.push_back(std::move(s));
        }
    info.validate("ringmoe::checkpoint_info");
    return info;
}

namespace detail {

template <class T>
struct is_moe_modal : std::false_type {};
template <Activation A, WeightPolicy W>
struct is_moe_modal<MoeModal<W, A>> : std::true_type {};
template <class T>
struct is_dense : std::false_type {};
template <Activation A, WeightPolicy W>
struct is_dense<DenseFfn<A, W>> : std::true_type {};  // = vision::Mlp<A, W>

inline std::string join(const std::vector<index_t>& v, char sep = ',') {
    std::string s;
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i) s += sep;
        s += std::to_string(v[i]);
    }
    return s;
}
template <class T>
std::string num(T v) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

/// Metadata reader: every lookup names the key and the file on failure.
struct Meta {
    const std::map<std::string, std::string>& m;
    std::string file;

    const std::string& str(const std::string& key) const {
        auto it = m.find(key);
        check<FormatError>(it != m.end(), file, "metadata has no '", key, "' (not a checkpoint written by ",
                           "moe::rs::ringmoe::save_encoder?)");
        return it->second;
    }
    template <class T>
    T parse(const std::string& key, std::string_view s) const {
        T v{};
        const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
        check<FormatError>(r.ec == std::errc() && r.ptr == s.data() + s.size(), file, "metadata '", key,
                           "': cannot read '", s, "' as a number");
        return v;
    }
    template <class T>
    T number(const std::string& key) const {
        return parse<T>(key, str(key));
    }
    bool boolean(const std::string& key) const {
        const auto& s = str(key);
        check<FormatError>(s == "true" || s == "false", file, "metadata '", key, "': expected true/false, found '",
                           s, "'");
        return s == "true";
    }
    std::vector<index_t> list(const std::string& key, std::string_view s, char sep = ',') const {
        std::vector<index_t> v;
        if (s.empty()) return v;
        std::size_t at = 0;
        while (true) {
            const std::size_t e = s.find(sep, at);
            v.push_back(parse<index_t>(key, s.substr(at, e == std::string_view::npos ? s.npos : e - at)));
            if (e == std::string_view::npos) break;
            at = e + 1;
        }
        return v;
    }
    std::vector<index_t> list(const std::string& key) const { return list(key, str(key)); }
    /// "a,b;c,d;..." -> one list per block.
    std::vector<std::vector<index_t>> lists(const std::string& key) const {
        std::vector<std::vector<index_t>> out;
        const std::string_view s = str(key);
        std::size_t at = 0;
        while (true) {
            const std::size_t e = s.find(';', at);
            out.push_back(list(key, s.substr(at, e == std::string_view::npos ? s.npos : e - at)));
            if (e == std::string_view::npos) break;
            at = e + 1;
        }
        return out;
    }
};

/// W's safetensors dtype name.
template <WeightPolicy W>
std::string dtype_tag() {
    if constexpr (std::is_same_v<storage_t<W>, float>) return "F32";
    else if constexpr (std::is_same_v<storage_t<W>, bf16>) return "BF16";
    else return "F16";
}

/// The MindSpore [E, in, out] weight of a LinearStack (stored either way).
template <WeightPolicy W>
Tensor stacked_weight(const LinearStack<W>& s) {
    const index_t E = s.num_experts(), out = s.out_features(), in = s.in_features();
    Tensor t(dtype_v<storage_t<W>>, Shape{E, in, out});
    auto* d = t.data<storage_t<W>>();
    for (index_t e = 0; e < E; ++e) {
        const Tensor m = copy_as(s.weight(e), WeightLayout::in_out);
        std::memcpy(d + e * in * out, m.raw(), m.nbytes());
    }
    return t;
}

/// Biases of a LinearStack as [1, E, 1, out] (zeros when it has none).
template <WeightPolicy W>
Tensor stacked_bias(const LinearStack<W>& s) {
    const index_t E = s.num_experts(), out = s.out_features();
    Tensor t(DType::f32, Shape{1, E, 1, out});
    for (index_t e = 0; e < E; ++e)
        if (const float* b = s.bias(e)) std::memcpy(t.data<float>() + e * out, b, static_cast<std::size_t>(out) * sizeof(float));
    return t;
}

/// Writes tensors into a SafetensorsWriter under a prefix.
struct Sink {
    io::SafetensorsWriter& w;
    std::string prefix;
    void put(const std::string& name, const TensorView& t) { w.add(prefix + name, t); }
    void put(const std::string& name, const Tensor& t) { w.add(prefix + name, t.view()); }
    void norm(const std::string& module, const vision::LayerNorm& n) {
        put(module + names::kGamma, n.gamma());
        put(module + names::kBeta, n.beta());
    }
    /// A transpose_b=True Linear: weight [out, in].
    template <WeightPolicy W>
    void linear(const std::string& module, const vision::Linear<W>& l, bool bias = true) {
        if (l.layout() == WeightLayout::out_in) put(module + names::kWeight, l.weight_view());
        else put(module + names::kWeight, copy_as(l.weight(), WeightLayout::out_in));
        if (bias && l.has_bias()) put(module + names::kBias, l.bias_view());
    }
    /// A MindSpore MLP of one expert (2-D [in, out] weights) from fc1 (C -> F) / fc2 (F -> C).
    template <WeightType W>
    void mlp2d(const std::string& module, WeightMatrix<W> w1, const float* b1, WeightMatrix<W> w2, const float* b2) {
        const index_t F = w1.out, C = w1.in;
        const std::string fc1 = names::mapping(module), fc2 = names::projection(module);
        put(fc1 + names::kWeight, copy_as(w1, WeightLayout::in_out));
        Tensor tb1(DType::f32, Shape{F}), tb2(DType::f32, Shape{C});
        if (b1) std::memcpy(tb1.raw(), b1, static_cast<std::size_t>(F) * sizeof(float));
        if (b2) std::memcpy(tb2.raw(), b2, static_cast<std::size_t>(C) * sizeof(float));
        put(fc1 + names::kBias, tb1);
        put(fc2 + names::kWeight, copy_as(w2, WeightLayout::in_out));
        put(fc2 + names::kBias, tb2);
    }
    template <Activation A, WeightPolicy W>
    void experts(const std::string& module, const MlpExperts<A, W>& x) {
        const std::string fc1 = names::mapping(module), fc2 = names::projection(module);
        put(fc1 + names::kWeight, stacked_weight(x.fc1()));
        put(fc1 + names::kBias, stacked_bias(x.fc1()));
        put(fc2 + names::kWeight, stacked_weight(x.fc2()));
        put(fc2 + names::kBias, stacked_bias(x.fc2()));
    }
    void router(const std::string& module, const Gate& g) {
        check<ConfigError>(g.bias() == nullptr, module, "a router with a bias has no MindSpore name (dense.weight only)");
        Tensor t(DType::f32, Shape{g.num_experts(), g.hidden_size()});
        const auto m = g.weight();
        for (index_t r = 0; r < m.rows; ++r)
            std::memcpy(t.data<float>() + r * m.cols, m.row(r), static_cast<std::size_t>(m.cols) * sizeof(float));
        put(names::router_weight(module), t);
    }
};

inline MoeModalConfig moe_config_of(const HierarchicalOptions& o, std::string_view where) {
    check<ConfigError>(o.k_modal == o.k_collab && o.capacity_factor_modal == o.capacity_factor_collab, where,
                       "modal and collaborative groups route with different k or capacity factor (k ", o.k_modal,
                       " / ", o.k_collab, ", cf ", o.capacity_factor_modal, " / ", o.capacity_factor_collab,
                       "); Moe_modal has one moe_config");
    MoeModalConfig c;
    c.num_experts_chosen = o.k_modal;
    c.capacity_factor = o.capacity_factor_modal;
    c.renormalize = o.renormalize;
    c.expert_num = o.aux_constant;
    c.aux_loss_factor = o.aux_weight;
    return c;
}

}  // namespace detail

/// The CheckpointInfo of an encoder whose FFN slots hold RingMoE's hierarchical MoE or a dense
/// FFN (DenseFfn, alias vision::Mlp). source_modalities: the original modality of each patch
/// embedding (default 0, 1, ...).
template <class Ffn, WeightPolicy W>
CheckpointInfo describe(const vision::SwinEncoder<Ffn, W>& enc, std::string step = "full",
                        std::vector<int> source_modalities = {}) {
    static_assert(detail::is_moe_modal<Ffn>::value || detail::is_dense<Ffn>::value,
                  "ringmoe checkpoints hold rs::ringmoe::MoeModal or DenseFfn (vision::Mlp) FFN slots");
    const char* w = "ringmoe::describe";
    CheckpointInfo info;
    info.step = std::move(step);
    info.swin = enc.config();
    info.weights = detail::dtype_tag<W>();
    info.ffn = detail::is_moe_modal<Ffn>::value ? FfnKind::moe : FfnKind::dense;
    if (source_modalities.empty())
        for (int m = 0; m < enc.modalities(); ++m) source_modalities.push_back(m);
    info.source_modalities = std::move(source_modalities);
    bool first = true;
    for (index_t i = 0; i < info.swin.stages(); ++i)
        for (const auto& blk : enc.stage(i).blocks) {
            const Ffn& f = blk.ffn();
            BlockFfnShape s;
            if constexpr (detail::is_moe_modal<Ffn>::value) {
                for (int m = 0; m < f.modalities(); ++m) s.modal_experts.push_back(f.modal_experts(m).num_experts());
                s.collab_experts = f.collab_experts().num_experts();
                s.shared_experts = f.shared().experts().num_experts();
                s.ffn = f.collab_experts().ffn_size();
                for (int m = 0; m < f.modalities(); ++m)
                    check<ConfigError>(f.modal_experts(m).ffn_size() == s.ffn, w, "block ", info.blocks.size(),
                                       ": modal experts of width ", f.modal_experts(m).ffn_size(),
                                       ", collaborative ", s.ffn, " (Moe_modal has one width)");
                check<ConfigError>(f.shared().experts().ffn_size() == s.ffn, w, "block ", info.blocks.size(),
                                   ": shared expert of width ", f.shared().experts().ffn_size(), ", routed ", s.ffn);
                const auto c = detail::moe_config_of(f.options(), w);
                if (first) info.moe = c;
                check<ConfigError>(c.num_experts_chosen == info.moe.num_experts_chosen &&
                                       c.capacity_factor == info.moe.capacity_factor &&
                                       c.renormalize == info.moe.renormalize && c.expert_num == info.moe.expert_num &&
                                       c.aux_loss_factor == info.moe.aux_loss_factor,
                                   w, "block ", info.blocks.size(),
                                   " routes with other options than block 0 (the loader takes one moe_config)");
            } else {
                s.ffn = f.ffn_size();
            }
            first = false;
            info.blocks.push_back(std::move(s));
        }
    info.validate(w);
    return info;
}

/// The metadata of `info` as key/value pairs (see the file comment).
inline std::map<std::string, std::string> checkpoint_metadata(const CheckpointInfo& info) {
    using detail::join;
    using detail::num;
    std::map<std::string, std::string> m;
    const auto& s = info.swin;
    m["ringmoe.format"] = std::string(kCheckpointFormat);
    m["ringmoe.step"] = info.step;
    m["ringmoe.prefix"] = info.prefix;
    m["ringmoe.ffn"] = ffn_kind_name(info.ffn);
    std::vector<index_t> src(info.source_modalities.begin(), info.source_modalities.end());
    m["ringmoe.source_modalities"] = join(src);
    m["ringmoe.weights"] = info.weights;
    m["ringmoe.parameters"] = std::to_string(info.exact_parameters());
    m["ringmoe.block_matrix_parameters"] = std::to_string(info.block_matrix_parameters());
    m["swin.image_size"] = std::to_string(s.image_size);
    m["swin.patch"] = std::to_string(s.patch);
    m["swin.in_chans"] = join(s.in_chans);
    m["swin.embed_dim"] = std::to_string(s.embed_dim);
    m["swin.depths"] = join(s.depths);
    m["swin.heads"] = join(s.heads);
    m["swin.window"] = std::to_string(s.window);
    m["swin.mlp_ratio"] = num(s.mlp_ratio);
    m["swin.qkv_bias"] = s.qkv_bias ? "true" : "false";
    m["swin.block_eps"] = num(s.block_eps);
    m["swin.patch_eps"] = num(s.patch_eps);
    m["swin.merge_eps"] = num(s.merge_eps);
    m["swin.final_eps"] = num(s.final_eps);
    m["swin.order"] = vision::norm_order_name(s.order);
    m["moe.num_experts_chosen"] = std::to_string(info.moe.num_experts_chosen);
    m["moe.capacity_factor"] = num(info.moe.capacity_factor);
    m["moe.renormalize"] = info.moe.renormalize ? "true" : "false";
    m["moe.expert_num"] = num(info.moe.expert_num);
    m["moe.aux_loss_factor"] = num(info.moe.aux_loss_factor);
    std::string modal, collab, shared, ffn;
    for (std::size_t b = 0; b < info.blocks.size(); ++b) {
        const auto& x = info.blocks[b];
        const char* sep = b ? ";" : "";
        modal += sep + join(x.modal_experts);
        collab += sep + std::to_string(x.collab_experts);
        shared += sep + std::to_string(x.shared_experts);
        ffn += sep + std::to_string(x.ffn);
    }
    m["blocks.modal_experts"] = modal;
    m["blocks.collab_experts"] = collab;
    m["blocks.shared_experts"] = shared;
    m["blocks.ffn"] = ffn;
    return m;
}

/// The encoder's tensors in MindSpore names, plus the metadata of `info` (which must describe
/// it: describe(enc, ...) with any step name and prefix).
template <class Ffn, WeightPolicy W>
io::SafetensorsWriter checkpoint_writer(const vision::SwinEncoder<Ffn, W>& enc, const CheckpointInfo& info) {
    const char* w = "ringmoe::checkpoint_writer";
    {
        CheckpointInfo mine = describe(enc, info.step, info.source_modalities);
        check<ConfigError>(mine.blocks == info.blocks && mine.ffn == info.ffn && mine.weights == info.weights &&
                               mine.swin.in_chans == info.swin.in_chans && mine.swin.embed_dim == info.swin.embed_dim &&
                               mine.swin.depths == info.swin.depths,
                           w, "the CheckpointInfo does not describe this encoder (use describe(encoder, step))");
    }
    io::SafetensorsWriter out;
    for (const auto& [k, v] : checkpoint_metadata(info)) out.add_metadata(k, v);
    detail::Sink sink{out, io::module_prefix(info.prefix)};
    const auto& c = enc.config();
    const index_t C0 = c.embed_dim, p = c.patch;
    for (int m = 0; m < enc.modalities(); ++m) {
        const auto& pe = enc.patch_embed(m);
        const std::string mod = names::patch_embed("", m), proj = names::patch_projection(mod);
        check<ConfigError>(pe.norm().has_value(), w, mod, ": RingMoE's patch embedding has a norm");
        sink.put(proj + names::kWeight, pe.proj().weight_view().reshape({C0, pe.in_chans(), p, p}));
        sink.put(proj + names::kBias, pe.proj().bias_view());
        sink.norm(names::patch_norm(mod), *pe.norm());
    }
    for (index_t i = 0; i < c.stages(); ++i) {
        const auto& st = enc.stage(i);
        const index_t C = c.dim(i);
        const std::string L = names::layer("", i);
        for (std::size_t j = 0; j < st.blocks.size(); ++j) {
            const auto& blk = st.blocks[j];
            const std::string b = names::block(L, static_cast<index_t>(j)), a = names::attn(b);
            sink.norm(names::norm1(b), blk.norm1());
            sink.norm(names::norm2(b), blk.norm2());
            const auto& attn = blk.attn();
            if (attn.split()) {
                for (int q = 0; q < 3; ++q) sink.linear(names::attn_linear(a, q), attn.part(q), c.qkv_bias);
            } else {  // a fused qkv [3C, C]: its thirds
                const auto& qkv = attn.qkv();
                check<ConfigError>(qkv.layout() == WeightLayout::out_in, w, b, "attn: a fused qkv is expected [3C, C]");
                const TensorView qw = qkv.weight_view();
                const std::size_t es = dtype_size(qw.dtype());
                for (int q = 0; q < 3; ++q) {
                    const auto* base = static_cast<const std::byte*>(qw.raw()) + static_cast<std::size_t>(q * C * C) * es;
                    sink.put(names::attn_linear(a, q) + names::kWeight, TensorView(base, qw.dtype(), Shape{C, C}));
                    if (c.qkv_bias)
                        sink.put(names::attn_linear(a, q) + names::kBias,
                                 TensorView(qkv.bias() + q * C, DType::f32, Shape{C}));
                }
            }
            sink.linear(names::attn_linear(a, 3), blk.attn().proj());
            sink.put(names::position_bias_table(a), blk.bias_table());
            const auto idx = vision::relative_position_index(blk.window());
            const index_t n = blk.window() * blk.window();
            sink.put(names::position_index(a), TensorView(idx.data(), DType::i32, Shape{n, n}));
            const Ffn& f = blk.ffn();
            const std::string mlp = names::mlp(b);
            if constexpr (detail::is_moe_modal<Ffn>::value) {
                for (int m = 0; m < f.modalities(); ++m) {
                    sink.router(names::special_router(mlp, m), f.modal_router(m).gate());
                    sink.experts(names::special_ffn(mlp, m), f.modal_experts(m));
                }
                sink.router(names::cross_router(mlp), f.collab_router().gate());
                sink.experts(names::cross_ffn(mlp), f.collab_experts());
                const auto& sh = f.shared();
                check<ConfigError>(sh.parameters() == sh.experts().parameters(), w, mlp,
                                   ": gated shared experts have no MindSpore name");
                const auto& x = sh.experts();
                sink.mlp2d<storage_t<W>>(names::public_ffn(mlp), x.fc1().weight(0), x.fc1().bias(0), x.fc2().weight(0),
                              x.fc2().bias(0));
            } else {  // DenseFfn (vision::Mlp)
                sink.mlp2d<storage_t<W>>(mlp, f.fc1().weight(), f.fc1().bias(), f.fc2().weight(), f.fc2().bias());
            }
        }
        if (st.downsample) {
            const std::string d = names::downsample(L);
            sink.linear(names::reduction(d), st.downsample->reduction(), false);
            sink.norm(names::downsample_norm(d), st.downsample->norm());
        }
    }
    sink.norm(names::final_norm(""), enc.norm());
    return out;
}

/// Writes the encoder to `path` (atomically) with the metadata of `info`.
template <class Ffn, WeightPolicy W>
void save_encoder(const vision::SwinEncoder<Ffn, W>& enc, const std::filesystem::path& path, const CheckpointInfo& info) {
    checkpoint_writer(enc, info).write(path);
}
/// The same with describe(enc, step).
template <class Ffn, WeightPolicy W>
CheckpointInfo save_encoder(const vision::SwinEncoder<Ffn, W>& enc, const std::filesystem::path& path,
                            std::string step = "full", std::vector<int> source_modalities = {}) {
    CheckpointInfo info = describe(enc, std::move(step), std::move(source_modalities));
    save_encoder(enc, path, info);
    return info;
}

/// Parses the metadata of a checkpoint written by save_encoder (FormatError naming the key when
/// it is missing, unreadable or inconsistent).
inline CheckpointInfo read_checkpoint_info(const io::SafetensorsFile& f) {
    const detail::Meta meta{f.metadata(), f.path()};
    const auto& fmt = meta.str("ringmoe.format");
    check<FormatError>(fmt == kCheckpointFormat, f.path(), "metadata 'ringmoe.format' is '", fmt, "', expected '",
                       kCheckpointFormat, "'");
    CheckpointInfo info;
    info.step = meta.str("ringmoe.step");
    info.prefix = meta.str("ringmoe.prefix");
    const auto& kind = meta.str("ringmoe.ffn");
    check<FormatError>(kind == "moe" || kind == "dense", f.path(), "metadata 'ringmoe.ffn' is '", kind,
                       "', expected moe or dense");
    info.ffn = kind == "moe" ? FfnKind::moe : FfnKind::dense;
    for (index_t m : meta.list("ringmoe.source_modalities")) info.source_modalities.push_back(static_cast<int>(m));
    info.weights = meta.str("ringmoe.weights");
    auto& s = info.swin;
    s.image_size = meta.number<index_t>("swin.image_size");
    s.patch = meta.number<index_t>("swin.patch");
    s.in_chans = meta.list("swin.in_chans");
    s.embed_dim = meta.number<index_t>("swin.embed_dim");
    s.depths = meta.list("swin.depths");
    s.heads = meta.list("swin.heads");
    s.window = meta.number<index_t>("swin.window");
    s.mlp_ratio = meta.number<double>("swin.mlp_ratio");
    s.qkv_bias = meta.boolean("swin.qkv_bias");
    s.block_eps = meta.number<float>("swin.block_eps");
    s.patch_eps = meta.number<float>("swin.patch_eps");
    s.merge_eps = meta.number<float>("swin.merge_eps");
    s.final_eps = meta.number<float>("swin.final_eps");
    const auto& order = meta.str("swin.order");
    if (order == "pre") s.order = vision::NormOrder::pre;
    else if (order == "res_post") s.order = vision::NormOrder::res_post;
    else if (order == "post") s.order = vision::NormOrder::post;
    else throw FormatError(f.path(), moe::detail::cat("metadata 'swin.order' is '", order, "', expected pre, res_post or post"));
    info.moe.num_experts_chosen = meta.number<index_t>("moe.num_experts_chosen");
    info.moe.capacity_factor = meta.number<double>("moe.capacity_factor");
    info.moe.renormalize = meta.boolean("moe.renormalize");
    info.moe.expert_num = meta.number<double>("moe.expert_num");
    info.moe.aux_loss_factor = meta.number<double>("moe.aux_loss_factor");
    const auto modal = meta.lists("blocks.modal_experts");
    const auto collab = meta.list("blocks.collab_experts", meta.str("blocks.collab_experts"), ';');
    const auto shared = meta.list("blocks.shared_experts", meta.str("blocks.shared_experts"), ';');
    const auto ffn = meta.list("blocks.ffn", meta.str("blocks.ffn"), ';');
    check<FormatError>(modal.size() == ffn.size() && collab.size() == ffn.size() && shared.size() == ffn.size(),
                       f.path(), "metadata 'blocks.*' lists differ in length");
    for (std::size_t b = 0; b < ffn.size(); ++b) info.blocks.push_back({modal[b], collab[b], shared[b], ffn[b]});
    try {
        info.validate(f.path());
    } catch (const ConfigError& e) {
        throw FormatError(f.path(), moe::detail::cat("inconsistent metadata: ", e.what()));
    }
    return info;
}

namespace detail {
template <class Ffn, WeightPolicy W>
void check_loaded(const vision::SwinEncoder<Ffn, W>& enc, const CheckpointInfo& info, const std::string& file) {
    const CheckpointInfo got = describe(enc, info.step, info.source_modalities);
    for (std::size_t b = 0; b < got.blocks.size(); ++b)
        check<FormatError>(got.blocks[b] == info.blocks[b], file, "block ", b,
                           ": the tensors hold another FFN shape than the metadata 'blocks.*' records");
    if (info.ffn == FfnKind::moe) {
        const auto& a = got.moe;
        const auto& e = info.moe;
        check<FormatError>(a.num_experts_chosen == e.num_experts_chosen && a.capacity_factor == e.capacity_factor,
                           file, "routing options differ from the metadata");
    }
}
}  // namespace detail

/// The hierarchical-MoE encoder of a checkpoint written by save_encoder: configuration and
/// routing options from the metadata, expert counts from the tensors (checked against it).
template <WeightPolicy W = float, Activation Act = GeluTanh>
RingMoeSwin<W, Act> load_moe_encoder(const io::SafetensorsFile& f) {
    const CheckpointInfo info = read_checkpoint_info(f);
    check<FormatError>(info.ffn == FfnKind::moe, f.path(), "the checkpoint holds dense FFNs (step '", info.step,
                       "'); use load_dense_encoder");
    auto enc = load_ringmoe_swin<W, Act>(f, info.prefix, info.swin, info.moe);
    detail::check_loaded(enc, info, f.path());
    return enc;
}

/// The dense encoder of a checkpoint written by save_encoder. Unlike
/// load_ringmoe_swin_dense (F = mlp_ratio * C), every block's FFN width comes from its
/// mapping.weight [C, F] (an SVD fold gives sum-of-ranks widths) and is checked against the metadata.
template <WeightPolicy W = float, Activation Act = GeluTanh>
DenseSwin<W, Act> load_dense_encoder(const io::SafetensorsFile& f) {
    const CheckpointInfo info = read_checkpoint_info(f);
    check<FormatError>(info.ffn == FfnKind::dense, f.path(), "the checkpoint holds MoE FFN slots (step '", info.step,
                       "'); use load_moe_encoder");
    std::size_t block = 0;
    auto enc = load_swin<vision::Mlp<Act, W>, W>(
        f, info.prefix, info.swin, [&](const io::SafetensorsFile& file, const std::string& mlp, index_t C, index_t) {
            const std::string mw = names::mapping(mlp) + names::kWeight;
            const TensorView m = io::matrix(file, mw);
            check<ShapeError>(m.dim(0) == C, mw, "expected [", C, ", F], found ", m.shape().str());
            const index_t F = m.dim(1);
            check<FormatError>(F == info.blocks.at(block).ffn, file.path(), mw, " is [", C, ", ", F,
                               "], the metadata records an FFN width of ", info.blocks.at(block).ffn);
            ++block;
            return load_mindspore_mlp<Act, W>(file, mlp, C, F);
        });
    return enc;
}

/// Opens `path` and loads it (load_moe_encoder / load_dense_encoder).
template <WeightPolicy W = float, Activation Act = GeluTanh>
RingMoeSwin<W, Act> load_moe_encoder(const std::filesystem::path& path) {
    return load_moe_encoder<W, Act>(io::SafetensorsFile::open(path));
}
template <WeightPolicy W = float, Activation Act = GeluTanh>
DenseSwin<W, Act> load_dense_encoder(const std::filesystem::path& path) {
    return load_dense_encoder<W, Act>(io::SafetensorsFile::open(path));
}

}  // namespace moe::rs::ringmoe
