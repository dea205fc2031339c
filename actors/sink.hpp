#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <caf/response_promise.hpp>

#include "actors/actors.hpp"
#include "storage/stream_store.hpp"

namespace ebridge {

struct sink_state {
  stream_store* store = nullptr;
  uint64_t next_id = 1;
  /// What each store operation in flight answers, by id.
  struct pending {
    enum class step { created, flushed, appended } what;
    std::string stream;
    caf::response_promise promise;
  };
  std::map<uint64_t, pending> in_flight;

  /// A sink that ends, for whatever reason, still answers what it holds:
  /// its requesters wait without a timeout (CAF 0.17 does not break a
  /// promise that is dropped).
  ~sink_state();

  static inline const char* name = "sink";
};

/// The sink on the embedded store. Store callbacks come from its writer
/// threads; they only send a message here, and promises are delivered from
/// this actor's own context.
sink_actor::behavior_type sink(sink_actor::stateful_pointer<sink_state> self,
                               stream_store* store);

} // namespace ebridge
