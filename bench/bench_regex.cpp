// bench_regex - the Qwen2 pre-tokenizer pattern over ~1 MB texts: moe::lm::Regex beside PCRE2's
// JIT (when libpcre2-dev is installed: the alternative docs/lm.md weighs), one thread, same run.
// Both find every match left to right (as the Split pre-tokenizer does); the piece counts must
// agree, and the benchmark stops with an error if they do not.
//
// Texts: MOE_TOKENIZER_TEXTS (english.txt, chinese.txt, mixed.txt; bench/run_tokenizer.sh or
// node tools/bench/tokenizer_texts.mjs --out DIR write them).
//   regex/moe/<text>          code points decoded once outside the timing (what the pattern costs)
//   regex/moe+decode/<text>   UTF-8 -> code points included (what the pre-tokenizer pays)
//   regex/pcre2-jit/<text>    pcre2_jit_match over the UTF-8 bytes (PCRE2_UTF | PCRE2_UCP)
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "lm/regex.hpp"

#if __has_include(<pcre2.h>) && defined(MOE_BENCH_HAVE_PCRE2)
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#define MOE_HAVE_PCRE2 1
#endif

namespace {

constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::string read_text(benchmark::State& state, const std::string& name) {
    const char* dir = std::getenv("MOE_TOKENIZER_TEXTS");
    std::string file = name;
    file += ".txt";
    const std::filesystem::path p = std::filesystem::path(dir ? dir : "tokenizer-texts") / file;
    std::ifstream f(p, std::ios::binary);
    if (!f) {
        const std::string msg = "no " + p.string() + " (MOE_TOKENIZER_TEXTS=DIR)";
        state.SkipWithError(msg.c_str());
        return {};
    }
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::size_t moe_count(const moe::lm::Regex& re, std::u32string_view u, moe::lm::Regex::Scratch& s) {
    std::size_t n = 0;
    re.for_each_match(u, s, [&](std::size_t, std::size_t) { ++n; });
    return n;
}

void BM_moe(benchmark::State& state, const std::string& name, bool decode) {
    const std::string text = read_text(state, name);
    if (text.empty()) return;
    const moe::lm::Regex re(kQwen2);
    moe::lm::Regex::Scratch s;
    std::u32string u = moe::lm::unicode::to_u32(text);
    std::size_t pieces = 0;
    for (auto _ : state) {
        if (decode) u = moe::lm::unicode::to_u32(text);
        pieces = moe_count(re, u, s);
        benchmark::DoNotOptimize(pieces);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
    state.counters["pieces"] = static_cast<double>(pieces);
}

#ifdef MOE_HAVE_PCRE2
void BM_pcre2(benchmark::State& state, const std::string& name) {
    const std::string text = read_text(state, name);
    if (text.empty()) return;
    int err = 0;
    PCRE2_SIZE at = 0;
    pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kQwen2), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                                   &err, &at, nullptr);
    if (!re || pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) != 0) {
        state.SkipWithError("PCRE2 could not compile or JIT the pattern");
        return;
    }
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(re, nullptr);
    auto count = [&] {
        std::size_t n = 0, off = 0;
        while (off < text.size()) {
            if (pcre2_jit_match(re, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), off, 0, md, nullptr) < 0) break;
            const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
            ++n;
            off = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
        }
        return n;
    };
    // Same pieces as moe's engine, or the comparison means nothing.
    moe::lm::Regex::Scratch s;
    const std::size_t ours = moe_count(moe::lm::Regex(kQwen2), moe::lm::unicode::to_u32(text), s);
    std::size_t pieces = count();
    if (pieces != ours) {
        state.SkipWithError("PCRE2 and moe::lm::Regex disagree on the piece count");
    } else {
        for (auto _ : state) {
            pieces = count();
            benchmark::DoNotOptimize(pieces);
        }
        state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
        state.counters["pieces"] = static_cast<double>(pieces);
    }
    pcre2_match_data_free(md);
    pcre2_code_free(re);
}
#endif

const bool registered = [] {
    for (const std::string name : {"english", "chinese", "mixed"}) {
        std::string a = "regex/moe/", b = "regex/moe+decode/", c = "regex/pcre2-jit/";
        benchmark::RegisterBenchmark(a.append(name).c_str(), BM_moe, name, false)->Unit(benchmark::kMillisecond)->UseRealTime();
        benchmark::RegisterBenchmark(b.append(name).c_str(), BM_moe, name, true)->Unit(benchmark::kMillisecond)->UseRealTime();
#ifdef MOE_HAVE_PCRE2
        benchmark::RegisterBenchmark(c.append(name).c_str(), BM_pcre2, name)->Unit(benchmark::kMillisecond)->UseRealTime();
#else
        (void)c;
#endif
    }
    return true;
}();

}  // namespace
