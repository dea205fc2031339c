#define CAF_SUITE error
#include <caf/test/unit_test.hpp>

#include <caf/sec.hpp>

#include "core/error.hpp"

using namespace ebridge;

CAF_TEST(project errors carry their category and code) {
  auto err = make_error(ec::invalid_tags, "tag \"a\" must be a string");
  CAF_CHECK_EQUAL(err.category(), error_category);
  CAF_CHECK_EQUAL(err.code(), static_cast<uint8_t>(ec::invalid_tags));
}

CAF_TEST(project errors render as code and message) {
  auto err = make_error(ec::database_unavailable, "connection refused");
  CAF_CHECK_EQUAL(describe(err), "database_unavailable: connection refused");
  CAF_CHECK_EQUAL(error_message(err), "connection refused");
  CAF_CHECK_EQUAL(describe(make_error(ec::timeout)), "timeout");
  CAF_CHECK_EQUAL(describe(caf::error{}), "no error");
}

CAF_TEST(errors of CAF render with CAF names) {
  caf::error err = caf::sec::request_timeout;
  CAF_CHECK_EQUAL(describe(err), "request_timeout");
  CAF_CHECK_EQUAL(error_message(err), "request_timeout");
}

CAF_TEST(every code has a name) {
  for (int i = 0; i <= static_cast<int>(ec::shutting_down); ++i)
    CAF_CHECK_NOT_EQUAL(std::string{to_string(static_cast<ec>(i))}, "unknown");
}

CAF_TEST(has code tells our codes apart and ignores CAF codes) {
  CAF_CHECK(has_code(make_error(ec::invalid_input, "x"), ec::invalid_input));
  CAF_CHECK(!has_code(make_error(ec::timeout), ec::invalid_input));
  // A CAF error with the same number is not ours.
  caf::error caf_err{static_cast<uint8_t>(ec::invalid_input),
                     caf::atom("system")};
  CAF_CHECK(!has_code(caf_err, ec::invalid_input));
  CAF_CHECK(!has_code(caf::error{}, ec::invalid_input));
}
