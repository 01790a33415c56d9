// rs/rsunivlm/model.hpp - RSUniVLM assembled from the library's parts, and loaded from its
// released checkpoint names.
//
//   RsUniVlm<W>                 SigLIP tower (vision::Vit, kept layers, raw last output) ->
//                               mlp2x_gelu projector (DenseFfn::projection) -> + image_newline ->
//                               spliced into the prompt -> Qwen2 with a G-MoE in every layer
//                               (lm::GMoeDecoder: one expert per request)
//   load_rsunivlm<W>(dir)       a model folder (config.json + model.safetensors or shards)
//   Request                     one prompt: ids with kImageTokenIndex placeholders, its images
//                               (pixels [3, S, S] each, in order) and its granularity (expert),
//                               or kLearnedGranularity: set_granularity_router's choice
//
// The computation is LLaVA-NeXT's (tools/reference/rsunivlm.py mirrors it): encode_images =
// mm_projector(vision_tower(pixels)), the tower's hidden_states[-1] after LLaVA deleted its last
// layer (no post_layernorm); each image is its grid^2 features then image_newline (the single-image
// branch of prepare_inputs_labels_for_multimodal); the i-th placeholder of a request takes its
// i-th image; text pieces are embedded by embed_tokens; positions 0..n-1.
//
// Requests are independent: forward() runs several (any mix of granularities, each in its own
// cache slot) as one step of the decoder, generate() prefills each and decodes them together.
// Weights of type W are borrowed from the file's mapping (fp32 checkpoints with W = float,
// bf16 with W = bf16 or bf16_dot); biases, norms and tables are fp32 (converted once if stored
// otherwise). Errors: missing tensors NotFoundError, wrong shapes ShapeError (both naming the
// tensor), a prompt whose placeholders do not match its images ConfigError, pixels of another
// size ShapeError.
#pragma once

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "lm/decoder/generate.hpp"
#include "lm/decoder/load.hpp"
#include "moe/expert/dense_ffn.hpp"
#include "moe/io/checkpoint.hpp"
#include "moe/router/granularity.hpp"
#include "rs/rsunivlm/config.hpp"
#include "vision/loaders.hpp"
#include "vision/vit.hpp"

namespace moe::rs::rsunivlm {

/// Request::granularity asking the model's learned granularity router for the expert.
inline constexpr int kLearnedGranularity = -1;

/// One prompt of a batch.
struct Request {
    std::vector<std::int32_t> ids;  ///< token ids, kImageTokenIndex where each image goes
    std::vector<Tensor> images;     ///< pixels [3, S, S] per placeholder, in order
    int granularity = 0;            ///< the expert: 0 image-level, 1 region, 2 pixel, or
                                    ///< kLearnedGranularity (set_granularity_router)
};

/// The checkpoint's tensor names (prefixes) of the parts.
struct Names {
    static constexpr const char* vision = "model.vision_tower.vision_tower.vision_model.";
    static constexpr const char* projector = "model.mm_projector.";
    static constexpr const char* image_newline = "model.image_newline";
};

template <WeightPolicy W = float>
class RsUniVlm {
public:
    using Vision = vision::DenseVitTanh<W>;
    using Projector = DenseFfn<Gelu, W>;
    using Language = lm::GMoeDecoder<W>;

    RsUniVlm(RsUniVlmConfig config, Vision tower, std::optional<vision::LayerNorm> post_layernorm, Projector projector,
             Tensor image_newline, Language language)
        : c_(std::move(config)), tower_(std::move(tower)), post_ln_(std::move(post_layernorm)),
          proj_(std::move(projector)), newline_(std::move(image_newline)), lm_(std::move(language)) {
        const char* w = "RsUniVlm";
        const index_t H = c_.hidden_size();
        check<ShapeError>(proj_.hidden_size() == c_.mm_hidden_size && proj_.output_size() == H, w, "projector maps ",
                          proj_.hidden_size(), " -> ", proj_.output_size(), " features, expected ", c_.mm_hidden_size,
                          " -> ", H);
        check<ShapeError>(!c_.image_newline || (newline_.numel() == H && newline_.dtype() == DType::f32), w,
                          "image_newline must be f32 [", H, "]");
        check<ShapeError>(lm_.config().hidden_size == H, w, "language model hidden size ", lm_.config().hidden_size,
                          ", config ", H);
    }

    const RsUniVlmConfig& config() const noexcept { return c_; }
    Vision& vision_tower() noexcept { return tower_; }
    Language& language_model() noexcept { return lm_; }
    const Language& language_model() const noexcept { return lm_; }
    const Projector& projector() const noexcept { return proj_; }

    /// The learned variant of the granularity router (LearnedGranularityRouter: a Linear over the
    /// request's mean-pooled input embeddings, argmax): requests whose granularity is
    /// kLearnedGranularity get its choice, made once per request over its whole prompt (text and
    /// image rows) and kept for every token and layer, as the tag rule's is. The released model
    /// has no such router (its gate would come from training).
    void set_granularity_router(LearnedGranularityRouter r) {
        check<ConfigError>(r.hidden_size() == c_.hidden_size() && r.num_experts() == 3, "RsUniVlm::set_granularity_router",
                           "the router maps ", r.hidden_size(), " features to ", r.num_experts(),
                           " experts, the model needs ", c_.hidden_size(), " -> 3");
        learned_.emplace(std::move(r));
    }
    /// The expert of a request: its own granularity, or the learned router's choice over its
    /// input embeddings x [rows, H] (kLearnedGranularity).
    int granularity(const Request& r, ConstMatrixRef<float> x) {
        if (r.granularity != kLearnedGranularity) return r.granularity;
        check<ConfigError>(learned_.has_value(), "RsUniVlm", "a request asks for the learned granularity router, and "
                                                              "none is set (set_granularity_router)");
        RoutingPlan plan;
        learned_->set_requests({0, x.rows});
        learned_->route(x, plan);
        return static_cast<int>(plan.expert_ids[0]);
    }

    /// Threads for every part (results do not depend on the count).
    void set_exec(const Exec& ex) {
        tower_.set_exec(ex);
        proj_.set_exec(ex);
        lm_.set_exec(ex);
    }

    /// Parameters held (the checkpoint's count: the tower's unused post_layernorm included).
    index_t parameters() const {
        return tower_.parameters() + (post_ln_ ? post_ln_->parameters() : 0) + proj_.parameters() +
               (c_.image_newline ? c_.hidden_size() : 0) + lm_.parameters();
    }

    /// Image features of n images, pixels [n, 3, S, S] -> [n * image_tokens(), H]: each image's
    /// grid^2 projected features, then image_newline.
    Tensor encode_images(const TensorView& pixels) {
        const char* w = "RsUniVlm::encode_images";
        const index_t S = c_.image_size();
        check<ShapeError>(pixels.rank() == 4 && pixels.dim(1) == 3 && pixels.dim(2) == S && pixels.dim(3) == S, w,
                          "pixels are ", pixels.shape().str(), ", expected [n, 3, ", S, ", ", S, "]");
        const index_t n = pixels.dim(0), g2 = c_.vision.grid() * c_.vision.grid(), H = c_.hidden_size();
        const index_t per = c_.image_tokens();
        Tensor out(DType::f32, {n * per, H});
        if (n == 0) return out;
        const Tensor feats = tower_.forward(pixels);  // [n * g2, C]
        check<ShapeError>(feats.dim(0) == n * g2, w, "the tower gave ", feats.dim(0), " tokens for ", n, " images");
        const Tensor proj = proj_.forward(feats);     // [n * g2, H]
        for (index_t i = 0; i < n; ++i) {
            std::copy_n(proj.data<float>() + i * g2 * H, g2 * H, out.data<float>() + i * per * H);
            if (c_.image_newline) std::copy_n(newline_.data<float>(), H, out.data<float>() + (i * per + g2) * H);
        }
        return out;
    }

    /// A request's input embeddings [rows(r), H]: text pieces embedded, image features spliced.
    Tensor embed(const Request& r) {
        const char* w = "RsUniVlm::embed";
        const index_t H = c_.hidden_size(), per = c_.image_tokens();
        std::vector<std::int32_t> text;
        index_t placeholders = 0;
        for (const std::int32_t id : r.ids) {
            if (id == kImageTokenIndex) ++placeholders;
            else text.push_back(id);
        }
        check<ConfigError>(placeholders == static_cast<index_t>(r.images.size()), w, "the prompt has ", placeholders,
                           " image placeholders (", kImageTokenIndex, ") for ", r.images.size(), " images");
        check<ConfigError>((r.granularity >= 0 && r.granularity < 3) || r.granularity == kLearnedGranularity, w,
                           "granularity ", r.granularity, " is not 0 (image), 1 (region), 2 (pixel) or kLearnedGranularity");
        Tensor feats;
        if (placeholders > 0) {
            const index_t S = c_.image_size();
            Tensor pix(DType::f32, {placeholders, 3, S, S});
            for (std::size_t i = 0; i < r.images.size(); ++i) {
                const Tensor& im = r.images[i];
                check<ShapeError>(im.dtype() == DType::f32 && im.numel() == 3 * S * S &&
                                      (im.rank() == 3 || (im.rank() == 4 && im.dim(0) == 1)),
                                  w, "image ", i, " is ", im.shape().str(), ", expected f32 [3, ", S, ", ", S, "]");
                std::copy_n(im.data<float>(), 3 * S * S, pix.data<float>() + static_cast<index_t>(i) * 3 * S * S);
            }
            feats = encode_images(pix);
        }
        Tensor t(DType::f32, {static_cast<index_t>(text.size()), H});
        if (!text.empty()) lm_.embed(text, t.matrix<float>());
        Tensor out(DType::f32, {rows(r), H});
        index_t o = 0, ti = 0, img = 0;
        for (const std::int32_t id : r.ids) {
            if (id == kImageTokenIndex) {
                std::copy_n(feats.data<float>() + img * per * H, per * H, out.data<float>() + o * H);
                o += per;
                ++img;
            } else {
                std::copy_n(t.data<float>() + ti * H, H, out.data<float>() + o * H);
                ++o;
                ++ti;
            }
        }
        return out;
    }

    /// Rows a request puts through the language model (text tokens + image_tokens() per image).
    index_t rows(const Request& r) const noexcept {
        index_t n = 0;
        for (const std::int32_t id : r.ids) n += id == kImageTokenIndex ? c_.image_tokens() : 1;
        return n;
    }

    template <class T = float>
    lm::KvCache<T> make_cache(index_t slots, index_t max_seq) const {
        return lm_.template make_cache<T>(slots, max_seq);
    }

    /// Requests r[i] appended to cache slot slots[i] (empty slots: 0, 1, ...), all in one decoder
    /// step; logits of `which` rows (LogitRows::all: [sum of rows, V], request after request).
    template <class T>
    Tensor forward(std::span<const Request> requests, lm::KvCache<T>& cache, lm::LogitRows which = lm::LogitRows::last,
                   std::span<const index_t> slots = {}) {
        check<ConfigError>(slots.empty() || slots.size() == requests.size(), "RsUniVlm::forward", slots.size(),
                           " slots for ", requests.size(), " requests");
        std::vector<Tensor> parts;
        lm::Step st;
        index_t total = 0;
        for (std::size_t i = 0; i < requests.size(); ++i) {
            parts.push_back(embed(requests[i]));
            st.add(slots.empty() ? static_cast<index_t>(i) : slots[i], parts.back().dim(0),
                   granularity(requests[i], parts.back().matrix<float>()));
            total += parts.back().dim(0);
        }
        const index_t H = c_.hidden_size();
        Tensor x(DType::f32, {total, H});
        index_t o = 0;
        for (const Tensor& p : parts) {
            std::copy_n(p.data<float>(), p.numel(), x.data<float>() + o * H);
            o += p.dim(0);
        }
        return lm_.forward(ConstMatrixRef<float>(x.matrix<float>()), st, cache, which);
    }

    /// Generation for every request at once (request i in slot i; LLaVA's generate: the
    /// repetition penalty sees the generated tokens only). Prefill time includes the vision tower.
    template <class T, class... P>
        requires(lm::LogitsProcessor<P> && ...)
    lm::GenerationResult generate(std::span<const Request> requests, lm::KvCache<T>& cache,
                                  lm::GenerationOptions opt, const lm::Tokenizer* tokenizer = nullptr,
                                  const lm::TokenCallback& on_token = {}, const P&... processors) {
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<Tensor> embeds;
        std::vector<lm::EmbeddedPrompt> prompts;
        opt.experts.clear();
        for (const Request& r : requests) {
            embeds.push_back(embed(r));
            opt.experts.push_back(granularity(r, embeds.back().matrix<float>()));
        }
        for (const Tensor& e : embeds) prompts.push_back({ConstMatrixRef<float>(e.matrix<float>()), {}});
        const double vision_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        lm::GenerationResult res = lm::generate(lm_, cache, std::span<const lm::EmbeddedPrompt>(prompts), opt,
                                                tokenizer, on_token, processors...);
        res.prefill_seconds += vision_s;
        return res;
    }

private:
    RsUniVlmConfig c_;
    Vision tower_;
    std::optional<vision::LayerNorm> post_ln_;
    Projector proj_;
    Tensor newline_;
    Language lm_;
    std::optional<LearnedGranularityRouter> learned_;
};

/// A model folder: config.json (RsUniVlmConfig) and model.safetensors or shards, by the released
/// names. The tower loads the config's kept layers; post_layernorm is read when present (kept,
/// unused, as LLaVA does).
template <WeightPolicy W = float>
RsUniVlm<W> load_rsunivlm(const RsUniVlmConfig& c, const io::SafetensorsFile& f) {
    vision::VitConfig vc = c.vision;
    vc.final_norm = false;
    auto tower = vision::load_siglip_vision<W>(f, Names::vision, vc);
    std::optional<vision::LayerNorm> post;
    const std::string pl = std::string(Names::vision) + "post_layernorm.";
    if (f.contains(pl + "weight")) post = vision::load_layer_norm(f, pl, c.vision.width, c.vision.eps);
    const std::string p = Names::projector;
    const index_t H = c.hidden_size();
    auto proj = DenseFfn<Gelu, W>::projection(vision::load_linear<W>(f, p + "0.", H, c.mm_hidden_size, true),
                                              vision::load_linear<W>(f, p + "2.", H, H, true), "mm_projector");
    Tensor newline;
    if (c.image_newline) newline = io::borrow_or_convert(f, Names::image_newline, {H}, DType::f32);
    auto language = lm::load_decoder<lm::GMoeDecoder<W>>(c.text, f);
    return RsUniVlm<W>(c, std::move(tower), std::move(post), std::move(proj), std::move(newline), std::move(language));
}

template <WeightPolicy W = float>
RsUniVlm<W> load_rsunivlm(const std::filesystem::path& dir) {
    const RsUniVlmConfig c = RsUniVlmConfig::from_file(dir / "config.json");
    const io::SafetensorsFile f = io::open_weights(dir);
    return load_rsunivlm<W>(c, f);
}

}  // namespace moe::rs::rsunivlm
