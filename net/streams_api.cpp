#include "net/streams_api.hpp"

#include <algorithm>
#include <atomic>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <utility>


#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/json_split.hpp"
#include "core/tags.hpp"
#include "net/ds_protocol.hpp"
#include "net/stream_http.hpp"

namespace ebridge {

using stream_http::jitter;
using stream_http::join;
using stream_http::make_response;
using stream_http::not_found;

namespace {


constexpr uint64_t tail_position = std::numeric_limits<uint64_t>::max();

/// Every stream answer may be embedded by another origin's page (CORS
/// headers, for the origins allowed to read it, come from the routes).
http_response& embeddable(http_response& res) {
  res.set("Cross-Origin-Resource-Policy", "cross-origin");
  return res;
}


http_response error(unsigned status, std::string_view code,
                    std::string_view message) {
  auto res = json_error(status, code, message);
  return embeddable(res);
}

http_response bad_request(std::string_view message) {
  return error(400, "BAD_REQUEST", message);
}


bool header_is_true(const http_request& req, std::string_view name) {
  auto* value = req.header(name);
  if (value == nullptr)
    return false;
  return ds::media_type(*value) == "true";
}


std::string cursor_for(const http_request& req) {
  auto query = ds::parse_query(req.target);
  const std::string* client = nullptr;
  if (query) {
    auto i = query->find("cursor");
    if (i != query->end())
      client = &i->second;
  }
  return ds::next_cursor(wall_ms(), client, jitter());
}

/// Splits a request body into messages: JSON mode flattens one array level
/// and keeps each element's own bytes. The body is released once split: a
/// big POST holds its bytes once, packed, while it waits for the disk.
caf::expected<message_batch> split_messages(std::string& body, bool json,
                                            bool allow_empty_array) {
  message_batch messages;
  if (body.empty())
    return messages;
  // Four bytes of length per message; a message per comma at most.
  auto commas = json ? std::count(body.begin(), body.end(), ',') : 0;
  messages.reserve(body.size() + 4 * (static_cast<size_t>(commas) + 1));
  if (!json) {
    messages.add(body);
    std::string{}.swap(body);
    return messages;
  }
  auto split = split_json(body, [&](std::string_view element) {
    messages.add(element);
  });
  std::string{}.swap(body);
  if (split.too_deep)
    return make_error(ec::invalid_input,
                      "the body nests arrays and objects deeper than "
                        + std::to_string(max_json_depth) + " levels ("
                        + split.error + ")");
  if (!split.ok)
    return make_error(ec::invalid_input,
                      "the body is not valid JSON (" + split.error + ")");
  if (split.array && split.count == 0 && !allow_empty_array)
    return make_error(ec::invalid_input, "an empty JSON array appends "
                                         "nothing");
  return messages;
}


void set_position(http_response& res, uint64_t offset, bool up_to_date,
                  bool closed) {
  res.set("Stream-Next-Offset", ds::format_offset(offset));
  if (up_to_date)
    res.set("Stream-Up-To-Date", "true");
  if (closed)
    res.set("Stream-Closed", "true");
}

http_response data_response(const read_result& r, bool json) {
  auto res = make_response(200);
  res.set("Content-Type", r.content_type);
  set_position(res, r.next_offset, r.up_to_date, r.closed);
  res.body = join(r, json);
  return res;
}

http_response write_error(const write_result& r, const std::string& name) {
  switch (r.status) {
    case store_status::not_found:
      return not_found(name);
    case store_status::closed: {
      auto res = error(409, "STREAM_CLOSED", "the stream is closed");
      set_position(res, r.next_offset, false, true);
      return res;
    }
    case store_status::stale_epoch: {
      auto res = error(403, "STALE_EPOCH", r.message);
      res.set("Producer-Epoch", std::to_string(r.producer_epoch));
      return res;
    }
    case store_status::bad_epoch_seq:
      return bad_request(r.message);
    case store_status::seq_gap: {
      auto res = error(409, "SEQUENCE_GAP", r.message);
      res.set("Producer-Expected-Seq", std::to_string(r.expected_seq));
      res.set("Producer-Received-Seq", std::to_string(r.received_seq));
      return res;
    }
    case store_status::stream_seq_conflict:
      return error(409, "STREAM_SEQ_CONFLICT", r.message);
    case store_status::content_type_mismatch:
      return error(409, "CONTENT_TYPE_MISMATCH", r.message);
    case store_status::config_conflict:
      return error(409, "CONFIG_CONFLICT", r.message);
    default:
      return error(503, "UNAVAILABLE",
                   r.message.empty() ? "the stream is unavailable" : r.message);
  }
}

/// Reads from the store, or answers the error (404, 503) and returns none.
std::optional<read_result> read_or_answer(stream_store& store,
                                          const std::string& name,
                                          uint64_t position,
                                          http_responder& respond) {
  auto r = store.read(name, position);
  if (r.status == store_status::not_found) {
    respond(not_found(name));
    return std::nullopt;
  }
  if (r.status != store_status::ok) {
    respond(error(503, "UNAVAILABLE", "the stream cannot be read"));
    return std::nullopt;
  }
  return r;
}

} // namespace

namespace stream_http {

http_response make_response(unsigned status) {
  http_response res;
  res.status = status;
  return embeddable(res);
}

http_response not_found(const std::string& name) {
  return error(404, "NOT_FOUND", "no stream " + name);
}

uint64_t jitter() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

/// The body of a read: a JSON array in JSON mode, the bytes otherwise.
std::string join(const read_result& r, bool json) {
  std::string body;
  size_t size = json ? 2 + r.chunks.size() : 0;
  for (auto& c : r.chunks)
    size += c.size();
  body.reserve(size);
  if (json)
    body += '[';
  for (size_t i = 0; i < r.chunks.size(); ++i) {
    if (json && i > 0)
      body += ',';
    body += r.chunks[i];
  }
  if (json)
    body += ']';
  return body;
}

} // namespace stream_http

streams_api::streams_api(stream_store& store, io_runtime& io,
                         streams_api_config cfg)
  : store_(store), io_(io), cfg_(cfg) {
  // nop
}

void streams_api::handle(http_request req, http_responder respond,
                         bool read_only) {
  std::string name{req.path()};
  auto& method = req.method;
  if (auto why = store_.corruption(name); why && method != "DELETE") {
    respond(error(500, "STREAM_CORRUPT", *why));
    return;
  }
  if (method == "GET") {
    get(req, name, respond);
    return;
  }
  if (method == "HEAD") {
    head(name, respond);
    return;
  }
  bool write = method == "PUT" || method == "POST" || method == "DELETE";
  if (!write || read_only) {
    auto res = error(405, "METHOD_NOT_ALLOWED",
                     read_only ? "this stream is written by ebridge only"
                               : "method " + method + " is not allowed");
    res.set("Allow", read_only ? "GET, HEAD, OPTIONS"
                               : "GET, HEAD, PUT, POST, DELETE, OPTIONS");
    respond(std::move(res));
    return;
  }
  if (method == "PUT")
    create(req, name, respond);
  else if (method == "POST")
    append(req, name, respond);
  else
    remove(name, respond);
}

void streams_api::create(http_request& req, const std::string& name,
                         http_responder& respond) {
  create_request cr;
  auto* type = req.header("content-type");
  cr.content_type = type != nullptr && !type->empty()
                      ? *type
                      : "application/octet-stream";
  auto* ttl = req.header("stream-ttl");
  auto* expires = req.header("stream-expires-at");
  if (ttl != nullptr && expires != nullptr) {
    respond(bad_request("Stream-TTL and Stream-Expires-At exclude each other"));
    return;
  }
  if (ttl != nullptr) {
    auto seconds = ds::parse_ttl(*ttl);
    if (!seconds) {
      respond(bad_request(error_message(seconds.error())));
      return;
    }
    cr.ttl_seconds = *seconds;
  }
  if (expires != nullptr) {
    auto ms = ds::parse_rfc3339_ms(*expires);
    if (!ms) {
      respond(bad_request(error_message(ms.error())));
      return;
    }
    cr.expires_at = *expires;
    cr.expires_at_ms = *ms;
  }
  cr.closed = header_is_true(req, "stream-closed");
  auto messages = split_messages(req.body, ds::is_json(cr.content_type), true);
  if (!messages) {
    respond(bad_request(error_message(messages.error())));
    return;
  }
  cr.messages = std::move(*messages);
  auto* host = req.header("host");
  auto location = "http://" + (host != nullptr ? *host : "localhost") + name;
  auto content_type = cr.content_type;
  store_.create(name, std::move(cr),
                [respond, name, location, content_type](write_result r) {
                  if (r.status != store_status::ok
                      && r.status != store_status::exists) {
                    respond(write_error(r, name));
                    return;
                  }
                  auto res = make_response(r.status == store_status::ok ? 201
                                                                        : 200);
                  res.set("Content-Type", content_type);
                  if (r.status == store_status::ok)
                    res.set("Location", location);
                  set_position(res, r.next_offset, false, r.closed);
                  respond(std::move(res));
                });
}

void streams_api::append(http_request& req, const std::string& name,
                         http_responder& respond) {
  auto producer = ds::parse_producer(req.header("producer-id"),
                                     req.header("producer-epoch"),
                                     req.header("producer-seq"));
  if (!producer) {
    respond(bad_request(error_message(producer.error())));
    return;
  }
  auto info = store_.head(name);
  if (!info) {
    respond(not_found(name));
    return;
  }
  append_request ar;
  ar.closes = header_is_true(req, "stream-closed");
  ar.producer = std::move(*producer);
  if (auto* seq = req.header("stream-seq"))
    ar.stream_seq = *seq;
  if (req.body.empty()) {
    if (!ar.closes) {
      respond(bad_request("an empty body appends nothing (to close the "
                          "stream, send Stream-Closed: true)"));
      return;
    }
  } else {
    auto* type = req.header("content-type");
    if (type == nullptr || type->empty()) {
      respond(bad_request("Content-Type is required with a body"));
      return;
    }
    if (ds::media_type(*type) != ds::media_type(info->content_type)) {
      respond(error(409, "CONTENT_TYPE_MISMATCH",
                    "content type " + *type + " does not match the stream's "
                      + info->content_type));
      return;
    }
    ar.content_type = *type;
    auto messages = split_messages(req.body, ds::is_json(info->content_type),
                                   false);
    if (!messages) {
      respond(bad_request(error_message(messages.error())));
      return;
    }
    ar.messages = std::move(*messages);
  }
  bool with_producer = ar.producer.has_value();
  // New data with producer headers is 200; duplicates, closes and plain
  // appends are 204.
  bool has_data = !ar.messages.empty();
  store_.append(name, std::move(ar),
                [respond, name, with_producer, has_data](write_result r) {
                  if (r.status != store_status::ok
                      && r.status != store_status::duplicate) {
                    respond(write_error(r, name));
                    return;
                  }
                  bool fresh = r.status == store_status::ok && has_data;
                  auto res = make_response(fresh && with_producer ? 200 : 204);
                  set_position(res, r.next_offset, false, r.closed);
                  if (with_producer) {
                    res.set("Producer-Epoch", std::to_string(r.producer_epoch));
                    res.set("Producer-Seq", std::to_string(r.producer_seq));
                  }
                  respond(std::move(res));
                });
}

void streams_api::remove(const std::string& name, http_responder& respond) {
  store_.remove(name, [respond, name](write_result r) {
    if (r.status != store_status::ok) {
      respond(write_error(r, name));
      return;
    }
    respond(make_response(204));
  });
}

void streams_api::head(const std::string& name, http_responder& respond) {
  auto info = store_.head(name);
  if (!info) {
    respond(not_found(name));
    return;
  }
  auto res = make_response(200);
  res.set("Content-Type", info->content_type);
  res.set("Cache-Control", "no-store");
  set_position(res, info->next_offset, false, info->closed);
  if (info->ttl_seconds)
    res.set("Stream-TTL", std::to_string(*info->ttl_seconds));
  if (!info->expires_at.empty())
    res.set("Stream-Expires-At", info->expires_at);
  respond(std::move(res));
}

void streams_api::get(http_request& req, const std::string& name,
                      http_responder& respond) {
  auto query = ds::parse_query(req.target);
  if (!query) {
    respond(bad_request(error_message(query.error())));
    return;
  }
  if (query->count("offset") > 1) {
    respond(bad_request("offset must be given once"));
    return;
  }
  std::string live;
  if (auto i = query->find("live"); i != query->end()) {
    live = i->second;
    if (live != "long-poll" && live != "sse") {
      respond(bad_request("live must be long-poll or sse"));
      return;
    }
  }
  auto i = query->find("offset");
  if (i == query->end() && !live.empty()) {
    respond(bad_request("live reads need an offset"));
    return;
  }
  ds::offset_spec offset;
  if (i != query->end()) {
    auto parsed = ds::parse_offset(i->second);
    if (!parsed) {
      respond(bad_request(error_message(parsed.error())));
      return;
    }
    offset = *parsed;
  }
  bool from_now = offset.what == ds::offset_spec::kind::now;
  uint64_t position = from_now ? tail_position : offset.position;
  if (live == "long-poll") {
    long_poll(req, name, position, from_now, respond);
    return;
  }
  if (live == "sse") {
    sse(req, name, position, from_now, respond);
    return;
  }
  auto read = read_or_answer(store_, name, position, respond);
  if (!read)
    return;
  auto& r = *read;
  bool json = ds::is_json(r.content_type);
  auto res = data_response(r, json);
  if (from_now) {
    res.set("Cache-Control", "no-store");
    respond(std::move(res));
    return;
  }
  auto info = store_.head(name);
  auto etag = "\"" + std::to_string(info ? info->created_ms : 0) + ":"
              + std::to_string(r.start_offset) + ":"
              + std::to_string(r.next_offset) + (r.closed ? ":c" : "") + "\"";
  res.set("ETag", etag);
  if (auto* match = req.header("if-none-match"); match && *match == etag) {
    auto not_modified = make_response(304);
    not_modified.set("ETag", etag);
    set_position(not_modified, r.next_offset, r.up_to_date, r.closed);
    respond(std::move(not_modified));
    return;
  }
  respond(std::move(res));
}

namespace {

/// One pending long-poll: answered once, by new data or by the timeout.
struct long_poll_state {
  std::atomic<bool> answered{false};
  std::mutex mtx;
  uint64_t token = 0;
  std::shared_ptr<io_runtime::timer> timer;
};

} // namespace

void streams_api::long_poll(const http_request& req, const std::string& name,
                            uint64_t position, bool from_now,
                            http_responder& respond) {
  auto read = read_or_answer(store_, name, position, respond);
  if (!read)
    return;
  auto& r = *read;
  auto cursor = cursor_for(req);
  bool json = ds::is_json(r.content_type);
  auto empty_answer = [cursor](const read_result& at) {
    auto res = make_response(204);
    set_position(res, at.next_offset, true, at.closed);
    if (!at.closed)
      res.set("Stream-Cursor", cursor);
    return res;
  };
  if (!r.chunks.empty() && !from_now) {
    auto res = data_response(r, json);
    res.set("Stream-Cursor", cursor);
    respond(std::move(res));
    return;
  }
  if (r.closed) {
    respond(empty_answer(r));
    return;
  }
  // At the tail: wait for data, the close, or the timeout. Whichever comes
  // first answers with what the stream holds by then: data that became
  // durable just as the timeout fired is sent, never skipped by a 204 that
  // moves the offset past it.
  auto state = std::make_shared<long_poll_state>();
  auto tail = r.next_offset;
  auto answer = [this, state, name, tail, json, cursor, respond,
                 empty_answer](bool timed_out) mutable {
    if (state->answered.exchange(true))
      return;
    {
      std::lock_guard<std::mutex> guard{state->mtx};
      if (state->timer)
        state->timer->cancel();
      // A wake-up's waiter is gone already; the timeout's is still set.
      if (timed_out)
        store_.cancel_wait(name, state->token);
    }
    // A stream that cannot be read now answers 503, not a 204 at offset 0.
    auto read = read_or_answer(store_, name, tail, respond);
    if (!read)
      return;
    auto& now = *read;
    if (!now.chunks.empty()) {
      auto res = data_response(now, json);
      res.set("Stream-Cursor", cursor);
      respond(std::move(res));
      return;
    }
    respond(empty_answer(now));
  };
  // Wake-ups come from the store's writer threads: read on an io thread.
  auto token = store_.wait(name, tail, [this, answer] {
    io_.post([answer]() mutable { answer(false); });
  });
  std::lock_guard<std::mutex> guard{state->mtx};
  state->token = token;
  if (state->answered)
    return;
  state->timer = io_.after(cfg_.long_poll_timeout,
                           [answer]() mutable { answer(true); });
}

} // namespace ebridge
