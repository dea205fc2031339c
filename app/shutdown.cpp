#include "app/shutdown.hpp"

namespace ebridge {

void stop_node(http_server& server, const std::function<void()>& stop_actors,
               io_runtime& io, std::unique_ptr<stream_store>& store) {
  server.stop();
  stop_actors();
  io.stop();
  store.reset();
}

} // namespace ebridge
