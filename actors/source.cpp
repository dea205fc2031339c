#include "actors/source.hpp"

#include <cctype>

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "core/error.hpp"
#include "core/log.hpp"
#include "storage/database.hpp"
#include "storage/migrations.hpp"
#include "storage/registry_store.hpp"
#include "storage/snapshot.hpp"

namespace ebridge {

namespace {

/// The source's clock: counts towards the idle check and the confirm, and
/// sends one chunk of idle cursor moves.
constexpr auto tick_interval = std::chrono::milliseconds{100};

/// The snapshot worker: blocking SQL, on a detached actor of its own.
caf::behavior snapshotter(caf::event_based_actor*, std::string url) {
  auto db = std::make_shared<pg_connection>(url, "ebridge-snapshot");
  return {
    [db](uint64_t subscriber, const std::string& tenant,
         const std::string& tags) {
      snapshot_result result;
      result.subscriber = subscriber;
      auto snap = read_view_snapshot(*db, tenant, tags);
      if (snap)
        result.snapshot = std::move(*snap);
      else
        result.error = error_message(snap.error());
      return result;
    },
    // What makes entities unusable (empty: nothing); a database that does
    // not answer is a problem too.
    [db](status_atom) -> std::string {
      auto err = check_entities_table(*db);
      return err ? error_message(err) : std::string{};
    },
    [db](idle_advance& req) -> caf::result<idle_advance> {
      auto moved = advance_idle_cursors(*db, req.handle,
                                        format_lsn_offset(req.lsn), req.keys);
      if (!moved)
        return moved.error();
      req.keys = std::move(*moved);
      return std::move(req);
    },
  };
}

using self_ptr = source_actor::stateful_pointer<source_state>;

/// Asks the database worker to move the next chunk of idle cursors.
void send_advance(self_ptr self) {
  auto& st = self->state;
  auto next = st.logic->next_advance();
  if (!next)
    return;
  auto sent = std::make_shared<idle_advance>(*next);
  self->request(st.snapshotter, caf::infinite, std::move(*next))
    .then(
      [self, sent](idle_advance& done) {
        self->state.logic->advanced(*sent, done.keys);
      },
      [self, sent](caf::error& err) {
        log::warn("source", "cannot move idle cursors; retrying later",
                  {{"error", describe(err)}});
        self->state.logic->advance_failed(*sent);
      });
}

void on_tick(self_ptr self) {
  auto& st = self->state;
  auto& logic = *st.logic;
  if (logic.holding() && self->clock().now() >= st.hold_until)
    logic.hold_expired();
  auto every = std::max<int64_t>(1, st.cfg.idle_interval / tick_interval);
  if (++st.ticks >= every) {
    st.ticks = 0;
    logic.idle_check();
  }
  send_advance(self);
  // While the feed is stalled, ask about once a second whether the table
  // was fixed.
  if (!logic.stalled().empty() && ++st.stall_ticks >= 10) {
    st.stall_ticks = 0;
    logic.stall_tick();
  }
  // The reader reports to Postgres at its status interval: computing more
  // often (a pass over every subscriber) would be wasted.
  auto confirm_every = std::max<int64_t>(1, st.cfg.replication.status_interval
                                              / tick_interval);
  if (++st.confirm_ticks >= confirm_every && logic.confirm_due()) {
    st.confirm_ticks = 0;
    st.reader->confirm(logic.confirmable());
  }
}

} // namespace

void source_state::drop(const caf::actor_addr& bridge) {
  auto i = by_bridge.find(bridge);
  if (i == by_bridge.end())
    return;
  logic->unsubscribe(i->second);
  bridges.erase(i->second);
  by_bridge.erase(i);
}

void source_state::batch(uint64_t id, change_batch batch) {
  if (auto i = bridges.find(id); i != bridges.end())
    self->send(i->second, std::move(batch));
}

void source_state::up_to_date(uint64_t id, up_to_date_msg msg) {
  if (auto i = bridges.find(id); i != bridges.end())
    self->send(i->second, up_to_date_atom::value, std::move(msg));
}

void source_state::refetch(uint64_t id, uint64_t subscription) {
  if (auto i = bridges.find(id); i != bridges.end())
    self->send(i->second, refetch_atom::value, subscription);
}

void source_state::failed(uint64_t id, uint64_t subscription, std::string why) {
  if (auto i = bridges.find(id); i != bridges.end())
    self->send(i->second, source_error_atom::value, subscription,
               std::move(why));
}

void source_state::take_snapshot(uint64_t id, const std::string& tenant,
                                 const std::string& tags_json) {
  auto* me = static_cast<self_ptr>(self);
  self->request(snapshotter, caf::infinite, id, tenant, tags_json)
    .then(
      [me](snapshot_result& snap) {
        auto& logic = *me->state.logic;
        if (snap.error.empty())
          logic.snapshot_taken(snap.subscriber, std::move(snap.snapshot));
        else
          logic.snapshot_taken(snap.subscriber,
                               make_error(ec::database_error, snap.error));
      },
      [me, id](caf::error& err) {
        me->state.logic->snapshot_taken(id, std::move(err));
      });
}

void source_state::check_table() {
  auto* me = static_cast<self_ptr>(self);
  self->request(snapshotter, caf::infinite, status_atom::value)
    .then([me](
            std::string& problem) { me->state.logic->table_checked(problem); },
          [me](caf::error& err) {
            me->state.logic->table_checked("cannot check: " + describe(err));
          });
}

namespace {

/// `text` with each run of whitespace (libpq's messages have newlines and
/// tabs) as one space, for a reason on one line.
std::string one_line(const std::string& text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = !out.empty();
      continue;
    }
    if (space)
      out += ' ';
    space = false;
    out += c;
  }
  return out;
}

} // namespace

void source_state::start_feed(const std::string&) {
  away_since = self->clock().now();
  away_reason = "connecting";
  if (auto err = reader->start()) {
    log::error("source", "cannot start", {{"error", error_message(err)}});
    self->quit(err);
  }
}

source_actor::behavior_type
source(source_actor::stateful_pointer<source_state> self, source_config cfg) {
  auto& st = self->state;
  st.self = self;
  st.cfg = cfg;
  st.snapshotter = self->spawn<caf::detached + caf::linked>(
    snapshotter, st.cfg.replication.postgres_url);
  auto me = caf::actor_cast<source_actor>(self);
  st.reader = std::make_shared<replication_reader>(
    st.cfg.replication,
    [me](replicated_txn txn) { caf::anon_send(me, std::move(txn)); },
    [me](feed_event e) { caf::anon_send(me, std::move(e)); });
  st.logic = std::make_unique<source_logic>(std::move(cfg), st);
  st.hold_until = self->clock().now() + st.cfg.resume_wait;
  if (st.logic->holding())
    log::info("source", "feed held for resuming views",
              {{"at_most", std::to_string(st.cfg.resume_wait.count()) + "ms"}});
  else {
    log::info("source", "starting the feed", {{"why", "not held"}});
    st.start_feed("not held");
  }
  self->delayed_send(self, tick_interval, caf::tick_atom::value);
  auto reader = st.reader;
  // The reader's thread must end with the actor.
  self->attach_functor([reader] { reader->stop(); });
  // A bridge that dies leaves its subscription: otherwise its last position
  // would hold back what Postgres may release.
  self->set_down_handler(
    [self](const caf::down_msg& msg) { self->state.drop(msg.source); });
  return {
    [self](caf::subscribe_atom, bridge_actor& bridge, uint64_t subscription,
           std::string& tenant, std::string& tags_json, source_cursor& from) {
      auto& st = self->state;
      st.drop(bridge.address());
      self->monitor(bridge);
      auto id = st.next_id++;
      st.bridges.emplace(id, bridge);
      st.by_bridge[bridge.address()] = id;
      st.logic->subscribe(id, subscription, std::move(tenant),
                          std::move(tags_json), std::move(from));
    },
    [self](resuming_atom, uint64_t count) {
      self->state.logic->resuming(count);
    },
    [self](caf::unsubscribe_atom, bridge_actor& bridge) {
      self->state.drop(bridge.address());
    },
    [self](ack_atom, bridge_actor& bridge, uint64_t subscription,
           source_cursor& at) {
      auto& st = self->state;
      auto i = st.by_bridge.find(bridge.address());
      if (i != st.by_bridge.end())
        st.logic->acknowledged(i->second, subscription, at);
    },
    [self](replicated_txn& txn) {
      self->state.logic->transaction(std::move(txn));
    },
    [self](status_atom) {
      auto& st = self->state;
      auto stalled = st.logic->stalled();
      if (!stalled.empty() || !st.away_since)
        return stalled;
      auto away = self->clock().now() - *st.away_since;
      if (away < st.cfg.down_after)
        return stalled;
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(away);
      auto tenths = (ms.count() + 50) / 100;
      return "the change feed has been away for " + std::to_string(tenths / 10)
             + "." + std::to_string(tenths % 10) + " s (" + st.away_reason
             + ")";
    },
    [self](caf::tick_atom) {
      on_tick(self);
      self->delayed_send(self, tick_interval, caf::tick_atom::value);
    },
    [self](feed_event& e) {
      auto& st = self->state;
      switch (e.what) {
        case feed_event::kind::disconnected:
          if (!st.away_since)
            st.away_since = self->clock().now();
          st.away_reason = e.reason.empty() ? "disconnected"
                                            : one_line(e.reason);
          st.logic->disconnected();
          return;
        case feed_event::kind::progress:
          if (st.logic->progress(e.start_lsn, e.urgent))
            st.reader->confirm(st.logic->confirmable());
          return;
        case feed_event::kind::connected:
          st.away_since.reset();
          st.away_reason.clear();
          st.logic->connected(e.identity, e.start_lsn);
          return;
      }
    },
  };
}

} // namespace ebridge
