// The Catch2 main of the unit tests: one translation unit so the others compile faster.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
