#pragma once

#include <string_view>

#include "actors/actors.hpp"
#include "net/http.hpp"

namespace ebridge {

/// The JSON error body every endpoint uses:
/// `{"error":{"code":…,"message":…}}`.
http_response json_error(unsigned status, std::string_view code,
                         std::string_view message);

/// `GET /healthz`: the process is up.
http_response health_response();

/// `GET /readyz`: 200 when the node can serve, else 503 with the reason.
http_response readiness_response(const readiness& state);

/// Routes a request: health and readiness now; streams and the bridge API
/// join later. Never blocks: slow work goes to the gateway actor.
void handle_request(const gateway_actor& gateway, http_request req,
                    http_responder respond);

} // namespace ebridge
