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
gateway(gateway_actor::stateful_pointer<gateway_state> self, node_actors actors,
        std::chrono::milliseconds timeout) {
  auto& st = self->state;
  // None yet: the supervisor tells them once it started them.
  if (!actors.registry && !actors.sink && !actors.source && !actors.manager)
    st.down = "the node's actors are starting";
  st.actors = std::move(actors);
  st.timeout = timeout;
  return {
    [self](register_atom, std::string& tenant, std::string& tags,
           registration_callback& done) {
      auto fn = std::move(done.fn);
      auto& st = self->state;
      if (!st.actors.manager) {
        fn(make_error(ec::restarting,
                      st.down.empty() ? "the node has no manager" : st.down));
        return;
      }
      // The manager bounds the wait for the bridge itself; this bound only
      // guards against a manager that does not answer at all.
      auto bound = st.timeout * 4;
      self
        ->request(st.actors.manager, bound, register_atom::value,
                  std::move(tenant), std::move(tags))
        .then([fn](registration& r) { fn(std::move(r)); },
              [fn](caf::error& err) { fn(std::move(err)); });
    },
    [self](ready_atom, readiness_callback& done) {
      auto& st = self->state;
      if (!st.down.empty()) {
        done.fn(readiness{false, st.down});
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
      if (!st.actors.registry) {
        finish(readiness{false, "the node has no registry"});
        return;
      }
      self->request(st.actors.registry, st.timeout, caf::ping_atom::value)
        .then(
          [self, finish](caf::ok_atom) {
            auto& st = self->state;
            if (!st.down.empty()) {
              // The actors went down while the registry answered.
              finish(readiness{false, st.down});
              return;
            }
            if (!st.actors.source) {
              finish(readiness{true, {}});
              return;
            }
            self->request(st.actors.source, st.timeout, status_atom::value)
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
    [self](touch_atom, std::string& tenant, std::string& ref) {
      if (auto& manager = self->state.actors.manager)
        self->send(manager, touch_atom::value, std::move(tenant),
                   std::move(ref));
    },
    [self](reader_open_atom, std::string& tenant, std::string& ref) {
      auto& st = self->state;
      ++st.readers[{tenant, ref}];
      if (st.actors.manager)
        self->send(st.actors.manager, reader_open_atom::value,
                   std::move(tenant), std::move(ref));
    },
    [self](reader_close_atom, std::string& tenant, std::string& ref) {
      auto& st = self->state;
      auto i = st.readers.find({tenant, ref});
      if (i == st.readers.end())
        return;
      if (--i->second == 0)
        st.readers.erase(i);
      if (st.actors.manager)
        self->send(st.actors.manager, reader_close_atom::value,
                   std::move(tenant), std::move(ref));
    },
    [self](rebind_atom, node_actors& actors, std::string& down) {
      auto& st = self->state;
      if (!down.empty() && st.down.empty())
        log::error("node", "not ready", {{"reason", down}});
      else if (down.empty() && !st.down.empty())
        log::info("node", "the node's actors run");
      st.actors = std::move(actors);
      st.down = std::move(down);
      st.last.reset();
      // A new manager counts the reads that are open.
      if (st.actors.manager)
        for (auto& [k, n] : st.readers)
          for (int i = 0; i < n; ++i)
            self->send(st.actors.manager, reader_open_atom::value, k.first,
                       k.second);
    },
  };
}

} // namespace ebridge
