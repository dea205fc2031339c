#include "actors/supervisor.hpp"

#include <algorithm>
#include <utility>

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "core/error.hpp"
#include "core/log.hpp"

namespace ebridge {

namespace {

using self_ptr = supervisor_actor::stateful_pointer<supervisor_state>;

/// Each of the node's actors with its name.
template <class F>
void for_each_actor(node_actors& actors, F f) {
  f("manager", caf::actor_cast<caf::actor>(actors.manager));
  f("source", caf::actor_cast<caf::actor>(actors.source));
  f("sink", caf::actor_cast<caf::actor>(actors.sink));
  f("registry", caf::actor_cast<caf::actor>(actors.registry));
}

void start_all(self_ptr self) {
  auto& st = self->state;
  st.running = st.cfg.start(self->system());
  st.alive = 0;
  for_each_actor(st.running, [&](const char*, const caf::actor& a) {
    if (a) {
      self->monitor(a);
      ++st.alive;
    }
  });
  st.down.clear();
  st.started_at = self->clock().now();
  self->send(st.cfg.gateway, rebind_atom::value, st.running, std::string{});
}

/// Asks every actor still running to end.
void stop_all(self_ptr self) {
  for_each_actor(self->state.running, [&](const char*, const caf::actor& a) {
    if (a)
      self->send_exit(a, caf::exit_reason::user_shutdown);
  });
}

/// The name of the actor at `addr` among the running ones; clears its
/// handle. Null when it is not one of them.
const char* forget(node_actors& actors, const caf::actor_addr& addr) {
  const char* name = nullptr;
  auto match = [&](auto& handle, const char* what) {
    if (handle && handle.address() == addr) {
      handle = nullptr;
      name = what;
    }
  };
  match(actors.manager, "manager");
  match(actors.source, "source");
  match(actors.sink, "sink");
  match(actors.registry, "registry");
  return name;
}

} // namespace

supervisor_actor::behavior_type
supervisor(supervisor_actor::stateful_pointer<supervisor_state> self,
           supervisor_config cfg) {
  self->state.cfg = std::move(cfg);
  self->set_down_handler([self](const caf::down_msg& msg) {
    auto& st = self->state;
    auto* name = forget(st.running, msg.source);
    if (name == nullptr)
      return;
    --st.alive;
    if (st.stopping) {
      if (st.alive == 0)
        self->quit(caf::exit_reason::user_shutdown);
      return;
    }
    if (st.down.empty()) {
      // The first to end: the others follow, then all start again.
      if (st.started_at
          && self->clock().now() - *st.started_at >= st.cfg.stable_after)
        st.deaths = 0;
      ++st.deaths;
      st.down = std::string{"the "} + name + " actor stopped ("
                + describe(msg.reason) + "); restarting the node's actors";
      log::error("supervisor", "an actor stopped; restarting all",
                 {{"actor", name},
                  {"reason", describe(msg.reason)},
                  {"deaths", std::to_string(st.deaths)}});
      self->send(st.cfg.gateway, rebind_atom::value, node_actors{}, st.down);
      stop_all(self);
    }
    if (st.alive > 0)
      return;
    auto shift = std::min(st.deaths - 1, 16);
    auto delay = std::min(st.cfg.restart_max,
                          st.cfg.restart_initial * (1 << shift));
    log::info("supervisor", "every actor ended; restart scheduled",
              {{"retry_ms", std::to_string(delay.count())}});
    self->delayed_send(self, delay, retry_atom::value);
  });
  self->set_exit_handler([self](const caf::exit_msg& msg) {
    auto& st = self->state;
    st.stopping = true;
    // Manager first: its bridges end with it.
    stop_all(self);
    if (st.alive == 0)
      self->quit(msg.reason);
  });
  start_all(self);
  return {
    [self](retry_atom) {
      if (self->state.stopping || self->state.alive > 0)
        return;
      log::info("supervisor", "starting the node's actors again");
      start_all(self);
    },
    [self](status_atom) { return self->state.down; },
  };
}

} // namespace ebridge
