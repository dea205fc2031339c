#define CAF_SUITE replication
#include <caf/test/unit_test.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <unistd.h>

#include "storage/database.hpp"
#include "storage/migrations.hpp"
#include "storage/replication.hpp"
#include "tests/integration/pg_fixture.hpp"
#include "tests/test_util.hpp"

// The replication reader against a real Postgres: changes, truncate, a
// killed walsender, a dropped slot, and resuming from a confirmed position.

using namespace ebridge;
using namespace std::chrono_literals;

namespace {

struct recorder {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<replicated_txn> txns;
  std::vector<feed_event> events;

  /// Waits until `pred()` holds under the lock (10 s at most).
  template <class Pred>
  bool wait(Pred pred) {
    std::unique_lock<std::mutex> guard{mtx};
    return cv.wait_for(guard, 10s, pred);
  }

  size_t connects() {
    size_t n = 0;
    for (auto& e : events)
      n += e.what == feed_event::kind::connected ? 1 : 0;
    return n;
  }
};

struct fixture {
  fixture() {
    pg_connection conn{db.url()};
    if (auto applied = migrate(conn); !applied)
      CAF_FAIL("migrate: " << describe(applied.error()));
    static int counter = 0;
    cfg.postgres_url = db.url();
    cfg.slot = "ebridge_t_" + std::to_string(::getpid()) + "_"
               + std::to_string(counter++);
    cfg.status_interval = 200ms;
    cfg.backoff_initial = 50ms;
    cfg.backoff_max = 200ms;
    char tmpl[] = "/tmp/ebridge-replication-test.XXXXXX";
    cfg.state_dir = ::mkdtemp(tmpl);
  }

  ~fixture() {
    reader.reset();
    try {
      db.exec("SELECT pg_drop_replication_slot(slot_name) FROM "
              "pg_replication_slots WHERE slot_name = '"
              + cfg.slot + "'");
    } catch (...) {
      // The scratch database goes away anyway.
    }
    std::string cmd = "rm -rf '" + cfg.state_dir + "'";
    if (std::system(cmd.c_str()) != 0)
      CAF_MESSAGE("could not remove " << cfg.state_dir);
  }

  void start() {
    reader = std::make_unique<replication_reader>(
      cfg,
      [this](replicated_txn t) {
        std::lock_guard<std::mutex> guard{rec.mtx};
        rec.txns.push_back(std::move(t));
        rec.cv.notify_all();
      },
      [this](feed_event e) {
        std::lock_guard<std::mutex> guard{rec.mtx};
        rec.events.push_back(std::move(e));
        rec.cv.notify_all();
      });
    CAF_REQUIRE(!reader->start());
    CAF_REQUIRE(rec.wait([&] { return rec.connects() >= 1; }));
  }

  void insert(const std::string& url, const std::string& tags) {
    db.exec("INSERT INTO entities (url, type, tags, created_at, updated_at) "
            "VALUES ('"
            + url + "', 'agent', '" + tags + "', 1, 1)");
  }

  test::scratch_database db;
  replication_config cfg;
  recorder rec;
  std::unique_ptr<replication_reader> reader;
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(replication_tests, fixture)

CAF_TEST(committed changes arrive with old and new rows) {
  start();
  insert("/a", R"({"team":"infra"})");
  db.exec("UPDATE entities SET tags = '{\"team\":\"web\"}', status = 'running' "
          "WHERE url = '/a'");
  db.exec("DELETE FROM entities WHERE url = '/a'");
  CAF_REQUIRE(rec.wait([&] { return rec.txns.size() >= 3; }));
  std::lock_guard<std::mutex> guard{rec.mtx};
  auto& ins = rec.txns[0].changes.at(0);
  CAF_CHECK(ins.op == change_op::insert);
  CAF_REQUIRE(ins.new_row);
  CAF_CHECK_EQUAL(ins.new_row->tenant_id, "default");
  CAF_CHECK_EQUAL(*ins.new_row->columns.url, "/a");
  auto& upd = rec.txns[1].changes.at(0);
  CAF_CHECK(upd.op == change_op::update);
  CAF_REQUIRE(upd.old_row && upd.new_row);
  CAF_CHECK_EQUAL(*upd.old_row->columns.tags, R"({"team": "infra"})");
  CAF_CHECK_EQUAL(*upd.new_row->columns.tags, R"({"team": "web"})");
  CAF_CHECK_EQUAL(*upd.new_row->columns.status, "running");
  auto& del = rec.txns[2].changes.at(0);
  CAF_CHECK(del.op == change_op::remove);
  CAF_REQUIRE(del.old_row);
  CAF_CHECK_EQUAL(*del.old_row->columns.url, "/a");
  // Positions grow with every commit.
  CAF_CHECK_LESS(rec.txns[0].end_lsn, rec.txns[1].end_lsn);
  CAF_CHECK_LESS(rec.txns[1].end_lsn, rec.txns[2].end_lsn);
}

CAF_TEST(one transaction arrives as one batch and truncate is reported) {
  start();
  db.exec("BEGIN; INSERT INTO entities (url, type, created_at, updated_at) "
          "VALUES ('/x', 't', 1, 1), ('/y', 't', 1, 1); COMMIT;");
  db.exec("TRUNCATE entities");
  CAF_REQUIRE(rec.wait([&] { return rec.txns.size() >= 2; }));
  std::lock_guard<std::mutex> guard{rec.mtx};
  CAF_CHECK_EQUAL(rec.txns[0].changes.size(), 2u);
  CAF_CHECK(rec.txns[1].truncated);
}

CAF_TEST(a killed walsender is reconnected and nothing is lost) {
  start();
  insert("/1", "{}");
  CAF_REQUIRE(rec.wait([&] { return rec.txns.size() >= 1; }));
  db.exec("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
          "WHERE slot_name = '"
          + cfg.slot + "' AND active_pid IS NOT NULL");
  insert("/2", "{}");
  CAF_REQUIRE(rec.wait([&] { return rec.connects() >= 2; }));
  CAF_REQUIRE(rec.wait([&] {
    for (auto& t : rec.txns)
      for (auto& c : t.changes)
        if (c.new_row && *c.new_row->columns.url == "/2")
          return true;
    return false;
  }));
  std::lock_guard<std::mutex> guard{rec.mtx};
  // The same feed: same handle after the reconnect.
  std::vector<std::string> handles;
  for (auto& e : rec.events)
    if (e.what == feed_event::kind::connected)
      handles.push_back(e.identity.handle());
  CAF_REQUIRE_EQUAL(handles.size(), 2u);
  CAF_CHECK_EQUAL(handles[0], handles[1]);
}

CAF_TEST(writes to other tables show as progress between transactions) {
  start();
  insert("/1", "{}");
  CAF_REQUIRE(rec.wait([&] { return rec.txns.size() >= 1; }));
  db.exec("CREATE TABLE IF NOT EXISTS progress_probe (n int)");
  db.exec("INSERT INTO progress_probe VALUES (1)");
  auto row = db.exec("SELECT pg_current_wal_lsn()::text");
  auto after = parse_lsn(row[0][0].as<std::string>());
  CAF_REQUIRE(after);
  uint64_t txn_end = 0;
  {
    std::lock_guard<std::mutex> guard{rec.mtx};
    txn_end = rec.txns.back().end_lsn;
  }
  // Nothing for us, yet the feed moves past it: a keepalive reports the
  // server's position, beyond the last transaction of entities.
  CAF_CHECK(rec.wait([&] {
    for (auto& e : rec.events)
      if (e.what == feed_event::kind::progress && e.start_lsn >= *after)
        return true;
    return false;
  }));
  std::lock_guard<std::mutex> guard{rec.mtx};
  // Progress only grows, and passes the transaction's end.
  uint64_t last = 0;
  for (auto& e : rec.events) {
    if (e.what != feed_event::kind::progress)
      continue;
    CAF_CHECK_GREATER(e.start_lsn, last);
    last = e.start_lsn;
  }
  CAF_CHECK_GREATER(last, txn_end);
  CAF_CHECK_EQUAL(rec.txns.size(), 1u);
}

CAF_TEST(a dropped slot is created again with a new handle) {
  start();
  std::string first;
  {
    std::lock_guard<std::mutex> guard{rec.mtx};
    first = rec.events.front().identity.handle();
  }
  // Kill the walsender and drop the slot while it is free.
  for (int i = 0; i < 50; ++i) {
    db.exec("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
            " WHERE slot_name = '"
            + cfg.slot + "' AND active_pid IS NOT NULL");
    auto dropped = db.exec("SELECT pg_drop_replication_slot(slot_name) FROM "
                           "pg_replication_slots WHERE slot_name = '"
                           + cfg.slot + "' AND active_pid IS NULL");
    if (dropped.size() == 1)
      break;
    std::this_thread::sleep_for(20ms);
  }
  CAF_REQUIRE(rec.wait([&] {
    for (auto& e : rec.events)
      if (e.what == feed_event::kind::connected && e.identity.handle() != first)
        return true;
    return false;
  }));
}

CAF_TEST(a slot dropped and created again by someone else is a new feed) {
  start();
  insert("/a", "{}");
  CAF_REQUIRE(rec.wait([&] { return rec.txns.size() >= 1; }));
  std::string first;
  {
    std::lock_guard<std::mutex> guard{rec.mtx};
    first = rec.events.front().identity.handle();
    reader->confirm(rec.txns.back().end_lsn);
  }
  std::this_thread::sleep_for(500ms); // a status update goes out
  reader.reset();
  // While ebridge is away: the slot is dropped, changes happen that no
  // slot keeps, and a slot of the same name is created again.
  db.exec("SELECT pg_drop_replication_slot('" + cfg.slot + "')");
  insert("/lost", "{}");
  db.exec("SELECT pg_create_logical_replication_slot('" + cfg.slot
          + "', 'pgoutput')");
  {
    std::lock_guard<std::mutex> guard{rec.mtx};
    rec.txns.clear();
    rec.events.clear();
  }
  start();
  std::lock_guard<std::mutex> guard{rec.mtx};
  CAF_CHECK_NOT_EQUAL(rec.events.front().identity.handle(), first);
  CAF_CHECK_EQUAL(rec.events.front().identity.generation, 2);
}

CAF_TEST(a new reader resumes after the confirmed position) {
  start();
  insert("/old", "{}");
  CAF_REQUIRE(rec.wait([&] { return rec.txns.size() >= 1; }));
  uint64_t confirmed = 0;
  {
    std::lock_guard<std::mutex> guard{rec.mtx};
    confirmed = rec.txns.back().end_lsn;
  }
  reader->confirm(confirmed);
  std::this_thread::sleep_for(500ms); // a status update goes out
  reader.reset();
  {
    std::lock_guard<std::mutex> guard{rec.mtx};
    rec.txns.clear();
    rec.events.clear();
  }
  insert("/new", "{}");
  start();
  CAF_REQUIRE(rec.wait([&] { return rec.txns.size() >= 1; }));
  std::this_thread::sleep_for(200ms);
  std::lock_guard<std::mutex> guard{rec.mtx};
  CAF_REQUIRE_EQUAL(rec.txns.size(), 1u);
  CAF_CHECK_EQUAL(*rec.txns[0].changes.at(0).new_row->columns.url, "/new");
}

CAF_TEST_FIXTURE_SCOPE_END()
