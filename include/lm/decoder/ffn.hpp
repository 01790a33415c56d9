// lm/decoder/ffn.hpp - the FFN slot of a decoder layer.
//
//   DecoderFfn<F>        what the slot holds: forward(x [T, H], y [T, H]) overwriting y. A dense
//                        SwiGLU (moe::DenseFfn::glu), any MoE layer (moe::MoELayer: Mixtral,
//                        Qwen2-MoE with its gated shared expert, DeepSeek-style), RSUniVLM's G-MoE,
//                        or a user type.
//   RequestRouted<F>     optional: routed per request (RSUniVLM's G-MoE: MoELayer over a
//                        GranularityRouter). Before each forward the decoder describes the step's
//                        sequences to the router: their token offsets and the expert each asked for.
//   GatedLinearFfn<F>    optional: y = fc2(Act(fc1 x) * up x) with its three cpu::Linears visible
//                        (fc1() = gate_proj, up(), fc2() = down_proj) and rebuildable (F::glu):
//                        DenseFfn::glu. The decoder adds LoRA deltas to those projections
//                        (lora.hpp, lora_ffn_forward) and merges adapters into them; a slot that is
//                        not one takes attention adapters only.
//   FfnVariant<F...>     one of several slot types chosen per layer at load time (Qwen2-MoE's
//                        mlp_only_layers are dense, the others sparse).
//   ffn_forward(f, x, y, step)   runs any slot: an ExecAware slot on step.exec, a RequestRouted
//                        one after set_requests_by_expert(step.offsets, step.experts).
//
// Promises a slot makes (as moe::ExpertSet's): y depends only on x (and, for RequestRouted
// slots, the requests), row by row for token-wise FFNs; results do not depend on the thread
// count; bad shapes throw ShapeError.
#pragma once

#include <concepts>
#include <span>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "moe/core/parallel.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/concepts.hpp"
#include "moe/router/concepts.hpp"

namespace moe::lm {

template <class F>
concept DecoderFfn = requires(F& f, ConstMatrixRef<float> x, MatrixRef<float> y) { f.forward(x, y); };

template <class F>
concept RequestRouted = requires(F& f, std::vector<index_t> offsets, std::vector<int> experts) {
    f.router().set_requests_by_expert(std::move(offsets), std::move(experts));
};

template <class F>
concept GatedLinearFfn = requires(const F& f, ConstMatrixRef<float> x, MatrixRef<float> y, const Exec& ex) {
    typename F::activation;
    { f.gated() } -> std::convertible_to<bool>;
    f.fc1().forward(x, y, ex, true);
    f.up().forward(x, y, ex, true);
    f.fc2().forward(x, y, ex, true);
    { F::glu(f.fc1(), f.up(), f.fc2()) } -> std::same_as<F>;
};

/// What a slot needs to know of a batch step.
struct FfnStep {
    std::span<const index_t> offsets;  ///< [S + 1]: sequence s owns rows offsets[s] .. offsets[s + 1]
    std::span<const int> experts;      ///< [S]: the expert each sequence asked for (RequestRouted slots)
    Exec exec = Exec::serial();
};

template <DecoderFfn F>
void ffn_forward(F& f, ConstMatrixRef<float> x, MatrixRef<float> y, const FfnStep& step) {
    if constexpr (ExecAware<F>) f.set_exec(step.exec);
    if constexpr (RequestRouted<F>) {
        check<ConfigError>(step.experts.size() + 1 == step.offsets.size(), "decoder FFN slot",
                           "this FFN is routed per request: give every sequence its expert (granularity); got ",
                           step.experts.size(), " for ", step.offsets.size() - 1, " sequences");
        f.router().set_requests_by_expert(std::vector<index_t>(step.offsets.begin(), step.offsets.end()),
                                          std::vector<int>(step.experts.begin(), step.experts.end()));
    }
    f.forward(x, y);
}

/// One of several FFN slot types, chosen at load time per layer.
template <DecoderFfn... F>
class FfnVariant {
public:
    FfnVariant() = default;
    template <class A>
        requires(std::is_same_v<std::remove_cvref_t<A>, F> || ...)
    FfnVariant(A&& a) : v_(std::forward<A>(a)) {}  // NOLINT: implicit, like std::variant

    void forward(ConstMatrixRef<float> x, MatrixRef<float> y) {
        std::visit([&](auto& f) { f.forward(x, y); }, v_);
    }
    void set_exec(const Exec& ex) {
        std::visit([&](auto& f) {
            if constexpr (ExecAware<std::remove_cvref_t<decltype(f)>>) f.set_exec(ex);
        }, v_);
    }
    index_t parameters() const {
        return std::visit([](const auto& f) -> index_t {
            if constexpr (CountsParameters<std::remove_cvref_t<decltype(f)>>) return f.parameters();
            else return 0;
        }, v_);
    }
    /// Shares o's scratch when o holds the same slot type (ScratchSharing), else does nothing.
    void share_scratch(FfnVariant& o) {
        std::visit([](auto& a, auto& b) {
            using A = std::remove_cvref_t<decltype(a)>;
            if constexpr (std::is_same_v<A, std::remove_cvref_t<decltype(b)>> && ScratchSharing<A>) a.share_scratch(b);
        }, v_, o.v_);
    }
    std::variant<F...>& get() noexcept { return v_; }
    const std::variant<F...>& get() const noexcept { return v_; }

private:
    std::variant<F...> v_;
};

}  // namespace moe::lm
