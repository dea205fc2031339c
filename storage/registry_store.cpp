#include "storage/registry_store.hpp"

#include <algorithm>
#include <optional>

#include "core/error.hpp"
#include "core/tags.hpp"
#include "storage/database.hpp"

namespace ebridge {

registry_backend::~registry_backend() = default;

caf::expected<std::vector<cursor_write>>
registry_backend::update_cursors(std::vector<cursor_write> writes) {
  for (auto& w : writes) {
    w.written = false;
    w.refused.clear();
    auto r = update_cursor(w.tenant, w.ref, w.handle, w.offset);
    if (r)
      w.written = *r;
    else if (has_code(r.error(), ec::invalid_input))
      w.refused = error_message(r.error());
    else
      return r.error();
  }
  return writes;
}

namespace {

// Nullable timestamps are coalesced: a table written by the original server
// may hold NULLs there.
constexpr const char* bridge_columns = R"sql(
  tenant_id, source_ref, tags::text, stream_url,
  coalesce(shape_handle, ''), coalesce(shape_offset, ''),
  coalesce((extract(epoch FROM last_observer_activity_at) * 1000)::bigint, 0),
  coalesce((extract(epoch FROM created_at) * 1000)::bigint, 0),
  coalesce((extract(epoch FROM updated_at) * 1000)::bigint, 0),
  producer_epoch)sql";

/// Tags as stored are jsonb text (Postgres' key order and spacing); rows
/// carry them normalized, as the ref was computed.
std::string normalized_tags(const std::string& jsonb_text) {
  auto tags = parse_tags(jsonb_text);
  return tags ? to_json(*tags) : jsonb_text;
}

bridge_row to_bridge_row(const pqxx::row& r) {
  bridge_row x;
  x.tenant_id = r[0].as<std::string>();
  x.source_ref = r[1].as<std::string>();
  x.tags = normalized_tags(r[2].as<std::string>());
  x.stream_url = r[3].as<std::string>();
  x.cursor_handle = r[4].as<std::string>();
  x.cursor_offset = r[5].as<std::string>();
  x.last_activity_ms = r[6].as<int64_t>();
  x.created_ms = r[7].as<int64_t>();
  x.updated_ms = r[8].as<int64_t>();
  x.producer_epoch = r[9].as<int64_t>();
  return x;
}

std::vector<bridge_row> to_bridge_rows(const pqxx::result& rows) {
  std::vector<bridge_row> result;
  result.reserve(rows.size());
  for (auto r : rows)
    result.push_back(to_bridge_row(r));
  return result;
}

/// Checks a text argument before it reaches SQL: Postgres text cannot hold
/// NUL, and nothing ebridge stores is unbounded.
caf::error check_text(const char* what, const std::string& value,
                      size_t max_size) {
  if (value.empty())
    return make_error(ec::invalid_input, std::string{what} + " is empty");
  if (value.size() > max_size)
    return make_error(ec::invalid_input, std::string{what} + " is longer than "
                                           + std::to_string(max_size)
                                           + " bytes");
  if (value.find('\0') != std::string::npos)
    return make_error(ec::invalid_input,
                      std::string{what} + " contains a NUL character");
  if (!is_valid_utf8(value))
    return make_error(ec::invalid_input,
                      std::string{what} + " is not valid UTF-8");
  return caf::none;
}

/// Source refs are lowercase hex, later with a `-` and a principal hash.
caf::error check_ref(const std::string& ref) {
  if (auto err = check_text("source ref", ref, 128))
    return err;
  auto ok = std::all_of(ref.begin(), ref.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-';
  });
  if (!ok)
    return make_error(ec::invalid_input,
                      "source ref " + js_string(ref)
                        + " has characters other than a-z, 0-9 and -");
  return caf::none;
}

caf::error check_key(const std::string& tenant, const std::string& ref) {
  if (auto err = check_text("tenant", tenant, 256))
    return err;
  return check_ref(ref);
}

/// Appends one row of texts to a JSON array of arrays being built ("[" so
/// far, or rows already): the keyed statements take their rows as one
/// parameter.
void append_json_row(std::string& json,
                     std::initializer_list<const std::string*> texts) {
  if (json.size() > 1)
    json += ',';
  json += '[';
  for (auto* text : texts) {
    if (json.back() != '[')
      json += ',';
    append_js_string(json, *text);
  }
  json += ']';
}

/// The (tenant, ref) of each row a statement returned as its first two
/// columns.
std::vector<bridge_key> keys_of(const pqxx::result& r) {
  std::vector<bridge_key> keys;
  keys.reserve(r.size());
  for (auto row : r)
    keys.emplace_back(row[0].as<std::string>(), row[1].as<std::string>());
  return keys;
}

/// Locks the rows of `keys_json` ([[tenant, ref, ...], ...]) in key order
/// before a statement changes them all: two such statements at once (the
/// pool's workers) then wait for each other instead of deadlocking.
void lock_in_key_order(pqxx::work& tx, const std::string& keys_json) {
  tx.exec_params("SELECT 1 FROM entity_bridges b, "
                 "jsonb_array_elements($1::jsonb) AS k "
                 "WHERE b.tenant_id = k->>0 AND b.source_ref = k->>1 "
                 "ORDER BY b.tenant_id, b.source_ref FOR UPDATE OF b",
                 keys_json);
}

} // namespace

struct registry_store::impl {
  explicit impl(std::string url) : db(std::move(url), "ebridge-registry") {
    // nop
  }

  /// Runs one parameterized statement that changes rows; true if it
  /// changed any.
  template <class... Ts>
  caf::expected<bool> modify(const std::string& sql, const Ts&... args) {
    return db.run([&](pqxx::connection& conn) {
      pqxx::work tx{conn};
      auto r = tx.exec_params(sql, args...);
      tx.commit();
      return r.affected_rows() > 0;
    });
  }

  pg_connection db;
};

registry_store::registry_store(std::string postgres_url)
  : impl_(std::make_unique<impl>(std::move(postgres_url))) {
  // nop
}

registry_store::~registry_store() = default;

caf::expected<bridge_row>
registry_store::upsert_bridge(const std::string& tenant, const std::string& ref,
                              const std::string& tags_json,
                              const std::string& stream_url) {
  if (auto err = check_key(tenant, ref))
    return err;
  if (auto err = check_text("stream url", stream_url, 1024))
    return err;
  if (auto tags = parse_tags(tags_json); !tags)
    return make_error(ec::invalid_input, error_message(tags.error()));
  using outcome = std::pair<bridge_row, bool>;
  auto attempt = [&](pqxx::connection& conn) {
    pqxx::work tx{conn};
    // Insert if absent; a concurrent insert of the same ref waits for the
    // other to commit, then finds the row below. No conflict target: with
    // one, a race on the stream_url key would raise instead of waiting.
    auto inserted = tx.exec_params(
      std::string{"INSERT INTO entity_bridges "
                  "(tenant_id, source_ref, tags, stream_url) "
                  "VALUES ($1, $2, $3::jsonb, $4) "
                  "ON CONFLICT DO NOTHING RETURNING "}
        + bridge_columns + ", true",
      tenant, ref, tags_json, stream_url);
    if (inserted.empty())
      inserted = tx.exec_params(std::string{"SELECT "} + bridge_columns
                                  + ", tags = $3::jsonb FROM entity_bridges "
                                    "WHERE tenant_id = $1 AND source_ref = $2",
                                tenant, ref, tags_json);
    tx.commit();
    if (inserted.empty())
      return std::optional<outcome>{};
    return std::optional<outcome>{
      outcome{to_bridge_row(inserted[0]), inserted[0][10].as<bool>()}};
  };
  // The row can vanish between the INSERT and the SELECT (a concurrent
  // delete): try again before blaming the stream url.
  auto result = impl_->db.run(attempt);
  for (int retry = 0; retry < 3 && result && !*result; ++retry)
    result = impl_->db.run(attempt);
  if (!result)
    return result.error();
  if (!*result)
    return make_error(ec::invalid_input, "stream url " + stream_url
                                           + " of tenant " + tenant
                                           + " belongs to another bridge");
  auto& found = **result;
  if (!found.second)
    return make_error(ec::invalid_input,
                      "source ref " + ref + " of tenant " + tenant
                        + " is already registered with other tags ("
                        + found.first.tags + ")");
  return std::move(found.first);
}

caf::expected<bool> registry_store::touch(const std::string& tenant,
                                          const std::string& ref) {
  if (auto err = check_key(tenant, ref))
    return err;
  return impl_->modify("UPDATE entity_bridges "
                       "SET last_observer_activity_at = now() "
                       "WHERE tenant_id = $1 AND source_ref = $2",
                       tenant, ref);
}

caf::expected<bridge_row> registry_store::get_bridge(const std::string& tenant,
                                                     const std::string& ref) {
  if (auto err = check_key(tenant, ref))
    return err;
  auto rows = impl_->db.run([&](pqxx::connection& conn) {
    pqxx::read_transaction tx{conn};
    return to_bridge_rows(tx.exec_params(
      std::string{"SELECT "} + bridge_columns
        + " FROM entity_bridges WHERE tenant_id = $1 AND source_ref = $2",
      tenant, ref));
  });
  if (!rows)
    return rows.error();
  if (rows->empty())
    return make_error(ec::not_found,
                      "no bridge " + ref + " in tenant " + tenant);
  return std::move(rows->front());
}

caf::expected<std::vector<bridge_row>>
registry_store::list_bridges(const std::string& tenant) {
  if (auto err = check_text("tenant", tenant, 256))
    return err;
  return impl_->db.run([&](pqxx::connection& conn) {
    pqxx::read_transaction tx{conn};
    return to_bridge_rows(tx.exec_params(
      std::string{"SELECT "} + bridge_columns
        + " FROM entity_bridges WHERE tenant_id = $1 ORDER BY source_ref",
      tenant));
  });
}

caf::expected<std::vector<bridge_row>>
registry_store::list_stale(const std::string& tenant, int64_t before_ms) {
  if (auto err = check_text("tenant", tenant, 256))
    return err;
  return impl_->db.run([&](pqxx::connection& conn) {
    pqxx::read_transaction tx{conn};
    return to_bridge_rows(tx.exec_params(
      std::string{"SELECT "} + bridge_columns
        + " FROM entity_bridges WHERE tenant_id = $1 AND "
          "last_observer_activity_at < to_timestamp($2::bigint / 1000.0) "
          "ORDER BY source_ref",
      tenant, before_ms));
  });
}

caf::expected<bool> registry_store::delete_bridge(const std::string& tenant,
                                                  const std::string& ref) {
  if (auto err = check_key(tenant, ref))
    return err;
  return impl_->modify("DELETE FROM entity_bridges "
                       "WHERE tenant_id = $1 AND source_ref = $2",
                       tenant, ref);
}

caf::expected<bool>
registry_store::delete_stale_bridge(const std::string& tenant,
                                    const std::string& ref, int64_t before_ms) {
  if (auto err = check_key(tenant, ref))
    return err;
  return impl_->modify("DELETE FROM entity_bridges "
                       "WHERE tenant_id = $1 AND source_ref = $2 AND "
                       "last_observer_activity_at < "
                       "to_timestamp($3::bigint / 1000.0)",
                       tenant, ref, before_ms);
}

caf::expected<std::vector<bridge_row>> registry_store::resume_all_bridges() {
  return impl_->db.run([&](pqxx::connection& conn) {
    pqxx::work tx{conn};
    // The same epoch rule as next_producer_epoch, for every row at once.
    auto rows = to_bridge_rows(tx.exec(
      std::string{"WITH resumed AS (UPDATE entity_bridges SET "
                  "producer_epoch = greatest(producer_epoch + 1, "
                  "nextval('ebridge_producer_epoch')), "
                  "updated_at = now() RETURNING *) SELECT "}
      + bridge_columns + " FROM resumed ORDER BY tenant_id, source_ref"));
    tx.commit();
    return rows;
  });
}

caf::expected<bool> registry_store::update_cursor(const std::string& tenant,
                                                  const std::string& ref,
                                                  const std::string& handle,
                                                  const std::string& offset) {
  if (auto err = check_key(tenant, ref))
    return err;
  if (auto err = check_text("cursor handle", handle, 1024))
    return err;
  if (auto err = check_text("cursor offset", offset, 1024))
    return err;
  // Never backwards on the same handle: a late write of an older cursor
  // (a trailing write after the idle advance) must not undo a newer one.
  return impl_->modify("UPDATE entity_bridges SET shape_handle = $3, "
                       "shape_offset = $4, updated_at = now() "
                       "WHERE tenant_id = $1 AND source_ref = $2 "
                       "AND (shape_handle IS DISTINCT FROM $3 "
                       "OR shape_offset IS NULL OR shape_offset <= $4)",
                       tenant, ref, handle, offset);
}

caf::expected<std::vector<cursor_write>>
registry_store::update_cursors(std::vector<cursor_write> writes) {
  // The writes travel as one JSON parameter: [[tenant, ref, handle,
  // offset], ...], each checked as update_cursor checks it.
  std::string json = "[";
  std::vector<bridge_key> keys;
  for (auto& w : writes) {
    w.written = false;
    w.refused.clear();
    auto err = check_key(w.tenant, w.ref);
    if (!err)
      err = check_text("cursor handle", w.handle, 1024);
    if (!err)
      err = check_text("cursor offset", w.offset, 1024);
    if (err) {
      w.refused = error_message(err);
      continue;
    }
    keys.emplace_back(w.tenant, w.ref);
    append_json_row(json, {&w.tenant, &w.ref, &w.handle, &w.offset});
  }
  json += ']';
  if (keys.empty())
    return writes;
  // One row would take only one of two writes of the same bridge (which, no
  // one says): those go one at a time, in order.
  std::sort(keys.begin(), keys.end());
  if (std::adjacent_find(keys.begin(), keys.end()) != keys.end())
    return registry_backend::update_cursors(std::move(writes));
  auto moved = impl_->db.run([&](pqxx::connection& conn) {
    pqxx::work tx{conn};
    lock_in_key_order(tx, json);
    // As update_cursor: never backwards on the same handle.
    auto r = tx.exec_params(
      "UPDATE entity_bridges b SET shape_handle = w->>2, "
      "shape_offset = w->>3, updated_at = now() "
      "FROM jsonb_array_elements($1::jsonb) AS w "
      "WHERE b.tenant_id = w->>0 AND b.source_ref = w->>1 "
      "AND (b.shape_handle IS DISTINCT FROM w->>2 "
      "OR b.shape_offset IS NULL OR b.shape_offset <= w->>3) "
      "RETURNING b.tenant_id, b.source_ref",
      json);
    tx.commit();
    auto result = keys_of(r);
    std::sort(result.begin(), result.end());
    return result;
  });
  if (!moved)
    return moved.error();
  for (auto& w : writes)
    if (w.refused.empty())
      w.written = std::binary_search(moved->begin(), moved->end(),
                                     bridge_key{w.tenant, w.ref});
  return writes;
}

caf::expected<bool> registry_store::clear_cursor(const std::string& tenant,
                                                 const std::string& ref) {
  if (auto err = check_key(tenant, ref))
    return err;
  return impl_->modify("UPDATE entity_bridges SET shape_handle = NULL, "
                       "shape_offset = NULL, updated_at = now() "
                       "WHERE tenant_id = $1 AND source_ref = $2",
                       tenant, ref);
}

caf::expected<std::vector<std::string>>
registry_store::list_referenced(const std::string& tenant) {
  if (auto err = check_text("tenant", tenant, 256))
    return err;
  return impl_->db.run([&](pqxx::connection& conn) {
    pqxx::read_transaction tx{conn};
    std::vector<std::string> result;
    for (auto r : tx.exec_params("SELECT DISTINCT source_ref "
                                 "FROM entity_manifest_sources "
                                 "WHERE tenant_id = $1 ORDER BY 1",
                                 tenant))
      result.push_back(r[0].as<std::string>());
    return result;
  });
}

caf::expected<int64_t>
registry_store::next_producer_epoch(const std::string& tenant,
                                    const std::string& ref) {
  if (auto err = check_key(tenant, ref))
    return err;
  auto epoch = impl_->db.run([&](pqxx::connection& conn) {
    pqxx::work tx{conn};
    // From one sequence, so an epoch is never reused even after the row
    // was deleted and registered again.
    auto r = tx.exec_params("UPDATE entity_bridges SET producer_epoch = "
                            "greatest(producer_epoch + 1, "
                            "nextval('ebridge_producer_epoch')), "
                            "updated_at = now() "
                            "WHERE tenant_id = $1 AND source_ref = $2 "
                            "RETURNING producer_epoch",
                            tenant, ref);
    tx.commit();
    return r.empty() ? int64_t{-1} : r[0][0].as<int64_t>();
  });
  if (epoch && *epoch < 0)
    return make_error(ec::not_found,
                      "no bridge " + ref + " in tenant " + tenant);
  return epoch;
}

caf::error registry_store::ping() {
  auto r = impl_->db.run([](pqxx::connection& conn) {
    pqxx::nontransaction tx{conn};
    return tx.exec1("SELECT 1")[0].as<int>();
  });
  return r ? caf::none : r.error();
}

caf::expected<std::vector<bridge_key>>
advance_idle_cursors(pg_connection& db, const std::string& handle,
                     const std::string& offset,
                     const std::vector<bridge_key>& keys) {
  if (auto err = check_text("cursor handle", handle, 1024))
    return err;
  if (auto err = check_text("cursor offset", offset, 1024))
    return err;
  if (keys.empty())
    return std::vector<bridge_key>{};
  // The keys travel as one JSON parameter: [[tenant, ref], ...].
  std::string json = "[";
  for (auto& [tenant, ref] : keys) {
    if (auto err = check_key(tenant, ref))
      return err;
    append_json_row(json, {&tenant, &ref});
  }
  json += ']';
  return db.run([&](pqxx::connection& conn) {
    pqxx::work tx{conn};
    lock_in_key_order(tx, json);
    auto r = tx.exec_params(
      "UPDATE entity_bridges b SET shape_offset = $2, updated_at = now() "
      "FROM jsonb_array_elements($3::jsonb) AS k "
      "WHERE b.tenant_id = k->>0 AND b.source_ref = k->>1 "
      "AND b.shape_handle = $1 AND b.shape_offset < $2 "
      "RETURNING b.tenant_id, b.source_ref",
      handle, offset, json);
    tx.commit();
    return keys_of(r);
  });
}

} // namespace ebridge
