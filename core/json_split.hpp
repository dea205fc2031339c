#pragma once

#include "core/json_depth.hpp"

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace ebridge {

/// What `split_json` found.
struct json_split_result {
  /// True when the text is one valid JSON value.
  bool ok = false;
  /// True when that value is an array (its elements were reported).
  bool array = false;
  /// How many values were reported.
  size_t count = 0;
  /// True when the text failed only by nesting deeper than allowed.
  bool too_deep = false;
  /// Why the text is not valid JSON, with the byte offset; empty when ok.
  std::string error;
};

/// Checks that `text` is exactly one JSON value (RFC 8259: UTF-8, no
/// surrogate halves, numbers a double can hold, at most `max_depth` nested
/// arrays and objects; a leading UTF-8 byte order mark is skipped) and
/// reports the original bytes of each element when it is an array, or of the
/// whole value otherwise, without surrounding whitespace. Nothing is parsed
/// into a document and nothing recurses: memory and stack do not grow with
/// the text. Reports may already have been made when it then fails.
json_split_result
split_json(std::string_view text,
           const std::function<void(std::string_view)>& report,
           size_t max_depth = max_json_depth);

} // namespace ebridge
