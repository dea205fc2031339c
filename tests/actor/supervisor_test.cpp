#define CAF_SUITE supervisor
#include <caf/test/dsl.hpp>

#include "actors/gateway.hpp"
#include "actors/manager.hpp"
#include "actors/supervisor.hpp"
#include "core/error.hpp"
#include "tests/actor/fakes.hpp"

// The node's supervisor: when one of its actors ends, the others are
// stopped, and once all ended a fresh set starts after a backoff; the
// gateway reports the node not ready meanwhile, and registers are answered
// as retryable.

using namespace ebridge;
using namespace ebridge::test;
using namespace std::chrono_literals;

namespace {

struct fixture : test_coordinator_fixture<actor_test_config> {
  /// One started set: the fakes' records, and the handles.
  struct generation {
    std::shared_ptr<source_record> src = std::make_shared<source_record>();
    std::shared_ptr<sink_record> snk = std::make_shared<sink_record>();
    std::shared_ptr<registry_record> reg = std::make_shared<registry_record>();
    node_actors actors;
  };

  fixture() {
    gw = sys.spawn(gateway, node_actors{}, std::chrono::milliseconds{100});
    supervisor_config cfg;
    cfg.gateway = gw;
    cfg.restart_initial = 500ms;
    cfg.restart_max = 4s;
    cfg.stable_after = 60s;
    cfg.start = [this](caf::actor_system& s) {
      auto g = std::make_shared<generation>();
      // Readiness pings the registry and asks the source.
      g->reg->expected.insert("ping");
      g->src->expected.insert("status");
      g->actors.registry = s.spawn(fake_registry, g->reg);
      g->actors.sink = s.spawn(fake_sink, g->snk);
      g->actors.source = s.spawn(fake_source, g->src);
      manager_config mc;
      mc.source = g->actors.source;
      mc.sink = g->actors.sink;
      mc.registry = g->actors.registry;
      g->actors.manager = s.spawn(manager, mc);
      started.push_back(g);
      return g->actors;
    };
    sup = sys.spawn(supervisor, std::move(cfg));
    sched.run();
  }

  ~fixture() override {
    caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(gw, caf::exit_reason::user_shutdown);
    sched.run();
  }

  readiness ask_ready() {
    return test::ask_ready(sched, gw);
  }

  std::string status() {
    std::string why = "no answer";
    auto response = self->request(sup, caf::infinite, status_atom::value);
    sched.run();
    response.receive([&](std::string& s) { why = std::move(s); },
                     [&](caf::error& err) { why = describe(err); });
    return why;
  }

  /// Whether every actor of generation `g` ended.
  bool all_ended(const generation& g) {
    auto ended = [](const auto& handle) {
      auto ptr = caf::actor_cast<caf::strong_actor_ptr>(handle);
      return ptr == nullptr
             || ptr->get()->getf(caf::abstract_actor::is_terminated_flag);
    };
    return ended(g.actors.registry) && ended(g.actors.sink)
           && ended(g.actors.source) && ended(g.actors.manager);
  }

  gateway_actor gw;
  supervisor_actor sup;
  std::vector<std::shared_ptr<generation>> started;
};

/// A manager stand-in that counts the reads it is told of.
manager_actor::behavior_type counting_manager(std::shared_ptr<int> open) {
  return {
    [](register_atom, std::string&, std::string&) -> registration {
      return {};
    },
    [](touch_atom, std::string&, std::string&) {},
    [open](reader_open_atom, std::string&, std::string&) { ++*open; },
    [open](reader_close_atom, std::string&, std::string&) { --*open; },
    [](sweep_atom) {},
    [](retry_atom, std::string&, std::string&) {},
    [](status_atom) { return std::vector<std::string>{}; },
  };
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(supervisor_tests, fixture)

CAF_TEST(a restarted manager is told the reads that are open) {
  auto g = sys.spawn(gateway, node_actors{}, std::chrono::milliseconds{100});
  auto first = std::make_shared<int>(0);
  auto m1 = sys.spawn(counting_manager, first);
  caf::anon_send(g, rebind_atom::value, node_actors{{}, {}, {}, m1},
                 std::string{});
  for (int i = 0; i < 3; ++i)
    caf::anon_send(g, reader_open_atom::value, std::string{"t1"},
                   std::string{"r1"});
  caf::anon_send(g, reader_close_atom::value, std::string{"t1"},
                 std::string{"r1"});
  sched.run();
  CAF_CHECK_EQUAL(*first, 2);
  // Down, then a new manager: it hears of the two reads still open.
  caf::anon_send(g, rebind_atom::value, node_actors{}, std::string{"down"});
  caf::anon_send(g, reader_close_atom::value, std::string{"t1"},
                 std::string{"r1"});
  auto second = std::make_shared<int>(0);
  auto m2 = sys.spawn(counting_manager, second);
  caf::anon_send(g, rebind_atom::value, node_actors{{}, {}, {}, m2},
                 std::string{});
  sched.run();
  CAF_CHECK_EQUAL(*second, 1);
  for (auto& a :
       {caf::actor_cast<caf::actor>(g), caf::actor_cast<caf::actor>(m1),
        caf::actor_cast<caf::actor>(m2)})
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

CAF_TEST(the node actors start once and the gateway knows them) {
  CAF_REQUIRE_EQUAL(started.size(), 1u);
  CAF_CHECK_EQUAL(status(), "");
  CAF_CHECK(ask_ready().ready);
}

CAF_TEST(one actor that dies restarts all of them after a backoff) {
  auto first = started.front();
  caf::anon_send_exit(first->actors.sink, caf::exit_reason::kill);
  sched.run();
  // The others were stopped; nothing started yet: the backoff runs.
  CAF_CHECK(all_ended(*first));
  CAF_CHECK_EQUAL(started.size(), 1u);
  auto why = status();
  CAF_CHECK_EQUAL(why.rfind("the sink actor stopped (", 0), 0u);
  auto seen = ask_ready();
  CAF_CHECK(!seen.ready);
  CAF_CHECK_EQUAL(seen.reason, why);
  auto reg = register_through(sched, gw, "t1", R"({"team":"infra"})");
  CAF_REQUIRE(reg && !*reg);
  CAF_CHECK_EQUAL(static_cast<ec>(reg->error().code()), ec::restarting);
  // After the backoff a fresh set runs, and the node is ready again.
  sched.trigger_timeouts();
  sched.run();
  CAF_REQUIRE_EQUAL(started.size(), 2u);
  CAF_CHECK(!all_ended(*started.back()));
  CAF_CHECK_EQUAL(status(), "");
  CAF_CHECK(ask_ready().ready);
}

CAF_TEST(deaths in a row back off longer each time up to the cap) {
  // 500 ms, 1 s, 2 s, 4 s, 4 s: each restart waits for its delay.
  std::vector<std::chrono::milliseconds> delays{500ms, 1s, 2s, 4s, 4s};
  for (auto delay : delays) {
    auto count = started.size();
    caf::anon_send_exit(started.back()->actors.manager, caf::exit_reason::kill);
    sched.run();
    CAF_CHECK(all_ended(*started.back()));
    sched.advance_time(delay - 1ms);
    sched.run();
    CAF_CHECK_EQUAL(started.size(), count);
    sched.advance_time(1ms);
    sched.run();
    CAF_CHECK_EQUAL(started.size(), count + 1);
  }
  // Stable for a minute: the next death is a new failure, 500 ms again.
  sched.advance_time(61s);
  sched.run();
  auto count = started.size();
  caf::anon_send_exit(started.back()->actors.registry, caf::exit_reason::kill);
  sched.run();
  sched.advance_time(500ms);
  sched.run();
  CAF_CHECK_EQUAL(started.size(), count + 1);
}

CAF_TEST(a manager that dies takes its bridges with it) {
  // A view registered through the gateway runs a bridge under the manager.
  auto g = started.front();
  register_through(sched, gw, "t1", R"({"team":"infra"})");
  CAF_REQUIRE(g->src->subscriptions.size() == 1u);
  auto bridge = g->src->subscriptions.back().bridge;
  caf::anon_send_exit(g->actors.manager, caf::exit_reason::kill);
  sched.run();
  auto ptr = caf::actor_cast<caf::strong_actor_ptr>(bridge);
  CAF_CHECK(ptr == nullptr
            || ptr->get()->getf(caf::abstract_actor::is_terminated_flag));
}

CAF_TEST(the supervisor exit stops every actor and ends after them) {
  auto g = started.front();
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  sched.run();
  CAF_CHECK(all_ended(*g));
  CAF_CHECK_EQUAL(started.size(), 1u);
  sched.trigger_timeouts();
  sched.run();
  CAF_CHECK_EQUAL(started.size(), 1u);
}

CAF_TEST_FIXTURE_SCOPE_END()
