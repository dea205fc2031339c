#define CAF_SUITE manager_pg
#include <caf/test/unit_test.hpp>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/gateway.hpp"
#include "actors/manager.hpp"
#include "actors/registry.hpp"
#include "actors/sink.hpp"
#include "actors/supervisor.hpp"
#include "core/tags.hpp"
#include "storage/database.hpp"
#include "storage/migrations.hpp"
#include "storage/registry_store.hpp"
#include "storage/stream_store.hpp"
#include "tests/integration/pg_fixture.hpp"
#include "tests/test_util.hpp"

// The manager with the real registry (Postgres) and the real stream store.
// The change source is scripted here (the replication reader is another
// component); everything it feeds goes through real actors, SQL and disk.

using namespace ebridge;
using namespace std::chrono_literals;

namespace {

/// A change source driven by the test thread: it records subscriptions and
/// hands them to the test.
struct scripted_source {
  std::mutex mtx;
  std::condition_variable cv;
  struct sub {
    bridge_actor bridge;
    uint64_t id;
    source_cursor from;
  };
  std::vector<sub> subs;

  sub wait_for(size_t count) {
    std::unique_lock<std::mutex> guard{mtx};
    if (!cv.wait_for(guard, 10s, [&] { return subs.size() >= count; }))
      CAF_FAIL("no subscription " << count << " within 10 s");
    return subs[count - 1];
  }
};

source_actor::behavior_type
source_behavior(std::shared_ptr<scripted_source> s) {
  return {
    [s](caf::subscribe_atom, bridge_actor& b, uint64_t id, std::string&,
        std::string&, source_cursor& from) {
      std::lock_guard<std::mutex> guard{s->mtx};
      s->subs.push_back({b, id, from});
      s->cv.notify_all();
    },
    [](caf::unsubscribe_atom, bridge_actor&) {},
    [](ack_atom, bridge_actor&, uint64_t, source_cursor&) {},
    [](resuming_atom, uint64_t) {},
    [](replicated_txn&) {},
    [](feed_event&) {},
    [](caf::tick_atom) {},
    [](status_atom) { return std::string{}; },
  };
}

struct config : caf::actor_system_config {
  config() {
    register_types(*this);
    set("scheduler.max-threads", 2);
  }
};

member_row row(const std::string& url, const std::string& status) {
  entity_columns c;
  c.url = url;
  c.type = "agent";
  c.status = status;
  c.tags = R"({"team":"infra"})";
  c.created_at = "1";
  c.updated_at = "2";
  return *make_member_row(c);
}

/// The scripted feed's transactions for subscription `id`: 0001 inserts /a
/// and /b, 0002 moves /a to running and deletes /b, 0003 inserts /c.
change_batch txn(uint64_t id, const std::string& at) {
  if (at == "0001")
    return change_batch{id,
                        {"h1", at},
                        {{change_op::insert, "/a", row("/a", "idle")},
                         {change_op::insert, "/b", row("/b", "idle")}}};
  if (at == "0002")
    return change_batch{id,
                        {"h1", at},
                        {{change_op::update, "/a", row("/a", "running")},
                         {change_op::remove, "/b", std::nullopt}}};
  return change_batch{id,
                      {"h1", at},
                      {{change_op::insert, "/c", row("/c", "idle")}}};
}

struct fixture {
  fixture() {
    pg_connection conn{db.url()};
    if (auto applied = migrate(conn); !applied)
      CAF_FAIL("migrate: " << describe(applied.error()));
    char tmpl[] = "/tmp/ebridge-manager-test.XXXXXX";
    dir = ::mkdtemp(tmpl);
    stream_store::config cfg;
    cfg.directory = dir;
    store = EB_OK(stream_store::open(cfg));
  }

  ~fixture() {
    store.reset();
    if (std::system(("rm -rf '" + dir + "'").c_str()) != 0)
      CAF_MESSAGE("could not remove " << dir);
  }

  /// Polls until `pred` holds (10 s at most).
  template <class Pred>
  bool eventually(Pred pred) {
    for (int i = 0; i < 200; ++i) {
      if (pred())
        return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  std::vector<std::string> stream_messages(const std::string& name) {
    std::vector<std::string> result;
    uint64_t offset = 0;
    for (;;) {
      auto r = store->read(name, offset);
      if (r.status != store_status::ok)
        return result;
      result.insert(result.end(), r.chunks.begin(), r.chunks.end());
      offset = r.next_offset;
      if (r.up_to_date)
        return result;
    }
  }

  test::scratch_database db;
  std::string dir;
  std::unique_ptr<stream_store> store;
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(manager_pg_tests, fixture)

CAF_TEST(views survive a node restart exactly once with the real registry and store) {
  auto tags = *parse_tags(R"({"team":"infra"})");
  auto ref = source_ref(tags);
  auto stream = stream_path(ref);
  registry_store direct{db.url()};
  for (int life = 0; life < 2; ++life) {
    config cfg;
    caf::actor_system sys{cfg};
    auto src = std::make_shared<scripted_source>();
    auto source = sys.spawn(source_behavior, src);
    auto registry = sys.spawn(::ebridge::registry, size_t{2},
                              postgres_registry_workers(db.url()));
    auto sink_handle = sys.spawn(sink, store.get());
    manager_config mcfg;
    mcfg.source = source;
    mcfg.sink = sink_handle;
    mcfg.registry = registry;
    auto mgr = sys.spawn(manager, mcfg);
    {
      caf::scoped_actor self{sys};
      if (life == 0) {
        // First life: register, bootstrap from a snapshot, one live change.
        auto answer = self->request(mgr, 20s, register_atom::value,
                                    std::string{"default"}, to_json(tags));
        auto s = src->wait_for(1);
        CAF_CHECK(s.from.empty());
        caf::anon_send(s.bridge, txn(s.id, "0001"));
        caf::anon_send(s.bridge, up_to_date_atom::value,
                       up_to_date_msg{s.id, {"h1", "0001"}});
        answer.receive(
          [&](registration& r) {
            CAF_CHECK_EQUAL(r.source_ref, ref);
            CAF_CHECK_EQUAL(r.stream_url, stream);
          },
          [](caf::error& err) { CAF_FAIL(describe(err)); });
        caf::anon_send(s.bridge, txn(s.id, "0002"));
        CAF_CHECK(eventually([&] {
          auto r = direct.get_bridge("default", ref);
          return r && r->cursor_offset == "0002";
        }));
      } else {
        // Second life: the node resumes from the cursor, the source replays
        // 0002 (as after a crash) and a new change follows.
        auto s = src->wait_for(1);
        CAF_CHECK_EQUAL(s.from.handle, "h1");
        CAF_CHECK_EQUAL(s.from.offset, "0002");
        caf::anon_send(s.bridge, txn(s.id, "0002"));
        caf::anon_send(s.bridge, txn(s.id, "0003"));
        CAF_CHECK(eventually([&] {
          auto r = direct.get_bridge("default", ref);
          return r && r->cursor_offset == "0003";
        }));
      }
    }
    caf::anon_send_exit(mgr, caf::exit_reason::user_shutdown);
    for (const auto& h : {caf::actor_cast<caf::actor>(source),
                          caf::actor_cast<caf::actor>(registry),
                          caf::actor_cast<caf::actor>(sink_handle)})
      caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
    sys.await_all_actors_done();
  }
  std::vector<std::string> ops;
  membership folded;
  for (auto& text : stream_messages(stream)) {
    auto ev = parse_member_event(text);
    CAF_REQUIRE(ev);
    ops.push_back(std::string{to_string(ev->op)} + " " + ev->key);
    folded.fold(*ev);
  }
  CAF_CHECK_EQUAL(ops, (std::vector<std::string>{"insert /a", "insert /b",
                                                 "update /a", "delete /b",
                                                 "insert /c"}));
  CAF_CHECK_EQUAL(folded.size(), 2u);
  auto row_after = EB_OK(direct.get_bridge("default", ref));
  CAF_CHECK_GREATER_OR_EQUAL(row_after.producer_epoch, 2);
}

CAF_TEST(a view survives a supervised restart exactly once from its cursor) {
  auto tags = *parse_tags(R"({"team":"infra"})");
  auto ref = source_ref(tags);
  auto stream = stream_path(ref);
  registry_store direct{db.url()};
  config cfg;
  caf::actor_system sys{cfg};
  // Each start of the node's actors gets a scripted source of its own.
  std::mutex mtx;
  std::vector<std::shared_ptr<scripted_source>> sources;
  std::vector<node_actors> generations;
  auto source_of = [&](size_t n) {
    for (int i = 0; i < 200; ++i) {
      {
        std::lock_guard<std::mutex> guard{mtx};
        if (sources.size() >= n)
          return std::make_pair(sources[n - 1], generations[n - 1]);
      }
      std::this_thread::sleep_for(50ms);
    }
    CAF_FAIL("start " << n << " did not happen within 10 s");
  };
  auto gw = sys.spawn(gateway, node_actors{}, 5000ms);
  supervisor_config sc;
  sc.gateway = gw;
  sc.restart_initial = 100ms;
  sc.start = [&](caf::actor_system& s) {
    auto src = std::make_shared<scripted_source>();
    node_actors a;
    a.source = s.spawn(source_behavior, src);
    a.registry = s.spawn(::ebridge::registry, size_t{2},
                         postgres_registry_workers(db.url()));
    a.sink = s.spawn(sink, store.get());
    manager_config mcfg;
    mcfg.source = a.source;
    mcfg.sink = a.sink;
    mcfg.registry = a.registry;
    a.manager = s.spawn(manager, mcfg);
    std::lock_guard<std::mutex> guard{mtx};
    sources.push_back(src);
    generations.push_back(a);
    return a;
  };
  auto sup = sys.spawn(supervisor, std::move(sc));
  auto ready = [&] {
    std::promise<readiness> seen;
    caf::anon_send(gw, ready_atom::value, readiness_callback{[&](readiness r) {
                     seen.set_value(std::move(r));
                   }});
    return seen.get_future().get().ready;
  };
  CAF_REQUIRE(eventually(ready));
  // First life: register through the gateway, bootstrap, one live change.
  std::promise<caf::expected<registration>> registered;
  caf::anon_send(gw, register_atom::value, std::string{"default"},
                 to_json(tags),
                 registration_callback{[&](caf::expected<registration> r) {
                   registered.set_value(std::move(r));
                 }});
  auto [src1, gen1] = source_of(1);
  auto s = src1->wait_for(1);
  CAF_CHECK(s.from.empty());
  caf::anon_send(s.bridge, txn(s.id, "0001"));
  caf::anon_send(s.bridge, up_to_date_atom::value,
                 up_to_date_msg{s.id, {"h1", "0001"}});
  auto reg = registered.get_future().get();
  CAF_REQUIRE(reg);
  CAF_CHECK_EQUAL(reg->stream_url, stream);
  caf::anon_send(s.bridge, txn(s.id, "0002"));
  CAF_CHECK(eventually([&] {
    auto r = direct.get_bridge("default", ref);
    return r && r->cursor_offset == "0002";
  }));
  // The sink dies: the supervisor stops the rest and starts them again.
  caf::anon_send_exit(gen1.sink, caf::exit_reason::kill);
  auto [src2, gen2] = source_of(2);
  auto again = src2->wait_for(1);
  // Resumed from its cursor, not resynced from a snapshot.
  CAF_CHECK_EQUAL(again.from.handle, "h1");
  CAF_CHECK_EQUAL(again.from.offset, "0002");
  // The new source replays 0002 (its confirmed position may lag) and a new
  // change follows: each lands once.
  caf::anon_send(again.bridge, txn(again.id, "0002"));
  caf::anon_send(again.bridge, txn(again.id, "0003"));
  CAF_CHECK(eventually([&] {
    auto r = direct.get_bridge("default", ref);
    return r && r->cursor_offset == "0003";
  }));
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(gw, caf::exit_reason::user_shutdown);
  sys.await_all_actors_done();
  std::vector<std::string> ops;
  for (auto& text : stream_messages(stream)) {
    auto ev = parse_member_event(text);
    CAF_REQUIRE(ev);
    ops.push_back(std::string{to_string(ev->op)} + " " + ev->key);
  }
  CAF_CHECK_EQUAL(ops, (std::vector<std::string>{"insert /a", "insert /b",
                                                 "update /a", "delete /b",
                                                 "insert /c"}));
  CAF_CHECK_EQUAL(sources.size(), 2u);
}

CAF_TEST_FIXTURE_SCOPE_END()
