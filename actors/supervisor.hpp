#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include <caf/actor_clock.hpp>
#include <caf/actor_system.hpp>

#include "actors/actors.hpp"

namespace ebridge {

struct supervisor_config {
  /// Spawns a fresh set of the node's actors; the supervisor monitors them.
  std::function<node_actors(caf::actor_system&)> start;
  /// Told the actors after each start, and told when they are down.
  gateway_actor gateway;
  /// Backoff between a death and the restart: first delay and cap.
  std::chrono::milliseconds restart_initial{500};
  std::chrono::milliseconds restart_max{30000};
  /// Actors that ran this long recovered: the next death restarts them
  /// after restart_initial again.
  std::chrono::milliseconds stable_after{60000};
};

struct supervisor_state {
  supervisor_config cfg;
  node_actors running;
  /// Started and not ended, of `running` (0 to 4).
  int alive = 0;
  /// Why they are down (empty while they run).
  std::string down;
  /// Deaths since the actors last ran for `stable_after`.
  int deaths = 0;
  std::optional<caf::actor_clock::time_point> started_at;
  /// Set by the supervisor's own exit: nothing starts again.
  bool stopping = false;

  static inline const char* name = "supervisor";
};

/// The node's supervisor. The registry, sink, source and manager share state
/// a restart of one alone would break (subscriptions, acknowledgements,
/// appends in flight, producer epochs), so when one of them ends the
/// supervisor restarts all four, one for all: it stops the others, waits
/// until all four ended (the manager's bridges end with it; they may outlive
/// it briefly, but write only through the old sink, and no old actor can
/// write to a stream once that ended), and after a
/// backoff starts a fresh set, as a node's start does: every view resumes
/// from its persisted cursor and the source from the slot's confirmed
/// position, so a view resyncs only where a restarted node's would.
/// Meanwhile the gateway answers readiness with the reason and registers
/// with 503. Its own exit stops the actors in the order manager, source,
/// sink, registry, and it ends once they all ended.
supervisor_actor::behavior_type
supervisor(supervisor_actor::stateful_pointer<supervisor_state> self,
           supervisor_config cfg);

} // namespace ebridge
