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
  CAF_ADD_TYPE_ID(ebridge, (ebridge::cursor_write))
  CAF_ADD_TYPE_ID(ebridge, (std::vector<ebridge::cursor_write>))

  CAF_ADD_ATOM(ebridge, ebridge, upsert_atom, "upsert")
  CAF_ADD_ATOM(ebridge, ebridge, touch_atom, "touch")
  CAF_ADD_ATOM(ebridge, ebridge, list_atom, "list")
  CAF_ADD_ATOM(ebridge, ebridge, stale_atom, "stale")
  CAF_ADD_ATOM(ebridge, ebridge, cursor_atom, "cursor")
  CAF_ADD_ATOM(ebridge, ebridge, clear_atom, "clear")
  CAF_ADD_ATOM(ebridge, ebridge, refs_atom, "refs")
  CAF_ADD_ATOM(ebridge, ebridge, epoch_atom, "epoch")
  CAF_ADD_ATOM(ebridge, ebridge, ready_atom, "ready")
  CAF_ADD_ATOM(ebridge, ebridge, ack_atom, "ack")
  CAF_ADD_ATOM(ebridge, ebridge, up_to_date_atom, "uptodate")
  CAF_ADD_ATOM(ebridge, ebridge, refetch_atom, "refetch")
  CAF_ADD_ATOM(ebridge, ebridge, source_error_atom, "src_error")
  CAF_ADD_ATOM(ebridge, ebridge, retry_atom, "retry")
  CAF_ADD_ATOM(ebridge, ebridge, status_atom, "status")
  CAF_ADD_ATOM(ebridge, ebridge, ensure_atom, "ensure")
  CAF_ADD_ATOM(ebridge, ebridge, append_atom, "append")
  CAF_ADD_ATOM(ebridge, ebridge, register_atom, "register")
  CAF_ADD_ATOM(ebridge, ebridge, reader_open_atom, "rd_open")
  CAF_ADD_ATOM(ebridge, ebridge, reader_close_atom, "rd_close")
  CAF_ADD_ATOM(ebridge, ebridge, sweep_atom, "sweep")
  CAF_ADD_ATOM(ebridge, ebridge, stop_atom, "stop")
  CAF_ADD_ATOM(ebridge, ebridge, resuming_atom, "resuming")
  CAF_ADD_ATOM(ebridge, ebridge, resume_atom, "resume")
  CAF_ADD_ATOM(ebridge, ebridge, resync_atom, "resync")
  CAF_ADD_ATOM(ebridge, ebridge, touch_due_atom, "touch_due")
  CAF_ADD_ATOM(ebridge, ebridge, rebind_atom, "rebind")

CAF_END_TYPE_ID_BLOCK(ebridge)

namespace caf {
class actor_system_config;
} // namespace caf

namespace ebridge {

/// Registers the project's message types and error category with CAF.
void register_types(caf::actor_system_config& cfg);

} // namespace ebridge
