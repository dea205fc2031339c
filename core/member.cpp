#include "core/member.hpp"

#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <system_error>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/json_depth.hpp"
#include "core/tags.hpp"

namespace ebridge {

namespace {

using json = nlohmann::json;

// -- JSON text ----------------------------------------------------------------

/// Parses without throwing; nullopt when the text is not one JSON document.
std::optional<json> parse_json(std::string_view text) {
  if (!json_depth_within(text))
    return std::nullopt;
  auto value = json::parse(text.begin(), text.end(), nullptr, false);
  if (value.is_discarded())
    return std::nullopt;
  return value;
}

/// The canonical text: compact, object keys sorted (nlohmann's objects are
/// ordered maps), non-ASCII as UTF-8. `replace` keeps dump from throwing on
/// invalid UTF-8, which parsed input never holds anyway.
std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

/// The stored form of a nullable JSON field. A JSON `null` counts as absent:
/// once JavaScript has parsed a row (as the original server does), SQL NULL
/// and JSON null are one value, and the event carries `null` for both.
std::optional<std::string> json_field(const json& value) {
  if (value.is_null())
    return std::nullopt;
  return dump(value);
}

/// spawn_args is `{}` when null (SEED.md), JSON null included.
std::string spawn_args_field(const json& value) {
  return value.is_null() ? std::string{"{}"} : dump(value);
}

template <class T>
bool json_integer(const json& value, T& out) {
  using limits = std::numeric_limits<T>;
  // Non-negative integers parse as unsigned; test that case first, since
  // is_number_integer() holds for both.
  if (value.is_number_unsigned()) {
    auto x = value.get<uint64_t>();
    if (x > static_cast<uint64_t>(limits::max()))
      return false;
    out = static_cast<T>(x);
    return true;
  }
  if (value.is_number_integer()) {
    auto x = value.get<int64_t>();
    if (x < limits::min() || x > limits::max())
      return false;
    out = static_cast<T>(x);
    return true;
  }
  return false;
}

template <class T>
std::string integer_kind() {
  return "is not a " + std::to_string(sizeof(T) * 8) + "-bit integer";
}

// -- entity columns -----------------------------------------------------------

caf::error column_error(const char* column, const std::string& what) {
  std::string msg = "entity column \"";
  msg += column;
  msg += "\" ";
  msg += what;
  return make_error(ec::bad_row, std::move(msg));
}

caf::error read_text(const std::optional<std::string>& column, const char* name,
                     std::string& out) {
  if (!column)
    return column_error(name, "is null");
  out = *column;
  return {};
}

/// A JSON column; a null column reads as JSON null.
caf::error read_json(const std::optional<std::string>& column, const char* name,
                     json& out) {
  if (!column) {
    out = nullptr;
    return {};
  }
  auto value = parse_json(*column);
  if (!value)
    return column_error(name, "is not valid JSON");
  out = std::move(*value);
  return {};
}

/// Postgres prints integers in plain decimal: no '+', no spaces.
template <class T>
caf::error read_integer(const std::string& text, const char* name, T& out) {
  auto first = text.data();
  auto last = first + text.size();
  auto [end, err] = std::from_chars(first, last, out);
  if (err != std::errc{} || end != last)
    return column_error(name, integer_kind<T>());
  return {};
}

// -- events -------------------------------------------------------------------

caf::error event_error(const std::string& what) {
  return make_error(ec::bad_row, "members event: " + what);
}

/// The member `name` of `object`, or nullptr when absent.
const json* member_of(const json& object, const char* name) {
  auto i = object.find(name);
  return i == object.end() ? nullptr : &*i;
}

bool is_null_or_absent(const json* value) {
  return value == nullptr || value->is_null();
}

/// Rebuilds a row from its to_json form, canonicalized as make_member_row
/// does, so that a round trip yields an equal row.
caf::error row_from_json(const json& value, const std::string& where,
                         member_row& row) {
  if (!value.is_object())
    return event_error(where + " is not an object");
  auto field_error = [&](const char* name, const std::string& what) {
    return event_error(where + "." + name + " " + what);
  };
  auto read_string = [&](const char* name, std::string& out) -> caf::error {
    auto field = member_of(value, name);
    if (field == nullptr || !field->is_string())
      return field_error(name, "is not a string");
    out = field->get<std::string>();
    return {};
  };
  if (auto err = read_string("url", row.url))
    return err;
  if (auto err = read_string("type", row.type))
    return err;
  if (auto err = read_string("status", row.status))
    return err;
  auto tags = member_of(value, "tags");
  if (tags == nullptr || !tags->is_object())
    return field_error("tags", "is not an object");
  row.tags = dump(*tags);
  auto spawn_args = member_of(value, "spawn_args");
  row.spawn_args = spawn_args ? spawn_args_field(*spawn_args) : "{}";
  if (auto parent = member_of(value, "parent"); !is_null_or_absent(parent)) {
    if (!parent->is_string())
      return field_error("parent", "is not a string");
    row.parent = parent->get<std::string>();
  }
  auto revision = member_of(value, "type_revision");
  if (!is_null_or_absent(revision)) {
    int32_t x = 0;
    if (!json_integer(*revision, x))
      return field_error("type_revision", integer_kind<int32_t>());
    row.type_revision = x;
  }
  if (auto inbox = member_of(value, "inbox_schemas"))
    row.inbox_schemas = json_field(*inbox);
  if (auto state = member_of(value, "state_schemas"))
    row.state_schemas = json_field(*state);
  auto read_time = [&](const char* name, int64_t& out) -> caf::error {
    auto field = member_of(value, name);
    if (field == nullptr || !json_integer(*field, out))
      return field_error(name, integer_kind<int64_t>());
    return {};
  };
  if (auto err = read_time("created_at", row.created_at))
    return err;
  return read_time("updated_at", row.updated_at);
}

void append_optional_string(std::string& out,
                            const std::optional<std::string>& value) {
  if (value)
    append_js_string(out, *value);
  else
    out += "null";
}

/// JSON fields hold canonical JSON text already and go out verbatim.
void append_optional_json(std::string& out,
                          const std::optional<std::string>& value) {
  out += value ? *value : std::string{"null"};
}

void append_digits(std::string& out, int64_t value, int width) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%0*" PRId64, width, value);
  out += buf;
}

} // namespace

// -- member_row ---------------------------------------------------------------

bool operator==(const member_row& x, const member_row& y) {
  auto fields = [](const member_row& r) {
    return std::tie(r.url, r.type, r.status, r.tags, r.spawn_args, r.parent,
                    r.type_revision, r.inbox_schemas, r.state_schemas,
                    r.created_at, r.updated_at);
  };
  return fields(x) == fields(y);
}

caf::expected<std::string> canonical_json(std::string_view text) {
  auto value = parse_json(text);
  if (!value)
    return make_error(ec::bad_row, "invalid JSON");
  return dump(*value);
}

const std::array<entity_column, 12> entity_column_table{{
  {"tenant_id", "text", nullptr},
  {"url", "text", &entity_columns::url},
  {"type", "text", &entity_columns::type},
  {"status", "text", &entity_columns::status},
  {"tags", "jsonb", &entity_columns::tags},
  {"spawn_args", "jsonb", &entity_columns::spawn_args},
  {"parent", "text", &entity_columns::parent},
  {"type_revision", "integer", &entity_columns::type_revision},
  {"inbox_schemas", "jsonb", &entity_columns::inbox_schemas},
  {"state_schemas", "jsonb", &entity_columns::state_schemas},
  {"created_at", "bigint", &entity_columns::created_at},
  {"updated_at", "bigint", &entity_columns::updated_at},
}};

caf::expected<member_row> make_member_row(const entity_columns& columns) {
  member_row row;
  if (auto err = read_text(columns.url, "url", row.url))
    return err;
  if (auto err = read_text(columns.type, "type", row.type))
    return err;
  if (auto err = read_text(columns.status, "status", row.status))
    return err;
  if (!columns.tags)
    return column_error("tags", "is null");
  json value;
  if (auto err = read_json(columns.tags, "tags", value))
    return err;
  if (!value.is_object())
    return column_error("tags", "is not a JSON object");
  row.tags = dump(value);
  if (auto err = read_json(columns.spawn_args, "spawn_args", value))
    return err;
  row.spawn_args = spawn_args_field(value);
  row.parent = columns.parent;
  if (columns.type_revision) {
    int32_t revision = 0; // Postgres `integer`
    if (auto err = read_integer(*columns.type_revision, "type_revision",
                                revision))
      return err;
    row.type_revision = revision;
  }
  if (auto err = read_json(columns.inbox_schemas, "inbox_schemas", value))
    return err;
  row.inbox_schemas = json_field(value);
  if (auto err = read_json(columns.state_schemas, "state_schemas", value))
    return err;
  row.state_schemas = json_field(value);
  if (!columns.created_at)
    return column_error("created_at", "is null");
  if (auto err = read_integer(*columns.created_at, "created_at",
                              row.created_at))
    return err;
  if (!columns.updated_at)
    return column_error("updated_at", "is null");
  if (auto err = read_integer(*columns.updated_at, "updated_at",
                              row.updated_at))
    return err;
  return row;
}

std::string to_json(const member_row& row) {
  // Built by hand: the field order is part of the format (SEED.md), and a
  // nlohmann object would sort the keys.
  std::string out;
  out.reserve(160 + row.url.size() + row.tags.size() + row.spawn_args.size());
  out += "{\"url\":";
  append_js_string(out, row.url);
  out += ",\"type\":";
  append_js_string(out, row.type);
  out += ",\"status\":";
  append_js_string(out, row.status);
  out += ",\"tags\":";
  out += row.tags;
  out += ",\"spawn_args\":";
  out += row.spawn_args;
  out += ",\"parent\":";
  append_optional_string(out, row.parent);
  out += ",\"type_revision\":";
  out += row.type_revision ? std::to_string(*row.type_revision) : "null";
  out += ",\"inbox_schemas\":";
  append_optional_json(out, row.inbox_schemas);
  out += ",\"state_schemas\":";
  append_optional_json(out, row.state_schemas);
  out += ",\"created_at\":";
  out += std::to_string(row.created_at);
  out += ",\"updated_at\":";
  out += std::to_string(row.updated_at);
  out += '}';
  return out;
}

// -- member_event -------------------------------------------------------------

const char* to_string(event_op op) {
  switch (op) {
    case event_op::insert:
      return "insert";
    case event_op::update:
      return "update";
    case event_op::remove:
      return "delete";
  }
  return "unknown";
}

std::string to_json(const member_event& event, int64_t timestamp_ms) {
  // A row the event lacks is left out; parse_member_event rejects an insert
  // or update without "value" and accepts a delete without "old_value".
  std::string out = "{\"type\":\"members\",\"key\":";
  append_js_string(out, event.key);
  if (event.op == event_op::remove) {
    if (event.old_value) {
      out += ",\"old_value\":";
      out += to_json(*event.old_value);
    }
  } else if (event.value) {
    out += ",\"value\":";
    out += to_json(*event.value);
  }
  out += ",\"headers\":{\"operation\":\"";
  out += to_string(event.op);
  out += "\",\"timestamp\":\"";
  out += iso8601_utc_ms(timestamp_ms);
  out += "\"}}";
  return out;
}

caf::expected<member_event> parse_member_event(std::string_view json_text) {
  auto doc = parse_json(json_text);
  if (!doc)
    return event_error("not valid JSON");
  if (!doc->is_object())
    return event_error("not a JSON object");
  auto type = member_of(*doc, "type");
  if (type == nullptr || !type->is_string() || *type != "members")
    return event_error("type is not \"members\"");
  auto headers = member_of(*doc, "headers");
  if (headers == nullptr || !headers->is_object())
    return event_error("headers is not an object");
  auto operation = member_of(*headers, "operation");
  if (operation == nullptr || !operation->is_string())
    return event_error("headers.operation is not a string");
  member_event event;
  if (*operation == "insert")
    event.op = event_op::insert;
  else if (*operation == "update")
    event.op = event_op::update;
  else if (*operation == "delete")
    event.op = event_op::remove;
  else
    return event_error("unknown operation " + dump(*operation));
  auto key = member_of(*doc, "key");
  if (key != nullptr && !key->is_string())
    return event_error("key is not a string");
  if (event.op == event_op::remove) {
    if (key == nullptr)
      return event_error("delete without key");
    event.key = key->get<std::string>();
    if (auto old = member_of(*doc, "old_value"); !is_null_or_absent(old)) {
      member_row row;
      if (auto err = row_from_json(*old, "old_value", row))
        return err;
      event.old_value = std::move(row);
    }
    return event;
  }
  auto value = member_of(*doc, "value");
  if (value == nullptr)
    return event_error(std::string{to_string(event.op)} + " without value");
  member_row row;
  if (auto err = row_from_json(*value, "value", row))
    return err;
  // The key is the url; an event that omits it still names its member.
  event.key = key ? key->get<std::string>() : row.url;
  event.value = std::move(row);
  return event;
}

std::string iso8601_utc_ms(int64_t epoch_ms) {
  constexpr int64_t ms_per_day = 86'400'000;
  // Floor division, so that times before 1970 fall on the previous day.
  int64_t days = epoch_ms / ms_per_day;
  int64_t ms = epoch_ms % ms_per_day;
  if (ms < 0) {
    ms += ms_per_day;
    --days;
  }
  // civil_from_days (Howard Hinnant): proleptic Gregorian, any int64 day.
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t day = doy - (153 * mp + 2) / 5 + 1;
  int64_t month = mp < 10 ? mp + 3 : mp - 9;
  int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  std::string out;
  out.reserve(32);
  if (year >= 0 && year <= 9999) {
    append_digits(out, year, 4);
  } else {
    // JavaScript's expanded years: a sign and at least six digits.
    out += year < 0 ? '-' : '+';
    append_digits(out, year < 0 ? -year : year, 6);
  }
  out += '-';
  append_digits(out, month, 2);
  out += '-';
  append_digits(out, day, 2);
  out += 'T';
  append_digits(out, ms / 3'600'000, 2);
  out += ':';
  append_digits(out, ms / 60'000 % 60, 2);
  out += ':';
  append_digits(out, ms / 1000 % 60, 2);
  out += '.';
  append_digits(out, ms % 1000, 3);
  out += 'Z';
  return out;
}

// -- membership ---------------------------------------------------------------

std::optional<member_event> membership::apply(const entity_change& change) {
  if (change.op == change_op::remove)
    return remove(change.key);
  // An insert or update without a row carries nothing to apply.
  if (!change.row)
    return std::nullopt;
  // The key is the membership key: a row whose url disagrees is stored and
  // emitted under the key, so that every event's key equals value.url.
  auto row = *change.row;
  row.url = change.key;
  auto i = members_.find(change.key);
  if (i == members_.end()) {
    members_.emplace(change.key, row);
    return member_event{event_op::insert, change.key, std::move(row), {}};
  }
  if (i->second == row)
    return std::nullopt; // no-op updates are suppressed
  i->second = row;
  return member_event{event_op::update, change.key, std::move(row), {}};
}

void membership::fold(const member_event& event) {
  if (event.op == event_op::remove) {
    members_.erase(event.key);
    return;
  }
  if (!event.value)
    return;
  auto row = *event.value;
  row.url = event.key; // as apply stores it
  members_.insert_or_assign(event.key, std::move(row));
}

std::optional<member_event> membership::remove(const std::string& key) {
  auto i = members_.find(key);
  if (i == members_.end())
    return std::nullopt;
  member_event event{event_op::remove, key, {}, std::move(i->second)};
  members_.erase(i);
  return event;
}

} // namespace ebridge
