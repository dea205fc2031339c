#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <caf/response_promise.hpp>

#include "actors/actors.hpp"
#include "core/member.hpp"

namespace ebridge {

/// What the manager read and took for a bridge it resumes at start-up.
struct bridge_resume {
  /// Its registry cursor; empty if it has none.
  source_cursor cursor;
  /// A producer epoch taken for it, used by no one else.
  int64_t epoch = 0;
};

/// What a bridge needs to know to run.
struct bridge_config {
  std::string tenant;
  /// Also names its stream: `stream_path(source_ref)`.
  std::string source_ref;
  /// Normalized tags as JSON.
  std::string tags;
  source_actor source;
  sink_actor sink;
  registry_actor registry;
  /// Resync backoff: first delay and cap (jitter is added).
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{30000};
  /// Longest wait for the sink or the registry.
  std::chrono::milliseconds request_timeout{30000};
  /// While live, how long the registry cursor may trail what the stream
  /// holds (its Stream-Seq records the offset, so a restart resumes from
  /// the stream anyway): one cursor write per interval, not per batch.
  /// Zero: written after every batch.
  std::chrono::milliseconds cursor_interval{0};
  /// At most one registry activity write per interval, however often the
  /// view is read (every read touches it).
  std::chrono::milliseconds touch_interval{60000};
  /// Set for a bridge's first start after the node's start-up: it starts
  /// from these instead of asking the registry (two round trips, one a
  /// committed write, per bridge). A restart asks: an epoch is used once.
  /// (A pointer: every bridge keeps its config, few need this.)
  std::shared_ptr<const bridge_resume> resume;
};

enum class bridge_phase { loading, bootstrapping, live, resyncing, stopped };

const char* to_string(bridge_phase phase);

/// The Stream-Seq of an append: the producer epoch, the source offset it
/// brings the stream to, and the producer seq (a snapshot's appends share
/// one offset). Epochs grow at every start and resync, so the seq grows
/// byte-wise even when a new source handle restarts its offsets.
std::string make_stream_seq(int64_t epoch, const std::string& offset,
                            uint64_t seq);

/// The source offset inside a Stream-Seq (empty if it has none).
std::string offset_of_stream_seq(const std::string& stream_seq);

/// A registry row's cursor; empty if it has none.
source_cursor cursor_of(const bridge_row& row);

struct bridge_state {
  bridge_config cfg;
  membership members;
  int64_t epoch = 0;
  uint64_t next_seq = 0;
  /// The id of the current subscription; messages of older ones are stale.
  uint64_t subscription = 0;
  /// The last cursor persisted in the registry.
  source_cursor cursor;
  /// Batches at or before this offset are already in the stream (replays
  /// after a crash between the durable append and the cursor write).
  std::string skip_until;
  /// During a resync: members not (yet) seen in the snapshot.
  std::set<std::string> stale;

  /// One batch in order: an append waiting for its durable ack (or none),
  /// and the cursor it brings the bridge to.
  struct step {
    uint64_t id = 0;
    uint64_t subscription = 0;
    bool durable = false;
    source_cursor at;
    /// The end of a bootstrap: the cursor may be persisted once durable.
    bool completes_bootstrap = false;
    /// Its events went to the stream (its Stream-Seq carries `at`).
    bool appended = false;
  };
  /// (A vector: an empty std::deque still holds ~600 bytes, per bridge.)
  std::vector<step> steps;
  uint64_t next_step = 1;
  /// The next cursor to persist after the one being persisted.
  /// (Pointers: an idle bridge holds neither, in 8 bytes, not 72.)
  std::unique_ptr<source_cursor> to_persist;
  /// A cursor to write at the next interval (live, appended batches).
  std::unique_ptr<source_cursor> trailing;
  std::vector<caf::response_promise> ready_waiters;
  /// Who waits for a graceful stop.
  std::vector<caf::response_promise> stop_waiters;
  /// The last read of the view it heard of (epoch ms).
  int64_t last_activity_ms = 0;
  bridge_phase phase = bridge_phase::loading;
  int failures = 0;
  // (The flags together: one word, not one each.)
  /// A cursor is being persisted.
  bool persisting = false;
  bool trailing_scheduled = false;
  bool bootstrapped = false;
  bool resync_scheduled = false;
  /// A resync was asked for while the bridge was loading.
  bool force_resync = false;
  /// A touch was written less than touch_interval ago; another came since.
  bool touch_armed = false;
  bool touch_dirty = false;
  /// A stop was asked for: the bridge ends once its steps are done.
  bool stopping = false;

  static inline const char* name = "bridge";
};

/// A bridge: ARCHITECTURE.md's algorithm, steps 1–6. Faults it cannot mend
/// in place (the sink or registry failing) end it with that error; the
/// manager restarts it, and the restart recovers from the stream and the
/// registry.
bridge_actor::behavior_type
bridge(bridge_actor::stateful_pointer<bridge_state> self, bridge_config cfg);

} // namespace ebridge
