// A user-defined router in a few dozen lines: hash routing (Roller et al., 2021, "Hash Layers
// For Large Sparse Models"). Each token goes to one expert fixed by a hash of its position in
// the sequence — no learned gate. Any type with num_experts(), hidden_size() and
// route(x, plan) satisfies moe::Router and plugs into MoELayer unchanged (and into RingMoE's
// HierarchicalMoE: examples/custom_router_hierarchical.cpp).
#include <cstdio>
#include <random>
#include <vector>

#include <moe/moe.hpp>

class HashRouter {
public:
    HashRouter(moe::index_t experts, moe::index_t hidden, std::uint64_t salt) : E_(experts), d_(hidden), salt_(salt) {}

    moe::index_t num_experts() const { return E_; }
    moe::index_t hidden_size() const { return d_; }

    void route(moe::ConstMatrixRef<float> x, moe::RoutingPlan& plan) const {
        moe::check<moe::ShapeError>(x.cols == d_, "HashRouter", "input has ", x.cols, " features, expected ", d_);
        plan.reset(x.rows, E_, /*k=*/1);  // one choice per token
        for (moe::index_t t = 0; t < x.rows; ++t) {
            std::uint64_t h = (static_cast<std::uint64_t>(t) + salt_) * 0x9e3779b97f4a7c15ull;  // Fibonacci hash
            plan.expert_ids[static_cast<std::size_t>(t)] = static_cast<std::int32_t>((h >> 32) % static_cast<std::uint64_t>(E_));
            plan.weights[static_cast<std::size_t>(t)] = 1.0f;
        }
        plan.finalize();  // counts, offsets, both permutation maps, load
    }

private:
    moe::index_t E_, d_;
    std::uint64_t salt_;
};
static_assert(moe::Router<HashRouter>);

int main() {
    const moe::index_t T = 256, d = 64, ffn = 256, E = 4;
    moe::MoELayer layer(HashRouter(E, d, /*salt=*/7), moe::MlpExperts<moe::Gelu>::random(E, d, ffn, /*seed=*/1));

    std::vector<float> x(static_cast<std::size_t>(T * d)), y(x.size());
    std::mt19937 rng(0);
    std::normal_distribution<float> normal;
    for (float& v : x) v = normal(rng);
    layer.forward({x.data(), T, d}, {y.data(), T, d});

    const moe::RoutingPlan& plan = layer.plan();
    std::printf("moe (%s): hash routing of %lld tokens over %lld experts:\n", moe::cpu::simd_name(),
                static_cast<long long>(T), static_cast<long long>(E));
    for (moe::index_t e = 0; e < E; ++e)
        std::printf("  expert %lld: %d tokens (slots %d..%d)\n", static_cast<long long>(e), plan.counts[static_cast<std::size_t>(e)],
                    plan.offsets[static_cast<std::size_t>(e)], plan.offsets[static_cast<std::size_t>(e) + 1] - 1);
    std::printf("y[0][0..3] = %.5f %.5f %.5f %.5f\n", y[0], y[1], y[2], y[3]);
}
