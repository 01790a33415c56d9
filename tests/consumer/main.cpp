// A downstream program: includes moe the way a user would and uses it: a Mixtral-style layer
// (router + SiLU-GLU experts) on a batch, checked by properties any correct layer has.
// Built with -Wall -Wextra -Werror and moe::native (-march=native), in Release (find_package)
// and Debug (add_subdirectory): the headers must compile cleanly in both.
#include "consumer_config.hpp"  // #include <moe/moe.hpp> (MOE_CONSUMER_HEADER)

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

int main() {
    using namespace moe;
    const index_t E = 4, d = 32, ffn = 64, T = 40, k = 2;
    MoELayer<TopKRouter<SoftmaxScores>, GluExperts<Silu>> layer(softmax_topk_router(Gate::random(E, d, 1), k),
                                                                 GluExperts<Silu>::random(E, d, ffn, 2));
    std::vector<float> x(static_cast<std::size_t>(T * d)), y(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
    layer.forward({x.data(), T, d}, {y.data(), T, d});
    const RoutingPlan& plan = layer.plan();
    plan.validate();
    int bad = 0;
    for (index_t t = 0; t < T; ++t) {  // renormalised top-2: each token's weights sum to 1
        const float s = plan.weights[static_cast<std::size_t>(t * k)] + plan.weights[static_cast<std::size_t>(t * k + 1)];
        bad += std::abs(s - 1.0f) > 1e-6f;
    }
    for (float v : y) bad += !std::isfinite(v);
    // -march=native on an x86-64 machine with AVX2 must not leave the program on the SSE path.
    const char* path = cpu::simd_name();
#if defined(__AVX2__)
    bad += std::strncmp(path, "sse", 3) == 0;
#endif
    if (bad != 0 || plan.num_slots() != T * k) {
        std::fprintf(stderr, "moe consumer: %d failed checks (%s)\n", bad, path);
        return 1;
    }
    std::printf("moe consumer: ok (%s, %lld slots)\n", path, static_cast<long long>(plan.num_slots()));
    return 0;
}
