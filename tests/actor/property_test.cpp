#define CAF_SUITE bridge_property
#include <caf/test/dsl.hpp>

#include <cstdio>
#include <iostream>
#include <random>
#include <set>

#include "actors/manager.hpp"
#include "core/tags.hpp"
#include "tests/actor/fakes.hpp"

// Random interleavings of entity changes (single and pipelined bursts),
// bridge crashes, refetches, sink faults and lost cursor writes against one
// view. A model source serves the bridge's subscriptions
// from a transaction log (snapshot or replay from a cursor). After each run
// the stream, folded, must equal the view's truth, and every event must be a
// real transition (no change emitted twice). The seed is printed on failure;
// EBRIDGE_PROPERTY_SEED reruns one seed, EBRIDGE_PROPERTY_TRACE prints what
// happened.

using namespace ebridge;
using namespace ebridge::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* view_tags = R"({"team":"infra"})";

std::string offset_text(int n) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%010d", n);
  return buf;
}

struct entity {
  std::string team;
  std::string status;
  /// Which change wrote this version (transaction * 10 + index; the row's
  /// updated_at), so a version emitted twice tells apart from a real change.
  int version = 0;
};

struct fixture : test_coordinator_fixture<actor_test_config> {
  std::shared_ptr<source_record> src = std::make_shared<source_record>();
  std::shared_ptr<sink_record> snk = std::make_shared<sink_record>();
  std::shared_ptr<registry_record> reg = std::make_shared<registry_record>();
  source_actor source;
  sink_actor sink;
  registry_actor registry;
  manager_actor mgr;
  std::string ref;

  // The model source.
  std::map<std::string, entity> truth;
  struct txn {
    int offset;
    std::vector<entity_change> changes; // as routed to the view
  };
  std::vector<txn> log;
  int offset = 0;
  std::string handle = "h1";
  int handles = 1;
  size_t served = 0; // subscriptions handled so far
  std::optional<source_record::subscription> live;

  fixture() {
    source = sys.spawn(fake_source, src);
    sink = sys.spawn(fake_sink, snk);
    registry = sys.spawn(fake_registry, reg);
    ref = source_ref(*parse_tags(view_tags));
    manager_config cfg;
    cfg.source = source;
    cfg.sink = sink;
    cfg.registry = registry;
    cfg.restart_initial = 50ms;
    cfg.restart_max = 200ms;
    mgr = sys.spawn(manager, cfg);
    sched.run();
  }

  ~fixture() override {
    caf::anon_send_exit(mgr, caf::exit_reason::user_shutdown);
    for (const auto& h : {caf::actor_cast<caf::actor>(source),
                          caf::actor_cast<caf::actor>(sink),
                          caf::actor_cast<caf::actor>(registry)})
      caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
    sched.run();
  }

  static member_row row_of(const std::string& url, const entity& e) {
    auto r = row(url, e.status, R"({"team":")" + e.team + R"("})");
    r.updated_at = e.version;
    return r;
  }

  /// Serves new subscriptions: a refetch for a stale handle, else a replay
  /// from the cursor or a snapshot, then live batches from there on.
  void serve() {
    while (served < src->subscriptions.size()) {
      auto s = src->subscriptions[served++];
      if (!s.from.empty() && s.from.handle != handle) {
        caf::anon_send(s.bridge, refetch_atom::value, s.id);
        live.reset();
        sched.run();
        continue;
      }
      live = s;
      if (std::getenv("EBRIDGE_PROPERTY_TRACE"))
        std::fprintf(stderr, "serve sub %llu from %s/%s (handle %s)\n",
                     static_cast<unsigned long long>(s.id),
                     s.from.handle.c_str(), s.from.offset.c_str(),
                     handle.c_str());
      if (s.from.empty()) {
        std::vector<entity_change> snapshot;
        for (auto& [url, e] : truth)
          if (e.team == "infra")
            snapshot.push_back({change_op::insert, url, row_of(url, e)});
        caf::anon_send(s.bridge, change_batch{s.id,
                                              {handle, offset_text(offset)},
                                              snapshot});
        caf::anon_send(s.bridge, up_to_date_atom::value,
                       up_to_date_msg{s.id, {handle, offset_text(offset)}});
      } else {
        for (auto& t : log)
          if (offset_text(t.offset) > s.from.offset)
            caf::anon_send(s.bridge,
                           change_batch{s.id,
                                        {handle, offset_text(t.offset)},
                                        t.changes});
      }
      sched.run();
    }
  }

  /// Runs everything: messages, then timers, until the system is quiet.
  void settle() {
    for (int i = 0; i < 50; ++i) {
      sched.run();
      serve();
      if (!sched.has_pending_timeout())
        break;
      sched.trigger_timeouts();
    }
    sched.run();
    serve();
  }

  void transaction(std::mt19937& rng, bool run = true) {
    txn t;
    t.offset = ++offset;
    int n = 1 + static_cast<int>(rng() % 3);
    for (int i = 0; i < n; ++i) {
      auto url = "/e/" + std::to_string(rng() % 8);
      auto old = truth.count(url) ? std::optional<entity>{truth[url]}
                                  : std::nullopt;
      std::optional<entity> now;
      switch (rng() % 4) {
        case 0: // delete
          break;
        case 1: // retag
          now = entity{rng() % 2 ? "infra" : "web", old ? old->status : "idle",
                       t.offset * 10 + i};
          break;
        default: // status change or insert
          now = entity{old ? old->team : (rng() % 2 ? "infra" : "web"),
                       std::vector<std::string>{"idle", "running",
                                                "paused"}[rng() % 3],
                       t.offset * 10 + i};
      }
      if (now)
        truth[url] = *now;
      else
        truth.erase(url);
      // Routing: by the new row if it matches, else a removal if the old
      // row did (move-out).
      if (now && now->team == "infra")
        t.changes.push_back({change_op::update, url, row_of(url, *now)});
      else if (old && old->team == "infra")
        t.changes.push_back({change_op::remove, url, std::nullopt});
    }
    if (std::getenv("EBRIDGE_PROPERTY_TRACE"))
      for (auto& c : t.changes)
        std::fprintf(stderr, "txn %d %s %s live=%d\n", t.offset,
                     c.op == change_op::remove ? "remove" : "upsert",
                     c.key.c_str(), live ? 1 : 0);
    if (!t.changes.empty()) {
      log.push_back(t);
      if (live)
        caf::anon_send(live->bridge,
                       change_batch{live->id,
                                    {handle, offset_text(t.offset)},
                                    t.changes});
    }
    if (run)
      sched.run();
  }

  /// Folds the stream strictly: every event must change something, and no
  /// row version may be emitted twice.
  std::string check_stream(std::map<std::string, member_row>& folded) {
    std::set<std::pair<std::string, int64_t>> emitted;
    for (auto& text : snk->streams["/_entities/" + ref].messages) {
      auto ev = parse_member_event(text);
      if (!ev)
        return "unparsable event " + text;
      auto i = folded.find(ev->key);
      if (std::getenv("EBRIDGE_PROPERTY_TRACE"))
        std::fprintf(stderr, "event %s %s v%lld\n", to_string(ev->op),
                     ev->key.c_str(),
                     static_cast<long long>(ev->value
                                              ? ev->value->updated_at
                                              : ev->old_value->updated_at));
      if (ev->value && !emitted.emplace(ev->key, ev->value->updated_at).second)
        return "a version emitted twice: " + text;
      switch (ev->op) {
        case event_op::insert:
          if (i != folded.end())
            return "insert of a member: " + text;
          folded.emplace(ev->key, *ev->value);
          break;
        case event_op::update:
          if (i == folded.end() || i->second == *ev->value)
            return "update that changes nothing: " + text;
          i->second = *ev->value;
          break;
        case event_op::remove:
          if (i == folded.end())
            return "delete of a non-member: " + text;
          folded.erase(i);
          break;
      }
    }
    return {};
  }
};

void run_one(unsigned seed) {
  fixture f;
  std::mt19937 rng{seed};
  f.self->send(f.mgr, register_atom::value, std::string{"default"},
               std::string{view_tags});
  f.settle();
  for (int step = 0; step < 80; ++step) {
    auto action = rng() % 12;
    if (std::getenv("EBRIDGE_PROPERTY_TRACE") && action < 5)
      std::fprintf(stderr, "action %u\n", static_cast<unsigned>(action));
    switch (action) {
      case 0: // crash the bridge
        if (f.live)
          caf::anon_send_exit(f.live->bridge, caf::exit_reason::kill);
        f.live.reset();
        f.sched.run();
        break;
      case 1: // the source's handle changes: must-refetch
        f.handle = "h" + std::to_string(++f.handles);
        f.log.clear();
        if (f.live)
          caf::anon_send(f.live->bridge, refetch_atom::value, f.live->id);
        f.live.reset();
        f.sched.run();
        break;
      case 2: // the sink fails the next append
        f.snk->fail_appends = 1;
        break;
      case 3: // the next cursor write fails after its append is durable
        f.reg->fail["cursor"] = 1;
        break;
      case 4: // a burst: several batches in flight at once (pipelined),
              // sometimes with the first cursor write lost
        if (rng() % 2)
          f.reg->fail["cursor"] = 1;
        for (int i = 0; i < 3; ++i)
          f.transaction(rng, false);
        f.sched.run();
        break;
      default:
        f.transaction(rng);
    }
    if (rng() % 3 == 0)
      f.settle();
  }
  f.snk->fail_appends = 0;
  f.reg->fail.clear();
  f.settle();
  std::map<std::string, member_row> folded;
  auto problem = f.check_stream(folded);
  std::map<std::string, member_row> expected;
  for (auto& [url, e] : f.truth)
    if (e.team == "infra")
      expected.emplace(url, fixture::row_of(url, e));
  if (std::getenv("EBRIDGE_PROPERTY_TRACE")) {
    for (auto& [k, r] : folded)
      std::fprintf(stderr, "folded %s v%lld %s\n", k.c_str(),
                   static_cast<long long>(r.updated_at), r.status.c_str());
    for (auto& [k, r] : expected)
      std::fprintf(stderr, "expected %s v%lld %s\n", k.c_str(),
                   static_cast<long long>(r.updated_at), r.status.c_str());
    for (auto& [k, e] : f.truth)
      std::fprintf(stderr, "truth %s v%d %s %s\n", k.c_str(), e.version,
                   e.team.c_str(), e.status.c_str());
  }
  if (!problem.empty() || folded != expected) {
    CAF_FAIL(
      "seed " << seed << ": "
              << (problem.empty() ? "fold differs from the truth" : problem)
              << " (members " << folded.size() << ", expected "
              << expected.size() << ")");
  }
  CAF_CHECK(true);
}

} // namespace

CAF_TEST(random interleavings converge to the truth without duplicate events) {
  if (auto* fixed = std::getenv("EBRIDGE_PROPERTY_SEED")) {
    run_one(static_cast<unsigned>(std::stoul(fixed)));
    return;
  }
  // The same 40 seeds every run, so that a failure in CI replays anywhere;
  // then a few new ones, printed first, to keep exploring.
  for (unsigned seed = 1; seed <= 40; ++seed)
    run_one(seed);
  std::random_device rd;
  for (int i = 0; i < 5; ++i) {
    auto seed = rd();
    std::cout << "bridge_property: random seed " << seed
              << " (rerun: EBRIDGE_PROPERTY_SEED=" << seed << ")" << std::endl;
    run_one(seed);
  }
}
