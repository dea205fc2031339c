#include "net/routes.hpp"

#include <caf/send.hpp>

#include "core/tags.hpp"
#include "net/streams_api.hpp"

namespace ebridge {

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

http_response json_error(unsigned status, std::string_view code,
                         std::string_view message) {
  return json_response(status, json_error_body(code, message));
}

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

void handle_request(const route_targets& targets, http_request req,
                    http_responder respond) {
  auto path = req.path();
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
    caf::anon_send(targets.gateway, ready_atom::value,
                   readiness_callback{[respond](readiness state) {
                     respond(readiness_response(state));
                   }});
    return;
  }
  if (path.empty() || path.front() != '/' || path == "/") {
    respond(json_error(404, "NOT_FOUND", "no stream at " + std::string{path}));
    return;
  }
  bool bridge_stream = path.compare(0, 11, "/_entities/") == 0;
  targets.streams->handle(std::move(req), std::move(respond), bridge_stream);
}

} // namespace ebridge
