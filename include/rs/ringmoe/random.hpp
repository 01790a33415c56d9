// rs/ringmoe/random.hpp - deterministic random-weight checkpoints of any RingMoE configuration.
//
//   checkpoint_layout(cfg, opt)            every tensor the model of `cfg` loads: name (the released
//                                          MindSpore names, as load_ringmoe reads them), shape, dtype
//                                          and initialisation
//   write_random_checkpoint(path, cfg, opt) a safetensors file of those tensors, written streaming
//                                          by io::SafetensorsWriter (add_streamed: tensor by tensor,
//                                          in chunks of 4M values: memory stays at a few tens of MB
//                                          whatever the model size)
//   random_checkpoint_bytes(cfg, opt)      the same file image in memory (small models, tests)
//   random_ringmoe<W, Act>(cfg, opt)       a model built from such an in-memory image
//
// Initialisation, as the released code initialises its cells (ringmoe_framework init_weights:
// TruncatedNormal(sigma = 0.02) for Linear weights, Zero for biases, One / Zero for LayerNorm
// gamma / beta): every weight matrix (patch-embedding conv, q / k / v / proj, expert and shared
// FFN matrices, routers, patch merging, heads) and the relative-position-bias tables are drawn from
// a normal of std opt.std (0.02) truncated at +-2 std (MindSpore's TruncatedNormal); biases are 0,
// LayerNorm gamma 1, beta 0. The released fine-tuning head starts from TruncatedNormal(2e-5); set
// opt.head_std for that (default 0.02, so random-weight logits are not all ~0). The
// relative_position_index buffers (int32) are written as the released checkpoints hold them
// (opt.relative_position_index); the shifted-window attn_mask buffers are not (derived data).
//
// Values are a counter-based function of (seed, tensor name, element index): value i of a tensor
// is component i % 2 of the first fp32 Box-Muller pair splitmix64(key, i / 2, attempt) whose
// component lies within +-2, so the file is the same bit for bit whatever the thread count or
// chunking, and two tensors never share a stream.
//
// Dtypes: opt.dtype = f32 writes everything in F32 (as MindSpore stores it); bf16 writes the weight
// matrices (everything except routers) in BF16 (round to nearest even) and keeps biases, norms,
// tables and routers in F32 (the loaders keep those in fp32 anyway). Sizes: the full model is
// 58.8 GB in f32 / 29.5 GB in bf16, a single-modality one 26 / 13 GB, the folded 1B one 4.3 / 2.2 GB
// (the disk must hold them; memory does not).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "moe/core/precision.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/tensor.hpp"
#include "moe/backend/cpu/gemm_int8.hpp"
#include "moe/io/quantize.hpp"
#include "moe/io/safetensors.hpp"
#include "rs/random_weights.hpp"
#include "rs/ringmoe/config.hpp"
#include "rs/ringmoe/model.hpp"
#include "rs/ringmoe/names.hpp"
#include "vision/swin.hpp"

namespace moe::rs::ringmoe {

using rs::Init;
using rs::TensorSpec;

/// Options of a random-weight checkpoint.
struct RandomWeightOptions {
    std::uint64_t seed = 0;
    DType dtype = DType::f32;     ///< f32 or bf16 (weight matrices; see the file comment)
    double std = 0.02;            ///< truncated-normal std of weights, routers and bias tables
    double head_std = 0.02;       ///< ... of the heads' weights
    bool relative_position_index = true;  ///< write the int32 index buffers
    /// Write the MoE blocks' expert weights (modality, collaborative and shared experts) in int8
    /// (moe/io/quantize.hpp's format: I8 [E, out, in] + "<name>_scale" F32 [E, out]): the fp32
    /// values of the float checkpoint, quantised per output channel, so the file equals
    /// io::quantize_checkpoint of the F32 one. Routers and everything else keep `dtype`.
    bool int8_experts = false;
};

/// Every tensor load_ringmoe reads for `cfg` (plus the int32 position-index buffers if asked),
/// in the order their data is written: F32, then I32, then BF16 tensors, each group by name
/// (SafetensorsWriter's order, so every tensor is aligned to its element size).
inline std::vector<TensorSpec> checkpoint_layout(const RingMoeConfig& cfg, const RandomWeightOptions& opt = {}) {
    const char* who = "rs::ringmoe::checkpoint_layout";
    cfg.validate(who);
    check<ConfigError>(opt.dtype == DType::f32 || opt.dtype == DType::bf16, who, "weights must be F32 or BF16, not ",
                       dtype_name(opt.dtype));
    check<ConfigError>(!opt.int8_experts || cfg.ffn == FfnKind::moe, who,
                       "int8 experts need a configuration with MoE blocks (", cfg.name, " is dense)");
    const DType W = opt.dtype;
    // Expert weights: I8 specs keep the float source's shape [E, in, out] (the generator's
    // indices); detail::writer writes them [E, out, in] with their scales.
    const DType WE = opt.int8_experts ? DType::i8 : W;
    std::vector<TensorSpec> t;
    auto w = [&](std::string n, std::vector<index_t> s, DType d = DType::f32, double sd = -1) {
        t.push_back({std::move(n), std::move(s), d, Init::trunc_normal, sd < 0 ? opt.std : sd, 0});
    };
    auto z = [&](std::string n, std::vector<index_t> s) { t.push_back({std::move(n), std::move(s), DType::f32, Init::zeros, 0, 0}); };
    auto norm = [&](const std::string& m, index_t C) {
        t.push_back({m + names::kGamma, {C}, DType::f32, Init::ones, 0, 0});
        z(m + names::kBeta, {C});
    };
    auto weight = [](const std::string& m) { return m + names::kWeight; };
    auto bias = [](const std::string& m) { return m + names::kBias; };
    const auto& s = cfg.swin;
    const std::string e = names::kEncoder;
    const index_t C0 = s.embed_dim, p = s.patch;
    for (std::size_t m = 0; m < s.in_chans.size(); ++m) {
        const std::string pe = names::patch_embed(e, static_cast<index_t>(m)), proj = names::patch_projection(pe);
        w(weight(proj), {C0, s.in_chans[m], p, p}, W);
        z(bias(proj), {C0});
        norm(names::patch_norm(pe), C0);
    }
    const auto M = static_cast<index_t>(cfg.modalities.size());
    for (index_t i = 0; i < s.stages(); ++i) {
        const index_t C = s.dim(i), F = s.ffn_hidden(i), H = s.heads[static_cast<std::size_t>(i)], win = s.window_at(i);
        const std::string L = names::layer(e, i);
        for (index_t j = 0; j < s.depths[static_cast<std::size_t>(i)]; ++j) {
            const std::string b = names::block(L, j);
            const std::string a = names::attn(b);
            for (int q = 0; q < 4; ++q) {  // q, k, v, proj
                const std::string l = names::attn_linear(a, q);
                w(weight(l), {C, C}, W);
                if (s.qkv_bias || q == 3) z(bias(l), {C});
            }
            w(names::position_bias_table(a), {(2 * win - 1) * (2 * win - 1), H});
            if (opt.relative_position_index)
                t.push_back(
                    {names::position_index(a), {win * win * win * win}, DType::i32, Init::position_index, 0, win});
            norm(names::norm1(b), C);
            norm(names::norm2(b), C);
            const std::string mlp = names::mlp(b);
            auto experts = [&](const std::string& f, index_t E) {
                const std::string fc1 = names::mapping(f), fc2 = names::projection(f);
                w(weight(fc1), {E, C, F}, WE);
                z(bias(fc1), {1, E, 1, F});
                w(weight(fc2), {E, F, C}, WE);
                z(bias(fc2), {1, E, 1, C});
            };
            auto single = [&](const std::string& f, DType d) {
                const std::string fc1 = names::mapping(f), fc2 = names::projection(f);
                w(weight(fc1), {C, F}, d);
                z(bias(fc1), {F});
                w(weight(fc2), {F, C}, d);
                z(bias(fc2), {C});
            };
            if (cfg.ffn == FfnKind::moe) {
                for (index_t m = 0; m < M; ++m) {
                    w(names::router_weight(names::special_router(mlp, m)), {cfg.modal_experts, C});
                    experts(names::special_ffn(mlp, m), cfg.modal_experts);
                }
                w(names::router_weight(names::cross_router(mlp)), {cfg.collab_experts, C});
                experts(names::cross_ffn(mlp), cfg.collab_experts);
                single(names::public_ffn(mlp), WE);
            } else {
                single(mlp, W);
            }
        }
        if (i + 1 < s.stages()) {
            const std::string d = names::downsample(L);
            w(weight(names::reduction(d)), {2 * C, 4 * C}, W);
            norm(names::downsample_norm(d), 2 * C);
        }
    }
    const index_t CL = s.dim(s.stages() - 1);
    norm(names::final_norm(e), CL);
    const std::string head = names::kHead, seg_head = names::kSegHead;
    if (cfg.num_classes > 0) {
        w(weight(head), {cfg.num_classes, CL}, W, opt.head_std);
        z(bias(head), {cfg.num_classes});
    }
    if (cfg.seg_classes > 0) {
        w(weight(seg_head), {cfg.seg_classes, s.dim(cfg.seg_stage_index())}, W, opt.head_std);
        z(bias(seg_head), {cfg.seg_classes});
    }
    std::stable_sort(t.begin(), t.end(), [](const TensorSpec& a, const TensorSpec& b) {
        const int ra = rs::detail::dtype_order(a.dtype), rb = rs::detail::dtype_order(b.dtype);
        return ra != rb ? ra < rb : a.name < b.name;
    });
    return t;
}

namespace detail {

/// An int8 expert weight: spec s describes the float source ([E, in, out] or [in, out], the
/// generator's indices); written as I8 [E, out, in] and its scales F32 [E, out] by
/// io::add_int8_streamed (one matrix in memory at a time).
inline void add_int8(io::SafetensorsWriter& w, TensorSpec s, std::uint64_t seed) {
    const bool stacked = s.shape.size() == 3;
    const index_t E = stacked ? s.shape[0] : 1, in = s.shape[stacked ? 1 : 0], out = s.shape[stacked ? 2 : 1];
    const std::string name = s.name;
    io::add_int8_streamed(w, name, stacked, E, out, in, 0, [s = std::move(s), seed, in, out](index_t e) {
        std::vector<float> v(static_cast<std::size_t>(in * out));
        rs::detail::fill_values(s, rs::detail::tensor_key(seed, s.name), e * in * out, in * out, v.data());
        return cpu::quantize_int8(
            out, in, [&](index_t n, index_t k) { return v[static_cast<std::size_t>(k * out + n)]; }, 0, s.name);
    });
}

/// The checkpoint of `cfg` as a streaming SafetensorsWriter: the metadata, and every tensor of
/// checkpoint_layout() with write_values as its producer (values are made when the file is
/// written, chunk by chunk).
inline io::SafetensorsWriter writer(const RingMoeConfig& cfg, const RandomWeightOptions& opt) {
    io::SafetensorsWriter w;
    w.add_metadata("format", "pt");
    w.add_metadata("moe.config", cfg.name);
    w.add_metadata("moe.dtype", std::string(dtype_name(opt.dtype)));
    w.add_metadata("moe.generator",
                   "splitmix64 + fp32 Box-Muller pairs, truncated at 2 std (rs/ringmoe/random.hpp v2)");
    w.add_metadata("moe.init", moe::detail::cat("random: trunc_normal(std ", opt.std, ", +-2 std) weights, routers and "
                                                "bias tables; head std ", opt.head_std,
                                                "; zero biases; LayerNorm gamma 1, beta 0"));
    w.add_metadata("moe.seed", std::to_string(opt.seed));
    if (opt.int8_experts) {
        w.add_metadata("moe.quantization", "int8");
        w.add_metadata("moe.int8.group", "0");
    }
    for (auto& s : checkpoint_layout(cfg, opt)) {
        if (s.dtype == DType::i8) {
            add_int8(w, std::move(s), opt.seed);
            continue;
        }
        const Shape shape(s.shape.begin(), s.shape.end());
        const DType dtype = s.dtype;
        std::string name = s.name;
        w.add_streamed(std::move(name), dtype, shape,
                       [spec = std::move(s), seed = opt.seed](const io::SafetensorsWriter::ByteSink& sink) {
                           rs::detail::write_values(spec, seed, sink);
                       });
    }
    return w;
}

}  // namespace detail

/// Bytes of the checkpoint of `cfg` (header included).
inline std::uint64_t random_checkpoint_size(const RingMoeConfig& cfg, const RandomWeightOptions& opt = {}) {
    return detail::writer(cfg, opt).file_size();
}

/// The checkpoint as a file image in memory.
inline std::vector<std::byte> random_checkpoint_bytes(const RingMoeConfig& cfg, const RandomWeightOptions& opt = {}) {
    return detail::writer(cfg, opt).to_bytes();
}

/// Writes the checkpoint to `path` streaming, atomically (io::SafetensorsWriter::write: a
/// temporary file in the same directory, fsync, then rename). Throws IOError (the temporary
/// file is removed).
inline void write_random_checkpoint(const std::filesystem::path& path, const RingMoeConfig& cfg,
                                    const RandomWeightOptions& opt = {}) {
    detail::writer(cfg, opt).write(path);
}

/// A model of `cfg` with random weights (built from an in-memory checkpoint: small models); We:
/// the experts' policy (int8 policies: the checkpoint holds them in int8).
template <WeightPolicy W = float, Activation Act = GeluTanh, WeightPolicy We = W>
AnyRingMoe<W, Act, We> random_ringmoe(const RingMoeConfig& cfg, const RandomWeightOptions& opt = {}) {
    RandomWeightOptions o = opt;
    if constexpr (std::is_same_v<W, bf16>) o.dtype = DType::bf16;
    if constexpr (Int8Policy<We>) o.int8_experts = cfg.ffn == FfnKind::moe;
    return load_ringmoe<W, Act, We>(io::SafetensorsFile::from_buffer(random_checkpoint_bytes(cfg, o), cfg.name), cfg);
}

}  // namespace moe::rs::ringmoe
