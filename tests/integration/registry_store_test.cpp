#define CAF_SUITE registry_store
#include <caf/test/unit_test.hpp>
#include "tests/test_util.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>
#include <thread>

#include "core/error.hpp"
#include "core/tags.hpp"
#include "storage/database.hpp"
#include "storage/migrations.hpp"
#include "storage/registry_store.hpp"
#include "tests/integration/pg_fixture.hpp"

using namespace ebridge;

namespace {

constexpr const char* ref_a = "52df825db9cb78ff";
constexpr const char* ref_b = "00000000000000bb";
constexpr const char* tags_a = R"({"demo_id":"X","role":"reviewer"})";

struct fixture {
  fixture() {
    pg_connection conn{db.url()};
    auto applied = migrate(conn);
    if (!applied)
      CAF_FAIL("migrate: " << describe(applied.error()));
  }

  std::string one(const std::string& sql) {
    return db.exec(sql)[0][0].as<std::string>();
  }

  bridge_row upsert(const std::string& tenant, const std::string& ref,
                    const std::string& tags = "{}") {
    auto row = store.upsert_bridge(tenant, ref, tags, stream_path(ref));
    if (!row)
      CAF_FAIL("upsert: " << describe(row.error()));
    return *row;
  }

  test::scratch_database db;
  registry_store store{db.url()};
};

uint8_t code(ec x) {
  return static_cast<uint8_t>(x);
}

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
    .count();
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(registry_store_tests, fixture)

CAF_TEST(upsert inserts a bridge without cursor and with epoch zero) {
  auto row = upsert("default", ref_a, tags_a);
  CAF_CHECK_EQUAL(row.tenant_id, "default");
  CAF_CHECK_EQUAL(row.source_ref, ref_a);
  // Normalized as the ref was computed, not as jsonb prints it.
  CAF_CHECK_EQUAL(row.tags, R"({"demo_id":"X","role":"reviewer"})");
  CAF_CHECK_EQUAL(row.stream_url, "/_entities/52df825db9cb78ff");
  CAF_CHECK(!row.has_cursor());
  CAF_CHECK_EQUAL(row.producer_epoch, 0);
  CAF_CHECK_LESS(std::abs(row.created_ms - now_ms()), 60'000);
}

CAF_TEST(upsert of an existing bridge keeps its row and cursor) {
  auto first = upsert("default", ref_a, tags_a);
  CAF_REQUIRE(EB_OK(store.update_cursor("default", ref_a, "h1", "10_2")));
  CAF_REQUIRE_EQUAL(EB_OK(store.next_producer_epoch("default", ref_a)), 1);
  auto second = upsert("default", ref_a, tags_a);
  CAF_CHECK_EQUAL(second.cursor_handle, "h1");
  CAF_CHECK_EQUAL(second.cursor_offset, "10_2");
  CAF_CHECK_EQUAL(second.producer_epoch, 1);
  CAF_CHECK_EQUAL(second.created_ms, first.created_ms);
  CAF_CHECK_EQUAL(one("SELECT count(*) FROM entity_bridges"), "1");
}

CAF_TEST(upsert with other tags for the same ref is refused) {
  upsert("default", ref_a, tags_a);
  auto row = store.upsert_bridge("default", ref_a, R"({"x":"y"})",
                                 stream_path(ref_a));
  CAF_REQUIRE(!row);
  CAF_CHECK_EQUAL(row.error().code(), code(ec::invalid_input));
  CAF_CHECK_EQUAL(one("SELECT tags->>'role' FROM entity_bridges"), "reviewer");
}

CAF_TEST(concurrent upserts of one ref create one row and agree) {
  constexpr int n = 8;
  std::vector<bridge_row> rows(n);
  std::vector<std::string> errors(n);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      registry_store own{db.url()};
      auto row = own.upsert_bridge("default", ref_a, tags_a,
                                   stream_path(ref_a));
      if (row)
        rows[i] = *row;
      else
        errors[i] = describe(row.error());
    });
  for (auto& t : threads)
    t.join();
  for (int i = 0; i < n; ++i) {
    CAF_CHECK_EQUAL(errors[i], "");
    CAF_CHECK_EQUAL(rows[i], rows[0]);
  }
  CAF_CHECK_EQUAL(one("SELECT count(*) FROM entity_bridges"), "1");
}

CAF_TEST(touch moves the last activity and reports missing bridges) {
  upsert("default", ref_a);
  db.exec("UPDATE entity_bridges SET last_observer_activity_at = "
          "now() - interval '1 hour'");
  auto touched = store.touch("default", ref_a);
  CAF_REQUIRE(touched);
  CAF_CHECK(*touched);
  auto row = store.get_bridge("default", ref_a);
  CAF_REQUIRE(row);
  CAF_CHECK_LESS(std::abs(row->last_activity_ms - now_ms()), 60'000);
  auto missing = store.touch("default", ref_b);
  CAF_REQUIRE(missing);
  CAF_CHECK(!*missing);
}

CAF_TEST(get of a missing bridge is not found) {
  auto row = store.get_bridge("default", ref_a);
  CAF_REQUIRE(!row);
  CAF_CHECK_EQUAL(row.error().code(), code(ec::not_found));
}

CAF_TEST(list returns the bridges of one tenant in ref order) {
  upsert("t1", ref_b);
  upsert("t1", ref_a, tags_a);
  upsert("t2", ref_a, tags_a);
  auto rows = store.list_bridges("t1");
  CAF_REQUIRE(rows);
  CAF_REQUIRE_EQUAL(rows->size(), 2u);
  CAF_CHECK_EQUAL((*rows)[0].source_ref, ref_b);
  CAF_CHECK_EQUAL((*rows)[1].source_ref, ref_a);
  CAF_CHECK_EQUAL((*rows)[1].tenant_id, "t1");
  auto none = store.list_bridges("t3");
  CAF_REQUIRE(none);
  CAF_CHECK(none->empty());
}

CAF_TEST(list stale returns bridges idle since before the given time) {
  upsert("default", ref_a, tags_a);
  upsert("default", ref_b);
  upsert("other", ref_b);
  db.exec("UPDATE entity_bridges SET last_observer_activity_at = "
          "now() - interval '20 minutes' WHERE source_ref = '"
          + std::string{ref_b} + "'");
  auto stale = store.list_stale("default", now_ms() - 15 * 60'000);
  CAF_REQUIRE(stale);
  CAF_REQUIRE_EQUAL(stale->size(), 1u);
  CAF_CHECK_EQUAL((*stale)[0].source_ref, ref_b);
  CAF_CHECK_EQUAL((*stale)[0].tenant_id, "default");
  auto none = store.list_stale("default", now_ms() - 30 * 60'000);
  CAF_REQUIRE(none);
  CAF_CHECK(none->empty());
}

CAF_TEST(delete removes the row once) {
  upsert("default", ref_a, tags_a);
  auto first = store.delete_bridge("default", ref_a);
  CAF_REQUIRE(first);
  CAF_CHECK(*first);
  auto second = store.delete_bridge("default", ref_a);
  CAF_REQUIRE(second);
  CAF_CHECK(!*second);
  CAF_CHECK_EQUAL(one("SELECT count(*) FROM entity_bridges"), "0");
}

CAF_TEST(a stale delete spares a bridge touched since it was listed) {
  upsert("default", ref_a, tags_a);
  upsert("default", ref_b);
  db.exec("UPDATE entity_bridges SET last_observer_activity_at = "
          "now() - interval '20 minutes'");
  auto cutoff = now_ms() - 15 * 60'000;
  // ref_a is touched between the GC's listing and its delete.
  CAF_CHECK(EB_OK(store.touch("default", ref_a)));
  CAF_CHECK(!EB_OK(store.delete_stale_bridge("default", ref_a, cutoff)));
  CAF_CHECK(EB_OK(store.delete_stale_bridge("default", ref_b, cutoff)));
  CAF_CHECK_EQUAL(one("SELECT string_agg(source_ref, ',') FROM "
                      "entity_bridges"),
                  ref_a);
}

CAF_TEST(resume all returns every bridge of every tenant with a new epoch) {
  upsert("t1", ref_a, tags_a);
  upsert("t2", ref_b);
  CAF_CHECK(EB_OK(
    store.update_cursor("t1", ref_a, "sys-1/slot/1", "0000000000000042_3")));
  auto before = EB_OK(store.next_producer_epoch("t1", ref_a));
  auto rows = EB_OK(store.resume_all_bridges());
  CAF_REQUIRE_EQUAL(rows.size(), 2u);
  CAF_CHECK_EQUAL(rows[0].tenant_id, "t1");
  CAF_CHECK_EQUAL(rows[0].cursor_handle, "sys-1/slot/1");
  CAF_CHECK_EQUAL(rows[0].cursor_offset, "0000000000000042_3");
  CAF_CHECK_EQUAL(rows[1].tenant_id, "t2");
  CAF_CHECK(!rows[1].has_cursor());
  // Each epoch is new, stored, and never handed out again.
  CAF_CHECK_GREATER(rows[0].producer_epoch, before);
  CAF_CHECK_GREATER(rows[1].producer_epoch, 0);
  CAF_CHECK_NOT_EQUAL(rows[0].producer_epoch, rows[1].producer_epoch);
  CAF_CHECK_EQUAL(one("SELECT producer_epoch FROM entity_bridges WHERE "
                      "tenant_id = 't1'"),
                  std::to_string(rows[0].producer_epoch));
  CAF_CHECK_GREATER(EB_OK(store.next_producer_epoch("t1", ref_a)),
                    rows[0].producer_epoch);
  auto again = EB_OK(store.resume_all_bridges());
  CAF_REQUIRE_EQUAL(again.size(), 2u);
  CAF_CHECK_GREATER(again[1].producer_epoch, rows[1].producer_epoch);
}

CAF_TEST(cursor updates and clears) {
  upsert("default", ref_a, tags_a);
  CAF_CHECK(EB_OK(store.update_cursor("default", ref_a, "sys-1/slot/1",
                                      "0000000000000042_3")));
  auto row = store.get_bridge("default", ref_a);
  CAF_CHECK_EQUAL(row->cursor_handle, "sys-1/slot/1");
  CAF_CHECK_EQUAL(row->cursor_offset, "0000000000000042_3");
  CAF_CHECK(EB_OK(store.clear_cursor("default", ref_a)));
  row = store.get_bridge("default", ref_a);
  CAF_CHECK(!row->has_cursor());
  CAF_CHECK_EQUAL(one("SELECT count(*) FROM entity_bridges "
                      "WHERE shape_handle IS NULL AND shape_offset IS NULL"),
                  "1");
  CAF_CHECK(!EB_OK(store.update_cursor("default", ref_b, "h", "1_1")));
  CAF_CHECK(!EB_OK(store.clear_cursor("default", ref_b)));
}

CAF_TEST(a cursor never moves back on the same handle) {
  upsert("default", ref_a, tags_a);
  CAF_CHECK(EB_OK(store.update_cursor("default", ref_a, "h1", "0000000009")));
  // A late write of an older position changes nothing.
  CAF_CHECK(!EB_OK(store.update_cursor("default", ref_a, "h1", "0000000005")));
  CAF_CHECK_EQUAL(
    std::string{store.get_bridge("default", ref_a)->cursor_offset},
    "0000000009");
  // Forward, the same again, another handle, or after a clear: written.
  CAF_CHECK(EB_OK(store.update_cursor("default", ref_a, "h1", "0000000012")));
  CAF_CHECK(EB_OK(store.update_cursor("default", ref_a, "h1", "0000000012")));
  CAF_CHECK(EB_OK(store.update_cursor("default", ref_a, "h2", "0000000001")));
  CAF_CHECK_EQUAL(
    std::string{store.get_bridge("default", ref_a)->cursor_handle}, "h2");
  CAF_CHECK(EB_OK(store.clear_cursor("default", ref_a)));
  CAF_CHECK(EB_OK(store.update_cursor("default", ref_a, "h2", "0000000000")));
  CAF_CHECK_EQUAL(
    std::string{store.get_bridge("default", ref_a)->cursor_offset},
    "0000000000");
}

CAF_TEST(a batch of cursors writes each as one write would in one commit) {
  constexpr const char* ref_c = "00000000000000cc";
  upsert("default", ref_a, tags_a);
  upsert("default", ref_b);
  upsert("t2", ref_c);
  CAF_CHECK(EB_OK(store.update_cursor("default", ref_b, "h1", "0000000009")));
  std::vector<cursor_write> writes{
    {"default", ref_a, "h1", "0000000007", false, {}}, // new: written
    {"default", ref_b, "h1", "0000000005", false, {}}, // backwards: kept
    {"t2", ref_c, "h'--", "1_1'; --", false, {}},      // hostile: verbatim
    {"default", ref_c, "h1", "0000000001", false, {}}, // no such row
    {"default", "ABC", "h1", "0000000001", false, {}}, // bad ref: refused
    {"default", ref_a, "", "0000000001", false, {}},   // empty handle
  };
  auto done = EB_OK(store.update_cursors(writes));
  CAF_REQUIRE_EQUAL(done.size(), writes.size());
  CAF_CHECK(done[0].written && done[0].refused.empty());
  CAF_CHECK(!done[1].written && done[1].refused.empty());
  CAF_CHECK(done[2].written);
  CAF_CHECK(!done[3].written && done[3].refused.empty());
  CAF_CHECK(!done[4].written && !done[4].refused.empty());
  CAF_CHECK(!done[5].written && !done[5].refused.empty());
  CAF_CHECK_EQUAL(EB_OK(store.get_bridge("default", ref_a)).cursor_offset,
                  "0000000007");
  CAF_CHECK_EQUAL(EB_OK(store.get_bridge("default", ref_b)).cursor_offset,
                  "0000000009");
  auto c = EB_OK(store.get_bridge("t2", ref_c));
  CAF_CHECK_EQUAL(c.cursor_handle, "h'--");
  CAF_CHECK_EQUAL(c.cursor_offset, "1_1'; --");
  // In one transaction: the rows it wrote share its now().
  CAF_CHECK_EQUAL(one("SELECT count(*) || ' ' || count(DISTINCT updated_at) "
                      "FROM entity_bridges "
                      "WHERE shape_offset IN ('0000000007', '1_1''; --')"),
                  "2 1");
  // Two writes of one bridge: both, in order (the later wins).
  std::vector<cursor_write> twice{
    {"default", ref_a, "h1", "0000000010", false, {}},
    {"default", ref_a, "h1", "0000000011", false, {}},
  };
  done = EB_OK(store.update_cursors(twice));
  CAF_REQUIRE_EQUAL(done.size(), 2u);
  CAF_CHECK(done[0].written && done[1].written);
  CAF_CHECK_EQUAL(EB_OK(store.get_bridge("default", ref_a)).cursor_offset,
                  "0000000011");
  CAF_CHECK(EB_OK(store.update_cursors({})).empty());
}

CAF_TEST(batches of cursors over the same rows in opposite orders never deadlock) {
  // Two workers of the pool write overlapping batches at once.
  std::vector<std::string> refs;
  for (int i = 0; i < 20; ++i) {
    char ref[17];
    std::snprintf(ref, sizeof ref, "%016x", i + 1);
    refs.emplace_back(ref);
    upsert("default", ref);
  }
  // Plans that visit the rows in the batch's order, as on a large table
  // (here the table is small enough for a scan in storage order).
  db.exec("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET "
          "enable_seqscan = off', current_database()); EXECUTE "
          "format('ALTER DATABASE %I SET enable_hashjoin = off', "
          "current_database()); EXECUTE format('ALTER DATABASE %I SET "
          "enable_mergejoin = off', current_database()); END $$");
  auto run = [&](bool reversed, std::string& failure) {
    registry_store own{db.url()};
    for (int round = 0; round < 40 && failure.empty(); ++round) {
      std::vector<cursor_write> writes;
      for (auto& ref : refs)
        writes.push_back(
          {"default", ref, "h", std::to_string(1000 + round), false, {}});
      if (reversed)
        std::reverse(writes.begin(), writes.end());
      auto done = own.update_cursors(writes);
      if (!done)
        failure = describe(done.error());
    }
  };
  std::string first, second;
  std::thread a{run, false, std::ref(first)};
  std::thread b{run, true, std::ref(second)};
  a.join();
  b.join();
  CAF_CHECK_EQUAL(first, "");
  CAF_CHECK_EQUAL(second, "");
  CAF_CHECK_EQUAL(one("SELECT count(*) FROM entity_bridges "
                      "WHERE shape_offset = '1039'"),
                  "20");
}

CAF_TEST(referenced refs are distinct and scoped by tenant) {
  db.exec("INSERT INTO entity_manifest_sources VALUES "
          "('t1', '/a/1', 'k1', 'aaaaaaaaaaaaaaaa'), "
          "('t1', '/a/2', 'k1', 'aaaaaaaaaaaaaaaa'), "
          "('t1', '/a/2', 'k2', 'bbbbbbbbbbbbbbbb'), "
          "('t2', '/a/1', 'k1', 'cccccccccccccccc')");
  auto refs = store.list_referenced("t1");
  CAF_REQUIRE(refs);
  CAF_CHECK_EQUAL(*refs, (std::vector<std::string>{"aaaaaaaaaaaaaaaa",
                                                   "bbbbbbbbbbbbbbbb"}));
  auto none = store.list_referenced("t3");
  CAF_REQUIRE(none);
  CAF_CHECK(none->empty());
}

CAF_TEST(producer epochs strictly increase) {
  upsert("default", ref_a, tags_a);
  CAF_CHECK_EQUAL(EB_OK(store.next_producer_epoch("default", ref_a)), 1);
  CAF_CHECK_EQUAL(EB_OK(store.next_producer_epoch("default", ref_a)), 2);
  registry_store other{db.url()};
  CAF_CHECK_EQUAL(EB_OK(other.next_producer_epoch("default", ref_a)), 3);
  auto missing = store.next_producer_epoch("default", ref_b);
  CAF_REQUIRE(!missing);
  CAF_CHECK_EQUAL(missing.error().code(), code(ec::not_found));
}

CAF_TEST(a bridge registered again after a delete never reuses an epoch) {
  upsert("default", ref_a, tags_a);
  auto first = EB_OK(store.next_producer_epoch("default", ref_a));
  CAF_CHECK(EB_OK(store.delete_bridge("default", ref_a)));
  auto row = upsert("default", ref_a, tags_a);
  CAF_CHECK_EQUAL(row.producer_epoch, 0);
  auto second = EB_OK(store.next_producer_epoch("default", ref_a));
  CAF_CHECK_GREATER(second, first);
}

CAF_TEST(text that is not UTF-8 is refused) {
  auto row = store.upsert_bridge("t\xff", ref_a, "{}", stream_path(ref_a));
  CAF_REQUIRE(!row);
  CAF_CHECK_EQUAL(row.error().code(), code(ec::invalid_input));
  auto cursor = store.update_cursor("default", ref_a, "h", "\xc3");
  CAF_REQUIRE(!cursor);
  CAF_CHECK_EQUAL(cursor.error().code(), code(ec::invalid_input));
}

CAF_TEST(tenants are isolated) {
  upsert("t1", ref_a, tags_a);
  upsert("t2", ref_a, tags_a);
  CAF_CHECK(EB_OK(store.update_cursor("t1", ref_a, "h", "1_1")));
  CAF_CHECK_EQUAL(EB_OK(store.next_producer_epoch("t1", ref_a)), 1);
  auto t2 = store.get_bridge("t2", ref_a);
  CAF_REQUIRE(t2);
  CAF_CHECK(!t2->has_cursor());
  CAF_CHECK_EQUAL(t2->producer_epoch, 0);
  CAF_CHECK(EB_OK(store.delete_bridge("t1", ref_a)));
  CAF_CHECK(store.get_bridge("t2", ref_a));
  CAF_CHECK(!EB_OK(store.touch("t1", ref_a)));
}

CAF_TEST(hostile text is stored verbatim and never runs as SQL) {
  auto hostile_tags = parse_tags(R"({"x":"x'; DROP TABLE entities; --"})");
  CAF_REQUIRE(hostile_tags);
  auto ref = source_ref(*hostile_tags);
  std::string tenant = "t'; DROP TABLE entity_bridges; --";
  auto row = store.upsert_bridge(tenant, ref, to_json(*hostile_tags),
                                 stream_path(ref));
  EB_REQUIRE_MSG(row, describe(row.error()));
  CAF_CHECK_EQUAL(row->tenant_id, tenant);
  CAF_CHECK_EQUAL(one("SELECT tags->>'x' FROM entity_bridges"),
                  "x'; DROP TABLE entities; --");
  CAF_CHECK_EQUAL(one("SELECT to_regclass('entities') IS NOT NULL"), "t");
  CAF_CHECK(EB_OK(store.update_cursor(tenant, ref, "h'--", "1_1'; --")));
  CAF_CHECK_EQUAL(EB_OK(store.get_bridge(tenant, ref)).cursor_offset,
                  "1_1'; --");
  CAF_CHECK_EQUAL(EB_OK(store.list_bridges(tenant)).size(), 1u);
}

CAF_TEST(bad input is refused before it reaches SQL and changes nothing) {
  auto check_invalid = [&](caf::expected<bridge_row> x) {
    CAF_REQUIRE(!x);
    CAF_CHECK_EQUAL(x.error().code(), code(ec::invalid_input));
  };
  check_invalid(store.upsert_bridge("", ref_a, "{}", stream_path(ref_a)));
  check_invalid(store.upsert_bridge(std::string("t\0x", 3), ref_a, "{}",
                                    stream_path(ref_a)));
  check_invalid(store.upsert_bridge("t", "../etc", "{}", "/x"));
  check_invalid(store.upsert_bridge("t", "ABC", "{}", "/x"));
  check_invalid(store.upsert_bridge("t", ref_a, "[1]", "/x"));
  check_invalid(store.upsert_bridge("t", ref_a, "{\"a\":1}", "/x"));
  check_invalid(store.upsert_bridge("t", ref_a, "not json", "/x"));
  check_invalid(store.upsert_bridge("t", ref_a, "{}", ""));
  check_invalid(store.upsert_bridge(std::string(300, 't'), ref_a, "{}", "/x"));
  auto cursor = store.update_cursor("t", ref_a, "", "1_1");
  CAF_REQUIRE(!cursor);
  CAF_CHECK_EQUAL(cursor.error().code(), code(ec::invalid_input));
  CAF_CHECK_EQUAL(one("SELECT count(*) FROM entity_bridges"), "0");
}

CAF_TEST(a connection killed while idle is replaced on the next call) {
  upsert("default", ref_a, tags_a);
  // Every other connection to the scratch database is the store's.
  auto killed = db.exec("SELECT pg_terminate_backend(pid) FROM "
                        "pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()");
  CAF_REQUIRE_EQUAL(killed.size(), 1u);
  auto touched = store.touch("default", ref_a);
  EB_REQUIRE_MSG(touched, describe(touched.error()));
  CAF_CHECK(*touched);
}

CAF_TEST(an unreachable database is reported and retried with backoff) {
  registry_store nowhere{"postgresql://127.0.0.1:1/none"};
  auto first = nowhere.touch("default", ref_a);
  CAF_REQUIRE(!first);
  CAF_CHECK_EQUAL(first.error().code(), code(ec::database_unavailable));
  CAF_CHECK_EQUAL(nowhere.ping().code(), code(ec::database_unavailable));
  // Within the backoff the connection answers at once, saying when it
  // retries (a long backoff keeps this independent of timing).
  pg_connection conn{"postgresql://127.0.0.1:1/none", "ebridge-test",
                     pg_connection::backoff{std::chrono::seconds{30},
                                            std::chrono::seconds{60}}};
  auto probe = [](pqxx::connection&) { return 1; };
  CAF_CHECK(!conn.run(probe)); // fails; may retry at once
  CAF_CHECK(!conn.run(probe)); // fails; next try in 30 s
  auto third = conn.run(probe);
  CAF_REQUIRE(!third);
  CAF_CHECK_EQUAL(third.error().code(), code(ec::database_unavailable));
  CAF_CHECK_NOT_EQUAL(error_message(third.error()).find("reconnecting in"),
                      std::string::npos);
}

CAF_TEST_FIXTURE_SCOPE_END()
