// A user-defined expert container in a few dozen lines: low-rank linear experts,
// expert_e(x) = B_e A_e x with A_e [r, d], B_e [d, r]. Any type with num_experts(), hidden_size(),
// parameters() and forward(x, plan, out, combine) satisfies moe::ExpertSet and plugs into
// MoELayer unchanged. This one only says what one expert does to a block of rows
// (expert_forward); moe::grouped_forward gathers each expert's tokens, runs the blocks on the
// threads of a moe::Exec and combines the weighted outputs. The Exec argument makes it a
// moe::ThreadedExpertSet, so layer.set_exec(moe::Exec(n)) reaches it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include <moe/moe.hpp>

class LowRankExperts {
public:
    LowRankExperts(moe::index_t experts, moe::index_t hidden, moe::index_t rank, unsigned seed)
        : E_(experts), d_(hidden), r_(rank), a_(static_cast<std::size_t>(experts * rank * hidden)), b_(a_.size()) {
        std::mt19937 rng(seed);
        std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(hidden)));
        for (float& v : a_) v = normal(rng);
        for (float& v : b_) v = normal(rng);
    }

    moe::index_t num_experts() const { return E_; }
    moe::index_t hidden_size() const { return d_; }
    moe::index_t parameters() const { return static_cast<moe::index_t>(a_.size() + b_.size()); }
    moe::ConstMatrixRef<float> a(moe::index_t e) const { return {a_.data() + e * r_ * d_, r_, d_}; }  // [r, d]
    moe::ConstMatrixRef<float> b(moe::index_t e) const { return {b_.data() + e * d_ * r_, d_, r_}; }  // [d, r]

    // Expert e on every row of x [n, d] -> y [n, d]; concurrent calls get different scratch.
    void expert_forward(moe::index_t e, moe::ConstMatrixRef<float> x, moe::MatrixRef<float> y, moe::ExpertScratch& s) const {
        moe::MatrixRef<float> h(s.h.get(static_cast<std::size_t>(x.rows * r_)), x.rows, r_);
        moe::cpu::linear(x, a(e), nullptr, h, /*accumulate=*/false, s.gemm);               // h = x A_e^T
        moe::cpu::linear(moe::ConstMatrixRef<float>(h), b(e), nullptr, y, false, s.gemm);  // y = h B_e^T
    }
    // out (=, or += with Combine::add) the sum over each token's kept choices of weight * expert(x).
    void forward(moe::ConstMatrixRef<float> x, const moe::RoutingPlan& plan, moe::MatrixRef<float> out,
                 moe::Combine combine, const moe::Exec& ex = moe::Exec{}) {
        moe::grouped_forward(*this, x, plan, out, combine, ws_, ex);
    }

private:
    moe::index_t E_, d_, r_;
    std::vector<float> a_, b_;
    moe::GroupedWorkspace ws_;  // permuted activations and per-worker scratch, reused across calls
};
static_assert(moe::ExpertSet<LowRankExperts> && moe::ThreadedExpertSet<LowRankExperts>);

int main() {
    const moe::index_t T = 256, d = 64, rank = 8, E = 8, k = 2;
    moe::MoELayer layer(moe::softmax_topk_router(moe::Gate::random(E, d, /*seed=*/1), k), LowRankExperts(E, d, rank, 2));

    std::vector<float> x(static_cast<std::size_t>(T * d)), y(x.size());
    std::mt19937 rng(0);
    std::normal_distribution<float> normal;
    for (float& v : x) v = normal(rng);
    layer.forward({x.data(), T, d}, {y.data(), T, d});

    // The same sum computed directly: y[t] = sum over t's kept choices c of w_c B_e A_e x[t].
    const moe::RoutingPlan& plan = layer.plan();
    std::vector<double> ref(x.size(), 0.0);
    for (std::size_t c = 0; c < plan.expert_ids.size(); ++c) {
        if (plan.token_to_slot[c] < 0) continue;  // dropped or empty choice
        const moe::index_t t = static_cast<moe::index_t>(c) / plan.k, e = plan.expert_ids[c];
        for (moe::index_t q = 0; q < rank; ++q) {
            double h = 0;
            for (moe::index_t p = 0; p < d; ++p) h += double(layer.experts().a(e)(q, p)) * x[static_cast<std::size_t>(t * d + p)];
            for (moe::index_t i = 0; i < d; ++i)
                ref[static_cast<std::size_t>(t * d + i)] += plan.weights[c] * double(layer.experts().b(e)(i, q)) * h;
        }
    }
    double err = 0;
    for (std::size_t i = 0; i < y.size(); ++i) err = std::max(err, std::abs(ref[i] - y[i]));

    std::printf("moe (%s): %lld low-rank experts (rank %lld), top-%lld, %lld parameters, max |layer - direct| = %.2g\n",
                moe::cpu::simd_name(), static_cast<long long>(E), static_cast<long long>(rank),
                static_cast<long long>(k), static_cast<long long>(layer.parameters()), err);
    std::printf(err < 1e-4 ? "the layer matches the direct computation\n" : "FAILED: the layer disagrees\n");
    return err < 1e-4 ? 0 : 1;
}
