#include "actors/gateway.hpp"

#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "core/error.hpp"

namespace ebridge {

gateway_actor::behavior_type
gateway(gateway_actor::stateful_pointer<gateway_state> self,
        registry_actor registry, std::chrono::milliseconds timeout) {
  self->state.registry = std::move(registry);
  self->state.timeout = timeout;
  return {
    [self](ready_atom, readiness_callback& done) {
      auto fn = std::move(done.fn);
      self->request(self->state.registry, self->state.timeout,
                    caf::ping_atom::value)
        .then([fn](caf::ok_atom) { fn(readiness{true, {}}); },
              [fn](caf::error& err) {
                fn(readiness{false, "postgres: " + error_message(err)});
              });
    },
  };
}

} // namespace ebridge
