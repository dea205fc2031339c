#include "actors/registry.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "core/error.hpp"
#include "core/log.hpp"

namespace ebridge {

namespace {

using self_ptr = registry_actor::stateful_pointer<registry_state>;

/// Bounds the wait for a batch of cursor writes: a worker that dies with one
/// never answers it (the requesters' own timeouts are shorter).
constexpr auto batch_timeout = std::chrono::minutes{1};

std::string key_of(const std::string& tenant, const std::string& ref) {
  std::string key;
  key.reserve(tenant.size() + 1 + ref.size());
  key += tenant;
  key += '\0';
  key += ref;
  return key;
}

void send_cursors(self_ptr self, size_t slot);

void batch_done(self_ptr self, size_t slot, uint64_t generation) {
  auto& lane = self->state.cursor_lanes[slot];
  if (lane.generation != generation)
    return; // sent to a worker that died since: no longer counted
  if (--lane.in_flight == 0)
    send_cursors(self, slot);
}

/// Sends the cursor writes queued for one worker as one batch.
void send_cursors(self_ptr self, size_t slot) {
  auto& st = self->state;
  auto& lane = st.cursor_lanes[slot];
  if (lane.queued.empty())
    return;
  std::vector<cursor_write> writes;
  auto promises = std::make_shared<std::vector<caf::typed_response_promise<bool>>>();
  writes.reserve(lane.queued.size());
  promises->reserve(lane.queued.size());
  for (auto& q : lane.queued) {
    writes.push_back(std::move(q.write));
    promises->push_back(std::move(q.promise));
  }
  lane.queued.clear();
  lane.keys.clear();
  ++lane.in_flight;
  auto generation = lane.generation;
  self
    ->request(st.workers[slot], batch_timeout, cursor_atom::value,
              std::move(writes))
    .then(
      [self, slot, generation, promises](std::vector<cursor_write>& done) {
        auto& ps = *promises;
        for (size_t i = 0; i < ps.size(); ++i) {
          if (i >= done.size())
            ps[i].deliver(make_error(ec::database_error,
                                     "registry: a cursor batch came back "
                                     "with fewer answers than writes"));
          else if (!done[i].refused.empty())
            ps[i].deliver(make_error(ec::invalid_input, done[i].refused));
          else
            ps[i].deliver(done[i].written);
        }
        batch_done(self, slot, generation);
      },
      [self, slot, generation, promises](caf::error& err) {
        for (auto& p : *promises)
          p.deliver(err);
        batch_done(self, slot, generation);
      });
}

/// The worker for a request about one bridge, once the cursor writes that
/// wait for it are on their way: it runs one bridge's requests in the
/// order they came.
registry_actor keyed(self_ptr self, const std::string& tenant,
                     const std::string& ref) {
  auto slot = self->state.slot(tenant, ref);
  send_cursors(self, slot);
  return self->state.workers[slot];
}

} // namespace

registry_state::~registry_state() {
  for (auto& lane : cursor_lanes)
    for (auto& q : lane.queued)
      if (q.promise.pending())
        q.promise.deliver(make_error(ec::database_error,
                                     "registry: it ended before the cursor "
                                     "was written"));
}

registry_actor::behavior_type
registry(registry_actor::stateful_pointer<registry_state> self, size_t pool_size,
         registry_worker_factory make_worker) {
  auto& st = self->state;
  st.make_worker = std::move(make_worker);
  for (size_t i = 0; i < std::max<size_t>(pool_size, 1); ++i) {
    st.workers.push_back(st.make_worker(self->system()));
    self->monitor(st.workers.back());
  }
  st.cursor_lanes.resize(st.workers.size());
  self->set_down_handler([self](const caf::down_msg& msg) {
    auto& st = self->state;
    for (size_t i = 0; i < st.workers.size(); ++i) {
      auto& worker = st.workers[i];
      if (worker.address() != msg.source)
        continue;
      log::error("registry", "worker died, replacing it",
                 {{"reason", describe(msg.reason)}});
      worker = st.make_worker(self->system());
      self->monitor(worker);
      // Cursor writes waiting for a batch the dead worker may never answer
      // go to its successor now (the old batch answers with an error or
      // times out, uncounted).
      auto& lane = st.cursor_lanes[i];
      ++lane.generation;
      lane.in_flight = 0;
      send_cursors(self, i);
      return;
    }
  });
  // One bridge's requests always go to the same worker (in order); the
  // others take turns.
  return {
    [self](upsert_atom atm, std::string& tenant, std::string& ref,
           std::string& tags, std::string& url) {
      auto worker = keyed(self, tenant, ref);
      return self->delegate(worker, atm, std::move(tenant), std::move(ref),
                            std::move(tags), std::move(url));
    },
    [self](touch_atom atm, std::string& tenant, std::string& ref) {
      auto worker = keyed(self, tenant, ref);
      return self->delegate(worker, atm, std::move(tenant), std::move(ref));
    },
    [self](caf::get_atom atm, std::string& tenant, std::string& ref) {
      auto worker = keyed(self, tenant, ref);
      return self->delegate(worker, atm, std::move(tenant), std::move(ref));
    },
    [self](list_atom atm, std::string& tenant) {
      return self->delegate(self->state.pick(), atm, std::move(tenant));
    },
    [self](resume_atom atm) {
      return self->delegate(self->state.pick(), atm);
    },
    [self](caf::delete_atom atm, std::string& tenant, std::string& ref,
           int64_t before_ms) {
      auto worker = keyed(self, tenant, ref);
      return self->delegate(worker, atm, std::move(tenant), std::move(ref),
                            before_ms);
    },
    [self](stale_atom atm, std::string& tenant, int64_t before_ms) {
      return self->delegate(self->state.pick(), atm, std::move(tenant),
                            before_ms);
    },
    [self](caf::delete_atom atm, std::string& tenant, std::string& ref) {
      auto worker = keyed(self, tenant, ref);
      return self->delegate(worker, atm, std::move(tenant), std::move(ref));
    },
    [self](cursor_atom, std::string& tenant, std::string& ref,
           std::string& handle, std::string& offset) -> caf::result<bool> {
      auto& st = self->state;
      auto slot = st.slot(tenant, ref);
      auto& lane = st.cursor_lanes[slot];
      auto key = key_of(tenant, ref);
      if (lane.keys.count(key) > 0)
        send_cursors(self, slot); // this bridge's earlier write goes first
      auto promise = self->make_response_promise<bool>();
      lane.keys.insert(std::move(key));
      lane.queued.push_back(
        {cursor_write{std::move(tenant), std::move(ref), std::move(handle),
                      std::move(offset), false, {}},
         promise});
      if (lane.in_flight == 0)
        send_cursors(self, slot);
      return promise;
    },
    [self](cursor_atom atm, std::vector<cursor_write>& writes) {
      // Goes to the worker of its first bridge.
      auto worker = writes.empty()
                      ? self->state.pick()
                      : keyed(self, writes.front().tenant,
                              writes.front().ref);
      return self->delegate(worker, atm, std::move(writes));
    },
    [self](clear_atom atm, std::string& tenant, std::string& ref) {
      auto worker = keyed(self, tenant, ref);
      return self->delegate(worker, atm, std::move(tenant), std::move(ref));
    },
    [self](refs_atom atm, std::string& tenant) {
      return self->delegate(self->state.pick(), atm, std::move(tenant));
    },
    [self](epoch_atom atm, std::string& tenant, std::string& ref) {
      auto worker = keyed(self, tenant, ref);
      return self->delegate(worker, atm, std::move(tenant), std::move(ref));
    },
    [self](caf::ping_atom atm) {
      return self->delegate(self->state.pick(), atm);
    },
  };
}

registry_actor::behavior_type
registry_worker(registry_actor::pointer, std::shared_ptr<registry_backend> db) {
  return {
    [db](upsert_atom, const std::string& tenant, const std::string& ref,
         const std::string& tags, const std::string& url) {
      return db->upsert_bridge(tenant, ref, tags, url);
    },
    [db](touch_atom, const std::string& tenant, const std::string& ref) {
      return db->touch(tenant, ref);
    },
    [db](caf::get_atom, const std::string& tenant, const std::string& ref) {
      return db->get_bridge(tenant, ref);
    },
    [db](list_atom, const std::string& tenant) {
      return db->list_bridges(tenant);
    },
    [db](resume_atom) { return db->resume_all_bridges(); },
    [db](caf::delete_atom, const std::string& tenant, const std::string& ref,
         int64_t before_ms) {
      return db->delete_stale_bridge(tenant, ref, before_ms);
    },
    [db](stale_atom, const std::string& tenant, int64_t before_ms) {
      return db->list_stale(tenant, before_ms);
    },
    [db](caf::delete_atom, const std::string& tenant, const std::string& ref) {
      return db->delete_bridge(tenant, ref);
    },
    [db](cursor_atom, const std::string& tenant, const std::string& ref,
         const std::string& handle, const std::string& offset) {
      return db->update_cursor(tenant, ref, handle, offset);
    },
    [db](cursor_atom, std::vector<cursor_write>& writes) {
      return db->update_cursors(std::move(writes));
    },
    [db](clear_atom, const std::string& tenant, const std::string& ref) {
      return db->clear_cursor(tenant, ref);
    },
    [db](refs_atom, const std::string& tenant) {
      return db->list_referenced(tenant);
    },
    [db](epoch_atom, const std::string& tenant, const std::string& ref) {
      return db->next_producer_epoch(tenant, ref);
    },
    [db](caf::ping_atom) -> caf::result<caf::ok_atom> {
      if (auto err = db->ping())
        return err;
      return caf::ok_atom::value;
    },
  };
}

registry_worker_factory postgres_registry_workers(std::string postgres_url) {
  return [url = std::move(postgres_url)](caf::actor_system& sys) {
    auto backend = std::make_shared<registry_store>(url);
    return sys.spawn<caf::detached>(registry_worker, std::move(backend));
  };
}

} // namespace ebridge
