#include "net/routes.hpp"

#include <atomic>
#include <memory>

#include "core/error.hpp"
#include "core/tags.hpp"
#include "net/streams_api.hpp"

namespace ebridge {

view_service::~view_service() = default;

namespace {

http_response json_response(unsigned status, std::string body) {
  http_response res;
  res.status = status;
  res.set("Content-Type", "application/json");
  res.set("Cache-Control", "no-store");
  res.body = std::move(body);
  return res;
}

} // namespace

http_response health_response() {
  return json_response(200, "{\"status\":\"ok\"}");
}

http_response readiness_response(const readiness& state) {
  if (state.ready)
    return json_response(200, "{\"status\":\"ready\"}");
  auto res = json_response(503, "{\"status\":\"unavailable\",\"reason\":"
                                  + js_string(state.reason) + "}");
  res.set("Retry-After", "1");
  return res;
}

http_response registration_response(const caf::expected<registration>& r) {
  if (r)
    return json_response(200, "{\"sourceRef\":" + js_string(r->source_ref)
                                + ",\"streamUrl\":" + js_string(r->stream_url)
                                + "}");
  auto& err = r.error();
  if (err.category() == error_category) {
    switch (static_cast<ec>(err.code())) {
      case ec::invalid_tags:
      case ec::invalid_input:
        return json_error(400, "INVALID_REQUEST", error_message(err));
      case ec::timeout:
      case ec::restarting:
      case ec::database_unavailable: {
        auto res = json_error(503, "UNAVAILABLE",
                              error_message(err) + "; retry later");
        res.set("Retry-After", "2");
        return res;
      }
      default:
        break;
    }
  }
  return json_error(500, "INTERNAL", describe(err));
}

namespace {

constexpr std::string_view ensure_stream_path
  = "/_electric/observations/entities/ensure-stream";
constexpr std::string_view entities_prefix = "/_entities/";
constexpr const char* allowed_methods = "GET, POST, PUT, DELETE, HEAD, OPTIONS";
constexpr const char* allowed_headers
  = "Content-Type, Authorization, If-None-Match, Stream-Seq, Stream-TTL, "
    "Stream-Expires-At, Stream-Closed, Producer-Id, Producer-Epoch, "
    "Producer-Seq";
constexpr const char* exposed_headers
  = "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, "
    "Producer-Epoch, Producer-Seq, Producer-Expected-Seq, "
    "Producer-Received-Seq, ETag, Content-Type, Stream-SSE-Data-Encoding, "
    "Stream-TTL, Stream-Expires-At, Location";

/// The answer to a preflight: what a listed origin may send.
http_response make_preflight() {
  http_response res;
  res.status = 204;
  res.set("Access-Control-Allow-Methods", allowed_methods);
  res.set("Access-Control-Allow-Headers", allowed_headers);
  res.set("Access-Control-Max-Age", "86400");
  return res;
}

bool listed(const route_policy& policy, const std::string& origin) {
  return std::find(policy.cors_origins.begin(), policy.cors_origins.end(),
                   origin)
         != policy.cors_origins.end();
}

/// The CORS headers for a listed origin (answers vary by Origin).
void allow_origin(http_response& res, const std::string& origin) {
  res.set("Access-Control-Allow-Origin", origin);
  res.set("Access-Control-Expose-Headers", exposed_headers);
  res.set("Vary", "Origin");
}

void ensure_stream(const route_targets& targets, http_request& req,
                   http_responder& respond) {
  if (req.method != "POST") {
    auto res = json_error(405, "METHOD_NOT_ALLOWED",
                          "use POST on " + std::string{ensure_stream_path});
    res.set("Allow", "POST");
    respond(std::move(res));
    return;
  }
  auto tags = parse_register_body(req.body);
  if (!tags) {
    respond(json_error(400, "INVALID_REQUEST", error_message(tags.error())));
    return;
  }
  if (auto err = check_tag_limits(*tags, targets.policy.tags)) {
    respond(json_error(400, "INVALID_REQUEST", error_message(err)));
    return;
  }
  targets.views->register_view(targets.policy.tenant, to_json(*tags),
                               [respond](caf::expected<registration> r) {
                                 respond(registration_response(r));
                               });
}

/// Reads of a bridge stream touch it and count as a reader until the
/// response ends (a whole long-poll wait, a whole SSE connection).
void read_entities(const route_targets& targets, http_request req,
                   http_responder respond) {
  auto path = req.path();
  auto ref = std::string{path.substr(entities_prefix.size())};
  auto* views = targets.views;
  const auto& tenant = targets.policy.tenant;
  views->touch(tenant, ref);
  if (req.method != "GET") {
    targets.streams->handle(std::move(req), std::move(respond), true);
    return;
  }
  views->reader_open(tenant, ref);
  auto closed = std::make_shared<std::atomic<bool>>(false);
  auto close = [views, tenant, ref, closed] {
    if (!closed->exchange(true))
      views->reader_close(tenant, ref);
  };
  auto counted = [respond, close](http_response res) {
    if (!res.stream) {
      respond(std::move(res));
      close();
      return;
    }
    auto start = std::move(res.stream);
    res.stream = [start, close](std::shared_ptr<http_stream> out) {
      out->on_close(close);
      start(std::move(out));
    };
    respond(std::move(res));
  };
  targets.streams->handle(std::move(req), std::move(counted), true);
}

} // namespace

void handle_request(const route_targets& targets, http_request req,
                    http_responder respond) {
  // Browsers: only listed origins get CORS headers, and a state-changing
  // request from any other page is refused before it changes anything (a
  // text/plain POST needs no preflight, so the answer's headers alone would
  // not stop it).
  if (auto* origin = req.header("origin")) {
    auto allowed = listed(targets.policy, *origin);
    bool changes = req.method == "POST" || req.method == "PUT"
                   || req.method == "DELETE" || req.method == "PATCH";
    if (!allowed && (changes || req.method == "OPTIONS")) {
      respond(json_error(403, "FORBIDDEN",
                         "origin " + *origin
                           + " is not allowed (see --http.cors-origins)"));
      return;
    }
    if (allowed)
      respond = [respond, origin = *origin](http_response res) {
        allow_origin(res, origin);
        respond(std::move(res));
      };
  }
  if (req.method == "OPTIONS") {
    respond(make_preflight());
    return;
  }
  auto path = req.path();
  if (path == ensure_stream_path) {
    ensure_stream(targets, req, respond);
    return;
  }
  if (path.compare(0, entities_prefix.size(), entities_prefix) == 0
      && path.size() > entities_prefix.size()
      && (req.method == "GET" || req.method == "HEAD")) {
    read_entities(targets, std::move(req), std::move(respond));
    return;
  }
  if (path == "/healthz" || path == "/readyz") {
    if (req.method != "GET" && req.method != "HEAD") {
      auto res = json_error(405, "METHOD_NOT_ALLOWED",
                            "use GET or HEAD on " + std::string{path});
      res.set("Allow", "GET, HEAD");
      respond(std::move(res));
      return;
    }
    if (path == "/healthz") {
      respond(health_response());
      return;
    }
    targets.views->check_ready(
      [respond](readiness state) { respond(readiness_response(state)); });
    return;
  }
  if (path.empty() || path.front() != '/' || path == "/") {
    respond(json_error(404, "NOT_FOUND", "no stream at " + std::string{path}));
    return;
  }
  bool bridge_stream = path.compare(0, entities_prefix.size(), entities_prefix)
                       == 0;
  targets.streams->handle(std::move(req), std::move(respond), bridge_stream);
}

} // namespace ebridge
