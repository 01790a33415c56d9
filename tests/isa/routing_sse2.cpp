// tests/unit/test_routing_kernel.cpp again, compiled with -mno-avx -mno-sse4.1 after the build's
// own instruction-set flags (tests/CMakeLists.txt): the fused routing kernel's 4-lane paths and the
// generic overloads of arch/ (select_by_sign, gather) run as on a plain x86-64 build without
// -march, against the same textbook definition.
#include "../unit/test_routing_kernel.cpp"
