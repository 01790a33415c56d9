// libFuzzer target for the decoder runtime's text readers: config.json (lm::DecoderConfig, and
// RSUniVLM's rs::rsunivlm::RsUniVlmConfig, RS-MoE's rs::rsmoe::RsMoeConfig (rsmoe.json) and a PEFT
// adapter_config.json (lm::LoraConfig) on the same text) and model.safetensors.index.json
// (io::parse_safetensors_index).
//
// The first byte picks the reader (even: config.json, odd: the index), the rest is the text.
// Each must either throw moe::Error or return. Oracles: a config that loads has positive sizes,
// num_attention_heads a multiple of num_key_value_heads, an even rotary dimension >= 2,
// num_experts_per_tok in [1, num_experts] for the MoE types, and builds a Rope whose inverse
// frequencies are finite and positive; an index that loads names at least one tensor, only
// plain ".safetensors" file names (no '/', no ".."), every file in `files` once. Only
// moe::Error is caught; anything else (another exception, a sanitizer report, a failed oracle,
// a timeout) is a finding. An RSUniVLM config that loads has a G-MoE text model, a vision width
// that its heads divide, an image no smaller than a patch, and mm_hidden_size equal to the width.
// An RS-MoE config that loads has experts, each with a name and a path, a Q-Former attending to
// the vision width, and a fusion template with {captions}; a LoRA config has a positive rank and
// alpha, distinct targets, and finite positive scales for every module it names.
//
// Build and run (clang; from the repository root):
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
//       -Iinclude -isystem /usr/include/eigen3 tests/fuzz/fuzz_decoder_config.cpp -o /tmp/fuzz_decoder_config
//   /tmp/fuzz_decoder_config -max_total_time=60 -timeout=2 /tmp/fdc_corpus tests/fuzz/corpus/decoder_config
// Seeds: tests/fuzz/corpus/decoder_config/ (real configs of Qwen2, LLaMA-3, Qwen2-MoE, Mixtral
// and an index), written by tests/fuzz/make_decoder_seeds.py.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "lm/decoder/config.hpp"
#include "lm/decoder/rope.hpp"
#include "moe/io/safetensors.hpp"
#include "lm/decoder/lora.hpp"
#include "rs/rsmoe/config.hpp"
#include "rs/rsunivlm/config.hpp"

namespace {

[[noreturn]] void finding(const char* what) {
    std::fprintf(stderr, "fuzz_decoder_config: oracle failed: %s\n", what);
    std::abort();
}

void config(std::string_view text) {
    moe::lm::DecoderConfig c;
    try {
        c = moe::lm::DecoderConfig::from_json(text, "fuzz/config.json");
    } catch (const moe::Error&) {
        return;
    }
    if (c.hidden_size <= 0 || c.num_hidden_layers <= 0 || c.vocab_size <= 0 || c.num_key_value_heads <= 0)
        finding("a loaded config has a non-positive size");
    if (c.num_attention_heads % c.num_key_value_heads != 0) finding("heads not a multiple of KV heads");
    if (c.rotary_dim() < 2 || c.rotary_dim() % 2 != 0) finding("odd or empty rotary dimension");
    if ((c.ffn == moe::lm::FfnKind::qwen2_moe || c.ffn == moe::lm::FfnKind::mixtral) &&
        (c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.num_experts))
        finding("num_experts_per_tok outside [1, num_experts]");
    if (c.rotary_dim() > (1 << 20)) return;  // a huge head_dim: a Rope would only allocate
    const moe::lm::Rope r(c);
    for (const float f : r.inv_freq())
        if (!(std::isfinite(f) && f >= 0.0f)) finding("a rope inverse frequency is not finite and >= 0");
}

void rsunivlm_config(std::string_view text) {
    moe::rs::rsunivlm::RsUniVlmConfig c;
    try {
        c = moe::rs::rsunivlm::RsUniVlmConfig::from_json(text, "fuzz/config.json");
    } catch (const moe::Error&) {
        return;
    }
    if (c.text.ffn != moe::lm::FfnKind::gmoe) finding("an RSUniVLM config without a G-MoE language model");
    if (c.vision.heads <= 0 || c.vision.width % c.vision.heads != 0) finding("vision width not split by its heads");
    if (c.vision.grid() < 1 || c.image_tokens() < 1) finding("an image smaller than a patch");
    if (c.mm_hidden_size != c.vision.width) finding("mm_hidden_size differs from the vision width");
}

void rsmoe_config(std::string_view text) {
    moe::rs::rsmoe::RsMoeConfig c;
    try {
        c = moe::rs::rsmoe::RsMoeConfig::from_json(text, "fuzz/rsmoe.json");
    } catch (const moe::Error&) {
        return;
    }
    if (c.experts.empty()) finding("an RS-MoE config without experts");
    for (const auto& e : c.experts)
        if (e.name.empty() || e.path.empty()) finding("an expert without a name or a path");
    if (c.qformer.encoder_width != c.vision.width) finding("the Q-Former does not attend to the vision width");
    if (c.vision.heads <= 0 || c.vision.width % c.vision.heads != 0) finding("vision width not split by its heads");
    if (c.fusion_template.find("{captions}") == std::string::npos) finding("a fusion template without {captions}");
    (void)moe::rs::rsmoe::RsMoeConfig::from_json(c.to_json(), "fuzz/rsmoe.json (written back)");
}

void lora_config(std::string_view text) {
    moe::lm::LoraConfig c;
    try {
        c = moe::lm::LoraConfig::from_json(text, "fuzz/adapter_config.json");
    } catch (const moe::Error&) {
        return;
    }
    if (c.r <= 0 || !(c.lora_alpha > 0)) finding("a LoRA config with a non-positive rank or alpha");
    std::set<int> seen;
    for (const auto t : c.targets)
        if (!seen.insert(static_cast<int>(t)).second) finding("a LoRA target listed twice");
    for (const auto t : c.targets)
        for (moe::index_t l = 0; l < 4; ++l) {
            if (c.rank_of(l, t) <= 0) finding("a non-positive rank for a module");
            const float s = c.scale_of(l, t);
            if (!(std::isfinite(s) && s > 0.0f)) finding("a LoRA scale that is not finite and positive");
        }
}

void index(std::string_view text) {
    moe::io::SafetensorsIndex idx;
    try {
        idx = moe::io::parse_safetensors_index(text, "fuzz/index.json");
    } catch (const moe::Error&) {
        return;
    }
    if (idx.weight_map.empty()) finding("an index without tensors loaded");
    std::set<std::string> files(idx.files.begin(), idx.files.end());
    if (files.size() != idx.files.size()) finding("a shard file listed twice");
    for (const auto& [name, file] : idx.weight_map) {
        if (!files.count(file)) finding("a weight_map file missing from files");
        if (file.find('/') != std::string::npos || file == ".." || !file.ends_with(".safetensors"))
            finding("a shard name that is not a plain .safetensors file name");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    if (data[0] % 2 == 0) {
        config(text);
        rsunivlm_config(text);
        rsmoe_config(text);
        lora_config(text);
    }
    else index(text);
    return 0;
}
