// ringmoe: RingMoE end to end on satellite imagery, from the library's parts.
//
// Reads real images (UC Merced aerial RGB, EuroSAT Sentinel-2, BigEarthNet / SSL4EO Sentinel-1
// from ../shared/data/rs, or the synthesised scene where that folder is absent), runs the chosen
// RingMoE configuration (the tiny test model, the 14.7B one, one modality's 6.5B sub-model, the
// expert-pruned one or the 1B folded one) with random or loaded weights, and prints per-stage
// timings, per-layer expert load per modality, dropped tokens and the heads' outputs.
//
//   build/default/examples/ringmoe --help
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "rs/ringmoe/config.hpp"
#include "rs/ringmoe/inputs.hpp"
#include "rs/ringmoe/model.hpp"
#include "rs/ringmoe/random.hpp"

#ifndef MOE_DATA_DIR
#define MOE_DATA_DIR "../shared/data/rs"
#endif

namespace fs = std::filesystem;
namespace rm = moe::rs::ringmoe;
using moe::index_t;

namespace {

constexpr const char* kHelp = R"(ringmoe - RingMoE end to end on satellite imagery

usage: ringmoe [options]

Model
  --config NAME        tiny (default: 64 px, C 32, depths 2-2-2-2, the test model)
                       full             the released 14.7B model (4 modalities; 59 GB fp32)
                       single-modality  one modality's sub-model (6.5B: 26 GB fp32, 13 GB bf16)
                       pruned           ... with 1 of the 4 collaborative experts kept (4.4B)
                       folded-1b        one dense FFN per block (1.06B: 4.3 GB fp32)
                       tiny-single-modality, tiny-pruned, tiny-folded: the same steps at tiny size
  --modality M         the modality of the single-modality, pruned and folded configurations:
                       optical (default), sar-l1, sar-l2, multispectral
  --image-size N       input size in pixels: 192 (the released size; default for full-size
                       configurations) or 224 (window 7 instead of 12), 64 for tiny ones
  --weights SRC        random (default: deterministic random weights, written once to a
                       safetensors file in --cache and memory-mapped from there) or the path of a
                       checkpoint with the released MindSpore names (rs/ringmoe/model.hpp)
  --dtype T            f32 (default) or bf16 weights (activations are always fp32)
  --seed N             seed of the random weights (default 0)
  --cache DIR          where random-weight checkpoints are kept (default $TMPDIR or /tmp, in
                       moe-ringmoe/)
  --classes N          classes of the classification head (default 10; 0: no head)
  --seg-classes N      classes of the segmentation head (default 6; 0: no head)

Input
  --data DIR           the real samples (default )" MOE_DATA_DIR R"(, or $MOE_DATA_DIR)
  --synthetic          use the synthesised scene even when the samples are there
  --modalities LIST    the modalities to feed, comma-separated (default: every modality of the
                       configuration); one batch per modality, all in one forward call
  --images N           images per modality (default 1; at most what the folder holds)

Run
  --threads N          threads (default 1)
  --repeat N           forward calls; timings are of the fastest (default 1)
  --help               this text

The output: where each image came from, the model and its parameter count, per-stage times,
for MoE configurations every block's expert load per modality (one character per expert:
' ' none, '.' under a quarter of a balanced share, then '-', '=', '#' up to twice balanced or
more, kept tokens after capacity) and its dropped tokens, the classification head's top classes
and the segmentation head's per-pixel class map. Random weights mean untrained heads: the
classes are placeholders that show the data path, not predictions.
)";

struct Args {
    std::string config = "tiny";
    std::string modality = "optical";
    index_t image = 0;
    std::string weights = "random";
    std::string dtype = "f32";
    std::uint64_t seed = 0;
    fs::path cache;
    index_t classes = 10, seg_classes = 6;
    fs::path data;
    bool synthetic = false;
    std::vector<std::string> modalities;
    index_t images = 1;
    int threads = 1, repeat = 1;
};

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

long long parse_int(const std::string& opt, const std::string& v, long long lo, long long hi) {
    std::size_t pos = 0;
    long long x = 0;
    try {
        x = std::stoll(v, &pos);
    } catch (...) {
        pos = 0;
    }
    if (pos != v.size() || v.empty()) throw UsageError(opt + " expects an integer, got '" + v + "'");
    if (x < lo || x > hi)
        throw UsageError(moe::detail::cat(opt, " must be in [", lo, ", ", hi, "], got ", v));
    return x;
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::size_t a = 0;
    while (a <= s.size()) {
        const std::size_t b = std::min(s.find(',', a), s.size());
        if (b > a) out.push_back(s.substr(a, b - a));
        a = b + 1;
    }
    return out;
}

Args parse(int argc, char** argv) {
    Args a;
    if (const char* e = std::getenv("MOE_DATA_DIR"); e && *e) a.data = e;
    else a.data = MOE_DATA_DIR;
    for (int i = 1; i < argc; ++i) {
        std::string opt = argv[i], val;
        const bool has_eq = opt.find('=') != std::string::npos;
        if (has_eq) val = opt.substr(opt.find('=') + 1), opt = opt.substr(0, opt.find('='));
        auto value = [&]() -> std::string {
            if (has_eq) return val;
            if (i + 1 >= argc) throw UsageError(opt + " needs a value (see --help)");
            return argv[++i];
        };
        if (opt == "--help" || opt == "-h") throw UsageError("");
        else if (opt == "--config") a.config = value();
        else if (opt == "--modality") a.modality = value();
        else if (opt == "--image-size") a.image = parse_int(opt, value(), 32, 4096);
        else if (opt == "--weights") a.weights = value();
        else if (opt == "--dtype") {
            a.dtype = value();
            if (a.dtype != "f32" && a.dtype != "bf16") throw UsageError("--dtype is f32 or bf16, got '" + a.dtype + "'");
        } else if (opt == "--seed") a.seed = static_cast<std::uint64_t>(parse_int(opt, value(), 0, 1LL << 62));
        else if (opt == "--cache") a.cache = value();
        else if (opt == "--classes") a.classes = parse_int(opt, value(), 0, 100000);
        else if (opt == "--seg-classes") a.seg_classes = parse_int(opt, value(), 0, 1000);
        else if (opt == "--data") a.data = value();
        else if (opt == "--synthetic") a.synthetic = true;
        else if (opt == "--modalities") a.modalities = split(value());
        else if (opt == "--images") a.images = parse_int(opt, value(), 1, 64);
        else if (opt == "--threads") a.threads = static_cast<int>(parse_int(opt, value(), 1, 256));
        else if (opt == "--repeat") a.repeat = static_cast<int>(parse_int(opt, value(), 1, 1000));
        else throw UsageError("unknown option '" + opt + "' (see --help)");
    }
    return a;
}

rm::RingMoeConfig make_config(const Args& a) {
    const bool tiny = a.config.rfind("tiny", 0) == 0;
    const index_t image = a.image ? a.image : (tiny ? 64 : 192);
    rm::RingMoeConfig c;
    if (a.config == "tiny") c = rm::RingMoeConfig::tiny();
    else if (a.config == "tiny-single-modality") c = rm::RingMoeConfig::tiny_single_modality(a.modality);
    else if (a.config == "tiny-pruned") c = rm::RingMoeConfig::tiny_pruned(a.modality);
    else if (a.config == "tiny-folded") c = rm::RingMoeConfig::tiny_folded(a.modality);
    else if (a.config == "full") c = rm::RingMoeConfig::full(image);
    else if (a.config == "single-modality") c = rm::RingMoeConfig::single_modality(a.modality, image);
    else if (a.config == "pruned") c = rm::RingMoeConfig::pruned(a.modality, image);
    else if (a.config == "folded-1b") c = rm::RingMoeConfig::folded_1b(a.modality, image);
    else
        throw UsageError("unknown --config '" + a.config +
                         "': tiny, full, single-modality, pruned, folded-1b, tiny-single-modality, tiny-pruned, "
                         "tiny-folded");
    if (tiny && image != c.swin.image_size) c = c.with_image(image);
    c.num_classes = a.classes;
    c.seg_classes = a.seg_classes;
    c.validate("ringmoe --config " + a.config);
    return c;
}

double available_gib() {
    std::ifstream f("/proc/meminfo");
    std::string k;
    double v = 0;
    std::string unit;
    while (f >> k >> v >> unit)
        if (k == "MemAvailable:") return v / (1024.0 * 1024.0);
    return 0;
}

double peak_rss_mib() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_maxrss) / 1024.0;
}

/// "RssAnon:" or "RssFile:" of /proc/self/status in MiB (-1 where there is none): private memory
/// versus file pages mapped in place (the weights, when they are read from the checkpoint).
double status_mib(const char* key) {
    std::ifstream f("/proc/self/status");
    std::string k;
    for (std::string line; std::getline(f, line);) {
        std::istringstream is(line);
        double v = 0;
        if (is >> k >> v && k == key) return v / 1024.0;
    }
    return -1;
}

fs::path cache_dir(const Args& a) {
    if (!a.cache.empty()) return a.cache;
    const char* t = std::getenv("TMPDIR");
    return fs::path(t && *t ? t : "/tmp") / "moe-ringmoe";
}

std::string slug(const std::string& s) {
    std::string o;
    for (char ch : s) o += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
    return o;
}

/// One character per expert: its kept tokens relative to a balanced share (tokens / E).
std::string histogram(const std::vector<index_t>& kept, index_t tokens) {
    std::string s;
    const double fair = tokens > 0 ? double(tokens) / double(kept.size()) : 1.0;
    for (index_t k : kept) {
        const double r = double(k) / fair;
        s += k == 0 ? ' ' : r < 0.25 ? '.' : r < 0.75 ? '-' : r < 1.5 ? '=' : '#';
    }
    return s;
}

template <class Model>
void report_routing(const Model& model, const std::vector<int>& fed) {
    const auto& cfg = model.config();
    const auto routing = model.routing();
    if (routing.empty()) {
        std::printf("\nexpert load: none (dense FFN in every block: the folded model)\n");
        return;
    }
    std::printf("\nexpert load per block and modality (kept tokens per expert, ' .-=#' = none .. >= 1.5x a balanced share)\n");
    std::printf("  %-7s %-14s %-*s %-*s %8s %13s\n", "block", "modality", int(std::max<index_t>(5, cfg.modal_experts)),
                "modal", int(std::max<index_t>(6, cfg.collab_experts)), "collab", "tokens", "modal dropped");
    index_t total_dropped = 0, total_choices = 0;
    for (const auto& b : routing) {
        for (int m : fed) {
            const auto& g = b.modal[static_cast<std::size_t>(m)];
            if (g.tokens == 0) continue;
            char name[16];
            std::snprintf(name, sizeof name, "s%ldb%ld", long(b.stage), long(b.block));
            std::printf("  %-7s %-14s %-*s %-*s %8ld %13ld\n", name, cfg.modalities[static_cast<std::size_t>(m)].name.c_str(),
                        int(std::max<index_t>(5, cfg.modal_experts)), histogram(g.kept, g.tokens).c_str(),
                        int(std::max<index_t>(6, cfg.collab_experts)),
                        histogram(b.collab_kept_by_modality[static_cast<std::size_t>(m)], g.tokens).c_str(),
                        long(g.tokens), long(g.dropped));
        }
        total_dropped += b.dropped();
        total_choices += b.collab.tokens;
        for (const auto& g : b.modal) total_choices += g.tokens;
    }
    std::printf("  dropped: %ld of %ld routed choices (%.2f%%) over %zu blocks; collaborative capacity drops: ",
                long(total_dropped), long(total_choices), total_choices ? 100.0 * double(total_dropped) / double(total_choices) : 0.0,
                routing.size());
    index_t cd = 0;
    for (const auto& b : routing) cd += b.collab.dropped;
    std::printf("%ld\n", long(cd));
}

void report_heads(const rm::RingMoeOutput& out, const std::vector<std::string>& labels) {
    if (out.logits.raw() != nullptr) {
        const index_t B = out.logits.dim(0), K = out.logits.dim(1);
        std::printf("\nclassification head (%ld classes; untrained unless loaded): top-3 per image\n", long(K));
        for (index_t b = 0; b < B; ++b) {
            const float* l = out.logits.data<float>() + b * K;
            std::vector<index_t> idx(static_cast<std::size_t>(K));
            for (index_t k = 0; k < K; ++k) idx[static_cast<std::size_t>(k)] = k;
            const index_t top = std::min<index_t>(3, K);
            std::partial_sort(idx.begin(), idx.begin() + top, idx.end(), [&](index_t x, index_t y) { return l[x] > l[y]; });
            const float mx = l[idx[0]];
            double z = 0;
            for (index_t k = 0; k < K; ++k) z += std::exp(double(l[k] - mx));
            std::printf("  %-40s", labels[static_cast<std::size_t>(b)].c_str());
            for (index_t j = 0; j < top; ++j) {
                const index_t k = idx[static_cast<std::size_t>(j)];
                std::printf("  class %ld p=%.3f", long(k), std::exp(double(l[k] - mx)) / z);
            }
            std::printf("\n");
        }
    }
    if (out.segmentation.raw() != nullptr) {
        const index_t B = out.segmentation.dim(0), K = out.segmentation.dim(1), S = out.segmentation.dim(2);
        std::printf("\nsegmentation head (%ld classes, %ld x %ld per-pixel logits): argmax map, 16 x 16 sample\n",
                    long(K), long(S), long(S));
        const char* sym = "0123456789abcdefghijklmnopqrstuvwxyz";
        for (index_t b = 0; b < B; ++b) {
            const float* p = out.segmentation.data<float>() + b * K * S * S;
            std::vector<index_t> count(static_cast<std::size_t>(K), 0);
            auto cls = [&](index_t y, index_t x) {
                index_t best = 0;
                for (index_t k = 1; k < K; ++k)
                    if (p[k * S * S + y * S + x] > p[best * S * S + y * S + x]) best = k;
                return best;
            };
            for (index_t y = 0; y < S; ++y)
                for (index_t x = 0; x < S; ++x) ++count[static_cast<std::size_t>(cls(y, x))];
            std::printf("  %s: pixels per class", labels[static_cast<std::size_t>(b)].c_str());
            for (index_t k = 0; k < K; ++k) std::printf(" %ld", long(count[static_cast<std::size_t>(k)]));
            std::printf("\n");
            const index_t n = std::min<index_t>(16, S);
            for (index_t y = 0; y < n; ++y) {
                std::printf("    ");
                for (index_t x = 0; x < n; ++x) std::putchar(sym[cls(y * S / n + S / (2 * n), x * S / n + S / (2 * n)) % 36]);
                std::printf("\n");
            }
        }
    }
}

template <moe::WeightType W>
int run(const Args& a, const rm::RingMoeConfig& cfg) {
    // ---- input images, per modality of the configuration -------------------------------------
    const index_t S = cfg.swin.image_size;
    std::vector<rm::Scene> scenes;
    std::string origin;
#if MOE_RS_HAS_TIFF
    if (!a.synthetic && fs::is_directory(a.data)) {
        scenes = rm::sample_scenes(a.data, S);
        origin = "real samples from " + a.data.string();
    } else {
        origin = a.synthetic ? "the synthesised scene (--synthetic)"
                             : "the synthesised scene (no sample folder at " + a.data.string() + ")";
        scenes = rm::synthetic_scenes(S);
    }
#else
    origin = "the synthesised scene (built without libtiff)";
    scenes = rm::synthetic_scenes(S);
#endif
    std::vector<int> fed;
    if (a.modalities.empty())
        for (int m = 0; m < cfg.num_modalities(); ++m) fed.push_back(m);
    else
        for (const auto& k : a.modalities) fed.push_back(cfg.modality_index(k, "ringmoe --modalities"));
    std::vector<moe::Tensor> batches;
    std::vector<moe::vision::ModalityImages> inputs;
    std::vector<std::string> labels;
    std::printf("input: %s, %ld x %ld pixels\n", origin.c_str(), long(S), long(S));
    for (int m : fed) {
        const auto rmod = static_cast<moe::rs::RingModality>(cfg.modalities[static_cast<std::size_t>(m)].source);
        std::vector<moe::Tensor> xs;
        for (const auto& sc : scenes)
            if (sc.modality == rmod && static_cast<index_t>(xs.size()) < a.images) {
                xs.push_back(rm::to_model_input(sc.image, rmod, S));
                const bool synth = sc.source.rfind("synthesised", 0) == 0;
                labels.push_back(cfg.modalities[static_cast<std::size_t>(m)].name + ": " +
                                 (synth ? std::string("synthesised") : fs::path(sc.source).filename().string()));
                std::printf("  %-14s %s\n", cfg.modalities[static_cast<std::size_t>(m)].name.c_str(), sc.source.c_str());
            }
        if (xs.empty()) throw moe::NotFoundError("ringmoe", "no image of modality " + cfg.modalities[static_cast<std::size_t>(m)].name);
        batches.push_back(rm::stack_inputs(xs));
    }
    for (std::size_t i = 0; i < fed.size(); ++i) inputs.push_back({batches[i].view(), fed[i]});

    // ---- the model ------------------------------------------------------------------------------
    const double need_gib = double(rm::exact_parameter_count(cfg)) * double(sizeof(W)) / (1024.0 * 1024 * 1024);
    const double avail = available_gib();
    std::printf("\nmodel: %s, %s weights, %d thread%s\n", cfg.name.c_str(), a.dtype.c_str(), a.threads,
                a.threads > 1 ? "s" : "");
    std::printf("  parameters: %.4gB (exact), %.4gB by the published formula; weights need about %.1f GiB, %.1f GiB available\n",
                double(rm::exact_parameter_count(cfg)) / 1e9, double(rm::formula_parameter_count(cfg)) / 1e9, need_gib, avail);
    if (avail > 0 && need_gib > 0.9 * avail)
        throw UsageError(moe::detail::cat("the weights of ", cfg.name, " in ", a.dtype, " need about ",
                                          int(std::ceil(need_gib)), " GiB, more than this machine has available (",
                                          int(avail), " GiB): try --dtype bf16 or a smaller --config"));
    const auto t0 = std::chrono::steady_clock::now();
    rm::AnyRingMoe<W, moe::GeluTanh> any;
    if (a.weights == "random") {
        rm::RandomWeights rw;
        rw.seed = a.seed;
        rw.dtype = moe::dtype_v<W>;
        if (rm::exact_parameter_count(cfg) < 50'000'000) {
            any = rm::random_ringmoe<W, moe::GeluTanh>(cfg, rw);
            std::printf("  weights: random (seed %llu, in memory)\n", static_cast<unsigned long long>(a.seed));
        } else {
            const fs::path dir = cache_dir(a);
            fs::create_directories(dir);
            // Named by everything that shapes its content (configuration, heads, dtype, seed).
            const fs::path file = dir / moe::detail::cat(slug(cfg.name), "_heads", cfg.num_classes, "-", cfg.seg_classes,
                                                         "_", a.dtype, "_seed", a.seed, ".safetensors");
            if (!fs::exists(file)) {
                std::printf("  writing random weights (seed %llu) to %s ...\n", static_cast<unsigned long long>(a.seed),
                            file.string().c_str());
                std::fflush(stdout);
                rm::write_random_checkpoint(file, cfg, rw);
            }
            any = rm::load_ringmoe<W, moe::GeluTanh>(file, cfg);
            std::printf("  weights: random (seed %llu), loaded from %s\n", static_cast<unsigned long long>(a.seed),
                        file.string().c_str());
        }
    } else {
        moe::check<moe::NotFoundError>(fs::exists(a.weights), "ringmoe --weights", "no checkpoint at '", a.weights, "'");
        any = rm::load_ringmoe<W, moe::GeluTanh>(fs::path(a.weights), cfg);
        std::printf("  weights: %s\n", a.weights.c_str());
    }
    std::printf("  built in %.2f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());

    return std::visit(
        [&](auto& model) {
            model.set_threads(a.threads);
#if defined(_OPENMP)
            omp_set_num_threads(a.threads);
#endif
            std::vector<double> stage, best_stage;
            double best = 1e300;
            rm::RingMoeOutput out;
            for (int r = 0; r < a.repeat; ++r) {
                rm::RingMoeForward fo;
                fo.encoder.stage_seconds = &stage;
                const auto s0 = std::chrono::steady_clock::now();
                out = model.forward(std::span<const moe::vision::ModalityImages>(inputs), fo);
                const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
                if (dt < best) best = dt, best_stage = stage;
            }
            const index_t B = out.batch;
            std::printf("\ntimings (%s of %d call%s, %ld image%s in one call)\n", a.repeat > 1 ? "fastest" : "one",
                        a.repeat, a.repeat > 1 ? "s" : "", long(B), B > 1 ? "s" : "");
            double enc = 0;
            for (std::size_t i = 0; i < best_stage.size(); ++i) {
                enc += best_stage[i];
                std::string what = i == 0 ? "patch embeddings"
                                   : i + 1 == best_stage.size()
                                       ? "final norm"
                                       : moe::detail::cat("stage ", i - 1, " (", cfg.swin.depths[i - 1], " blocks, ",
                                                          cfg.swin.resolution(index_t(i - 1)), "^2 tokens)");
                std::printf("  %-36s %9.2f ms\n", what.c_str(), best_stage[i] * 1e3);
            }
            std::printf("  %-36s %9.2f ms\n", "heads", (best - enc) * 1e3);
            std::printf("  %-36s %9.2f ms  (%.2f images/s)\n", "total", best * 1e3, double(B) / best);
            if constexpr (std::decay_t<decltype(model)>::routed) report_routing(model, fed);
            else std::printf("\nexpert load: none (one dense FFN per block: the folded model)\n");
            report_heads(out, labels);
            std::printf("\nfeatures: [%ld, %ld] (%ld images x %ld^2 tokens); peak resident memory %.0f MiB\n",
                        long(out.features.dim(0)), long(out.features.dim(1)), long(B),
                        long(cfg.swin.resolution(cfg.swin.stages() - 1)), peak_rss_mib());
            if (const double file = status_mib("RssFile:"), anon = status_mib("RssAnon:"); file >= 0 && anon >= 0)
                std::printf("resident now: %.0f MiB mapped from files (weights read in place), %.0f MiB private\n",
                            file, anon);
            return 0;
        },
        any);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Args a = parse(argc, argv);
        const rm::RingMoeConfig cfg = make_config(a);
        return a.dtype == "bf16" ? run<moe::bf16>(a, cfg) : run<float>(a, cfg);
    } catch (const UsageError& e) {
        if (std::string(e.what()).empty()) {
            std::fputs(kHelp, stdout);
            return 0;
        }
        std::fprintf(stderr, "ringmoe: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ringmoe: %s\n", e.what());
        return 1;
    }
}
