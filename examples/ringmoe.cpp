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
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "cli.hpp"
#include "moe/backend/cpu/simd.hpp"
#include "rs/ringmoe/config.hpp"
#include "rs/ringmoe/fidelity.hpp"
#include "rs/ringmoe/inputs.hpp"
#include "rs/ringmoe/model.hpp"
#include "rs/ringmoe/random.hpp"

#if defined(MOE_EXAMPLE_MPI)
#include <mpi.h>

#include "moe/dist/layers.hpp"
#endif

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
                       optical (default), sar-l1, sar-l2, multispectral; an error with tiny and
                       full, which take every modality (--modalities picks the ones fed)
  --image-size N       input size in pixels: 192 (the released size; default for full-size
                       configurations) or 224 (window 7 instead of 12), 64 for tiny ones
  --weights SRC        random (default: deterministic random weights, written once to a
                       safetensors file in --cache and memory-mapped from there) or the path of a
                       checkpoint with the released MindSpore names (rs/ringmoe/model.hpp)
  --dtype T            f32 (default) or bf16 weights (activations are always fp32), or int8:
                       int8 experts (W8A8, moe::int8_dot: activations quantised per token at
                       the experts), bf16 everything else (MoE configurations only; random
                       weights are written with int8 experts, docs/scaling.md)
  --fidelity           also run the reference (bf16 for --dtype int8, f32 for bf16) on the
                       same inputs first, and print every block's and the encoder output's
                       relative error and cosine against it (not with --dtype f32); then the
                       same with the reference's routing imposed in every block (the experts'
                       own error, without the routing decisions it flips)
  --seed N             seed of the random weights (default 0; --weights random only)
  --cache DIR          where random-weight checkpoints are kept (default $TMPDIR or /tmp, in
                       moe-ringmoe/); created if missing, must be writable. Only the full-size
                       configurations use it: the tiny ones keep their random weights in memory
  --classes N          classes of the classification head (default 10; 0: no head)
  --seg-classes N      classes of the segmentation head (default 6; 0: no head)

Input
  --data DIR           the real samples (default $MOE_DATA_DIR, else )" MOE_DATA_DIR R"(:
                       where that default folder is absent, the synthesised scene, and the
                       output's "input:" line says so). A folder named by --data or
                       $MOE_DATA_DIR must exist: no silent fallback
  --synthetic          use the synthesised scene even when the samples are there (not with --data)
  --modalities LIST    the modalities to feed, comma-separated, each once (default: every
                       modality of the configuration); one batch per modality, all in one
                       forward call
  --images N           images per modality (default 1, at most 64), always exactly N: the
                       synthesised scene gives any number (scene k drawn with seed k); the
                       samples give at most what the folder holds of each modality (an error
                       beyond; SAR-L1, synthesised there too, gives any number)

Run
  --threads N          threads (default 1)
  --repeat N           forward calls; timings are of the fastest (default 1)
  --expert-parallel    run under mpirun: every block's modal and collaborative experts spread
                       over the ranks (moe::dist, docs/scaling.md), every rank on the same
                       images; rank 0 prints, and checks each rank's features against the
                       single-process model's (needs a build with -DMOE_ENABLE_MPI=ON and a MoE
                       configuration with at least as many experts per group as ranks)
  --help               this text

Options take their value as the next argument or after '=' (--images=2). Exit status: 0 done,
2 a bad invocation (an unknown option, a missing or malformed value, a path that does not
exist, options that contradict each other: "ringmoe: <option> '<value>': <what is wrong>" on
stderr, before any model work), 1 any other failure.

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
    std::string modalities_arg;  // --modalities as given, for messages
    index_t images = 1;
    int threads = 1, repeat = 1;
    // Where --data came from: "--data", "$MOE_DATA_DIR" or empty (the built-in default, which
    // may be absent: then the synthesised scene, said so in the output).
    std::string data_from;
    bool modality_given = false, seed_given = false, cache_given = false;
    bool fidelity = false;
    bool expert_parallel = false;
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

constexpr const char* kModalityNames = "optical, sar-l1, sar-l2, multispectral";

/// --modalities LIST: comma-separated names, none empty (names are checked against the
/// configuration in fed_modalities()).
std::vector<std::string> split_modalities(const std::string& s) {
    if (s.empty())
        throw UsageError(std::string("--modalities '': no modality named; give a comma-separated list of ") + kModalityNames +
                         " (or leave --modalities out to feed every modality of the configuration)");
    std::vector<std::string> out;
    std::size_t a = 0;
    while (a <= s.size()) {
        const std::size_t b = std::min(s.find(',', a), s.size());
        if (b == a)
            throw UsageError("--modalities '" + s + "': empty name at character " + std::to_string(a + 1) +
                             " (names are separated by single commas)");
        out.push_back(s.substr(a, b - a));
        a = b + 1;
    }
    return out;
}

/// One of the four names (or an alias rs::ringmoe::RingMoeConfig accepts)?
bool is_modality(const std::string& v) {
    const std::string c = rm::RingMoeConfig::canonical_modality(v);
    return c == "optical" || c == "sar-l1" || c == "sar-l2" || c == "multispectral";
}

/// --modality M: a modality name.
std::string check_modality(const std::string& v) {
    if (!is_modality(v))
        throw UsageError("--modality '" + v + "': not a modality; one of " + kModalityNames);
    return v;
}

Args parse(int argc, char** argv) {
    Args a;
    if (const char* e = std::getenv("MOE_DATA_DIR"); e && *e) a.data = e, a.data_from = "$MOE_DATA_DIR";
    else a.data = MOE_DATA_DIR;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        std::string opt = arg, val;
        const bool has_eq = opt.rfind("--", 0) == 0 && opt.find('=') != std::string::npos;
        if (has_eq) val = opt.substr(opt.find('=') + 1), opt = opt.substr(0, opt.find('='));
        auto value = [&]() -> std::string {
            if (has_eq) return val;
            if (i + 1 >= argc) throw UsageError(opt + " needs a value (see --help)");
            const std::string v = argv[i + 1];
            if (v.size() > 2 && v.rfind("--", 0) == 0)
                throw UsageError(opt + " needs a value, got the option '" + v + "' (write " + opt + "=" + v +
                                 " if that is the value)");
            return argv[++i];
        };
        auto path = [&](const char* what) {
            std::string v = value();
            if (v.empty()) throw UsageError(opt + " '': needs " + what);
            return v;
        };
        auto flag = [&] {
            if (has_eq) throw UsageError(opt + " takes no value, got '" + arg + "'");
        };
        if (opt == "--help" || opt == "-h") {
            flag();
            throw UsageError("");
        } else if (opt == "--config") a.config = value();
        else if (opt == "--modality") a.modality = check_modality(value()), a.modality_given = true;
        else if (opt == "--image-size") a.image = parse_int(opt, value(), 32, 4096);
        else if (opt == "--weights") a.weights = path("'random' or the path of a checkpoint");
        else if (opt == "--dtype") {
            a.dtype = value();
            if (a.dtype != "f32" && a.dtype != "bf16" && a.dtype != "int8")
                throw UsageError("--dtype is f32, bf16 or int8, got '" + a.dtype + "'");
        } else if (opt == "--seed") a.seed = static_cast<std::uint64_t>(parse_int(opt, value(), 0, 1LL << 62)), a.seed_given = true;
        else if (opt == "--cache") a.cache = path("a directory"), a.cache_given = true;
        else if (opt == "--classes") a.classes = parse_int(opt, value(), 0, 100000);
        else if (opt == "--seg-classes") a.seg_classes = parse_int(opt, value(), 0, 1000);
        else if (opt == "--data") a.data = path("a directory"), a.data_from = "--data";
        else if (opt == "--synthetic") flag(), a.synthetic = true;
        else if (opt == "--modalities") a.modalities_arg = value(), a.modalities = split_modalities(a.modalities_arg);
        else if (opt == "--images") a.images = parse_int(opt, value(), 1, 64);
        else if (opt == "--fidelity") flag(), a.fidelity = true;
        else if (opt == "--expert-parallel") {
            flag();
#if !defined(MOE_EXAMPLE_MPI)
            throw UsageError("--expert-parallel: this build has no MPI (configure with -DMOE_ENABLE_MPI=ON)");
#endif
            a.expert_parallel = true;
        }
        else if (opt == "--threads") a.threads = static_cast<int>(parse_int(opt, value(), 1, 256));
        else if (opt == "--repeat") a.repeat = static_cast<int>(parse_int(opt, value(), 1, 1000));
        else if (opt.rfind("-", 0) == 0) throw UsageError("unknown option '" + opt + "' (see --help)");
        else throw UsageError("unexpected argument '" + arg + "': ringmoe takes only options (see --help)");
    }
    return a;
}

rm::RingMoeConfig make_config(const Args& a) {
    const bool tiny = a.config.rfind("tiny", 0) == 0;
    const index_t image = a.image ? a.image : (tiny ? 64 : 192);
    const bool all_modalities = a.config == "tiny" || a.config == "full";
    const bool one_modality = a.config == "tiny-single-modality" || a.config == "tiny-pruned" ||
                              a.config == "tiny-folded" || a.config == "single-modality" || a.config == "pruned" ||
                              a.config == "folded-1b";
    if (!all_modalities && !one_modality)
        throw UsageError("unknown --config '" + a.config +
                         "': tiny, full, single-modality, pruned, folded-1b, tiny-single-modality, tiny-pruned, "
                         "tiny-folded");
    if (all_modalities && a.modality_given)
        throw UsageError("--modality '" + a.modality + "' applies only to the single-modality configurations "
                         "(single-modality, pruned, folded-1b and their tiny- versions); --config " + a.config +
                         " takes every modality: pick the ones to feed with --modalities");
    try {
        rm::RingMoeConfig c;
        if (a.config == "tiny") c = rm::RingMoeConfig::tiny();
        else if (a.config == "tiny-single-modality") c = rm::RingMoeConfig::tiny_single_modality(a.modality);
        else if (a.config == "tiny-pruned") c = rm::RingMoeConfig::tiny_pruned(a.modality);
        else if (a.config == "tiny-folded") c = rm::RingMoeConfig::tiny_folded(a.modality);
        else if (a.config == "full") c = rm::RingMoeConfig::full(image);
        else if (a.config == "single-modality") c = rm::RingMoeConfig::single_modality(a.modality, image);
        else if (a.config == "pruned") c = rm::RingMoeConfig::pruned(a.modality, image);
        else c = rm::RingMoeConfig::folded_1b(a.modality, image);
        if (tiny && image != c.swin.image_size) c = c.with_image(image);
        c.num_classes = a.classes;
        c.seg_classes = a.seg_classes;
        c.validate("ringmoe --config " + a.config);
        return c;
    } catch (const moe::ConfigError& e) {
        // Every option that shapes the configuration comes from the command line: a usage error.
        throw UsageError(moe::detail::cat("--config ", a.config, a.image ? " with --image-size " : "",
                                          a.image ? std::to_string(a.image) : std::string(), ": ", e.what()));
    }
}

/// The indices of the modalities to feed: every one of the configuration, or --modalities
/// (each known to the configuration, none twice).
std::vector<int> fed_modalities(const Args& a, const rm::RingMoeConfig& cfg) {
    std::vector<int> fed;
    if (a.modalities.empty()) {
        for (int m = 0; m < cfg.num_modalities(); ++m) fed.push_back(m);
        return fed;
    }
    for (const auto& k : a.modalities) {
        int m = -1;
        try {
            m = cfg.modality_index(k, "ringmoe --modalities");
        } catch (const moe::ConfigError&) {
            const std::string why = is_modality(k) ? "--config " + a.config + " has no modality '" + k + "'"
                                                   : "'" + k + "' is not a modality";
            throw UsageError("--modalities '" + a.modalities_arg + "': " + why + "; " + cfg.describe_modalities());
        }
        if (std::find(fed.begin(), fed.end(), m) != fed.end())
            throw UsageError("--modalities '" + a.modalities_arg + "': " + cfg.modalities[static_cast<std::size_t>(m)].name +
                             " is named twice");
        fed.push_back(m);
    }
    return fed;
}

/// The paths given on the command line, checked before any work: --data (or $MOE_DATA_DIR)
/// must be a directory, --weights an existing file, --cache a directory that can be created
/// and written to; options that the others make meaningless are refused.
void check_paths(const Args& a) {
    if (a.synthetic && a.data_from == "--data")
        throw UsageError("--data '" + a.data.string() +
                         "' and --synthetic exclude each other: --synthetic reads no samples (leave one out)");
    if (!a.synthetic && !a.data_from.empty()) {
#if MOE_RS_HAS_TIFF
        std::error_code ec;
        const auto st = fs::status(a.data, ec);
        const std::string hint = a.data_from == "--data" ? "" : " (unset MOE_DATA_DIR to use the default)";
        if (!fs::exists(st))
            throw UsageError(a.data_from + " '" + a.data.string() + "': no such directory" + hint);
        if (!fs::is_directory(st))
            throw UsageError(a.data_from + " '" + a.data.string() + "': not a directory" + hint);
#else
        if (a.data_from == "--data")
            throw UsageError("--data '" + a.data.string() +
                             "': this build cannot read the samples (built without libtiff: install libtiff-dev and "
                             "rebuild), leave --data out to run on the synthesised scene");
#endif
    }
    if (a.weights != "random") {
        std::error_code ec;
        const auto st = fs::status(a.weights, ec);
        if (!fs::exists(st))
            throw UsageError("--weights '" + a.weights + "': no such file (the path of a checkpoint, or random)");
        if (fs::is_directory(st)) throw UsageError("--weights '" + a.weights + "': a directory, not a checkpoint file");
        if (a.seed_given)
            throw UsageError(moe::detail::cat("--seed ", a.seed, " applies only to --weights random; --weights '",
                                              a.weights, "' loads its weights from the file"));
    }
    if (a.cache_given) {
        const std::string d = a.cache.string();
        std::error_code ec;
        if (fs::exists(a.cache, ec) && !fs::is_directory(a.cache, ec))
            throw UsageError("--cache '" + d + "': exists and is not a directory");
        fs::create_directories(a.cache, ec);
        if (ec) throw UsageError("--cache '" + d + "': cannot create the directory: " + ec.message());
        if (::access(a.cache.c_str(), W_OK | X_OK) != 0)
            throw UsageError("--cache '" + d + "': cannot write in the directory: " + std::strerror(errno));
    }
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

using moe_examples::peak_rss_mib;

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

/// The model of `cfg` in `dtype` (W everywhere, We the experts): random weights (deterministic,
/// cached in a file for full-size configurations) or --weights.
template <moe::WeightPolicy W, moe::WeightPolicy We>
rm::AnyRingMoe<W, moe::GeluTanh, We> load_model(const Args& a, const rm::RingMoeConfig& cfg, const std::string& dtype,
                                                bool reference = false, bool verbose = true) {
    auto say = [verbose](const char* fmt, auto... args) {
        if (verbose) std::printf(fmt, args...);
    };
    rm::RandomWeightOptions rw;
    rw.seed = a.seed;
    rw.dtype = moe::dtype_v<moe::storage_t<W>>;
    rw.int8_experts = moe::Int8Policy<We>;
    const double params = double(rm::exact_parameter_count(cfg));
    const double need_gib = (a.weights == "random" ? double(rm::random_checkpoint_size(cfg, rw))
                                                   : double(fs::file_size(a.weights))) /
                            (1024.0 * 1024 * 1024);
    const double avail = available_gib();
    say("\n%s: %s, %s weights%s, %d thread%s, SIMD path %s\n", reference ? "reference" : "model",
                cfg.name.c_str(), dtype.c_str(),
                moe::Int8Policy<We> ? " (int8_dot experts, bf16 elsewhere)" : "", a.threads, a.threads > 1 ? "s" : "",
                moe::cpu::simd_name());
    say("  parameters: %.4gB (exact), %.4gB by the published formula; weights need about %.1f GiB, %.1f GiB available\n",
                params / 1e9, double(rm::formula_parameter_count(cfg)) / 1e9, need_gib, avail);
    // A reference (--fidelity) runs once: its weights, read in place from the mapped file, may
    // exceed memory (the kernel evicts file pages and reads them again).
    if (reference && avail > 0 && need_gib > 0.9 * avail)
        say("  (more than the memory available: read from the mapped file as it runs)\n");
    else if (avail > 0 && need_gib > 0.9 * avail)
        throw UsageError(moe::detail::cat("the weights of ", cfg.name, " in ", dtype, " need about ",
                                          int(std::ceil(need_gib)), " GiB, more than this machine has available (",
                                          int(avail), " GiB): try --dtype bf16 or int8, or a smaller --config"));
    const auto t0 = std::chrono::steady_clock::now();
    rm::AnyRingMoe<W, moe::GeluTanh, We> any;
    if (a.weights == "random") {
        if (rm::exact_parameter_count(cfg) < 50'000'000) {
            any = rm::random_ringmoe<W, moe::GeluTanh, We>(cfg, rw);
            say("  weights: random (seed %llu, in memory)\n", static_cast<unsigned long long>(a.seed));
        } else {
            const fs::path dir = cache_dir(a);  // an explicit --cache is checked in check_paths()
            std::error_code ec;
            fs::create_directories(dir, ec);
            if (ec)
                throw moe::IOError("ringmoe", "cannot create the random-weight cache directory '" + dir.string() +
                                                  "': " + ec.message() + " (name another with --cache DIR)");
            // Named by everything that shapes its content (configuration, heads, dtype, seed).
            const fs::path file = dir / moe::detail::cat(slug(cfg.name), "_heads", cfg.num_classes, "-", cfg.seg_classes,
                                                         "_", dtype, "_seed", a.seed, ".safetensors");
            if (!fs::exists(file)) {
                say("  writing random weights (seed %llu) to %s ...\n", static_cast<unsigned long long>(a.seed),
                            file.string().c_str());
                std::fflush(stdout);
                const auto w0 = std::chrono::steady_clock::now();
                rm::write_random_checkpoint(file, cfg, rw);
                say("  written in %.0f s\n",
                            std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count());
            }
            any = rm::load_ringmoe<W, moe::GeluTanh, We>(file, cfg);
            say("  weights: random (seed %llu), loaded from %s\n", static_cast<unsigned long long>(a.seed),
                        file.string().c_str());
        }
    } else {
        any = rm::load_ringmoe<W, moe::GeluTanh, We>(fs::path(a.weights), cfg);
        say("  weights: %s\n", a.weights.c_str());
    }
    say("  built in %.2f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return any;
}

template <moe::WeightPolicy W, moe::WeightPolicy We = W>
int run(const Args& a, const rm::RingMoeConfig& cfg, const std::vector<int>& fed) {
    // ---- input images, per modality of the configuration -------------------------------------
    const index_t S = cfg.swin.image_size;
    std::vector<rm::Scene> scenes;  // the samples (empty: the synthesised scene only)
    std::string origin;
#if MOE_RS_HAS_TIFF
    // An explicit --data or $MOE_DATA_DIR is a directory (check_paths); the default may be absent.
    const bool real = !a.synthetic && fs::is_directory(a.data);
    if (real) {
        scenes = rm::sample_scenes(a.data, S);
        origin = "real samples from " + a.data.string();
    } else {
        origin = a.synthetic ? "the synthesised scene (--synthetic)"
                             : "the synthesised scene (no sample folder at " + a.data.string() + "; --data DIR names one)";
    }
#else
    const bool real = false;
    origin = "the synthesised scene (built without libtiff)";
#endif
    // synth[k]: the synthesised scene drawn with seed k + 1 (made on demand), so that --images N
    // gets N different images per modality.
    std::vector<std::vector<rm::Scene>> synth;
    auto synthesised = [&](moe::rs::RingModality m, std::size_t k) {
        while (synth.size() <= k) synth.push_back(rm::synthetic_scenes(S, static_cast<unsigned>(synth.size() + 1)));
        for (const auto& sc : synth[k])
            if (sc.modality == m) return sc;
        throw std::logic_error("ringmoe: rs::ringmoe::synthetic_scenes made no scene of every modality");
    };
    std::vector<moe::Tensor> batches;
    std::vector<moe::vision::ModalityImages> inputs;
    std::vector<std::string> labels;
    std::string listing;  // printed once every modality has its images (or --images is refused)
    for (int m : fed) {
        const std::string& name = cfg.modalities[static_cast<std::size_t>(m)].name;
        const auto rmod = static_cast<moe::rs::RingModality>(cfg.modalities[static_cast<std::size_t>(m)].source);
        std::vector<rm::Scene> picked;
        for (const auto& sc : scenes)
            if (sc.modality == rmod && static_cast<index_t>(picked.size()) < a.images) picked.push_back(sc);
        const auto is_synth = [](const rm::Scene& sc) { return sc.source.rfind("synthesised", 0) == 0; };
        if (static_cast<index_t>(picked.size()) < a.images) {
            // From the samples: only a modality the folder itself synthesises (SAR-L1) takes more
            // synthesised scenes; the others would mix real and synthetic images unasked.
            if (real && picked.empty())
                throw UsageError("the samples at " + a.data.string() + " hold no " + name + " image: leave " + name +
                                 " out with --modalities, or use --synthetic");
            if (real && !std::all_of(picked.begin(), picked.end(), is_synth))
                throw UsageError(moe::detail::cat(
                    "--images ", a.images, ": the samples at ", a.data.string(), " hold ", picked.size(), " ", name,
                    " image", picked.size() == 1 ? "" : "s", "; ask for at most ", picked.size(), ", leave ", name,
                    " out with --modalities, or use --synthetic (any number of synthesised images)"));
            while (static_cast<index_t>(picked.size()) < a.images) picked.push_back(synthesised(rmod, picked.size()));
        }
        std::vector<moe::Tensor> xs;
        for (std::size_t k = 0; k < picked.size(); ++k) {
            const auto& sc = picked[k];
            xs.push_back(rm::to_model_input(sc.image, rmod, S));
            // Several synthesised images of a modality are told apart by their number.
            const std::string which = is_synth(sc) && a.images > 1 ? moe::detail::cat(" #", k + 1) : std::string();
            labels.push_back(name + ": " + (is_synth(sc) ? "synthesised" + which : fs::path(sc.source).filename().string()));
            std::string head = "  " + name;  // "  %-14s "
            head.resize(std::max<std::size_t>(head.size(), 16), ' ');
            listing += head + " " + sc.source + which + "\n";
        }
        batches.push_back(rm::stack_inputs(xs));
    }
    std::printf("input: %s, %ld x %ld pixels\n%s", origin.c_str(), long(S), long(S), listing.c_str());
    for (std::size_t i = 0; i < fed.size(); ++i) inputs.push_back({batches[i].view(), fed[i]});

    // ---- the model (and, with --fidelity, its reference first) ---------------------------------
    using Ref = std::conditional_t<moe::Int8Policy<We>, moe::bf16, float>;
    std::optional<rm::Capture> reference;
    if (a.fidelity) {
        // bf16 for int8 experts, fp32 for bf16: run, keep its outputs, drop it before the model
        // under test is built (a full-size pair need not fit in memory together).
        auto ref = load_model<Ref, Ref>(a, cfg, a.dtype == "int8" ? "bf16" : "f32", true);
        reference = std::visit([&](auto& m) {
            m.set_exec(moe::Exec(a.threads));
            return rm::capture(m, std::span<const moe::vision::ModalityImages>(inputs));
        }, ref);
    }
    auto any = load_model<W, We>(a, cfg, a.dtype);
    // Times the forward calls and prints the report; returns the features of the last call.
    auto run_model = [&](auto& model) {
            model.set_exec(moe::Exec(a.threads));
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
            if (reference) {
                const rm::Capture mine = rm::capture(model, std::span<const moe::vision::ModalityImages>(inputs));
                const rm::ModelFidelity f = rm::fidelity(mine, *reference);
                std::printf("\nfidelity: %s against %s, every block's output and the encoder output\n%s",
                            a.dtype.c_str(), a.dtype == "int8" ? "bf16" : "f32", rm::fidelity_table(f, cfg).c_str());
                std::printf("target: encoder-output cosine >= 0.999: %s (%.6f)\n",
                            f.encoder.cosine >= 0.999 ? "met" : "MISSED", f.encoder.cosine);
                if constexpr (std::decay_t<decltype(model)>::routed) {
                    // The same with the reference's routing decisions imposed in every block:
                    // the experts' own error, without the tokens whose top-1 choice or capacity
                    // drop it flips.
                    const rm::Capture held =
                        rm::capture(model, std::span<const moe::vision::ModalityImages>(inputs), &*reference);
                    const rm::ModelFidelity g = rm::fidelity(held, *reference);
                    std::printf("\nfidelity with the reference's routing imposed in every block\n%s",
                                rm::fidelity_table(g, cfg).c_str());
                    std::printf("encoder-output cosine with the routing imposed: %.6f (%s 0.999)\n", g.encoder.cosine,
                                g.encoder.cosine >= 0.999 ? ">=" : "<");
                }
            }
            report_heads(out, labels);
            std::printf("\nfeatures: [%ld, %ld] (%ld images x %ld^2 tokens); peak resident memory %.0f MiB\n",
                        long(out.features.dim(0)), long(out.features.dim(1)), long(B),
                        long(cfg.swin.resolution(cfg.swin.stages() - 1)), peak_rss_mib());
            if (const double file = status_mib("RssFile:"), anon = status_mib("RssAnon:"); file >= 0 && anon >= 0)
                std::printf("resident now: %.0f MiB mapped from files (weights read in place), %.0f MiB private\n",
                            file, anon);
            return std::move(out.features);
    };
    return std::visit(
        [&](auto& model) {
#if defined(MOE_EXAMPLE_MPI)
            if constexpr (std::decay_t<decltype(model)>::routed) {
                if (a.expert_parallel) {
                    // A second copy of the model with every block's groups spread over the ranks;
                    // `model` stays whole, the single-process reference.
                    int ranks = 1;
                    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
                    const auto pm = moe::dist::Placement::contiguous(cfg.modal_experts, ranks);
                    const auto pc = moe::dist::Placement::contiguous(cfg.collab_experts, ranks);
                    using Ffn = typename std::decay_t<decltype(model)>::ffn_type;
                    using DistFfn = decltype(moe::dist::distribute(MPI_COMM_WORLD, std::declval<Ffn>(), pm, pc));
                    auto whole = load_model<W, We>(a, cfg, a.dtype, false, false);
                    auto parallel = std::move(std::get<std::decay_t<decltype(model)>>(whole)).template map_ffns<DistFfn>(
                        [&](index_t, index_t, Ffn&& ffn) { return moe::dist::distribute(MPI_COMM_WORLD, std::move(ffn), pm, pc); },
                        cfg);
                    std::printf("\nexpert-parallel: %d ranks; each holds %zu of %ld modal and %zu of %ld collaborative "
                                "experts per block (rank 0's share)\n",
                                ranks, pm.experts_of(0).size(), long(cfg.modal_experts), pc.experts_of(0).size(),
                                long(cfg.collab_experts));
                    const moe::Tensor f = run_model(parallel);
                    model.set_exec(moe::Exec(a.threads));
                    const moe::Tensor ref = model.forward(std::span<const moe::vision::ModalityImages>(inputs)).features;
                    int same = f.nbytes() == ref.nbytes() &&
                               std::memcmp(f.raw(), ref.raw(), static_cast<std::size_t>(f.nbytes())) == 0;
                    int all = 0;
                    MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
                    std::printf("expert-parallel check: every rank's features equal the single-process model's bit "
                                "for bit: %s\n",
                                all ? "yes" : "NO");
                    return all ? 0 : 1;
                }
            }
#endif
            if (a.expert_parallel)
                throw std::runtime_error("--expert-parallel: this model is dense (one FFN per block): no experts to spread");
            run_model(model);
            return 0;
        },
        any);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        // Every check of the command line comes before any work: a bad invocation costs nothing.
        const Args a = parse(argc, argv);
        const rm::RingMoeConfig cfg = make_config(a);
        if (a.fidelity && a.dtype == "f32")
            throw UsageError("--fidelity compares --dtype bf16 or int8 with its reference; f32 is the reference");
        if (a.dtype == "int8" && cfg.ffn != rm::FfnKind::moe)
            throw UsageError("--dtype int8 quantises the experts; --config " + a.config +
                             " has none (one dense FFN per block)");
        const std::vector<int> fed = fed_modalities(a, cfg);
        check_paths(a);
        if (a.expert_parallel && (a.config == "tiny-folded" || a.config == "folded-1b"))
            throw UsageError("--expert-parallel: --config " + a.config + " is dense (one FFN per block): no experts to spread");
#if defined(MOE_EXAMPLE_MPI)
        if (a.expert_parallel) {
            // Every rank runs the whole example; only rank 0 prints. An error on any rank ends
            // the job (MPI_Abort) rather than leaving the others in a collective.
            int provided = 0, rank = 0, rc = 1;
            MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
            MPI_Comm_rank(MPI_COMM_WORLD, &rank);
            if (rank != 0 && !std::freopen("/dev/null", "w", stdout)) std::fprintf(stderr, "ringmoe: rank %d: no /dev/null\n", rank);
            try {
                rc = a.dtype == "int8"   ? run<moe::bf16, moe::int8_dot>(a, cfg, fed)
                     : a.dtype == "bf16" ? run<moe::bf16>(a, cfg, fed)
                                         : run<float>(a, cfg, fed);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "ringmoe: rank %d: %s\n", rank, e.what());
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            MPI_Finalize();
            return rc;
        }
#endif
        if (a.dtype == "int8") return run<moe::bf16, moe::int8_dot>(a, cfg, fed);
        return a.dtype == "bf16" ? run<moe::bf16>(a, cfg, fed) : run<float>(a, cfg, fed);
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
