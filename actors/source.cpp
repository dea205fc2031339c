#include "actors/source.hpp"

#include <algorithm>
#include <set>
#include <sstream>

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "core/error.hpp"
#include "core/log.hpp"
#include "storage/database.hpp"
#include "storage/registry_store.hpp"

namespace ebridge {

namespace {

using self_ptr = source_actor::stateful_pointer<source_state>;

/// The source's clock: counts towards the idle check and the confirm, and
/// sends one chunk of idle cursor moves.
constexpr auto tick_interval = std::chrono::milliseconds{100};

/// Modular order of 32-bit transaction ids, as Postgres compares them.
bool xid_precedes(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) < 0;
}

/// Whether a snapshot saw the (committed) transaction `xid`.
bool visible(const snapshot_result& snap, uint32_t xid) {
  auto xmin = static_cast<uint32_t>(snap.xmin);
  auto xmax = static_cast<uint32_t>(snap.xmax);
  if (xid_precedes(xid, xmin))
    return true;
  if (!xid_precedes(xid, xmax))
    return false;
  return std::none_of(snap.xip.begin(), snap.xip.end(), [&](uint64_t x) {
    return static_cast<uint32_t>(x) == xid;
  });
}

/// Parses pg_current_snapshot()'s text, "xmin:xmax:xip,xip".
bool parse_snapshot(const std::string& text, snapshot_result& out) {
  std::istringstream in{text};
  char colon1 = 0;
  char colon2 = 0;
  if (!(in >> out.xmin >> colon1 >> out.xmax >> colon2) || colon1 != ':'
      || colon2 != ':')
    return false;
  uint64_t x = 0;
  while (in >> x) {
    out.xip.push_back(x);
    char comma = 0;
    if (!(in >> comma))
      break;
  }
  return true;
}

/// The snapshot worker: blocking SQL, on a detached actor of its own.
caf::behavior snapshotter(caf::event_based_actor*, std::string url) {
  auto db = std::make_shared<pg_connection>(url, "ebridge-snapshot");
  return {
    [db](uint64_t subscriber, const std::string& tenant,
         const std::string& tags) {
      snapshot_result result;
      result.subscriber = subscriber;
      auto done = db->run([&](pqxx::connection& conn) {
        pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx{conn};
        auto head = tx.exec1("SELECT pg_current_snapshot()::text, "
                             "pg_current_wal_lsn()::text");
        if (!parse_snapshot(head[0].as<std::string>(), result))
          throw std::runtime_error("unreadable pg_current_snapshot()");
        auto lsn = parse_lsn(head[1].as<std::string>());
        result.wal_lsn = lsn ? *lsn : 0;
        auto rows = tx.exec_params(
          "SELECT url, type, status, tags::text, spawn_args::text, parent, "
          "type_revision::text, inbox_schemas::text, state_schemas::text, "
          "created_at::text, updated_at::text FROM entities "
          "WHERE tenant_id = $1 AND tags @> $2::jsonb",
          tenant, tags);
        auto opt = [](const pqxx::field& f) {
          return f.is_null() ? std::optional<std::string>{}
                             : std::optional<std::string>{f.c_str()};
        };
        for (auto r : rows) {
          entity_columns c{opt(r[0]), opt(r[1]), opt(r[2]),  opt(r[3]),
                           opt(r[4]), opt(r[5]), opt(r[6]),  opt(r[7]),
                           opt(r[8]), opt(r[9]), opt(r[10])};
          auto row = make_member_row(c);
          if (row)
            result.rows.push_back(std::move(*row));
          else
            log::error("source", "unreadable entity row; left out",
                       {{"error", error_message(row.error())}});
        }
        tx.commit();
        return true;
      });
      if (!done)
        result.error = error_message(done.error());
      return result;
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

/// One batch per subscriber concerned by a transaction, at the offset of the
/// transaction's end LSN and the index of the last change it carries.
std::map<uint64_t, change_batch> route_txn(source_state& st,
                                           const replicated_txn& txn) {
  std::map<uint64_t, change_batch> batches;
  std::map<uint64_t, uint32_t> last_op;
  for (size_t op = 0; op < txn.changes.size(); ++op) {
    auto& change = txn.changes[op];
    auto& any = change.new_row ? *change.new_row : *change.old_row;
    std::optional<tag_set> old_tags;
    std::optional<tag_set> new_tags;
    if (change.old_row && change.old_row->columns.tags)
      old_tags = row_tag_pairs(*change.old_row->columns.tags);
    if (change.new_row && change.new_row->columns.tags)
      new_tags = row_tag_pairs(*change.new_row->columns.tags);
    std::optional<member_row> row;
    if (change.new_row) {
      auto made = make_member_row(change.new_row->columns);
      if (!made) {
        log::error("source", "unreadable entity row; change left out",
                   {{"error", error_message(made.error())}});
        continue;
      }
      row = std::move(*made);
    }
    auto old_key = change.old_row ? *change.old_row->columns.url
                                  : *change.new_row->columns.url;
    auto new_key = change.new_row ? *change.new_row->columns.url : old_key;
    auto& new_tenant = any.tenant_id;
    auto old_tenant = change.old_row ? change.old_row->tenant_id : new_tenant;
    std::vector<std::pair<tag_index::id, routed_op>> routed;
    if (old_tenant == new_tenant && old_key == new_key) {
      routed = route(st.index, new_tenant, old_tags ? &*old_tags : nullptr,
                     new_tags ? &*new_tags : nullptr);
    } else {
      // The row's identity changed (url or tenant): the old one leaves every
      // view it was in, the new one enters every view it matches.
      routed = route(st.index, old_tenant, old_tags ? &*old_tags : nullptr,
                     nullptr);
      auto more = route(st.index, new_tenant, nullptr,
                        new_tags ? &*new_tags : nullptr);
      routed.insert(routed.end(), more.begin(), more.end());
    }
    for (auto& [who, how] : routed) {
      auto& batch = batches[who];
      last_op[who] = static_cast<uint32_t>(std::min<size_t>(op, UINT32_MAX));
      if (how == routed_op::upsert)
        batch.changes.push_back({change_op::update, new_key, row});
      else
        batch.changes.push_back({change_op::remove, old_key, std::nullopt});
    }
  }
  for (auto& [who, batch] : batches) {
    auto& sub = st.subscribers.at(who);
    batch.subscription = sub.subscription;
    batch.at = source_cursor{st.identity.handle(),
                             format_lsn_offset(txn.end_lsn, last_op[who])};
  }
  return batches;
}

void refetch_all(self_ptr self, const std::string& why) {
  auto& st = self->state;
  log::warn("source", "every view must refetch",
            {{"reason", why}, {"views", std::to_string(st.subscribers.size())}});
  for (auto& [id, sub] : st.subscribers) {
    self->send(sub.bridge, refetch_atom::value, sub.subscription);
    st.index.remove(id);
  }
  st.subscribers.clear();
  st.by_bridge.clear();
  st.recent.clear();
  st.recent_base = st.position;
  st.advances.clear(); // for subscribers that are gone
}

/// Forgets a bridge's subscription, live or waiting for the feed.
void drop_subscriber(source_state& st, const caf::actor_addr& bridge) {
  auto& w = st.waiting;
  w.erase(std::remove_if(w.begin(), w.end(),
                         [&](const auto& x) {
                           return x.bridge.address() == bridge;
                         }),
          w.end());
  if (auto i = st.by_bridge.find(bridge); i != st.by_bridge.end())
    st.erase(i->second);
}

/// Sends a live subscriber the recent transactions after its start.
void replay(self_ptr self, uint64_t id) {
  auto& st = self->state;
  auto& sub = st.subscribers.at(id);
  for (auto& txn : st.recent) {
    if (txn.end_lsn <= sub.from)
      continue;
    auto batches = route_txn(st, txn);
    if (auto i = batches.find(id); i != batches.end()) {
      sub.sent = txn.end_lsn;
      self->send(sub.bridge, std::move(i->second));
    }
  }
}

void finish_snapshot(self_ptr self, snapshot_result& snap) {
  auto& st = self->state;
  auto i = st.subscribers.find(snap.subscriber);
  if (i == st.subscribers.end())
    return; // the bridge went away meanwhile
  auto& sub = i->second;
  if (!snap.error.empty()) {
    self->send(sub.bridge, source_error_atom::value, sub.subscription,
               "snapshot failed: " + snap.error);
    st.erase(i->first);
    return;
  }
  // The snapshot's rows at the position the subscription started from;
  // then what arrived meanwhile and the snapshot did not see; then
  // up-to-date at the last of those.
  change_batch rows;
  rows.subscription = sub.subscription;
  rows.at = source_cursor{st.identity.handle(), format_lsn_offset(sub.from)};
  for (auto& r : snap.rows) {
    auto key = r.url;
    rows.changes.push_back({change_op::insert, key, std::move(r)});
  }
  auto at = rows.at;
  self->send(sub.bridge, std::move(rows));
  sub.sent = sub.from;
  for (auto& [xid, batch] : sub.buffer) {
    if (visible(snap, xid))
      continue;
    at = batch.at;
    if (auto lsn = parse_lsn_offset(at.offset))
      sub.sent = std::max(sub.sent, *lsn);
    self->send(sub.bridge, std::move(batch));
  }
  // Release what the snapshot held: an idle view keeps `seen` until the
  // feed passes the snapshot's position.
  std::vector<std::pair<uint32_t, change_batch>>{}.swap(sub.buffer);
  std::vector<member_row>{}.swap(snap.rows);
  sub.seen = std::make_unique<snapshot_result>(std::move(snap));
  sub.snapshotting = false;
  self->send(sub.bridge, up_to_date_atom::value,
             up_to_date_msg{sub.subscription, at});
}

/// A subscription on a connected feed: resume from a cursor (replayed from
/// the recent transactions) or bootstrap from a snapshot.
void subscribe(self_ptr self, const bridge_actor& bridge,
               uint64_t subscription, const std::string& tenant,
               const std::string& tags_json, const source_cursor& from) {
  auto& st = self->state;
  auto tags = parse_tags(tags_json);
  if (!tags) {
    self->send(bridge, source_error_atom::value, subscription,
               error_message(tags.error()));
    return;
  }
  auto id = st.next_id++;
  source_state::subscriber sub;
  sub.bridge = bridge;
  sub.subscription = subscription;
  if (!from.empty()) {
    auto lsn = parse_lsn_offset(from.offset);
    bool same_feed = from.handle == st.identity.handle() && lsn;
    // Behind the feed: serve it from the recent transactions if they
    // reach back far enough, else it must resync.
    bool reachable = same_feed && *lsn >= st.recent_base;
    if (!reachable) {
      self->send(bridge, refetch_atom::value, subscription);
      return;
    }
    sub.from = *lsn;
    sub.acked = *lsn;
    sub.sent = *lsn;
    st.add(id, std::move(sub), tenant, *tags);
    replay(self, id);
    return;
  }
  sub.from = st.position;
  sub.acked = st.position;
  sub.sent = st.position;
  sub.snapshotting = true;
  st.add(id, std::move(sub), tenant, *tags);
  self->request(st.snapshotter, caf::infinite, id, tenant, to_json(*tags))
    .then([self](snapshot_result& snap) { finish_snapshot(self, snap); },
          [self, id](caf::error& err) {
            snapshot_result failed;
            failed.subscriber = id;
            failed.error = describe(err);
            finish_snapshot(self, failed);
          });
}

/// Asks the database worker to move one chunk of idle cursors.
void request_advance(self_ptr self, idle_advance adv) {
  auto& st = self->state;
  auto ids = adv.subscribers;
  auto keys = adv.keys; // in the order of ids; the answer has the moved ones
  auto lsn = adv.lsn;
  st.advance_in_flight = true;
  self->request(st.snapshotter, caf::infinite, std::move(adv))
    .then(
      [self, ids, keys, lsn](idle_advance& done) {
        auto& st = self->state;
        st.advance_in_flight = false;
        std::set<bridge_key> moved{done.keys.begin(), done.keys.end()};
        for (size_t k = 0; k < ids.size(); ++k) {
          auto i = st.subscribers.find(ids[k]);
          if (i == st.subscribers.end() || i->second.advancing != lsn)
            continue;
          i->second.advancing = 0;
          // A row that did not move (its bridge resyncing or already past)
          // is tried again at the next check.
          if (moved.count(keys[k]) > 0)
            i->second.acked = std::max(i->second.acked, lsn);
        }
        st.confirm();
      },
      [self, ids, lsn](caf::error& err) {
        auto& st = self->state;
        st.advance_in_flight = false;
        log::warn("source", "cannot move idle cursors; retrying later",
                  {{"error", describe(err)}});
        for (auto id : ids) {
          auto i = st.subscribers.find(id);
          if (i == st.subscribers.end() || i->second.advancing != lsn)
            continue;
          auto& sub = i->second;
          sub.advancing = 0;
          if (sub.idle())
            sub.floor = std::max(sub.floor, lsn);
        }
        st.confirm();
      });
}

/// Moves the registry cursors of subscribers that made everything durable
/// and got nothing since to the feed's position (queued in chunks), when it
/// is due (see below), and forces those that hold back more than `max_lag`
/// of WAL to resync.
void idle_check(self_ptr self) {
  auto& st = self->state;
  std::vector<uint64_t> moving;
  std::vector<uint64_t> lagging;
  auto idle_lag = std::min(st.cfg.idle_lag, st.cfg.max_lag);
  // A cursor before this is out of, or halfway out of, the recent
  // transactions' reach: a bridge that subscribes again with it (restarted
  // by its manager, or late after a restart) would have to resync.
  auto half = st.cfg.replay_buffer / 2;
  auto reach = st.recent.size() > half
                 ? st.recent[st.recent.size() - half - 1].end_lsn
                 : st.recent_base;
  for (auto& [id, sub] : st.subscribers) {
    if (sub.snapshotting)
      continue;
    if (sub.seen && st.position > sub.seen->wal_lsn)
      sub.seen.reset(); // the feed is past all the snapshot saw
    if (sub.idle()) {
      // Nothing since concerned it: its cursor may move to the position. A
      // move is a registry write: it is due once the view holds back
      // idle_lag of WAL, nears the end of the recent transactions' reach,
      // or was released already (a Postgres shutdown, a failed move): a
      // restart from the slot would find its cursor behind and resync.
      auto behind = st.position > sub.acked ? st.position - sub.acked : 0;
      bool due = behind >= idle_lag || sub.acked < reach
                 || sub.floor > sub.acked;
      if (behind > 0 && due && sub.advancing == 0 && st.connected) {
        sub.advancing = st.position;
        moving.push_back(id);
      }
    } else if (st.position - sub.acked > st.cfg.max_lag) {
      lagging.push_back(id);
    }
  }
  for (auto id : lagging) {
    auto& sub = st.subscribers.at(id);
    log::warn("source", "a view lags too far behind; it must resync",
              {{"lag_bytes", std::to_string(st.position - sub.acked)},
               {"max_lag_bytes", std::to_string(st.cfg.max_lag)}});
    self->send(sub.bridge, refetch_atom::value, sub.subscription);
    st.erase(id);
  }
  st.confirm();
  log::debug("source", "idle check",
             {{"position", format_lsn(st.position)},
              {"subscribers", std::to_string(st.subscribers.size())},
              {"moving", std::to_string(moving.size())},
              {"lagging", std::to_string(lagging.size())}});
  // In statements of at most advance_chunk rows, one per tick.
  auto chunk = std::max<size_t>(1, st.cfg.advance_chunk);
  for (size_t first = 0; first < moving.size(); first += chunk) {
    idle_advance part;
    part.handle = st.identity.handle();
    part.lsn = st.position;
    auto last = std::min(moving.size(), first + chunk);
    part.subscribers.assign(moving.begin() + first, moving.begin() + last);
    for (auto id : part.subscribers)
      part.keys.emplace_back(st.index.tenant_of(id),
                             source_ref(st.index.tags_of(id)));
    st.advances.push_back(std::move(part));
  }
}

/// Starts the replication feed (once).
void start_feed(self_ptr self, const std::string& why) {
  auto& st = self->state;
  st.holding = false;
  log::info("source", "starting the feed",
            {{"why", why},
             {"waiting_subscribes", std::to_string(st.waiting.size())}});
  if (auto err = st.reader->start()) {
    log::error("source", "cannot start", {{"error", error_message(err)}});
    self->quit(err);
  }
}

/// Starts a held feed once every bridge resumed with a cursor subscribed.
void release_if_resumed(self_ptr self) {
  auto& st = self->state;
  // (Counted only once enough wait: not a pass per subscribe at start.)
  if (!st.holding || !st.resuming || st.waiting.size() < *st.resuming)
    return;
  auto with_cursor = std::count_if(st.waiting.begin(), st.waiting.end(),
                                   [](const auto& w) { return !w.from.empty(); });
  if (static_cast<uint64_t>(with_cursor) >= *st.resuming)
    start_feed(self, "every view resumed with a cursor subscribed");
}

} // namespace

void source_state::add(uint64_t id, subscriber sub, const std::string& tenant,
                       const tag_set& tags) {
  index.add(id, tenant, tags);
  by_bridge[sub.bridge.address()] = id;
  subscribers.emplace(id, std::move(sub));
}

void source_state::erase(uint64_t id) {
  auto i = subscribers.find(id);
  if (i == subscribers.end())
    return;
  index.remove(id);
  if (auto j = by_bridge.find(i->second.bridge.address());
      j != by_bridge.end() && j->second == id)
    by_bridge.erase(j);
  subscribers.erase(i);
}

void source_state::confirm_now() {
  confirm_dirty = false;
  if (!reader)
    return;
  // Idle subscribers hold it back too, until the idle check has moved their
  // cursors: a restart from past a cursor would have to resync.
  auto lowest = position;
  for (auto& [id, sub] : subscribers)
    lowest = std::min(lowest, sub.holds());
  reader->confirm(lowest);
}

source_actor::behavior_type
source(source_actor::stateful_pointer<source_state> self, source_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.snapshotter = self->spawn<caf::detached + caf::linked>(
    snapshotter, st.cfg.replication.postgres_url);
  auto me = caf::actor_cast<source_actor>(self);
  st.reader = std::make_shared<replication_reader>(
    st.cfg.replication,
    [me](replicated_txn txn) { caf::anon_send(me, std::move(txn)); },
    [me](feed_event e) { caf::anon_send(me, std::move(e)); });
  auto hold_until = std::chrono::steady_clock::now() + st.cfg.resume_wait;
  if (st.cfg.resume_wait.count() > 0) {
    st.holding = true;
    log::info("source", "feed held for resuming views",
              {{"at_most", std::to_string(st.cfg.resume_wait.count()) + "ms"}});
  } else {
    start_feed(self, "not held");
  }
  self->delayed_send(self, tick_interval, caf::tick_atom::value);
  auto reader = st.reader;
  // The reader's thread must end with the actor.
  self->attach_functor([reader] { reader->stop(); });
  // A bridge that dies leaves its subscription: otherwise its last position
  // would hold back what Postgres may release.
  self->set_down_handler([self](const caf::down_msg& msg) {
    auto& st = self->state;
    drop_subscriber(st, msg.source);
    st.confirm();
  });
  return {
    [self](caf::subscribe_atom, bridge_actor& bridge, uint64_t subscription,
           std::string& tenant, std::string& tags_json, source_cursor& from) {
      auto& st = self->state;
      drop_subscriber(st, bridge.address());
      self->monitor(bridge);
      if (!st.connected) {
        // Started before the feed (a restart) or while it reconnects: it
        // waits for the feed rather than resync.
        st.waiting.push_back({bridge, subscription, std::move(tenant),
                              std::move(tags_json), std::move(from)});
        release_if_resumed(self);
        return;
      }
      subscribe(self, bridge, subscription, tenant, tags_json, from);
    },
    [self](resuming_atom, uint64_t count) {
      self->state.resuming = count;
      release_if_resumed(self);
    },
    [self](caf::unsubscribe_atom, bridge_actor& bridge) {
      drop_subscriber(self->state, bridge.address());
      self->state.confirm();
    },
    [self](ack_atom, bridge_actor& bridge, uint64_t subscription,
           source_cursor& at) {
      auto& st = self->state;
      auto lsn = parse_lsn_offset(at.offset);
      if (!lsn || at.handle != st.identity.handle())
        return;
      auto i = st.by_bridge.find(bridge.address());
      if (i == st.by_bridge.end())
        return;
      auto& sub = st.subscribers.at(i->second);
      if (sub.subscription != subscription)
        return;
      sub.acked = std::max(sub.acked, *lsn);
      st.confirm();
    },
    [self](replicated_txn& txn) {
      auto& st = self->state;
      if (txn.end_lsn <= st.position)
        return; // replayed after a reconnect: already routed
      st.position = txn.end_lsn;
      if (txn.truncated) {
        refetch_all(self, "entities was truncated");
        return;
      }
      auto batches = route_txn(st, txn);
      for (auto& [id, batch] : batches) {
        auto& sub = st.subscribers.at(id);
        if (sub.snapshotting) {
          sub.buffer.emplace_back(txn.xid, std::move(batch));
          continue;
        }
        if (sub.seen) {
          if (txn.commit_lsn > sub.seen->wal_lsn)
            sub.seen.reset(); // past the snapshot: nothing more it saw
          else if (visible(*sub.seen, txn.xid))
            continue;
        }
        sub.sent = txn.end_lsn;
        self->send(sub.bridge, std::move(batch));
      }
      st.recent.push_back(std::move(txn));
      while (st.recent.size() > st.cfg.replay_buffer) {
        st.recent_base = st.recent.front().end_lsn;
        st.recent.pop_front();
      }
      if (st.subscribers.empty())
        st.confirm();
    },
    [self, hold_until](caf::tick_atom) {
      auto& st = self->state;
      if (st.holding && std::chrono::steady_clock::now() >= hold_until)
        start_feed(self, "waited resume_wait for resuming views");
      auto every = std::max<int64_t>(1, st.cfg.idle_interval / tick_interval);
      if (++st.ticks >= every) {
        st.ticks = 0;
        idle_check(self);
      }
      if (!st.advance_in_flight && !st.advances.empty()) {
        auto next = std::move(st.advances.front());
        st.advances.pop_front();
        request_advance(self, std::move(next));
      }
      // The reader reports to Postgres at its status interval: computing
      // more often (a pass over every subscriber) would be wasted.
      auto confirm_every = std::max<int64_t>(
        1, st.cfg.replication.status_interval / tick_interval);
      if (++st.confirm_ticks >= confirm_every && st.confirm_dirty) {
        st.confirm_ticks = 0;
        st.confirm_now();
      }
      self->delayed_send(self, tick_interval, caf::tick_atom::value);
    },
    [self](feed_event& e) {
      auto& st = self->state;
      if (e.what == feed_event::kind::disconnected) {
        st.connected = false;
        return;
      }
      if (e.what == feed_event::kind::progress) {
        // Nothing for anyone up to there.
        if (!st.connected)
          return;
        if (e.start_lsn > st.position) {
          st.position = e.start_lsn;
          st.confirm();
        }
        if (e.urgent) {
          // The server waits for exactly this (a shutdown waits until the
          // client confirms all it was sent): idle subscribers stop holding
          // back without waiting for their cursors to move. Should this
          // process stop before they move, those views resync.
          for (auto& [id, sub] : st.subscribers)
            if (sub.idle())
              sub.floor = std::max(sub.floor, st.position);
          st.confirm_now();
        }
        return;
      }
      bool same = e.identity.handle() == st.identity.handle();
      if (!same && !st.identity.system_id.empty())
        refetch_all(self, "the replication feed changed (" + e.identity.handle()
                            + ")");
      if (!same) {
        st.identity = e.identity;
        st.position = e.start_lsn;
        st.recent.clear();
        st.recent_base = e.start_lsn;
      }
      st.position = std::max(st.position, e.start_lsn);
      st.connected = true;
      auto waiting = std::move(st.waiting);
      st.waiting.clear();
      for (auto& w : waiting)
        subscribe(self, w.bridge, w.subscription, w.tenant, w.tags, w.from);
    },
  };
}

} // namespace ebridge
