// Shared declarations of the two-translation-unit ODR test (tests/odr/tu_a.cpp, tu_b.cpp).
// Both TUs include every public header (generated moe_all_headers.hpp); linking them together
// fails on any non-inline definition in a header, and the checks below catch inline entities
// that are not unique across TUs.
#pragma once

#include <cstdint>

struct OdrProbe {
    void (*strides_fn)();      // &moe::contiguous_strides: one definition program-wide
    const void* alignment;     // &moe::kAlignment (inline variable): one object program-wide
    std::int64_t stride0;      // contiguous_strides({2, 3, 4})[0]
    float bf16_roundtrip;      // float(bf16(1.5f))
    std::uint64_t name_hash;   // hash of dtype_name(DType::bf16)
};

OdrProbe odr_probe_a();
OdrProbe odr_probe_b();
