#define CAF_SUITE source_pg
#include <caf/test/unit_test.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/source.hpp"
#include "core/tags.hpp"
#include "storage/database.hpp"
#include "storage/migrations.hpp"
#include "storage/registry_store.hpp"
#include "tests/integration/pg_fixture.hpp"
#include "tests/test_util.hpp"

// The source actor on real logical replication: the bridges are recorders at
// the actor boundary, driven by the test thread (they acknowledge only when
// told to). Idle cursors, the lag limit, and subscribes before the feed.

using namespace ebridge;
using namespace std::chrono_literals;

namespace {

/// What one recording bridge got from the source.
struct bridge_log {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<change_batch> batches;
  std::vector<up_to_date_msg> up_to_dates;
  std::vector<uint64_t> refetches;
  std::vector<std::string> errors;

  template <class Pred>
  bool wait(Pred pred) {
    std::unique_lock<std::mutex> guard{mtx};
    return cv.wait_for(guard, 10s, pred);
  }
};

bridge_actor::behavior_type recorder(std::shared_ptr<bridge_log> log) {
  auto note = [log](auto&& f) {
    std::lock_guard<std::mutex> guard{log->mtx};
    f();
    log->cv.notify_all();
  };
  return {
    [=](change_batch& b) { note([&] { log->batches.push_back(b); }); },
    [=](up_to_date_atom, up_to_date_msg& m) {
      note([&] { log->up_to_dates.push_back(m); });
    },
    [=](refetch_atom, uint64_t id) {
      note([&] { log->refetches.push_back(id); });
    },
    [=](source_error_atom, uint64_t, std::string& why) {
      note([&] { log->errors.push_back(why); });
    },
    [](retry_atom, uint64_t) {},
    [](resync_atom) {},
    [](touch_atom) {},
    [](stop_atom) { return caf::ok_atom::value; },
    [](cursor_atom) {},
    [](touch_due_atom) {},
    [](ready_atom) { return caf::ok_atom::value; },
    [](status_atom) { return bridge_status{}; },
  };
}

struct config : caf::actor_system_config {
  config() {
    register_types(*this);
    set("scheduler.max-threads", 2);
  }
};

struct fixture {
  fixture() : registry(db.url()) {
    pg_connection conn{db.url()};
    if (auto applied = migrate(conn); !applied)
      CAF_FAIL("migrate: " << describe(applied.error()));
    static int counter = 0;
    cfg.replication.postgres_url = db.url();
    cfg.replication.slot = "ebridge_s_" + std::to_string(::getpid()) + "_"
                           + std::to_string(counter++);
    cfg.replication.status_interval = 100ms;
    cfg.replication.backoff_initial = 50ms;
    cfg.replication.backoff_max = 200ms;
    cfg.idle_interval = 100ms;
    cfg.idle_lag = 0; // idle views move at every check
  }

  ~fixture() {
    if (source)
      caf::anon_send_exit(source, caf::exit_reason::user_shutdown);
    sys.await_actors_before_shutdown(false);
    source = nullptr;
    std::this_thread::sleep_for(200ms); // the walsender lets go of the slot
    for (int i = 0; i < 50; ++i) {
      try {
        auto left = db.exec("SELECT pg_drop_replication_slot(slot_name) FROM "
                            "pg_replication_slots WHERE slot_name = '"
                            + cfg.replication.slot + "' AND NOT active");
        auto any = db.exec("SELECT 1 FROM pg_replication_slots WHERE "
                           "slot_name = '"
                           + cfg.replication.slot + "'");
        if (any.empty())
          break;
      } catch (...) {
        // still active: try again
      }
      std::this_thread::sleep_for(100ms);
    }
  }

  void start() {
    source = sys.spawn(ebridge::source, cfg);
  }

  /// A recording bridge subscribed with `tags` (no cursor: a snapshot).
  std::pair<bridge_actor, std::shared_ptr<bridge_log>>
  subscribe(const std::string& tags, source_cursor from = {}) {
    auto log = std::make_shared<bridge_log>();
    auto b = sys.spawn(recorder, log);
    caf::anon_send(source, caf::subscribe_atom::value, b, uint64_t{1},
                   std::string{"default"}, tags, from);
    bridges.push_back(b);
    return {b, log};
  }

  /// A view in the registry, subscribed and bootstrapped (not yet
  /// acknowledged): its bridge, what it got, its ref, its up-to-date.
  struct view {
    bridge_actor bridge;
    std::shared_ptr<bridge_log> log;
    std::string ref;
    source_cursor at;
  };

  view registered_view(const std::string& tags) {
    auto ref = source_ref(*parse_tags(tags));
    EB_OK(registry.upsert_bridge("default", ref, tags, "/_entities/" + ref));
    auto b_sub = subscribe(tags);
    [[maybe_unused]] auto& b = b_sub.first;
    [[maybe_unused]] auto& log = b_sub.second;
    if (!log->wait([&] { return !log->up_to_dates.empty(); }))
      CAF_FAIL("no up-to-date within 10 s");
    std::lock_guard<std::mutex> guard{log->mtx};
    return {b, log, ref, log->up_to_dates.back().at};
  }

  void ack(const bridge_actor& b, const source_cursor& at) {
    caf::anon_send(source, ack_atom::value, b, uint64_t{1}, at);
  }

  /// A registered view whose bridge made its bootstrap durable: cursor
  /// persisted, then the ack.
  view durable_view(const std::string& tags) {
    auto v = registered_view(tags);
    EB_OK(registry.update_cursor("default", v.ref, v.at.handle, v.at.offset));
    ack(v.bridge, v.at);
    return v;
  }

  void insert(const std::string& url, const std::string& tags) {
    db.exec("INSERT INTO entities (url, type, tags, created_at, updated_at) "
            "VALUES ('"
            + url + "', 'agent', '" + tags + "', 1, 1)");
  }

  /// The LSN of a view's registry cursor on `handle` (0: none there).
  uint64_t cursor_lsn(const std::string& ref, const std::string& handle) {
    auto row = registry.get_bridge("default", ref);
    if (!row || row->cursor_handle != handle)
      return 0;
    return *parse_lsn_offset(row->cursor_offset);
  }

  uint64_t wal_lsn() {
    auto r = db.exec("SELECT pg_current_wal_lsn()::text");
    return *parse_lsn(r[0][0].as<std::string>());
  }

  /// The keys of a new subscription's snapshot of `tags` (its log goes to
  /// `keep` when given).
  std::vector<std::string>
  snapshot_keys(const std::string& tags,
                std::shared_ptr<bridge_log>* keep = nullptr) {
    auto fresh = subscribe(tags);
    if (keep != nullptr)
      *keep = fresh.second;
    auto& log = *fresh.second;
    if (!log.wait([&] { return !log.up_to_dates.empty(); }))
      CAF_FAIL("no up-to-date within 10 s");
    std::lock_guard<std::mutex> guard{log.mtx};
    CAF_REQUIRE_EQUAL(log.batches.size(), 1u);
    std::vector<std::string> keys;
    for (auto& change : log.batches[0].changes)
      keys.push_back(change.key);
    return keys;
  }

  /// Why the source's feed is stalled (empty: it is not).
  std::string stalled() {
    caf::scoped_actor self{sys};
    std::string result = "no answer";
    self->request(source, 5s, status_atom::value)
      .receive([&](std::string& why) { result = std::move(why); },
               [&](caf::error& err) { result = "error: " + describe(err); });
    return result;
  }

  uint64_t slot_confirmed() {
    auto r = db.exec("SELECT confirmed_flush_lsn::text FROM "
                     "pg_replication_slots WHERE slot_name = '"
                     + cfg.replication.slot + "'");
    if (r.empty() || r[0][0].is_null())
      return 0;
    return *parse_lsn(r[0][0].as<std::string>());
  }

  test::scratch_database db;
  registry_store registry;
  /// Not held unless a test says so.
  source_config cfg = [] {
    source_config c;
    c.resume_wait = std::chrono::milliseconds{0};
    return c;
  }();
  config sys_cfg;
  caf::actor_system sys{sys_cfg};
  source_actor source;
  std::vector<bridge_actor> bridges;
};

bool eventually(const std::function<bool()>& pred) {
  for (int i = 0; i < 100; ++i) {
    if (pred())
      return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(source_pg_tests, fixture)

CAF_TEST(a feed away longer than its bound reports the node not ready) {
  // Nothing listens on port 1: the reader retries, and after down_after
  // the source says so (readiness reads it).
  cfg.replication.postgres_url = "postgresql://127.0.0.1:1/nothing";
  cfg.down_after = 300ms;
  start();
  CAF_CHECK_EQUAL(stalled(), "");
  CAF_CHECK(eventually([&] {
    return stalled().rfind("the change feed has been away for ", 0) == 0;
  }));
  auto why = stalled();
  CAF_MESSAGE(why);
  CAF_CHECK(why.find("127.0.0.1") != std::string::npos
            || why.find("connect") != std::string::npos);
}

CAF_TEST(a subscribe before the feed connects waits for it) {
  insert("/a", R"({"team":"a"})");
  start();
  // At once: the replication connection is still being set up.
  auto b_sub = subscribe(R"({"team":"a"})");
  [[maybe_unused]] auto& b = b_sub.first;
  [[maybe_unused]] auto& log = b_sub.second;
  CAF_REQUIRE(log->wait([&] { return !log->up_to_dates.empty(); }));
  std::lock_guard<std::mutex> guard{log->mtx};
  CAF_CHECK(log->errors.empty());
  CAF_CHECK(log->refetches.empty());
  CAF_REQUIRE_EQUAL(log->batches.size(), 1u); // the snapshot
  CAF_REQUIRE_EQUAL(log->batches[0].changes.size(), 1u);
  CAF_CHECK_EQUAL(log->batches[0].changes[0].key, "/a");
}

CAF_TEST(one transaction gives each view one batch at its last op index) {
  start();
  auto a = registered_view(R"({"team":"a"})");
  auto b = registered_view(R"({"team":"b"})");
  auto before = wal_lsn();
  // Ops 0..3 of one transaction: a, b, a, b, then op 4 for nobody.
  db.exec("BEGIN; "
          "INSERT INTO entities (url, type, tags, created_at, updated_at) "
          "VALUES ('/a0', 'agent', '{\"team\":\"a\"}', 1, 1), "
          "('/b0', 'agent', '{\"team\":\"b\"}', 1, 1), "
          "('/a1', 'agent', '{\"team\":\"a\"}', 1, 1), "
          "('/b1', 'agent', '{\"team\":\"b\"}', 1, 1), "
          "('/c0', 'agent', '{\"team\":\"c\"}', 1, 1); COMMIT");
  auto after = wal_lsn();
  auto check = [&](fixture::view& v, uint32_t last_op,
                   const std::vector<std::string>& keys) {
    CAF_REQUIRE(v.log->wait([&] { return v.log->batches.size() >= 2; }));
    std::lock_guard<std::mutex> guard{v.log->mtx};
    CAF_REQUIRE_EQUAL(v.log->batches.size(), 2u); // the snapshot, then one
    auto& batch = v.log->batches[1];
    CAF_CHECK_EQUAL(batch.at.handle, v.at.handle);
    uint32_t op = 0;
    auto lsn = EB_OK(parse_lsn_offset(batch.at.offset, &op));
    CAF_CHECK_GREATER(lsn, before);
    CAF_CHECK_LESS_OR_EQUAL(lsn, after);
    CAF_CHECK_EQUAL(op, last_op);
    CAF_CHECK_GREATER(batch.at.offset, v.at.offset);
    CAF_REQUIRE_EQUAL(batch.changes.size(), keys.size());
    for (size_t i = 0; i < keys.size(); ++i)
      CAF_CHECK_EQUAL(batch.changes[i].key, keys[i]);
    return batch.at.offset;
  };
  auto at_a = check(a, 2, {"/a0", "/a1"});
  auto at_b = check(b, 3, {"/b0", "/b1"});
  CAF_CHECK_EQUAL(at_a.substr(0, 20), at_b.substr(0, 20)); // one commit
}

CAF_TEST(the cursor of an idle view moves to the feed and the slot follows) {
  start();
  auto v = durable_view(R"({"team":"a"})");
  [[maybe_unused]] auto& b = v.bridge;
  [[maybe_unused]] auto& log = v.log;
  [[maybe_unused]] auto& ref = v.ref;
  [[maybe_unused]] auto& at = v.at;
  // Changes that concern other views only.
  for (int i = 0; i < 5; ++i)
    insert("/b" + std::to_string(i), R"({"team":"b"})");
  auto after = wal_lsn();
  // Its registry cursor moves past them, and Postgres may release the WAL.
  CAF_CHECK(eventually([&] { return cursor_lsn(ref, at.handle) >= after; }));
  CAF_CHECK(eventually([&] { return slot_confirmed() >= after; }));
  std::lock_guard<std::mutex> guard{log->mtx};
  CAF_CHECK_EQUAL(log->batches.size(), 1u); // the snapshot only
  CAF_CHECK(log->refetches.empty());
}

CAF_TEST(an idle view moves only once it holds back the idle lag of WAL) {
  cfg.idle_lag = 256 * 1024;
  start();
  auto v = durable_view(R"({"team":"a"})");
  [[maybe_unused]] auto& b = v.bridge;
  [[maybe_unused]] auto& log = v.log;
  [[maybe_unused]] auto& ref = v.ref;
  [[maybe_unused]] auto& at = v.at;
  auto from = *parse_lsn_offset(at.offset);
  for (int i = 0; i < 5; ++i)
    insert("/b" + std::to_string(i), R"({"team":"b"})");
  // Ten idle checks: it holds back less than the lag, so its cursor stays,
  // and so does the slot.
  std::this_thread::sleep_for(1s);
  auto row = registry.get_bridge("default", ref);
  CAF_REQUIRE(row);
  auto confirmed = slot_confirmed();
  CAF_REQUIRE_LESS(wal_lsn() - from, cfg.idle_lag); // all the while
  CAF_CHECK_EQUAL(row->cursor_offset, at.offset);
  CAF_CHECK_LESS_OR_EQUAL(confirmed, from + 1);
  // Rows for another view, of random text (it does not compress), past the
  // lag: the next check moves it and the slot follows.
  db.exec("INSERT INTO entities (url, type, tags, spawn_args, created_at, "
          "updated_at) SELECT '/big' || g, 'agent', '{\"team\":\"b\"}', "
          "jsonb_build_object('pad', (SELECT string_agg(md5(random()::text "
          "|| g || i), '') FROM generate_series(1, 40) i)), 1, 1 "
          "FROM generate_series(1, 400) g");
  CAF_REQUIRE_GREATER_OR_EQUAL(wal_lsn() - from, cfg.idle_lag);
  // (At least to the lag: WAL written after the insert may be past where
  // the check moved it.)
  auto due = from + cfg.idle_lag;
  CAF_CHECK(eventually([&] { return cursor_lsn(ref, at.handle) >= due; }));
  CAF_CHECK(eventually([&] { return slot_confirmed() >= due; }));
  std::lock_guard<std::mutex> guard{log->mtx};
  CAF_CHECK_EQUAL(log->batches.size(), 1u); // the snapshot only
  CAF_CHECK(log->refetches.empty());
}

CAF_TEST(an idle view moves before the recent transactions stop reaching it) {
  cfg.idle_lag = uint64_t{1} << 30; // never by the lag
  cfg.replay_buffer = 4;            // it moves once 3 come after its cursor
  start();
  auto v = durable_view(R"({"team":"a"})");
  [[maybe_unused]] auto& b = v.bridge;
  [[maybe_unused]] auto& log = v.log;
  [[maybe_unused]] auto& ref = v.ref;
  [[maybe_unused]] auto& at = v.at;
  insert("/b0", R"({"team":"b"})");
  insert("/b1", R"({"team":"b"})");
  std::this_thread::sleep_for(1s); // ten checks: 2 after it, still in reach
  auto row = registry.get_bridge("default", ref);
  CAF_REQUIRE(row);
  CAF_CHECK_EQUAL(row->cursor_offset, at.offset);
  auto before = wal_lsn();
  insert("/b2", R"({"team":"b"})"); // the third: it moves past it
  CAF_CHECK(eventually([&] { return cursor_lsn(ref, at.handle) > before; }));
  // A bridge that subscribes again with the moved cursor is served from
  // the recent transactions, not made to resync.
  auto moved = registry.get_bridge("default", ref);
  CAF_REQUIRE(moved);
  auto b2_sub = subscribe(R"({"team":"a"})",
                          source_cursor{moved->cursor_handle,
                                        moved->cursor_offset});
  [[maybe_unused]] auto& b2 = b2_sub.first;
  [[maybe_unused]] auto& log2 = b2_sub.second;
  insert("/a1", R"({"team":"a"})");
  CAF_REQUIRE(log2->wait([&] { return !log2->batches.empty(); }));
  std::lock_guard<std::mutex> guard{log2->mtx};
  CAF_CHECK(log2->refetches.empty());
  CAF_CHECK_EQUAL(log2->batches[0].changes.at(0).key, "/a1");
}

CAF_TEST(an idle view the server was let past moves at the next check) {
  cfg.idle_lag = uint64_t{1} << 30; // never by the lag, nor by the reach
  // The walsender asks for a reply once it heard nothing for half its
  // timeout, as it does at a shutdown. With status updates rarer than that,
  // its keepalives are urgent: idle views stop holding the slot back before
  // their cursors move.
  cfg.replication.postgres_url = db.url()
                                 + " options='-c wal_sender_timeout=1000'";
  cfg.replication.status_interval = 60s;
  start();
  auto v = durable_view(R"({"team":"a"})");
  [[maybe_unused]] auto& b = v.bridge;
  [[maybe_unused]] auto& log = v.log;
  [[maybe_unused]] auto& ref = v.ref;
  [[maybe_unused]] auto& at = v.at;
  insert("/b0", R"({"team":"b"})");
  auto after = wal_lsn();
  CAF_CHECK(eventually([&] { return slot_confirmed() >= after; }));
  // Postgres may have let go of the WAL after its cursor: a restart from the
  // slot would find it behind, so the next check moves it.
  CAF_CHECK(eventually([&] { return cursor_lsn(ref, at.handle) >= after; }));
  std::lock_guard<std::mutex> guard{log->mtx};
  CAF_CHECK_EQUAL(log->batches.size(), 1u); // the snapshot only
  CAF_CHECK(log->refetches.empty());
}

CAF_TEST(a held feed serves a view that resumes late from its cursor) {
  cfg.replay_buffer = 2;
  cfg.idle_lag = uint64_t{1} << 30; // its cursor stays where it is
  start();
  auto v = registered_view(R"({"team":"a"})");
  EB_OK(registry.update_cursor("default", v.ref, v.at.handle, v.at.offset));
  ack(v.bridge, v.at);
  auto at = *parse_lsn_offset(v.at.offset);
  CAF_REQUIRE(eventually([&] { return slot_confirmed() >= at; }));
  caf::anon_send_exit(source, caf::exit_reason::user_shutdown);
  // While it is down: one change for the view, then more than the replay
  // buffer holds for others.
  insert("/a1", R"({"team":"a"})");
  for (int i = 0; i < 5; ++i)
    insert("/b" + std::to_string(i), R"({"team":"b"})");
  cfg.resume_wait = 60s; // far past the waits below: the count starts it
  start();
  caf::anon_send(source, resuming_atom::value, uint64_t{1});
  // An unheld feed would have replayed all 6 by now, keeping the last 2:
  // the view's cursor out of reach, it would have to resync. Held, the
  // slot is not even in use.
  std::this_thread::sleep_for(1s);
  auto active = db.exec("SELECT active FROM pg_replication_slots WHERE "
                        "slot_name = '"
                        + cfg.replication.slot + "'");
  CAF_REQUIRE_EQUAL(active.size(), 1u);
  CAF_CHECK(!active[0][0].as<bool>());
  auto row = registry.get_bridge("default", v.ref);
  CAF_REQUIRE(row);
  auto t0 = std::chrono::steady_clock::now();
  auto b2_sub = subscribe(R"({"team":"a"})", source_cursor{row->cursor_handle,
                                                           row->cursor_offset});
  [[maybe_unused]] auto& b2 = b2_sub.first;
  [[maybe_unused]] auto& log2 = b2_sub.second;
  CAF_REQUIRE(log2->wait([&] { return !log2->batches.empty(); }));
  CAF_CHECK_LESS(std::chrono::steady_clock::now() - t0, 5s);
  std::lock_guard<std::mutex> guard{log2->mtx};
  CAF_CHECK(log2->refetches.empty());
  CAF_CHECK_EQUAL(log2->batches[0].changes.at(0).key, "/a1");
}

CAF_TEST(a held feed starts after the resume wait when a view never subscribes) {
  cfg.resume_wait = 500ms;
  auto t0 = std::chrono::steady_clock::now();
  start();
  caf::anon_send(source, resuming_atom::value, uint64_t{1}); // never comes
  // Without a cursor it is not the one awaited: counted, it would start
  // the feed at once.
  auto v = registered_view(R"({"team":"a"})");
  CAF_CHECK_GREATER_OR_EQUAL(std::chrono::steady_clock::now() - t0, 500ms);
  std::lock_guard<std::mutex> guard{v.log->mtx};
  CAF_CHECK(v.log->refetches.empty());
  CAF_CHECK(v.log->errors.empty());
}

CAF_TEST(idle cursors move in chunks of one statement per tick) {
  cfg.advance_chunk = 2;  // 5 views: 3 statements, on 3 ticks
  cfg.idle_interval = 1s; // one check sees all 5
  start();
  std::vector<view> views;
  for (int i = 0; i < 5; ++i) {
    views.push_back(
      registered_view(R"({"team":"c)" + std::to_string(i) + R"("})"));
    auto& v = views.back();
    EB_OK(registry.update_cursor("default", v.ref, v.at.handle, v.at.offset));
    ack(v.bridge, v.at);
  }
  for (int i = 0; i < 3; ++i)
    insert("/n" + std::to_string(i), R"({"team":"nobody"})");
  auto after = wal_lsn();
  // Every one moves, the last chunk too, and only then may Postgres
  // release the WAL.
  CAF_CHECK(eventually([&] {
    return std::all_of(views.begin(), views.end(), [&](const view& v) {
      return cursor_lsn(v.ref, v.at.handle) >= after;
    });
  }));
  CAF_CHECK(eventually([&] { return slot_confirmed() >= after; }));
  // Each statement stamps its rows with its own now(): at most 2 rows a
  // stamp, and the stamps a tick apart (all at once, they would be ms apart).
  std::string refs;
  for (auto& v : views)
    refs += (refs.empty() ? "'" : ",'") + v.ref + "'";
  auto r = db.exec("SELECT (extract(epoch FROM updated_at) * 1000)::bigint, "
                   "count(*) FROM entity_bridges WHERE source_ref IN ("
                   + refs + ") GROUP BY 1 ORDER BY 1");
  CAF_CHECK_EQUAL(r.size(), 3u);
  for (size_t i = 0; i < r.size(); ++i) {
    CAF_CHECK_LESS_OR_EQUAL(r[i][1].as<int>(), 2);
    if (i > 0)
      CAF_CHECK_GREATER_OR_EQUAL(r[i][0].as<int64_t>()
                                   - r[i - 1][0].as<int64_t>(),
                                 50);
  }
  for (auto& v : views) {
    std::lock_guard<std::mutex> guard{v.log->mtx};
    CAF_CHECK_EQUAL(v.log->batches.size(), 1u); // the snapshot only
  }
}

CAF_TEST(a view that does not acknowledge holds the slot back) {
  start();
  auto v = durable_view(R"({"team":"a"})");
  [[maybe_unused]] auto& b = v.bridge;
  [[maybe_unused]] auto& log = v.log;
  [[maybe_unused]] auto& ref = v.ref;
  [[maybe_unused]] auto& at = v.at;
  CAF_REQUIRE(eventually(
    [&] { return slot_confirmed() >= *parse_lsn_offset(at.offset); }));
  // A change for it that it never acknowledges, then changes for others.
  insert("/a1", R"({"team":"a"})");
  CAF_REQUIRE(log->wait([&] { return log->batches.size() >= 2; }));
  for (int i = 0; i < 5; ++i)
    insert("/b" + std::to_string(i), R"({"team":"b"})");
  uint64_t unacknowledged = 0;
  {
    std::lock_guard<std::mutex> guard{log->mtx};
    unacknowledged = *parse_lsn_offset(log->batches.back().at.offset);
  }
  std::this_thread::sleep_for(1s);
  // Neither the slot nor its cursor passes the change it did not
  // acknowledge. (Before it, the view was idle: its cursor may have moved
  // up to where the feed was then.)
  CAF_CHECK_LESS(slot_confirmed(), unacknowledged);
  CAF_CHECK_LESS(cursor_lsn(ref, at.handle), unacknowledged);
  uint64_t bootstrap = *parse_lsn_offset(at.offset);
  CAF_CHECK_GREATER_OR_EQUAL(cursor_lsn(ref, at.handle), bootstrap);
}

CAF_TEST(a view that lags more than the limit must resync) {
  cfg.max_lag = 4096; // bytes of WAL
  start();
  auto b_sub = subscribe(R"({"team":"a"})");
  [[maybe_unused]] auto& b = b_sub.first;
  [[maybe_unused]] auto& log = b_sub.second;
  CAF_REQUIRE(log->wait([&] { return !log->up_to_dates.empty(); }));
  // It never acknowledges; its changes pile up past the limit.
  for (int i = 0; i < 40; ++i)
    insert("/a" + std::to_string(i), R"({"team":"a"})");
  CAF_REQUIRE(log->wait([&] { return !log->refetches.empty(); }));
  // Dropped: later changes no longer reach it.
  size_t seen = 0;
  {
    std::lock_guard<std::mutex> guard{log->mtx};
    seen = log->batches.size();
  }
  insert("/late", R"({"team":"a"})");
  std::this_thread::sleep_for(500ms);
  std::lock_guard<std::mutex> guard{log->mtx};
  CAF_CHECK_EQUAL(log->batches.size(), seen);
  CAF_CHECK_EQUAL(log->refetches.size(), 1u);
}

CAF_TEST(an update without its old row stalls the feed until the table is fixed) {
  insert("/a1", R"({"team":"a"})");
  start();
  auto v = durable_view(R"({"team":"a"})");
  CAF_REQUIRE(eventually(
    [&] { return slot_confirmed() >= *parse_lsn_offset(v.at.offset); }));
  CAF_CHECK_EQUAL(stalled(), "");
  // Postgres now logs updates without the old row: the retag out of the
  // view cannot be told from one that was never in it.
  db.exec("ALTER TABLE entities REPLICA IDENTITY DEFAULT");
  auto before = wal_lsn();
  db.exec("UPDATE entities SET tags = '{\"team\":\"b\"}' WHERE url = '/a1'");
  auto after = wal_lsn();
  CAF_REQUIRE(eventually([&] { return !stalled().empty(); }));
  CAF_CHECK_NOT_EQUAL(stalled().find("without the old row"), std::string::npos);
  // What comes after it waits; nothing past it is confirmed.
  insert("/a2", R"({"team":"a"})");
  std::this_thread::sleep_for(1500ms);
  CAF_CHECK_LESS(slot_confirmed(), after);
  {
    std::lock_guard<std::mutex> guard{v.log->mtx};
    CAF_CHECK_EQUAL(v.log->batches.size(), 1u); // the snapshot only
    CAF_CHECK(v.log->refetches.empty());
  }
  // The reason names what is wrong with the table now.
  CAF_CHECK(eventually([&] {
    return stalled().find("REPLICA IDENTITY is not FULL") != std::string::npos;
  }));
  // Fixed: the view resyncs; a new snapshot has the row out and /a2 in.
  db.exec("ALTER TABLE entities REPLICA IDENTITY FULL");
  CAF_REQUIRE(v.log->wait([&] { return !v.log->refetches.empty(); }));
  CAF_CHECK(eventually([&] { return stalled().empty(); }));
  std::shared_ptr<bridge_log> again;
  CAF_CHECK_EQUAL(snapshot_keys(R"({"team":"a"})", &again),
                  (std::vector<std::string>{"/a2"}));
  // And the feed goes on: later changes reach it, the slot moves on.
  insert("/a3", R"({"team":"a"})");
  CAF_CHECK(again->wait([&] { return again->batches.size() >= 2; }));
  CAF_CHECK(eventually([&] { return slot_confirmed() > before; }));
}

CAF_TEST(a column dropped and added back stalls the feed until it is back) {
  start();
  auto v = durable_view(R"({"team":"a"})");
  db.exec("ALTER TABLE entities DROP COLUMN parent");
  insert("/a1", R"({"team":"a"})");
  auto after = wal_lsn();
  CAF_REQUIRE(eventually([&] { return !stalled().empty(); }));
  CAF_CHECK_NOT_EQUAL(stalled().find("parent"), std::string::npos);
  // Not confirmed past the insert (other WAL before it may be: idle
  // cursor moves write rows too).
  std::this_thread::sleep_for(1500ms);
  CAF_CHECK_LESS(slot_confirmed(), after);
  db.exec("ALTER TABLE entities ADD COLUMN parent text");
  CAF_REQUIRE(v.log->wait([&] { return !v.log->refetches.empty(); }));
  CAF_CHECK(eventually([&] { return stalled().empty(); }));
  CAF_CHECK_EQUAL(snapshot_keys(R"({"team":"a"})"),
                  (std::vector<std::string>{"/a1"}));
}

CAF_TEST(an update of status only keeps a TOASTed tag value) {
  start();
  auto v = durable_view(R"({"team":"a"})");
  // Over 8 KB that does not compress: stored out of line (TOAST), and an
  // update that leaves it alone sends it as 'unchanged'.
  db.exec("INSERT INTO entities (url, type, tags, created_at, updated_at) "
          "SELECT '/big', 'agent', jsonb_build_object('team', 'a', 'blob', "
          "string_agg(md5(i::text || random()::text), '')), 1, 1 "
          "FROM generate_series(1, 400) i");
  CAF_REQUIRE(v.log->wait([&] { return v.log->batches.size() >= 2; }));
  db.exec("UPDATE entities SET status = 'running' WHERE url = '/big'");
  CAF_REQUIRE(v.log->wait([&] { return v.log->batches.size() >= 3; }));
  auto stored = db.exec(
                    "SELECT tags::text FROM entities WHERE url = '/big'")[0][0]
                  .as<std::string>();
  CAF_CHECK_GREATER(stored.size(), 12000u);
  std::lock_guard<std::mutex> guard{v.log->mtx};
  auto& inserted = v.log->batches[1].changes;
  auto& updated = v.log->batches[2].changes;
  CAF_REQUIRE_EQUAL(inserted.size(), 1u);
  CAF_REQUIRE_EQUAL(updated.size(), 1u);
  CAF_REQUIRE(inserted[0].row);
  CAF_REQUIRE(updated[0].row);
  CAF_CHECK_EQUAL(updated[0].row->status, "running");
  CAF_CHECK_EQUAL(updated[0].row->tags, inserted[0].row->tags);
  CAF_CHECK_GREATER(updated[0].row->tags.size(), 12000u);
}

CAF_TEST_FIXTURE_SCOPE_END()
