#pragma once

// The real HTTP server, routes and streams API on loopback over a real store
// (in a temporary directory), for tests of the HTTP edge. The views behind
// the routes are a stub at the view_service boundary.

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <caf/test/unit_test.hpp>

#include "core/error.hpp"
#include "net/http.hpp"
#include "net/routes.hpp"
#include "net/streams_api.hpp"
#include "net/view_service.hpp"
#include "storage/stream_store.hpp"
#include "tests/test_util.hpp"

namespace ebridge::test {

using namespace std::chrono_literals;

/// Refuses registers (the actor world is not under test) and counts the
/// view reads that begin and end.
struct stub_views : view_service {
  std::atomic<int> opened{0};
  std::atomic<int> closed{0};

  void register_view(
    std::string, std::string,
    std::function<void(caf::expected<registration>)> done) override {
    done(make_error(ec::database_unavailable, "no views in this test"));
  }
  void check_ready(std::function<void(readiness)> done) override {
    done(readiness{true, {}});
  }
  void touch(const std::string&, const std::string&) override {
    // nop
  }
  void reader_open(const std::string&, const std::string&) override {
    ++opened;
  }
  void reader_close(const std::string&, const std::string&) override {
    ++closed;
  }
};

/// Sends `bytes` on a new connection, half-closes it, and returns what
/// came back before the server closed or `wait` passed.
inline std::string exchange(uint16_t port, const std::string& bytes,
                            std::chrono::milliseconds wait = 300ms) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return "<no socket>";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return "<no connection>";
  }
  timeval tv{};
  tv.tv_usec = static_cast<suseconds_t>(
    std::chrono::duration_cast<std::chrono::microseconds>(wait).count());
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  size_t sent = 0;
  while (sent < bytes.size()) {
    auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0)
      break;
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string got;
  char buf[4096];
  for (;;) {
    auto n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0)
      break;
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return got;
}

inline std::string request(const std::string& head,
                           const std::string& body = {}) {
  return head + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n"
         + body;
}

struct http_fixture {
  explicit http_fixture(std::shared_ptr<store_io> store_io = nullptr,
                        std::chrono::milliseconds long_poll_timeout = 50ms) {
    char tmpl[] = "/tmp/ebridge-http-fuzz.XXXXXX";
    dir = ::mkdtemp(tmpl);
    stream_store::config cfg;
    cfg.directory = dir;
    cfg.io = std::move(store_io);
    store = EB_OK(stream_store::open(cfg));
    streams_api_config api_cfg;
    api_cfg.long_poll_timeout = long_poll_timeout;
    api_cfg.fan_out_hook = [this](const std::string& name) {
      if (fan_out)
        fan_out(name);
    };
    api_cfg.sse_keepalive = 50ms;
    api_cfg.sse_max = 200ms;
    api = std::make_unique<streams_api>(*store, io, api_cfg);
    targets = route_targets{&views, api.get()};
    http_limits limits;
    limits.max_body = 64 << 10;
    limits.read_timeout = 2s;
    limits.write_timeout = 2s;
    server = std::make_unique<http_server>(
      io,
      [this](http_request req, http_responder respond) {
        handle_request(targets, std::move(req), std::move(respond));
      },
      limits);
    port = EB_OK(server->listen("127.0.0.1", 0));
    io.start();
  }

  ~http_fixture() {
    // (A test may have stopped and taken these down already.)
    if (server)
      server->stop();
    io.stop();
    store.reset(); // drained while the HTTP layer exists (see stop_node)
    api.reset();
    std::string cmd = "rm -rf '" + dir + "'";
    if (std::system(cmd.c_str()) != 0)
      CAF_MESSAGE("could not remove " << dir);
  }

  /// Called as a hub hands a batch to its readers (set before traffic).
  std::function<void(const std::string&)> fan_out;
  std::string dir;
  io_runtime io{2};
  std::unique_ptr<stream_store> store;
  std::unique_ptr<streams_api> api;
  stub_views views;
  route_targets targets{nullptr, nullptr};
  std::unique_ptr<http_server> server;
  uint16_t port = 0;
};

} // namespace ebridge::test
