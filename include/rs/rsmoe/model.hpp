// rs/rsmoe/model.hpp - RS-MoE assembled from the library's parts (docs/rsmoe.md).
//
//   RsMoe<W, Router, Experts>    InstructBlipEncoder (EVA ViT-g -> ln_vision -> Q-Former) ->
//                                the instruction router (TextRouter | SoftRouter) -> the expert
//                                LLMs (LoraExperts | SeparateLlms) -> an aggregator (concat |
//                                fusion, from the config)
//   load_rsmoe<W, Router, Experts>(dir)   a model folder (rs/rsmoe/config.hpp)
//
// caption(pixels, instruction) for one image:
//   1. image_embeds = ln_vision(EVA(pixels))                                   [N, 1408]
//   2. the router's prompt per expert; every Q-Former pass it asks for runs the instruction-aware
//      Q-Former over image_embeds with that text's WordPiece ids ([CLS] ... [SEP], at most
//      max_txt_len, cut from the left as LAVIS's truncation_side = "left")
//   3. expert e's input = cat(llm_proj_e(query rows)   [Q, H_e]        (InstructBLIP's inputs_llm)
//                             soft prompt              [Lp, H_e]       (SoftRouter only)
//                             embed_e(bos + its text)  [n, H_e])       positions 0 .. Q+Lp+n-1
//   4. the active experts generate (LoraExperts: one batch); their texts are cleaned as LAVIS
//      does (special tokens skipped, stripped)
//   5. the answer: the sub-captions joined in expert order by the separator (concat), or one more
//      generation of the base / first LLM over the fusion template with {captions} filled (fusion)
// Timings per stage come back with the result.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lm/decoder/generate.hpp"
#include "lm/decoder/load.hpp"
#include "lm/decoder/lora.hpp"
#include "lm/tokenizer.hpp"
#include "moe/io/checkpoint.hpp"
#include "rs/rsmoe/config.hpp"
#include "rs/rsmoe/encoder.hpp"
#include "rs/rsmoe/experts.hpp"
#include "rs/rsmoe/router.hpp"
#include "vision/loaders.hpp"

namespace moe::rs::rsmoe {

/// Text -> token ids (the Q-Former's WordPiece ids with [CLS]/[SEP]; the LLM's with its bos).
using TextEncoder = std::function<std::vector<std::int32_t>(std::string_view)>;

struct CaptionOptions {
    /// Every expert's generation (and the fusion pass's, with the config's max_new_tokens): greedy,
    /// 48 new tokens, HF's repetition penalty 1.5 over the generated tokens. LAVIS searches 5
    /// beams with min_length 1: set generation.beams.num_beams = 5 and generation.min_new_tokens =
    /// 1 for its captions (one sequence per expert: num_return_sequences must stay 1).
    lm::GenerationOptions generation = [] {
        lm::GenerationOptions o;
        o.max_new_tokens = 48;
        o.sampling.temperature = 0.0f;
        o.sampling.repetition_penalty = 1.5f;
        return o;
    }();
    index_t experts = 0;  ///< run only the first n experts (0: all the router activates)
};

/// One expert's part of a caption.
struct ExpertCaption {
    std::string name;
    std::string instruction;         ///< its prompt text
    float weight = 0;                ///< its routing weight
    std::vector<std::int32_t> qformer_ids, llm_ids;  ///< its prompt's ids (Q-Former's, LLM's)
    std::vector<std::int32_t> ids;   ///< generated ids
    std::string text;                ///< its sub-caption
    lm::StopReason stop = lm::StopReason::max_new_tokens;
    index_t prompt_rows = 0;         ///< rows of its LLM input (visual tokens + soft prompt + text)
};

struct Caption {
    std::vector<ExpertCaption> experts;    ///< the experts that ran, in expert order
    std::string answer;                    ///< the aggregated caption / answer
    std::vector<std::int32_t> fusion_ids;  ///< the fusion pass's ids (fusion aggregator)
    double vision_seconds = 0, qformer_seconds = 0, prefill_seconds = 0, decode_seconds = 0, aggregate_seconds = 0;
    index_t decode_tokens = 0;
};

/// The LLM input of one expert (what caption() generates from).
struct ExpertInput {
    index_t expert = 0;
    ExpertPrompt prompt;
    std::vector<std::int32_t> qformer_ids, llm_ids;
    Tensor x;  ///< [rows, H_e]
};

template <WeightPolicy W, PromptRouter Router, LlmExperts Experts>
class RsMoe {
public:
    using Encoder = InstructBlipEncoder<W>;

    RsMoe(RsMoeConfig config, Encoder encoder, Router router, Experts experts)
        : c_(std::move(config)), enc_(std::move(encoder)), router_(std::move(router)), experts_(std::move(experts)) {
        check<ConfigError>(experts_.size() == c_.num_experts(), "RsMoe", "the config names ", c_.num_experts(),
                           " experts, the model holds ", experts_.size());
    }

    const RsMoeConfig& config() const noexcept { return c_; }
    Encoder& encoder() noexcept { return enc_; }
    Router& router() noexcept { return router_; }
    Experts& experts() noexcept { return experts_; }
    index_t parameters() const { return enc_.parameters() + experts_.parameters(); }
    void set_exec(const Exec& ex) {
        enc_.set_exec(ex);
        experts_.set_exec(ex);
    }

    /// How text becomes ids: the Q-Former's (with [CLS] and [SEP]) and the LLM's (with its bos).
    void set_text_encoders(TextEncoder qformer, TextEncoder llm) {
        qformer_ids_ = std::move(qformer);
        llm_ids_ = std::move(llm);
    }
    /// The tokenizers, used as LAVIS uses them: bert-base-uncased for the Q-Former (truncated from
    /// the left to max_txt_len), the LLM's with config().llm_bos (or its own bos) first.
    void set_tokenizers(std::shared_ptr<const lm::Tokenizer> bert, std::shared_ptr<const lm::Tokenizer> llm) {
        check<ConfigError>(bert && llm, "RsMoe::set_tokenizers", "both tokenizers are needed");
        std::int32_t bos = -1;
        if (!c_.llm_bos.empty()) {
            const auto id = llm->token_to_id(c_.llm_bos);
            check<ConfigError>(id.has_value(), "RsMoe::set_tokenizers", "llm_bos '", c_.llm_bos,
                               "' is not in the LLM's vocabulary");
            bos = static_cast<std::int32_t>(*id);
        } else if (llm->bos() && llm->bos()->id) {
            bos = static_cast<std::int32_t>(*llm->bos()->id);
        }
        const index_t max_len = c_.max_txt_len;
        qformer_ids_ = [bert, max_len](std::string_view text) {
            std::vector<std::int32_t> ids;
            for (const auto id : bert->encode(text)) ids.push_back(static_cast<std::int32_t>(id));
            if (static_cast<index_t>(ids.size()) > max_len && ids.size() >= 2) {  // keep [CLS], cut from the left
                std::vector<std::int32_t> cut{ids.front()};
                cut.insert(cut.end(), ids.end() - (max_len - 1), ids.end());
                ids = std::move(cut);
            }
            return ids;
        };
        llm_ids_ = [llm, bos](std::string_view text) {
            std::vector<std::int32_t> ids;
            if (bos >= 0) ids.push_back(bos);
            for (const auto id : llm->encode(text, {.add_special_tokens = false}))
                ids.push_back(static_cast<std::int32_t>(id));
            return ids;
        };
        llm_tok_ = std::move(llm);
    }
    const lm::Tokenizer* llm_tokenizer() const noexcept { return llm_tok_.get(); }

    /// ln_vision(EVA(pixels)) [N, width] for pixels [3, S, S] (vision::blip_pixels).
    Tensor image_embeds(const TensorView& pixels) { return enc_.image_embeds(pixels); }

    /// Steps 2-3: every active expert's LLM input for one image's embeddings.
    std::vector<ExpertInput> expert_inputs(const Tensor& image_embeds, std::string_view instruction,
                                           index_t max_experts = 0) {
        const char* w = "RsMoe::expert_inputs";
        check<ConfigError>(qformer_ids_ && llm_ids_, w, "no tokenizers: call set_tokenizers or set_text_encoders");
        const ConstMatrixRef<float> img = image_embeds.matrix<float>("RsMoe image embeddings");
        // The Q-Former ids of every text the router asks about, kept for the experts' records.
        std::map<std::string, std::vector<std::int32_t>, std::less<>> qformer_ids;
        auto qformer_ids_of = [&](std::string_view text) -> const std::vector<std::int32_t>& {
            auto it = qformer_ids.find(text);
            if (it == qformer_ids.end()) it = qformer_ids.emplace(std::string(text), qformer_ids_(text)).first;
            return it->second;
        };
        RouterContext ctx{instruction, experts_.size(), enc_.query_tokens(),
                          [&](std::string_view text) { return enc_.qformer(img, qformer_ids_of(text)); }};
        std::vector<ExpertPrompt> prompts = router_.route(ctx);
        check<ConfigError>(static_cast<index_t>(prompts.size()) == experts_.size(), w, "the router gave ",
                           prompts.size(), " prompts for ", experts_.size(), " experts");
        std::vector<ExpertInput> out;
        const index_t Q = enc_.query_tokens();
        for (index_t e = 0; e < experts_.size(); ++e) {
            ExpertPrompt& p = prompts[static_cast<std::size_t>(e)];
            if (!p.active || (max_experts > 0 && e >= max_experts)) continue;
            const index_t H = experts_.hidden_size(e);
            const bool has_soft = p.soft_prompt.rank() > 0;
            const index_t Lp = has_soft ? p.soft_prompt.dim(0) : 0;
            check<ShapeError>(!has_soft || (p.soft_prompt.rank() == 2 && p.soft_prompt.dim(1) == H), w, "expert ", e,
                              "'s soft prompt is ", p.soft_prompt.shape().str(), ", its LLM is ", H, " wide");
            std::vector<std::int32_t> qids = qformer_ids_of(p.text), ids = llm_ids_(p.text);
            ExpertInput in{e, std::move(p), std::move(qids), std::move(ids), {}};
            const index_t n = static_cast<index_t>(in.llm_ids.size());
            in.x = Tensor(DType::f32, {Q + Lp + n, H});
            MatrixRef<float> x = in.x.matrix<float>();
            const ConstMatrixRef<float> qo = in.prompt.query_output.matrix<float>("RsMoe Q-Former output");
            experts_.project(e, ConstMatrixRef<float>(qo.data, Q, qo.cols, qo.stride), MatrixRef<float>(x.data, Q, H, H));
            if (Lp) std::copy_n(in.prompt.soft_prompt.data<float>(), Lp * H, x.row(Q));
            if (n) experts_.embed(e, in.llm_ids, MatrixRef<float>(x.row(Q + Lp), n, H, H));
            out.push_back(std::move(in));
        }
        return out;
    }

    /// The whole model on one image: pixels f32 [3, S, S] (vision::blip_pixels); the instruction
    /// (kEvalInstruction for a caption, a question for VQA).
    Caption caption(const TensorView& pixels, std::string_view instruction, const CaptionOptions& opt = {}) {
        using clock = std::chrono::steady_clock;
        auto secs = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
        Caption cap;
        check<ConfigError>(opt.generation.beams.num_return_sequences == 1, "RsMoe::caption",
                           "one sequence per expert: num_return_sequences must be 1, got ",
                           opt.generation.beams.num_return_sequences);
        const auto t0 = clock::now();
        const Tensor img = image_embeds(pixels);
        const auto t1 = clock::now();
        std::vector<ExpertInput> inputs = expert_inputs(img, instruction, opt.experts);
        const auto t2 = clock::now();
        cap.vision_seconds = secs(t0, t1);
        cap.qformer_seconds = secs(t1, t2);
        std::vector<ExpertRun> runs;
        for (const ExpertInput& in : inputs) runs.push_back({in.expert, in.x.matrix<float>()});
        lm::GenerationResult g = experts_.generate(runs, opt.generation, llm_tok_.get());
        cap.prefill_seconds = g.prefill_seconds;
        cap.decode_seconds = g.decode_seconds;
        cap.decode_tokens = g.decode_tokens;
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            const ExpertInput& in = inputs[i];
            lm::Generation& s = g.sequences[i];
            cap.experts.push_back({c_.experts[static_cast<std::size_t>(in.expert)].name, in.prompt.text,
                                   in.prompt.weight, in.qformer_ids, in.llm_ids, std::move(s.ids), strip(s.text), s.stop,
                                   in.x.dim(0)});
        }
        const auto t3 = clock::now();
        cap.answer = aggregate(cap, opt);
        cap.aggregate_seconds = secs(t3, clock::now());
        return cap;
    }

private:
    static std::string strip(std::string_view s) {
        const auto b = s.find_first_not_of(" \t\n\r");
        if (b == std::string_view::npos) return {};
        const auto e = s.find_last_not_of(" \t\n\r");
        return std::string(s.substr(b, e - b + 1));
    }

    std::string aggregate(Caption& cap, const CaptionOptions& opt) {
        if (c_.aggregator == "concat") {
            std::string out;
            for (const ExpertCaption& e : cap.experts) {
                if (e.text.empty()) continue;
                if (!out.empty()) out += c_.separator;
                out += e.text;
            }
            return out;
        }
        // fusion: one more generation over the sub-captions (the base with LoRA experts: expert -1)
        std::string list;
        for (const ExpertCaption& e : cap.experts) list += moe::detail::cat("- ", e.name, ": ", e.text, "\n");
        std::string prompt = c_.fusion_template;
        prompt.replace(prompt.find("{captions}"), 10, list);
        const std::vector<std::int32_t> ids = llm_ids_(prompt);
        const index_t fuser = experts_.text_expert();
        const index_t H = experts_.hidden_size(fuser < 0 ? 0 : fuser);
        Tensor x(DType::f32, {static_cast<index_t>(ids.size()), H});
        experts_.embed(fuser < 0 ? 0 : fuser, ids, x.matrix<float>());
        lm::GenerationOptions o = opt.generation;
        o.max_new_tokens = c_.fusion_max_new_tokens;
        const ExpertRun run{fuser, x.matrix<float>()};
        lm::GenerationResult g = experts_.generate(std::span<const ExpertRun>(&run, 1), o, llm_tok_.get());
        cap.fusion_ids = g.sequences[0].ids;
        return strip(g.sequences[0].text);
    }

    RsMoeConfig c_;
    Encoder enc_;
    Router router_;
    Experts experts_;
    TextEncoder qformer_ids_, llm_ids_;
    std::shared_ptr<const lm::Tokenizer> llm_tok_;
};

/// An RS-MoE model folder (rs/rsmoe/config.hpp) with the router and expert kinds of the types
/// asked for (ConfigError when rsmoe.json says otherwise). The tokenizers are set when the folder
/// has them: bert/tokenizer.json and the LLM's tokenizer.json (the base folder, or the first
/// expert's).
template <WeightPolicy W, PromptRouter Router, LlmExperts Experts>
RsMoe<W, Router, Experts> load_rsmoe(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    const RsMoeConfig c = RsMoeConfig::from_file(dir / "rsmoe.json");
    const char* kinds[] = {"text", "soft"};
    check<ConfigError>(c.router == Router::kind, c.where, "the folder's router is '",
                       kinds[static_cast<int>(c.router)], "', the model type asks for '",
                       kinds[static_cast<int>(Router::kind)], "'");
    check<ConfigError>(c.expert_kind == Experts::kind, c.where, "the folder's experts are ",
                       c.expert_kind == ExpertKind::lora ? "LoRA adapters" : "separate LLMs", ", the model type asks for ",
                       Experts::kind == ExpertKind::lora ? "LoRA adapters" : "separate LLMs");
    const io::SafetensorsFile f = io::open_weights(dir);
    RsMoe<W, Router, Experts> m(c, load_instructblip<W>(f, c), Router::load(c, f), Experts::load(c, dir, f));
    const fs::path bert = dir / "bert" / "tokenizer.json";
    const fs::path llm = dir / (c.expert_kind == ExpertKind::lora ? c.base : c.experts[0].path) / "tokenizer.json";
    if (fs::exists(bert) && fs::exists(llm))
        m.set_tokenizers(std::make_shared<const lm::Tokenizer>(lm::Tokenizer::from_file(bert)),
                         std::make_shared<const lm::Tokenizer>(lm::Tokenizer::from_file(llm)));
    return m;
}

}  // namespace moe::rs::rsmoe
