#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include <caf/expected.hpp>

#include "storage/stream_log.hpp"
#include "storage/stream_rules.hpp"

namespace ebridge {

/// Where a store operation left the stream.
struct write_result {
  store_status status = store_status::ok;
  /// The stream's tail after the operation (its next offset).
  uint64_t next_offset = 0;
  bool closed = false;
  /// Producer state after the operation, for the producer headers.
  uint64_t producer_epoch = 0;
  uint64_t producer_seq = 0;
  /// For seq_gap: what the store expected and what it got.
  uint64_t expected_seq = 0;
  uint64_t received_seq = 0;
  /// A human-readable reason for errors.
  std::string message;
};

/// Called once when an operation is durable (or has failed), from one of
/// the store's writer threads or the calling thread; callbacks of different
/// streams may run at the same time. Must not block.
using write_callback = std::function<void(write_result)>;

/// A stream's configuration and position.
struct stream_info {
  std::string content_type;
  std::optional<uint64_t> ttl_seconds;
  std::string expires_at;
  int64_t expires_at_ms = 0;
  int64_t created_ms = 0;
  bool closed = false;
  /// The durable tail.
  uint64_t next_offset = 0;
  /// The last Stream-Seq accepted (empty if none): writers that record their
  /// own position there learn on restart how far they got.
  std::string stream_seq;
};

struct create_request {
  std::string content_type;
  std::optional<uint64_t> ttl_seconds;
  std::string expires_at;
  int64_t expires_at_ms = 0;
  bool closed = false;
  /// Initial messages (possibly none).
  message_batch messages;
};

struct append_request {
  /// The request's content type; empty skips the check (in-process appends).
  std::string content_type;
  message_batch messages;
  std::optional<producer_stamp> producer;
  std::string stream_seq;
  bool closes = false;
};

/// Data read from a stream.
struct read_result {
  store_status status = store_status::ok;
  /// Messages (JSON mode) or byte chunks, in order.
  std::vector<std::string> chunks;
  /// The offset of the first byte returned.
  uint64_t start_offset = 0;
  /// The offset after the last byte returned.
  uint64_t next_offset = 0;
  /// True when `next_offset` is the durable tail.
  bool up_to_date = false;
  /// True when the stream is closed and this read reached its end.
  bool closed = false;
  std::string content_type;
};

/// The system calls the store makes on its logs, replaceable so that tests
/// can inject disk faults (EIO, ENOSPC) or hold a read. Each returns what the call returns and
/// sets errno as it does; the default calls the kernel.
class store_io {
public:
  virtual ~store_io();
  virtual ssize_t pwrite(int fd, const void* data, size_t size, off_t pos);
  /// Reads of durable data (on the readers' threads).
  virtual ssize_t pread(int fd, void* data, size_t size, off_t pos);
  virtual int fdatasync(int fd);
  virtual int syncfs(int fd);
  /// fsync of the streams directory (`fd` is the directory).
  virtual int fsync_directory(int fd);
  virtual int ftruncate(int fd, off_t size);
};

/// Durable append-only streams on a local directory. Each stream is one log
/// file; appends are written by one of two writer threads (each stream's
/// operations always by the same one, in order) and acknowledged only after
/// an fdatasync (or one syncfs for many files) that covers them: appends that
/// arrive together share one sync. Producer state, Stream-Seq and the closed
/// flag live in the same records as the data, so they survive exactly as the
/// data does. Thread-safe.
///
/// A write or sync that fails cuts the log back to its last durable length
/// (and syncs that) before anything else is answered: what the failed batch
/// and the operations queued behind it submitted is answered `unavailable`
/// and forgotten, so that a retry is neither served early nor taken for a
/// duplicate. When the cut itself fails the stream is broken: it answers
/// `unavailable`, and each request tries the cut again, until the disk
/// works. A create or delete whose directory sync fails fails.
class stream_store {
public:
  struct config {
    std::string directory;
    /// Most bytes one read returns (whole messages; at least one).
    size_t max_read_bytes = 1 << 20;
    /// The writers' system calls; null for the kernel's.
    std::shared_ptr<store_io> io;
    /// Most stream logs kept open at once (0: no limit). Past it, the logs
    /// of the streams least recently used are closed (only those with
    /// nothing unsynced, queued or being read) and opened again on use, so
    /// the number of streams is not bounded by the descriptor limit.
    size_t max_open_files = 0;
  };

  /// Opens (creating if needed) the store and recovers every stream: torn
  /// tails are cut, corrupt logs are reported and refused.
  static caf::expected<std::unique_ptr<stream_store>> open(config cfg);

  ~stream_store();

  stream_store(const stream_store&) = delete;
  stream_store& operator=(const stream_store&) = delete;

  void create(const std::string& name, create_request req, write_callback done);

  void append(const std::string& name, append_request req, write_callback done);

  void remove(const std::string& name, write_callback done);

  /// Calls `done` once everything submitted to the stream so far is
  /// durable (a barrier); `not_found` if there is no such stream.
  void flush(const std::string& name, write_callback done);

  /// The stream's configuration and durable tail; nullopt if it does not
  /// exist (or expired). Does not extend a TTL.
  std::optional<stream_info> head(const std::string& name);

  /// Reads from `offset` (a byte position; 0 is the start), at most
  /// `max_read_bytes`. Extends a sliding TTL.
  read_result read(const std::string& name, uint64_t offset);

  /// Calls `fn` once the durable tail passes `offset`, or the stream closes
  /// or goes away (whichever first); at once if that is already so. Returns
  /// a token for `cancel_wait`, or 0 when `fn` already ran.
  uint64_t wait(const std::string& name, uint64_t offset,
                std::function<void()> fn);

  void cancel_wait(const std::string& name, uint64_t token);

  /// Why a stream is refused (its log is corrupt), or nullopt. A refused
  /// stream answers nothing until it is deleted, which discards the log.
  std::optional<std::string> corruption(const std::string& name);

  /// Streams refused at start-up because their logs are corrupt, with why.
  std::vector<std::pair<std::string, std::string>> refused() const;

  /// Number of streams.
  size_t size() const;

  /// Entries in a stream's read index (0 if there is no such stream): what
  /// it costs in memory for as long as it lives.
  size_t index_size(const std::string& name) const;

  /// How many stream logs are open now.
  size_t open_files() const;

  struct impl;

private:
  explicit stream_store(std::unique_ptr<impl> ptr);

  std::unique_ptr<impl> impl_;
};

} // namespace ebridge
