// rs/rsmoe/config.hpp - RS-MoE's configuration: the rsmoe.json of a model folder (the library's
// format: the released code has no MoE block and so no config for one), and the sizes it knows.
//
//   RsMoeConfig::from_json(text, where) / from_file(path) / to_json()
//   RsMoeConfig::instructblip()   the released parts' sizes: EVA ViT-g/14 at 224 (39 blocks, 1408
//                                 wide), ln_vision, the bert-base Q-Former with 32 queries
//   kEvalInstruction              the released code's evaluation instruction
//   vqa_instruction(question)     a question as an instruction ("Question: {} Short answer:")
//   default_experts()             theme / objects / relations, the text router's sub-instructions
//
// A model folder (docs/rsmoe.md):
//   rsmoe.json              this file
//   model.safetensors       LAVIS's names: visual_encoder.*, ln_vision.*, Qformer.bert.*,
//                           query_tokens, llm_proj.* (LoRA experts share it); router.* (soft router)
//   bert/tokenizer.json     the Q-Former's WordPiece tokenizer (bert-base-uncased + [DEC])
//   <base>/                 LoRA experts: the shared base LLM (a Hugging Face LLaMA folder with
//                           its tokenizer.json)
//   <expert path>/          LoRA experts: a PEFT adapter folder (adapter_config.json,
//                           adapter_model.safetensors); separate LLMs: a Hugging Face folder plus
//                           llm_proj.safetensors (llm_proj.weight [H_e, 768], llm_proj.bias)
//
// rsmoe.json fields (unknown or mistyped ones: ConfigError naming the field and the file):
//   "vision": {image_size, patch_size, hidden_size, num_hidden_layers, num_attention_heads,
//              intermediate_size, layer_norm_eps}            EVA ViT-g (defaults: LAVIS's)
//   "ln_vision_eps" (1e-5), "max_txt_len" (128: the Q-Former's text, truncated from the left)
//   "qformer": {hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
//               max_position_embeddings, layer_norm_eps, encoder_width, cross_attention_freq,
//               num_query_token, vocab_size}                 (defaults: InstructBLIP's)
//   "router": "text" | "soft"                                which reading of the paper
//   "experts": {"kind": "lora" | "llm", "base": "llm",
//               "members": [{"name", "path", "instruction"}]}  instruction: the text router's
//               template, "{instruction}" replaced by the global instruction
//   "aggregator": {"type": "concat" | "fusion", "separator": " ", "template": "...",
//                  "max_new_tokens": 64}
//   "llm_bos": "</s>"        the token put before the LLM's text (LAVIS sets Vicuna's bos_token to
//                            "</s>"; "" = the tokenizer's own bos)
//   "instruction": kEvalInstruction
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/io/json.hpp"
#include "moe/io/mapped_file.hpp"
#include "vision/qformer.hpp"
#include "vision/vit.hpp"

namespace moe::rs::rsmoe {

/// The instruction of the released evaluation code (RS-MoE's repository, InstructBLIP baseline).
inline constexpr std::string_view kEvalInstruction = "Take a look at this image and describe what you notice.";

/// A question as the instruction of a VQA request: InstructBLIP's short-answer VQA prompt form
/// ("Question: {} Short answer:").
inline std::string vqa_instruction(std::string_view question) {
    return std::string("Question: ").append(question).append(" Short answer:");
}

/// What the experts are (chosen at compile time by the model's Experts type; the file says which
/// the folder holds).
enum class ExpertKind { lora, llm };
/// Which reading of the paper's instruction router.
enum class RouterKind { text, soft };

/// One expert of the MoE block.
struct ExpertEntry {
    std::string name;         ///< e.g. "theme"
    std::string path;         ///< its folder, relative to the model folder
    std::string instruction;  ///< text router: its sub-instruction ("{instruction}" = the global one)
};

/// The paper's three sub-tasks (second-hand: theme comprehension, object recognition, relation
/// inference) as sub-instructions of the text router.
inline std::vector<ExpertEntry> default_experts() {
    return {{"theme", "experts/theme",
             "{instruction} Focus on the overall theme: what kind of scene this is and how the land is used."},
            {"objects", "experts/objects",
             "{instruction} Focus on the objects: what they are, how many there are and where they are."},
            {"relations", "experts/relations",
             "{instruction} Focus on the relations: how the objects and areas are arranged relative to each other."}};
}

struct RsMoeConfig {
    vision::VitConfig vision = vision::VitConfig::eva_vit_g14();
    float ln_vision_eps = 1e-5f;
    vision::QFormerConfig qformer = vision::QFormerConfig::instructblip();
    index_t max_txt_len = 128;
    RouterKind router = RouterKind::text;
    ExpertKind expert_kind = ExpertKind::lora;
    std::string base = "llm";
    std::vector<ExpertEntry> experts = default_experts();
    std::string aggregator = "concat";
    std::string separator = " ";
    std::string fusion_template =
        "Combine these descriptions of one remote sensing image into one caption.\n{captions}\nCaption:";
    index_t fusion_max_new_tokens = 64;
    std::string llm_bos = "</s>";
    std::string instruction{kEvalInstruction};
    std::string where = "rsmoe.json";

    index_t num_experts() const noexcept { return static_cast<index_t>(experts.size()); }

    /// The released parts' sizes with LoRA experts and the text router.
    static RsMoeConfig instructblip() { return {}; }

    static RsMoeConfig from_file(const std::filesystem::path& path) {
        const io::MappedFile m = io::MappedFile::open(path);
        return from_json(m.text(), m.path);
    }

    static RsMoeConfig from_json(std::string_view text, std::string where = "rsmoe.json") {
        RsMoeConfig c;
        c.where = where;
        io::json::Options opt;
        opt.subject = "rsmoe.json";
        const io::json::Value doc = io::json::parse(text, where, opt);
        check<ConfigError>(doc.is_object(), where, "must hold a JSON object");
        const char* w = c.where.c_str();
        auto known = [&](const io::json::Value& o, std::initializer_list<std::string_view> keys, const char* what) {
            for (const auto& m : o.as_object()) {
                bool ok = false;
                for (std::string_view k : keys) ok = ok || m.key == k;
                check<ConfigError>(ok, w, "unknown field '", m.key, "' in ", what);
            }
        };
        auto positive = [&](const io::json::Value& o, const char* key, index_t fallback) -> index_t {
            const io::json::Value* v = o.find(key);
            if (!v || v->is_null()) return fallback;
            const auto i = v->as_i64();
            check<ConfigError>(v->is_integer() && i && *i > 0 && *i < (index_t{1} << 31), w, key,
                               " must be a positive integer");
            return static_cast<index_t>(*i);
        };
        auto real = [&](const io::json::Value& o, const char* key, double fallback) {
            const io::json::Value* v = o.find(key);
            if (!v || v->is_null()) return fallback;
            check<ConfigError>(v->is_number() && v->as_double() > 0, w, key, " must be a positive number");
            return v->as_double();
        };
        auto str = [&](const io::json::Value& o, const char* key, std::string fallback) {
            const io::json::Value* v = o.find(key);
            if (!v || v->is_null()) return fallback;
            check<ConfigError>(v->is_string(), w, key, " must be a string");
            return v->as_string();
        };
        auto object = [&](const char* key) -> const io::json::Value* {
            const io::json::Value* v = doc.find(key);
            if (!v || v->is_null()) return nullptr;
            check<ConfigError>(v->is_object(), w, key, " must be an object");
            return v;
        };
        known(doc, {"architectures", "vision", "ln_vision_eps", "max_txt_len", "qformer", "router", "experts",
                    "aggregator", "llm_bos", "instruction"},
              "rsmoe.json");
        if (const auto* v = object("vision")) {
            known(*v, {"image_size", "patch_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                       "intermediate_size", "layer_norm_eps"},
                  "vision");
            c.vision.image_size = positive(*v, "image_size", c.vision.image_size);
            c.vision.patch = positive(*v, "patch_size", c.vision.patch);
            c.vision.width = positive(*v, "hidden_size", c.vision.width);
            c.vision.depth = positive(*v, "num_hidden_layers", c.vision.depth);
            c.vision.heads = positive(*v, "num_attention_heads", c.vision.heads);
            c.vision.mlp_hidden = positive(*v, "intermediate_size", c.vision.mlp_hidden);
            c.vision.eps = static_cast<float>(real(*v, "layer_norm_eps", c.vision.eps));
            check<ConfigError>(c.vision.width % c.vision.heads == 0 && c.vision.image_size % c.vision.patch == 0, w,
                               "vision: hidden_size must be a multiple of the heads and image_size of patch_size");
        }
        c.ln_vision_eps = static_cast<float>(real(doc, "ln_vision_eps", c.ln_vision_eps));
        c.max_txt_len = positive(doc, "max_txt_len", c.max_txt_len);
        if (const auto* q = object("qformer")) {
            known(*q, {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                       "max_position_embeddings", "layer_norm_eps", "encoder_width", "cross_attention_freq",
                       "num_query_token", "vocab_size"},
                  "qformer");
            vision::QFormerConfig& f = c.qformer;
            f.hidden_size = positive(*q, "hidden_size", f.hidden_size);
            f.num_hidden_layers = positive(*q, "num_hidden_layers", f.num_hidden_layers);
            f.num_attention_heads = positive(*q, "num_attention_heads", f.num_attention_heads);
            f.intermediate_size = positive(*q, "intermediate_size", f.intermediate_size);
            f.max_position_embeddings = positive(*q, "max_position_embeddings", f.max_position_embeddings);
            f.layer_norm_eps = static_cast<float>(real(*q, "layer_norm_eps", f.layer_norm_eps));
            f.encoder_width = positive(*q, "encoder_width", f.encoder_width);
            f.cross_attention_freq = positive(*q, "cross_attention_freq", f.cross_attention_freq);
            f.num_query_tokens = positive(*q, "num_query_token", f.num_query_tokens);
            f.vocab_size = positive(*q, "vocab_size", f.vocab_size);
        }
        check<ConfigError>(c.qformer.encoder_width == c.vision.width, w, "qformer.encoder_width ",
                           c.qformer.encoder_width, " differs from the vision width ", c.vision.width);
        const std::string router = str(doc, "router", "text");
        check<ConfigError>(router == "text" || router == "soft", w, "router '", router,
                           "' is not supported (supported: text, soft)");
        c.router = router == "text" ? RouterKind::text : RouterKind::soft;
        if (const auto* e = object("experts")) {
            known(*e, {"kind", "base", "members"}, "experts");
            const std::string kind = str(*e, "kind", "lora");
            check<ConfigError>(kind == "lora" || kind == "llm", w, "experts.kind '", kind,
                               "' is not supported (supported: lora, llm)");
            c.expert_kind = kind == "lora" ? ExpertKind::lora : ExpertKind::llm;
            c.base = str(*e, "base", c.base);
            if (const io::json::Value* m = e->find("members"); m && !m->is_null()) {
                check<ConfigError>(m->is_array() && !m->as_array().empty(), w,
                                   "experts.members must be a non-empty array");
                c.experts.clear();
                for (const io::json::Value& x : m->as_array()) {
                    check<ConfigError>(x.is_object(), w, "every experts.members entry must be an object");
                    known(x, {"name", "path", "instruction"}, "an experts.members entry");
                    ExpertEntry en{str(x, "name", ""), str(x, "path", ""), str(x, "instruction", "{instruction}")};
                    check<ConfigError>(!en.name.empty() && !en.path.empty(), w,
                                       "every expert needs a name and a path");
                    c.experts.push_back(std::move(en));
                }
            }
        }
        if (const auto* a = object("aggregator")) {
            known(*a, {"type", "separator", "template", "max_new_tokens"}, "aggregator");
            c.aggregator = str(*a, "type", c.aggregator);
            check<ConfigError>(c.aggregator == "concat" || c.aggregator == "fusion", w, "aggregator.type '",
                               c.aggregator, "' is not supported (supported: concat, fusion)");
            c.separator = str(*a, "separator", c.separator);
            c.fusion_template = str(*a, "template", c.fusion_template);
            c.fusion_max_new_tokens = positive(*a, "max_new_tokens", c.fusion_max_new_tokens);
            check<ConfigError>(c.fusion_template.find("{captions}") != std::string::npos, w,
                               "aggregator.template must contain {captions}");
        }
        c.llm_bos = str(doc, "llm_bos", c.llm_bos);
        c.instruction = str(doc, "instruction", c.instruction);
        return c;
    }

    /// rsmoe.json for this configuration.
    std::string to_json() const {
        auto q = [](std::string_view v) {
            std::string out;
            io::json::append_string(out, v);
            return out;
        };
        using moe::detail::cat;
        std::string s = "{\n  \"architectures\": [\"RsMoe\"],\n";
        s += cat("  \"vision\": {\"image_size\": ", vision.image_size, ", \"patch_size\": ", vision.patch,
                 ", \"hidden_size\": ", vision.width, ", \"num_hidden_layers\": ", vision.depth,
                 ", \"num_attention_heads\": ", vision.heads, ", \"intermediate_size\": ", vision.mlp_hidden,
                 ", \"layer_norm_eps\": ", vision.eps, "},\n");
        s += cat("  \"ln_vision_eps\": ", ln_vision_eps, ",\n  \"max_txt_len\": ", max_txt_len, ",\n");
        const vision::QFormerConfig& f = qformer;
        s += cat("  \"qformer\": {\"hidden_size\": ", f.hidden_size, ", \"num_hidden_layers\": ", f.num_hidden_layers,
                 ", \"num_attention_heads\": ", f.num_attention_heads, ", \"intermediate_size\": ", f.intermediate_size,
                 ", \"max_position_embeddings\": ", f.max_position_embeddings, ", \"layer_norm_eps\": ",
                 f.layer_norm_eps, ", \"encoder_width\": ", f.encoder_width, ", \"cross_attention_freq\": ",
                 f.cross_attention_freq, ", \"num_query_token\": ", f.num_query_tokens, ", \"vocab_size\": ",
                 f.vocab_size, "},\n");
        s += cat("  \"router\": ", q(router == RouterKind::text ? "text" : "soft"), ",\n");
        s += cat("  \"experts\": {\"kind\": ", q(expert_kind == ExpertKind::lora ? "lora" : "llm"), ", \"base\": ",
                 q(base), ", \"members\": [");
        for (std::size_t i = 0; i < experts.size(); ++i)
            s += cat(i ? ",\n    " : "\n    ", "{\"name\": ", q(experts[i].name), ", \"path\": ", q(experts[i].path),
                     ", \"instruction\": ", q(experts[i].instruction), "}");
        s += "]},\n";
        s += cat("  \"aggregator\": {\"type\": ", q(aggregator), ", \"separator\": ", q(separator),
                 ", \"template\": ", q(fusion_template), ", \"max_new_tokens\": ", fusion_max_new_tokens, "},\n");
        s += cat("  \"llm_bos\": ", q(llm_bos), ",\n  \"instruction\": ", q(instruction), "\n}\n");
        return s;
    }
};

/// An expert's sub-instruction: its template with every "{instruction}" replaced.
inline std::string expand_instruction(std::string_view tmpl, std::string_view instruction) {
    std::string out;
    constexpr std::string_view key = "{instruction}";
    std::size_t at = 0;
    for (std::size_t p; (p = tmpl.find(key, at)) != std::string_view::npos; at = p + key.size())
        out.append(tmpl.substr(at, p - at)).append(instruction);
    out.append(tmpl.substr(at));
    return out;
}

}  // namespace moe::rs::rsmoe
