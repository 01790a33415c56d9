// bench/bench_layer.cpp - one MoE layer forward pass (router + grouped experts + combine) and
// its parts, against a dense GEMM of the same FLOPs.
//
// Shapes (T tokens, hidden d, ffn F, E experts, top-k):
//   gelu_mlp/T:512/d:768/ffn:3072/E:8/k:2    ViT-B-sized GELU-MLP experts with bias
//   swiglu/T:512/d:1024/ffn:3584/E:8/k:2     Mixtral-like SwiGLU experts, scaled to this machine
//
// Benchmarks (w = expert weight policy: f32, bf16 (exact math: fp32 activations), bf16-dot
// (Bf16DotMath: activations rounded to bf16 at each GEMM input, vdpbf16ps), bf16-dot-packed (the
// same with weights packed once at load); everything outside the GEMMs in fp32):
//   layer/moe/<shape>/w:<w>/threads:<n>      MoELayer::forward (softmax top-k router, renormalised)
//   layer/experts/<shape>/w:<w>/threads:<n>  the expert part only: permute + expert FFNs + combine,
//                                            on the plan of the layer's router
//   layer/ffn/<shape>/w:<w>/threads:1        the expert FFNs only (GEMMs + activation) over the
//                                            already-permuted rows, expert by expert
//   layer/router/<shape>/threads:1           the router only: gate GEMM [T, d] x [d, E] + fused top-k
//   layer/dense/<shape>/w:<w>/threads:<n>    the dense baseline: one Linear pair (GELU-MLP: fc1, fc2;
//                                            SwiGLU: gate, up, down) over T * k rows with expert 0's
//                                            weights, Linear::forward (threads split columns),
//                                            no activation: the same FLOPs as the experts, no routing
//
// Counter GFLOP/s counts the useful expert FLOPs only, 2 * T * k * (2 * d * F) for the GELU-MLP
// and 2 * T * k * (3 * d * F) for SwiGLU; the router GEMM (2 * T * d * E), activations, biases,
// permutation and combine are not counted. All rates are over wall-clock time.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "moe/moe.hpp"

namespace {

using moe::index_t;

struct ShapeCfg {
    const char* name;
    index_t T, d, F, E, k;
    bool glu;
    std::string str() const {
        return std::string(name) + "/T:" + std::to_string(T) + "/d:" + std::to_string(d) + "/ffn:" + std::to_string(F) +
               "/E:" + std::to_string(E) + "/k:" + std::to_string(k);
    }
    double flops() const {
        return 2.0 * static_cast<double>(T * k) * (glu ? 3.0 : 2.0) * static_cast<double>(d) * static_cast<double>(F);
    }
};

const ShapeCfg kGeluMlp{"gelu_mlp", 512, 768, 3072, 8, 2, false};
const ShapeCfg kSwiGlu{"swiglu", 512, 1024, 3584, 8, 2, true};
constexpr std::uint64_t kSeed = 1234;

template <class W>
constexpr const char* wname() {
    return moe::policy_name<W>();
}

moe::Tensor random_normal(index_t rows, index_t cols, std::uint64_t seed) {
    moe::Tensor t(moe::DType::f32, moe::Shape{rows, cols});
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (float& v : t.span<float>()) v = n(rng);
    return t;
}

/// A layer of experts X for one shape, its input, and buffers; built once and shared by every
/// benchmark of that (shape, X).
template <class X>
struct Fixture {
    using Layer = moe::MoELayer<moe::TopKRouter<moe::SoftmaxScores>, X>;
    ShapeCfg cfg;
    Layer layer;
    moe::Tensor x, y, xp, yp, a, h, h2, out;  // a/h/h2/out: the dense baseline's buffers
    moe::RoutingPlan plan;

    explicit Fixture(const ShapeCfg& c) : cfg(c) {
        X experts;
        if constexpr (requires { X::random(c.E, c.d, c.F, kSeed, true); })
            experts = X::random(c.E, c.d, c.F, kSeed, true);
        else
            experts = X::random(c.E, c.d, c.F, kSeed);
        layer = Layer(moe::softmax_topk_router(moe::Gate::random(c.E, c.d, kSeed + 7), c.k), std::move(experts));
        x = random_normal(c.T, c.d, kSeed + 11);
        y = moe::Tensor(moe::DType::f32, moe::Shape{c.T, c.d});
        layer.set_exec(moe::Exec(1));  // the router's too
        layer.forward(x.matrix<float>(), y.matrix<float>());
        plan = layer.plan();
        // the permuted rows, as grouped execution builds them
        const index_t S = plan.num_slots();
        xp = moe::Tensor(moe::DType::f32, moe::Shape{S, c.d});
        yp = moe::Tensor(moe::DType::f32, moe::Shape{S, c.d});
        for (index_t s = 0; s < S; ++s)
            std::memcpy(xp.data<float>() + s * c.d, x.data<float>() + plan.slot_to_token[static_cast<std::size_t>(s)] * c.d,
                        static_cast<std::size_t>(c.d) * sizeof(float));
        // dense baseline: T * k rows
        a = random_normal(c.T * c.k, c.d, kSeed + 13);
        h = moe::Tensor(moe::DType::f32, moe::Shape{c.T * c.k, c.F});
        h2 = moe::Tensor(moe::DType::f32, moe::Shape{c.T * c.k, c.F});
        out = moe::Tensor(moe::DType::f32, moe::Shape{c.T * c.k, c.d});
    }

    void set_threads(int n) { layer.set_exec(moe::Exec(n)); }
};

template <class X>
Fixture<X>& fixture(const ShapeCfg& c) {
    static std::map<std::string, std::unique_ptr<Fixture<X>>> cache;
    auto& f = cache[c.name];
    if (!f) f = std::make_unique<Fixture<X>>(c);
    return *f;
}

template <class W>
using GeluExperts = moe::MlpExperts<moe::Gelu, W>;
template <class W>
using SwiGluExperts = moe::GluExperts<moe::Silu, W>;

void flop_counters(benchmark::State& st, const ShapeCfg& c) {
    st.counters["GFLOP/s"] = benchmark::Counter(c.flops() * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    st.counters["tokens/s"] = benchmark::Counter(static_cast<double>(c.T), benchmark::Counter::kIsIterationInvariantRate);
}

void load_counters(benchmark::State& st, const moe::RoutingPlan& plan) {
    const auto [lo, hi] = std::minmax_element(plan.counts.begin(), plan.counts.end());
    st.counters["load_min"] = *lo;
    st.counters["load_max"] = *hi;
}

template <class X>
void BM_moe(benchmark::State& st, ShapeCfg c, int threads) {
    auto& f = fixture<X>(c);
    f.set_threads(threads);
    const auto x = f.x.template matrix<float>();
    auto y = f.y.template matrix<float>();
    for (auto _ : st) {
        f.layer.forward(x, y);
        benchmark::DoNotOptimize(y.data);
        benchmark::ClobberMemory();
    }
    for (float v : f.y.template span<float>())
        if (!std::isfinite(v)) {
            st.SkipWithError("non-finite output");
            break;
        }
    flop_counters(st, c);
    load_counters(st, f.layer.plan());
}

template <class X>
void BM_experts(benchmark::State& st, ShapeCfg c, int threads) {
    auto& f = fixture<X>(c);
    const auto x = f.x.template matrix<float>();
    auto y = f.y.template matrix<float>();
    for (auto _ : st) {
        f.layer.experts().forward(x, f.plan, y, moe::Combine::overwrite, moe::Exec(threads));
        benchmark::DoNotOptimize(y.data);
        benchmark::ClobberMemory();
    }
    flop_counters(st, c);
}

template <class X>
void BM_ffn(benchmark::State& st, ShapeCfg c) {
    auto& f = fixture<X>(c);
    const X& experts = f.layer.experts();
    moe::ExpertScratch scratch;
    const index_t d = c.d;
    for (auto _ : st) {
        for (index_t e = 0; e < c.E; ++e) {
            const index_t b = f.plan.begin(e), n = f.plan.end(e) - b;
            if (n == 0) continue;
            experts.expert_forward(e, moe::ConstMatrixRef<float>(f.xp.template data<float>() + b * d, n, d),
                                   moe::MatrixRef<float>(f.yp.template data<float>() + b * d, n, d), scratch);
        }
        benchmark::DoNotOptimize(f.yp.template data<float>());
        benchmark::ClobberMemory();
    }
    flop_counters(st, c);
}

template <class X>
void BM_router(benchmark::State& st, ShapeCfg c) {
    auto& f = fixture<X>(c);
    auto& router = f.layer.router();
    router.set_exec(moe::Exec(1));
    moe::RoutingPlan plan;
    const auto x = f.x.template matrix<float>();
    for (auto _ : st) {
        router.route(x, plan);
        benchmark::DoNotOptimize(plan.expert_ids.data());
        benchmark::ClobberMemory();
    }
    st.counters["tokens/s"] = benchmark::Counter(static_cast<double>(c.T), benchmark::Counter::kIsIterationInvariantRate);
    st.counters["router GFLOP/s"] = benchmark::Counter(2e-9 * static_cast<double>(c.T * c.d * c.E),
                                                       benchmark::Counter::kIsIterationInvariantRate);
}

template <class X>
void BM_dense(benchmark::State& st, ShapeCfg c, int threads) {
    auto& f = fixture<X>(c);
    const X& ex = f.layer.experts();
    const auto A = f.a.template matrix<float>();
    auto H = f.h.template matrix<float>();
    auto H2 = f.h2.template matrix<float>();
    auto O = f.out.template matrix<float>();
    const moe::Exec exec(threads);
    // Expert 0's matrices as one dense Linear each (Linear::forward: threads split columns).
    const index_t zero[] = {0};
    auto first = [&](const auto& stack) { return stack.select(zero); };
    for (auto _ : st) {
        if constexpr (requires { ex.fc1(); }) {
            static const auto fc1 = first(ex.fc1()), fc2 = first(ex.fc2());
            fc1.forward(A, H, exec);
            fc2.forward(H, O, exec);
        } else {
            static const auto gate = first(ex.gate()), up = first(ex.up()), down = first(ex.down());
            gate.forward(A, H, exec);
            up.forward(A, H2, exec);
            down.forward(H, O, exec);
        }
        benchmark::DoNotOptimize(O.data);
        benchmark::ClobberMemory();
    }
    flop_counters(st, c);
}

template <template <class> class Experts>
void register_shape(const ShapeCfg& c) {
    const std::string s = c.str();
    auto reg = [](const std::string& name, auto&&... args) {
        benchmark::RegisterBenchmark(name.c_str(), args...)->UseRealTime()->Unit(benchmark::kMillisecond);
    };
    reg("layer/router/" + s + "/threads:1", BM_router<Experts<float>>, c);
    auto per_weight = [&]<class W>() {
        const std::string w = std::string("/w:") + wname<W>();
        for (int n : {1, 2}) {
            const std::string t = "/threads:" + std::to_string(n);
            reg("layer/moe/" + s + w + t, BM_moe<Experts<W>>, c, n);
            reg("layer/experts/" + s + w + t, BM_experts<Experts<W>>, c, n);
            reg("layer/dense/" + s + w + t, BM_dense<Experts<W>>, c, n);
        }
        reg("layer/ffn/" + s + w + "/threads:1", BM_ffn<Experts<W>>, c);
    };
    per_weight.template operator()<float>();
    per_weight.template operator()<moe::bf16>();
    per_weight.template operator()<moe::bf16_dot>();
    per_weight.template operator()<moe::bf16_dot_packed>();
}

const bool registered = [] {
    register_shape<GeluExperts>(kGeluMlp);
    register_shape<SwiGluExperts>(kSwiGlu);
    benchmark::AddCustomContext("moe.simd", moe::cpu::simd_name());
    benchmark::AddCustomContext("moe.max_threads", std::to_string(moe::max_threads()));
    benchmark::AddCustomContext("moe.flops", "useful expert FLOPs only: 2*T*k*(2*d*F) GELU-MLP, 2*T*k*(3*d*F) "
                                             "SwiGLU; router GEMM not counted");
    return true;
}();

}  // namespace
