#define CAF_SUITE registry_actor_pg
#include <caf/test/unit_test.hpp>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/registry.hpp"
#include "core/error.hpp"
#include "core/tags.hpp"
#include "storage/database.hpp"
#include "storage/migrations.hpp"
#include "tests/integration/pg_fixture.hpp"

using namespace ebridge;
using namespace std::chrono_literals;

namespace {

struct config : caf::actor_system_config {
  config() {
    register_types(*this);
    set("scheduler.max-threads", 2);
  }
};

struct fixture {
  fixture() {
    pg_connection conn{db.url()};
    if (auto applied = migrate(conn); !applied)
      CAF_FAIL("migrate: " << describe(applied.error()));
  }

  test::scratch_database db;
  config cfg;
  caf::actor_system sys{cfg};
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(registry_actor_pg_tests, fixture)

CAF_TEST(the registry actor runs every operation on Postgres) {
  auto reg = sys.spawn(registry, size_t{2},
                       postgres_registry_workers(db.url()));
  {
    caf::scoped_actor self{sys};
    auto fail = [](caf::error& err) { CAF_FAIL(describe(err)); };
    auto tags = parse_tags(R"({"role":"reviewer","demo_id":"X"})");
    CAF_REQUIRE(tags);
    auto ref = source_ref(*tags);
    self
      ->request(reg, 10s, upsert_atom::value, "default", ref, to_json(*tags),
                stream_path(ref))
      .receive([&](bridge_row& row) { CAF_CHECK_EQUAL(row.source_ref, ref); },
               fail);
    self->request(reg, 10s, touch_atom::value, "default", ref)
      .receive([](bool found) { CAF_CHECK(found); }, fail);
    self->request(reg, 10s, cursor_atom::value, "default", ref, "h", "1_2")
      .receive([](bool found) { CAF_CHECK(found); }, fail);
    self->request(reg, 10s, caf::get_atom::value, "default", ref)
      .receive(
        [](bridge_row& row) { CAF_CHECK_EQUAL(row.cursor_offset, "1_2"); },
        fail);
    self->request(reg, 10s, clear_atom::value, "default", ref)
      .receive([](bool found) { CAF_CHECK(found); }, fail);
    self->request(reg, 10s, epoch_atom::value, "default", ref)
      .receive([](int64_t epoch) { CAF_CHECK_EQUAL(epoch, 1); }, fail);
    self->request(reg, 10s, list_atom::value, "default")
      .receive(
        [](std::vector<bridge_row>& rows) {
          CAF_REQUIRE_EQUAL(rows.size(), 1u);
          CAF_CHECK(!rows[0].has_cursor());
        },
        fail);
    self->request(reg, 10s, stale_atom::value, "default", int64_t{0})
      .receive([](std::vector<bridge_row>& rows) { CAF_CHECK(rows.empty()); },
               fail);
    self->request(reg, 10s, refs_atom::value, "default")
      .receive([](std::vector<std::string>& refs) { CAF_CHECK(refs.empty()); },
               fail);
    self->request(reg, 10s, caf::delete_atom::value, "default", ref)
      .receive([](bool found) { CAF_CHECK(found); }, fail);
    self->request(reg, 10s, caf::ping_atom::value)
      .receive([](caf::ok_atom) {}, fail);
    // Bad input comes back as an error; the actor lives on.
    self->request(reg, 10s, touch_atom::value, "", ref)
      .receive([](bool) { CAF_FAIL("expected an error"); },
               [](caf::error& err) {
                 CAF_CHECK_EQUAL(err.code(),
                                 static_cast<uint8_t>(ec::invalid_input));
               });
    self->request(reg, 10s, caf::ping_atom::value)
      .receive([](caf::ok_atom) {}, fail);
  }
  caf::anon_send_exit(reg, caf::exit_reason::user_shutdown);
}

CAF_TEST(the registry actor reports an unreachable database without dying) {
  auto reg = sys.spawn(registry, size_t{1},
                       postgres_registry_workers("postgresql://127.0.0.1:1/x"));
  {
    caf::scoped_actor self{sys};
    for (int i = 0; i < 3; ++i)
      self->request(reg, 10s, caf::ping_atom::value)
        .receive([](caf::ok_atom) { CAF_FAIL("expected an error"); },
                 [](caf::error& err) {
                   CAF_CHECK_EQUAL(err.code(), static_cast<uint8_t>(
                                                 ec::database_unavailable));
                 });
  }
  caf::anon_send_exit(reg, caf::exit_reason::user_shutdown);
}

CAF_TEST_FIXTURE_SCOPE_END()
