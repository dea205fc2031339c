#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "core/member.hpp"

namespace ebridge {

class pg_connection;

/// The rows of one view at one snapshot, and what that snapshot saw:
/// transactions below `xmin` are visible, from `xmax` on not, and between
/// visible unless in `xip` (pg_current_snapshot(); xids compared in their
/// low 32 bits, as pgoutput sends them).
struct view_snapshot {
  std::vector<member_row> rows;
  uint64_t xmin = 0;
  uint64_t xmax = 0;
  std::vector<uint64_t> xip;
  /// The WAL position when the snapshot was taken: no later commit is in it.
  uint64_t wal_lsn = 0;
};

/// Whether the snapshot saw the committed transaction `xid` (modular
/// 32-bit order, as Postgres compares transaction ids).
bool snapshot_sees(const view_snapshot& snap, uint32_t xid);

/// Parses pg_current_snapshot()'s text, `xmin:xmax:xip,xip,…`, into `out`.
bool parse_pg_snapshot(const std::string& text, view_snapshot& out);

/// Reads the view (tenant, tags JSON) in one REPEATABLE READ transaction
/// with its snapshot and WAL position. An unreadable row is logged and left
/// out. Blocking: for a detached actor.
caf::expected<view_snapshot> read_view_snapshot(pg_connection& db,
                                                const std::string& tenant,
                                                const std::string& tags_json);

} // namespace ebridge
