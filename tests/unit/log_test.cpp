#define CAF_SUITE log
#include <caf/test/unit_test.hpp>

#include "core/log.hpp"

using namespace ebridge;

namespace {

struct captured_log {
  captured_log() {
    log::set_sink(&text);
    log::set_level(log_level::info);
  }
  ~captured_log() {
    log::set_sink(nullptr);
    log::set_level(log_level::info);
  }
  std::string text;
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(log_tests, captured_log)

CAF_TEST(a line has level component event and fields) {
  log::warn("registry", "connection lost", {{"retry_ms", "100"}});
  CAF_CHECK(text.compare(0, 3, "ts=") == 0);
  CAF_CHECK_NOT_EQUAL(text.find(" level=warn component=registry "
                                "event=\"connection lost\" retry_ms=100\n"),
                      std::string::npos);
}

CAF_TEST(values with spaces quotes or newlines are quoted and escaped) {
  auto line = log::format_fields("x", "e", {{"msg", "a \"b\"\nc"}, {"k", ""}});
  CAF_CHECK_EQUAL(line, "component=x event=e msg=\"a \\\"b\\\"\\nc\" k=\"\"");
}

CAF_TEST(lines below the level are dropped) {
  log::set_level(log_level::warn);
  log::info("x", "hidden");
  log::debug("x", "hidden");
  CAF_CHECK_EQUAL(text, "");
  log::error("x", "shown");
  CAF_CHECK_NOT_EQUAL(text.find("event=shown"), std::string::npos);
  log::set_level(log_level::off);
  text.clear();
  log::error("x", "hidden");
  CAF_CHECK_EQUAL(text, "");
}

CAF_TEST(levels parse from their names only) {
  log_level level = log_level::info;
  CAF_CHECK(from_string("debug", level));
  CAF_CHECK(level == log_level::debug);
  CAF_CHECK(!from_string("DEBUG", level));
  CAF_CHECK(!from_string("verbose", level));
}

CAF_TEST_FIXTURE_SCOPE_END()
