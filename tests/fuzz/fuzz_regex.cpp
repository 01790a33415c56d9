// libFuzzer target for the tokenizer regex engine (include/lm/regex.hpp).
//
// The input is a pattern and a subject separated by the first NUL byte (no NUL: the whole input
// is the pattern and a fixed mixed-script subject is used). The pattern is cut to 128 bytes (the
// split patterns of real tokenizer.json files are ~110), the subject (UTF-8, invalid bytes
// replaced by U+FFFD) to 256 code points. Constructing the Regex must either succeed or throw
// moe::ConfigError (unsupported syntax). When it compiles, every match for_each_match reports
// must lie within the subject with start <= end, the matches must be increasing and
// non-overlapping (an empty match is followed by one starting further on), search() from a
// match's start must find that same match and match_at() there its length. Matching must finish
// quickly: -timeout=2 turns catastrophic backtracking into a finding (it is a backtracking
// engine; such a finding is reported, not hidden by a smaller bound). Anything else (another
// exception, a sanitizer report, a failed oracle, a timeout) is a finding.
//
// Build and run (clang; from the repository root):
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
//       -Iinclude tests/fuzz/fuzz_regex.cpp -o /tmp/fuzz_regex
//   mkdir -p /tmp/fuzz_regex_corpus   # new inputs go here; the checked-in seeds are read only
//   /tmp/fuzz_regex -max_total_time=60 -timeout=2 -max_len=512 /tmp/fuzz_regex_corpus tests/fuzz/corpus/regex
// Seeds: tests/fuzz/corpus/regex/, written by tests/fuzz/make_tokenizer_seeds.py (the split
// patterns of real tokenizer.json files, each supported construct, and unsupported ones, with
// subjects in several scripts); regression-* are inputs that once misbehaved.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "lm/regex.hpp"
#include "lm/unicode.hpp"

namespace {

[[noreturn]] void finding(const char* what) {
    std::fprintf(stderr, "fuzz_regex: oracle failed: %s\n", what);
    std::abort();
}

constexpr std::size_t kMaxPattern = 128;  // bytes
constexpr std::size_t kMaxSubject = 256;  // code points

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    const std::size_t nul = in.find('\0');
    std::string_view pattern = in.substr(0, nul);
    const std::string_view subject_bytes =
        nul == std::string_view::npos ? std::string_view("Hello, world! it's 2024\n\t  \xE4\xB8\xAD\xE6\x96\x87 caf\xC3\xA9 "
                                                         "\xF0\x9F\x98\x80 I'LL  ab12__x\r\n")
                                      : in.substr(nul + 1);
    if (pattern.size() > kMaxPattern) pattern = pattern.substr(0, kMaxPattern);

    moe::lm::Regex re;
    try {
        re = moe::lm::Regex(pattern);
    } catch (const moe::ConfigError&) {
        return 0;  // unsupported syntax, refused by name
    }
    if (re.pattern() != pattern) finding("pattern() differs from the pattern given");

    std::u32string subject = moe::lm::unicode::to_u32(moe::lm::unicode::replace_invalid_utf8(subject_bytes));
    if (subject.size() > kMaxSubject) subject.resize(kMaxSubject);
    const std::u32string_view text(subject);

    moe::lm::Regex::Scratch scratch;
    std::size_t prev_start = 0, prev_end = 0;
    bool any = false;
    std::size_t count = 0;
    re.for_each_match(text, scratch, [&](std::size_t start, std::size_t end) {
        if (start > end) finding("match with start > end");
        if (end > text.size()) finding("match ends past the subject");
        if (any) {
            if (start < prev_end) finding("matches overlap or go backwards");
            if (prev_start == prev_end && start <= prev_start) finding("an empty match is not followed further on");
        }
        if (++count > text.size() + 1) finding("more matches than positions");
        prev_start = start;
        prev_end = end;
        any = true;
    });

    // Re-check the matches one by one: search from a match's start finds it, match_at agrees.
    std::size_t i = 0, checked = 0;
    while (i <= text.size() && checked < 8) {
        const auto m = re.search(text, i, scratch);
        if (!m) break;
        if (m->first < i || m->second < m->first || m->second > text.size()) finding("search() out of range");
        const auto len = re.match_at(text, m->first, scratch);
        if (!len || *len != m->second - m->first) finding("match_at() disagrees with search()");
        const auto again = re.search(text, m->first, scratch);
        if (!again || *again != *m) finding("search() from a match's start finds another match");
        i = m->second > m->first ? m->second : m->second + 1;
        ++checked;
    }
    return 0;
}
