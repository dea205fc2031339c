#define CAF_SUITE ds_protocol
#include <caf/test/unit_test.hpp>

#include "net/ds_protocol.hpp"
#include "tests/test_util.hpp"

using namespace ebridge;
using namespace ebridge::ds;

CAF_TEST(offsets are fixed width and sort like their positions) {
  CAF_CHECK_EQUAL(format_offset(0), "0000000000000000_0000000000000000");
  CAF_CHECK_EQUAL(format_offset(1234), "0000000000000000_0000000000001234");
  CAF_CHECK_LESS(format_offset(99), format_offset(100));
}

CAF_TEST(only the sentinels and issued offsets parse) {
  CAF_CHECK(parse_offset("-1")->what == offset_spec::kind::start);
  CAF_CHECK(parse_offset("now")->what == offset_spec::kind::now);
  auto at = parse_offset("0000000000000000_0000000000000042");
  CAF_REQUIRE(at);
  CAF_CHECK(at->what == offset_spec::kind::at);
  CAF_CHECK_EQUAL(at->position, 42u);
  for (auto bad : {"", "-2", "NOW", "0", "0,1", "0 1", "../x", "x/..",
                   "0000000000000000_000000000000004",
                   "0000000000000000_00000000000000042",
                   "0000000000000001_0000000000000042",
                   "0000000000000000-0000000000000042"})
    CAF_CHECK(!parse_offset(bad));
  CAF_CHECK(!parse_offset(std::string("-1\0", 3)));
}

CAF_TEST(query strings decode percent escapes and keep repeats) {
  auto q = parse_query("/s?offset=0%201&live=sse&offset=x&flag");
  CAF_REQUIRE(q);
  CAF_CHECK_EQUAL(q->count("offset"), 2u);
  CAF_CHECK_EQUAL(q->find("offset")->second, "0 1");
  CAF_CHECK_EQUAL(q->find("live")->second, "sse");
  CAF_CHECK_EQUAL(q->find("flag")->second, "");
  CAF_CHECK(!parse_query("/s?offset=%zz"));
  CAF_CHECK(!parse_query("/s?offset=%4"));
  CAF_CHECK(parse_query("/s")->empty());
}

CAF_TEST(producer headers come all three or none) {
  std::string id = "p", epoch = "2", seq = "7", empty, bad = "1e3";
  auto none = parse_producer(nullptr, nullptr, nullptr);
  CAF_REQUIRE(none);
  CAF_CHECK(!*none);
  auto all = parse_producer(&id, &epoch, &seq);
  CAF_REQUIRE(all && *all);
  CAF_CHECK_EQUAL((*all)->epoch, 2u);
  CAF_CHECK_EQUAL((*all)->seq, 7u);
  CAF_CHECK(!parse_producer(&id, nullptr, nullptr));
  CAF_CHECK(!parse_producer(&id, &epoch, nullptr));
  CAF_CHECK(!parse_producer(&empty, &epoch, &seq));
  CAF_CHECK(!parse_producer(&id, &bad, &seq));
  std::string too_big = "9007199254740992";
  CAF_CHECK(!parse_producer(&id, &epoch, &too_big));
  std::string max = "9007199254740991";
  CAF_CHECK(parse_producer(&id, &epoch, &max));
}

CAF_TEST(ttl is zero or a positive integer without leading zeros) {
  CAF_CHECK_EQUAL(EB_OK(parse_ttl("0")), 0u);
  CAF_CHECK_EQUAL(EB_OK(parse_ttl("3600")), 3600u);
  for (auto bad : {"", "abc", "-1", "00060", "+60", "60.5", "1e3", " 60"})
    CAF_CHECK(!parse_ttl(bad));
}

CAF_TEST(rfc3339 timestamps parse with fractions and offsets) {
  CAF_CHECK_EQUAL(EB_OK(parse_rfc3339_ms("1970-01-01T00:00:00Z")), 0);
  CAF_CHECK_EQUAL(EB_OK(parse_rfc3339_ms("2026-01-01T12:00:00.123Z")),
                  1767268800123);
  CAF_CHECK_EQUAL(EB_OK(parse_rfc3339_ms("2026-01-01T12:00:00.123+00:00")),
                  1767268800123);
  CAF_CHECK_EQUAL(EB_OK(parse_rfc3339_ms("2026-01-01T14:00:00+02:00")),
                  1767268800000);
  CAF_CHECK_EQUAL(EB_OK(parse_rfc3339_ms("2026-01-01T12:00:00.1239Z")),
                  1767268800123);
  for (auto bad : {"not-a-timestamp", "2026-01-01", "2026-13-01T00:00:00Z",
                   "2026-01-01T00:00:00", "2026-01-01T00:00:00.Z",
                   "2026-01-01T00:00:00+0200", "2026-01-01T00:00:00Zjunk"})
    CAF_CHECK(!parse_rfc3339_ms(bad));
}

CAF_TEST(cursors follow the clock and never repeat for a client) {
  int64_t t = 1728432000000 + 20000 * 100 + 5;
  CAF_CHECK_EQUAL(next_cursor(t, nullptr, 0), "100");
  std::string behind = "99";
  CAF_CHECK_EQUAL(next_cursor(t, &behind, 7), "100");
  std::string same = "100";
  auto next = std::stoull(next_cursor(t, &same, 7));
  CAF_CHECK_GREATER(next, 100u);
  CAF_CHECK_LESS_OR_EQUAL(next, 280u);
  std::string garbage = "abc";
  CAF_CHECK_EQUAL(next_cursor(t, &garbage, 0), "100");
}

CAF_TEST(base64 pads like the standard) {
  CAF_CHECK_EQUAL(base64(""), "");
  CAF_CHECK_EQUAL(base64("H"), "SA==");
  CAF_CHECK_EQUAL(base64("He"), "SGU=");
  CAF_CHECK_EQUAL(base64("Hello"), "SGVsbG8=");
  CAF_CHECK_EQUAL(base64(std::string("\0\xff\x10", 3)), "AP8Q");
}

CAF_TEST(sse events put every payload line on its own data line) {
  std::string out;
  append_sse_event(out, "data", "a\r\nb\rc\nd");
  CAF_CHECK_EQUAL(out, "event: data\ndata:a\ndata:b\ndata:c\ndata:d\n\n");
  out.clear();
  append_sse_event(out, "control", "{\"x\":1}");
  CAF_CHECK_EQUAL(out, "event: control\ndata:{\"x\":1}\n\n");
  out.clear();
  // An injected event stays data.
  append_sse_event(out, "data", "x\n\nevent: control\ndata: {}");
  CAF_CHECK_EQUAL(out, "event: data\ndata:x\ndata:\ndata:event: control\n"
                       "data:data: {}\n\n");
}

CAF_TEST(media types compare without parameters or case) {
  CAF_CHECK_EQUAL(media_type(" Application/JSON ; charset=utf-8"),
                  "application/json");
  CAF_CHECK(is_json("application/json; charset=utf-8"));
  CAF_CHECK(is_text("text/plain"));
  CAF_CHECK(is_text("application/json"));
  CAF_CHECK(!is_text("application/octet-stream"));
  CAF_CHECK(!is_json("application/jsonx"));
}
