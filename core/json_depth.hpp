#pragma once

#include <cstddef>
#include <string_view>

namespace ebridge {

/// The deepest nesting of arrays and objects ebridge accepts in any JSON it
/// parses (request bodies, tags, rows, events read back): walks over a
/// parsed document recurse once per level, and about 100,000 levels (a
/// 200 KB body) overflowed the stack and killed the process.
inline constexpr size_t max_json_depth = 256;

/// Whether the arrays and objects of `text` nest at most `limit` deep. Only
/// counts brackets outside strings; whether `text` is JSON at all is the
/// parser's to say. One pass, no recursion, no allocation.
bool json_depth_within(std::string_view text, size_t limit = max_json_depth);

} // namespace ebridge
