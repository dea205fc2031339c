#pragma once

#include "actors/actors.hpp"
#include "net/view_service.hpp"

namespace ebridge {

/// The HTTP layer's view service on this node's actors: everything goes
/// through the gateway, which knows the actors the supervisor runs now.
/// Only `anon_send`: it runs on io threads, which must not spawn or block.
class actor_views : public view_service {
public:
  explicit actor_views(gateway_actor gateway);

  void
  register_view(std::string tenant, std::string tags_json,
                std::function<void(caf::expected<registration>)> done) override;
  void check_ready(std::function<void(readiness)> done) override;
  void touch(const std::string& tenant, const std::string& ref) override;
  void reader_open(const std::string& tenant, const std::string& ref) override;
  void reader_close(const std::string& tenant, const std::string& ref) override;

private:
  gateway_actor gateway_;
};

} // namespace ebridge
