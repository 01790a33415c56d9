// Where the parity fixtures are: $MOE_FIXTURE_DIR if set, else the build's MOE_FIXTURE_DIR
// (<build>/fixtures, written by the ctest `reference_fixtures`).
#pragma once

#include <cstdlib>
#include <filesystem>

#ifndef MOE_FIXTURE_DIR
#define MOE_FIXTURE_DIR "fixtures"
#endif

namespace moe_test {

inline std::filesystem::path fixture_dir() {
    if (const char* env = std::getenv("MOE_FIXTURE_DIR"); env != nullptr && *env != '\0') return env;
    return MOE_FIXTURE_DIR;
}

}  // namespace moe_test
