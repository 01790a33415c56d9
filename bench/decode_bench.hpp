// bench/decode_bench.hpp - what the decoder benchmarks (bench_decoder, bench_rsunivlm, bench_rsmoe) share:
// environment numbers, the greedy pick, /proc/self/status, the bytes a decode step reads, the
// timed decode loop with its bandwidth-bound counters, and one loaded model per weight policy.
#pragma once

#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <type_traits>

#include "lm/decoder/config.hpp"
#include "lm/decoder/kv_cache.hpp"
#include "moe/core/precision.hpp"
#include "moe/core/tensor.hpp"
#include "read_bandwidth.hpp"

namespace moe_bench {

using moe::index_t;

/// A positive integer from the environment, else dflt.
inline long env_int(const char* name, long dflt) {
    const char* v = std::getenv(name);
    if (!v || !*v) return dflt;
    const long x = std::strtol(v, nullptr, 10);
    return x > 0 ? x : dflt;
}

/// The greedy id of row `row` (default the first) of logits [rows, V].
inline std::int32_t argmax(const moe::Tensor& logits, index_t row = 0) {
    const index_t V = logits.dim(logits.rank() - 1);
    const float* p = logits.data<float>() + row * V;
    return static_cast<std::int32_t>(std::max_element(p, p + V) - p);
}

/// A "VmRSS:" / "VmHWM:" line of /proc/self/status, in bytes (0 when absent).
inline double proc_status_bytes(const char* key) { return proc_kb_line("/proc/self/status", key); }

/// What a decode step of a model of config `c` reads: every Linear of every layer (MoE layers:
/// router gate, the k routed experts, the shared expert and its gate; a G-MoE layer: its one
/// expert, as a dense SwiGLU) + norms + biases + the whole lm_head + one embedding row, at the
/// dtype the runtime holds each (Linear weights and embeddings bf16; norms, biases, gates fp32).
struct Costs {
    double weight_bytes = 0;      ///< weights one decode step reads (bytes)
    double active_params = 0;     ///< parameters a token passes through, without embedding and lm_head
    double lm_head_params = 0;    ///< V * H
    double kv_bytes_per_pos = 0;  ///< keys + values of one position, all layers (fp32 cache)
};

inline Costs costs_of(const moe::lm::DecoderConfig& c) {
    const double H = double(c.hidden_size), V = double(c.vocab_size), hd = double(c.head_dim);
    const double qd = double(c.num_attention_heads) * hd, kvd = double(c.num_key_value_heads) * hd;
    constexpr double w = 2.0, f = 4.0;  // bf16 Linear weights; fp32 norms, biases, gates
    Costs k;
    for (index_t i = 0; i < c.num_hidden_layers; ++i) {
        double wp = qd * H + 2 * kvd * H + H * qd;  // bf16 weights, in parameters
        double fp = 2 * H;                          // fp32 parameters: the two norms
        if (c.qkv_bias) fp += qd + 2 * kvd;
        if (c.o_bias) fp += H;
        if (c.ffn == moe::lm::FfnKind::gmoe) {  // RSUniVLM: one SwiGLU expert per request, no router
            wp += 3 * double(c.intermediate_size) * H;
            if (c.mlp_bias) fp += 2 * double(c.intermediate_size) + H;
        } else if (c.sparse_layer(i)) {
            const double E = double(c.num_experts), topk = double(c.num_experts_per_tok);
            fp += E * H;  // router gate (fp32 in moe::Gate)
            wp += topk * 3 * double(c.moe_intermediate_size) * H;
            if (c.shared_expert_intermediate_size > 0) {
                wp += 3 * double(c.shared_expert_intermediate_size) * H;
                fp += H;  // shared_expert_gate [1, H], fp32
            }
        } else {
            wp += 3 * double(c.intermediate_size) * H;
            if (c.mlp_bias) fp += 2 * double(c.intermediate_size) + H;
        }
        k.weight_bytes += w * wp + f * fp;
        k.active_params += wp + fp;
    }
    k.lm_head_params = V * H;
    k.weight_bytes += f * H + w * V * H + w * H;  // final norm, lm_head, one embedding row
    k.kv_bytes_per_pos = 2.0 * double(c.num_hidden_layers) * kvd * double(sizeof(float));
    return k;
}

/// Greedy single-token decode steps of cache slot 0, which holds a prompt of `prompt` positions,
/// one per iteration of `st` (the slot is truncated back to the prompt when full; `expert`: the
/// sequence's expert for request-routed FFN slots, -1 none). Returns the mean context a step's
/// attention read.
template <class Model, class T>
double run_decode_steps(benchmark::State& st, Model& m, moe::lm::KvCache<T>& cache, index_t prompt,
                        std::int32_t first_id, int expert = -1) {
    const index_t slot = 0;
    double ctx_sum = 0;
    std::int64_t steps = 0;
    cache.truncate(slot, prompt);
    std::int32_t id = first_id;
    const std::span<const int> experts(&expert, expert >= 0 ? 1 : 0);
    for (auto _ : st) {
        if (cache.length(slot) >= cache.max_seq()) {  // O(1): back to the prompt
            cache.truncate(slot, prompt);
            id = first_id;
        }
        ctx_sum += double(cache.length(slot) + 1);  // positions this step's attention reads
        ++steps;
        const moe::Tensor lg =
            m.decode(cache, std::span<const index_t>(&slot, 1), std::span<const std::int32_t>(&id, 1), experts);
        id = argmax(lg);
    }
    return steps ? ctx_sum / double(steps) : double(prompt);
}

/// What one timed iteration of a decode benchmark reads beyond one sequence's step: a batched
/// multi-sequence step reads the weights once for `sequences` tokens; decoding those sequences one
/// after the other reads them `weight_passes` times; `extra_bytes` are read besides (e.g. the LoRA
/// adapters' A and B).
struct StepReads {
    double sequences = 1;      ///< tokens one iteration produces
    double weight_passes = 1;  ///< times one iteration reads Costs::weight_bytes
    double extra_bytes = 0;    ///< other bytes one iteration reads
};

/// The decode counters: tokens/s, the bytes a step reads at mean context `ctx` (positions its
/// attention reads, summed over the step's sequences), and the bound at read bandwidth `bw`
/// (bytes/s): bound_tok/s = bw / bytes per token, bound_fraction = tokens/s / bound. With the
/// default StepReads (one sequence) the counters are bench_decoder's; otherwise bytes_per_step is
/// added and the per-token figures are the step's divided by its tokens.
inline void decode_counters(benchmark::State& st, const Costs& k, double ctx, double bw, const StepReads& r = {}) {
    const double kv = k.kv_bytes_per_pos * ctx;
    const double weights = r.weight_passes * k.weight_bytes + r.extra_bytes;
    const double step = weights + kv;
    const double bound = bw / step * r.sequences;  // tokens/s if every byte came at the measured rate
    st.counters["tokens/s"] = benchmark::Counter(r.sequences, benchmark::Counter::kIsIterationInvariantRate);
    st.counters["weight_bytes_per_token"] = weights / r.sequences;
    st.counters["kv_bytes_per_token"] = kv / r.sequences;
    st.counters["context"] = ctx / r.sequences;
    st.counters["bandwidth_GB/s"] = bw * 1e-9;
    st.counters["bound_tok/s"] = bound;
    st.counters["bound_fraction"] =
        benchmark::Counter(r.sequences / bound, benchmark::Counter::kIsIterationInvariantRate);
    if (r.sequences != 1 || r.weight_passes != 1 || r.extra_bytes != 0) st.counters["bytes_per_step"] = step;
    // How much of the model's mapping 2 MiB pages hold (moe/io/mapped_file.hpp): decode reads faster
    // from those; the page cache gives them to files read from disk, not to files still cached
    // from being written (tools/bench/page_cache.py evict).
    st.counters["huge_mapped_MB"] = smaps_rollup_bytes("FilePmdMapped:") * 1e-6;
}

/// After decode_counters (and the memory counters: the probe's buffer must not reach them; a
/// benchmark that reports the process's peak RSS cannot use it, bench_rsunivlm's decode): the
/// bound again, against the read bandwidth measured now, right after this repetition's timed
/// loop (adjacent_GB/s, adjacent_bound_fraction). The run's bound (bandwidth_GB/s, measured once
/// before the models load) can be minutes older than the figure it bounds, and this VM's read
/// bandwidth moves 1.5-2x within the hour; seconds apart, both see the same machine.
inline void adjacent_bound(benchmark::State& st, int threads) {
    const double bw = st.counters["bandwidth_GB/s"].value * 1e9;
    // measure_bandwidth's 1 GiB buffer, not a smaller one: this VM reports a 508 MiB L3 (its
    // host's; 32 MiB per CCD), and a 128 MiB buffer read 25-41 GB/s at 1 thread where 1 GiB read
    // 25-31.
    const double adj = measure_bandwidth(threads);
    const benchmark::Counter f = st.counters["bound_fraction"];
    st.counters["adjacent_GB/s"] = adj * 1e-9;
    st.counters["adjacent_bound_fraction"] = benchmark::Counter(f.value * bw / adj, f.flags);
}

/// The bytes of a model folder's safetensors files (its own and its sub-folders').
inline double weight_file_bytes(const std::filesystem::path& dir) {
    double n = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
        if (e.is_regular_file() && e.path().extension() == ".safetensors") n += double(e.file_size());
    return n;
}

/// Where the model of weight policy W lives (Loaded<W>: the benchmark's own record, with a
/// `model` pointer and an `error` string).
template <template <class> class Loaded, class W>
std::unique_ptr<Loaded<W>>& policy_slot() {
    static std::unique_ptr<Loaded<W>> cur;
    return cur;
}

/// The model of weight policy W (moe::bf16 or moe::bf16_dot), made on first use by fill(record)
/// from the folder `dir` (fill throws on failure). Before it: the read bandwidth at 1 and 2
/// threads is measured (with no model mapped, so its buffer stays out of the model's VmHWM) and
/// the other policy's model is dropped (one mapping at a time). A failure is kept: this and every
/// later benchmark of W skip with it.
template <template <class> class Loaded, class W, class Fill>
Loaded<W>* load_policy(benchmark::State& st, const std::filesystem::path& dir, Fill&& fill) {
    auto& cur = policy_slot<Loaded, W>();
    if (cur) {
        if (!cur->error.empty()) st.SkipWithError(cur->error.c_str());
        return cur->error.empty() ? cur.get() : nullptr;
    }
    for (int t : {1, 2}) bandwidth(t);
    policy_slot<Loaded, std::conditional_t<std::is_same_v<W, moe::bf16>, moe::bf16_dot, moe::bf16>>().reset();
    malloc_trim(0);
    cur = std::make_unique<Loaded<W>>();
    try {
        fill(*cur);
    } catch (const std::exception& e) {
        cur->error = "cannot open " + dir.string() + ": " + e.what();
        cur->model.reset();
        st.SkipWithError(cur->error.c_str());
        return nullptr;
    }
    return cur.get();
}

}  // namespace moe_bench
