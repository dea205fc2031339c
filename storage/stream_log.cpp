#include "storage/stream_log.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include "core/error.hpp"

namespace ebridge {

namespace {

constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int k = 0; k < 8; ++k)
      crc = (crc & 1) ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
    table[i] = crc;
  }
  return table;
}

constexpr auto crc_table = make_crc_table();

void put_u8(std::string& out, uint8_t x) {
  out += static_cast<char>(x);
}

void put_u32(std::string& out, uint32_t x) {
  for (int i = 0; i < 4; ++i)
    out += static_cast<char>((x >> (8 * i)) & 0xff);
}

void put_u64(std::string& out, uint64_t x) {
  for (int i = 0; i < 8; ++i)
    out += static_cast<char>((x >> (8 * i)) & 0xff);
}

void put_string(std::string& out, std::string_view x) {
  put_u32(out, static_cast<uint32_t>(x.size()));
  out += x;
}

/// Reads little-endian fields from a payload; any overrun sets `failed`.
class reader {
public:
  explicit reader(std::string_view bytes) : bytes_(bytes) {
    // nop
  }

  uint8_t u8() {
    if (!need(1))
      return 0;
    return static_cast<uint8_t>(bytes_[pos_++]);
  }

  uint32_t u32() {
    if (!need(4))
      return 0;
    uint32_t x = 0;
    for (int i = 0; i < 4; ++i)
      x |= static_cast<uint32_t>(static_cast<uint8_t>(bytes_[pos_ + i]))
           << (8 * i);
    pos_ += 4;
    return x;
  }

  uint64_t u64() {
    if (!need(8))
      return 0;
    uint64_t x = 0;
    for (int i = 0; i < 8; ++i)
      x |= static_cast<uint64_t>(static_cast<uint8_t>(bytes_[pos_ + i]))
           << (8 * i);
    pos_ += 8;
    return x;
  }

  std::string_view str() {
    auto n = u32();
    if (!need(n))
      return {};
    auto result = bytes_.substr(pos_, n);
    pos_ += n;
    return result;
  }

  bool failed() const noexcept {
    return failed_;
  }

  bool at_end() const noexcept {
    return pos_ == bytes_.size();
  }

  /// Everything not read yet, which counts as read afterwards.
  std::string_view rest() noexcept {
    auto result = bytes_.substr(std::min(pos_, bytes_.size()));
    pos_ = bytes_.size();
    return result;
  }

private:
  bool need(size_t n) {
    if (failed_ || bytes_.size() - pos_ < n) {
      failed_ = true;
      return false;
    }
    return true;
  }

  std::string_view bytes_;
  size_t pos_ = 0;
  bool failed_ = false;
};

/// A record under construction: its payload is appended after room for the
/// header, which `seal` fills in, so that the payload is never copied.
std::string open_record(size_t payload_size_hint = 0) {
  std::string out;
  out.reserve(record_header_size + payload_size_hint);
  out.resize(record_header_size);
  return out;
}

std::string seal(record_kind kind, std::string out) {
  auto payload = std::string_view{out}.substr(record_header_size);
  std::string header;
  put_u32(header, static_cast<uint32_t>(payload.size()));
  put_u32(header, crc32c(payload));
  put_u8(header, static_cast<uint8_t>(kind));
  put_u32(header, crc32c(header));
  out.replace(0, record_header_size, header);
  return out;
}

enum header_flags : uint8_t { has_ttl = 1 };
enum append_flags : uint8_t { closes_flag = 1, producer_flag = 2 };

/// The outcome of reading one record at `pos`.
enum class read_result {
  ok,
  /// The file ends inside the record (or inside its header).
  truncated,
  /// The header's checksum (or kind) is wrong: where the record ends is
  /// unknown.
  bad_header,
  /// The header is sound, the payload's checksum is wrong.
  bad_payload,
};

read_result read_record(std::string_view bytes, uint64_t pos, log_record& out) {
  if (bytes.size() - pos < record_header_size)
    return read_result::truncated;
  reader head{bytes.substr(pos, record_header_size)};
  auto length = head.u32();
  auto payload_crc = head.u32();
  auto kind = head.u8();
  auto header_crc = head.u32();
  if (crc32c(bytes.substr(pos, 9)) != header_crc)
    return read_result::bad_header;
  if (kind != static_cast<uint8_t>(record_kind::header)
      && kind != static_cast<uint8_t>(record_kind::unstamped_append)
      && kind != static_cast<uint8_t>(record_kind::append))
    return read_result::bad_header;
  auto payload_pos = pos + record_header_size;
  out = log_record{static_cast<record_kind>(kind), pos, payload_pos, {}};
  if (bytes.size() - payload_pos < length)
    return read_result::truncated;
  auto payload = bytes.substr(payload_pos, length);
  if (crc32c(payload) != payload_crc)
    return read_result::bad_payload;
  out.payload = payload;
  if (out.kind == record_kind::append && payload.size() >= 8) {
    reader stamp{payload};
    out.durable_before = stamp.u64();
  }
  return read_result::ok;
}

bool all_zero(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

constexpr uint64_t sector = 512;

/// Whether the bytes `[pos, end)` of a damaged record show a sector that
/// never arrived. A crash cuts a write by sectors: one that did not reach
/// the disk reads as what was there before, the zeros written ahead (or,
/// past the old end of the file, zeros too). So: the bytes from `pos` to
/// the end of its sector are zero (what precedes `pos` in that sector is
/// the previous record, written before), or a later sector overlapping
/// `[pos, end)` is zero throughout (up to the end of the file). Flipped or
/// garbled bytes in written data show neither.
bool shows_unwritten_sector(std::string_view bytes, uint64_t pos,
                            uint64_t end) {
  auto size = static_cast<uint64_t>(bytes.size());
  auto boundary = std::min((pos / sector + 1) * sector, size);
  if (all_zero(bytes.substr(pos, boundary - pos)))
    return true;
  for (auto s = boundary; s < end && s < size; s += sector)
    if (all_zero(bytes.substr(s, std::min(sector, size - s))))
      return true;
  return false;
}

/// Judges the damaged (or cut) record at `pos`: a torn write, cut with all
/// that follows, or corruption, cut nowhere.
void judge_damage(std::string_view bytes, uint64_t pos, read_result outcome,
                  log_scan& result) {
  auto size = static_cast<uint64_t>(bytes.size());
  // Past the last byte that is not zero, nothing was written.
  auto data_end = size;
  while (data_end > pos && bytes[data_end - 1] == 0)
    --data_end;
  auto torn = [&] {
    result.valid_size = pos;
    result.torn_end = data_end;
  };
  if (outcome == read_result::truncated) {
    // The file ends inside it: the rest was never written.
    torn();
    return;
  }
  // Where the record ends, when its header can be trusted; a search for
  // intact records starts there (bytes inside a payload may look like a
  // record: a stream may store logs).
  uint64_t extent_end = pos + record_header_size;
  if (outcome == read_result::bad_payload) {
    reader head{bytes.substr(pos, 4)};
    extent_end += head.u32();
  }
  // The records after it that are intact, and the most durable data any of
  // them vouches for. A stamp past its own record's position is no proof.
  uint64_t proven = 0;
  uint64_t first_later = 0;
  for (auto q = outcome == read_result::bad_payload ? extent_end : pos + 1;
       q + record_header_size <= size;) {
    log_record later;
    if (read_record(bytes, q, later) == read_result::ok) {
      if (first_later == 0)
        first_later = q;
      if (later.durable_before <= q)
        proven = std::max(proven, later.durable_before);
      q = later.payload_position + later.payload.size();
      continue;
    }
    if (all_zero(bytes.substr(q)))
      break;
    ++q;
  }
  if (pos < proven) {
    result.corruption = "damaged record at byte " + std::to_string(pos)
                        + ", inside data a later record shows was durable"
                          " (up to byte "
                        + std::to_string(proven) + ")";
    return;
  }
  // The bytes that must show where the write stopped: a sound header
  // bounds the record; a damaged header is judged by the bytes it lies in.
  // The write stopped inside them when all after some byte of them is zero
  // to the end of the file, or when a sector of theirs never arrived.
  auto end = outcome == read_result::bad_payload ? extent_end
                                                 : pos + record_header_size;
  if (data_end < end || shows_unwritten_sector(bytes, pos, end)) {
    torn();
    return;
  }
  result.corruption = "damaged record at byte " + std::to_string(pos)
                      + (outcome == read_result::bad_payload
                           ? " (a whole record with a bad checksum)"
                           : " (a record header with a bad checksum)")
                      + (first_later != 0 ? ", intact data follows at byte "
                                              + std::to_string(first_later)
                                          : std::string{});
}

} // namespace

uint32_t crc32c(std::string_view data, uint32_t crc) {
  crc = ~crc;
  for (unsigned char c : data)
    crc = crc_table[(crc ^ c) & 0xff] ^ (crc >> 8);
  return ~crc;
}

std::string encode_record(const stream_header& header) {
  auto payload = open_record();
  put_string(payload, header.name);
  put_string(payload, header.content_type);
  put_u8(payload, header.ttl_seconds ? has_ttl : 0);
  put_u64(payload, header.ttl_seconds.value_or(0));
  put_string(payload, header.expires_at);
  put_u64(payload, static_cast<uint64_t>(header.expires_at_ms));
  put_u64(payload, static_cast<uint64_t>(header.created_ms));
  return seal(record_kind::header, std::move(payload));
}

std::string encode_record(const append_record& append) {
  auto packed = append.messages.view().bytes();
  auto payload = open_record(
    64 + append.stream_seq.size() + packed.size()
    + (append.producer ? append.producer->id.size() : 0));
  uint8_t flags = (append.closes ? closes_flag : 0)
                  | (append.producer ? producer_flag : 0);
  put_u64(payload, append.durable_before);
  put_u8(payload, flags);
  if (append.producer) {
    put_string(payload, append.producer->id);
    put_u64(payload, append.producer->epoch);
    put_u64(payload, append.producer->seq);
  }
  put_string(payload, append.stream_seq);
  put_u32(payload, static_cast<uint32_t>(append.messages.size()));
  payload.append(packed.data(), packed.size());
  return seal(record_kind::append, std::move(payload));
}

caf::expected<stream_header> decode_header(std::string_view payload) {
  reader in{payload};
  stream_header header;
  header.name = std::string{in.str()};
  header.content_type = std::string{in.str()};
  auto flags = in.u8();
  auto ttl = in.u64();
  if (flags & has_ttl)
    header.ttl_seconds = ttl;
  header.expires_at = std::string{in.str()};
  header.expires_at_ms = static_cast<int64_t>(in.u64());
  header.created_ms = static_cast<int64_t>(in.u64());
  if (in.failed() || !in.at_end())
    return make_error(ec::bad_row, "malformed stream header record");
  return header;
}

caf::expected<append_view> decode_append(std::string_view payload,
                                         record_kind kind) {
  reader in{payload};
  append_view result;
  if (kind == record_kind::append)
    result.durable_before = in.u64();
  else if (kind != record_kind::unstamped_append)
    return make_error(ec::bad_row, "not an append record");
  auto flags = in.u8();
  result.closes = (flags & closes_flag) != 0;
  if (flags & producer_flag) {
    producer_stamp stamp;
    stamp.id = std::string{in.str()};
    stamp.epoch = in.u64();
    stamp.seq = in.u64();
    result.producer = std::move(stamp);
  }
  result.stream_seq = std::string{in.str()};
  auto count = in.u32();
  if (in.failed())
    return make_error(ec::bad_row, "malformed append record");
  auto packed = in.rest();
  if (!packed_messages::well_formed(packed, count))
    return make_error(ec::bad_row, "malformed append record");
  result.messages = packed_messages{packed, count};
  return result;
}

log_scan scan_log(std::string_view bytes) {
  log_scan result;
  if (bytes.size() < log_magic.size()) {
    // A file cut before its magic holds nothing acknowledged.
    if (log_magic.substr(0, bytes.size()) != bytes)
      result.corruption = "not a stream log (bad magic)";
    return result;
  }
  if (bytes.substr(0, log_magic.size()) != log_magic) {
    result.corruption = "not a stream log (bad magic)";
    return result;
  }
  uint64_t pos = log_magic.size();
  result.valid_size = pos;
  while (pos < bytes.size()) {
    log_record record;
    auto outcome = read_record(bytes, pos, record);
    if (outcome == read_result::ok) {
      result.records.push_back(record);
      pos = record.payload_position + record.payload.size();
      result.valid_size = pos;
      continue;
    }
    if (all_zero(bytes.substr(pos))) {
      result.padding = bytes.size() - pos;
      break;
    }
    judge_damage(bytes, pos, outcome, result);
    break;
  }
  return result;
}

} // namespace ebridge
