#pragma once

#include <string>
#include <vector>

#include <string_view>

#include "core/readiness.hpp"
#include "core/tags.hpp"
#include "net/http.hpp"
#include "net/view_service.hpp"

namespace ebridge {

/// `GET /healthz`: the process is up.
http_response health_response();

/// `GET /readyz`: 200 when the node can serve, else 503 with the reason.
http_response readiness_response(const readiness& state);

class streams_api;

/// Who may call from a browser, and whose requests these are.
struct route_policy {
  /// Origins whose pages get CORS headers; a POST, PUT or DELETE with any
  /// other `Origin` is refused (403) before it changes anything.
  std::vector<std::string> cors_origins;
  /// The tenant of every request (until authentication names one).
  std::string tenant = "default";
  /// How large a registered view's tags may be.
  tag_limits tags;
};

/// What the routes hand requests to.
struct route_targets {
  view_service* views;
  streams_api* streams;
  route_policy policy = {};
};

/// The answer to a register: 200 with the ref and stream URL; 400 for bad
/// input; 503 with Retry-After while the view starts or the database is
/// away; 500 otherwise.
http_response registration_response(const caf::expected<registration>& r);

/// Routes a request: health and readiness; bridge streams under
/// `/_entities/` (read-only); every other path is a Durable Stream. Never
/// blocks: slow work goes to actors or the store's writer.
void handle_request(const route_targets& targets, http_request req,
                    http_responder respond);

} // namespace ebridge
