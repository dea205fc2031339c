#include "storage/migrations.hpp"

#include <functional>
#include <map>

#include "core/log.hpp"
#include "core/member.hpp"
#include "storage/database.hpp"

namespace ebridge {

namespace {

/// Serializes migrations of concurrent ebridge starts (an arbitrary key).
constexpr long long migration_lock_key = 0x6562726964676531; // "ebridge1"

/// Creates `entities` only when the application has not: the table is the
/// application's, ebridge only reads it.
void create_entities_if_absent(pqxx::work& tx) {
  auto exists = tx.exec1("SELECT to_regclass('entities') IS NOT NULL")[0]
                  .as<bool>();
  if (exists)
    return;
  tx.exec0(R"sql(
    CREATE TABLE entities (
      tenant_id     text    NOT NULL DEFAULT 'default',
      url           text    NOT NULL,
      type          text    NOT NULL,
      status        text    NOT NULL DEFAULT 'idle'
        CHECK (status IN ('spawning', 'running', 'idle', 'paused',
                          'stopping', 'stopped', 'killed')),
      tags          jsonb   NOT NULL DEFAULT '{}',
      tags_index    text[]  NOT NULL DEFAULT '{}',
      spawn_args    jsonb   DEFAULT '{}',
      parent        text,
      created_by    text,
      type_revision integer,
      inbox_schemas jsonb,
      state_schemas jsonb,
      created_at    bigint  NOT NULL,
      updated_at    bigint  NOT NULL,
      PRIMARY KEY (tenant_id, url)
    ))sql");
  tx.exec0("CREATE INDEX entities_tags_gin ON entities USING gin (tags)");
  // Updates and deletes must carry the old row for move-out routing.
  tx.exec0("ALTER TABLE entities REPLICA IDENTITY FULL");
}

struct migration {
  migration_info info;
  std::function<void(pqxx::work&)> apply;
};

const std::vector<migration>& migrations() {
  static const std::vector<migration> list = {
    {{1, "entities, entity_bridges, entity_manifest_sources"},
     [](pqxx::work& tx) {
       create_entities_if_absent(tx);
       // Same shape as the original's tables, so an existing database of the
       // TypeScript server keeps its rows.
       tx.exec0(R"sql(
         CREATE TABLE IF NOT EXISTS entity_bridges (
           tenant_id                 text        NOT NULL,
           source_ref                text        NOT NULL,
           tags                      jsonb       NOT NULL,
           stream_url                text        NOT NULL,
           shape_handle              text,
           shape_offset              text,
           last_observer_activity_at timestamptz NOT NULL DEFAULT now(),
           created_at                timestamptz NOT NULL DEFAULT now(),
           updated_at                timestamptz NOT NULL DEFAULT now(),
           PRIMARY KEY (tenant_id, source_ref),
           UNIQUE (tenant_id, stream_url)
         ))sql");
       tx.exec0(R"sql(
         CREATE TABLE IF NOT EXISTS entity_manifest_sources (
           tenant_id        text NOT NULL,
           owner_entity_url text NOT NULL,
           manifest_key     text NOT NULL,
           source_ref       text NOT NULL,
           PRIMARY KEY (tenant_id, owner_entity_url, manifest_key)
         ))sql");
       tx.exec0("CREATE INDEX IF NOT EXISTS entity_manifest_sources_ref "
                "ON entity_manifest_sources (tenant_id, source_ref)");
     }},
    {{2, "entity_bridges: producer epoch and activity index"},
     [](pqxx::work& tx) {
       // A persisted epoch, bumped at every bridge start, so a restarted
       // producer is never taken for a duplicate of its previous life.
       tx.exec0("ALTER TABLE entity_bridges ADD COLUMN IF NOT EXISTS "
                "producer_epoch bigint NOT NULL DEFAULT 0");
       tx.exec0("CREATE INDEX IF NOT EXISTS entity_bridges_activity ON "
                "entity_bridges (tenant_id, last_observer_activity_at)");
     }},
    {{3, "producer epochs from one sequence"},
     [](pqxx::work& tx) {
       // Epochs must never repeat for a stream, even when its registry row
       // is deleted (idle GC) and created again.
       tx.exec0("CREATE SEQUENCE IF NOT EXISTS ebridge_producer_epoch");
       tx.exec("SELECT setval('ebridge_producer_epoch', "
               "greatest(1, (SELECT coalesce(max(producer_epoch), 0) + 1 "
               "FROM entity_bridges)), false)");
     }},
    {{4, "replication slot generations"},
     [](pqxx::work& tx) {
       // A slot dropped and created again is a new change feed: its
       // generation is part of every cursor's handle.
       tx.exec0(R"sql(
         CREATE TABLE IF NOT EXISTS ebridge_slots (
           slot_name  text        PRIMARY KEY,
           generation bigint      NOT NULL,
           created_at timestamptz NOT NULL DEFAULT now()
         ))sql");
     }},
  };
  return list;
}

} // namespace

std::vector<migration_info> known_migrations() {
  std::vector<migration_info> result;
  for (auto& m : migrations())
    result.push_back(m.info);
  return result;
}

caf::expected<std::vector<int>> migrate(pg_connection& db) {
  auto applied = db.run([](pqxx::connection& conn) {
    std::vector<int> result;
    for (auto& m : migrations()) {
      pqxx::work tx{conn};
      tx.exec_params("SELECT pg_advisory_xact_lock($1)", migration_lock_key);
      tx.exec0(R"sql(
        CREATE TABLE IF NOT EXISTS ebridge_migrations (
          version    integer     PRIMARY KEY,
          name       text        NOT NULL,
          applied_at timestamptz NOT NULL DEFAULT now()
        ))sql");
      auto done = tx.exec_params(
        "SELECT 1 FROM ebridge_migrations WHERE version = $1", m.info.version);
      if (!done.empty())
        continue;
      m.apply(tx);
      tx.exec_params("INSERT INTO ebridge_migrations (version, name) "
                     "VALUES ($1, $2)",
                     m.info.version, m.info.name);
      tx.commit();
      log::info("migrations", "applied",
                {{"version", std::to_string(m.info.version)},
                 {"name", m.info.name}});
      result.push_back(m.info.version);
    }
    return result;
  });
  if (!applied)
    return applied.error();
  if (auto err = check_entities_table(db))
    return err;
  return applied;
}

caf::error check_entities_table(pg_connection& db) {
  auto problems = db.run([](pqxx::connection& conn) {
    std::vector<std::string> result;
    pqxx::read_transaction tx{conn};
    auto exists = tx.exec1("SELECT to_regclass('entities') IS NOT NULL")[0]
                    .as<bool>();
    if (!exists) {
      result.push_back("the table does not exist");
      return result;
    }
    std::map<std::string, std::string> actual;
    for (auto row :
         tx.exec("SELECT attname, format_type(atttypid, atttypmod) "
                 "FROM pg_attribute WHERE attrelid = to_regclass('entities') "
                 "AND attnum > 0 AND NOT attisdropped"))
      actual[row[0].as<std::string>()] = row[1].as<std::string>();
    for (auto& column : entity_column_table) {
      std::string name{column.name};
      std::string type{column.sql_type};
      auto i = actual.find(name);
      if (i == actual.end())
        result.push_back("column " + name + " (" + type + ") is missing");
      else if (i->second != type)
        result.push_back("column " + name + " has type " + i->second
                         + ", expected " + type);
    }
    auto unique = tx.exec1(R"sql(
      SELECT EXISTS (
        SELECT 1 FROM pg_index i
        WHERE i.indrelid = to_regclass('entities') AND i.indisunique
          AND i.indpred IS NULL AND i.indnkeyatts = 2
          AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
               FROM pg_attribute a
               WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))
              = ARRAY['tenant_id', 'url']))sql")[0]
                    .as<bool>();
    if (!unique)
      result.push_back("no primary key or unique index on (tenant_id, url)");
    auto identity = tx.exec1("SELECT relreplident FROM pg_class "
                             "WHERE oid = to_regclass('entities')")[0]
                      .as<std::string>();
    if (identity != "f")
      result.push_back("REPLICA IDENTITY is not FULL (run: ALTER TABLE "
                       "entities REPLICA IDENTITY FULL)");
    return result;
  });
  if (!problems)
    return problems.error();
  if (problems->empty())
    return caf::none;
  std::string message = "the entities table is not usable by ebridge: ";
  for (size_t i = 0; i < problems->size(); ++i)
    message += (i == 0 ? "" : "; ") + (*problems)[i];
  return make_error(ec::schema_mismatch, std::move(message));
}

} // namespace ebridge
