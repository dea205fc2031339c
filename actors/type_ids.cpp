#include "actors/type_ids.hpp"

#include <caf/actor_system_config.hpp>

#include "core/error.hpp"

namespace ebridge {

void register_types(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::ebridge>();
  cfg.add_error_category(error_category, render_error);
}

} // namespace ebridge
