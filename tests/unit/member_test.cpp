#define CAF_SUITE member
#include <caf/test/unit_test.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/member.hpp"

using namespace ebridge;

namespace {

using column = std::optional<std::string> entity_columns::*;

/// Columns as Postgres prints them: jsonb with spaces after ':' and ','.
entity_columns typical_columns(std::string url = "/coder/abc") {
  entity_columns c;
  c.url = std::move(url);
  c.type = "coder";
  c.status = "running";
  c.tags = R"({"team": "infra", "role": "reviewer"})";
  c.spawn_args = R"({"x": [1, 2]})";
  c.type_revision = "3";
  c.state_schemas = R"({"s": {"b": 1, "a": true}})";
  c.created_at = "1735689600123";
  c.updated_at = "1735689600456";
  return c;
}

/// The columns the original always fills, the others null.
entity_columns minimal_columns(std::string url, std::string status = "idle") {
  entity_columns c;
  c.url = std::move(url);
  c.type = "worker";
  c.status = std::move(status);
  c.tags = R"({"team": "infra"})";
  c.created_at = "1000";
  c.updated_at = "2000";
  return c;
}

member_row row_of(const entity_columns& columns) {
  auto row = make_member_row(columns);
  if (!row)
    CAF_FAIL("make_member_row failed: " << describe(row.error()));
  return *row;
}

template <class T>
std::string error_of(const caf::expected<T>& x) {
  return x ? std::string{"no error"} : describe(x.error());
}

/// The canonical text, or the error's description.
std::string canon(std::string_view text) {
  auto x = canonical_json(text);
  return x ? *x : describe(x.error());
}

std::string row_error(const entity_columns& columns) {
  return error_of(make_member_row(columns));
}

std::string event_error(std::string_view text) {
  return error_of(parse_member_event(text));
}

const std::string typical_row_json
  = R"({"url":"/coder/abc","type":"coder","status":"running",)"
    R"("tags":{"role":"reviewer","team":"infra"},"spawn_args":{"x":[1,2]},)"
    R"("parent":null,"type_revision":3,"inbox_schemas":null,)"
    R"("state_schemas":{"s":{"a":true,"b":1}},)"
    R"("created_at":1735689600123,"updated_at":1735689600456})";

entity_change upsert(change_op op, const member_row& row) {
  return entity_change{op, row.url, row};
}

entity_change removal(std::string key) {
  return entity_change{change_op::remove, std::move(key), std::nullopt};
}

std::set<std::string> keys_of(const membership& m) {
  std::set<std::string> result;
  for (auto& kvp : m.members())
    result.insert(kvp.first);
  return result;
}

} // namespace

// -- make_member_row ----------------------------------------------------------

CAF_TEST(a row is built from typical columns) {
  auto row = row_of(typical_columns());
  CAF_CHECK_EQUAL(row.url, "/coder/abc");
  CAF_CHECK_EQUAL(row.type, "coder");
  CAF_CHECK_EQUAL(row.status, "running");
  CAF_CHECK_EQUAL(row.tags, R"({"role":"reviewer","team":"infra"})");
  CAF_CHECK_EQUAL(row.spawn_args, R"({"x":[1,2]})");
  CAF_CHECK(!row.parent);
  CAF_REQUIRE(row.type_revision);
  CAF_CHECK_EQUAL(*row.type_revision, 3);
  CAF_CHECK(!row.inbox_schemas);
  CAF_REQUIRE(row.state_schemas);
  CAF_CHECK_EQUAL(*row.state_schemas, R"({"s":{"a":true,"b":1}})");
  CAF_CHECK_EQUAL(row.created_at, 1735689600123);
  CAF_CHECK_EQUAL(row.updated_at, 1735689600456);
}

CAF_TEST(a row keeps every optional column that is set) {
  auto c = typical_columns();
  c.parent = "/manager/1";
  c.inbox_schemas = R"({"msg": {"type": "object"}})";
  auto row = row_of(c);
  CAF_REQUIRE(row.parent);
  CAF_CHECK_EQUAL(*row.parent, "/manager/1");
  CAF_REQUIRE(row.inbox_schemas);
  CAF_CHECK_EQUAL(*row.inbox_schemas, R"({"msg":{"type":"object"}})");
}

CAF_TEST(null nullable columns stay null and null spawn_args becomes {}) {
  auto row = row_of(minimal_columns("/w/1"));
  CAF_CHECK_EQUAL(row.spawn_args, "{}");
  CAF_CHECK(!row.parent);
  CAF_CHECK(!row.type_revision);
  CAF_CHECK(!row.inbox_schemas);
  CAF_CHECK(!row.state_schemas);
  CAF_CHECK_EQUAL(row.tags, R"({"team":"infra"})");
}

CAF_TEST(a JSON null in a JSON column counts as SQL null) {
  auto c = minimal_columns("/w/1");
  c.spawn_args = "null";
  c.inbox_schemas = "null";
  c.state_schemas = " null ";
  auto row = row_of(c);
  CAF_CHECK_EQUAL(row.spawn_args, "{}");
  CAF_CHECK(!row.inbox_schemas);
  CAF_CHECK(!row.state_schemas);
  CAF_CHECK(row == row_of(minimal_columns("/w/1")));
}

CAF_TEST(JSON columns may hold any JSON value but tags) {
  auto c = minimal_columns("/w/1");
  c.spawn_args = R"([3, "a", null])";
  c.inbox_schemas = "42";
  c.state_schemas = R"("text")";
  auto row = row_of(c);
  CAF_CHECK_EQUAL(row.spawn_args, R"([3,"a",null])");
  CAF_CHECK_EQUAL(row.inbox_schemas.value_or(""), "42");
  CAF_CHECK_EQUAL(row.state_schemas.value_or(""), R"("text")");
}

CAF_TEST(tag values are not checked beyond tags being an object) {
  auto c = minimal_columns("/w/1");
  c.tags = R"({"n": 1, "o": {"k": null}, "": "empty key"})";
  CAF_CHECK_EQUAL(row_of(c).tags, R"({"":"empty key","n":1,"o":{"k":null}})");
  c.tags = "{}";
  CAF_CHECK_EQUAL(row_of(c).tags, "{}");
}

CAF_TEST(non-ASCII text stays UTF-8 and escapes are decoded) {
  auto c = minimal_columns("/w/é");
  c.tags = R"({"city": "Zürich", "e": "\u00e9", "emoji": "\ud83d\ude00"})";
  auto row = row_of(c);
  CAF_CHECK_EQUAL(row.url, "/w/\xc3\xa9");
  CAF_CHECK_EQUAL(row.tags, "{\"city\":\"Z\xc3\xbcrich\",\"e\":\"\xc3\xa9\","
                            "\"emoji\":\"\xf0\x9f\x98\x80\"}");
}

CAF_TEST(control characters in JSON strings are re-escaped) {
  auto c = minimal_columns("/w/1");
  c.tags = R"({"k": "a\nb\u0001\"\\/"})";
  CAF_CHECK_EQUAL(row_of(c).tags, R"({"k":"a\nb\u0001\"\\/"})");
}

CAF_TEST(every missing required column is a bad row naming it) {
  std::vector<std::pair<column, std::string>> required{
    {&entity_columns::url, "url"},
    {&entity_columns::type, "type"},
    {&entity_columns::status, "status"},
    {&entity_columns::tags, "tags"},
    {&entity_columns::created_at, "created_at"},
    {&entity_columns::updated_at, "updated_at"},
  };
  for (auto& [member, name] : required) {
    auto c = typical_columns();
    c.*member = std::nullopt;
    auto row = make_member_row(c);
    CAF_REQUIRE(!row);
    CAF_CHECK_EQUAL(row.error().category(), error_category);
    CAF_CHECK_EQUAL(row.error().code(), static_cast<uint8_t>(ec::bad_row));
    CAF_CHECK_EQUAL(describe(row.error()),
                    "bad_row: entity column \"" + name + "\" is null");
  }
}

CAF_TEST(tags that are not a JSON object are a bad row) {
  for (auto text : {"[]", R"(["a", "b"])", "null", R"("a")", "1", "true"}) {
    auto c = typical_columns();
    c.tags = text;
    CAF_CHECK_EQUAL(row_error(c),
                    "bad_row: entity column \"tags\" is not a JSON object");
  }
}

CAF_TEST(invalid JSON in any JSON column is a bad row naming it) {
  std::vector<std::pair<column, std::string>> json_columns{
    {&entity_columns::tags, "tags"},
    {&entity_columns::spawn_args, "spawn_args"},
    {&entity_columns::inbox_schemas, "inbox_schemas"},
    {&entity_columns::state_schemas, "state_schemas"},
  };
  for (auto& [member, name] : json_columns) {
    for (auto text : {"", "{", R"({"a": })", "{} {}", "{}x", "nul", "'a'",
                      R"({"a": "\ud800"})", "\"\xff\"", "1e400"}) {
      auto c = typical_columns();
      c.*member = text;
      CAF_CHECK_EQUAL(row_error(c), "bad_row: entity column \"" + name
                                      + "\" is not valid JSON");
    }
  }
}

CAF_TEST(type_revision must be a 32-bit integer) {
  auto c = typical_columns();
  for (auto text : {"", "abc", "1.5", "1e3", " 1", "1 ", "+1", "0x10",
                    "2147483648", "-2147483649", "99999999999999999999"}) {
    c.type_revision = text;
    CAF_CHECK_EQUAL(row_error(c), "bad_row: entity column \"type_revision\" "
                                  "is not a 32-bit integer");
  }
  c.type_revision = "2147483647";
  CAF_CHECK_EQUAL(row_of(c).type_revision.value_or(0), 2147483647);
  c.type_revision = "-2147483648";
  CAF_CHECK_EQUAL(row_of(c).type_revision.value_or(0), -2147483648LL);
  c.type_revision = "0";
  CAF_CHECK_EQUAL(row_of(c).type_revision.value_or(-1), 0);
}

CAF_TEST(created_at and updated_at must be 64-bit integers) {
  for (auto name : {"created_at", "updated_at"}) {
    column member = std::string{name} == "created_at"
                      ? &entity_columns::created_at
                      : &entity_columns::updated_at;
    for (auto text : {"", "12x", "1.0", "-", "9223372036854775808",
                      "-9223372036854775809", "1,000"}) {
      auto c = typical_columns();
      c.*member = text;
      CAF_CHECK_EQUAL(row_error(c), "bad_row: entity column \""
                                      + std::string{name}
                                      + "\" is not a 64-bit integer");
    }
  }
  auto c = typical_columns();
  c.created_at = "-9223372036854775808";
  c.updated_at = "9223372036854775807";
  auto row = row_of(c);
  CAF_CHECK_EQUAL(row.created_at, std::numeric_limits<int64_t>::min());
  CAF_CHECK_EQUAL(row.updated_at, std::numeric_limits<int64_t>::max());
}

CAF_TEST(the first bad column in SEED order is reported) {
  auto c = typical_columns();
  c.status = std::nullopt;
  c.tags = "[]";
  CAF_CHECK_EQUAL(row_error(c), "bad_row: entity column \"status\" is null");
}

// -- canonical form and equality ----------------------------------------------

CAF_TEST(canonical_json sorts keys and drops whitespace) {
  auto x = canonical_json(R"({"b":1,"a":2})");
  auto y = canonical_json(R"({"a": 2, "b": 1})");
  CAF_REQUIRE(x && y);
  CAF_CHECK_EQUAL(*x, R"({"a":2,"b":1})");
  CAF_CHECK_EQUAL(*x, *y);
  auto nested = canonical_json(
    " {\"z\" : [ {\"d\":1, \"c\":2}, 3 ],\n\"y\":{}} ");
  CAF_REQUIRE(nested);
  CAF_CHECK_EQUAL(*nested, R"({"y":{},"z":[{"c":2,"d":1},3]})");
}

CAF_TEST(canonical_json keeps array order and scalar documents) {
  CAF_CHECK_EQUAL(canon("[3, 1, 2]"), "[3,1,2]");
  CAF_CHECK_EQUAL(canon("null"), "null");
  CAF_CHECK_EQUAL(canon(" \"a\" "), R"("a")");
  CAF_CHECK_EQUAL(canon("-12"), "-12");
  CAF_CHECK_EQUAL(canon("18446744073709551615"), "18446744073709551615");
  CAF_CHECK_EQUAL(canon("1.5"), "1.5");
}

CAF_TEST(canonical_json is idempotent) {
  for (auto text : {R"({"b": [1.25, -0.5e-3, 1e21], "a": "\u00e9\n"})",
                    R"([{"k": 1.0}, 12345678901234567890123])"}) {
    auto once = canonical_json(text);
    CAF_REQUIRE(once);
    auto twice = canonical_json(*once);
    CAF_REQUIRE(twice);
    CAF_CHECK_EQUAL(*once, *twice);
  }
}

CAF_TEST(canonical_json keeps the last of duplicate keys as Postgres does) {
  CAF_CHECK_EQUAL(canon(R"({"a": 1, "a": 2})"), R"({"a":2})");
}

CAF_TEST(canonical_json rejects invalid JSON as a bad row) {
  for (auto text : {"", "{", "[1,]", "{'a': 1}", "{} []", "// x\n{}"}) {
    auto x = canonical_json(text);
    CAF_REQUIRE(!x);
    CAF_CHECK_EQUAL(describe(x.error()), "bad_row: invalid JSON");
  }
}

CAF_TEST(rows from differently spelled but equal JSON compare equal) {
  auto c1 = typical_columns();
  auto c2 = typical_columns();
  c1.tags = R"({"b":1,"a":2})";
  c2.tags = R"({"a": 2, "b": 1})";
  c2.spawn_args = "{\n  \"x\" : [ 1 , 2 ]\n}";
  c2.state_schemas = R"({"s": {"a": true, "b": 1}})";
  auto x = row_of(c1);
  auto y = row_of(c2);
  CAF_CHECK(x == y);
  CAF_CHECK(!(x != y));
}

CAF_TEST(rows differing in any one field compare unequal) {
  auto base = row_of(typical_columns());
  std::vector<std::function<void(member_row&)>> changes{
    [](member_row& r) { r.url += "x"; },
    [](member_row& r) { r.type = "other"; },
    [](member_row& r) { r.status = "idle"; },
    [](member_row& r) { r.tags = R"({"role":"reviewer"})"; },
    [](member_row& r) { r.spawn_args = "{}"; },
    [](member_row& r) { r.parent = "/p"; },
    [](member_row& r) { r.type_revision = std::nullopt; },
    [](member_row& r) { r.type_revision = 4; },
    [](member_row& r) { r.inbox_schemas = "{}"; },
    [](member_row& r) { r.state_schemas = std::nullopt; },
    [](member_row& r) { r.created_at += 1; },
    [](member_row& r) { r.updated_at += 1; },
  };
  for (auto& change : changes) {
    auto other = base;
    change(other);
    CAF_CHECK(base != other);
    CAF_CHECK(!(base == other));
  }
  auto same
    = base; // NOLINT(performance-unnecessary-copy-initialization): the copy is what is tested
  CAF_CHECK(base == same);
}

// -- serialization ------------------------------------------------------------

CAF_TEST(a row serializes with its fields in SEED order) {
  CAF_CHECK_EQUAL(to_json(row_of(typical_columns())), typical_row_json);
}

CAF_TEST(a row with null columns serializes nulls and an empty spawn_args) {
  CAF_CHECK_EQUAL(
    to_json(row_of(minimal_columns("/w/1"))),
    R"({"url":"/w/1","type":"worker","status":"idle",)"
    R"("tags":{"team":"infra"},"spawn_args":{},"parent":null,)"
    R"("type_revision":null,"inbox_schemas":null,)"
    R"("state_schemas":null,"created_at":1000,"updated_at":2000})");
}

CAF_TEST(a row with every column set serializes each) {
  auto c = typical_columns("/c/1");
  c.parent = "/m/0";
  c.type_revision = "-7";
  c.inbox_schemas = R"({"b": [], "a": null})";
  c.created_at = "-1";
  c.updated_at = "0";
  CAF_CHECK_EQUAL(to_json(row_of(c)),
                  R"({"url":"/c/1","type":"coder","status":"running",)"
                  R"("tags":{"role":"reviewer","team":"infra"},)"
                  R"("spawn_args":{"x":[1,2]},"parent":"/m/0",)"
                  R"("type_revision":-7,"inbox_schemas":{"a":null,"b":[]},)"
                  R"("state_schemas":{"s":{"a":true,"b":1}},)"
                  R"("created_at":-1,"updated_at":0})");
}

CAF_TEST(row strings are escaped as JavaScript does) {
  auto c = minimal_columns("/w/\"q\"\\\n\t\x01/\xc3\xa9");
  c.type = "a\x7f";
  c.parent = "p\r";
  CAF_CHECK_EQUAL(to_json(row_of(c)),
                  "{\"url\":\"/w/\\\"q\\\"\\\\\\n\\t\\u0001/\xc3\xa9\","
                  "\"type\":\"a\x7f\",\"status\":\"idle\","
                  "\"tags\":{\"team\":\"infra\"},\"spawn_args\":{},"
                  "\"parent\":\"p\\r\",\"type_revision\":null,"
                  "\"inbox_schemas\":null,\"state_schemas\":null,"
                  "\"created_at\":1000,\"updated_at\":2000}");
}

CAF_TEST(an insert event serializes exactly as SEED shows) {
  auto row = row_of(typical_columns());
  member_event e{event_op::insert, row.url, row, std::nullopt};
  CAF_CHECK_EQUAL(to_json(e, 1767323045678),
                  R"({"type":"members","key":"/coder/abc","value":)"
                    + typical_row_json
                    + R"(,"headers":{"operation":"insert",)"
                      R"("timestamp":"2026-01-02T03:04:05.678Z"}})");
}

CAF_TEST(an update event serializes exactly as SEED shows) {
  auto row = row_of(minimal_columns("/w/1", "running"));
  member_event e{event_op::update, row.url, row, std::nullopt};
  CAF_CHECK_EQUAL(
    to_json(e, 1767323045678),
    R"({"type":"members","key":"/w/1","value":{"url":"/w/1","type":"worker",)"
    R"("status":"running","tags":{"team":"infra"},"spawn_args":{},)"
    R"("parent":null,"type_revision":null,"inbox_schemas":null,)"
    R"("state_schemas":null,"created_at":1000,"updated_at":2000},)"
    R"("headers":{"operation":"update",)"
    R"("timestamp":"2026-01-02T03:04:05.678Z"}})");
}

CAF_TEST(a delete event carries old_value and no value) {
  auto row = row_of(minimal_columns("/w/1"));
  member_event e{event_op::remove, row.url, std::nullopt, row};
  CAF_CHECK_EQUAL(
    to_json(e, 0),
    R"({"type":"members","key":"/w/1","old_value":{"url":"/w/1",)"
    R"("type":"worker","status":"idle","tags":{"team":"infra"},)"
    R"("spawn_args":{},"parent":null,"type_revision":null,)"
    R"("inbox_schemas":null,"state_schemas":null,"created_at":1000,)"
    R"("updated_at":2000},"headers":{"operation":"delete",)"
    R"("timestamp":"1970-01-01T00:00:00.000Z"}})");
}

CAF_TEST(event keys are escaped) {
  member_event e{event_op::remove, "/w/\"1\"", std::nullopt, std::nullopt};
  CAF_CHECK_EQUAL(to_json(e, 0), R"({"type":"members","key":"/w/\"1\"",)"
                                 R"("headers":{"operation":"delete",)"
                                 R"("timestamp":"1970-01-01T00:00:00.000Z"}})");
}

CAF_TEST(event operations have their SEED names) {
  CAF_CHECK_EQUAL(std::string{to_string(event_op::insert)}, "insert");
  CAF_CHECK_EQUAL(std::string{to_string(event_op::update)}, "update");
  CAF_CHECK_EQUAL(std::string{to_string(event_op::remove)}, "delete");
}

// -- iso8601_utc_ms -----------------------------------------------------------

CAF_TEST(timestamps render as ISO-8601 UTC with milliseconds) {
  CAF_CHECK_EQUAL(iso8601_utc_ms(0), "1970-01-01T00:00:00.000Z");
  CAF_CHECK_EQUAL(iso8601_utc_ms(1735689600123), "2025-01-01T00:00:00.123Z");
  CAF_CHECK_EQUAL(iso8601_utc_ms(1767323045678), "2026-01-02T03:04:05.678Z");
  CAF_CHECK_EQUAL(iso8601_utc_ms(86399999), "1970-01-01T23:59:59.999Z");
  CAF_CHECK_EQUAL(iso8601_utc_ms(86400000), "1970-01-02T00:00:00.000Z");
}

CAF_TEST(timestamps before the epoch round down) {
  CAF_CHECK_EQUAL(iso8601_utc_ms(-1), "1969-12-31T23:59:59.999Z");
  CAF_CHECK_EQUAL(iso8601_utc_ms(-86400000), "1969-12-31T00:00:00.000Z");
  CAF_CHECK_EQUAL(iso8601_utc_ms(-86400001), "1969-12-30T23:59:59.999Z");
  CAF_CHECK_EQUAL(iso8601_utc_ms(-2203891200000), "1900-03-01T00:00:00.000Z");
}

CAF_TEST(timestamps handle leap days) {
  CAF_CHECK_EQUAL(iso8601_utc_ms(1709208000000), "2024-02-29T12:00:00.000Z");
  CAF_CHECK_EQUAL(iso8601_utc_ms(951782400000), "2000-02-29T00:00:00.000Z");
  // 1900 is no leap year: February 28 is followed by March 1.
  CAF_CHECK_EQUAL(iso8601_utc_ms(-2203891200001), "1900-02-28T23:59:59.999Z");
}

CAF_TEST(timestamps far from now use the JavaScript year forms) {
  CAF_CHECK_EQUAL(iso8601_utc_ms(253402300799999), "9999-12-31T23:59:59.999Z");
  CAF_CHECK_EQUAL(iso8601_utc_ms(253402300800000),
                  "+010000-01-01T00:00:00.000Z");
  CAF_CHECK_EQUAL(iso8601_utc_ms(-62167219200000), "0000-01-01T00:00:00.000Z");
  CAF_CHECK_EQUAL(iso8601_utc_ms(-62167219200001),
                  "-000001-12-31T23:59:59.999Z");
  // The limits of a JavaScript Date.
  CAF_CHECK_EQUAL(iso8601_utc_ms(8640000000000000),
                  "+275760-09-13T00:00:00.000Z");
  CAF_CHECK_EQUAL(iso8601_utc_ms(-8640000000000000),
                  "-271821-04-20T00:00:00.000Z");
}

CAF_TEST(timestamps at the int64 limits do not overflow) {
  CAF_CHECK_EQUAL(iso8601_utc_ms(std::numeric_limits<int64_t>::max()),
                  "+292278994-08-17T07:12:55.807Z");
  CAF_CHECK_EQUAL(iso8601_utc_ms(std::numeric_limits<int64_t>::min()),
                  "-292275055-05-16T16:47:04.192Z");
}

// -- parse_member_event -------------------------------------------------------

CAF_TEST(parsing a serialized event gives the event back) {
  auto full = typical_columns("/c/\"1\"\n\xc3\xa9");
  full.parent = "/m/0";
  full.inbox_schemas = R"({"b": [1.5, "\u00e9"], "a": {}})";
  std::vector<member_row> rows{row_of(typical_columns()),
                               row_of(minimal_columns("/w/1")), row_of(full)};
  for (auto& row : rows) {
    for (auto op : {event_op::insert, event_op::update, event_op::remove}) {
      member_event e{op, row.url, std::nullopt, std::nullopt};
      if (op == event_op::remove)
        e.old_value = row;
      else
        e.value = row;
      auto text = to_json(e, 1767323045678);
      auto parsed = parse_member_event(text);
      CAF_REQUIRE(parsed);
      CAF_CHECK(parsed->op == op);
      CAF_CHECK_EQUAL(parsed->key, row.url);
      if (op == event_op::remove) {
        CAF_CHECK(!parsed->value);
        CAF_REQUIRE(parsed->old_value);
        CAF_CHECK(*parsed->old_value == row);
      } else {
        CAF_CHECK(!parsed->old_value);
        CAF_REQUIRE(parsed->value);
        CAF_CHECK(*parsed->value == row);
      }
      CAF_CHECK_EQUAL(to_json(*parsed, 1767323045678), text);
    }
  }
}

CAF_TEST(parsing canonicalizes rows written by others) {
  auto parsed = parse_member_event(
    R"({"headers":{"operation":"insert"},"value":{"updated_at":2000,)"
    R"("created_at":1000,"tags":{"team":"infra"},"status":"idle",)"
    R"("type":"worker","url":"/w/1","spawn_args":null,)"
    R"("inbox_schemas":null},"key":"/w/1","type":"members"})");
  CAF_REQUIRE(parsed);
  CAF_REQUIRE(parsed->value);
  CAF_CHECK(*parsed->value == row_of(minimal_columns("/w/1")));
  auto sorted = parse_member_event(
    R"({"type":"members","key":"/w/1","value":{"url":"/w/1","type":"worker",)"
    R"("status":"idle","tags":{"z":"1","a":"2"},"spawn_args":{"b":1,"a":[]},)"
    R"("created_at":1,"updated_at":2},"headers":{"operation":"update"}})");
  CAF_REQUIRE(sorted);
  CAF_REQUIRE(sorted->value);
  CAF_CHECK_EQUAL(sorted->value->tags, R"({"a":"2","z":"1"})");
  CAF_CHECK_EQUAL(sorted->value->spawn_args, R"({"a":[],"b":1})");
}

CAF_TEST(parsing tolerates unknown fields and a missing timestamp) {
  auto parsed = parse_member_event(
    R"({"type":"members","key":"/w/1","extra":[1,{"x":2}],)"
    R"("value":{"url":"/w/1","type":"worker","status":"idle",)"
    R"("tags":{"team":"infra"},"created_at":1000,"updated_at":2000,)"
    R"("subscription_id":"s"},)"
    R"("headers":{"operation":"update","txid":7}})");
  CAF_REQUIRE(parsed);
  CAF_CHECK(parsed->op == event_op::update);
  CAF_CHECK_EQUAL(parsed->key, "/w/1");
  CAF_REQUIRE(parsed->value);
  CAF_CHECK(*parsed->value == row_of(minimal_columns("/w/1")));
}

CAF_TEST(an insert without a key takes the key from the row url) {
  auto parsed = parse_member_event(
    R"({"type":"members","value":{"url":"/w/1","type":"worker",)"
    R"("status":"idle","tags":{"team":"infra"},"created_at":1000,)"
    R"("updated_at":2000},"headers":{"operation":"insert"}})");
  CAF_REQUIRE(parsed);
  CAF_CHECK_EQUAL(parsed->key, "/w/1");
}

CAF_TEST(a delete without old_value still names the key) {
  for (auto text :
       {R"({"type":"members","key":"/w/1","headers":{"operation":"delete"}})",
        R"({"type":"members","key":"/w/1","old_value":null,)"
        R"("headers":{"operation":"delete","timestamp":"x"}})"}) {
    auto parsed = parse_member_event(text);
    CAF_REQUIRE(parsed);
    CAF_CHECK(parsed->op == event_op::remove);
    CAF_CHECK_EQUAL(parsed->key, "/w/1");
    CAF_CHECK(!parsed->old_value);
    CAF_CHECK(!parsed->value);
  }
}

CAF_TEST(malformed events are bad rows with a clear message) {
  auto prefix = std::string{"bad_row: members event: "};
  std::string good_row = R"({"url":"/w/1","type":"worker","status":"idle",)"
                         R"("tags":{},"created_at":1,"updated_at":2})";
  auto with_value = [&](const std::string& value) {
    return R"({"type":"members","key":"/w/1","value":)" + value
           + R"(,"headers":{"operation":"insert"}})";
  };
  auto replace = [&](const std::string& field, const std::string& by) {
    const auto& row = good_row;
    auto pos = row.find("\"" + field + "\":");
    // Every field value but the last is followed by the first ',' after it.
    auto end = std::min(row.find(',', pos), row.size() - 1);
    return row.substr(0, pos) + by + row.substr(end);
  };
  std::vector<std::pair<std::string, std::string>> cases{
    {"", "not valid JSON"},
    {"{", "not valid JSON"},
    {"{} x", "not valid JSON"},
    {"[]", "not a JSON object"},
    {"null", "not a JSON object"},
    {R"({"key":"/w/1","headers":{"operation":"delete"}})",
     "type is not \"members\""},
    {R"({"type":"entities","key":"/w/1","headers":{"operation":"delete"}})",
     "type is not \"members\""},
    {R"({"type":1,"key":"/w/1","headers":{"operation":"delete"}})",
     "type is not \"members\""},
    {R"({"type":"members","key":"/w/1"})", "headers is not an object"},
    {R"({"type":"members","key":"/w/1","headers":[]})",
     "headers is not an object"},
    {R"({"type":"members","key":"/w/1","headers":{}})",
     "headers.operation is not a string"},
    {R"({"type":"members","key":"/w/1","headers":{"operation":3}})",
     "headers.operation is not a string"},
    {R"({"type":"members","key":"/w/1","headers":{"operation":"upsert"}})",
     "unknown operation \"upsert\""},
    {R"({"type":"members","headers":{"operation":"delete"}})",
     "delete without key"},
    {R"({"type":"members","key":null,"headers":{"operation":"delete"}})",
     "key is not a string"},
    {R"({"type":"members","key":1,"headers":{"operation":"delete"}})",
     "key is not a string"},
    {R"({"type":"members","key":"/w/1","headers":{"operation":"insert"}})",
     "insert without value"},
    {R"({"type":"members","key":"/w/1","headers":{"operation":"update"}})",
     "update without value"},
    {R"({"type":"members","key":"/w/1","old_value":[],)"
     R"("headers":{"operation":"delete"}})",
     "old_value is not an object"},
    {R"({"type":"members","key":"/w/1","old_value":{"url":"/w/1"},)"
     R"("headers":{"operation":"delete"}})",
     "old_value.type is not a string"},
    {with_value("null"), "value is not an object"},
    {with_value("\"row\""), "value is not an object"},
    {with_value(replace("url", R"("url":5)")), "value.url is not a string"},
    {with_value(replace("url", R"("x":5)")), "value.url is not a string"},
    {with_value(replace("type", R"("type":null)")),
     "value.type is not a string"},
    {with_value(replace("status", R"("status":[])")),
     "value.status is not a string"},
    {with_value(replace("tags", R"("tags":[])")),
     "value.tags is not an object"},
    {with_value(replace("tags", R"("tags":null)")),
     "value.tags is not an object"},
    {with_value(replace("tags", R"("t":{})")), "value.tags is not an object"},
    {with_value(good_row.substr(0, good_row.size() - 1) + R"(,"parent":1})"),
     "value.parent is not a string"},
    {with_value(good_row.substr(0, good_row.size() - 1)
                + R"(,"type_revision":"1"})"),
     "value.type_revision is not a 32-bit integer"},
    {with_value(good_row.substr(0, good_row.size() - 1)
                + R"(,"type_revision":2147483648})"),
     "value.type_revision is not a 32-bit integer"},
    {with_value(good_row.substr(0, good_row.size() - 1)
                + R"(,"type_revision":1.5})"),
     "value.type_revision is not a 32-bit integer"},
    {with_value(replace("created_at", R"("created_at":"1")")),
     "value.created_at is not a 64-bit integer"},
    {with_value(replace("created_at", R"("c":1)")),
     "value.created_at is not a 64-bit integer"},
    {with_value(replace("updated_at", R"("updated_at":1.5)")),
     "value.updated_at is not a 64-bit integer"},
    {with_value(replace("updated_at", R"("updated_at":9223372036854775808)")),
     "value.updated_at is not a 64-bit integer"},
    {with_value(replace("updated_at", R"("updated_at":-9223372036854775809)")),
     "value.updated_at is not a 64-bit integer"},
  };
  for (auto& [text, message] : cases)
    CAF_CHECK_EQUAL(event_error(text), prefix + message);
  // The helpers above build what they should.
  CAF_CHECK_EQUAL(event_error(with_value(good_row)), "no error");
}

// -- membership::apply --------------------------------------------------------

CAF_TEST(insert of a non-member emits an insert) {
  membership m;
  auto row = row_of(typical_columns());
  auto e = m.apply(upsert(change_op::insert, row));
  CAF_REQUIRE(e);
  CAF_CHECK(e->op == event_op::insert);
  CAF_CHECK_EQUAL(e->key, row.url);
  CAF_REQUIRE(e->value);
  CAF_CHECK(*e->value == row);
  CAF_CHECK(!e->old_value);
  CAF_CHECK(m.contains(row.url));
  CAF_CHECK_EQUAL(m.size(), 1u);
  CAF_CHECK(m.members().at(row.url) == row);
}

CAF_TEST(update of a non-member becomes an insert) {
  membership m;
  auto row = row_of(typical_columns());
  auto e = m.apply(upsert(change_op::update, row));
  CAF_REQUIRE(e);
  CAF_CHECK(e->op == event_op::insert);
  CAF_CHECK(m.contains(row.url));
}

CAF_TEST(update of a member with a different row emits an update) {
  membership m;
  auto row = row_of(typical_columns());
  m.apply(upsert(change_op::insert, row));
  auto changed = row;
  changed.status = "idle";
  auto e = m.apply(upsert(change_op::update, changed));
  CAF_REQUIRE(e);
  CAF_CHECK(e->op == event_op::update);
  CAF_CHECK_EQUAL(e->key, row.url);
  CAF_REQUIRE(e->value);
  CAF_CHECK(*e->value == changed);
  CAF_CHECK(!e->old_value);
  CAF_CHECK(m.members().at(row.url) == changed);
  CAF_CHECK_EQUAL(m.size(), 1u);
}

CAF_TEST(insert of a member with a different row emits an update) {
  membership m;
  auto row = row_of(typical_columns());
  m.apply(upsert(change_op::insert, row));
  auto changed = row;
  changed.updated_at += 1;
  auto e = m.apply(upsert(change_op::insert, changed));
  CAF_REQUIRE(e);
  CAF_CHECK(e->op == event_op::update);
  CAF_CHECK(m.members().at(row.url) == changed);
}

CAF_TEST(no-op update emits nothing) {
  membership m;
  auto row = row_of(typical_columns());
  m.apply(upsert(change_op::insert, row));
  CAF_CHECK(!m.apply(upsert(change_op::update, row)));
  CAF_CHECK(!m.apply(upsert(change_op::insert, row)));
  // Equal after canonicalization counts as equal, too.
  auto c = typical_columns();
  c.tags = R"({"role":"reviewer","team":"infra"})";
  c.state_schemas = R"({"s":{"a":true,"b":1}})";
  CAF_CHECK(!m.apply(upsert(change_op::update, row_of(c))));
  CAF_CHECK_EQUAL(m.size(), 1u);
  CAF_CHECK(m.members().at(row.url) == row);
}

CAF_TEST(delete of a member emits a delete with the stored row) {
  membership m;
  auto row = row_of(typical_columns());
  m.apply(upsert(change_op::insert, row));
  auto e = m.apply(removal(row.url));
  CAF_REQUIRE(e);
  CAF_CHECK(e->op == event_op::remove);
  CAF_CHECK_EQUAL(e->key, row.url);
  CAF_CHECK(!e->value);
  CAF_REQUIRE(e->old_value);
  CAF_CHECK(*e->old_value == row);
  CAF_CHECK(!m.contains(row.url));
  CAF_CHECK_EQUAL(m.size(), 0u);
}

CAF_TEST(delete carries the last row emitted and not the change row) {
  membership m;
  auto row = row_of(typical_columns());
  m.apply(upsert(change_op::insert, row));
  auto changed = row;
  changed.status = "stopped";
  m.apply(upsert(change_op::update, changed));
  // A remove change carries no row; even if it did, the stored one counts.
  entity_change change{change_op::remove, row.url, row};
  auto e = m.apply(change);
  CAF_REQUIRE(e && e->old_value);
  CAF_CHECK(*e->old_value == changed);
}

CAF_TEST(delete of a non-member emits nothing) {
  membership m;
  CAF_CHECK(!m.apply(removal("/w/none")));
  m.apply(upsert(change_op::insert, row_of(minimal_columns("/w/1"))));
  CAF_CHECK(!m.apply(removal("/w/none")));
  CAF_CHECK(m.apply(removal("/w/1")));
  CAF_CHECK(!m.apply(removal("/w/1")));
  CAF_CHECK_EQUAL(m.size(), 0u);
}

CAF_TEST(an insert or update without a row emits nothing) {
  membership m;
  CAF_CHECK(!m.apply(entity_change{change_op::insert, "/w/1", std::nullopt}));
  CAF_CHECK(!m.apply(entity_change{change_op::update, "/w/1", std::nullopt}));
  CAF_CHECK_EQUAL(m.size(), 0u);
}

CAF_TEST(the change key wins over a disagreeing row url) {
  membership m;
  auto row = row_of(minimal_columns("/w/row-url"));
  auto e = m.apply(entity_change{change_op::insert, "/w/key", row});
  CAF_REQUIRE(e && e->value);
  CAF_CHECK_EQUAL(e->key, "/w/key");
  CAF_CHECK_EQUAL(e->value->url, "/w/key");
  CAF_CHECK(m.contains("/w/key"));
  CAF_CHECK(!m.contains("/w/row-url"));
  CAF_CHECK_EQUAL(m.members().at("/w/key").url, "/w/key");
  // The same row again is a no-op under that key.
  CAF_CHECK(!m.apply(entity_change{change_op::update, "/w/key", row}));
}

CAF_TEST(remove returns a delete for a member and nothing otherwise) {
  membership m;
  auto row = row_of(minimal_columns("/w/1"));
  m.apply(upsert(change_op::insert, row));
  CAF_CHECK(!m.remove("/w/2"));
  auto e = m.remove("/w/1");
  CAF_REQUIRE(e && e->old_value);
  CAF_CHECK(e->op == event_op::remove);
  CAF_CHECK_EQUAL(e->key, "/w/1");
  CAF_CHECK(*e->old_value == row);
  CAF_CHECK(!m.remove("/w/1"));
  CAF_CHECK_EQUAL(m.size(), 0u);
}

// -- fold ---------------------------------------------------------------------

CAF_TEST(fold applies read-back events to the members) {
  membership m;
  auto a = row_of(minimal_columns("/w/a"));
  auto b = row_of(minimal_columns("/w/b"));
  m.fold(member_event{event_op::insert, a.url, a, std::nullopt});
  m.fold(member_event{event_op::insert, b.url, b, std::nullopt});
  CAF_CHECK_EQUAL(m.size(), 2u);
  auto a2 = a;
  a2.status = "running";
  m.fold(member_event{event_op::update, a.url, a2, std::nullopt});
  CAF_CHECK(m.members().at("/w/a") == a2);
  m.fold(member_event{event_op::remove, b.url, std::nullopt, b});
  CAF_CHECK(!m.contains("/w/b"));
  // A delete without old_value removes the key; one of a non-member is a
  // no-op; an update of a non-member sets it.
  m.fold(member_event{event_op::remove, a.url, std::nullopt, std::nullopt});
  m.fold(member_event{event_op::remove, "/w/x", std::nullopt, std::nullopt});
  CAF_CHECK_EQUAL(m.size(), 0u);
  m.fold(member_event{event_op::update, b.url, b, std::nullopt});
  CAF_CHECK(m.members().at("/w/b") == b);
  // Folding emits nothing, so applying what was folded is a no-op.
  CAF_CHECK(!m.apply(upsert(change_op::update, b)));
}

CAF_TEST(fold of parsed stream text rebuilds the members) {
  membership source;
  std::vector<std::string> stream;
  auto record = [&](std::optional<member_event> e) {
    CAF_REQUIRE(e);
    stream.push_back(to_json(*e, 1767323045678));
  };
  auto a = row_of(typical_columns("/c/a"));
  auto b = row_of(minimal_columns("/w/b"));
  record(source.apply(upsert(change_op::insert, a)));
  record(source.apply(upsert(change_op::insert, b)));
  auto a2 = a;
  a2.tags = R"({"role":"lead","team":"infra"})";
  record(source.apply(upsert(change_op::update, a2)));
  record(source.apply(removal(b.url)));
  membership replica;
  for (auto& text : stream) {
    auto e = parse_member_event(text);
    CAF_REQUIRE(e);
    replica.fold(*e);
  }
  CAF_CHECK(replica.members() == source.members());
  CAF_CHECK_EQUAL(keys_of(replica), std::set<std::string>{"/c/a"});
  // A re-delivered change after the replay is a no-op.
  CAF_CHECK(!replica.apply(upsert(change_op::update, a2)));
}

// -- SEED scenario 1 ----------------------------------------------------------

CAF_TEST(a resync reconciles the stream with the snapshot) {
  // The stream holds a and b.
  auto a = row_of(minimal_columns("/w/a"));
  auto b = row_of(minimal_columns("/w/b"));
  membership m;
  for (auto& row : {a, b})
    m.fold(member_event{event_op::insert, row.url, row, std::nullopt});
  auto initial = m.members();
  // Resync: the snapshot brings a (changed) and c, then up-to-date.
  std::set<std::string> stale = keys_of(m);
  auto a_changed = row_of(minimal_columns("/w/a", "running"));
  auto c = row_of(minimal_columns("/w/c"));
  std::vector<member_event> emitted;
  for (auto& row : {a_changed, c}) {
    stale.erase(row.url);
    if (auto e = m.apply(upsert(change_op::insert, row)))
      emitted.push_back(std::move(*e));
  }
  for (auto& key : stale)
    if (auto e = m.remove(key))
      emitted.push_back(std::move(*e));
  CAF_REQUIRE_EQUAL(emitted.size(), 3u);
  CAF_CHECK(emitted[0].op == event_op::update);
  CAF_CHECK_EQUAL(emitted[0].key, "/w/a");
  CAF_CHECK(emitted[0].value == a_changed);
  CAF_CHECK(emitted[1].op == event_op::insert);
  CAF_CHECK_EQUAL(emitted[1].key, "/w/c");
  CAF_CHECK(emitted[1].value == c);
  CAF_CHECK(emitted[2].op == event_op::remove);
  CAF_CHECK_EQUAL(emitted[2].key, "/w/b");
  CAF_CHECK(emitted[2].old_value == b);
  CAF_CHECK_EQUAL(keys_of(m), (std::set<std::string>{"/w/a", "/w/c"}));
  // Live changes then apply: update c, delete a.
  auto c_changed = row_of(minimal_columns("/w/c", "paused"));
  auto update_c = m.apply(upsert(change_op::update, c_changed));
  CAF_REQUIRE(update_c);
  CAF_CHECK(update_c->op == event_op::update);
  emitted.push_back(*update_c);
  auto delete_a = m.apply(removal("/w/a"));
  CAF_REQUIRE(delete_a);
  CAF_CHECK(delete_a->op == event_op::remove);
  CAF_CHECK(delete_a->old_value == a_changed);
  emitted.push_back(*delete_a);
  CAF_CHECK_EQUAL(keys_of(m), std::set<std::string>{"/w/c"});
  // Folding the whole stream (old events plus the emitted ones, as text)
  // gives exactly the members.
  membership replica;
  for (auto& row : {a, b})
    replica.fold(member_event{event_op::insert, row.url, row, std::nullopt});
  CAF_CHECK(replica.members() == initial);
  for (auto& e : emitted) {
    auto parsed = parse_member_event(to_json(e, 1767323045678));
    CAF_REQUIRE(parsed);
    replica.fold(*parsed);
  }
  CAF_CHECK(replica.members() == m.members());
}
