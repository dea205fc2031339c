#include "actors/registry.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "core/error.hpp"
#include "core/log.hpp"

namespace ebridge {

registry_actor::behavior_type
registry(registry_actor::stateful_pointer<registry_state> self, size_t pool_size,
         registry_worker_factory make_worker) {
  auto& st = self->state;
  st.make_worker = std::move(make_worker);
  for (size_t i = 0; i < std::max<size_t>(pool_size, 1); ++i) {
    st.workers.push_back(st.make_worker(self->system()));
    self->monitor(st.workers.back());
  }
  self->set_down_handler([self](const caf::down_msg& msg) {
    auto& st = self->state;
    for (auto& worker : st.workers) {
      if (worker.address() != msg.source)
        continue;
      log::error("registry", "worker died, replacing it",
                 {{"reason", describe(msg.reason)}});
      worker = st.make_worker(self->system());
      self->monitor(worker);
      return;
    }
  });
  // One bridge's requests always go to the same worker (in order); the
  // others take turns.
  return {
    [self](upsert_atom atm, std::string& tenant, std::string& ref,
           std::string& tags, std::string& url) {
      auto worker = self->state.pick(tenant, ref);
      return self->delegate(worker, atm, std::move(tenant), std::move(ref),
                            std::move(tags), std::move(url));
    },
    [self](touch_atom atm, std::string& tenant, std::string& ref) {
      auto worker = self->state.pick(tenant, ref);
      return self->delegate(worker, atm, std::move(tenant), std::move(ref));
    },
    [self](caf::get_atom atm, std::string& tenant, std::string& ref) {
      auto worker = self->state.pick(tenant, ref);
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
      auto worker = self->state.pick(tenant, ref);
      return self->delegate(worker, atm, std::move(tenant), std::move(ref),
                            before_ms);
    },
    [self](stale_atom atm, std::string& tenant, int64_t before_ms) {
      return self->delegate(self->state.pick(), atm, std::move(tenant),
                            before_ms);
    },
    [self](caf::delete_atom atm, std::string& tenant, std::string& ref) {
      auto worker = self->state.pick(tenant, ref);
      return self->delegate(worker, atm, std::move(tenant), std::move(ref));
    },
    [self](cursor_atom atm, std::string& tenant, std::string& ref,
           std::string& handle, std::string& offset) {
      auto worker = self->state.pick(tenant, ref);
      return self->delegate(worker, atm, std::move(tenant), std::move(ref),
                            std::move(handle), std::move(offset));
    },
    [self](clear_atom atm, std::string& tenant, std::string& ref) {
      auto worker = self->state.pick(tenant, ref);
      return self->delegate(worker, atm, std::move(tenant), std::move(ref));
    },
    [self](refs_atom atm, std::string& tenant) {
      return self->delegate(self->state.pick(), atm, std::move(tenant));
    },
    [self](epoch_atom atm, std::string& tenant, std::string& ref) {
      auto worker = self->state.pick(tenant, ref);
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
