#include "storage/stream_rules.hpp"

#include <cctype>

namespace ebridge {

const char* to_string(store_status status) {
  switch (status) {
    case store_status::ok:
      return "ok";
    case store_status::exists:
      return "exists";
    case store_status::duplicate:
      return "duplicate";
    case store_status::not_found:
      return "not_found";
    case store_status::config_conflict:
      return "config_conflict";
    case store_status::content_type_mismatch:
      return "content_type_mismatch";
    case store_status::closed:
      return "closed";
    case store_status::stream_seq_conflict:
      return "stream_seq_conflict";
    case store_status::stale_epoch:
      return "stale_epoch";
    case store_status::seq_gap:
      return "seq_gap";
    case store_status::bad_epoch_seq:
      return "bad_epoch_seq";
    case store_status::unavailable:
      return "unavailable";
  }
  return "unknown";
}

std::string media_type(std::string_view content_type) {
  auto type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && std::isspace(static_cast<unsigned char>(type.back())))
    type.remove_suffix(1);
  while (!type.empty()
         && std::isspace(static_cast<unsigned char>(type.front())))
    type.remove_prefix(1);
  std::string result{type};
  for (auto& c : result)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return result;
}

bool is_json(std::string_view content_type) {
  return media_type(content_type) == "application/json";
}

admission admit_append(const admission_state& stream,
                       const append_claims& append) {
  admission verdict;
  auto refuse = [&](store_status status, std::string message) {
    verdict.what = admission::action::refuse;
    verdict.status = status;
    verdict.message = std::move(message);
    return verdict;
  };
  if (append.producer) {
    auto& stamp = *append.producer;
    if (stream.producer) {
      auto& known = *stream.producer;
      verdict.producer_epoch = known.epoch;
      verdict.producer_seq = known.seq;
      if (stamp.epoch < known.epoch)
        return refuse(store_status::stale_epoch, "producer epoch is stale");
      if (stamp.epoch == known.epoch && stamp.seq <= known.seq) {
        // A retry of something stored: acknowledge it once everything
        // before it is durable, change nothing.
        verdict.what = admission::action::acknowledge;
        verdict.status = store_status::duplicate;
        return verdict;
      }
      if (stamp.epoch > known.epoch && stamp.seq != 0)
        return refuse(store_status::bad_epoch_seq,
                      "a new producer epoch must start at seq 0");
      if (stamp.epoch == known.epoch && stamp.seq > known.seq + 1) {
        verdict.expected_seq = known.seq + 1;
        verdict.received_seq = stamp.seq;
        return refuse(store_status::seq_gap, "producer sequence gap");
      }
    } else if (stamp.seq != 0) {
      verdict.producer_epoch = stamp.epoch;
      verdict.expected_seq = 0;
      verdict.received_seq = stamp.seq;
      return refuse(store_status::seq_gap,
                    "an unknown producer must start at seq 0");
    }
  }
  if (stream.closed) {
    if (append.closes && !append.has_messages && !append.producer) {
      verdict.what = admission::action::acknowledge;
      return verdict;
    }
    return refuse(store_status::closed, "the stream is closed");
  }
  if (!append.content_type.empty() && append.has_messages
      && media_type(append.content_type) != media_type(stream.content_type))
    return refuse(store_status::content_type_mismatch,
                  "content type " + std::string{append.content_type}
                    + " does not match the stream's "
                    + std::string{stream.content_type});
  if (!append.stream_seq.empty() && !stream.stream_seq.empty()
      && append.stream_seq <= stream.stream_seq)
    return refuse(store_status::stream_seq_conflict,
                  "Stream-Seq " + std::string{append.stream_seq}
                    + " is not greater than " + std::string{stream.stream_seq});
  return verdict;
}

} // namespace ebridge
