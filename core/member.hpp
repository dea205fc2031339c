#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

namespace ebridge {

/// The columns of one `entities` row as text, the way both SQL results and
/// pgoutput tuples deliver them; a null column is `std::nullopt`.
struct entity_columns {
  std::optional<std::string> url;
  std::optional<std::string> type;
  std::optional<std::string> status;
  std::optional<std::string> tags;
  std::optional<std::string> spawn_args;
  std::optional<std::string> parent;
  std::optional<std::string> type_revision;
  std::optional<std::string> inbox_schemas;
  std::optional<std::string> state_schemas;
  std::optional<std::string> created_at;
  std::optional<std::string> updated_at;
};

/// A column of `entities` that ebridge reads: its name, its type as
/// Postgres' format_type() prints it, and the field of `entity_columns` its
/// text goes to (nullptr for tenant_id, which scopes a row but is no field).
struct entity_column {
  std::string_view name;
  std::string_view sql_type;
  std::optional<std::string> entity_columns::*field;
};

/// Every column ebridge reads, one table for the migration check, the
/// snapshot query and the replication decoder.
extern const std::array<entity_column, 12> entity_column_table;

/// One member of a view, as SEED.md's member row. JSON-valued fields hold
/// canonical compact JSON text (object keys sorted, no whitespace), so two
/// rows compare equal exactly when their values are equal.
struct member_row {
  std::string url;
  std::string type;
  std::string status;
  std::string tags;       // JSON object
  std::string spawn_args; // JSON; "{}" when the column is null
  std::optional<std::string> parent;
  std::optional<int64_t> type_revision;
  std::optional<std::string> inbox_schemas; // JSON
  std::optional<std::string> state_schemas; // JSON
  int64_t created_at = 0;                   // epoch ms
  int64_t updated_at = 0;                   // epoch ms

  friend bool operator==(const member_row& x, const member_row& y);
  friend bool operator!=(const member_row& x, const member_row& y) {
    return !(x == y);
  }
};

/// Builds a member row from an entity row, validating every column it reads:
/// a missing url/type/status/tags/created_at/updated_at, JSON that does not
/// parse, tags that are not an object, or a non-integer number is
/// `ec::bad_row` naming the column.
caf::expected<member_row> make_member_row(const entity_columns& columns);

/// Canonical compact JSON text of a JSON document, or `ec::bad_row`.
caf::expected<std::string> canonical_json(std::string_view text);

/// Serializes a row as a JSON object, fields in SEED.md order.
std::string to_json(const member_row& row);

/// A change of one entity as a change source reports it.
enum class change_op : uint8_t { insert, update, remove };

struct entity_change {
  change_op op = change_op::insert;
  /// The entity's url (the membership key).
  std::string key;
  /// The new row for insert and update; unused for remove.
  std::optional<member_row> row;
};

/// The operation of a `members` event.
enum class event_op : uint8_t { insert, update, remove };

const char* to_string(event_op op); // "insert", "update", "delete"

/// One State Protocol change event of type `members`.
struct member_event {
  event_op op = event_op::insert;
  std::string key;
  /// The row for insert and update.
  std::optional<member_row> value;
  /// The last row emitted for the key, for delete.
  std::optional<member_row> old_value;
};

/// Serializes an event exactly as SEED.md shows, with `timestamp` the ISO-8601
/// UTC rendering of `timestamp_ms`.
std::string to_json(const member_event& event, int64_t timestamp_ms);

/// Parses one serialized `members` event (as read back from a stream).
/// Anything else is `ec::bad_row`.
caf::expected<member_event> parse_member_event(std::string_view json_text);

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the epoch.
std::string iso8601_utc_ms(int64_t epoch_ms);

/// The members of one view, keyed by url, and the rule that turns an entity
/// change into at most one event.
class membership {
public:
  using map_type = std::map<std::string, member_row>;

  /// Applies a change and returns the event it causes, if any:
  /// remove of a member → delete with the stored row as old_value; remove of
  /// a non-member → nothing; insert/update of a non-member → insert;
  /// of a member whose row differs → update; of an equal row → nothing.
  std::optional<member_event> apply(const entity_change& change);

  /// Applies an event read back from the stream (folding).
  void fold(const member_event& event);

  /// Removes `key` and returns the delete event for it, if it is a member.
  std::optional<member_event> remove(const std::string& key);

  const map_type& members() const noexcept {
    return members_;
  }

  bool contains(const std::string& key) const {
    return members_.count(key) > 0;
  }

  size_t size() const noexcept {
    return members_.size();
  }

private:
  map_type members_;
};

} // namespace ebridge
