// lm/decoder/lora.hpp - LoRA adapters over a decoder: PEFT adapter folders, the per-layer banks a
// DecoderLayer holds, and the LoRA-aware FFN path (docs/lm.md, "LoRA adapters").
//
//   y = W x + scale * B (A x)      per targeted Linear, A [r, in], B [out, r] (cpu::LoraAdapter);
//                                  scale = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora
//
// Targets: the seven Linears of a LLaMA / Qwen2 layer, self_attn.{q,k,v,o}_proj and
// mlp.{gate,up,down}_proj (LoraTarget). A CausalLM holds any number of adapters by id (an int >=
// 0; CausalLM::add_adapter) and every sequence of a batch step picks one (Step::adapters, -1: the
// base alone): the base GEMMs run once over all rows, then each sequence's rows get its adapter's
// delta (q/k/v after their projections, before RoPE; o added to the residual with o_proj's output;
// gate and up before SiLU(gate) * up, down on the FFN output), O(rows * r * (in + out)) per
// adapted Linear. The FFN deltas need an FFN slot whose three projections are visible
// (GatedLinearFfn, ffn.hpp: DenseFfn::glu); another slot takes attention adapters only.
//
// PEFT files (what PeftModel.save_pretrained writes):
//   adapter_config.json          LoraConfig::from_json (peft_type "LORA", r, lora_alpha,
//                                target_modules, use_rslora, rank_pattern, alpha_pattern,
//                                layers_to_transform; every unsupported option a ConfigError)
//   adapter_model.safetensors    <prefix>model.layers.{l}.self_attn.q_proj.lora_A.weight [r, in]
//                                <prefix>model.layers.{l}.mlp.down_proj.lora_B.weight   [out, r]
//                                (also ...lora_A.<adapter name>.weight, e.g. ".default"), prefix
//                                "base_model.model." (kPeftPrefix); a LAVIS / RS-MoE training
//                                checkpoint holds them under "llm_model.base_model.model."
//                                (kLavisPrefix) beside its other weights: read_lora_tensors.
//   read_peft_adapter(dir, config) -> LoraWeights;  load_lora_adapter(model, dir, id);
//   merge_lora(model, id) (CausalLM::merge_adapter).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lm/decoder/config.hpp"
#include "lm/decoder/ffn.hpp"
#include "moe/backend/cpu/activation.hpp"
#include "moe/backend/cpu/linear.hpp"
#include "moe/backend/cpu/lora.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/tensor.hpp"
#include "moe/io/checkpoint.hpp"
#include "moe/io/json.hpp"
#include "moe/io/mapped_file.hpp"
#include "moe/io/safetensors.hpp"

namespace moe::lm {

/// The Linears of a decoder layer an adapter may target.
enum class LoraTarget : std::uint8_t { q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj };
inline constexpr std::size_t kLoraTargets = 7;
inline constexpr std::array<LoraTarget, kLoraTargets> kAllLoraTargets = {
    LoraTarget::q_proj,    LoraTarget::k_proj,  LoraTarget::v_proj,   LoraTarget::o_proj,
    LoraTarget::gate_proj, LoraTarget::up_proj, LoraTarget::down_proj};

inline const char* lora_target_name(LoraTarget t) noexcept {
    constexpr const char* names[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    return names[static_cast<std::size_t>(t)];
}
/// The module a target lives in: "self_attn" or "mlp".
inline const char* lora_target_module(LoraTarget t) noexcept {
    return static_cast<std::uint8_t>(t) < 4 ? "self_attn" : "mlp";
}
inline bool is_ffn_target(LoraTarget t) noexcept { return static_cast<std::uint8_t>(t) >= 4; }
inline std::optional<LoraTarget> lora_target_from_name(std::string_view n) noexcept {
    for (LoraTarget t : kAllLoraTargets)
        if (n == lora_target_name(t)) return t;
    return std::nullopt;
}

/// A target's [out, in] in a model of this config (the dense FFN's intermediate_size for the FFN).
inline std::pair<index_t, index_t> lora_target_shape(const DecoderConfig& c, LoraTarget t) noexcept {
    const index_t H = c.hidden_size, qd = c.num_attention_heads * c.head_dim, kvd = c.num_key_value_heads * c.head_dim;
    switch (t) {
        case LoraTarget::q_proj: return {qd, H};
        case LoraTarget::k_proj:
        case LoraTarget::v_proj: return {kvd, H};
        case LoraTarget::o_proj: return {H, qd};
        case LoraTarget::gate_proj:
        case LoraTarget::up_proj: return {c.intermediate_size, H};
        case LoraTarget::down_proj: return {H, c.intermediate_size};
    }
    return {0, 0};
}

/// The adapters of one decoder layer: one bank per target.
struct LayerLora {
    std::array<cpu::LoraBank, kLoraTargets> banks;

    cpu::LoraBank& bank(LoraTarget t) noexcept { return banks[static_cast<std::size_t>(t)]; }
    const cpu::LoraBank& bank(LoraTarget t) const noexcept { return banks[static_cast<std::size_t>(t)]; }
    /// Whether any range's adapter touches the FFN targets of this layer.
    bool touches_ffn(std::span<const cpu::LoraRows> ranges) const noexcept {
        return bank(LoraTarget::gate_proj).touches(ranges) || bank(LoraTarget::up_proj).touches(ranges) ||
               bank(LoraTarget::down_proj).touches(ranges);
    }
    /// Removes adapter id from every bank.
    void remove(int id) {
        for (cpu::LoraBank& b : banks) b.remove(id);
    }
    index_t parameters(int id) const noexcept {
        index_t n = 0;
        for (const cpu::LoraBank& b : banks) n += b.parameters(id);
        return n;
    }
};

/// The FFN of a layer with LoRA deltas on the step's row ranges: y = down'(Act(gate' x) * up' x),
/// where P' x = P x + (the range's adapter delta of P). Used only for steps where some sequence's
/// adapter touches this layer's FFN (else the slot's own forward runs: bit-identical to no LoRA).
template <GatedLinearFfn F>
void lora_ffn_forward(const F& f, ConstMatrixRef<float> x, MatrixRef<float> y, const LayerLora& L,
                      std::span<const cpu::LoraRows> ranges, const Exec& ex, Scratch<float>& hs, Scratch<float>& us) {
    const index_t T = x.rows, I = f.fc1().out_features();
    check<ShapeError>(y.rows == T && y.cols == f.fc2().out_features(), "lora_ffn_forward", "output is [", y.rows, ", ",
                      y.cols, "], expected [", T, ", ", f.fc2().out_features(), "]");
    if (T == 0) return;
    MatrixRef<float> h(hs.get(static_cast<std::size_t>(T * I)), T, I);
    MatrixRef<float> u(us.get(static_cast<std::size_t>(T * I)), T, I);
    f.up().forward(x, u, ex);
    L.bank(LoraTarget::up_proj).apply(x, u, ranges, ex);
    f.fc1().forward(x, h, ex);
    L.bank(LoraTarget::gate_proj).apply(x, h, ranges, ex);
    for (index_t r = 0; r < T; ++r) cpu::glu<typename F::activation>(h.row(r), u.row(r), I);
    f.fc2().forward(ConstMatrixRef<float>(h), y, ex);
    L.bank(LoraTarget::down_proj).apply(ConstMatrixRef<float>(h), y, ranges, ex);
}

// ---------------------------------------------------------------------------------------------
// adapter_config.json

/// PEFT's LoraConfig, the fields that change the computation (others are ignored).
struct LoraConfig {
    index_t r = 8;            ///< PEFT's default
    double lora_alpha = 8;    ///< PEFT's default
    bool use_rslora = false;  ///< scale alpha / sqrt(r) instead of alpha / r
    std::vector<LoraTarget> targets;             ///< target_modules, distinct, in order
    std::vector<index_t> layers_to_transform;    ///< empty: every layer
    std::vector<std::pair<std::string, index_t>> rank_pattern;  ///< module-name suffix -> r
    std::vector<std::pair<std::string, double>> alpha_pattern;  ///< module-name suffix -> lora_alpha
    std::string base_model_name_or_path, task_type;             ///< informational
    std::string where = "adapter_config.json";

    bool targets_module(LoraTarget t) const { return std::find(targets.begin(), targets.end(), t) != targets.end(); }
    bool transforms(index_t layer) const {
        return layers_to_transform.empty() ||
               std::find(layers_to_transform.begin(), layers_to_transform.end(), layer) != layers_to_transform.end();
    }
    /// The module's name in the base model, as PEFT matches rank_pattern / alpha_pattern keys
    /// against it: "model.layers.{l}.self_attn.q_proj".
    static std::string module_name(index_t layer, LoraTarget t) {
        return moe::detail::cat("model.layers.", layer, ".", lora_target_module(t), ".", lora_target_name(t));
    }
    /// The rank of a module: the first rank_pattern key (in file order) that is the module's name
    /// or a dot-separated suffix of it, else r.
    index_t rank_of(index_t layer, LoraTarget t) const { return pattern(rank_pattern, layer, t, r); }
    double alpha_of(index_t layer, LoraTarget t) const { return pattern(alpha_pattern, layer, t, lora_alpha); }
    float scale_of(index_t layer, LoraTarget t) const {
        return cpu::lora_scale(alpha_of(layer, t), rank_of(layer, t), use_rslora);
    }

    static LoraConfig from_json(std::string_view text, std::string where = "adapter_config.json") {
        const io::json::Value v = io::json::parse(text, where);
        check<FormatError>(v.is_object(), where, "expected a JSON object");
        LoraConfig c;
        c.where = where;
        const char* w = c.where.c_str();
        auto str = [&](const char* key) -> std::optional<std::string> {
            const io::json::Value* f = v.find(key);
            if (!f || f->is_null()) return std::nullopt;
            check<ConfigError>(f->is_string(), w, key, " must be a string");
            return f->as_string();
        };
        auto flag = [&](const char* key) {
            const io::json::Value* f = v.find(key);
            if (!f || f->is_null()) return false;
            check<ConfigError>(f->is_bool(), w, key, " must be true or false");
            return f->as_bool();
        };
        auto empty_or_null = [&](const char* key) {
            const io::json::Value* f = v.find(key);
            return !f || f->is_null() || (f->is_array() && f->as_array().empty()) ||
                   (f->is_object() && f->as_object().empty());
        };
        const auto type = str("peft_type");
        check<ConfigError>(type.has_value(), w, "peft_type is missing (expected \"LORA\")");
        check<ConfigError>(*type == "LORA", w, "peft_type '", *type, "' is not supported: only LoRA adapters (\"LORA\")");
        if (const io::json::Value* f = v.find("r")) {
            const auto r = f->as_i64();
            check<ConfigError>(r && *r > 0, w, "r must be a positive integer");
            c.r = static_cast<index_t>(*r);
        }
        if (const io::json::Value* f = v.find("lora_alpha")) {
            check<ConfigError>(f->is_number(), w, "lora_alpha must be a number");
            c.lora_alpha = f->as_double();
        }
        c.use_rslora = flag("use_rslora");
        check<ConfigError>(!flag("fan_in_fan_out"), w,
                           "fan_in_fan_out true (GPT-2's Conv1D layout) is not supported: LLaMA / Qwen2 Linears are [out, in]");
        check<ConfigError>(!flag("use_dora"), w, "use_dora (DoRA) is not supported");
        check<ConfigError>(!flag("lora_bias"), w, "lora_bias (a bias on lora_B) is not supported");
        if (const auto b = str("bias"))
            check<ConfigError>(*b == "none", w, "bias '", *b, "' is not supported: only \"none\" (the adapter trains no biases)");
        check<ConfigError>(empty_or_null("modules_to_save"), w,
                           "modules_to_save is not supported (the adapter would replace whole modules)");
        check<ConfigError>(empty_or_null("exclude_modules"), w, "exclude_modules is not supported");
        // target_modules: a list of names, or one string (a name, "all-linear"; a regex is refused)
        const io::json::Value* tm = v.find("target_modules");
        check<ConfigError>(tm && !tm->is_null(), w, "target_modules is missing");
        auto add = [&](const std::string& name) {
            check<ConfigError>(!name.empty(), w, "an empty target_modules entry");
            const std::string_view last = std::string_view(name).substr(name.rfind('.') == std::string::npos ? 0 : name.rfind('.') + 1);
            check<ConfigError>(last != "lm_head" && last != "embed_tokens", w, "target module '", name,
                               "' is not supported (LoRA on lm_head / embed_tokens)");
            const auto t = lora_target_from_name(last);
            check<ConfigError>(t.has_value(), w, "target module '", name,
                               "' is not a LLaMA / Qwen2 linear (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
            if (!c.targets_module(*t)) c.targets.push_back(*t);
        };
        if (tm->is_string()) {
            const std::string& s = tm->as_string();
            if (s == "all-linear") {
                c.targets.assign(kAllLoraTargets.begin(), kAllLoraTargets.end());
            } else {
                check<ConfigError>(s.find_first_of("*+?[](){}|^$\\") == std::string::npos, w, "target_modules '", s,
                                   "' is a regex: regex targets are not supported (list the module names)");
                add(s);
            }
        } else {
            check<ConfigError>(tm->is_array(), w, "target_modules must be a list of module names or a string");
            for (const io::json::Value& e : tm->as_array()) {
                check<ConfigError>(e.is_string(), w, "target_modules must hold strings");
                add(e.as_string());
            }
            check<ConfigError>(!c.targets.empty(), w, "target_modules is empty");
        }
        if (const io::json::Value* f = v.find("layers_to_transform"); f && !f->is_null()) {
            auto layer = [&](const io::json::Value& e) {
                const auto i = e.as_i64();
                check<ConfigError>(i && *i >= 0, w, "layers_to_transform must hold layer indices >= 0");
                c.layers_to_transform.push_back(static_cast<index_t>(*i));
            };
            if (f->is_array()) {
                for (const io::json::Value& e : f->as_array()) layer(e);
            } else {
                layer(*f);
            }
        }
        auto patterns = [&](const char* key, auto&& read) {
            const io::json::Value* f = v.find(key);
            if (!f || f->is_null()) return;
            check<ConfigError>(f->is_object(), w, key, " must be an object");
            for (const auto& m : f->as_object()) {
                check<ConfigError>(m.key.find_first_of("*+?[](){}|^$\\") == std::string::npos, w, key, " key '",
                                   m.key, "' is a regex: only module names (or their dotted suffixes) are supported");
                read(m.key, m.value);
            }
        };
        patterns("rank_pattern", [&](const std::string& k, const io::json::Value& e) {
            const auto r = e.as_i64();
            check<ConfigError>(r && *r > 0, w, "rank_pattern['", k, "'] must be a positive integer");
            c.rank_pattern.emplace_back(k, static_cast<index_t>(*r));
        });
        patterns("alpha_pattern", [&](const std::string& k, const io::json::Value& e) {
            check<ConfigError>(e.is_number(), w, "alpha_pattern['", k, "'] must be a number");
            c.alpha_pattern.emplace_back(k, e.as_double());
        });
        c.base_model_name_or_path = str("base_model_name_or_path").value_or("");
        c.task_type = str("task_type").value_or("");
        return c;
    }
    static LoraConfig from_file(const std::filesystem::path& path) {
        const io::MappedFile m = io::MappedFile::open(path);
        return from_json(m.text(), m.path);
    }

private:
    template <class T>
    static T pattern(const std::vector<std::pair<std::string, T>>& p, index_t layer, LoraTarget t, T dflt) {
        if (p.empty()) return dflt;
        const std::string name = module_name(layer, t);
        for (const auto& [k, val] : p)
            if (name == k || (name.size() > k.size() && name.ends_with(k) && name[name.size() - k.size() - 1] == '.'))
                return val;
        return dflt;
    }
};

/// A parsed adapter: one cpu::LoraAdapter per (layer, target) it adapts.
struct LoraWeights {
    struct Module {
        index_t layer = 0;
        LoraTarget target = LoraTarget::q_proj;
        cpu::LoraAdapter adapter;
    };
    LoraConfig config;
    std::vector<Module> modules;
    std::string source;  ///< the file it was read from

    /// sum over modules of r * (in + out).
    index_t parameters() const noexcept {
        index_t n = 0;
        for (const Module& m : modules) n += m.adapter.parameters();
        return n;
    }
    bool has_ffn_targets() const noexcept {
        return std::any_of(modules.begin(), modules.end(), [](const Module& m) { return is_ffn_target(m.target); });
    }
};

/// The tensor-name prefix of PEFT's adapter_model.safetensors, and of a LAVIS (RS-MoE) training
/// checkpoint's LLM inside the whole model's state dict.
inline constexpr std::string_view kPeftPrefix = "base_model.model.";
inline constexpr std::string_view kLavisPrefix = "llm_model.base_model.model.";

namespace detail {

struct LoraName {
    index_t layer = 0;
    LoraTarget target = LoraTarget::q_proj;
    bool a = true;
    std::string adapter;  ///< "" or PEFT's adapter name (e.g. "default")
};

/// Parses <prefix>model.layers.{l}.{self_attn|mlp}.<target>.lora_{A|B}[.<adapter>].weight.
inline std::optional<LoraName> parse_lora_name(std::string_view name, std::string_view prefix) {
    if (!name.starts_with(prefix)) return std::nullopt;
    std::string_view s = name.substr(prefix.size());
    constexpr std::string_view layers = "model.layers.";
    if (!s.starts_with(layers)) return std::nullopt;
    s.remove_prefix(layers.size());
    LoraName n;
    std::size_t i = 0;
    index_t l = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && i < 9) l = l * 10 + (s[i++] - '0');
    if (i == 0 || i >= s.size() || s[i] != '.') return std::nullopt;
    n.layer = l;
    s.remove_prefix(i + 1);
    const std::size_t dot = s.find('.');
    if (dot == std::string_view::npos) return std::nullopt;
    const std::string_view module = s.substr(0, dot);
    s.remove_prefix(dot + 1);
    const std::size_t dot2 = s.find('.');
    if (dot2 == std::string_view::npos) return std::nullopt;
    const auto t = lora_target_from_name(s.substr(0, dot2));
    if (!t || module != lora_target_module(*t)) return std::nullopt;
    n.target = *t;
    s.remove_prefix(dot2 + 1);
    if (s.starts_with("lora_A.")) n.a = true;
    else if (s.starts_with("lora_B.")) n.a = false;
    else return std::nullopt;
    s.remove_prefix(7);
    if (s == "weight") return n;
    constexpr std::string_view wt = ".weight";
    if (!s.ends_with(wt) || s.size() == wt.size()) return std::nullopt;
    n.adapter = std::string(s.substr(0, s.size() - wt.size()));
    if (n.adapter.find('.') != std::string::npos) return std::nullopt;
    return n;
}

}  // namespace detail

/// The LoRA weights of one adapter from a safetensors file whose LoRA tensors are named
/// <prefix>model.layers.{l}.<module>.<target>.lora_{A|B}[.<adapter>].weight, checked against the
/// config `c` and the base model's config `m`. strict (an adapter_model.safetensors): every
/// tensor must be such a name; otherwise (a whole-model checkpoint, e.g. LAVIS's) tensors outside
/// the prefix or without ".lora_" in their name are ignored. Errors, each naming the tensor:
/// FormatError (a name that is not a LoRA weight of a decoder layer, a module target_modules does
/// not list, a layer beyond the model or outside layers_to_transform, two adapter names, a tensor
/// given twice), ShapeError (lora_A not [r, in], lora_B not [out, r] with the config's r),
/// DTypeError (not F32 / BF16 / F16), NotFoundError (a targeted module of a transformed layer
/// without its lora_A or lora_B).
inline LoraWeights read_lora_tensors(const io::SafetensorsFile& f, std::string_view prefix, const LoraConfig& c,
                                     const DecoderConfig& m, bool strict = false) {
    using moe::detail::cat;
    const std::string& w = f.path();
    const std::string expected = cat(prefix, "model.layers.{l}.{self_attn|mlp}.<target>.lora_{A|B}[.<adapter>].weight");
    std::map<std::pair<index_t, int>, std::array<std::string, 2>> found;  // (layer, target) -> names of A, B
    std::optional<std::string> adapter_name;
    for (const std::string& name : f.names()) {
        if (!strict && (!std::string_view(name).starts_with(prefix) || name.find(".lora_") == std::string::npos)) continue;
        const auto n = detail::parse_lora_name(name, prefix);
        check<FormatError>(n.has_value(), w, "tensor '", name, "' is not a LoRA weight of a decoder layer (expected ",
                           expected, ")");
        check<FormatError>(c.targets_module(n->target), w, "tensor '", name, "' adapts ", lora_target_name(n->target),
                           ", which target_modules (", c.where, ") does not list");
        check<FormatError>(n->layer < m.num_hidden_layers, w, "tensor '", name, "' is for layer ", n->layer,
                           ", the model has ", m.num_hidden_layers, " layers");
        check<FormatError>(c.transforms(n->layer), w, "tensor '", name, "' is for layer ", n->layer,
                           ", which layers_to_transform (", c.where, ") leaves out");
        if (!adapter_name) adapter_name = n->adapter;
        check<FormatError>(*adapter_name == n->adapter, w, "tensor '", name, "' is of adapter '", n->adapter,
                           "', another tensor of adapter '", *adapter_name, "': one adapter per file");
        std::string& slot = found[{n->layer, static_cast<int>(n->target)}][n->a ? 0 : 1];
        check<FormatError>(slot.empty(), w, "tensors '", slot, "' and '", name, "' are the same weight");
        slot = name;
    }
    LoraWeights out;
    out.config = c;
    out.source = w;
    for (index_t l = 0; l < m.num_hidden_layers; ++l) {
        if (!c.transforms(l)) continue;
        for (LoraTarget t : c.targets) {
            const auto it = found.find({l, static_cast<int>(t)});
            const std::string stem = cat(prefix, LoraConfig::module_name(l, t));
            const std::string sfx = adapter_name && !adapter_name->empty() ? cat(".", *adapter_name, ".weight") : ".weight";
            for (int ab = 0; ab < 2; ++ab)
                check<NotFoundError>(it != found.end() && !it->second[static_cast<std::size_t>(ab)].empty(), w, "no tensor '",
                                     stem, ab == 0 ? ".lora_A" : ".lora_B", sfx, "': target module ", lora_target_name(t),
                                     " of layer ", l, " has no LoRA weights in the file");
            const std::string& an = it->second[0];
            const std::string& bn = it->second[1];
            const TensorView a = f.get(an), b = f.get(bn);
            for (const auto& [v, nm] : {std::pair<const TensorView&, const std::string&>{a, an}, {b, bn}})
                check<DTypeError>(io::is_float(v.dtype()), w, "tensor '", nm, "' is ", dtype_name(v.dtype()),
                                  ", LoRA weights must be F32, BF16 or F16");
            const auto [O, I] = lora_target_shape(m, t);
            const index_t r = c.rank_of(l, t);
            check<ShapeError>(a.rank() == 2 && a.dim(0) == r && a.dim(1) == I, w, "tensor '", an, "' is ",
                              a.shape().str(), ", expected lora_A [r = ", r, ", in = ", I, "] (r from ", c.where, ")");
            check<ShapeError>(b.rank() == 2 && b.dim(0) == O && b.dim(1) == r, w, "tensor '", bn, "' is ",
                              b.shape().str(), ", expected lora_B [out = ", O, ", r = ", r, "] (r from ", c.where, ")");
            out.modules.push_back({l, t, cpu::LoraAdapter(a, b, c.scale_of(l, t), stem)});
        }
    }
    return out;
}

/// A PEFT adapter folder (adapter_config.json + adapter_model.safetensors) for a model of config
/// `m`. NotFoundError when either file is missing, FormatError for corrupt JSON or safetensors,
/// and read_lora_tensors' errors.
inline LoraWeights read_peft_adapter(const std::filesystem::path& dir, const DecoderConfig& m) {
    const std::filesystem::path cfg = dir / "adapter_config.json", st = dir / "adapter_model.safetensors";
    std::error_code ec;
    check<NotFoundError>(std::filesystem::exists(cfg, ec), cfg.string(),
                         "no adapter_config.json: not a PEFT adapter folder (PeftModel.save_pretrained writes one)");
    check<NotFoundError>(std::filesystem::exists(st, ec), st.string(),
                         "no adapter_model.safetensors in the adapter folder (adapter_model.bin is not read: save with "
                         "safe_serialization=True)");
    const LoraConfig c = LoraConfig::from_file(cfg);
    return read_lora_tensors(io::SafetensorsFile::open(st), kPeftPrefix, c, m, true);
}

/// Reads the PEFT folder `dir` and adds it to `model` as adapter `id` (CausalLM::add_adapter).
template <class Model>
void load_lora_adapter(Model& model, const std::filesystem::path& dir, int id) {
    model.add_adapter(id, read_peft_adapter(dir, model.config()));
}

/// Folds adapter `id` into model's base weights (CausalLM::merge_adapter).
template <class Model>
void merge_lora(Model& model, int id) {
    model.merge_adapter(id);
}

}  // namespace moe::lm
