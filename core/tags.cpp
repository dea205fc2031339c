#include "core/tags.hpp"

#include <algorithm>
#include <cstddef>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/json_depth.hpp"

namespace ebridge {

namespace {

constexpr char hex_digits[] = "0123456789abcdef";

constexpr char32_t replacement_char = 0xFFFD;

bool is_continuation(unsigned char byte) {
  return (byte & 0xC0) == 0x80;
}

/// Decodes the code point at `s[pos]` and advances `pos` past it. Callers may
/// pass any bytes, so a malformed sequence decodes as U+FFFD and advances by
/// one byte, as a lenient decoder would, instead of reading out of bounds.
char32_t next_code_point(std::string_view s, size_t& pos) {
  auto lead = static_cast<unsigned char>(s[pos]);
  if (lead < 0x80) {
    ++pos;
    return lead;
  }
  size_t len;
  char32_t cp;
  char32_t min;
  if ((lead & 0xE0) == 0xC0) {
    len = 2, cp = lead & 0x1F, min = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    len = 3, cp = lead & 0x0F, min = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    len = 4, cp = lead & 0x07, min = 0x10000;
  } else {
    ++pos;
    return replacement_char;
  }
  if (s.size() - pos < len) {
    ++pos;
    return replacement_char;
  }
  for (size_t i = 1; i < len; ++i) {
    auto byte = static_cast<unsigned char>(s[pos + i]);
    if (!is_continuation(byte)) {
      ++pos;
      return replacement_char;
    }
    cp = (cp << 6) | (byte & 0x3F);
  }
  // Overlong forms, UTF-16 surrogates and values past U+10FFFF are not UTF-8.
  if (cp < min || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
    ++pos;
    return replacement_char;
  }
  pos += len;
  return cp;
}

/// Calls `f` with each UTF-16 code unit of `cp`.
template <class F>
void for_each_unit(char32_t cp, F&& f) {
  if (cp < 0x10000) {
    f(static_cast<char16_t>(cp));
  } else {
    cp -= 0x10000;
    f(static_cast<char16_t>(0xD800 + (cp >> 10)));
    f(static_cast<char16_t>(0xDC00 + (cp & 0x3FF)));
  }
}

/// A value whose order is the order of the code point's UTF-16 units: the
/// first unit in the high half, the second (if any) in the low half.
uint32_t utf16_order(char32_t cp) {
  uint32_t result = 0;
  for_each_unit(cp, [&](char16_t unit) { result = (result << 16) | unit; });
  return cp < 0x10000 ? result << 16 : result;
}

/// JavaScript's key order: integer-like keys first, ascending numerically;
/// then the other keys in UTF-16 order.
bool key_before(const std::string& x, const std::string& y) {
  auto x_index = array_index(x);
  auto y_index = array_index(y);
  if (x_index && y_index)
    return *x_index < *y_index;
  if (x_index || y_index)
    return x_index.has_value();
  return js_less(x, y);
}

/// The reason of a nlohmann exception, without its "[json.exception...] "
/// prefix. The text may quote the offending input, which can be invalid
/// UTF-8; other bytes than printable ASCII become '?' so that the message can
/// travel in JSON.
std::string json_error_reason(const nlohmann::json::exception& err) {
  std::string_view what = err.what();
  if (auto end = what.find("] "); end != std::string_view::npos)
    what.remove_prefix(end + 2);
  std::string result{what};
  for (auto& c : result)
    if (auto byte = static_cast<unsigned char>(c); byte < 0x20 || byte > 0x7E)
      c = '?';
  return result;
}

} // namespace

caf::expected<tag_set> tags_from_json(const nlohmann::json& value) {
  if (!value.is_object())
    return make_error(ec::invalid_tags,
                      std::string{"tags must be a JSON object, got "}
                        + value.type_name());
  tag_set result;
  const auto& object = value.get_ref<const nlohmann::json::object_t&>();
  result.pairs.reserve(object.size());
  for (const auto& [key, tag_value] : object) {
    if (!tag_value.is_string())
      return make_error(ec::invalid_tags, "tag " + js_string(key)
                                            + " must have a string value, got "
                                            + tag_value.type_name());
    auto text = tag_value.get<std::string>();
    // Postgres text and jsonb cannot hold U+0000: refuse it here, as bad
    // input, rather than fail later in the database.
    if (key.find('\0') != std::string::npos
        || text.find('\0') != std::string::npos)
      return make_error(ec::invalid_tags, "tag " + js_string(key)
                                            + " contains the character U+0000");
    result.pairs.emplace_back(key, std::move(text));
  }
  // Keys of a JSON object are unique, so the order is total.
  std::sort(result.pairs.begin(), result.pairs.end(),
            [](const auto& x, const auto& y) {
              return key_before(x.first, y.first);
            });
  return result;
}

caf::expected<tag_set> parse_register_body(std::string_view body) {
  auto blank = body.find_first_not_of(" \t\r\n") == std::string_view::npos;
  if (blank)
    return tag_set{};
  if (!json_depth_within(body))
    return make_error(ec::invalid_input,
                      "the body nests arrays and objects deeper than "
                        + std::to_string(max_json_depth) + " levels");
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(body.begin(), body.end());
  } catch (const nlohmann::json::exception& err) {
    return make_error(ec::invalid_input,
                      "the body is not valid JSON: " + json_error_reason(err));
  }
  if (!value.is_object())
    return make_error(ec::invalid_input,
                      std::string{"the body must be a JSON object, got "}
                        + value.type_name());
  auto i = value.find("tags");
  if (i == value.end())
    return tag_set{};
  return tags_from_json(*i);
}

caf::error check_tag_limits(const tag_set& tags, const tag_limits& limits) {
  if (tags.pairs.size() > limits.max_pairs)
    return make_error(ec::invalid_tags, std::to_string(tags.pairs.size())
                                          + " tags, more than "
                                          + std::to_string(limits.max_pairs)
                                          + " (tags.max-pairs)");
  for (const auto& [key, value] : tags.pairs) {
    if (key.size() > limits.max_key_bytes)
      return make_error(ec::invalid_tags,
                        "a tag key of " + std::to_string(key.size())
                          + " bytes, more than "
                          + std::to_string(limits.max_key_bytes)
                          + " (tags.max-key-bytes)");
    if (value.size() > limits.max_value_bytes)
      return make_error(ec::invalid_tags,
                        "tag " + js_string(key) + " has a value of "
                          + std::to_string(value.size()) + " bytes, more than "
                          + std::to_string(limits.max_value_bytes)
                          + " (tags.max-value-bytes)");
  }
  return caf::none;
}

caf::expected<tag_set> parse_tags(std::string_view json_text) {
  if (!json_depth_within(json_text))
    return make_error(ec::invalid_tags,
                      "tags nest arrays and objects deeper than "
                        + std::to_string(max_json_depth) + " levels");
  nlohmann::json value;
  try {
    // Duplicate keys: the last one wins, as in JSON.parse.
    value = nlohmann::json::parse(json_text.begin(), json_text.end());
  } catch (const nlohmann::json::exception& err) {
    // Mostly parse_error; a number too large for a double is out_of_range.
    return make_error(ec::invalid_tags,
                      "tags are not valid JSON: " + json_error_reason(err));
  }
  return tags_from_json(value);
}

std::string to_json(const tag_set& tags) {
  std::string out = "{";
  for (const auto& [key, value] : tags.pairs) {
    if (out.size() > 1)
      out += ',';
    append_js_string(out, key);
    out += ':';
    append_js_string(out, value);
  }
  out += '}';
  return out;
}

std::vector<std::string> tags_index(const tag_set& tags) {
  std::vector<std::string> result;
  result.reserve(tags.pairs.size());
  for (const auto& [key, value] : tags.pairs) {
    std::string entry = "[";
    append_js_string(entry, key);
    entry += ',';
    append_js_string(entry, value);
    entry += ']';
    result.push_back(std::move(entry));
  }
  std::sort(result.begin(), result.end(),
            [](const std::string& x, const std::string& y) {
              return js_less(x, y);
            });
  return result;
}

std::string source_ref(const tag_set& tags) {
  auto hash = fnv1a64_utf16(to_json(tags));
  std::string result(16, '0');
  for (auto i = result.rbegin(); i != result.rend(); ++i, hash >>= 4)
    *i = hex_digits[hash & 0xF];
  return result;
}

std::string stream_path(std::string_view ref) {
  std::string result = "/_entities/";
  result += ref;
  return result;
}

bool is_source_ref(std::string_view ref) {
  return ref.size() == 16 && std::all_of(ref.begin(), ref.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool is_valid_utf8(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    auto start = pos;
    auto cp = next_code_point(text, pos);
    // A decoded U+FFFD is an error unless the bytes really spelled it.
    if (cp == replacement_char && pos - start != 3)
      return false;
  }
  return true;
}

std::u16string to_utf16(std::string_view utf8) {
  std::u16string result;
  result.reserve(utf8.size());
  for (size_t pos = 0; pos < utf8.size();)
    for_each_unit(next_code_point(utf8, pos),
                  [&](char16_t unit) { result += unit; });
  return result;
}

uint64_t fnv1a64_utf16(std::string_view utf8) {
  uint64_t hash = 0xcbf29ce484222325;
  for (size_t pos = 0; pos < utf8.size();)
    for_each_unit(next_code_point(utf8, pos), [&](char16_t unit) {
      hash ^= unit;
      hash *= 0x100000001b3;
    });
  return hash;
}

bool js_less(std::string_view x, std::string_view y) {
  // Compares code point by code point to avoid converting both strings.
  size_t x_pos = 0;
  size_t y_pos = 0;
  while (x_pos < x.size() && y_pos < y.size()) {
    auto x_cp = next_code_point(x, x_pos);
    auto y_cp = next_code_point(y, y_pos);
    if (x_cp != y_cp)
      return utf16_order(x_cp) < utf16_order(y_cp);
  }
  return x_pos == x.size() && y_pos < y.size();
}

std::optional<uint32_t> array_index(std::string_view key) {
  // At most 10 digits, and a leading zero only for "0" itself.
  if (key.empty() || key.size() > 10 || (key.size() > 1 && key[0] == '0'))
    return std::nullopt;
  uint64_t value = 0;
  for (char c : key) {
    if (c < '0' || c > '9')
      return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  // 2^32 - 1 is not an array index in JavaScript.
  if (value > 4294967294)
    return std::nullopt;
  return static_cast<uint32_t>(value);
}

void append_js_string(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += "\\u00";
          out += hex_digits[(c >> 4) & 0xF];
          out += hex_digits[c & 0xF];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

std::string js_string(std::string_view s) {
  std::string result;
  result.reserve(s.size() + 2);
  append_js_string(result, s);
  return result;
}

} // namespace ebridge
