// MOE_SKIP(reason): ends the current Catch2 test case as *skipped*, with its reason.
//
// Catch2 v2 has no skip. The reason is printed (a warning), the test case returns, and the
// runner (tests/main.cpp) exits with 77 when every test case it ran was skipped and none failed.
// ctest runs each test case on its own (catch_discover_tests) with SKIP_RETURN_CODE 77, so the
// case is reported as skipped, with its reason in the output, never as passed. Use it only at the
// top level of a TEST_CASE body (it returns from the enclosing function).
#pragma once

#include <catch2/catch.hpp>

namespace moe_test {

/// Per-process skip bookkeeping of the test runner (test support, not library state).
struct SkipState {
    int cases_run = 0;      ///< test cases started
    int cases_skipped = 0;  ///< test cases that called MOE_SKIP
    bool current = false;   ///< the running test case called MOE_SKIP
};
inline SkipState& skip_state() {
    static SkipState s;
    return s;
}

}  // namespace moe_test

#define MOE_SKIP(...)                                      \
    do {                                                   \
        WARN("SKIPPED: " << __VA_ARGS__);                  \
        ::moe_test::skip_state().current = true;           \
        return;                                            \
    } while (0)
