// rs/rsmoe/router.hpp - RS-MoE's instruction router: from the global instruction and the image,
// one prompt per expert LLM. The paper describes it ("generates specific prompts tailored for
// each corresponding LLM, guiding them to focus on distinct aspects"); the code is not released,
// and the description allows two readings, both here, chosen at compile time by RsMoe's Router:
//
//   TextRouter   (a) text sub-instructions: expert e's prompt is its template over the global
//                instruction (theme / objects / relations by default), run through the
//                instruction-aware Q-Former, so every expert gets its own visual tokens and text.
//   SoftRouter   (b) learned soft prompts (moe::InstructionRouter): one Q-Former pass of the
//                global instruction; u = [mean of its text rows; mean of its query rows]; expert
//                weights softmax(gate u), prompts [Lp, H_e] mixed from a learned bank; every
//                expert shares the visual tokens and the instruction's text, each after its own
//                soft prompt. top-k (k > 0) runs only the best experts.
//
// PromptRouter<R>: route(ctx) -> one ExpertPrompt per expert. Promises: exactly ctx.experts
// prompts, in expert order; an active prompt has a Q-Former output [Q + T, H_q] over this image;
// weights of the active experts sum to 1; the same context gives the same prompts.
#pragma once

#include <concepts>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/io/checkpoint.hpp"
#include "moe/router/instruction.hpp"
#include "rs/rsmoe/config.hpp"

namespace moe::rs::rsmoe {

/// What the router gives one expert.
struct ExpertPrompt {
    bool active = true;
    float weight = 1.0f;
    std::string text;     ///< its instruction: the Q-Former's text and the LLM's text
    Tensor query_output;  ///< the Q-Former's last hidden state [Q + T, H_q] its visual tokens come from
    Tensor soft_prompt;   ///< [Lp, H_e] between the visual tokens and the text (SoftRouter), or empty
};

/// What a router may use: the global instruction and the Q-Former over this request's image.
struct RouterContext {
    std::string_view instruction;
    index_t experts = 0;
    index_t query_tokens = 0;
    /// The Q-Former's output [Q + T, H_q] for `text` over the image.
    std::function<Tensor(std::string_view text)> qformer;
};

template <class R>
concept PromptRouter = requires(R& r, const RouterContext& ctx) {
    { r.route(ctx) } -> std::same_as<std::vector<ExpertPrompt>>;
};

/// Reading (a): one sub-instruction per expert.
class TextRouter {
public:
    static constexpr RouterKind kind = RouterKind::text;
    TextRouter() = default;
    /// templates[e]: expert e's sub-instruction, "{instruction}" standing for the global one.
    explicit TextRouter(std::vector<std::string> templates) : templates_(std::move(templates)) {}
    static TextRouter from_config(const RsMoeConfig& c) {
        std::vector<std::string> t;
        for (const ExpertEntry& e : c.experts) t.push_back(e.instruction);
        return TextRouter(std::move(t));
    }
    /// From a model folder: the config's sub-instructions (no weights).
    static TextRouter load(const RsMoeConfig& c, const io::SafetensorsFile&) { return from_config(c); }
    index_t num_experts() const noexcept { return static_cast<index_t>(templates_.size()); }
    const std::vector<std::string>& templates() const noexcept { return templates_; }

    std::vector<ExpertPrompt> route(const RouterContext& ctx) const {
        check<ConfigError>(ctx.experts == num_experts(), "TextRouter", num_experts(), " sub-instructions for ",
                           ctx.experts, " experts");
        std::vector<ExpertPrompt> out(templates_.size());
        std::map<std::string, Tensor, std::less<>> seen;  // experts with the same text share one Q-Former pass
        for (std::size_t e = 0; e < templates_.size(); ++e) {
            out[e].text = expand_instruction(templates_[e], ctx.instruction);
            out[e].weight = 1.0f / static_cast<float>(templates_.size());
            auto it = seen.find(out[e].text);
            if (it == seen.end()) it = seen.emplace(out[e].text, ctx.qformer(out[e].text)).first;
            out[e].query_output = Tensor::copy_of(it->second.view());
        }
        return out;
    }

private:
    std::vector<std::string> templates_;
};

/// Reading (b): learned soft prompts (moe::InstructionRouter over the Q-Former's output).
class SoftRouter {
public:
    static constexpr RouterKind kind = RouterKind::soft;
    explicit SoftRouter(InstructionRouter router) : r_(std::move(router)) {}
    /// From a model folder: router.* of model.safetensors (load_soft_router).
    static SoftRouter load(const RsMoeConfig& c, const io::SafetensorsFile& f);
    const InstructionRouter& router() const noexcept { return r_; }
    InstructionRouter& router() noexcept { return r_; }
    index_t num_experts() const noexcept { return r_.num_experts(); }

    std::vector<ExpertPrompt> route(const RouterContext& ctx) const {
        const char* w = "SoftRouter";
        check<ConfigError>(ctx.experts == r_.num_experts(), w, "the router has ", r_.num_experts(), " experts, the model ",
                           ctx.experts);
        const Tensor g = ctx.qformer(ctx.instruction);  // [Q + T, H_q]
        const index_t Q = ctx.query_tokens, H = g.dim(1), T = g.dim(0) - Q;
        check<ConfigError>(T > 0, w, "the soft router needs the instruction's text rows; the Q-Former gave none");
        std::vector<float> q(static_cast<std::size_t>(H), 0.0f);
        std::vector<double> acc(static_cast<std::size_t>(H), 0.0);
        for (index_t t = 0; t < T; ++t)
            for (index_t c = 0; c < H; ++c) acc[static_cast<std::size_t>(c)] += g.data<float>()[(Q + t) * H + c];
        for (index_t c = 0; c < H; ++c) q[static_cast<std::size_t>(c)] = static_cast<float>(acc[static_cast<std::size_t>(c)] / double(T));
        const InstructionRouting routing = r_.route(q, ConstMatrixRef<float>(g.data<float>(), Q, H, H));
        std::vector<ExpertPrompt> out(static_cast<std::size_t>(r_.num_experts()));
        for (std::size_t e = 0; e < out.size(); ++e) {
            out[e].active = routing.active[e];
            out[e].weight = routing.weights[e];
            out[e].text = std::string(ctx.instruction);
            if (!out[e].active) continue;
            out[e].query_output = Tensor::copy_of(g.view());
            out[e].soft_prompt = Tensor::copy_of(routing.prompts[e].view());
        }
        return out;
    }

private:
    InstructionRouter r_;
};

/// The soft router's weights by the library's names (model.safetensors): router.gate.weight
/// [E, 2 H_q], router.gate.bias [E], router.mix.weight [E, P, 2 H_q], router.mix.bias [E, P],
/// router.bank [P, Lp, dp], router.proj.{e}.weight [H_e, dp]; fp32 (converted once otherwise).
inline SoftRouter load_soft_router(const io::SafetensorsFile& f, index_t experts, index_t qformer_hidden, index_t k = 0) {
    auto get = [&](const std::string& n) { return convert(io::float_tensor(f, n), DType::f32); };
    InstructionRouter::Weights w{get("router.gate.weight"), get("router.gate.bias"), get("router.mix.weight"),
                                 get("router.mix.bias"), get("router.bank"), {}};
    for (index_t e = 0; e < experts; ++e) w.proj.push_back(get(moe::detail::cat("router.proj.", e, ".weight")));
    return SoftRouter(InstructionRouter(std::move(w), qformer_hidden, qformer_hidden, k));
}

inline SoftRouter SoftRouter::load(const RsMoeConfig& c, const io::SafetensorsFile& f) {
    return load_soft_router(f, c.num_experts(), c.qformer.hidden_size);
}

}  // namespace moe::rs::rsmoe
