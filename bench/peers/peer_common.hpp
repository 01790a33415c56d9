// bench/peers/peer_common.hpp - what the ggml peer programs share: their command line
// (--threads, --w, --reps, --min-time) and their timing loop. Not part of the library.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace moe_peers {

struct Options {
  std::vector<int> threads;
  std::vector<std::string> w;
  int reps = 5;
  double min_time = 0.5;
};

/// Reads --threads N..., --w NAME..., --reps R, --min-time S into opt (which holds the defaults);
/// false (after printing `usage`) on anything else.
inline bool parse_options(int argc, char** argv, Options& opt, const char* usage) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto list = [&](auto parse) {
      for (; i + 1 < argc && argv[i + 1][0] != '-'; ++i) parse(std::string(argv[i + 1]));
    };
    if (a == "--threads") {
      opt.threads.clear();
      list([&](const std::string& v) { opt.threads.push_back(std::stoi(v)); });
    } else if (a == "--w") {
      opt.w.clear();
      list([&](const std::string& v) { opt.w.push_back(v); });
    } else if (a == "--reps" && i + 1 < argc) {
      opt.reps = std::stoi(argv[++i]);
    } else if (a == "--min-time" && i + 1 < argc) {
      opt.min_time = std::stod(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s %s\n", argv[0], usage);
      return false;
    }
  }
  return true;
}

inline double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// Median and best seconds per call of compute(): two warm-up calls, then `reps` repetitions of
/// at least `min_time` seconds each.
template <class F>
void measure(F&& compute, int reps, double min_time, double& median, double& best) {
  compute();
  double t0 = now();
  compute();
  const double one = now() - t0;
  const int inner = std::max(1, static_cast<int>(min_time / std::max(one, 1e-9)));
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    t0 = now();
    for (int i = 0; i < inner; ++i) compute();
    times.push_back((now() - t0) / inner);
  }
  std::sort(times.begin(), times.end());
  median = times.size() % 2 ? times[times.size() / 2] : 0.5 * (times[times.size() / 2 - 1] + times[times.size() / 2]);
  best = times.front();
}

}  // namespace moe_peers
