#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/typed_actor.hpp>

#include "actors/type_ids.hpp"

namespace ebridge {

/// The REGISTRY actor: every SQL operation on the bridge registry
/// (`entity_bridges`, `entity_manifest_sources`), scoped by tenant. It spreads
/// requests over a small pool of workers, each a blocking libpqxx connection
/// on a detached actor, and replaces a worker that dies.
using registry_actor = caf::typed_actor<
  // Inserts the bridge (tenant, ref, tags JSON, stream url) if absent.
  caf::replies_to<upsert_atom, std::string, std::string, std::string,
                  std::string>::with<bridge_row>,
  // Marks observer activity; false if the bridge does not exist.
  caf::replies_to<touch_atom, std::string, std::string>::with<bool>,
  // One bridge by (tenant, ref).
  caf::replies_to<caf::get_atom, std::string, std::string>::with<bridge_row>,
  // Every bridge of a tenant.
  caf::replies_to<list_atom, std::string>::with<std::vector<bridge_row>>,
  // Bridges of a tenant idle since before the given epoch ms.
  caf::replies_to<stale_atom, std::string,
                  int64_t>::with<std::vector<bridge_row>>,
  // Deletes the row (not its stream); false if absent.
  caf::replies_to<caf::delete_atom, std::string, std::string>::with<bool>,
  // Persists the cursor (tenant, ref, handle, offset).
  caf::replies_to<cursor_atom, std::string, std::string, std::string,
                  std::string>::with<bool>,
  // Clears the cursor.
  caf::replies_to<clear_atom, std::string, std::string>::with<bool>,
  // Source refs named by entity manifests of a tenant (never collected).
  caf::replies_to<refs_atom, std::string>::with<std::vector<std::string>>,
  // Increments and returns the bridge's producer epoch.
  caf::replies_to<epoch_atom, std::string, std::string>::with<int64_t>,
  // Checks that the database answers.
  caf::replies_to<caf::ping_atom>::with<caf::ok_atom>>;

/// What the node reports about its readiness to serve.
struct readiness {
  bool ready = false;
  /// Empty when ready, else what is wrong.
  std::string reason;
};

/// A completion from the HTTP layer: called once, from an actor, and posts
/// the answer back to the HTTP session's executor. Never crosses the network.
struct readiness_callback {
  std::function<void(readiness)> fn;
};

} // namespace ebridge

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ebridge::readiness_callback)

namespace ebridge {

/// The GATEWAY actor: the entry from the HTTP layer into the actor world.
/// HTTP sessions `anon_send` it requests carrying a completion; it asks the
/// actors concerned and calls the completion with the outcome.
using gateway_actor
  = caf::typed_actor<caf::reacts_to<ready_atom, readiness_callback>>;

} // namespace ebridge
