// bench/bench_ringmoe.cpp - RingMoE's deployable encoders, one image end to end, random weights.
//
//   ringmoe/folded_1b/img:<S>/w:<w>/threads:<n>        the 1B folded model: Swin C 448, depths
//                                                      2-2-18-2, heads 14-28-56-112, one dense
//                                                      GELU-tanh MLP C -> 4C -> C per block
//   ringmoe/single_modality/img:<S>/w:bf16/threads:<n> the single-modality sub-model (6.5B): every
//                                                      block's FFN slot holds the hierarchical MoE
//                                                      of one modality (4 modal + 4 collaborative +
//                                                      1 shared expert, top-1, capacity 1.2)
// S = 192 (window 12, RingMoE's pre-training size) and 224 (window 7: 224 / 4 = 56 tokens per
// side is not a multiple of 12; 7 divides 56, 28, 14 and 7, as Swin-V2 uses at 224). One optical
// image (3 channels) per call, patch embedding -> 24 blocks + 3 patch mergings -> final norm.
// w: the weight policy: f32, bf16 (exact math: fp32 activations), bf16-dot (Bf16DotMath: GEMM
// inputs rounded to bf16, vdpbf16ps), bf16-dot-packed (the same, packed once at load); norms,
// softmax and attention products in fp32. The single-
// modality model is run in bf16 only: its fp32 weights (26 GB) do not fit in this machine's 23 GiB.
//
// Counters: images/s, GFLOP/s (2 x the MACs of every GEMM and attention product the image needs:
// for the MoE model the active path, 3 FFNs per token; norms, softmax, GELU not counted),
// params (stored parameters). tools/bench/torch_ringmoe.py times the PyTorch 1.13 reference
// (tools/reference/vision_swin.py) under the same names; bench/run_ringmoe.sh runs both.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "moe/moe.hpp"
#include "rs/ringmoe/config.hpp"
#include "rs/ringmoe/moe_modal.hpp"
#include "vision/loaders.hpp"
#include "vision/vision.hpp"

namespace {

using moe::index_t;
using moe::Tensor;
namespace vis = moe::vision;

template <moe::WeightType W>
Tensor rnd(moe::Shape s, std::mt19937_64& g, float scale) {
    Tensor t(moe::dtype_v<W>, s);
    std::uniform_real_distribution<float> u(-scale, scale);
    for (auto& v : t.span<W>()) v = moe::from_float<W>(u(g));
    return t;
}

template <moe::WeightPolicy W>
vis::Linear<W> lin(index_t out, index_t in, bool bias, std::mt19937_64& g) {
    const float s = 1.0f / std::sqrt(float(in));
    return vis::Linear<W>(rnd<moe::storage_t<W>>({out, in}, g, s), bias ? rnd<float>({out}, g, s) : Tensor());
}

vis::LayerNorm ln(index_t C, std::mt19937_64& g) {
    Tensor w = rnd<float>({C}, g, 0.1f);
    for (auto& v : w.span<float>()) v += 1.0f;
    return vis::LayerNorm(std::move(w), rnd<float>({C}, g, 0.1f), 1e-6f);
}

vis::SwinConfig config(index_t image) {
    vis::SwinConfig c = moe::rs::ringmoe::swin_config();
    c.image_size = image;
    c.window = image == 224 ? 7 : 12;
    c.in_chans = {3};
    return c;
}

/// A Swin encoder of `cfg` with random weights; ffn(stage, C, F, rng) builds each FFN slot.
template <class Ffn, moe::WeightPolicy W>
vis::SwinEncoder<Ffn, W> build(const vis::SwinConfig& cfg, const std::function<Ffn(index_t, index_t, index_t, std::mt19937_64&)>& ffn) {
    std::mt19937_64 g(7);
    const index_t C0 = cfg.embed_dim, p = cfg.patch;
    std::vector<vis::PatchEmbed<W>> pe;
    pe.emplace_back(lin<W>(C0, 3 * p * p, true, g), 3, p, ln(C0, g));
    std::vector<typename vis::SwinEncoder<Ffn, W>::Stage> stages;
    for (index_t i = 0; i < cfg.stages(); ++i) {
        const index_t C = cfg.dim(i), F = cfg.ffn_hidden(i), H = cfg.heads[static_cast<std::size_t>(i)];
        const index_t R = cfg.resolution(i), w = cfg.window_at(i), s = cfg.shift_at(i);
        typename vis::SwinEncoder<Ffn, W>::Stage st;
        for (index_t j = 0; j < cfg.depths[static_cast<std::size_t>(i)]; ++j)
            st.blocks.emplace_back(ln(C, g), vis::Attention<W>(lin<W>(3 * C, C, true, g), lin<W>(C, C, true, g), H),
                                   rnd<float>({(2 * w - 1) * (2 * w - 1), H}, g, 0.5f), ln(C, g), ffn(i, C, F, g), R, w,
                                   j % 2 ? s : 0, cfg.order);
        if (i + 1 < cfg.stages()) st.downsample.emplace(lin<W>(2 * C, 4 * C, false, g), ln(2 * C, g), R);
        stages.push_back(std::move(st));
    }
    return vis::SwinEncoder<Ffn, W>(cfg, std::move(pe), std::move(stages), ln(cfg.dim(cfg.stages() - 1), g));
}

/// 2 x MACs of one image through the encoder (ffns = FFNs each token passes through).
double flops(const vis::SwinConfig& c, double ffns) {
    double f = 0;
    const double R0 = double(c.resolution(0));
    f += 2.0 * R0 * R0 * double(c.embed_dim) * 3.0 * double(c.patch * c.patch);
    for (index_t i = 0; i < c.stages(); ++i) {
        const double T = double(c.resolution(i) * c.resolution(i)), C = double(c.dim(i)), F = double(c.ffn_hidden(i));
        const double w2 = double(c.window_at(i) * c.window_at(i));
        f += double(c.depths[static_cast<std::size_t>(i)]) * 2.0 * (T * 4.0 * C * C + ffns * T * 2.0 * C * F + 2.0 * T * w2 * C);
        if (i + 1 < c.stages()) f += 2.0 * (T / 4) * 4.0 * C * 2.0 * C;
    }
    return f;
}

// One model alive at a time (the single-modality one takes 13 GB): rebuilt when the key changes.
struct Cache {
    std::string key;
    std::shared_ptr<void> model;
};
Cache& cache() {
    static Cache c;
    return c;
}

template <class Enc>
Enc& get(const std::string& key, const std::function<Enc()>& make) {
    auto& c = cache();
    if (c.key != key) {
        c.model.reset();
        c.model = std::make_shared<Enc>(make());
        c.key = key;
    }
    return *static_cast<Enc*>(c.model.get());
}

template <class Enc>
void run(benchmark::State& st, Enc& enc, const vis::SwinConfig& cfg, int threads, double ffns) {
    enc.set_exec(moe::Exec(threads));
#if defined(_OPENMP)
    omp_set_num_threads(threads);
#endif
    std::mt19937_64 g(11);
    const Tensor img = rnd<float>({1, 3, cfg.image_size, cfg.image_size}, g, 1.0f);
    for (auto _ : st) {
        Tensor y = enc.forward(img.view(), 0);
        benchmark::DoNotOptimize(y.raw());
    }
    st.counters["images/s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
    st.counters["GFLOP/s"] = benchmark::Counter(flops(cfg, ffns) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    st.counters["params"] = double(enc.parameters());
}

template <moe::WeightPolicy W>
void BM_folded(benchmark::State& st, index_t image, int threads) {
    using Mlp = vis::Mlp<moe::GeluTanh, W>;
    using Enc = vis::SwinEncoder<Mlp, W>;
    const auto cfg = config(image);
    Enc& enc = get<Enc>("folded/" + std::to_string(image) + "/" + moe::policy_name<W>(), [&] {
        return build<Mlp, W>(cfg, [](index_t, index_t C, index_t F, std::mt19937_64& g) {
            return Mlp(lin<W>(F, C, true, g), lin<W>(C, F, true, g));
        });
    });
    run(st, enc, cfg, threads, 1.0);
}

template <moe::WeightType W>
void BM_single(benchmark::State& st, index_t image, int threads) {
    using Layer = moe::rs::ringmoe::MoeModal<W, moe::GeluTanh>;
    using Experts = moe::MlpExperts<moe::GeluTanh, W>;
    using Enc = vis::SwinEncoder<Layer, W>;
    const auto cfg = config(image);
    Enc& enc = get<Enc>("single/" + std::to_string(image) + "/" + std::string(moe::dtype_name(moe::dtype_v<W>)), [&] {
        std::uint64_t seed = 100;
        return build<Layer, W>(cfg, [&seed](index_t, index_t C, index_t F, std::mt19937_64&) {
            seed += 10;
            std::vector<moe::Gate> gates;
            gates.push_back(moe::Gate::random(4, C, seed));
            std::vector<Experts> modal;
            modal.push_back(Experts::random(4, C, F, seed + 1, true));
            moe::HierarchicalOptions o;  // top-1, cf 1.2, renormalised
            return Layer(std::move(gates), std::move(modal), moe::Gate::random(4, C, seed + 2),
                         Experts::random(4, C, F, seed + 3, true),
                         moe::SharedExperts<Experts>(Experts::random(1, C, F, seed + 4, true)), o);
        });
    });
    run(st, enc, cfg, threads, 3.0);
}

template <class F>
void reg(const std::string& name, F f) {
    benchmark::RegisterBenchmark(name.c_str(), f)->UseRealTime()->Unit(benchmark::kMillisecond);
}

int register_all() {
    // Grouped by model so that each model is built once (the cache keeps one).
    for (index_t img : {192, 224}) {
        const std::string s = "/img:" + std::to_string(img);
        auto folded = [&]<class W>() {
            for (int t : {1, 2})
                reg("ringmoe/folded_1b" + s + "/w:" + moe::policy_name<W>() + "/threads:" + std::to_string(t),
                    [img, t](benchmark::State& st) { BM_folded<W>(st, img, t); });
        };
        folded.template operator()<float>();
        folded.template operator()<moe::bf16>();
        folded.template operator()<moe::bf16_dot>();
        folded.template operator()<moe::bf16_dot_packed>();
    }
    for (index_t img : {192, 224})
        for (int t : {1, 2})
            reg("ringmoe/single_modality/img:" + std::to_string(img) + "/w:bf16/threads:" + std::to_string(t),
                [img, t](benchmark::State& st) { BM_single<moe::bf16>(st, img, t); });
    return 0;
}
const int registered = register_all();

// Which SIMD path these figures come from, in the context header of every run.
const bool simd_context_added = [] {
    benchmark::AddCustomContext("moe.simd", moe::cpu::simd_name());
    return true;
}();

}  // namespace
