// generate - text generation with a Qwen2 / LLaMA / Qwen2-MoE / Mixtral model from a Hugging Face
// folder (config.json, model.safetensors or shards + index, tokenizer.json), streaming the text.
//
//   generate --model Qwen2-0.5B-Instruct --prompt "Describe a river delta." --chat -n 64
//   generate --prompt "Hello"                      (a small random-weight Qwen2, written once)
//   generate --config qwen2-0.5b --prompt "Hello"  (the same at Qwen2-0.5B's size)
//   generate --model DIR --ids 1,2,3 --temp 0 -n 8 --json
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "cli.hpp"
#include "lm/chat.hpp"
#include "model_cache.hpp"
#include "lm/decoder.hpp"
#include "lm/tokenizer.hpp"
#include "moe/io/json.hpp"
#include "moe/io/safetensors.hpp"

namespace fs = std::filesystem;
using moe::index_t;

namespace {

constexpr std::string_view kUsage = R"(usage: generate [--model DIR | --config NAME] (--prompt TEXT | --ids I,J,...) [options]

  --model DIR        a Hugging Face model folder: config.json, model.safetensors (or
                     model-0000i-of-0000n.safetensors + model.safetensors.index.json) and
                     tokenizer.json (model_type qwen2, llama, mistral, qwen2_moe or mixtral)
  --config NAME      without --model: a random-weight Qwen2 with the real Qwen vocabulary, written
                     once to ${MOE_CACHE_DIR:-~/.cache/moe}/models/: qwen2-tiny (default; 2 layers,
                     hidden 64) or qwen2-0.5b (Qwen2-0.5B's shapes, ~1 GB of bf16)
  --prompt TEXT      the prompt (encoded with the folder's tokenizer.json)
  --ids I,J,...      the prompt as token ids instead (no tokenizer needed)
  --chat             wrap the prompt as a user turn of the ChatML template (Qwen's)
  -n N               new tokens at most (default 64)
  --temp T           temperature; 0 = greedy (default 0.8)
  --top-k K          keep the K most likely tokens (default 40; 0 = off)
  --top-p P          nucleus sampling (default 0.95)
  --min-p P          drop tokens below P x the best's probability (default 0.05)
  --repeat-penalty R repetition penalty (default 1.0 = off)
  --seed S           sampling seed (default 0); results do not depend on --threads
  --stop TEXT        stop when the text contains TEXT (repeatable; not with --beams)
  --min-new-tokens N the end-of-sequence tokens are banned before N new tokens (default 0)
  --beams N          beam search with N beams (transformers' num_beams; deterministic: sampling
                     options are refused; the text is printed at the end, not streamed)
  --length-penalty L beam search: a hypothesis scores its summed log-probability / length^L
                     (default 1)
  --early-stopping E beam search: heuristic (default; transformers' False), first (True) or never
  --ignore-eos       do not stop at the end-of-sequence token (config.json / tokenizer's eos)
  --stop-id ID       also stop after token ID (repeatable)
  --granularity G    the G-MoE expert (RSUniVLM's language model; default 0)
  --threads N        threads (default: all)
  --weights W        the Linears' weights in memory: bf16 (default; fp32 arithmetic on the exact
                     bf16 values, as PyTorch's fp32 matmul on the widened weights), bf16-dot
                     (bf16 arithmetic as PyTorch's bf16 matmuls and llama.cpp's BF16 type do:
                     activations rounded to bf16, vdpbf16ps where the CPU has it), f32, or int8
                     (W8A8: int8 weights with a scale per output channel, activations quantised
                     per token, int32 dot products; docs/scaling.md); a checkpoint stored in
                     bf16 is read in place (no copy) by bf16 and bf16-dot; int8 packs the int8
                     weights of a checkpoint written by `quantize` once at load into its GEMM's
                     panels (AVX-512 VNNI; a float checkpoint is quantised at load first)
  --kv bf16|f32      the KV cache's type (default f32)
  --ctx N            KV cache positions (default: prompt + N new tokens)
  --json             print one JSON object (prompt ids, generated ids, text, timings) instead
  --help             this text

Streams the text to stdout and prints prefill and decode tokens/s to stderr at the end.
Exit status: 0, 1 on a model or input error (the message says what and where), 2 for bad arguments.
)";

[[noreturn]] void bad_usage(const std::string& what) { moe_examples::bad_usage("generate", what); }

struct Args {
    std::optional<fs::path> model;
    std::string config = "qwen2-tiny";
    std::optional<std::string> prompt, ids;
    bool chat = false, json = false, ignore_eos = false;
    index_t n = 64;
    moe::lm::SamplingOptions sampling{.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                                      .repetition_penalty = 1.0f, .seed = 0};
    std::vector<std::string> stops;
    std::vector<std::int32_t> stop_ids;
    bool temp_given = false;
    index_t min_new = 0;
    moe::lm::BeamOptions beams;
    int granularity = 0;
    int threads = 0;
    std::string weights = "bf16", kv = "f32";
    index_t ctx = 0;
};

double number(const std::string& opt, const std::string& v) { return moe_examples::number("generate", opt, v); }

// --- the random model written once -----------------------------------------------------------

using moe_examples::cache_root;

/// Writes a Qwen2 folder with random bf16 weights (N(0, 0.02^2), norms 1) and the real Qwen
/// tokenizer, unless it is there already (marker file written last).
fs::path random_model(const std::string& name) {
    struct Shape {
        index_t layers, hidden, heads, kv, inter;
    };
    Shape s{};
    if (name == "qwen2-tiny") s = {2, 64, 4, 2, 128};
    else if (name == "qwen2-0.5b") s = {24, 896, 14, 2, 4864};
    else bad_usage("unknown --config '" + name + "' (known: qwen2-tiny, qwen2-0.5b)");
    const index_t V = 151936, H = s.hidden, hd = H / s.heads;
    const fs::path dir = cache_root() / "models" / ("random-" + name);
    if (fs::exists(dir / ".complete")) return dir;
    (void)moe_examples::qwen_tokenizer();  // before writing anything: missing -> NotFoundError
    return moe_examples::make_once(dir, [&](const fs::path& tmp) {
        std::cerr << "generate: writing a random-weight " << name << " to " << dir.string() << " (once)\n";
        moe_examples::copy_qwen_tokenizer(tmp);
        std::ofstream(tmp / "config.json") << "{\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\", "
                                           << "\"hidden_act\": \"silu\", \"hidden_size\": " << H
                                           << ", \"intermediate_size\": " << s.inter << ", \"num_hidden_layers\": " << s.layers
                                           << ", \"num_attention_heads\": " << s.heads << ", \"num_key_value_heads\": " << s.kv
                                           << ", \"vocab_size\": " << V << ", \"max_position_embeddings\": 32768, "
                                           << "\"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, \"tie_word_embeddings\": true, "
                                           << "\"bos_token_id\": 151643, \"eos_token_id\": 151645, \"torch_dtype\": \"bfloat16\", "
                                           << "\"use_sliding_window\": false}\n";
        moe::io::SafetensorsWriter w;
        std::mt19937_64 rng(16);
        auto add = [&](const std::string& n, std::vector<index_t> shape, bool ones = false) {
            moe::Tensor t(moe::DType::bf16, moe::Shape(shape.begin(), shape.end()));
            std::normal_distribution<float> d(0.0f, 0.02f);
            auto* p = t.data<moe::bf16>();
            for (index_t i = 0; i < t.numel(); ++i) p[i] = moe::bf16(ones ? 1.0f : d(rng));
            w.add(n, t.view());
        };
        add("model.embed_tokens.weight", {V, H});
        add("model.norm.weight", {H}, true);
        for (index_t l = 0; l < s.layers; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            add(p + "input_layernorm.weight", {H}, true);
            add(p + "post_attention_layernorm.weight", {H}, true);
            add(p + "self_attn.q_proj.weight", {s.heads * hd, H});
            add(p + "self_attn.q_proj.bias", {s.heads * hd});
            add(p + "self_attn.k_proj.weight", {s.kv * hd, H});
            add(p + "self_attn.k_proj.bias", {s.kv * hd});
            add(p + "self_attn.v_proj.weight", {s.kv * hd, H});
            add(p + "self_attn.v_proj.bias", {s.kv * hd});
            add(p + "self_attn.o_proj.weight", {H, s.heads * hd});
            add(p + "mlp.gate_proj.weight", {s.inter, H});
            add(p + "mlp.up_proj.weight", {s.inter, H});
            add(p + "mlp.down_proj.weight", {H, s.inter});
        }
        w.write(tmp / "model.safetensors");
    });
}

std::vector<std::int32_t> parse_ids(const std::string& s) {
    std::vector<std::int32_t> out;
    std::size_t at = 0;
    while (at <= s.size()) {
        const std::size_t comma = std::min(s.find(',', at), s.size());
        const std::string one = s.substr(at, comma - at);
        const double v = number("--ids", one);
        if (v < 0 || v > 2147483647.0 || v != static_cast<double>(static_cast<std::int64_t>(v)))
            bad_usage("--ids: '" + one + "' is not a token id");
        out.push_back(static_cast<std::int32_t>(v));
        at = comma + 1;
    }
    return out;
}

template <moe::WeightPolicy W, class KV>
int run(const Args& a, const fs::path& dir, bool random) {
    std::optional<moe::lm::Tokenizer> tok;
    if (fs::exists(dir / "tokenizer.json")) tok = moe::lm::Tokenizer::from_file(dir / "tokenizer.json");
    std::vector<std::int32_t> prompt;
    if (a.ids) {
        prompt = parse_ids(*a.ids);
    } else {
        if (!tok) throw moe::NotFoundError((dir / "tokenizer.json").string(), "no tokenizer.json: give --ids instead");
        std::string text = *a.prompt;
        if (a.chat) {
            const moe::lm::ChatMessage m{"user", text};
            text = moe::lm::apply_chat_template("chatml", std::span(&m, 1));
        }
        prompt = tok->encode(text);
    }
    if (prompt.empty()) bad_usage("the prompt has no tokens");
    auto any = moe::lm::open_decoder<W>(dir);
    return std::visit([&](auto& model) -> int {
        if (a.threads > 0) model.set_exec(moe::Exec(a.threads));
        const index_t ctx = a.ctx > 0 ? a.ctx : static_cast<index_t>(prompt.size()) + a.n + 1;
        moe::lm::GenerationOptions go;
        go.max_new_tokens = a.n;
        go.sampling = a.sampling;
        go.stop_strings = a.stops;
        go.use_default_stops = !a.ignore_eos;
        go.stop_ids = a.stop_ids;
        go.min_new_tokens = a.min_new;
        go.beams = a.beams;
        if (model.config().ffn == moe::lm::FfnKind::gmoe) go.experts = {a.granularity};
        auto cache = model.template make_cache<KV>(moe::lm::cache_slots_for(1, go), ctx);
        if (random && !a.json)
            std::cout << "[the weights of this model are random: the text is noise; give --model DIR for a real one]\n";
        const moe::lm::TokenCallback stream = [&](index_t, std::int32_t, std::string_view piece) {
            if (!a.json) {
                std::cout << piece;
                std::cout.flush();
            }
            return true;
        };
        const bool beams = a.beams.enabled();
        const auto res = moe::lm::generate(model, cache, prompt, go, tok ? &*tok : nullptr,
                                           beams ? moe::lm::TokenCallback{} : stream);
        const auto& g = res.sequences[0];
        if (beams && !a.json) std::cout << g.text;
        if (a.json) {
            std::string out = "{\"prompt_ids\": [";
            for (std::size_t i = 0; i < prompt.size(); ++i) out += (i ? "," : "") + std::to_string(prompt[i]);
            out += "], \"ids\": [";
            for (std::size_t i = 0; i < g.ids.size(); ++i) out += (i ? "," : "") + std::to_string(g.ids[i]);
            out += "], \"text\": ";
            moe::io::json::append_string(out, moe::lm::unicode::replace_invalid_utf8(g.text));
            out += ", \"stop\": \"" + std::string(moe::lm::stop_reason_name(g.stop)) + "\"";
            if (beams) {
                char score[32];
                std::snprintf(score, sizeof score, "%.9g", g.score);
                out += ", \"beams\": " + std::to_string(a.beams.num_beams) + ", \"score\": " + score;
            }
            out += ", \"random_weights\": " + std::string(random ? "true" : "false");
            out += ", \"prefill_tokens\": " + std::to_string(res.prefill_tokens);
            out += ", \"prefill_seconds\": " + std::to_string(res.prefill_seconds);
            out += ", \"prefill_tokens_per_second\": " + std::to_string(res.prefill_tokens_per_second());
            out += ", \"decode_tokens\": " + std::to_string(res.decode_tokens);
            out += ", \"decode_seconds\": " + std::to_string(res.decode_seconds);
            out += ", \"decode_tokens_per_second\": " + std::to_string(res.decode_tokens_per_second());
            out += ", \"threads\": " + std::to_string(model.exec().threads()) + "}\n";
            std::cout << out;
        } else {
            std::cout << std::endl;  // flushed before the timings on stderr
            std::fprintf(stderr, "prefill: %lld tokens in %.3f s (%.1f tokens/s); decode: %lld tokens in %.3f s (%.1f tokens/s); "
                                 "stop: %s; %d threads\n",
                         static_cast<long long>(res.prefill_tokens), res.prefill_seconds, res.prefill_tokens_per_second(),
                         static_cast<long long>(res.decode_tokens), res.decode_seconds, res.decode_tokens_per_second(),
                         moe::lm::stop_reason_name(g.stop), model.exec().threads());
        }
        return 0;
    }, any);
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string a_ = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) bad_usage(a_ + " needs a value");
            return argv[++i];
        };
        if (a_ == "--model") a.model = value();
        else if (a_ == "--config") a.config = value();
        else if (a_ == "--prompt") a.prompt = value();
        else if (a_ == "--ids") a.ids = value();
        else if (a_ == "--chat") a.chat = true;
        else if (a_ == "-n") a.n = static_cast<index_t>(number(a_, value()));
        else if (a_ == "--temp") a.sampling.temperature = static_cast<float>(number(a_, value())), a.temp_given = true;
        else if (a_ == "--min-new-tokens") a.min_new = static_cast<index_t>(number(a_, value()));
        else if (a_ == "--beams") a.beams.num_beams = static_cast<index_t>(number(a_, value()));
        else if (a_ == "--length-penalty") a.beams.length_penalty = static_cast<float>(number(a_, value()));
        else if (a_ == "--early-stopping") {
            const std::string e = value();
            if (e == "heuristic") a.beams.early_stopping = moe::lm::EarlyStopping::heuristic;
            else if (e == "first") a.beams.early_stopping = moe::lm::EarlyStopping::first_complete;
            else if (e == "never") a.beams.early_stopping = moe::lm::EarlyStopping::never;
            else bad_usage("--early-stopping must be heuristic, first or never, not '" + e + "'");
        }
        else if (a_ == "--top-k") a.sampling.top_k = static_cast<index_t>(number(a_, value()));
        else if (a_ == "--top-p") a.sampling.top_p = static_cast<float>(number(a_, value()));
        else if (a_ == "--min-p") a.sampling.min_p = static_cast<float>(number(a_, value()));
        else if (a_ == "--repeat-penalty") a.sampling.repetition_penalty = static_cast<float>(number(a_, value()));
        else if (a_ == "--seed") a.sampling.seed = static_cast<std::uint64_t>(number(a_, value()));
        else if (a_ == "--stop") a.stops.push_back(value());
        else if (a_ == "--ignore-eos") a.ignore_eos = true;
        else if (a_ == "--stop-id") {
            const double v = number(a_, value());
            if (v < 0 || v != static_cast<double>(static_cast<std::int32_t>(v))) bad_usage("--stop-id: not a token id");
            a.stop_ids.push_back(static_cast<std::int32_t>(v));
        }
        else if (a_ == "--granularity") a.granularity = static_cast<int>(number(a_, value()));
        else if (a_ == "--threads") a.threads = static_cast<int>(number(a_, value()));
        else if (a_ == "--weights") a.weights = value();
        else if (a_ == "--kv") a.kv = value();
        else if (a_ == "--ctx") a.ctx = static_cast<index_t>(number(a_, value()));
        else if (a_ == "--json") a.json = true;
        else if (a_ == "--help" || a_ == "-h") {
            std::cout << kUsage;
            return 0;
        } else {
            bad_usage("unknown option '" + a_ + "'");
        }
    }
    if (!a.prompt && !a.ids) bad_usage("give --prompt TEXT or --ids I,J,...");
    if (a.prompt && a.ids) bad_usage("give --prompt or --ids, not both");
    if (a.n < 0) bad_usage("-n must be >= 0");
    if (a.threads < 0) bad_usage("--threads must be >= 1");
    if (a.weights != "bf16" && a.weights != "bf16-dot" && a.weights != "f32" && a.weights != "int8")
        bad_usage("--weights must be bf16, bf16-dot, f32 or int8");
    if (a.kv != "bf16" && a.kv != "f32") bad_usage("--kv must be bf16 or f32");
    if (a.min_new < 0) bad_usage("--min-new-tokens must be >= 0");
    if (a.beams.enabled()) {
        if (a.temp_given && a.sampling.temperature != 0.0f)
            bad_usage("--beams: beam search is deterministic; --temp must be 0 (or left out)");
        if (!a.stops.empty()) bad_usage("--beams: --stop is not supported with beam search");
        a.sampling.temperature = 0.0f;
    }
    try {
        a.sampling.validate();
        a.beams.validate();
    } catch (const std::exception& e) {
        bad_usage(e.what());
    }
    try {
        const bool random = !a.model;
        const fs::path dir = random ? random_model(a.config) : *a.model;
        if (a.weights == "bf16-dot")
            return a.kv == "bf16" ? run<moe::bf16_dot, moe::bf16>(a, dir, random) : run<moe::bf16_dot, float>(a, dir, random);
        if (a.weights == "bf16")
            return a.kv == "bf16" ? run<moe::bf16, moe::bf16>(a, dir, random) : run<moe::bf16, float>(a, dir, random);
        if (a.weights == "int8")
            return a.kv == "bf16" ? run<moe::int8_dot_packed, moe::bf16>(a, dir, random)
                                  : run<moe::int8_dot_packed, float>(a, dir, random);
        return a.kv == "bf16" ? run<float, moe::bf16>(a, dir, random) : run<float, float>(a, dir, random);
    } catch (const std::exception& e) {
        std::cout.flush();
        std::cerr << "generate: " << e.what() << "\n";
        return 1;
    }
}
