#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "storage/stream_log.hpp"
#include "storage/stream_store.hpp"

/// Rules of the Durable Streams HTTP protocol as plain functions: offsets,
/// query strings, producer and TTL headers, cursors, SSE framing.
namespace ebridge::ds {

/// `%016u_%016u`: read sequence (0 until forks exist) and byte position.
std::string format_offset(uint64_t position);

/// A parsed `offset` query value.
struct offset_spec {
  enum class kind { start, now, at } what = kind::start;
  uint64_t position = 0;
};

/// Accepts `-1`, `now` or an offset this server issued; anything else is
/// `ec::invalid_input`.
caf::expected<offset_spec> parse_offset(std::string_view text);

/// Decodes `%XX` escapes; fails on a malformed escape.
std::optional<std::string> percent_decode(std::string_view text);

/// The query of a request target as decoded name → values (in order).
caf::expected<std::multimap<std::string, std::string>>
parse_query(std::string_view target);

// Content types compare by media type, as the store does.
using ebridge::is_json;
using ebridge::media_type;

/// True for the types whose SSE payload is sent as text (text/*, JSON).
bool is_text(std::string_view content_type);

/// Parses the producer headers (all three or none; id non-empty; epoch and
/// seq integers in 0…2^53−1). Missing headers are nullptr.
caf::expected<std::optional<producer_stamp>>
parse_producer(const std::string* id, const std::string* epoch,
               const std::string* seq);

/// `Stream-TTL`: `0` or a positive integer without leading zeros.
caf::expected<uint64_t> parse_ttl(std::string_view text);

/// An RFC 3339 timestamp as epoch milliseconds (fraction truncated to ms).
caf::expected<int64_t> parse_rfc3339_ms(std::string_view text);

/// The `Stream-Cursor` to answer: the current 20 s interval since
/// 2024-10-09T00:00:00Z, or more than the client's when it is not behind.
std::string next_cursor(int64_t now_ms, const std::string* client_cursor,
                        uint64_t jitter);

/// Standard base64 with padding.
std::string base64(std::string_view bytes);

/// One SSE event: `event: <name>` and one `data:` line per line of
/// `payload` (split on CRLF, CR or LF), then a blank line.
void append_sse_event(std::string& out, std::string_view name,
                      std::string_view payload);

} // namespace ebridge::ds
