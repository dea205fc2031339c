#pragma once

#include <string>

namespace ebridge {

/// What the node reports about its readiness to serve.
struct readiness {
  bool ready = false;
  /// Empty when ready, else what is wrong.
  std::string reason;
};

} // namespace ebridge
