#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "storage/stream_log.hpp"
#include "storage/stream_rules.hpp"

namespace ebridge {

/// Where one message of a stream lies: its offset in the stream and its
/// bytes in the log file.
struct log_chunk {
  uint64_t offset;
  uint64_t file_pos;
  uint32_t len;
};

/// A stream as its log file holds it.
struct recovered_stream {
  stream_header header;
  std::vector<log_chunk> chunks;
  /// The stream's next offset.
  uint64_t tail = 0;
  std::map<std::string, producer_position> producers;
  std::string stream_seq;
  bool closed = false;
  /// Bytes of whole records from the start of the file, then the zeros
  /// written ahead after them: past both lies a torn tail to cut.
  uint64_t valid_size = 0;
  uint64_t padding = 0;
  /// With a torn tail: where its last byte that is not zero ends (the bytes
  /// `[valid_size, torn_end)` are kept aside before the tail is cut).
  uint64_t torn_end = 0;
};

/// What the bytes of a log file are.
struct log_reading {
  enum class kind : uint8_t {
    /// A stream (maybe with a torn tail past `valid_size + padding`).
    stream,
    /// No whole header record: created but never acknowledged.
    headerless,
    /// Damaged records that no crash explains: the stream must be refused.
    corrupt,
  };
  kind what = kind::stream;
  recovered_stream stream;
  /// For corrupt: the stream's name when its header survived, and why.
  std::string name;
  std::string why;
};

/// Reads a stream log back at start-up: its header, its messages' places,
/// producer state, Stream-Seq and the closed flag, as the records that
/// made it to disk say (see `scan_log` for torn tails and padding). Pure: no
/// I/O, so a test can feed it any bytes.
log_reading read_stream_log(std::string_view bytes);

} // namespace ebridge
