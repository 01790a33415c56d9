// Quickstart: assemble a Mixtral-style MoE layer from a router type and an expert type, save
// its weights under Hugging Face names, load them back (mmapped, zero copy) and run a batch.
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <moe/moe.hpp>

int main() {
    using namespace moe;
    const index_t T = 512, d = 256, ffn = 512, E = 8, k = 2;

    // Structure at compile time (router and expert kinds), sizes at run time.
    using Layer = MoELayer<TopKRouter<SoftmaxScores>, GluExperts<Silu>>;
    Layer layer(softmax_topk_router(Gate::random(E, d, 1), k), GluExperts<Silu>::random(E, d, ffn, 2));

    // Write its weights as a Hugging Face Mixtral block would name them ...
    const std::string p = "model.layers.0.block_sparse_moe.";
    const auto& X = layer.experts();
    io::SafetensorsWriter w;
    w.add(p + "gate.weight", TensorView(layer.router().gate().weight().data, DType::f32, {E, d}));
    for (index_t e = 0; e < E; ++e) {
        const std::string q = p + "experts." + std::to_string(e) + ".";
        w.add(q + "w1.weight", TensorView(X.gate().weight(e).data, DType::f32, {ffn, d}));
        w.add(q + "w3.weight", TensorView(X.up().weight(e).data, DType::f32, {ffn, d}));
        w.add(q + "w2.weight", TensorView(X.down().weight(e).data, DType::f32, {d, ffn}));
    }
    const auto path = std::filesystem::temp_directory_path() / "moe_quickstart.safetensors";
    w.write(path);

    // ... and load them back by name, as from a checkpoint written by PyTorch.
    auto file = io::SafetensorsFile::open(path);
    auto loaded = hf::load_mixtral_block<float>(file, p, k);

    std::vector<float> x(static_cast<std::size_t>(T * d)), y(x.size()), y2(x.size());
    std::mt19937 rng(42);
    std::normal_distribution<float> normal;
    for (float& v : x) v = normal(rng);
    layer.forward({x.data(), T, d}, {y.data(), T, d});
    loaded.forward({x.data(), T, d}, {y2.data(), T, d});

    const RoutingPlan& plan = loaded.plan();
    std::printf("moe (%s): %lld tokens, %lld experts, top-%lld, %lld parameters from %s\n", cpu::simd_name(),
                static_cast<long long>(T), static_cast<long long>(E), static_cast<long long>(k),
                static_cast<long long>(loaded.parameters()), path.filename().c_str());
    std::printf("tokens per expert:");
    for (auto c : plan.counts) std::printf(" %d", c);
    std::printf("\nload-balancing loss %.4f, z-loss %.4f\n", load_balancing_loss(loaded.router().last_logits(), plan),
                z_loss(loaded.router().last_logits()));
    std::printf("y[0][0..3] = %.5f %.5f %.5f %.5f (in-memory and loaded layers %s)\n", y2[0], y2[1], y2[2], y2[3],
                y == y2 ? "agree" : "DIFFER");
    std::filesystem::remove(path);
    return y == y2 ? 0 : 1;
}
