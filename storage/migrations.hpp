#pragma once

#include <string>
#include <vector>

#include <caf/expected.hpp>

namespace ebridge {

class pg_connection;

/// One schema change, applied once and recorded in `ebridge_migrations`.
struct migration_info {
  int version;
  std::string name;
};

/// Every migration ebridge knows, in order.
std::vector<migration_info> known_migrations();

/// Applies the migrations the database has not recorded yet, each in its own
/// transaction under an advisory lock (concurrent starts are safe), then
/// checks that `entities` has what ebridge reads. Returns the versions
/// applied now. A database whose `entities` table lacks something is
/// `ec::schema_mismatch` with everything missing listed.
caf::expected<std::vector<int>> migrate(pg_connection& db);

/// Checks the `entities` table: the columns the bridge reads with their
/// types, a unique key on (tenant_id, url), and REPLICA IDENTITY FULL.
caf::error check_entities_table(pg_connection& db);

} // namespace ebridge
