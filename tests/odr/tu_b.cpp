// Translation unit b of the ODR test: see odr_check.hpp.
#include "moe_all_headers.hpp"
#include "moe_all_headers.hpp"  // and the umbrella itself is include-guarded

#include "odr_check.hpp"

OdrProbe odr_probe_b() {
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
