#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/actors.hpp"
#include "core/tag_index.hpp"
#include "storage/replication.hpp"

namespace ebridge {

struct source_config {
  replication_config replication;
  /// Recent transactions kept to serve a resuming bridge whose cursor is a
  /// little behind the feed (a restart); older cursors resync.
  size_t replay_buffer = 10000;
  /// How often the idle check runs: idle subscribers that hold back
  /// idle_lag of WAL move to the feed's position, laggards past max_lag
  /// resync.
  std::chrono::milliseconds idle_interval{30000};
  /// WAL bytes a subscriber may hold back before it must resync.
  uint64_t max_lag = uint64_t{1} << 30;
  /// WAL bytes an idle subscriber may hold back before its cursor is moved
  /// (0: at every idle check; at most max_lag); it moves sooner when its
  /// cursor nears the end of replay_buffer's reach. Each move is a registry
  /// row update that every logical decoder of the database decodes: a quiet
  /// feed should not cost a row per view per check.
  uint64_t idle_lag = uint64_t{64} << 20;
  /// Most idle cursors moved by one statement; one statement per tick. Every
  /// logical decoder of the database decodes those rows: in bench/source,
  /// 10,000 of them sent at once coincided with stalls of 300 ms in both
  /// ebridge's feed and pg_recvlogical's.
  size_t advance_chunk = 500;
  /// Zero: the feed starts at once. Otherwise it is held until the bridges
  /// the manager resumes with a cursor all subscribed (it says how many),
  /// at most this long: subscribes that wait for the feed are served from
  /// the slot's position, while one that comes after the feed has replayed
  /// more than replay_buffer transactions would have to resync.
  std::chrono::milliseconds resume_wait{0};
};

struct source_state {
  struct subscriber {
    bridge_actor bridge;
    uint64_t subscription = 0;
    bool snapshotting = false;
    /// Transactions routed to it while its snapshot is taken: (xid, batch).
    std::vector<std::pair<uint32_t, change_batch>> buffer;
    /// After its snapshot: transactions the snapshot saw are dropped until
    /// the feed passes the snapshot's WAL position.
    /// (Behind a pointer: most views hold none, and it is large.)
    std::unique_ptr<snapshot_result> seen;
    /// Where its feed starts: it gets transactions that end after this.
    uint64_t from = 0;
    /// What it acknowledged as durable.
    uint64_t acked = 0;
    /// The position of the last batch or up-to-date sent to it.
    uint64_t sent = 0;
    /// The position its idle cursor is being moved to (0: none).
    uint64_t advancing = 0;
    /// Nothing up to here concerned it, though its cursor could not be
    /// moved (the database was unavailable): Postgres may release up to
    /// here (a shutting-down server waits for it), a restart resyncs it.
    uint64_t floor = 0;

    /// It made durable everything it was sent.
    bool idle() const {
      return !snapshotting && acked >= sent;
    }

    /// How far Postgres may release WAL as far as this one is concerned.
    uint64_t holds() const {
      return std::max({acked, from, floor});
    }
  };

  /// A subscribe that came while the feed was not connected.
  struct waiting_subscribe {
    bridge_actor bridge;
    uint64_t subscription = 0;
    std::string tenant;
    std::string tags;
    source_cursor from;
  };

  source_config cfg;
  std::shared_ptr<replication_reader> reader;
  std::vector<waiting_subscribe> waiting;
  /// The feed is held for resuming bridges (see resume_wait); how many
  /// with a cursor the manager resumes (unknown until it says).
  bool holding = false;
  std::optional<uint64_t> resuming;
  caf::actor snapshotter;
  bool connected = false;
  feed_identity identity;
  /// The end of the last transaction seen.
  uint64_t position = 0;
  std::deque<replicated_txn> recent;
  /// Where `recent` starts: a cursor at or after it can be served from it.
  uint64_t recent_base = 0;
  tag_index index;
  uint64_t next_id = 1;
  std::map<uint64_t, subscriber> subscribers;
  /// Each bridge's subscriber id (a bridge has one subscription at a time).
  std::map<caf::actor_addr, uint64_t> by_bridge;
  /// Set when what Postgres may release could have moved; a periodic tick
  /// recomputes it (not every ack: that costs a pass over all).
  bool confirm_dirty = false;
  /// Ticks since the last idle check, and since the last confirm.
  int ticks = 0;
  int confirm_ticks = 0;
  /// Idle cursor moves not yet sent to the database (one chunk per tick,
  /// one in flight); whether one is in flight.
  std::deque<idle_advance> advances;
  bool advance_in_flight = false;

  /// Registers a subscriber and its filter (kept once, in the index).
  void add(uint64_t id, subscriber sub, const std::string& tenant,
           const tag_set& tags);
  void erase(uint64_t id);

  /// Marks what Postgres may release as changed (computed at the next tick).
  void confirm() {
    confirm_dirty = true;
  }

  /// Tells Postgres what every subscriber made durable.
  void confirm_now();

  static inline const char* name = "source";
};

/// The built-in change source: Postgres logical replication, routed through
/// a tag index to the bridges whose views a change enters, stays in or
/// leaves; one batch per transaction per bridge. Bootstraps take a snapshot
/// (REPEATABLE READ with pg_current_snapshot()) while the others stay live,
/// and drop what the snapshot already saw.
source_actor::behavior_type
source(source_actor::stateful_pointer<source_state> self, source_config cfg);

} // namespace ebridge
