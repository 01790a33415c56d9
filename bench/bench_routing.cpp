// bench/bench_routing.cpp - the fused routing kernel (softmax -> top-k -> renormalise) against
// two baselines on the same logits buffer:
//
//   route/fused/T:../E:../k:..   moe::cpu::topk_route, fp32 logits, 1 thread
//   route/naive/T:../E:../k:..   scalar: full softmax per token, then std::partial_sort (context)
//   route/read_once/T:../E:..    sums the logits buffer once with a vectorised loop: the
//                                memory-bandwidth bound of any kernel that reads every logit
//
// T in {1, 32, 512, 8192, 65536} x (E, k) in {(8, 2), (64, 8), (128, 8), (256, 8)}. Logits are
// standard normal from a fixed seed; a T-token benchmark uses the first T rows of one
// 65536 x E buffer per E (so small T stays cache-resident, exactly as for the read-once
// baseline). Counters: tokens/s and bytes/s (logit bytes read, T * E * 4 per call), both over
// wall-clock time. tools/bench/torch_routing.py measures PyTorch under the same names and
// tools/bench/report.py joins the two.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "moe/moe.hpp"
#include "read_bandwidth.hpp"

namespace {

constexpr moe::index_t kMaxTokens = 65536;
constexpr std::uint64_t kSeed = 20240607;

const int kTokens[] = {1, 32, 512, 8192, 65536};
const std::pair<int, int> kExpertsK[] = {{8, 2}, {64, 8}, {128, 8}, {256, 8}};

/// One 65536 x E buffer of N(0, 1) logits per E (64-byte aligned), made on first use.
const float* logits_for(moe::index_t E) {
    static std::map<moe::index_t, moe::Tensor> cache;
    auto it = cache.find(E);
    if (it == cache.end()) {
        moe::Tensor t(moe::DType::f32, moe::Shape{kMaxTokens, E});
        std::mt19937_64 rng(kSeed + static_cast<std::uint64_t>(E));
        std::normal_distribution<float> n(0.0f, 1.0f);
        for (float& v : t.span<float>()) v = n(rng);
        it = cache.emplace(E, std::move(t)).first;
    }
    return it->second.data<float>();
}

/// The naive reference: full softmax, then partial_sort of the indices; ties to the lower index.
void route_naive(const float* logits, moe::index_t T, moe::index_t E, moe::index_t k, std::int32_t* ids, float* w,
                 std::vector<float>& p, std::vector<std::int32_t>& idx) {
    p.resize(static_cast<std::size_t>(E));
    idx.resize(static_cast<std::size_t>(E));
    for (moe::index_t t = 0; t < T; ++t) {
        const float* row = logits + t * E;
        float m = row[0];
        for (moe::index_t e = 1; e < E; ++e) m = std::max(m, row[e]);
        float sum = 0.0f;
        for (moe::index_t e = 0; e < E; ++e) sum += (p[static_cast<std::size_t>(e)] = std::exp(row[e] - m));
        for (moe::index_t e = 0; e < E; ++e) p[static_cast<std::size_t>(e)] /= sum;
        std::iota(idx.begin(), idx.end(), 0);
        std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](std::int32_t a, std::int32_t b) {
            const float pa = p[static_cast<std::size_t>(a)], pb = p[static_cast<std::size_t>(b)];
            return pa > pb || (pa == pb && a < b);
        });
        float ws = 0.0f;
        for (moe::index_t j = 0; j < k; ++j) ws += p[static_cast<std::size_t>(idx[static_cast<std::size_t>(j)])];
        for (moe::index_t j = 0; j < k; ++j) {
            ids[t * k + j] = idx[static_cast<std::size_t>(j)];
            w[t * k + j] = p[static_cast<std::size_t>(idx[static_cast<std::size_t>(j)])] / ws;
        }
    }
}

using moe_bench::read_once;

void set_counters(benchmark::State& st, moe::index_t T, moe::index_t E) {
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * T * E * static_cast<std::int64_t>(sizeof(float)));
    st.counters["tokens/s"] = benchmark::Counter(static_cast<double>(T), benchmark::Counter::kIsIterationInvariantRate);
    st.counters["T"] = static_cast<double>(T);
    st.counters["E"] = static_cast<double>(E);
}

void BM_route_fused(benchmark::State& st, moe::index_t T, moe::index_t E, moe::index_t k) {
    const float* L = logits_for(E);
    const moe::ConstMatrixRef<float> m(L, T, E);
    moe::RouteRule spec;
    spec.k = k;
    spec.scoring = moe::Scoring::softmax;
    spec.renormalize = true;
    std::vector<std::int32_t> ids(static_cast<std::size_t>(T * k));
    std::vector<float> w(static_cast<std::size_t>(T * k));
    moe::cpu::RouteWorkspace ws;

    // Once: the fused kernel must agree with the naive reference on the first tokens.
    {
        moe::cpu::topk_route(m, spec, ids.data(), w.data(), ws, moe::Exec(1));
        const moe::index_t n = std::min<moe::index_t>(T, 256);
        std::vector<std::int32_t> rid(static_cast<std::size_t>(n * k));
        std::vector<float> rw(static_cast<std::size_t>(n * k)), p;
        std::vector<std::int32_t> idx;
        route_naive(L, n, E, k, rid.data(), rw.data(), p, idx);
        for (std::size_t i = 0; i < rid.size(); ++i)
            if (rid[i] != ids[i] || std::abs(rw[i] - w[i]) > 1e-5f) {
                st.SkipWithError("fused routing disagrees with the naive reference");
                return;
            }
    }
    for (auto _ : st) {
        moe::cpu::topk_route(m, spec, ids.data(), w.data(), ws, moe::Exec(1));
        benchmark::DoNotOptimize(ids.data());
        benchmark::DoNotOptimize(w.data());
        benchmark::ClobberMemory();
    }
    set_counters(st, T, E);
    st.counters["k"] = static_cast<double>(k);
}

void BM_route_naive(benchmark::State& st, moe::index_t T, moe::index_t E, moe::index_t k) {
    const float* L = logits_for(E);
    std::vector<std::int32_t> ids(static_cast<std::size_t>(T * k));
    std::vector<float> w(static_cast<std::size_t>(T * k)), p;
    std::vector<std::int32_t> idx;
    for (auto _ : st) {
        route_naive(L, T, E, k, ids.data(), w.data(), p, idx);
        benchmark::DoNotOptimize(ids.data());
        benchmark::DoNotOptimize(w.data());
        benchmark::ClobberMemory();
    }
    set_counters(st, T, E);
    st.counters["k"] = static_cast<double>(k);
}

void BM_route_read_once(benchmark::State& st, moe::index_t T, moe::index_t E) {
    const float* L = logits_for(E);
    const auto n = static_cast<std::size_t>(T * E);
    for (auto _ : st) {
        float s = read_once(L, n);
        benchmark::DoNotOptimize(s);
        benchmark::ClobberMemory();
    }
    set_counters(st, T, E);
}

std::string shape_name(int T, int E) { return "T:" + std::to_string(T) + "/E:" + std::to_string(E); }

const bool registered = [] {
    for (const auto& [E, k] : kExpertsK) {
        for (int T : kTokens) {
            const std::string s = shape_name(T, E);
            const std::string sk = s + "/k:" + std::to_string(k);
            benchmark::RegisterBenchmark(("route/fused/" + sk).c_str(), BM_route_fused, T, E, k)->UseRealTime();
            benchmark::RegisterBenchmark(("route/read_once/" + s).c_str(), BM_route_read_once, T, E)->UseRealTime();
            benchmark::RegisterBenchmark(("route/naive/" + sk).c_str(), BM_route_naive, T, E, k)->UseRealTime();
        }
    }
    benchmark::AddCustomContext("moe.simd", moe::cpu::simd_name());
    benchmark::AddCustomContext("moe.bench", "fused routing kernel, 1 thread, fp32 logits ~ N(0,1)");
    return true;
}();

}  // namespace
