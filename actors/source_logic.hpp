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
#include "config/defaults.hpp"
#include "core/tag_index.hpp"
#include "storage/replication.hpp"
#include "storage/snapshot.hpp"

namespace ebridge {

struct source_config {
  replication_config replication;
  /// Recent transactions kept to serve a resuming bridge whose cursor is a
  /// little behind the feed (a restart); older cursors resync.
  size_t replay_buffer = 10000;
  /// How often the idle check runs: idle subscribers that hold back
  /// idle_lag of WAL move to the feed's position, laggards past max_lag
  /// resync.
  std::chrono::milliseconds idle_interval = defaults::idle_interval;
  /// WAL bytes a subscriber may hold back before it must resync.
  uint64_t max_lag = defaults::max_lag;
  /// WAL bytes an idle subscriber may hold back before its cursor is moved
  /// (0: at every idle check; at most max_lag); it moves sooner when its
  /// cursor nears the end of replay_buffer's reach. Each move is a registry
  /// row update that every logical decoder of the database decodes: a quiet
  /// feed should not cost a row per view per check.
  uint64_t idle_lag = defaults::idle_lag;
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
  std::chrono::milliseconds resume_wait = defaults::resume_wait;
  /// How long the started feed may be away before the source reports it
  /// down (readiness).
  std::chrono::milliseconds down_after = defaults::feed_down_after;
};

/// Where the source's decisions go; the source actor turns each into a
/// message (subscribers are the ids its caller gave them).
class source_output {
public:
  virtual ~source_output();

  virtual void batch(uint64_t id, change_batch batch) = 0;
  virtual void up_to_date(uint64_t id, up_to_date_msg msg) = 0;
  /// The subscriber's position is void: it must resync.
  virtual void refetch(uint64_t id, uint64_t subscription) = 0;
  /// The subscription failed: resync after a backoff.
  virtual void failed(uint64_t id, uint64_t subscription, std::string why) = 0;
  /// Take the subscriber's snapshot; its answer comes back through
  /// `source_logic::snapshot_taken`.
  virtual void take_snapshot(uint64_t id, const std::string& tenant,
                             const std::string& tags_json)
    = 0;
  /// Start the replication feed (called once).
  virtual void start_feed(const std::string& why) = 0;
  /// Find out whether `entities` can be read now; the answer comes back
  /// through `source_logic::table_checked`.
  virtual void check_table() = 0;
};

/// The change source's rules, with no actor, clock or database in them:
/// routing each transaction to the subscribers it concerns (one batch per
/// transaction each); a bootstrap's snapshot, the transactions buffered
/// while it is taken and dropping those it saw; the replay buffer that
/// serves a cursor a little behind the feed; the hold at start for resuming
/// views; the idle and lag rules; and how far Postgres may release WAL.
class source_logic {
public:
  source_logic(source_config cfg, source_output& out);

  /// Whether the feed waits for resuming views (resume_wait > 0); the
  /// caller starts it otherwise.
  bool holding() const noexcept {
    return holding_;
  }

  // -- subscribers ------------------------------------------------------------

  /// A bridge subscribes as `id` (new for every subscribe) with its filter
  /// and cursor (empty: snapshot first). Waits while the feed is away.
  void subscribe(uint64_t id, uint64_t subscription, std::string tenant,
                 std::string tags_json, source_cursor from);

  /// Forgets subscriber `id`, live or waiting.
  void unsubscribe(uint64_t id);

  /// Subscriber `id` made everything up to `at` durable.
  void acknowledged(uint64_t id, uint64_t subscription,
                    const source_cursor& at);

  /// The manager resumes this many views with a cursor (a held feed starts
  /// once they all subscribed).
  void resuming(uint64_t count);

  /// resume_wait passed: a held feed starts.
  void hold_expired();

  // -- the feed ---------------------------------------------------------------

  void connected(const feed_identity& identity, uint64_t start_lsn);
  void disconnected();

  /// Nothing for us up to `lsn`. Returns true when Postgres waits for an
  /// answer now (`urgent`): confirm `confirmable()` at once.
  bool progress(uint64_t lsn, bool urgent);

  void transaction(replicated_txn txn);

  /// The snapshot for subscriber `id`, or why there is none.
  void snapshot_taken(uint64_t id, caf::expected<view_snapshot> snap);

  // -- changes that cannot be applied -----------------------------------------

  /// Why the feed is stalled, or empty. A transaction with a change that
  /// cannot be applied (`replicated_txn::unusable`) that a subscriber needs
  /// stalls it: nothing after it is routed, nothing past it confirmed, new
  /// subscribes wait, until `entities` is fixed.
  std::string stalled() const;

  /// While stalled, asks (`check_table`) whether `entities` is fixed, one
  /// question at a time; the caller calls it periodically.
  void stall_tick();

  /// What still makes `entities` unusable, or empty: fixed. Then every view
  /// resyncs from a snapshot (which sees the change that could not be
  /// applied), and the feed goes on past it.
  void table_checked(const std::string& problem);

  // -- idle views and WAL release ---------------------------------------------

  /// Queues idle cursor moves that are due (in chunks) and makes subscribers
  /// that hold back more than max_lag resync.
  void idle_check();

  /// The next chunk of idle cursor moves to send, if any and none is in
  /// flight; the caller answers with `advanced` or `advance_failed`.
  std::optional<idle_advance> next_advance();

  /// The database moved the cursors of `moved` (of the chunk sent).
  void advanced(const idle_advance& sent, const std::vector<bridge_key>& moved);

  /// The chunk could not be written.
  void advance_failed(const idle_advance& sent);

  /// Whether what Postgres may release could have moved since the last
  /// `confirmable()`.
  bool confirm_due() const noexcept {
    return confirm_dirty_;
  }

  /// How far Postgres may release WAL: what every subscriber made durable
  /// (or need not keep).
  uint64_t confirmable();

  // -- observers --------------------------------------------------------------

  uint64_t position() const noexcept {
    return position_;
  }

  bool connected() const noexcept {
    return connected_;
  }

  size_t subscriber_count() const noexcept {
    return subscribers_.size();
  }

  size_t waiting_count() const noexcept {
    return waiting_.size();
  }

  const feed_identity& identity() const noexcept {
    return identity_;
  }

private:
  struct subscriber {
    uint64_t subscription = 0;
    bool snapshotting = false;
    /// Transactions routed to it while its snapshot is taken: (xid, batch).
    std::vector<std::pair<uint32_t, change_batch>> buffer;
    /// After its snapshot: transactions the snapshot saw are dropped until
    /// the feed passes the snapshot's WAL position.
    /// (Behind a pointer: most views hold none, and it is large.)
    std::unique_ptr<view_snapshot> seen;
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
    uint64_t id = 0;
    uint64_t subscription = 0;
    std::string tenant;
    std::string tags;
    source_cursor from;
  };

  void start(uint64_t id, uint64_t subscription, const std::string& tenant,
             const std::string& tags_json, const source_cursor& from);
  void add(uint64_t id, subscriber sub, const std::string& tenant,
           const tag_set& tags);
  void erase(uint64_t id);
  std::map<uint64_t, change_batch> route_txn(const replicated_txn& txn);
  void replay(uint64_t id);
  void refetch_all(const std::string& why);
  void release_if_resumed();
  void start_feed(const std::string& why);

  source_config cfg_;
  source_output& out_;
  std::vector<waiting_subscribe> waiting_;
  /// The feed is held for resuming bridges (see resume_wait); how many
  /// with a cursor the manager resumes (unknown until it says).
  bool holding_ = false;
  std::optional<uint64_t> resuming_;
  bool connected_ = false;
  feed_identity identity_;
  /// The end of the last transaction seen.
  uint64_t position_ = 0;
  /// Set while stalled: why, and the furthest position the feed reported
  /// meanwhile (ignored: the views resync past it).
  std::string stall_reason_;
  std::string table_problem_;
  uint64_t stall_seen_ = 0;
  bool table_check_in_flight_ = false;
  /// Transactions that cannot be applied and end at or before this are
  /// covered by the snapshots taken after the last stall (a reconnect may
  /// deliver them again).
  uint64_t covered_until_ = 0;
  std::deque<replicated_txn> recent_;
  /// Where `recent_` starts: a cursor at or after it can be served from it.
  uint64_t recent_base_ = 0;
  tag_index index_;
  std::map<uint64_t, subscriber> subscribers_;
  /// Set when what Postgres may release could have moved.
  bool confirm_dirty_ = false;
  /// Idle cursor moves not yet sent to the database (one chunk at a time).
  std::deque<idle_advance> advances_;
  bool advance_in_flight_ = false;
};

} // namespace ebridge
