// lm/decoder/config.hpp - a decoder-only language model's config.json, as Hugging Face writes it.
//
//   DecoderConfig::from_json(text, where)   config.json's text -> the fields the runtime reads,
//                                           with transformers' defaults per model_type
//   DecoderConfig::from_file(path)          the same from a file (a model folder's config.json)
//
// Supported model_type values: "qwen2" (Qwen2ForCausalLM; also RSUniVLM's language model,
// architectures ["LlavaQwenGMoeForCausalLM"]: every FFN a G-MoE; LLaVA-NeXT's "llava_qwen" is
// read as "qwen2"), "llama" (LlamaForCausalLM,
// also LLaMA-3 with rope_scaling "llama3"), "mistral" (read as llama without biases; sliding
// windows are refused), "qwen2_moe" (Qwen2MoeForCausalLM), "mixtral" (MixtralForCausalLM).
// Defaults follow transformers' configuration_<type>.py. Every field is checked: an unknown
// model_type or hidden_act, rope_scaling of another type, inconsistent head counts, a sliding
// window, non-positive sizes: ConfigError naming the field, its value and the file. Fuzzed
// (tests/fuzz/fuzz_decoder_config.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/io/json.hpp"
#include "moe/io/mapped_file.hpp"

namespace moe::lm {

/// What every layer's FFN slot is.
enum class FfnKind : std::uint8_t {
    dense,      ///< SwiGLU MLP (qwen2, llama, mistral)
    qwen2_moe,  ///< Qwen2MoeSparseMoeBlock (top-k + gated shared expert); dense in mlp_only_layers
    mixtral,    ///< MixtralSparseMoeBlock (top-k, renormalised)
    gmoe,       ///< RSUniVLM's G-MoE: one SwiGLU expert per request
};

/// rope_scaling.
struct RopeScaling {
    std::string type = "default";  ///< "default", "linear" or "llama3"
    double factor = 1.0;
    double low_freq_factor = 1.0, high_freq_factor = 4.0;  ///< llama3
    double original_max_position_embeddings = 8192.0;      ///< llama3
};

struct DecoderConfig {
    std::string model_type;
    std::string architecture;  ///< architectures[0] ("" when absent)
    FfnKind ffn = FfnKind::dense;
    index_t hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0, num_attention_heads = 0,
            num_key_value_heads = 0, head_dim = 0, vocab_size = 0, max_position_embeddings = 0;
    double rms_norm_eps = 1e-6, rope_theta = 10000.0, partial_rotary_factor = 1.0;
    RopeScaling rope_scaling;
    bool tie_word_embeddings = false;
    bool qkv_bias = false;   ///< q/k/v projections have biases (Qwen2: always; LLaMA: attention_bias)
    bool o_bias = false;     ///< o_proj has a bias (LLaMA attention_bias)
    bool mlp_bias = false;   ///< the dense MLP has biases (LLaMA mlp_bias)
    std::vector<std::int32_t> bos_token_ids, eos_token_ids;
    // MoE (qwen2_moe, mixtral)
    index_t num_experts = 0, num_experts_per_tok = 0, moe_intermediate_size = 0,
            shared_expert_intermediate_size = 0, decoder_sparse_step = 1;
    bool norm_topk_prob = false;
    std::vector<index_t> mlp_only_layers;
    std::string where = "config.json";  ///< for messages

    /// Rotary dimensions per head (head_dim * partial_rotary_factor, even).
    index_t rotary_dim() const noexcept {
        return static_cast<index_t>(static_cast<double>(head_dim) * partial_rotary_factor);
    }
    /// Query heads per KV head.
    index_t groups() const noexcept { return num_attention_heads / num_key_value_heads; }
    /// Whether layer i's FFN is the sparse block (Qwen2MoeDecoderLayer's rule; every layer for
    /// mixtral and gmoe).
    bool sparse_layer(index_t i) const {
        if (ffn == FfnKind::mixtral || ffn == FfnKind::gmoe) return true;
        if (ffn != FfnKind::qwen2_moe) return false;
        return std::find(mlp_only_layers.begin(), mlp_only_layers.end(), i) == mlp_only_layers.end() &&
               num_experts > 0 && (i + 1) % decoder_sparse_step == 0;
    }

    static DecoderConfig from_file(const std::filesystem::path& path) {
        const io::MappedFile m = io::MappedFile::open(path);
        return from_json(m.text(), m.path);
    }

    static DecoderConfig from_json(std::string_view text, std::string where = "config.json") {
        io::json::Options opt;
        opt.subject = "config.json";
        opt.big_integers_as_real = true;
        const io::json::Value doc = io::json::parse(text, where, opt);
        check<FormatError>(doc.is_object(), where, "expected a JSON object, found ", io::json::type_name(doc.type()));
        DecoderConfig c;
        c.where = where;
        Fields f{doc, where};
        c.model_type = f.str("model_type", "");
        // LLaVA-NeXT's LlavaQwenConfig (RSUniVLM's config.json) is Qwen2Config under another name.
        if (c.model_type == "llava_qwen") c.model_type = "qwen2";
        static constexpr std::string_view kTypes[] = {"qwen2", "llama", "mistral", "qwen2_moe", "mixtral"};
        check<ConfigError>(std::find(std::begin(kTypes), std::end(kTypes), c.model_type) != std::end(kTypes), where,
                           "model_type '", c.model_type,
                           "' is not supported (supported: qwen2, llama, mistral, qwen2_moe, mixtral)");
        if (const auto* a = doc.find("architectures"); a && a->is_array() && !a->as_array().empty() &&
                                                         a->as_array()[0].is_string())
            c.architecture = a->as_array()[0].as_string();
        const std::string act = f.str("hidden_act", "silu");
        check<ConfigError>(act == "silu", where, "hidden_act '", act, "' is not supported (supported: silu)");
        c.hidden_size = f.positive("hidden_size");
        c.num_hidden_layers = f.positive("num_hidden_layers");
        c.num_attention_heads = f.positive("num_attention_heads");
        c.num_key_value_heads = f.has("num_key_value_heads") ? f.positive("num_key_value_heads") : c.num_attention_heads;
        c.head_dim = f.has("head_dim") ? f.positive("head_dim") : c.hidden_size / c.num_attention_heads;
        c.vocab_size = f.positive("vocab_size");
        c.max_position_embeddings = f.has("max_position_embeddings") ? f.positive("max_position_embeddings") : 2048;
        c.rms_norm_eps = f.number("rms_norm_eps", 1e-6);
        c.rope_theta = f.number("rope_theta", 10000.0);
        c.partial_rotary_factor = f.number("partial_rotary_factor", 1.0);
        c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
        check<ConfigError>(c.num_attention_heads % c.num_key_value_heads == 0, where,
                           "inconsistent head counts: num_attention_heads ", c.num_attention_heads,
                           " is not a multiple of num_key_value_heads ", c.num_key_value_heads);
        check<ConfigError>(c.head_dim > 0 && c.head_dim % 2 == 0, where, "head_dim ", c.head_dim,
                           " must be positive and even (hidden_size ", c.hidden_size, " / num_attention_heads ",
                           c.num_attention_heads, " unless head_dim is given)");
        check<ConfigError>(c.rms_norm_eps >= 0 && std::isfinite(c.rms_norm_eps), where, "rms_norm_eps ",
                           c.rms_norm_eps, " must be finite and non-negative");
        check<ConfigError>(c.rope_theta > 0 && std::isfinite(c.rope_theta), where, "rope_theta ", c.rope_theta,
                           " must be positive");
        check<ConfigError>(c.partial_rotary_factor > 0 && c.partial_rotary_factor <= 1, where,
                           "partial_rotary_factor ", c.partial_rotary_factor, " must be in (0, 1]");
        check<ConfigError>(c.rotary_dim() >= 2 && c.rotary_dim() % 2 == 0, where, "rotary dimensions (head_dim ",
                           c.head_dim, " * partial_rotary_factor ", c.partial_rotary_factor, ") must be even and >= 2");
        check<ConfigError>(!f.boolean("use_sliding_window", false), where,
                           "use_sliding_window: sliding-window attention is not supported");
        if (c.model_type == "mistral")
            check<ConfigError>(f.is_null_or_absent("sliding_window"), where,
                               "sliding_window: sliding-window attention (Mistral) is not supported; set it to null "
                               "for full attention");
        f.rope(c.rope_scaling);
        f.token_ids("bos_token_id", c.bos_token_ids);
        f.token_ids("eos_token_id", c.eos_token_ids);

        const bool llama_like = c.model_type == "llama" || c.model_type == "mistral" || c.model_type == "mixtral";
        if (llama_like) {
            c.qkv_bias = c.o_bias = f.boolean("attention_bias", false);
            c.mlp_bias = f.boolean("mlp_bias", false);
        } else {  // Qwen2Attention: q/k/v with bias, o_proj without; Qwen2-MoE: qkv_bias (default true)
            c.qkv_bias = c.model_type == "qwen2_moe" ? f.boolean("qkv_bias", true) : true;
        }
        if (c.model_type == "qwen2" || c.model_type == "llama" || c.model_type == "mistral") {
            c.intermediate_size = f.positive("intermediate_size");
            c.ffn = c.architecture == "LlavaQwenGMoeForCausalLM" ? FfnKind::gmoe : FfnKind::dense;
        } else if (c.model_type == "qwen2_moe") {
            c.ffn = FfnKind::qwen2_moe;
            c.intermediate_size = f.has("intermediate_size") ? f.positive("intermediate_size") : 5632;
            c.num_experts = f.integer("num_experts", 60);
            c.num_experts_per_tok = f.integer("num_experts_per_tok", 4);
            c.moe_intermediate_size = f.integer("moe_intermediate_size", 1408);
            c.shared_expert_intermediate_size = f.integer("shared_expert_intermediate_size", 5632);
            c.decoder_sparse_step = f.integer("decoder_sparse_step", 1);
            c.norm_topk_prob = f.boolean("norm_topk_prob", false);
            f.int_list("mlp_only_layers", c.mlp_only_layers);
            check<ConfigError>(c.decoder_sparse_step > 0, where, "decoder_sparse_step ", c.decoder_sparse_step,
                               " must be positive");
        } else {  // mixtral
            c.ffn = FfnKind::mixtral;
            c.intermediate_size = f.positive("intermediate_size");
            c.num_experts = f.integer("num_local_experts", 8);
            c.num_experts_per_tok = f.integer("num_experts_per_tok", 2);
        }
        if (c.ffn == FfnKind::qwen2_moe || c.ffn == FfnKind::mixtral)
            check<ConfigError>(c.num_experts > 0 && c.num_experts_per_tok > 0 &&
                                   c.num_experts_per_tok <= c.num_experts,
                               where, "num_experts_per_tok ", c.num_experts_per_tok, " must be in [1, num_experts = ",
                               c.num_experts, "]");
        return c;
    }

private:
    /// Typed access to config.json's members, each error naming the field and the file.
    struct Fields {
        const io::json::Value& doc;
        const std::string& where;

        bool has(std::string_view k) const { return doc.find(k) && !doc.find(k)->is_null(); }
        bool is_null_or_absent(std::string_view k) const { return !has(k); }
        std::string str(std::string_view k, std::string_view dflt) const {
            const auto* v = doc.find(k);
            if (!v || v->is_null()) return std::string(dflt);
            check<ConfigError>(v->is_string(), where, k, " must be a string, found ", io::json::type_name(v->type()));
            return v->as_string();
        }
        bool boolean(std::string_view k, bool dflt) const {
            const auto* v = doc.find(k);
            if (!v || v->is_null()) return dflt;
            check<ConfigError>(v->is_bool(), where, k, " must be true or false, found ", io::json::type_name(v->type()));
            return v->as_bool();
        }
        double number(std::string_view k, double dflt) const {
            const auto* v = doc.find(k);
            if (!v || v->is_null()) return dflt;
            check<ConfigError>(v->is_number(), where, k, " must be a number, found ", io::json::type_name(v->type()));
            return v->as_double();
        }
        index_t integer(std::string_view k, index_t dflt) const {
            const auto* v = doc.find(k);
            if (!v || v->is_null()) return dflt;
            const auto i = v->as_i64();
            check<ConfigError>(i.has_value() && *i >= 0 && *i <= (std::int64_t{1} << 40), where, k,
                               " must be a non-negative integer (at most 2^40), found ",
                               v->is_number() ? std::to_string(v->as_double()) : std::string(io::json::type_name(v->type())));
            return static_cast<index_t>(*i);
        }
        index_t positive(std::string_view k) const {
            check<ConfigError>(has(k), where, "missing ", k);
            const index_t i = integer(k, 0);
            check<ConfigError>(i > 0, where, k, " must be positive, found ", i);
            return i;
        }
        void int_list(std::string_view k, std::vector<index_t>& out) const {
            const auto* v = doc.find(k);
            if (!v || v->is_null()) return;
            check<ConfigError>(v->is_array(), where, k, " must be a list of integers");
            for (const auto& e : v->as_array()) {
                const auto i = e.as_i64();
                check<ConfigError>(i.has_value() && *i >= 0, where, k, " must hold non-negative integers");
                out.push_back(static_cast<index_t>(*i));
            }
        }
        void token_ids(std::string_view k, std::vector<std::int32_t>& out) const {
            const auto* v = doc.find(k);
            if (!v || v->is_null()) return;
            auto one = [&](const io::json::Value& e) {
                const auto i = e.as_i64();
                check<ConfigError>(i.has_value() && *i >= 0 && *i <= INT32_MAX, where, k,
                                   " must be a token id or a list of token ids");
                out.push_back(static_cast<std::int32_t>(*i));
            };
            if (v->is_array())
                for (const auto& e : v->as_array()) one(e);
            else
                one(*v);
        }
        void rope(RopeScaling& r) const {
            const auto* v = doc.find("rope_scaling");
            if (!v || v->is_null()) return;
            check<ConfigError>(v->is_object(), where, "rope_scaling must be an object or null");
            Fields g{*v, where};
            r.type = g.has("rope_type") ? g.str("rope_type", "default") : g.str("type", "default");
            if (r.type == "default") return;
            check<ConfigError>(r.type == "linear" || r.type == "llama3", where, "rope_scaling type '", r.type,
                               "' is not supported (supported: default, linear, llama3)");
            check<ConfigError>(g.has("factor"), where, "rope_scaling.factor is missing");
            r.factor = g.number("factor", 1.0);
            check<ConfigError>(r.factor >= 1.0 && std::isfinite(r.factor), where, "rope_scaling.factor ", r.factor,
                               " must be >= 1");
            if (r.type == "llama3") {
                for (const char* k : {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"})
                    check<ConfigError>(g.has(k), where, "rope_scaling.", k, " is missing (rope_type llama3)");
                r.low_freq_factor = g.number("low_freq_factor", 1.0);
                r.high_freq_factor = g.number("high_freq_factor", 4.0);
                r.original_max_position_embeddings = g.number("original_max_position_embeddings", 8192.0);
                check<ConfigError>(r.low_freq_factor > 0 && r.high_freq_factor > r.low_freq_factor &&
                                       r.original_max_position_embeddings > 0 &&
                                       std::isfinite(r.high_freq_factor + r.original_max_position_embeddings),
                                   where, "rope_scaling (llama3): need 0 < low_freq_factor < high_freq_factor and a "
                                          "positive original_max_position_embeddings");
            }
        }
    };
};

}  // namespace moe::lm
