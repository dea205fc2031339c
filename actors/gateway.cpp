#include "actors/gateway.hpp"

#include <map>
#include <memory>

#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "core/error.hpp"
#include "core/log.hpp"

namespace ebridge {

namespace {

constexpr auto readiness_reuse = std::chrono::seconds{1};

} // namespace

gateway_actor::behavior_type
gateway(gateway_actor::stateful_pointer<gateway_state> self,
        registry_actor registry, manager_actor manager, source_actor source,
        std::chrono::milliseconds timeout, watched_actors watched) {
  self->state.registry = std::move(registry);
  self->state.manager = std::move(manager);
  self->state.source = std::move(source);
  self->state.timeout = timeout;
  auto names = std::make_shared<std::map<caf::actor_addr, std::string>>();
  for (auto& [name, actor] : watched) {
    (*names)[actor.address()] = name;
    self->monitor(actor);
  }
  self->set_down_handler([self, names](const caf::down_msg& msg) {
    auto i = names->find(msg.source);
    if (i == names->end())
      return;
    auto why = "the " + i->second + " actor stopped (" + describe(msg.reason)
               + ")";
    log::error("node", "not ready", {{"reason", why}});
    self->state.gone.push_back(std::move(why));
  });
  return {
    [self](register_atom, std::string& tenant, std::string& tags,
           registration_callback& done) {
      auto fn = std::move(done.fn);
      // The manager bounds the wait for the bridge itself; this bound only
      // guards against a manager that does not answer at all.
      auto bound = self->state.timeout * 4;
      self
        ->request(self->state.manager, bound, register_atom::value,
                  std::move(tenant), std::move(tags))
        .then([fn](registration& r) { fn(std::move(r)); },
              [fn](caf::error& err) { fn(std::move(err)); });
    },
    [self](ready_atom, readiness_callback& done) {
      auto& st = self->state;
      if (!st.gone.empty()) {
        std::string reason;
        for (auto& why : st.gone)
          reason += (reason.empty() ? "" : "; ") + why;
        done.fn(readiness{false, std::move(reason)});
        return;
      }
      auto now = self->clock().now();
      if (st.last && now - st.last_at < readiness_reuse) {
        done.fn(*st.last);
        return;
      }
      st.waiting.push_back(std::move(done.fn));
      if (st.waiting.size() > 1)
        return; // a check is in flight; it answers everyone
      auto finish = [self](readiness r) {
        auto& st = self->state;
        st.last = r;
        st.last_at = self->clock().now();
        auto waiting = std::move(st.waiting);
        st.waiting.clear();
        for (auto& fn : waiting)
          fn(r);
      };
      self->request(st.registry, st.timeout, caf::ping_atom::value)
        .then(
          [self, finish](caf::ok_atom) {
            auto& st = self->state;
            if (!st.source) {
              finish(readiness{true, {}});
              return;
            }
            self->request(st.source, st.timeout, status_atom::value)
              .then(
                [finish](std::string& stalled) {
                  finish(stalled.empty() ? readiness{true, {}}
                                         : readiness{false, stalled});
                },
                [finish](caf::error& err) {
                  finish(readiness{false, "the source does not answer: "
                                            + error_message(err)});
                });
          },
          [finish](caf::error& err) {
            finish(readiness{false, "postgres: " + error_message(err)});
          });
    },
  };
}

} // namespace ebridge
