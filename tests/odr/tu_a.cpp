// Translation unit a of the ODR test: see odr_check.hpp.
#include "moe_all_headers.hpp"
#include "moe_all_headers.hpp"  // and the umbrella itself is include-guarded

#include "odr_check.hpp"

OdrProbe odr_probe_a() {
    OdrProbe p{};
    p.strides_fn = reinterpret_cast<void (*)()>(&moe::contiguous_strides);
    p.alignment = &moe::kAlignment;
    p.stride0 = moe::contiguous_strides(moe::Shape{2, 3, 4})[0];
    p.bf16_roundtrip = static_cast<float>(moe::bf16(1.5f));
    std::uint64_t h = 1469598103934665603ull;
    for (char c : moe::dtype_name(moe::DType::bf16)) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    p.name_hash = h;
    return p;
}

#include <cstdio>

int main() {
    const OdrProbe a = odr_probe_a();
    const OdrProbe b = odr_probe_b();
    int failures = 0;
    auto check = [&](bool ok, const char* what) {
        std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
        failures += ok ? 0 : 1;
    };
    check(a.strides_fn == b.strides_fn, "inline function has one address in both TUs");
    check(a.alignment == b.alignment, "inline variable has one address in both TUs");
    check(a.stride0 == 12 && b.stride0 == 12, "contiguous_strides agrees");
    check(a.bf16_roundtrip == 1.5f && b.bf16_roundtrip == 1.5f, "bf16 round trip agrees");
    check(a.name_hash == b.name_hash, "dtype_name agrees");
    std::printf("%d passed, %d failed\n", 5 - failures, failures);
    return failures == 0 ? 0 : 1;
}
