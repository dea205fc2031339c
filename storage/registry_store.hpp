#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>

namespace ebridge {

/// One row of `entity_bridges`: a registered view and its cursor.
struct bridge_row {
  std::string tenant_id;
  std::string source_ref;
  /// Normalized tags as JSON text.
  std::string tags;
  std::string stream_url;
  /// The cursor; both empty when the bridge has none.
  std::string cursor_handle;
  std::string cursor_offset;
  int64_t last_activity_ms = 0;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  int64_t producer_epoch = 0;

  bool has_cursor() const noexcept {
    return !cursor_handle.empty();
  }

  friend bool operator==(const bridge_row& x, const bridge_row& y) {
    return x.tenant_id == y.tenant_id && x.source_ref == y.source_ref
           && x.tags == y.tags && x.stream_url == y.stream_url
           && x.cursor_handle == y.cursor_handle
           && x.cursor_offset == y.cursor_offset
           && x.last_activity_ms == y.last_activity_ms
           && x.created_ms == y.created_ms && x.updated_ms == y.updated_ms
           && x.producer_epoch == y.producer_epoch;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, bridge_row& x) {
  return f(caf::meta::type_name("bridge_row"), x.tenant_id, x.source_ref,
           x.tags, x.stream_url, x.cursor_handle, x.cursor_offset,
           x.last_activity_ms, x.created_ms, x.updated_ms, x.producer_epoch);
}

/// One cursor write of a batch (`registry_backend::update_cursors`): the
/// bridge (tenant, ref) and its new cursor, then what became of it.
struct cursor_write {
  std::string tenant;
  std::string ref;
  std::string handle;
  std::string offset;
  /// Set by the backend: the row took the cursor (false: no such row, or it
  /// holds a later offset of the same handle).
  bool written = false;
  /// Set by the backend: why this write was refused (invalid input), which
  /// refuses only this write; empty otherwise.
  std::string refused;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cursor_write& x) {
  return f(caf::meta::type_name("cursor_write"), x.tenant, x.ref, x.handle,
           x.offset, x.written, x.refused);
}

/// The registry operations of SEED.md, all scoped by tenant. Implemented by
/// `registry_store` on Postgres and by scripted fakes in actor tests.
class registry_backend {
public:
  virtual ~registry_backend();

  /// Inserts the bridge if absent; an existing row keeps its cursor.
  /// Returns the row as stored. Tags that differ from the stored ones for
  /// the same ref (a hash collision) are `ec::invalid_input`.
  virtual caf::expected<bridge_row>
  upsert_bridge(const std::string& tenant, const std::string& ref,
                const std::string& tags_json, const std::string& stream_url)
    = 0;

  /// Sets the last observer activity to now; false if there is no such row.
  virtual caf::expected<bool>
  touch(const std::string& tenant, const std::string& ref) = 0;

  virtual caf::expected<bridge_row>
  get_bridge(const std::string& tenant, const std::string& ref) = 0;

  virtual caf::expected<std::vector<bridge_row>>
  list_bridges(const std::string& tenant) = 0;

  /// Bridges whose last activity is before `before_ms` (epoch ms).
  virtual caf::expected<std::vector<bridge_row>>
  list_stale(const std::string& tenant, int64_t before_ms) = 0;

  /// Deletes the row (not the stream); false if there was none.
  virtual caf::expected<bool>
  delete_bridge(const std::string& tenant, const std::string& ref) = 0;

  /// Deletes the row only if it is still idle since before `before_ms`
  /// (a register or touch since the GC listed it keeps it); false if not.
  virtual caf::expected<bool> delete_stale_bridge(const std::string& tenant,
                                                  const std::string& ref,
                                                  int64_t before_ms)
    = 0;

  /// Every bridge of every tenant, each with a new producer epoch, in one
  /// transaction (for a node's start-up: a resumed bridge then starts
  /// without a registry round trip of its own).
  virtual caf::expected<std::vector<bridge_row>> resume_all_bridges() = 0;

  virtual caf::expected<bool>
  update_cursor(const std::string& tenant, const std::string& ref,
                const std::string& handle, const std::string& offset)
    = 0;

  /// Several cursors, each as `update_cursor`, in one transaction where
  /// the backend can: a burst of them costs one commit, not one each.
  /// Answers the writes in order with `written` or `refused` set; an error
  /// (the database) is the whole batch's. The default runs `update_cursor`
  /// for each.
  virtual caf::expected<std::vector<cursor_write>>
  update_cursors(std::vector<cursor_write> writes);

  virtual caf::expected<bool>
  clear_cursor(const std::string& tenant, const std::string& ref) = 0;

  /// Distinct source refs named in `entity_manifest_sources`.
  virtual caf::expected<std::vector<std::string>>
  list_referenced(const std::string& tenant) = 0;

  /// Atomically increments and returns the bridge's producer epoch.
  virtual caf::expected<int64_t>
  next_producer_epoch(const std::string& tenant, const std::string& ref) = 0;

  /// Checks that the database answers.
  virtual caf::error ping() = 0;
};

class pg_connection;

/// A bridge's key in the registry: (tenant, source ref).
using bridge_key = std::pair<std::string, std::string>;

/// Moves the cursors of idle bridges to `offset` in one statement: only rows
/// still on `handle` and behind `offset` (a bridge that resynced or moved on
/// meanwhile keeps its own). Returns the keys of the rows that moved.
caf::expected<std::vector<bridge_key>>
advance_idle_cursors(pg_connection& db, const std::string& handle,
                     const std::string& offset,
                     const std::vector<bridge_key>& keys);

/// The registry on Postgres (blocking libpqxx): every statement parameterized,
/// every input checked before it reaches SQL. Reconnects with backoff after a
/// lost connection and reports `ec::database_unavailable` meanwhile.
class registry_store : public registry_backend {
public:
  explicit registry_store(std::string postgres_url);

  ~registry_store() override;

  caf::expected<bridge_row>
  upsert_bridge(const std::string& tenant, const std::string& ref,
                const std::string& tags_json,
                const std::string& stream_url) override;
  caf::expected<bool> touch(const std::string& tenant,
                            const std::string& ref) override;
  caf::expected<bridge_row> get_bridge(const std::string& tenant,
                                       const std::string& ref) override;
  caf::expected<std::vector<bridge_row>>
  list_bridges(const std::string& tenant) override;
  caf::expected<std::vector<bridge_row>> list_stale(const std::string& tenant,
                                                    int64_t before_ms) override;
  caf::expected<bool> delete_bridge(const std::string& tenant,
                                    const std::string& ref) override;
  caf::expected<bool> delete_stale_bridge(const std::string& tenant,
                                          const std::string& ref,
                                          int64_t before_ms) override;
  caf::expected<std::vector<bridge_row>> resume_all_bridges() override;
  caf::expected<bool> update_cursor(const std::string& tenant,
                                    const std::string& ref,
                                    const std::string& handle,
                                    const std::string& offset) override;
  caf::expected<std::vector<cursor_write>>
  update_cursors(std::vector<cursor_write> writes) override;
  caf::expected<bool> clear_cursor(const std::string& tenant,
                                   const std::string& ref) override;
  caf::expected<std::vector<std::string>>
  list_referenced(const std::string& tenant) override;
  caf::expected<int64_t> next_producer_epoch(const std::string& tenant,
                                             const std::string& ref) override;
  caf::error ping() override;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace ebridge
