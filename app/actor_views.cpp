#include "app/actor_views.hpp"

#include <caf/send.hpp>

namespace ebridge {

actor_views::actor_views(gateway_actor gateway) : gateway_(std::move(gateway)) {
  // nop
}

void actor_views::register_view(
  std::string tenant, std::string tags_json,
  std::function<void(caf::expected<registration>)> done) {
  caf::anon_send(gateway_, register_atom::value, std::move(tenant),
                 std::move(tags_json), registration_callback{std::move(done)});
}

void actor_views::check_ready(std::function<void(readiness)> done) {
  caf::anon_send(gateway_, ready_atom::value,
                 readiness_callback{std::move(done)});
}

void actor_views::touch(const std::string& tenant, const std::string& ref) {
  caf::anon_send(gateway_, touch_atom::value, tenant, ref);
}

void actor_views::reader_open(const std::string& tenant,
                              const std::string& ref) {
  caf::anon_send(gateway_, reader_open_atom::value, tenant, ref);
}

void actor_views::reader_close(const std::string& tenant,
                               const std::string& ref) {
  caf::anon_send(gateway_, reader_close_atom::value, tenant, ref);
}

} // namespace ebridge
