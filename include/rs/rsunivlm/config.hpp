// rs/rsunivlm/config.hpp - RSUniVLM's configuration: the config.json its released checkpoint
// (LLaVA-NeXT's LlavaQwenGMoeForCausalLM) carries, and the two sizes the library knows.
//
//   RsUniVlmConfig::from_json(text, where) / from_file(path)
//   RsUniVlmConfig::full()       the released sizes (SigLIP so400m/14 at 384 with 26 of 27 layers,
//                                mlp2x_gelu projector, Qwen2-0.5B with 3 G-MoE experts per layer)
//   RsUniVlmConfig::tiny()       the parity fixture's sizes (tools/reference/fixtures_rsunivlm.py)
//   to_json()                    a config.json for a model folder (random models, tests)
//   rsunivlm_parameter_count(c)  parameters of the checkpoint, analytically (the full size:
//                                1,657,325,600, untied lm_head and SigLIP's unused post_layernorm
//                                included)
//
// config.json: the Qwen2 fields at top level (lm::DecoderConfig reads them; model_type
// "llava_qwen" or "qwen2", architectures ["LlavaQwenGMoeForCausalLM"]) plus LLaVA's
// mm_hidden_size, mm_projector_type (only "mlp2x_gelu"), mm_patch_merge_type (an image
// newline follows each image's features when it contains "unpad"), mm_vision_tower, and
// image_aspect_ratio (read and reported: the library always takes the single 384 x 384 tile).
// The vision sizes come from a "vision_config" object when there is one (hidden_size,
// image_size, intermediate_size, num_attention_heads, num_hidden_layers, patch_size,
// layer_norm_eps: the tower keeps num_hidden_layers - 1 layers, as LLaVA deletes the last), else
// from the tower's name (google/siglip-so400m-patch14-384). Anything else: ConfigError naming
// the field and the file.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "lm/decoder/config.hpp"
#include "moe/core/error.hpp"
#include "moe/io/json.hpp"
#include "moe/io/mapped_file.hpp"
#include "vision/vit.hpp"

namespace moe::rs::rsunivlm {

/// LLaVA's placeholder id for an image in a prompt (IMAGE_TOKEN_INDEX).
inline constexpr std::int32_t kImageTokenIndex = -200;
/// The image placeholder text (DEFAULT_IMAGE_TOKEN).
inline constexpr std::string_view kImageToken = "<image>";

struct RsUniVlmConfig {
    lm::DecoderConfig text;
    vision::VitConfig vision;        ///< the tower as kept: depth = stored layers (26 of 27)
    index_t mm_hidden_size = 1152;   ///< the projector's input (the tower's width)
    bool image_newline = true;       ///< mm_patch_merge_type contains "unpad"
    std::string projector_type = "mlp2x_gelu";
    std::string patch_merge_type = "spatial_unpad";
    std::string image_aspect_ratio = "anyres_max_9";  ///< read only: the library takes one tile
    std::string vision_tower = "google/siglip-so400m-patch14-384";
    std::string where = "config.json";

    /// Embeddings each image adds to a prompt: grid^2 features (+ the newline).
    index_t image_tokens() const noexcept {
        return vision.grid() * vision.grid() + (image_newline ? 1 : 0);
    }
    index_t image_size() const noexcept { return vision.image_size; }
    index_t hidden_size() const noexcept { return text.hidden_size; }

    static RsUniVlmConfig from_file(const std::filesystem::path& path) {
        const io::MappedFile m = io::MappedFile::open(path);
        return from_json(m.text(), m.path);
    }

    static RsUniVlmConfig from_json(std::string_view text, std::string where = "config.json") {
        RsUniVlmConfig c;
        c.where = where;
        c.text = lm::DecoderConfig::from_json(text, where);
        check<ConfigError>(c.text.ffn == lm::FfnKind::gmoe, where, "architectures '", c.text.architecture,
                           "': RSUniVLM needs LlavaQwenGMoeForCausalLM (every FFN a G-MoE)");
        io::json::Options opt;
        opt.subject = "config.json";
        opt.big_integers_as_real = true;
        const io::json::Value doc = io::json::parse(text, where, opt);
        auto str = [&](const char* key, std::string fallback) {
            const io::json::Value* v = doc.find(key);
            if (!v || v->is_null()) return fallback;
            check<ConfigError>(v->is_string(), where, key, " must be a string");
            return v->as_string();
        };
        auto positive = [&](const io::json::Value& o, const char* key, index_t fallback) -> index_t {
            const io::json::Value* v = o.find(key);
            if (!v || v->is_null()) return fallback;
            const auto i = v->as_i64();
            check<ConfigError>(v->is_integer() && i && *i > 0 && *i < (index_t{1} << 31), where, key,
                               " must be a positive integer");
            return static_cast<index_t>(*i);
        };
        c.projector_type = str("mm_projector_type", "linear");
        check<ConfigError>(c.projector_type == "mlp2x_gelu", where, "mm_projector_type '", c.projector_type,
                           "' is not supported (supported: mlp2x_gelu)");
        c.patch_merge_type = str("mm_patch_merge_type", "flat");
        c.image_newline = c.patch_merge_type.find("unpad") != std::string::npos;
        c.image_aspect_ratio = str("image_aspect_ratio", "square");
        c.vision_tower = str("mm_vision_tower", "");
        if (const io::json::Value* vc = doc.find("vision_config"); vc && !vc->is_null()) {
            check<ConfigError>(vc->is_object(), where, "vision_config must be an object");
            const index_t layers = positive(*vc, "num_hidden_layers", 27);
            check<ConfigError>(layers >= 2, where, "vision_config.num_hidden_layers ", layers,
                               ": the tower drops the last layer, so it needs at least 2");
            c.vision = vision::VitConfig::siglip_so400m14(layers - 1, false);
            c.vision.width = positive(*vc, "hidden_size", 1152);
            c.vision.image_size = positive(*vc, "image_size", 384);
            c.vision.mlp_hidden = positive(*vc, "intermediate_size", 4304);
            c.vision.heads = positive(*vc, "num_attention_heads", 16);
            c.vision.patch = positive(*vc, "patch_size", 14);
            if (const io::json::Value* e = vc->find("layer_norm_eps"); e && e->is_number())
                c.vision.eps = static_cast<float>(e->as_double());
        } else {
            check<ConfigError>(c.vision_tower.find("siglip-so400m-patch14-384") != std::string::npos, where,
                               "mm_vision_tower '", c.vision_tower,
                               "' is not known and there is no vision_config (known: "
                               "google/siglip-so400m-patch14-384)");
            c.vision = vision::VitConfig::siglip_so400m14(26, false);
        }
        check<ConfigError>(c.vision.width % c.vision.heads == 0, where, "vision hidden_size ", c.vision.width,
                           " is not a multiple of num_attention_heads ", c.vision.heads);
        check<ConfigError>(c.vision.image_size >= c.vision.patch, where, "vision image_size ", c.vision.image_size,
                           " is smaller than patch_size ", c.vision.patch);
        c.mm_hidden_size = positive(doc, "mm_hidden_size", c.vision.width);
        check<ConfigError>(c.mm_hidden_size == c.vision.width, where, "mm_hidden_size ", c.mm_hidden_size,
                           " differs from the vision tower's width ", c.vision.width);
        return c;
    }

    /// A config.json for this configuration (LLaVA's fields, a vision_config, the Qwen2 fields).
    std::string to_json() const {
        const lm::DecoderConfig& t = text;
        std::string s = "{\n";
        auto kv = [&](std::string_view k, const std::string& v, bool last = false) {
            s.append("  \"").append(k).append("\": ").append(v).append(last ? "\n" : ",\n");
        };
        auto q = [](std::string_view v) {  // a JSON string, escaped
            std::string out;
            io::json::append_string(out, v);
            return out;
        };
        kv("architectures", "[\"LlavaQwenGMoeForCausalLM\"]");
        kv("model_type", q("llava_qwen"));
        kv("hidden_act", q("silu"));
        kv("hidden_size", std::to_string(t.hidden_size));
        kv("intermediate_size", std::to_string(t.intermediate_size));
        kv("num_hidden_layers", std::to_string(t.num_hidden_layers));
        kv("num_attention_heads", std::to_string(t.num_attention_heads));
        kv("num_key_value_heads", std::to_string(t.num_key_value_heads));
        kv("vocab_size", std::to_string(t.vocab_size));
        kv("max_position_embeddings", std::to_string(t.max_position_embeddings));
        kv("rms_norm_eps", moe::detail::cat(t.rms_norm_eps));
        kv("rope_theta", moe::detail::cat(t.rope_theta));
        kv("tie_word_embeddings", t.tie_word_embeddings ? "true" : "false");
        kv("use_sliding_window", "false");
        if (!t.bos_token_ids.empty()) kv("bos_token_id", std::to_string(t.bos_token_ids[0]));
        if (!t.eos_token_ids.empty()) kv("eos_token_id", std::to_string(t.eos_token_ids[0]));
        kv("mm_hidden_size", std::to_string(mm_hidden_size));
        kv("mm_projector_type", q(projector_type));
        kv("mm_patch_merge_type", q(patch_merge_type));
        kv("image_aspect_ratio", q(image_aspect_ratio));
        kv("mm_vision_tower", q(vision_tower));
        s.append("  \"vision_config\": {\"model_type\": \"siglip_vision_model\", \"hidden_size\": ")
            .append(std::to_string(vision.width))
            .append(", \"image_size\": ")
            .append(std::to_string(vision.image_size))
            .append(", \"intermediate_size\": ")
            .append(std::to_string(vision.mlp_hidden))
            .append(", \"num_attention_heads\": ")
            .append(std::to_string(vision.heads))
            .append(", \"num_hidden_layers\": ")
            .append(std::to_string(vision.depth + 1))
            .append(", \"patch_size\": ")
            .append(std::to_string(vision.patch))
            .append(", \"layer_norm_eps\": ")
            .append(moe::detail::cat(vision.eps))
            .append("}\n}\n");
        return s;
    }

    /// The released model's sizes (config.json inferred from LLaVA-OneVision-0.5B; the Qwen
    /// vocabulary of 151,936 rows, untied lm_head, eos <|im_end|> 151645).
    static RsUniVlmConfig full() {
        return from_json(R"({"architectures": ["LlavaQwenGMoeForCausalLM"], "model_type": "llava_qwen",
            "hidden_act": "silu", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
            "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
            "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
            "tie_word_embeddings": false, "use_sliding_window": false, "bos_token_id": 151643,
            "eos_token_id": 151645, "mm_hidden_size": 1152, "mm_projector_type": "mlp2x_gelu",
            "mm_patch_merge_type": "spatial_unpad", "image_aspect_ratio": "anyres_max_9",
            "mm_vision_tower": "google/siglip-so400m-patch14-384"})",
                         "RsUniVlmConfig::full");
    }

    /// The parity fixture's sizes with the real Qwen vocabulary (the example's random tiny model):
    /// SigLIP 28 px / patch 7, width 48, 2 kept layers; Qwen2 hidden 64, 2 layers.
    static RsUniVlmConfig tiny(index_t vocab_size = 151936) {
        RsUniVlmConfig c = full();
        c.text.hidden_size = 64;
        c.text.intermediate_size = 128;
        c.text.num_hidden_layers = 2;
        c.text.num_attention_heads = 4;
        c.text.num_key_value_heads = 2;
        c.text.head_dim = 16;
        c.text.vocab_size = vocab_size;
        c.vision = vision::VitConfig::siglip_so400m14(2, false);
        c.vision.image_size = 28;
        c.vision.patch = 7;
        c.vision.width = 48;
        c.vision.heads = 4;
        c.vision.mlp_hidden = 100;
        c.mm_hidden_size = 48;
        return from_json(c.to_json(), "RsUniVlmConfig::tiny");
    }
};

/// The checkpoint's parameter count for `c` (what rsunivlm_tiny's file holds, and 1,657,325,600
/// for full()): vision tower (patch conv, position table, kept layers, post_layernorm), projector,
/// image newline, language model (embeddings, layers with 3 SwiGLU experts, norm, lm_head unless tied).
inline index_t rsunivlm_parameter_count(const RsUniVlmConfig& c) {
    const lm::DecoderConfig& t = c.text;
    const index_t H = t.hidden_size, I = t.intermediate_size, hd = t.head_dim;
    const index_t q = t.num_attention_heads * hd, kv = t.num_key_value_heads * hd;
    const index_t layer = 2 * H + (q * H + q) + 2 * (kv * H + kv) + H * q + 3 * 3 * H * I;
    const index_t lm = t.vocab_size * H * (t.tie_word_embeddings ? 1 : 2) + t.num_hidden_layers * layer + H;
    const index_t vis = vision::vit_parameter_count(c.vision) + 2 * c.vision.width;  // + post_layernorm
    const index_t proj = c.mm_hidden_size * H + H + H * H + H;
    return lm + vis + proj + (c.image_newline ? H : 0);
}

}  // namespace moe::rs::rsunivlm
