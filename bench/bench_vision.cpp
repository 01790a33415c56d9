// bench/bench_vision.cpp - vision encoder forward passes (include/vision), random weights.
//
//   vision/vit_b16/batch:<B>/w:<w>/threads:<n>        ViT-B/16 at 224 (timm / torchvision
//                                                     vit_b_16 sizes, without the head), B = 1, 8
//   vision/siglip_block/T:729/w:<w>/threads:<n>       one SigLIP so400m/14 layer over one 384 image
//   vision/swin_stage1/batch:1/w:<w>/threads:<n>      RingMoE Swin stage 1, dense MLP: 2 blocks at
//                                                     C 896, 24 x 24 tokens, window 12 (the second
//                                                     shifted by 6, masked), + patch merging
// w: f32 or bf16 Linear weights (activations, norms, attention in fp32). Counter GFLOP/s counts
// 2 * MACs of the GEMMs and of the attention products (q k^T, P v); norms, softmax, GELU are
// not counted. tools/bench/torch_vision.py prints the PyTorch 1.13 numbers under the same names.
#include <benchmark/benchmark.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "moe/moe.hpp"
#include "vision/vision.hpp"

namespace {

using moe::index_t;
using moe::Tensor;
namespace vis = moe::vision;

Tensor rnd(moe::Shape s, std::mt19937& g, float scale) {
    Tensor t(moe::DType::f32, s);
    std::uniform_real_distribution<float> u(-scale, scale);
    for (auto& v : t.span<float>()) v = u(g);
    return t;
}

template <moe::WeightPolicy W>
vis::Linear<W> lin(index_t out, index_t in, bool bias, std::mt19937& g) {
    const float s = 1.0f / std::sqrt(float(in));
    return vis::Linear<W>(rnd({out, in}, g, s), bias ? rnd({out}, g, s) : Tensor());
}

vis::LayerNorm ln(index_t C, std::mt19937& g) {
    Tensor w = rnd({C}, g, 0.1f);
    for (auto& v : w.span<float>()) v += 1.0f;
    return vis::LayerNorm(std::move(w), rnd({C}, g, 0.1f), 1e-6f);
}

template <moe::WeightPolicy W, class Act>
vis::Block<vis::Mlp<Act, W>, W> vit_block(index_t C, index_t H, index_t F, std::mt19937& g) {
    return vis::Block<vis::Mlp<Act, W>, W>(ln(C, g), vis::Attention<W>(lin<W>(3 * C, C, true, g), lin<W>(C, C, true, g), H),
                                           ln(C, g), vis::Mlp<Act, W>(lin<W>(F, C, true, g), lin<W>(C, F, true, g)));
}

template <moe::WeightPolicy W>
vis::DenseVit<W> vit_b16(std::mt19937& g) {
    const auto c = vis::VitConfig::timm_vit_b16();
    const index_t C = c.width, N = c.grid() * c.grid();
    vis::PatchEmbed<W> pe(lin<W>(C, 3 * 16 * 16, true, g), 3, 16);
    std::vector<vis::Block<vis::Mlp<moe::Gelu, W>, W>> blocks;
    for (index_t i = 0; i < c.depth; ++i) blocks.push_back(vit_block<W, moe::Gelu>(C, c.heads, c.mlp_hidden, g));
    std::optional<vis::PosEmbed> pos;
    pos.emplace(rnd({N + 1, C}, g, 0.02f), 1, c.grid(), c.grid());
    return vis::DenseVit<W>(c, std::move(pe), rnd({C}, g, 0.02f), std::move(pos), std::move(blocks), ln(C, g));
}

double vit_b16_flops(index_t B) {
    const double T = 197, C = 768, F = 3072, L = 12;
    const double per_block = 2 * T * (3 * C * C + C * C + 2 * C * F) + 2 * 2 * T * T * C;
    return B * (L * per_block + 2 * 196 * 768 * 768.0);
}

template <moe::WeightPolicy W>
void BM_vit(benchmark::State& st, index_t B, int threads) {
    std::mt19937 g(1);
    auto vit = vit_b16<W>(g);
    vit.set_exec(moe::Exec(threads));
    const Tensor img = rnd({B, 3, 224, 224}, g, 1.0f);
    (void)vit.forward(img);  // untimed: the model is built per call, its scratch is allocated lazily
    for (auto _ : st) {
        Tensor y = vit.forward(img);
        benchmark::DoNotOptimize(y.raw());
    }
    st.counters["GFLOP/s"] = benchmark::Counter(vit_b16_flops(B) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    st.counters["images/s"] = benchmark::Counter(double(B), benchmark::Counter::kIsIterationInvariantRate);
}

template <moe::WeightPolicy W>
void BM_siglip_block(benchmark::State& st, int threads) {
    std::mt19937 g(2);
    const index_t C = 1152, F = 4304, T = 729;
    auto blk = vit_block<W, moe::GeluTanh>(C, 16, F, g);
    const Tensor x0 = rnd({T, C}, g, 1.0f);
    Tensor x(moe::DType::f32, {T, C});
    vis::FfnContext ctx;
    ctx.exec = moe::Exec(threads);
    std::memcpy(x.raw(), x0.raw(), x.nbytes());
    blk.forward(x.matrix<float>(), T, ctx);  // untimed: lazily allocated scratch
    for (auto _ : st) {
        std::memcpy(x.raw(), x0.raw(), x.nbytes());
        blk.forward(x.matrix<float>(), T, ctx);
        benchmark::DoNotOptimize(x.raw());
    }
    const double flops = 2.0 * T * (4.0 * C * C + 2.0 * C * F) + 4.0 * T * T * C;
    st.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

template <moe::WeightPolicy W>
void BM_swin_stage(benchmark::State& st, int threads) {
    std::mt19937 g(3);
    const index_t C = 896, H = 28, R = 24, w = 12, F = 4 * C;
    using Mlp = vis::Mlp<moe::GeluTanh, W>;
    std::vector<vis::SwinBlock<Mlp, W>> blocks;
    for (int j = 0; j < 2; ++j)
        blocks.emplace_back(ln(C, g), vis::Attention<W>(lin<W>(3 * C, C, true, g), lin<W>(C, C, true, g), H),
                            rnd({(2 * w - 1) * (2 * w - 1), H}, g, 0.5f), ln(C, g),
                            Mlp(lin<W>(F, C, true, g), lin<W>(C, F, true, g)), R, w, j % 2 ? w / 2 : 0);
    vis::PatchMerging<W> merge(lin<W>(2 * C, 4 * C, false, g), ln(2 * C, g), R);
    const Tensor x0 = rnd({R * R, C}, g, 1.0f);
    Tensor x(moe::DType::f32, {R * R, C});
    vis::FfnContext ctx;
    ctx.exec = moe::Exec(threads);
    std::memcpy(x.raw(), x0.raw(), x.nbytes());
    for (auto& b : blocks) b.forward(x.matrix<float>(), ctx);  // untimed: lazily allocated scratch
    (void)merge.forward(x.matrix<float>(), moe::Exec(threads));
    for (auto _ : st) {
        std::memcpy(x.raw(), x0.raw(), x.nbytes());
        for (auto& b : blocks) b.forward(x.matrix<float>(), ctx);
        Tensor y = merge.forward(x.matrix<float>(), moe::Exec(threads));
        benchmark::DoNotOptimize(y.raw());
    }
    const double T = R * R;
    const double flops = 2 * (2.0 * T * (4.0 * C * C + 2.0 * C * F) + 4.0 * T * w * w * C) + 2.0 * (T / 4) * 4 * C * 2 * C;
    st.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

template <class F>
void reg(const std::string& name, F f) {
    benchmark::RegisterBenchmark(name.c_str(), f)->UseRealTime()->Unit(benchmark::kMillisecond);
}

template <class W>
void register_policy(int t) {
    const std::string th = "/threads:" + std::to_string(t), w = std::string("/w:") + moe::policy_name<W>();
    for (index_t B : {1, 8})
        reg("vision/vit_b16/batch:" + std::to_string(B) + w + th, [B, t](benchmark::State& s) { BM_vit<W>(s, B, t); });
    reg("vision/siglip_block/T:729" + w + th, [t](benchmark::State& s) { BM_siglip_block<W>(s, t); });
    reg("vision/swin_stage1/batch:1" + w + th, [t](benchmark::State& s) { BM_swin_stage<W>(s, t); });
}

int register_all() {
    for (int t : {1, 2}) {
        register_policy<float>(t);
        register_policy<moe::bf16>(t);
        register_policy<moe::bf16_dot>(t);
        register_policy<moe::bf16_dot_packed>(t);
    }
    return 0;
}
const int registered = register_all();

// Which SIMD path these figures come from, in the context header of every run.
const bool simd_context_added = [] {
    benchmark::AddCustomContext("moe.simd", moe::cpu::simd_name());
    return true;
}();

}  // namespace
