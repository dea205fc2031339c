#define CAF_SUITE http_fuzz
#include <caf/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/error.hpp"
#include "net/http.hpp"
#include "net/routes.hpp"
#include "net/streams_api.hpp"
#include "net/view_service.hpp"
#include "storage/stream_store.hpp"
#include "tests/fuzz_util.hpp"
#include "tests/integration/http_fixture.hpp"
#include "tests/test_util.hpp"

// The HTTP edge under a bounded, seeded fuzz run: the real server, routes
// and streams API on loopback over a real store, fed raw requests (valid
// ones, then mutations of them: broken request lines, headers, chunking,
// bodies, offsets). Each must get an answer or a closed connection, never
// a crash, a hang or a sanitizer report; the node answers /healthz after,
// every stream still reads back, and every read of a view's stream that
// began also ended. The views behind the routes are a stub at the
// view_service boundary: the edge is what is fuzzed here.

using namespace ebridge;
using namespace std::chrono_literals;

namespace {

using fixture = test::http_fixture;
using test::exchange;
using test::request;

} // namespace

CAF_TEST_FIXTURE_SCOPE(http_fuzz_tests, fixture)

CAF_TEST(mutated requests get an answer or a closed connection) {
  const std::string json = "Content-Type: application/json\r\n";
  const std::string host = "Host: fuzz\r\n";
  std::vector<std::string> seeds = {
    request("PUT /v1/stream/f1 HTTP/1.1\r\n" + host + json, "[1,2,3]"),
    request("POST /v1/stream/f1 HTTP/1.1\r\n" + host + json
              + "Producer-Id: p\r\nProducer-Epoch: 0\r\nProducer-Seq: 0\r\n",
            R"([{"a":1},"x"])"),
    request("POST /v1/stream/f1 HTTP/1.1\r\n" + host + json
              + "Stream-Seq: 0001\r\nStream-Closed: true\r\n",
            "[2]"),
    "GET /v1/stream/f1?offset=-1 HTTP/1.1\r\n" + host + "\r\n",
    "GET /v1/stream/f1?offset=0000000000000000_0000000000000003&live=long-"
    "poll&cursor=5 HTTP/1.1\r\n"
      + host + "\r\n",
    "GET /v1/stream/f1?offset=now&live=sse HTTP/1.1\r\n" + host + "\r\n",
    "HEAD /v1/stream/f1 HTTP/1.1\r\n" + host + "\r\n",
    "DELETE /v1/stream/f2 HTTP/1.1\r\n" + host + "\r\n",
    "OPTIONS /v1/stream/f1 HTTP/1.1\r\n" + host
      + "Origin: http://a.example\r\n"
        "Access-Control-Request-Method: POST\r\n\r\n",
    request("PUT /v1/stream/b1 HTTP/1.1\r\n" + host
              + "Content-Type: application/octet-stream\r\nStream-TTL: 60\r\n",
            std::string("ab\0c", 4)),
    "POST /v1/stream/f1 HTTP/1.1\r\n" + host + json
      + "Transfer-Encoding: chunked\r\n\r\n3\r\n[4]\r\n0\r\n\r\n",
    request("POST /_electric/observations/entities/ensure-stream HTTP/1.1\r\n"
              + host,
            R"({"tags":{"team":"infra"}})"),
    "GET /_entities/4920763acf711bdc?offset=-1 HTTP/1.1\r\n" + host + "\r\n",
    "GET /healthz HTTP/1.1\r\n" + host + "\r\nGET /readyz HTTP/1.1\r\n" + host
      + "\r\n",
  };
  test::mutator m;
  std::cout << "http fuzz: seed " << test::fuzz_seed() << std::endl;
  size_t answered = 0;
  size_t total = 0;
  auto started = std::chrono::steady_clock::now();
  m.run(seeds, test::rounds(8000), [&](const std::string& bytes) {
    ++total;
    auto got = exchange(port, bytes);
    if (got.rfind("HTTP/1.1 ", 0) == 0)
      ++answered;
  });
  auto took = std::chrono::steady_clock::now() - started;
  std::cout
    << "http fuzz: " << total << " requests, " << answered << " answered, in "
    << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
    << " ms" << std::endl;
  // The seeds themselves are answered; mutations mostly are (a 400 at the
  // least), or their connection is closed.
  CAF_CHECK_GREATER(answered, seeds.size());
  // The node serves on.
  auto health = exchange(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  CAF_CHECK_EQUAL(health.rfind("HTTP/1.1 200", 0), 0u);
  // Every stream left behind reads back.
  auto read = exchange(
    port, "GET /v1/stream/f1?offset=-1 HTTP/1.1\r\nHost: x\r\n\r\n");
  CAF_CHECK(read.rfind("HTTP/1.1 200", 0) == 0
            || read.rfind("HTTP/1.1 404", 0) == 0);
  // Every read of a view's stream that began has ended.
  for (int i = 0; i < 50 && views.opened != views.closed; ++i)
    std::this_thread::sleep_for(20ms);
  CAF_CHECK_EQUAL(views.opened.load(), views.closed.load());
}

CAF_TEST_FIXTURE_SCOPE_END()
