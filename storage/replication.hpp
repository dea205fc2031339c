#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include "config/defaults.hpp"
#include "core/identifiers.hpp"
#include "storage/pgoutput.hpp"

namespace ebridge {

/// One change of an `entities` row in a committed transaction.
struct entity_row_change {
  /// insert, update or remove.
  change_op op = change_op::insert;
  /// The row before (update, delete; REPLICA IDENTITY FULL).
  std::optional<entity_tuple> old_row;
  /// The row after (insert, update).
  std::optional<entity_tuple> new_row;
};

/// One committed transaction that touched `entities`.
struct replicated_txn {
  uint32_t xid = 0;
  uint64_t commit_lsn = 0;
  /// The position after the commit: confirming it releases the txn's WAL.
  uint64_t end_lsn = 0;
  std::vector<entity_row_change> changes;
  /// `entities` was truncated in this transaction.
  bool truncated = false;
  /// Why a change of `entities` in it cannot be applied (no old row for an
  /// update or delete, a relation ebridge cannot read); empty when all can.
  /// Such a transaction carries no changes: whoever needs it must not be
  /// confirmed past it, only resynced once the table is fixed.
  std::string unusable;
};

/// Who the change feed is: a new identity means earlier positions are void
/// (another cluster, or a slot that was dropped and created again).
struct feed_identity {
  std::string system_id;
  std::string slot;
  int64_t generation = 0;

  /// `<system id>/<slot>/<generation>`: the handle of every cursor.
  std::string handle() const;
};

struct replication_config {
  std::string postgres_url;
  /// Names of the slot and the publication: [a-z0-9_], 1–63 characters.
  std::string slot = defaults::slot;
  std::string publication = defaults::publication;
  /// How often the confirmed position is reported to Postgres.
  std::chrono::milliseconds status_interval{1000};
  std::chrono::milliseconds backoff_initial{200};
  std::chrono::milliseconds backoff_max{10000};
  /// A directory of this node's own (its data-dir). Before each confirm the
  /// position is written there (`slot-<slot>.confirmed`); a slot found
  /// confirmed past it at the next start was dropped and created again (or
  /// moved) outside ebridge, and is followed as a new feed. Empty: nothing
  /// is written and such a slot goes unnoticed.
  std::string state_dir;
};

/// What the reader reports besides transactions.
struct feed_event {
  /// progress: the feed passed `start_lsn` with nothing more for us before
  /// it (a keepalive between transactions).
  enum class kind { connected, disconnected, progress } what;
  /// For connected: who the feed is and where it starts.
  feed_identity identity;
  /// For connected: where it starts; for progress: how far it got.
  uint64_t start_lsn = 0;
  /// For disconnected: why.
  std::string reason;
  /// For progress: the server asked for a reply (it is shutting down, or
  /// heard nothing for a long time): what it waits for is wanted now.
  bool urgent = false;
};

/// The position a node confirmed on a slot, in a file of its own, written
/// and synced before each confirm (one 64-byte record at offset 0: a sector
/// is written whole).
class confirm_record {
public:
  confirm_record(const std::string& dir, const std::string& slot);
  ~confirm_record();

  confirm_record(const confirm_record&) = delete;
  confirm_record& operator=(const confirm_record&) = delete;

  /// The slot generation and position last written; nullopt when there is
  /// no record (or it cannot be read).
  std::optional<std::pair<int64_t, uint64_t>> read() const;

  /// Opens (creating) the record file and syncs its directory: done once
  /// at start, so that writing needs no new descriptor.
  caf::error open();

  /// Writes and syncs the record; false (with the reason logged) when it
  /// could not.
  bool write(int64_t generation, uint64_t lsn);

  const std::string& path() const noexcept {
    return path_;
  }

private:
  std::string path_;
  int fd_ = -1;
};

/// Follows `entities` through Postgres logical replication (raw libpq,
/// `replication=database`, pgoutput v1), on a thread of its own. It creates
/// the publication and the slot if they are missing, streams from the slot's
/// confirmed position, reports every committed transaction that touched
/// `entities`, and confirms to Postgres only what `confirm` allows. A lost
/// connection, a restarted server or a dropped slot: it reconnects with
/// backoff; a slot created anew has a new generation, hence a new handle.
class replication_reader {
public:
  using txn_handler = std::function<void(replicated_txn)>;
  using event_handler = std::function<void(feed_event)>;

  replication_reader(replication_config cfg, txn_handler on_txn,
                     event_handler on_event);
  ~replication_reader();

  replication_reader(const replication_reader&) = delete;
  replication_reader& operator=(const replication_reader&) = delete;

  /// Checks the configuration (names) and starts the thread.
  caf::error start();

  /// Stops the thread (and the connection) and waits for it.
  void stop();

  /// Everything up to `lsn` is durable downstream: Postgres may release it.
  void confirm(uint64_t lsn);

private:
  void run();

  replication_config cfg_;
  txn_handler on_txn_;
  event_handler on_event_;
  std::atomic<uint64_t> confirmed_{0};
  std::atomic<bool> stopping_{false};
  std::unique_ptr<confirm_record> record_;
  std::thread thread_;
};


} // namespace ebridge
