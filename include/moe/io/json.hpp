// moe/io/json.hpp - a small, strict JSON reader (RFC 8259) sized for safetensors headers.
//
// Two layers:
//   * json::Reader - a pull parser. The caller walks the document (begin_object / next_key /
//     read_u64 / ...) and decides what it expects; nothing is materialised that the caller does
//     not ask for, so a hostile 100 MB header costs memory only for what the caller keeps.
//   * json::Value / json::parse - a small DOM built on the Reader, for tests and generic use.
//
// Strictness (what is rejected, each with a moe::FormatError naming the byte offset):
//   trailing characters after the value, nesting deeper than Options::max_depth (64; the DOM
//   never deeper than kMaxDomDepth), control characters (< 0x20) inside strings, invalid UTF-8,
//   invalid escapes, lone surrogates, leading zeros, '+' signs, trailing commas, NaN/Infinity,
//   duplicate keys in one object (the DOM rejects them itself; Reader users see every key and
//   are expected to check), integers that do not fit in 64 bits. Whitespace is exactly space,
//   tab, LF and CR.
// \uXXXX escapes (including surrogate pairs) are decoded to UTF-8.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/utf8.hpp"

namespace moe::io::json {

/// Default maximum nesting depth of arrays and objects.
inline constexpr std::size_t kDefaultMaxDepth = 64;
/// Deepest nesting the DOM (Reader::read_value, parse) builds, whatever Options::max_depth says:
/// it recurses once per level, so this bounds its stack use (the pull parser has no such limit).
inline constexpr std::size_t kMaxDomDepth = 1024;

/// How a Reader reports and limits.
struct Options {
    /// Maximum nesting depth of arrays and objects (the outermost container is depth 1).
    std::size_t max_depth = kDefaultMaxDepth;
    /// What the text is, for messages: "invalid <subject> at byte N: ...".
    std::string_view subject = "JSON";
    /// Offset of the text inside its file, for messages ("... (file offset M)"); none if absent.
    std::optional<std::size_t> file_offset;
    /// Integers beyond 64 bits read as Type::real (their nearest double) instead of being an
    /// error: for configuration files that write sentinels such as tokenizer_config.json's
    /// model_max_length = 1000000000000000019884624838656.
    bool big_integers_as_real = false;
};

/// The kind of a JSON value. Numbers are split: `integer` has no fraction and no exponent.
enum class Type : std::uint8_t { null, boolean, integer, real, string, array, object };

/// "null", "a boolean", "an integer", ... for messages.
constexpr std::string_view type_name(Type t) noexcept {
    switch (t) {
        case Type::null: return "null";
        case Type::boolean: return "a boolean";
        case Type::integer: return "an integer";
        case Type::real: return "a number with a fraction or exponent";
        case Type::string: return "a string";
        case Type::array: return "an array";
        case Type::object: return "an object";
    }
    return "?";
}

/// Length of the well-formed UTF-8 sequence starting at s[i] (1..4), or 0 when it is not
/// well-formed (overlong forms, surrogates, code points above U+10FFFF, truncation).
constexpr std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
    const utf8::Utf8Char c = utf8::decode_utf8(s, i);
    return c.valid ? c.len : 0;
}

/// True when `s` is well-formed UTF-8.
constexpr bool valid_utf8(std::string_view s) noexcept { return utf8::valid_utf8(s); }

/// Appends `s` to `out` as a JSON string literal (with the quotes). Escapes '"', '\\' and
/// control characters the way serde_json does (\b \f \n \r \t, else \u00XX); other bytes,
/// including UTF-8 sequences, are copied as they are (check valid_utf8 first if unsure).
inline void append_string(std::string& out, std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    out += "\\u00";
                    out += hex[c >> 4];
                    out += hex[c & 0xF];
                } else {
                    out += ch;
                }
        }
    }
    out += '"';
}

/// A printable, bounded rendering of arbitrary bytes for error messages: non-printable bytes
/// become \xNN and anything past `max_chars` is cut with "...".
inline std::string printable(std::string_view s, std::size_t max_chars = 120) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (out.size() >= max_chars) {
            out += "...";
            break;
        }
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7F && c != '\\') {
            out += static_cast<char>(c);
        } else if (c == '\\') {
            out += "\\\\";
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0xF];
        }
    }
    return out;
}

class Value;

/// A pull parser over one JSON text. Every error is a moe::FormatError whose where() is the
/// `where` given here (typically the file name) and whose message names the byte offset.
class Reader {
public:
    Reader(std::string_view text, std::string_view where, Options options = {})
        : text_(text), where_(where), opt_(options) {}

    /// Byte offset of the reader inside the text.
    std::size_t offset() const noexcept { return pos_; }
    /// Current nesting depth (0 outside any container).
    std::size_t depth() const noexcept { return stack_.size(); }
    const std::string& where() const noexcept { return where_; }
    std::string_view text() const noexcept { return text_; }

    /// "byte N" or "byte N (file offset M)".
    std::string location(std::size_t at) const {
        return opt_.file_offset ? ::moe::detail::cat("byte ", at, " (file offset ", *opt_.file_offset + at, ")")
                                : ::moe::detail::cat("byte ", at);
    }

    /// Throws FormatError "invalid <subject> at byte <at>: <what> (near '...')".
    [[noreturn]] void fail_at(std::size_t at, std::string_view what) const {
        std::string msg = ::moe::detail::cat("invalid ", opt_.subject, " at ", location(at), ": ", what);
        if (at < text_.size()) msg += ::moe::detail::cat(" (near '", printable(text_.substr(at, 24), 24), "')");
        else msg += " (at the end of the text)";
        throw FormatError(where_, msg);
    }
    [[noreturn]] void fail(std::string_view what) const { fail_at(pos_, what); }

    /// Skips whitespace and reports the type of the next value without consuming it.
    Type peek() {
        skip_ws();
        if (pos_ >= text_.size()) fail("unexpected end of the text, expected a value");
        switch (text_[pos_]) {
            case '{': return Type::object;
            case '[': return Type::array;
            case '"': return Type::string;
            case 't': case 'f': return Type::boolean;
            case 'n': return Type::null;
            default: break;
        }
        const char c = text_[pos_];
        if (c == '-' || (c >= '0' && c <= '9')) {
            const Number n = scan_number();
            return n.integral && !(n.overflow && opt_.big_integers_as_real) ? Type::integer : Type::real;
        }
        fail(::moe::detail::cat("unexpected character '", printable(text_.substr(pos_, 1)), "', expected a value"));
    }

    // ---- containers ------------------------------------------------------------------------

    /// Consumes '{'.
    void begin_object() { open('{', "an object"); }
    /// Reads the next key of the current object into `key` and consumes the ':' after it;
    /// returns false (having consumed '}') when the object ends. The caller must then read
    /// the member's value.
    bool next_key(std::string& key) {
        if (!advance('}', "'}'")) return false;
        if (pos_ >= text_.size() || text_[pos_] != '"') fail("expected a string key");
        key_offset_ = pos_;
        read_string(key);
        skip_ws();
        if (pos_ >= text_.size() || text_[pos_] != ':') fail("expected ':' after an object key");
        ++pos_;
        return true;
    }
    /// Byte offset of the key last read by next_key (its opening quote).
    std::size_t key_offset() const noexcept { return key_offset_; }
    /// Consumes '['.
    void begin_array() { open('[', "an array"); }
    /// True when another element follows (the caller must then read it); false, having
    /// consumed ']', at the end of the array.
    bool next_element() { return advance(']', "']'"); }

    // ---- scalars ---------------------------------------------------------------------------

    /// Reads a string value, decoding escapes to UTF-8.
    std::string read_string() {
        std::string s;
        read_string(s);
        return s;
    }
    void read_string(std::string& out) {
        skip_ws();
        if (pos_ >= text_.size() || text_[pos_] != '"') expected("a string");
        out.clear();
        const std::size_t start = pos_++;
        for (;;) {
            // fast path: a run of plain printable ASCII
            std::size_t run = pos_;
            while (run < text_.size()) {
                const auto c = static_cast<unsigned char>(text_[run]);
                if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') break;
                ++run;
            }
            out.append(text_.data() + pos_, run - pos_);
            pos_ = run;
            if (pos_ >= text_.size()) fail_at(start, "unterminated string");
            const auto c = static_cast<unsigned char>(text_[pos_]);
            if (c == '"') {
                ++pos_;
                return;
            }
            if (c == '\\') {
                read_escape(out);
            } else if (c < 0x20) {
                fail(::moe::detail::cat("control character 0x", hex2(c), " inside a string (it must be escaped)"));
            } else {
                const std::size_t n = utf8_sequence_length(text_, pos_);
                if (n == 0) fail(::moe::detail::cat("invalid UTF-8 byte 0x", hex2(c), " inside a string"));
                out.append(text_.data() + pos_, n);
                pos_ += n;
            }
        }
    }

    bool read_bool() {
        skip_ws();
        if (literal("true")) return true;
        if (literal("false")) return false;
        expected("a boolean");
    }
    void read_null() {
        skip_ws();
        if (!literal("null")) expected("null");
    }

    /// Reads a non-negative integer that fits in 64 bits (no fraction, no exponent).
    std::uint64_t read_u64() {
        skip_ws();
        const Number n = integer_token("a non-negative integer");
        if (n.negative && n.magnitude != 0)
            fail_at(n.begin, ::moe::detail::cat("expected a non-negative integer, found ", token(n)));
        pos_ = n.end;
        return n.magnitude;
    }
    /// Reads an integer that fits in std::int64_t (no fraction, no exponent).
    std::int64_t read_i64() {
        skip_ws();
        const Number n = integer_token("an integer");
        constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
        if (n.magnitude > max + (n.negative ? 1u : 0u))
            fail_at(n.begin, ::moe::detail::cat("integer ", token(n), " does not fit in a signed 64-bit integer"));
        pos_ = n.end;
        if (!n.negative) return static_cast<std::int64_t>(n.magnitude);
        return n.magnitude == max + 1 ? std::numeric_limits<std::int64_t>::min()
                                      : -static_cast<std::int64_t>(n.magnitude);
    }
    /// Reads any number as a double (integers beyond 2^53 lose precision).
    double read_double() {
        skip_ws();
        if (pos_ >= text_.size() || !(text_[pos_] == '-' || (text_[pos_] >= '0' && text_[pos_] <= '9')))
            expected("a number");
        const Number n = scan_number();
        double d = 0;
        const char* first = text_.data() + n.begin;
        const char* last = text_.data() + n.end;
        const auto r = std::from_chars(first, last, d);
        if (r.ec != std::errc() || r.ptr != last)
            fail_at(n.begin, ::moe::detail::cat("number ", token(n), " is out of the range of a double"));
        pos_ = n.end;
        return d;
    }

    /// Reads (and fully validates) the next value, whatever it is, and discards it.
    void skip_value();
    /// Reads the next value into a DOM.
    Value read_value();

    /// Requires that only whitespace remains and every container has been closed.
    void finish() {
        skip_ws();
        if (!stack_.empty()) fail("unexpected end of the text inside a container");
        if (pos_ != text_.size()) fail("trailing characters after the JSON value");
    }

private:
    struct Frame {
        char close;
        bool has_members;
    };
    struct Number {
        std::size_t begin = 0, end = 0;
        bool negative = false;
        bool integral = true;
        bool overflow = false;  // integral but larger than 2^64 - 1
        std::uint64_t magnitude = 0;
    };

    static std::string hex2(unsigned c) {
        static constexpr char hex[] = "0123456789ABCDEF";
        return {hex[(c >> 4) & 0xF], hex[c & 0xF]};
    }
    std::string_view token(const Number& n) const { return text_.substr(n.begin, std::min<std::size_t>(n.end - n.begin, 64)); }

    [[noreturn]] void expected(std::string_view what) {
        skip_ws();
        if (pos_ >= text_.size()) fail(::moe::detail::cat("expected ", what, ", found the end of the text"));
        const char c = text_[pos_];
        const bool starts_value = c == '{' || c == '[' || c == '"' || c == 't' || c == 'f' || c == 'n' ||
                                  c == '-' || (c >= '0' && c <= '9');
        if (starts_value) fail(::moe::detail::cat("expected ", what, ", found ", type_name(peek())));
        fail(::moe::detail::cat("expected ", what, ", found '", printable(text_.substr(pos_, 1)), "'"));
    }

    void skip_ws() noexcept {
        while (pos_ < text_.size()) {
            const char c = text_[pos_];
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
            ++pos_;
        }
    }

    bool literal(std::string_view word) noexcept {
        if (text_.substr(pos_, word.size()) != word) return false;
        pos_ += word.size();
        return true;
    }

    void open(char c, std::string_view what) {
        skip_ws();
        if (pos_ >= text_.size() || text_[pos_] != c) expected(what);
        if (stack_.size() >= opt_.max_depth)
            fail(::moe::detail::cat("nesting deeper than ", opt_.max_depth, " levels"));
        ++pos_;
        stack_.push_back({c == '{' ? '}' : ']', false});
    }

    // Moves to the next member of the innermost container; false (consumed `close`) at its end.
    bool advance(char close, std::string_view close_name) {
        if (stack_.empty() || stack_.back().close != close)
            throw Error(where_, "json::Reader misuse: next_key/next_element outside a matching container");
        Frame& f = stack_.back();
        skip_ws();
        if (pos_ >= text_.size())
            fail(::moe::detail::cat("unexpected end of the text (missing ", close_name, ")"));
        if (text_[pos_] == close) {
            ++pos_;
            stack_.pop_back();
            return false;
        }
        if (f.has_members) {
            if (text_[pos_] != ',') fail(::moe::detail::cat("expected ',' or ", close_name));
            ++pos_;
            skip_ws();
            if (pos_ < text_.size() && text_[pos_] == close) fail(::moe::detail::cat("trailing comma before ", close_name));
        }
        f.has_members = true;
        return true;
    }

    // Validates the number grammar at pos_ without consuming it.
    Number scan_number() const {
        Number n;
        std::size_t i = n.begin = pos_;
        const auto digit = [&](std::size_t k) { return k < text_.size() && text_[k] >= '0' && text_[k] <= '9'; };
        if (i < text_.size() && text_[i] == '-') {
            n.negative = true;
            ++i;
        }
        if (!digit(i)) fail_at(i, "expected a digit");
        if (text_[i] == '0') {
            ++i;
            if (digit(i)) fail_at(n.begin, "leading zeros are not allowed in numbers");
        } else {
            while (digit(i)) {
                const auto d = static_cast<std::uint64_t>(text_[i] - '0');
                if (n.magnitude > (std::numeric_limits<std::uint64_t>::max() - d) / 10) n.overflow = true;
                else n.magnitude = n.magnitude * 10 + d;
                ++i;
            }
        }
        if (i < text_.size() && text_[i] == '.') {
            n.integral = false;
            ++i;
            if (!digit(i)) fail_at(i, "expected a digit after the decimal point");
            while (digit(i)) ++i;
        }
        if (i < text_.size() && (text_[i] == 'e' || text_[i] == 'E')) {
            n.integral = false;
            ++i;
            if (i < text_.size() && (text_[i] == '+' || text_[i] == '-')) ++i;
            if (!digit(i)) fail_at(i, "expected a digit in the exponent");
            while (digit(i)) ++i;
        }
        n.end = i;
        return n;
    }

    Number integer_token(std::string_view what) {
        if (pos_ >= text_.size() || !(text_[pos_] == '-' || (text_[pos_] >= '0' && text_[pos_] <= '9')))
            expected(what);
        const Number n = scan_number();
        if (!n.integral) fail_at(n.begin, ::moe::detail::cat("expected ", what, ", found the non-integer number ", token(n)));
        if (n.overflow) fail_at(n.begin, ::moe::detail::cat("integer ", token(n), " does not fit in 64 bits"));
        return n;
    }

    unsigned read_hex4() {
        unsigned v = 0;
        for (int k = 0; k < 4; ++k) {
            if (pos_ >= text_.size()) fail("truncated \\u escape");
            const char c = text_[pos_];
            unsigned d;
            if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') d = static_cast<unsigned>(c - 'A' + 10);
            else fail("expected 4 hex digits after \\u");
            v = v * 16 + d;
            ++pos_;
        }
        return v;
    }

    void read_escape(std::string& out) {
        const std::size_t at = pos_++;  // the backslash
        if (pos_ >= text_.size()) fail_at(at, "unterminated escape sequence");
        const char c = text_[pos_++];
        switch (c) {
            case '"': out += '"'; return;
            case '\\': out += '\\'; return;
            case '/': out += '/'; return;
            case 'b': out += '\b'; return;
            case 'f': out += '\f'; return;
            case 'n': out += '\n'; return;
            case 'r': out += '\r'; return;
            case 't': out += '\t'; return;
            case 'u': break;
            default: fail_at(at, ::moe::detail::cat("invalid escape sequence '\\", printable(std::string_view(&c, 1)), "'"));
        }
        std::uint32_t cp = read_hex4();
        if (cp >= 0xDC00 && cp <= 0xDFFF) fail_at(at, "lone low surrogate in a \\u escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (text_.substr(pos_, 2) != "\\u") fail_at(at, "high surrogate not followed by a \\u low surrogate");
            pos_ += 2;
            const std::uint32_t lo = read_hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail_at(at, "high surrogate not followed by a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        utf8::append_utf8(out, static_cast<char32_t>(cp));
    }

    std::string_view text_;
    std::string where_;
    Options opt_;
    std::size_t pos_ = 0;
    std::size_t key_offset_ = 0;
    std::vector<Frame> stack_;
};

/// A parsed JSON value (DOM). Objects keep their members in document order; keys are unique.
class Value {
public:
    struct Member;
    using Array = std::vector<Value>;
    using Object = std::vector<Member>;

    Value() = default;

    Type type() const noexcept { return type_; }
    /// Byte offset of the value in the text it was parsed from.
    std::size_t offset() const noexcept { return offset_; }

    bool is_null() const noexcept { return type_ == Type::null; }
    bool is_bool() const noexcept { return type_ == Type::boolean; }
    bool is_integer() const noexcept { return type_ == Type::integer; }
    bool is_number() const noexcept { return type_ == Type::integer || type_ == Type::real; }
    bool is_string() const noexcept { return type_ == Type::string; }
    bool is_array() const noexcept { return type_ == Type::array; }
    bool is_object() const noexcept { return type_ == Type::object; }

    bool as_bool() const {
        require(Type::boolean);
        return bool_;
    }
    /// The integer value when it is an integer that fits in uint64 (resp. int64), else nullopt.
    std::optional<std::uint64_t> as_u64() const noexcept {
        if (type_ != Type::integer || (negative_ && magnitude_ != 0)) return std::nullopt;
        return magnitude_;
    }
    std::optional<std::int64_t> as_i64() const noexcept {
        constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
        if (type_ != Type::integer || magnitude_ > max + (negative_ ? 1u : 0u)) return std::nullopt;
        if (!negative_) return static_cast<std::int64_t>(magnitude_);
        return magnitude_ == max + 1 ? std::numeric_limits<std::int64_t>::min() : -static_cast<std::int64_t>(magnitude_);
    }
    /// Any number as a double.
    double as_double() const {
        if (type_ == Type::integer) return negative_ ? -static_cast<double>(magnitude_) : static_cast<double>(magnitude_);
        require(Type::real);
        return real_;
    }
    const std::string& as_string() const {
        require(Type::string);
        return string_;
    }
    const Array& as_array() const {
        require(Type::array);
        return array_;
    }
    const Object& as_object() const {
        require(Type::object);
        return object_;
    }

    /// The member named `key` of an object, or nullptr (also when this is not an object).
    inline const Value* find(std::string_view key) const noexcept;

private:
    friend class Reader;
    void require(Type t) const {
        check<FormatError>(type_ == t, "json::Value", "expected ", type_name(t), ", found ", type_name(type_),
                           " (at byte ", offset_, ")");
    }

    Type type_ = Type::null;
    std::size_t offset_ = 0;
    bool bool_ = false;
    bool negative_ = false;
    std::uint64_t magnitude_ = 0;
    double real_ = 0;
    std::string string_;
    Array array_;
    Object object_;
};

struct Value::Member {
    std::string key;
    Value value;
};

inline const Value* Value::find(std::string_view key) const noexcept {
    if (type_ != Type::object) return nullptr;
    for (const Member& m : object_)
        if (m.key == key) return &m.value;
    return nullptr;
}

inline Value Reader::read_value() {
    const Type t = peek();
    if ((t == Type::array || t == Type::object) && stack_.size() >= kMaxDomDepth)
        fail(::moe::detail::cat("nesting deeper than ", kMaxDomDepth, " levels (the limit of json::Value)"));
    Value v;
    v.type_ = t;
    v.offset_ = pos_;
    switch (t) {
        case Type::null: read_null(); break;
        case Type::boolean: v.bool_ = read_bool(); break;
        case Type::integer: {
            const Number n = integer_token("an integer");
            v.negative_ = n.negative;
            v.magnitude_ = n.magnitude;
            pos_ = n.end;
            break;
        }
        case Type::real: v.real_ = read_double(); break;
        case Type::string: read_string(v.string_); break;
        case Type::array:
            begin_array();
            while (next_element()) v.array_.push_back(read_value());
            break;
        case Type::object: {
            begin_object();
            std::set<std::string, std::less<>> seen;  // O(log n) per key whatever the keys (no hash flooding)
            std::string key;
            while (next_key(key)) {
                if (!seen.insert(key).second) fail_at(key_offset_, ::moe::detail::cat("duplicate key '", printable(key), "'"));
                Value member = read_value();
                v.object_.push_back({key, std::move(member)});
            }
            break;
        }
    }
    return v;
}

inline void Reader::skip_value() { (void)read_value(); }

/// Parses a complete JSON text (one value, surrounded by optional whitespace).
inline Value parse(std::string_view text, std::string_view where = "json", Options options = {}) {
    Reader r(text, where, options);
    Value v = r.read_value();
    r.finish();
    return v;
}

}  // namespace moe::io::json
