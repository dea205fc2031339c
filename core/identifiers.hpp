#pragma once

#include <algorithm>
#include <string_view>

namespace ebridge {

/// True for a name usable as a replication slot or publication without
/// quoting: [a-z0-9_], 1–63 characters (Postgres' identifier length).
inline bool is_feed_name(std::string_view name) {
  return !name.empty() && name.size() <= 63
         && std::all_of(name.begin(), name.end(), [](char c) {
              return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                     || c == '_';
            });
}

} // namespace ebridge
