// ggml's MoE layer (the graph llama.cpp's build_moe_ffn builds) at bench_layer's gelu_mlp shape,
// as a peer baseline for bench/bench_layer.cpp. Built against a ggml source tree outside this
// repository by bench/peers/run_ggml.sh; not part of the CMake project.
//
//   ggml_moe_layer [--threads 1 2] [--w f32 bf16] [--reps 5] [--min-time 0.5]
//
// The layer (T = 512 tokens, d = 768, ffn = 3072, E = 8 experts, top-k = 2, GELU-MLP experts with
// biases, as tools/bench/torch_layer.py's SparseMoeBlock and bench_layer's layer/moe):
//   logits = gate x               ggml_mul_mat, gate [d, E] fp32 (no bias)
//   probs  = softmax(logits)      ggml_soft_max over the E logits of each token
//   sel    = top-k(probs)         ggml_top_k (I32 [k, T])
//   w      = probs[sel] / sum     ggml_get_rows + ggml_sum_rows + ggml_div (renormalised)
//   h      = gelu(W1[sel] x + b1) ggml_mul_mat_id + ggml_add_id + ggml_gelu_erf (exact GELU)
//   y      = W2[sel] h + b2       ggml_mul_mat_id + ggml_add_id
//   out    = sum_k w * y          ggml_mul + ggml_add of the k views
// Expert weights W1 [d, ffn, E] and W2 [ffn, d, E] in fp32 or bf16 (GGML_TYPE_BF16; ggml then
// converts the activations to bf16 too and accumulates in fp32); gate and biases fp32.
//
// What is timed: ggml_graph_compute of the whole graph above (one call = one layer forward over
// the 512 tokens), with a persistent ggml_threadpool and a work buffer planned once (as
// llama.cpp runs graphs); input and weights already in the context (no graph building, no
// allocation in the timed loop). Two warm-up calls, then --reps repetitions of at least
// --min-time seconds each; time_ms = median per call, min_time_ms = best repetition.
// A second graph, "experts" (from the top-k ids and weights computed once: the two
// mul_mat_id + bias + GELU + weighting + sum), is timed the same way: layer - experts = router.
//
// Output: one JSON object per line (impl "ggml"), named as bench_layer's benchmarks:
//   layer/moe/gelu_mlp/T:512/d:768/ffn:3072/E:8/k:2/w:<f32|bf16>/threads:<n>
//   layer/experts/gelu_mlp/T:512/d:768/ffn:3072/E:8/k:2/w:<f32|bf16>/threads:<n>
// plus, for fp32, max_rel_err of the layer output against a scalar double-precision reference
// on 16 tokens (a check that the graph computes the layer).
#include "ggml-cpu.h"
#include "ggml.h"
#include "peer_common.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using moe_peers::measure;
using moe_peers::Options;

constexpr int T = 512, D = 768, FF = 3072, E = 8, K = 2;

void fill(ggml_tensor* t, const std::vector<float>& v) {
  if (t->type == GGML_TYPE_F32) {
    std::memcpy(t->data, v.data(), v.size() * sizeof(float));
  } else if (t->type == GGML_TYPE_BF16) {
    ggml_fp32_to_bf16_row(v.data(), static_cast<ggml_bf16_t*>(t->data), static_cast<int64_t>(v.size()));
  } else {
    std::abort();
  }
}

std::vector<float> randu(size_t n, float scale, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// out = sum_k weights[k] * experts[:, k, :] over the views of a [d, k, T] tensor (llama.cpp's
// aggregation in build_moe_ffn).
ggml_tensor* combine(ggml_context* ctx, ggml_tensor* experts, ggml_tensor* weights) {
  experts = ggml_mul(ctx, experts, weights);  // [d, k, T] * [1, k, T]
  ggml_tensor* out = nullptr;
  for (int i = 0; i < K; ++i) {
    ggml_tensor* v = ggml_view_2d(ctx, experts, D, T, experts->nb[2], i * experts->nb[1]);
    out = out ? ggml_add(ctx, out, v) : v;
  }
  return out;
}

ggml_tensor* ffn(ggml_context* ctx, ggml_tensor* x, ggml_tensor* sel, ggml_tensor* weights, ggml_tensor* w1,
                 ggml_tensor* b1, ggml_tensor* w2, ggml_tensor* b2) {
  ggml_tensor* xs = ggml_reshape_3d(ctx, x, D, 1, T);
  ggml_tensor* h = ggml_mul_mat_id(ctx, w1, xs, sel);  // [ffn, k, T]
  h = ggml_add_id(ctx, h, b1, sel);
  h = ggml_gelu_erf(ctx, h);
  ggml_tensor* y = ggml_mul_mat_id(ctx, w2, h, sel);  // [d, k, T]
  y = ggml_add_id(ctx, y, b2, sel);
  return combine(ctx, y, weights);
}

void run(const std::string& wname, const Options& opt) {
  const ggml_type wt = wname == "bf16" ? GGML_TYPE_BF16 : GGML_TYPE_F32;
  const size_t wbytes = 2 * ggml_row_size(wt, static_cast<int64_t>(D) * FF) * E;
  ggml_init_params params{wbytes + (size_t{512} << 20), nullptr, false};
  ggml_context* ctx = ggml_init(params);

  std::mt19937 rng(1234);
  ggml_tensor* x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, D, T);
  ggml_tensor* gate = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, D, E);
  ggml_tensor* w1 = ggml_new_tensor_3d(ctx, wt, D, FF, E);
  ggml_tensor* b1 = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, FF, E);
  ggml_tensor* w2 = ggml_new_tensor_3d(ctx, wt, FF, D, E);
  ggml_tensor* b2 = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, D, E);
  const auto xv = randu(size_t{D} * T, 1.0f, rng);
  const auto gv = randu(size_t{D} * E, 1.0f / std::sqrt(float(D)), rng);
  const auto w1v = randu(size_t{D} * FF * E, 1.0f / std::sqrt(float(D)), rng);
  const auto b1v = randu(size_t{FF} * E, 1.0f / std::sqrt(float(D)), rng);
  const auto w2v = randu(size_t{FF} * D * E, 1.0f / std::sqrt(float(FF)), rng);
  const auto b2v = randu(size_t{D} * E, 1.0f / std::sqrt(float(FF)), rng);
  fill(x, xv);
  fill(gate, gv);
  fill(w1, w1v);
  fill(b1, b1v);
  fill(w2, w2v);
  fill(b2, b2v);

  // The whole layer.
  ggml_tensor* logits = ggml_mul_mat(ctx, gate, x);  // [E, T]
  ggml_tensor* probs = ggml_soft_max(ctx, logits);
  ggml_tensor* sel = ggml_top_k(ctx, probs, K);  // I32 [k, T]
  ggml_tensor* weights = ggml_get_rows(ctx, ggml_reshape_3d(ctx, probs, 1, E, T), sel);  // [1, k, T]
  weights = ggml_reshape_2d(ctx, weights, K, T);
  weights = ggml_div(ctx, weights, ggml_sum_rows(ctx, weights));
  weights = ggml_reshape_3d(ctx, weights, 1, K, T);
  ggml_tensor* out = ffn(ctx, x, sel, weights, w1, b1, w2, b2);
  ggml_cgraph* layer = ggml_new_graph(ctx);
  ggml_build_forward_expand(layer, out);

  // The experts alone, from fixed ids / weights (copies of the layer's, filled after its first run).
  ggml_tensor* sel_in = ggml_new_tensor_2d(ctx, GGML_TYPE_I32, K, T);
  ggml_tensor* weights_in = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, 1, K, T);
  ggml_tensor* out_experts = ffn(ctx, x, sel_in, weights_in, w1, b1, w2, b2);
  ggml_cgraph* experts = ggml_new_graph(ctx);
  ggml_build_forward_expand(experts, out_experts);

  const std::string shape = "gelu_mlp/T:512/d:768/ffn:3072/E:8/k:2";
  const double flops = 2.0 * T * K * 2 * double(D) * FF;
  for (int nth : opt.threads) {
    ggml_threadpool_params tpp = ggml_threadpool_params_default(nth);
    ggml_threadpool* pool = ggml_threadpool_new(&tpp);
    ggml_cplan plan_l = ggml_graph_plan(layer, nth, pool);
    ggml_cplan plan_e = ggml_graph_plan(experts, nth, pool);
    std::vector<uint8_t> work(std::max(plan_l.work_size, plan_e.work_size) + 64);
    plan_l.work_data = plan_e.work_data = work.data();

    ggml_graph_compute(layer, &plan_l);
    std::memcpy(sel_in->data, sel->data, ggml_nbytes(sel));
    std::memcpy(weights_in->data, weights->data, ggml_nbytes(weights));

    double err = -1;
    if (wt == GGML_TYPE_F32) {  // scalar reference on 16 tokens (double accumulation)
      double maxdiff = 0, maxref = 0;
      for (int t = 0; t < T; t += T / 16) {
        const float* xt = xv.data() + size_t(t) * D;
        double lg[E], p[E], sum = 0;
        for (int e = 0; e < E; ++e) {
          lg[e] = 0;
          for (int i = 0; i < D; ++i) lg[e] += double(gv[size_t(e) * D + i]) * xt[i];
        }
        const double mx = *std::max_element(lg, lg + E);
        for (int e = 0; e < E; ++e) sum += p[e] = std::exp(lg[e] - mx);
        int idx[E];
        for (int e = 0; e < E; ++e) idx[e] = e, p[e] /= sum;
        std::partial_sort(idx, idx + K, idx + E, [&](int a, int b) { return p[a] > p[b]; });
        double wsum = 0;
        for (int j = 0; j < K; ++j) wsum += p[idx[j]];
        std::vector<double> y(D, 0.0), h(FF);
        for (int j = 0; j < K; ++j) {
          const int e = idx[j];
          for (int f = 0; f < FF; ++f) {
            double a = b1v[size_t(e) * FF + f];
            const float* row = w1v.data() + (size_t(e) * FF + f) * D;
            for (int i = 0; i < D; ++i) a += double(row[i]) * xt[i];
            h[f] = 0.5 * a * (1.0 + std::erf(a / std::sqrt(2.0)));
          }
          for (int o = 0; o < D; ++o) {
            double a = b2v[size_t(e) * D + o];
            const float* row = w2v.data() + (size_t(e) * D + o) * FF;
            for (int f = 0; f < FF; ++f) a += double(row[f]) * h[f];
            y[o] += p[e] / wsum * a;
          }
        }
        const float* got = static_cast<const float*>(out->data);  // out is a [D, T] view chain: contiguous add result
        for (int o = 0; o < D; ++o) {
          maxdiff = std::max(maxdiff, std::abs(double(got[size_t(t) * D + o]) - y[o]));
          maxref = std::max(maxref, std::abs(y[o]));
        }
      }
      err = maxdiff / maxref;
    }

    for (int which = 0; which < 2; ++which) {
      ggml_cgraph* g = which == 0 ? layer : experts;
      ggml_cplan* plan = which == 0 ? &plan_l : &plan_e;
      double med = 0, best = 0;
      measure([&] { ggml_graph_compute(g, plan); }, opt.reps, opt.min_time, med, best);
      std::printf("{\"name\": \"layer/%s/%s/w:%s/threads:%d\", \"impl\": \"ggml\", \"w\": \"%s\", \"threads\": %d, "
                  "\"time_ms\": %.4f, \"min_time_ms\": %.4f, \"GFLOP/s\": %.2f, \"tokens_per_second\": %.1f, "
                  "\"reps\": %d, \"graph_nodes\": %d",
                  which == 0 ? "moe" : "experts", shape.c_str(), wname.c_str(), nth, wname.c_str(), nth, med * 1e3,
                  best * 1e3, flops / med * 1e-9, T / med, opt.reps, ggml_graph_n_nodes(g));
      if (which == 0 && err >= 0) std::printf(", \"max_rel_err_vs_reference\": %.3g", err);
      std::printf("}\n");
      std::fflush(stdout);
    }
    ggml_threadpool_free(pool);
  }
  ggml_free(ctx);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt{{1, 2}, {"f32", "bf16"}};
  if (!moe_peers::parse_options(argc, argv, opt, "[--threads N...] [--w f32 bf16] [--reps R] [--min-time S]"))
    return 2;
  ggml_cpu_init();
  for (const auto& w : opt.w) {
    if (w != "f32" && w != "bf16") {
      std::fprintf(stderr, "unknown --w %s\n", w.c_str());
      return 2;
    }
    run(w, opt);
  }
  return 0;
}
