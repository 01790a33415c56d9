// tests/unit/test_int8.cpp again, compiled with -mno-avx512f after the build's own instruction-set
// flags (tests/CMakeLists.txt): on an AVX-512 machine, the int8 AVX2 paths (the vpmaddubsw kernel
// and the activation quantiser's 8-lane loop) run as they do on Zen 3, against the same integer
// model and definition. Where the build has no AVX2, it tests the scalar paths again.
#include "../unit/test_int8.cpp"
