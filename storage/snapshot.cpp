#include "storage/snapshot.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "core/error.hpp"
#include "core/log.hpp"
#include "storage/database.hpp"
#include "storage/pgoutput.hpp"

namespace ebridge {

namespace {

bool xid_precedes(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) < 0;
}

/// `SELECT <every column ebridge reads, as text> FROM entities WHERE …`.
const std::string& snapshot_query() {
  static const std::string query = [] {
    std::string q = "SELECT ";
    for (size_t i = 0; i < entity_column_table.size(); ++i) {
      auto& column = entity_column_table[i];
      q += i == 0 ? "" : ", ";
      q += column.name;
      if (column.sql_type != "text")
        q += "::text";
    }
    return q + " FROM entities WHERE tenant_id = $1 AND tags @> $2::jsonb";
  }();
  return query;
}

} // namespace

bool snapshot_sees(const view_snapshot& snap, uint32_t xid) {
  auto xmin = static_cast<uint32_t>(snap.xmin);
  auto xmax = static_cast<uint32_t>(snap.xmax);
  if (xid_precedes(xid, xmin))
    return true;
  if (!xid_precedes(xid, xmax))
    return false;
  return std::none_of(snap.xip.begin(), snap.xip.end(), [&](uint64_t x) {
    return static_cast<uint32_t>(x) == xid;
  });
}

bool parse_pg_snapshot(const std::string& text, view_snapshot& out) {
  std::istringstream in{text};
  char colon1 = 0;
  char colon2 = 0;
  if (!(in >> out.xmin >> colon1 >> out.xmax >> colon2) || colon1 != ':'
      || colon2 != ':')
    return false;
  uint64_t x = 0;
  while (in >> x) {
    out.xip.push_back(x);
    char comma = 0;
    if (!(in >> comma))
      break;
  }
  return true;
}

caf::expected<view_snapshot> read_view_snapshot(pg_connection& db,
                                                const std::string& tenant,
                                                const std::string& tags_json) {
  return db.run([&](pqxx::connection& conn) {
    view_snapshot result;
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx{conn};
    auto head = tx.exec1("SELECT pg_current_snapshot()::text, "
                         "pg_current_wal_lsn()::text");
    if (!parse_pg_snapshot(head[0].as<std::string>(), result))
      throw std::runtime_error("unreadable pg_current_snapshot()");
    auto lsn = parse_lsn(head[1].as<std::string>());
    result.wal_lsn = lsn ? *lsn : 0;
    auto rows = tx.exec_params(snapshot_query(), tenant, tags_json);
    for (auto r : rows) {
      entity_columns c;
      for (size_t i = 0; i < entity_column_table.size(); ++i) {
        auto field = entity_column_table[i].field;
        if (field != nullptr && !r[static_cast<int>(i)].is_null())
          c.*field = std::string{r[static_cast<int>(i)].c_str()};
      }
      auto row = make_member_row(c);
      if (row)
        result.rows.push_back(std::move(*row));
      else
        log::error("source", "unreadable entity row; left out",
                   {{"error", error_message(row.error())}});
    }
    tx.commit();
    return result;
  });
}

} // namespace ebridge
