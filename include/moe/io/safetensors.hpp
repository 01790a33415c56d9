// moe/io/safetensors.hpp - zero-copy, validating reader and an atomic (optionally streaming)
// writer for .safetensors.
//
// File layout (https://github.com/huggingface/safetensors):
//   [8 bytes: N, little-endian u64][N bytes: JSON header][data section]
// The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
// relative to the data section) plus an optional "__metadata__" object of string -> string.
//
// Reading: SafetensorsFile::open maps the file (mmap PROT_READ, MAP_PRIVATE) and validates the
// whole header up front (parse_header); tensors are views into the mapping and no tensor byte
// is read until the caller reads it. Copies of a SafetensorsFile share the mapping; it is
// unmapped when the last copy and the last keep_alive() holder are gone.
//
// Alignment: the format does not require tensors to be aligned, but TensorView hands out typed
// pointers. When a tensor's address is not a multiple of its element size, get() copies it once
// into a 64-byte aligned buffer owned by the file (cached, thread-safe, kept alive like the
// mapping) and returns a view of the copy: zero_copy(name) tells which case applies. Files
// written by the Rust/Python reference (and by SafetensorsWriter) are always aligned: the header
// is padded to 8 bytes and tensors are laid out by descending element size.
//
// Sharded checkpoints (model-00001-of-00002.safetensors ... + model.safetensors.index.json, as
// Hugging Face's save_pretrained writes them): SafetensorsFile::open_index(index) maps every
// shard and returns one SafetensorsFile over all their tensors, so every reader of a single file
// (moe/io/checkpoint.hpp, the loaders) reads a sharded one unchanged. parse_safetensors_index
// is the index's strict reader (fuzzed: tests/fuzz/fuzz_safetensors_index.cpp).
//
// BOOL tensors are checked on get(): every byte must be 0 or 1 (reading another value through
// a bool* is undefined behaviour), otherwise get() throws FormatError.
//
// Thread safety: every const member function may be called concurrently.
// Platform: POSIX (open/fstat/mmap/rename), little-endian hosts.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/io/json.hpp"
#include "moe/io/mapped_file.hpp"

namespace moe::io {

static_assert(std::endian::native == std::endian::little,
              "moe::io safetensors support assumes a little-endian host (the format is little-endian)");

/// Largest header the reader accepts, in bytes (the reference implementation's limit).
inline constexpr std::uint64_t kMaxHeaderSize = 100'000'000;
/// Largest tensor rank the reader accepts in a header (get() further requires Shape::kMaxRank).
inline constexpr std::size_t kMaxHeaderRank = 64;

/// A dtype string that may appear in a safetensors header.
struct SafetensorsDType {
    std::string_view name;
    unsigned bits;     // element size in bits
    bool supported;    // false: recognised (layout is validated) but get() refuses it
    DType dtype;       // meaningful only when supported
};

/// Every dtype string the reader recognises; the supported ones first.
inline constexpr SafetensorsDType kSafetensorsDTypes[] = {
    {"F64", 64, true, DType::f64},      {"F32", 32, true, DType::f32},      {"F16", 16, true, DType::f16},
    {"BF16", 16, true, DType::bf16},    {"I64", 64, true, DType::i64},      {"I32", 32, true, DType::i32},
    {"I16", 16, true, DType::i16},      {"I8", 8, true, DType::i8},         {"U8", 8, true, DType::u8},
    {"BOOL", 8, true, DType::boolean},  {"U16", 16, true, DType::u16},      {"U32", 32, true, DType::u32},
    {"U64", 64, true, DType::u64},      {"F8_E4M3", 8, false, DType::u8},   {"F8_E5M2", 8, false, DType::u8},
    {"F8_E8M0", 8, false, DType::u8},   {"F6_E2M3", 6, false, DType::u8},   {"F6_E3M2", 6, false, DType::u8},
    {"F4", 4, false, DType::u8},        {"C64", 64, false, DType::u8},
};

/// One tensor entry of a parsed header.
struct TensorInfo {
    std::string dtype_name;            ///< as written ("F32", "F8_E4M3", ...)
    std::optional<DType> dtype;        ///< empty when the dtype is recognised but not supported
    unsigned dtype_bits = 0;           ///< element size in bits
    std::vector<index_t> shape;        ///< any rank up to kMaxHeaderRank; every dim fits index_t
    std::uint64_t begin = 0;           ///< data_offsets[0], relative to the data section
    std::uint64_t end = 0;             ///< data_offsets[1]
    std::size_t header_offset = 0;     ///< where the entry's key starts in the header (messages)
    std::uint32_t shard = 0;           ///< the file holding it (a sharded set: open_index); 0 otherwise

    std::uint64_t nbytes() const noexcept { return end - begin; }
    std::uint64_t numel() const noexcept {
        std::uint64_t n = 1;
        for (const index_t d : shape) n *= static_cast<std::uint64_t>(d);
        return n;
    }
};

/// A parsed and validated safetensors header.
struct SafetensorsHeader {
    std::uint64_t header_size = 0;     ///< N, the JSON length (including padding)
    std::uint64_t data_offset = 0;     ///< 8 + N: where the data section starts in the file
    std::uint64_t data_size = 0;       ///< bytes in the data section
    std::map<std::string, TensorInfo, std::less<>> tensors;  ///< by name
    std::map<std::string, std::string> metadata;              ///< "__metadata__"
};

namespace detail {

using ::moe::detail::cat;

/// 'name' rendered printable and bounded, quote_name.
inline std::string quote_name(std::string_view name) { return cat('\'', json::printable(name), '\''); }

inline std::string known_dtypes_list() {
    std::string s;
    for (const auto& d : kSafetensorsDTypes) {
        if (!s.empty()) s += ' ';
        s += d.name;
        if (!d.supported) s += "(unsupported)";
    }
    return s;
}

inline std::string supported_dtypes_list() {
    std::string s;
    for (const auto& d : kSafetensorsDTypes)
        if (d.supported) {
            if (!s.empty()) s += ' ';
            s += d.name;
        }
    return s;
}

inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
    if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
    out = a * b;
    return true;
}

// Reads one tensor entry {"dtype": ..., "shape": [...], "data_offsets": [b, e]}.
inline TensorInfo read_tensor_entry(json::Reader& r, const std::string& name, std::size_t key_at) {
    // Messages are built only on failure (this runs once per tensor of the header).
    const auto where_t = [&] { return cat("tensor ", quote_name(name)); };
    TensorInfo info;
    info.header_offset = key_at;
    const std::size_t value_at = [&] {
        const json::Type t = r.peek();
        if (t != json::Type::object)
            r.fail(detail::cat(where_t(), ": expected an object with the keys dtype, shape and data_offsets, found ",
                               json::type_name(t)));
        return r.offset();
    }();
    r.begin_object();
    bool has_dtype = false, has_shape = false, has_offsets = false;
    std::string key;
    while (r.next_key(key)) {
        const std::size_t at = r.key_offset();
        if (key == "dtype") {
            if (has_dtype) r.fail_at(at, detail::cat(where_t(), ": duplicate key 'dtype'"));
            has_dtype = true;
            if (r.peek() != json::Type::string)
                r.fail(detail::cat(where_t(), ": dtype must be a string, found ", json::type_name(r.peek())));
            const std::size_t dt_at = r.offset();
            r.read_string(info.dtype_name);
            const SafetensorsDType* found = nullptr;
            for (const auto& d : kSafetensorsDTypes)
                if (d.name == info.dtype_name) found = &d;
            if (!found)
                r.fail_at(dt_at, detail::cat(where_t(), ": unknown dtype ", quote_name(info.dtype_name),
                                             "; known dtypes: ", known_dtypes_list()));
            info.dtype_bits = found->bits;
            if (found->supported) info.dtype = found->dtype;
        } else if (key == "shape") {
            if (has_shape) r.fail_at(at, detail::cat(where_t(), ": duplicate key 'shape'"));
            has_shape = true;
            if (r.peek() != json::Type::array)
                r.fail(detail::cat(where_t(), ": shape must be an array of non-negative integers, found ",
                                   json::type_name(r.peek())));
            r.begin_array();
            while (r.next_element()) {
                if (info.shape.size() >= kMaxHeaderRank)
                    r.fail(detail::cat(where_t(), ": shape has more than ", kMaxHeaderRank, " dimensions"));
                const json::Type t = r.peek();
                if (t != json::Type::integer)
                    r.fail(detail::cat(where_t(), ": shape must be an array of non-negative integers, found ",
                                       json::type_name(t), " in it"));
                const std::size_t d_at = r.offset();
                const std::uint64_t d = r.read_u64();
                if (d > static_cast<std::uint64_t>(std::numeric_limits<index_t>::max()))
                    r.fail_at(d_at, detail::cat(where_t(), ": dimension ", d, " is too large"));
                info.shape.push_back(static_cast<index_t>(d));
            }
        } else if (key == "data_offsets") {
            if (has_offsets) r.fail_at(at, detail::cat(where_t(), ": duplicate key 'data_offsets'"));
            has_offsets = true;
            const auto bad = [&] { return where_t() + ": data_offsets must be [begin, end] (two non-negative integers)"; };
            if (r.peek() != json::Type::array) r.fail(detail::cat(bad(), ", found ", json::type_name(r.peek())));
            r.begin_array();
            std::uint64_t v[2] = {0, 0};
            for (int i = 0; i < 2; ++i) {
                if (!r.next_element()) r.fail(detail::cat(bad(), ", found ", i, " element(s)"));
                const json::Type t = r.peek();
                if (t != json::Type::integer) r.fail(detail::cat(bad(), ", found ", json::type_name(t), " in it"));
                v[i] = r.read_u64();
            }
            if (r.next_element()) r.fail(detail::cat(bad(), ", found more than two elements"));
            if (v[0] > v[1])
                r.fail_at(at, detail::cat(where_t(), ": data_offsets [", v[0], ", ", v[1], "]: begin ", v[0],
                                          " is after end ", v[1]));
            info.begin = v[0];
            info.end = v[1];
        } else {
            r.fail_at(at, detail::cat(where_t(), ": unexpected key ", quote_name(key),
                                      " (a tensor entry has exactly dtype, shape and data_offsets)"));
        }
    }
    const char* missing = !has_dtype ? "dtype" : !has_shape ? "shape" : !has_offsets ? "data_offsets" : nullptr;
    if (missing) r.fail_at(value_at, detail::cat(where_t(), " lacks the key '", missing, "'"));
    return info;
}

}  // namespace detail

/// Parses and validates the header of a complete safetensors file image. `where` names the
/// file in error messages. Throws FormatError on any violation of the format:
///  - file shorter than 8 bytes; header length 0, above kMaxHeaderSize or past the end of file;
///  - header not starting with '{', not valid (strict) JSON, or with duplicate keys;
///  - "__metadata__" not an object of string values;
///  - tensor entries that are not {dtype, shape, data_offsets} exactly, with an unknown dtype,
///    a shape that is not an array of non-negative integers (rank <= kMaxHeaderRank), an element
///    count or byte size overflowing 64 bits, data_offsets not [begin <= end];
///  - byte size (end - begin) != numel * element size; offsets outside the data section;
///  - tensors that overlap or leave gaps: sorted by offset they must tile the data section
///    exactly (first begins at 0, each begins where the previous ends, last ends at its end).
inline SafetensorsHeader parse_header(std::span<const std::byte> file, std::string_view where) {
    using detail::cat;
    using detail::quote_name;
    SafetensorsHeader h;
    check<FormatError>(file.size() >= 8, where, "file is ", file.size(),
                       " bytes, shorter than the 8-byte header length that starts a safetensors file");
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<std::uint64_t>(file[static_cast<std::size_t>(i)]);
    check<FormatError>(n != 0, where, "header length is 0 (the smallest header is '{}')");
    check<FormatError>(n <= kMaxHeaderSize, where, "header length ", n, " exceeds the ", kMaxHeaderSize,
                       "-byte limit of the reference implementation (corrupt or not a safetensors file?)");
    check<FormatError>(n <= file.size() - 8, where, "header length ", n,
                       " runs past the end of the file (only ", file.size() - 8,
                       " bytes follow the length prefix; truncated file?)");
    h.header_size = n;
    h.data_offset = 8 + n;
    h.data_size = file.size() - 8 - n;

    const std::string_view text(reinterpret_cast<const char*>(file.data()) + 8, static_cast<std::size_t>(n));
    if (text.front() != '{')
        throw FormatError(where, cat("header does not start with '{' (found '", json::printable(text.substr(0, 1)),
                                     "'); not a safetensors file?"));

    json::Options opt;
    opt.subject = "header JSON";
    opt.file_offset = 8;
    json::Reader r(text, where, opt);
    r.begin_object();
    bool has_metadata = false;
    std::string key;
    while (r.next_key(key)) {
        const std::size_t key_at = r.key_offset();
        if (key == "__metadata__") {
            if (has_metadata) r.fail_at(key_at, "duplicate key '__metadata__'");
            has_metadata = true;
            const json::Type t = r.peek();
            if (t != json::Type::object)
                r.fail(cat("__metadata__ must be an object of string values, found ", json::type_name(t)));
            r.begin_object();
            std::string mkey;
            while (r.next_key(mkey)) {
                const std::size_t mkey_at = r.key_offset();
                const json::Type vt = r.peek();
                if (vt != json::Type::string)
                    r.fail(cat("__metadata__ values must be strings, found ", json::type_name(vt), " for key ",
                               quote_name(mkey)));
                std::string value = r.read_string();
                if (!h.metadata.emplace(mkey, std::move(value)).second)
                    r.fail_at(mkey_at, cat("duplicate __metadata__ key ", quote_name(mkey)));
            }
            continue;
        }
        if (h.tensors.find(key) != h.tensors.end())
            r.fail_at(key_at, cat("duplicate tensor name ", quote_name(key)));
        TensorInfo info = detail::read_tensor_entry(r, key, key_at);
        h.tensors.emplace(key, std::move(info));
    }
    r.finish();

    // Sizes and bounds, tensor by tensor.
    for (const auto& entry : h.tensors) {
        const std::string& name = entry.first;  // (no structured binding: clang 14 cannot capture one)
        const TensorInfo& info = entry.second;
        const auto fail = [&](const auto&... what) -> void {
            throw FormatError(where, cat("tensor ", quote_name(name), ": ", what...));
        };
        std::uint64_t numel = 1;
        for (const index_t d : info.shape)
            if (!detail::checked_mul(numel, static_cast<std::uint64_t>(d), numel))
                fail("element count of shape ", shape_str(info.shape), " overflows 64 bits");
        std::uint64_t bits = 0;
        if (!detail::checked_mul(numel, info.dtype_bits, bits))
            fail("byte size of shape ", shape_str(info.shape), " ", info.dtype_name, " overflows 64 bits");
        if (bits % 8 != 0)
            fail(numel, " elements of ", info.dtype_name, " do not fill a whole number of bytes");
        if (info.nbytes() != bits / 8)
            fail("data_offsets [", info.begin, ", ", info.end, "] span ", info.nbytes(), " bytes but shape ",
                 shape_str(info.shape), " of ", info.dtype_name, " needs ", bits / 8);
        if (info.end > h.data_size)
            fail("data_offsets [", info.begin, ", ", info.end, "] lie outside the data section of ", h.data_size,
                 " bytes (truncated file?)");
    }

    // Coverage: sorted by offsets, the tensors must tile [0, data_size) exactly.
    std::vector<std::pair<const std::string*, const TensorInfo*>> order;
    order.reserve(h.tensors.size());
    for (const auto& [name, info] : h.tensors) order.emplace_back(&name, &info);
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
        if (a.second->begin != b.second->begin) return a.second->begin < b.second->begin;
        if (a.second->end != b.second->end) return a.second->end < b.second->end;
        return *a.first < *b.first;
    });
    std::uint64_t at = 0;
    const std::string* prev = nullptr;
    for (const auto& [name, info] : order) {
        if (info->begin < at)
            throw FormatError(where, cat("tensor ", quote_name(*name), " (bytes [", info->begin, ", ", info->end,
                                         ")) overlaps tensor ", quote_name(*prev), " (which ends at ", at, ")"));
        if (info->begin > at)
            throw FormatError(where, cat("gap of ", info->begin - at, " bytes in the data section before tensor ",
                                         quote_name(*name), " (bytes [", at, ", ", info->begin,
                                         ") belong to no tensor; tensors must be contiguous)"));
        at = info->end;
        prev = name;
    }
    if (at != h.data_size)
        throw FormatError(where, cat("the last ", h.data_size - at, " bytes of the data section (",
                                     h.data_size, " bytes) belong to no tensor; tensors must cover it exactly"));
    return h;
}

namespace detail {

struct SafetensorsState {
    std::string path;
    std::shared_ptr<const void> storage;  // the mapping or the owned buffer
    std::span<const std::byte> bytes;     // the whole file image (empty for a sharded set)
    SafetensorsHeader header;
    std::vector<std::shared_ptr<const SafetensorsState>> shards;  // a sharded set's files (open_index)
    mutable std::mutex mutex;             // guards `realigned`
    mutable std::map<std::string, Tensor, std::less<>> realigned;  // aligned copies of misaligned tensors
};

// Similarity for "did you mean": shared prefix + shared suffix, relative to the longer name.
inline double name_similarity(std::string_view a, std::string_view b) noexcept {
    const std::size_t m = std::min(a.size(), b.size());
    std::size_t p = 0;
    while (p < m && a[p] == b[p]) ++p;
    std::size_t s = 0;
    while (s < m - p && a[a.size() - 1 - s] == b[b.size() - 1 - s]) ++s;
    const std::size_t longer = std::max(a.size(), b.size());
    return longer == 0 ? 1.0 : static_cast<double>(p + s) / static_cast<double>(longer);
}


}  // namespace detail

/// A validated safetensors file, mapped (open) or owned (from_buffer). Cheap to copy: copies
/// share the mapping. Tensors are views into it (see the alignment note at the top).
/// model.safetensors.index.json as Hugging Face writes it beside sharded weights:
/// {"metadata": {...}, "weight_map": {"<tensor>": "<shard file>", ...}}.
struct SafetensorsIndex {
    std::vector<std::pair<std::string, std::string>> weight_map;  ///< tensor -> shard file, in file order
    std::vector<std::string> files;                               ///< the distinct shard files, first-seen order
};

/// Parses an index's text. FormatError (naming `where` and the byte) unless it is a JSON object
/// whose "weight_map" is an object of strings naming shard files: plain file names (no '/',
/// no "..", no NUL) ending in ".safetensors". "metadata" and other members are not read.
inline SafetensorsIndex parse_safetensors_index(std::string_view text, std::string_view where) {
    using detail::cat;
    json::Options opt;
    opt.subject = "safetensors index";
    const json::Value doc = json::parse(text, where, opt);
    check<FormatError>(doc.is_object(), where, "expected a JSON object with a \"weight_map\", found ",
                       json::type_name(doc.type()));
    const json::Value* map = doc.find("weight_map");
    check<FormatError>(map != nullptr, where, "no \"weight_map\" member (a model.safetensors.index.json maps every ",
                       "tensor to its shard file)");
    check<FormatError>(map->is_object(), where, "\"weight_map\" must be an object, found ",
                       json::type_name(map->type()));
    SafetensorsIndex idx;
    std::set<std::string, std::less<>> seen;
    for (const auto& m : map->as_object()) {
        check<FormatError>(m.value.is_string(), where, "weight_map[", detail::quote_name(m.key),
                           "] must be a file name (a string), found ", json::type_name(m.value.type()),
                           " at byte ", m.value.offset());
        const std::string& f = m.value.as_string();
        const bool ok = f.size() > 12 && f.ends_with(".safetensors") && f.find('/') == std::string::npos &&
                        f.find('\\') == std::string::npos && f.find('\0') == std::string::npos && f != "." && f != "..";
        check<FormatError>(ok, where, "weight_map[", detail::quote_name(m.key), "] = ", detail::quote_name(f),
                           " is not a shard file name beside the index (a plain name ending in .safetensors)");
        if (seen.insert(f).second) idx.files.push_back(f);
        idx.weight_map.emplace_back(m.key, f);
    }
    check<FormatError>(!idx.weight_map.empty(), where, "\"weight_map\" is empty");
    return idx;
}

class SafetensorsFile {
public:
    /// Maps and validates `path`. Throws NotFoundError (no such file), IOError (other OS
    /// failures) or FormatError (see parse_header).
    static SafetensorsFile open(const std::filesystem::path& path) {
        MappedFile m = MappedFile::open(path);
        if (m.bytes.size() < 8) {
            // parse_header checks only the size here and throws "file is <size> bytes, shorter
            // than ...", so a zeroed stand-in of the real size is enough.
            const std::array<std::byte, 8> none{};
            (void)parse_header(std::span<const std::byte>(none.data(), m.bytes.size()), m.path);
        }
        return SafetensorsFile(m.path, std::move(m.keep_alive), m.bytes);
    }

    /// Takes ownership of a complete file image (tests, fuzzing, in-memory files) and validates
    /// it exactly as open() does. `name` is used in error messages and returned by path().
    static SafetensorsFile from_buffer(std::vector<std::byte> bytes, std::string name = "<memory>") {
        auto owned = std::make_shared<const std::vector<std::byte>>(std::move(bytes));
        const std::span<const std::byte> view(owned->data(), owned->size());
        return SafetensorsFile(std::move(name), std::move(owned), view);
    }


    /// Opens a sharded checkpoint through its index (model.safetensors.index.json, see
    /// parse_safetensors_index): every shard beside it is mapped and validated, and the result
    /// is one SafetensorsFile holding all their tensors (get() reads each in its own mapping;
    /// keep_alive() keeps them all). path() is the index's path; bytes() is empty. Errors:
    /// NotFoundError (the index or a shard it names is missing), FormatError (a bad index, a
    /// tensor in two shards, a weight_map entry whose shard does not hold it) and whatever
    /// open() throws for a shard.
    static SafetensorsFile open_index(const std::filesystem::path& index_path) {
        using detail::cat;
        using detail::quote_name;
        MappedFile m = MappedFile::open(index_path);
        const SafetensorsIndex idx = parse_safetensors_index(m.text(), m.path);
        auto s = std::make_shared<detail::SafetensorsState>();
        s->path = m.path;
        std::map<std::string, std::uint32_t, std::less<>> shard_of_file;
        for (const std::string& f : idx.files) {
            const std::filesystem::path p = index_path.parent_path() / f;
            std::error_code ec;
            if (!std::filesystem::exists(p, ec))
                throw NotFoundError(m.path, cat("names the shard ", quote_name(f), ", which does not exist (",
                                                p.string(), ")"));
            const SafetensorsFile shard = open(p);
            const auto k = static_cast<std::uint32_t>(s->shards.size());
            shard_of_file.emplace(f, k);
            for (const auto& [name, info] : shard.header().tensors) {
                TensorInfo ti = info;
                ti.shard = k;
                const auto [it, fresh] = s->header.tensors.emplace(name, std::move(ti));
                if (!fresh)
                    throw FormatError(m.path, cat("tensor ", quote_name(name), " is in two shards: ",
                                                  quote_name(idx.files[it->second.shard]), " and ", quote_name(f)));
            }
            if (s->shards.empty()) s->header.metadata = shard.metadata();
            s->shards.push_back(shard.s_);
        }
        for (const auto& [name, f] : idx.weight_map) {
            const auto it = s->header.tensors.find(name);
            const std::uint32_t k = shard_of_file.at(f);
            check<FormatError>(it != s->header.tensors.end() && it->second.shard == k, m.path, "weight_map puts ",
                               quote_name(name), " in ", quote_name(f), ", which does not hold it",
                               it == s->header.tensors.end() ? std::string(" (no shard does)")
                                                             : cat(" (", quote_name(idx.files[it->second.shard]), " does)"));
        }
        return SafetensorsFile(std::shared_ptr<const detail::SafetensorsState>(std::move(s)));
    }

    SafetensorsFile(const SafetensorsFile&) = default;
    SafetensorsFile& operator=(const SafetensorsFile&) = default;
    ~SafetensorsFile() = default;
    // No move operations on purpose: moves copy, so a SafetensorsFile is never empty.

    /// The path given to open() (or the name given to from_buffer()).
    const std::string& path() const noexcept { return s_->path; }
    /// True for a sharded set opened through its index.
    bool sharded() const noexcept { return !s_->shards.empty(); }
    /// Number of tensors.
    std::size_t size() const noexcept { return s_->header.tensors.size(); }
    bool contains(std::string_view name) const { return s_->header.tensors.find(name) != s_->header.tensors.end(); }
    /// Tensor names, sorted (byte-wise).
    std::vector<std::string> names() const {
        std::vector<std::string> v;
        v.reserve(size());
        for (const auto& kv : s_->header.tensors) v.push_back(kv.first);
        return v;
    }
    /// The "__metadata__" map (empty when the file has none).
    const std::map<std::string, std::string>& metadata() const noexcept { return s_->header.metadata; }
    /// The parsed header (every tensor's dtype string, shape and offsets).
    const SafetensorsHeader& header() const noexcept { return s_->header; }
    /// The header entry of `name`; throws NotFoundError like get().
    const TensorInfo& info(std::string_view name) const { return lookup(name); }
    /// The whole file image (the mapping); empty for a sharded set (open_index).
    std::span<const std::byte> bytes() const noexcept { return s_->bytes; }
    /// Keeps the mapping (and every view handed out) alive while held.
    std::shared_ptr<const void> keep_alive() const noexcept { return s_; }

    /// True when get(name) returns a view into the file itself; false when the tensor is
    /// misaligned for its dtype and get() returns an aligned copy. Throws NotFoundError.
    bool zero_copy(std::string_view name) const {
        const TensorInfo& ti = lookup(name);
        if (!ti.dtype || ti.nbytes() == 0) return true;
        return reinterpret_cast<std::uintptr_t>(address(ti)) % dtype_size(*ti.dtype) == 0;
    }

    /// A view of tensor `name`, valid while this file, a copy of it, or keep_alive() lives.
    /// Throws NotFoundError (unknown name, with suggestions), DTypeError (dtype recognised but
    /// not supported, e.g. F8_E4M3), ShapeError (rank above Shape::kMaxRank, or an empty tensor
    /// whose other dimensions multiply past index_t) or FormatError (a BOOL byte other than 0/1).
    TensorView get(std::string_view name) const {
        const TensorInfo& ti = lookup(name);
        using detail::quote_name;
        if (!ti.dtype)
            throw DTypeError(path(), detail::cat("tensor ", quote_name(name), " has dtype ", ti.dtype_name,
                                                 ", which moe does not support (supported: ",
                                                 detail::supported_dtypes_list(), ")"));
        if (ti.shape.size() > static_cast<std::size_t>(Shape::kMaxRank))
            throw ShapeError(path(), detail::cat("tensor ", quote_name(name), " has rank ", ti.shape.size(),
                                                 " (shape ", shape_str(ti.shape), "); moe tensors have at most ",
                                                 Shape::kMaxRank, " dimensions"));
        const DType dt = *ti.dtype;
        // An empty tensor's other dimensions may be huge ([0, 2^62, 4] is valid in the format):
        // its non-zero dimensions must multiply to a byte count that fits index_t, or the element
        // counts and strides moe computes from the shape would overflow.
        {
            const auto limit = static_cast<std::uint64_t>(std::numeric_limits<index_t>::max()) / dtype_size(dt);
            std::uint64_t prod = 1;
            for (const index_t d : ti.shape)
                if (d != 0 && (!detail::checked_mul(prod, static_cast<std::uint64_t>(d), prod) || prod > limit))
                    throw ShapeError(path(), detail::cat("tensor ", quote_name(name), " has shape ", shape_str(ti.shape),
                                                         ", whose non-zero dimensions hold more than ", limit, " ",
                                                         ti.dtype_name, " elements (moe's counts and strides are ",
                                                         "64-bit signed)"));
        }
        const Shape shape(ti.shape.begin(), ti.shape.end());
        const std::byte* p = address(ti);
        if (dt == DType::boolean)
            for (std::uint64_t i = 0; i < ti.nbytes(); ++i) {
                const auto b = std::to_integer<unsigned>(p[i]);
                if (b > 1)
                    throw FormatError(path(), detail::cat("tensor ", quote_name(name), " (BOOL) holds the byte ", b,
                                                          " at element ", i, "; BOOL elements must be 0 or 1"));
            }
        const std::size_t align = dtype_size(dt);
        const auto misalign = reinterpret_cast<std::uintptr_t>(p) % align;
        if (misalign == 0) return TensorView(p, dt, shape);
        // Nothing to read: point at the aligned address just below (still inside the file, as
        // the data section starts at least 8 bytes in).
        if (ti.nbytes() == 0) return TensorView(p - misalign, dt, shape);
        std::lock_guard<std::mutex> lock(s_->mutex);
        auto it = s_->realigned.find(name);
        if (it == s_->realigned.end()) {
            Tensor copy(dt, shape);
            std::memcpy(copy.raw(), p, static_cast<std::size_t>(ti.nbytes()));
            it = s_->realigned.emplace(std::string(name), std::move(copy)).first;
        }
        return it->second.view();
    }

    /// get(name), checking that the tensor has `dtype` and `shape`; throws DTypeError or
    /// ShapeError naming the tensor, the expectation and what the file holds.
    TensorView get(std::string_view name, DType dtype, const Shape& shape) const {
        const TensorInfo& ti = lookup(name);
        using detail::quote_name;
        if (!ti.dtype || *ti.dtype != dtype)
            throw DTypeError(path(), detail::cat("tensor ", quote_name(name), ": expected dtype ", dtype_name(dtype),
                                                 ", found ", ti.dtype_name));
        const bool same = ti.shape.size() == static_cast<std::size_t>(shape.rank()) &&
                          std::equal(ti.shape.begin(), ti.shape.end(), shape.begin());
        if (!same)
            throw ShapeError(path(), detail::cat("tensor ", quote_name(name), ": expected shape ", shape.str(),
                                                 ", found ", shape_str(ti.shape)));
        return get(name);
    }

private:
    explicit SafetensorsFile(std::shared_ptr<const detail::SafetensorsState> s) : s_(std::move(s)) {}
    SafetensorsFile(std::string name, std::shared_ptr<const void> storage, std::span<const std::byte> bytes) {
        auto s = std::make_shared<detail::SafetensorsState>();
        s->path = std::move(name);
        s->header = parse_header(bytes, s->path);
        s->storage = std::move(storage);
        s->bytes = bytes;
        s_ = std::move(s);
    }

    const std::byte* address(const TensorInfo& ti) const noexcept {
        const detail::SafetensorsState& f = s_->shards.empty() ? *s_ : *s_->shards[ti.shard];
        return f.bytes.data() + f.header.data_offset + ti.begin;
    }

    const TensorInfo& lookup(std::string_view name) const {
        const auto& tensors = s_->header.tensors;
        const auto it = tensors.find(name);
        if (it != tensors.end()) return it->second;
        // Suggestions: the closest names by shared prefix + suffix (typos, a missing "model."
        // prefix, another module name); linear in the number of tensors.
        std::vector<std::pair<double, const std::string*>> close;
        for (const auto& kv : tensors) {
            const double sim = detail::name_similarity(name, kv.first);
            if (sim >= 0.6) close.emplace_back(-sim, &kv.first);
        }
        const std::size_t k = std::min<std::size_t>(3, close.size());
        std::partial_sort(close.begin(), close.begin() + static_cast<std::ptrdiff_t>(k), close.end(),
                          [](const auto& a, const auto& b) { return a.first != b.first ? a.first < b.first : *a.second < *b.second; });
        std::string msg = detail::cat("no tensor named ", detail::quote_name(name), " (the file has ", tensors.size(),
                                      " tensors)");
        for (std::size_t i = 0; i < k; ++i)
            msg += (i == 0 ? "; did you mean " : " or ") + detail::quote_name(*close[i].second);
        if (k > 0) msg += "?";
        throw NotFoundError(path(), msg);
    }

    std::shared_ptr<const detail::SafetensorsState> s_;
};

/// Builds a safetensors file. add() copies the tensor's data at once (strided views are
/// compacted), so the source may die before write(); add_streamed() records a producer that
/// writes the tensor's bytes only when the file is written (to_bytes, write, stream), chunk by
/// chunk, so a file larger than memory streams to disk. Layout, as the Rust/Python reference:
/// the header JSON is compact, "__metadata__" first, then tensors by name (byte-wise); it is
/// padded with spaces to a multiple of 8 bytes; the data section holds the tensors sorted by
/// descending dtype (the reference's order: U64 I64 F64 F32 U32 I32 BF16 F16 U16 I16 I8 U8
/// BOOL) then by name, so every tensor is aligned to its element size.
class SafetensorsWriter {
public:
    /// Receives bytes of the file in order: sink(data, n).
    using ByteSink = std::function<void(const void*, std::size_t)>;
    /// Produces one streamed tensor: calls the sink, in order, with exactly its bytes.
    using Producer = std::function<void(const ByteSink&)>;

    /// Adds a tensor (copied now). Throws ConfigError on a duplicate or reserved name
    /// ("__metadata__"), a name that is not valid UTF-8, or a view without data.
    SafetensorsWriter& add(std::string name, const TensorView& tensor) {
        check_new_name(name, "SafetensorsWriter::add");
        if (tensor.raw() == nullptr && tensor.nbytes() != 0)
            throw ConfigError("SafetensorsWriter::add",
                              detail::cat("tensor ", detail::quote_name(name), " is a view without data"));
        Tensor t = Tensor::copy_of(tensor);
        const DType dt = t.dtype();
        const Shape sh = t.shape();
        tensors_.emplace(std::move(name), Stored{std::move(t), dt, sh, {}});
        return *this;
    }
    /// Adds a tensor of `dtype` and `shape` whose bytes produce(sink) writes when the file is
    /// written (possibly several times: once per to_bytes / write / stream call). It must call
    /// the sink with exactly numel * dtype_size bytes; another count is a FormatError naming the
    /// tensor (and write() removes its temporary file). Same name rules as add().
    SafetensorsWriter& add_streamed(std::string name, DType dtype, const Shape& shape, Producer produce) {
        check_new_name(name, "SafetensorsWriter::add_streamed");
        check<ConfigError>(static_cast<bool>(produce), "SafetensorsWriter::add_streamed", "tensor ",
                           detail::quote_name(name), " has no producer");
        tensors_.emplace(std::move(name), Stored{Tensor(), dtype, shape, std::move(produce)});
        return *this;
    }
    /// Adds a "__metadata__" entry. Throws ConfigError on a duplicate key or invalid UTF-8.
    SafetensorsWriter& add_metadata(std::string key, std::string value) {
        check_name(key, "metadata key");
        check_name(value, "metadata value");
        if (metadata_.find(key) != metadata_.end())
            throw ConfigError("SafetensorsWriter::add_metadata",
                              detail::cat("duplicate metadata key ", detail::quote_name(key)));
        metadata_.emplace(std::move(key), std::move(value));
        return *this;
    }

    std::size_t size() const noexcept { return tensors_.size(); }
    bool contains(std::string_view name) const { return tensors_.find(name) != tensors_.end(); }

    /// Bytes of the file (length prefix, header and data).
    std::uint64_t file_size() const {
        const Layout l = layout();
        return 8 + l.header.size() + l.data_size;
    }

    /// The complete file image.
    std::vector<std::byte> to_bytes() const {
        const Layout l = layout();
        std::vector<std::byte> out;
        out.reserve(8 + l.header.size() + static_cast<std::size_t>(l.data_size));
        emit(l, [&](const void* p, std::size_t n) {
            if (n == 0) return;
            // resize + memcpy, not insert: GCC 12 reports a false -Wstringop-overflow on the
            // inlined vector::insert of a byte range here.
            const std::size_t at = out.size();
            out.resize(at + n);
            std::memcpy(out.data() + at, p, n);
        });
        return out;
    }

    /// The file's bytes, in order, to sink(data, n) (streamed tensors chunk by chunk).
    void stream(const ByteSink& sink) const { emit(layout(), sink); }

    /// Writes the file atomically: to a temporary file in the same directory, fsync, rename.
    /// Throws IOError (the temporary file is removed).
    void write(const std::filesystem::path& path) const {
        const Layout l = layout();
        std::filesystem::path tmp = path;
        tmp += detail::cat(".tmp.", ::getpid(), ".", std::random_device{}());
        const std::string name = path.string();
        int fd = -1;
        do {
            fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0) throw IOError(name, detail::io_message(detail::cat("cannot create ", tmp.string()), errno));
        try {
            emit(l, [&](const void* p, std::size_t n) { write_all(fd, p, n, name); });
            if (::fsync(fd) != 0) throw IOError(name, detail::io_message("fsync failed", errno));
            const int rc = ::close(fd);
            fd = -1;
            if (rc != 0) throw IOError(name, detail::io_message("close failed", errno));
            if (::rename(tmp.c_str(), path.c_str()) != 0) throw IOError(name, detail::io_message("rename failed", errno));
        } catch (...) {
            if (fd >= 0) ::close(fd);
            ::unlink(tmp.c_str());
            throw;
        }
    }

    /// The header JSON as it will be written, padding included.
    std::string header_json() const { return layout().header; }

private:
    /// A tensor: its data (add) or its producer (add_streamed).
    struct Stored {
        Tensor data;
        DType type;
        Shape dims;
        Producer produce;
        DType dtype() const noexcept { return type; }
        int rank() const noexcept { return dims.rank(); }
        const Shape& shape() const noexcept { return dims; }
        std::size_t nbytes() const noexcept {
            return produce ? static_cast<std::size_t>(dims.numel()) * dtype_size(type) : data.nbytes();
        }
    };
    using Entry = std::pair<const std::string, Stored>;
    struct Layout {
        std::string header;
        std::vector<const Entry*> order;  // data-section order
        std::uint64_t data_size = 0;
    };

    // The reference's dtype order (its Dtype enum, ascending); data is laid out descending.
    static int dtype_rank(DType t) noexcept {
        switch (t) {
            case DType::boolean: return 0;
            case DType::u8: return 1;
            case DType::i8: return 2;
            case DType::i16: return 3;
            case DType::u16: return 4;
            case DType::f16: return 5;
            case DType::bf16: return 6;
            case DType::i32: return 7;
            case DType::u32: return 8;
            case DType::f32: return 9;
            case DType::f64: return 10;
            case DType::i64: return 11;
            case DType::u64: return 12;
        }
        return 0;
    }

    void check_new_name(const std::string& name, const char* where) const {
        check_name(name, "tensor name");
        check<ConfigError>(name != "__metadata__", where, "'__metadata__' is reserved");
        if (tensors_.find(name) != tensors_.end())
            throw ConfigError(where, detail::cat("duplicate tensor name ", detail::quote_name(name)));
    }

    /// Length prefix, header, then every tensor's bytes in data-section order.
    static void emit(const Layout& l, const ByteSink& sink) {
        std::byte prefix[8];
        put_prefix(prefix, l.header.size());
        sink(prefix, 8);
        sink(l.header.data(), l.header.size());
        for (const Entry* e : l.order) {
            const Stored& t = e->second;
            if (!t.produce) {
                if (t.nbytes()) sink(t.data.raw(), t.nbytes());
                continue;
            }
            std::size_t produced = 0;
            t.produce([&](const void* p, std::size_t n) {
                produced += n;
                if (produced > t.nbytes())
                    throw FormatError("SafetensorsWriter",
                                      detail::cat("streamed tensor ", detail::quote_name(e->first),
                                                  " produced more than its ", t.nbytes(), " bytes"));
                if (n) sink(p, n);
            });
            if (produced != t.nbytes())
                throw FormatError("SafetensorsWriter", detail::cat("streamed tensor ", detail::quote_name(e->first),
                                                                   " produced ", produced, " bytes, expected ",
                                                                   t.nbytes()));
        }
    }

    static void check_name(std::string_view s, std::string_view what) {
        if (!json::valid_utf8(s))
            throw ConfigError("SafetensorsWriter", detail::cat(what, " ", detail::quote_name(s), " is not valid UTF-8"));
    }

    static void put_prefix(std::byte* out, std::uint64_t n) noexcept {
        for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((n >> (8 * i)) & 0xFF);
    }

    static void write_all(int fd, const void* data, std::size_t n, const std::string& name) {
        const auto* p = static_cast<const char*>(data);
        while (n > 0) {
            const std::size_t chunk = std::min<std::size_t>(n, std::size_t{1} << 30);
            const ssize_t w = ::write(fd, p, chunk);
            if (w < 0) {
                if (errno == EINTR) continue;
                throw IOError(name, detail::io_message("write failed", errno));
            }
            p += w;
            n -= static_cast<std::size_t>(w);
        }
    }

    Layout layout() const {
        Layout l;
        l.order.reserve(tensors_.size());
        for (const Entry& kv : tensors_) l.order.push_back(&kv);
        std::sort(l.order.begin(), l.order.end(), [](const Entry* a, const Entry* b) {
            const int ra = dtype_rank(a->second.dtype()), rb = dtype_rank(b->second.dtype());
            return ra != rb ? ra > rb : a->first < b->first;
        });
        std::map<const Entry*, std::pair<std::uint64_t, std::uint64_t>> offsets;
        for (const Entry* e : l.order) {
            offsets[e] = {l.data_size, l.data_size + e->second.nbytes()};
            l.data_size += e->second.nbytes();
        }
        std::string& h = l.header;
        h += '{';
        if (!metadata_.empty()) {
            h += "\"__metadata__\":{";
            bool first = true;
            for (const auto& [k, v] : metadata_) {
                if (!first) h += ',';
                first = false;
                json::append_string(h, k);
                h += ':';
                json::append_string(h, v);
            }
            h += '}';
        }
        bool first = metadata_.empty();
        for (const Entry& e : tensors_) {
            if (!first) h += ',';
            first = false;
            json::append_string(h, e.first);
            h += ":{\"dtype\":\"";
            h += dtype_name(e.second.dtype());
            h += "\",\"shape\":[";
            for (int i = 0; i < e.second.rank(); ++i) {
                if (i) h += ',';
                h += std::to_string(e.second.shape()[i]);
            }
            const auto [b, en] = offsets[&e];
            h += "],\"data_offsets\":[";
            h += std::to_string(b);
            h += ',';
            h += std::to_string(en);
            h += "]}";
        }
        h += '}';
        h.append((8 - h.size() % 8) % 8, ' ');
        return l;
    }

    std::map<std::string, Stored, std::less<>> tensors_;
    std::map<std::string, std::string> metadata_;
};

}  // namespace moe::io
