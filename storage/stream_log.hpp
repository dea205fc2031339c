#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "storage/message_batch.hpp"

namespace ebridge {

/// CRC-32C (Castagnoli) of `data`, continuing from `crc`.
uint32_t crc32c(std::string_view data, uint32_t crc = 0);

/// The identity of an idempotent producer and the request it sent.
struct producer_stamp {
  std::string id;
  uint64_t epoch = 0;
  uint64_t seq = 0;
};

/// What a stream is, as written in the first record of its log.
struct stream_header {
  std::string name;
  std::string content_type;
  /// Sliding time to live in seconds; absent when the stream has none.
  std::optional<uint64_t> ttl_seconds;
  /// Absolute expiry as given (RFC 3339) and in epoch ms; empty when none.
  std::string expires_at;
  int64_t expires_at_ms = 0;
  int64_t created_ms = 0;
};

/// One append as logged: its messages, and the state that must change
/// atomically with them (producer, Stream-Seq, closing).
struct append_record {
  /// The messages: one per JSON value in JSON mode, the body otherwise.
  message_batch messages;
  std::optional<producer_stamp> producer;
  /// The Stream-Seq header of the request; empty when absent.
  std::string stream_seq;
  /// True when this append closes the stream.
  bool closes = false;
  /// Every byte of the log before this position was durable (synced and
  /// acknowledged) when this record was written. Recovery reads it as proof:
  /// a damaged record below it was on disk, so its damage is corruption,
  /// never a torn write.
  uint64_t durable_before = 0;
};

/// Record framing on disk: `u32 length | u32 crc32c(payload) | u8 kind |
/// u32 crc32c(length, payload crc, kind) | payload`. The header checksum tells
/// a torn tail (the file ends inside a record) from corruption in the middle.
/// An append's payload starts with its `durable_before` (u64); logs written
/// before that field existed hold `unstamped_append` records, read as
/// stamped 0.
enum class record_kind : uint8_t {
  header = 1,
  unstamped_append = 2,
  append = 3,
};

constexpr bool is_append(record_kind kind) noexcept {
  return kind == record_kind::append || kind == record_kind::unstamped_append;
}

inline constexpr size_t record_header_size = 13;

/// The 8 bytes every stream log starts with.
inline constexpr std::string_view log_magic{"EBSTRM01", 8};

std::string encode_record(const stream_header& header);

std::string encode_record(const append_record& append);

/// One record read back from a log; `payload` views the scanned bytes.
struct log_record {
  record_kind kind;
  /// Where the record starts in the file.
  uint64_t position;
  /// Where its payload starts in the file.
  uint64_t payload_position;
  std::string_view payload;
  /// An append's `durable_before` (0 for other records).
  uint64_t durable_before = 0;
};

/// An append record decoded in place: its messages view the payload.
struct append_view {
  packed_messages messages;
  std::optional<producer_stamp> producer;
  std::string stream_seq;
  bool closes = false;
  uint64_t durable_before = 0;
};

caf::expected<stream_header> decode_header(std::string_view payload);

/// Decodes an append's payload; `kind` tells whether it starts with a stamp.
caf::expected<append_view>
decode_append(std::string_view payload, record_kind kind = record_kind::append);

/// The result of scanning a log file's bytes on start-up.
struct log_scan {
  std::vector<log_record> records;
  /// The length of the valid prefix; bytes past it are padding (below) or
  /// a torn tail to cut (see `torn`).
  uint64_t valid_size = 0;
  /// Zero bytes after the valid prefix, up to the end of the file: space a
  /// writer filled ahead of its appends (so that an append leaves the file
  /// size alone and its sync writes data only), not a torn tail.
  uint64_t padding = 0;
  /// Where the torn tail ends: the last byte past `valid_size` that is not
  /// zero, plus one (0 when there is no torn tail). Recovery keeps these
  /// bytes aside before it cuts them.
  uint64_t torn_end = 0;
  /// Set when a record is damaged where no crash explains it: the log is
  /// corrupt, not torn, and must not be served short nor cut.
  std::string corruption;
};

/// Scans a whole log (its bytes). Zeros alone after the last record are
/// padding. A damaged record is a torn write, cut with everything after it,
/// only where its bytes were never written and no record after it proves it
/// durable (`durable_before`): the file ends inside it, or nothing but zeros
/// follows some byte of it, or a sector of it never arrived (zeros where the
/// write put data). Any other damage is corruption: a whole record with a
/// bad checksum or flipped header bits, damage below a later record's
/// `durable_before`. The last writes in flight at a crash (no later record
/// vouches for them) are judged by their bytes alone: a record whose own
/// data is zeros may be taken as torn, which is why recovery keeps the
/// bytes it cuts aside.
log_scan scan_log(std::string_view bytes);

} // namespace ebridge
