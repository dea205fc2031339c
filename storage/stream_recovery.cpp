#include "storage/stream_recovery.hpp"

#include "core/error.hpp"

namespace ebridge {

void index_messages(std::vector<log_chunk>& index, uint64_t payload_pos,
                    std::string_view payload, const packed_messages& messages,
                    uint64_t& tail) {
  auto end = payload_pos + payload.size();
  uint64_t since = index_stride;
  for (auto msg : messages) {
    if (since >= index_stride) {
      auto at = static_cast<uint64_t>(msg.data() - payload.data());
      index.push_back(log_chunk{tail, payload_pos + at - 4, end});
      since = 0;
    }
    tail += msg.size();
    since += msg.size() + 4;
  }
}

log_reading read_stream_log(std::string_view bytes) {
  log_reading result;
  auto corrupt = [&](std::string name, std::string why) {
    result.what = log_reading::kind::corrupt;
    result.name = std::move(name);
    result.why = std::move(why);
    return std::move(result);
  };
  auto scan = scan_log(bytes);
  if (!scan.corruption.empty()) {
    // Name the stream if its header survived, so that it is refused by
    // name rather than read as missing.
    std::string name;
    if (!scan.records.empty() && scan.records[0].kind == record_kind::header)
      if (auto header = decode_header(scan.records[0].payload))
        name = header->name;
    return corrupt(std::move(name), scan.corruption);
  }
  if (scan.records.empty() || scan.records[0].kind != record_kind::header) {
    result.what = log_reading::kind::headerless;
    return result;
  }
  auto header = decode_header(scan.records[0].payload);
  if (!header)
    return corrupt({}, error_message(header.error()));
  auto& s = result.stream;
  s.header = std::move(*header);
  for (size_t i = 1; i < scan.records.size(); ++i) {
    auto& rec = scan.records[i];
    auto view = is_append(rec.kind)
                  ? decode_append(rec.payload, rec.kind)
                  : caf::expected<append_view>{
                    make_error(ec::bad_row, "second header record")};
    if (!view)
      return corrupt(s.header.name, "record at byte "
                                      + std::to_string(rec.position) + ": "
                                      + error_message(view.error()));
    index_messages(s.chunks, rec.payload_position, rec.payload, view->messages,
                   s.tail);
    if (view->producer)
      s.producers[view->producer->id] = producer_position{view->producer->epoch,
                                                          view->producer->seq};
    if (!view->stream_seq.empty())
      s.stream_seq = view->stream_seq;
    s.closed |= view->closes;
  }
  s.valid_size = scan.valid_size;
  s.padding = scan.padding;
  s.torn_end = scan.torn_end;
  return result;
}

} // namespace ebridge
