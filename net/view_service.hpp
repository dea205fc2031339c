#pragma once

#include <functional>
#include <string>

#include <caf/expected.hpp>

#include "core/readiness.hpp"
#include "core/tags.hpp"

namespace ebridge {

/// What the HTTP layer asks of the node's views, whoever keeps them (the
/// program wires it to its actors). Every call returns at once and never
/// blocks an io thread; a completion runs once, on any thread.
class view_service {
public:
  virtual ~view_service();

  /// Registers the view of (tenant, normalized tags JSON); `done` gets its
  /// source ref and stream path once its first snapshot is durable, or why
  /// not.
  virtual void
  register_view(std::string tenant, std::string tags_json,
                std::function<void(caf::expected<registration>)> done)
    = 0;

  /// Whether the node can serve now, and if not why.
  virtual void check_ready(std::function<void(readiness)> done) = 0;

  /// A client asked about the view (any read of its stream).
  virtual void touch(const std::string& tenant, const std::string& ref) = 0;

  /// A read of the view's stream began or ended: a view with readers is
  /// never collected. Every `reader_open` is followed by one `reader_close`.
  virtual void reader_open(const std::string& tenant, const std::string& ref)
    = 0;
  virtual void reader_close(const std::string& tenant, const std::string& ref)
    = 0;
};

} // namespace ebridge
