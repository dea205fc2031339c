#define CAF_SUITE config
#include <caf/test/unit_test.hpp>
#include "tests/test_util.hpp"

#include <cstdio>
#include <fstream>

#include <unistd.h>

#include "config/options.hpp"
#include "core/error.hpp"

using namespace ebridge;
using namespace std::chrono_literals;

namespace {

/// A config file in /tmp, removed at the end of the test.
struct temp_file {
  explicit temp_file(const std::string& text) {
    path = "/tmp/ebridge-config-test-" + std::to_string(::getpid()) + "-"
           + std::to_string(counter++) + ".conf";
    std::ofstream{path} << text;
  }
  ~temp_file() {
    std::remove(path.c_str());
  }
  std::string path;
  static inline int counter = 0;
};

caf::expected<invocation> parse(std::vector<std::string> args,
                                environment env = {}) {
  return parse_invocation(args, env);
}

std::string failure(const caf::expected<invocation>& x) {
  CAF_REQUIRE(!x);
  CAF_CHECK_EQUAL(x.error().code(), static_cast<uint8_t>(ec::invalid_config));
  return error_message(x.error());
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

} // namespace

CAF_TEST(defaults apply when nothing is given) {
  auto x = parse({"serve"});
  CAF_REQUIRE(x);
  CAF_CHECK_EQUAL(x->command, "serve");
  CAF_CHECK_EQUAL(x->opts.http_listen.host, "127.0.0.1");
  CAF_CHECK_EQUAL(x->opts.http_listen.port, 8080u);
  CAF_CHECK_EQUAL(x->opts.data_dir, "ebridge-data");
  CAF_CHECK(x->opts.log == log_level::info);
  CAF_CHECK_GREATER_OR_EQUAL(x->opts.max_threads, 1u);
  CAF_CHECK_EQUAL(x->opts.registry_timeout.count(), 5000);
}

CAF_TEST(flags take key=value and key value forms) {
  auto x = parse({"--postgres.url=postgresql://db/x", "serve", "--http.listen",
                  "0.0.0.0:9000", "--data-dir=/var/tmp/eb", "--log.level=debug",
                  "--scheduler.max-threads=3"});
  CAF_REQUIRE(x);
  CAF_CHECK_EQUAL(x->opts.postgres_url, "postgresql://db/x");
  CAF_CHECK_EQUAL(x->opts.http_listen.host, "0.0.0.0");
  CAF_CHECK_EQUAL(x->opts.http_listen.port, 9000u);
  CAF_CHECK_EQUAL(x->opts.data_dir, "/var/tmp/eb");
  CAF_CHECK(x->opts.log == log_level::debug);
  CAF_CHECK_EQUAL(x->opts.max_threads, 3u);
}

CAF_TEST(precedence is defaults then file then environment then command line) {
  temp_file file{"# comment\n"
                 "data-dir = /from/file\n"
                 "[http]\n"
                 "listen = \"127.0.0.1:1111\"\n"
                 "[log]\n"
                 "level = warn\n"
                 "[registry]\n"
                 "pool-size = 4\n"};
  environment env{{"EBRIDGE_CONFIG", file.path},
                  {"EBRIDGE_HTTP_LISTEN", "127.0.0.1:2222"},
                  {"EBRIDGE_LOG_LEVEL", "error"}};
  auto x = parse({"--log.level=trace", "serve"}, env);
  CAF_REQUIRE(x);
  CAF_CHECK_EQUAL(x->opts.data_dir, "/from/file");  // file only
  CAF_CHECK_EQUAL(x->opts.registry_pool_size, 4u);  // file only
  CAF_CHECK_EQUAL(x->opts.http_listen.port, 2222u); // env over file
  CAF_CHECK(x->opts.log == log_level::trace);       // CLI over env
  CAF_CHECK_EQUAL(x->opts.config_file, file.path);
}

CAF_TEST(the config flag wins over the config variable) {
  temp_file a{"data-dir = /a\n"};
  temp_file b{"data-dir = /b\n"};
  auto x = parse({"--config=" + b.path, "serve"}, {{"EBRIDGE_CONFIG", a.path}});
  CAF_REQUIRE(x);
  CAF_CHECK_EQUAL(x->opts.data_dir, "/b");
}

CAF_TEST(an unknown flag is an error naming it) {
  auto msg = failure(parse({"serve", "--http.lisen=1.2.3.4:5"}));
  CAF_CHECK(contains(msg, "--http.lisen"));
  msg = failure(parse({"-x"}));
  CAF_CHECK(contains(msg, "-x"));
}

CAF_TEST(a flag without a value is an error) {
  auto msg = failure(parse({"serve", "--data-dir"}));
  CAF_CHECK(contains(msg, "--data-dir needs a value"));
}

CAF_TEST(a port out of range is an error naming the option and source) {
  auto msg = failure(parse({"--http.listen=127.0.0.1:70000"}));
  CAF_CHECK(contains(msg, "http.listen"));
  CAF_CHECK(contains(msg, "--http.listen"));
  CAF_CHECK(contains(msg, "70000"));
  msg = failure(parse({"serve"}, {{"EBRIDGE_HTTP_LISTEN", "localhost"}}));
  CAF_CHECK(contains(msg, "EBRIDGE_HTTP_LISTEN"));
}

CAF_TEST(listen addresses accept IPv6 in brackets and names) {
  auto a = parse_listen_address("[::1]:8080");
  CAF_REQUIRE(a);
  CAF_CHECK_EQUAL(a->host, "::1");
  CAF_CHECK_EQUAL(a->port, 8080u);
  auto b = parse_listen_address("localhost:0");
  CAF_REQUIRE(b);
  CAF_CHECK_EQUAL(b->host, "localhost");
  CAF_CHECK_EQUAL(b->port, 0u);
  CAF_CHECK(!parse_listen_address("::1:8080"));
  CAF_CHECK(!parse_listen_address(":8080"));
  CAF_CHECK(!parse_listen_address("host:"));
  CAF_CHECK(!parse_listen_address("host:-1"));
  CAF_CHECK(!parse_listen_address("host:12ab"));
}

CAF_TEST(durations need a unit and stay within a year) {
  CAF_CHECK_EQUAL(parse_duration("500ms")->count(), 500);
  CAF_CHECK_EQUAL(parse_duration("20s")->count(), 20'000);
  CAF_CHECK_EQUAL(parse_duration("5min")->count(), 300'000);
  CAF_CHECK_EQUAL(parse_duration("15m")->count(), 900'000);
  CAF_CHECK_EQUAL(parse_duration("1h")->count(), 3'600'000);
  CAF_CHECK_EQUAL(parse_duration("0s")->count(), 0);
  for (auto bad : {"", "5", "s", "-1s", "1.5s", "5 s", "5sec", "10d",
                   "99999999999999h", "9000h"})
    EB_CHECK_MSG(!parse_duration(bad), "accepted " << bad);
  CAF_CHECK_EQUAL(to_string(std::chrono::milliseconds{300'000}), "5min");
  CAF_CHECK_EQUAL(to_string(std::chrono::milliseconds{1500}), "1500ms");
}

CAF_TEST(an unparsable duration stops with the option named) {
  auto msg = failure(parse({"--registry.timeout=soon"}));
  CAF_CHECK(contains(msg, "registry.timeout"));
  CAF_CHECK(contains(msg, "soon"));
  msg = failure(parse({"--registry.timeout=0s"}));
  CAF_CHECK(contains(msg, "must be positive"));
}

CAF_TEST(bad log levels and thread counts are errors) {
  CAF_CHECK(contains(failure(parse({"--log.level=loud"})), "log.level"));
  CAF_CHECK(
    contains(failure(parse({"--scheduler.max-threads=0"})), "out of range"));
  CAF_CHECK(
    contains(failure(parse({"--scheduler.max-threads=two"})), "whole number"));
}

CAF_TEST(the source lag limit takes sizes with units) {
  auto x = parse({"serve"});
  CAF_REQUIRE(x);
  CAF_CHECK_EQUAL(x->opts.source_max_lag, uint64_t{1} << 30);
  CAF_CHECK_EQUAL(x->opts.source_idle_interval.count(), 30'000);
  x = parse({"--source.max-lag=512MB", "--source.idle-interval=2s"});
  CAF_REQUIRE(x);
  CAF_CHECK_EQUAL(x->opts.source_max_lag, uint64_t{512} << 20);
  CAF_CHECK_EQUAL(x->opts.source_idle_interval.count(), 2000);
  x = parse({"--source.max-lag=3GiB"});
  CAF_REQUIRE(x);
  CAF_CHECK_EQUAL(x->opts.source_max_lag, uint64_t{3} << 30);
  x = parse({"--source.max-lag=2097152"});
  CAF_REQUIRE(x);
  CAF_CHECK_EQUAL(x->opts.source_max_lag, uint64_t{2} << 20);
  for (auto bad :
       {"", "MB", "1.5GB", "-1GB", "12 MB", "5XB", "1kB", "99999999999TB"}) {
    auto msg = failure(parse({std::string{"--source.max-lag="} + bad}));
    EB_CHECK_MSG(contains(msg, "source.max-lag"),
                 "message for " << bad << ": " << msg);
  }
  CAF_CHECK(contains(failure(parse({"--source.idle-interval=0s"})),
                     "must be positive"));
}

CAF_TEST(the resume wait takes durations and zero) {
  auto x = parse({"serve"});
  CAF_REQUIRE(x);
  CAF_CHECK_EQUAL(x->opts.source_resume_wait.count(), 60'000);
  x = parse({"--source.resume-wait=0s"});
  CAF_REQUIRE(x);
  CAF_CHECK_EQUAL(x->opts.source_resume_wait.count(), 0);
  x = parse({"--source.resume-wait=0"}); // zero needs no unit
  CAF_REQUIRE(x);
  CAF_CHECK_EQUAL(x->opts.source_resume_wait.count(), 0);
  CAF_CHECK(
    contains(failure(parse({"--source.resume-wait=5"})), "source.resume-wait"));
  x = parse({"--source.resume-wait=2500ms"});
  CAF_REQUIRE(x);
  CAF_CHECK_EQUAL(x->opts.source_resume_wait.count(), 2500);
  CAF_CHECK(contains(failure(parse({"--source.resume-wait=soon"})),
                     "source.resume-wait"));
  CAF_CHECK(contains(failure(parse({"--source.resume-wait=-1s"})),
                     "source.resume-wait"));
}

CAF_TEST(the idle lag takes sizes and zero) {
  auto x = parse({"serve"});
  CAF_REQUIRE(x);
  CAF_CHECK_EQUAL(x->opts.source_idle_lag, uint64_t{64} << 20);
  x = parse({"--source.idle-lag=0"});
  CAF_REQUIRE(x);
  CAF_CHECK_EQUAL(x->opts.source_idle_lag, 0u);
  x = parse({"--source.idle-lag=16MB"});
  CAF_REQUIRE(x);
  CAF_CHECK_EQUAL(x->opts.source_idle_lag, uint64_t{16} << 20);
  for (auto bad : {"", "-1", "1.5MB", "lots"}) {
    auto msg = failure(parse({std::string{"--source.idle-lag="} + bad}));
    EB_CHECK_MSG(contains(msg, "source.idle-lag"),
                 "message for " << bad << ": " << msg);
  }
}

CAF_TEST(a malformed postgres url is an error) {
  auto msg = failure(parse({"--postgres.url=host=x port"}));
  CAF_CHECK(contains(msg, "postgres.url"));
  msg = failure(parse({"--postgres.url="}));
  CAF_CHECK(contains(msg, "must not be empty"));
  CAF_CHECK(parse({"--postgres.url=host=localhost dbname=x"}));
}

CAF_TEST(an unreadable config file is an error) {
  auto msg = failure(parse({"--config=/nonexistent/ebridge.conf", "serve"}));
  CAF_CHECK(contains(msg, "/nonexistent/ebridge.conf"));
  CAF_CHECK(contains(msg, "config"));
}

CAF_TEST(config file errors name the file and line) {
  temp_file unknown{"data-dir = /x\nnope = 1\n"};
  auto msg = failure(parse({"--config=" + unknown.path}));
  CAF_CHECK(contains(msg, "unknown option nope"));
  CAF_CHECK(contains(msg, unknown.path + ":2"));
  temp_file bad_value{"[http]\nlisten = 1.2.3.4:99999\n"};
  msg = failure(parse({"--config=" + bad_value.path}));
  CAF_CHECK(contains(msg, "http.listen"));
  CAF_CHECK(contains(msg, bad_value.path + ":2"));
  temp_file no_equals{"data-dir /x\n"};
  CAF_CHECK(contains(failure(parse({"--config=" + no_equals.path})),
                     "expected key = value"));
}

CAF_TEST(unknown EBRIDGE variables are reported as warnings) {
  auto x = parse({"serve"}, {{"EBRIDGE_HTTP_LISTN", "x"}, {"HOME", "/root"}});
  CAF_REQUIRE(x);
  CAF_REQUIRE_EQUAL(x->warnings.size(), 1u);
  CAF_CHECK(contains(x->warnings[0], "EBRIDGE_HTTP_LISTN"));
}

CAF_TEST(help and version and arguments are recognized) {
  auto x = parse({"--help"});
  CAF_REQUIRE(x);
  CAF_CHECK(x->help);
  x = parse({"-V"});
  CAF_REQUIRE(x);
  CAF_CHECK(x->version);
  x = parse({"ref", "{\"a\":\"b\"}"});
  CAF_REQUIRE(x);
  CAF_CHECK_EQUAL(x->command, "ref");
  CAF_REQUIRE_EQUAL(x->args.size(), 1u);
  CAF_CHECK_EQUAL(x->args[0], "{\"a\":\"b\"}");
  x = parse({"ref", "--", "--not-an-option"});
  CAF_REQUIRE(x);
  CAF_REQUIRE_EQUAL(x->args.size(), 1u);
  CAF_CHECK_EQUAL(x->args[0], "--not-an-option");
}

CAF_TEST(help lists every option with its variable and default) {
  auto text = help_text();
  for (auto part : {"--postgres.url=",
                    "EBRIDGE_POSTGRES_URL",
                    "--http.listen=",
                    "EBRIDGE_HTTP_LISTEN",
                    "default 127.0.0.1:8080",
                    "--data-dir=",
                    "EBRIDGE_DATA_DIR",
                    "--log.level=",
                    "EBRIDGE_LOG_LEVEL",
                    "default info",
                    "--scheduler.max-threads=",
                    "EBRIDGE_SCHEDULER_MAX_THREADS",
                    "--registry.pool-size=",
                    "--registry.timeout=",
                    "default 5s",
                    "--config=",
                    "EBRIDGE_CONFIG",
                    "serve",
                    "migrate",
                    "ref TAGS"})
    EB_CHECK_MSG(contains(text, part), "help lacks " << part);
}
