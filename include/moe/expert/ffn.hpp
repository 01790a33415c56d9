// moe/expert/ffn.hpp - FFN expert containers.
//
//   MlpExperts<Act, W>  y = fc2(Act(fc1(x)))            fc1 [E, F, d] + bias, fc2 [E, d, F] + bias
//                        (GELU-MLP of ViT/Switch/RingMoE/RS-MoE experts)
//   GluExperts<Act, W>  y = down(Act(gate(x)) * up(x))  gate, up [E, F, d], down [E, d, F], no bias
//                        (SwiGLU of Mixtral w1/w3/w2, Qwen, DeepSeek; Act = Silu)
//
// Act is an activation tag (moe/backend/cpu/activation.hpp); W the weight storage type (float,
// bf16, f16: fp32 accumulation always). Both satisfy ExpertSet: forward(x, plan, out, combine)
// runs the grouped execution of moe/expert/grouped.hpp.
#pragma once

#include <span>
#include <utility>

#include "moe/core/precision.hpp"
#include "moe/backend/cpu/activation.hpp"
#include "moe/backend/cpu/gemm.hpp"
#include "moe/expert/grouped.hpp"
#include "moe/expert/linear_stack.hpp"
#include "moe/core/plan.hpp"

namespace moe {

template <Activation Act, WeightPolicy W = float>
class MlpExperts {
public:
    using activation = Act;
    using weight_type = W;

    MlpExperts() = default;
    /// fc1: E x [F, d] (+ bias [F]); fc2: E x [d, F] (+ bias [d]).
    MlpExperts(LinearStack<W> fc1, LinearStack<W> fc2) : fc1_(std::move(fc1)), fc2_(std::move(fc2)) {
        check<ShapeError>(fc1_.num_experts() == fc2_.num_experts(), "MlpExperts", "fc1 has ", fc1_.num_experts(),
                          " experts, fc2 has ", fc2_.num_experts());
        check<ShapeError>(fc2_.in_features() == fc1_.out_features() && fc2_.out_features() == fc1_.in_features(),
                          "MlpExperts", "fc1 is [", fc1_.out_features(), ", ", fc1_.in_features(), "] but fc2 is [",
                          fc2_.out_features(), ", ", fc2_.in_features(), "]");
    }
    /// E random experts d -> F -> d (torch.nn.Linear's default init) for tests and benchmarks.
    static MlpExperts random(index_t E, index_t d, index_t F, std::uint64_t seed, bool bias = true) {
        return {LinearStack<W>::random(E, F, d, bias, seed), LinearStack<W>::random(E, d, F, bias, seed + 1)};
    }

    index_t num_experts() const noexcept { return fc1_.num_experts(); }
    index_t hidden_size() const noexcept { return fc1_.in_features(); }
    index_t ffn_size() const noexcept { return fc1_.out_features(); }
    index_t parameters() const noexcept { return fc1_.parameters() + fc2_.parameters(); }
    const LinearStack<W>& fc1() const noexcept { return fc1_; }
    const LinearStack<W>& fc2() const noexcept { return fc2_; }

    /// y = expert e applied to every row of x (x: [n, d], y: [n, d]).
    void expert_forward(index_t e, ConstMatrixRef<float> x, MatrixRef<float> y, ExpertScratch& s) const {
        run_expert(e, x, y, s, s.gemm);
    }
    /// The same on ex's threads (each Linear's output columns split between them; bit-identical).
    void expert_forward(index_t e, ConstMatrixRef<float> x, MatrixRef<float> y, ExpertScratch& s, const Exec& ex) const {
        run_expert(e, x, y, s, ex);
    }

    /// out (+)= sum over each token's kept choices of weight * expert(x).
    void forward(ConstMatrixRef<float> x, const RoutingPlan& plan, MatrixRef<float> out,
                 Combine combine = Combine::overwrite, const Exec& ex = Exec{}) {
        grouped_forward(*this, x, plan, out, combine, ws_, ex);
    }

    /// Share o's scratch buffers (containers of layers that never run at the same time).
    void share_scratch(MlpExperts& o) { ws_.share(o.ws_); }

    /// The experts listed, in that order (the weights are shared, not copied).
    MlpExperts select(std::span<const index_t> keep) const { return {fc1_.select(keep), fc2_.select(keep)}; }

private:
    /// expert_forward's body; `on` is where the Linears run: a GemmWorkspace (this thread) or an
    /// Exec (its threads), as Linear::apply takes them.
    template <class On>
    void run_expert(index_t e, ConstMatrixRef<float> x, MatrixRef<float> y, ExpertScratch& s, On&& on) const {
        const index_t n = x.rows, F = ffn_size();
        MatrixRef<float> h(s.h.get(static_cast<std::size_t>(std::max<index_t>(n * F, 1))), n, F);
        fc1_.apply(e, x, h, on);
        Act::apply(h.data, n * F);
        fc2_.apply(e, ConstMatrixRef<float>(h), y, on);
    }

    LinearStack<W> fc1_, fc2_;
    GroupedWorkspace ws_;
};

template <Activation Act, WeightPolicy W = float>
class GluExperts {
public:
    using activation = Act;
    using weight_type = W;

    GluExperts() = default;
    /// gate, up: E x [F, d]; down: E x [d, F]; biases are not used (must be absent).
    GluExperts(LinearStack<W> gate, LinearStack<W> up, LinearStack<W> down)
        : gate_(std::move(gate)), up_(std::move(up)), down_(std::move(down)) {
        const char* w = "GluExperts";
        check<ShapeError>(gate_.num_experts() == up_.num_experts() && up_.num_experts() == down_.num_experts(), w,
                          "gate/up/down expert counts differ: ", gate_.num_experts(), ", ", up_.num_experts(), ", ",
                          down_.num_experts());
        check<ShapeError>(gate_.out_features() == up_.out_features() && gate_.in_features() == up_.in_features(), w,
                          "gate [", gate_.out_features(), ", ", gate_.in_features(), "] and up [", up_.out_features(),
                          ", ", up_.in_features(), "] differ");
        check<ShapeError>(down_.in_features() == gate_.out_features() && down_.out_features() == gate_.in_features(),
                          w, "down is [", down_.out_features(), ", ", down_.in_features(), "], expected [",
                          gate_.in_features(), ", ", gate_.out_features(), "]");
        check<ShapeError>(!gate_.has_bias() && !up_.has_bias() && !down_.has_bias(), w, "GLU experts have no bias");
    }
    static GluExperts random(index_t E, index_t d, index_t F, std::uint64_t seed) {
        return {LinearStack<W>::random(E, F, d, false, seed), LinearStack<W>::random(E, F, d, false, seed + 1),
                LinearStack<W>::random(E, d, F, false, seed + 2)};
    }

    index_t num_experts() const noexcept { return gate_.num_experts(); }
    index_t hidden_size() const noexcept { return gate_.in_features(); }
    index_t ffn_size() const noexcept { return gate_.out_features(); }
    index_t parameters() const noexcept { return gate_.parameters() + up_.parameters() + down_.parameters(); }
    const LinearStack<W>& gate() const noexcept { return gate_; }
    const LinearStack<W>& up() const noexcept { return up_; }
    const LinearStack<W>& down() const noexcept { return down_; }

    void expert_forward(index_t e, ConstMatrixRef<float> x, MatrixRef<float> y, ExpertScratch& s) const {
        run_expert(e, x, y, s, s.gemm);
    }
    /// The same on ex's threads (each Linear's output columns split between them; bit-identical).
    void expert_forward(index_t e, ConstMatrixRef<float> x, MatrixRef<float> y, ExpertScratch& s, const Exec& ex) const {
        run_expert(e, x, y, s, ex);
    }

    void forward(ConstMatrixRef<float> x, const RoutingPlan& plan, MatrixRef<float> out,
                 Combine combine = Combine::overwrite, const Exec& ex = Exec{}) {
        grouped_forward(*this, x, plan, out, combine, ws_, ex);
    }

    /// Share o's scratch buffers (containers of layers that never run at the same time).
    void share_scratch(GluExperts& o) { ws_.share(o.ws_); }

    GluExperts select(std::span<const index_t> keep) const {
        return {gate_.select(keep), up_.select(keep), down_.select(keep)};
    }

private:
    /// expert_forward's body; `on` is where the Linears run: a GemmWorkspace (this thread) or an
    /// Exec (its threads), as Linear::apply takes them.
    template <class On>
    void run_expert(index_t e, ConstMatrixRef<float> x, MatrixRef<float> y, ExpertScratch& s, On&& on) const {
        const index_t n = x.rows, F = ffn_size();
        const auto sz = static_cast<std::size_t>(std::max<index_t>(n * F, 1));
        MatrixRef<float> g(s.h.get(sz), n, F), u(s.h2.get(sz), n, F);
        gate_.apply(e, x, g, on);
        up_.apply(e, x, u, on);
        cpu::glu<Act>(g.data, u.data, n * F);
        down_.apply(e, ConstMatrixRef<float>(g), y, on);
    }

    LinearStack<W> gate_, up_, down_;
    GroupedWorkspace ws_;
};

}  // namespace moe
