// tokenize - text to token ids (and back) with a Hugging Face tokenizer.json, one input line at
// a time, so scripts can compare moe's tokenizers with any other implementation.
//
//   echo "Where is the windmill?" | tokenize --tokenizer Qwen2-0.5B/tokenizer.json
//   [9064,374,279,9956,25013,30]
//   echo "[9064,374,279,9956,25013,30]" | tokenize --tokenizer Qwen2-0.5B/tokenizer.json --decode
//   Where is the windmill?
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli.hpp"
#include "lm/tokenizer.hpp"
#include "moe/io/json.hpp"

namespace {

constexpr std::string_view kUsage = R"(usage: tokenize --tokenizer PATH [options] < input

Reads standard input one line at a time and writes one line per input line.

  --tokenizer PATH   tokenizer.json (Hugging Face tokenizers format); the tokenizer_config.json
                     beside it is read too when present
  --config PATH      tokenizer_config.json to use instead
  --decode           input lines are JSON arrays of ids; output lines are the decoded text
  --no-special       encode as add_special_tokens=False: no BOS/EOS/[CLS]/[SEP] added (special
                     tokens written in the text are still recognised); with --decode: leave the
                     special tokens out of the text (skip_special_tokens=True)
  --jsonl            each input line (encode) or output line (decode) is a JSON string, so texts
                     may hold newlines and any character
  --help             this text

Encoding writes each line's ids as a JSON array. Invalid UTF-8 is replaced by U+FFFD as the
reference (Hugging Face's JS tokenizers, reading bytes with TextDecoder) does. Exit status: 0, or
1 when an input line is invalid (the message names the line), 2 for bad arguments.
)";

[[noreturn]] void bad_usage(const std::string& what) { moe_examples::bad_usage("tokenize", what); }

}  // namespace

int main(int argc, char** argv) {
    std::optional<std::filesystem::path> tokenizer_path, config_path;
    bool decode = false, no_special = false, jsonl = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) bad_usage(std::string(a) + " needs a value");
            return argv[++i];
        };
        if (a == "--tokenizer") tokenizer_path = value();
        else if (a == "--config") config_path = value();
        else if (a == "--decode") decode = true;
        else if (a == "--no-special") no_special = true;
        else if (a == "--jsonl") jsonl = true;
        else if (a == "--help" || a == "-h") {
            std::cout << kUsage;
            return 0;
        } else {
            bad_usage("unknown option '" + std::string(a) + "'");
        }
    }
    if (!tokenizer_path) bad_usage("--tokenizer PATH is required");

    std::optional<moe::lm::Tokenizer> tok;
    try {
        tok = moe::lm::Tokenizer::from_file(*tokenizer_path, config_path);
    } catch (const std::exception& e) {
        std::cerr << "tokenize: " << e.what() << "\n";
        return 2;
    }

    std::ios::sync_with_stdio(false);
    moe::lm::EncodeWorkspace ws;
    const moe::lm::EncodeOptions enc{!no_special, moe::lm::InvalidUtf8::replace};
    const moe::lm::DecodeOptions dec{no_special, std::nullopt};
    std::string line, out;
    std::vector<moe::lm::TokenId> ids;
    std::size_t lineno = 0;
    while (std::getline(std::cin, line)) {
        ++lineno;
        const std::string where = "stdin line " + std::to_string(lineno);
        try {
            out.clear();
            if (decode) {
                const auto v = moe::io::json::parse(line, where);
                moe::check<moe::FormatError>(v.is_array(), where, "expected a JSON array of token ids");
                ids.clear();
                for (const auto& x : v.as_array()) {
                    const auto id = x.as_i64();
                    moe::check<moe::FormatError>(id.has_value() && *id >= 0 && *id < (1ll << 31), where,
                                                 "ids must be integers >= 0");
                    ids.push_back(static_cast<moe::lm::TokenId>(*id));
                }
                const std::string text = tok->decode(ids, dec);
                if (jsonl) moe::io::json::append_string(out, moe::lm::unicode::replace_invalid_utf8(text));
                else out = text;
            } else {
                std::string text;
                if (jsonl) {
                    const auto v = moe::io::json::parse(line, where);
                    moe::check<moe::FormatError>(v.is_string(), where, "expected a JSON string (--jsonl)");
                    text = v.as_string();
                } else {
                    text = line;
                }
                ids.clear();
                tok->encode_into(text, enc, ws, ids);
                out += '[';
                for (std::size_t k = 0; k < ids.size(); ++k) {
                    if (k) out += ',';
                    out += std::to_string(ids[k]);
                }
                out += ']';
            }
            out += '\n';
            std::cout << out;
        } catch (const moe::Error& e) {
            std::cout.flush();
            std::cerr << "tokenize: " << e.what() << "\n";
            return 1;
        }
    }
    return 0;
}
