#include "storage/replication.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <unistd.h>

#include "core/error.hpp"
#include "core/log.hpp"
#include "storage/database.hpp"

namespace ebridge {

namespace {

/// Microseconds between the Unix epoch and Postgres' (2000-01-01).
constexpr int64_t pg_epoch_offset_us = 946684800LL * 1000000;

struct conn_closer {
  void operator()(PGconn* c) const {
    PQfinish(c);
  }
};
using conn_ptr = std::unique_ptr<PGconn, conn_closer>;

struct result_clearer {
  void operator()(PGresult* r) const {
    PQclear(r);
  }
};
using result_ptr = std::unique_ptr<PGresult, result_clearer>;

int64_t now_pg_us() {
  using namespace std::chrono;
  auto us = duration_cast<microseconds>(system_clock::now().time_since_epoch())
              .count();
  return us - pg_epoch_offset_us;
}

void put_u64(std::string& out, uint64_t x) {
  for (int i = 7; i >= 0; --i)
    out += static_cast<char>((x >> (8 * i)) & 0xff);
}

/// What the setup found: the slot's generation and confirmed position, and
/// the oid of `entities`.
struct slot_state {
  int64_t generation = 0;
  uint64_t confirmed = 0;
  /// What this node's confirm record allows (0: no record kept).
  uint64_t recorded = 0;
  uint32_t entities_oid = 0;
};

/// Creates the publication and the slot when missing (over an ordinary
/// connection) and records the slot's generation: a slot created again
/// gets the next one.
caf::expected<slot_state> prepare(const replication_config& cfg,
                                  confirm_record* record) {
  pg_connection db{cfg.postgres_url, "ebridge-replication-setup"};
  return db.run([&](pqxx::connection& conn) {
    slot_state st;
    {
      pqxx::work tx{conn};
      st.entities_oid = tx.exec1("SELECT 'entities'::regclass::oid")[0]
                          .as<uint32_t>();
      if (tx.exec_params("SELECT 1 FROM pg_publication WHERE pubname = $1",
                         cfg.publication)
            .empty())
        tx.exec0("CREATE PUBLICATION " + tx.quote_name(cfg.publication)
                 + " FOR TABLE entities");
      tx.commit();
    }
    pqxx::nontransaction tx{conn};
    auto slot = tx.exec_params(
      "SELECT plugin, confirmed_flush_lsn::text FROM pg_replication_slots "
      "WHERE slot_name = $1",
      cfg.slot);
    bool created = false;
    std::string confirmed;
    if (slot.empty()) {
      // Not in a transaction that wrote: Postgres refuses that.
      confirmed = tx.exec_params1("SELECT lsn::text FROM "
                                  "pg_create_logical_replication_slot($1, "
                                  "'pgoutput')",
                                  cfg.slot)[0]
                    .as<std::string>();
      created = true;
    } else {
      if (slot[0][0].as<std::string>() != "pgoutput")
        throw std::runtime_error("replication slot " + cfg.slot
                                 + " exists with another plugin");
      confirmed = slot[0][1].is_null() ? std::string{"0/0"}
                                       : slot[0][1].as<std::string>();
    }
    auto lsn = parse_lsn(confirmed);
    st.confirmed = lsn ? *lsn : 0;
    // What this node last wrote it may confirm (read once).
    std::optional<std::pair<int64_t, uint64_t>> mine;
    if (record != nullptr)
      mine = record->read();
    if (!created && mine) {
      // A slot confirmed past what this node ever confirmed on it is not
      // the one it followed: dropped and created again (or advanced) by
      // someone else, with changes in between that no slot kept.
      auto known = tx.exec_params(
        "SELECT generation FROM ebridge_slots WHERE slot_name = $1", cfg.slot);
      if (!known.empty() && mine->first == known[0][0].as<int64_t>()
          && st.confirmed > mine->second) {
        log::warn("replication",
                  "the slot is confirmed past what this node confirmed: it "
                  "was created again or moved outside ebridge; following "
                  "it as a new feed (every view resyncs)",
                  {{"slot", cfg.slot},
                   {"slot_confirmed", confirmed},
                   {"node_confirmed", format_lsn(mine->second)},
                   {"record", record->path()}});
        created = true;
      }
    }
    auto generation = tx.exec_params1(
      created ? "INSERT INTO ebridge_slots (slot_name, generation) "
                "VALUES ($1, 1) ON CONFLICT (slot_name) DO UPDATE SET "
                "generation = ebridge_slots.generation + 1, created_at = now() "
                "RETURNING generation"
              : "INSERT INTO ebridge_slots (slot_name, generation) "
                "VALUES ($1, 1) ON CONFLICT (slot_name) DO UPDATE SET "
                "generation = ebridge_slots.generation RETURNING generation",
      cfg.slot);
    st.generation = generation[0].as<int64_t>();
    if (record != nullptr) {
      // Where this generation starts (or the record so far, if further).
      auto from = mine && mine->first == st.generation
                    ? std::max(mine->second, st.confirmed)
                    : st.confirmed;
      if (!record->write(st.generation, from))
        throw std::runtime_error("cannot write the confirm record "
                                 + record->path());
      st.recorded = from;
    }
    if (created)
      log::info("replication", "created slot",
                {{"slot", cfg.slot},
                 {"generation", std::to_string(st.generation)}});
    return st;
  });
}

/// One replication session: connect, stream, until an error or stop.
class session {
public:
  session(const replication_config& cfg, const slot_state& slot,
          replication_reader::txn_handler& on_txn,
          replication_reader::event_handler& on_event,
          std::atomic<uint64_t>& confirmed, std::atomic<bool>& stopping,
          confirm_record* record)
    : cfg_(cfg), slot_(slot), on_txn_(on_txn), on_event_(on_event),
      confirmed_(confirmed), stopping_(stopping), record_(record),
      recorded_(slot.recorded) {
    // nop
  }

  /// Streams until the connection fails or the reader stops; returns why.
  std::string run() {
    auto conninfo = prepare_conninfo(cfg_.postgres_url, "ebridge-replication");
    if (!conninfo)
      return error_message(conninfo.error());
    conn_.reset(PQconnectdb((*conninfo + " replication=database").c_str()));
    if (PQstatus(conn_.get()) != CONNECTION_OK)
      return std::string{"cannot connect: "} + PQerrorMessage(conn_.get());
    result_ptr ident{PQexec(conn_.get(), "IDENTIFY_SYSTEM")};
    if (PQresultStatus(ident.get()) != PGRES_TUPLES_OK
        || PQntuples(ident.get()) != 1)
      return std::string{"IDENTIFY_SYSTEM failed: "}
             + PQerrorMessage(conn_.get());
    feed_identity identity{PQgetvalue(ident.get(), 0, 0), cfg_.slot,
                           slot_.generation};
    auto start = std::max(confirmed_.load(), slot_.confirmed);
    // Names are checked to [a-z0-9_] before we get here: safe to quote.
    auto command = "START_REPLICATION SLOT \"" + cfg_.slot + "\" LOGICAL "
                   + format_lsn(start)
                   + " (proto_version '1', publication_names '\""
                   + cfg_.publication + "\"')";
    result_ptr started{PQexec(conn_.get(), command.c_str())};
    if (PQresultStatus(started.get()) != PGRES_COPY_BOTH)
      return std::string{"START_REPLICATION failed: "}
             + PQerrorMessage(conn_.get());
    streamed_ = true;
    on_event_(feed_event{feed_event::kind::connected, identity, start, {}});
    log::info("replication", "streaming",
              {{"handle", identity.handle()}, {"from", format_lsn(start)}});
    return stream();
  }

  bool streamed() const noexcept {
    return streamed_;
  }

private:
  std::string stream() {
    auto last_status = std::chrono::steady_clock::now();
    for (;;) {
      if (stopping_)
        return "stopping";
      char* raw = nullptr;
      int n = PQgetCopyData(conn_.get(), &raw, 1);
      if (n > 0) {
        std::string_view payload{raw, static_cast<size_t>(n)};
        auto why = handle(payload);
        PQfreemem(raw);
        if (!why.empty())
          return why;
        continue;
      }
      if (n == -1)
        return "the server ended the replication stream";
      if (n < -1)
        return std::string{"replication stream failed: "}
               + PQerrorMessage(conn_.get());
      // Nothing buffered: wait for the socket, but not past the next status.
      auto now = std::chrono::steady_clock::now();
      if (now - last_status >= cfg_.status_interval) {
        if (!send_status())
          return std::string{"cannot send status: "}
                 + PQerrorMessage(conn_.get());
        last_status = now;
      }
      pollfd pfd{PQsocket(conn_.get()), POLLIN, 0};
      ::poll(&pfd, 1, 100);
      if (PQconsumeInput(conn_.get()) == 0)
        return std::string{"connection lost: "} + PQerrorMessage(conn_.get());
    }
  }

  /// Handles one CopyData payload; returns an error text to end the session.
  std::string handle(std::string_view payload) {
    auto msg = decode_copy_data(payload);
    if (!msg)
      return "cannot decode the replication stream: "
             + error_message(msg.error());
    auto& body = msg->body;
    if (auto* k = std::get_if<keepalive_msg>(&body)) {
      // Between transactions, the server's position is progress too: what
      // lies before it had nothing for us (other tables, empty
      // transactions), so it may be confirmed once every view is idle;
      // a shutting-down server waits for exactly that.
      if (!in_txn_ && (k->wal_end > progress_ || k->reply_requested)) {
        progress_ = std::max(progress_, k->wal_end);
        on_event_(feed_event{feed_event::kind::progress,
                             {},
                             progress_,
                             {},
                             k->reply_requested});
      }
      if (k->reply_requested && !send_status())
        return "cannot send status";
      return {};
    }
    if (auto* r = std::get_if<relation_msg>(&body)) {
      if (r->oid == slot_.entities_oid) {
        // Inserts need only the columns; updates and deletes also need the
        // old row, which each change shows (or not) by itself.
        auto problem = entities_relation_problem(*r, false);
        if (problem != relation_problem_) {
          if (problem.empty())
            log::info("replication", "entities is readable again");
          else
            log::error("replication",
                       "entities changed so that its changes "
                       "cannot be applied",
                       {{"problem", problem}});
        }
        if (r->replica_identity != 'f')
          log::error("replication",
                     "entities is not REPLICA IDENTITY FULL: its updates and "
                     "deletes cannot be applied");
        relation_problem_ = std::move(problem);
      }
      relations_.put(*r);
    } else if (auto* b = std::get_if<begin_msg>(&body)) {
      txn_ = replicated_txn{};
      txn_.xid = b->xid;
      in_txn_ = true;
    } else if (auto* c = std::get_if<commit_msg>(&body)) {
      txn_.commit_lsn = c->commit_lsn;
      txn_.end_lsn = c->end_lsn;
      if (!txn_.changes.empty() || txn_.truncated || !txn_.unusable.empty()) {
        if (!txn_.unusable.empty())
          txn_.changes.clear();
        on_txn_(std::move(txn_));
      }
      txn_ = replicated_txn{};
      in_txn_ = false;
      progress_ = std::max(progress_, c->end_lsn);
    } else if (auto* i = std::get_if<insert_msg>(&body)) {
      add(i->relation_oid, change_op::insert, nullptr, &i->new_tuple);
    } else if (auto* u = std::get_if<update_msg>(&body)) {
      add(u->relation_oid, change_op::update,
          u->old_kind == old_tuple_kind::full ? &u->old_tuple : nullptr,
          &u->new_tuple);
    } else if (auto* d = std::get_if<delete_msg>(&body)) {
      add(d->relation_oid, change_op::remove,
          d->old_kind == old_tuple_kind::full ? &d->old_tuple : nullptr,
          nullptr);
    } else if (auto* t = std::get_if<truncate_msg>(&body)) {
      auto& oids = t->relation_oids;
      if (std::find(oids.begin(), oids.end(), slot_.entities_oid) != oids.end())
        txn_.truncated = true;
    }
    return {};
  }

  void add(uint32_t oid, change_op op, const tuple_data* old_tuple,
           const tuple_data* new_tuple) {
    if (oid != slot_.entities_oid || !txn_.unusable.empty())
      return;
    // A change that cannot be applied is not skipped: it marks its
    // transaction, which the source must not confirm past.
    auto unusable = [&](std::string why) {
      log::error("replication", "a change of entities cannot be applied",
                 {{"xid", std::to_string(txn_.xid)}, {"why", why}});
      txn_.unusable = std::move(why);
    };
    auto* rel = relations_.find(oid);
    if (rel == nullptr) {
      unusable("a change of entities before its relation was described");
      return;
    }
    if (!relation_problem_.empty()) {
      unusable("entities: " + relation_problem_);
      return;
    }
    entity_row_change change;
    change.op = op;
    if (old_tuple != nullptr) {
      auto row = make_entity_tuple(*rel, *old_tuple);
      if (!row) {
        unusable("unreadable old row: " + error_message(row.error()));
        return;
      }
      change.old_row = std::move(*row);
    }
    if (new_tuple != nullptr) {
      auto row = make_entity_tuple(*rel, *new_tuple, old_tuple);
      if (!row) {
        unusable("unreadable row: " + error_message(row.error()));
        return;
      }
      change.new_row = std::move(*row);
    }
    if (op != change_op::insert && !change.old_row) {
      unusable("an update or delete without the old row (is entities "
               "REPLICA IDENTITY FULL?)");
      return;
    }
    txn_.changes.push_back(std::move(change));
  }

  /// A standby status update: written, flushed and applied up to what
  /// downstream made durable.
  bool send_status() {
    auto lsn = confirmed_.load();
    // Recorded first: a slot found confirmed past the record at the next
    // start is not this one (see prepare). Without a record kept, as is.
    if (record_ != nullptr && lsn > recorded_) {
      if (record_->write(slot_.generation, lsn))
        recorded_ = lsn;
      else
        lsn = recorded_;
    }
    std::string msg = "r";
    put_u64(msg, lsn);
    put_u64(msg, lsn);
    put_u64(msg, lsn);
    put_u64(msg, static_cast<uint64_t>(now_pg_us()));
    msg += '\0'; // no reply wanted
    return PQputCopyData(conn_.get(), msg.data(), static_cast<int>(msg.size()))
             == 1
           && PQflush(conn_.get()) == 0;
  }

  const replication_config& cfg_;
  const slot_state& slot_;
  replication_reader::txn_handler& on_txn_;
  replication_reader::event_handler& on_event_;
  std::atomic<uint64_t>& confirmed_;
  bool in_txn_ = false;
  uint64_t progress_ = 0;
  std::atomic<bool>& stopping_;
  confirm_record* record_;
  uint64_t recorded_;
  conn_ptr conn_;
  relation_cache relations_;
  /// What makes the last description of entities unusable (empty: none).
  std::string relation_problem_;
  replicated_txn txn_;
  bool streamed_ = false;
};

} // namespace

std::string feed_identity::handle() const {
  return system_id + "/" + slot + "/" + std::to_string(generation);
}

confirm_record::confirm_record(const std::string& dir, const std::string& slot)
  : path_(dir + "/slot-" + slot + ".confirmed") {
  // nop
}

confirm_record::~confirm_record() {
  if (fd_ >= 0)
    ::close(fd_);
}

std::optional<std::pair<int64_t, uint64_t>> confirm_record::read() const {
  int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return std::nullopt;
  char buf[65] = {};
  auto n = ::pread(fd, buf, 64, 0);
  ::close(fd);
  if (n <= 0)
    return std::nullopt;
  // "ebridge-slot <generation> <lsn>", padded with spaces.
  char lsn[32] = {};
  long long generation = 0;
  if (std::sscanf(buf, "ebridge-slot %lld %31s", &generation, lsn) != 2
      || generation <= 0)
    return std::nullopt;
  auto parsed = parse_lsn(lsn);
  if (!parsed)
    return std::nullopt;
  return std::make_pair(static_cast<int64_t>(generation), *parsed);
}

caf::error confirm_record::open() {
  if (fd_ >= 0)
    return caf::none;
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
  if (fd_ < 0)
    return make_error(ec::invalid_config, "cannot open the confirm record "
                                            + path_ + ": "
                                            + std::strerror(errno));
  // Its directory entry must last too (it may be new).
  auto dir = path_.substr(0, path_.rfind('/'));
  int dfd = ::open(dir.empty() ? "/" : dir.c_str(),
                   O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  bool synced = dfd >= 0 && ::fsync(dfd) == 0;
  auto saved = errno;
  if (dfd >= 0)
    ::close(dfd);
  if (!synced) {
    ::close(fd_);
    fd_ = -1;
    return make_error(ec::invalid_config,
                      "cannot sync the directory of the confirm record " + path_
                        + ": " + std::strerror(saved));
  }
  return caf::none;
}

bool confirm_record::write(int64_t generation, uint64_t lsn) {
  if (auto err = open()) {
    log::error("replication", "cannot write the confirm record",
               {{"error", error_message(err)}});
    return false;
  }
  std::string line = "ebridge-slot " + std::to_string(generation) + " "
                     + format_lsn(lsn);
  line.resize(63, ' ');
  line += '\n';
  if (::pwrite(fd_, line.data(), line.size(), 0)
        != static_cast<ssize_t>(line.size())
      || ::fdatasync(fd_) != 0) {
    log::error("replication", "cannot write the confirm record",
               {{"file", path_}, {"error", std::strerror(errno)}});
    // After a failed sync the page may read as written: start over.
    ::close(fd_);
    fd_ = -1;
    return false;
  }
  return true;
}

replication_reader::replication_reader(replication_config cfg,
                                       txn_handler on_txn,
                                       event_handler on_event)
  : cfg_(std::move(cfg)), on_txn_(std::move(on_txn)),
    on_event_(std::move(on_event)) {
  // nop
}

replication_reader::~replication_reader() {
  stop();
}

caf::error replication_reader::start() {
  if (!is_feed_name(cfg_.slot))
    return make_error(ec::invalid_config,
                      "source.slot must be 1-63 characters of a-z, 0-9, _");
  if (!is_feed_name(cfg_.publication))
    return make_error(ec::invalid_config, "source.publication must be 1-63 "
                                          "characters of a-z, 0-9, _");
  if (!cfg_.state_dir.empty()) {
    record_ = std::make_unique<confirm_record>(cfg_.state_dir, cfg_.slot);
    if (auto err = record_->open())
      return err;
  }
  thread_ = std::thread{[this] { run(); }};
  return caf::none;
}

void replication_reader::stop() {
  stopping_ = true;
  if (thread_.joinable())
    thread_.join();
}

void replication_reader::confirm(uint64_t lsn) {
  auto cur = confirmed_.load();
  while (lsn > cur && !confirmed_.compare_exchange_weak(cur, lsn)) {
    // retry
  }
}

void replication_reader::run() {
  std::mt19937 rng{std::random_device{}()};
  auto delay = cfg_.backoff_initial;
  while (!stopping_) {
    std::string why;
    auto slot = prepare(cfg_, record_.get());
    if (!slot) {
      why = "cannot prepare the slot: " + error_message(slot.error());
    } else {
      session s{cfg_,       *slot,     on_txn_,      on_event_,
                confirmed_, stopping_, record_.get()};
      why = s.run();
      // A session that streamed resets the backoff.
      if (s.streamed())
        delay = cfg_.backoff_initial;
    }
    if (stopping_)
      return;
    on_event_(feed_event{feed_event::kind::disconnected, {}, 0, why});
    auto jitter = std::chrono::milliseconds{rng() % (delay.count() / 2 + 1)};
    log::warn("replication", "disconnected",
              {{"reason", why},
               {"retry_ms", std::to_string((delay + jitter).count())}});
    for (auto waited = std::chrono::milliseconds{0};
         waited < delay + jitter && !stopping_;
         waited += std::chrono::milliseconds{50})
      std::this_thread::sleep_for(std::chrono::milliseconds{50});
    delay = std::min(delay * 2, cfg_.backoff_max);
  }
}

} // namespace ebridge
