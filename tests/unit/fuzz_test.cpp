#define CAF_SUITE fuzz
#include <caf/test/unit_test.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "config/options.hpp"
#include "core/error.hpp"
#include "core/json_depth.hpp"
#include "core/member.hpp"
#include "core/tags.hpp"
#include "net/ds_protocol.hpp"
#include "storage/pgoutput.hpp"
#include "storage/snapshot.hpp"
#include "storage/stream_log.hpp"
#include "storage/stream_recovery.hpp"
#include "tests/fuzz_util.hpp"

// A bounded, seeded fuzz run over every parser that takes bytes from
// outside and has no test of its own of this kind (pgoutput's decoder has
// its random and mutation runs in pgoutput_test): valid inputs, mutated at
// random, must give a value or an error, never a crash or a hang. The seed
// is fixed (EBRIDGE_FUZZ_SEED picks another; EBRIDGE_FUZZ_ROUNDS scales the
// rounds), so a failure replays.

using namespace ebridge;
using test::fuzz_seed;
using test::mutator;
using test::rounds;

namespace {

std::string sample_log() {
  stream_header h;
  h.name = "/v1/stream/a";
  h.content_type = "application/json";
  h.ttl_seconds = 60;
  append_record first;
  first.messages = {"1", R"({"a":[1,2]})"};
  first.producer = producer_stamp{"p", 3, 0};
  first.stream_seq = "0001";
  append_record second;
  second.messages = {"\"x\""};
  second.closes = true;
  return std::string{log_magic} + encode_record(h) + encode_record(first)
         + encode_record(second);
}

} // namespace

CAF_TEST(json parsers give a value or an error for any bytes) {
  mutator m;
  std::cout << "fuzz: seed " << fuzz_seed() << std::endl;
  std::vector<std::string> seeds = {
    R"({"team":"infra","role":"reviewer"})",
    R"({"tags":{"a":"1","0":"x","é":"\u00e9"}})",
    R"([1,2.5e3,"s\"\\",true,false,null,{"k":[]}])",
    to_json(member_event{event_op::insert, "/a", std::nullopt, std::nullopt},
            0)};
  size_t ok = 0;
  m.run(seeds, rounds(20000), [&](const std::string& text) {
    ok += parse_tags(text) ? 1 : 0;
    ok += parse_register_body(text) ? 1 : 0;
    ok += canonical_json(text) ? 1 : 0;
    ok += parse_member_event(text) ? 1 : 0;
    ok += json_depth_within(text) ? 1 : 0;
  });
  CAF_MESSAGE(ok << " inputs parsed");
  CAF_CHECK_GREATER(ok, 0u);
}

CAF_TEST(protocol fields give a value or an error for any bytes) {
  mutator m;
  std::vector<std::string> seeds = {"-1",
                                    "now",
                                    ds::format_offset(12345),
                                    "offset=-1&live=sse&cursor=7",
                                    "/v1/stream/a%20b?x=%2F",
                                    "2026-12-04T17:00:00.123Z",
                                    "3600",
                                    "42",
                                    "16/B374D848",
                                    format_lsn_offset(0x16B374D848, 3),
                                    "731:735:731,733"};
  std::string id = "p";
  m.run(seeds, rounds(20000), [&](const std::string& text) {
    (void)ds::parse_offset(text);
    (void)ds::percent_decode(text);
    (void)ds::parse_query(text);
    (void)ds::parse_ttl(text);
    (void)ds::parse_rfc3339_ms(text);
    (void)ds::parse_producer(&id, &text, &text);
    (void)parse_lsn(text);
    (void)parse_lsn_offset(text);
    view_snapshot snap;
    (void)parse_pg_snapshot(text, snap);
    (void)is_source_ref(text);
    (void)is_valid_utf8(text);
  });
  CAF_CHECK(true);
}

CAF_TEST(option values and config files give a value or a clear error) {
  mutator m;
  std::vector<std::string> values = {"500ms",   "20s",
                                     "5min",    "127.0.0.1:8080",
                                     "[::1]:0", "64MB",
                                     "1GB",     "info"};
  m.run(values, rounds(20000), [&](const std::string& text) {
    (void)parse_duration(text);
    (void)parse_listen_address(text);
    auto inv = parse_invocation({"--source.idle-lag=" + text, "--http.listen",
                                 text, "serve"},
                                {{"EBRIDGE_LOG_LEVEL", text}});
    if (!inv)
      CAF_CHECK(!error_message(inv.error()).empty());
  });
  char tmpl[] = "/tmp/ebridge-fuzz-config.XXXXXX";
  int fd = ::mkstemp(tmpl);
  CAF_REQUIRE(fd >= 0);
  ::close(fd);
  std::string path = tmpl;
  std::vector<std::string> files = {
    "# comment\n[http]\nlisten = 127.0.0.1:0\nlong-poll-timeout = 2s\n"
    "[source]\nslot = \"ebridge_a\"\nidle-lag = 64MB\n",
    "data-dir = /tmp/x\nlog.level = debug\n"};
  m.run(files, rounds(2000), [&](const std::string& text) {
    std::ofstream{path, std::ios::trunc} << text;
    auto inv = parse_invocation({"--config=" + path, "serve"}, {});
    if (!inv)
      CAF_CHECK(!error_message(inv.error()).empty());
  });
  std::remove(path.c_str());
}

CAF_TEST(stream logs read back as a stream or a refusal for any bytes) {
  mutator m;
  auto log = sample_log();
  size_t streams = 0;
  m.run({log}, rounds(20000), [&](const std::string& bytes) {
    auto r = read_stream_log(bytes);
    if (r.what == log_reading::kind::stream) {
      ++streams;
      // Whatever it read lies inside the bytes.
      for (auto& c : r.stream.chunks) {
        CAF_CHECK_LESS(c.file_pos, c.end);
        CAF_CHECK_LESS_OR_EQUAL(c.end, bytes.size());
      }
      CAF_CHECK_LESS_OR_EQUAL(r.stream.valid_size + r.stream.padding,
                              bytes.size());
    } else if (r.what == log_reading::kind::corrupt) {
      CAF_CHECK(!r.why.empty());
    }
  });
  CAF_MESSAGE(streams << " logs read as streams");
  CAF_CHECK_GREATER(streams, 0u);
}
