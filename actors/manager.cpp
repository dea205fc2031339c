#include "actors/manager.hpp"

#include <algorithm>
#include <set>

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/tags.hpp"

namespace ebridge {

namespace {

using self_ptr = manager_actor::stateful_pointer<manager_state>;

bridge_config bridge_config_for(const manager_config& cfg,
                                const manager_state::key& k,
                                const std::string& tags) {
  bridge_config b;
  b.tenant = k.first;
  b.source_ref = k.second;
  b.tags = tags;
  b.source = cfg.source;
  b.sink = cfg.sink;
  b.registry = cfg.registry;
  b.request_timeout = cfg.request_timeout;
  b.cursor_interval = cfg.cursor_interval;
  b.touch_interval = cfg.touch_interval;
  return b;
}

/// The bridge for `k`, spawned (and monitored) if it does not run;
/// `resume` goes to a bridge spawned now. The manager notes when a bridge
/// it spawned reaches live (see `stable_after`).
bridge_actor& ensure(self_ptr self, const manager_state::key& k,
                     const std::string& tags,
                     std::shared_ptr<const bridge_resume> resume = nullptr) {
  auto& st = self->state;
  auto& e = st.bridges[k];
  if (e.tags.empty())
    e.tags = tags;
  if (!e.bridge) {
    auto b = bridge_config_for(st.cfg, k, e.tags);
    b.resume = std::move(resume);
    e.bridge = self->spawn(bridge, std::move(b));
    e.live_since.reset();
    self->monitor(e.bridge);
    st.running->insert(e.bridge.address());
    auto spawned = e.bridge;
    self->request(spawned, caf::infinite, ready_atom::value)
      .then(
        [self, k, spawned](caf::ok_atom) {
          auto& st = self->state;
          auto i = st.bridges.find(k);
          if (i != st.bridges.end() && i->second.bridge == spawned)
            i->second.live_since = self->clock().now();
        },
        [](caf::error&) {
          // It died first: the down handler restarts it.
        });
  }
  return e.bridge;
}

/// A bridge resumed with a cursor that died or was collected may never
/// subscribe (a stream it cannot read): the source stops waiting for it.
/// (If it did subscribe, the source dropped that subscribe too.)
void stop_awaiting(self_ptr self, manager_state::entry& e) {
  auto& st = self->state;
  if (!e.resuming)
    return;
  e.resuming = false;
  --st.resuming;
  self->send(st.cfg.source, resuming_atom::value, st.resuming);
}

void collect(self_ptr self, const manager_state::key& k, int64_t cutoff);
void finish_collect(self_ptr self, const manager_state::key& k);

/// Collects idle bridges: keeps referenced ones (touching them) and those
/// with readers; stops the others and deletes their rows (not streams).
void sweep(self_ptr self) {
  auto& st = self->state;
  if (st.sweeping)
    return;
  st.sweeping = true;
  std::set<std::string> tenants;
  for (auto& [k, e] : st.bridges)
    tenants.insert(k.first);
  auto& cfg = st.cfg;
  auto cutoff = wall_ms() - cfg.idle_ttl.count();
  auto pending = std::make_shared<size_t>(tenants.size());
  auto done = [self, pending] {
    if (--*pending == 0)
      self->state.sweeping = false;
  };
  if (tenants.empty())
    st.sweeping = false;
  for (auto& tenant : tenants) {
    self->request(cfg.registry, cfg.request_timeout, refs_atom::value, tenant)
      .then(
        [self, tenant, cutoff, done](std::vector<std::string>& refs) {
          auto& cfg = self->state.cfg;
          std::set<std::string> referenced{refs.begin(), refs.end()};
          for (auto& ref : referenced)
            caf::anon_send(cfg.registry, touch_atom::value, tenant, ref);
          self
            ->request(cfg.registry, cfg.request_timeout, stale_atom::value,
                      tenant, cutoff)
            .then(
              [self, tenant, cutoff, referenced,
               done](std::vector<bridge_row>& stale) {
                auto& st = self->state;
                for (auto& row : stale) {
                  manager_state::key k{tenant, row.source_ref};
                  if (referenced.count(row.source_ref) > 0
                      || st.readers.count(k) > 0)
                    continue;
                  auto i = st.bridges.find(k);
                  if (i != st.bridges.end() && i->second.bridge) {
                    // Its bridge may have heard of reads the registry has
                    // not yet (touches are written once an interval).
                    self
                      ->request(i->second.bridge, st.cfg.request_timeout,
                                status_atom::value)
                      .then(
                        [self, k, cutoff](bridge_status& status) {
                          // A reader may have come during the round trip.
                          if (status.last_activity_ms < cutoff
                              && self->state.readers.count(k) == 0)
                            collect(self, k, cutoff);
                        },
                        [](caf::error& err) {
                          log::warn("manager", "gc status failed",
                                    {{"error", describe(err)}});
                        });
                    continue;
                  }
                  collect(self, k, cutoff);
                }
                done();
              },
              [done](caf::error& err) {
                log::warn("manager", "gc listing failed",
                          {{"error", describe(err)}});
                done();
              });
        },
        [done](caf::error& err) {
          log::warn("manager", "gc refs failed", {{"error", describe(err)}});
          done();
        });
  }
}

/// Answers a register once its view's bridge is ready, bounded: past the
/// bound the caller gets a timeout and the bridge keeps starting.
void answer_when_ready(self_ptr self, const bridge_actor& b,
                       caf::typed_response_promise<registration> promise,
                       registration answer) {
  self->request(b, self->state.cfg.register_timeout, ready_atom::value)
    .then([promise, answer](caf::ok_atom) mutable { promise.deliver(answer); },
          [promise](caf::error& err) mutable {
            promise.deliver(
              err == caf::sec::request_timeout
                ? make_error(ec::timeout, "the view is still starting")
                : err);
          });
}

/// Runs a view again that the GC was collecting (a register or a reader
/// came): its row back (it may be gone), its bridge, and the registers that
/// waited answered.
void revive(self_ptr self, const manager_state::key& k) {
  auto& st = self->state;
  auto& e = st.bridges[k];
  auto waiting = std::move(e.revived);
  e.revived.clear();
  log::info("manager", "an idle view is wanted again",
            {{"tenant", k.first}, {"ref", k.second}});
  self
    ->request(st.cfg.registry, st.cfg.request_timeout, upsert_atom::value,
              k.first, k.second, e.tags, stream_path(k.second))
    .then(
      [self, k, waiting](bridge_row&) mutable {
        auto& st = self->state;
        auto& b = ensure(self, k, st.bridges[k].tags);
        for (auto& [promise, answer] : waiting)
          answer_when_ready(self, b, std::move(promise), std::move(answer));
      },
      [waiting](caf::error& err) mutable {
        for (auto& w : waiting)
          w.first.deliver(err);
      });
}

/// Puts back the row of a view that runs (idempotent: an existing row,
/// cursor and all, stays as it is).
void restore_row(self_ptr self, const manager_state::key& k) {
  auto& st = self->state;
  self
    ->request(st.cfg.registry, st.cfg.request_timeout, upsert_atom::value,
              k.first, k.second, st.bridges[k].tags, stream_path(k.second))
    .then([](bridge_row&) {},
          [k](caf::error& err) {
            log::error("manager", "cannot restore the row of a running view",
                       {{"ref", k.second}, {"error", describe(err)}});
          });
}

/// Deletes an idle view's registry row if it is still idle since `cutoff`
/// (a register or read since the listing wins), then forgets the view; if
/// the view is wanted again meanwhile, it runs again instead.
void delete_idle_row(self_ptr self, const manager_state::key& k,
                     int64_t cutoff) {
  auto& st = self->state;
  self
    ->request(st.cfg.registry, st.cfg.request_timeout, caf::delete_atom::value,
              k.first, k.second, cutoff)
    .then(
      [self, k](bool deleted) {
        auto& st = self->state;
        auto i = st.bridges.find(k);
        if (i == st.bridges.end())
          return;
        auto& e = i->second;
        if (e.bridge || e.retiring) {
          // A register started it again meanwhile; its upsert may have
          // come before the delete: the row goes back.
          if (deleted)
            restore_row(self, k);
          return;
        }
        if (!deleted || !e.revived.empty() || st.readers.count(k) > 0) {
          revive(self, k);
          return;
        }
        log::info("manager", "collected idle bridge",
                  {{"tenant", k.first}, {"ref", k.second}});
        stop_awaiting(self, e);
        st.bridges.erase(i);
      },
      [self, k](caf::error& err) {
        log::warn("manager", "gc delete failed", {{"error", describe(err)}});
        auto& st = self->state;
        auto i = st.bridges.find(k);
        if (i != st.bridges.end() && !i->second.bridge && !i->second.retiring)
          revive(self, k); // the row stays: so does the view
      });
}

/// Collects an idle view: its running bridge stops first, gracefully (its
/// appends in flight finish and its cursor is written while its row still
/// exists, so no write of it can land in a row registered anew), then its
/// row is deleted if still idle (see `finish_collect`).
void collect(self_ptr self, const manager_state::key& k, int64_t cutoff) {
  auto& st = self->state;
  auto i = st.bridges.find(k);
  if (i == st.bridges.end() || !i->second.bridge) {
    delete_idle_row(self, k, cutoff);
    return;
  }
  auto& e = i->second;
  if (e.retiring)
    return;
  e.retiring = true;
  e.retire_cutoff = cutoff;
  auto b = e.bridge;
  self->request(b, st.cfg.request_timeout, stop_atom::value)
    .then([](caf::ok_atom) {},
          [self, b](caf::error&) {
            self->send_exit(b, caf::exit_reason::kill);
          });
}

/// The bridge of a view being collected ended.
void finish_collect(self_ptr self, const manager_state::key& k) {
  auto& st = self->state;
  auto& e = st.bridges[k];
  e.retiring = false;
  if (!e.revived.empty() || st.readers.count(k) > 0)
    revive(self, k);
  else
    delete_idle_row(self, k, e.retire_cutoff);
}

} // namespace

manager_actor::behavior_type
manager(manager_actor::stateful_pointer<manager_state> self,
        manager_config cfg) {
  self->state.cfg = std::move(cfg);
  // A bridge that dies is restarted after a backoff that grows with its
  // deaths; a bridge collected or stopped on purpose is not.
  self->set_down_handler([self](const caf::down_msg& msg) {
    auto& st = self->state;
    st.running->erase(msg.source);
    for (auto& [k, e] : st.bridges) {
      if (!e.bridge || e.bridge.address() != msg.source)
        continue;
      e.bridge = nullptr;
      stop_awaiting(self, e);
      if (e.retiring) {
        finish_collect(self, k);
        return;
      }
      if (msg.reason == caf::exit_reason::user_shutdown
          || msg.reason == caf::exit_reason::normal)
        return;
      if (e.live_since
          && self->clock().now() - *e.live_since >= st.cfg.stable_after)
        e.deaths = 0; // it had recovered: a new failure, not the old one
      e.live_since.reset();
      ++e.deaths;
      auto shift = std::min(e.deaths - 1, 16);
      auto delay = std::min(st.cfg.restart_max,
                            st.cfg.restart_initial * (1 << shift));
      log::error("manager", "bridge died; restarting",
                 {{"tenant", k.first},
                  {"ref", k.second},
                  {"reason", describe(msg.reason)},
                  {"deaths", std::to_string(e.deaths)},
                  {"retry_ms", std::to_string(delay.count())}});
      self->delayed_send(self, delay, retry_atom::value, k.first, k.second);
      return;
    }
  });
  // On the way down, stop every bridge: their appends are already in the
  // store's queue, and nothing half-done is persisted. Should the manager
  // fail instead, its bridges end with it all the same (the supervisor then
  // restarts the node's actors).
  self->set_exit_handler(
    [self](const caf::exit_msg& msg) { self->quit(msg.reason); });
  self->attach_functor([running = self->state.running](const caf::error&) {
    for (auto& addr : *running)
      caf::anon_send_exit(addr, caf::exit_reason::user_shutdown);
  });
  // Resume every persisted bridge: one registry request takes a new epoch
  // for each, so they start without registry requests of their own. One
  // statement over every row: it may take longer than one bridge's request.
  auto& st = self->state;
  self
    ->request(st.cfg.registry, st.cfg.request_timeout * 10, resume_atom::value)
    .then(
      [self](std::vector<bridge_row>& rows) {
        // The source holds its feed until these subscribed (see
        // source_config::resume_wait): each is then served from its cursor.
        auto& st = self->state;
        st.resuming = static_cast<uint64_t>(
          std::count_if(rows.begin(), rows.end(), [](const bridge_row& row) {
            return row.has_cursor();
          }));
        self->send(st.cfg.source, resuming_atom::value, st.resuming);
        for (auto& row : rows) {
          manager_state::key k{row.tenant_id, row.source_ref};
          // A register that came first started its bridge, which took a
          // later epoch and may have moved the cursor since: that one (or
          // its restart) asks the registry itself.
          std::shared_ptr<const bridge_resume> resume;
          if (st.bridges.count(k) == 0)
            resume = std::make_shared<const bridge_resume>(
              bridge_resume{cursor_of(row), row.producer_epoch});
          ensure(self, k, row.tags, std::move(resume));
          st.bridges[k].resuming = row.has_cursor();
        }
        log::info("manager", "resumed bridges",
                  {{"count", std::to_string(rows.size())}});
      },
      [self](caf::error& err) {
        log::error("manager", "cannot list bridges to resume",
                   {{"error", describe(err)}});
        self->quit(err);
      });
  self->delayed_send(self, st.cfg.sweep_interval, sweep_atom::value);
  return {
    [self](register_atom, std::string& tenant,
           std::string& tags_json) -> caf::result<registration> {
      auto tags = parse_tags(tags_json);
      if (!tags)
        return tags.error();
      auto ref = source_ref(*tags);
      auto normalized = to_json(*tags);
      registration answer{ref, stream_path(ref)};
      auto promise = self->make_response_promise<registration>();
      auto& cfg = self->state.cfg;
      self
        ->request(cfg.registry, cfg.request_timeout, upsert_atom::value, tenant,
                  ref, normalized, answer.stream_url)
        .then(
          [self, promise, answer, tenant, normalized](bridge_row&) mutable {
            auto& st = self->state;
            manager_state::key k{tenant, answer.source_ref};
            caf::anon_send(st.cfg.registry, touch_atom::value, tenant,
                           answer.source_ref);
            if (auto i = st.bridges.find(k);
                i != st.bridges.end() && i->second.retiring) {
              // The GC is stopping it: answered once it runs again.
              i->second.revived.emplace_back(std::move(promise),
                                             std::move(answer));
              return;
            }
            auto& b = ensure(self, k, normalized);
            answer_when_ready(self, b, std::move(promise), std::move(answer));
          },
          [promise](caf::error& err) mutable { promise.deliver(err); });
      return promise;
    },
    [self](touch_atom, std::string& tenant, std::string& ref) {
      // Only views this node runs: a read of anything else writes nothing.
      auto& st = self->state;
      auto i = st.bridges.find({tenant, ref});
      if (i != st.bridges.end() && i->second.bridge)
        self->send(i->second.bridge, touch_atom::value);
    },
    [self](reader_open_atom, std::string& tenant, std::string& ref) {
      ++self->state.readers[{tenant, ref}];
    },
    [self](reader_close_atom, std::string& tenant, std::string& ref) {
      auto& st = self->state;
      auto i = st.readers.find({tenant, ref});
      if (i != st.readers.end() && --i->second <= 0)
        st.readers.erase(i);
    },
    [self](sweep_atom) {
      sweep(self);
      self->delayed_send(self, self->state.cfg.sweep_interval,
                         sweep_atom::value);
    },
    [self](retry_atom, std::string& tenant, std::string& ref) {
      auto& st = self->state;
      auto i = st.bridges.find({tenant, ref});
      if (i == st.bridges.end() || i->second.bridge)
        return;
      ensure(self, i->first, i->second.tags);
    },
    [self](status_atom) {
      std::vector<std::string> result;
      for (auto& [k, e] : self->state.bridges)
        result.push_back(k.first + "/" + k.second
                         + (e.bridge ? " running" : " restarting"));
      return result;
    },
  };
}

} // namespace ebridge
