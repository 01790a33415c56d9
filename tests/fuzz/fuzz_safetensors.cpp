// libFuzzer target for the safetensors reader (and, through it, the strict JSON reader).
//
// Every input is loaded with SafetensorsFile::from_buffer. When it parses, every tensor is
// fetched and every byte of it read through a typed pointer of its dtype (so UBSan's alignment
// and bool checks see the accesses), a missing name is looked up (suggestion code), and the
// tensors are written back with SafetensorsWriter and re-read: the round trip must succeed and
// give the same names, dtypes, shapes, bytes and metadata. Only moe::Error is caught; anything
// else (another exception, a sanitizer report, a failed oracle) is a finding.
//
// Build and run (clang; from the repository root):
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
//       -Iinclude tests/fuzz/fuzz_safetensors.cpp -o /tmp/fuzz_st
//   mkdir -p /tmp/fuzz_corpus      # new inputs go here; the checked-in seeds are read only
//   /tmp/fuzz_st -max_total_time=60 -timeout=2 -max_len=4096 /tmp/fuzz_corpus tests/fuzz/corpus/safetensors
// Seeds: tests/fuzz/corpus/safetensors/, written by tests/fuzz/make_safetensors_seeds.py (valid
// files of every dtype and near-valid ones); the keywords (dtype, shape, F32, ...) come from them.
// A crash leaves crash-<sha1> in the working directory; replay it with /tmp/fuzz_st crash-<sha1>.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "moe/io.hpp"

namespace {

[[noreturn]] void finding(const char* what) {
    std::fprintf(stderr, "fuzz_safetensors: oracle failed: %s\n", what);
    std::abort();
}

template <class T>
std::uint64_t touch_typed(const moe::TensorView& v) {
    const T* p = v.data<T>();
    std::uint64_t h = 0;
    for (moe::index_t i = 0; i < v.numel(); ++i) {
        T x = p[i];  // typed load: UBSan checks alignment (and bool values)
        unsigned char b[sizeof(T)];
        std::memcpy(b, &x, sizeof(T));
        for (unsigned char c : b) h = h * 131 + c;
    }
    return h;
}

std::uint64_t touch(const moe::TensorView& v) {
    using moe::DType;
    switch (v.dtype()) {
        case DType::f32: return touch_typed<float>(v);
        case DType::bf16: return touch_typed<moe::bf16>(v);
        case DType::f16: return touch_typed<moe::f16>(v);
        case DType::f64: return touch_typed<double>(v);
        case DType::i64: return touch_typed<std::int64_t>(v);
        case DType::i32: return touch_typed<std::int32_t>(v);
        case DType::i16: return touch_typed<std::int16_t>(v);
        case DType::i8: return touch_typed<std::int8_t>(v);
        case DType::u8: return touch_typed<std::uint8_t>(v);
        case DType::boolean: return touch_typed<bool>(v);
        case DType::u16: return touch_typed<std::uint16_t>(v);
        case DType::u32: return touch_typed<std::uint32_t>(v);
        case DType::u64: return touch_typed<std::uint64_t>(v);
    }
    return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<std::byte> bytes(size);
    if (size) std::memcpy(bytes.data(), data, size);
    try {
        const auto f = moe::io::SafetensorsFile::from_buffer(std::move(bytes), "fuzz");
        const auto buf = f.bytes();
        moe::io::SafetensorsWriter w;
        volatile std::uint64_t sink = 0;
        for (const auto& name : f.names()) {
            const auto& ti = f.info(name);
            if (f.header().data_offset + ti.end > buf.size()) finding("tensor outside the file");
            try {
                const auto v = f.get(name);
                if (v.nbytes() != ti.nbytes()) finding("view size differs from data_offsets");
                const auto* p = static_cast<const std::byte*>(v.raw());
                if (f.zero_copy(name) && v.nbytes() && (p < buf.data() || p + v.nbytes() > buf.data() + buf.size()))
                    finding("zero-copy view outside the file");
                sink = sink + touch(v);
                w.add(name, v);
            } catch (const moe::Error&) {
                // unsupported dtype, rank > 8, invalid BOOL byte: refused cleanly
            }
        }
        for (const auto& [k, v] : f.metadata()) w.add_metadata(k, v);
        try {
            (void)f.get("model.layers.0.block_sparse_moe.gate.weight.missing");
        } catch (const moe::NotFoundError&) {
        }

        // Round trip: what was readable must be writable and read back identically.
        const auto again = moe::io::SafetensorsFile::from_buffer(w.to_bytes(), "roundtrip");
        if (again.size() != w.size()) finding("round trip lost tensors");
        if (again.metadata() != f.metadata()) finding("round trip changed metadata");
        for (const auto& name : again.names()) {
            const auto a = f.get(name), b = again.get(name);
            if (a.dtype() != b.dtype() || !(a.shape() == b.shape())) finding("round trip changed dtype/shape");
            if (a.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) != 0) finding("round trip changed bytes");
        }
    } catch (const moe::Error&) {
        // rejected input: fine
    }
    return 0;
}
