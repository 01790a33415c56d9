// throws_with<E>(f, needle): f() must throw an E whose message contains `needle` (a clear error
// says what and where: the tests check both the type and the words).
#pragma once

#include <catch2/catch.hpp>

#include <string>
#include <utility>

namespace moe_test {

template <class E, class F>
void throws_with(F&& f, const std::string& needle) {
    try {
        std::forward<F>(f)();
        FAIL("no exception; expected one mentioning '" << needle << "'");
    } catch (const E& e) {
        INFO(e.what());
        CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
}

}  // namespace moe_test
