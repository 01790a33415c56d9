// rs/rsmoe/experts.hpp - RS-MoE's experts: whole LLMs, each continuing the visual tokens and the
// prompt its router gave it. Two kinds, chosen at compile time by RsMoe's Experts type:
//
//   LoraExperts<W>      one shared base LLM (RS-MoE's stage-1 model) with one LoRA adapter per
//                       expert (lm::CausalLM::add_adapter, PEFT folders), and one llm_proj. All
//                       experts decode AS ONE BATCH: every step reads the base weights once for
//                       all of them, each sequence adding its own adapter's low-rank deltas
//                       (Step::adapters). Expert -1 is the base alone (the fusion aggregator's).
//   SeparateLlms<W>     independent LLMs (sizes may differ), each with its own llm_proj
//                       (768 -> its width); each decodes on its own, one after the other.
//
// LlmExperts<X> is the contract RsMoe uses. Promises: size() experts; hidden_size(e) is expert e's
// width; project(e) maps Q-Former rows [n, H_q] to [n, hidden_size(e)]; embed(e, ids) gives its
// token embeddings; generate(runs, options, tokenizer) generates for every run (one prompt of
// input embeddings per run, run i with expert runs[i].expert) and returns one Generation per run in
// order; a run's tokens do not depend on the other runs (greedy, or sampling keyed by its index).
#pragma once

#include <algorithm>
#include <concepts>
#include <filesystem>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "lm/decoder/generate.hpp"
#include "lm/decoder/load.hpp"
#include "lm/decoder/lora.hpp"
#include "lm/tokenizer.hpp"
#include "moe/backend/cpu/linear.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/io/safetensors.hpp"
#include "rs/rsmoe/config.hpp"
#include "vision/loaders.hpp"

namespace moe::rs::rsmoe {

/// One prompt for one expert: its input embeddings x [n, hidden_size(expert)] (borrowed).
struct ExpertRun {
    index_t expert = 0;  ///< -1: the shared base (LoraExperts only)
    ConstMatrixRef<float> x;
};

template <class X>
concept LlmExperts = requires(X& x, const X& cx, index_t e, ConstMatrixRef<float> in, MatrixRef<float> out,
                              std::span<const std::int32_t> ids, std::span<const ExpertRun> runs,
                              const lm::GenerationOptions& o, const lm::Tokenizer* tok, const Exec& ex) {
    { cx.size() } -> std::convertible_to<index_t>;
    { cx.hidden_size(e) } -> std::convertible_to<index_t>;
    x.project(e, in, out);
    x.embed(e, ids, out);
    { x.generate(runs, o, tok) } -> std::same_as<lm::GenerationResult>;
    x.set_exec(ex);
    { cx.parameters() } -> std::convertible_to<index_t>;
    { cx.text_expert() } -> std::convertible_to<index_t>;  // the run a text-only pass (fusion) uses
};

namespace detail {

inline void check_projection(const char* w, index_t e, index_t in_rows, index_t in_cols, index_t q_hidden,
                             index_t out_rows, index_t out_cols, index_t hidden) {
    check<ShapeError>(in_cols == q_hidden && out_rows == in_rows && out_cols == hidden, w, "expert ", e,
                      ": projecting [", in_rows, ", ", in_cols, "] into [", out_rows, ", ", out_cols, "], expected [n, ",
                      q_hidden, "] -> [n, ", hidden, "]");
}

}  // namespace detail

/// LoRA adapters over one base LLM, decoded as one batch.
template <WeightPolicy W = float>
class LoraExperts {
public:
    using Model = lm::DenseDecoder<W>;
    static constexpr ExpertKind kind = ExpertKind::lora;

    /// From a model folder: the base LLM <dir>/<config.base>, expert e's PEFT adapter
    /// <dir>/<experts[e].path> as adapter e, llm_proj.* of the model file.
    static LoraExperts load(const RsMoeConfig& c, const std::filesystem::path& dir, const io::SafetensorsFile& f) {
        Model base = lm::load_decoder<Model>(dir / c.base);
        for (index_t e = 0; e < c.num_experts(); ++e)
            lm::load_lora_adapter(base, dir / c.experts[static_cast<std::size_t>(e)].path, static_cast<int>(e));
        const index_t H = base.hidden_size();
        auto proj = vision::load_linear<W>(f, "llm_proj.", H, c.qformer.hidden_size, true);
        return LoraExperts(std::move(base), std::move(proj), c.num_experts());
    }

    /// The base with adapters 0 .. experts - 1 already added (add_adapter), and llm_proj [H, H_q].
    LoraExperts(Model base, cpu::Linear<W> llm_proj, index_t experts)
        : base_(std::move(base)), proj_(std::move(llm_proj)), n_(experts) {
        check<ShapeError>(proj_.out_features() == base_.hidden_size(), "LoraExperts", "llm_proj gives ",
                          proj_.out_features(), " features, the base LLM is ", base_.hidden_size(), " wide");
        check<ConfigError>(n_ > 0, "LoraExperts", "no experts");
        for (index_t e = 0; e < n_; ++e)
            check<ConfigError>(base_.has_adapter(static_cast<int>(e)), "LoraExperts", "expert ", e,
                               " has no adapter in the base model");
    }
    index_t size() const noexcept { return n_; }
    index_t hidden_size(index_t) const noexcept { return base_.hidden_size(); }
    /// The shared base, without adapter.
    index_t text_expert() const noexcept { return -1; }
    Model& base() noexcept { return base_; }
    const Model& base() const noexcept { return base_; }
    const cpu::Linear<W>& llm_proj() const noexcept { return proj_; }
    index_t parameters() const { return base_.parameters() + proj_.parameters() + base_.adapter_parameters(); }
    void set_exec(const Exec& ex) {
        base_.set_exec(ex);
        exec_ = ex;
    }

    void project(index_t e, ConstMatrixRef<float> in, MatrixRef<float> out) {
        detail::check_projection("LoraExperts::project", e, in.rows, in.cols, proj_.in_features(), out.rows, out.cols,
                                 base_.hidden_size());
        proj_.forward(in, out, exec_);
    }
    void embed(index_t, std::span<const std::int32_t> ids, MatrixRef<float> out) const { base_.embed(ids, out); }

    /// Every run in one batch: run i in cache slot i with adapter runs[i].expert (-1: the base).
    lm::GenerationResult generate(std::span<const ExpertRun> runs, const lm::GenerationOptions& opt,
                                  const lm::Tokenizer* tokenizer) {
        check<ConfigError>(!runs.empty(), "LoraExperts::generate", "no runs");
        std::vector<lm::EmbeddedPrompt> prompts;
        lm::GenerationOptions o = opt;
        o.adapters.clear();
        index_t longest = 0;
        for (const ExpertRun& r : runs) {
            check<ConfigError>(r.expert >= -1 && r.expert < n_, "LoraExperts::generate", "expert ", r.expert,
                               " is not -1 (the base) or in [0, ", n_, ")");
            prompts.push_back({r.x, {}});
            o.adapters.push_back(static_cast<int>(r.expert));
            longest = std::max(longest, r.x.rows);
        }
        auto& cache = cache_for(lm::cache_slots_for(static_cast<index_t>(runs.size()), opt), longest + opt.max_new_tokens + 1);
        return lm::generate(base_, cache, std::span<const lm::EmbeddedPrompt>(prompts), o, tokenizer);
    }

private:
    lm::KvCache<float>& cache_for(index_t slots, index_t seq) {
        if (!cache_ || cache_->slots() < slots || cache_->max_seq() < seq) cache_.emplace(base_.make_cache(slots, seq));
        return *cache_;
    }

    Model base_;
    cpu::Linear<W> proj_;
    index_t n_ = 0;
    Exec exec_;
    std::optional<lm::KvCache<float>> cache_;
};

/// Independent expert LLMs (widths may differ), each with its own llm_proj.
template <WeightPolicy W = float>
class SeparateLlms {
public:
    using Model = lm::DenseDecoder<W>;
    static constexpr ExpertKind kind = ExpertKind::llm;

    /// From a model folder: expert e's LLM <dir>/<experts[e].path> (a Hugging Face folder) and
    /// its llm_proj.safetensors (llm_proj.weight [H_e, H_q], llm_proj.bias [H_e]).
    static SeparateLlms load(const RsMoeConfig& c, const std::filesystem::path& dir, const io::SafetensorsFile&) {
        std::vector<Model> models;
        std::vector<cpu::Linear<W>> proj;
        for (const ExpertEntry& e : c.experts) {
            models.push_back(lm::load_decoder<Model>(dir / e.path));
            const io::SafetensorsFile pf = io::SafetensorsFile::open(dir / e.path / "llm_proj.safetensors");
            proj.push_back(vision::load_linear<W>(pf, "llm_proj.", models.back().hidden_size(), c.qformer.hidden_size, true));
        }
        return SeparateLlms(std::move(models), std::move(proj));
    }

    SeparateLlms(std::vector<Model> models, std::vector<cpu::Linear<W>> llm_proj)
        : models_(std::move(models)), proj_(std::move(llm_proj)), caches_(models_.size()) {
        check<ConfigError>(!models_.empty() && models_.size() == proj_.size(), "SeparateLlms", models_.size(),
                           " LLMs and ", proj_.size(), " projections (one each, at least one)");
        for (std::size_t e = 0; e < models_.size(); ++e)
            check<ShapeError>(proj_[e].out_features() == models_[e].hidden_size(), "SeparateLlms", "expert ", e,
                              "'s llm_proj gives ", proj_[e].out_features(), " features, its LLM is ",
                              models_[e].hidden_size(), " wide");
    }
    index_t size() const noexcept { return static_cast<index_t>(models_.size()); }
    index_t hidden_size(index_t e) const { return at(models_, e).hidden_size(); }
    /// The first expert's LLM.
    index_t text_expert() const noexcept { return 0; }
    Model& model(index_t e) { return at(models_, e); }
    index_t parameters() const {
        index_t n = 0;
        for (std::size_t e = 0; e < models_.size(); ++e) n += models_[e].parameters() + proj_[e].parameters();
        return n;
    }
    void set_exec(const Exec& ex) {
        for (Model& m : models_) m.set_exec(ex);
        exec_ = ex;
    }

    void project(index_t e, ConstMatrixRef<float> in, MatrixRef<float> out) {
        const cpu::Linear<W>& p = at(proj_, e);
        detail::check_projection("SeparateLlms::project", e, in.rows, in.cols, p.in_features(), out.rows, out.cols,
                                 p.out_features());
        p.forward(in, out, exec_);
    }
    void embed(index_t e, std::span<const std::int32_t> ids, MatrixRef<float> out) const { at(models_, e).embed(ids, out); }

    /// Each run on its own expert, one after the other (results in run order; timings summed).
    lm::GenerationResult generate(std::span<const ExpertRun> runs, const lm::GenerationOptions& opt,
                                  const lm::Tokenizer* tokenizer) {
        lm::GenerationResult all;
        for (const ExpertRun& r : runs) {
            Model& m = at(models_, r.expert);
            auto& slot = caches_[static_cast<std::size_t>(r.expert)];
            const index_t seq = r.x.rows + opt.max_new_tokens + 1;
            const index_t slots = lm::cache_slots_for(1, opt);
            if (!slot || slot->max_seq() < seq || slot->slots() < slots) slot.emplace(m.make_cache(slots, seq));
            const lm::EmbeddedPrompt p{r.x, {}};
            lm::GenerationResult g = lm::generate(m, *slot, std::span<const lm::EmbeddedPrompt>(&p, 1), opt, tokenizer);
            for (lm::Generation& s : g.sequences) all.sequences.push_back(std::move(s));
            all.prefill_tokens += g.prefill_tokens;
            all.decode_tokens += g.decode_tokens;
            all.prefill_seconds += g.prefill_seconds;
            all.decode_seconds += g.decode_seconds;
        }
        return all;
    }

private:
    template <class V>
    static auto& at(V& v, index_t e) {
        check<ConfigError>(e >= 0 && e < static_cast<index_t>(v.size()), "SeparateLlms", "expert ", e,
                           " is not in [0, ", v.size(), ")");
        return v[static_cast<std::size_t>(e)];
    }

    std::vector<Model> models_;
    std::vector<cpu::Linear<W>> proj_;
    std::vector<std::optional<lm::KvCache<float>>> caches_;
    Exec exec_;
};

}  // namespace moe::rs::rsmoe
