#define CAF_SUITE source_logic
#include <caf/test/unit_test.hpp>

#include <string>
#include <variant>
#include <vector>

#include "actors/source_logic.hpp"
#include "core/error.hpp"
#include "storage/pgoutput.hpp"

// The change source's rules without Postgres, actors or clocks: what each
// subscriber is sent for a feed of transactions, snapshots and acks.

using namespace ebridge;

namespace {

constexpr const char* infra = R"({"team":"infra"})";

/// What the logic decided, in order.
struct sent {
  enum class kind {
    batch,
    up_to_date,
    refetch,
    failed,
    snapshot,
    start,
    check
  };
  kind what;
  uint64_t id = 0;
  change_batch batch;
  up_to_date_msg done;
  std::string text;
};

struct recorder : source_output {
  std::vector<sent> log;

  void batch(uint64_t id, change_batch b) override {
    log.push_back({sent::kind::batch, id, std::move(b), {}, {}});
  }
  void up_to_date(uint64_t id, up_to_date_msg msg) override {
    log.push_back({sent::kind::up_to_date, id, {}, std::move(msg), {}});
  }
  void refetch(uint64_t id, uint64_t) override {
    log.push_back({sent::kind::refetch, id, {}, {}, {}});
  }
  void failed(uint64_t id, uint64_t, std::string why) override {
    log.push_back({sent::kind::failed, id, {}, {}, std::move(why)});
  }
  void take_snapshot(uint64_t id, const std::string&,
                     const std::string& tags) override {
    log.push_back({sent::kind::snapshot, id, {}, {}, tags});
  }
  void start_feed(const std::string& why) override {
    log.push_back({sent::kind::start, 0, {}, {}, why});
  }
  void check_table() override {
    log.push_back({sent::kind::check, 0, {}, {}, {}});
  }

  /// Takes what was sent so far.
  std::vector<sent> take() {
    auto result = std::move(log);
    log.clear();
    return result;
  }
};

entity_tuple tuple(const std::string& url, const std::string& status,
                   const std::string& tags = infra) {
  entity_tuple t;
  t.tenant_id = "default";
  t.columns.url = url;
  t.columns.type = "agent";
  t.columns.status = status;
  t.columns.tags = tags;
  t.columns.created_at = "1";
  t.columns.updated_at = "2";
  return t;
}

entity_row_change insert(entity_tuple row) {
  return {change_op::insert, std::nullopt, std::move(row)};
}

entity_row_change update(entity_tuple before, entity_tuple after) {
  return {change_op::update, std::move(before), std::move(after)};
}

replicated_txn txn(uint32_t xid, uint64_t end_lsn,
                   std::vector<entity_row_change> changes) {
  replicated_txn t;
  t.xid = xid;
  t.commit_lsn = end_lsn - 8;
  t.end_lsn = end_lsn;
  t.changes = std::move(changes);
  return t;
}

feed_identity feed(int64_t generation = 1) {
  return feed_identity{"7000", "ebridge", generation};
}

source_cursor at(uint64_t lsn, uint32_t op = 0) {
  return source_cursor{feed().handle(), format_lsn_offset(lsn, op)};
}

/// A batch's changes as "remove /a", "update /b".
std::vector<std::string> ops(const change_batch& batch) {
  std::vector<std::string> result;
  for (auto& c : batch.changes)
    result.push_back((c.op == change_op::remove ? "remove " : "update ")
                     + c.key);
  return result;
}

struct fixture {
  source_config cfg;
  recorder out;
  std::unique_ptr<source_logic> logic;

  fixture() {
    cfg.resume_wait = std::chrono::milliseconds{0}; // not held
    cfg.replay_buffer = 4;
    cfg.max_lag = 10000;
    cfg.idle_lag = 1000;
    cfg.advance_chunk = 2;
    make();
  }

  void make() {
    logic = std::make_unique<source_logic>(cfg, out);
  }

  /// Connects the feed at `lsn` and subscribes `id` live from `lsn`.
  void live(uint64_t id, uint64_t lsn = 100) {
    if (!logic->connected())
      logic->connected(feed(), lsn);
    logic->subscribe(id, id * 10, "default", infra, at(lsn));
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(source_logic_tests, fixture)

CAF_TEST(a live subscriber gets one batch per transaction that concerns it) {
  live(1);
  logic->transaction(txn(5, 200,
                         {insert(tuple("/a", "idle")),
                          insert(tuple("/x", "idle", R"({"team":"ops"})")),
                          insert(tuple("/b", "busy"))}));
  logic->transaction(txn(6, 300, {insert(tuple("/y", "idle", "{}"))}));
  auto got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK(got[0].what == sent::kind::batch);
  CAF_CHECK_EQUAL(got[0].id, 1u);
  CAF_CHECK_EQUAL(got[0].batch.subscription, 10u);
  // At the transaction's end and the index of the last change it covers.
  CAF_CHECK(got[0].batch.at == at(200, 2));
  CAF_REQUIRE_EQUAL(got[0].batch.changes.size(), 2u);
  CAF_CHECK_EQUAL(got[0].batch.changes[0].key, "/a");
  CAF_CHECK_EQUAL(got[0].batch.changes[1].key, "/b");
}

CAF_TEST(a retag out of the view is a remove and into it an upsert) {
  live(1);
  logic->transaction(
    txn(5, 200,
        {update(tuple("/a", "idle"), tuple("/a", "idle", R"({"team":"ops"})")),
         update(tuple("/b", "idle", "{}"), tuple("/b", "idle"))}));
  auto got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  auto& changes = got[0].batch.changes;
  CAF_REQUIRE_EQUAL(changes.size(), 2u);
  CAF_CHECK(changes[0].op == change_op::remove);
  CAF_CHECK_EQUAL(changes[0].key, "/a");
  CAF_CHECK(changes[1].op == change_op::update);
  CAF_CHECK_EQUAL(changes[1].key, "/b");
}

CAF_TEST(a row whose new version is unreadable leaves the view) {
  // Tags that are not an object, a required column null: a snapshot leaves
  // such a row out, so the feed takes it out of the views it was in.
  live(1);
  auto no_type = tuple("/b", "idle");
  no_type.columns.type.reset();
  logic->transaction(
    txn(5, 200,
        {update(tuple("/a", "idle"), tuple("/a", "idle", R"(["infra"])")),
         update(tuple("/b", "idle"), no_type),
         insert(tuple("/c", "idle", "7"))}));
  auto got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK_EQUAL(ops(got[0].batch),
                  (std::vector<std::string>{"remove /a", "remove /b"}));
  CAF_CHECK(got[0].batch.at == at(200, 1));
}

CAF_TEST(a change that cannot be applied stalls the feed until the table is fixed) {
  live(1);
  logic->transaction(txn(5, 200, {insert(tuple("/a", "idle"))}));
  logic->acknowledged(1, 10, at(200));
  out.take();
  auto bad = txn(6, 300, {});
  bad.unusable = "an update or delete without the old row";
  logic->transaction(bad);
  // Nothing routed; the table is checked; the feed is stalled, saying why.
  auto got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK(got[0].what == sent::kind::check);
  CAF_CHECK_NOT_EQUAL(logic->stalled().find("without the old row"),
                      std::string::npos);
  // What comes after is held back, and nothing past the bad change is
  // confirmed, whatever the feed reports.
  logic->transaction(txn(7, 400, {insert(tuple("/b", "idle"))}));
  logic->progress(500, false);
  CAF_CHECK(out.take().empty());
  CAF_CHECK_LESS(logic->confirmable(), 300u);
  // A new subscribe waits; one question about the table at a time.
  logic->subscribe(2, 20, "default", infra, source_cursor{});
  logic->stall_tick();
  CAF_CHECK(out.take().empty());
  // Not fixed yet: the reason says what is wrong; the next tick asks again.
  logic->table_checked("REPLICA IDENTITY is not FULL");
  CAF_CHECK_NOT_EQUAL(logic->stalled().find("REPLICA IDENTITY"),
                      std::string::npos);
  CAF_CHECK_LESS(logic->confirmable(), 300u);
  logic->stall_tick();
  got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK(got[0].what == sent::kind::check);
  // Fixed: the view that might have missed the change resyncs, the waiting
  // subscribe bootstraps, and the feed goes on past what it held back.
  logic->table_checked("");
  CAF_CHECK_EQUAL(logic->stalled(), "");
  got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 2u);
  CAF_CHECK(got[0].what == sent::kind::refetch);
  CAF_CHECK_EQUAL(got[0].id, 1u);
  CAF_CHECK(got[1].what == sent::kind::snapshot);
  CAF_CHECK_EQUAL(got[1].id, 2u);
  CAF_CHECK_GREATER_OR_EQUAL(logic->confirmable(), 500u);
  // After a reconnect the bad change comes again: passed, not stalled on.
  logic->disconnected();
  logic->connected(feed(), 200);
  logic->transaction(bad);
  CAF_CHECK_EQUAL(logic->stalled(), "");
}

CAF_TEST(a change that cannot be applied and no view needs is passed) {
  logic->connected(feed(), 100);
  auto bad = txn(6, 300, {});
  bad.unusable = "unreadable row";
  logic->transaction(bad);
  CAF_CHECK_EQUAL(logic->stalled(), "");
  CAF_CHECK_EQUAL(logic->confirmable(), 300u);
  // A view resuming from before it cannot be replayed to: it resyncs.
  logic->subscribe(1, 10, "default", infra, at(200));
  auto got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK(got[0].what == sent::kind::refetch);
}

CAF_TEST(a transaction replayed after a reconnect is not routed twice) {
  live(1);
  logic->transaction(txn(5, 200, {insert(tuple("/a", "idle"))}));
  logic->disconnected();
  logic->connected(feed(), 150);
  logic->transaction(txn(5, 200, {insert(tuple("/a", "idle"))}));
  CAF_CHECK_EQUAL(out.take().size(), 1u);
}

CAF_TEST(a bootstrap sends the snapshot then what it did not see then up to date) {
  logic->connected(feed(), 100);
  logic->subscribe(1, 10, "default", infra, {});
  auto asked = out.take();
  CAF_REQUIRE_EQUAL(asked.size(), 1u);
  CAF_CHECK(asked[0].what == sent::kind::snapshot);
  CAF_CHECK_EQUAL(asked[0].text, infra);
  // Both commit while the snapshot is taken: it saw xid 5, not xid 7.
  logic->transaction(txn(5, 200, {insert(tuple("/seen", "idle"))}));
  logic->transaction(txn(7, 300, {insert(tuple("/unseen", "idle"))}));
  CAF_CHECK(out.take().empty());
  view_snapshot snap;
  CAF_REQUIRE(parse_pg_snapshot("6:7:", snap));
  snap.wal_lsn = 400;
  snap.rows.push_back(*make_member_row(tuple("/seen", "idle").columns));
  logic->snapshot_taken(1, std::move(snap));
  auto got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 3u);
  CAF_CHECK(got[0].what == sent::kind::batch);
  CAF_CHECK(got[0].batch.at == at(100));
  CAF_REQUIRE_EQUAL(got[0].batch.changes.size(), 1u);
  CAF_CHECK(got[0].batch.changes[0].op == change_op::insert);
  CAF_CHECK_EQUAL(got[1].batch.changes.at(0).key, "/unseen");
  CAF_CHECK(got[2].what == sent::kind::up_to_date);
  CAF_CHECK(got[2].done.at == at(300, 0));
  CAF_CHECK_EQUAL(got[2].done.subscription, 10u);
}

CAF_TEST(after its snapshot a view drops what the snapshot saw until the feed passes it) {
  logic->connected(feed(), 100);
  logic->subscribe(1, 10, "default", infra, {});
  view_snapshot snap;
  CAF_REQUIRE(parse_pg_snapshot("10:12:10", snap)); // xid 10 in progress
  snap.wal_lsn = 500;
  logic->snapshot_taken(1, std::move(snap));
  out.take();
  // Arrives after the snapshot ended, committed before it was taken.
  logic->transaction(txn(9, 200, {insert(tuple("/old", "idle"))}));
  // In progress when the snapshot was taken: not in it.
  logic->transaction(txn(10, 300, {insert(tuple("/inflight", "idle"))}));
  // Past the snapshot's WAL position: never seen.
  logic->transaction(txn(9, 600, {insert(tuple("/late", "idle"))}));
  auto got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 2u);
  CAF_CHECK_EQUAL(got[0].batch.changes.at(0).key, "/inflight");
  CAF_CHECK_EQUAL(got[1].batch.changes.at(0).key, "/late");
}

CAF_TEST(a failed snapshot fails the subscription and forgets it) {
  logic->connected(feed(), 100);
  logic->subscribe(1, 10, "default", infra, {});
  out.take();
  logic->snapshot_taken(1, make_error(ec::database_unavailable, "gone"));
  auto got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK(got[0].what == sent::kind::failed);
  CAF_CHECK_EQUAL(logic->subscriber_count(), 0u);
}

CAF_TEST(a cursor inside the replay buffer is served from it) {
  logic->connected(feed(), 100);
  for (uint64_t n = 1; n <= 3; ++n)
    logic->transaction(txn(static_cast<uint32_t>(n), 100 + n * 100,
                           {insert(tuple("/e" + std::to_string(n), "idle"))}));
  // Acknowledged up to the first: gets the second and third.
  logic->subscribe(1, 10, "default", infra, at(200));
  auto got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 2u);
  CAF_CHECK_EQUAL(got[0].batch.changes.at(0).key, "/e2");
  CAF_CHECK_EQUAL(got[1].batch.changes.at(0).key, "/e3");
}

CAF_TEST(a cursor past the replay buffer or of another feed must refetch) {
  logic->connected(feed(), 100);
  for (uint64_t n = 1; n <= 6; ++n) // buffer keeps 4: reaches back to 300
    logic->transaction(txn(static_cast<uint32_t>(n), 100 + n * 100, {}));
  logic->subscribe(1, 10, "default", infra, at(200));
  logic->subscribe(2, 20, "default", infra,
                   source_cursor{feed(2).handle(), format_lsn_offset(600)});
  logic->subscribe(3, 30, "default", infra, at(300));
  auto got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 2u);
  CAF_CHECK(got[0].what == sent::kind::refetch && got[0].id == 1u);
  CAF_CHECK(got[1].what == sent::kind::refetch && got[1].id == 2u);
  CAF_CHECK_EQUAL(logic->subscriber_count(), 1u);
}

CAF_TEST(subscribes wait for the feed and start once it connects) {
  logic->subscribe(1, 10, "default", infra, {});
  CAF_CHECK(out.take().empty());
  CAF_CHECK_EQUAL(logic->waiting_count(), 1u);
  logic->connected(feed(), 100);
  auto got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK(got[0].what == sent::kind::snapshot);
}

CAF_TEST(Postgres may release only what every subscriber made durable) {
  live(1, 100);
  live(2, 100);
  logic->transaction(txn(5, 200, {insert(tuple("/a", "idle"))}));
  CAF_CHECK_EQUAL(logic->confirmable(), 100u);
  CAF_CHECK(!logic->confirm_due());
  logic->acknowledged(1, 10, at(200));
  CAF_CHECK(logic->confirm_due());
  CAF_CHECK_EQUAL(logic->confirmable(), 100u);
  logic->acknowledged(2, 20, at(200));
  CAF_CHECK_EQUAL(logic->confirmable(), 200u);
  // An ack of an older subscription, or of another feed, moves nothing.
  logic->transaction(txn(6, 300, {insert(tuple("/b", "idle"))}));
  logic->acknowledged(1, 11, at(300));
  logic->acknowledged(2, 20,
                      source_cursor{feed(2).handle(), format_lsn_offset(300)});
  CAF_CHECK_EQUAL(logic->confirmable(), 200u);
  // Gone subscribers hold nothing back.
  logic->unsubscribe(1);
  logic->unsubscribe(2);
  CAF_CHECK_EQUAL(logic->confirmable(), 300u);
}

CAF_TEST(an idle view moves once it holds back idle lag of WAL) {
  live(1, 100);
  live(2, 100);
  live(3, 100);
  // Nothing for them: the feed moves on.
  logic->progress(900, false);
  logic->idle_check();
  CAF_CHECK(!logic->next_advance()); // 800 bytes behind, under 1000
  logic->progress(1200, false);
  logic->idle_check();
  auto first = logic->next_advance();
  CAF_REQUIRE(first);
  CAF_CHECK_EQUAL(first->lsn, 1200u);
  CAF_CHECK_EQUAL(first->subscribers.size(), 2u); // chunks of 2
  CAF_CHECK(!logic->next_advance());              // one in flight at a time
  logic->advanced(*first, first->keys);
  auto second = logic->next_advance();
  CAF_REQUIRE(second);
  CAF_CHECK_EQUAL(second->subscribers.size(), 1u);
  // The row did not move (say its bridge resynced): it still holds back.
  logic->advanced(*second, {});
  CAF_CHECK_EQUAL(logic->confirmable(), 100u);
  logic->unsubscribe(second->subscribers[0]);
  CAF_CHECK_EQUAL(logic->confirmable(), 1200u);
}

CAF_TEST(a view whose cursor cannot move is released but not marked moved) {
  live(1, 100);
  logic->progress(5000, false);
  logic->idle_check();
  auto adv = logic->next_advance();
  CAF_REQUIRE(adv);
  logic->advance_failed(*adv);
  CAF_CHECK_EQUAL(logic->confirmable(), 5000u);
  // Tried again at the next check.
  logic->idle_check();
  CAF_CHECK(logic->next_advance());
}

CAF_TEST(a view that lags past max lag with unacknowledged batches must resync) {
  live(1, 100);
  logic->transaction(txn(5, 200, {insert(tuple("/a", "idle"))}));
  out.take();
  logic->progress(200 + cfg.max_lag + 1, false);
  logic->idle_check();
  auto got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK(got[0].what == sent::kind::refetch);
  CAF_CHECK_EQUAL(logic->subscriber_count(), 0u);
}

CAF_TEST(an urgent keepalive releases idle views at once) {
  live(1, 100);
  live(2, 100);
  logic->transaction(txn(5, 200, {insert(tuple("/a", "idle"))}));
  logic->acknowledged(1, 10, at(200));
  CAF_CHECK(!logic->progress(300, false));
  CAF_CHECK_EQUAL(logic->confirmable(), 100u);
  CAF_CHECK(logic->progress(300, true));
  // Subscriber 2 did not acknowledge its batch: it still holds back, and
  // was not released past what it was sent.
  CAF_CHECK_EQUAL(logic->confirmable(), 100u);
  logic->acknowledged(2, 20, at(200));
  CAF_CHECK_EQUAL(logic->confirmable(), 200u);
}

CAF_TEST(a new feed identity or a truncate makes every view refetch) {
  live(1, 100);
  live(2, 100);
  logic->disconnected();
  logic->connected(feed(2), 50);
  auto got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 2u);
  CAF_CHECK(got[0].what == sent::kind::refetch);
  CAF_CHECK(got[1].what == sent::kind::refetch);
  CAF_CHECK_EQUAL(logic->position(), 50u);
  logic->subscribe(3, 30, "default", infra,
                   source_cursor{feed(2).handle(), format_lsn_offset(50)});
  auto t = txn(9, 90, {});
  t.truncated = true;
  logic->transaction(std::move(t));
  got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK(got[0].what == sent::kind::refetch && got[0].id == 3u);
}

CAF_TEST(a held feed starts once every view resumed with a cursor subscribed) {
  cfg.resume_wait = std::chrono::seconds{60};
  make();
  CAF_CHECK(logic->holding());
  logic->subscribe(1, 10, "default", infra, at(100));
  logic->subscribe(2, 20, "default", infra, {}); // a register: not counted
  logic->resuming(2);
  CAF_CHECK(out.take().empty());
  logic->subscribe(3, 30, "default", infra, at(100));
  auto got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK(got[0].what == sent::kind::start);
  CAF_CHECK(!logic->holding());
}

CAF_TEST(a held feed starts when the wait runs out) {
  cfg.resume_wait = std::chrono::seconds{60};
  make();
  logic->resuming(5);
  logic->subscribe(1, 10, "default", infra, at(100));
  CAF_CHECK(out.take().empty());
  logic->hold_expired();
  auto got = out.take();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK(got[0].what == sent::kind::start);
  logic->hold_expired(); // once
  CAF_CHECK(out.take().empty());
}

CAF_TEST(a snapshot sees transactions by modular transaction id order) {
  view_snapshot snap;
  CAF_REQUIRE(parse_pg_snapshot("4294967290:5:4294967295,2", snap));
  CAF_CHECK(snapshot_sees(snap, 4294967280u));  // before xmin
  CAF_CHECK(!snapshot_sees(snap, 4294967295u)); // in progress
  CAF_CHECK(snapshot_sees(snap, 1u));           // wrapped, below xmax
  CAF_CHECK(!snapshot_sees(snap, 2u));          // in progress
  CAF_CHECK(!snapshot_sees(snap, 5u));          // from xmax on
  view_snapshot bad;
  CAF_CHECK(!parse_pg_snapshot("12-14", bad));
}

CAF_TEST_FIXTURE_SCOPE_END()
