#define CAF_SUITE manager
#include <caf/test/dsl.hpp>

#include "actors/manager.hpp"
#include "core/tags.hpp"
#include "tests/actor/fakes.hpp"

using namespace ebridge;
using namespace ebridge::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* tags_x = R"({"team":"infra"})";

struct fixture : test_coordinator_fixture<actor_test_config> {
  fixture() {
    src = std::make_shared<source_record>();
    snk = std::make_shared<sink_record>();
    reg = std::make_shared<registry_record>();
    source = sys.spawn(fake_source, src);
    sink = sys.spawn(fake_sink, snk);
    registry = sys.spawn(fake_registry, reg);
    ref_x = source_ref(*parse_tags(tags_x));
  }

  ~fixture() override {
    caf::anon_send_exit(mgr, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(source, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
    sched.run();
  }

  void start_manager() {
    manager_config cfg;
    cfg.source = source;
    cfg.sink = sink;
    cfg.registry = registry;
    cfg.register_timeout = 10s;
    cfg.restart_initial = 200ms;
    cfg.restart_max = 3200ms;
    mgr = sys.spawn(manager, cfg);
    sched.run();
  }

  /// Sends a register and returns a handle to its answer.
  auto register_tags(const std::string& tags) {
    auto response = self->request(mgr, caf::infinite, register_atom::value,
                                  std::string{"default"}, tags);
    sched.run();
    return response;
  }

  /// Ends the bootstrap of the latest subscription at `offset`.
  void bootstrap(const std::string& offset = "0001") {
    auto& s = src->subscriptions.back();
    caf::anon_send(s.bridge, up_to_date_atom::value,
                   up_to_date_msg{s.id, source_cursor{"h1", offset}});
    sched.run();
  }

  bridge_row& row_of(const std::string& ref) {
    return reg->rows[{"default", ref}];
  }

  /// A registry row as a restart finds it, with cursor h1/0007 or none.
  void persist_row(const std::string& tags, bool with_cursor = true) {
    auto ref = source_ref(*parse_tags(tags));
    bridge_row row;
    row.tenant_id = "default";
    row.source_ref = ref;
    row.tags = tags;
    row.stream_url = stream_path(ref);
    if (with_cursor) {
      row.cursor_handle = "h1";
      row.cursor_offset = "0007";
    }
    reg->rows[{"default", ref}] = row;
  }

  /// Registers tags_x, lets it go idle and runs the GC until it stops the
  /// view's bridge (the stop not yet handled); returns the manager's state.
  manager_state& collecting_x() {
    start_manager();
    auto first = register_tags(tags_x);
    bootstrap();
    first.receive([](registration&) {},
                  [](caf::error& err) { CAF_FAIL(describe(err)); });
    row_of(ref_x).last_activity_ms = 0;
    caf::anon_send(mgr, sweep_atom::value);
    using state_type = caf::stateful_actor<manager_state, manager_actor::base>;
    auto& st = deref<state_type>(mgr).state;
    manager_state::key k{"default", ref_x};
    while (!st.bridges[k].retiring && sched.has_job())
      sched.run_once();
    CAF_REQUIRE(st.bridges[k].retiring);
    return st;
  }

  bool has_row(const std::string& ref) {
    return reg->rows.count({"default", ref}) > 0;
  }

  std::shared_ptr<source_record> src;
  std::shared_ptr<sink_record> snk;
  std::shared_ptr<registry_record> reg;
  source_actor source;
  sink_actor sink;
  registry_actor registry;
  manager_actor mgr;
  std::string ref_x;
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(manager_tests, fixture)

CAF_TEST(register refuses tags that are not an object of strings) {
  start_manager();
  auto response = register_tags(R"({"team":1})");
  bool refused = false;
  response.receive([](registration&) { CAF_FAIL("accepted bad tags"); },
                   [&](caf::error& err) {
                     refused = true;
                     CAF_CHECK_EQUAL(err.code(),
                                     static_cast<uint8_t>(ec::invalid_tags));
                   });
  CAF_CHECK(refused);
  CAF_CHECK(reg->rows.empty());
}

CAF_TEST(register starts a bridge and answers once it is bootstrapped) {
  start_manager();
  auto response = self->request(mgr, caf::infinite, register_atom::value,
                                std::string{"default"}, std::string{tags_x});
  // The row first, and a touch (a register is a read); then a bridge, asked
  // (twice: the manager's own watch, then the register) to say when ready.
  expect((register_atom, std::string, std::string),
         from(self).to(mgr).with(_, "default", tags_x));
  expect((upsert_atom, std::string, std::string, std::string, std::string),
         from(mgr).to(registry).with(_, "default", ref_x, tags_x,
                                     stream_path(ref_x)));
  expect((bridge_row), from(registry).to(mgr));
  expect((touch_atom, std::string, std::string),
         from(_).to(registry).with(_, "default", ref_x));
  using state_type = caf::stateful_actor<manager_state, manager_actor::base>;
  auto b = deref<state_type>(mgr).state.bridges.at({"default", ref_x}).bridge;
  CAF_REQUIRE(b);
  expect((ready_atom), from(mgr).to(b));
  expect((ready_atom), from(mgr).to(b));
  // The bridge folds its (empty) stream, reads its row (no cursor) and
  // takes an epoch, then resyncs: a new epoch and a snapshot subscription.
  expect((ensure_atom, std::string),
         from(b).to(sink).with(_, stream_path(ref_x)));
  expect((sink_stream_state), from(sink).to(b));
  expect((caf::get_atom, std::string, std::string),
         from(b).to(registry).with(_, "default", ref_x));
  expect((bridge_row), from(registry).to(b));
  expect((epoch_atom, std::string, std::string), from(b).to(registry));
  expect((int64_t), from(registry).to(b));
  expect((caf::unsubscribe_atom, bridge_actor), from(b).to(source));
  expect((epoch_atom, std::string, std::string), from(b).to(registry));
  expect((int64_t), from(registry).to(b));
  expect((caf::subscribe_atom, bridge_actor, uint64_t, std::string, std::string,
          source_cursor),
         from(b).to(source).with(_, _, _, "default", tags_x, _));
  CAF_REQUIRE_EQUAL(src->subscriptions.size(), 1u);
  CAF_CHECK_EQUAL(src->subscriptions[0].tags, tags_x);
  CAF_CHECK(src->subscriptions[0].from.empty());
  CAF_CHECK_EQUAL(reg->calls["touch"], 1);
  // The snapshot ends: the cursor is persisted and acknowledged, and both
  // waits end; the second answers the register.
  auto& s = src->subscriptions.back();
  caf::anon_send(b, up_to_date_atom::value,
                 up_to_date_msg{s.id, source_cursor{"h1", "0001"}});
  expect((up_to_date_atom, up_to_date_msg), to(b));
  expect((cursor_atom, std::string, std::string, std::string, std::string),
         from(b).to(registry).with(_, "default", ref_x, "h1", "0001"));
  expect((bool), from(registry).to(b));
  expect((ack_atom, bridge_actor, uint64_t, source_cursor), from(b).to(source));
  expect((caf::ok_atom), from(b).to(mgr));
  expect((caf::ok_atom), from(b).to(mgr));
  CAF_CHECK(!sched.has_job());
  registration answer;
  response.receive([&](registration& r) { answer = r; },
                   [](caf::error& err) { CAF_FAIL(describe(err)); });
  CAF_CHECK_EQUAL(answer.source_ref, ref_x);
  CAF_CHECK_EQUAL(answer.stream_url, "/_entities/" + ref_x);
  CAF_CHECK_EQUAL(row_of(ref_x).tags, tags_x);
}

// SEED scenario 4.
CAF_TEST(concurrent registers of one ref share one start) {
  start_manager();
  auto first = register_tags(tags_x);
  auto second = register_tags(R"({ "team" : "infra" })");
  CAF_CHECK_EQUAL(src->subscriptions.size(), 1u);
  bootstrap();
  int answered = 0;
  for (auto* r : {&first, &second})
    r->receive(
      [&](registration& x) {
        CAF_CHECK_EQUAL(x.source_ref, ref_x);
        ++answered;
      },
      [](caf::error& err) { CAF_FAIL(describe(err)); });
  CAF_CHECK_EQUAL(answered, 2);
  CAF_CHECK_EQUAL(snk->streams.size(), 1u);
}

// SEED scenario 6.
CAF_TEST(different tags get different refs and streams) {
  start_manager();
  auto a = register_tags(tags_x);
  bootstrap();
  auto b = register_tags(R"({"team":"web"})");
  bootstrap();
  std::string ref_a, ref_b;
  a.receive([&](registration& x) { ref_a = x.source_ref; },
            [](caf::error& err) { CAF_FAIL(describe(err)); });
  b.receive([&](registration& x) { ref_b = x.source_ref; },
            [](caf::error& err) { CAF_FAIL(describe(err)); });
  CAF_CHECK_NOT_EQUAL(ref_a, ref_b);
  CAF_CHECK_EQUAL(src->subscriptions.size(), 2u);
}

CAF_TEST(register times out while the bridge keeps starting) {
  start_manager();
  auto response = register_tags(tags_x);
  sched.trigger_timeout(); // the register timeout
  sched.run();
  bool timed_out = false;
  response.receive([](registration&) { CAF_FAIL("answered too early"); },
                   [&](caf::error& err) {
                     timed_out = true;
                     CAF_CHECK_EQUAL(err.code(),
                                     static_cast<uint8_t>(ec::timeout));
                   });
  CAF_CHECK(timed_out);
  // The bridge was not stopped: it finishes, and the next register answers.
  bootstrap();
  auto again = register_tags(tags_x);
  bool ok = false;
  again.receive([&](registration&) { ok = true; },
                [](caf::error& err) { CAF_FAIL(describe(err)); });
  CAF_CHECK(ok);
  CAF_CHECK_EQUAL(src->subscriptions.size(), 1u);
}

CAF_TEST(start resumes every persisted bridge from its cursor) {
  persist_row(R"({"a":"1"})");
  persist_row(R"({"b":"2"})");
  persist_row(R"({"c":"3"})", false); // no cursor yet: it bootstraps
  start_manager();
  // The source hears how many resume with a cursor: it holds its feed
  // until they subscribed.
  CAF_REQUIRE_EQUAL(src->resuming.size(), 1u);
  CAF_CHECK_EQUAL(src->resuming[0], 2u);
  CAF_REQUIRE_EQUAL(src->subscriptions.size(), 3u);
  int from_cursor = 0;
  for (auto& s : src->subscriptions) {
    if (s.tags == R"({"c":"3"})")
      CAF_CHECK(s.from.empty());
    else
      from_cursor += s.from.offset == "0007" ? 1 : 0;
  }
  CAF_CHECK_EQUAL(from_cursor, 2);
  // One registry request took an epoch for every bridge: the resumed ones
  // asked nothing more; the one without a cursor took a second for its
  // bootstrap.
  CAF_CHECK_EQUAL(reg->calls["resume"], 1);
  CAF_CHECK_EQUAL(reg->calls["get"], 0);
  CAF_CHECK_EQUAL(reg->calls["epoch"], 1);
  // A resumed bridge appends with an epoch the resume took (1 to 3: the
  // fake counts from 1), not a later one of its own.
  auto ref_a = source_ref(*parse_tags(R"({"a":"1"})"));
  for (auto& s : src->subscriptions)
    if (s.tags == R"({"a":"1"})")
      caf::anon_send(s.bridge, change_batch{s.id,
                                            source_cursor{"h1", "0008"},
                                            {upsert("e", "idle")}});
  sched.run();
  auto& producers = snk->streams[stream_path(ref_a)].producers;
  CAF_REQUIRE_EQUAL(producers.size(), 1u);
  CAF_CHECK_LESS_OR_EQUAL(producers.begin()->second.epoch, 3u);
  CAF_CHECK_EQUAL(producers.begin()->second.epoch,
                  static_cast<uint64_t>(row_of(ref_a).producer_epoch));
}

CAF_TEST(a resumed bridge that dies is no longer waited for) {
  persist_row(R"({"a":"1"})");
  persist_row(R"({"b":"2"})");
  start_manager();
  CAF_REQUIRE_EQUAL(src->subscriptions.size(), 2u);
  caf::anon_send_exit(src->subscriptions[0].bridge, caf::exit_reason::kill);
  sched.run();
  // It may never subscribe again (a stream it cannot read): one fewer.
  CAF_CHECK_EQUAL(src->resuming, (std::vector<uint64_t>{2, 1}));
  // Restarted, it is not counted again, nor is a second death.
  for (int i = 0; i < 100 && src->subscriptions.size() == 2u; ++i) {
    sched.advance_time(100ms);
    sched.run();
  }
  CAF_REQUIRE_EQUAL(src->subscriptions.size(), 3u);
  // The restart asked the registry for its cursor and a new epoch: the
  // one taken at start-up is never used twice.
  CAF_CHECK_EQUAL(reg->calls["get"], 1);
  CAF_CHECK_EQUAL(reg->calls["epoch"], 1);
  CAF_CHECK_EQUAL(src->subscriptions.back().from.offset, "0007");
  caf::anon_send_exit(src->subscriptions.back().bridge, caf::exit_reason::kill);
  sched.run();
  CAF_CHECK_EQUAL(src->resuming, (std::vector<uint64_t>{2, 1}));
}

CAF_TEST(a bridge started by a register before the resume answers keeps asking) {
  persist_row(tags_x); // cursor h1/0007
  // The resume takes epoch 1, then its answer waits at the gate.
  auto rows = std::make_shared<std::vector<bridge_row>>();
  auto gate = sys.spawn(resume_gate, rows);
  reg->hold_resume = caf::actor_cast<registry_actor>(gate);
  *rows = {row_of(ref_x)};
  rows->back().producer_epoch = 1;
  start_manager();
  register_tags(tags_x);
  CAF_REQUIRE_EQUAL(src->subscriptions.size(), 1u);
  CAF_CHECK_EQUAL(reg->calls["epoch"], 1); // its own: 2
  auto first = src->subscriptions.back();
  caf::anon_send(first.bridge, change_batch{first.id,
                                            source_cursor{"h1", "0008"},
                                            {upsert("e", "idle")}});
  sched.run();
  // It dies, and its restart waits for its backoff when the resume answers.
  caf::anon_send_exit(first.bridge, caf::exit_reason::kill);
  sched.run();
  caf::anon_send(gate, caf::ok_atom::value);
  sched.run();
  // The bridge started now took a new epoch: the resume's is older than
  // the stream's, which the store refuses (a death and a resync for nothing).
  CAF_REQUIRE_EQUAL(src->subscriptions.size(), 2u);
  CAF_CHECK_EQUAL(reg->calls["epoch"], 2);
  auto second = src->subscriptions.back();
  caf::anon_send(second.bridge, change_batch{second.id,
                                             source_cursor{"h1", "0009"},
                                             {upsert("f", "idle")}});
  sched.run();
  auto& stream = snk->streams[stream_path(ref_x)];
  CAF_CHECK_EQUAL(stream.messages.size(), 2u);
  CAF_REQUIRE_EQUAL(stream.producers.size(), 1u);
  CAF_CHECK_EQUAL(stream.producers.begin()->second.epoch, 3u);
  caf::anon_send_exit(gate, caf::exit_reason::user_shutdown);
}

CAF_TEST(a bridge that dies is restarted with growing backoff) {
  start_manager();
  auto response = register_tags(tags_x);
  bootstrap();
  response.receive([](registration&) {},
                   [](caf::error& err) { CAF_FAIL(describe(err)); });
  std::vector<long> waits;
  for (int death = 0; death < 3; ++death) {
    auto before = src->subscriptions.size();
    caf::anon_send_exit(src->subscriptions.back().bridge,
                        caf::exit_reason::kill);
    sched.run();
    CAF_CHECK_EQUAL(src->subscriptions.size(), before);
    long waited = 0;
    while (src->subscriptions.size() == before && waited < 10000) {
      sched.advance_time(10ms);
      sched.run();
      waited += 10;
    }
    waits.push_back(waited);
  }
  CAF_CHECK_EQUAL(waits, (std::vector<long>{200, 400, 800}));
  // The restarted bridge resumed from the persisted cursor.
  CAF_CHECK_EQUAL(src->subscriptions.back().from.offset, "0001");
}

CAF_TEST(a bridge that stayed live restarts after the first backoff again) {
  start_manager();
  auto response = register_tags(tags_x);
  bootstrap();
  response.receive([](registration&) {},
                   [](caf::error& err) { CAF_FAIL(describe(err)); });
  auto kill_and_wait = [&] {
    auto before = src->subscriptions.size();
    caf::anon_send_exit(src->subscriptions.back().bridge,
                        caf::exit_reason::kill);
    sched.run();
    long waited = 0;
    while (src->subscriptions.size() == before && waited < 10000) {
      sched.advance_time(10ms);
      sched.run();
      waited += 10;
    }
    return waited;
  };
  CAF_CHECK_EQUAL(kill_and_wait(), 200);
  CAF_CHECK_EQUAL(kill_and_wait(), 400);
  // The restarted bridge resumed at once and then ran for a minute: its
  // next death is a new failure.
  sched.advance_time(60s);
  sched.run();
  CAF_CHECK_EQUAL(kill_and_wait(), 200);
  CAF_CHECK_EQUAL(kill_and_wait(), 400);
}

CAF_TEST(reads touch a running view in the registry at most once a minute) {
  start_manager();
  auto response = register_tags(tags_x);
  bootstrap();
  response.receive([](registration&) {},
                   [](caf::error& err) { CAF_FAIL(describe(err)); });
  auto before = reg->calls["touch"];
  for (int i = 0; i < 5; ++i)
    caf::anon_send(mgr, touch_atom::value, std::string{"default"}, ref_x);
  sched.run();
  CAF_CHECK_EQUAL(reg->calls["touch"], before + 1);
  // The reads since are written once, at the end of the interval.
  sched.advance_time(60s);
  sched.run();
  CAF_CHECK_EQUAL(reg->calls["touch"], before + 2);
  sched.advance_time(60s);
  sched.run();
  CAF_CHECK_EQUAL(reg->calls["touch"], before + 2);
  // A read of a view this node does not run writes nothing.
  caf::anon_send(mgr, touch_atom::value, std::string{"default"},
                 std::string{"00000000deadbeef"});
  sched.run();
  CAF_CHECK_EQUAL(reg->calls["touch"], before + 2);
}

CAF_TEST(gc keeps a view whose bridge heard of a read the registry has not) {
  start_manager();
  auto response = register_tags(tags_x);
  bootstrap();
  response.receive([](registration&) {},
                   [](caf::error& err) { CAF_FAIL(describe(err)); });
  caf::anon_send(mgr, touch_atom::value, std::string{"default"}, ref_x);
  sched.run();
  caf::anon_send(mgr, touch_atom::value, std::string{"default"}, ref_x);
  sched.run(); // coalesced: not written yet
  row_of(ref_x).last_activity_ms = 0;
  caf::anon_send(mgr, sweep_atom::value);
  sched.run();
  CAF_CHECK(has_row(ref_x));
}

CAF_TEST(a register while gc stops a view brings the view back) {
  auto& st = collecting_x();
  manager_state::key k{"default", ref_x};
  // The register's upsert is answered before the bridge handles its stop.
  auto again = self->request(mgr, caf::infinite, register_atom::value,
                             std::string{"default"}, std::string{tags_x});
  expect((register_atom, std::string, std::string), from(self).to(mgr));
  expect((upsert_atom, std::string, std::string, std::string, std::string),
         from(mgr).to(registry));
  expect((bridge_row), from(registry).to(mgr));
  sched.run();
  bool answered = false;
  again.receive([&](registration& r) { answered = r.source_ref == ref_x; },
                [](caf::error& err) { CAF_FAIL(describe(err)); });
  CAF_CHECK(answered);
  CAF_CHECK(has_row(ref_x));
  CAF_REQUIRE_EQUAL(st.bridges.count(k), 1u);
  CAF_CHECK(st.bridges[k].bridge != nullptr); // running again
}

CAF_TEST(a reader that opens while gc stops a view keeps the view) {
  auto& st = collecting_x();
  manager_state::key k{"default", ref_x};
  caf::anon_send(mgr, reader_open_atom::value, std::string{"default"}, ref_x);
  expect((reader_open_atom, std::string, std::string), to(mgr));
  sched.run();
  CAF_CHECK(has_row(ref_x));
  CAF_REQUIRE_EQUAL(st.bridges.count(k), 1u);
  CAF_CHECK(st.bridges[k].bridge != nullptr);
}

CAF_TEST(gc counts no readers for views it only looked at) {
  start_manager();
  auto response = register_tags(tags_x);
  bootstrap();
  response.receive([](registration&) {},
                   [](caf::error& err) { CAF_FAIL(describe(err)); });
  reg->referenced = {ref_x}; // kept: the sweep looks, collects nothing
  row_of(ref_x).last_activity_ms = 0;
  caf::anon_send(mgr, sweep_atom::value);
  sched.run();
  persist_row(R"({"k":"other"})");
  row_of(source_ref(*parse_tags(R"({"k":"other"})"))).last_activity_ms = 0;
  reg->referenced.clear();
  caf::anon_send(mgr, sweep_atom::value);
  sched.run();
  using state_type = caf::stateful_actor<manager_state, manager_actor::base>;
  CAF_CHECK(deref<state_type>(mgr).state.readers.empty());
}

CAF_TEST(a restarted bridge recovers its members from the stream) {
  start_manager();
  register_tags(tags_x);
  auto& s = src->subscriptions.back();
  caf::anon_send(s.bridge, change_batch{s.id,
                                        source_cursor{"h1", "0001"},
                                        {upsert("a", "idle")}});
  sched.run();
  bootstrap();
  caf::anon_send_exit(src->subscriptions.back().bridge, caf::exit_reason::kill);
  sched.run();
  sched.advance_time(200ms);
  sched.run();
  auto& fresh = src->subscriptions.back();
  // a is a member again: its removal now emits a delete.
  caf::anon_send(fresh.bridge, change_batch{fresh.id,
                                            source_cursor{"h1", "0002"},
                                            {removal("a")}});
  sched.run();
  auto members = fold(snk->streams["/_entities/" + ref_x].messages);
  CAF_CHECK(members.empty());
  auto last = parse_member_event(
    snk->streams["/_entities/" + ref_x].messages.back());
  CAF_REQUIRE(last);
  CAF_CHECK(last->op == event_op::remove);
}

CAF_TEST(a sink failure kills the bridge and its restart appends the change once) {
  start_manager();
  auto response = register_tags(tags_x);
  bootstrap();
  response.receive([](registration&) {},
                   [](caf::error& err) { CAF_FAIL(describe(err)); });
  snk->fail_appends = 1;
  auto& s = src->subscriptions.back();
  caf::anon_send(s.bridge, change_batch{s.id,
                                        source_cursor{"h1", "0002"},
                                        {upsert("a", "idle")}});
  sched.run();
  CAF_CHECK(snk->streams["/_entities/" + ref_x].messages.empty());
  sched.advance_time(200ms); // the restart backoff
  sched.run();
  auto& fresh = src->subscriptions.back();
  CAF_CHECK_EQUAL(fresh.from.offset, "0001"); // resumes before the failure
  // The source replays the batch the failed append carried.
  caf::anon_send(fresh.bridge, change_batch{fresh.id,
                                            source_cursor{"h1", "0002"},
                                            {upsert("a", "idle")}});
  sched.run();
  CAF_CHECK_EQUAL(snk->streams["/_entities/" + ref_x].messages.size(), 1u);
  // Durable in the stream: the source hears of it at once; the registry
  // cursor trails by up to the cursor interval (1 s).
  CAF_REQUIRE(!src->acks.empty());
  CAF_CHECK_EQUAL(src->acks.back().offset, "0002");
  CAF_CHECK_EQUAL(row_of(ref_x).cursor_offset, "0001");
  sched.advance_time(std::chrono::seconds{1});
  sched.run();
  CAF_CHECK_EQUAL(row_of(ref_x).cursor_offset, "0002");
}

CAF_TEST(a bridge that dies with an error is restarted and recovers) {
  // An unhandled exception in a CAF actor ends it with an error reason; the
  // manager treats every reason but a deliberate stop the same way.
  start_manager();
  auto response = register_tags(tags_x);
  bootstrap();
  response.receive([](registration&) {},
                   [](caf::error& err) { CAF_FAIL(describe(err)); });
  auto before = src->subscriptions.size();
  auto victim = src->subscriptions.back().bridge;
  victim->enqueue(nullptr, caf::make_message_id(),
                  caf::make_message(
                    caf::exit_msg{victim->address(),
                                  caf::make_error(caf::sec::runtime_error,
                                                  "injected exception")}),
                  nullptr);
  sched.run();
  sched.advance_time(200ms);
  sched.run();
  CAF_REQUIRE_EQUAL(src->subscriptions.size(), before + 1);
  CAF_CHECK_EQUAL(src->subscriptions.back().from.offset, "0001");
}

// SEED scenario 5.
CAF_TEST(idle gc keeps referenced and read bridges and collects the rest) {
  start_manager();
  std::vector<std::string> refs;
  for (auto tags : {R"({"k":"referenced"})", R"({"k":"read"})",
                    R"({"k":"idle"})", R"({"k":"fresh"})"}) {
    auto r = register_tags(tags);
    bootstrap();
    r.receive([&](registration& x) { refs.push_back(x.source_ref); },
              [](caf::error& err) { CAF_FAIL(describe(err)); });
  }
  CAF_REQUIRE_EQUAL(refs.size(), 4u);
  // All idle long ago, except "fresh".
  for (auto& [k, row] : reg->rows)
    row.last_activity_ms = k.second == refs[3] ? touched_ms : 0;
  reg->referenced = {refs[0]};
  caf::anon_send(mgr, reader_open_atom::value, std::string{"default"}, refs[1]);
  caf::anon_send(mgr, sweep_atom::value);
  sched.run();
  CAF_CHECK_EQUAL(has_row(refs[0]), true);                       // referenced
  CAF_CHECK_EQUAL(row_of(refs[0]).last_activity_ms, touched_ms); // touched
  CAF_CHECK_EQUAL(has_row(refs[1]), true);                       // has a reader
  CAF_CHECK_EQUAL(has_row(refs[2]), false);                      // collected
  CAF_CHECK_EQUAL(has_row(refs[3]), true);                       // fresh
  // The reader leaves; the next sweep collects that one too.
  caf::anon_send(mgr, reader_close_atom::value, std::string{"default"},
                 refs[1]);
  caf::anon_send(mgr, sweep_atom::value);
  sched.run();
  CAF_CHECK_EQUAL(has_row(refs[1]), false);
  // Collected bridges were stopped, not restarted.
  auto status = self->request(mgr, caf::infinite, status_atom::value);
  sched.run();
  status.receive(
    [&](std::vector<std::string>& lines) { CAF_CHECK_EQUAL(lines.size(), 2u); },
    [](caf::error& err) { CAF_FAIL(describe(err)); });
}

CAF_TEST_FIXTURE_SCOPE_END()
