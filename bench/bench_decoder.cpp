// bench_decoder - the decoder runtime (lm/decoder) end to end on Qwen2-0.5B-sized random bf16
// models (issue 16's performance section), beside the two bounds that say how good a figure is:
// this machine's read bandwidth (decode) and the library's own dense GEMM rate (prefill), both
// measured in the same run at the same thread count.
//
//   decoder/bandwidth/MiB:<B>/threads:<n>          sum of a <B> MiB float buffer (much larger than
//                                                 the LLC, touched once before timing) over n
//                                                 threads (moe::parallel_chunks): bytes_per_second
//   decoder/gemm/M:512/N:4864/K:896/w:bf16/threads:<n>   moe::cpu::Linear<bf16> forward of a
//                                                 [512, 896] fp32 input (Qwen2-0.5B's biggest
//                                                 prefill GEMM, gate/up_proj): GFLOP/s
//   decoder/<model>/prefill/pp:<P>/threads:<n>     one prefill of P random ids from an empty slot,
//                                                 logits of the last token only (LogitRows::last)
//   decoder/<model>/decode/ctx:<P>/tg:<G>/threads:<n>   single-token greedy decode steps (argmax of
//                                                 the logits is the next id) after a P-token prompt;
//                                                 G iterations = G steps, context P+1 .. P+G (the
//                                                 slot is truncated back to the prompt when full)
//   .../w:bf16-dot/threads:<n>                     the same two with the bf16_dot weight policy
//   decoder/<model>/beam/beams:<K>/ctx:32/tg:32/threads:<n>   moe::lm::generate with K beams
//                                                 (LAVIS's 5) and, beside it in every iteration,
//                                                 greedily, from the prompt's first 32 ids, 32 new
//                                                 tokens (no stop ids): beam_steps/s and
//                                                 greedy_steps/s (decode steps per second of each:
//                                                 a beam step decodes K rows, scores K x V
//                                                 candidates, moves cache slots), beam_step_cost =
//                                                 greedy_steps/s / beam_steps/s (a step: the
//                                                 call's time but the prefill, over its steps),
//                                                 beam_model_share = the model's part of a beam step
//
// Models: the folders of tools/bench/make_decoder_models.py (qwen2-0.5b-random: dense;
// qwen2moe-0.5b-random: 8 experts, top-2, gated shared expert), opened with
// moe::lm::open_decoder<moe::bf16> (bf16 weights borrowed from the mmapped file, fp32
// activations and accumulation) and, in the w:bf16-dot benchmarks, open_decoder<moe::bf16_dot>
// (the same weights, activations rounded to bf16 at each Linear, vdpbf16ps); fp32 KV cache. An absent folder is a skipped benchmark (error
// message says how to make it). n = 1 and 2 threads (moe::Exec(n)).
//
// Counters:
//   bandwidth  bytes_per_second (the best repetition's is the decode bound at that thread count)
//   gemm       GFLOP/s = 2 M N K / s (the best repetition's is the prefill's yardstick)
//   prefill    tokens/s; GFLOP/s over 2 x active parameters per token (every Linear of every
//              layer; MoE layers: router + k routed experts + shared expert and its gate; no
//              embedding lookup) x P, lm_head (2 V H) once, attention 2 T^2 heads hd per layer
//              (QK^T and AV over the causal half); gemm_GFLOP/s and gemm_fraction = GFLOP/s /
//              gemm_GFLOP/s
//   decode     tokens/s; weight_bytes_per_token = the weights one step reads: every Linear of
//              every layer (MoE: router gate, the k routed experts, the shared expert and its
//              gate; unused experts not counted) + norms + biases + the whole lm_head (V H
//              bf16) + one embedding row, each at the dtype the runtime holds it (Linear weights
//              bf16; norms, biases, router and shared-expert gates fp32); kv_bytes_per_token =
//              keys + values read by attention at the mean context of the timed steps (fp32);
//              bandwidth_GB/s (this run's figure at n threads), bound_tok/s = bandwidth /
//              (weight + KV bytes), bound_fraction = tokens/s / bound_tok/s; rss_mb = VmRSS after
//              the run (after malloc_trim) and budget_mb = model safetensors + cache.bytes() +
//              100 MB (MB = 10^6 bytes); adjacent_GB/s and adjacent_bound_fraction: the bound
//              against the read bandwidth measured right after the repetition's timed loop
//              (moe_bench::adjacent_bound), seconds from the figure instead of minutes
//
// Environment: MOE_MODELS_DIR (default ${MOE_CACHE_DIR:-~/.cache/moe}/models), MOE_DECODER_MODELS
// (folder names, default "qwen2-0.5b-random qwen2moe-0.5b-random"), MOE_BENCH_PREFILL (prompt
// tokens, 512), MOE_BENCH_DECODE (decode steps per run, 64), MOE_BENCH_BW_MIB (bandwidth buffer,
// 1024). bench/run_decoder.sh runs this beside llama.cpp and PyTorch.
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "lm/decoder.hpp"
#include "moe/moe.hpp"
#include "decode_bench.hpp"
#include "read_bandwidth.hpp"

namespace {

using moe_bench::argmax;
using moe_bench::costs_of;
using moe_bench::Costs;
using moe_bench::env_int;

namespace fs = std::filesystem;
using moe::index_t;
using moe::Tensor;
/// The two weight policies the decoder benchmarks run: bf16 (exact: fp32 arithmetic on the bf16
/// weights, the default) and bf16_dot (activations rounded to bf16, vdpbf16ps: the arithmetic of
/// PyTorch's bf16 linears and llama.cpp's BF16 type).
using DecoderExact = moe::lm::AnyDecoder<moe::bf16>;
using DecoderDot = moe::lm::AnyDecoder<moe::bf16_dot>;

constexpr index_t kGemmM = 512, kGemmN = 4864, kGemmK = 896;  // Qwen2-0.5B: T x (H -> intermediate)
constexpr std::uint64_t kPromptSeed = 16;

index_t prompt_tokens() { return static_cast<index_t>(env_int("MOE_BENCH_PREFILL", 512)); }
index_t decode_steps() { return static_cast<index_t>(env_int("MOE_BENCH_DECODE", 64)); }

fs::path models_dir() {
    if (const char* p = std::getenv("MOE_MODELS_DIR")) return p;
    if (const char* c = std::getenv("MOE_CACHE_DIR")) return fs::path(c) / "models";
    const char* home = std::getenv("HOME");
    return fs::path(home ? home : "") / ".cache/moe/models";
}

std::vector<std::string> model_names() {
    const char* v = std::getenv("MOE_DECODER_MODELS");
    std::istringstream in(v ? v : "qwen2-0.5b-random qwen2moe-0.5b-random");
    std::vector<std::string> out;
    for (std::string s; in >> s;) out.push_back(s);
    return out;
}

// ---- bounds measured in this run, per thread count (the latest run of each benchmark wins)

using moe_bench::bandwidth;
using moe_bench::bandwidth_bytes;
using moe_bench::bandwidth_of;
using moe_bench::BM_bandwidth;

std::map<int, double>& gemm_rate_of() {  // FLOP/s, the best repetition
    static std::map<int, double> m;
    return m;
}
// ---- the library's dense GEMM on the biggest prefill shape

struct GemmCase {
    moe::cpu::Linear<moe::bf16> lin = moe::cpu::Linear<moe::bf16>::random(1, kGemmN, kGemmK, false, 7);
    std::vector<float> x, y;
    GemmCase() : x(static_cast<std::size_t>(kGemmM * kGemmK)), y(static_cast<std::size_t>(kGemmM * kGemmN)) {
        std::mt19937_64 g(3);
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        for (float& v : x) v = u(g);
    }
    void run(const moe::Exec& ex) {
        lin.forward(moe::ConstMatrixRef<float>(x.data(), kGemmM, kGemmK), moe::MatrixRef<float>(y.data(), kGemmM, kGemmN), ex);
    }
    static double flops() { return 2.0 * double(kGemmM) * double(kGemmN) * double(kGemmK); }
};

void BM_gemm(benchmark::State& st, int threads) {
    GemmCase g;
    const moe::Exec ex(threads);
    const auto t0 = std::chrono::steady_clock::now();
    for (auto _ : st) {
        g.run(ex);
        benchmark::DoNotOptimize(g.y.data());
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (st.iterations() > 0 && secs > 0) {  // the best repetition: the prefill's yardstick at this thread count
        double& best = gemm_rate_of()[threads];
        best = std::max(best, GemmCase::flops() * static_cast<double>(st.iterations()) / secs);
    }
    st.counters["GFLOP/s"] = benchmark::Counter(GemmCase::flops() * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

/// This run's GEMM rate at `threads` (FLOP/s; measured here, median of 5 after one warm-up call,
/// when the GEMM benchmark was filtered out).
double gemm_rate(int threads) {
    auto& m = gemm_rate_of();
    if (auto it = m.find(threads); it != m.end()) return it->second;
    GemmCase g;
    const moe::Exec ex(threads);
    g.run(ex);
    std::vector<double> t;
    for (int r = 0; r < 5; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        g.run(ex);
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    return m[threads] = GemmCase::flops() / t[2];
}

// ---- what a token costs, from the config

// ---- the models: one loaded at a time (the benchmarks are grouped by model)

struct Loaded {
    std::string name;
    bool dot = false;  ///< bf16_dot (else bf16)
    std::unique_ptr<DecoderExact> exact;
    std::unique_ptr<DecoderDot> dotted;
    moe::lm::KvCache<float> cache;  ///< slot 0: decode (holds the prompt), slot 1: prefill
    moe::lm::DecoderConfig config;
    std::vector<std::int32_t> prompt;
    std::int32_t first_id = 0;  ///< greedy id after the prompt
    double file_bytes = 0;
    std::string error;
};

/// f(model) with the loaded model, whichever policy it has.
template <class F>
void with_model(Loaded& L, F&& f) {
    if (L.exact) std::visit(f, *L.exact);
    else std::visit(f, *L.dotted);
}

Loaded* load(benchmark::State& st, const std::string& name, bool dot) {
    static std::unique_ptr<Loaded> cur;
    if (cur && cur->name == name && cur->dot == dot) {
        if (!cur->error.empty()) st.SkipWithError(cur->error.c_str());
        return cur->error.empty() ? cur.get() : nullptr;
    }
    cur.reset();  // the previous model and its mapping go first
    malloc_trim(0);
    cur = std::make_unique<Loaded>();
    cur->name = name;
    cur->dot = dot;
    const fs::path dir = models_dir() / name;
    if (!fs::exists(dir / "config.json")) {
        cur->error = "no model folder " + dir.string() + ": run tools/bench/make_decoder_models.py";
        st.SkipWithError(cur->error.c_str());
        return nullptr;
    }
    try {
        if (dot) cur->dotted = std::make_unique<DecoderDot>(moe::lm::open_decoder<moe::bf16_dot>(dir));
        else cur->exact = std::make_unique<DecoderExact>(moe::lm::open_decoder<moe::bf16>(dir));
    } catch (const std::exception& e) {
        cur->error = "cannot open " + dir.string() + ": " + e.what();
        st.SkipWithError(cur->error.c_str());
        return nullptr;
    }
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".safetensors") cur->file_bytes += double(e.file_size());
    const index_t P = prompt_tokens(), G = decode_steps();
    with_model(*cur, [&](auto& m) {
        cur->config = m.config();
        cur->cache = m.template make_cache<float>(2, P + G);
        std::mt19937_64 g(kPromptSeed);
        std::uniform_int_distribution<std::int32_t> u(0, static_cast<std::int32_t>(m.config().vocab_size - 1));
        for (index_t i = 0; i < P; ++i) cur->prompt.push_back(u(g));
        m.set_exec(moe::Exec(2));  // the decode slot's prompt, once per model (not timed)
        cur->first_id = argmax(m.prefill(cur->cache, 0, std::span<const std::int32_t>(cur->prompt), -1,
                                         moe::lm::LogitRows::last));
    });
    return cur.get();
}

void BM_prefill(benchmark::State& st, const std::string& name, bool dot, int threads) {
    Loaded* L = load(st, name, dot);
    if (!L) return;
    const index_t P = static_cast<index_t>(L->prompt.size());
    const std::span<const std::int32_t> ids(L->prompt);
    const double gemm = gemm_rate(threads);
    with_model(*L, [&](auto& m) {
        m.set_exec(moe::Exec(threads));
        for (auto _ : st) {
            L->cache.reset(1);
            Tensor lg = m.prefill(L->cache, 1, ids, -1, moe::lm::LogitRows::last);
            benchmark::DoNotOptimize(lg.raw());
        }
    });
    const moe::lm::DecoderConfig& c = L->config;
    const Costs k = costs_of(c);
    const double attn = double(c.num_hidden_layers) * 2.0 * double(P) * double(P) *
                        double(c.num_attention_heads) * double(c.head_dim);
    const double flops = 2.0 * k.active_params * double(P) + 2.0 * k.lm_head_params + attn;
    st.counters["tokens/s"] = benchmark::Counter(double(P), benchmark::Counter::kIsIterationInvariantRate);
    st.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    st.counters["gemm_GFLOP/s"] = gemm * 1e-9;
    // gemm_fraction needs the elapsed time, which a counter cannot see: kIsIterationInvariantRate
    // divides by it, so pass flops / gemm as the "per iteration" amount.
    st.counters["gemm_fraction"] = benchmark::Counter(flops / gemm, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_decode(benchmark::State& st, const std::string& name, bool dot, int threads) {
    Loaded* L = load(st, name, dot);
    if (!L) return;
    const index_t P = static_cast<index_t>(L->prompt.size());
    const double bw = bandwidth(threads);
    double ctx = double(P);
    with_model(*L, [&](auto& m) {
        m.set_exec(moe::Exec(threads));
        ctx = moe_bench::run_decode_steps(st, m, L->cache, P, L->first_id);
    });
    moe_bench::decode_counters(st, costs_of(L->config), ctx, bw);
    malloc_trim(0);
    st.counters["rss_mb"] = moe_bench::proc_status_bytes("VmRSS:") * 1e-6;
    st.counters["budget_mb"] = (L->file_bytes + double(L->cache.bytes())) * 1e-6 + 100.0;
    moe_bench::adjacent_bound(st, threads);
}

void BM_beam(benchmark::State& st, const std::string& name, index_t beams, int threads) {
    Loaded* L = load(st, name, false);
    if (!L) return;
    constexpr index_t P = 32, G = 32;
    double beam_s = 0, greedy_s = 0, beam_model_s = 0, greedy_model_s = 0, beam_steps = 0, greedy_steps = 0;
    with_model(*L, [&](auto& m) {
        m.set_exec(moe::Exec(threads));
        auto cache = m.template make_cache<float>(beams, P + G + 1);
        moe::lm::GenerationOptions o;
        o.sampling.temperature = 0;
        o.max_new_tokens = G;
        o.use_default_stops = false;
        const std::span<const std::int32_t> prompt(L->prompt.data(), static_cast<std::size_t>(P));
        // a step's time: the whole call's but the prefill (the candidates' scoring and the cache
        // moves included); decode_seconds: the model's share of it
        const auto timed = [&](double& total, double& model_s, double& steps) {
            const auto t0 = std::chrono::steady_clock::now();
            const moe::lm::GenerationResult r = moe::lm::generate(m, cache, prompt, o);
            total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() - r.prefill_seconds;
            model_s += r.decode_seconds;
            steps += double(r.decode_tokens) / double(o.beams.num_beams);
        };
        for (auto _ : st) {
            o.beams.num_beams = beams;
            timed(beam_s, beam_model_s, beam_steps);
            o.beams.num_beams = 1;
            timed(greedy_s, greedy_model_s, greedy_steps);
        }
    });
    st.counters["beam_steps/s"] = beam_steps / beam_s;
    st.counters["greedy_steps/s"] = greedy_steps / greedy_s;
    st.counters["beam_step_cost"] = (greedy_steps / greedy_s) / (beam_steps / beam_s);
    st.counters["beam_model_share"] = beam_model_s / beam_s;
}

// ---- registration: bounds first, then model by model (each model loaded once)

const bool registered = [] {
    auto cat = [](std::initializer_list<std::string> parts) {
        std::string s;
        for (const auto& p : parts) s.append(p);
        return s;
    };
    const std::string mib = std::to_string(bandwidth_bytes() >> 20);
    for (int t : {1, 2})
        benchmark::RegisterBenchmark(cat({"decoder/bandwidth/MiB:", mib, "/threads:", std::to_string(t)}).c_str(),
                                     [t](benchmark::State& st) { BM_bandwidth(st, t); })
            ->UseRealTime()->Unit(benchmark::kMillisecond);
    for (int t : {1, 2})
        benchmark::RegisterBenchmark(cat({"decoder/gemm/M:", std::to_string(kGemmM), "/N:", std::to_string(kGemmN), "/K:",
                                          std::to_string(kGemmK), "/w:bf16/threads:", std::to_string(t)}).c_str(),
                                     [t](benchmark::State& st) { BM_gemm(st, t); })
            ->UseRealTime()->Unit(benchmark::kMillisecond);
    const std::string P = std::to_string(prompt_tokens()), G = std::to_string(decode_steps());
    for (const std::string& name : model_names())
        for (bool dot : {false, true}) {
            const std::string w = dot ? "/w:bf16-dot" : "";  // the default policy's names as before
            for (int t : {1, 2})
                benchmark::RegisterBenchmark(
                    cat({"decoder/", name, "/prefill/pp:", P, w, "/threads:", std::to_string(t)}).c_str(),
                    [name, dot, t](benchmark::State& st) { BM_prefill(st, name, dot, t); })
                    ->UseRealTime()->Unit(benchmark::kMillisecond);
            for (int t : {1, 2})
                benchmark::RegisterBenchmark(
                    cat({"decoder/", name, "/decode/ctx:", P, "/tg:", G, w, "/threads:", std::to_string(t)}).c_str(),
                    [name, dot, t](benchmark::State& st) { BM_decode(st, name, dot, t); })
                    ->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(decode_steps());
            if (!dot)
                for (int t : {1, 2})
                    benchmark::RegisterBenchmark(
                        cat({"decoder/", name, "/beam/beams:5/ctx:32/tg:32/threads:", std::to_string(t)}).c_str(),
                        [name, t](benchmark::State& st) { BM_beam(st, name, 5, t); })
                        ->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(3);
        }
    benchmark::AddCustomContext("moe.simd", moe::cpu::simd_name());
    return true;
}();

}  // namespace
