// ggml's expert matmul (ggml_mul_mat_id, what llama.cpp's MoE FFN runs) at bench_gemm's
// gemm/expert shapes, as the peer of the int8 expert GEMM (issue 19): Q8_0, BF16 and F32 expert
// weights. Built against a ggml source tree outside this repository by bench/peers/run_ggml.sh
// (--program ggml_expert_gemm); not part of the CMake project.
//
//   ggml_expert_gemm [--w q8_0 bf16 f32] [--threads 1] [--reps 5] [--min-time 0.5]
//
// One expert matrix of N outputs x K inputs (ggml: [K, N, 1]), M activation rows all routed to it
// (ids I32 [1, M] = 0): y [N, 1, M] = ggml_mul_mat_id(w, x [K, 1, M], ids). With Q8_0 weights
// ggml quantises the activations to Q8_0 itself (per block of 32, as moe's int8_dot quantises
// them per token) and sums int8 products per block with an fp16 scale each. Weights are
// uniform(+-1/sqrt(K)), quantised by ggml_quantize_chunk; activations uniform(+-1).
//
// What is timed: ggml_graph_compute of that one-node graph (persistent threadpool, work buffer
// planned once), two warm-up calls, then --reps repetitions of at least --min-time seconds:
// time_ms = median per call. Output, one JSON object per line, named as bench_gemm's:
//   gemm/expert/ggml-<w>/M:<M>/K:<K>/N:<N>   (+ GFLOP/s = 2 M K N / time, max_rel_err of the
//                                             output against a double product of the fp32
//                                             weights on 4 rows: the quantisation error)
#include "ggml-cpu.h"
#include "ggml.h"
#include "peer_common.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using moe_peers::measure;
using moe_peers::Options;

struct Shape {
  int64_t M, K, N;
};
// bench_gemm's gemm/expert shapes: the full RingMoE's experts (stages 0, 2, 3) and Mixtral-8x7B's
// (1 and 4 rows: decoding).
constexpr Shape kShapes[] = {{288, 448, 1792}, {288, 1792, 448}, {40, 1792, 7168}, {40, 7168, 1792},
                             {10, 3584, 14336}, {16, 4096, 14336}, {128, 4096, 14336}, {128, 14336, 4096},
                             {1, 4096, 14336},   {4, 4096, 14336}};

void run(const Shape& s, const std::string& wname, const Options& opt) {
  const ggml_type wt = wname == "q8_0" ? GGML_TYPE_Q8_0 : wname == "bf16" ? GGML_TYPE_BF16 : GGML_TYPE_F32;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uw(-1.0f / std::sqrt(float(s.K)), 1.0f / std::sqrt(float(s.K))), ux(-1, 1);
  std::vector<float> wv(size_t(s.K * s.N)), xv(size_t(s.K * s.M));
  for (auto& v : wv) v = uw(rng);
  for (auto& v : xv) v = ux(rng);
  const size_t wbytes = ggml_row_size(wt, s.K) * size_t(s.N);
  ggml_init_params params{wbytes + size_t(s.K * s.M + s.N * s.M) * 4 + (size_t{64} << 20), nullptr, false};
  ggml_context* ctx = ggml_init(params);
  ggml_tensor* w = ggml_new_tensor_3d(ctx, wt, s.K, s.N, 1);
  ggml_tensor* x = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, s.K, 1, s.M);
  ggml_tensor* ids = ggml_new_tensor_2d(ctx, GGML_TYPE_I32, 1, s.M);
  if (wt == GGML_TYPE_F32) std::memcpy(w->data, wv.data(), wv.size() * 4);
  else if (wt == GGML_TYPE_BF16) ggml_fp32_to_bf16_row(wv.data(), static_cast<ggml_bf16_t*>(w->data), int64_t(wv.size()));
  else ggml_quantize_chunk(wt, wv.data(), w->data, 0, s.N, s.K, nullptr);
  std::memcpy(x->data, xv.data(), xv.size() * 4);
  std::memset(ids->data, 0, ggml_nbytes(ids));
  ggml_tensor* y = ggml_mul_mat_id(ctx, w, x, ids);  // [N, 1, M]
  ggml_cgraph* g = ggml_new_graph(ctx);
  ggml_build_forward_expand(g, y);
  for (int nth : opt.threads) {
    ggml_threadpool_params tpp = ggml_threadpool_params_default(nth);
    ggml_threadpool* pool = ggml_threadpool_new(&tpp);
    ggml_cplan plan = ggml_graph_plan(g, nth, pool);
    std::vector<uint8_t> work(plan.work_size + 64);
    plan.work_data = work.data();
    ggml_graph_compute(g, &plan);
    double maxdiff = 0, maxref = 0;
    for (int64_t m = 0; m < std::min<int64_t>(4, s.M); ++m)
      for (int64_t n = 0; n < s.N; ++n) {
        double r = 0;
        for (int64_t k = 0; k < s.K; ++k) r += double(wv[size_t(n * s.K + k)]) * xv[size_t(m * s.K + k)];
        const double got = static_cast<const float*>(y->data)[m * s.N + n];
        maxdiff = std::max(maxdiff, std::abs(got - r));
        maxref = std::max(maxref, std::abs(r));
      }
    double med = 0, best = 0;
    measure([&] { ggml_graph_compute(g, &plan); }, opt.reps, opt.min_time, med, best);
    std::printf("{\"name\": \"gemm/expert/ggml-%s/M:%lld/K:%lld/N:%lld\", \"impl\": \"ggml\", \"w\": \"%s\", "
                "\"threads\": %d, \"time_ms\": %.4f, \"GFLOP/s\": %.2f, \"reps\": %d, \"max_rel_err\": %.3g}\n",
                wname.c_str(), (long long)s.M, (long long)s.K, (long long)s.N, wname.c_str(), nth, med * 1e3,
                2.0 * double(s.M) * double(s.K) * double(s.N) / med * 1e-9, opt.reps, maxdiff / maxref);
    std::fflush(stdout);
    ggml_threadpool_free(pool);
  }
  ggml_free(ctx);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt{{1}, {"q8_0", "bf16", "f32"}};
  if (!moe_peers::parse_options(argc, argv, opt, "[--w q8_0 bf16 f32] [--threads N...] [--reps R] [--min-time S]"))
    return 2;
  for (const auto& w : opt.w)
    if (w != "q8_0" && w != "bf16" && w != "f32") {
      std::fprintf(stderr, "unknown --w %s (q8_0, bf16, f32)\n", w.c_str());
      return 2;
    }
  ggml_cpu_init();
  for (const Shape& s : kShapes)
    for (const auto& w : opt.w) run(s, w, opt);
  return 0;
}
