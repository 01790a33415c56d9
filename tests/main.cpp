// The Catch2 runner of the unit tests: one translation unit so the others compile faster.
// Exits 77 (ctest: skipped) when every test case it ran called MOE_SKIP and none failed; see
// unit/skip.hpp.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "unit/skip.hpp"

namespace {

struct SkipCounter : Catch::TestEventListenerBase {
    using TestEventListenerBase::TestEventListenerBase;
    void testCaseStarting(Catch::TestCaseInfo const&) override {
        auto& s = moe_test::skip_state();
        ++s.cases_run;
        s.current = false;
    }
    void testCaseEnded(Catch::TestCaseStats const&) override {
        auto& s = moe_test::skip_state();
        if (s.current) ++s.cases_skipped;
        s.current = false;
    }
};

}  // namespace

CATCH_REGISTER_LISTENER(SkipCounter)

int main(int argc, char* argv[]) {
    const int failed = Catch::Session().run(argc, argv);
    const auto& s = moe_test::skip_state();
    if (failed == 0 && s.cases_run > 0 && s.cases_skipped == s.cases_run) return 77;
    return failed;
}
