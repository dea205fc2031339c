#pragma once

#include <cstdint>
#include <string>

#include "net/http.hpp"
#include "storage/stream_store.hpp"

// Pieces of the Durable Streams answers that the request handlers
// (streams_api.cpp) and the SSE hub (streams_sse.cpp) share. Internal to
// net/.

namespace ebridge::stream_http {

/// An answer with the CORS headers every stream answer carries.
http_response make_response(unsigned status);

/// 404 for a stream that does not exist.
http_response not_found(const std::string& name);

/// Random bits for the cursors of answers (as the protocol's
/// cache-busting jitter).
uint64_t jitter();

/// The body of a read: a JSON array in JSON mode, the bytes otherwise.
std::string join(const read_result& r, bool json);

} // namespace ebridge::stream_http
