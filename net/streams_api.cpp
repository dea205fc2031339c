#include "net/streams_api.hpp"

#include <algorithm>
#include <atomic>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/tags.hpp"
#include "net/ds_protocol.hpp"

namespace ebridge {

namespace {

constexpr const char* expose_headers
  = "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, "
    "Producer-Epoch, Producer-Seq, Producer-Expected-Seq, "
    "Producer-Received-Seq, ETag, Content-Type, Stream-SSE-Data-Encoding, "
    "Stream-TTL, Stream-Expires-At, Location";

constexpr uint64_t tail_position = std::numeric_limits<uint64_t>::max();

http_response make_response(unsigned status) {
  http_response res;
  res.status = status;
  res.set("Access-Control-Allow-Origin", "*");
  res.set("Access-Control-Expose-Headers", expose_headers);
  res.set("Cross-Origin-Resource-Policy", "cross-origin");
  return res;
}

http_response error(unsigned status, std::string_view code,
                    std::string_view message) {
  auto res = make_response(status);
  res.set("Content-Type", "application/json");
  res.body = json_error_body(code, message);
  return res;
}

http_response bad_request(std::string_view message) {
  return error(400, "BAD_REQUEST", message);
}

http_response not_found(const std::string& name) {
  return error(404, "NOT_FOUND", "no stream " + name);
}

bool header_is_true(const http_request& req, std::string_view name) {
  auto* value = req.header(name);
  if (value == nullptr)
    return false;
  return ds::media_type(*value) == "true";
}

uint64_t jitter() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
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

/// Splits a request body into messages: JSON mode flattens one array level.
caf::expected<std::vector<std::string>>
split_messages(const std::string& body, bool json, bool allow_empty_array) {
  std::vector<std::string> messages;
  if (body.empty())
    return messages;
  if (!json) {
    messages.push_back(body);
    return messages;
  }
  auto doc = nlohmann::json::parse(body, nullptr, false);
  if (doc.is_discarded())
    return make_error(ec::invalid_input, "the body is not valid JSON");
  auto dump = [](const nlohmann::json& value) {
    return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  if (doc.is_array()) {
    if (doc.empty() && !allow_empty_array)
      return make_error(ec::invalid_input, "an empty JSON array appends "
                                           "nothing");
    messages.reserve(doc.size());
    for (auto& element : doc)
      messages.push_back(dump(element));
  } else {
    messages.push_back(dump(doc));
  }
  return messages;
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

streams_api::streams_api(stream_store& store, io_runtime& io,
                         streams_api_config cfg)
  : store_(store), io_(io), cfg_(cfg) {
  // nop
}

http_response streams_api::preflight() {
  auto res = make_response(204);
  res.set("Access-Control-Allow-Methods",
          "GET, POST, PUT, DELETE, HEAD, OPTIONS");
  res.set("Access-Control-Allow-Headers",
          "Content-Type, Authorization, If-None-Match, Stream-Seq, Stream-TTL, "
          "Stream-Expires-At, Stream-Closed, Producer-Id, Producer-Epoch, "
          "Producer-Seq");
  res.set("Access-Control-Max-Age", "86400");
  return res;
}

void streams_api::handle(http_request req, http_responder respond,
                         bool read_only) {
  std::string name{req.path()};
  auto& method = req.method;
  if (method == "OPTIONS") {
    respond(preflight());
    return;
  }
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
                  auto res = make_response(
                    r.status == store_status::ok ? 201 : 200);
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
  // At the tail: wait for data, the close, or the timeout.
  auto state = std::make_shared<long_poll_state>();
  auto tail = r.next_offset;
  auto on_wake = [this, state, name, tail, json, cursor, respond,
                  empty_answer] {
    if (state->answered.exchange(true))
      return;
    {
      std::lock_guard<std::mutex> guard{state->mtx};
      if (state->timer)
        state->timer->cancel();
    }
    auto now = store_.read(name, tail);
    if (now.status == store_status::not_found) {
      respond(not_found(name));
      return;
    }
    if (!now.chunks.empty()) {
      auto res = data_response(now, json);
      res.set("Stream-Cursor", cursor);
      respond(std::move(res));
      return;
    }
    respond(empty_answer(now));
  };
  // Wake-ups come from the store's writer threads: read on an io thread.
  auto token = store_.wait(name, tail, [this, on_wake] { io_.post(on_wake); });
  std::lock_guard<std::mutex> guard{state->mtx};
  state->token = token;
  if (state->answered)
    return;
  state->timer = io_.after(cfg_.long_poll_timeout, [this, state, name, tail,
                                                    respond, empty_answer] {
    if (state->answered.exchange(true))
      return;
    store_.cancel_wait(name, state->token);
    auto now = store_.read(name, tail);
    if (now.status == store_status::not_found) {
      respond(not_found(name));
      return;
    }
    respond(empty_answer(now));
  });
}

/// One SSE connection: catches up from its offset on its own, then follows
/// the tail as a member of the stream's hub, one data event and one control
/// event per batch.
struct streams_api::sse_session
  : std::enable_shared_from_this<streams_api::sse_session> {
  streams_api* api;
  std::string name;
  std::string cursor_param;
  uint64_t position;
  bool from_now;
  bool json = false;
  bool text = false;
  std::shared_ptr<http_stream> out;
  std::mutex mtx;
  bool finished = false;
  bool sent_any = false;
  bool in_hub = false; // guarded by api->hubs_mtx_
  std::chrono::steady_clock::time_point last_write;
  std::shared_ptr<io_runtime::timer> keepalive;
  std::shared_ptr<io_runtime::timer> deadline;

  std::string cursor() {
    return ds::next_cursor(wall_ms(),
                           cursor_param.empty() ? nullptr : &cursor_param,
                           jitter());
  }

  std::string control(uint64_t offset, bool up_to_date, bool closed) {
    std::string payload = "{\"streamNextOffset\":\""
                          + ds::format_offset(offset) + "\"";
    if (closed) {
      payload += ",\"streamClosed\":true";
    } else {
      payload += ",\"streamCursor\":\"" + cursor() + "\"";
      if (up_to_date)
        payload += ",\"upToDate\":true";
    }
    payload += '}';
    std::string event;
    ds::append_sse_event(event, "control", payload);
    return event;
  }

  /// The data event of a batch in this session's encoding.
  std::string data_event(const read_result& r) const {
    std::string event;
    if (json) {
      ds::append_sse_event(event, "data", join(r, true));
      return event;
    }
    std::string bytes;
    for (auto& c : r.chunks)
      bytes += c;
    ds::append_sse_event(event, "data", text ? bytes : ds::base64(bytes));
    return event;
  }

  void write(std::string events, bool here = false) {
    if (here)
      out->write_here(std::move(events));
    else
      out->write(std::move(events));
    last_write = std::chrono::steady_clock::now();
  }

  void start() {
    auto self = shared_from_this();
    out->on_close([self] { self->stop(false); });
    deadline = api->io_.after(api->cfg_.sse_max, [self] { self->stop(true); });
    last_write = std::chrono::steady_clock::now();
    schedule_keepalive(api->cfg_.sse_keepalive);
    pump();
  }

  /// Ends the connection (when `finish`) and releases everything.
  void stop(bool finish) {
    std::shared_ptr<http_stream> stream;
    {
      std::lock_guard<std::mutex> guard{mtx};
      if (finished)
        return;
      finished = true;
      stream = std::move(out);
      if (keepalive)
        keepalive->cancel();
      if (deadline)
        deadline->cancel();
    }
    api->hub_leave(shared_from_this());
    if (finish && stream)
      stream->finish();
  }

  enum class delivery { sent, gone, elsewhere };

  /// Called by the hub with a batch read at `from` (hubs_mtx_ held); sent
  /// from this thread when `here`.
  delivery deliver(uint64_t from, const read_result& r,
                   const std::string& data, bool here) {
    std::lock_guard<std::mutex> guard{mtx};
    if (finished)
      return delivery::gone;
    if (position != from)
      return delivery::elsewhere; // never expected: it catches up alone
    position = r.next_offset;
    sent_any = true;
    write(data + control(r.next_offset, r.up_to_date, r.closed), here);
    return delivery::sent;
  }

  /// Sends everything from the position to the tail on its own, then joins
  /// the hub.
  void pump() {
    std::unique_lock<std::mutex> guard{mtx};
    if (finished)
      return;
    for (;;) {
      auto r = api->store_.read(name, position);
      if (r.status != store_status::ok) {
        guard.unlock();
        stop(true);
        return;
      }
      if (from_now) {
        // Start at the tail: no history, just where the tail is.
        from_now = false;
        r.chunks.clear();
        r.start_offset = r.next_offset;
      }
      position = r.next_offset;
      if (!r.chunks.empty()) {
        write(data_event(r) + control(r.next_offset, r.up_to_date, r.closed));
        sent_any = true;
        if (r.closed) {
          guard.unlock();
          stop(true);
          return;
        }
        if (!r.up_to_date)
          continue;
      } else if (r.closed) {
        write(control(r.next_offset, true, true));
        guard.unlock();
        stop(true);
        return;
      } else if (!sent_any) {
        write(control(r.next_offset, true, false));
        sent_any = true;
      }
      break;
    }
    guard.unlock();
    api->hub_join(shared_from_this());
  }

  /// One keep-alive control event when nothing was written for the whole
  /// interval; one timer per interval, not one per event.
  void schedule_keepalive(std::chrono::milliseconds delay) {
    auto self = shared_from_this();
    keepalive = api->io_.after(delay, [self] {
      std::lock_guard<std::mutex> guard{self->mtx};
      if (self->finished)
        return;
      auto every = self->api->cfg_.sse_keepalive;
      auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - self->last_write);
      auto next = every;
      if (idle + std::chrono::milliseconds{5} >= every)
        self->write(self->control(self->position, true, false));
      else
        next = every - idle;
      self->api->io_.post([self, next] {
        std::lock_guard<std::mutex> g{self->mtx};
        if (!self->finished)
          self->schedule_keepalive(next);
      });
    });
  }
};

/// The sessions that follow one stream's tail at the same position.
struct streams_api::sse_hub {
  std::string name;
  uint64_t position = 0;
  bool armed = false; // a store waiter is set or its wake-up is on its way
  uint64_t token = 0; // the store waiter's token, 0 when it already ran
  std::vector<std::shared_ptr<sse_session>> members;
};

void streams_api::hub_arm(const std::shared_ptr<sse_hub>& hub) {
  // hubs_mtx_ held. The callback only posts, so it may run inside wait().
  hub->armed = true;
  hub->token = store_.wait(hub->name, hub->position, [this, hub] {
    io_.post([this, hub] { hub_wake(hub); });
  });
}

void streams_api::hub_join(const std::shared_ptr<sse_session>& session) {
  bool alone = false;
  {
    std::lock_guard<std::mutex> guard{hubs_mtx_};
    std::lock_guard<std::mutex> s{session->mtx};
    if (session->finished)
      return;
    auto& hub = hubs_[session->name];
    if (!hub) {
      hub = std::make_shared<sse_hub>();
      hub->name = session->name;
    }
    if (hub->members.empty()) {
      hub->position = session->position;
    } else if (hub->position != session->position) {
      // The hub moved on while this session caught up: catch up again.
      alone = true;
    }
    if (!alone) {
      session->in_hub = true;
      hub->members.push_back(session);
      if (!hub->armed)
        hub_arm(hub);
    }
  }
  if (alone)
    io_.post([session] { session->pump(); });
}

void streams_api::hub_leave(const std::shared_ptr<sse_session>& session) {
  uint64_t cancel = 0;
  {
    std::lock_guard<std::mutex> guard{hubs_mtx_};
    if (!session->in_hub)
      return;
    session->in_hub = false;
    auto i = hubs_.find(session->name);
    if (i == hubs_.end())
      return;
    auto& hub = i->second;
    auto& m = hub->members;
    m.erase(std::remove(m.begin(), m.end(), session), m.end());
    if (m.empty()) {
      cancel = hub->token;
      hubs_.erase(i);
    }
  }
  if (cancel != 0)
    store_.cancel_wait(session->name, cancel);
}

void streams_api::hub_wake(const std::shared_ptr<sse_hub>& hub) {
  std::vector<std::shared_ptr<sse_session>> to_stop;
  std::vector<std::shared_ptr<sse_session>> to_pump;
  {
    std::lock_guard<std::mutex> guard{hubs_mtx_};
    hub->armed = false;
    hub->token = 0;
    auto i = hubs_.find(hub->name);
    if (i == hubs_.end() || i->second != hub)
      return; // left by everyone meanwhile
    if (hub->members.empty()) {
      hubs_.erase(i);
      return;
    }
    auto r = store_.read(hub->name, hub->position);
    if (r.status == store_status::ok && r.chunks.empty() && !r.closed) {
      hub_arm(hub); // woken without news
      return;
    }
    auto members = std::exchange(hub->members, {});
    for (auto& m : members)
      m->in_hub = false;
    if (r.status != store_status::ok) {
      to_stop = std::move(members);
    } else {
      bool keep = r.up_to_date && !r.closed;
      // One reader is written from this thread; many are spread over the
      // io threads.
      bool here = members.size() == 1;
      // One encoding per kind of session (JSON, text, base64).
      std::string encoded[3];
      for (auto& m : members) {
        int kind = m->json ? 0 : m->text ? 1 : 2;
        if (encoded[kind].empty() && !r.chunks.empty())
          encoded[kind] = m->data_event(r);
        auto got = m->deliver(hub->position, r, encoded[kind], here);
        if (got == sse_session::delivery::gone)
          continue;
        if (got == sse_session::delivery::elsewhere || (!keep && !r.closed)) {
          to_pump.push_back(m);
        } else if (r.closed) {
          to_stop.push_back(m);
        } else {
          m->in_hub = true;
          hub->members.push_back(m);
        }
      }
    }
    if (hub->members.empty()) {
      hubs_.erase(i);
    } else {
      hub->position = r.next_offset;
      hub_arm(hub);
    }
  }
  for (auto& m : to_stop)
    m->stop(true);
  for (auto& m : to_pump)
    io_.post([m] { m->pump(); });
}

void streams_api::sse(const http_request& req, const std::string& name,
                      uint64_t position, bool from_now,
                      http_responder& respond) {
  auto info = store_.head(name);
  if (!info) {
    respond(not_found(name));
    return;
  }
  auto session = std::make_shared<sse_session>();
  session->api = this;
  session->name = name;
  session->position = position;
  session->from_now = from_now;
  session->json = ds::is_json(info->content_type);
  session->text = ds::is_text(info->content_type);
  if (auto query = ds::parse_query(req.target)) {
    if (auto i = query->find("cursor"); i != query->end())
      session->cursor_param = i->second;
  }
  auto res = make_response(200);
  res.set("Content-Type", "text/event-stream");
  res.set("Cache-Control", "no-cache");
  if (!session->text)
    res.set("Stream-SSE-Data-Encoding", "base64");
  res.stream = [session](std::shared_ptr<http_stream> out) {
    session->out = std::move(out);
    session->start();
  };
  respond(std::move(res));
}

} // namespace ebridge
