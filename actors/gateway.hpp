#pragma once

#include <chrono>

#include "actors/actors.hpp"

namespace ebridge {

struct gateway_state {
  registry_actor registry;
  std::chrono::milliseconds timeout{5000};

  static inline const char* name = "gateway";
};

/// The gateway: answers the HTTP layer's requests by asking the actors
/// concerned, each wait bounded by `timeout`.
gateway_actor::behavior_type
gateway(gateway_actor::stateful_pointer<gateway_state> self,
        registry_actor registry, std::chrono::milliseconds timeout);

} // namespace ebridge
