#pragma once

#include <caf/test/unit_test.hpp>

// CAF 0.17's checks print the expression only; these add a message.

/// Checks `cond`, printing `msg` (a stream expression) when it fails.
#define EB_CHECK_MSG(cond, msg)                                                \
  do {                                                                         \
    bool eb_ok_ = static_cast<bool>(cond);                                     \
    if (!eb_ok_)                                                               \
      CAF_TEST_PRINT_ERROR(#cond << ": " << msg);                              \
    CAF_CHECK(eb_ok_);                                                         \
  } while (false)

/// Requires `cond`, failing the test with `msg` when it does not hold.
#define EB_REQUIRE_MSG(cond, msg)                                              \
  do {                                                                         \
    if (!static_cast<bool>(cond))                                              \
      CAF_FAIL(#cond << ": " << msg);                                          \
  } while (false)

#include <utility>

#include <caf/expected.hpp>

#include "core/error.hpp"

namespace ebridge::test {

/// The value of `x`; fails the test with the error if there is none.
template <class T>
T value_of(caf::expected<T> x, const char* expr) {
  if (!x)
    CAF_FAIL(expr << " failed: " << describe(x.error()));
  return std::move(*x);
}

} // namespace ebridge::test

/// The value of an expected, by value (never a reference to a temporary).
#define EB_OK(expr) ::ebridge::test::value_of((expr), #expr)
