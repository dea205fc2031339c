#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/typed_actor.hpp>

#include "actors/type_ids.hpp"
#include "core/member.hpp"
#include "core/readiness.hpp"
#include "core/tags.hpp"
#include "storage/replication.hpp"
#include "storage/snapshot.hpp"
#include "storage/stream_store.hpp"

namespace ebridge {

/// The REGISTRY actor: every SQL operation on the bridge registry
/// (`entity_bridges`, `entity_manifest_sources`), scoped by tenant. It spreads
/// requests over a small pool of workers, each a blocking libpqxx connection
/// on a detached actor, and replaces a worker that dies.
using registry_actor = caf::typed_actor<
  // Inserts the bridge (tenant, ref, tags JSON, stream url) if absent.
  caf::replies_to<upsert_atom, std::string, std::string, std::string,
                  std::string>::with<bridge_row>,
  // Marks observer activity; false if the bridge does not exist.
  caf::replies_to<touch_atom, std::string, std::string>::with<bool>,
  // One bridge by (tenant, ref).
  caf::replies_to<caf::get_atom, std::string, std::string>::with<bridge_row>,
  // Every bridge of a tenant.
  caf::replies_to<list_atom, std::string>::with<std::vector<bridge_row>>,
  // Bridges of a tenant idle since before the given epoch ms.
  caf::replies_to<stale_atom, std::string,
                  int64_t>::with<std::vector<bridge_row>>,
  // Deletes the row (not its stream); false if absent.
  caf::replies_to<caf::delete_atom, std::string, std::string>::with<bool>,
  // Deletes the row if still idle since before the epoch ms; false if not.
  caf::replies_to<caf::delete_atom, std::string, std::string,
                  int64_t>::with<bool>,
  // Every bridge of every tenant, each with a new producer epoch (a node's
  // start-up).
  caf::replies_to<resume_atom>::with<std::vector<bridge_row>>,
  // Persists the cursor (tenant, ref, handle, offset).
  caf::replies_to<cursor_atom, std::string, std::string, std::string,
                  std::string>::with<bool>,
  // Persists several cursors in one transaction: the writes come back in
  // order with `written` or `refused` set.
  caf::replies_to<cursor_atom,
                  std::vector<cursor_write>>::with<std::vector<cursor_write>>,
  // Clears the cursor.
  caf::replies_to<clear_atom, std::string, std::string>::with<bool>,
  // Source refs named by entity manifests of a tenant (never collected).
  caf::replies_to<refs_atom, std::string>::with<std::vector<std::string>>,
  // Increments and returns the bridge's producer epoch.
  caf::replies_to<epoch_atom, std::string, std::string>::with<int64_t>,
  // Checks that the database answers.
  caf::replies_to<caf::ping_atom>::with<caf::ok_atom>>;

/// A position in a change source. `handle` names the source's identity (a
/// new handle means positions of the old one are meaningless); `offset` is
/// fixed-width, so byte order is position order. Empty handle: no position.
struct source_cursor {
  std::string handle;
  std::string offset;

  bool empty() const noexcept {
    return handle.empty();
  }

  friend bool operator==(const source_cursor& x, const source_cursor& y) {
    return x.handle == y.handle && x.offset == y.offset;
  }
};

/// One transaction's changes that concern one bridge, from subscription
/// `subscription` of that bridge.
struct change_batch {
  uint64_t subscription = 0;
  source_cursor at;
  std::vector<entity_change> changes;
};

/// The end of a snapshot (or a caught-up live feed) at `at`.
struct up_to_date_msg {
  uint64_t subscription = 0;
  source_cursor at;
};

/// What a sink knows about a stream when a bridge starts.
struct sink_stream_state {
  /// The last Stream-Seq the stream accepted (empty if none).
  std::string stream_seq;
  /// The stream's messages, in order (the bridge folds them).
  std::vector<std::string> messages;
};

/// One append of a bridge: its producer stamp, its Stream-Seq (the source
/// position it brings the stream to) and its events.
struct sink_append {
  std::string stream;
  producer_stamp producer;
  std::string stream_seq;
  std::vector<std::string> events;
};

/// What a bridge reports about itself.
struct bridge_status {
  std::string phase;
  size_t members = 0;
  int64_t epoch = 0;
  source_cursor cursor;
  size_t in_flight = 0;
  /// The last read of its stream it heard of (epoch ms; 0: none since it
  /// started).
  int64_t last_activity_ms = 0;
};

/// A snapshot worker's answer: the view's snapshot for the source's
/// subscriber `subscriber`, or why there is none.
struct snapshot_result {
  uint64_t subscriber = 0;
  std::string error;
  view_snapshot snapshot;
};

/// Idle bridges whose cursors move to one position (a source's request to
/// its database worker); answered with the keys of the rows that moved.
struct idle_advance {
  std::string handle;
  uint64_t lsn = 0;
  std::vector<bridge_key> keys;
  /// The source's subscriber ids, in the order of `keys`.
  std::vector<uint64_t> subscribers;
};

/// A completion from the HTTP layer: called once, from an actor, and posts
/// the answer back to the HTTP session's executor. Never crosses the network.
struct readiness_callback {
  std::function<void(readiness)> fn;
};

/// The completion of a register from the HTTP layer.
struct registration_callback {
  std::function<void(caf::expected<registration>)> fn;
};

} // namespace ebridge

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ebridge::readiness_callback)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ebridge::registration_callback)
// Local for now: these get wire formats when bridges spread over a cluster.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ebridge::source_cursor)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ebridge::change_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ebridge::up_to_date_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ebridge::sink_stream_state)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ebridge::sink_append)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ebridge::registration)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ebridge::bridge_status)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ebridge::write_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ebridge::replicated_txn)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ebridge::feed_event)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ebridge::snapshot_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ebridge::idle_advance)

namespace ebridge {

/// A BRIDGE actor: keeps one view (tenant, tags) and its stream. It folds
/// its stream into members at start, follows the source from its cursor (or
/// resyncs from a snapshot), appends each batch's events with its producer
/// stamp, and persists its cursor only after the sink made them durable.
using bridge_actor = caf::typed_actor<
  // Changes of one transaction, from the source.
  caf::reacts_to<change_batch>,
  // The snapshot ended (or the feed caught up) at a position.
  caf::reacts_to<up_to_date_atom, up_to_date_msg>,
  // The source's handle changed: positions are void, resync.
  caf::reacts_to<refetch_atom, uint64_t>,
  // The source failed this subscription: resync after a backoff.
  caf::reacts_to<source_error_atom, uint64_t, std::string>,
  // Internal: a scheduled retry of a resync.
  caf::reacts_to<retry_atom, uint64_t>,
  // Forget the cursor and rebuild the view from a snapshot (an operator's
  // or the monitor's request): what left meanwhile is deleted.
  caf::reacts_to<resync_atom>,
  // A client read the view's stream: the bridge keeps its last activity
  // (GC reads it through status) and writes it to the registry at most
  // once per touch interval.
  caf::reacts_to<touch_atom>,
  // Ends the bridge gracefully: it stops following the source, and answers
  // and ends once its appends in flight are durable and its cursor is
  // persisted (GC and handoffs).
  caf::replies_to<stop_atom>::with<caf::ok_atom>,
  // Internal: time to write the trailing cursor.
  caf::reacts_to<cursor_atom>,
  // Internal: the touch interval ended.
  caf::reacts_to<touch_due_atom>,
  // Answers once the first bootstrap is durable (at once when resumed).
  caf::replies_to<ready_atom>::with<caf::ok_atom>,
  caf::replies_to<status_atom>::with<bridge_status>>;

/// The SOURCE actor: the change feed. A bridge subscribes with its filter
/// and cursor (empty: snapshot first); the source then sends it batches,
/// up-to-date, refetch or errors tagged with the subscription id, and
/// confirms upstream only what every bridge acknowledged.
using source_actor = caf::typed_actor<
  // (bridge, subscription id, tenant, tags JSON, cursor)
  caf::reacts_to<caf::subscribe_atom, bridge_actor, uint64_t, std::string,
                 std::string, source_cursor>,
  caf::reacts_to<caf::unsubscribe_atom, bridge_actor>,
  // The bridge made everything up to this position durable.
  caf::reacts_to<ack_atom, bridge_actor, uint64_t, source_cursor>,
  // From the manager at start: how many bridges it resumes with a cursor
  // (a held feed starts once they all subscribed).
  caf::reacts_to<resuming_atom, uint64_t>,
  // Internal, from the replication reader's thread: a committed
  // transaction, and the feed's connects and disconnects.
  caf::reacts_to<replicated_txn>, caf::reacts_to<feed_event>,
  // Internal: the periodic idle and lag check.
  caf::reacts_to<caf::tick_atom>,
  // Why the feed is stalled at a change it cannot apply (empty: it is not).
  caf::replies_to<status_atom>::with<std::string>>;

/// The SINK actor: appends to and reads bridge streams (the embedded store
/// or, later, an external Durable Streams server).
using sink_actor = caf::typed_actor<
  // Creates the stream if missing (JSON) and returns its state, once
  // everything written to it before is durable.
  caf::replies_to<ensure_atom, std::string>::with<sink_stream_state>,
  // Appends; answers the stream's next offset once durable.
  caf::replies_to<append_atom, sink_append>::with<uint64_t>,
  // Internal: the store finished operation `id` (from its writer thread).
  caf::reacts_to<ack_atom, uint64_t, write_result>>;

/// The MANAGER actor: one per node. Registers views, runs one bridge per
/// (tenant, ref), counts readers, collects idle bridges, restarts bridges
/// that die.
using manager_actor = caf::typed_actor<
  // (tenant, tags JSON) → {sourceRef, streamUrl} once the bridge is ready.
  caf::replies_to<register_atom, std::string, std::string>::with<registration>,
  caf::reacts_to<touch_atom, std::string, std::string>,
  caf::reacts_to<reader_open_atom, std::string, std::string>,
  caf::reacts_to<reader_close_atom, std::string, std::string>,
  // Internal: the GC timer.
  caf::reacts_to<sweep_atom>,
  // Internal: restart a bridge after its backoff.
  caf::reacts_to<retry_atom, std::string, std::string>,
  caf::replies_to<status_atom>::with<std::vector<std::string>>>;

/// The actors a node runs under its supervisor, started together and
/// restarted together.
struct node_actors {
  registry_actor registry;
  sink_actor sink;
  source_actor source;
  manager_actor manager;
};

/// The GATEWAY actor: the entry from the HTTP layer into the actor world.
/// HTTP sessions `anon_send` it requests carrying a completion; it asks the
/// actors concerned and calls the completion with the outcome.
using gateway_actor = caf::typed_actor<
  caf::reacts_to<ready_atom, readiness_callback>,
  // (tenant, tags JSON): registers a view through the manager.
  caf::reacts_to<register_atom, std::string, std::string,
                 registration_callback>,
  // Reads of a view's stream, passed on to the manager: (tenant, ref).
  caf::reacts_to<touch_atom, std::string, std::string>,
  caf::reacts_to<reader_open_atom, std::string, std::string>,
  caf::reacts_to<reader_close_atom, std::string, std::string>,
  // From the supervisor: the node's actors now, or none and why (while
  // they restart).
  caf::reacts_to<rebind_atom, node_actors, std::string>>;

/// The SUPERVISOR actor: starts the node's actors, and when one of them
/// ends, stops the others, waits until all ended and starts them again
/// after a backoff. The gateway hears of each change.
using supervisor_actor = caf::typed_actor<
  // Internal: the backoff after a death passed.
  caf::reacts_to<retry_atom>,
  // Why the node's actors are down, or empty while they run.
  caf::replies_to<status_atom>::with<std::string>>;

} // namespace ebridge

// Local only: a node's own actors, never sent to another node.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ebridge::node_actors)
