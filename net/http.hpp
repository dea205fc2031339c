#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include "config/defaults.hpp"

namespace ebridge {

/// One HTTP request, as the server hands it to a handler.
struct http_request {
  std::string method;
  /// Path and query, as sent.
  std::string target;
  /// Header fields with lowercase names, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  /// The first value of a header (name in lowercase), or nullptr.
  const std::string* header(std::string_view name) const;

  /// The target without its query.
  std::string_view path() const;
};

/// A response body written over time (server-sent events). Thread-safe;
/// writes after the connection closed are dropped.
class http_stream {
public:
  virtual ~http_stream();

  /// Queues one chunk; chunks go out in order, each in one write.
  virtual void write(std::string chunk) = 0;

  /// As `write`, but sent from the calling thread when that is one of the
  /// server's threads and the connection is not busy: no hand-off to
  /// another thread. For a single reader woken by new data; a fan-out to
  /// many readers should `write`, which spreads the sends over the threads.
  /// Never calls back into the caller (closing callbacks run later).
  virtual void write_here(std::string chunk) {
    write(std::move(chunk));
  }

  /// Bytes queued and not yet taken by the socket (0 once it closed).
  virtual size_t queued() const {
    return 0;
  }

  /// Calls `fn` (on an io thread) once everything queued so far went to
  /// the socket: a writer that waits for it keeps at most what it wrote
  /// since in memory. Never called when the connection ends first.
  virtual void when_drained(std::function<void()> fn) {
    fn();
  }

  /// Ends the response and the connection.
  virtual void finish() = 0;

  /// Calls `fn` once when the connection ends, whoever ends it (at once if
  /// it already has).
  virtual void on_close(std::function<void()> fn) = 0;
};

/// One HTTP response.
struct http_response {
  unsigned status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  /// When set, the body is streamed: the server sends the headers at once
  /// (chunked encoding) and hands the stream to this function.
  std::function<void(std::shared_ptr<http_stream>)> stream;

  http_response& set(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
};

/// Every error answer of ebridge's HTTP API, built here only: `status`
/// with the JSON body `{"error":{"code":"<code>","message":"<message>"}}`,
/// not to be cached.
http_response json_error(unsigned status, std::string_view code,
                         std::string_view message);

/// Delivers the response to a request. Callable from any thread, once; the
/// server posts it to the connection's executor.
using http_responder = std::function<void(http_response)>;

/// Turns a request into a response, now or later. Runs on an io thread and
/// must never block it: anything slow goes to an actor.
using http_handler = std::function<void(http_request, http_responder)>;

/// The asio side of the process: an io_context and the threads that run it.
/// Create it before the actor system so that it outlives it.
class io_runtime {
public:
  explicit io_runtime(size_t threads);
  ~io_runtime();

  io_runtime(const io_runtime&) = delete;
  io_runtime& operator=(const io_runtime&) = delete;

  /// Starts the threads.
  void start();

  /// Calls `fn` once SIGINT or SIGTERM arrives (on an io thread).
  void on_shutdown_signal(std::function<void(int)> fn);

  /// A one-shot timer: runs `fn` on an io thread after `delay` unless
  /// cancelled first.
  class timer {
  public:
    virtual ~timer();
    virtual void cancel() = 0;
  };

  std::shared_ptr<timer> after(std::chrono::milliseconds delay,
                               std::function<void()> fn);

  /// Runs `fn` on an io thread.
  void post(std::function<void()> fn);

  /// Stops the io_context and joins the threads.
  void stop();

  struct impl;
  impl& get() {
    return *impl_;
  }

private:
  std::unique_ptr<impl> impl_;
};

/// Limits the server enforces, each with a clear answer.
struct http_limits {
  size_t max_body = defaults::http_max_body; // 413 beyond
  size_t max_header = 16 << 10;              // 431 beyond
  std::chrono::seconds read_timeout{30};     // idle or slow clients: closed
  std::chrono::seconds write_timeout{30};
};

/// An HTTP/1.1 server (Boost.Beast): one session per connection, keep-alive,
/// no thread per connection.
class http_server {
public:
  http_server(io_runtime& io, http_handler handler, http_limits limits = {});
  ~http_server();

  /// Binds and listens; returns the bound port (useful with port 0).
  caf::expected<uint16_t> listen(const std::string& host, uint16_t port);

  /// Stops accepting and closes open connections, waiting (up to 2 s) for
  /// the io threads to close them.
  void stop();

private:
  void close_all(bool wait);

  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace ebridge
