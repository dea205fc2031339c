#pragma once

#include "actors/actors.hpp"
#include "net/view_service.hpp"

namespace ebridge {

/// The HTTP layer's view service on this node's actors: registers and
/// readiness go through the gateway, reads to the manager. Only
/// `anon_send`: it runs on io threads, which must not spawn or block.
class actor_views : public view_service {
public:
  actor_views(gateway_actor gateway, manager_actor manager);

  void
  register_view(std::string tenant, std::string tags_json,
                std::function<void(caf::expected<registration>)> done) override;
  void check_ready(std::function<void(readiness)> done) override;
  void touch(const std::string& tenant, const std::string& ref) override;
  void reader_open(const std::string& tenant, const std::string& ref) override;
  void reader_close(const std::string& tenant, const std::string& ref) override;

private:
  gateway_actor gateway_;
  manager_actor manager_;
};

} // namespace ebridge
