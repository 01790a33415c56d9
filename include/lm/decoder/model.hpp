// lm/decoder/model.hpp - CausalLM<Ffn, W>: a Qwen2 / LLaMA decoder-only language model whose
// FFN slot is a template parameter.
//
//   x = embed(ids) (or embeddings the caller supplies: a vision-language model splices image
//   features into them); per layer
//       x += o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))   n = RMSNorm(x)
//       x += ffn(RMSNorm(x))
//   logits = lm_head(RMSNorm(x))        (lm_head tied to the embedding or its own matrix)
//
// A step runs several sequences at once, each in its own KvCache slot with its own number of
// new tokens (Step): a prefill gives a sequence many tokens (rows of one GEMM per weight, in
// chunks of at most prefill_chunk tokens), a decode step gives each sequence one (the small-M
// GEMV path reads each weight once for the whole batch). Every Linear is a cpu::Linear<W>
// (W: float, bf16, f16 exact math with fp32 accumulation, or bf16_dot), borrowed from the
// checkpoint's mapping when it is stored as W. Threads: set_exec (results do not depend on it).
//
// LoRA adapters (lora.hpp): add_adapter(id, weights) holds any number of them; each sequence of a
// step picks one (Step::adapters; -1: the base alone). The base GEMMs run once for all rows, then
// each sequence's rows get its adapter's deltas (q/k/v before RoPE, o into the residual, the FFN's
// gate/up/down through GatedLinearFfn slots). A step in which no sequence has an adapter runs
// exactly the code it ran before adapters existed (bit-identical). merge_adapter(id) folds one
// into the base weights.
//
// Parts, each its own header: DecoderConfig (config.hpp), Rope (rope.hpp), KvCache
// (kv_cache.hpp), causal_attention (attention.hpp), the FFN slot (ffn.hpp), LoRA (lora.hpp);
// loading from a Hugging Face folder is load.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "lm/decoder/attention.hpp"
#include "lm/decoder/config.hpp"
#include "lm/decoder/ffn.hpp"
#include "lm/decoder/kv_cache.hpp"
#include "lm/decoder/lora.hpp"
#include "lm/decoder/rope.hpp"
#include "moe/backend/cpu/linear.hpp"
#include "moe/backend/cpu/norm.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/precision.hpp"
#include "moe/core/tensor.hpp"
#include "moe/expert/concepts.hpp"

namespace moe::lm {

/// The sequences of one batch step: sequence i is cache slot slots[i] and owns input rows
/// offsets[i] .. offsets[i + 1]; experts[i] is the expert it asked for (RequestRouted FFN slots,
/// e.g. RSUniVLM's granularity; empty otherwise); adapters[i] the LoRA adapter id it runs with
/// (-1: the base alone; empty: every sequence the base alone).
struct Step {
    std::vector<index_t> slots;
    std::vector<index_t> offsets{0};
    std::vector<int> experts;
    std::vector<int> adapters;

    index_t sequences() const noexcept { return static_cast<index_t>(slots.size()); }
    index_t rows() const noexcept { return offsets.back(); }
    /// Appends a sequence of n new tokens in `slot` (expert < 0: none; adapter < 0: the base
    /// alone). `adapters` stays empty until a sequence has one, then holds one id per sequence.
    Step& add(index_t slot, index_t n, int expert = -1, int adapter = -1) {
        slots.push_back(slot);
        offsets.push_back(offsets.back() + n);
        if (expert >= 0) experts.push_back(expert);
        if (adapter >= 0 || !adapters.empty()) {
            adapters.resize(slots.size() - 1, -1);
            adapters.push_back(adapter < 0 ? -1 : adapter);
        }
        return *this;
    }
};

/// Which rows of a step get logits.
enum class LogitRows : std::uint8_t {
    last,  ///< the last new token of each sequence ([S, V]: what generation needs)
    all,   ///< every new token ([rows, V])
    none,  ///< none (a prefill chunk that is not the last)
};

/// The weights of one decoder layer.
template <DecoderFfn Ffn, WeightPolicy W = float>
struct DecoderLayer {
    std::vector<float> input_norm, post_norm;  ///< RMSNorm weights [H]
    cpu::Linear<W> q, k, v, o;                 ///< [nH*hd, H], [nKV*hd, H], [nKV*hd, H], [H, nH*hd] (+ biases)
    Ffn ffn;
    LayerLora lora = {};                       ///< the LoRA adapters of its seven Linears (CausalLM::add_adapter)
};

template <DecoderFfn Ffn, WeightPolicy W = float>
class CausalLM {
public:
    using ffn_type = Ffn;
    using policy = W;
    using Layer = DecoderLayer<Ffn, W>;

    /// The token embedding [V, H] (any float dtype, read in place), the layers, the final
    /// RMSNorm weight [H] and lm_head [V, H] (the embedding itself when tied). Shapes are
    /// checked against the config (ShapeError naming the part).
    CausalLM(DecoderConfig config, Tensor embedding, std::vector<Layer> layers, std::vector<float> norm,
            cpu::Linear<W> lm_head)
        : c_(std::move(config)), embed_(std::move(embedding)), layers_(std::move(layers)), norm_(std::move(norm)),
          lm_head_(std::move(lm_head)), rope_(c_) {
        const char* w = "CausalLM";
        const index_t H = c_.hidden_size, V = c_.vocab_size, qd = c_.num_attention_heads * c_.head_dim,
                      kvd = c_.num_key_value_heads * c_.head_dim;
        check<ShapeError>(embed_.rank() == 2 && embed_.dim(0) == V && embed_.dim(1) == H, w, "embedding is ",
                          embed_.shape().str(), ", expected [", V, ", ", H, "]");
        check<DTypeError>(embed_.dtype() == DType::f32 || embed_.dtype() == DType::bf16 || embed_.dtype() == DType::f16,
                          w, "embedding must be F32, BF16 or F16");
        check<ShapeError>(static_cast<index_t>(layers_.size()) == c_.num_hidden_layers, w, layers_.size(),
                          " layers, config says ", c_.num_hidden_layers);
        check<ShapeError>(static_cast<index_t>(norm_.size()) == H, w, "final norm has ", norm_.size(), " weights, expected ", H);
        check<ShapeError>(lm_head_.out_features() == V && lm_head_.in_features() == H, w, "lm_head is [",
                          lm_head_.out_features(), ", ", lm_head_.in_features(), "], expected [", V, ", ", H, "]");
        for (std::size_t i = 0; i < layers_.size(); ++i) {
            const Layer& l = layers_[i];
            auto fits = [&](const cpu::Linear<W>& m, index_t out, index_t in, const char* name) {
                check<ShapeError>(m.count() == 1 && m.out_features() == out && m.in_features() == in, w, "layer ", i,
                                  " ", name, " is [", m.out_features(), ", ", m.in_features(), "], expected [", out,
                                  ", ", in, "]");
            };
            fits(l.q, qd, H, "q_proj");
            fits(l.k, kvd, H, "k_proj");
            fits(l.v, kvd, H, "v_proj");
            fits(l.o, H, qd, "o_proj");
            check<ShapeError>(static_cast<index_t>(l.input_norm.size()) == H && static_cast<index_t>(l.post_norm.size()) == H,
                              w, "layer ", i, " norms must have ", H, " weights");
        }
        // The layers run one after the other: one set of GEMM and FFN buffers for all of them
        // (a FfnVariant shares only with a layer holding the same slot type).
        for (std::size_t i = 1; i < layers_.size(); ++i) {
            Layer& l = layers_[i];
            Layer& f = layers_[0];
            l.q.share_scratch(f.q);
            l.k.share_scratch(f.k);
            l.v.share_scratch(f.v);
            l.o.share_scratch(f.o);
            if constexpr (ScratchSharing<Ffn>) {
                for (std::size_t j = 0; j < i; ++j) layers_[i].ffn.share_scratch(layers_[j].ffn);
            }
        }
    }

    const DecoderConfig& config() const noexcept { return c_; }
    const Rope& rope() const noexcept { return rope_; }
    index_t hidden_size() const noexcept { return c_.hidden_size; }
    index_t vocab_size() const noexcept { return c_.vocab_size; }
    std::vector<Layer>& layers() noexcept { return layers_; }
    const std::vector<Layer>& layers() const noexcept { return layers_; }
    const cpu::Linear<W>& lm_head() const noexcept { return lm_head_; }
    const Tensor& embedding() const noexcept { return embed_; }

    /// Parameters (the tied lm_head counted once).
    index_t parameters() const {
        index_t n = embed_.numel() + static_cast<index_t>(norm_.size());
        if (!c_.tie_word_embeddings) n += lm_head_.parameters();
        for (const Layer& l : layers_) {
            n += l.q.parameters() + l.k.parameters() + l.v.parameters() + l.o.parameters() +
                 static_cast<index_t>(l.input_norm.size() + l.post_norm.size());
            if constexpr (CountsParameters<Ffn>) n += l.ffn.parameters();
        }
        return n;
    }

    // -- LoRA adapters (lora.hpp) ---------------------------------------------------------------

    /// Adds `a` as adapter `id` (>= 0; an id already loaded is replaced). ConfigError: a negative
    /// id, FFN targets on an FFN slot that is not a GatedLinearFfn (or an ungated one), a layer
    /// beyond the model; ShapeError: a module whose [out, in] is not its Linear's.
    void add_adapter(int id, const LoraWeights& a) {
        const std::string w = moe::detail::cat("CausalLM::add_adapter(", id, ", ", a.source, ")");
        check<ConfigError>(id >= 0, w, "adapter ids are >= 0, got ", id);
        for (const LoraWeights::Module& m : a.modules) {
            check<ConfigError>(m.layer >= 0 && m.layer < c_.num_hidden_layers, w, "module ", m.adapter.name(),
                               " is for layer ", m.layer, ", the model has ", c_.num_hidden_layers);
            const Layer& L = layers_[static_cast<std::size_t>(m.layer)];
            index_t out = 0, in = 0;
            if (is_ffn_target(m.target)) {
                if constexpr (GatedLinearFfn<Ffn>) {
                    check<ConfigError>(L.ffn.gated(), w, "layer ", m.layer, "'s FFN is not gated: no ",
                                       lora_target_name(m.target), " to adapt");
                    const cpu::Linear<W>& lin = m.target == LoraTarget::gate_proj ? L.ffn.fc1()
                                                : m.target == LoraTarget::up_proj ? L.ffn.up()
                                                                                   : L.ffn.fc2();
                    out = lin.out_features();
                    in = lin.in_features();
                } else {
                    throw ConfigError(w, moe::detail::cat("the adapter targets ", lora_target_name(m.target),
                                                          " but this model's FFN slot is not a dense gated FFN "
                                                          "(GatedLinearFfn): FFN adapters are not supported on it"));
                }
            } else {
                const cpu::Linear<W>& lin = attention_linear(L, m.target);
                out = lin.out_features();
                in = lin.in_features();
            }
            check<ShapeError>(m.adapter.out_features() == out && m.adapter.in_features() == in, w, "layer ", m.layer,
                              " ", lora_target_name(m.target), ": module ", m.adapter.name(), " is [", m.adapter.out_features(), ", ", m.adapter.in_features(),
                              "], the layer's Linear [", out, ", ", in, "]");
        }
        remove_adapter(id);
        for (const LoraWeights::Module& m : a.modules)
            layers_[static_cast<std::size_t>(m.layer)].lora.bank(m.target).set(id, m.adapter);
        adapters_[id] = a.parameters();
        // one scratch for every bank (they run one after the other)
        cpu::LoraBank& first = layers_[0].lora.banks[0];
        for (Layer& L : layers_)
            for (cpu::LoraBank& b : L.lora.banks)
                if (&b != &first) b.share_scratch(first);
    }
    /// Removes adapter `id`; false when there was none.
    bool remove_adapter(int id) {
        if (adapters_.erase(id) == 0) return false;
        for (Layer& L : layers_) L.lora.remove(id);
        return true;
    }
    bool has_adapter(int id) const { return adapters_.find(id) != adapters_.end(); }
    /// The ids loaded, ascending.
    std::vector<int> adapter_ids() const {
        std::vector<int> v;
        for (const auto& kv : adapters_) v.push_back(kv.first);
        return v;
    }
    /// Parameters of adapter `id` (sum of r * (in + out) over its modules; 0 when not loaded), or of
    /// every adapter loaded with id < 0.
    index_t adapter_parameters(int id = -1) const {
        index_t n = 0;
        for (const auto& [k, p] : adapters_)
            if (id < 0 || k == id) n += p;
        return n;
    }
    /// Folds adapter `id` into the base weights (each adapted Linear becomes base + scale * B A,
    /// computed in fp32 and stored as W; borrowed weights are left untouched, the merged ones are
    /// owned) and removes it: from then on every sequence computes base + adapter id. Other
    /// adapters stay loaded and apply on top of the new base. ConfigError when `id` is not loaded.
    void merge_adapter(int id) {
        check<ConfigError>(has_adapter(id), "CausalLM::merge_adapter", "adapter ", id, " is not loaded");
        for (std::size_t li = 0; li < layers_.size(); ++li) {
            Layer& L = layers_[li];
            const std::string where = moe::detail::cat("merge_lora: layer ", li);
            for (LoraTarget t : {LoraTarget::q_proj, LoraTarget::k_proj, LoraTarget::v_proj, LoraTarget::o_proj})
                if (const cpu::LoraAdapter* a = L.lora.bank(t).find(id)) {
                    cpu::Linear<W>& lin = attention_linear(L, t);
                    lin = cpu::merge_lora(lin, *a, where);
                    if (li > 0) lin.share_scratch(attention_linear(layers_[0], t));
                }
            if constexpr (GatedLinearFfn<Ffn>) {
                const cpu::LoraAdapter* g = L.lora.bank(LoraTarget::gate_proj).find(id);
                const cpu::LoraAdapter* u = L.lora.bank(LoraTarget::up_proj).find(id);
                const cpu::LoraAdapter* d = L.lora.bank(LoraTarget::down_proj).find(id);
                if (g || u || d) {
                    L.ffn = Ffn::glu(g ? cpu::merge_lora(L.ffn.fc1(), *g, where) : L.ffn.fc1(),
                                     u ? cpu::merge_lora(L.ffn.up(), *u, where) : L.ffn.up(),
                                     d ? cpu::merge_lora(L.ffn.fc2(), *d, where) : L.ffn.fc2(), where);
                    if constexpr (ScratchSharing<Ffn>) {
                        if (li > 0) L.ffn.share_scratch(layers_[0].ffn);
                        else
                            for (std::size_t j = 1; j < layers_.size(); ++j) layers_[j].ffn.share_scratch(L.ffn);
                    }
                }
            }
        }
        remove_adapter(id);
    }

    /// Where the work runs (default Exec{}: all OpenMP threads; results do not depend on it).
    void set_exec(const Exec& ex) noexcept { exec_ = ex; }
    const Exec& exec() const noexcept { return exec_; }
    /// Largest number of new tokens of one sequence a step computes at once (prefill() cuts longer
    /// prompts into chunks of this many; forward() does not).
    void set_prefill_chunk(index_t n) {
        check<ConfigError>(n > 0, "CausalLM::set_prefill_chunk", "chunk must be positive, got ", n);
        chunk_ = n;
    }
    index_t prefill_chunk() const noexcept { return chunk_; }

    /// A cache for this model: `slots` sequences of up to max_seq positions (default: the
    /// config's max_position_embeddings).
    template <class T = float>
    KvCache<T> make_cache(index_t slots = 1, index_t max_seq = 0) const {
        return KvCache<T>(c_.num_hidden_layers, c_.num_key_value_heads, c_.head_dim, slots,
                          max_seq > 0 ? max_seq : c_.max_position_embeddings);
    }

    /// x [n, H] = the embedding rows of `ids` (ValueError for an id outside [0, V)).
    void embed(std::span<const std::int32_t> ids, MatrixRef<float> x) const {
        const index_t H = c_.hidden_size;
        check<ShapeError>(x.rows == static_cast<index_t>(ids.size()) && x.cols == H, "CausalLM::embed", "output is [",
                          x.rows, ", ", x.cols, "], expected [", ids.size(), ", ", H, "]");
        // The table's element type is dispatched once, not per element.
        auto gather = [&](const auto* table) {
            for (std::size_t i = 0; i < ids.size(); ++i) {
                const std::int32_t id = ids[i];
                check<ValueError>(id >= 0 && id < c_.vocab_size, "CausalLM::embed", "token id ", id, " at position ", i,
                                  " is outside the vocabulary [0, ", c_.vocab_size, ")");
                const auto* src = table + static_cast<index_t>(id) * H;
                float* dst = x.row(static_cast<index_t>(i));
                for (index_t c = 0; c < H; ++c) dst[c] = to_float(src[c]);
            }
        };
        switch (embed_.dtype()) {
            case DType::f32: gather(embed_.data<float>()); break;
            case DType::bf16: gather(embed_.data<bf16>()); break;
            default: gather(embed_.data<f16>()); break;
        }
    }

    /// One batch step over input embeddings x [step.rows(), H]: every sequence's new tokens
    /// attend to its cache slot and are appended to it. Returns the logits of `which` rows
    /// ([S, V] for last, [rows, V] for all, empty for none).
    template <class T>
    Tensor forward(ConstMatrixRef<float> x, const Step& step, KvCache<T>& cache, LogitRows which = LogitRows::last) {
        const char* w = "CausalLM::forward";
        const index_t H = c_.hidden_size, T_ = step.rows(), S = step.sequences();
        check<ShapeError>(x.cols == H && x.rows == T_, w, "input is [", x.rows, ", ", x.cols, "], the step needs [", T_,
                          ", ", H, "]");
        check<ConfigError>(static_cast<index_t>(step.offsets.size()) == S + 1 && step.offsets[0] == 0, w,
                           "the step's offsets must be [0, ...] with one more entry than slots");
        check<ConfigError>(cache.layers() == c_.num_hidden_layers && cache.kv_heads() == c_.num_key_value_heads &&
                               cache.head_dim() == c_.head_dim,
                           w, "the cache was made for another model (layers, KV heads or head dim differ)");
        std::vector<SequenceRows> seqs(static_cast<std::size_t>(S));
        for (index_t s = 0; s < S; ++s) {
            const auto i = static_cast<std::size_t>(s);
            const index_t n = step.offsets[i + 1] - step.offsets[i];
            check<ConfigError>(n >= 0, w, "offsets decrease at sequence ", s);
            for (index_t r = 0; r < s; ++r)
                check<ConfigError>(step.slots[static_cast<std::size_t>(r)] != step.slots[i], w, "slot ", step.slots[i],
                                   " appears twice in one step");
            cache.reserve(step.slots[i], n);
            seqs[i] = {step.slots[i], step.offsets[i], n, cache.length(step.slots[i])};
        }
        // LoRA: the row ranges of the sequences that run with an adapter (neighbours with the same
        // adapter joined into one range: one pair of GEMMs for them)
        check<ConfigError>(step.adapters.empty() || static_cast<index_t>(step.adapters.size()) == S, w, "the step has ",
                           step.adapters.size(), " adapter ids for ", S, " sequences (give none or one per sequence)");
        std::vector<cpu::LoraRows> lrows;
        for (std::size_t i = 0; i < step.adapters.size(); ++i) {
            const int id = step.adapters[i];
            if (id < 0) continue;
            check<ConfigError>(has_adapter(id), w, "sequence ", i, " (slot ", step.slots[i], ") asks for adapter ", id,
                               ", which is not loaded");
            const SequenceRows& sq = seqs[i];
            if (sq.rows == 0) continue;
            if (!lrows.empty() && lrows.back().adapter == id && lrows.back().row0 + lrows.back().rows == sq.row0)
                lrows.back().rows += sq.rows;
            else
                lrows.push_back({sq.row0, sq.rows, id});
        }
        const bool lora = !lrows.empty();
        if (T_ == 0) return logits_of(MatrixRef<float>(nullptr, 0, H), seqs, which);

        const index_t qd = c_.num_attention_heads * c_.head_dim, kvd = c_.num_key_value_heads * c_.head_dim;
        const index_t hd = c_.head_dim, nkv = c_.num_key_value_heads;
        MatrixRef<float> hx(hx_.get(static_cast<std::size_t>(T_ * H)), T_, H);
        MatrixRef<float> n(n_.get(static_cast<std::size_t>(T_ * H)), T_, H);
        MatrixRef<float> q(q_.get(static_cast<std::size_t>(T_ * qd)), T_, qd);
        MatrixRef<float> k(k_.get(static_cast<std::size_t>(T_ * kvd)), T_, kvd);
        MatrixRef<float> v(v_.get(static_cast<std::size_t>(T_ * kvd)), T_, kvd);
        MatrixRef<float> a(a_.get(static_cast<std::size_t>(T_ * qd)), T_, qd);
        MatrixRef<float> y(y_.get(static_cast<std::size_t>(T_ * H)), T_, H);
        for (index_t r = 0; r < T_; ++r) std::copy_n(x.row(r), H, hx.row(r));
        // cos/sin of every row's position, once for all layers
        const index_t half = rope_.rotary_dim() / 2;
        float* cs = cs_.get(static_cast<std::size_t>(std::max<index_t>(1, T_ * 2 * half)));
        for (const SequenceRows& sq : seqs)
            for (index_t t = 0; t < sq.rows; ++t) rope_.angles(sq.past + t, cs + (sq.row0 + t) * 2 * half);
        const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
        const FfnStep fstep{step.offsets, step.experts, exec_};

        for (index_t li = 0; li < c_.num_hidden_layers; ++li) {
            Layer& L = layers_[static_cast<std::size_t>(li)];
            cpu::rms_norm(ConstMatrixRef<float>(hx), n, L.input_norm.data(), static_cast<float>(c_.rms_norm_eps));
            L.q.forward(ConstMatrixRef<float>(n), q, exec_);
            L.k.forward(ConstMatrixRef<float>(n), k, exec_);
            L.v.forward(ConstMatrixRef<float>(n), v, exec_);
            if (lora) {  // q, k, v deltas before RoPE
                L.lora.bank(LoraTarget::q_proj).apply(ConstMatrixRef<float>(n), q, lrows, exec_);
                L.lora.bank(LoraTarget::k_proj).apply(ConstMatrixRef<float>(n), k, lrows, exec_);
                L.lora.bank(LoraTarget::v_proj).apply(ConstMatrixRef<float>(n), v, lrows, exec_);
            }
            for (index_t r = 0; r < T_; ++r) {
                rope_.apply(q.row(r), c_.num_attention_heads, hd, cs + r * 2 * half);
                rope_.apply(k.row(r), nkv, hd, cs + r * 2 * half);
            }
            for (const SequenceRows& sq : seqs)  // the new keys and values into the cache
                for (index_t j = 0; j < nkv; ++j) {
                    T* kd = cache.keys(li, sq.slot, j) + sq.past * hd;
                    T* vd = cache.values(li, sq.slot, j) + sq.past * hd;
                    for (index_t t = 0; t < sq.rows; ++t)
                        for (index_t c = 0; c < hd; ++c) {
                            kd[t * hd + c] = from_float<T>(k.row(sq.row0 + t)[j * hd + c]);
                            vd[t * hd + c] = from_float<T>(v.row(sq.row0 + t)[j * hd + c]);
                        }
                }
            causal_attention<T>(ConstMatrixRef<float>(q), a, cache, li, seqs, c_.groups(), scale, exec_, attn_);
            L.o.forward(ConstMatrixRef<float>(a), hx, exec_, true);  // x += o_proj(attention)
            if (lora) L.lora.bank(LoraTarget::o_proj).apply(ConstMatrixRef<float>(a), hx, lrows, exec_);
            cpu::rms_norm(ConstMatrixRef<float>(hx), n, L.post_norm.data(), static_cast<float>(c_.rms_norm_eps));
            bool ffn_done = false;
            if constexpr (GatedLinearFfn<Ffn>) {
                if (lora && L.lora.touches_ffn(lrows)) {
                    lora_ffn_forward(L.ffn, ConstMatrixRef<float>(n), y, L.lora, lrows, exec_, fh_, fu_);
                    ffn_done = true;
                }
            }
            if (!ffn_done) ffn_forward(L.ffn, ConstMatrixRef<float>(n), y, fstep);
            for (index_t r = 0; r < T_; ++r) {
                float* hr = hx.row(r);
                const float* yr = y.row(r);
                for (index_t c = 0; c < H; ++c) hr[c] += yr[c];
            }
        }
        for (const SequenceRows& sq : seqs) cache.advance(sq.slot, sq.rows);
        return logits_of(hx, seqs, which);
    }

    /// forward() from token ids (embedded here).
    template <class T>
    Tensor forward(std::span<const std::int32_t> ids, const Step& step, KvCache<T>& cache,
                   LogitRows which = LogitRows::last) {
        check<ShapeError>(static_cast<index_t>(ids.size()) == step.rows(), "CausalLM::forward", ids.size(),
                          " token ids for a step of ", step.rows(), " rows");
        MatrixRef<float> x(ids_.get(static_cast<std::size_t>(std::max<index_t>(1, step.rows() * c_.hidden_size))),
                           step.rows(), c_.hidden_size);
        embed(ids, x);
        return forward(ConstMatrixRef<float>(x), step, cache, which);
    }

    /// Prefill of one sequence (slot `slot`, appended to what it holds) in chunks of
    /// prefill_chunk() tokens: the last token's logits [1, V] (all tokens' [n, V] with
    /// LogitRows::all). `expert`: the sequence's expert for RequestRouted FFN slots; `adapter`: its
    /// LoRA adapter (-1: the base alone).
    template <class T>
    Tensor prefill(KvCache<T>& cache, index_t slot, std::span<const std::int32_t> ids, int expert = -1,
                   LogitRows which = LogitRows::last, int adapter = -1) {
        return prefill_chunks(cache, slot, static_cast<index_t>(ids.size()), expert, which, adapter,
                              [&](index_t b, index_t e, const Step& st, LogitRows w) {
                                  return forward(ids.subspan(static_cast<std::size_t>(b), static_cast<std::size_t>(e - b)),
                                                 st, cache, w);
                              });
    }
    /// The same from input embeddings x [n, hidden] (a vision-language model's spliced prompt).
    template <class T>
    Tensor prefill(KvCache<T>& cache, index_t slot, ConstMatrixRef<float> x, int expert = -1,
                   LogitRows which = LogitRows::last, int adapter = -1) {
        check<ShapeError>(x.cols == c_.hidden_size, "CausalLM::prefill", "input embeddings have ", x.cols,
                          " features, the model ", c_.hidden_size);
        return prefill_chunks(cache, slot, x.rows, expert, which, adapter, [&](index_t b, index_t e, const Step& st, LogitRows w) {
            return forward(ConstMatrixRef<float>(x.data + b * x.stride, e - b, x.cols, x.stride), st, cache, w);
        });
    }

    /// One decode step: token ids[i] appended to slots[i] (one each); logits [n, V]. experts[i],
    /// adapters[i]: sequence i's expert and LoRA adapter (each list empty or one per sequence).
    template <class T>
    Tensor decode(KvCache<T>& cache, std::span<const index_t> slots, std::span<const std::int32_t> ids,
                  std::span<const int> experts = {}, std::span<const int> adapters = {}) {
        check<ShapeError>(slots.size() == ids.size(), "CausalLM::decode", slots.size(), " slots for ", ids.size(), " tokens");
        check<ConfigError>(experts.empty() || experts.size() == slots.size(), "CausalLM::decode", experts.size(),
                           " experts for ", slots.size(), " sequences");
        check<ConfigError>(adapters.empty() || adapters.size() == slots.size(), "CausalLM::decode", adapters.size(),
                           " adapters for ", slots.size(), " sequences");
        Step st;
        for (std::size_t i = 0; i < slots.size(); ++i)
            st.add(slots[i], 1, experts.empty() ? -1 : experts[i], adapters.empty() ? -1 : adapters[i]);
        return forward(ids, st, cache, LogitRows::all);
    }

private:
    /// Runs n rows of one sequence as chunks of chunk_ rows: run(begin, end, step, which) -> logits.
    template <class T, class Run>
    Tensor prefill_chunks(KvCache<T>& cache, index_t slot, index_t n, int expert, LogitRows which, int adapter,
                          Run&& run) {
        check<ConfigError>(n > 0, "CausalLM::prefill", "no tokens");
        cache.reserve(slot, n);
        Tensor all;
        std::vector<Tensor> parts;
        for (index_t b = 0; b < n; b += chunk_) {
            const index_t e = std::min(n, b + chunk_);
            Step st;
            st.add(slot, e - b, expert, adapter);
            const bool last = e == n;
            Tensor lg = run(b, e, st, which == LogitRows::all ? LogitRows::all : (last ? which : LogitRows::none));
            if (which == LogitRows::all) parts.push_back(std::move(lg));
            else if (last) all = std::move(lg);
        }
        if (which != LogitRows::all) return all;
        if (parts.size() == 1) return std::move(parts[0]);
        Tensor out(DType::f32, {n, c_.vocab_size});
        index_t r = 0;
        for (const Tensor& p : parts) {
            std::copy_n(p.data<float>(), p.numel(), out.data<float>() + r * c_.vocab_size);
            r += p.dim(0);
        }
        return out;
    }

    static const cpu::Linear<W>& attention_linear(const Layer& L, LoraTarget t) {
        return t == LoraTarget::q_proj ? L.q : t == LoraTarget::k_proj ? L.k : t == LoraTarget::v_proj ? L.v : L.o;
    }
    static cpu::Linear<W>& attention_linear(Layer& L, LoraTarget t) {
        return t == LoraTarget::q_proj ? L.q : t == LoraTarget::k_proj ? L.k : t == LoraTarget::v_proj ? L.v : L.o;
    }

    Tensor logits_of(MatrixRef<float> hx, const std::vector<SequenceRows>& seqs, LogitRows which) {
        const index_t H = c_.hidden_size, V = c_.vocab_size;
        if (which == LogitRows::none) return {};
        // The final norm reads the chosen rows of hx and writes them normalised into sel.
        const float eps = static_cast<float>(c_.rms_norm_eps);
        const index_t R = which == LogitRows::all ? hx.rows : static_cast<index_t>(seqs.size());
        Tensor out(DType::f32, {R, V});
        if (R == 0) return out;
        MatrixRef<float> sel(sel_.get(static_cast<std::size_t>(R * H)), R, H);
        if (which == LogitRows::all) {
            cpu::rms_norm(ConstMatrixRef<float>(hx), sel, norm_.data(), eps);
        } else {
            for (index_t i = 0; i < R; ++i) {
                const SequenceRows& sq = seqs[static_cast<std::size_t>(i)];
                check<ConfigError>(sq.rows > 0, "CausalLM::forward", "slot ", sq.slot,
                                   " has no new token: its last-token logits do not exist");
                cpu::rms_norm(ConstMatrixRef<float>(hx.row(sq.row0 + sq.rows - 1), 1, H, H),
                              MatrixRef<float>(sel.row(i), 1, H, H), norm_.data(), eps);
            }
        }
        lm_head_.forward(ConstMatrixRef<float>(sel), out.matrix<float>(), exec_);
        return out;
    }

    DecoderConfig c_;
    Tensor embed_;
    std::vector<Layer> layers_;
    std::vector<float> norm_;
    cpu::Linear<W> lm_head_;
    Rope rope_;
    Exec exec_;
    index_t chunk_ = 512;
    AttentionScratch attn_;
    Scratch<float> hx_, n_, q_, k_, v_, a_, y_, cs_, sel_, ids_, fh_, fu_;
    std::map<int, index_t> adapters_;  ///< LoRA adapter id -> its parameters
};

}  // namespace moe::lm
