#define CAF_SUITE pgoutput
#include <caf/test/unit_test.hpp>
#include "tests/test_util.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "storage/pgoutput.hpp"

using namespace ebridge;

namespace {

// -- building input -----------------------------------------------------------

/// Writes protocol fields big-endian, as Postgres' pq_send* do.
struct encoder {
  std::string bytes;

  encoder& u8(uint8_t x) {
    bytes.push_back(static_cast<char>(x));
    return *this;
  }

  encoder& tag(char c) {
    return u8(static_cast<uint8_t>(c));
  }

  encoder& be(uint64_t x, int width) {
    for (int shift = (width - 1) * 8; shift >= 0; shift -= 8)
      u8(static_cast<uint8_t>(x >> shift));
    return *this;
  }

  encoder& i16(int16_t x) {
    return be(static_cast<uint16_t>(x), 2);
  }

  encoder& u32(uint32_t x) {
    return be(x, 4);
  }

  encoder& i32(int32_t x) {
    return be(static_cast<uint32_t>(x), 4);
  }

  encoder& u64(uint64_t x) {
    return be(x, 8);
  }

  encoder& i64(int64_t x) {
    return be(static_cast<uint64_t>(x), 8);
  }

  /// A NUL-terminated string.
  encoder& str(std::string_view x) {
    bytes.append(x);
    return u8(0);
  }

  encoder& raw(std::string_view x) {
    bytes.append(x);
    return *this;
  }

  // Tuple columns.

  encoder& text(std::string_view x) {
    tag('t').i32(static_cast<int32_t>(x.size()));
    return raw(x);
  }

  encoder& null() {
    return tag('n');
  }

  encoder& toast() {
    return tag('u');
  }
};

/// An XLogData CopyData payload around a pgoutput message.
std::string xlog_data(uint64_t start, uint64_t end, int64_t time,
                      std::string_view body) {
  return encoder{}.tag('w').u64(start).u64(end).i64(time).raw(body).bytes;
}

std::string from_hex(std::string_view hex) {
  auto nibble = [](char c) {
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
  };
  std::string result;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    result.push_back(
      static_cast<char>(nibble(hex[i]) * 16 + nibble(hex[i + 1])));
  return result;
}

// -- hand-built messages ------------------------------------------------------

// The columns of `entities` in an order unlike the table's, with extras.
const std::vector<std::string> shuffled_entity_columns = {
  "updated_at", "extra_a",    "url",        "state_schemas", "tags",
  "tenant_id",  "created_at", "type",       "parent",        "tags_index",
  "status",     "spawn_args", "created_by", "type_revision", "inbox_schemas",
};

relation_msg entities_relation(uint32_t oid = 16385) {
  relation_msg rel;
  rel.oid = oid;
  rel.namespace_name = "public";
  rel.name = "entities";
  rel.replica_identity = 'f';
  for (auto& name : shuffled_entity_columns)
    rel.columns.push_back({1, name, 25, -1});
  return rel;
}

std::string encode(const relation_msg& rel) {
  encoder e;
  e.tag('R').u32(rel.oid).str(rel.namespace_name).str(rel.name);
  e.tag(rel.replica_identity).i16(static_cast<int16_t>(rel.columns.size()));
  for (auto& column : rel.columns)
    e.u8(column.flags)
      .str(column.name)
      .u32(column.type_oid)
      .i32(column.type_modifier);
  return e.bytes;
}

/// A row of `entities` in shuffled_entity_columns order, as text or null.
struct entity_row {
  std::string url = "/coder/1";
  std::string tags = R"({"a":"1"})";
  std::string status = "running";

  encoder& encode(encoder& e) const {
    e.i16(static_cast<int16_t>(shuffled_entity_columns.size()));
    e.text("1700000000002"); // updated_at
    e.text("ignored");       // extra_a
    e.text(url);             // url
    e.null();                // state_schemas
    e.text(tags);            // tags
    e.text("acme");          // tenant_id
    e.text("1700000000001"); // created_at
    e.text("coder");         // type
    e.null();                // parent
    e.text("{}");            // tags_index
    e.text(status);          // status
    e.text("{}");            // spawn_args
    e.null();                // created_by
    e.text("7");             // type_revision
    e.null();                // inbox_schemas
    return e;
  }
};

std::string begin_bytes() {
  return encoder{}
    .tag('B')
    .u64(0x16B374D848)
    .i64(757382400000000)
    .u32(731)
    .bytes;
}

std::string commit_bytes() {
  return encoder{}
    .tag('C')
    .u8(0)
    .u64(0x16B374D848)
    .u64(0x16B374D878)
    .i64(757382400000000)
    .bytes;
}

std::string insert_bytes() {
  encoder e;
  e.tag('I').u32(16385).tag('N');
  return entity_row{}.encode(e).bytes;
}

std::string update_bytes(char old_tag) {
  encoder e;
  e.tag('U').u32(16385);
  if (old_tag != 0) {
    e.tag(old_tag);
    entity_row{}.encode(e);
  }
  e.tag('N');
  entity_row row;
  row.status = "idle";
  return row.encode(e).bytes;
}

std::string delete_bytes(char old_tag) {
  encoder e;
  e.tag('D').u32(16385).tag(old_tag);
  return entity_row{}.encode(e).bytes;
}

std::string truncate_bytes() {
  return encoder{}.tag('T').i32(3).u8(3).u32(16385).u32(16403).u32(99).bytes;
}

std::string type_bytes() {
  return encoder{}.tag('Y').u32(16398).str("public").str("mood").bytes;
}

std::string origin_bytes() {
  return encoder{}.tag('O').u64(0xABCDEF).str("upstream").bytes;
}

std::string keepalive_bytes(bool reply) {
  return encoder{}.tag('k').u64(0x192B4F8).i64(757382400000001).u8(reply).bytes;
}

// -- decoding -----------------------------------------------------------------

template <class T>
T decoded_as(std::string_view message) {
  auto result = decode_pgoutput(message);
  if (!result)
    CAF_FAIL("decode failed: " << describe(result.error()));
  auto* x = std::get_if<T>(&*result);
  if (x == nullptr)
    CAF_FAIL("decoded to variant index " << result->index());
  return std::move(*x);
}

/// The message of the error decoding `message`; fails if it decodes or
/// fails with another code.
std::string pgoutput_error(std::string_view message) {
  auto result = decode_pgoutput(message);
  if (result)
    CAF_FAIL("decoded although malformed");
  CAF_CHECK_EQUAL(result.error().code(), static_cast<uint8_t>(ec::bad_row));
  return error_message(result.error());
}

std::string copy_data_error(std::string_view payload) {
  auto result = decode_copy_data(payload);
  if (result)
    CAF_FAIL("decoded although malformed");
  CAF_CHECK_EQUAL(result.error().code(), static_cast<uint8_t>(ec::bad_row));
  return error_message(result.error());
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

#define CHECK_CONTAINS(text, part)                                             \
  EB_CHECK_MSG(contains((text), (part)), "in: " << (text))

tuple_column t(std::string x) {
  return {column_kind::text, std::move(x)};
}

const tuple_column n{column_kind::null, {}};
const tuple_column u{column_kind::unchanged_toast, {}};

// -- captured from PostgreSQL 15 ----------------------------------------------

// CopyData payloads of a START_REPLICATION stream (proto_version '1',
// publication_names 'pub') over `entities` (REPLICA IDENTITY FULL, columns as
// storage/migrations.cpp creates them) and `things (id int PRIMARY KEY, m mood,
// note varchar(12))` with `mood` an enum, captured with libpq.
const char* const real_stream[] = {
  // keepalive
  "6b000000000192b4f80003046c30a787d700",
  // begin xid 730
  "77000000000192b4f8000000000192b4f80003046c30a7891c42000000000192b6480003"
  "046c3052b525000002da",
  // relation entities
  "77000000000000000000000000000000000003046c30a7895252000040017075626c6963"
  "00656e7469746965730066000e0174656e616e745f69640000000019ffffffff0175726c"
  "0000000019ffffffff01747970650000000019ffffffff017374617475730000000019ff"
  "ffffff01746167730000000edaffffffff01746167735f696e64657800000003f1ffffff"
  "ff01737061776e5f617267730000000edaffffffff01706172656e740000000019ffffff"
  "ff01637265617465645f62790000000019ffffffff01747970655f7265766973696f6e00"
  "00000017ffffffff01696e626f785f736368656d61730000000edaffffffff0173746174"
  "655f736368656d61730000000edaffffffff01637265617465645f61740000000014ffff"
  "ffff01757064617465645f61740000000014ffffffff",
  // insert entities
  "77000000000192b4f8000000000192b4f80003046c30a789a549000040014e000e740000"
  "000764656661756c74740000000a2f636f6465722f6162637400000005636f6465727400"
  "00000772756e6e696e6774000000147b2261223a202231222c202262223a202232227d74"
  "000000027b7d6e74000000042f702f316e7400000001336e6e740000000d313730303030"
  "30303030303030740000000d31373030303030303030303031",
  // commit
  "77000000000192b678000000000192b6780003046c30a789b44300000000000192b64800"
  "0000000192b6780003046c3052b525",
  // begin
  "77000000000192e048000000000192e0480003046c30a78a6542000000000192e1600003"
  "046c3052c750000002dc",
  // update entities (old row)
  "77000000000192e048000000000192e0480003046c30a78a6b55000040014f000e740000"
  "000764656661756c74740000000a2f636f6465722f6162637400000005636f6465727400"
  "00000772756e6e696e6774000000147b2261223a202231222c202262223a202232227d74"
  "000000027b7d6e74000000042f702f316e7400000001336e6e740000000d313730303030"
  "30303030303030740000000d313730303030303030303030314e000e7400000007646566"
  "61756c74740000000a2f636f6465722f6162637400000005636f64657274000000046964"
  "6c6574000000147b2261223a202231222c202262223a202232227d74000000027b7d6e74"
  "000000042f702f316e7400000001336e6e740000000d3137303030303030303030303074"
  "0000000d31373030303030303030303032",
  // commit
  "77000000000192e190000000000192e1900003046c30a78a6d4300000000000192e16000"
  "0000000192e1900003046c3052c750",
  // begin
  "7700000000019308c000000000019308c00003046c30a78aac4200000000019309680003"
  "046c3052cbee000002de",
  // delete entities (old row)
  "7700000000019308c000000000019308c00003046c30a78ab044000040014f000e740000"
  "000764656661756c74740000000a2f636f6465722f6162637400000005636f6465727400"
  "00000469646c6574000000147b2261223a202231222c202262223a202232227d74000000"
  "027b7d6e74000000042f702f316e7400000001336e6e740000000d313730303030303030"
  "30303030740000000d31373030303030303030303032",
  // commit
  "77000000000193099800000000019309980003046c30a78ab24300000000000193096800"
  "000000019309980003046c3052cbee",
  // begin
  "77000000000193099800000000019309980003046c30a78acc420000000001930b000003"
  "046c3052cf02000002df",
  // type mood
  "77000000000000000000000000000000000003046c30a78ada590000400e7075626c6963"
  "006d6f6f6400",
  // relation things
  "77000000000000000000000000000000000003046c30a78b0a52000040137075626c6963"
  "007468696e6773006400030169640000000017ffffffff006d000000400effffffff006e"
  "6f7465000000041300000010",
  // insert things
  "77000000000193099800000000019309980003046c30a78b2449000040134e0003740000"
  "00013174000000046275737974000000026869",
  // insert things (nulls)
  "770000000001930a800000000001930a800003046c30a78b2749000040134e0003740000"
  "0001326e6e",
  // commit
  "770000000001930b300000000001930b300003046c30a78b2843000000000001930b0000"
  "00000001930b300003046c3052cf02",
  // begin
  "770000000001930b300000000001930b300003046c30a78b30420000000001930b800003"
  "046c3052d10e000002e0",
  // update things (no old row)
  "770000000001930b300000000001930b300003046c30a78b3355000040134e0003740000"
  "0001317400000004627573797400000002796f",
  // commit
  "770000000001930bb00000000001930bb00003046c30a78b3543000000000001930b8000"
  "00000001930bb00003046c3052d10e",
  // begin
  "770000000001930bb00000000001930bb00003046c30a78b3a420000000001930bf00003"
  "046c3052d2a9000002e1",
  // delete things (key)
  "770000000001930bb00000000001930bb00003046c30a78b3c44000040134b0003740000"
  "0001326e6e",
  // commit
  "770000000001930c200000000001930c200003046c30a78b3d43000000000001930bf000"
  "00000001930c200003046c3052d2a9",
  // begin
  "7700000000019311c000000000019311c00003046c30a78b624200000000019311f00003"
  "046c3052d97f000002e2",
  // type mood
  "77000000000000000000000000000000000003046c30a78b64590000400e7075626c6963"
  "006d6f6f6400",
  // relation things
  "77000000000000000000000000000000000003046c30a78b8c52000040137075626c6963"
  "007468696e6773006400030169640000000017ffffffff006d000000400effffffff006e"
  "6f7465000000041300000010",
  // truncate things
  "7700000000019311c000000000019311c00003046c30a78b9b54000000010000004013",
  // commit
  "7700000000019312c000000000019312c00003046c30a78b9d430000000000019311f000"
  "000000019312c00003046c3052d97f",
  // begin
  "77000000000000000000000000000000000003046c30a78be04200000000019316180002"
  "b0ec8515f340000002e4",
  // origin upstream
  "77000000000193152800000000019315280003046c30a78be34f0000000000abcdef7570"
  "73747265616d00",
  // type mood
  "77000000000000000000000000000000000003046c30a78be4590000400e7075626c6963"
  "006d6f6f6400",
  // relation things
  "77000000000000000000000000000000000003046c30a78bef52000040137075626c6963"
  "007468696e6773006400030169640000000017ffffffff006d000000400effffffff006e"
  "6f7465000000041300000010",
  // insert things
  "77000000000193152800000000019315280003046c30a78bf449000040134e0003740000"
  "000133740000000463616c6d740000000b66726f6d206f726967696e",
  // commit
  "77000000000193166000000000019316600003046c30a78bf64300000000000193161800"
  "000000019316600002b0ec8515f340",
  // keepalive
  "6b00000000019316980003046c30a7956900",
};

// Bare messages (pg_logical_slot_peek_binary_changes) after `ALTER TABLE
// entities ALTER COLUMN tags SET STORAGE EXTERNAL`: an insert whose tags hold
// 2100 'x' (stored out of line), then an update of status only. The 2100 'x'
// bytes are spliced in to keep this file small.
std::string with_blob(std::string_view before, std::string_view after) {
  return from_hex(before) + std::string(2100, 'x') + from_hex(after);
}

const std::string real_toast_insert = with_blob(
  "49000040014e000e7400000002743374000000082f746f6173742f317400000005746f61"
  "7374740000000469646c6574000008407b22626c6f62223a2022",
  "227d74000000027b7d74000000027b7d6e6e6e6e6e7400000002313074000000023131");

const std::string real_toast_update = with_blob(
  "55000040014f000e7400000002743374000000082f746f6173742f317400000005746f61"
  "7374740000000469646c6574000008407b22626c6f62223a2022",
  "227d74000000027b7d74000000027b7d6e6e6e6e6e74000000023130740000000231314e"
  "000e7400000002743374000000082f746f6173742f317400000005746f61737474000000"
  "0772756e6e696e677574000000027b7d74000000027b7d6e6e6e6e6e7400000002313074"
  "000000023132");

std::vector<std::string> real_frames() {
  std::vector<std::string> result;
  for (auto hex : real_stream)
    result.push_back(from_hex(hex));
  return result;
}

template <class T>
T body_of(const replication_message& message) {
  auto* x = std::get_if<T>(&message.body);
  if (x == nullptr)
    CAF_FAIL("body has variant index " << message.body.index());
  return *x;
}

const relation_msg& real_entities_relation() {
  static const relation_msg rel = [] {
    auto frame = EB_OK(decode_copy_data(from_hex(real_stream[2])));
    return body_of<relation_msg>(frame);
  }();
  return rel;
}

} // namespace

// -- hand-built messages ------------------------------------------------------

CAF_TEST(begin carries final LSN commit time and xid) {
  auto m = decoded_as<begin_msg>(begin_bytes());
  CAF_CHECK_EQUAL(m.final_lsn, 0x16B374D848u);
  CAF_CHECK_EQUAL(m.commit_time, 757382400000000);
  CAF_CHECK_EQUAL(m.xid, 731u);
}

CAF_TEST(commit carries commit LSN end LSN and time) {
  auto m = decoded_as<commit_msg>(commit_bytes());
  CAF_CHECK_EQUAL(m.commit_lsn, 0x16B374D848u);
  CAF_CHECK_EQUAL(m.end_lsn, 0x16B374D878u);
  CAF_CHECK_EQUAL(m.commit_time, 757382400000000);
}

CAF_TEST(commit with nonzero flags is rejected) {
  auto bytes = commit_bytes();
  bytes[1] = 1;
  auto err = pgoutput_error(bytes);
  CHECK_CONTAINS(err, "commit message at byte 1");
  CHECK_CONTAINS(err, "flags");
}

CAF_TEST(relation carries names identity and columns in order) {
  relation_msg rel;
  rel.oid = 16403;
  rel.namespace_name = "";
  rel.name = "things";
  rel.replica_identity = 'd';
  rel.columns = {{1, "id", 23, -1}, {0, "note", 1043, 16}};
  auto m = decoded_as<relation_msg>(encode(rel));
  CAF_CHECK_EQUAL(m.oid, 16403u);
  CAF_CHECK_EQUAL(m.namespace_name, "");
  CAF_CHECK_EQUAL(m.name, "things");
  CAF_CHECK_EQUAL(m.replica_identity, 'd');
  CAF_REQUIRE_EQUAL(m.columns.size(), 2u);
  CAF_CHECK(m.columns[0].is_key());
  CAF_CHECK_EQUAL(m.columns[0].name, "id");
  CAF_CHECK_EQUAL(m.columns[0].type_oid, 23u);
  CAF_CHECK_EQUAL(m.columns[0].type_modifier, -1);
  CAF_CHECK(!m.columns[1].is_key());
  CAF_CHECK_EQUAL(m.columns[1].name, "note");
  CAF_CHECK_EQUAL(m.columns[1].type_oid, 1043u);
  CAF_CHECK_EQUAL(m.columns[1].type_modifier, 16);
}

CAF_TEST(relation with an unknown replica identity is rejected) {
  auto rel = entities_relation();
  rel.replica_identity = 'x';
  auto err = pgoutput_error(encode(rel));
  // 'R', oid, "public\0", "entities\0": the identity is byte 21.
  CHECK_CONTAINS(err, "relation message at byte 21");
  CHECK_CONTAINS(err, "replica identity 'x'");
}

CAF_TEST(insert carries the new tuple with text and null columns) {
  auto m = decoded_as<insert_msg>(insert_bytes());
  CAF_CHECK_EQUAL(m.relation_oid, 16385u);
  CAF_REQUIRE_EQUAL(m.new_tuple.size(), shuffled_entity_columns.size());
  CAF_CHECK(m.new_tuple[0] == t("1700000000002"));
  CAF_CHECK(m.new_tuple[2] == t("/coder/1"));
  CAF_CHECK(m.new_tuple[3] == n);
  CAF_CHECK(m.new_tuple[4] == t(R"({"a":"1"})"));
}

CAF_TEST(insert without the N tag is rejected) {
  auto bytes = insert_bytes();
  bytes[5] = 'O';
  auto err = pgoutput_error(bytes);
  CHECK_CONTAINS(err, "insert message at byte 5");
  CHECK_CONTAINS(err, "expected 'N' (new tuple), got 'O' (0x4F)");
}

CAF_TEST(update without old tuple carries only the new tuple) {
  auto m = decoded_as<update_msg>(update_bytes(0));
  CAF_CHECK(m.old_kind == old_tuple_kind::none);
  CAF_CHECK(m.old_tuple.empty());
  CAF_REQUIRE_EQUAL(m.new_tuple.size(), shuffled_entity_columns.size());
  CAF_CHECK(m.new_tuple[10] == t("idle"));
}

CAF_TEST(update with O carries the full old row) {
  auto m = decoded_as<update_msg>(update_bytes('O'));
  CAF_CHECK(m.old_kind == old_tuple_kind::full);
  CAF_REQUIRE_EQUAL(m.old_tuple.size(), shuffled_entity_columns.size());
  CAF_CHECK(m.old_tuple[10] == t("running"));
  CAF_CHECK(m.new_tuple[10] == t("idle"));
}

CAF_TEST(update with K carries the key tuple) {
  auto m = decoded_as<update_msg>(update_bytes('K'));
  CAF_CHECK(m.old_kind == old_tuple_kind::key);
  CAF_CHECK_EQUAL(m.old_tuple.size(), shuffled_entity_columns.size());
}

CAF_TEST(update with an unknown tuple tag is rejected) {
  auto err = pgoutput_error(update_bytes('X'));
  CHECK_CONTAINS(err, "update message at byte 5");
  CHECK_CONTAINS(err, "expected 'K', 'O' or 'N'");
}

CAF_TEST(delete carries the key or the full old row) {
  auto full = decoded_as<delete_msg>(delete_bytes('O'));
  CAF_CHECK_EQUAL(full.relation_oid, 16385u);
  CAF_CHECK(full.old_kind == old_tuple_kind::full);
  CAF_CHECK_EQUAL(full.old_tuple.size(), shuffled_entity_columns.size());
  auto key = decoded_as<delete_msg>(delete_bytes('K'));
  CAF_CHECK(key.old_kind == old_tuple_kind::key);
  auto err = pgoutput_error(delete_bytes('N'));
  CHECK_CONTAINS(err, "expected 'K' or 'O'");
}

CAF_TEST(truncate carries options and relation oids) {
  auto m = decoded_as<truncate_msg>(truncate_bytes());
  CAF_CHECK(m.cascade);
  CAF_CHECK(m.restart_identity);
  CAF_CHECK(m.relation_oids == (std::vector<uint32_t>{16385, 16403, 99}));
  auto plain = decoded_as<truncate_msg>(
    encoder{}.tag('T').i32(1).u8(0).u32(7).bytes);
  CAF_CHECK(!plain.cascade);
  CAF_CHECK(!plain.restart_identity);
  CAF_CHECK(plain.relation_oids == std::vector<uint32_t>{7});
}

CAF_TEST(type carries oid namespace and name) {
  auto m = decoded_as<type_msg>(type_bytes());
  CAF_CHECK_EQUAL(m.oid, 16398u);
  CAF_CHECK_EQUAL(m.namespace_name, "public");
  CAF_CHECK_EQUAL(m.name, "mood");
}

CAF_TEST(origin carries origin LSN and name) {
  auto m = decoded_as<origin_msg>(origin_bytes());
  CAF_CHECK_EQUAL(m.origin_lsn, 0xABCDEFu);
  CAF_CHECK_EQUAL(m.name, "upstream");
}

CAF_TEST(tuple columns may be null unchanged TOAST or text of any bytes) {
  std::string binary{"a\0b\xff", 4};
  encoder e;
  e.tag('I').u32(1).tag('N').i16(4).null().toast().text("").text(binary);
  auto m = decoded_as<insert_msg>(e.bytes);
  CAF_CHECK(m.new_tuple == (tuple_data{n, u, t(""), t(binary)}));
}

CAF_TEST(XLogData yields header positions and the message) {
  auto payload = xlog_data(0x192B4F8, 0x192B678, 757382400000002,
                           begin_bytes());
  auto x = EB_OK(decode_copy_data(payload));
  CAF_CHECK_EQUAL(x.wal_start, 0x192B4F8u);
  CAF_CHECK_EQUAL(x.wal_end, 0x192B678u);
  CAF_CHECK_EQUAL(x.send_time, 757382400000002);
  CAF_CHECK_EQUAL(body_of<begin_msg>(x).xid, 731u);
}

CAF_TEST(keepalive yields WAL end time and reply request) {
  auto asked = EB_OK(decode_copy_data(keepalive_bytes(true)));
  auto k = body_of<keepalive_msg>(asked);
  CAF_CHECK_EQUAL(k.wal_end, 0x192B4F8u);
  CAF_CHECK_EQUAL(k.send_time, 757382400000001);
  CAF_CHECK(k.reply_requested);
  CAF_CHECK_EQUAL(asked.wal_start, 0u);
  CAF_CHECK_EQUAL(asked.wal_end, 0x192B4F8u);
  CAF_CHECK_EQUAL(asked.send_time, 757382400000001);
  auto quiet = EB_OK(decode_copy_data(keepalive_bytes(false)));
  CAF_CHECK(!body_of<keepalive_msg>(quiet).reply_requested);
}

// -- malformed input ----------------------------------------------------------

CAF_TEST(unknown message and CopyData types are rejected naming the byte) {
  auto err = pgoutput_error("Z");
  CHECK_CONTAINS(err, "at byte 0");
  CHECK_CONTAINS(err, "unknown or unsupported message type 'Z' (0x5A)");
  err = pgoutput_error(std::string{"\x01", 1});
  CHECK_CONTAINS(err, "type 0x01");
  // Streaming ('S') exists only from protocol version 2 on.
  err = copy_data_error(xlog_data(1, 2, 3, "S"));
  CHECK_CONTAINS(err, "at byte 25");
  err = copy_data_error("r");
  CHECK_CONTAINS(err, "unknown CopyData type 'r' (0x72)");
  CHECK_CONTAINS(copy_data_error(""), "empty payload");
  CHECK_CONTAINS(pgoutput_error(""), "empty message");
  CHECK_CONTAINS(copy_data_error(xlog_data(1, 2, 3, "")), "empty message");
}

CAF_TEST(truncated input names the field and where it ends) {
  auto err = pgoutput_error(begin_bytes().substr(0, 12));
  CHECK_CONTAINS(err, "begin message at byte 9: truncated commit timestamp "
                      "(needs 8 bytes, 3 remain)");
  err = copy_data_error(keepalive_bytes(true).substr(0, 17));
  CHECK_CONTAINS(err, "keepalive at byte 17: truncated reply-requested flag");
  err = copy_data_error(xlog_data(1, 2, 3, begin_bytes()).substr(0, 20));
  CHECK_CONTAINS(err, "XLogData header at byte 17: truncated send time");
  err = pgoutput_error(type_bytes().substr(0, 9));
  CHECK_CONTAINS(err, "unterminated namespace");
}

CAF_TEST(trailing bytes after a message are rejected) {
  auto err = pgoutput_error(begin_bytes() + "xy");
  CHECK_CONTAINS(err, "begin message at byte 21: 2 trailing bytes");
  err = copy_data_error(xlog_data(1, 2, 3, commit_bytes() + "z"));
  CHECK_CONTAINS(err, "commit message at byte 51: 1 trailing bytes");
  err = copy_data_error(keepalive_bytes(false) + "z");
  CHECK_CONTAINS(err, "keepalive at byte 18: 1 trailing bytes");
}

CAF_TEST(negative and absurd counts are rejected before allocating) {
  auto err = pgoutput_error(encoder{}.tag('I').u32(1).tag('N').i16(-1).bytes);
  CHECK_CONTAINS(err, "at byte 6: new tuple column count -1 is negative");
  err = pgoutput_error(encoder{}.tag('I').u32(1).tag('N').i16(30000).bytes);
  CHECK_CONTAINS(err, "column count 30000 exceeds the limit of 1600");
  err = pgoutput_error(
    encoder{}.tag('I').u32(1).tag('N').i16(1000).null().null().bytes);
  CHECK_CONTAINS(err, "column count 1000 cannot fit in the 2 remaining bytes");
  err = pgoutput_error(
    encoder{}.tag('R').u32(1).str("").str("r").tag('d').i16(-5).bytes);
  CHECK_CONTAINS(err, "relation message at byte 9: column count -5 is "
                      "negative");
  err = pgoutput_error(
    encoder{}.tag('R').u32(1).str("").str("r").tag('d').i16(3).bytes);
  CHECK_CONTAINS(err, "column count 3 cannot fit in the 0 remaining bytes");
  err = pgoutput_error(encoder{}.tag('T').i32(-1).u8(0).bytes);
  CHECK_CONTAINS(err, "truncate message at byte 1: relation count -1 is "
                      "negative");
  err = pgoutput_error(encoder{}.tag('T').i32(INT32_MAX).u8(0).u32(1).bytes);
  CHECK_CONTAINS(err, "relation count 2147483647 cannot fit in the 4 "
                      "remaining bytes");
}

CAF_TEST(text lengths must be positive and within the message) {
  auto err = pgoutput_error(
    encoder{}.tag('I').u32(1).tag('N').i16(1).tag('t').i32(-1).bytes);
  CHECK_CONTAINS(err, "at byte 9: new tuple column 0 text length -1 is "
                      "negative");
  err = pgoutput_error(encoder{}
                         .tag('I')
                         .u32(1)
                         .tag('N')
                         .i16(2)
                         .null()
                         .tag('t')
                         .i32(INT32_MAX)
                         .raw("abc")
                         .bytes);
  CHECK_CONTAINS(err, "at byte 10: new tuple column 1 text length 2147483647 "
                      "exceeds the 3 remaining bytes");
}

CAF_TEST(binary and unknown column kinds are rejected) {
  auto err = pgoutput_error(
    encoder{}.tag('I').u32(1).tag('N').i16(1).tag('b').i32(0).bytes);
  CHECK_CONTAINS(err, "at byte 8: new tuple column 0 is binary");
  err = pgoutput_error(
    encoder{}.tag('D').u32(1).tag('K').i16(2).null().tag('q').bytes);
  CHECK_CONTAINS(err, "at byte 9: key tuple column 1 has unknown kind 'q'");
}

// -- relations and entities ---------------------------------------------------

CAF_TEST(relation cache stores relations by oid and replaces them) {
  relation_cache cache;
  CAF_CHECK(cache.find(16385) == nullptr);
  cache.put(entities_relation());
  auto other = entities_relation(16403);
  other.name = "things";
  cache.put(other);
  CAF_CHECK_EQUAL(cache.size(), 2u);
  CAF_REQUIRE(cache.find(16385) != nullptr);
  CAF_CHECK_EQUAL(cache.find(16385)->name, "entities");
  auto renamed = entities_relation();
  renamed.name = "entities_v2";
  renamed.columns.pop_back();
  cache.put(renamed);
  CAF_CHECK_EQUAL(cache.size(), 2u);
  CAF_CHECK_EQUAL(cache.find(16385)->name, "entities_v2");
  CAF_CHECK_EQUAL(cache.find(16385)->columns.size(),
                  shuffled_entity_columns.size() - 1);
}

CAF_TEST(entity columns are mapped by name in any order) {
  auto m = decoded_as<insert_msg>(insert_bytes());
  auto x = EB_OK(make_entity_tuple(entities_relation(), m.new_tuple));
  CAF_CHECK_EQUAL(x.tenant_id, "acme");
  const auto& c = x.columns;
  CAF_CHECK(c.url == std::optional<std::string>{"/coder/1"});
  CAF_CHECK(c.type == std::optional<std::string>{"coder"});
  CAF_CHECK(c.status == std::optional<std::string>{"running"});
  CAF_CHECK(c.tags == std::optional<std::string>{R"({"a":"1"})"});
  CAF_CHECK(c.spawn_args == std::optional<std::string>{"{}"});
  CAF_CHECK(c.parent == std::nullopt);
  CAF_CHECK(c.type_revision == std::optional<std::string>{"7"});
  CAF_CHECK(c.inbox_schemas == std::nullopt);
  CAF_CHECK(c.state_schemas == std::nullopt);
  CAF_CHECK(c.created_at == std::optional<std::string>{"1700000000001"});
  CAF_CHECK(c.updated_at == std::optional<std::string>{"1700000000002"});
  auto row = EB_OK(make_member_row(c));
  CAF_CHECK_EQUAL(row.url, "/coder/1");
  CAF_CHECK(row.type_revision == std::optional<int64_t>{7});
}

CAF_TEST(unchanged TOAST takes the old tuple value) {
  auto rel = entities_relation();
  auto old_tuple = decoded_as<insert_msg>(insert_bytes()).new_tuple;
  auto new_tuple = old_tuple;
  new_tuple[4] = u;          // tags
  new_tuple[10] = t("idle"); // status
  auto x = EB_OK(make_entity_tuple(rel, new_tuple, &old_tuple));
  CAF_CHECK(x.columns.tags == std::optional<std::string>{R"({"a":"1"})"});
  CAF_CHECK(x.columns.status == std::optional<std::string>{"idle"});
}

CAF_TEST(unchanged TOAST without an old text value is an error) {
  auto rel = entities_relation();
  auto tuple = decoded_as<insert_msg>(insert_bytes()).new_tuple;
  tuple[4] = u;
  auto no_old = make_entity_tuple(rel, tuple);
  CAF_REQUIRE(!no_old);
  CAF_CHECK_EQUAL(no_old.error().code(), static_cast<uint8_t>(ec::bad_row));
  CHECK_CONTAINS(error_message(no_old.error()),
                 "column tags is unchanged TOAST");
  auto key_only = tuple;
  key_only[4] = n; // a key tuple has no value for non-key columns
  auto with_null = make_entity_tuple(rel, tuple, &key_only);
  CAF_CHECK(!with_null);
  // An unchanged TOAST value in a column ebridge ignores is no problem.
  auto extra = decoded_as<insert_msg>(insert_bytes()).new_tuple;
  extra[1] = u;
  CAF_CHECK(make_entity_tuple(rel, extra));
}

CAF_TEST(entity tuples that do not fit the relation are errors) {
  auto rel = entities_relation();
  auto tuple = decoded_as<insert_msg>(insert_bytes()).new_tuple;
  auto message = [&](const relation_msg& r, const tuple_data& x,
                     const tuple_data* old = nullptr) {
    auto result = make_entity_tuple(r, x, old);
    CAF_REQUIRE(!result);
    CAF_CHECK_EQUAL(result.error().code(), static_cast<uint8_t>(ec::bad_row));
    return error_message(result.error());
  };
  auto shorter = tuple;
  shorter.pop_back();
  CHECK_CONTAINS(message(rel, shorter), "the tuple has 14 columns, the "
                                        "relation 15");
  CHECK_CONTAINS(message(rel, tuple, &shorter), "the old tuple has 14");
  auto no_url = rel;
  no_url.columns[2].name = "link";
  CHECK_CONTAINS(message(no_url, tuple), "the relation has no column url");
  auto twice = rel;
  twice.columns[1].name = "url";
  CHECK_CONTAINS(message(twice, tuple), "column url appears twice");
  auto no_tenant = tuple;
  no_tenant[5] = n;
  CHECK_CONTAINS(message(rel, no_tenant), "tenant_id is null");
}

// -- WAL positions ------------------------------------------------------------

CAF_TEST(LSNs format and parse as Postgres writes them) {
  CAF_CHECK_EQUAL(format_lsn(0), "0/0");
  CAF_CHECK_EQUAL(format_lsn(0x16B374D848), "16/B374D848");
  CAF_CHECK_EQUAL(format_lsn(UINT64_MAX), "FFFFFFFF/FFFFFFFF");
  for (uint64_t lsn :
       {uint64_t{0}, uint64_t{0x192B4F8}, uint64_t{0x16B374D848}, UINT64_MAX}) {
    auto back = EB_OK(parse_lsn(format_lsn(lsn)));
    CAF_CHECK_EQUAL(back, lsn);
  }
  auto lower = EB_OK(parse_lsn("16/b374d848"));
  CAF_CHECK_EQUAL(lower, 0x16B374D848u);
  for (auto bad : {"", "/", "0/", "/0", "16B374D848", "1/2/3", "G/0",
                   "123456789/0", "0/123456789", " 0/0", "0/0 ", "-1/0"}) {
    auto x = parse_lsn(bad);
    EB_CHECK_MSG(!x, "accepted " << bad);
    if (!x)
      CAF_CHECK_EQUAL(x.error().code(), static_cast<uint8_t>(ec::bad_row));
  }
}

CAF_TEST(LSN offsets are an LSN and an op index that sort like positions) {
  CAF_CHECK_EQUAL(format_lsn_offset(0), "00000000000000000000_0000000000");
  CAF_CHECK_EQUAL(format_lsn_offset(0x192B4F8, 7),
                  "00000000000026391800_0000000007");
  CAF_CHECK_EQUAL(format_lsn_offset(UINT64_MAX, UINT32_MAX),
                  "18446744073709551615_4294967295");
  CAF_CHECK_LESS(format_lsn_offset(9, 5), format_lsn_offset(10, 0));
  CAF_CHECK_LESS(format_lsn_offset(10, 9), format_lsn_offset(10, 10));
  for (uint64_t lsn :
       {uint64_t{0}, uint64_t{10}, uint64_t{0x16B374D848}, UINT64_MAX}) {
    for (uint32_t op : {0u, 1u, 4000000000u}) {
      uint32_t op_back = 12345;
      auto back = EB_OK(parse_lsn_offset(format_lsn_offset(lsn, op), &op_back));
      CAF_CHECK_EQUAL(back, lsn);
      CAF_CHECK_EQUAL(op_back, op);
    }
  }
  for (auto bad :
       {"", "0", "00000000000000000000", "0_0",
        "00000000000000000000-0000000000", "0000000000000000000a_0000000000",
        "00000000000000000000_000000000a", "18446744073709551616_0000000000",
        "00000000000000000000_4294967296", "99999999999999999999_0000000000",
        "000000000000000000000_0000000000", "00000000000000000000_00000000000",
        "-0000000000000000001_0000000000"}) {
    auto x = parse_lsn_offset(bad);
    EB_CHECK_MSG(!x, "accepted " << bad);
    if (!x)
      CAF_CHECK_EQUAL(x.error().code(), static_cast<uint8_t>(ec::bad_row));
  }
}

// -- captured from PostgreSQL 15 ----------------------------------------------

CAF_TEST(a real pgoutput stream decodes message by message) {
  std::string kinds;
  std::vector<replication_message> frames;
  for (auto& frame : real_frames()) {
    auto x = decode_copy_data(frame);
    EB_REQUIRE_MSG(x, describe(x.error()));
    static constexpr char letters[] = "BCRIUDTYOk";
    kinds += letters[x->body.index()];
    frames.push_back(std::move(*x));
  }
  CAF_CHECK_EQUAL(kinds, "kBRICBUCBDCBYRIICBUCBDCBYRTCBOYRICk");
  auto keepalive = body_of<keepalive_msg>(frames[0]);
  CAF_CHECK_EQUAL(format_lsn(keepalive.wal_end), "0/192B4F8");
  CAF_CHECK(!keepalive.reply_requested);
  // Begin, insert and commit of transaction 730 (LSNs as
  // pg_logical_slot_peek_binary_changes reported them).
  auto begin = body_of<begin_msg>(frames[1]);
  CAF_CHECK_EQUAL(format_lsn(frames[1].wal_start), "0/192B4F8");
  CAF_CHECK_EQUAL(begin.xid, 730u);
  CAF_CHECK_EQUAL(format_lsn(begin.final_lsn), "0/192B648");
  auto commit = body_of<commit_msg>(frames[4]);
  CAF_CHECK_EQUAL(format_lsn(commit.commit_lsn), "0/192B648");
  CAF_CHECK_EQUAL(format_lsn(commit.end_lsn), "0/192B678");
  CAF_CHECK_EQUAL(commit.commit_time, begin.commit_time);
  // Postgres sends relation and type messages with a zero XLogData header.
  CAF_CHECK_EQUAL(frames[2].wal_start, 0u);
  CAF_CHECK_EQUAL(frames[2].wal_end, 0u);
  const auto& entities = real_entities_relation();
  CAF_CHECK_EQUAL(entities.oid, 16385u);
  CAF_CHECK_EQUAL(entities.namespace_name, "public");
  CAF_CHECK_EQUAL(entities.name, "entities");
  CAF_CHECK_EQUAL(entities.replica_identity, 'f');
  CAF_REQUIRE_EQUAL(entities.columns.size(), 14u);
  CAF_CHECK_EQUAL(entities.columns[0].name, "tenant_id");
  CAF_CHECK_EQUAL(entities.columns[4].name, "tags");
  CAF_CHECK_EQUAL(entities.columns[4].type_oid, 3802u); // jsonb
  CAF_CHECK_EQUAL(entities.columns[13].name, "updated_at");
  CAF_CHECK_EQUAL(entities.columns[13].type_oid, 20u); // int8
  // Under REPLICA IDENTITY FULL every column is part of the key.
  for (auto& column : entities.columns)
    CAF_CHECK(column.is_key());
  auto insert = body_of<insert_msg>(frames[3]);
  auto row = EB_OK(make_entity_tuple(entities, insert.new_tuple));
  CAF_CHECK_EQUAL(row.tenant_id, "default");
  CAF_CHECK(row.columns.url == std::optional<std::string>{"/coder/abc"});
  CAF_CHECK(row.columns.tags
            == std::optional<std::string>{R"({"a": "1", "b": "2"})"});
  CAF_CHECK(row.columns.spawn_args == std::nullopt);
  CAF_CHECK(row.columns.parent == std::optional<std::string>{"/p/1"});
  CAF_CHECK(row.columns.type_revision == std::optional<std::string>{"3"});
  CAF_CHECK(row.columns.created_at
            == std::optional<std::string>{"1700000000000"});
  auto member = EB_OK(make_member_row(row.columns));
  CAF_CHECK_EQUAL(member.tags, R"({"a":"1","b":"2"})");
  // Update and delete carry the full old row.
  auto update = body_of<update_msg>(frames[6]);
  CAF_CHECK(update.old_kind == old_tuple_kind::full);
  auto before = EB_OK(make_entity_tuple(entities, update.old_tuple));
  auto after = EB_OK(
    make_entity_tuple(entities, update.new_tuple, &update.old_tuple));
  CAF_CHECK(before.columns.status == std::optional<std::string>{"running"});
  CAF_CHECK(after.columns.status == std::optional<std::string>{"idle"});
  auto del = body_of<delete_msg>(frames[9]);
  CAF_CHECK(del.old_kind == old_tuple_kind::full);
  auto gone = EB_OK(make_entity_tuple(entities, del.old_tuple));
  CAF_CHECK(gone.columns.url == std::optional<std::string>{"/coder/abc"});
  // An enum column brings a type message before its relation.
  auto mood = body_of<type_msg>(frames[12]);
  CAF_CHECK_EQUAL(mood.oid, 16398u);
  CAF_CHECK_EQUAL(mood.name, "mood");
  auto things = body_of<relation_msg>(frames[13]);
  CAF_CHECK_EQUAL(things.replica_identity, 'd');
  CAF_REQUIRE_EQUAL(things.columns.size(), 3u);
  CAF_CHECK(things.columns[0].is_key());
  CAF_CHECK(!things.columns[1].is_key());
  CAF_CHECK_EQUAL(things.columns[1].type_oid, 16398u);
  CAF_CHECK_EQUAL(things.columns[2].type_oid, 1043u);   // varchar
  CAF_CHECK_EQUAL(things.columns[2].type_modifier, 16); // varchar(12)
  auto nulls = body_of<insert_msg>(frames[15]);
  CAF_CHECK(nulls.new_tuple == (tuple_data{t("2"), n, n}));
  // Default identity: an update that keeps the key sends no old tuple, a
  // delete sends the key with the other columns null.
  auto keep_key = body_of<update_msg>(frames[18]);
  CAF_CHECK(keep_key.old_kind == old_tuple_kind::none);
  CAF_CHECK(keep_key.new_tuple == (tuple_data{t("1"), t("busy"), t("yo")}));
  auto by_key = body_of<delete_msg>(frames[21]);
  CAF_CHECK(by_key.old_kind == old_tuple_kind::key);
  CAF_CHECK(by_key.old_tuple == (tuple_data{t("2"), n, n}));
  auto truncate = body_of<truncate_msg>(frames[26]);
  CAF_CHECK(truncate.relation_oids == std::vector<uint32_t>{things.oid});
  CAF_CHECK(!truncate.cascade);
  // A transaction with a replication origin (pg_replication_origin_xact_setup).
  auto origin = body_of<origin_msg>(frames[29]);
  CAF_CHECK_EQUAL(format_lsn(origin.origin_lsn), "0/ABCDEF");
  CAF_CHECK_EQUAL(origin.name, "upstream");
  auto last = body_of<keepalive_msg>(frames.back());
  CAF_CHECK_GREATER_OR_EQUAL(last.wal_end,
                             body_of<commit_msg>(frames[33]).end_lsn);
}

CAF_TEST(a real unchanged TOAST update takes its value from the old row) {
  const auto& entities = real_entities_relation();
  auto insert = decoded_as<insert_msg>(real_toast_insert);
  auto inserted = EB_OK(make_entity_tuple(entities, insert.new_tuple));
  auto blob = R"({"blob": ")" + std::string(2100, 'x') + R"("})";
  CAF_CHECK(inserted.columns.tags == std::optional<std::string>{blob});
  auto update = decoded_as<update_msg>(real_toast_update);
  CAF_CHECK(update.old_kind == old_tuple_kind::full);
  CAF_CHECK(update.new_tuple[4] == u);
  CAF_CHECK(update.old_tuple[4] == t(blob));
  auto updated = EB_OK(
    make_entity_tuple(entities, update.new_tuple, &update.old_tuple));
  CAF_CHECK_EQUAL(updated.tenant_id, "t3");
  CAF_CHECK(updated.columns.tags == std::optional<std::string>{blob});
  CAF_CHECK(updated.columns.status == std::optional<std::string>{"running"});
  CAF_CHECK(updated.columns.updated_at == std::optional<std::string>{"12"});
  CAF_CHECK(!make_entity_tuple(entities, update.new_tuple));
}

// -- generated input ----------------------------------------------------------

namespace {

/// Valid bare pgoutput messages, hand-built and captured.
std::vector<std::string> valid_messages() {
  std::vector<std::string> result = {
    begin_bytes(),     commit_bytes(),    encode(entities_relation()),
    insert_bytes(),    update_bytes(0),   update_bytes('K'),
    update_bytes('O'), delete_bytes('K'), delete_bytes('O'),
    truncate_bytes(),  type_bytes(),      origin_bytes(),
    real_toast_insert, real_toast_update,
  };
  for (auto& frame : real_frames())
    if (frame[0] == 'w')
      result.push_back(frame.substr(25));
  return result;
}

/// Valid CopyData payloads.
std::vector<std::string> valid_payloads() {
  std::vector<std::string> result = real_frames();
  result.push_back(keepalive_bytes(true));
  for (auto& message : valid_messages())
    result.push_back(xlog_data(1, 2, 3, message));
  return result;
}

/// Decodes `input` both ways and, for changes, maps the tuples to entities;
/// returns false if anything fails with an error other than ec::bad_row.
bool decodes_or_rejects(const std::string& input) {
  auto is_bad_row = [](const caf::error& err) {
    return err.category() == error_category
           && err.code() == static_cast<uint8_t>(ec::bad_row);
  };
  auto mapped = [&](const tuple_data& tuple, const tuple_data* old) {
    auto x = make_entity_tuple(real_entities_relation(), tuple, old);
    return x || is_bad_row(x.error());
  };
  auto message = decode_pgoutput(input);
  if (!message)
    return is_bad_row(message.error())
           && !error_message(message.error()).empty();
  if (auto* x = std::get_if<insert_msg>(&*message))
    return mapped(x->new_tuple, nullptr);
  if (auto* x = std::get_if<update_msg>(&*message))
    return mapped(x->new_tuple, &x->old_tuple);
  if (auto* x = std::get_if<delete_msg>(&*message))
    return mapped(x->old_tuple, nullptr);
  return true;
}

bool payload_decodes_or_rejects(const std::string& input) {
  auto x = decode_copy_data(input);
  return x
         || (x.error().category() == error_category
             && x.error().code() == static_cast<uint8_t>(ec::bad_row));
}

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string result;
  for (auto c : bytes) {
    result += digits[static_cast<uint8_t>(c) >> 4];
    result += digits[static_cast<uint8_t>(c) & 15];
  }
  return result;
}

} // namespace

CAF_TEST(every strict prefix of a valid message is rejected) {
  size_t failures = 0;
  size_t tried = 0;
  for (auto& message : valid_messages()) {
    for (size_t size = 0; size < message.size(); ++size) {
      auto prefix = message.substr(0, size);
      ++tried;
      // Each message ends where its last field ends, so no strict prefix
      // is a whole message.
      auto x = decode_pgoutput(prefix);
      if (x || !decodes_or_rejects(prefix)) {
        if (failures++ == 0)
          CAF_MESSAGE("prefix not rejected: " << hex(prefix));
      }
    }
  }
  for (auto& payload : valid_payloads()) {
    for (size_t size = 0; size < payload.size(); ++size) {
      ++tried;
      auto x = decode_copy_data(payload.substr(0, size));
      if (x || !payload_decodes_or_rejects(payload.substr(0, size))) {
        if (failures++ == 0)
          CAF_MESSAGE(
            "payload prefix not rejected: " << hex(payload.substr(0, size)));
      }
    }
  }
  CAF_MESSAGE(tried << " prefixes");
  CAF_CHECK_EQUAL(failures, 0u);
}

CAF_TEST(random bytes decode to a value or bad_row) {
  std::mt19937 gen{20240601};
  std::uniform_int_distribution<int> byte{0, 255};
  std::uniform_int_distribution<size_t> length{0, 64};
  static constexpr std::string_view types = "BCRIUDTYO";
  size_t failures = 0;
  size_t values = 0;
  for (int i = 0; i < 100000; ++i) {
    std::string input(length(gen), '\0');
    for (auto& c : input)
      c = static_cast<char>(byte(gen));
    // Half start with a real type byte, to get past the first check.
    if (i % 2 == 0 && !input.empty())
      input[0] = types[static_cast<size_t>(byte(gen)) % types.size()];
    auto payload = (i % 4 == 0 ? "w" + std::string(24, '\0') : "") + input;
    if (!decodes_or_rejects(input) || !payload_decodes_or_rejects(payload)) {
      if (failures++ == 0)
        CAF_MESSAGE("failed on: " << hex(input));
    }
    values += decode_pgoutput(input) ? 1 : 0;
  }
  CAF_MESSAGE(values << " of 100000 random inputs decoded");
  CAF_CHECK_EQUAL(failures, 0u);
}

CAF_TEST(single byte mutations of valid messages decode to a value or bad_row) {
  std::mt19937 gen{7};
  std::uniform_int_distribution<int> byte{0, 255};
  auto messages = valid_messages();
  auto payloads = valid_payloads();
  size_t failures = 0;
  size_t values = 0;
  for (int i = 0; i < 100000; ++i) {
    bool bare = i % 2 == 0;
    auto& pool = bare ? messages : payloads;
    auto input = pool[static_cast<size_t>(gen() % pool.size())];
    auto pos = static_cast<size_t>(gen() % input.size());
    // Most fields of interest are in the first bytes; aim there half the time.
    if (i % 4 < 2)
      pos %= std::min<size_t>(input.size(), 48);
    input[pos] = static_cast<char>(byte(gen));
    bool ok = bare ? decodes_or_rejects(input)
                   : payload_decodes_or_rejects(input);
    if (!ok && failures++ == 0)
      CAF_MESSAGE("failed on: " << hex(input));
    values += (bare ? static_cast<bool>(decode_pgoutput(input))
                    : static_cast<bool>(decode_copy_data(input)))
                ? 1
                : 0;
  }
  CAF_MESSAGE(values << " of 100000 mutations decoded");
  CAF_CHECK_EQUAL(failures, 0u);
}

CAF_TEST(the real entities relation is usable and a changed one is not) {
  // Captured from Postgres 15 with ebridge's migrations applied.
  const auto& rel = real_entities_relation();
  CAF_CHECK_EQUAL(entities_relation_problem(rel), "");
  // REPLICA IDENTITY DEFAULT: inserts still work, updates and deletes not.
  auto identity = rel;
  identity.replica_identity = 'd';
  CAF_CHECK_NOT_EQUAL(entities_relation_problem(identity).find(
                        "REPLICA IDENTITY is not FULL"),
                      std::string::npos);
  CAF_CHECK_EQUAL(entities_relation_problem(identity, false), "");
  // A column dropped, another of another type.
  auto changed = rel;
  changed.columns.erase(
    std::remove_if(changed.columns.begin(), changed.columns.end(),
                   [](const relation_column& c) { return c.name == "parent"; }),
    changed.columns.end());
  for (auto& c : changed.columns)
    if (c.name == "tags")
      c.type_oid = 25; // text
  auto problem = entities_relation_problem(changed, false);
  CAF_CHECK_NOT_EQUAL(problem.find("column parent (text) is missing"),
                      std::string::npos);
  CAF_CHECK_NOT_EQUAL(problem.find("column tags has type oid 25, expected "
                                   "jsonb"),
                      std::string::npos);
}
