#define CAF_SUITE sink
#include <caf/test/dsl.hpp>

#include <cstdlib>
#include <future>
#include <string>
#include <thread>

#include "actors/sink.hpp"
#include "core/error.hpp"
#include "tests/actor/fakes.hpp"
#include "tests/test_util.hpp"

using namespace ebridge;
using namespace ebridge::test;

namespace {

/// The real sink on a real store in a scratch directory, driven by the
/// deterministic scheduler.
struct fixture : test_coordinator_fixture<actor_test_config> {
  fixture() {
    char tmpl[] = "/tmp/ebridge-sink-test.XXXXXX";
    dir = ::mkdtemp(tmpl);
    stream_store::config cfg;
    cfg.directory = dir;
    store = EB_OK(stream_store::open(cfg));
    create_request req;
    req.content_type = "application/json";
    std::promise<write_result> p;
    store->create("/s", std::move(req),
                  [&](write_result r) { p.set_value(std::move(r)); });
    CAF_REQUIRE(p.get_future().get().status == store_status::ok);
    snk = sys.spawn(sink, store.get());
    sched.run();
  }

  ~fixture() override {
    caf::anon_send_exit(snk, caf::exit_reason::user_shutdown);
    sched.run();
    store.reset();
    std::string cmd = "rm -rf '" + dir + "'";
    if (std::system(cmd.c_str()) != 0)
      CAF_MESSAGE("could not remove " << dir);
  }

  sink_append append_of(std::string event) {
    sink_append a;
    a.stream = "/s";
    a.producer = producer_stamp{"p", 0, next_seq++};
    a.events = {std::move(event)};
    return a;
  }

  std::string dir;
  std::unique_ptr<stream_store> store;
  sink_actor snk;
  uint64_t next_seq = 0;
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(sink_tests, fixture)

CAF_TEST(an append is answered with the offset once durable) {
  auto response = self->request(snk, caf::infinite, append_atom::value,
                                append_of("1"));
  // The store answers from a writer thread: run until the answer is in.
  for (int i = 0; i < 500 && self->mailbox().empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
    sched.run();
  }
  CAF_REQUIRE(!self->mailbox().empty());
  bool done = false;
  uint64_t offset = 0;
  response.receive(
    [&](uint64_t x) {
      done = true;
      offset = x;
    },
    [&](caf::error& err) { CAF_FAIL("unexpected " << describe(err)); });
  CAF_CHECK(done);
  CAF_CHECK_GREATER(offset, 0u);
}

CAF_TEST(a sink that ends answers the appends it holds with an error) {
  auto response = self->request(snk, caf::infinite, append_atom::value,
                                append_of("1"));
  sched.run_once(); // the sink hands the append to the store, holds the promise
  // An urgent exit: it goes before the store's answer, which comes after
  // a sync (normal priority), so the sink ends holding the promise.
  caf::anon_send<caf::message_priority::high>(
    caf::actor_cast<caf::actor>(snk),
    caf::exit_msg{caf::actor_addr{}, caf::exit_reason::kill});
  sched.run();
  if (self->mailbox().empty())
    CAF_FAIL("no answer: the append would wait forever");
  bool failed = false;
  response.receive(
    [](uint64_t) { CAF_FAIL("an answer from a sink that ended"); },
    [&](caf::error& err) {
      failed = true;
      CAF_CHECK_EQUAL(err.code(), static_cast<uint8_t>(ec::store_error));
      CAF_CHECK_EQUAL(error_message(err), "stream store: the sink ended "
                                          "before the store answered");
    });
  CAF_CHECK(failed);
}

CAF_TEST(a store that refuses an append is a store error and not a database one) {
  create_request req;
  req.content_type = "application/json";
  req.closed = true;
  std::promise<write_result> p;
  store->create("/closed", std::move(req),
                [&](write_result r) { p.set_value(std::move(r)); });
  CAF_REQUIRE(p.get_future().get().status == store_status::ok);
  auto a = append_of("1");
  a.stream = "/closed";
  auto response = self->request(snk, caf::infinite, append_atom::value, a);
  for (int i = 0; i < 500 && self->mailbox().empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
    sched.run();
  }
  bool failed = false;
  response.receive([](uint64_t) { CAF_FAIL("appended to a closed stream"); },
                   [&](caf::error& err) {
                     failed = true;
                     CAF_CHECK(has_code(err, ec::store_error));
                   });
  CAF_CHECK(failed);
}

CAF_TEST_FIXTURE_SCOPE_END()
