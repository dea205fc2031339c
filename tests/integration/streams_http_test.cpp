#define CAF_SUITE streams_http
#include <caf/test/unit_test.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include <poll.h>

#include "app/shutdown.hpp"
#include "tests/integration/http_fixture.hpp"

// The Durable Streams API over real HTTP on loopback, where one stream must
// not hold up another: a slow disk read for one stream's live readers does
// not delay another stream's.

using namespace ebridge;
using namespace std::chrono_literals;

namespace {

/// Holds the next read of durable data, once armed, until released.
struct held_read : store_io {
  std::mutex mtx;
  std::condition_variable cv;
  bool armed = false;
  bool holding = false;
  bool released = false;
  /// The next read of durable data fails with EIO.
  bool fail_next = false;
  /// Holds the next fdatasync, once armed, until released.
  bool sync_armed = false;
  bool sync_holding = false;
  bool sync_released = false;

  int fdatasync(int fd) override {
    std::unique_lock<std::mutex> guard{mtx};
    if (sync_armed) {
      sync_armed = false;
      sync_holding = true;
      cv.notify_all();
      cv.wait(guard, [this] { return sync_released; });
    }
    guard.unlock();
    return store_io::fdatasync(fd);
  }

  ssize_t pread(int fd, void* data, size_t size, off_t pos) override {
    std::unique_lock<std::mutex> guard{mtx};
    if (fail_next) {
      fail_next = false;
      errno = EIO;
      return -1;
    }
    if (armed) {
      armed = false;
      holding = true;
      cv.notify_all();
      cv.wait(guard, [this] { return released; });
      holding = false;
    }
    guard.unlock();
    return store_io::pread(fd, data, size, pos);
  }

  void arm() {
    std::lock_guard<std::mutex> guard{mtx};
    armed = true;
  }

  bool wait_holding() {
    std::unique_lock<std::mutex> guard{mtx};
    return cv.wait_for(guard, 10s, [this] { return holding; });
  }

  void release() {
    std::lock_guard<std::mutex> guard{mtx};
    released = true;
    cv.notify_all();
  }
};

/// A raw SSE connection (or, with an empty path, any raw connection): what
/// it received so far.
struct sse_reader {
  int fd = -1;
  std::string got;

  sse_reader(uint16_t port, const std::string& path) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
      CAF_FAIL("cannot connect");
    if (path.empty())
      return; // a raw connection: the test sends its own request
    auto req = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL)
        != static_cast<ssize_t>(req.size()))
      CAF_FAIL("cannot send");
  }

  ~sse_reader() {
    ::close(fd);
  }

  /// Reads until `needle` arrived or `wait` passed.
  bool until(const std::string& needle, std::chrono::milliseconds wait) {
    auto deadline = std::chrono::steady_clock::now() + wait;
    while (got.find(needle) == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return false;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        return false;
      char buf[4096];
      auto n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0)
        return false;
      got.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
};

struct fixture : test::http_fixture {
  fixture() : fixture(std::make_shared<held_read>()) {
    // nop
  }

  explicit fixture(std::shared_ptr<held_read> held)
    : test::http_fixture(held, long_poll_timeout), disk(std::move(held)) {
    // nop
  }

  /// Appends `body` to a JSON stream over HTTP; the status line's code.
  std::string post(const std::string& path, const std::string& body) {
    auto answer = test::exchange(
      port,
      test::request("POST " + path
                      + " HTTP/1.1\r\nHost: x\r\nContent-Type: "
                        "application/json\r\n",
                    body),
      5s);
    return answer.substr(0, 10);
  }

  static constexpr auto long_poll_timeout = 400ms;

  std::shared_ptr<held_read> disk;
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(streams_http_tests, fixture)

CAF_TEST(a slow read for one stream does not hold up another) {
  for (auto name : {"/v1/stream/a", "/v1/stream/b"})
    test::exchange(port, test::request(std::string{"PUT "} + name
                                         + " HTTP/1.1\r\nHost: x\r\n"
                                           "Content-Type: application/json\r\n",
                                       "[]"));
  sse_reader a{port, "/v1/stream/a?offset=-1&live=sse"};
  sse_reader b{port, "/v1/stream/b?offset=-1&live=sse"};
  CAF_REQUIRE(a.until("upToDate", 5s));
  CAF_REQUIRE(b.until("upToDate", 5s));
  // The next read of the disk, a's live batch, hangs.
  disk->arm();
  CAF_CHECK_EQUAL(post("/v1/stream/a", R"(["for a"])"), "HTTP/1.1 2");
  CAF_REQUIRE(disk->wait_holding());
  // b's readers get b's batch meanwhile.
  CAF_CHECK_EQUAL(post("/v1/stream/b", R"(["for b"])"), "HTTP/1.1 2");
  CAF_CHECK(b.until("for b", 5s));
  CAF_CHECK(a.got.find("for a") == std::string::npos);
  disk->release();
  CAF_CHECK(a.until("for a", 5s));
}

CAF_TEST(one stream fan out to its readers holds up no other stream) {
  for (auto name : {"/v1/stream/a", "/v1/stream/b"})
    test::exchange(port, test::request(std::string{"PUT "} + name
                                         + " HTTP/1.1\r\nHost: x\r\n"
                                           "Content-Type: application/json\r\n",
                                       "[]"));
  // a's fan-out, once it starts, waits for the test.
  std::mutex mtx;
  std::condition_variable cv;
  bool holding = false;
  bool release = false;
  fan_out = [&](const std::string& name) {
    if (name != "/v1/stream/a")
      return;
    std::unique_lock<std::mutex> guard{mtx};
    holding = true;
    cv.notify_all();
    cv.wait(guard, [&] { return release; });
  };
  sse_reader a{port, "/v1/stream/a?offset=-1&live=sse"};
  sse_reader b{port, "/v1/stream/b?offset=-1&live=sse"};
  CAF_REQUIRE(a.until("upToDate", 5s));
  CAF_REQUIRE(b.until("upToDate", 5s));
  CAF_CHECK_EQUAL(post("/v1/stream/a", R"(["for a"])"), "HTTP/1.1 2");
  {
    std::unique_lock<std::mutex> guard{mtx};
    CAF_REQUIRE(cv.wait_for(guard, 10s, [&] { return holding; }));
  }
  // b's readers get b's batch while a's fan-out is held.
  CAF_CHECK_EQUAL(post("/v1/stream/b", R"(["for b"])"), "HTTP/1.1 2");
  CAF_CHECK(b.until("for b", 5s));
  {
    std::lock_guard<std::mutex> guard{mtx};
    release = true;
    cv.notify_all();
  }
  CAF_CHECK(a.until("for a", 5s));
}

// The conformance suite's long-poll test appends just as its 500 ms
// long-poll times out; about one run in fifty, the timeout's answer was a 204
// whose offset lay past the new data, and the client never saw it.
CAF_TEST(data durable as a long-poll times out is sent and not skipped) {
  auto path = std::string{"/v1/stream/lp"};
  test::exchange(port, test::request("PUT " + path
                                     + " HTTP/1.1\r\nHost: x\r\n"
                                       "Content-Type: text/plain\r\n"));
  sse_reader poll{port, path + "?offset=-1&live=long-poll"};
  std::this_thread::sleep_for(100ms); // the long-poll waits at the tail
  // An append becomes durable; its writer thread is held in the append's
  // answer, before it wakes the waiting long-poll.
  std::mutex mtx;
  std::condition_variable cv;
  bool held = false;
  bool release = false;
  append_request req;
  req.messages = {"new data"};
  store->append(path, std::move(req), [&](write_result r) {
    CAF_CHECK(r.status == store_status::ok);
    std::unique_lock<std::mutex> guard{mtx};
    held = true;
    cv.notify_all();
    cv.wait(guard, [&] { return release; });
  });
  {
    std::unique_lock<std::mutex> guard{mtx};
    CAF_REQUIRE(cv.wait_for(guard, 5s, [&] { return held; }));
  }
  // The timeout fires meanwhile and answers.
  auto answered = poll.until("\r\n\r\n", long_poll_timeout + 5s);
  {
    std::lock_guard<std::mutex> guard{mtx};
    release = true;
    cv.notify_all();
  }
  CAF_REQUIRE(answered);
  poll.until("new data", 1s);
  CAF_CHECK_EQUAL(poll.got.substr(0, 12), "HTTP/1.1 200");
  CAF_CHECK(poll.got.find("new data") != std::string::npos);
}

CAF_TEST(a long poll woken to a stream it cannot read answers 503) {
  // Before, the answer took the failed read for an empty one: a 204 with
  // Stream-Next-Offset 0, and the client read the stream again from there.
  auto path = std::string{"/v1/stream/lp503"};
  test::exchange(port, test::request("PUT " + path
                                       + " HTTP/1.1\r\nHost: x\r\n"
                                         "Content-Type: text/plain\r\n",
                                     "x"));
  sse_reader poll{port, path
                          + "?offset=0000000000000000_0000000000000001"
                            "&live=long-poll"};
  std::this_thread::sleep_for(100ms); // the long-poll waits at the tail
  {
    std::lock_guard<std::mutex> guard{disk->mtx};
    disk->fail_next = true;
  }
  auto answer = test::exchange(
    port,
    test::request("POST " + path
                    + " HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      "text/plain\r\n",
                  "y"),
    5s);
  CAF_CHECK_EQUAL(answer.substr(0, 10), "HTTP/1.1 2");
  CAF_REQUIRE(poll.until("\r\n\r\n", 5s));
  CAF_CHECK_EQUAL(poll.got.substr(0, 12), "HTTP/1.1 503");
}

CAF_TEST(a node stopped with a write in flight drains its store first) {
  // The write's answer and the wake-ups of the stream's long-poll and SSE
  // reader come from the store's writer after the HTTP server and the io
  // threads stopped: stop_node drains the store while what they call still
  // exists, and nothing calls back after it returned (the sanitizer run
  // reports a use after free otherwise).
  auto path = std::string{"/v1/stream/stop"};
  test::exchange(port, test::request("PUT " + path
                                       + " HTTP/1.1\r\nHost: x\r\n"
                                         "Content-Type: application/json\r\n",
                                     "[]"));
  sse_reader follower{port, path + "?offset=-1&live=sse"};
  CAF_REQUIRE(follower.until("upToDate", 5s));
  sse_reader poll{port, path + "?offset=-1&live=long-poll"};
  std::this_thread::sleep_for(100ms);
  {
    std::lock_guard<std::mutex> guard{disk->mtx};
    disk->sync_armed = true;
  }
  sse_reader writer{port, ""}; // a raw connection for the POST
  auto body = std::string{R"(["last"])"};
  auto req = "POST " + path
             + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: "
             + std::to_string(body.size()) + "\r\n\r\n" + body;
  CAF_REQUIRE(::send(writer.fd, req.data(), req.size(), MSG_NOSIGNAL)
              == static_cast<ssize_t>(req.size()));
  {
    std::unique_lock<std::mutex> guard{disk->mtx};
    CAF_REQUIRE(
      disk->cv.wait_for(guard, 10s, [this] { return disk->sync_holding; }));
  }
  std::thread release{[this] {
    std::this_thread::sleep_for(200ms);
    std::lock_guard<std::mutex> guard{disk->mtx};
    disk->sync_released = true;
    disk->cv.notify_all();
  }};
  stop_node(
    *server, [] {}, io, store);
  release.join();
  CAF_CHECK(store == nullptr);
  // Nothing may call into the HTTP layer now: take it down.
  api.reset();
  server.reset();
  // The write became durable.
  stream_store::config cfg;
  cfg.directory = dir;
  auto reopened = EB_OK(stream_store::open(cfg));
  auto r = reopened->read(path, 0);
  CAF_REQUIRE(r.status == store_status::ok);
  CAF_REQUIRE_EQUAL(r.chunks.size(), 1u);
  CAF_CHECK_EQUAL(r.chunks[0], "\"last\"");
}

CAF_TEST_FIXTURE_SCOPE_END()
