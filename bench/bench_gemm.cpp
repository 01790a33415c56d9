// bench/bench_gemm.cpp - the packed GEMM at RingMoE's shapes, beside this core's arithmetic peak
// and Eigen's GEMM in the same run; one thread.
//
//   peak/fma_f32                           12 independent chains of fp32 FMAs on full SIMD
//                                          registers: the fp32 FMA peak of one core
//   peak/dpbf16                            the same with vdpbf16ps (bf16 pairs summed into fp32;
//                                          only where the target has AVX-512 BF16)
//   peak/vpdpbusd                          the same with vpdpbusd (4 byte products summed into
//                                          int32; AVX-512 VNNI): int8_dot's arithmetic peak
//                                          (GFLOP/s counts 2 operations per product, as above)
//   gemm/<engine>/w:<w>/<layout>/M:<M>/K:<K>/N:<N>
//                                          C[M, N] += A[M, K] . W^T with moe::cpu::packed_gemm
//                                          (engine "packed"; fp32 or bf16 weights, [out, in] or
//                                          [in, out]) or Eigen's general_matrix_matrix_product
//                                          (engine "eigen", fp32 only), the engines cpu::linear
//                                          chooses from
//   gemm/bf16dot/<kernel>/<layout>/<packed_once|packed_per_call>/M:/K:/N:
//                                          the Bf16DotMath GEMM as cpu::linear_bf16 runs it
//                                          (A rounded to bf16, then vdpbf16ps or the FMA kernel;
//                                          weights packed on every call or once ahead)
//   gemm/small_m/<math>/M:<M>/K:<K>/N:<N>/threads:<t>/offset:<bytes>
//                                          decoding's products: 1, 3, 5 or 8 rows against a bf16 [out, in]
//                                          weight too large for the caches, as cpu::Linear runs
//                                          them (output columns in chunks of 192 over t threads;
//                                          math f32 = cpu::linear, bf16dot = cpu::linear_bf16),
//                                          the weight starting `offset` bytes past a 64-byte
//                                          boundary (safetensors aligns tensors to 8 bytes only);
//                                          counter GB/s = weight bytes read per second
//   gemm/expert/<policy>/M:<M>/K:<K>/N:<N>
//                                          one expert's matrix as an expert set runs it
//                                          (cpu::Linear<W>::apply, one thread), for the weight
//                                          policies f32, bf16 (exact), bf16-dot, int8-dot (W8A8,
//                                          activations quantised per call), int8-dot-packed (the
//                                          same, panels packed once at load) and int8-weight-only,
//                                          at the full RingMoE's expert shapes (192 px: rows per
//                                          expert in stages 0, 2 and 3, C 448 -> 1792 and back,
//                                          1792 -> 7168, 3584 -> 14336) and Mixtral-8x7B's
//                                          (4096 <-> 14336; 16 and 128 rows per expert; 1 and 4
//                                          rows: decoding)
// Shapes: the FFN GEMMs of the 1B folded RingMoE at 224 px, one image: stage 0 (3136 tokens,
// C 448 -> 1792), stage 2 (196 tokens, 1792 -> 7168) and stage 3 (49 tokens, 3584 -> 14336);
// the MoE layer's expert GEMMs (128 rows, 768 <-> 3072) and ViT-B/16's (197 rows).
// Counter GFLOP/s = 2 M K N per call (or the FMAs of the peak loops); compare with peak/*.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "moe/backend/cpu/gemm.hpp"
#include "moe/backend/cpu/gemm_eigen.hpp"
#include "moe/backend/cpu/gemm_kernel.hpp"
#include "moe/backend/cpu/linear.hpp"
#include "moe/backend/cpu/simd.hpp"
#include "moe/core/parallel.hpp"

#if (defined(__AVX512BF16__) || defined(__AVX512VNNI__)) && !defined(MOE_NO_SIMD)
#include <immintrin.h>
#endif

namespace {

using moe::index_t;

#if !defined(MOE_NO_SIMD)
/// kChains independent FMA chains; each iteration issues kChains FMAs of B::size lanes.
void BM_peak_fma(benchmark::State& st) {
    using B = xsimd::batch<float, moe::cpu::simd_arch>;
    constexpr int kChains = 12;
    B acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = B(1.0f + 0.001f * float(i));
    const B a(0.999999f), c(1e-7f);
    constexpr long kIters = 1 << 20;
    for (auto _ : st) {
        for (long it = 0; it < kIters; ++it)
            for (int i = 0; i < kChains; ++i) acc[i] = xsimd::fma(acc[i], a, c);
        for (int i = 0; i < kChains; ++i) benchmark::DoNotOptimize(acc[i]);
    }
    st.counters["GFLOP/s"] = benchmark::Counter(2.0 * kChains * double(B::size) * kIters * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
    st.SetLabel(moe::cpu::simd_name());
}
BENCHMARK(BM_peak_fma)->Name("peak/fma_f32")->UseRealTime();
#endif

#if defined(__AVX512VNNI__) && !defined(MOE_NO_SIMD)
void BM_peak_vpdpbusd(benchmark::State& st) {
    constexpr int kChains = 12;
    __m512i acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_epi32(i);
    const __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(1);
    constexpr long kIters = 1 << 20;
    for (auto _ : st) {
        for (long it = 0; it < kIters; ++it)
            for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], x, y);
        for (int i = 0; i < kChains; ++i) benchmark::DoNotOptimize(acc[i]);
    }
    st.counters["GFLOP/s"] = benchmark::Counter(2.0 * kChains * 64.0 * kIters * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_peak_vpdpbusd)->Name("peak/vpdpbusd")->UseRealTime();
#endif

#if defined(__AVX512BF16__) && !defined(MOE_NO_SIMD)
void BM_peak_dpbf16(benchmark::State& st) {
    constexpr int kChains = 12;
    __m512 acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(float(i));
    const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3f80);
    constexpr long kIters = 1 << 20;
    for (auto _ : st) {
        for (long it = 0; it < kIters; ++it)
            for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], x, y);
        for (int i = 0; i < kChains; ++i) benchmark::DoNotOptimize(acc[i]);
    }
    // 16 lanes x 2 products x (multiply + add) per instruction.
    st.counters["GFLOP/s"] = benchmark::Counter(2.0 * kChains * 32.0 * kIters * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_peak_dpbf16)->Name("peak/dpbf16")->UseRealTime();
#endif

struct Shape {
    index_t M, K, N;
};
constexpr Shape kShapes[] = {{3136, 448, 1792}, {196, 1792, 7168}, {49, 3584, 14336}};
// The MoE layer's experts (T = 512, k = 2, E = 8: 128 rows each, d 768, ffn 3072) and ViT-B/16's
// MLP and qkv at 224 px (197 tokens).
constexpr Shape kLayerShapes[] = {{128, 768, 3072}, {128, 3072, 768}, {197, 768, 3072}, {197, 3072, 768},
                                  {197, 768, 2304}};

template <class W>
std::vector<W> random_weights(index_t n, std::mt19937& g) {
    std::uniform_real_distribution<float> u(-0.05f, 0.05f);
    std::vector<W> w(static_cast<std::size_t>(n));
    for (auto& v : w) v = W(u(g));
    return w;
}

void set_flops(benchmark::State& st, Shape s) {
    st.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(s.M) * double(s.K) * double(s.N) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

#if !defined(MOE_NO_SIMD)
template <class W>
void BM_packed(benchmark::State& st, Shape s, moe::WeightLayout layout) {
    std::mt19937 g(7);
    const auto A = random_weights<float>(s.M * s.K, g);
    const auto w = random_weights<W>(s.N * s.K, g);
    std::vector<float> C(static_cast<std::size_t>(s.M * s.N), 0.0f);
    std::vector<float> pack(moe::cpu::packed_gemm_workspace());
    const moe::WeightMatrix<W> wm(w.data(), s.N, s.K, layout == moe::WeightLayout::out_in ? s.K : s.N, layout);
    for (auto _ : st) {
        moe::cpu::packed_gemm(s.M, A.data(), s.K, wm, C.data(), s.N, pack.data());
        benchmark::DoNotOptimize(C.data());
        benchmark::ClobberMemory();
    }
    set_flops(st, s);
}
#endif

/// The Bf16DotMath GEMM as a Linear runs it: A rounded to bf16 pairs, then the micro-kernel
/// (vdpbf16ps or FMA), weights packed per call or once ahead.
template <class Kernel>
void BM_bf16dot(benchmark::State& st, Shape s, moe::WeightLayout layout, bool prepacked) {
    std::mt19937 g(7);
    const auto A = random_weights<float>(s.M * s.K, g);
    const auto w = random_weights<moe::bf16>(s.N * s.K, g);
    std::vector<float> C(static_cast<std::size_t>(s.M * s.N), 0.0f);
    const moe::WeightMatrix<moe::bf16> wm(w.data(), s.N, s.K, layout == moe::WeightLayout::out_in ? s.K : s.N,
                                          layout);
    const moe::cpu::PackedBf16 packed = prepacked ? moe::cpu::PackedBf16(wm) : moe::cpu::PackedBf16();
    const moe::cpu::Bf16PanelsView view = packed.view();
    moe::cpu::GemmWorkspace ws;
    for (auto _ : st) {
        moe::cpu::linear_bf16<Kernel>(moe::ConstMatrixRef<float>(A.data(), s.M, s.K, s.K), wm,
                                      prepacked ? &view : nullptr, nullptr,
                                      moe::MatrixRef<float>(C.data(), s.M, s.N, s.N), true, ws);
        benchmark::DoNotOptimize(C.data());
        benchmark::ClobberMemory();
    }
    set_flops(st, s);
}

template <moe::WeightLayout L>
void BM_eigen(benchmark::State& st, Shape s) {
    std::mt19937 g(7);
    const auto A = random_weights<float>(s.M * s.K, g);
    const auto w = random_weights<float>(s.N * s.K, g);
    std::vector<float> C(static_cast<std::size_t>(s.M * s.N), 0.0f);
    for (auto _ : st) {
        moe::cpu::detail::gemm_f32<L>(s.M, s.N, s.K, A.data(), s.K, w.data(), L == moe::WeightLayout::out_in ? s.K : s.N,
                                      C.data(), s.N);
        benchmark::DoNotOptimize(C.data());
        benchmark::ClobberMemory();
    }
    set_flops(st, s);
}

/// 1 GiB of bf16 weights, 64-byte aligned, made once: the small-M benchmarks walk through it a
/// matrix at a time, so every call reads its weight from memory, as a decode step that streams a
/// whole model does (this machine's L3 may hold a few hundred MB).
const moe::bf16* weight_pool(std::size_t& bytes) {
    static const auto pool = [] {
        const std::size_t n = std::size_t{1} << 30;
        std::unique_ptr<void, decltype(&std::free)> p(std::aligned_alloc(64, n), &std::free);
        auto* w = static_cast<moe::bf16*>(p.get());
        std::uint32_t x = 12345;
        for (std::size_t i = 0; i < n / sizeof(moe::bf16); ++i) {
            x = x * 1664525u + 1013904223u;  // small values in [-0.05, 0.05)
            w[i] = moe::bf16((static_cast<float>(x >> 8) * 0x1p-24f - 0.5f) * 0.1f);
        }
        return p;
    }();
    bytes = std::size_t{1} << 30;
    return static_cast<const moe::bf16*>(pool.get());
}

/// Decoding's products (see the file comment): the weight `offset` bytes past a 64-byte
/// boundary, a different matrix of the pool every call; the columns split as cpu::Linear splits
/// them.
template <bool Dot>
void BM_small_m(benchmark::State& st, Shape s, int threads, index_t offset) {
    std::mt19937 g(7);
    const auto A = random_weights<float>(s.M * s.K, g);
    std::size_t pool_bytes = 0;
    const moe::bf16* pool = weight_pool(pool_bytes);
    const std::size_t stride = (static_cast<std::size_t>(s.N * s.K) * sizeof(moe::bf16) + 4095) / 4096 * 4096 + 4096;
    const std::size_t count = pool_bytes / stride;
    std::vector<float> C(static_cast<std::size_t>(s.M * s.N), 0.0f);
    const moe::Exec ex(threads);
    std::vector<moe::cpu::GemmWorkspace> ws(static_cast<std::size_t>(threads));
    const moe::ConstMatrixRef<float> a(A.data(), s.M, s.K, s.K);
    std::size_t next = 0;
    for (auto _ : st) {
        const auto* w = reinterpret_cast<const moe::bf16*>(reinterpret_cast<const char*>(pool) + next * stride +
                                                            static_cast<std::size_t>(offset));
        next = (next + 1) % count;
        const moe::WeightMatrix<moe::bf16> wm(w, s.N, s.K, s.K, moe::WeightLayout::out_in);
        moe::parallel_chunks(ex, s.N, 192, [&](index_t n0, index_t n1, int worker) {
            const moe::MatrixRef<float> c(C.data() + n0, s.M, n1 - n0, s.N);
            auto& wk = ws[static_cast<std::size_t>(worker)];
            if constexpr (Dot) moe::cpu::linear_bf16(a, wm.outputs(n0, n1), nullptr, nullptr, c, false, wk);
            else moe::cpu::linear<moe::bf16>(a, wm.outputs(n0, n1), nullptr, c, false, wk);
        });
        benchmark::DoNotOptimize(C.data());
        benchmark::ClobberMemory();
    }
    st.counters["GB/s"] = benchmark::Counter(double(s.N) * double(s.K) * sizeof(moe::bf16) * 1e-9,
                                             benchmark::Counter::kIsIterationInvariantRate);
}

std::string shape_name(Shape s) {
    return "/M:" + std::to_string(s.M) + "/K:" + std::to_string(s.K) + "/N:" + std::to_string(s.N);
}

void register_bf16dot(Shape s) {
    for (const auto layout : {moe::WeightLayout::out_in, moe::WeightLayout::in_out})
        for (const bool pre : {false, true}) {
            const std::string tail = std::string(layout == moe::WeightLayout::out_in ? "/out_in" : "/in_out") +
                                     (pre ? "/packed_once" : "/packed_per_call") + shape_name(s);
            // DefaultBf16Kernel is the vdpbf16ps kernel where the target has it; where not, this
            // registration is skipped, but the code must still compile (an `if constexpr` outside
            // a template discards nothing).
            if constexpr (moe::cpu::kHasBf16Dot)
                benchmark::RegisterBenchmark(("gemm/bf16dot/vdpbf16ps" + tail).c_str(),
                                             [s, layout, pre](benchmark::State& st) {
                                                 BM_bf16dot<moe::cpu::DefaultBf16Kernel>(st, s, layout, pre);
                                             })
                    ->UseRealTime();
            if (pre && layout == moe::WeightLayout::out_in)
                benchmark::RegisterBenchmark(("gemm/bf16dot/fma" + tail).c_str(),
                                             [s, layout, pre](benchmark::State& st) {
                                                 BM_bf16dot<moe::cpu::Bf16FmaKernel>(st, s, layout, pre);
                                             })
                    ->UseRealTime();
        }
}

/// One expert matrix through Linear<W>::apply (what the expert sets call), one thread.
template <class W>
void BM_expert(benchmark::State& st, Shape s) {
    const auto f = moe::cpu::Linear<float>::random(1, s.N, s.K, false, 7);
    const auto lin = moe::cpu::Linear<W>::converted(f);
    std::mt19937 g(8);
    const auto A = random_weights<float>(s.M * s.K, g);
    std::vector<float> C(static_cast<std::size_t>(s.M * s.N), 0.0f);
    moe::cpu::GemmWorkspace ws;
    for (auto _ : st) {
        lin.apply(0, moe::ConstMatrixRef<float>(A.data(), s.M, s.K), moe::MatrixRef<float>(C.data(), s.M, s.N), ws);
        benchmark::DoNotOptimize(C.data());
        benchmark::ClobberMemory();
    }
    set_flops(st, s);
}

template <class W>
void register_expert(Shape s) {
    benchmark::RegisterBenchmark(("gemm/expert/" + std::string(moe::policy_name<W>()) + shape_name(s)).c_str(),
                                 [s](benchmark::State& st) { BM_expert<W>(st, s); })
        ->UseRealTime();
}

const int registered = [] {
    // The expert GEMMs: full RingMoE (192 px, top-1 over 4 + 4 experts per modality, capacity 1.2:
    // about 300 / 40 / 10 rows per expert in stages 0 / 2 / 3) and Mixtral-8x7B.
    for (const Shape s : {Shape{288, 448, 1792}, Shape{288, 1792, 448}, Shape{40, 1792, 7168}, Shape{40, 7168, 1792},
                          Shape{10, 3584, 14336}, Shape{16, 4096, 14336}, Shape{128, 4096, 14336},
                          Shape{128, 14336, 4096}, Shape{1, 4096, 14336}, Shape{4, 4096, 14336}}) {
        register_expert<float>(s);
        register_expert<moe::bf16>(s);
        register_expert<moe::bf16_dot>(s);
        register_expert<moe::int8_dot>(s);
        register_expert<moe::int8_dot_packed>(s);
        register_expert<moe::int8_weight_only>(s);
    }
    for (const Shape s : kLayerShapes) {
        register_bf16dot(s);
#if !defined(MOE_NO_SIMD)
        benchmark::RegisterBenchmark(("gemm/packed/w:f32/out_in" + shape_name(s)).c_str(),
                                     [s](benchmark::State& st) { BM_packed<float>(st, s, moe::WeightLayout::out_in); })
            ->UseRealTime();
        benchmark::RegisterBenchmark(("gemm/packed/w:bf16/out_in" + shape_name(s)).c_str(),
                                     [s](benchmark::State& st) { BM_packed<moe::bf16>(st, s, moe::WeightLayout::out_in); })
            ->UseRealTime();
#endif
    }
    for (const Shape s : kShapes) {
        register_bf16dot(s);
#if !defined(MOE_NO_SIMD)
        for (const auto layout : {moe::WeightLayout::out_in, moe::WeightLayout::in_out}) {
            const std::string lay = layout == moe::WeightLayout::out_in ? "/out_in" : "/in_out";
            benchmark::RegisterBenchmark(("gemm/packed/w:f32" + lay + shape_name(s)).c_str(),
                                         [s, layout](benchmark::State& st) { BM_packed<float>(st, s, layout); })
                ->UseRealTime();
            benchmark::RegisterBenchmark(("gemm/packed/w:bf16" + lay + shape_name(s)).c_str(),
                                         [s, layout](benchmark::State& st) { BM_packed<moe::bf16>(st, s, layout); })
                ->UseRealTime();
        }
#endif
        benchmark::RegisterBenchmark(("gemm/eigen/w:f32/out_in" + shape_name(s)).c_str(),
                                     [s](benchmark::State& st) { BM_eigen<moe::WeightLayout::out_in>(st, s); })
            ->UseRealTime();
    }
    // LLaMA-3.2-1B's decode products (q/o, gate/up, down; 1 row, 3 batched sequences, 5 beams,
    // 8 rows).
    for (const Shape s0 : {Shape{1, 2048, 2048}, Shape{1, 2048, 8192}, Shape{1, 8192, 2048}})
        for (const index_t m : {1, 3, 5, 8})
            for (const int t : {1, 2})
                for (const index_t off : {0, 8}) {
                    const Shape s{m, s0.K, s0.N};
                    const std::string tail = shape_name(s) + "/threads:" + std::to_string(t) + "/offset:" + std::to_string(off);
                    benchmark::RegisterBenchmark(("gemm/small_m/f32" + tail).c_str(),
                                                 [s, t, off](benchmark::State& st) { BM_small_m<false>(st, s, t, off); })
                        ->UseRealTime();
                    if constexpr (moe::cpu::kHasBf16Dot)
                        benchmark::RegisterBenchmark(("gemm/small_m/bf16dot" + tail).c_str(),
                                                     [s, t, off](benchmark::State& st) { BM_small_m<true>(st, s, t, off); })
                            ->UseRealTime();
                }
    return 0;
}();

// Which SIMD path these figures come from, in the context header of every run.
const bool simd_context_added = [] {
    benchmark::AddCustomContext("moe.simd", moe::cpu::simd_name());
    return true;
}();

}  // namespace
