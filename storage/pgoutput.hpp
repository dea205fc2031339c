#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include <caf/expected.hpp>

#include "core/member.hpp"

// A decoder for the replication stream of Postgres' built-in `pgoutput`
// plugin, logical replication protocol version 1 (PostgreSQL 15 docs,
// "Logical Replication Message Formats"). Everything is big-endian. Malformed
// input of any kind is `ec::bad_row`, naming the problem and its byte offset.

namespace ebridge {

// -- WAL positions ------------------------------------------------------------

/// A WAL position as Postgres prints it: "16/B374D848".
std::string format_lsn(uint64_t lsn);

/// Parses Postgres' "X/Y" (1 to 8 hex digits on each side).
caf::expected<uint64_t> parse_lsn(std::string_view text);

/// A cursor offset `<commit LSN>_<op index>`: the transaction's end LSN in
/// 20 decimal digits, `_`, then the index within that transaction of the
/// last change the batch covers in 10 digits (0 for a position between
/// transactions). Both parts have a fixed width, so offsets compared as text
/// sort like the positions they name.
std::string format_lsn_offset(uint64_t lsn, uint32_t op = 0);

/// Parses `<20 digits>_<10 digits>` (each part in range) and returns the
/// LSN; the op index goes to `op` when given.
caf::expected<uint64_t> parse_lsn_offset(std::string_view text,
                                         uint32_t* op = nullptr);

// -- tuples -------------------------------------------------------------------

enum class column_kind : uint8_t {
  null,
  /// A TOASTed value the change did not touch; its value is not sent.
  unchanged_toast,
  text,
};

/// One column of a tuple, in the order of its relation's columns.
struct tuple_column {
  column_kind kind = column_kind::null;
  /// The value in Postgres' text format; empty unless `kind` is text.
  std::string text;

  friend bool operator==(const tuple_column& x, const tuple_column& y) {
    return x.kind == y.kind && x.text == y.text;
  }
};

using tuple_data = std::vector<tuple_column>;

// -- pgoutput messages --------------------------------------------------------

/// 'B': a transaction starts. Times are microseconds since 2000-01-01 UTC.
struct begin_msg {
  uint64_t final_lsn = 0;
  int64_t commit_time = 0;
  uint32_t xid = 0;
};

/// 'C': the transaction begun by the last begin_msg commits.
struct commit_msg {
  uint64_t commit_lsn = 0;
  /// The position after the commit record: where to resume from.
  uint64_t end_lsn = 0;
  int64_t commit_time = 0;
};

struct relation_column {
  /// Bit 0: the column is part of the replica identity key.
  uint8_t flags = 0;
  std::string name;
  uint32_t type_oid = 0;
  int32_t type_modifier = -1;

  bool is_key() const noexcept {
    return (flags & 1) != 0;
  }
};

/// 'R': describes a relation before its first change in a session and again
/// after its schema changes. Tuples of the relation list their columns in
/// the order of `columns`.
struct relation_msg {
  uint32_t oid = 0;
  /// Empty for pg_catalog.
  std::string namespace_name;
  std::string name;
  /// pg_class.relreplident: 'd' default, 'n' nothing, 'f' full, 'i' index.
  char replica_identity = 'd';
  std::vector<relation_column> columns;
};

/// What an update or delete carries of the row before the change.
enum class old_tuple_kind : uint8_t {
  none,
  /// 'K': the replica identity key columns; the others are null.
  key,
  /// 'O': the whole row (REPLICA IDENTITY FULL), TOASTed values included.
  full,
};

/// 'I'.
struct insert_msg {
  uint32_t relation_oid = 0;
  tuple_data new_tuple;
};

/// 'U'.
struct update_msg {
  uint32_t relation_oid = 0;
  old_tuple_kind old_kind = old_tuple_kind::none;
  /// Empty when `old_kind` is none.
  tuple_data old_tuple;
  tuple_data new_tuple;
};

/// 'D'.
struct delete_msg {
  uint32_t relation_oid = 0;
  /// key or full.
  old_tuple_kind old_kind = old_tuple_kind::key;
  tuple_data old_tuple;
};

/// 'T'.
struct truncate_msg {
  bool cascade = false;
  bool restart_identity = false;
  std::vector<uint32_t> relation_oids;
};

/// 'Y': describes a non-builtin data type used by a following relation.
struct type_msg {
  uint32_t oid = 0;
  /// Empty for pg_catalog.
  std::string namespace_name;
  std::string name;
};

/// 'O': the transaction came from another node via replication origin `name`.
struct origin_msg {
  uint64_t origin_lsn = 0;
  std::string name;
};

/// A primary keepalive ('k' CopyData).
struct keepalive_msg {
  uint64_t wal_end = 0;
  int64_t send_time = 0;
  /// The server wants a standby status update soon, or it disconnects.
  bool reply_requested = false;
};

using pgoutput_message
  = std::variant<begin_msg, commit_msg, relation_msg, insert_msg, update_msg,
                 delete_msg, truncate_msg, type_msg, origin_msg, keepalive_msg>;

/// One CopyData payload of a START_REPLICATION stream.
struct replication_message {
  /// XLogData ('w'): the WAL position the message starts at; 0 for a
  /// keepalive.
  uint64_t wal_start = 0;
  /// The server's current end of WAL (both kinds).
  uint64_t wal_end = 0;
  /// When the server sent it, microseconds since 2000-01-01 UTC.
  int64_t send_time = 0;
  /// The pgoutput message of an XLogData, or the keepalive_msg.
  pgoutput_message body;
};

/// Decodes one CopyData payload: 'w' XLogData with exactly one pgoutput
/// message, or 'k' keepalive. Offsets in errors count from the payload start.
caf::expected<replication_message> decode_copy_data(std::string_view payload);

/// Decodes one bare pgoutput message (the XLogData body, or a row of
/// `pg_logical_slot_peek_binary_changes`). Never yields a keepalive_msg.
caf::expected<pgoutput_message> decode_pgoutput(std::string_view message);

// -- relations and entities ---------------------------------------------------

/// The relations a session has described, by oid. Changes refer to their
/// relation by oid only, so every relation_msg must be stored as it arrives.
class relation_cache {
public:
  /// Stores a relation, replacing an earlier description of the same oid.
  void put(relation_msg relation);

  /// The relation with `oid`, or nullptr if none has been described.
  const relation_msg* find(uint32_t oid) const;

  size_t size() const noexcept {
    return relations_.size();
  }

private:
  std::unordered_map<uint32_t, relation_msg> relations_;
};

/// One tuple of the `entities` relation: its columns and its tenant.
struct entity_tuple {
  std::string tenant_id;
  entity_columns columns;
};

/// What makes a description of `entities` unusable, or an empty string: a
/// column ebridge reads is missing or has another type, or (with
/// `need_full_identity`) the replica identity is not FULL, so that updates
/// and deletes come without the old row.
std::string entities_relation_problem(const relation_msg& relation,
                                      bool need_full_identity = true);

/// Maps a tuple of the `entities` relation to its columns by column name, in
/// whatever order the relation lists them; columns ebridge does not read are
/// ignored. An unchanged-TOAST value takes its text from the same column of
/// `old_tuple` (the update's full old row). `ec::bad_row` when the tuple
/// does not match the relation, the relation lacks a column ebridge reads,
/// tenant_id is null, or an unchanged-TOAST value has no old text.
caf::expected<entity_tuple>
make_entity_tuple(const relation_msg& relation, const tuple_data& tuple,
                  const tuple_data* old_tuple = nullptr);

} // namespace ebridge
