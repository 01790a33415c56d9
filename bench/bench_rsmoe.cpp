// bench_rsmoe - RS-MoE (issue 18's performance section) on random bf16 weights: three ~1B LoRA
// experts over one LLaMA-3.2-1B-shaped base behind the full InstructBLIP encoder (EVA ViT-g/14 at
// 224, ln_vision, the bert-base Q-Former), one 224 x 224 image, the text router's three prompts
// (32 visual rows + 29 text rows each); beside the bound that says how good the decode figures are
// (this machine's read bandwidth, measured in the same run).
//
//   rsmoe/bandwidth/threads:<n>      sum of a MOE_BENCH_BW_MIB (1024) MiB float buffer over n
//                                    threads (bench/read_bandwidth.hpp): bytes_per_second
//   rsmoe/encoder/threads:<n>        image_embeds (EVA ViT-g + ln_vision, 257 x 1408) + ONE
//                                    instruction-aware Q-Former pass (32 queries + expert 0's 30
//                                    WordPiece ids); one iteration = one image
//   rsmoe/decode/batched/threads:<n> ONE batched decode step of the three experts' sequences (cache
//                                    slots 0, 1, 2 with LoRA adapters 0, 1, 2: lm::Step with three
//                                    one-row sequences; the base weights read once); one iteration
//                                    = one step = 3 tokens
//   rsmoe/decode/sequential/threads:<n>  the same three sequences decoded one after the other: three
//                                    single-sequence decode calls per iteration, each with its
//                                    adapter (the base weights read three times) = "decoding the
//                                    three experts one after the other"; one iteration = 3 tokens
//   rsmoe/decode/{batched,sequential}-base/threads:2   the same without adapters (ids -1: the base
//                                    alone; a diagnostic: what the LoRA deltas cost)
//   rsmoe/caption/threads:2          RsMoe::caption end to end (kEvalInstruction; vision, the text
//                                    router's three Q-Former passes and llm_proj, the three
//                                    prefills, 48 greedy tokens per expert decoded as one batch,
//                                    concat); no stop ids, so every expert makes exactly 48 tokens
//   rsmoe/caption/beams:5/threads:2  the same with LAVIS's generation: 5 beams per expert (15 beams
//                                    in one batch: one decode step = 15 rows), min_length 1
//   .../w:bf16-dot/...               the encoder and decode with load_rsmoe<moe::bf16_dot> (the same
//                                    weights; activations rounded to bf16 at each Linear,
//                                    vdpbf16ps: the arithmetic of PyTorch's bf16 oneDNN linears)
//
// Model: the folder of env MOE_RSMOE_MODEL, default
// ${MOE_CACHE_DIR:-~/.cache/moe}/models/random-rsmoe-1b-bench. When it has no `.complete` marker it
// is written here first: rs::rsmoe::write_random_model(RandomRsMoe::one_b(), seed 23, bf16) (the
// weights examples/rsmoe --config 1b writes, without its tokenizers; 4.8 GB, once). Opened with
// load_rsmoe<W, TextRouter, LoraExperts<W>>, W = moe::bf16 (bf16 weights borrowed from the mmapped
// files, fp32 activations and accumulation) or moe::bf16_dot (one of the two loaded at a time);
// the adapters' A and B are fp32 (cpu::LoraAdapter); fp32 KV cache.
// Text: no tokenizers. RsMoe::set_text_encoders maps each of the text router's three prompts to
// fixed ids (qformer_ids / llm_ids below; tools/bench/torch_rsmoe_bench.py has the same lists):
// Q-Former [CLS]=101 + 28 ids + [SEP]=102, LLM <|begin_of_text|>=128000 + 28 ids.
// Image: a synthetic [3, 224, 224] pixel tensor (pixel_value below, the same formula in the
// script): the computation does not depend on the content.
//
// Counters:
//   encoder  seconds, vision_s (EVA + ln_vision), qformer_s (one pass)
//   decode   tokens/s (3 per iteration); weight_bytes_per_token, kv_bytes_per_token, context,
//            bytes_per_step: what one iteration reads = the base's weights (bench/decode_bench.hpp
//            costs_of: every Linear of the 16 layers bf16, norms fp32, the tied 128256 x 2048 bf16
//            lm_head, one embedding row) once (batched) or three times (sequential) + the three
//            adapters' A and B (fp32) + the KV cache at the timed steps' mean contexts (fp32);
//            bandwidth_GB/s (this run's at n threads), bound_tok/s = bandwidth / bytes per token,
//            bound_fraction = tokens/s / bound_tok/s; adapter_bytes (the three adapters' A and B)
//   caption  seconds (per caption), vision_s, qformer_s (router: three Q-Former passes + llm_proj),
//            prefill_s, decode_s, decode_tokens (3 x 48 = 144), decode_tok/s
//   all      rss_peak_mb (getrusage ru_maxrss: the process's peak so far, the model's load included;
//            the bandwidth buffers are measured before the model is mapped, and the model is larger),
//            rss_file_mb / rss_anon_mb (the resident set at the end, mapped files / heap),
//            weights_mb (the folder's safetensors files), budget_mb = weights_mb + 1000 (issue 18:
//            peak memory at most the weight files + 1 GB; MB = 10^6 bytes)
//
// Environment: MOE_RSMOE_MODEL, MOE_CACHE_DIR, MOE_BENCH_DECODE (decode steps per run, 16),
// MOE_BENCH_NEW_TOKENS (caption tokens per expert, 48), MOE_BENCH_BW_MIB (1024).
// bench/run_rsmoe.sh runs this beside PyTorch.
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "decode_bench.hpp"
#include "moe/moe.hpp"
#include "read_bandwidth.hpp"
#include "rs/rsmoe.hpp"
#include "rs/rsmoe/random.hpp"

namespace {

using moe_bench::argmax;
using moe_bench::bandwidth;
using moe_bench::BM_bandwidth;
using moe_bench::costs_of;
using moe_bench::env_int;

namespace fs = std::filesystem;
namespace rm = moe::rs::rsmoe;
using moe::index_t;
using moe::Tensor;

constexpr int kExperts = 3;
constexpr index_t kTextIds = 28;  // ids between the specials: ~ the length of the router's prompts

index_t decode_steps() { return static_cast<index_t>(env_int("MOE_BENCH_DECODE", 16)); }
index_t new_tokens() { return static_cast<index_t>(env_int("MOE_BENCH_NEW_TOKENS", 48)); }

/// Expert e's prompt ids (e = kExperts: any other text). Realistic lengths, distinct per expert,
/// inside both vocabularies. torch_rsmoe_bench.py's qformer_ids / llm_ids are the same formulas.
std::vector<std::int32_t> qformer_ids(int e) {
    std::vector<std::int32_t> ids{101};
    for (index_t i = 0; i < kTextIds; ++i) ids.push_back(static_cast<std::int32_t>(2000 + 37 * i + 101 * e));
    ids.push_back(102);
    return ids;
}
std::vector<std::int32_t> llm_ids(int e) {
    std::vector<std::int32_t> ids{128000};
    for (index_t i = 0; i < kTextIds; ++i) ids.push_back(static_cast<std::int32_t>(1000 + 53 * i + 211 * e));
    return ids;
}

/// The synthetic image: pixel (c, y, x) of a [3, 224, 224] tensor in about [-1, 1].
Tensor image_pixels(index_t S) {
    Tensor px(moe::DType::f32, {3, S, S});
    float* p = px.data<float>();
    for (index_t c = 0; c < 3; ++c)
        for (index_t y = 0; y < S; ++y)
            for (index_t x = 0; x < S; ++x)
                *p++ = static_cast<float>((x * (c + 1) + y * (3 - c) + 40 * c) % 256) / 127.5f - 1.0f;
    return px;
}

fs::path model_dir() {
    if (const char* m = std::getenv("MOE_RSMOE_MODEL"); m && *m) return m;
    const char* c = std::getenv("MOE_CACHE_DIR");
    const char* h = std::getenv("HOME");
    const fs::path root = c && *c ? fs::path(c) : fs::path(h && *h ? h : "/") / ".cache/moe";
    return root / "models" / "random-rsmoe-1b-bench";
}

/// The random folder, written once (the marker last, so that an interrupted write is redone).
void ensure_model(const fs::path& dir) {
    if (fs::exists(dir / ".complete") || (std::getenv("MOE_RSMOE_MODEL") && fs::exists(dir / "rsmoe.json"))) return;
    std::fprintf(stderr, "bench_rsmoe: writing a random-weight RS-MoE (1b: EVA ViT-g, Q-Former, three LoRA experts "
                         "over a LLaMA-3.2-1B-shaped base; bf16, ~4.8 GB) to %s (once)\n", dir.string().c_str());
    rm::write_random_model(dir, rm::RandomRsMoe::one_b(), {.seed = 23, .dtype = moe::DType::bf16});
    std::ofstream(dir / ".complete") << "written by bench_rsmoe\n";
}

// ---- the model, loaded once per weight policy

template <class W>
using Model = rm::RsMoe<W, rm::TextRouter, rm::LoraExperts<W>>;

template <class W>
struct Loaded {
    std::unique_ptr<Model<W>> model;
    Tensor pixels;
    std::vector<rm::ExpertInput> inputs;  ///< the three experts' LLM inputs (router's prompts)
    moe::lm::KvCache<float> cache;        ///< slots 0..2: the experts' prompts, then the timed steps
    std::array<index_t, kExperts> prompt{};
    std::array<std::int32_t, kExperts> first_id{};  ///< greedy id after each prompt
    double adapter_bytes = 0;                       ///< the three adapters' A and B (fp32)
    double file_bytes = 0;
    std::string error;
};

/// The model with weight policy W (moe_bench::load_policy: one policy's mapping at a time), its
/// three prompts prefilled into cache slots 0..2 (not timed; warms the pages).
template <class W>
Loaded<W>* load(benchmark::State& st) {
    const fs::path dir = model_dir();
    return moe_bench::load_policy<Loaded, W>(st, dir, [&](Loaded<W>& L) {
        ensure_model(dir);
        L.file_bytes = moe_bench::weight_file_bytes(dir);
        L.model = std::make_unique<Model<W>>(rm::load_rsmoe<W, rm::TextRouter, rm::LoraExperts<W>>(dir));
        Model<W>& m = *L.model;
        // the router's prompt texts -> expert index -> fixed ids
        std::vector<std::string> texts;
        for (const rm::ExpertEntry& e : m.config().experts)
            texts.push_back(rm::expand_instruction(e.instruction, m.config().instruction));
        auto which = [texts](std::string_view t) {
            const auto it = std::find(texts.begin(), texts.end(), t);
            return static_cast<int>(std::min<std::ptrdiff_t>(it - texts.begin(), kExperts));
        };
        m.set_text_encoders([which](std::string_view t) { return qformer_ids(which(t)); },
                            [which](std::string_view t) { return llm_ids(which(t)); });
        m.set_exec(moe::Exec(2));
        L.pixels = image_pixels(m.encoder().image_size());
        const Tensor img = m.image_embeds(L.pixels.view());
        L.inputs = m.expert_inputs(img, m.config().instruction);
        moe::check<moe::ConfigError>(static_cast<int>(L.inputs.size()) == kExperts, "bench_rsmoe", "the router gave ",
                                     L.inputs.size(), " expert inputs, expected ", kExperts);
        auto& base = m.experts().base();
        index_t longest = 0;
        for (const rm::ExpertInput& in : L.inputs) longest = std::max(longest, in.x.dim(0));
        L.cache = base.make_cache(kExperts, longest + decode_steps() + 1);
        for (int e = 0; e < kExperts; ++e) {
            const rm::ExpertInput& in = L.inputs[static_cast<std::size_t>(e)];
            L.prompt[static_cast<std::size_t>(e)] = in.x.dim(0);
            L.first_id[static_cast<std::size_t>(e)] = argmax(
                base.prefill(L.cache, e, moe::ConstMatrixRef<float>(in.x.matrix<float>()), -1,
                             moe::lm::LogitRows::last, static_cast<int>(in.expert)));
            L.adapter_bytes += 4.0 * double(base.adapter_parameters(e));
        }
    });
}

template <class W>
void memory_counters(benchmark::State& st, const Loaded<W>& L) {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    st.counters["rss_peak_mb"] = double(u.ru_maxrss) * 1024.0 * 1e-6;
    // the resident set now, split: file pages (the mapped weights) and anonymous (heap: converted
    // weights, the adapters' fp32 copies, workspaces, caches)
    st.counters["rss_file_mb"] = moe_bench::proc_status_bytes("RssFile:") * 1e-6;
    st.counters["rss_anon_mb"] = moe_bench::proc_status_bytes("RssAnon:") * 1e-6;
    st.counters["weights_mb"] = L.file_bytes * 1e-6;
    st.counters["budget_mb"] = L.file_bytes * 1e-6 + 1000.0;
}

template <class W>
void BM_encoder(benchmark::State& st, int threads) {
    Loaded<W>* L = load<W>(st);
    if (!L) return;
    Model<W>& m = *L->model;
    m.set_exec(moe::Exec(threads));
    const std::vector<std::int32_t> ids = qformer_ids(0);
    double vision_s = 0, qformer_s = 0;
    for (auto _ : st) {
        const auto t0 = std::chrono::steady_clock::now();
        const Tensor img = m.image_embeds(L->pixels.view());
        const auto t1 = std::chrono::steady_clock::now();
        Tensor q = m.encoder().qformer(img.matrix<float>(), ids);
        benchmark::DoNotOptimize(q.data<float>());
        vision_s += std::chrono::duration<double>(t1 - t0).count();
        qformer_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    }
    const double n = double(std::max<benchmark::IterationCount>(st.iterations(), 1));
    st.counters["seconds"] = (vision_s + qformer_s) / n;
    st.counters["vision_s"] = vision_s / n;
    st.counters["qformer_s"] = qformer_s / n;
    memory_counters(st, *L);
}

/// Decode steps of the three prompted sequences, batched (one Step of three) or one after the other.
template <class W>
void BM_decode(benchmark::State& st, int threads, bool batched, bool lora = true) {
    Loaded<W>* L = load<W>(st);
    if (!L) return;
    const double bw = bandwidth(threads);
    Model<W>& m = *L->model;
    m.set_exec(moe::Exec(threads));
    auto& base = m.experts().base();
    auto& cache = L->cache;
    const std::array<index_t, kExperts> slots{0, 1, 2};
    const std::array<int, kExperts> adapters = lora ? std::array<int, kExperts>{0, 1, 2} : std::array<int, kExperts>{-1, -1, -1};
    std::array<std::int32_t, kExperts> ids = L->first_id;
    auto restart = [&] {  // O(1): every slot back to its prompt
        for (int e = 0; e < kExperts; ++e) cache.truncate(e, L->prompt[static_cast<std::size_t>(e)]);
        ids = L->first_id;
    };
    restart();
    double ctx_sum = 0;
    std::int64_t steps = 0;
    for (auto _ : st) {
        if (cache.length(0) >= cache.max_seq() || cache.length(1) >= cache.max_seq() || cache.length(2) >= cache.max_seq())
            restart();
        for (int e = 0; e < kExperts; ++e) ctx_sum += double(cache.length(e) + 1);
        ++steps;
        if (batched) {
            const Tensor lg = base.decode(cache, std::span<const index_t>(slots), std::span<const std::int32_t>(ids), {},
                                          std::span<const int>(adapters));
            for (int e = 0; e < kExperts; ++e) ids[static_cast<std::size_t>(e)] = argmax(lg, e);
        } else {
            for (std::size_t e = 0; e < kExperts; ++e) {
                const Tensor lg = base.decode(cache, std::span<const index_t>(&slots[e], 1),
                                              std::span<const std::int32_t>(&ids[e], 1), {},
                                              std::span<const int>(&adapters[e], 1));
                ids[e] = argmax(lg);
            }
        }
    }
    const double ctx = steps ? ctx_sum / double(steps) : 0.0;
    moe_bench::decode_counters(st, costs_of(base.config()), ctx, bw,
                               {.sequences = kExperts, .weight_passes = batched ? 1.0 : double(kExperts),
                                .extra_bytes = lora ? L->adapter_bytes : 0.0});
    st.counters["adapter_bytes"] = lora ? L->adapter_bytes : 0.0;
    memory_counters(st, *L);
}

template <class W>
void BM_caption(benchmark::State& st, int threads, moe::index_t beams = 1) {
    Loaded<W>* L = load<W>(st);
    if (!L) return;
    Model<W>& m = *L->model;
    m.set_exec(moe::Exec(threads));
    rm::CaptionOptions opt;  // greedy, repetition penalty 1.5 (LAVIS's)
    opt.generation.max_new_tokens = new_tokens();
    opt.generation.use_default_stops = false;  // every expert makes exactly max_new_tokens
    opt.generation.stop_ids.clear();
    if (beams > 1) {  // LAVIS's generation: num_beams, min_length 1
        opt.generation.beams.num_beams = beams;
        opt.generation.min_new_tokens = 1;
    }
    double secs = 0, vision = 0, qformer = 0, prefill = 0, decode = 0, tokens = 0;
    for (auto _ : st) {
        const auto t0 = std::chrono::steady_clock::now();
        const rm::Caption cap = m.caption(L->pixels.view(), m.config().instruction, opt);
        secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        vision += cap.vision_seconds;
        qformer += cap.qformer_seconds;
        prefill += cap.prefill_seconds;
        decode += cap.decode_seconds;
        for (const rm::ExpertCaption& e : cap.experts) tokens += double(e.ids.size());
    }
    const double n = double(std::max<benchmark::IterationCount>(st.iterations(), 1));
    st.counters["seconds"] = secs / n;
    st.counters["vision_s"] = vision / n;
    st.counters["qformer_s"] = qformer / n;
    st.counters["prefill_s"] = prefill / n;
    st.counters["decode_s"] = decode / n;
    st.counters["decode_tokens"] = tokens / n;
    st.counters["decode_tok/s"] = decode > 0 ? tokens / decode : 0.0;
    memory_counters(st, *L);
}

const bool registered = [] {
    for (int t : {1, 2})
        benchmark::RegisterBenchmark(("rsmoe/bandwidth/threads:" + std::to_string(t)).c_str(),
                                     [t](benchmark::State& st) { BM_bandwidth(st, t); })
            ->UseRealTime()->Unit(benchmark::kMillisecond);
    for (bool dot : {false, true}) {  // grouped by policy: each model loaded once
        const std::string w = dot ? "/w:bf16-dot" : "";
        for (int t : {1, 2})
            benchmark::RegisterBenchmark(("rsmoe/encoder" + w + "/threads:" + std::to_string(t)).c_str(),
                                         [t, dot](benchmark::State& st) {
                                             if (dot) BM_encoder<moe::bf16_dot>(st, t);
                                             else BM_encoder<moe::bf16>(st, t);
                                         })
                ->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(1);
        for (bool batched : {true, false})
            for (int t : {1, 2})
                benchmark::RegisterBenchmark(("rsmoe/decode/" + std::string(batched ? "batched" : "sequential") + w +
                                              "/threads:" + std::to_string(t)).c_str(),
                                             [t, dot, batched](benchmark::State& st) {
                                                 if (dot) BM_decode<moe::bf16_dot>(st, t, batched);
                                                 else BM_decode<moe::bf16>(st, t, batched);
                                             })
                    ->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(decode_steps());
        // the same two without adapters (the base alone, -1): what the LoRA deltas cost (2 threads, bf16)
        if (!dot)
            for (bool batched : {true, false})
                benchmark::RegisterBenchmark(("rsmoe/decode/" + std::string(batched ? "batched" : "sequential") +
                                              "-base/threads:2").c_str(),
                                             [batched](benchmark::State& st) { BM_decode<moe::bf16>(st, 2, batched, false); })
                    ->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(decode_steps());
        // end to end at the 2 threads, once per run (about half a minute each)
        benchmark::RegisterBenchmark(("rsmoe/caption" + w + "/threads:2").c_str(),
                                     [dot](benchmark::State& st) {
                                         if (dot) BM_caption<moe::bf16_dot>(st, 2);
                                         else BM_caption<moe::bf16>(st, 2);
                                     })
            ->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(1)->Repetitions(1);
        benchmark::RegisterBenchmark(("rsmoe/caption/beams:5" + w + "/threads:2").c_str(),
                                     [dot](benchmark::State& st) {
                                         if (dot) BM_caption<moe::bf16_dot>(st, 2, 5);
                                         else BM_caption<moe::bf16>(st, 2, 5);
                                     })
            ->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(1)->Repetitions(1);
    }
    benchmark::AddCustomContext("moe.simd", moe::cpu::simd_name());
    return true;
}();

}  // namespace
