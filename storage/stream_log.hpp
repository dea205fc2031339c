#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

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
  std::vector<std::string> messages;
  std::optional<producer_stamp> producer;
  /// The Stream-Seq header of the request; empty when absent.
  std::string stream_seq;
  /// True when this append closes the stream.
  bool closes = false;
};

/// Record framing on disk: `u32 length | u32 crc32c(payload) | u8 kind |
/// u32 crc32c(length, payload crc, kind) | payload`. The header checksum tells
/// a torn tail (the file ends inside a record) from corruption in the middle.
enum class record_kind : uint8_t { header = 1, append = 2 };

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
};

/// An append record decoded in place: its messages view the payload.
struct append_view {
  std::vector<std::string_view> messages;
  std::optional<producer_stamp> producer;
  std::string stream_seq;
  bool closes = false;
};

caf::expected<stream_header> decode_header(std::string_view payload);

caf::expected<append_view> decode_append(std::string_view payload);

/// The result of scanning a log file's bytes on start-up.
struct log_scan {
  std::vector<log_record> records;
  /// The length of the valid prefix; bytes past it are padding (below) or
  /// a torn tail to cut.
  uint64_t valid_size = 0;
  /// Zero bytes after the valid prefix, up to the end of the file: space a
  /// writer filled ahead of its appends (so that an append leaves the file
  /// size alone and its sync writes data only), not a torn tail.
  uint64_t padding = 0;
  /// Set when a damaged record is followed by intact ones: the log is
  /// corrupt, not torn, and must not be served short.
  std::string corruption;
};

/// Scans a whole log (its bytes). A damaged last record (the file ends
/// inside it, or nothing intact follows it) is a torn tail; zeros alone
/// after the last record are padding.
log_scan scan_log(std::string_view bytes);

} // namespace ebridge
