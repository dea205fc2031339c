#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_clock.hpp>

#include "actors/actors.hpp"
#include "config/defaults.hpp"

namespace ebridge {

struct gateway_state {
  /// The node's actors (null handles while the supervisor restarts them;
  /// in tests, those not under test).
  node_actors actors;
  /// Why the node's actors are down (empty while they run).
  std::string down;
  std::chrono::milliseconds timeout = defaults::registry_timeout;
  /// Readiness callers waiting for the one database check in flight.
  std::vector<std::function<void(readiness)>> waiting;
  /// The last answer and when it came: reused for a second, so that probes
  /// cannot pile up work on the database.
  std::optional<readiness> last;
  caf::actor_clock::time_point last_at;
  /// Open reads per view (tenant, ref), told again to a restarted manager:
  /// a view with readers is never collected.
  std::map<std::pair<std::string, std::string>, int> readers;

  static inline const char* name = "gateway";
};

/// The gateway: answers the HTTP layer's requests by asking the actors
/// concerned, each wait bounded by `timeout`. Ready: the node's actors run
/// (see the supervisor), the registry answers Postgres' ping and the
/// source's feed is not stalled. Reads of views pass through it to the
/// manager, so that the HTTP layer never holds a handle that a restart
/// makes stale.
gateway_actor::behavior_type
gateway(gateway_actor::stateful_pointer<gateway_state> self, node_actors actors,
        std::chrono::milliseconds timeout);

} // namespace ebridge
