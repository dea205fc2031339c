#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json_fwd.hpp>

namespace ebridge {

/// A validated tag set, its pairs in normalized order: the order in which
/// JavaScript lists the keys of an object built from `Object.keys(o).sort()`
/// (integer-like keys first, ascending numerically; then the other keys in
/// UTF-16 code-unit order). Keys are unique.
struct tag_set {
  std::vector<std::pair<std::string, std::string>> pairs;

  friend bool operator==(const tag_set& x, const tag_set& y) {
    return x.pairs == y.pairs;
  }
  friend bool operator!=(const tag_set& x, const tag_set& y) {
    return !(x == y);
  }
};

/// Validates and normalizes a parsed JSON value: it must be an object whose
/// every value is a string. Errors are `ec::invalid_tags`, naming the bad key.
caf::expected<tag_set> tags_from_json(const nlohmann::json& value);

/// Parses JSON text, then as `tags_from_json`. Invalid JSON is
/// `ec::invalid_tags` too.
caf::expected<tag_set> parse_tags(std::string_view json_text);

/// `JSON.stringify(normalizedTags)`: compact, JavaScript's escaping.
std::string to_json(const tag_set& tags);

/// The tags of a register request body: `{"tags":{…}}`; an empty body or
/// a missing `tags` member means `{}`. A body that is not a JSON object is
/// `ec::invalid_input`; bad tags are `ec::invalid_tags`.
caf::expected<tag_set> parse_register_body(std::string_view body);

/// How large the tags of a view a client registers may be.
struct tag_limits {
  size_t max_pairs = 64;
  size_t max_key_bytes = 256;
  size_t max_value_bytes = 1024;
};

/// `ec::invalid_tags` naming the limit the tags pass, or none.
caf::error check_tag_limits(const tag_set& tags, const tag_limits& limits);

/// The tags index entries: for each pair the compact JSON `["key","value"]`,
/// the list sorted by UTF-16 code units.
std::vector<std::string> tags_index(const tag_set& tags);

/// The source ref of a tag set: FNV-1a 64 over the UTF-16 code units of
/// `to_json(tags)`, as 16 lowercase hex digits.
std::string source_ref(const tag_set& tags);

/// The path of a bridge stream: `/_entities/<ref>`.
std::string stream_path(std::string_view ref);

/// A register's answer: the view's source ref and its stream's path.
struct registration {
  std::string source_ref;
  std::string stream_url;
};

/// True if `ref` has the shape of a source ref (16 lowercase hex digits).
bool is_source_ref(std::string_view ref);

// -- JavaScript string semantics, exposed for tests and other modules -------

/// True if `text` is well-formed UTF-8 (no overlong forms, surrogates or
/// values past U+10FFFF).
bool is_valid_utf8(std::string_view text);

/// Converts valid UTF-8 to UTF-16 code units.
std::u16string to_utf16(std::string_view utf8);

/// FNV-1a 64 over the UTF-16 code units of `utf8`.
uint64_t fnv1a64_utf16(std::string_view utf8);

/// JavaScript's default string order: compares UTF-16 code units.
bool js_less(std::string_view x, std::string_view y);

/// The value of an integer-like key ("0" … "4294967294" in canonical
/// decimal form), which JavaScript objects list first.
std::optional<uint32_t> array_index(std::string_view key);

/// Appends `JSON.stringify(s)` to `out`: quotes, and escapes `"`, `\` and
/// control characters (`\b \f \n \r \t`, else `\u00XX`); nothing else.
void append_js_string(std::string& out, std::string_view s);

/// Returns `JSON.stringify(s)`.
std::string js_string(std::string_view s);

} // namespace ebridge
