#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/type_id.hpp>

#include "storage/registry_store.hpp"

// The message types and atoms of ebridge's actors, one block for the project.
CAF_BEGIN_TYPE_ID_BLOCK(ebridge, caf::first_custom_type_id)

  CAF_ADD_TYPE_ID(ebridge, (ebridge::bridge_row))
  CAF_ADD_TYPE_ID(ebridge, (std::vector<ebridge::bridge_row>))
  CAF_ADD_TYPE_ID(ebridge, (std::vector<std::string>))

  CAF_ADD_ATOM(ebridge, ebridge, upsert_atom, "upsert")
  CAF_ADD_ATOM(ebridge, ebridge, touch_atom, "touch")
  CAF_ADD_ATOM(ebridge, ebridge, list_atom, "list")
  CAF_ADD_ATOM(ebridge, ebridge, stale_atom, "stale")
  CAF_ADD_ATOM(ebridge, ebridge, cursor_atom, "cursor")
  CAF_ADD_ATOM(ebridge, ebridge, clear_atom, "clear")
  CAF_ADD_ATOM(ebridge, ebridge, refs_atom, "refs")
  CAF_ADD_ATOM(ebridge, ebridge, epoch_atom, "epoch")
  CAF_ADD_ATOM(ebridge, ebridge, ready_atom, "ready")

CAF_END_TYPE_ID_BLOCK(ebridge)

namespace caf {
class actor_system_config;
} // namespace caf

namespace ebridge {

/// Registers the project's message types and error category with CAF.
void register_types(caf::actor_system_config& cfg);

} // namespace ebridge
