// The safetensors I/O layer and its strict JSON reader: round trips through real files, the
// zero-copy and lifetime guarantees, a file laid out exactly as the Python/Rust reference writes
// it, one test per format violation (with a distinctive part of its message), and a random
// corruption property test (flip / overwrite / truncate / extend bytes of a valid file: the
// reader must either load views inside the buffer or throw moe::Error, never crash).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "moe/io.hpp"
#include "skip.hpp"

namespace moe_test_safetensors {  // this file's names (unity builds merge test files)

using namespace moe;
using moe::io::SafetensorsFile;
using moe::io::SafetensorsWriter;
namespace json = moe::io::json;
namespace fs = std::filesystem;

namespace {

// A unique file path under the temp directory, removed (with any writer leftovers) on exit.
struct TempPath {
    fs::path path;
    TempPath() {
        std::random_device rd;
        path = fs::temp_directory_path() /
               ("moe_st_" + std::to_string(::getpid()) + "_" + std::to_string(rd()) + std::to_string(rd()) +
                ".safetensors");
    }
    TempPath(const TempPath&) = delete;
    TempPath& operator=(const TempPath&) = delete;
    ~TempPath() {
        std::error_code ec;
        fs::remove(path, ec);
    }
    std::string str() const { return path.string(); }
};

std::vector<std::byte> bytes_of(std::string_view s) {
    std::vector<std::byte> v(s.size());
    if (!s.empty()) std::memcpy(v.data(), s.data(), s.size());
    return v;
}

template <class T>
void append_values(std::vector<std::byte>& out, std::initializer_list<T> values) {
    for (const T& v : values) {
        const std::size_t at = out.size();
        out.resize(at + sizeof(T));
        std::memcpy(out.data() + at, &v, sizeof(T));
    }
}

// A file image: the u64 length, the header (padded with spaces to 8 bytes if `pad`), the data.
std::vector<std::byte> file_image(std::string header, const std::vector<std::byte>& data = {}, bool pad = true) {
    if (pad) header.append((8 - header.size() % 8) % 8, ' ');
    std::vector<std::byte> out(8);
    const std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xFF);
    const auto h = bytes_of(header);
    out.insert(out.end(), h.begin(), h.end());
    out.insert(out.end(), data.begin(), data.end());
    return out;
}

std::vector<std::byte> zeros(std::size_t n) { return std::vector<std::byte>(n); }

std::vector<std::byte> read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> v(c.size());
    if (!c.empty()) std::memcpy(v.data(), c.data(), c.size());
    return v;
}

void write_file(const fs::path& p, const std::vector<std::byte>& bytes) {
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

bool inside(const void* p, std::size_t n, std::span<const std::byte> buf) {
    const auto* b = static_cast<const std::byte*>(p);
    return b >= buf.data() && b + n <= buf.data() + buf.size();
}

SafetensorsFile load(std::vector<std::byte> bytes) { return SafetensorsFile::from_buffer(std::move(bytes), "bad.safetensors"); }

}  // namespace

// A malformed image must throw FormatError whose message names the file and says `text`.
#define REQUIRE_FORMAT_ERROR(image, text)                                                                  \
    do {                                                                                                   \
        REQUIRE_THROWS_AS(load(image), moe::FormatError);                                                  \
        REQUIRE_THROWS_WITH(load(image), Catch::Contains(text) && Catch::Contains("bad.safetensors: "));   \
    } while (0)

// =============================================================================================
// JSON
// =============================================================================================

TEST_CASE("json: values, nesting, escapes and surrogate pairs decode to UTF-8", "[json]") {
    const auto v = json::parse(R"( {"a": [1, -2, 0, 1.5e3, true, false, null],
        "s": "q\"\\\/\b\f\n\r\t\u00e9\u20ac\ud83d\ude00\u0000z", "o": {}, "e": []} )");
    REQUIRE(v.is_object());
    const auto& a = v.find("a")->as_array();
    REQUIRE(a.size() == 7);
    CHECK(a[0].as_u64() == 1u);
    CHECK(a[1].as_i64() == -2);
    CHECK_FALSE(a[1].as_u64());
    CHECK(a[2].as_u64() == 0u);
    CHECK(a[3].type() == json::Type::real);
    CHECK(a[3].as_double() == 1500.0);
    CHECK_FALSE(a[3].as_u64());
    CHECK(a[4].as_bool());
    CHECK_FALSE(a[5].as_bool());
    CHECK(a[6].is_null());
    const std::string expected = std::string("q\"\\/\b\f\n\r\t\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80") + '\0' + "z";
    CHECK(v.find("s")->as_string() == expected);
    CHECK(v.find("o")->as_object().empty());
    CHECK(v.find("e")->as_array().empty());
    CHECK(v.find("missing") == nullptr);
    CHECK(json::parse("\"\xC3\xA9\"").as_string() == "\xC3\xA9");  // raw UTF-8 passes through
}

TEST_CASE("json: 64-bit integer limits", "[json]") {
    CHECK(json::parse("18446744073709551615").as_u64() == 18446744073709551615ull);
    CHECK(json::parse("-9223372036854775808").as_i64() == std::numeric_limits<std::int64_t>::min());
    CHECK(json::parse("9223372036854775807").as_i64() == std::numeric_limits<std::int64_t>::max());
    CHECK_FALSE(json::parse("9223372036854775808").as_i64());
    CHECK_FALSE(json::parse("-9223372036854775809").as_i64());
    REQUIRE_THROWS_WITH(json::parse("18446744073709551616"), Catch::Contains("does not fit in 64 bits"));

    json::Reader r("[7, 1.0, 1e3, -1, 9223372036854775808]", "t");
    r.begin_array();
    REQUIRE(r.next_element());
    CHECK(r.read_u64() == 7u);
    REQUIRE(r.next_element());
    REQUIRE_THROWS_WITH(r.read_u64(), Catch::Contains("non-integer number 1.0"));
}

TEST_CASE("json: Reader rejects floats, exponents and negatives where an integer is required", "[json]") {
    for (const char* text : {"1.5", "1e3", "1E+2", "-0.0"}) {
        json::Reader r(text, "t");
        REQUIRE_THROWS_WITH(r.read_u64(), Catch::Contains("found the non-integer number"));
    }
    json::Reader neg("-3", "t");
    REQUIRE_THROWS_WITH(neg.read_u64(), Catch::Contains("expected a non-negative integer, found -3"));
    json::Reader s("\"3\"", "t");
    REQUIRE_THROWS_WITH(s.read_u64(), Catch::Contains("found a string"));
    json::Reader big("9223372036854775808", "t");
    REQUIRE_THROWS_WITH(big.read_i64(), Catch::Contains("does not fit in a signed 64-bit"));
}

TEST_CASE("json: strictness, with what and where in the message", "[json]") {
    struct Case {
        std::string text;
        const char* message;
    };
    const std::vector<Case> cases = {
        {"{} x", "trailing characters"},
        {"{}{}", "trailing characters"},
        {R"({"a":1,"a":2})", "duplicate key 'a'"},
        {"\"a\nb\"", "control character 0x0A"},
        {"\"a\x01\"", "control character 0x01"},
        {R"("\ud800")", "high surrogate not followed"},
        {R"("\ud800\u0041")", "not followed by a low surrogate"},
        {R"("\udc00")", "lone low surrogate"},
        {R"("\x")", "invalid escape sequence"},
        {R"("\u12G4")", "4 hex digits"},
        {"\"\xC0\x80\"", "invalid UTF-8"},          // overlong NUL
        {"\"\xED\xA0\x80\"", "invalid UTF-8"},      // encoded surrogate
        {"\"\xF4\x90\x80\x80\"", "invalid UTF-8"},  // above U+10FFFF
        {"\"\xE2\x82\"", "invalid UTF-8"},          // truncated sequence
        {"01", "leading zeros"},
        {"+1", "unexpected character '+'"},
        {"1.", "digit after the decimal point"},
        {"1e", "digit in the exponent"},
        {"-", "expected a digit"},
        {"[1,]", "trailing comma"},
        {R"({"a":1,})", "trailing comma"},
        {"[1 2]", "expected ',' or ']'"},
        {R"({"a" 1})", "expected ':'"},
        {"{1:2}", "expected a string key"},
        {"[", "missing ']'"},
        {R"({"a":1)", "missing '}'"},
        {"\"abc", "unterminated string"},
        {"", "unexpected end of the text"},
        {"   ", "unexpected end of the text"},
        {"NaN", "unexpected character 'N'"},
        {"tru", "expected a boolean"},
        {"nul", "expected null"},
        {"\v1", "unexpected character"},
        {"1e999", "out of the range of a double"},
    };
    for (const auto& c : cases) {
        INFO(json::printable(c.text));
        REQUIRE_THROWS_AS(json::parse(c.text, "doc.json"), moe::FormatError);
        REQUIRE_THROWS_WITH(json::parse(c.text, "doc.json"),
                            Catch::Contains(c.message) && Catch::StartsWith("doc.json: invalid JSON at byte "));
    }
    REQUIRE_THROWS_WITH(json::parse("[1, 2, x]"), Catch::Contains("at byte 7"));
}

TEST_CASE("json: nesting depth limit", "[json]") {
    const auto nested = [](int n) { return std::string(static_cast<std::size_t>(n), '[') + std::string(static_cast<std::size_t>(n), ']'); };
    REQUIRE_NOTHROW(json::parse(nested(64)));
    REQUIRE_THROWS_WITH(json::parse(nested(65)), Catch::Contains("nesting deeper than 64 levels"));
    json::Options o;
    o.max_depth = 3;
    REQUIRE_NOTHROW(json::parse("[[[]]]", "t", o));
    REQUIRE_THROWS_WITH(json::parse("[[[[]]]]", "t", o), Catch::Contains("nesting deeper than 3"));
    REQUIRE_THROWS_WITH(json::parse(std::string(100000, '[')), Catch::Contains("nesting deeper"));
}

TEST_CASE("json: append_string escapes and round-trips", "[json]") {
    const std::string raw = std::string("a\"b\\c/\n\t\x01\x1f\x7f") + '\0' + "\xC3\xA9";
    std::string lit;
    json::append_string(lit, raw);
    CHECK(lit == std::string("\"a\\\"b\\\\c/\\n\\t\\u0001\\u001f\x7f\\u0000\xC3\xA9\""));
    CHECK(json::parse(lit).as_string() == raw);
    CHECK(json::valid_utf8("\xC3\xA9\xF0\x9F\x98\x80"));
    CHECK_FALSE(json::valid_utf8("\xC3"));
    CHECK_FALSE(json::valid_utf8("\xFF"));
}

// =============================================================================================
// safetensors: reading and writing
// =============================================================================================

TEST_CASE("safetensors: round trip f32, bf16, f16, i64, u8 and metadata through a file", "[safetensors]") {
    const std::vector<float> w = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
    std::vector<bf16> b;
    std::vector<f16> h;
    for (float x : {1.0f, -3.5f, 65504.0f, 0.099975586f}) {
        b.push_back(bf16(x));
        h.push_back(f16(x));
    }
    const std::vector<std::int64_t> ids = {0, -1, std::numeric_limits<std::int64_t>::max(), 42};
    const std::vector<std::uint8_t> bytes = {0, 1, 2, 255, 7};

    SafetensorsWriter wr;
    wr.add("model.layers.0.block_sparse_moe.experts.3.w1.weight", Tensor::from<float>({2, 3}, w))
        .add("model.layers.0.block_sparse_moe.gate.weight", Tensor::from<bf16>({2, 2}, b))
        .add("half", Tensor::from<f16>({4}, h))
        .add("ids", Tensor::from<std::int64_t>({4}, ids))
        .add("mask.bytes", Tensor::from<std::uint8_t>({5}, bytes))
        .add_metadata("format", "pt")
        .add_metadata("note", "quotes \" and \\ and \xC3\xA9");
    CHECK(wr.size() == 5);

    TempPath tmp;
    wr.write(tmp.path);
    const auto f = SafetensorsFile::open(tmp.path);
    CHECK(f.path() == tmp.str());
    CHECK(f.size() == 5);
    CHECK(f.names() == std::vector<std::string>{"half", "ids", "mask.bytes",
                                                "model.layers.0.block_sparse_moe.experts.3.w1.weight",
                                                "model.layers.0.block_sparse_moe.gate.weight"});
    CHECK(f.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"note", "quotes \" and \\ and \xC3\xA9"}});
    CHECK(f.contains("ids"));
    CHECK_FALSE(f.contains("id"));

    const auto vw = f.get("model.layers.0.block_sparse_moe.experts.3.w1.weight", DType::f32, {2, 3});
    CHECK(std::vector<float>(vw.data<float>(), vw.data<float>() + 6) == w);
    const auto vb = f.get("model.layers.0.block_sparse_moe.gate.weight", DType::bf16, {2, 2});
    for (std::size_t i = 0; i < b.size(); ++i) CHECK(vb.data<bf16>()[i] == b[i]);
    const auto vh = f.get("half");
    REQUIRE(vh.dtype() == DType::f16);
    for (std::size_t i = 0; i < h.size(); ++i) CHECK(vh.data<f16>()[i] == h[i]);
    const auto vi = f.get("ids", DType::i64, {4});
    CHECK(std::vector<std::int64_t>(vi.data<std::int64_t>(), vi.data<std::int64_t>() + 4) == ids);
    const auto vu = f.get("mask.bytes", DType::u8, {5});
    CHECK(std::vector<std::uint8_t>(vu.data<std::uint8_t>(), vu.data<std::uint8_t>() + 5) == bytes);

    // the in-memory image is byte-identical to the file, and loads the same way
    CHECK(wr.to_bytes() == read_file(tmp.path));
    const auto m = SafetensorsFile::from_buffer(wr.to_bytes());
    CHECK(m.path() == "<memory>");
    CHECK(m.names() == f.names());
    // no temporary file is left next to the target
    for (const auto& e : fs::directory_iterator(tmp.path.parent_path()))
        CHECK(e.path().filename().string().rfind(tmp.path.filename().string() + ".tmp", 0) != 0);
}

TEST_CASE("safetensors: 0-d, empty and all remaining dtypes", "[safetensors]") {
    SafetensorsWriter wr;
    wr.add("scalar", Tensor::from<float>(Shape{}, std::vector<float>{7.5f}));
    wr.add("empty", Tensor(DType::f32, {0}));
    wr.add("empty2d", Tensor(DType::bf16, {3, 0}));
    wr.add("f64", Tensor::from<double>({2}, std::vector<double>{1.0 / 3, -2}));
    wr.add("i32", Tensor::from<std::int32_t>({1}, std::vector<std::int32_t>{-5}));
    wr.add("i16", Tensor::from<std::int16_t>({1}, std::vector<std::int16_t>{-6}));
    wr.add("i8", Tensor::from<std::int8_t>({1}, std::vector<std::int8_t>{-7}));
    wr.add("u16", Tensor::from<std::uint16_t>({1}, std::vector<std::uint16_t>{60000}));
    wr.add("u32", Tensor::from<std::uint32_t>({1}, std::vector<std::uint32_t>{4000000000u}));
    wr.add("u64", Tensor::from<std::uint64_t>({1}, std::vector<std::uint64_t>{~0ull}));
    wr.add("bool", Tensor::from<bool>({3}, std::array<bool, 3>{true, false, true}));
    TempPath tmp;
    wr.write(tmp.path);
    const auto f = SafetensorsFile::open(tmp.path);
    REQUIRE(f.size() == 11);

    const auto s = f.get("scalar", DType::f32, Shape{});
    CHECK(s.rank() == 0);
    CHECK(s.numel() == 1);
    CHECK(*s.data<float>() == 7.5f);
    const auto e = f.get("empty", DType::f32, {0});
    CHECK(e.numel() == 0);
    CHECK(e.nbytes() == 0);
    CHECK(f.info("empty").begin == f.info("empty").end);
    CHECK(f.get("empty2d", DType::bf16, {3, 0}).numel() == 0);
    CHECK(f.get("f64").data<double>()[0] == 1.0 / 3);
    CHECK(f.get("i32").data<std::int32_t>()[0] == -5);
    CHECK(f.get("i16").data<std::int16_t>()[0] == -6);
    CHECK(f.get("i8").data<std::int8_t>()[0] == -7);
    CHECK(f.get("u16").data<std::uint16_t>()[0] == 60000);
    CHECK(f.get("u32").data<std::uint32_t>()[0] == 4000000000u);
    CHECK(f.get("u64").data<std::uint64_t>()[0] == ~0ull);
    const auto bv = f.get("bool", DType::boolean, {3});
    CHECK(bv.data<bool>()[0]);
    CHECK_FALSE(bv.data<bool>()[1]);
    CHECK(bv.data<bool>()[2]);
    for (const auto& n : f.names()) CHECK(f.zero_copy(n));
}

TEST_CASE("safetensors: an empty file (no tensors) and metadata only", "[safetensors]") {
    // The reference writes exactly these bytes (its tests pin them).
    std::vector<std::byte> empty = SafetensorsWriter().to_bytes();
    CHECK(empty == file_image("{}"));
    CHECK(empty.size() == 16);
    CHECK(SafetensorsFile::from_buffer(empty).size() == 0);
    SafetensorsWriter w;
    w.add_metadata("framework", "pt");
    const auto bytes = w.to_bytes();
    CHECK(bytes == file_image(R"({"__metadata__":{"framework":"pt"}})"));
    CHECK(bytes.size() == 8 + 40);
    CHECK(SafetensorsFile::from_buffer(bytes).metadata().at("framework") == "pt");
}

TEST_CASE("safetensors: writer output is byte-identical to the reference's for one tensor", "[safetensors]") {
    // From the Rust crate's tests (serialize of {"attn.0": F32 [1,2,3] 0..5}): a 64-byte header.
    const std::vector<float> v = {0, 1, 2, 3, 4, 5};
    SafetensorsWriter w;
    w.add("attn.0", Tensor::from<float>({1, 2, 3}, v));
    std::vector<std::byte> data;
    for (float x : v) append_values(data, {x});
    const auto expected = file_image(R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})", data);
    CHECK(w.to_bytes() == expected);
    // ... and {"attn0": F32 [1,1,2,3]}: 65 bytes of JSON padded with 7 spaces to 72.
    SafetensorsWriter w2;
    w2.add("attn0", Tensor::from<float>({1, 1, 2, 3}, v));
    const auto out = w2.to_bytes();
    CHECK(out[0] == std::byte{72});
    CHECK(out == file_image(R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})", data));
}

TEST_CASE("safetensors: writer lays data out by descending dtype then name; header keys sorted", "[safetensors]") {
    SafetensorsWriter w;
    w.add("a.u8", Tensor(DType::u8, {3}));
    w.add("b.f32", Tensor(DType::f32, {2}));
    w.add("c.bf16", Tensor(DType::bf16, {1}));
    w.add("d.i64", Tensor(DType::i64, {1}));
    w.add("e.f32", Tensor(DType::f32, {1}));
    w.add_metadata("z", "last?");
    const std::string h = w.header_json();
    CHECK(h.size() % 8 == 0);
    CHECK(h.rfind("{\"__metadata__\":{\"z\":\"last?\"},\"a.u8\":", 0) == 0);
    CHECK(h.find("\"a.u8\"") < h.find("\"b.f32\""));
    CHECK(h.find("\"d.i64\"") < h.find("\"e.f32\""));
    const auto f = SafetensorsFile::from_buffer(w.to_bytes());
    CHECK(f.info("d.i64").begin == 0);
    CHECK(f.info("b.f32").begin == 8);
    CHECK(f.info("e.f32").begin == 16);
    CHECK(f.info("c.bf16").begin == 20);
    CHECK(f.info("a.u8").begin == 22);
    CHECK(f.header().data_size == 25);
    for (const auto& n : f.names()) CHECK(f.zero_copy(n));
}

TEST_CASE("safetensors: writer compacts strided views and rejects bad input", "[safetensors]") {
    // A transposed 2x3 view of a 3x2 tensor: strides [1, 2].
    const std::vector<float> src = {1, 2, 3, 4, 5, 6};
    const Tensor t = Tensor::from<float>({3, 2}, src);
    const TensorView tr(t.raw(), DType::f32, Shape{2, 3}, Shape{1, 2});
    REQUIRE_FALSE(tr.contiguous());
    SafetensorsWriter w;
    w.add("t", tr);
    const auto f = SafetensorsFile::from_buffer(w.to_bytes());
    const auto v = f.get("t", DType::f32, {2, 3});
    CHECK(std::vector<float>(v.data<float>(), v.data<float>() + 6) == std::vector<float>{1, 3, 5, 2, 4, 6});

    // add() copied: the source may change or die afterwards
    Tensor tmp = Tensor::from<float>({1}, std::vector<float>{9});
    SafetensorsWriter w2;
    w2.add("x", tmp);
    tmp.data<float>()[0] = 10;
    CHECK(SafetensorsFile::from_buffer(w2.to_bytes()).get("x").data<float>()[0] == 9);

    REQUIRE_THROWS_AS(w.add("t", tr), moe::ConfigError);
    REQUIRE_THROWS_WITH(w.add("t", tr), Catch::Contains("duplicate tensor name 't'"));
    REQUIRE_THROWS_WITH(w.add("__metadata__", tr), Catch::Contains("reserved"));
    REQUIRE_THROWS_WITH(w.add("bad\xFF", tr), Catch::Contains("not valid UTF-8"));
    REQUIRE_THROWS_WITH(w.add("null", TensorView()), Catch::Contains("view without data"));
    w.add_metadata("k", "v");
    REQUIRE_THROWS_WITH(w.add_metadata("k", "w"), Catch::Contains("duplicate metadata key 'k'"));

    // write() into a missing directory: IOError, nothing left behind
    TempPath tp;
    const fs::path bad = tp.path / "sub" / "x.safetensors";
    REQUIRE_THROWS_AS(w.write(bad), moe::IOError);
    // overwriting an existing file replaces it
    write_file(tp.path, bytes_of("garbage"));
    w.write(tp.path);
    CHECK(SafetensorsFile::open(tp.path).contains("t"));
}

TEST_CASE("safetensors: a file laid out as safetensors.torch.save_file writes it", "[safetensors]") {
    // What this Python writes:
    //   save_file({"model.layers.0.block_sparse_moe.gate.weight":
    //                  torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.bfloat16),
    //              "model.layers.0.block_sparse_moe.experts.3.w1.weight":
    //                  torch.tensor([[1.0, 2.0, 3.0]]),
    //              "model.embed_tokens.position_ids": torch.arange(3)},
    //             "x.safetensors", metadata={"format": "pt"})
    // The reference orders the data by dtype (I64, F32, BF16) then name, writes the header in that
    // order with __metadata__ first, and pads it with spaces to a multiple of 8 bytes.
    const std::string header =
        R"({"__metadata__":{"format":"pt"},)"
        R"("model.embed_tokens.position_ids":{"dtype":"I64","shape":[3],"data_offsets":[0,24]},)"
        R"("model.layers.0.block_sparse_moe.experts.3.w1.weight":{"dtype":"F32","shape":[1,3],"data_offsets":[24,36]},)"
        R"("model.layers.0.block_sparse_moe.gate.weight":{"dtype":"BF16","shape":[2,2],"data_offsets":[36,44]}})";
    const unsigned char data[] = {
        0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,  // int64 0, 1, 2
        0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x40, 0x40,  // f32 1, 2, 3
        0x80, 0x3f, 0x00, 0xc0, 0x00, 0x3f, 0x40, 0x40,                          // bf16 1, -2, 0.5, 3
    };
    std::vector<std::byte> d(sizeof data);
    std::memcpy(d.data(), data, sizeof data);
    const auto image = file_image(header, d);
    REQUIRE(header.size() % 8 != 0);  // padding really happens here
    REQUIRE((image.size() - sizeof data) % 8 == 0);

    TempPath tmp;
    write_file(tmp.path, image);
    const auto f = SafetensorsFile::open(tmp.path);
    CHECK(f.metadata().at("format") == "pt");
    const auto pos = f.get("model.embed_tokens.position_ids", DType::i64, {3});
    CHECK(pos.data<std::int64_t>()[2] == 2);
    const auto w1 = f.get("model.layers.0.block_sparse_moe.experts.3.w1.weight", DType::f32, {1, 3});
    CHECK(w1.data<float>()[0] == 1.0f);
    CHECK(w1.data<float>()[2] == 3.0f);
    const auto gate = f.get("model.layers.0.block_sparse_moe.gate.weight", DType::bf16, {2, 2});
    const auto g = gate.matrix<bf16>();
    CHECK(to_float(g(0, 0)) == 1.0f);
    CHECK(to_float(g(0, 1)) == -2.0f);
    CHECK(to_float(g(1, 0)) == 0.5f);
    CHECK(to_float(g(1, 1)) == 3.0f);
    for (const auto& n : f.names()) CHECK(f.zero_copy(n));

    // Re-writing the same tensors reproduces the reference's data section byte for byte.
    SafetensorsWriter w;
    for (const auto& n : f.names()) w.add(n, f.get(n));
    w.add_metadata("format", "pt");
    const auto again = w.to_bytes();
    REQUIRE(again.size() >= sizeof data);
    CHECK(std::memcmp(again.data() + again.size() - sizeof data, data, sizeof data) == 0);
}

TEST_CASE("safetensors: views are zero-copy views into the mapping", "[safetensors]") {
    SafetensorsWriter w;
    w.add("a", Tensor::from<float>({4}, std::vector<float>{1, 2, 3, 4}));
    w.add("b", Tensor::from<std::uint8_t>({3}, std::vector<std::uint8_t>{5, 6, 7}));
    TempPath tmp;
    w.write(tmp.path);
    const auto f = SafetensorsFile::open(tmp.path);
    const auto file = read_file(tmp.path);
    REQUIRE(f.bytes().size() == file.size());
    REQUIRE(std::memcmp(f.bytes().data(), file.data(), file.size()) == 0);
    for (const auto& n : f.names()) {
        const auto v = f.get(n);
        const auto& ti = f.info(n);
        CHECK(inside(v.raw(), v.nbytes(), f.bytes()));
        CHECK(v.raw() == f.bytes().data() + f.header().data_offset + ti.begin);
        CHECK(f.zero_copy(n));
    }
    // copies share the mapping
    const SafetensorsFile copy = f;
    CHECK(copy.bytes().data() == f.bytes().data());
    CHECK(copy.get("a").raw() == f.get("a").raw());
}

// The VmFlags of the mapping that starts at `start` in /proc/self/smaps ("" when not found).
std::string vm_flags_of(const void* start) {
    std::ifstream f("/proc/self/smaps");
    char head[32];
    std::snprintf(head, sizeof head, "%lx-", static_cast<unsigned long>(reinterpret_cast<std::uintptr_t>(start)));
    bool in = false;
    for (std::string line; std::getline(f, line);) {
        const std::string tok = line.substr(0, line.find(' '));
        if (tok.empty()) continue;
        if (tok.back() != ':') in = line.rfind(head, 0) == 0;  // a mapping's first line: "start-end perms ..."
        else if (in && tok == "VmFlags:") return line.substr(8) + " ";
    }
    return "";
}

TEST_CASE("MappedFile: mappings of 2 MiB and more carry the huge-page hint, smaller ones not", "[safetensors]") {
    if (!std::ifstream("/proc/self/smaps") || !fs::exists("/sys/kernel/mm/transparent_hugepage/enabled"))
        MOE_SKIP("no /proc/self/smaps or no transparent huge pages on this kernel: the hint cannot be seen");
    TempPath big, small;
    {
        std::ofstream(big.path, std::ios::binary) << std::string(std::size_t{2} << 20, 'x');
        std::ofstream(small.path, std::ios::binary) << std::string((std::size_t{2} << 20) - 1, 'x');
    }
    const auto b = moe::io::MappedFile::open(big.path), s = moe::io::MappedFile::open(small.path);
    REQUIRE(b.bytes.size() == (std::size_t{2} << 20));
    const std::string fb = vm_flags_of(b.bytes.data()), fs_ = vm_flags_of(s.bytes.data());
    INFO("VmFlags of the 2 MiB mapping: " << fb << "; of the smaller one: " << fs_);
    REQUIRE(!fb.empty());
    REQUIRE(!fs_.empty());
    CHECK(fb.find(" hg ") != std::string::npos);  // MADV_HUGEPAGE
    CHECK(fs_.find(" hg ") == std::string::npos);
    CHECK(b.text()[0] == 'x');  // still the file's bytes
}

TEST_CASE("safetensors: views outlive the file object while keep_alive is held", "[safetensors]") {
    TempPath tmp;
    SafetensorsWriter w;
    w.add("x", Tensor::from<float>({3}, std::vector<float>{1.5f, 2.5f, 3.5f}));
    w.write(tmp.path);

    TensorView v;
    std::shared_ptr<const void> hold;
    {
        std::optional<SafetensorsFile> f = SafetensorsFile::open(tmp.path);
        {
            const SafetensorsFile copy = *f;  // the copy that produces the view
            v = copy.get("x");
            hold = copy.keep_alive();
        }
        f.reset();  // every SafetensorsFile is gone
    }
    fs::remove(tmp.path);  // even the directory entry
    REQUIRE(hold.use_count() == 1);
    CHECK(v.data<float>()[0] == 1.5f);
    CHECK(v.data<float>()[2] == 3.5f);
    hold.reset();  // unmapped now; v must not be used any more
}

TEST_CASE("Tensor::borrow reads a file's tensor in place and copies on the first write", "[safetensors][tensor]") {
    TempPath tmp;
    SafetensorsWriter w;
    w.add("x", Tensor::from<float>({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6}));
    w.write(tmp.path);
    std::optional<SafetensorsFile> f = SafetensorsFile::open(tmp.path);
    const void* in_file = f->get("x").raw();
    Tensor t = Tensor::borrow(f->get("x"), f->keep_alive());
    const Tensor& ct = t;
    CHECK(t.borrowed());
    CHECK(ct.raw() == in_file);                        // read in place
    CHECK(ct.data<float>()[4] == 5.0f);
    CHECK(ct.matrix<float>()(1, 2) == 6.0f);
    Tensor moved = std::move(t);                       // moves keep the borrow
    CHECK(moved.borrowed());
    CHECK(static_cast<const Tensor&>(moved).raw() == in_file);
    f.reset();                                         // the tensor holds the mapping
    CHECK(static_cast<const Tensor&>(moved).data<float>()[0] == 1.0f);
    moved.data<float>()[0] = 42.0f;                    // copy on write
    CHECK_FALSE(moved.borrowed());
    CHECK(moved.raw() != in_file);
    CHECK(moved.data<float>()[0] == 42.0f);
    CHECK(moved.data<float>()[5] == 6.0f);
    CHECK(SafetensorsFile::open(tmp.path).get("x").data<float>()[0] == 1.0f);  // the file is untouched
    // Only contiguous views can be borrowed.
    const Tensor m = Tensor::from<float>({2, 2}, std::vector<float>{1, 2, 3, 4});
    const TensorView col(m.raw(), DType::f32, Shape{2}, Shape{2});
    REQUIRE_THROWS_AS(Tensor::borrow(col, nullptr), ShapeError);
}

TEST_CASE("safetensors: misaligned tensors are copied to aligned memory", "[safetensors]") {
    // Unpadded 61-byte header: the data section starts at file offset 69.
    const std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}      )";
    std::vector<std::byte> data;
    append_values(data, {1.25f, -4.0f});
    for (const std::string& hdr : {header.substr(0, 55), header.substr(0, 61)}) {
        const auto f = SafetensorsFile::from_buffer(file_image(hdr, data, false));
        const bool aligned = (8 + hdr.size()) % 4 == 0;
        CHECK(f.zero_copy("x") == aligned);
        const auto v = f.get("x", DType::f32, {2});
        CHECK(reinterpret_cast<std::uintptr_t>(v.raw()) % alignof(float) == 0);
        CHECK(inside(v.raw(), v.nbytes(), f.bytes()) == aligned);
        CHECK(v.data<float>()[0] == 1.25f);
        CHECK(v.data<float>()[1] == -4.0f);
        CHECK(f.get("x").raw() == v.raw());  // the copy is made once
    }
    // An odd-sized U8 tensor before an F32 one (a writer that orders by name).
    std::vector<std::byte> d2 = {std::byte{9}, std::byte{8}, std::byte{7}};
    append_values(d2, {2.0f});
    append_values(d2, {std::int64_t{0}});
    const auto f2 = SafetensorsFile::from_buffer(file_image(
        R"({"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"b":{"dtype":"F32","shape":[1],"data_offsets":[3,7]},)"
        R"("c":{"dtype":"F64","shape":[0],"data_offsets":[7,7]},"d":{"dtype":"I64","shape":[1],"data_offsets":[7,15]}})",
        d2));
    CHECK(f2.zero_copy("a"));
    CHECK_FALSE(f2.zero_copy("b"));
    CHECK(f2.get("b").data<float>()[0] == 2.0f);
    CHECK(f2.zero_copy("c"));  // empty: nothing to copy, the pointer is rounded down to alignment
    const auto c = f2.get("c");
    CHECK(reinterpret_cast<std::uintptr_t>(c.raw()) % 8 == 0);
    CHECK(inside(c.raw(), 0, f2.bytes()));
    CHECK(f2.get("d").data<std::int64_t>()[0] == 0);
    // the copy lives as long as the keep_alive
    TensorView b;
    std::shared_ptr<const void> hold;
    {
        const auto f3 = f2;
        b = f3.get("b");
        hold = f3.keep_alive();
    }
    CHECK(b.data<float>()[0] == 2.0f);
}

TEST_CASE("safetensors: unsupported, high-rank and BOOL tensors fail at get(), not at open", "[safetensors]") {
    std::vector<std::byte> d = zeros(4);
    d.push_back(std::byte{2});  // BOOL element = 2
    d.push_back(std::byte{0});
    const auto f = load(file_image(
        R"({"fp8":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]},)"
        R"("f4":{"dtype":"F4","shape":[2],"data_offsets":[2,3]},)"
        R"("r9":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[3,4]},)"
        R"("mask":{"dtype":"BOOL","shape":[2],"data_offsets":[4,6]}})",
        d));
    CHECK(f.size() == 4);
    CHECK(f.info("fp8").dtype_name == "F8_E4M3");
    CHECK_FALSE(f.info("fp8").dtype);
    REQUIRE_THROWS_AS(f.get("fp8"), moe::DTypeError);
    REQUIRE_THROWS_WITH(f.get("fp8"), Catch::Contains("bad.safetensors: tensor 'fp8' has dtype F8_E4M3, which moe does not support"));
    REQUIRE_THROWS_WITH(f.get("fp8", DType::u8, {2}), Catch::Contains("expected dtype U8, found F8_E4M3"));
    REQUIRE_THROWS_AS(f.get("f4"), moe::DTypeError);
    REQUIRE_THROWS_AS(f.get("r9"), moe::ShapeError);
    REQUIRE_THROWS_WITH(f.get("r9"), Catch::Contains("has rank 9"));
    REQUIRE_THROWS_WITH(f.get("mask"), Catch::Contains("BOOL elements must be 0 or 1"));
    // F4: an odd element count does not fill whole bytes
    REQUIRE_FORMAT_ERROR(file_image(R"({"f4":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", zeros(2)),
                         "do not fill a whole number of bytes");
}

TEST_CASE("safetensors: lookup errors name the tensor, the file and close names", "[safetensors]") {
    SafetensorsWriter w;
    for (int l = 0; l < 4; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".block_sparse_moe.";
        w.add(p + "gate.weight", Tensor(DType::bf16, {8, 4}));
        for (int e = 0; e < 3; ++e) w.add(p + "experts." + std::to_string(e) + ".w1.weight", Tensor(DType::bf16, {2, 4}));
    }
    TempPath tmp;
    w.write(tmp.path);
    const auto f = SafetensorsFile::open(tmp.path);

    REQUIRE_THROWS_AS(f.get("nope"), moe::NotFoundError);
    REQUIRE_THROWS_WITH(f.get("nope"), Catch::StartsWith(tmp.str() + ": no tensor named 'nope' (the file has 16 tensors)"));
    REQUIRE_THROWS_WITH(f.get("model.layers.0.mlp.gate.weight"),
                        Catch::Contains("did you mean 'model.layers.0.block_sparse_moe.gate.weight'"));
    REQUIRE_THROWS_WITH(f.get("layers.2.block_sparse_moe.experts.1.w1.weight"),
                        Catch::Contains("did you mean 'model.layers.2.block_sparse_moe.experts.1.w1.weight'"));
    REQUIRE_THROWS_WITH(f.get("model.layers.3.block_sparse_moe.experts.2.w1.wieght"),
                        Catch::Contains("did you mean 'model.layers.3.block_sparse_moe.experts.2.w1.weight'"));
    REQUIRE_THROWS_AS(f.info("nope"), moe::NotFoundError);
    REQUIRE_THROWS_AS(f.zero_copy("nope"), moe::NotFoundError);

    const std::string g = "model.layers.1.block_sparse_moe.gate.weight";
    REQUIRE_NOTHROW(f.get(g, DType::bf16, {8, 4}));
    REQUIRE_THROWS_AS(f.get(g, DType::f32, {8, 4}), moe::DTypeError);
    REQUIRE_THROWS_WITH(f.get(g, DType::f32, {8, 4}),
                        Catch::Equals(tmp.str() + ": tensor '" + g + "': expected dtype F32, found BF16"));
    REQUIRE_THROWS_AS(f.get(g, DType::bf16, {4, 8}), moe::ShapeError);
    REQUIRE_THROWS_WITH(f.get(g, DType::bf16, {4, 8}),
                        Catch::Equals(tmp.str() + ": tensor '" + g + "': expected shape [4, 8], found [8, 4]"));
    REQUIRE_THROWS_WITH(f.get(g, DType::bf16, {8, 4, 1}), Catch::Contains("expected shape [8, 4, 1], found [8, 4]"));
}

TEST_CASE("safetensors: open() errors name the file", "[safetensors]") {
    TempPath tmp;
    REQUIRE_THROWS_AS(SafetensorsFile::open(tmp.path), moe::NotFoundError);
    REQUIRE_THROWS_WITH(SafetensorsFile::open(tmp.path), Catch::Equals(tmp.str() + ": no such file"));
    write_file(tmp.path, {});
    REQUIRE_THROWS_AS(SafetensorsFile::open(tmp.path), moe::FormatError);
    REQUIRE_THROWS_WITH(SafetensorsFile::open(tmp.path), Catch::StartsWith(tmp.str() + ": file is 0 bytes, shorter"));
    write_file(tmp.path, file_image(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", zeros(4)));
    REQUIRE_THROWS_WITH(SafetensorsFile::open(tmp.path),
                        Catch::StartsWith(tmp.str() + ": tensor 'x': data_offsets [0, 8] lie outside the data section of 4 bytes"));
    REQUIRE_THROWS_AS(SafetensorsFile::open(fs::temp_directory_path()), moe::IOError);
    REQUIRE_THROWS_WITH(SafetensorsFile::open(fs::temp_directory_path()), Catch::Contains("not a regular file"));
}

TEST_CASE("safetensors: open() of a file shorter than 8 bytes names the file and its real size", "[safetensors]") {
    // open() used to say "0 bytes" for every short file; from_buffer() always gave the real size.
    TempPath tmp;
    for (const std::size_t n : {std::size_t{0}, std::size_t{3}, std::size_t{7}}) {
        CAPTURE(n);
        write_file(tmp.path, zeros(n));
        REQUIRE(fs::file_size(tmp.path) == n);
        const std::string want = tmp.str() + ": file is " + std::to_string(n) +
                                 " bytes, shorter than the 8-byte header length that starts a safetensors file";
        REQUIRE_THROWS_AS(SafetensorsFile::open(tmp.path), moe::FormatError);
        REQUIRE_THROWS_WITH(SafetensorsFile::open(tmp.path), Catch::Equals(want));
        // The same message as for the same bytes in memory, apart from the name.
        REQUIRE_THROWS_WITH(SafetensorsFile::from_buffer(zeros(n), tmp.str()), Catch::Equals(want));
    }
}

// =============================================================================================
// safetensors: every format violation has its own message
// =============================================================================================

TEST_CASE("safetensors: framing violations", "[safetensors]") {
    REQUIRE_FORMAT_ERROR(bytes_of("abc"), "file is 3 bytes, shorter than the 8-byte header length");
    REQUIRE_FORMAT_ERROR(file_image("", {}, false), "header length is 0");
    auto huge = file_image("{}");
    huge[0] = std::byte{0x01};  // 100'000'001 = 0x05F5E101
    huge[1] = std::byte{0xE1};
    huge[2] = std::byte{0xF5};
    huge[3] = std::byte{0x05};
    REQUIRE_FORMAT_ERROR(huge, "header length 100000001 exceeds the 100000000-byte limit");
    auto past = file_image("{}");
    past[0] = std::byte{9};
    REQUIRE_FORMAT_ERROR(past, "header length 9 runs past the end of the file (only 8 bytes follow");
    auto all_ones = file_image("{}");
    for (int i = 0; i < 8; ++i) all_ones[static_cast<std::size_t>(i)] = std::byte{0xFF};
    REQUIRE_FORMAT_ERROR(all_ones, "exceeds the 100000000-byte limit");
    REQUIRE_FORMAT_ERROR(file_image(" {}"), "header does not start with '{' (found ' ')");
    REQUIRE_FORMAT_ERROR(file_image("[]"), "header does not start with '{' (found '[')");
    REQUIRE_FORMAT_ERROR(file_image(std::string("\0{}", 3)), "found '\\x00'");
}

TEST_CASE("safetensors: header JSON violations", "[safetensors]") {
    REQUIRE_FORMAT_ERROR(file_image(R"({"w":})"), "invalid header JSON at byte 5 (file offset 13): unexpected character '}', expected a value");
    REQUIRE_FORMAT_ERROR(file_image(R"({"w")"), "expected ':' after an object key");
    REQUIRE_FORMAT_ERROR(file_image("{} x"), "trailing characters after the JSON value");
    REQUIRE_FORMAT_ERROR(file_image(std::string("{}\0\0\0\0\0\0", 8), {}, false), "trailing characters");
    REQUIRE_FORMAT_ERROR(file_image("{\"a\nb\":1}"), "control character 0x0A inside a string");
    REQUIRE_FORMAT_ERROR(file_image("{\"\xFF\":1}"), "invalid UTF-8 byte 0xFF");
    REQUIRE_FORMAT_ERROR(file_image(R"({"\ud800x":1})"), "high surrogate");
    REQUIRE_FORMAT_ERROR(file_image("{\"__metadata__\":[]}"), "__metadata__ must be an object of string values, found an array");
    REQUIRE_FORMAT_ERROR(file_image("{\"__metadata__\":null}"), "__metadata__ must be an object of string values, found null");
    REQUIRE_FORMAT_ERROR(file_image(R"({"__metadata__":{"a":1}})"), "__metadata__ values must be strings, found an integer for key 'a'");
    REQUIRE_FORMAT_ERROR(file_image(R"({"__metadata__":{"a":{"b":"c"}}})"), "__metadata__ values must be strings, found an object");
    REQUIRE_FORMAT_ERROR(file_image(R"({"__metadata__":{"a":"1","a":"2"}})"), "duplicate __metadata__ key 'a'");
    REQUIRE_FORMAT_ERROR(file_image(R"({"__metadata__":{},"__metadata__":{}})"), "duplicate key '__metadata__'");
    REQUIRE_FORMAT_ERROR(file_image(R"({"w":{"dtype":"U8","shape":[],"data_offsets":[0,1]},)"
                                    R"("w":{"dtype":"U8","shape":[],"data_offsets":[1,2]}})",
                                    zeros(2)),
                         "duplicate tensor name 'w'");
    // a valid header with a metadata-only object and unicode names
    const auto ok = load(file_image(R"({"__metadata__":{"\u00e9":"\ud83d\ude00"},"caf\u00e9":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
                                    zeros(1)));
    CHECK(ok.metadata().at("\xC3\xA9") == "\xF0\x9F\x98\x80");
    CHECK(ok.contains("caf\xC3\xA9"));
}

TEST_CASE("safetensors: tensor entry violations", "[safetensors]") {
    const auto one = [](const std::string& entry, std::size_t data = 8) {
        return file_image("{\"w\":" + entry + "}", zeros(data));
    };
    REQUIRE_FORMAT_ERROR(one("[1]"), "tensor 'w': expected an object with the keys dtype, shape and data_offsets, found an array");
    REQUIRE_FORMAT_ERROR(one("\"F32\""), "found a string");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[2]})"), "tensor 'w' lacks the key 'data_offsets'");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","data_offsets":[0,8]})"), "tensor 'w' lacks the key 'shape'");
    REQUIRE_FORMAT_ERROR(one(R"({"shape":[2],"data_offsets":[0,8]})"), "tensor 'w' lacks the key 'dtype'");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1})"),
                         "tensor 'w': unexpected key 'extra' (a tensor entry has exactly dtype, shape and data_offsets)");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]})"), "tensor 'w': duplicate key 'dtype'");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[2],"shape":[2],"data_offsets":[0,8]})"), "duplicate key 'shape'");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8],"data_offsets":[0,8]})"), "duplicate key 'data_offsets'");
    // dtype
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F33","shape":[2],"data_offsets":[0,8]})"),
                         "tensor 'w': unknown dtype 'F33'; known dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL U16 U32 U64");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"f32","shape":[2],"data_offsets":[0,8]})"), "unknown dtype 'f32'");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})"), "tensor 'w': dtype must be a string, found an integer");
    // shape
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})"),
                         "tensor 'w': shape must be an array of non-negative integers, found an integer");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), "expected a non-negative integer, found -2");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"),
                         "shape must be an array of non-negative integers, found a number with a fraction or exponent in it");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[2e0],"data_offsets":[0,8]})"), "found a number with a fraction or exponent");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})"), "found a string in it");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[[2]],"data_offsets":[0,8]})"), "found an array in it");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]})"),
                         "dimension 9223372036854775808 is too large");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]})"), "does not fit in 64 bits");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]})", 0),
                         "tensor 'w': element count of shape [4294967296, 4294967296, 0] overflows 64 bits");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]})"),
                         "tensor 'w': byte size of shape [4611686018427387904] F64 overflows 64 bits");
    std::string deep = "[";
    for (int i = 0; i < 65; ++i) deep += "1,";
    deep += "1]";
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"U8","shape":)" + deep + R"(,"data_offsets":[0,1]})"), "shape has more than 64 dimensions");
    // data_offsets
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[2],"data_offsets":8})"),
                         "tensor 'w': data_offsets must be [begin, end] (two non-negative integers), found an integer");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})"), "found 1 element(s)");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[2],"data_offsets":[]})"), "found 0 element(s)");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,8]})"), "found more than two elements");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,"8"]})"), "found a string in it");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8.0]})"), "found a number with a fraction or exponent in it");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[2],"data_offsets":[-1,8]})"), "expected a non-negative integer, found -1");
    REQUIRE_FORMAT_ERROR(one(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})"), "data_offsets [8, 0]: begin 8 is after end 0");
}

TEST_CASE("safetensors: data section violations", "[safetensors]") {
    REQUIRE_FORMAT_ERROR(file_image(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", zeros(8)),
                         "tensor 'w': data_offsets [0, 8] span 8 bytes but shape [3] of F32 needs 12");
    REQUIRE_FORMAT_ERROR(file_image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", zeros(7)),
                         "tensor 'w': data_offsets [0, 8] lie outside the data section of 7 bytes");
    REQUIRE_FORMAT_ERROR(file_image(R"({"w":{"dtype":"U8","shape":[8],"data_offsets":[18446744073709551600,18446744073709551608]}})", zeros(8)),
                         "lie outside the data section");
    REQUIRE_FORMAT_ERROR(file_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                    zeros(12)),
                         "tensor 'b' (bytes [4, 12)) overlaps tensor 'a' (which ends at 8)");
    REQUIRE_FORMAT_ERROR(file_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                    zeros(8)),
                         "overlaps tensor 'a'");
    REQUIRE_FORMAT_ERROR(file_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                                    zeros(20)),
                         "gap of 4 bytes in the data section before tensor 'b' (bytes [8, 12) belong to no tensor");
    REQUIRE_FORMAT_ERROR(file_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", zeros(12)),
                         "gap of 4 bytes in the data section before tensor 'a'");
    REQUIRE_FORMAT_ERROR(file_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", zeros(11)),
                         "the last 3 bytes of the data section (11 bytes) belong to no tensor");
    REQUIRE_FORMAT_ERROR(file_image("{}", zeros(1)), "the last 1 bytes of the data section");
    // any order in the header is fine as long as the offsets tile the data section, empty tensors included
    const auto ok = load(file_image(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                                    R"("z":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                    zeros(8)));
    CHECK(ok.size() == 4);
}

// =============================================================================================
// Hostile sizes: every parser is close to linear in its input and bounded in its recursion
// =============================================================================================

TEST_CASE("json: the DOM never nests deeper than kMaxDomDepth, whatever max_depth allows", "[json]") {
    const auto nested = [](std::size_t n) { return std::string(n, '[') + std::string(n, ']'); };
    json::Options o;
    o.max_depth = 10'000'000;
    REQUIRE(json::kMaxDomDepth == 1024);
    REQUIRE_NOTHROW(json::parse(nested(1024), "t", o));
    REQUIRE_THROWS_WITH(json::parse(nested(1025), "t", o),
                        Catch::Contains("at byte 1024: nesting deeper than 1024 levels (the limit of json::Value)"));
    // A million levels: refused, not a stack overflow (the DOM recurses once per level).
    REQUIRE_THROWS_AS(json::parse(std::string(1'000'000, '['), "t", o), moe::FormatError);
    REQUIRE_THROWS_AS(json::parse(std::string(500'000, '{') , "t", o), moe::FormatError);
    std::string objects;
    for (int i = 0; i < 2000; ++i) objects += "{\"a\":";
    REQUIRE_THROWS_WITH(json::parse(objects, "t", o), Catch::Contains("nesting deeper than 1024 levels"));
    // The pull parser keeps its own stack: it walks deeper documents when allowed to.
    const std::string deep = nested(200'000);
    json::Reader r(deep, "t", o);
    for (int i = 0; i < 200'000; ++i) r.begin_array();
    CHECK(r.depth() == 200'000);
    for (int i = 0; i < 200'000; ++i) REQUIRE_FALSE(r.next_element());
    REQUIRE_NOTHROW(r.finish());
}

TEST_CASE("json: many keys and long strings cost near-linear time", "[json]") {
    std::string doc = "{";
    for (int i = 0; i < 50'000; ++i) doc += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":" + std::to_string(i);
    const json::Value v = json::parse(doc + "}");
    REQUIRE(v.as_object().size() == 50'000);
    CHECK(v.as_object().back().key == "k49999");
    REQUIRE_THROWS_WITH(json::parse(doc + ",\"k12345\":0}"), Catch::Contains("duplicate key 'k12345'"));
    const std::string big(4'000'000, 'x');  // a 4 MB string, and one of escapes
    CHECK(json::parse("\"" + big + "\"").as_string().size() == big.size());
    std::string esc = "\"";
    for (int i = 0; i < 200'000; ++i) esc += "\\u00e9";
    CHECK(json::parse(esc + "\"").as_string().size() == 400'000);
    // Errors inside a long string quote a bounded excerpt.
    try {
        json::parse("\"" + big + "\x01\"");
        FAIL("no exception");
    } catch (const moe::FormatError& e) {
        CHECK(std::string(e.what()).size() < 300);
    }
}

TEST_CASE("safetensors: headers of many tensors parse in n log n; overlaps and duplicates found", "[safetensors]") {
    // 30000 one-byte tensors listed in reverse offset order (the coverage check sorts them).
    const int n = 30'000;
    const auto header = [&](int overlap_at, int duplicate_at) {
        std::string h = "{\"__metadata__\":{\"format\":\"pt\"}";
        for (int i = n - 1; i >= 0; --i) {
            const int begin = i == overlap_at ? i - 1 : i;
            const std::string name = "model.layers." + std::to_string(i == duplicate_at ? 7 : i) + ".w";
            h += ",\"" + name + "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[" + std::to_string(begin) + "," +
                 std::to_string(begin + 1) + "]}";
        }
        return h + "}";
    };
    const auto f = load(file_image(header(-1, -1), zeros(n)));
    REQUIRE(f.size() == static_cast<std::size_t>(n));
    CHECK(f.info("model.layers.29999.w").begin == 29'999);
    REQUIRE_THROWS_WITH(f.get("model.layers.29999.x"), Catch::Contains("did you mean 'model.layers.29999.w'"));
    REQUIRE_FORMAT_ERROR(file_image(header(24'321, -1), zeros(n)),
                         "tensor 'model.layers.24321.w' (bytes [24320, 24321)) overlaps tensor 'model.layers.24320.w'");
    REQUIRE_FORMAT_ERROR(file_image(header(-1, 12'345), zeros(n)), "duplicate tensor name 'model.layers.7.w'");
}

TEST_CASE("safetensors: an empty tensor with huge other dimensions parses; get() refuses overflowing ones",
          "[safetensors]") {
    // The format only bounds the element count (0 here); moe's counts and strides are signed
    // 64-bit, so the non-zero dimensions' bytes must fit index_t.
    const auto f = load(file_image(
        R"({"a":{"dtype":"U8","shape":[2,4611686018427387904,0],"data_offsets":[0,0]},)"
        R"("b":{"dtype":"F32","shape":[0,4611686018427387904,4],"data_offsets":[0,0]},)"
        R"("c":{"dtype":"U8","shape":[0,2147483648,2147483648],"data_offsets":[0,0]},)"
        R"("d":{"dtype":"F64","shape":[1152921504606846976,0],"data_offsets":[0,0]}})"));
    REQUIRE(f.size() == 4);
    REQUIRE_THROWS_AS(f.get("a"), moe::ShapeError);
    REQUIRE_THROWS_WITH(f.get("a"), Catch::Contains("tensor 'a' has shape [2, 4611686018427387904, 0], whose non-zero "
                                                    "dimensions hold more than 9223372036854775807 U8 elements"));
    REQUIRE_THROWS_AS(f.get("b"), moe::ShapeError);
    REQUIRE_THROWS_WITH(f.get("d"), Catch::Contains("more than 1152921504606846975 F64 elements"));
    const auto c = f.get("c");
    CHECK(c.numel() == 0);
    CHECK(c.shape()[2] == 2147483648);
}

// =============================================================================================
// safetensors: random corruption never crashes
// =============================================================================================

TEST_CASE("safetensors: random corruption yields a valid file or moe::Error, never a crash", "[safetensors]") {
    SafetensorsWriter w;
    w.add("model.layers.0.block_sparse_moe.gate.weight", Tensor::from<float>({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6}));
    w.add("b", Tensor::from<bf16>({2}, std::vector<bf16>{bf16(1.0f), bf16(2.0f)}));
    w.add("i", Tensor::from<std::int64_t>({1}, std::vector<std::int64_t>{7}));
    w.add("u", Tensor::from<std::uint8_t>({3}, std::vector<std::uint8_t>{1, 2, 3}));
    w.add("m", Tensor::from<bool>({2}, std::array<bool, 2>{true, false}));
    w.add("s", Tensor::from<float>(Shape{}, std::vector<float>{0.5f}));
    w.add_metadata("format", "pt");
    const auto valid = w.to_bytes();
    const auto header_end = static_cast<std::size_t>(SafetensorsFile::from_buffer(valid).header().data_offset);

    std::mt19937_64 rng(12345);
    int parsed = 0, rejected = 0;
    for (int iter = 0; iter < 2000; ++iter) {
        auto b = valid;
        const int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits; ++e) {
            const auto kind = rng() % 10;
            // bias positions toward the prefix and header, where the structure is
            const std::size_t limit = (rng() % 4 == 0) ? b.size() : std::min(b.size(), header_end + 4);
            if (b.empty()) break;
            const std::size_t pos = static_cast<std::size_t>(rng() % limit);
            if (kind < 4) {
                b[pos] ^= static_cast<std::byte>(1u << (rng() % 8));
            } else if (kind < 6) {
                static constexpr char interesting[] = "{}[],:\"\\0123456789-.eE u";
                b[pos] = static_cast<std::byte>(interesting[rng() % (sizeof interesting - 1)]);
            } else if (kind < 7) {
                b.resize(static_cast<std::size_t>(rng() % (b.size() + 1)));
            } else if (kind < 8) {
                b.insert(b.begin() + static_cast<std::ptrdiff_t>(pos), static_cast<std::byte>(rng() & 0xFF));
            } else if (kind < 9) {
                b.erase(b.begin() + static_cast<std::ptrdiff_t>(pos));
            } else {
                b[rng() % std::min<std::size_t>(8, b.size())] = static_cast<std::byte>(rng() & 0xFF);
            }
        }
        try {
            const auto f = SafetensorsFile::from_buffer(std::move(b), "fuzzed");
            ++parsed;
            for (const auto& name : f.names()) {
                const auto& ti = f.info(name);
                REQUIRE(f.header().data_offset + ti.end <= f.bytes().size());
                try {
                    const auto v = f.get(name);
                    REQUIRE(v.nbytes() == ti.nbytes());
                    if (f.zero_copy(name)) REQUIRE(inside(v.raw(), v.nbytes(), f.bytes()));
                    REQUIRE(reinterpret_cast<std::uintptr_t>(v.raw()) % dtype_size(v.dtype()) == 0);
                    unsigned sum = 0;
                    const auto* p = static_cast<const unsigned char*>(v.raw());
                    for (std::size_t k = 0; k < v.nbytes(); ++k) sum += p[k];
                    (void)sum;
                } catch (const moe::Error&) {
                }
            }
        } catch (const moe::Error& e) {
            ++rejected;
            REQUIRE(std::string(e.what()).rfind("fuzzed: ", 0) == 0);
        }
    }
    CHECK(parsed + rejected == 2000);
    CHECK(parsed > 0);
    CHECK(rejected > 0);
}

TEST_CASE("safetensors: streamed tensors give the same file as copied ones; a wrong byte count fails",
          "[safetensors]") {
    // Expectation: the file add() writes for the same data (independent of the producer path).
    std::vector<float> a(1000);
    for (std::size_t k = 0; k < a.size(); ++k) a[k] = static_cast<float>(k) * 0.5f - 3.0f;
    const std::vector<std::int32_t> ix{4, -1, 7};
    SafetensorsWriter copied;
    copied.add_metadata("k", "v");
    copied.add("z.a", Tensor::from<float>({10, 100}, a));
    copied.add("b.ix", Tensor::from<std::int32_t>({3}, ix));
    const auto expected = copied.to_bytes();

    SafetensorsWriter streamed;
    streamed.add_metadata("k", "v");
    int calls = 0;
    streamed.add_streamed("z.a", DType::f32, {10, 100}, [&](const SafetensorsWriter::ByteSink& sink) {
        ++calls;
        for (std::size_t at = 0; at < a.size(); at += 64)  // in chunks, the last one short
            sink(a.data() + at, std::min<std::size_t>(64, a.size() - at) * sizeof(float));
    });
    streamed.add_streamed("b.ix", DType::i32, {3}, [&](const SafetensorsWriter::ByteSink& sink) {
        sink(ix.data(), ix.size() * sizeof(std::int32_t));
    });
    CHECK(streamed.file_size() == expected.size());
    CHECK(streamed.to_bytes() == expected);
    std::vector<std::byte> via_sink;
    streamed.stream([&](const void* p, std::size_t n) {
        const auto* b = static_cast<const std::byte*>(p);
        via_sink.insert(via_sink.end(), b, b + n);
    });
    CHECK(via_sink == expected);
    TempPath tmp;
    streamed.write(tmp.path);
    CHECK(read_file(tmp.path) == expected);
    CHECK(calls == 3);  // once per to_bytes / stream / write

    REQUIRE_THROWS_AS(streamed.add_streamed("b.ix", DType::i32, {3}, [](const auto&) {}), ConfigError);
    REQUIRE_THROWS_AS(streamed.add_streamed("n", DType::i32, {3}, nullptr), ConfigError);

    // A producer that writes too few or too many bytes: FormatError naming the tensor, and
    // write() leaves neither the file nor a temporary file behind.
    for (const std::size_t n : {8u, 16u}) {
        SafetensorsWriter bad;
        bad.add_streamed("short", DType::f32, {3}, [n](const SafetensorsWriter::ByteSink& sink) {
            const std::vector<std::byte> zero(n);
            sink(zero.data(), n);
        });
        REQUIRE_THROWS_AS(bad.to_bytes(), FormatError);
        REQUIRE_THROWS_WITH(bad.to_bytes(), Catch::Contains("'short'") && Catch::Contains("12"));
        TempPath t2;
        REQUIRE_THROWS_AS(bad.write(t2.path), FormatError);
        CHECK_FALSE(fs::exists(t2.path));
        std::size_t leftovers = 0;
        for (const auto& e : fs::directory_iterator(t2.path.parent_path()))
            if (e.path().filename().string().rfind(t2.path.filename().string() + ".tmp.", 0) == 0) ++leftovers;
        CHECK(leftovers == 0);
    }
}

TEST_CASE("checkpoint: tensors by name with dtype and shape checks, indexed counts, borrow or convert",
          "[safetensors][checkpoint]") {
    // Values k / 4 are exact in bf16, so a converted tensor must hold them exactly.
    std::vector<float> v(6);
    for (std::size_t k = 0; k < v.size(); ++k) v[k] = static_cast<float>(k) / 4.0f;
    const Tensor w32 = Tensor::from<float>({2, 3}, v);
    SafetensorsWriter w;
    w.add("m.experts.0.w", w32.view());
    w.add("m.experts.3.w", w32.view());
    w.add("m.experts.x.w", w32.view());      // not an index: ignored by the counts
    w.add("m.experts.7", w32.view());        // no '.' after the index: ignored
    w.add("m.bf", convert(w32.view(), DType::bf16));
    w.add("m.vec", Tensor::from<float>({3}, std::vector<float>{1, 2, 3}));
    w.add("m.idx", Tensor(DType::i64, {2}));
    const auto f = SafetensorsFile::from_buffer(w.to_bytes(), "ckpt");

    CHECK(io::module_prefix("a.b") == "a.b.");
    CHECK(io::module_prefix("a.b.") == "a.b.");
    CHECK(io::module_prefix("").empty());
    CHECK(io::count_indexed(f, "m.experts.") == 4);  // 1 + the largest index, 3
    CHECK(io::count_indexed(f, "m.other.") == 0);
    CHECK(io::require_indexed(f, "m.experts.", "m.experts.0.w") == 4);
    REQUIRE_THROWS_AS(io::require_indexed(f, "m.other.", "m.other.0.w"), NotFoundError);
    REQUIRE_THROWS_WITH(io::require_indexed(f, "m.other.", "m.other.0.w"), Catch::Contains("'m.other.0.w'"));

    CHECK(io::is_float(DType::bf16));
    CHECK_FALSE(io::is_float(DType::i64));
    CHECK(io::tensor(f, "m.experts.0.w", {2, 3}).raw() == f.get("m.experts.0.w").raw());
    REQUIRE_THROWS_AS(io::tensor(f, "m.experts.0.w", {3, 2}), ShapeError);
    REQUIRE_THROWS_WITH(io::tensor(f, "m.experts.0.w", {3, 2}),
                        Catch::Contains("expected shape [3, 2], found [2, 3]") && Catch::Contains("m.experts.0.w"));
    REQUIRE_THROWS_AS(io::float_tensor(f, "m.idx"), DTypeError);
    REQUIRE_THROWS_AS(io::tensor(f, "m.experts.0.ww", {2, 3}), NotFoundError);
    REQUIRE_THROWS_WITH(io::tensor(f, "m.experts.0.ww", {2, 3}), Catch::Contains("did you mean 'm.experts.0.w'"));
    CHECK(io::matrix(f, "m.bf").dim(1) == 3);
    REQUIRE_THROWS_AS(io::matrix(f, "m.vec"), ShapeError);
    CHECK(io::floats(f, "m.bf", {2, 3}) == v);

    // borrow: the file's bytes in place, whatever the dtype; borrow_or_convert: in place only
    // when the dtype matches, else a converted copy with the same values.
    const Tensor b = io::borrow(f, "m.bf", {2, 3});
    CHECK(b.borrowed());
    CHECK(b.dtype() == DType::bf16);
    CHECK(b.raw() == f.get("m.bf").raw());
    const Tensor same = io::borrow_or_convert(f, "m.experts.3.w", {2, 3}, DType::f32);
    CHECK(same.borrowed());
    CHECK(same.raw() == f.get("m.experts.3.w").raw());
    const Tensor conv = io::borrow_or_convert(f, "m.bf", {2, 3}, DType::f32);
    CHECK_FALSE(conv.borrowed());
    REQUIRE(conv.dtype() == DType::f32);
    for (std::size_t k = 0; k < v.size(); ++k) CHECK(conv.data<float>()[k] == v[k]);
    REQUIRE_THROWS_AS(io::borrow_or_convert(f, "m.bf", {3, 2}, DType::f32), ShapeError);
}

}  // namespace moe_test_safetensors
