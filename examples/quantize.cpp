// quantize - int8 checkpoints from float ones (moe/io/quantize.hpp; the format: docs/scaling.md,
// "The int8 format"): a Hugging Face model folder (its decoder Linears) or any .safetensors file.
//
//   quantize ~/models/Qwen2-0.5B /tmp/qwen2-int8 && generate --model /tmp/qwen2-int8 --weights int8 ...
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cli.hpp"
#include "lm/decoder/load.hpp"
#include "moe/io/checkpoint.hpp"
#include "moe/io/quantize.hpp"

namespace fs = std::filesystem;

namespace {

constexpr const char* kHelp = R"(quantize - int8 checkpoints (W8A8 / weight-only; docs/scaling.md, "The int8 format")

usage: quantize SRC DST [options]

  SRC          a Hugging Face model folder (config.json + model.safetensors, or shards with
               model.safetensors.index.json), or a .safetensors file
  DST          for a folder: a new folder, with config.json and the tokenizer files copied and
               model.safetensors written; for a file: the file to write. Never SRC itself

Options
  --group N    inputs per scale: 0 (default: one scale per output channel) or a multiple of 32
               dividing every quantised matrix's inputs
  --rest T     the tensors not quantised: keep (default: as stored), f32, bf16 or f16
  --all        quantise every float matrix (or [E, out, in] stack) of 4096 values or more whose
               name ends in "weight" (the default for a file). A folder's default is its
               decoder's Linear weights only (lm::int8_linear_weight: attention and MLP
               projections, experts, lm_head; not the embedding, routers or norms)
  --help       this text

Each quantised weight becomes I8 [..., out, in] with its F32 scales "<name>_scale" beside it;
every int8 policy reads it in place from the mapping (generate --weights int8, ringmoe --dtype
int8, the loaders), the float policies dequantise it once.
)";

[[noreturn]] void bad_usage(const std::string& what) { moe_examples::bad_usage("quantize", what); }

struct Args {
    fs::path src, dst;
    moe::index_t group = 0;
    std::string rest = "keep";
    bool all = false;
};

Args parse(int argc, char** argv) {
    Args a;
    std::vector<std::string> pos;
    for (int i = 1; i < argc; ++i) {
        const std::string o = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) bad_usage(o + " needs a value");
            return argv[++i];
        };
        if (o == "--help" || o == "-h") {
            std::fputs(kHelp, stdout);
            std::exit(0);
        } else if (o == "--group") {
            const double g = moe_examples::number("quantize", o, value());
            if (g < 0 || g != static_cast<double>(static_cast<moe::index_t>(g)) || (g != 0 && static_cast<moe::index_t>(g) % 32))
                bad_usage("--group is 0 or a positive multiple of 32, got " + std::string(argv[i]));
            a.group = static_cast<moe::index_t>(g);
        } else if (o == "--rest") {
            a.rest = value();
            if (a.rest != "keep" && a.rest != "f32" && a.rest != "bf16" && a.rest != "f16")
                bad_usage("--rest is keep, f32, bf16 or f16, got '" + a.rest + "'");
        } else if (o == "--all") {
            a.all = true;
        } else if (!o.empty() && o[0] == '-') {
            bad_usage("unknown option '" + o + "'");
        } else {
            pos.push_back(o);
        }
    }
    if (pos.size() != 2) bad_usage("expected SRC and DST, got " + std::to_string(pos.size()) + " paths");
    a.src = pos[0];
    a.dst = pos[1];
    std::error_code ec;
    if (!fs::exists(a.src, ec)) bad_usage("SRC '" + a.src.string() + "' does not exist");
    if (fs::exists(a.dst, ec) && fs::equivalent(a.src, a.dst, ec)) bad_usage("DST is SRC: write somewhere else");
    return a;
}

}  // namespace

int main(int argc, char** argv) {
    const Args a = parse(argc, argv);
    try {
        const bool folder = fs::is_directory(a.src);
        fs::path out = a.dst;
        if (folder) {
            fs::create_directories(a.dst);
            out = a.dst / "model.safetensors";
        }
        moe::io::QuantizeOptions opt;
        opt.group = a.group;
        if (a.rest != "keep") {
            opt.convert_rest = true;
            opt.rest = a.rest == "f32" ? moe::DType::f32 : a.rest == "bf16" ? moe::DType::bf16 : moe::DType::f16;
        }
        if (folder && !a.all)
            opt.select = [](const std::string& name, const moe::TensorView& t) {
                return moe::lm::int8_linear_weight(name) && moe::io::is_float(t.dtype()) && t.rank() == 2;
            };
        const auto t0 = std::chrono::steady_clock::now();
        const moe::io::SafetensorsFile in = moe::io::open_weights(a.src);
        const moe::io::QuantizeReport r = moe::io::quantize_checkpoint(in, out, opt);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (folder)
            for (const char* f : {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                  "special_tokens_map.json", "vocab.json", "merges.txt", "chat_template.jinja"})
                if (fs::exists(a.src / f)) fs::copy_file(a.src / f, a.dst / f, fs::copy_options::overwrite_existing);
        std::printf("quantize: %s -> %s\n", a.src.c_str(), out.c_str());
        std::printf("  int8: %lld tensors (scales per %s), kept%s: %lld\n", static_cast<long long>(r.quantized),
                    a.group == 0 ? "output channel" : ("group of " + std::to_string(a.group) + " inputs").c_str(),
                    a.rest == "keep" ? "" : (" as " + a.rest).c_str(), static_cast<long long>(r.kept));
        std::printf("  tensor bytes: %.1f MB -> %.1f MB (%.2fx), %.2f s\n", static_cast<double>(r.bytes_in) / 1e6,
                    static_cast<double>(r.bytes_out) / 1e6,
                    r.bytes_out ? static_cast<double>(r.bytes_in) / static_cast<double>(r.bytes_out) : 0.0, s);
        if (r.quantized == 0) std::printf("  note: no tensor matched the selection (try --all)\n");
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "quantize: %s\n", e.what());
        return 1;
    }
}
