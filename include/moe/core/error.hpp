// moe/core/error.hpp - the library's exceptions.
//
// Every failure the library detects is reported as an exception derived from moe::Error whose
// message says *where* (the component, file, tensor or argument) and *what* (the expectation and
// what was found). Nothing is reported through return codes and nothing is left undefined.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moe {

/// Base of every exception thrown by the library. what() is "<where>: <message>".
class Error : public std::runtime_error {
public:
    Error(std::string_view where, std::string_view message)
        : std::runtime_error(std::string(where) + ": " + std::string(message)), where_(where) {}
    /// The component, file, tensor or argument the error is about.
    const std::string& where() const noexcept { return where_; }

private:
    std::string where_;
};

/// A tensor or argument has the wrong shape or size.
class ShapeError : public Error { using Error::Error; };
/// A tensor has the wrong dtype, or a dtype is unknown.
class DTypeError : public Error { using Error::Error; };
/// A file is malformed, truncated or violates its format.
class FormatError : public Error { using Error::Error; };
/// A file or a named entry in it is missing.
class NotFoundError : public Error { using Error::Error; };
/// A configuration value or argument is out of range (e.g. k larger than the expert count).
class ConfigError : public Error { using Error::Error; };
/// Data values are invalid (NaN or infinite where finite values are required).
class ValueError : public Error { using Error::Error; };
/// An operating-system call failed (open, mmap, ...).
class IOError : public Error { using Error::Error; };

namespace detail {

inline void append(std::ostringstream&) {}
template <class T, class... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
    os << v;
    append(os, rest...);
}

/// Concatenates its arguments with operator<< into one string.
template <class... Args>
std::string cat(const Args&... args) {
    std::ostringstream os;
    append(os, args...);
    return os.str();
}

}  // namespace detail

/// Formats a shape as "[a, b, c]".
template <class Range>
std::string shape_str(const Range& shape) {
    std::string s = "[";
    bool first = true;
    for (auto v : shape) {
        if (!first) s += ", ";
        s += std::to_string(v);
        first = false;
    }
    return s + "]";
}

/// Throws E(where, cat(args...)) when cond is false.
template <class E = Error, class... Args>
inline void check(bool cond, std::string_view where, const Args&... args) {
    if (!cond) [[unlikely]]
        throw E(where, detail::cat(args...));
}

}  // namespace moe
