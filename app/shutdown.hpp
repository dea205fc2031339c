#pragma once

#include <functional>
#include <memory>

#include "net/http.hpp"
#include "storage/stream_store.hpp"

namespace ebridge {

/// Stops a node's parts in the one safe order: the HTTP server (no new
/// requests; open connections closed), the actors (`stop_actors` returns
/// once they all ended), the io threads, and only then the stream store,
/// which waits for its writers. Their last callbacks answer requests, wake
/// long-polls and SSE hubs (posting to the io runtime) and send to actors:
/// the io runtime, the HTTP layer and the actor system must outlive this
/// call, and nothing of the store calls back after it returned.
void stop_node(http_server& server, const std::function<void()>& stop_actors,
               io_runtime& io, std::unique_ptr<stream_store>& store);

} // namespace ebridge
