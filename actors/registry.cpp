#include "actors/registry.hpp"

#include <algorithm>

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

bool is_receiver_down(const caf::error& err) {
  return err.category() == caf::atom("system")
         && err.code() == static_cast<uint8_t>(caf::sec::request_receiver_down);
}

/// Sends the cursor writes queued for one worker as one batch.
void send_cursors(self_ptr self, size_t slot);

/// A batch is answered: the next one may go.
void finish_batch(self_ptr self, size_t slot,
                  const std::shared_ptr<registry_state::cursor_batch>& batch) {
  auto& lane = self->state.cursor_lanes[slot];
  auto& f = lane.in_flight;
  f.erase(std::remove(f.begin(), f.end(), batch), f.end());
  if (!lane.busy())
    send_cursors(self, slot);
}

void send_cursors(self_ptr self, size_t slot) {
  auto& st = self->state;
  auto& lane = st.cursor_lanes[slot];
  if (lane.queued.empty() || lane.orphaned)
    return;
  auto batch = std::make_shared<registry_state::cursor_batch>();
  batch->writes = std::move(lane.queued);
  batch->generation = lane.generation;
  lane.queued.clear();
  lane.keys.clear();
  lane.in_flight.push_back(batch);
  std::vector<cursor_write> writes;
  writes.reserve(batch->writes.size());
  for (auto& q : batch->writes)
    writes.push_back(q.write);
  self
    ->request(st.workers[slot], batch_timeout, cursor_atom::value,
              std::move(writes))
    .then(
      [self, slot, batch](std::vector<cursor_write>& done) {
        auto& qs = batch->writes;
        for (size_t i = 0; i < qs.size(); ++i) {
          if (i >= done.size())
            qs[i].done(make_error(ec::database_error,
                                  "registry: a cursor batch came back with "
                                  "fewer answers than writes"));
          else if (!done[i].refused.empty())
            qs[i].done(make_error(ec::invalid_input, done[i].refused));
          else
            qs[i].done(done[i].written);
        }
        finish_batch(self, slot, batch);
      },
      [self, slot, batch](caf::error& err) {
        auto& lane = self->state.cursor_lanes[slot];
        if (is_receiver_down(err)) {
          // The worker died before it ran them: they go first to its
          // successor (now, or when the registry hears of the death).
          auto& q = lane.queued;
          for (auto& w : batch->writes)
            lane.keys.insert(key_of(w.write.tenant, w.write.ref));
          q.insert(q.begin(), std::make_move_iterator(batch->writes.begin()),
                   std::make_move_iterator(batch->writes.end()));
          batch->writes.clear();
          if (batch->generation == lane.generation)
            lane.orphaned = true;
          finish_batch(self, slot, batch);
          return;
        }
        for (auto& q : batch->writes)
          q.done(err);
        finish_batch(self, slot, batch);
      });
}

/// Queues one cursor write for its worker; it goes at once if the worker is
/// not busy with earlier ones.
void queue_cursor(self_ptr self, cursor_write write,
                  std::function<void(caf::expected<bool>)> done) {
  auto& st = self->state;
  auto slot = st.slot(write.tenant, write.ref);
  auto& lane = st.cursor_lanes[slot];
  auto key = key_of(write.tenant, write.ref);
  if (lane.keys.count(key) > 0)
    send_cursors(self, slot); // this bridge's earlier write goes first
  lane.keys.insert(std::move(key));
  lane.queued.push_back({std::move(write), std::move(done)});
  if (!lane.busy())
    send_cursors(self, slot);
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
  auto ended = [] {
    return make_error(ec::database_error,
                      "registry: it ended before the cursor was written");
  };
  for (auto& lane : cursor_lanes) {
    for (auto& q : lane.queued)
      q.done(ended());
    for (auto& batch : lane.in_flight)
      for (auto& q : batch->writes)
        q.done(ended());
  }
}

registry_actor::behavior_type
registry(registry_actor::stateful_pointer<registry_state> self,
         size_t pool_size, registry_worker_factory make_worker) {
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
      lane.orphaned = false;
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
    [self](resume_atom atm) { return self->delegate(self->state.pick(), atm); },
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
      auto promise = self->make_response_promise<bool>();
      queue_cursor(self,
                   cursor_write{std::move(tenant),
                                std::move(ref),
                                std::move(handle),
                                std::move(offset),
                                false,
                                {}},
                   [promise](caf::expected<bool> r) mutable {
                     if (r)
                       promise.deliver(*r);
                     else
                       promise.deliver(std::move(r.error()));
                   });
      return promise;
    },
    [self](cursor_atom, std::vector<cursor_write>& writes)
      -> caf::result<std::vector<cursor_write>> {
      // Each write joins its own bridge's lane, as if sent alone; the
      // answer comes when all have theirs.
      if (writes.empty())
        return std::vector<cursor_write>{};
      struct joined {
        std::vector<cursor_write> writes;
        size_t left = 0;
        caf::error err;
        caf::typed_response_promise<std::vector<cursor_write>> promise;
      };
      auto j = std::make_shared<joined>();
      j->promise = self->make_response_promise<std::vector<cursor_write>>();
      j->writes = std::move(writes);
      j->left = j->writes.size();
      for (size_t i = 0; i < j->writes.size(); ++i) {
        auto& w = j->writes[i];
        w.written = false;
        w.refused.clear();
        queue_cursor(self, w, [j, i](caf::expected<bool> r) {
          if (r)
            j->writes[i].written = *r;
          else if (has_code(r.error(), ec::invalid_input))
            j->writes[i].refused = error_message(r.error());
          else if (!j->err)
            j->err = std::move(r.error());
          if (--j->left > 0)
            return;
          if (j->err)
            j->promise.deliver(j->err);
          else
            j->promise.deliver(std::move(j->writes));
        });
      }
      return j->promise;
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
