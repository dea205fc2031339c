#define CAF_SUITE bridge
#include <caf/test/dsl.hpp>

#include "actors/bridge.hpp"
#include "tests/actor/fakes.hpp"

using namespace ebridge;
using namespace ebridge::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* ref = "52df825db9cb78ff";
constexpr const char* stream = "/_entities/52df825db9cb78ff";

struct fixture : test_coordinator_fixture<actor_test_config> {
  fixture() {
    src = std::make_shared<source_record>();
    snk = std::make_shared<sink_record>();
    reg = std::make_shared<registry_record>();
    bridge_row row;
    row.tenant_id = "default";
    row.source_ref = ref;
    row.tags = R"({"team":"infra"})";
    row.stream_url = stream;
    reg->rows[{"default", ref}] = row;
    // A bridge alone reads its row, takes epochs, writes and clears its
    // cursor and records reads: the rest (upsert, resume, stale, delete,
    // refs, and resuming at the source) is the manager's.
    reg->expected = {"get", "epoch", "cursor", "clear", "touch"};
    src->expected = {"subscribe", "unsubscribe", "ack"};
    source = sys.spawn(fake_source, src);
    sink = sys.spawn(fake_sink, snk);
    registry = sys.spawn(fake_registry, reg);
  }

  ~fixture() override {
    for (auto& b : bridges)
      caf::anon_send_exit(b, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(source, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
    sched.run();
  }

  bridge_config config(std::chrono::milliseconds cursor_interval = {}) {
    bridge_config cfg;
    cfg.cursor_interval = cursor_interval;
    cfg.tenant = "default";
    cfg.source_ref = ref;
    cfg.tags = R"({"team":"infra"})";
    cfg.source = source;
    cfg.sink = sink;
    cfg.registry = registry;
    cfg.backoff_initial = 100ms;
    cfg.backoff_max = 1600ms;
    return cfg;
  }

  /// Starts a bridge (as the manager would) and runs it until it waits.
  bridge_actor start(std::chrono::milliseconds cursor_interval = {}) {
    bridges.push_back(sys.spawn(bridge, config(cursor_interval)));
    sched.run();
    return bridges.back();
  }

  /// Spawns a bridge and lets it begin, no further: its first request is in
  /// the sink's mailbox, for the test to step with `expect`.
  bridge_actor launch() {
    sched.run(); // the fakes start
    bridges.push_back(sys.spawn(bridge, config()));
    CAF_REQUIRE(sched.prioritize(bridges.back()));
    sched.run_once();
    return bridges.back();
  }

  /// The bridge's latest subscription.
  const source_record::subscription& sub() {
    if (src->subscriptions.empty())
      CAF_FAIL("the bridge did not subscribe");
    return src->subscriptions.back();
  }

  /// Sends a batch of the latest subscription (`batch` also runs it).
  void send_batch(const bridge_actor& b, const std::string& offset,
                  std::vector<entity_change> changes,
                  std::string handle = "h1") {
    caf::anon_send(b, change_batch{sub().id, source_cursor{handle, offset},
                                   std::move(changes)});
  }

  void batch(const bridge_actor& b, const std::string& offset,
             std::vector<entity_change> changes, std::string handle = "h1") {
    send_batch(b, offset, std::move(changes), std::move(handle));
    sched.run();
  }

  /// The messages of a step that appends: the append and its durable
  /// answer, then the cursor written and the source told, in that order.
  void expect_durable_step(const bridge_actor& b, const std::string& handle,
                           const std::string& offset) {
    expect((append_atom, sink_append), from(b).to(sink));
    expect((uint64_t), from(sink).to(b));
    expect((cursor_atom, std::string, std::string, std::string, std::string),
           from(b).to(registry).with(_, "default", ref, handle, offset));
    expect((bool), from(registry).to(b));
    expect((ack_atom, bridge_actor, uint64_t, source_cursor),
           from(b).to(source));
  }

  void send_up_to_date(const bridge_actor& b, const std::string& offset,
                       std::string handle = "h1") {
    caf::anon_send(b, up_to_date_atom::value,
                   up_to_date_msg{sub().id, source_cursor{handle, offset}});
  }

  void up_to_date(const bridge_actor& b, const std::string& offset,
                  std::string handle = "h1") {
    send_up_to_date(b, offset, std::move(handle));
    sched.run();
  }

  std::vector<std::string>& messages() {
    return snk->streams[stream].messages;
  }

  /// The operations of the stream's events, in order ("insert a", ...).
  std::vector<std::string> ops() {
    std::vector<std::string> result;
    for (auto& text : messages()) {
      auto ev = parse_member_event(text);
      CAF_REQUIRE(ev);
      result.push_back(std::string{to_string(ev->op)} + " " + ev->key);
    }
    return result;
  }

  std::string persisted_handle() {
    return reg->rows[{"default", ref}].cursor_handle;
  }

  std::string persisted_offset() {
    return reg->rows[{"default", ref}].cursor_offset;
  }

  std::map<std::string, std::string> members_by_status() {
    std::map<std::string, std::string> result;
    for (auto& [url, r] : fold(messages()))
      result[url] = r.status;
    return result;
  }

  std::shared_ptr<source_record> src;
  std::shared_ptr<sink_record> snk;
  std::shared_ptr<registry_record> reg;
  source_actor source;
  sink_actor sink;
  registry_actor registry;
  std::vector<bridge_actor> bridges;
};

using strings = std::vector<std::string>;

} // namespace

CAF_TEST_FIXTURE_SCOPE(bridge_tests, fixture)

// SEED scenario 1.
CAF_TEST(bootstrap reconciles the stream with the snapshot) {
  // The stream already holds a and b.
  snk->streams[stream].messages = {
    to_json(member_event{event_op::insert, "a", row("a", "idle"), {}}, 1),
    to_json(member_event{event_op::insert, "b", row("b", "idle"), {}}, 1)};
  auto b = start();
  CAF_REQUIRE_EQUAL(src->subscriptions.size(), 1u);
  CAF_CHECK(sub().from.empty()); // no cursor: snapshot
  // The snapshot brings a (changed) and c, then up-to-date.
  batch(b, "0001", {upsert("a", "running"), upsert("c", "idle")});
  CAF_CHECK_EQUAL(persisted_offset(), ""); // never mid-bootstrap
  up_to_date(b, "0001");
  CAF_CHECK_EQUAL(ops(), (strings{"insert a", "insert b", "update a",
                                  "insert c", "delete b"}));
  CAF_CHECK_EQUAL(persisted_offset(), "0001");
  // Live changes then apply.
  batch(b, "0002", {upsert("c", "running")});
  batch(b, "0003", {removal("a")});
  CAF_CHECK_EQUAL(std::string{ops().back()}, "delete a");
  CAF_CHECK_EQUAL(persisted_offset(), "0003");
  using status_map = std::map<std::string, std::string>;
  CAF_CHECK_EQUAL(members_by_status(), (status_map{{"c", "running"}}));
  // The source hears of each persisted position.
  CAF_REQUIRE(!src->acks.empty());
  CAF_CHECK_EQUAL(src->acks.back().offset, "0003");
}

// SEED scenario 2.
CAF_TEST(a persisted cursor resumes live without a snapshot) {
  reg->rows[{"default", ref}].cursor_handle = "h1";
  reg->rows[{"default", ref}].cursor_offset = "0005";
  auto b = launch();
  // The stream, the row with its cursor, a new epoch: then it follows the
  // source from the cursor, with no snapshot, and writes no cursor.
  expect((ensure_atom, std::string), from(b).to(sink).with(_, stream));
  expect((sink_stream_state), from(sink).to(b));
  expect((caf::get_atom, std::string, std::string),
         from(b).to(registry).with(_, "default", ref));
  expect((bridge_row), from(registry).to(b));
  expect((epoch_atom, std::string, std::string),
         from(b).to(registry).with(_, "default", ref));
  expect((int64_t), from(registry).to(b));
  disallow((clear_atom, std::string, std::string), from(b).to(registry));
  disallow((cursor_atom, std::string, std::string, std::string, std::string),
           from(b).to(registry));
  expect((caf::subscribe_atom, bridge_actor, uint64_t, std::string, std::string,
          source_cursor),
         from(b).to(source).with(_, _, _, "default", R"({"team":"infra"})", _));
  CAF_CHECK(!sched.has_job());
  CAF_CHECK_EQUAL(sub().from.handle, "h1");
  CAF_CHECK_EQUAL(sub().from.offset, "0005");
  CAF_CHECK_EQUAL(reg->calls["cursor"], 0); // not rewritten at start
  CAF_CHECK_EQUAL(reg->calls["clear"], 0);
  // A live batch: appended, then its cursor persisted, then acknowledged.
  send_batch(b, "0006", {upsert("x", "idle")});
  expect((change_batch), to(b));
  expect_durable_step(b, "h1", "0006");
  CAF_CHECK_EQUAL(ops(), (strings{"insert x"}));
  CAF_CHECK_EQUAL(persisted_offset(), "0006");
  CAF_REQUIRE_EQUAL(src->acks.size(), 1u);
  CAF_CHECK_EQUAL(src->acks.back().offset, "0006");
}

// SEED scenario 3.
CAF_TEST(must refetch clears the cursor and resnapshots) {
  auto b = start();
  batch(b, "0001", {upsert("a", "idle"), upsert("b", "idle")});
  up_to_date(b, "0001");
  CAF_CHECK_EQUAL(persisted_offset(), "0001");
  caf::anon_send(b, refetch_atom::value, sub().id);
  // Live: the resync starts at once. It leaves the old subscription, clears
  // the cursor, takes a new epoch, then subscribes for a snapshot.
  expect((refetch_atom, uint64_t), to(b));
  expect((retry_atom, uint64_t), from(b).to(b));
  expect((caf::unsubscribe_atom, bridge_actor), from(b).to(source));
  expect((clear_atom, std::string, std::string),
         from(b).to(registry).with(_, "default", ref));
  expect((bool), from(registry).to(b));
  expect((epoch_atom, std::string, std::string),
         from(b).to(registry).with(_, "default", ref));
  expect((int64_t), from(registry).to(b));
  expect((caf::subscribe_atom, bridge_actor, uint64_t, std::string, std::string,
          source_cursor),
         from(b).to(source));
  CAF_CHECK(!sched.has_job());
  CAF_CHECK_EQUAL(persisted_offset(), "");
  CAF_REQUIRE_EQUAL(src->subscriptions.size(), 2u);
  CAF_CHECK(sub().from.empty());
  // The new handle's snapshot has only b (changed): appended, and no cursor
  // mid-bootstrap.
  send_batch(b, "0001", {upsert("b", "running")}, "h2");
  expect((change_batch), to(b));
  expect((append_atom, sink_append), from(b).to(sink));
  expect((uint64_t), from(sink).to(b));
  disallow((cursor_atom, std::string, std::string, std::string, std::string),
           from(b).to(registry));
  CAF_CHECK_EQUAL(persisted_offset(), "");
  // Up to date: the delete of a is appended, then the cursor persisted, then
  // the source hears of it.
  send_up_to_date(b, "0001", "h2");
  expect((up_to_date_atom, up_to_date_msg), to(b));
  expect_durable_step(b, "h2", "0001");
  CAF_CHECK_EQUAL(ops(),
                  (strings{"insert a", "insert b", "update b", "delete a"}));
  CAF_CHECK_EQUAL(persisted_handle(), "h2");
  CAF_CHECK_EQUAL(persisted_offset(), "0001");
}

CAF_TEST(a ready asked while a resumed bridge loads is answered once it resumed) {
  reg->rows[{"default", ref}].cursor_handle = "h1";
  reg->rows[{"default", ref}].cursor_offset = "0005";
  auto b = launch(); // asks the sink for its stream; not resumed yet
  auto ready = self->request(b, caf::infinite, ready_atom::value);
  sched.run();
  CAF_REQUIRE(!self->mailbox().empty());
  ready.receive([](caf::ok_atom) {},
                [](caf::error& err) { CAF_FAIL(describe(err)); });
}

CAF_TEST(a resync asked for rebuilds the view and deletes what left) {
  auto b = start();
  batch(b, "0001", {upsert("a", "idle"), upsert("b", "idle")});
  up_to_date(b, "0001");
  auto& row = reg->rows[{"default", ref}];
  auto epoch = row.producer_epoch;
  caf::anon_send(b, resync_atom::value);
  sched.run();
  // No cursor until the new snapshot is durable, and a new epoch.
  CAF_CHECK_EQUAL(persisted_offset(), "");
  CAF_CHECK_GREATER(row.producer_epoch, epoch);
  CAF_REQUIRE_EQUAL(src->subscriptions.size(), 2u);
  CAF_CHECK(sub().from.empty());
  batch(b, "0002", {upsert("b", "idle")});
  up_to_date(b, "0002");
  CAF_CHECK_EQUAL(ops(), (strings{"insert a", "insert b", "delete a"}));
  CAF_CHECK_EQUAL(persisted_offset(), "0002");
}

CAF_TEST(a resync asked for while loading snapshots instead of resuming) {
  reg->rows[{"default", ref}].cursor_handle = "h1";
  reg->rows[{"default", ref}].cursor_offset = "0005";
  bridges.push_back(sys.spawn(bridge, config()));
  caf::anon_send(bridges.back(), resync_atom::value);
  sched.run();
  CAF_REQUIRE_EQUAL(src->subscriptions.size(), 1u);
  CAF_CHECK(sub().from.empty());
  CAF_CHECK_EQUAL(persisted_offset(), "");
}

CAF_TEST(stop completes the append in flight and persists the cursor first) {
  auto b = start(1s); // live cursors trail by a second
  batch(b, "0001", {upsert("a", "idle")});
  up_to_date(b, "0001");
  CAF_CHECK_EQUAL(persisted_offset(), "0001");
  caf::anon_send(b, change_batch{sub().id,
                                 source_cursor{"h1", "0002"},
                                 {upsert("b", "idle")}});
  // (Its answer is checked, and taken from the mailbox, by the last expect.)
  self->request(b, caf::infinite, stop_atom::value);
  expect((change_batch), to(b));
  expect((stop_atom), from(self).to(b));
  // The append was in flight when the stop came: it completes, and the
  // cursor it trails is written now, not a second later.
  expect((append_atom, sink_append), from(b).to(sink));
  expect((uint64_t), from(sink).to(b));
  expect((cursor_atom, std::string, std::string, std::string, std::string),
         from(b).to(registry).with(_, "default", ref, "h1", "0002"));
  expect((bool), from(registry).to(b));
  expect((caf::ok_atom), from(b).to(self));
  CAF_CHECK_EQUAL(ops(), (strings{"insert a", "insert b"}));
  CAF_CHECK_EQUAL(persisted_offset(), "0002");
  // It no longer follows the source, and it ended.
  sched.run();
  CAF_CHECK_GREATER_OR_EQUAL(src->unsubscribes, 1);
  auto status = self->request(b, caf::infinite, status_atom::value);
  sched.run();
  status.receive([](bridge_status&) { CAF_FAIL("a stopped bridge answered"); },
                 [](caf::error&) {});
}

CAF_TEST(a stopped bridge ignores what the source still sends) {
  auto b = start();
  batch(b, "0001", {upsert("a", "idle")});
  up_to_date(b, "0001");
  auto id = sub().id;
  caf::anon_send(b, stop_atom::value);
  caf::anon_send(b, change_batch{id,
                                 source_cursor{"h1", "0002"},
                                 {upsert("b", "idle")}});
  sched.run();
  CAF_CHECK_EQUAL(ops(), (strings{"insert a"}));
  CAF_CHECK_EQUAL(persisted_offset(), "0001");
}

CAF_TEST(no op updates and deletes of non members emit nothing) {
  auto b = start();
  batch(b, "0001", {upsert("a", "idle")});
  up_to_date(b, "0001");
  batch(b, "0002", {upsert("a", "idle"), removal("zzz")});
  CAF_CHECK_EQUAL(ops(), (strings{"insert a"}));
  // The position still moves on.
  CAF_CHECK_EQUAL(persisted_offset(), "0002");
}

CAF_TEST(register waits until the first bootstrap is durable) {
  auto b = start();
  auto response = self->request(b, caf::infinite, ready_atom::value);
  sched.run();
  bool ready = false;
  batch(b, "0001", {upsert("a", "idle")});
  up_to_date(b, "0001");
  response.receive([&](caf::ok_atom) { ready = true; },
                   [](caf::error& err) { CAF_FAIL(describe(err)); });
  CAF_CHECK(ready);
  CAF_CHECK_EQUAL(ops(), (strings{"insert a"}));
}

CAF_TEST(a crash between the durable append and the cursor write duplicates nothing) {
  auto b = start();
  batch(b, "0001", {upsert("a", "idle")});
  up_to_date(b, "0001");
  // Two batches are appended (pipelined) and durable; the first cursor
  // write fails, so the bridge dies with the registry still at 0001.
  reg->fail["cursor"] = 1;
  auto id = sub().id;
  caf::anon_send(b, change_batch{id, {"h1", "0002"}, {upsert("a", "running")}});
  caf::anon_send(b, change_batch{id, {"h1", "0003"}, {upsert("a", "paused")}});
  sched.run();
  CAF_CHECK_EQUAL(ops(), (strings{"insert a", "update a", "update a"}));
  CAF_CHECK_EQUAL(persisted_offset(), "0001");
  // A new bridge resumes from what the stream holds (0003), past the old
  // cursor; a source that replays 0002 and 0003 anyway must not get them
  // applied again (0002 would move a back to running).
  auto b2 = start();
  CAF_CHECK_EQUAL(sub().from.offset, "0003");
  batch(b2, "0002", {upsert("a", "running")});
  batch(b2, "0003", {upsert("a", "paused")});
  CAF_CHECK_EQUAL(ops(), (strings{"insert a", "update a", "update a"}));
  batch(b2, "0004", {removal("a")});
  CAF_CHECK_EQUAL(std::string{ops().back()}, "delete a");
  CAF_CHECK_EQUAL(persisted_offset(), "0004");
}

CAF_TEST(an up to date while live moves the cursor without an append) {
  auto b = start();
  batch(b, "0001", {upsert("a", "idle")});
  up_to_date(b, "0001");
  CAF_CHECK_EQUAL(persisted_offset(), "0001");
  auto appends = snk->appends;
  // Nothing concerned the view up to 0009: the source says so. No append:
  // the cursor is persisted, then the source hears of it.
  send_up_to_date(b, "0009");
  expect((up_to_date_atom, up_to_date_msg), to(b));
  disallow((append_atom, sink_append), from(b).to(sink));
  expect((cursor_atom, std::string, std::string, std::string, std::string),
         from(b).to(registry).with(_, "default", ref, "h1", "0009"));
  expect((bool), from(registry).to(b));
  expect((ack_atom, bridge_actor, uint64_t, source_cursor), from(b).to(source));
  CAF_CHECK_EQUAL(persisted_offset(), "0009");
  CAF_CHECK_EQUAL(snk->appends, appends);
  CAF_REQUIRE(!src->acks.empty());
  CAF_CHECK_EQUAL(src->acks.back().offset, "0009");
  // A restart resumes from there.
  auto b2 = start();
  CAF_CHECK_EQUAL(sub().from.offset, "0009");
  CAF_CHECK_EQUAL(ops(), (strings{"insert a"}));
}

CAF_TEST(a trailing cursor lost in a crash costs nothing) {
  auto b = start(1s);
  batch(b, "0001", {upsert("a", "idle")});
  up_to_date(b, "0001");
  CAF_CHECK_EQUAL(persisted_offset(), "0001"); // a bootstrap's at once
  batch(b, "0002", {upsert("a", "running")});
  batch(b, "0003", {upsert("a", "paused")});
  // Durable: acknowledged at once; the cursor trails.
  CAF_REQUIRE(!src->acks.empty());
  CAF_CHECK_EQUAL(src->acks.back().offset, "0003");
  CAF_CHECK_EQUAL(persisted_offset(), "0001");
  // The bridge dies before the cursor write; its successor resumes from
  // what the stream holds and applies nothing twice.
  caf::anon_send_exit(b, caf::exit_reason::kill);
  sched.run();
  auto b2 = start(1s);
  CAF_CHECK_EQUAL(sub().from.offset, "0003");
  batch(b2, "0002", {upsert("a", "running")});
  batch(b2, "0003", {upsert("a", "paused")});
  batch(b2, "0004", {removal("a")});
  CAF_CHECK_EQUAL(ops(),
                  (strings{"insert a", "update a", "update a", "delete a"}));
  // One write per interval, of the latest position.
  auto writes = reg->calls["cursor"];
  sched.advance_time(1s);
  sched.run();
  CAF_CHECK_EQUAL(persisted_offset(), "0004");
  CAF_CHECK_EQUAL(reg->calls["cursor"], writes + 1);
}

CAF_TEST(a refetch while the bootstrap cursor is being written clears it) {
  auto b = start();
  batch(b, "0001", {upsert("a", "idle")});
  // The bootstrap completes (its cursor write goes out) and a refetch comes
  // before anything else runs.
  auto id = sub().id;
  caf::anon_send(b, up_to_date_atom::value,
                 up_to_date_msg{id, source_cursor{"h1", "0001"}});
  caf::anon_send(b, refetch_atom::value, id);
  sched.run();
  // Resyncing: no cursor in the registry until the new bootstrap is
  // durable, or a crash now would resume without the stale deletes.
  CAF_CHECK_EQUAL(persisted_offset(), "");
  CAF_CHECK(sub().from.empty());
}

CAF_TEST(a crash mid bootstrap leaves no cursor and the restart emits the stale deletes) {
  snk->streams[stream].messages = {
    to_json(member_event{event_op::insert, "old", row("old", "idle"), {}}, 1)};
  auto b = start();
  batch(b, "0001", {upsert("a", "idle")});
  // The bootstrap's last append fails: the bridge dies mid-bootstrap.
  snk->fail_appends = 1;
  up_to_date(b, "0001");
  CAF_CHECK_EQUAL(persisted_offset(), "");
  auto b2 = start();
  CAF_CHECK(sub().from.empty()); // resyncs again
  batch(b2, "0001", {upsert("a", "idle")});
  up_to_date(b2, "0001");
  using status_map = std::map<std::string, std::string>;
  CAF_CHECK_EQUAL(members_by_status(), (status_map{{"a", "idle"}}));
  CAF_CHECK_EQUAL(std::string{ops().back()}, "delete old");
  CAF_CHECK_EQUAL(persisted_offset(), "0001");
}

CAF_TEST(a restart takes a new epoch so nothing is dropped as a duplicate) {
  auto b = start();
  batch(b, "0001", {upsert("a", "idle")});
  up_to_date(b, "0001");
  batch(b, "0002", {upsert("b", "idle")});
  auto epoch1 = snk->streams[stream].producers.begin()->second.epoch;
  caf::anon_send_exit(b, caf::exit_reason::kill);
  sched.run();
  auto b2 = start();
  batch(b2, "0003", {upsert("c", "idle")});
  auto epoch2 = snk->streams[stream].producers.begin()->second.epoch;
  CAF_CHECK_GREATER(epoch2, epoch1);
  CAF_CHECK_EQUAL(snk->duplicates, 0);
  CAF_CHECK_EQUAL(ops(), (strings{"insert a", "insert b", "insert c"}));
}

CAF_TEST(a sink failure ends the bridge with the error) {
  auto b = start();
  batch(b, "0001", {upsert("a", "idle")});
  up_to_date(b, "0001");
  snk->fail_appends = 1;
  batch(b, "0002", {upsert("b", "idle")});
  CAF_CHECK_EQUAL(persisted_offset(), "0001");
  // It stopped: further batches go nowhere, and it unsubscribed.
  CAF_CHECK_GREATER_OR_EQUAL(src->unsubscribes, 1);
}

CAF_TEST(a bridge that fails answers who waits for it to be ready) {
  auto b = start();
  auto ready = self->request(b, caf::infinite, ready_atom::value);
  sched.run();
  CAF_CHECK(self->mailbox().empty()); // still bootstrapping
  snk->fail_appends = 1;
  batch(b, "0001", {upsert("a", "idle")});
  CAF_REQUIRE(!self->mailbox().empty());
  ready.receive([](caf::ok_atom) { CAF_FAIL("ready from a failed bridge"); },
                [](caf::error& err) {
                  CAF_CHECK_EQUAL(error_message(err), "scripted sink failure");
                });
}

CAF_TEST(must refetch during bootstrap starts over after a backoff) {
  auto b = start();
  batch(b, "0001", {upsert("a", "idle")});
  caf::anon_send(b, refetch_atom::value, sub().id);
  sched.run();
  CAF_CHECK_EQUAL(src->subscriptions.size(), 1u); // waits for the backoff
  sched.trigger_timeout();
  sched.run();
  CAF_REQUIRE_EQUAL(src->subscriptions.size(), 2u);
  batch(b, "0001", {upsert("a", "idle")}, "h2");
  up_to_date(b, "0001", "h2");
  CAF_CHECK_EQUAL(ops(), (strings{"insert a"}));
  CAF_CHECK_EQUAL(persisted_handle(), "h2");
}

CAF_TEST(a source error storm backs off exponentially up to the cap) {
  auto b = start();
  batch(b, "0001", {upsert("a", "idle")});
  up_to_date(b, "0001");
  std::vector<long> delays;
  for (int i = 0; i < 6; ++i) {
    auto before = src->subscriptions.size();
    caf::anon_send(b, source_error_atom::value, sub().id,
                   std::string{"connection lost"});
    sched.run();
    CAF_CHECK_EQUAL(src->subscriptions.size(), before); // not yet
    // Step time until the resync subscribes again.
    long waited = 0;
    while (src->subscriptions.size() == before && waited < 10000) {
      sched.advance_time(10ms);
      sched.run();
      waited += 10;
    }
    delays.push_back(waited);
  }
  // 100, 200, 400, 800, 1600, 1600 ms (plus up to half again of jitter).
  for (size_t i = 1; i < delays.size(); ++i)
    CAF_CHECK_GREATER_OR_EQUAL(delays[i] * 3, delays[i - 1] * 2);
  CAF_CHECK_GREATER_OR_EQUAL(delays[4], 1600);
  CAF_CHECK_LESS_OR_EQUAL(delays[5], 2410);
}

CAF_TEST(messages of an old subscription are ignored) {
  auto b = start();
  auto old_id = sub().id;
  batch(b, "0001", {upsert("a", "idle")});
  up_to_date(b, "0001");
  caf::anon_send(b, refetch_atom::value, old_id);
  sched.run();
  caf::anon_send(b, change_batch{old_id,
                                 source_cursor{"h1", "0002"},
                                 {upsert("zombie", "idle")}});
  sched.run();
  CAF_CHECK_EQUAL(ops(), (strings{"insert a"}));
}

CAF_TEST_FIXTURE_SCOPE_END()
