// CUDA backend: the fused routing kernel and the device routing plan against the CPU results
// (computed in cpu_reference.cpp, compiled by the host compiler). Exits 77 (skipped) without a GPU.
#include <cstdio>
#include <cstdlib>
#include <random>
#include <span>
#include <vector>

#include "moe/backend/cuda/routing.cuh"

// Defined in cpu_reference.cpp: the CPU kernel and plan for the same spec.
void cpu_route(const float* logits, int T, int E, const moe::RouteRule& spec, const float* bias_host,
               std::int32_t* ids, float* w);
void cpu_plan(const std::int32_t* ids, const float* w, int T, int E, int k, int capacity, std::vector<std::int32_t>& counts,
              std::vector<std::int32_t>& slot_to_token, std::vector<std::int32_t>& token_to_slot);

namespace {
int failures = 0;
void expect(bool ok, const char* what, int a, int b) {
    if (!ok) {
        std::printf("FAIL: %s (%d, %d)\n", what, a, b);
        ++failures;
    }
}

template <class T>
T* to_device(const std::vector<T>& h) {
    T* d = nullptr;
    moe::cuda::check_cuda(cudaMalloc(&d, sizeof(T) * (h.empty() ? 1 : h.size())), "cudaMalloc");
    if (!h.empty()) moe::cuda::check_cuda(cudaMemcpy(d, h.data(), sizeof(T) * h.size(), cudaMemcpyHostToDevice), "copy");
    return d;
}
template <class T>
std::vector<T> to_host(const T* d, std::size_t n) {
    std::vector<T> h(n);
    moe::cuda::check_cuda(cudaMemcpy(h.data(), d, sizeof(T) * n, cudaMemcpyDeviceToHost), "copy");
    return h;
}

void run_case(int T, int E, moe::RouteRule spec, const std::vector<float>& bias) {
    std::mt19937 rng(T * 7 + E);
    std::normal_distribution<float> nd;
    std::vector<float> logits(static_cast<std::size_t>(T) * E);
    for (auto& v : logits) v = nd(rng);
    float* d_logits = to_device(logits);
    float* d_bias = bias.empty() ? nullptr : to_device(bias);
    if (d_bias) spec.bias = std::span<const float>(d_bias, static_cast<std::size_t>(E));  // device memory
    std::vector<std::int32_t> ids_ref(static_cast<std::size_t>(T) * spec.k);
    std::vector<float> w_ref(ids_ref.size());
    cpu_route(logits.data(), T, E, spec, bias.empty() ? nullptr : bias.data(), ids_ref.data(), w_ref.data());
    std::int32_t* d_ids = to_device(std::vector<std::int32_t>(ids_ref.size()));
    float* d_w = to_device(std::vector<float>(ids_ref.size()));
    moe::cuda::route_topk(d_logits, T, E, spec, d_ids, d_w);
    auto ids = to_host(d_ids, ids_ref.size());
    auto w = to_host(d_w, ids_ref.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
        expect(ids[i] == ids_ref[i], "expert id", ids[i], ids_ref[i]);
        expect(std::abs(w[i] - w_ref[i]) <= 1e-6f + 1e-5f * std::abs(w_ref[i]), "weight", int(i), 0);
    }
    // the plan, with and without capacity
    for (int capacity : {0, static_cast<int>(T * spec.k / E)}) {
        moe::cuda::DevicePlan p;
        p.num_tokens = T;
        p.num_experts = E;
        p.k = spec.k;
        p.capacity = capacity;
        const std::size_t n = ids.size();
        p.counts = to_device(std::vector<std::int32_t>(E));
        p.offsets = to_device(std::vector<std::int32_t>(E + 1));
        p.load = to_device(std::vector<long long>(E));
        p.slot_to_token = to_device(std::vector<std::int32_t>(n));
        p.slot_weights = to_device(std::vector<float>(n));
        p.token_to_slot = to_device(std::vector<std::int32_t>(n));
        const int slots = moe::cuda::build_plan(d_ids, d_w, p);
        std::vector<std::int32_t> counts, s2t, t2s;
        cpu_plan(ids_ref.data(), w_ref.data(), T, E, spec.k, capacity, counts, s2t, t2s);
        expect(slots == static_cast<int>(s2t.size()), "slot count", slots, int(s2t.size()));
        auto c = to_host(p.counts, E);
        auto a = to_host(p.slot_to_token, s2t.size());
        auto b = to_host(p.token_to_slot, n);
        for (int e = 0; e < E; ++e) expect(c[e] == counts[e], "count", c[e], counts[e]);
        for (std::size_t s = 0; s < s2t.size(); ++s) expect(a[s] == s2t[s], "slot_to_token", a[s], s2t[s]);
        for (std::size_t i = 0; i < n; ++i) expect(b[i] == t2s[i], "token_to_slot", b[i], t2s[i]);
        for (void* ptr : {(void*)p.counts, (void*)p.offsets, (void*)p.load, (void*)p.slot_to_token,
                          (void*)p.slot_weights, (void*)p.token_to_slot})
            cudaFree(ptr);
    }
    cudaFree(d_logits);
    cudaFree(d_bias);
    cudaFree(d_ids);
    cudaFree(d_w);
}
}  // namespace

int main() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        std::printf("no CUDA device: CUDA tests skipped\n");
        return 77;
    }
    moe::RouteRule s;
    for (auto [E, k] : {std::pair{8, 2}, {64, 8}, {256, 8}, {6, 6}}) {
        s.k = k;
        run_case(1000, E, s, {});
    }
    s.renormalize = false;
    run_case(333, 64, s, {});
    // DeepSeek-V3 style
    moe::RouteRule d;
    d.k = 8;
    d.scoring = moe::Scoring::sigmoid;
    d.groups = 8;
    d.topk_groups = 4;
    d.scale = 2.5f;
    std::vector<float> bias(256);
    std::mt19937 rng(3);
    for (auto& b : bias) b = std::normal_distribution<float>(0.0f, 0.1f)(rng);
    run_case(500, 256, d, bias);
    // NaN is an error
    std::vector<float> bad(64, 0.0f);
    bad[40] = NAN;
    float* d_bad = to_device(bad);
    std::int32_t* ids = to_device(std::vector<std::int32_t>(16));
    float* w = to_device(std::vector<float>(16));
    s.k = 2;
    bool threw = false;
    try {
        moe::cuda::route_topk(d_bad, 8, 8, s, ids, w);
    } catch (const moe::ValueError& e) {
        threw = std::string(e.what()).find("token 5") != std::string::npos;
    }
    expect(threw, "NaN logit names token 5", 0, 0);
    std::printf("%s (%d failures)\n", failures ? "FAILED" : "passed", failures);
    return failures ? 1 : 0;
}
