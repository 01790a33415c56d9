// Tokenizer parity: every string of the corpus (tools/reference/tokenizer_corpus.mjs) encoded and
// decoded by moe::lm::Tokenizer and by the reference (Hugging Face's JavaScript tokenizers, run
// by tools/reference/tokenizer_reference.mjs as the ctest fixture `tokenizer_reference`), for real
// Qwen2 (Qwen3 package), LLaMA-2, LLaMA-3, GPT-2 and BERT-uncased files. Ids must be identical;
// decoded text byte-identical. Also: streaming decode reproduces the whole decode, and
// decode(encode(s)) == s wherever the reference round-trips.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "lm/tokenizer.hpp"
#include "moe/io/json.hpp"
#include "../parity/fixture_dir.hpp"
#include "../unit/skip.hpp"

namespace moe_test_test_tokenizer_parity {

namespace fs = std::filesystem;
using moe::lm::TokenId;
using moe::lm::Tokenizer;
namespace json = moe::io::json;

// The fixtures decode with clean_up_tokenization_spaces = false (a transformers step outside
// tokenizer.json; tools/reference/tokenizer_reference.mjs records it in the manifest).
const moe::lm::DecodeOptions kNoCleanup{false, false};

fs::path fixture_dir() { return moe_test::fixture_dir() / "tokenizers"; }

std::string read(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::vector<TokenId> ids_of(const json::Value& v) {
    std::vector<TokenId> out;
    for (const auto& x : v.as_array()) out.push_back(static_cast<TokenId>(*x.as_i64()));
    return out;
}

std::string quote(std::string_view s) {
    std::string out;
    json::append_string(out, s);
    return out;
}

std::string show(const std::vector<TokenId>& v) {
    std::ostringstream s;
    s << '[';
    for (std::size_t i = 0; i < v.size(); ++i) s << (i ? " " : "") << v[i];
    s << ']';
    return s.str();
}

void check_tokenizer(const std::string& name) {
    const fs::path manifest_path = fixture_dir() / "manifest.json";
    if (!fs::exists(manifest_path)) {
        MOE_SKIP("no tokenizer fixtures at " << manifest_path.string()
                                            << " (ctest's tokenizer_reference writes them; it needs node and "
                                               "scripts/install-deps.sh's npm packages)");
        return;
    }
    const json::Value manifest = json::parse(read(manifest_path), manifest_path.string());
    const json::Value* entry = manifest.find(name);
    if (!entry) {
        MOE_SKIP("the fixture manifest has no tokenizer \"" << name << "\"");
        return;
    }
    const std::string tj = entry->find("tokenizer_json")->as_string();
    const json::Value* tc = entry->find("tokenizer_config");
    const Tokenizer tok = tc && tc->is_string() ? Tokenizer::from_file(tj, fs::path(tc->as_string()))
                                                : Tokenizer::from_file(tj);

    std::ifstream lines(fixture_dir() / (name + ".jsonl"), std::ios::binary);
    REQUIRE(lines.good());
    moe::lm::EncodeWorkspace ws;
    std::string line;
    std::size_t n = 0, skipped = 0, round_trips = 0, streamed = 0;
    std::size_t bad_ids = 0, bad_plain = 0, bad_decoded = 0, bad_skip = 0, bad_stream = 0, bad_round = 0;
    std::vector<std::string> failures;
    auto note = [&](std::string msg) {
        if (failures.size() < 12) failures.push_back(std::move(msg));
    };
    while (std::getline(lines, line)) {
        if (line.empty()) continue;
        const json::Value v = json::parse(line, name + ".jsonl");
        const std::string& text = v.find("text")->as_string();
        if (v.find("error")) {  // the reference threw on this string
            ++skipped;
            continue;
        }
        ++n;
        const auto want = ids_of(*v.find("ids"));
        const auto want_plain = ids_of(*v.find("ids_plain"));
        const auto got = tok.encode(text, {true}, ws);
        const auto got_plain = tok.encode(text, {false}, ws);
        if (got != want) {
            ++bad_ids;
            note(moe::detail::cat("ids of ", quote(text), ": ", show(got), " vs reference ", show(want)));
        }
        if (got_plain != want_plain) {
            ++bad_plain;
            note(moe::detail::cat("ids (no special) of ", quote(text), ": ", show(got_plain), " vs reference ", show(want_plain)));
        }
        const std::string& want_decoded = v.find("decoded")->as_string();
        const std::string decoded = want_plain.empty() ? std::string() : tok.decode(want_plain, kNoCleanup);
        if (decoded != want_decoded) {
            ++bad_decoded;
            note(moe::detail::cat("decode of ", show(want_plain), ": ", quote(decoded), " vs reference ", quote(want_decoded)));
        }
        const std::string& want_skip = v.find("decoded_skip")->as_string();
        const std::string skip = want.empty() ? std::string() : tok.decode(want, {true, false});
        if (skip != want_skip) {
            ++bad_skip;
            note(moe::detail::cat("decode (skip special) of ", show(want), ": ", quote(skip), " vs reference ", quote(want_skip)));
        }
        // Streaming: the pieces add up to the whole decode (when it ends on a complete character).
        if (!want_decoded.empty() && want_decoded.size() < 2000) {
            moe::lm::DecodeStream stream(tok, kNoCleanup);
            std::string joined;
            for (TokenId id : want_plain) joined += stream.step(id);
            joined += stream.flush();
            ++streamed;
            if (joined != want_decoded) {
                ++bad_stream;
                note(moe::detail::cat("streamed decode of ", show(want_plain), ": ", quote(joined), " vs ", quote(want_decoded)));
            }
        }
        if (want_decoded == text) {
            ++round_trips;
            if (decoded != text) ++bad_round;
        }
    }
    INFO(name << ": " << n << " strings (" << skipped << " the reference refused), " << round_trips
              << " round trips, " << streamed << " streamed");
    for (const auto& f : failures) WARN(name << ": " << f);
    CHECK(n >= 10000);
    CHECK(bad_ids == 0);
    CHECK(bad_plain == 0);
    CHECK(bad_decoded == 0);
    CHECK(bad_skip == 0);
    CHECK(bad_stream == 0);
    CHECK(bad_round == 0);
}

TEST_CASE("tokenizer parity: Qwen2 vocabulary (byte-level BPE, NFC, Split regex)", "[.][tokenizer-parity]") { check_tokenizer("qwen3"); }
TEST_CASE("tokenizer parity: LLaMA-2 (SentencePiece-style BPE, byte fallback)", "[.][tokenizer-parity]") { check_tokenizer("llama2"); }
TEST_CASE("tokenizer parity: LLaMA-3 (byte-level BPE, ignore_merges)", "[.][tokenizer-parity]") { check_tokenizer("llama3"); }
TEST_CASE("tokenizer parity: GPT-2 (byte-level BPE, GPT-2 regex)", "[.][tokenizer-parity]") { check_tokenizer("gpt2"); }
TEST_CASE("tokenizer parity: BERT uncased (WordPiece)", "[.][tokenizer-parity]") { check_tokenizer("bert-uncased"); }

}  // namespace moe_test_test_tokenizer_parity
