// bench/bench_hierarchical.cpp - RingMoE's hierarchical multi-modal MoE layer (HierarchicalMoE:
// modal switch + collaborative group + shared expert), fp32, at two stages of RingMoE's encoder.
//
// Shapes (C hidden, F = 4C, M = 4 modalities x 1 image each, batch ordered by modality):
//   stage1/C:448/F:1792/T:9216   48 x 48 = 2304 tokens per image, 4 images -> 9216 tokens
//   stage3/C:1792/F:7168/T:576   12 x 12 = 144 tokens per image, 4 images -> 576 tokens
// Every layer: 4 modal experts per modality (16), 4 collaborative experts, 1 shared expert, all
// GELU (tanh) MLPs C -> F -> C with biases; top-1, capacity factor 1.2 per routed group
// (capacity ceil(tokens_in_group * 1.2 / 4)), renormalised combine (weight 1), as
// moe::rs::ringmoe::load_moe_modal builds it. Weights uniform +-1/sqrt(fan_in), routers likewise,
// input N(0, 1) (fixed seeds): routing is near-balanced and a few tokens overflow.
//
// Benchmarks:
//   hier/moe/<shape>/threads:<n>   HierarchicalMoE::forward(x, chunks, y), n = 1, 2 (OpenMP
//                                  threads: omp_set_num_threads(n) plus set_exec(Exec(n)) on the
//                                  layer, which passes it to its five routers)
//
// Counters (over wall-clock time):
//   tokens/s
//   GFLOP/s     useful expert FLOPs only: every token through 3 FFNs (its modal expert, its
//               collaborative expert, the shared expert), 2 GEMMs each: 3 * 2 * 2 * C * F per
//               token; the nominal count (tokens dropped by capacity still counted), router
//               GEMMs, activations, biases, permutation and combine not counted
//   kept        fraction of the 2 * T routed choices that fit their expert's capacity
// The PyTorch reference (tools/reference/ringmoe_moe.py) is timed under the same names by
// tools/bench/torch_hierarchical.py; bench/run_hierarchical.sh runs both and prints the ratio.
#include <benchmark/benchmark.h>

#include <omp.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "moe/moe.hpp"
#include "rs/ringmoe/moe_modal.hpp"

namespace {

using moe::index_t;
using Experts = moe::MlpExperts<moe::GeluTanh, float>;
using Layer = moe::HierarchicalMoE<Experts, Experts, moe::SharedExperts<Experts>>;

struct StageCfg {
    const char* name;
    index_t C, F, tokens_per_image;
    int modalities = 4, images_per_modality = 1;
    index_t modal_experts = 4, collab_experts = 4;
    index_t T() const { return tokens_per_image * modalities * images_per_modality; }
    std::string str() const {
        return std::string(name) + "/C:" + std::to_string(C) + "/F:" + std::to_string(F) + "/T:" + std::to_string(T());
    }
    double flops() const { return 3.0 * 2.0 * 2.0 * static_cast<double>(T()) * static_cast<double>(C * F); }
};

const StageCfg kStage1{"stage1", 448, 1792, 48 * 48};
const StageCfg kStage3{"stage3", 1792, 7168, 12 * 12};
constexpr std::uint64_t kSeed = 4242;

struct Fixture {
    StageCfg cfg;
    Layer layer;
    moe::Tensor x, y;
    std::vector<moe::ModalityChunk> chunks;

    explicit Fixture(const StageCfg& c) : cfg(c) {
        std::vector<moe::Gate> gates;
        std::vector<Experts> modal;
        std::uint64_t s = kSeed;
        for (int m = 0; m < c.modalities; ++m, s += 3) {
            gates.push_back(moe::Gate::random(c.modal_experts, c.C, s));
            modal.push_back(Experts::random(c.modal_experts, c.C, c.F, s + 1, true));
        }
        moe::Gate collab_gate = moe::Gate::random(c.collab_experts, c.C, s);
        Experts collab = Experts::random(c.collab_experts, c.C, c.F, s + 1, true);
        moe::SharedExperts<Experts> shared(Experts::random(1, c.C, c.F, s + 3, true));
        moe::HierarchicalOptions o;  // RingMoE's: top-1, cf 1.2, renormalised, c = 8, 0.001
        layer = Layer(std::move(gates), std::move(modal), std::move(collab_gate), std::move(collab), std::move(shared), o);
        x = moe::Tensor(moe::DType::f32, moe::Shape{c.T(), c.C});
        y = moe::Tensor(moe::DType::f32, moe::Shape{c.T(), c.C});
        std::mt19937_64 rng(kSeed + 99);
        std::normal_distribution<float> n(0.0f, 1.0f);
        for (float& v : x.span<float>()) v = n(rng);
        chunks = moe::rs::ringmoe::modality_chunks(c.modalities * c.images_per_modality, c.tokens_per_image, c.modalities);
    }

    void set_threads(int n) {
        omp_set_num_threads(n);
        layer.set_exec(moe::Exec(n));
    }

    double kept_fraction() const {
        double kept = static_cast<double>(layer.collab_plan().num_slots()), asked = static_cast<double>(cfg.T());
        for (int m = 0; m < layer.modalities(); ++m) {
            kept += static_cast<double>(layer.modal_plan(m).num_slots());
            asked += static_cast<double>(layer.modal_plan(m).num_tokens);
        }
        return kept / asked;
    }
};

Fixture& fixture(const StageCfg& c) {
    static std::map<std::string, std::unique_ptr<Fixture>> cache;
    auto& f = cache[c.name];
    if (!f) f = std::make_unique<Fixture>(c);
    return *f;
}

void BM_hier(benchmark::State& st, StageCfg c, int threads) {
    auto& f = fixture(c);
    const int saved = omp_get_max_threads();
    f.set_threads(threads);
    const auto x = f.x.matrix<float>();
    auto y = f.y.matrix<float>();
    f.layer.forward(x, f.chunks, y);  // warm-up: workspaces sized
    for (auto _ : st) {
        f.layer.forward(x, f.chunks, y);
        benchmark::DoNotOptimize(y.data);
        benchmark::ClobberMemory();
    }
    for (float v : f.y.span<float>())
        if (!std::isfinite(v)) {
            st.SkipWithError("non-finite output");
            break;
        }
    st.counters["GFLOP/s"] = benchmark::Counter(c.flops() * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    st.counters["tokens/s"] =
        benchmark::Counter(static_cast<double>(c.T()), benchmark::Counter::kIsIterationInvariantRate);
    st.counters["kept"] = f.kept_fraction();
    st.counters["aux_loss"] = f.layer.losses().total;
    omp_set_num_threads(saved);
}

const bool registered = [] {
    for (const StageCfg* c : {&kStage1, &kStage3})
        for (int n : {1, 2})
            benchmark::RegisterBenchmark(("hier/moe/" + c->str() + "/threads:" + std::to_string(n)).c_str(), BM_hier,
                                         *c, n)
                ->UseRealTime()
                ->Unit(benchmark::kMillisecond);
    benchmark::AddCustomContext("moe.simd", moe::cpu::simd_name());
    benchmark::AddCustomContext("moe.max_threads", std::to_string(moe::max_threads()));
    benchmark::AddCustomContext("moe.flops", "useful expert FLOPs only: 3 FFNs per token (modal, collaborative, "
                                             "shared) x 2 GEMMs x 2*C*F, nominal (dropped tokens counted); routers, "
                                             "activations, biases, permutation not counted");
    return true;
}();

}  // namespace
