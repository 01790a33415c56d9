// A user-defined router inside RingMoE's hierarchical layer. HierarchicalMoE takes its router
// type as a template parameter (default TopKRouter<SoftmaxScores>, RingMoE's MindSpore routing),
// so any moe::Router runs its modal groups and its collaborative group.
//
// The router here is locality-sensitive hashing: a token goes to the expert named by the signs
// of b fixed random projections of its features (E = 2^b experts, weight 1), so similar tokens
// share an expert without a learned gate. It has only Router's three members, so the layer's
// auxiliary loss is 0 (no last_logits(): see moe::LogitRouter).
//
// The program checks the layer against a direct computation: for every token, its modality's
// expert + its collaborative expert + the shared expert, each run alone on that token.
#include <cmath>
#include <cstdio>
#include <random>
#include <span>
#include <vector>

#include <moe/moe.hpp>

class LshRouter {
public:
    LshRouter(int bits, moe::index_t hidden, unsigned seed) : bits_(bits), d_(hidden), planes_(bits * hidden) {
        std::mt19937 rng(seed);
        std::normal_distribution<float> normal;
        for (float& v : planes_) v = normal(rng);
    }

    moe::index_t num_experts() const { return moe::index_t{1} << bits_; }
    moe::index_t hidden_size() const { return d_; }

    /// The expert of one token: bit i is set when the token lies on the positive side of plane i.
    std::int32_t bucket(const float* x) const {
        std::int32_t e = 0;
        for (int i = 0; i < bits_; ++i) {
            float s = 0;
            for (moe::index_t j = 0; j < d_; ++j) s += planes_[static_cast<std::size_t>(i * d_ + j)] * x[j];
            if (s > 0) e |= std::int32_t{1} << i;
        }
        return e;
    }

    void route(moe::ConstMatrixRef<float> x, moe::RoutingPlan& plan) const {
        moe::check<moe::ShapeError>(x.cols == d_, "LshRouter", "input has ", x.cols, " features, expected ", d_);
        plan.reset(x.rows, num_experts(), /*k=*/1);
        for (moe::index_t t = 0; t < x.rows; ++t) {
            plan.expert_ids[static_cast<std::size_t>(t)] = bucket(x.row(t));
            plan.weights[static_cast<std::size_t>(t)] = 1.0f;
        }
        plan.finalize();  // counts, offsets, both permutation maps, load
    }

private:
    int bits_;
    moe::index_t d_;
    std::vector<float> planes_;
};
static_assert(moe::Router<LshRouter> && !moe::LogitRouter<LshRouter>);

using Experts = moe::MlpExperts<moe::GeluTanh>;
using Layer = moe::HierarchicalMoE<Experts, Experts, moe::SharedExperts<Experts>, LshRouter>;

// One expert of `x` on one token.
std::vector<float> one_expert(const Experts& x, moe::index_t e, const float* token, moe::index_t d) {
    std::vector<float> y(static_cast<std::size_t>(d));
    moe::ExpertScratch scratch;
    x.expert_forward(e, {token, 1, d}, {y.data(), 1, d}, scratch);
    return y;
}

int main() {
    const moe::index_t d = 64, ffn = 128, T = 96;
    const int modalities = 3;
    // Each modality: 4 experts (2 bits); the collaborative group: 8 experts (3 bits); one shared expert.
    std::vector<LshRouter> routers;
    std::vector<Experts> modal;
    for (int m = 0; m < modalities; ++m) {
        routers.emplace_back(2, d, 10 + m);
        modal.push_back(Experts::random(4, d, ffn, 20 + m));
    }
    Layer layer(std::move(routers), std::move(modal), LshRouter(3, d, 30), Experts::random(8, d, ffn, 31),
                moe::SharedExperts<Experts>(Experts::random(1, d, ffn, 32)));

    std::vector<float> x(static_cast<std::size_t>(T * d)), y(x.size());
    std::mt19937 rng(0);
    std::normal_distribution<float> normal;
    for (float& v : x) v = normal(rng);
    std::vector<std::int32_t> modality(static_cast<std::size_t>(T));
    for (moe::index_t t = 0; t < T; ++t) modality[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(t % modalities);
    layer.forward({x.data(), T, d}, std::span<const std::int32_t>(modality), {y.data(), T, d});

    double err = 0, norm = 0;
    for (moe::index_t t = 0; t < T; ++t) {
        const float* xt = x.data() + t * d;
        const int m = modality[static_cast<std::size_t>(t)];
        const auto a = one_expert(layer.modal_experts(m), layer.modal_router(m).bucket(xt), xt, d);
        const auto b = one_expert(layer.collab_experts(), layer.collab_router().bucket(xt), xt, d);
        const auto s = one_expert(layer.shared().experts(), 0, xt, d);
        for (moe::index_t i = 0; i < d; ++i) {
            const double want = double(a[static_cast<std::size_t>(i)]) + b[static_cast<std::size_t>(i)] + s[static_cast<std::size_t>(i)];
            const double got = y[static_cast<std::size_t>(t * d + i)];
            err += (got - want) * (got - want);
            norm += want * want;
        }
    }
    std::printf("moe (%s): LSH routing in a hierarchical layer, %lld tokens, %d modalities\n", moe::cpu::simd_name(),
                static_cast<long long>(T), modalities);
    for (int m = 0; m < modalities; ++m) {
        std::printf("  modality %d:", m);
        for (int e = 0; e < 4; ++e) std::printf(" %d", layer.modal_plan(m).counts[static_cast<std::size_t>(e)]);
        std::printf(" tokens per expert\n");
    }
    std::printf("  collaborative:");
    for (int e = 0; e < 8; ++e) std::printf(" %d", layer.collab_plan().counts[static_cast<std::size_t>(e)]);
    std::printf(" tokens per expert\n  auxiliary loss: %g (the router keeps no logits)\n", layer.losses().total);
    const double rel = std::sqrt(err / norm);
    if (!(rel < 1e-5)) {
        std::printf("FAILED: relative error %g against the direct computation\n", rel);
        return 1;
    }
    std::printf("the layer matches the direct computation (relative error %.2g)\n", rel);
}
