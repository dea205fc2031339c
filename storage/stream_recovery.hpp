#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "storage/stream_log.hpp"
#include "storage/stream_rules.hpp"

namespace ebridge {

/// An entry of a stream's read index: where a message lies, given as the
/// stream offset of that message and the file position of its u32 length
/// prefix; the messages after it follow contiguously up to `end`, where its
/// append record's messages end. A record's first message has an entry, and
/// then every `index_stride` bytes of messages in it: the index costs an
/// entry per record, not per message.
struct log_chunk {
  uint64_t offset;
  uint64_t file_pos;
  uint64_t end;
};

/// Bytes of messages (and their length prefixes) between index entries
/// inside one record.
inline constexpr uint64_t index_stride = 16 << 10;

/// Adds the index entries of one append record: its `messages` view
/// `payload`, which starts at file position `payload_pos`. Advances `tail`
/// (the stream offset) past them.
void index_messages(std::vector<log_chunk>& index, uint64_t payload_pos,
                    std::string_view payload, const packed_messages& messages,
                    uint64_t& tail);

/// A stream as its log file holds it.
struct recovered_stream {
  stream_header header;
  /// The read index (see log_chunk).
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
