#pragma once

// A bounded, seeded mutation fuzzer shared by the fuzz runs: the seed is
// fixed (EBRIDGE_FUZZ_SEED picks another; EBRIDGE_FUZZ_ROUNDS scales the
// rounds), so a failure replays.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace ebridge::test {

inline unsigned fuzz_seed() {
  if (auto* text = std::getenv("EBRIDGE_FUZZ_SEED"))
    return static_cast<unsigned>(std::strtoul(text, nullptr, 10));
  return 20261204;
}

inline size_t rounds(size_t base) {
  if (auto* text = std::getenv("EBRIDGE_FUZZ_ROUNDS"))
    return base * std::max<size_t>(1, std::strtoul(text, nullptr, 10));
  return base;
}

/// Mutates inputs: flips, inserts, deletes, repeats and cuts bytes, and
/// splices in bytes that parsers find hard.
struct mutator {
  std::mt19937_64 rng{fuzz_seed()};

  size_t below(size_t n) {
    return n == 0 ? 0 : static_cast<size_t>(rng() % n);
  }

  std::string mutate(std::string s) {
    static const std::vector<std::string> hard = {std::string(1, '\0'),
                                                  "\xff",
                                                  "\xc3",
                                                  "\xed\xa0\x80",
                                                  "[",
                                                  "{",
                                                  "\"",
                                                  "\\",
                                                  "\\u",
                                                  "\\ud800",
                                                  "-",
                                                  "e999",
                                                  "99999999999999999999999",
                                                  ":",
                                                  ",",
                                                  "%",
                                                  "%zz",
                                                  "_",
                                                  "/",
                                                  "\r\n",
                                                  "[[[[[[[[",
                                                  "1e-400",
                                                  "0x",
                                                  " "};
    auto n = 1 + below(4);
    for (size_t k = 0; k < n; ++k) {
      switch (below(7)) {
        case 0:
          if (!s.empty())
            s[below(s.size())] ^= static_cast<char>(1u << below(8));
          break;
        case 1:
          s.insert(below(s.size() + 1), 1, static_cast<char>(rng()));
          break;
        case 2:
          if (!s.empty()) {
            auto at = below(s.size());
            s.erase(at, 1 + below(std::min<size_t>(8, s.size() - at)));
          }
          break;
        case 3:
          if (!s.empty()) {
            auto at = below(s.size());
            auto len = 1 + below(std::min<size_t>(16, s.size() - at));
            s.insert(below(s.size() + 1), s.substr(at, len));
          }
          break;
        case 4:
          s.resize(below(s.size() + 1));
          break;
        default:
          s.insert(below(s.size() + 1), hard[below(hard.size())]);
          break;
      }
    }
    return s;
  }

  /// Calls `f` on `count` mutations of the seeds.
  void run(const std::vector<std::string>& seeds, size_t count,
           const std::function<void(const std::string&)>& f) {
    for (auto& seed : seeds)
      f(seed);
    for (size_t i = 0; i < count; ++i)
      f(mutate(seeds[below(seeds.size())]));
  }
};

} // namespace ebridge::test
