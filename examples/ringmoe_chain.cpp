// ringmoe_chain: RingMoE's deployment chain on the trained tiny model (rs/ringmoe/chain.hpp).
//
// full (4 modalities) -> one modality -> the most-used 25% of the collaborative experts ->
// SVD fold into one dense FFN per block. Every step writes a safetensors checkpoint, reloads it
// into the smaller configuration and continues from the reloaded encoder; the table reports
// parameters and the fidelity of the encoder output on held-out real crops against the
// previous step and the single-modality model.
//
//   nice /usr/bin/python3 tools/reference/train_ringmoe_tiny.py      # trained weights + held-out crops
//   /usr/bin/python3 tools/reference/ringmoe_chain_check.py          # calibration crops (training images)
//   build/default/examples/ringmoe_chain                             # the chain, every trained modality
//   build/default/examples/ringmoe_chain --help
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "moe/backend/cpu/simd.hpp"
#include "moe/io/json.hpp"
#include "moe/io/safetensors.hpp"
#include "rs/ringmoe/chain.hpp"
#include "rs/ringmoe/config.hpp"
#include "rs/ringmoe/model.hpp"
#include "rs/ringmoe/random.hpp"

#ifndef MOE_SOURCE_DIR
#define MOE_SOURCE_DIR "."
#endif

namespace fs = std::filesystem;
namespace rm = moe::rs::ringmoe;
using moe::index_t;

namespace {

constexpr const char* kHelp = R"(ringmoe_chain - RingMoE's deployment chain on the tiny model

usage: ringmoe_chain [options]

  full (4 modalities) -> one modality -> the most-used collaborative experts (25%) -> SVD fold
  into one dense FFN per block. Each step writes a checkpoint, reloads it into the smaller
  configuration and reports parameters and encoder-output fidelity (cosine similarity and
  relative error, mean over images and whole batch) against the previous step and against the
  single-modality model.

Inputs (defaults: the files tools/reference/train_ringmoe_tiny.py and
tools/reference/ringmoe_chain_check.py write to build/ringmoe-tiny)
  --weights PATH       trained tiny checkpoint (MindSpore names, "encoder." prefix), or
                       "random" for random weights (rs/ringmoe/random.hpp, --seed)
  --heldout PATH       evaluation crops: F32 [N, C, 64, 64] tensors named optical, sar_l2,
                       multispectral (or sar-l1)
  --calibration PATH   calibration crops, the same layout (training-like images)
  --modality M         optical, sar-l2, multispectral, sar-l1 or all (default: all the crop
                       files hold)
Chain
  --keep F             share of the collaborative experts kept (default 0.25: 1 of 4)
  --count K            what ranks experts: any (default: every choice before capacity), kept,
                       first or weight (moe::CountKind)
  --fold-rank R        neurons kept per folded expert (default 0: F / N, N experts folded)
  --weighting W        the weight each expert enters the fold with: combine_weight (default: its
                       mean combine weight on the calibration tokens, its expected share),
                       frequency (routing frequency) or sum (1 each)
  --mode M             calibration: progressive (default: each block on the inputs of the
                       already pruned blocks) or once (all blocks on the unpruned step's inputs)
  --batch N            calibration images per forward call (default 8)
  --eval-batch N       evaluation images per forward call (default 1: each image on its own, as
                       deployed; routing capacity is per call, so in a batch of similar images
                       later images can lose tokens to a full expert and every model's output,
                       the reference's too, depends on the batch)
  --out DIR            where the step checkpoints go (default: <weights dir>/chain); created if
                       missing, must be writable
  --threads N          threads (default 1)
  --seed N             seed of --weights random (default 0; --weights random only)
  --details            per-block details (kept experts, fold widths, layer fidelity)
  --help               this text

Options take their value as the next argument or after '=' (--keep=0.5). Exit status: 0 the
target is met, 3 it is not, 2 a bad invocation (an unknown option, a missing or malformed value,
an --out directory that cannot be made, options that contradict each other: "ringmoe_chain:
<option> '<value>': <what is wrong>" on stderr), 77 an input file (--weights, --heldout,
--calibration, given or default) does not exist: the training scripts above write them (the
test suite reports 77 as skipped), 1 any other failure.
)";

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// Exit status of a run whose input file (trained checkpoint, crops) does not exist yet: ctest
/// reports it as skipped (tests/CMakeLists.txt runs this example on what a smoke training run
/// writes, which is skipped without torch).
constexpr int kMissingInput = 77;

struct Args {
    std::string weights, heldout, calibration, out, modality = "all";
    double keep = 0.25;
    std::string count = "any", weighting = "combine_weight", mode = "progressive";
    index_t fold_rank = 0, batch = 8, eval_batch = 1;
    int threads = 1;
    std::uint64_t seed = 0;
    bool details = false;
    bool weights_given = false, heldout_given = false, calibration_given = false, out_given = false, seed_given = false;
};

index_t to_int(const std::string& opt, const std::string& v, long long lo, long long hi) {
    std::size_t pos = 0;
    long long n = 0;
    try {
        if (!v.empty() && !std::isspace(static_cast<unsigned char>(v[0]))) n = std::stoll(v, &pos);
    } catch (...) {
        pos = 0;
    }
    if (v.empty() || pos != v.size()) throw UsageError(opt + " takes an integer, not '" + v + "'");
    if (n < lo || n > hi)
        throw UsageError(opt + " takes an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], not " + v);
    return static_cast<index_t>(n);
}

bool is_modality(const std::string& v) {
    const std::string c = rm::RingMoeConfig::canonical_modality(v);
    return c == "optical" || c == "sar-l1" || c == "sar-l2" || c == "multispectral";
}

Args parse(int argc, char** argv) {
    Args a;
    const fs::path dir = fs::path(MOE_SOURCE_DIR) / "build" / "ringmoe-tiny";
    a.weights = (dir / "ringmoe_tiny.safetensors").string();
    static const char* const kWithValue[] = {"--weights", "--heldout", "--calibration", "--modality", "--out", "--keep",
                                             "--count", "--weighting", "--mode", "--fold-rank", "--batch", "--eval-batch",
                                             "--threads", "--seed"};
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        std::string o = arg, val;
        const bool has_eq = o.rfind("--", 0) == 0 && o.find('=') != std::string::npos;
        if (has_eq) val = o.substr(o.find('=') + 1), o = o.substr(0, o.find('='));
        if (o == "--help" || o == "-h" || o == "--details") {
            if (has_eq) throw UsageError(o + " takes no value, got '" + arg + "'");
            if (o == "--details") {
                a.details = true;
                continue;
            }
            throw UsageError("");
        }
        if (std::find(std::begin(kWithValue), std::end(kWithValue), o) == std::end(kWithValue))
            throw UsageError(o.rfind("-", 0) == 0 ? "unknown option '" + o + "' (--help lists them)"
                                                  : "unexpected argument '" + arg + "': ringmoe_chain takes only options (--help lists them)");
        std::string v = val;
        if (!has_eq) {
            if (i + 1 >= argc) throw UsageError(o + " needs a value (--help lists them)");
            v = argv[++i];
            if (v.size() > 2 && v.rfind("--", 0) == 0)
                throw UsageError(o + " needs a value, got the option '" + v + "' (write " + o + "=" + v +
                                 " if that is the value)");
        }
        auto path = [&](bool& given) {
            if (v.empty()) throw UsageError(o + " '': needs a path");
            given = true;
            return v;
        };
        if (o == "--weights") a.weights = path(a.weights_given);
        else if (o == "--heldout") a.heldout = path(a.heldout_given);
        else if (o == "--calibration") a.calibration = path(a.calibration_given);
        else if (o == "--modality") {
            if (v != "all" && !is_modality(v))
                throw UsageError("--modality '" + v + "': not a modality; one of optical, sar-l2, multispectral, sar-l1 or all");
            a.modality = v;
        } else if (o == "--out") a.out = path(a.out_given);
        else if (o == "--keep") {
            char* end = nullptr;
            a.keep = v.empty() || std::isspace(static_cast<unsigned char>(v[0])) ? 0.0 : std::strtod(v.c_str(), &end);
            if (v.empty() || end == nullptr || *end != '\0' || !(a.keep > 0 && a.keep <= 1))
                throw UsageError("--keep takes a share in (0, 1], not '" + v + "'");
        } else if (o == "--count") {
            if (v != "any" && v != "kept" && v != "first" && v != "weight") throw UsageError("unknown --count '" + v + "' (any, first, kept, weight)");
            a.count = v;
        } else if (o == "--weighting") {
            if (v != "sum" && v != "frequency" && v != "combine_weight") throw UsageError("unknown --weighting '" + v + "' (sum, frequency, combine_weight)");
            a.weighting = v;
        } else if (o == "--mode") {
            if (v != "progressive" && v != "once") throw UsageError("unknown --mode '" + v + "' (progressive, once)");
            a.mode = v;
        } else if (o == "--fold-rank") a.fold_rank = to_int(o, v, 0, 1 << 20);
        else if (o == "--batch") a.batch = to_int(o, v, 1, 4096);
        else if (o == "--eval-batch") a.eval_batch = to_int(o, v, 1, 4096);
        else if (o == "--threads") a.threads = static_cast<int>(to_int(o, v, 1, 256));
        else a.seed = static_cast<std::uint64_t>(to_int(o, v, 0, 1LL << 62)), a.seed_given = true;  // --seed
    }
    if (a.seed_given && a.weights != "random")
        throw UsageError("--seed " + std::to_string(a.seed) + " applies only to --weights random; --weights '" + a.weights +
                         "' loads its weights from the file");
    const fs::path base = a.weights == "random" ? dir : fs::path(a.weights).parent_path();
    if (a.heldout.empty()) a.heldout = (base / "heldout_crops.safetensors").string();
    if (a.calibration.empty()) a.calibration = (base / "calibration_crops.safetensors").string();
    if (a.out.empty()) a.out = (base / "chain").string();
    return a;
}

/// The source of crop n ("file@y,x") from the crop file's metadata <key>_sources, if recorded.
std::string source_of(const moe::io::SafetensorsFile& f, const std::string& key, index_t n) {
    const auto it = f.metadata().find(key + "_sources");
    if (it == f.metadata().end() || n < 0) return "crop " + std::to_string(n);
    const auto v = moe::io::json::parse(it->second, key + "_sources");
    if (!v.is_array() || n >= static_cast<index_t>(v.as_array().size())) return "crop " + std::to_string(n);
    const auto& e = v.as_array()[static_cast<std::size_t>(n)];
    return e.is_string() ? e.as_string() : "crop " + std::to_string(n);
}

/// The input files exist (else kMissingInput, with what to run) and --out can be made and
/// written to (else a UsageError for an explicit --out); before any work.
int check_paths(const Args& a) {
    struct Input {
        const char *option, *what;
        const std::string& path;
        bool given;
    };
    std::vector<Input> inputs;
    if (a.weights != "random") inputs.push_back({"--weights", "trained checkpoint", a.weights, a.weights_given});
    inputs.push_back({"--heldout", "held-out crops", a.heldout, a.heldout_given});
    inputs.push_back({"--calibration", "calibration crops", a.calibration, a.calibration_given});
    for (const auto& in : inputs) {
        std::error_code ec;
        const auto st = fs::status(in.path, ec);
        if (fs::exists(st) && fs::is_directory(st)) throw UsageError(std::string(in.option) + " '" + in.path + "': a directory, not a file");
        if (fs::exists(st)) continue;
        const bool weights = std::string(in.option) == "--weights";
        std::fprintf(stderr, "ringmoe_chain: %s '%s': no such file (%s%s)\n", in.option, in.path.c_str(),
                     in.given ? "the " : "the default path of the ", in.what);
        if (in.given)
            std::fprintf(stderr, "  tools/reference/train_ringmoe_tiny.py --out DIR writes DIR/ringmoe_tiny.safetensors and "
                                 "DIR/heldout_crops.safetensors, tools/reference/ringmoe_chain_check.py --out DIR "
                                 "DIR/calibration_crops.safetensors%s\n",
                         weights ? "; or pass --weights random" : "");
        else
            std::fprintf(stderr, "  run: %s\n",
                         weights ? "nice /usr/bin/python3 tools/reference/train_ringmoe_tiny.py, or pass --weights random"
                                 : "nice /usr/bin/python3 tools/reference/train_ringmoe_tiny.py && "
                                   "/usr/bin/python3 tools/reference/ringmoe_chain_check.py");
        return kMissingInput;
    }
    // An explicit --out is the caller's to fix (a usage error); the default one is an I/O failure.
    auto fail = [&](const std::string& why) {
        if (a.out_given) throw UsageError("--out '" + a.out + "': " + why);
        throw moe::IOError("ringmoe_chain", "the checkpoint directory '" + a.out + "' (the default; --out DIR names another): " + why);
    };
    std::error_code ec;
    if (fs::exists(a.out, ec) && !fs::is_directory(a.out, ec)) fail("exists and is not a directory");
    fs::create_directories(a.out, ec);
    if (ec) fail("cannot create the directory: " + ec.message());
    if (::access(a.out.c_str(), W_OK | X_OK) != 0) fail(std::string("cannot write in the directory: ") + std::strerror(errno));
    return 0;
}

int run(const Args& a) {
    const rm::RingMoeConfig cfg = rm::RingMoeConfig::tiny();
    if (const int rc = check_paths(a); rc != 0) return rc;
    const auto held = moe::io::SafetensorsFile::open(a.heldout);
    const auto cal = moe::io::SafetensorsFile::open(a.calibration);
    {
        // Both crop sets must be standardised with the same statistics (one training run).
        const auto hn = held.metadata().find("normalisation"), cn = cal.metadata().find("normalisation");
        if (hn != held.metadata().end() && cn != cal.metadata().end() && hn->second != cn->second)
            throw std::runtime_error("the calibration crops (" + a.calibration +
                                     ") were standardised for another training run than the held-out crops: rerun "
                                     "/usr/bin/python3 tools/reference/ringmoe_chain_check.py");
    }

    std::vector<int> modalities;
    if (a.modality == "all") {
        for (int m = 0; m < cfg.num_modalities(); ++m) {
            std::string key = cfg.modalities[static_cast<std::size_t>(m)].name;
            for (auto& c : key) c = c == '-' ? '_' : c;
            if (held.contains(key) && cal.contains(key)) modalities.push_back(m);
        }
        if (modalities.empty())
            throw moe::FormatError("ringmoe_chain", "the crop files " + a.heldout + " and " + a.calibration +
                                                        " have no modality in common (tensors optical, sar_l1, sar_l2, multispectral)");
    } else {
        const int m = cfg.modality_index(a.modality, "--modality");
        std::string key = cfg.modalities[static_cast<std::size_t>(m)].name;
        for (auto& c : key) c = c == '-' ? '_' : c;
        for (const auto* f : {&held, &cal})
            if (!f->contains(key))
                throw UsageError("--modality '" + a.modality + "': the crop file " + f->path() + " has no tensor '" + key +
                                 "' (--modality all takes the modalities both crop files hold)");
        modalities.push_back(m);
    }
    // The weights last: every check of the command line (and of the crop files) comes first.
    std::optional<moe::io::SafetensorsFile> weights;
    if (a.weights == "random") {
        rm::RandomWeightOptions ro;
        ro.seed = a.seed;
        weights.emplace(moe::io::SafetensorsFile::from_buffer(rm::random_checkpoint_bytes(cfg, ro), "random tiny"));
    } else {
        weights.emplace(moe::io::SafetensorsFile::open(a.weights));
    }

    rm::ChainOptions opt;
    opt.prune.fraction = a.keep;
    opt.prune.by = a.count == "kept" ? moe::CountKind::kept
                   : a.count == "first" ? moe::CountKind::first
                   : a.count == "weight" ? moe::CountKind::weight
                                         : moe::CountKind::any;
    opt.fold.rank = a.fold_rank;
    opt.fold.weighting = a.weighting == "frequency" ? moe::FoldWeighting::frequency
                         : a.weighting == "combine_weight" ? moe::FoldWeighting::combine_weight
                                                           : moe::FoldWeighting::sum;
    opt.calibration = a.mode == "once" ? rm::CalibrationMode::once : rm::CalibrationMode::progressive;
    opt.batch = a.batch;
    opt.eval_batch = a.eval_batch;
    opt.exec = moe::Exec(a.threads);
    opt.dir = a.out;

    std::printf("ringmoe_chain (moe %s)\n", moe::cpu::simd_name());
    std::printf("weights: %s\nheld-out crops: %s\ncalibration crops: %s\ncheckpoints: %s\n\n",
                a.weights == "random" ? "random (rs/ringmoe/random.hpp)" : a.weights.c_str(), a.heldout.c_str(),
                a.calibration.c_str(), a.out.c_str());
    bool all_met = true;
    for (int m : modalities) {
        std::string key = cfg.modalities[static_cast<std::size_t>(m)].name;
        for (auto& c : key) c = c == '-' ? '_' : c;
        const moe::TensorView ev = held.get(key), cv = cal.get(key);
        auto full = rm::load_ringmoe_moe(*weights, cfg);  // checked against the tiny configuration
        opt.stem = "tiny-" + key;
        opt.modality = m;
        auto res = rm::run_chain(std::move(full), cv, ev, opt);
        const auto& rep = res.report;
        std::printf("== %s (modality %d): %lld calibration crops, %lld held-out crops\n", key.c_str(), m,
                    static_cast<long long>(cv.dim(0)), static_cast<long long>(ev.dim(0)));
        std::fputs(a.details ? rep.str().c_str() : rep.table().c_str(), stdout);
        const auto& pr = rep.step("expert_pruned");
        const bool met = pr.vs_single->mean_cosine >= 0.9;
        all_met = all_met && met;
        std::printf("target: expert-pruned vs single-modality cosine >= 0.9 on held-out crops: %.4f (mean over "
                    "images; worst image %.4f: %s) -> %s\n\n",
                    pr.vs_single->mean_cosine, pr.vs_single->min_cosine,
                    source_of(held, key, pr.vs_single->worst_image).c_str(), met ? "met" : "NOT met");
    }
    return all_met ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(parse(argc, argv));
    } catch (const UsageError& e) {
        if (std::string(e.what()).empty()) {
            std::fputs(kHelp, stdout);
            return 0;
        }
        std::fprintf(stderr, "ringmoe_chain: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ringmoe_chain: %s\n", e.what());
        return 1;
    }
}
