// rsmoe - RS-MoE on real imagery: a caption (or an answer) from several expert LLMs, each
// writing about one aspect of the image, joined into one text (docs/rsmoe.md).
//
//   rsmoe --model DIR --image a.tif                          the default caption instruction
//   rsmoe --image a.tif --question "Is there a river?"      (random tiny model, real vocabularies)
//   rsmoe --config 1b --image a.jpg --experts 2 --threads 2  full-size encoder, three ~1B LoRA experts
#include <sys/resource.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli.hpp"
#include "image_input.hpp"
#include "lm/tokenizer.hpp"
#include "model_cache.hpp"
#include "moe/io/json.hpp"
#include "rs/rsmoe.hpp"
#include "rs/rsmoe/random.hpp"
#include "vision/preprocess.hpp"

namespace fs = std::filesystem;
namespace rm = moe::rs::rsmoe;
using moe::index_t;

namespace {

constexpr std::string_view kUsage = R"(usage: rsmoe [--model DIR | --config tiny|1b] --image PATH [options]
  --model DIR       an RS-MoE folder (docs/rsmoe.md): rsmoe.json, model.safetensors with LAVIS's
                    names (visual_encoder.*, ln_vision.*, Qformer.bert.*, query_tokens, llm_proj.*),
                    the base LLM and one PEFT adapter per expert (or one LLM folder per expert),
                    bert/tokenizer.json
  --config NAME     without --model: a random-weight RS-MoE with the real vocabularies, written once to
                    ${MOE_CACHE_DIR:-~/.cache/moe}/models/: tiny (default; 224 px input, every part
                    64 wide; LLaMA-2's vocabulary) or 1b (EVA ViT-g/14, the bert-base Q-Former and
                    three LoRA experts over a LLaMA-3.2-1B-shaped base; about 4.8 GB of bf16)
  --image PATH      an RGB JPEG or TIFF (8-bit), or a 13-band Sentinel-2 TIFF (true colour)
  --question TEXT   a question (VQA) instead of the caption instruction
  --instruction TEXT  the global instruction as is (default: the released evaluation instruction
                    "Take a look at this image and describe what you notice.")
  --experts N       run the first N experts only (default: all)
  -n N              new tokens per expert (default 48)
  --temp T          temperature; 0 = greedy (default 0)
  --penalty P       repetition penalty over the generated tokens (default 1.5, LAVIS's)
  --seed S          sampling seed (default 0)
  --beams N         beam search with N beams per expert (LAVIS: 5, with --min-new-tokens 1;
                    default 1: greedy or sampling)
  --min-new-tokens N  the end-of-sequence token is banned before N new tokens (default 0)
  --threads N       threads (default: all)
  --weights W       bf16 (default; fp32 arithmetic on the exact bf16 values), bf16-dot (bf16
                    products where the CPU has them) or f32
  --json            print one JSON object (each expert's prompt, Q-Former and LLM ids, generated ids
                    and text, the answer, timings) instead of the text
  --help            this text
Prints each expert's prompt and sub-caption, the aggregated answer and the time of every stage.
Exit status: 0, 1 on a model or input error (the message says what and where), 2 for bad arguments.
)";

[[noreturn]] void bad_usage(const std::string& what) { moe_examples::bad_usage("rsmoe", what); }

double number(const std::string& opt, const std::string& v) { return moe_examples::number("rsmoe", opt, v); }

struct Args {
    std::optional<fs::path> model;
    std::string config = "tiny";
    std::optional<fs::path> image;
    std::optional<std::string> question, instruction;
    index_t experts = 0, n = 48;
    float temp = 0.0f, penalty = 1.5f;
    index_t beams = 1, min_new = 0;
    std::uint64_t seed = 0;
    int threads = 0;
    std::string weights = "bf16";
    bool json = false;
};

/// The random-weight folder of --config NAME, written once (moe_examples::make_once).
fs::path random_model(const std::string& name) {
    const rm::RandomRsMoe m = name == "1b" ? rm::RandomRsMoe::one_b() : rm::RandomRsMoe::tiny();
    const fs::path dir = moe_examples::cache_root() / "models" / ("random-rsmoe-" + name);
    if (fs::exists(dir / ".complete")) return dir;
    const fs::path bert = moe_examples::bert_tokenizer();  // before writing anything: missing -> NotFoundError
    const fs::path llm = name == "1b" ? moe_examples::llama3_tokenizer() : moe_examples::llama2_tokenizer();
    return moe_examples::make_once(dir, [&](const fs::path& tmp) {
        std::cerr << "rsmoe: writing a random-weight RS-MoE (" << name << ") to " << dir.string() << " (once)\n";
        rm::write_random_model(tmp, m, {.seed = 23, .dtype = moe::DType::bf16});
        moe_examples::copy_tokenizer(bert, tmp / "bert");
        moe_examples::copy_tokenizer(llm, tmp / m.config.base);
    });
}

using moe_examples::peak_rss_mib;

std::string ids_json(const std::vector<std::int32_t>& ids) {
    std::string o = "[";
    for (std::size_t i = 0; i < ids.size(); ++i) o.append(i ? "," : "").append(std::to_string(ids[i]));
    return o + "]";
}

template <moe::WeightPolicy W, class Router, class Experts>
int run(const Args& a, const fs::path& dir, bool random, const moe_examples::Input& in) {
    auto model = rm::load_rsmoe<W, Router, Experts>(dir);
    if (!model.llm_tokenizer())
        throw moe::NotFoundError(dir.string(), "the folder has no tokenizers (bert/tokenizer.json and the LLM's "
                                               "tokenizer.json)");
    if (a.threads > 0) model.set_exec(moe::Exec(a.threads));
    const std::string instruction = a.instruction ? *a.instruction
                                    : a.question  ? rm::vqa_instruction(*a.question)
                                                  : model.config().instruction;
    // the ids each expert's prompt became (for --json), recorded as the model asks for them
    rm::CaptionOptions opt;
    opt.experts = a.experts;
    opt.generation.max_new_tokens = a.n;
    opt.generation.sampling.temperature = a.temp;
    opt.generation.sampling.repetition_penalty = a.penalty;
    opt.generation.sampling.seed = a.seed;
    opt.generation.beams.num_beams = a.beams;
    opt.generation.min_new_tokens = a.min_new;
    const moe::Tensor pixels = moe::vision::blip_pixels(moe_examples::planar_rgb(in), in.rgb.height, in.rgb.width,
                                                        model.encoder().image_size());
    const rm::Caption cap = model.caption(pixels.view(), instruction, opt);
    const auto& cfg = model.config();

    if (a.json) {
        using moe::io::json::append_string;
        std::string o = "{\"instruction\": ";
        append_string(o, instruction);
        o += ", \"image\": {\"path\": ";
        append_string(o, in.path.string());
        o += moe::detail::cat(", \"width\": ", in.rgb.width, ", \"height\": ", in.rgb.height, ", \"read_as\": ");
        append_string(o, in.how);
        o += "}, \"router\": ";
        append_string(o, cfg.router == rm::RouterKind::text ? "text" : "soft");
        o += ", \"experts_kind\": ";
        append_string(o, cfg.expert_kind == rm::ExpertKind::lora ? "lora" : "llm");
        o += ", \"experts\": [";
        for (std::size_t i = 0; i < cap.experts.size(); ++i) {
            const rm::ExpertCaption& e = cap.experts[i];
            o += i ? ", {\"name\": " : "{\"name\": ";
            append_string(o, e.name);
            o += ", \"prompt\": ";
            append_string(o, e.instruction);
            o += moe::detail::cat(", \"weight\": ", e.weight, ", \"prompt_rows\": ", e.prompt_rows,
                                  ", \"qformer_ids\": ", ids_json(e.qformer_ids), ", \"llm_ids\": ",
                                  ids_json(e.llm_ids), ", \"ids\": ", ids_json(e.ids), ", \"stop\": \"",
                                  moe::lm::stop_reason_name(e.stop), "\", \"text\": ");
            append_string(o, moe::lm::unicode::replace_invalid_utf8(e.text));
            o += "}";
        }
        o += "], \"aggregator\": ";
        append_string(o, cfg.aggregator);
        o += ", \"answer\": ";
        append_string(o, moe::lm::unicode::replace_invalid_utf8(cap.answer));
        o += moe::detail::cat(", \"fusion_ids\": ", ids_json(cap.fusion_ids), ", \"random_weights\": ",
                              random ? "true" : "false", ", \"parameters\": ", model.parameters(),
                              ", \"seconds\": {\"vision\": ", cap.vision_seconds, ", \"qformer\": ", cap.qformer_seconds,
                              ", \"prefill\": ", cap.prefill_seconds, ", \"decode\": ", cap.decode_seconds,
                              ", \"aggregate\": ", cap.aggregate_seconds, "}, \"decode_tokens\": ", cap.decode_tokens,
                              ", \"peak_rss_mib\": ", peak_rss_mib(), "}\n");
        std::cout << o;
        return 0;
    }
    if (random)
        std::cout << "[the weights of this model are random: the text is noise; give --model DIR for a real one]\n";
    std::printf("image: %s (%lld x %lld, %s)\ninstruction: %s\nrouter: %s, experts: %s\n", in.path.string().c_str(),
                static_cast<long long>(in.rgb.width), static_cast<long long>(in.rgb.height), in.how.c_str(),
                instruction.c_str(), cfg.router == rm::RouterKind::text ? "text sub-instructions" : "soft prompts",
                cfg.expert_kind == rm::ExpertKind::lora ? "LoRA adapters over one base (one batch)" : "separate LLMs");
    for (const rm::ExpertCaption& e : cap.experts)
        std::printf("\n[%s] weight %.3f, %lld input rows\n  prompt: %s\n  says:   %s\n", e.name.c_str(), e.weight,
                    static_cast<long long>(e.prompt_rows), e.instruction.c_str(), e.text.c_str());
    std::printf("\nanswer (%s): %s\n", cfg.aggregator.c_str(), cap.answer.c_str());
    std::fflush(stdout);
    std::fprintf(stderr,
                 "vision %.3f s, Q-Former + router %.3f s, experts' prefill %.3f s, decode %.3f s (%lld tokens, %.1f "
                 "tokens/s), aggregation %.3f s; peak resident memory %.0f MiB\n",
                 cap.vision_seconds, cap.qformer_seconds, cap.prefill_seconds, cap.decode_seconds,
                 static_cast<long long>(cap.decode_tokens),
                 cap.decode_seconds > 0 ? static_cast<double>(cap.decode_tokens) / cap.decode_seconds : 0.0,
                 cap.aggregate_seconds, peak_rss_mib());
    return 0;
}

template <moe::WeightPolicy W>
int dispatch(const Args& a, const fs::path& dir, bool random) {
    const rm::RsMoeConfig c = rm::RsMoeConfig::from_file(dir / "rsmoe.json");
    const moe_examples::Input in = moe_examples::read_input(*a.image);
    const bool text = c.router == rm::RouterKind::text, lora = c.expert_kind == rm::ExpertKind::lora;
    if (text && lora) return run<W, rm::TextRouter, rm::LoraExperts<W>>(a, dir, random, in);
    if (text) return run<W, rm::TextRouter, rm::SeparateLlms<W>>(a, dir, random, in);
    if (lora) return run<W, rm::SoftRouter, rm::LoraExperts<W>>(a, dir, random, in);
    return run<W, rm::SoftRouter, rm::SeparateLlms<W>>(a, dir, random, in);
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string o = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) bad_usage(o + " needs a value");
            return argv[++i];
        };
        if (o == "--model") a.model = value();
        else if (o == "--config") a.config = value();
        else if (o == "--image") {
            if (a.image) bad_usage("one --image only");
            a.image = value();
        } else if (o == "--question") a.question = value();
        else if (o == "--instruction") a.instruction = value();
        else if (o == "--experts") a.experts = static_cast<index_t>(number(o, value()));
        else if (o == "-n") a.n = static_cast<index_t>(number(o, value()));
        else if (o == "--temp") a.temp = static_cast<float>(number(o, value()));
        else if (o == "--penalty") a.penalty = static_cast<float>(number(o, value()));
        else if (o == "--seed") a.seed = static_cast<std::uint64_t>(number(o, value()));
        else if (o == "--beams") a.beams = static_cast<index_t>(number(o, value()));
        else if (o == "--min-new-tokens") a.min_new = static_cast<index_t>(number(o, value()));
        else if (o == "--threads") a.threads = static_cast<int>(number(o, value()));
        else if (o == "--weights") a.weights = value();
        else if (o == "--json") a.json = true;
        else if (o == "--help" || o == "-h") {
            std::cout << kUsage;
            return 0;
        } else {
            bad_usage("unknown option '" + o + "'");
        }
    }
    if (!a.image) bad_usage("give --image PATH");
    if (!fs::is_regular_file(*a.image)) bad_usage("--image '" + a.image->string() + "': no such file");
    if (a.question && a.instruction) bad_usage("give --question or --instruction, not both");
    if (a.config != "tiny" && a.config != "1b") bad_usage("unknown --config '" + a.config + "' (known: tiny, 1b)");
    if (a.experts < 0) bad_usage("--experts must be >= 1");
    if (a.n < 0) bad_usage("-n must be >= 0");
    if (a.threads < 0) bad_usage("--threads must be >= 1");
    if (!(a.temp >= 0)) bad_usage("--temp must be >= 0");
    if (!(a.penalty > 0)) bad_usage("--penalty must be > 0");
    if (a.beams < 1) bad_usage("--beams must be >= 1");
    if (a.beams > 1 && a.temp != 0.0f) bad_usage("--beams: beam search is deterministic; --temp must be 0");
    if (a.min_new < 0) bad_usage("--min-new-tokens must be >= 0");
    if (a.weights != "bf16" && a.weights != "bf16-dot" && a.weights != "f32")
        bad_usage("--weights must be bf16, bf16-dot or f32");
    try {
        const bool random = !a.model;
        const fs::path dir = random ? random_model(a.config) : *a.model;
        if (a.weights == "bf16-dot") return dispatch<moe::bf16_dot>(a, dir, random);
        return a.weights == "bf16" ? dispatch<moe::bf16>(a, dir, random) : dispatch<float>(a, dir, random);
    } catch (const std::exception& e) {
        std::cout.flush();
        std::cerr << "rsmoe: " << e.what() << "\n";
        return 1;
    }
}
