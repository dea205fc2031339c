#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "storage/stream_log.hpp"

namespace ebridge {

/// How a store operation ended. The HTTP layer maps these to status codes;
/// bridges use them directly.
enum class store_status : uint8_t {
  /// Appended, created, closed or deleted.
  ok,
  /// Create of an existing stream with the same configuration.
  exists,
  /// A producer retry of a request already stored: nothing changed.
  duplicate,
  not_found,
  /// Create of an existing stream with another configuration.
  config_conflict,
  /// The append's content type differs from the stream's.
  content_type_mismatch,
  /// The stream is closed: no more data.
  closed,
  /// Stream-Seq did not increase.
  stream_seq_conflict,
  /// Producer epoch lower than the current one.
  stale_epoch,
  /// Producer sequence skipped ahead (or unknown producer not at 0).
  seq_gap,
  /// A new producer epoch must start at sequence 0.
  bad_epoch_seq,
  /// The stream's log cannot be used (I/O error or corruption).
  unavailable,
};

const char* to_string(store_status status);

/// The lowercased media type of a Content-Type, without parameters.
std::string media_type(std::string_view content_type);

/// True for JSON mode (`application/json`, any parameters).
bool is_json(std::string_view content_type);

/// A producer's last accepted stamp on a stream.
struct producer_position {
  uint64_t epoch = 0;
  uint64_t seq = 0;
};

/// What an append judges against: the stream as submitted so far (ahead of
/// the disk), the parts the Durable Streams rules look at.
struct admission_state {
  /// The last stamp of the append's producer; empty for a producer the
  /// stream has not seen.
  std::optional<producer_position> producer;
  /// The last Stream-Seq accepted; empty if none.
  std::string_view stream_seq;
  bool closed = false;
  std::string_view content_type;
};

/// What an append claims, as far as the rules go.
struct append_claims {
  const std::optional<producer_stamp>& producer;
  std::string_view stream_seq;
  /// The request's content type; empty skips the check.
  std::string_view content_type;
  bool has_messages = false;
  bool closes = false;
};

/// The verdict on an append.
struct admission {
  enum class action : uint8_t {
    /// Write it; `status` is ok.
    write,
    /// Nothing to write; answer `status` once everything before it is
    /// durable: a producer's retry (duplicate) or closing a closed stream.
    acknowledge,
    /// Refused with `status`; nothing changes.
    refuse,
  };
  action what = action::write;
  store_status status = store_status::ok;
  std::string message;
  /// The producer's last stamp on the stream, for the answer's headers
  /// (duplicates and refusals of a known producer).
  uint64_t producer_epoch = 0;
  uint64_t producer_seq = 0;
  /// For seq_gap: what the stream expected and what it got.
  uint64_t expected_seq = 0;
  uint64_t received_seq = 0;
};

/// The Durable Streams rules for an append, in the order they apply:
/// producer epoch and sequence (stale epoch, retry, new epoch not at 0,
/// gap, unknown producer not at 0), then the closed stream (closing again
/// is idempotent), the content type, and Stream-Seq (must grow, compared as
/// bytes). One function for the store and the tests' fake sink.
admission admit_append(const admission_state& stream,
                       const append_claims& append);

} // namespace ebridge
