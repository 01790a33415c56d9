// vision/qformer.hpp - the BLIP-2 / InstructBLIP Q-Former, exactly as LAVIS computes it
// (lavis/models/blip2_models/Qformer.py: a BERT with cross-attention every cross_attention_freq
// layers and a second FFN for the query rows; reference: tools/reference/qformer.py).
//
//   QFormerConfig          sizes; preset instructblip() (bert-base, 1408-wide EVA image tokens)
//   CrossAttention<W>      multi-head attention of rows x over other rows (image tokens)
//   QFormerLayer<W>        one BertLayer (post-LN)
//   QFormer<W>             embeddings -> layers; holds the query tokens
//   load_qformer<W>(f, prefix = "Qformer.bert.", query_tokens_name = "query_tokens", cfg)
//
// Math, one image and one (unpadded) text per call, Q query rows and T text rows:
//   h = LN_emb(cat(query_embeds [Q, H], word[ids] + pos[0 .. T-1]))     (text positions from 0)
//   layer i:  h = LN(h + dense(MHA(h, h)))                         all Q + T rows, no mask
//             q = h[0, Q);  q = LN(q + dense(MHA(q, image)))       when i % cross_attention_freq == 0
//             q = LN(q + output_query(GELU(intermediate_query(q))))
//             t = h[Q, Q+T); t = LN(t + output(GELU(intermediate(t))))
//             h = cat(q, t)
//   MHA: per head softmax(q k^T / sqrt(d)) v, heads head-major; GELU exact (erf); LN eps 1e-12.
// LAVIS's masks are all ones for one unpadded sequence; (1 - mask) * -10000 adds 0, so none here.
//
// Checkpoint names (LAVIS's state_dict; L = {prefix}encoder.layer.{i}.):
//   query_tokens [1, Q, H]; {prefix}embeddings.word_embeddings.weight [V, H],
//   .position_embeddings.weight [P, H], .LayerNorm.{weight, bias}; .position_ids (I64, ignored)
//   L attention.self.{query,key,value}.{weight [H, H], bias}, L attention.output.dense.*, .LayerNorm.*
//   L crossattention.self.query.* [H, H], .key/.value.weight [H, E] (+ bias), crossattention.output.*
//   L intermediate.dense [I, H], output.dense [H, I], output.LayerNorm; the same for *_query
// A checkpoint without text input (BLIP-2: word/position embeddings and the text FFNs removed)
// loads too; forward with text ids then throws ConfigError. Linear weights are cpu::Linear<W>
// (borrowed from the mapping when stored as W, converted once otherwise); embeddings, query
// tokens, biases and norms fp32. Every part runs on the Exec of set_exec (GEMMs split by output
// columns, attention by head): results do not depend on the thread count.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "moe/core/precision.hpp"
#include "moe/io/checkpoint.hpp"
#include "vision/attention.hpp"
#include "vision/block.hpp"
#include "vision/loaders.hpp"
#include "vision/mlp.hpp"

namespace moe::vision {

struct QFormerConfig {
    index_t hidden_size = 768;
    index_t num_hidden_layers = 12;
    index_t num_attention_heads = 12;
    index_t intermediate_size = 3072;
    index_t max_position_embeddings = 512;
    float layer_norm_eps = 1e-12f;
    index_t encoder_width = 1408;      ///< width of the image tokens (EVA ViT-g)
    index_t cross_attention_freq = 2;  ///< cross-attention in layers i with i % freq == 0
    index_t num_query_tokens = 32;
    index_t vocab_size = 30523;  ///< bert-base-uncased's 30522 + "[DEC]"

    /// InstructBLIP's Q-Former (LAVIS blip2_vicuna_instruct / blip2_t5_instruct).
    static QFormerConfig instructblip() { return {}; }

    bool has_cross_attention(index_t layer) const noexcept { return layer % cross_attention_freq == 0; }

    /// ConfigError naming the field unless every size is positive and the heads divide the width.
    void validate(std::string_view what = "vision::QFormerConfig") const {
        const std::pair<const char*, index_t> sizes[] = {
            {"hidden_size", hidden_size}, {"num_hidden_layers", num_hidden_layers},
            {"num_attention_heads", num_attention_heads}, {"intermediate_size", intermediate_size},
            {"max_position_embeddings", max_position_embeddings}, {"encoder_width", encoder_width},
            {"cross_attention_freq", cross_attention_freq}, {"num_query_tokens", num_query_tokens},
            {"vocab_size", vocab_size}};
        for (const auto& [name, v] : sizes) check<ConfigError>(v > 0, what, name, " must be positive, got ", v);
        check<ConfigError>(hidden_size % num_attention_heads == 0, what, "num_attention_heads ", num_attention_heads,
                           " does not divide hidden_size ", hidden_size);
        check<ConfigError>(layer_norm_eps > 0, what, "layer_norm_eps must be positive, got ", layer_norm_eps);
    }

    /// The sizes a checkpoint holds (hidden, vocab, positions, layers, intermediate, encoder width,
    /// cross-attention frequency, query tokens); heads and eps are not in the file. Without text
    /// weights, vocab_size and max_position_embeddings keep InstructBLIP's values.
    static QFormerConfig from_file(const io::SafetensorsFile& f, std::string prefix = "Qformer.bert.",
                                   const std::string& query_tokens_name = "query_tokens", index_t heads = 12,
                                   float eps = 1e-12f) {
        prefix = io::module_prefix(std::move(prefix));
        const std::string e = prefix + "embeddings.", L = prefix + "encoder.layer.";
        QFormerConfig c;
        c.num_attention_heads = heads;
        c.layer_norm_eps = eps;
        const TensorView qt = io::float_tensor(f, query_tokens_name);
        check<ShapeError>(qt.rank() == 3 && qt.dim(0) == 1, query_tokens_name, "expected [1, Q, H], found ",
                          qt.shape().str());
        c.num_query_tokens = qt.dim(1);
        c.hidden_size = qt.dim(2);
        if (f.contains(e + "word_embeddings.weight")) {
            c.vocab_size = io::matrix(f, e + "word_embeddings.weight").dim(0);
            c.max_position_embeddings = io::matrix(f, e + "position_embeddings.weight").dim(0);
        }
        c.num_hidden_layers = io::require_indexed(f, L, L + "0.attention.self.query.weight");
        c.intermediate_size = io::matrix(f, L + "0.intermediate_query.dense.weight").dim(0);
        c.encoder_width = io::matrix(f, L + "0.crossattention.self.key.weight").dim(1);
        auto cross = [&](index_t i) { return f.contains(detail::idx(L, i, ".crossattention.self.query.weight")); };
        for (c.cross_attention_freq = 1; c.cross_attention_freq <= c.num_hidden_layers; ++c.cross_attention_freq) {
            bool fits = true;
            for (index_t i = 0; i < c.num_hidden_layers && fits; ++i) fits = cross(i) == c.has_cross_attention(i);
            if (fits) break;
        }
        check<ConfigError>(c.cross_attention_freq <= c.num_hidden_layers, f.path(),
                           "the layers with cross-attention under '", L, "' follow no i % freq == 0 pattern");
        c.validate(f.path());
        return c;
    }
};

/// Multi-head attention of the rows of x [n, C] over the rows of ctx [m, E]: q = x Wq^T + bq
/// (C -> C), k, v = ctx W^T + b (E -> C), y = dense(concat_h softmax(q_h k_h^T / sqrt(d)) v_h).
template <WeightPolicy W = float>
class CrossAttention {
public:
    CrossAttention() = default;
    CrossAttention(Linear<W> q, Linear<W> k, Linear<W> v, Linear<W> dense, index_t heads,
                   std::string_view what = "vision::CrossAttention")
        : q_(std::move(q)), k_(std::move(k)), v_(std::move(v)), dense_(std::move(dense)), heads_(heads) {
        const index_t C = q_.out_features();
        check<ConfigError>(heads_ > 0 && C % heads_ == 0, what, heads_, " heads do not divide width ", C);
        check<ShapeError>(q_.in_features() == C && dense_.in_features() == C && dense_.out_features() == C &&
                              k_.out_features() == C && v_.out_features() == C && v_.in_features() == k_.in_features(),
                          what, "q [", q_.out_features(), ", ", q_.in_features(), "], k [", k_.out_features(), ", ",
                          k_.in_features(), "], v [", v_.out_features(), ", ", v_.in_features(), "], dense [",
                          dense_.out_features(), ", ", dense_.in_features(), "] do not fit");
        scale_ = static_cast<float>(1.0 / std::sqrt(static_cast<double>(C / heads_)));
    }
    index_t width() const noexcept { return q_.out_features(); }
    index_t context_width() const noexcept { return k_.in_features(); }
    index_t heads() const noexcept { return heads_; }
    index_t parameters() const noexcept {
        return q_.parameters() + k_.parameters() + v_.parameters() + dense_.parameters();
    }

    /// y [n, C] = attention of x [n, C] over ctx [m, E] (y must not alias x).
    void forward(ConstMatrixRef<float> x, ConstMatrixRef<float> ctx, MatrixRef<float> y,
                 const Exec& ex = Exec::serial()) const {
        const char* w = "vision::CrossAttention::forward";
        const index_t C = width(), n = x.rows, m = ctx.rows, d = C / heads_;
        check<ShapeError>(ctx.cols == context_width() && m > 0, w, "expected context [m > 0, ", context_width(),
                          "], found [", m, ", ", ctx.cols, "]");
        float* q = q_buf_.get(static_cast<std::size_t>(n * C));
        float* kv = kv_buf_.get(static_cast<std::size_t>(m * 2 * C));
        float* o = o_buf_.get(static_cast<std::size_t>(n * C));
        q_.forward(x, MatrixRef<float>(q, n, C), ex);
        k_.forward(ctx, MatrixRef<float>(kv, m, C, 2 * C), ex);
        v_.forward(ctx, MatrixRef<float>(kv + C, m, C, 2 * C), ex);
        const int nt = parallel_workers(ex, heads_, 1);
        if (static_cast<int>(scratch_.size()) < nt) scratch_.resize(static_cast<std::size_t>(nt));
        parallel_chunks(ex, heads_, 1, [&](index_t b, index_t e, int worker) {
            for (index_t h = b; h < e; ++h)
                kernel::attend<math_t<W>>(q + h * d, C, n, kv + h * d, kv + C + h * d, 2 * C, m, d, scale_, nullptr,
                                          nullptr, o + h * d, C, scratch_[static_cast<std::size_t>(worker)]);
        });
        dense_.forward(ConstMatrixRef<float>(o, n, C), y, ex);
    }

private:
    Linear<W> q_, k_, v_, dense_;
    index_t heads_ = 0;
    float scale_ = 1.0f;
    mutable Scratch<float> q_buf_, kv_buf_, o_buf_;
    mutable std::vector<kernel::HeadScratch> scratch_;
};

/// LAVIS's BertLayer with query_length: post-LN self-attention over all rows, cross-attention
/// (optional) and FFN of the query rows, the text FFN (optional: absent without text input).
template <WeightPolicy W = float>
struct QFormerLayer {
    Attention<W> attention;  ///< attention.self.{query,key,value} + attention.output.dense
    LayerNorm attention_norm;
    std::optional<CrossAttention<W>> crossattention;
    LayerNorm crossattention_norm;
    Mlp<Gelu, W> ffn_query;  ///< intermediate_query.dense, output_query.dense
    LayerNorm ffn_query_norm;
    std::optional<Mlp<Gelu, W>> ffn_text;  ///< intermediate.dense, output.dense
    LayerNorm ffn_text_norm;

    index_t parameters() const noexcept {
        index_t p = attention.parameters() + attention_norm.parameters() + ffn_query.parameters() +
                    ffn_query_norm.parameters();
        if (crossattention) p += crossattention->parameters() + crossattention_norm.parameters();
        if (ffn_text) p += ffn_text->parameters() + ffn_text_norm.parameters();
        return p;
    }

    /// x [Q + T, H] in place (the first Q rows are the queries); a, b: the caller's scratch.
    void forward(MatrixRef<float> x, index_t Q, ConstMatrixRef<float> image, const Exec& ex, Scratch<float>& a,
                 Scratch<float>& b) {
        const index_t T = x.rows - Q;
        const Tensor none;
        detail::residual(NormOrder::post, x, attention_norm, none, [&](ConstMatrixRef<float> in, MatrixRef<float> out) {
            attention.forward(in, out, x.rows, nullptr, nullptr, 0, ex);
        }, a, b);
        const MatrixRef<float> q = x.block_rows(0, Q), t = x.block_rows(Q, T);
        if (crossattention)
            detail::residual(NormOrder::post, q, crossattention_norm, none,
                             [&](ConstMatrixRef<float> in, MatrixRef<float> out) {
                                 crossattention->forward(in, image, out, ex);
                             }, a, b);
        ffn_query.set_exec(ex);
        detail::residual(NormOrder::post, q, ffn_query_norm, none,
                         [&](ConstMatrixRef<float> in, MatrixRef<float> out) { ffn_query.forward(in, out); }, a, b);
        if (T == 0) return;
        check<ConfigError>(ffn_text.has_value(), "vision::QFormerLayer", "this Q-Former has no text FFN "
                           "(intermediate / output weights): it takes no text input");
        ffn_text->set_exec(ex);
        detail::residual(NormOrder::post, t, ffn_text_norm, none,
                         [&](ConstMatrixRef<float> in, MatrixRef<float> out) { ffn_text->forward(in, out); }, a, b);
    }
};

template <WeightPolicy W = float>
class QFormer {
public:
    QFormer() = default;
    /// query_tokens [Q, H] or [1, Q, H]; word [V, H] and pos [P, H], or both empty (no text input).
    QFormer(QFormerConfig cfg, Tensor query_tokens, Tensor word, Tensor pos, LayerNorm emb_norm,
            std::vector<QFormerLayer<W>> layers, std::string_view what = "vision::QFormer")
        : cfg_(cfg), emb_norm_(std::move(emb_norm)), layers_(std::move(layers)) {
        cfg_.validate(what);
        const index_t H = cfg_.hidden_size;
        auto f32 = [](Tensor t) { return t.dtype() == DType::f32 ? std::move(t) : convert(t.view(), DType::f32); };
        if (query_tokens.rank() == 3 && query_tokens.dim(0) == 1) query_tokens.reshape({query_tokens.dim(1), H});
        check<ShapeError>(query_tokens.shape() == Shape{cfg_.num_query_tokens, H}, what, "expected query tokens [",
                          cfg_.num_query_tokens, ", ", H, "], found ", query_tokens.shape().str());
        query_ = f32(std::move(query_tokens));
        check<ShapeError>(empty(word) == empty(pos), what, "word and position embeddings come together");
        if (!empty(word)) {
            check<ShapeError>(word.shape() == Shape{cfg_.vocab_size, H} &&
                                  pos.shape() == Shape{cfg_.max_position_embeddings, H}, what,
                              "expected word embeddings [", cfg_.vocab_size, ", ", H, "] and position embeddings [",
                              cfg_.max_position_embeddings, ", ", H, "], found ", word.shape().str(), " and ",
                              pos.shape().str());
            word_ = f32(std::move(word));
            pos_ = f32(std::move(pos));
        }
        check<ShapeError>(emb_norm_.size() == H, what, "embedding LayerNorm over ", emb_norm_.size(), " features, width ", H);
        check<ConfigError>(static_cast<index_t>(layers_.size()) == cfg_.num_hidden_layers, what, layers_.size(),
                           " layers, config num_hidden_layers ", cfg_.num_hidden_layers);
        for (std::size_t i = 0; i < layers_.size(); ++i) {
            const auto& l = layers_[i];
            const auto li = static_cast<index_t>(i);
            check<ShapeError>(l.attention.width() == H && l.ffn_query.hidden_size() == H &&
                                  (!l.crossattention || (l.crossattention->width() == H &&
                                                         l.crossattention->context_width() == cfg_.encoder_width)),
                              what, "layer ", i, " does not match width ", H, " / encoder width ", cfg_.encoder_width);
            check<ConfigError>(l.crossattention.has_value() == cfg_.has_cross_attention(li), what, "layer ", i,
                               l.crossattention ? " has" : " lacks", " cross-attention, cross_attention_freq is ",
                               cfg_.cross_attention_freq);
            check<ConfigError>(empty(word_) || l.ffn_text.has_value(), what, "layer ", i,
                               " has no text FFN but the model has word embeddings");
            if (i > 0) {  // layers run one after the other: one set of activation buffers
                layers_[i].attention.share_scratch(layers_[0].attention);
                layers_[i].ffn_query.share_scratch(layers_[0].ffn_query);
                if (l.ffn_text && layers_[0].ffn_text) layers_[i].ffn_text->share_scratch(*layers_[0].ffn_text);
            }
        }
    }

    const QFormerConfig& config() const noexcept { return cfg_; }
    index_t width() const noexcept { return cfg_.hidden_size; }
    index_t depth() const noexcept { return static_cast<index_t>(layers_.size()); }
    /// The learned query tokens [Q, H] (checkpoint "query_tokens" [1, Q, H]).
    const Tensor& query_tokens() const noexcept { return query_; }
    /// Whether text ids are accepted (word / position embeddings and text FFNs loaded).
    bool has_text() const noexcept { return !empty(word_); }
    const QFormerLayer<W>& layer(index_t i) const { return layers_.at(static_cast<std::size_t>(i)); }
    QFormerLayer<W>& layer(index_t i) { return layers_.at(static_cast<std::size_t>(i)); }
    const LayerNorm& embeddings_norm() const noexcept { return emb_norm_; }
    void set_exec(const Exec& ex) noexcept { exec_ = ex; }
    const Exec& exec() const noexcept { return exec_; }
    /// Parameters held (query tokens and embeddings included; the position_ids buffer is none).
    index_t parameters() const noexcept {
        index_t p = size_of(query_) + size_of(word_) + size_of(pos_) + emb_norm_.parameters();
        for (const auto& l : layers_) p += l.parameters();
        return p;
    }

    /// out [Q + T, H] = last hidden state for query_embeds [Q, H], text ids (T may be 0) and the
    /// image tokens [N, encoder_width]. out must not alias the inputs.
    void forward(ConstMatrixRef<float> query_embeds, std::span<const std::int32_t> ids, ConstMatrixRef<float> image,
                 MatrixRef<float> out) {
        const char* w = "vision::QFormer::forward";
        const index_t H = width(), Q = query_embeds.rows, T = static_cast<index_t>(ids.size());
        check<ShapeError>(Q > 0 && query_embeds.cols == H, w, "expected query embeddings [Q > 0, ", H, "], found [", Q,
                          ", ", query_embeds.cols, "]");
        check<ShapeError>(image.rows > 0 && image.cols == cfg_.encoder_width, w, "expected image embeddings [N > 0, ",
                          cfg_.encoder_width, "], found [", image.rows, ", ", image.cols, "]");
        check<ShapeError>(out.rows == Q + T && out.cols == H, w, "expected output [", Q + T, ", ", H, "], found [",
                          out.rows, ", ", out.cols, "]");
        check<ConfigError>(T == 0 || has_text(), w, "this Q-Former was loaded without text weights "
                           "(word_embeddings, intermediate / output): it takes no text ids");
        check<ShapeError>(T <= cfg_.max_position_embeddings, w, "a text of ", T,
                          " tokens exceeds max_position_embeddings ", cfg_.max_position_embeddings);
        for (index_t r = 0; r < Q; ++r) std::memcpy(out.row(r), query_embeds.row(r), sizeof(float) * H);
        for (index_t t = 0; t < T; ++t) {
            const std::int32_t id = ids[static_cast<std::size_t>(t)];
            check<ValueError>(id >= 0 && id < cfg_.vocab_size, w, "token id ", id, " at position ", t,
                              " is outside the vocabulary [0, ", cfg_.vocab_size, ")");
            const float* we = word_.data<float>() + id * H;
            const float* pe = pos_.data<float>() + t * H;
            float* o = out.row(Q + t);
            for (index_t c = 0; c < H; ++c) o[c] = we[c] + pe[c];
        }
        emb_norm_.forward(out, out);
        for (auto& l : layers_) l.forward(out, Q, image, exec_, a_, b_);
    }

    /// The same into a new [Q + T, H] tensor.
    Tensor forward(ConstMatrixRef<float> query_embeds, std::span<const std::int32_t> ids, ConstMatrixRef<float> image) {
        Tensor out(DType::f32, {query_embeds.rows + static_cast<index_t>(ids.size()), width()});
        forward(query_embeds, ids, image, out.matrix<float>());
        return out;
    }
    /// With the model's own query tokens (InstructBLIP's call): [Q + T, H].
    Tensor forward(std::span<const std::int32_t> ids, ConstMatrixRef<float> image) {
        return forward(query_.matrix<float>(), ids, image);
    }
    void forward(std::span<const std::int32_t> ids, ConstMatrixRef<float> image, MatrixRef<float> out) {
        forward(query_.matrix<float>(), ids, image, out);
    }

private:
    QFormerConfig cfg_;
    Tensor query_, word_, pos_;
    LayerNorm emb_norm_;
    std::vector<QFormerLayer<W>> layers_;
    Exec exec_ = Exec::serial();
    Scratch<float> a_, b_;
};

/// The Q-Former under LAVIS's names (see the top of this file). Every tensor must have the shape
/// cfg implies (ShapeError naming it otherwise; a missing one is a NotFoundError naming it); the
/// file must hold cfg.num_hidden_layers layers. QFormerConfig::from_file(f, prefix) reads the
/// sizes from the file instead. Without word_embeddings the text parts are not loaded.
template <WeightPolicy W = float>
QFormer<W> load_qformer(const SafetensorsFile& f, std::string prefix = "Qformer.bert.",
                        std::string query_tokens_name = "query_tokens",
                        QFormerConfig cfg = QFormerConfig::instructblip()) {
    using namespace detail;
    cfg.validate("vision::load_qformer");
    prefix = pre(std::move(prefix));
    const index_t H = cfg.hidden_size, I = cfg.intermediate_size, E = cfg.encoder_width;
    const float eps = cfg.layer_norm_eps;
    const std::string e = prefix + "embeddings.", stem = prefix + "encoder.layer.";
    const index_t n = io::require_indexed(f, stem, stem + "0.attention.self.query.weight");
    check<ConfigError>(n == cfg.num_hidden_layers, f.path(), "holds ", n, " layers under '", stem,
                       "', the config says num_hidden_layers = ", cfg.num_hidden_layers);
    Tensor qt = io::borrow_or_convert(f, query_tokens_name, {1, cfg.num_query_tokens, H}, DType::f32);
    const bool text = f.contains(e + "word_embeddings.weight");
    Tensor word, pos;
    if (text) {
        word = io::borrow_or_convert(f, e + "word_embeddings.weight", {cfg.vocab_size, H}, DType::f32);
        pos = io::borrow_or_convert(f, e + "position_embeddings.weight", {cfg.max_position_embeddings, H}, DType::f32);
    }
    auto mlp = [&](const std::string& fc1, const std::string& fc2) {
        return Mlp<Gelu, W>(load_linear<W>(f, fc1, I, H, true), load_linear<W>(f, fc2, H, I, true), fc1);
    };
    std::vector<QFormerLayer<W>> layers;
    for (index_t i = 0; i < n; ++i) {
        const std::string L = idx(stem, i, "."), a = L + "attention.", c = L + "crossattention.";
        QFormerLayer<W> l;
        l.attention = Attention<W>(load_linear<W>(f, a + "self.query.", H, H, true),
                                   load_linear<W>(f, a + "self.key.", H, H, true),
                                   load_linear<W>(f, a + "self.value.", H, H, true),
                                   load_linear<W>(f, a + "output.dense.", H, H, true), cfg.num_attention_heads, a);
        l.attention_norm = load_layer_norm(f, a + "output.LayerNorm.", H, eps);
        if (cfg.has_cross_attention(i)) {
            check<NotFoundError>(f.contains(c + "self.query.weight"), f.path(), "no tensor named '", c,
                                 "self.query.weight' (cross_attention_freq = ", cfg.cross_attention_freq,
                                 " puts cross-attention in layer ", i, ")");
            l.crossattention.emplace(load_linear<W>(f, c + "self.query.", H, H, true),
                                     load_linear<W>(f, c + "self.key.", H, E, true),
                                     load_linear<W>(f, c + "self.value.", H, E, true),
                                     load_linear<W>(f, c + "output.dense.", H, H, true), cfg.num_attention_heads, c);
            l.crossattention_norm = load_layer_norm(f, c + "output.LayerNorm.", H, eps);
        } else {
            check<ConfigError>(!f.contains(c + "self.query.weight"), c + "self.query.weight",
                               "cross-attention in layer ", i, " but cross_attention_freq = ", cfg.cross_attention_freq);
        }
        l.ffn_query = mlp(L + "intermediate_query.dense.", L + "output_query.dense.");
        l.ffn_query_norm = load_layer_norm(f, L + "output_query.LayerNorm.", H, eps);
        if (text) {
            l.ffn_text = mlp(L + "intermediate.dense.", L + "output.dense.");
            l.ffn_text_norm = load_layer_norm(f, L + "output.LayerNorm.", H, eps);
        }
        layers.push_back(std::move(l));
    }
    return QFormer<W>(cfg, std::move(qt), std::move(word), std::move(pos), load_layer_norm(f, e + "LayerNorm.", H, eps),
                      std::move(layers), prefix);
}

}  // namespace moe::vision
