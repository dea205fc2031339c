#define CAF_SUITE migrations
#include <caf/test/unit_test.hpp>
#include "tests/test_util.hpp"

#include <thread>

#include "core/error.hpp"
#include "storage/database.hpp"
#include "storage/migrations.hpp"
#include "tests/integration/pg_fixture.hpp"

using namespace ebridge;

namespace {

struct fixture {
  test::scratch_database db;
  pg_connection conn{db.url()};

  std::string one(const std::string& sql) {
    return db.exec(sql)[0][0].as<std::string>();
  }
};

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(migration_tests, fixture)

CAF_TEST(migrate creates every table on an empty database) {
  auto applied = migrate(conn);
  EB_REQUIRE_MSG(applied, describe(applied.error()));
  CAF_CHECK_EQUAL(applied->size(), known_migrations().size());
  for (auto table : {"entities", "entity_bridges", "entity_manifest_sources",
                     "ebridge_migrations"})
    CAF_CHECK_EQUAL(one(std::string{"SELECT to_regclass('"} + table
                        + "') IS NOT NULL"),
                    "t");
  CAF_CHECK_EQUAL(one("SELECT relreplident FROM pg_class "
                      "WHERE oid = 'entities'::regclass"),
                  "f");
  CAF_CHECK_EQUAL(one("SELECT count(*) FROM pg_indexes WHERE tablename = "
                      "'entities' AND indexdef LIKE '%USING gin (tags)%'"),
                  "1");
  CAF_CHECK_EQUAL(one("SELECT count(*) FROM information_schema.columns WHERE "
                      "table_name = 'entity_bridges' AND "
                      "column_name = 'producer_epoch'"),
                  "1");
}

CAF_TEST(migrate twice applies nothing the second time) {
  CAF_REQUIRE(migrate(conn));
  auto again = migrate(conn);
  CAF_REQUIRE(again);
  CAF_CHECK(again->empty());
  CAF_CHECK_EQUAL(one("SELECT count(*) FROM ebridge_migrations"),
                  std::to_string(known_migrations().size()));
}

CAF_TEST(concurrent migrations record each version once) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      pg_connection own{db.url()};
      if (!migrate(own))
        ++failures;
    });
  for (auto& t : threads)
    t.join();
  CAF_CHECK_EQUAL(failures.load(), 0);
  CAF_CHECK_EQUAL(one("SELECT count(*) FROM ebridge_migrations"),
                  std::to_string(known_migrations().size()));
}

CAF_TEST(an existing entities table of the application is kept) {
  db.exec(R"sql(
    CREATE TABLE entities (
      tenant_id text NOT NULL DEFAULT 'default', url text NOT NULL,
      type text NOT NULL, status text NOT NULL DEFAULT 'idle',
      tags jsonb NOT NULL DEFAULT '{}', tags_index text[] NOT NULL DEFAULT '{}',
      spawn_args jsonb DEFAULT '{}', parent text, created_by text,
      type_revision integer, inbox_schemas jsonb, state_schemas jsonb,
      created_at bigint NOT NULL, updated_at bigint NOT NULL,
      subscription_id text, write_token text,
      PRIMARY KEY (tenant_id, url));
    ALTER TABLE entities REPLICA IDENTITY FULL;
    INSERT INTO entities (url, type, created_at, updated_at, write_token)
    VALUES ('/a/1', 'agent', 1, 2, 'secret');)sql");
  auto applied = migrate(conn);
  EB_REQUIRE_MSG(applied, describe(applied.error()));
  CAF_CHECK_EQUAL(one("SELECT write_token FROM entities WHERE url = '/a/1'"),
                  "secret");
  // ebridge did not add its own index to the application's table.
  CAF_CHECK_EQUAL(one("SELECT count(*) FROM pg_indexes WHERE tablename = "
                      "'entities' AND indexname = 'entities_tags_gin'"),
                  "0");
}

CAF_TEST(an unusable entities table is reported with everything missing) {
  db.exec(R"sql(
    CREATE TABLE entities (
      tenant_id text NOT NULL, url text NOT NULL, type text NOT NULL,
      status text NOT NULL, tags json NOT NULL,
      created_at bigint NOT NULL, updated_at bigint NOT NULL))sql");
  auto applied = migrate(conn);
  CAF_REQUIRE(!applied);
  CAF_CHECK_EQUAL(applied.error().code(),
                  static_cast<uint8_t>(ec::schema_mismatch));
  auto msg = error_message(applied.error());
  CAF_CHECK(contains(msg, "column tags has type json, expected jsonb"));
  CAF_CHECK(contains(msg, "column spawn_args (jsonb) is missing"));
  CAF_CHECK(contains(msg, "column state_schemas (jsonb) is missing"));
  CAF_CHECK(
    contains(msg, "no primary key or unique index on (tenant_id, url)"));
  CAF_CHECK(contains(msg, "REPLICA IDENTITY is not FULL"));
  CAF_CHECK(!contains(msg, "column url"));
}

CAF_TEST(a registry table of the original server gains the producer epoch) {
  db.exec(R"sql(
    CREATE TABLE entity_bridges (
      tenant_id text NOT NULL, source_ref text NOT NULL, tags jsonb NOT NULL,
      stream_url text NOT NULL, shape_handle text, shape_offset text,
      last_observer_activity_at timestamptz NOT NULL DEFAULT now(),
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (tenant_id, source_ref), UNIQUE (tenant_id, stream_url));
    INSERT INTO entity_bridges (tenant_id, source_ref, tags, stream_url,
                                shape_handle, shape_offset)
    VALUES ('default', '52df825db9cb78ff', '{"demo_id":"X"}',
            '/_entities/52df825db9cb78ff', 'h', '0_0');)sql");
  auto applied = migrate(conn);
  EB_REQUIRE_MSG(applied, describe(applied.error()));
  CAF_CHECK_EQUAL(one("SELECT shape_offset || ':' || producer_epoch FROM "
                      "entity_bridges"),
                  "0_0:0");
}

CAF_TEST(an unreachable database is reported as unavailable) {
  pg_connection nowhere{"postgresql://127.0.0.1:1/none?connect_timeout=2"};
  auto applied = migrate(nowhere);
  CAF_REQUIRE(!applied);
  CAF_CHECK_EQUAL(applied.error().code(),
                  static_cast<uint8_t>(ec::database_unavailable));
}

CAF_TEST_FIXTURE_SCOPE_END()
