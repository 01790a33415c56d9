// Runner of the parity tests (moe vs. PyTorch fixtures written by tools/reference/make_fixtures.py,
// ctest `reference_fixtures`). Exits 77 (ctest: skipped) when there are no fixtures, e.g. because
// torch is not installed. The fixture directory is $MOE_FIXTURE_DIR if set, else the build's
// MOE_FIXTURE_DIR; tests read it with moe_test::fixture_dir() from fixture_dir.hpp.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <system_error>

#include "fixture_dir.hpp"

int main(int argc, char* argv[]) {
    const std::filesystem::path dir = moe_test::fixture_dir();
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec) || std::filesystem::is_empty(dir, ec)) {
        std::printf("parity fixtures not found (torch missing?): skipped [looked in %s]\n", dir.string().c_str());
        return 77;
    }
    return Catch::Session().run(argc, argv);
}
