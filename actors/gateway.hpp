#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_clock.hpp>

#include "actors/actors.hpp"
#include "config/defaults.hpp"

namespace ebridge {

/// Actors whose end makes the node not ready, by the name readiness
/// reports.
using watched_actors = std::vector<std::pair<std::string, caf::actor>>;

struct gateway_state {
  registry_actor registry;
  manager_actor manager;
  /// Asked whether the change feed is stalled (none: not asked).
  source_actor source;
  std::chrono::milliseconds timeout = defaults::registry_timeout;
  /// Readiness callers waiting for the one database check in flight.
  std::vector<std::function<void(readiness)>> waiting;
  /// The last answer and when it came: reused for a second, so that probes
  /// cannot pile up work on the database.
  std::optional<readiness> last;
  caf::actor_clock::time_point last_at;
  /// Why the node cannot serve whatever Postgres says: actors it needs
  /// that ended (nothing restarts them yet).
  std::vector<std::string> gone;

  static inline const char* name = "gateway";
};

/// The gateway: answers the HTTP layer's requests by asking the actors
/// concerned, each wait bounded by `timeout`. Ready: the registry answers
/// Postgres' ping and the source's feed is not stalled. Readiness is also
/// lost for good once a `watched` actor ends.
gateway_actor::behavior_type
gateway(gateway_actor::stateful_pointer<gateway_state> self,
        registry_actor registry, manager_actor manager, source_actor source,
        std::chrono::milliseconds timeout, watched_actors watched);

} // namespace ebridge
