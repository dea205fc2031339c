#define CAF_SUITE registry_actor
#include <caf/test/dsl.hpp>

#include <cstdio>
#include <deque>
#include <map>
#include <optional>

#include "actors/gateway.hpp"
#include "actors/registry.hpp"
#include "core/error.hpp"
#include "tests/actor/fakes.hpp"

using namespace ebridge;

namespace {

/// A registry backend whose answers the test scripts: each operation pops
/// the next scripted error if there is one, else succeeds with canned data.
/// It counts the calls it gets.
class scripted_backend : public registry_backend {
public:
  std::deque<caf::error> failures;
  std::map<std::string, int> calls;

  caf::expected<bridge_row> upsert_bridge(const std::string& tenant,
                                          const std::string& ref,
                                          const std::string& tags,
                                          const std::string& url) override {
    if (auto err = next("upsert"))
      return err;
    bridge_row row;
    row.tenant_id = tenant;
    row.source_ref = ref;
    row.tags = tags;
    row.stream_url = url;
    return row;
  }
  caf::expected<bool> touch(const std::string&, const std::string&) override {
    if (auto err = next("touch"))
      return err;
    return true;
  }
  caf::expected<bridge_row> get_bridge(const std::string&,
                                       const std::string&) override {
    if (auto err = next("get"))
      return err;
    return make_error(ec::not_found, "no such bridge");
  }
  caf::expected<std::vector<bridge_row>>
  list_bridges(const std::string&) override {
    if (auto err = next("list"))
      return err;
    return std::vector<bridge_row>{};
  }
  caf::expected<std::vector<bridge_row>> list_stale(const std::string&,
                                                    int64_t) override {
    if (auto err = next("stale"))
      return err;
    return std::vector<bridge_row>{};
  }
  caf::expected<bool> delete_bridge(const std::string&,
                                    const std::string&) override {
    if (auto err = next("delete"))
      return err;
    return true;
  }
  caf::expected<bool> delete_stale_bridge(const std::string&,
                                          const std::string&,
                                          int64_t) override {
    if (auto err = next("delete_stale"))
      return err;
    return true;
  }
  caf::expected<std::vector<bridge_row>> resume_all_bridges() override {
    if (auto err = next("resume"))
      return err;
    return std::vector<bridge_row>{};
  }
  caf::expected<bool> update_cursor(const std::string&, const std::string& ref,
                                    const std::string&,
                                    const std::string& offset) override {
    if (auto err = next("cursor"))
      return err;
    log.push_back("cursor " + ref + " " + offset);
    return true;
  }
  caf::expected<std::vector<cursor_write>>
  update_cursors(std::vector<cursor_write> writes) override {
    if (auto err = next("cursors"))
      return err;
    batches.push_back(writes.size());
    for (auto& w : writes) {
      log.push_back("cursor " + w.ref + " " + w.offset);
      if (w.handle == "refused")
        w.refused = "cursor handle refused";
      w.written = w.handle != "missing" && w.refused.empty();
    }
    return writes;
  }
  caf::expected<bool> clear_cursor(const std::string&,
                                   const std::string& ref) override {
    if (auto err = next("clear"))
      return err;
    log.push_back("clear " + ref);
    return true;
  }

  /// Cursor writes and clears, in the order they ran.
  std::vector<std::string> log;
  /// The size of each cursor batch, in order.
  std::vector<size_t> batches;
  caf::expected<std::vector<std::string>>
  list_referenced(const std::string&) override {
    if (auto err = next("refs"))
      return err;
    return std::vector<std::string>{"00000000000000aa"};
  }
  caf::expected<int64_t> next_producer_epoch(const std::string&,
                                             const std::string&) override {
    if (auto err = next("epoch"))
      return err;
    return ++epoch;
  }
  caf::error ping() override {
    return next("ping");
  }

  int64_t epoch = 0;

private:
  caf::error next(const std::string& op) {
    ++calls[op];
    if (failures.empty())
      return caf::none;
    auto err = std::move(failures.front());
    failures.pop_front();
    return err;
  }
};

/// A registry (or worker) that never answers: it swallows every request.
/// With `quit_on_batch`, it ends on the first batch of cursor writes,
/// before answering it (what it has queued then is bounced).
registry_actor::behavior_type silent_registry(registry_actor::pointer self,
                                              bool quit_on_batch) {
  return {
    [](upsert_atom, std::string, std::string, std::string, std::string)
      -> caf::result<bridge_row> { return caf::delegated<bridge_row>{}; },
    [](touch_atom, std::string, std::string) -> caf::result<bool> {
      return caf::delegated<bool>{};
    },
    [](caf::get_atom, std::string, std::string) -> caf::result<bridge_row> {
      return caf::delegated<bridge_row>{};
    },
    [](list_atom, std::string) -> caf::result<std::vector<bridge_row>> {
      return caf::delegated<std::vector<bridge_row>>{};
    },
    [](stale_atom, std::string,
       int64_t) -> caf::result<std::vector<bridge_row>> {
      return caf::delegated<std::vector<bridge_row>>{};
    },
    [](caf::delete_atom, std::string, std::string) -> caf::result<bool> {
      return caf::delegated<bool>{};
    },
    [](caf::delete_atom, std::string, std::string,
       int64_t) -> caf::result<bool> { return caf::delegated<bool>{}; },
    [](resume_atom) -> caf::result<std::vector<bridge_row>> {
      return caf::delegated<std::vector<bridge_row>>{};
    },
    [](cursor_atom, std::string, std::string, std::string,
       std::string) -> caf::result<bool> { return caf::delegated<bool>{}; },
    [self, quit_on_batch](cursor_atom, std::vector<cursor_write>)
      -> caf::result<std::vector<cursor_write>> {
      if (quit_on_batch)
        self->quit(caf::exit_reason::user_shutdown);
      return caf::delegated<std::vector<cursor_write>>{};
    },
    [](clear_atom, std::string, std::string) -> caf::result<bool> {
      return caf::delegated<bool>{};
    },
    [](refs_atom, std::string) -> caf::result<std::vector<std::string>> {
      return caf::delegated<std::vector<std::string>>{};
    },
    [](epoch_atom, std::string, std::string) -> caf::result<int64_t> {
      return caf::delegated<int64_t>{};
    },
    [](caf::ping_atom) -> caf::result<caf::ok_atom> {
      return caf::delegated<caf::ok_atom>{};
    },
  };
}

struct config : caf::actor_system_config {
  config() {
    register_types(*this);
  }
};

struct fixture : test_coordinator_fixture<config> {
  fixture() {
    registry_handle = sys.spawn(
      registry, size_t{2}, [this](caf::actor_system& s) {
        auto backend = std::make_shared<scripted_backend>();
        backends.push_back(backend);
        workers.push_back(s.spawn(registry_worker, backend));
        return workers.back();
      });
    sched.run();
  }

  ~fixture() override {
    caf::anon_send_exit(registry_handle, caf::exit_reason::user_shutdown);
    for (auto& w : workers)
      caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
    sched.run();
  }

  /// Every call the backends got for `op`.
  int calls(const std::string& op) {
    int n = 0;
    for (auto& b : backends)
      n += b->calls[op];
    return n;
  }

  /// `n` source refs whose requests go to worker `slot` of the two.
  static std::vector<std::string> refs_of(size_t slot, size_t n) {
    registry_state st;
    st.workers.resize(2);
    std::vector<std::string> result;
    for (int i = 0; result.size() < n; ++i) {
      char ref[17];
      std::snprintf(ref, sizeof ref, "%016x", i);
      if (st.slot("t1", ref) == slot)
        result.emplace_back(ref);
    }
    return result;
  }

  /// Asks the registry to write a cursor; `answer` tells what it answered.
  auto cursor_to(const registry_actor& reg, const std::string& ref,
                 const std::string& offset, const std::string& handle = "h") {
    return self->request(reg, caf::infinite, cursor_atom::value,
                         std::string{"t1"}, ref, handle, offset);
  }

  auto write_cursor(const std::string& ref, const std::string& offset,
                    const std::string& handle = "h") {
    return cursor_to(registry_handle, ref, offset, handle);
  }

  /// "true", "false" or the error's message.
  template <class Handle>
  static std::string answer(Handle& response) {
    std::string result = "no answer";
    response.receive([&](bool written) { result = written ? "true" : "false"; },
                     [&](caf::error& err) { result = error_message(err); });
    return result;
  }

  readiness ask_ready(const gateway_actor& gw) {
    return test::ask_ready(sched, gw);
  }

  registry_actor registry_handle;
  std::vector<std::shared_ptr<scripted_backend>> backends;
  std::vector<registry_actor> workers;
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(registry_actor_tests, fixture)

CAF_TEST(registry answers upsert with the worker row) {
  CAF_REQUIRE_EQUAL(workers.size(), 2u);
  auto response = self->request(registry_handle, caf::infinite,
                                upsert_atom::value, "t1", "52df825db9cb78ff",
                                "{}", "/_entities/52df825db9cb78ff");
  sched.run();
  bridge_row row;
  response.receive([&](bridge_row& x) { row = std::move(x); },
                   [](caf::error& err) { CAF_FAIL(describe(err)); });
  CAF_CHECK_EQUAL(row.tenant_id, "t1");
  CAF_CHECK_EQUAL(row.source_ref, "52df825db9cb78ff");
  CAF_CHECK_EQUAL(row.stream_url, "/_entities/52df825db9cb78ff");
  CAF_CHECK_EQUAL(calls("upsert"), 1);
}

CAF_TEST(requests about one bridge always go to the same worker) {
  for (int i = 0; i < 4; ++i) {
    self->send(registry_handle, touch_atom::value, "t1", "00000000000000aa");
    sched.run();
  }
  auto a = backends[0]->calls["touch"];
  auto b = backends[1]->calls["touch"];
  CAF_CHECK_EQUAL(a + b, 4);
  CAF_CHECK(a == 0 || b == 0);
}

CAF_TEST(requests about many bridges take turns over the workers) {
  for (int i = 0; i < 4; ++i) {
    self->send(registry_handle, list_atom::value, "t1");
    sched.run();
  }
  CAF_CHECK_EQUAL(backends[0]->calls["list"], 2);
  CAF_CHECK_EQUAL(backends[1]->calls["list"], 2);
}

CAF_TEST(registry passes a worker error to the requester) {
  for (auto& b : backends)
    b->failures.push_back(
      make_error(ec::database_unavailable, "connection refused"));
  auto response = self->request(registry_handle, caf::infinite,
                                epoch_atom::value, "t1", "00000000000000aa");
  sched.run();
  bool got_error = false;
  response.receive([](int64_t) { CAF_FAIL("expected an error"); },
                   [&](caf::error& err) {
                     got_error = true;
                     CAF_CHECK_EQUAL(err.code(), static_cast<uint8_t>(
                                                   ec::database_unavailable));
                     CAF_CHECK_EQUAL(error_message(err), "connection refused");
                   });
  CAF_CHECK(got_error);
  // The same bridge's next request reaches the same worker, which now
  // succeeds: the error left the registry intact.
  auto again = self->request(registry_handle, caf::infinite, epoch_atom::value,
                             "t1", "00000000000000aa");
  sched.run();
  int64_t epoch = 0;
  again.receive([&](int64_t x) { epoch = x; },
                [](caf::error& err) {
                  CAF_FAIL("unexpected " << describe(err));
                });
  CAF_CHECK_EQUAL(epoch, 1);
}

CAF_TEST(cursor writes that wait for their worker go in one statement) {
  auto refs = refs_of(0, 10);
  std::vector<decltype(write_cursor("", ""))> responses;
  for (size_t i = 0; i < refs.size(); ++i)
    responses.push_back(
      write_cursor(refs[i], "0000000001", i == 3 ? "missing" : "h"));
  sched.run();
  // The first finds the worker idle and goes alone; the other nine wait for
  // it and then go together.
  CAF_CHECK_EQUAL(backends[0]->batches, (std::vector<size_t>{1, 9}));
  CAF_CHECK(backends[1]->batches.empty());
  CAF_CHECK_EQUAL(calls("cursor"), 0);
  for (size_t i = 0; i < refs.size(); ++i)
    CAF_CHECK_EQUAL(answer(responses[i]), i == 3 ? "false" : "true");
  auto later = write_cursor(refs[0], "0000000002");
  sched.run();
  CAF_CHECK_EQUAL(answer(later), "true");
  CAF_CHECK_EQUAL(backends[0]->batches, (std::vector<size_t>{1, 9, 1}));
}

CAF_TEST(the cursor writes and the clear of one bridge run in the order sent) {
  auto ref = refs_of(1, 1).front();
  auto first = write_cursor(ref, "0000000001");  // the worker is idle: now
  auto second = write_cursor(ref, "0000000002"); // waits for the first
  auto third = write_cursor(ref, "0000000003");  // the same bridge: later
  auto clear = self->request(registry_handle, caf::infinite, clear_atom::value,
                             std::string{"t1"}, ref);
  expect((cursor_atom, std::string, std::string, std::string, std::string),
         from(self).to(registry_handle).with(_, "t1", ref, "h", "0000000001"));
  expect((cursor_atom, std::string, std::string, std::string, std::string),
         from(self).to(registry_handle).with(_, "t1", ref, "h", "0000000002"));
  expect((cursor_atom, std::string, std::string, std::string, std::string),
         from(self).to(registry_handle).with(_, "t1", ref, "h", "0000000003"));
  expect((clear_atom, std::string, std::string),
         from(self).to(registry_handle).with(_, "t1", ref));
  // The bridge's worker gets each write in a statement of its own, in
  // order, and then the clear (passed on: the worker answers the sender).
  auto& worker = workers[1];
  using batch = std::vector<cursor_write>;
  expect((cursor_atom, batch), from(registry_handle).to(worker));
  expect((cursor_atom, batch), from(registry_handle).to(worker));
  expect((cursor_atom, batch), from(registry_handle).to(worker));
  expect((clear_atom, std::string, std::string),
         from(self).to(worker).with(_, "t1", ref));
  sched.run();
  CAF_CHECK_EQUAL(answer(first), "true");
  CAF_CHECK_EQUAL(answer(second), "true");
  CAF_CHECK_EQUAL(answer(third), "true");
  CAF_CHECK_EQUAL(answer(clear), "true");
  CAF_CHECK_EQUAL(backends[1]->log,
                  (std::vector<std::string>{"cursor " + ref + " 0000000001",
                                            "cursor " + ref + " 0000000002",
                                            "cursor " + ref + " 0000000003",
                                            "clear " + ref}));
  CAF_CHECK_EQUAL(backends[1]->batches, (std::vector<size_t>{1, 1, 1}));
}

CAF_TEST(a failed cursor batch answers each of its writes with the error) {
  auto refs = refs_of(0, 4);
  backends[0]->failures.push_back(caf::none);
  backends[0]->failures.push_back(
    make_error(ec::database_unavailable, "connection refused"));
  std::vector<decltype(write_cursor("", ""))> responses;
  for (size_t i = 0; i < 3; ++i)
    responses.push_back(write_cursor(refs[i], "0000000001"));
  sched.run();
  CAF_CHECK_EQUAL(answer(responses[0]), "true");
  CAF_CHECK_EQUAL(answer(responses[1]), "connection refused");
  CAF_CHECK_EQUAL(answer(responses[2]), "connection refused");
  // The worker's queue is not left waiting for the failed batch.
  auto next = write_cursor(refs[3], "0000000001");
  sched.run();
  CAF_CHECK_EQUAL(answer(next), "true");
}

CAF_TEST(cursor writes waiting for a worker that dies go to its successor) {
  // A pool of one whose first worker never answers.
  std::vector<std::shared_ptr<scripted_backend>> later;
  auto reg = sys.spawn(registry, size_t{1}, [&](caf::actor_system& s) {
    if (later.empty()) {
      workers.push_back(s.spawn(silent_registry, false));
      later.push_back(nullptr);
      return workers.back();
    }
    later.push_back(std::make_shared<scripted_backend>());
    workers.push_back(s.spawn(registry_worker, later.back()));
    return workers.back();
  });
  sched.run();
  auto ref = refs_of(0, 1).front();
  auto first = cursor_to(reg, ref, "0000000001");
  auto second = cursor_to(reg, ref, "0000000002");
  sched.run();
  caf::anon_send_exit(workers.back(), caf::exit_reason::kill);
  sched.run();
  // The second went to the new worker at once, not after the first's
  // batch timed out.
  CAF_REQUIRE_EQUAL(later.size(), 2u);
  CAF_REQUIRE_EQUAL(later[1]->batches, (std::vector<size_t>{1}));
  CAF_CHECK_EQUAL(answer(second), "true");
  // The first, lost with its worker, times out; the lane stays usable.
  sched.trigger_timeouts();
  sched.run();
  CAF_CHECK_EQUAL(answer(first), "request_timeout");
  auto third = cursor_to(reg, ref, "0000000003");
  sched.run();
  CAF_CHECK_EQUAL(answer(third), "true");
  CAF_CHECK_EQUAL(later[1]->batches, (std::vector<size_t>{1, 1}));
  caf::anon_send_exit(reg, caf::exit_reason::user_shutdown);
}

CAF_TEST(cursor writes bounced by a worker that died go to its successor) {
  // The first worker ends on the first batch, bouncing the second one.
  std::vector<std::shared_ptr<scripted_backend>> made;
  auto reg = sys.spawn(registry, size_t{1}, [&](caf::actor_system& s) {
    made.push_back(made.empty() ? nullptr
                                : std::make_shared<scripted_backend>());
    if (made.back())
      workers.push_back(s.spawn(registry_worker, made.back()));
    else
      workers.push_back(s.spawn(silent_registry, true));
    return workers.back();
  });
  sched.run();
  auto x = cursor_to(reg, "0000000000000001", "0000000001"); // goes alone
  auto y = cursor_to(reg, "0000000000000002", "0000000001"); // waits
  // A request about y sends y's write first: both batches reach the worker.
  auto touched = self->request(reg, caf::infinite, touch_atom::value,
                               std::string{"t1"},
                               std::string{"0000000000000002"});
  sched.run();
  CAF_REQUIRE_EQUAL(made.size(), 2u);
  CAF_REQUIRE_EQUAL(made[1]->batches, (std::vector<size_t>{1}));
  CAF_CHECK_EQUAL(made[1]->log, (std::vector<std::string>{
                                  "cursor 0000000000000002 0000000001"}));
  CAF_CHECK_EQUAL(answer(y), "true");
  CAF_CHECK_EQUAL(answer(touched), "request_receiver_down"); // bounced too
  sched.trigger_timeouts();
  sched.run();
  CAF_CHECK_EQUAL(answer(x), "request_timeout");
  caf::anon_send_exit(reg, caf::exit_reason::user_shutdown);
}

CAF_TEST(a registry that ends answers the cursor writes it holds) {
  auto reg = sys.spawn(registry, size_t{1}, [&](caf::actor_system& s) {
    workers.push_back(s.spawn(silent_registry, false));
    return workers.back();
  });
  sched.run();
  auto sent = cursor_to(reg, "0000000000000001", "0000000001");
  auto queued = cursor_to(reg, "0000000000000002", "0000000001");
  sched.run();
  caf::anon_send_exit(reg, caf::exit_reason::user_shutdown);
  sched.run();
  CAF_CHECK_EQUAL(answer(sent),
                  "registry: it ended before the cursor was written");
  CAF_CHECK_EQUAL(answer(queued),
                  "registry: it ended before the cursor was written");
}

CAF_TEST(a batch of cursor writes sent to the registry joins each lane) {
  auto a = refs_of(0, 2);
  auto b = refs_of(1, 1);
  auto busy = write_cursor(a[0], "0000000001"); // lane 0 busy: a[1] waits
  std::vector<cursor_write> writes{
    {"t1", a[1], "h", "0000000002", false, {}},
    {"t1", b[0], "missing", "0000000001", false, {}},
    {"t1", b[0], "refused", "0000000002", false, {}},
  };
  auto response = self->request(registry_handle, caf::infinite,
                                cursor_atom::value, writes);
  sched.run();
  CAF_CHECK_EQUAL(answer(busy), "true");
  std::vector<cursor_write> done;
  response.receive([&](std::vector<cursor_write>& x) { done = std::move(x); },
                   [](caf::error& err) { CAF_FAIL(describe(err)); });
  CAF_REQUIRE_EQUAL(done.size(), 3u);
  CAF_CHECK(done[0].written && done[0].refused.empty());
  CAF_CHECK(!done[1].written && done[1].refused.empty());
  CAF_CHECK(!done[2].written);
  CAF_CHECK_EQUAL(done[2].refused, "cursor handle refused");
  // Lane 0: the busy write alone, then a[1]; lane 1: b[0] twice, in order,
  // in separate statements.
  CAF_CHECK_EQUAL(backends[0]->batches, (std::vector<size_t>{1, 1}));
  CAF_CHECK_EQUAL(backends[1]->batches, (std::vector<size_t>{1, 1}));
  CAF_CHECK_EQUAL(backends[1]->log,
                  (std::vector<std::string>{"cursor " + b[0] + " 0000000001",
                                            "cursor " + b[0] + " 0000000002"}));
  auto refused = write_cursor(b[0], "0000000003", "refused");
  sched.run();
  CAF_CHECK_EQUAL(answer(refused), "cursor handle refused");
}

CAF_TEST(registry replaces a worker that dies) {
  caf::anon_send_exit(workers[0], caf::exit_reason::kill);
  sched.run();
  CAF_REQUIRE_EQUAL(workers.size(), 3u);
  // Both slots of the pool answer again: the dead worker is never asked.
  for (int i = 0; i < 2; ++i) {
    auto response = self->request(registry_handle, caf::infinite,
                                  caf::ping_atom::value);
    sched.run();
    bool ok = false;
    response.receive([&](caf::ok_atom) { ok = true; },
                     [](caf::error& err) {
                       CAF_FAIL("unexpected " << describe(err));
                     });
    CAF_CHECK(ok);
  }
  CAF_CHECK_EQUAL(backends[0]->calls["ping"], 0);
  CAF_CHECK_EQUAL(backends[1]->calls["ping"], 1);
  CAF_CHECK_EQUAL(backends[2]->calls["ping"], 1);
}

CAF_TEST(gateway reports ready when the registry answers) {
  auto gw = sys.spawn(gateway, node_actors{registry_handle, {}, {}, {}},
                      std::chrono::milliseconds{100});
  CAF_CHECK(ask_ready(gw).ready);
  caf::anon_send_exit(gw, caf::exit_reason::user_shutdown);
}

CAF_TEST(gateway reports not ready while the node actors restart) {
  auto gw = sys.spawn(gateway, node_actors{registry_handle, {}, {}, {}},
                      std::chrono::milliseconds{100});
  CAF_CHECK(ask_ready(gw).ready);
  // The supervisor says the actors are down, and why.
  std::string why = "the sink actor stopped (kill); restarting the node's "
                    "actors";
  caf::anon_send(gw, rebind_atom::value, node_actors{}, why);
  auto seen = ask_ready(gw);
  CAF_CHECK(!seen.ready);
  CAF_CHECK_EQUAL(seen.reason, why);
  // A register meanwhile is refused as retryable, not lost in a dead actor.
  auto reg = test::register_through(sched, gw, "t1", "{}");
  CAF_REQUIRE(reg);
  CAF_REQUIRE(!*reg);
  CAF_CHECK(reg->error() == make_error(ec::restarting, why));
  // Running again: ready again (the answer before is not reused).
  caf::anon_send(gw, rebind_atom::value,
                 node_actors{registry_handle, {}, {}, {}}, std::string{});
  CAF_CHECK(ask_ready(gw).ready);
  caf::anon_send_exit(gw, caf::exit_reason::user_shutdown);
}

CAF_TEST(gateway readiness in flight when the actors go down is not ready) {
  auto gw = sys.spawn(gateway, node_actors{registry_handle, {}, {}, {}},
                      std::chrono::milliseconds{100});
  std::optional<readiness> seen;
  caf::anon_send(gw, ready_atom::value,
                 readiness_callback{[&](readiness r) { seen = r; }});
  // The supervisor's word comes while the registry's ping is on its way.
  caf::anon_send(gw, rebind_atom::value, node_actors{},
                 std::string{"the sink actor stopped"});
  sched.run();
  CAF_REQUIRE(seen);
  CAF_CHECK(!seen->ready);
  CAF_CHECK_EQUAL(seen->reason, "the sink actor stopped");
  caf::anon_send_exit(gw, caf::exit_reason::user_shutdown);
}

CAF_TEST(gateway reports not ready while the change feed is stalled) {
  auto rec = std::make_shared<test::source_record>();
  rec->expected = {"status"};
  rec->stalled = "the change feed is stalled at a change it cannot apply";
  auto src = sys.spawn(test::fake_source, rec);
  auto gw = sys.spawn(gateway, node_actors{registry_handle, {}, src, {}},
                      std::chrono::milliseconds{100});
  auto seen = ask_ready(gw);
  CAF_CHECK(!seen.ready);
  CAF_CHECK_EQUAL(seen.reason, rec->stalled);
  caf::anon_send_exit(gw, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(src, caf::exit_reason::user_shutdown);
}

CAF_TEST(gateway reports the database error when the registry fails) {
  auto gw = sys.spawn(gateway, node_actors{registry_handle, {}, {}, {}},
                      std::chrono::milliseconds{100});
  for (auto& b : backends)
    b->failures.push_back(make_error(ec::database_unavailable, "refused"));
  auto seen = ask_ready(gw);
  CAF_CHECK(!seen.ready);
  CAF_CHECK_EQUAL(seen.reason, "postgres: refused");
  caf::anon_send_exit(gw, caf::exit_reason::user_shutdown);
}

CAF_TEST(gateway reports a timeout when the registry does not answer) {
  // A registry that never answers: a plain actor that swallows the request.
  auto silent = sys.spawn(silent_registry, false);
  auto gw = sys.spawn(gateway, node_actors{silent, {}, {}, {}},
                      std::chrono::milliseconds{100});
  std::optional<readiness> seen;
  caf::anon_send(gw, ready_atom::value,
                 readiness_callback{[&](readiness r) { seen = r; }});
  sched.run();
  CAF_CHECK(!seen);
  sched.trigger_timeout();
  sched.run();
  CAF_REQUIRE(seen);
  CAF_CHECK(!seen->ready);
  CAF_CHECK_EQUAL(seen->reason, "postgres: request_timeout");
  caf::anon_send_exit(gw, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(silent, caf::exit_reason::user_shutdown);
}

CAF_TEST(gateway answers many readiness probes with one database check) {
  auto gw = sys.spawn(gateway, node_actors{registry_handle, {}, {}, {}},
                      std::chrono::milliseconds{100});
  int answered = 0;
  for (int i = 0; i < 5; ++i)
    caf::anon_send(gw, ready_atom::value, readiness_callback{[&](readiness r) {
                     CAF_CHECK(r.ready);
                     ++answered;
                   }});
  sched.run();
  CAF_CHECK_EQUAL(answered, 5);
  CAF_CHECK_EQUAL(calls("ping"), 1);
  // Within a second the answer is reused; after it, checked again.
  caf::anon_send(gw, ready_atom::value,
                 readiness_callback{[&](readiness) { ++answered; }});
  sched.run();
  CAF_CHECK_EQUAL(calls("ping"), 1);
  sched.advance_time(std::chrono::seconds{2});
  caf::anon_send(gw, ready_atom::value,
                 readiness_callback{[&](readiness) { ++answered; }});
  sched.run();
  CAF_CHECK_EQUAL(calls("ping"), 2);
  CAF_CHECK_EQUAL(answered, 7);
  caf::anon_send_exit(gw, caf::exit_reason::user_shutdown);
}

CAF_TEST_FIXTURE_SCOPE_END()
