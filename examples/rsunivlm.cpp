// rsunivlm - RSUniVLM on real imagery: a question about one or two images, the answer streamed,
// boxes drawn on a PNG, masks written as PNG and GeoTIFF (docs/rsunivlm.md).
//
//   rsunivlm --model DIR --image a.tif --prompt "[VG] Where is the windmill?"
//   rsunivlm --image a.tif --image b.tif --prompt "[CCD] What changed?"     (random tiny model)
//   rsunivlm --config full --image a.jpg --prompt "[SEG] water." --out mask.tif
//   rsunivlm --image a.tif --prompt "[VG] Where is it?" --answer "[10, 20, 40, 60]"  (parse only)
#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
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
#include "rs/draw.hpp"
#include "rs/jpeg.hpp"
#include "rs/png.hpp"
#include "rs/rsunivlm.hpp"
#include "rs/tiff.hpp"
#include "rs/tiff_write.hpp"
#include "vision/preprocess.hpp"

namespace fs = std::filesystem;
namespace rv = moe::rs::rsunivlm;
using moe::index_t;

namespace {

constexpr std::string_view kUsage = R"(usage: rsunivlm [--model DIR | --config tiny|full] --image PATH [--image PATH] --prompt TEXT [options]
  --model DIR      an RSUniVLM folder: config.json (LlavaQwenGMoeForCausalLM), model.safetensors (or
                   shards + model.safetensors.index.json) with the released names, tokenizer.json
  --config NAME    without --model: a random-weight RSUniVLM with the real Qwen vocabulary, written
                   once to ${MOE_CACHE_DIR:-~/.cache/moe}/models/: tiny (default; SigLIP 28 px, Qwen2
                   hidden 64) or full (the released sizes: 1,657,325,600 parameters, 3.3 GB of bf16)
  --image PATH     an image: RGB JPEG or TIFF (8-bit), or a 13-band Sentinel-2 TIFF (EuroSAT order;
                   shown in true colour, B04/B03/B02 stretched 2-98 %); once or twice ("<image>
                   <image>" as the demo writes two images)
  --prompt TEXT    the question with its task tag: [CAP] [VQA] [CLS] [CCD] (image expert), [VG]
                   [REF] (region expert: boxes), [SEG] (pixel expert: a mask)
  --answer TEXT    do not run the model: parse TEXT as its answer (boxes, masks, files as usual)
  -n N             new tokens at most (default 256)
  --temp T         temperature; 0 = greedy, as the demo (default 0)
  --seed S         sampling seed (default 0)
  --threads N      threads (default: all)
  --weights W      bf16 (default; fp32 arithmetic on the exact bf16 values, PyTorch's fp32 numerics),
                   bf16-dot (bf16 arithmetic as PyTorch's bf16 matmuls: vdpbf16ps where the CPU has
                   it; ~1.7x faster to the first token) or f32
  --out PATH       output prefix (default "rsunivlm"): PATH_boxes.png, PATH_mask.tif (GeoTIFF, class
                   per pixel, the first image's georeferencing), PATH_mask.png, PATH_overlay.png;
                   a PATH ending in .tif or .png is used without its extension
  --json           print one JSON object (prompt ids, generated ids, answer, expert, boxes, mask
                   classes, files, timings) instead of the text
  --help           this text
Streams the answer to stdout, then the expert, the parsed boxes or mask and the timings.
Exit status: 0, 1 on a model or input error (the message says what and where), 2 for bad arguments.
)";

[[noreturn]] void bad_usage(const std::string& what) { moe_examples::bad_usage("rsunivlm", what); }

double number(const std::string& opt, const std::string& v) { return moe_examples::number("rsunivlm", opt, v); }

struct Args {
    std::optional<fs::path> model;
    std::string config = "tiny";
    std::vector<fs::path> images;
    std::optional<std::string> prompt, answer;
    index_t n = 256;
    float temp = 0.0f;
    std::uint64_t seed = 0;
    int threads = 0;
    std::string weights = "bf16";
    std::string out = "rsunivlm";
    bool json = false;
};

using moe_examples::cache_root;

/// The random-weight folder of --config NAME, written once (moe_examples::make_once).
fs::path random_model(const std::string& name) {
    const rv::RsUniVlmConfig cfg = name == "full" ? rv::RsUniVlmConfig::full() : rv::RsUniVlmConfig::tiny();
    const fs::path dir = cache_root() / "models" / ("random-rsunivlm-" + name);
    if (fs::exists(dir / ".complete")) return dir;
    (void)moe_examples::qwen_tokenizer();  // before writing anything: missing -> NotFoundError
    return moe_examples::make_once(dir, [&](const fs::path& tmp) {
        std::cerr << "rsunivlm: writing a random-weight RSUniVLM (" << name << ", "
                  << rv::rsunivlm_parameter_count(cfg) << " parameters) to " << dir.string() << " (once)\n";
        rv::write_random_model(tmp, cfg, {.seed = 17, .dtype = moe::DType::bf16});
        moe_examples::copy_qwen_tokenizer(tmp);
    });
}

using moe_examples::Input;
using moe_examples::read_input;

/// SigLIP's pixels of an input (PIL bicubic resize of its 8-bit RGB view, as the demo feeds PIL images).
moe::Tensor pixels_of(const Input& in, index_t size) {
    return moe::vision::siglip_pixels(moe_examples::planar_rgb(in), in.rgb.height, in.rgb.width, size);
}

using moe_examples::peak_rss_mib;

std::string out_stem(const std::string& out) {
    const fs::path p(out);
    const std::string ext = p.extension().string();
    if (ext == ".tif" || ext == ".tiff" || ext == ".png") return (p.parent_path() / p.stem()).string();
    return out;
}

const char* expert_name(int g) { return g == 2 ? "pixel" : (g == 1 ? "region" : "image"); }
const char* task_name(rv::Task t) {
    switch (t) {
        case rv::Task::none: return "none";
        case rv::Task::text: return "text";
        case rv::Task::boxes_in_answer: return "boxes";
        case rv::Task::boxes_in_question: return "boxes in the question";
        case rv::Task::mask: return "mask";
    }
    return "?";
}

template <moe::WeightPolicy W>
int run(const Args& a, const fs::path& dir, bool random) {
    std::vector<Input> inputs;
    for (const fs::path& p : a.images) inputs.push_back(read_input(p));
    const auto tok = moe::lm::Tokenizer::from_file(dir / "tokenizer.json");
    const rv::RsUniVlmConfig cfg = rv::RsUniVlmConfig::from_file(dir / "config.json");
    std::vector<moe::Tensor> pixels;
    for (const Input& in : inputs) pixels.push_back(pixels_of(in, cfg.image_size()));
    rv::Request req = rv::make_request(tok, *a.prompt, std::move(pixels));
    const std::vector<std::int32_t> prompt_ids = req.ids;
    const rv::Task task = rv::task_of(*a.prompt);

    if (random && !a.json)
        std::cout << "[the weights of this model are random: the answer is noise; give --model DIR for a real one]\n";
    std::string answer;
    std::vector<std::int32_t> ids;
    moe::lm::GenerationResult res;
    index_t parameters = 0;
    int threads = 0;
    if (a.answer) {
        answer = *a.answer;
        if (!a.json) std::cout << answer;
    } else {
        auto model = rv::load_rsunivlm<W>(cfg, moe::io::open_weights(dir));
        if (a.threads > 0) model.set_exec(moe::Exec(a.threads));
        threads = model.language_model().exec().threads();
        parameters = model.parameters();
        auto cache = model.make_cache(1, model.rows(req) + a.n + 1);
        moe::lm::GenerationOptions go;
        go.max_new_tokens = a.n;
        go.sampling.temperature = a.temp;
        go.sampling.seed = a.seed;
        const moe::lm::TokenCallback stream = [&](index_t, std::int32_t, std::string_view piece) {
            if (!a.json) {
                std::cout << piece;
                std::cout.flush();
            }
            return true;
        };
        std::vector<rv::Request> reqs;
        reqs.push_back(std::move(req));
        res = model.generate(reqs, cache, go, &tok, stream);
        answer = res.sequences[0].text;
        ids = res.sequences[0].ids;
    }
    if (!a.json) std::cout << std::endl;

    // The answer's boxes or mask, drawn / written as the demo shows them.
    const std::string stem = out_stem(a.out);
    std::vector<std::string> files;
    const Input& first = inputs.front();
    const int W0 = static_cast<int>(first.rgb.width), H0 = static_cast<int>(first.rgb.height);
    rv::BoxParse boxes;
    std::optional<rv::MaskParse> mask;
    std::vector<std::string> classes_found;
    index_t foreground = 0;
    if (task == rv::Task::boxes_in_answer || task == rv::Task::boxes_in_question) {
        boxes = rv::parse_boxes(task == rv::Task::boxes_in_answer ? answer : *a.prompt);
        moe::rs::Canvas c = first.rgb;
        static const moe::rs::Rgb colours[] = {{255, 0, 0}, {0, 0, 255}, {0, 255, 0}, {0, 255, 255}, {255, 255, 0}, {255, 0, 255}};
        for (std::size_t i = 0; i < boxes.boxes.size(); ++i) {
            const rv::PixelBox p = rv::clamp(rv::to_pixels(boxes.boxes[i], W0, H0), W0, H0);
            moe::rs::draw_rectangle(c, p.x1, p.y1, p.x2, p.y2, colours[i % 6], 2);
        }
        const std::string f = stem + "_boxes.png";
        moe::rs::write_png(f, moe::rs::PngView::rgb(c.width, c.height, c.rgb));
        files.push_back(f);
    } else if (task == rv::Task::mask) {
        mask = rv::parse_mask(answer);
        const std::vector<std::uint16_t> up = rv::upsample_mask(*mask, W0, H0);
        std::vector<std::uint8_t> labels(up.size());
        for (std::size_t i = 0; i < up.size(); ++i) {
            labels[i] = static_cast<std::uint8_t>(std::min<std::uint16_t>(up[i], 255));
            foreground += up[i] != 0;
        }
        const auto palette = moe::rs::class_palette(static_cast<int>(std::min<std::size_t>(mask->classes.size(), 256)));
        const auto pal = moe::rs::palette_bytes(palette);
        moe::rs::write_mask_geotiff(stem + "_mask.tif", labels, W0, H0, first.image);
        moe::rs::write_png(stem + "_mask.png", moe::rs::PngView::indexed(W0, H0, labels, pal));
        moe::rs::Canvas c = first.rgb;
        moe::rs::overlay_mask(c, rv::foreground(up), {255, 0, 0}, 0.5f);
        moe::rs::write_png(stem + "_overlay.png", moe::rs::PngView::rgb(c.width, c.height, c.rgb));
        files = {stem + "_mask.tif", stem + "_mask.png", stem + "_overlay.png"};
    }

    const double ttft = res.prefill_seconds;
    if (a.json) {
        using moe::io::json::append_string;
        std::string o = "{\"prompt_ids\": [";
        for (std::size_t i = 0; i < prompt_ids.size(); ++i) o.append(i ? "," : "").append(std::to_string(prompt_ids[i]));
        o += "], \"ids\": [";
        for (std::size_t i = 0; i < ids.size(); ++i) o.append(i ? "," : "").append(std::to_string(ids[i]));
        o += "], \"answer\": ";
        append_string(o, moe::lm::unicode::replace_invalid_utf8(answer));
        o.append(", \"expert\": ").append(std::to_string(rv::granularity_of(*a.prompt)));
        o.append(", \"task\": \"").append(task_name(task)).append("\", \"images\": [");
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            o.append(i ? ", " : "").append("{\"path\": ");
            append_string(o, inputs[i].path.string());
            o.append(", \"width\": ").append(std::to_string(inputs[i].rgb.width));
            o.append(", \"height\": ").append(std::to_string(inputs[i].rgb.height)).append(", \"read_as\": ");
            append_string(o, inputs[i].how);
            o += "}";
        }
        o += "], \"boxes\": [";
        for (std::size_t i = 0; i < boxes.boxes.size(); ++i) {
            const rv::Box& b = boxes.boxes[i];
            const rv::PixelBox p = rv::to_pixels(b, W0, H0);
            o.append(i ? ", " : "").append(moe::detail::cat("{\"percent\": [", b.x1, ", ", b.y1, ", ", b.x2, ", ", b.y2,
                                                            "], \"pixels\": [", p.x1, ", ", p.y1, ", ", p.x2, ", ", p.y2, "]}"));
        }
        o += "], \"problems\": [";
        const auto& problems = mask ? mask->problems : boxes.problems;
        for (std::size_t i = 0; i < problems.size(); ++i) {
            o += i ? ", " : "";
            append_string(o, problems[i]);
        }
        o += "]";
        if (mask) {
            o.append(moe::detail::cat(", \"mask\": {\"rows\": ", mask->rows, ", \"cols\": ", mask->cols,
                                      ", \"demo_accepts\": ", mask->demo_accepts ? "true" : "false",
                                      ", \"foreground_pixels\": ", foreground, ", \"classes\": ["));
            for (std::size_t i = 0; i < mask->classes.size(); ++i) {
                o += i ? ", " : "";
                append_string(o, mask->classes[i]);
            }
            o += "]}";
        }
        o += ", \"files\": [";
        for (std::size_t i = 0; i < files.size(); ++i) {
            o += i ? ", " : "";
            append_string(o, files[i]);
        }
        o.append(moe::detail::cat("], \"random_weights\": ", random ? "true" : "false", ", \"parameters\": ", parameters,
                                  ", \"prefill_tokens\": ", res.prefill_tokens, ", \"time_to_first_token_seconds\": ", ttft,
                                  ", \"prefill_tokens_per_second\": ", res.prefill_tokens_per_second(),
                                  ", \"decode_tokens\": ", res.decode_tokens, ", \"decode_seconds\": ", res.decode_seconds,
                                  ", \"decode_tokens_per_second\": ", res.decode_tokens_per_second(),
                                  ", \"threads\": ", threads, ", \"peak_rss_mib\": ", peak_rss_mib(), "}\n"));
        std::cout << o;
        return 0;
    }
    std::printf("expert: %d (%s-level), task: %s\n", rv::granularity_of(*a.prompt),
                expert_name(rv::granularity_of(*a.prompt)), task_name(task));
    for (const Input& in : inputs)
        std::printf("image: %s (%lld x %lld, %s)\n", in.path.string().c_str(), static_cast<long long>(in.rgb.width),
                    static_cast<long long>(in.rgb.height), in.how.c_str());
    for (const rv::Box& b : boxes.boxes) {
        const rv::PixelBox p = rv::to_pixels(b, W0, H0);
        std::printf("box: [%g, %g, %g, %g] %% -> pixels (%d, %d)-(%d, %d)\n", b.x1, b.y1, b.x2, b.y2, p.x1, p.y1, p.x2, p.y2);
    }
    if (mask) {
        std::printf("mask: %d x %d grid, classes:", mask->rows, mask->cols);
        for (const auto& c : mask->classes) std::printf(" '%s'", c.c_str());
        std::printf(", %lld foreground pixels%s\n", static_cast<long long>(foreground),
                    mask->demo_accepts ? "" : " (the demo would not have drawn this answer)");
    }
    const auto& problems = mask ? mask->problems : boxes.problems;
    for (const auto& p : problems) std::printf("note: %s\n", p.c_str());
    for (const auto& f : files) std::printf("wrote %s\n", f.c_str());
    std::fflush(stdout);
    if (!a.answer)
        std::fprintf(stderr,
                     "time to first token: %.3f s (vision + prefill of %lld rows, %.1f rows/s); decode: %lld tokens in %.3f s "
                     "(%.1f tokens/s); %d threads; peak resident memory %.0f MiB\n",
                     ttft, static_cast<long long>(res.prefill_tokens), res.prefill_tokens_per_second(),
                     static_cast<long long>(res.decode_tokens), res.decode_seconds, res.decode_tokens_per_second(), threads,
                     peak_rss_mib());
    return 0;
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
        else if (o == "--image") a.images.emplace_back(value());
        else if (o == "--prompt") a.prompt = value();
        else if (o == "--answer") a.answer = value();
        else if (o == "-n") a.n = static_cast<index_t>(number(o, value()));
        else if (o == "--temp") a.temp = static_cast<float>(number(o, value()));
        else if (o == "--seed") a.seed = static_cast<std::uint64_t>(number(o, value()));
        else if (o == "--threads") a.threads = static_cast<int>(number(o, value()));
        else if (o == "--weights") a.weights = value();
        else if (o == "--out") a.out = value();
        else if (o == "--json") a.json = true;
        else if (o == "--help" || o == "-h") {
            std::cout << kUsage;
            return 0;
        } else {
            bad_usage("unknown option '" + o + "'");
        }
    }
    if (!a.prompt) bad_usage("give --prompt TEXT");
    if (a.images.empty()) bad_usage("give --image PATH (once or twice)");
    if (a.images.size() > 2) bad_usage("at most two images (--image given " + std::to_string(a.images.size()) + " times)");
    for (const auto& p : a.images)
        if (!fs::is_regular_file(p)) bad_usage("--image '" + p.string() + "': no such file");
    if (a.config != "tiny" && a.config != "full") bad_usage("unknown --config '" + a.config + "' (known: tiny, full)");
    if (a.n < 0) bad_usage("-n must be >= 0");
    if (a.threads < 0) bad_usage("--threads must be >= 1");
    if (!(a.temp >= 0)) bad_usage("--temp must be >= 0");
    if (a.weights != "bf16" && a.weights != "bf16-dot" && a.weights != "f32")
        bad_usage("--weights must be bf16, bf16-dot or f32");
    if (a.out.empty()) bad_usage("--out needs a path");
    try {
        const bool random = !a.model;
        const fs::path dir = random ? random_model(a.config) : *a.model;
        if (a.weights == "bf16-dot") return run<moe::bf16_dot>(a, dir, random);
        return a.weights == "bf16" ? run<moe::bf16>(a, dir, random) : run<float>(a, dir, random);
    } catch (const std::exception& e) {
        std::cout.flush();
        std::cerr << "rsunivlm: " << e.what() << "\n";
        return 1;
    }
}
