// examples/cli.hpp - what the example programs share on their command line: the bad-usage exit
// (status 2, the program's name, a pointer to --help), number arguments, peak resident memory.
#pragma once

#include <sys/resource.h>

#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>

namespace moe_examples {

/// "<program>: <what>" and "(<program> --help for the options)" on stderr, then exit status 2.
[[noreturn]] inline void bad_usage(std::string_view program, const std::string& what) {
    std::cerr << program << ": " << what << "\n(" << program << " --help for the options)\n";
    std::exit(2);
}

/// The value of option `opt` as a number (the whole text), else bad_usage.
inline double number(std::string_view program, const std::string& opt, const std::string& v) {
    try {
        std::size_t used = 0;
        const double d = std::stod(v, &used);
        if (used == v.size()) return d;
    } catch (const std::exception&) {
    }
    bad_usage(program, opt + " needs a number, got '" + v + "'");
}

/// The process's peak resident memory so far, MiB.
inline double peak_rss_mib() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;
}

}  // namespace moe_examples
