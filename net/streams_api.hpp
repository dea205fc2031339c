#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "config/defaults.hpp"
#include "net/http.hpp"
#include "storage/stream_store.hpp"

namespace ebridge {

struct streams_api_config {
  /// How long a long-poll waits for data before answering 204.
  std::chrono::milliseconds long_poll_timeout = defaults::long_poll_timeout;
  /// Idle time after which an SSE connection gets a keep-alive control event.
  std::chrono::milliseconds sse_keepalive{15000};
  /// How long one SSE connection lasts before the server ends it (clients
  /// reconnect from their last offset).
  std::chrono::milliseconds sse_max{60000};
  /// Most bytes one SSE connection may hold queued for a slow reader: past
  /// it, live batches skip it and it catches up a page at a time, reading
  /// the next page only once the last went out.
  size_t sse_max_queued = size_t{4} << 20;
  /// Tests only: called with the stream's name while a hub hands a batch to
  /// its readers (holding that hub's lock), to hold a fan-out.
  std::function<void(const std::string&)> fan_out_hook;
};

/// The Durable Streams protocol over the stream store: create, append,
/// close, delete, HEAD, catch-up reads, long-poll and SSE. The request path
/// is the stream's name. Never blocks an io thread on durability: writes
/// answer from the store's callbacks.
class streams_api {
public:
  streams_api(stream_store& store, io_runtime& io, streams_api_config cfg);

  /// Serves one request. With `read_only`, only reads are allowed (bridge
  /// streams): writes get 405.
  void handle(http_request req, http_responder respond, bool read_only);


  struct sse_session;
  struct sse_hub;

private:
  void create(http_request& req, const std::string& name,
              http_responder& respond);
  void append(http_request& req, const std::string& name,
              http_responder& respond);
  void remove(const std::string& name, http_responder& respond);
  void head(const std::string& name, http_responder& respond);
  void get(http_request& req, const std::string& name, http_responder& respond);
  void long_poll(const http_request& req, const std::string& name,
                 uint64_t position, bool from_now, http_responder& respond);
  void sse(const http_request& req, const std::string& name, uint64_t position,
           bool from_now, http_responder& respond);

  /// SSE sessions that follow a stream's tail share one hub: one store
  /// waiter, one read and one encoding per batch for all of them.
  void hub_join(const std::shared_ptr<sse_session>& session);
  void hub_leave(const std::shared_ptr<sse_session>& session);
  void hub_wake(const std::shared_ptr<sse_hub>& hub);
  void hub_arm(const std::shared_ptr<sse_hub>& hub);
  /// The stream's hub (made when `create` and there is none).
  std::shared_ptr<sse_hub> hub_of(const std::string& name, bool create);
  /// Takes an emptied hub out of the map (its lock held).
  void hub_retire(const std::shared_ptr<sse_hub>& hub);

  stream_store& store_;
  io_runtime& io_;
  streams_api_config cfg_;
  /// Guards the map only; nothing else is locked while it is held. Each hub
  /// has its own lock (taken before a session's): one stream's fan-out
  /// holds up no other stream's.
  std::mutex hubs_mtx_;
  std::unordered_map<std::string, std::shared_ptr<sse_hub>> hubs_;
};

} // namespace ebridge
