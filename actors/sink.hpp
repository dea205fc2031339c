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

  static inline const char* name = "sink";
};

/// The sink on the embedded store. Store callbacks come from its writer
/// thread; they only send a message here, and promises are delivered from
/// this actor's own context.
sink_actor::behavior_type sink(sink_actor::stateful_pointer<sink_state> self,
                               stream_store* store);

} // namespace ebridge
