#include "storage/pgoutput.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <optional>
#include <utility>

#include "core/error.hpp"

namespace ebridge {

namespace {

// Postgres' MaxHeapAttributeNumber: no relation or tuple has more columns.
constexpr int max_columns = 1600;

// Smallest encodings, for checking a count against the bytes left before
// allocating for it: a relation column is flags, a name of at least its NUL,
// type oid and modifier; a tuple column at least its kind byte.
constexpr size_t min_relation_column_size = 1 + 1 + 4 + 4;
constexpr size_t min_tuple_column_size = 1;

/// A byte for an error message: 'X' (0x58) when printable, else 0x05.
std::string describe_byte(uint8_t byte) {
  char hex[8];
  std::snprintf(hex, sizeof(hex), "0x%02X", static_cast<unsigned>(byte));
  if (byte >= 0x20 && byte < 0x7F)
    return std::string{"'"} + static_cast<char>(byte) + "' (" + hex + ")";
  return hex;
}

/// A cursor over big-endian input. The first failure sticks: later reads
/// return zero values without moving, so decoders check `ok()` only where
/// they branch or loop, and the error names the first problem.
class reader {
public:
  explicit reader(std::string_view data) : data_(data) {}

  bool ok() const noexcept {
    return error_.empty();
  }

  size_t position() const noexcept {
    return pos_;
  }

  size_t remaining() const noexcept {
    return data_.size() - pos_;
  }

  /// Names what is being decoded, for error messages.
  void context(const char* what) noexcept {
    context_ = what;
  }

  uint8_t u8(const char* what) {
    return static_cast<uint8_t>(take(1, what));
  }

  int16_t i16(const char* what) {
    return static_cast<int16_t>(static_cast<uint16_t>(take(2, what)));
  }

  uint32_t u32(const char* what) {
    return static_cast<uint32_t>(take(4, what));
  }

  int32_t i32(const char* what) {
    return static_cast<int32_t>(u32(what));
  }

  uint64_t u64(const char* what) {
    return take(8, what);
  }

  int64_t i64(const char* what) {
    return static_cast<int64_t>(take(8, what));
  }

  /// A NUL-terminated string (the NUL is consumed, not returned).
  std::string cstring(const char* what) {
    if (!ok())
      return {};
    auto rest = data_.substr(pos_);
    auto nul = rest.find('\0');
    if (nul == std::string_view::npos) {
      fail(std::string{"unterminated "} + what + " (no NUL in the "
           + std::to_string(rest.size()) + " remaining bytes)");
      return {};
    }
    pos_ += nul + 1;
    return std::string{rest.substr(0, nul)};
  }

  /// `n` raw bytes; callers check `n` against `remaining()` first.
  std::string bytes(size_t n) {
    if (!ok() || n > remaining())
      return {};
    std::string result{data_.substr(pos_, n)};
    pos_ += n;
    return result;
  }

  void fail(const std::string& problem) {
    fail_at(pos_, problem);
  }

  void fail_at(size_t position, const std::string& problem) {
    if (ok())
      error_ = std::string{"pgoutput "} + context_ + " at byte "
               + std::to_string(position) + ": " + problem;
  }

  caf::error error() const {
    return make_error(ec::bad_row, error_);
  }

private:
  uint64_t take(size_t n, const char* what) {
    if (!ok())
      return 0;
    if (remaining() < n) {
      fail(std::string{"truncated "} + what + " (needs " + std::to_string(n)
           + " bytes, " + std::to_string(remaining()) + " remain)");
      return 0;
    }
    uint64_t result = 0;
    for (size_t i = 0; i < n; ++i)
      result = (result << 8) | static_cast<uint8_t>(data_[pos_ + i]);
    pos_ += n;
    return result;
  }

  std::string_view data_;
  size_t pos_ = 0;
  const char* context_ = "message";
  std::string error_;
};

/// Reads a count and checks it before anything is allocated for it: not
/// negative, at most `limit`, and not more items than the remaining bytes
/// could hold at `min_size` bytes each. Returns -1 on failure.
int64_t read_count(reader& r, int64_t count, size_t count_pos,
                   const char* owner, const char* what, int64_t limit,
                   size_t min_size) {
  if (!r.ok())
    return -1;
  auto fail = [&](const std::string& why) {
    r.fail_at(count_pos, std::string{owner} + what + " " + std::to_string(count)
                           + " " + why);
    return -1;
  };
  if (count < 0)
    return fail("is negative");
  if (count > limit)
    return fail("exceeds the limit of " + std::to_string(limit));
  if (static_cast<uint64_t>(count) > r.remaining() / min_size)
    return fail("cannot fit in the " + std::to_string(r.remaining())
                + " remaining bytes");
  return count;
}

tuple_data read_tuple(reader& r, const char* which) {
  tuple_data result;
  auto count_pos = r.position();
  auto raw_count = r.i16("tuple column count");
  auto count = read_count(r, raw_count, count_pos, which, " column count",
                          max_columns, min_tuple_column_size);
  if (count < 0)
    return result;
  result.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count && r.ok(); ++i) {
    auto column = [&] {
      return std::string{which} + " column " + std::to_string(i);
    };
    auto kind_pos = r.position();
    auto kind = r.u8("tuple column kind");
    if (!r.ok())
      break;
    switch (kind) {
      case 'n':
        result.push_back({column_kind::null, {}});
        break;
      case 'u':
        result.push_back({column_kind::unchanged_toast, {}});
        break;
      case 't': {
        auto length_pos = r.position();
        auto length = r.i32("text length");
        if (!r.ok())
          break;
        if (length < 0) {
          r.fail_at(length_pos, column() + " text length "
                                  + std::to_string(length) + " is negative");
          break;
        }
        if (static_cast<uint64_t>(length) > r.remaining()) {
          r.fail_at(length_pos, column() + " text length "
                                  + std::to_string(length) + " exceeds the "
                                  + std::to_string(r.remaining())
                                  + " remaining bytes");
          break;
        }
        result.push_back(
          {column_kind::text, r.bytes(static_cast<size_t>(length))});
        break;
      }
      case 'b':
        r.fail_at(kind_pos, column()
                              + " is binary ('b'); the binary option is "
                                "not supported");
        break;
      default:
        r.fail_at(kind_pos, column() + " has unknown kind "
                              + describe_byte(kind)
                              + " (expected 'n', 'u' or 't')");
    }
  }
  return result;
}

/// Reads the byte that announces a tuple and checks it is one of `allowed`.
char read_tuple_tag(reader& r, std::string_view allowed, const char* expected) {
  auto pos = r.position();
  auto tag = r.u8("tuple tag");
  if (!r.ok())
    return 0;
  if (allowed.find(static_cast<char>(tag)) == std::string_view::npos) {
    r.fail_at(pos, std::string{"expected "} + expected + ", got "
                     + describe_byte(tag));
    return 0;
  }
  return static_cast<char>(tag);
}

old_tuple_kind old_kind_of(char tag) {
  return tag == 'O' ? old_tuple_kind::full : old_tuple_kind::key;
}

begin_msg read_begin(reader& r) {
  r.context("begin message");
  begin_msg m;
  m.final_lsn = r.u64("final LSN");
  m.commit_time = r.i64("commit timestamp");
  m.xid = r.u32("xid");
  return m;
}

commit_msg read_commit(reader& r) {
  r.context("commit message");
  commit_msg m;
  auto flags_pos = r.position();
  auto flags = r.u8("flags");
  // Protocol version 1 defines no flags; anything else means we misread.
  if (r.ok() && flags != 0)
    r.fail_at(flags_pos, "flags are " + describe_byte(flags) + ", expected 0");
  m.commit_lsn = r.u64("commit LSN");
  m.end_lsn = r.u64("end LSN");
  m.commit_time = r.i64("commit timestamp");
  return m;
}

relation_msg read_relation(reader& r) {
  r.context("relation message");
  relation_msg m;
  m.oid = r.u32("relation oid");
  m.namespace_name = r.cstring("namespace");
  m.name = r.cstring("relation name");
  auto identity_pos = r.position();
  auto identity = r.u8("replica identity");
  if (r.ok()
      && std::string_view{"dnfi"}.find(static_cast<char>(identity))
           == std::string_view::npos)
    r.fail_at(identity_pos, "replica identity " + describe_byte(identity)
                              + " is not one of 'd', 'n', 'f', 'i'");
  m.replica_identity = static_cast<char>(identity);
  auto count_pos = r.position();
  auto raw_count = r.i16("column count");
  auto count = read_count(r, raw_count, count_pos, "", "column count",
                          max_columns, min_relation_column_size);
  if (count < 0)
    return m;
  m.columns.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count && r.ok(); ++i) {
    relation_column column;
    column.flags = r.u8("column flags");
    column.name = r.cstring("column name");
    column.type_oid = r.u32("column type oid");
    column.type_modifier = r.i32("column type modifier");
    m.columns.push_back(std::move(column));
  }
  return m;
}

insert_msg read_insert(reader& r) {
  r.context("insert message");
  insert_msg m;
  m.relation_oid = r.u32("relation oid");
  read_tuple_tag(r, "N", "'N' (new tuple)");
  m.new_tuple = read_tuple(r, "new tuple");
  return m;
}

update_msg read_update(reader& r) {
  r.context("update message");
  update_msg m;
  m.relation_oid = r.u32("relation oid");
  auto tag = read_tuple_tag(r, "KON", "'K', 'O' or 'N'");
  if (tag == 'K' || tag == 'O') {
    m.old_kind = old_kind_of(tag);
    m.old_tuple = read_tuple(r, tag == 'K' ? "key tuple" : "old tuple");
    read_tuple_tag(r, "N", "'N' (new tuple)");
  }
  m.new_tuple = read_tuple(r, "new tuple");
  return m;
}

delete_msg read_delete(reader& r) {
  r.context("delete message");
  delete_msg m;
  m.relation_oid = r.u32("relation oid");
  auto tag = read_tuple_tag(r, "KO", "'K' or 'O'");
  m.old_kind = old_kind_of(tag);
  m.old_tuple = read_tuple(r, tag == 'K' ? "key tuple" : "old tuple");
  return m;
}

truncate_msg read_truncate(reader& r) {
  r.context("truncate message");
  truncate_msg m;
  auto count_pos = r.position();
  auto raw_count = r.i32("relation count");
  auto options = r.u8("options");
  m.cascade = (options & 1) != 0;
  m.restart_identity = (options & 2) != 0;
  auto count = read_count(r, raw_count, count_pos, "", "relation count",
                          INT32_MAX, 4);
  if (count < 0)
    return m;
  m.relation_oids.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count && r.ok(); ++i)
    m.relation_oids.push_back(r.u32("relation oid"));
  return m;
}

type_msg read_type(reader& r) {
  r.context("type message");
  type_msg m;
  m.oid = r.u32("type oid");
  m.namespace_name = r.cstring("namespace");
  m.name = r.cstring("type name");
  return m;
}

origin_msg read_origin(reader& r) {
  r.context("origin message");
  origin_msg m;
  m.origin_lsn = r.u64("origin LSN");
  m.name = r.cstring("origin name");
  return m;
}

/// Reads one pgoutput message that must fill the rest of the input.
pgoutput_message read_pgoutput(reader& r) {
  r.context("message");
  pgoutput_message result;
  auto type_pos = r.position();
  if (r.remaining() == 0) {
    r.fail("empty message (no type byte)");
    return result;
  }
  auto type = r.u8("message type");
  switch (type) {
    case 'B':
      result = read_begin(r);
      break;
    case 'C':
      result = read_commit(r);
      break;
    case 'R':
      result = read_relation(r);
      break;
    case 'I':
      result = read_insert(r);
      break;
    case 'U':
      result = read_update(r);
      break;
    case 'D':
      result = read_delete(r);
      break;
    case 'T':
      result = read_truncate(r);
      break;
    case 'Y':
      result = read_type(r);
      break;
    case 'O':
      result = read_origin(r);
      break;
    default:
      r.fail_at(type_pos,
                "unknown or unsupported message type " + describe_byte(type));
  }
  if (r.ok() && r.remaining() > 0)
    r.fail(std::to_string(r.remaining()) + " trailing bytes after the end");
  return result;
}

/// Parses up to 8 hex digits; false if `text` is empty, longer, or not hex.
bool parse_hex32(std::string_view text, uint64_t& out) {
  if (text.empty() || text.size() > 8)
    return false;
  out = 0;
  for (char c : text) {
    unsigned digit;
    if (c >= '0' && c <= '9')
      digit = static_cast<unsigned>(c - '0');
    else if (c >= 'A' && c <= 'F')
      digit = static_cast<unsigned>(c - 'A' + 10);
    else if (c >= 'a' && c <= 'f')
      digit = static_cast<unsigned>(c - 'a' + 10);
    else
      return false;
    out = (out << 4) | digit;
  }
  return true;
}

/// `text` for an error message, cut short if long.
std::string quoted(std::string_view text) {
  constexpr size_t max = 40;
  if (text.size() <= max)
    return "\"" + std::string{text} + "\"";
  return "\"" + std::string{text.substr(0, max)} + "...\"";
}

} // namespace

// -- WAL positions ------------------------------------------------------------

std::string format_lsn(uint64_t lsn) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%X/%X", static_cast<unsigned>(lsn >> 32),
                static_cast<unsigned>(lsn & 0xFFFFFFFFu));
  return buf;
}

caf::expected<uint64_t> parse_lsn(std::string_view text) {
  auto slash = text.find('/');
  uint64_t hi = 0;
  uint64_t lo = 0;
  if (slash == std::string_view::npos || !parse_hex32(text.substr(0, slash), hi)
      || !parse_hex32(text.substr(slash + 1), lo))
    return make_error(ec::bad_row, "invalid LSN " + quoted(text)
                                     + ": expected X/Y, each 1 to 8 hex "
                                       "digits");
  return (hi << 32) | lo;
}

std::string format_lsn_offset(uint64_t lsn, uint32_t op) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%020llu_%010u",
                static_cast<unsigned long long>(lsn),
                static_cast<unsigned>(op));
  return buf;
}

caf::expected<uint64_t> parse_lsn_offset(std::string_view text, uint32_t* op) {
  auto fail = [&](const char* why) {
    return make_error(ec::bad_row,
                      "invalid LSN offset " + quoted(text) + ": " + why);
  };
  constexpr const char* shape = "expected <20 digits>_<10 digits>";
  if (text.size() != 31 || text[20] != '_')
    return fail(shape);
  auto digits = [&](std::string_view part, uint64_t limit,
                    uint64_t& result) -> const char* {
    result = 0;
    for (char c : part) {
      if (c < '0' || c > '9')
        return shape;
      auto digit = static_cast<uint64_t>(c - '0');
      if (result > (limit - digit) / 10)
        return "a part is out of range";
      result = result * 10 + digit;
    }
    return nullptr;
  };
  uint64_t lsn = 0;
  uint64_t index = 0;
  if (auto why = digits(text.substr(0, 20), UINT64_MAX, lsn))
    return fail(why);
  if (auto why = digits(text.substr(21), UINT32_MAX, index))
    return fail(why);
  if (op)
    *op = static_cast<uint32_t>(index);
  return lsn;
}

// -- decoding -----------------------------------------------------------------

caf::expected<replication_message> decode_copy_data(std::string_view payload) {
  reader r{payload};
  replication_message result;
  r.context("CopyData");
  if (payload.empty())
    return make_error(ec::bad_row,
                      "pgoutput CopyData at byte 0: empty payload");
  auto type = r.u8("CopyData type");
  switch (type) {
    case 'w': {
      r.context("XLogData header");
      result.wal_start = r.u64("WAL start");
      result.wal_end = r.u64("WAL end");
      result.send_time = r.i64("send time");
      if (r.ok())
        result.body = read_pgoutput(r);
      break;
    }
    case 'k': {
      r.context("keepalive");
      keepalive_msg m;
      m.wal_end = r.u64("WAL end");
      m.send_time = r.i64("send time");
      m.reply_requested = r.u8("reply-requested flag") != 0;
      if (r.ok() && r.remaining() > 0)
        r.fail(std::to_string(r.remaining()) + " trailing bytes after the end");
      result.wal_end = m.wal_end;
      result.send_time = m.send_time;
      result.body = m;
      break;
    }
    default:
      r.fail_at(0, "unknown CopyData type " + describe_byte(type)
                     + " (expected 'w' or 'k')");
  }
  if (!r.ok())
    return r.error();
  return result;
}

caf::expected<pgoutput_message> decode_pgoutput(std::string_view message) {
  reader r{message};
  auto result = read_pgoutput(r);
  if (!r.ok())
    return r.error();
  return result;
}

// -- relations and entities ---------------------------------------------------

void relation_cache::put(relation_msg relation) {
  auto oid = relation.oid;
  relations_.insert_or_assign(oid, std::move(relation));
}

const relation_msg* relation_cache::find(uint32_t oid) const {
  auto i = relations_.find(oid);
  return i == relations_.end() ? nullptr : &i->second;
}

caf::expected<entity_tuple> make_entity_tuple(const relation_msg& relation,
                                              const tuple_data& tuple,
                                              const tuple_data* old_tuple) {
  auto fail = [&](const std::string& why) {
    return make_error(ec::bad_row,
                      "entities tuple of relation " + relation.namespace_name
                        + "." + relation.name + " (oid "
                        + std::to_string(relation.oid) + "): " + why);
  };
  auto width_mismatch = [&](const char* which, size_t size) {
    return fail(std::string{which} + " has " + std::to_string(size)
                + " columns, the relation "
                + std::to_string(relation.columns.size()));
  };
  if (tuple.size() != relation.columns.size())
    return width_mismatch("the tuple", tuple.size());
  if (old_tuple != nullptr && old_tuple->size() != relation.columns.size())
    return width_mismatch("the old tuple", old_tuple->size());
  const auto& targets = entity_column_table;
  entity_tuple result;
  std::optional<std::string> tenant_id;
  std::array<bool, entity_column_table.size()> seen{};
  for (size_t i = 0; i < relation.columns.size(); ++i) {
    const auto& name = relation.columns[i].name;
    size_t t = 0;
    while (t < targets.size() && targets[t].name != name)
      ++t;
    if (t == targets.size())
      continue;
    if (seen[t])
      return fail("column " + name + " appears twice");
    seen[t] = true;
    std::optional<std::string> value;
    const auto& column = tuple[i];
    switch (column.kind) {
      case column_kind::null:
        break;
      case column_kind::text:
        value = column.text;
        break;
      case column_kind::unchanged_toast:
        if (old_tuple == nullptr || (*old_tuple)[i].kind != column_kind::text)
          return fail("column " + name
                      + " is unchanged TOAST and the old tuple does not "
                        "carry its value");
        value = (*old_tuple)[i].text;
        break;
    }
    if (targets[t].field == nullptr)
      tenant_id = std::move(value);
    else
      result.columns.*(targets[t].field) = std::move(value);
  }
  for (size_t t = 0; t < targets.size(); ++t)
    if (!seen[t])
      return fail("the relation has no column " + std::string{targets[t].name});
  if (!tenant_id)
    return fail("tenant_id is null");
  result.tenant_id = std::move(*tenant_id);
  return result;
}

std::string entities_relation_problem(const relation_msg& relation,
                                      bool need_full_identity) {
  // The built-in types' oids (pg_type.h): they never change.
  auto type_oid = [](std::string_view sql_type) -> uint32_t {
    if (sql_type == "text")
      return 25;
    if (sql_type == "jsonb")
      return 3802;
    if (sql_type == "integer")
      return 23;
    if (sql_type == "bigint")
      return 20;
    return 0;
  };
  std::string problems;
  auto note = [&](const std::string& what) {
    problems += (problems.empty() ? "" : "; ") + what;
  };
  if (need_full_identity && relation.replica_identity != 'f')
    note("REPLICA IDENTITY is not FULL (updates and deletes come without "
         "the old row; run: ALTER TABLE entities REPLICA IDENTITY FULL)");
  for (auto& column : entity_column_table) {
    auto i = std::find_if(relation.columns.begin(), relation.columns.end(),
                          [&](const relation_column& c) {
                            return c.name == column.name;
                          });
    std::string name{column.name};
    if (i == relation.columns.end())
      note("column " + name + " (" + std::string{column.sql_type}
           + ") is missing");
    else if (i->type_oid != type_oid(column.sql_type))
      note("column " + name + " has type oid " + std::to_string(i->type_oid)
           + ", expected " + std::string{column.sql_type});
  }
  return problems;
}

} // namespace ebridge
