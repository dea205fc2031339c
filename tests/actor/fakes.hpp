#pragma once

// Scripted fakes at the actor boundaries of a bridge: source, sink and
// registry. Each keeps what it saw in a shared record the test inspects, and
// can be told to fail on cue. They stand in for actors only; the real store
// and Postgres are covered by the integration tests.
//
// As vast's mocks do, a fake fails the test at once (CAF_FAIL aborts the
// binary) on a message it does not expect: one no peer of it ever sends
// (those come from the real actor's own thread or timer), or an operation
// left out of its record's `expected` set, which a test narrows to what the
// actors under test may ask.

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/test/unit_test.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/actors.hpp"
#include "core/error.hpp"
#include "core/member.hpp"

namespace ebridge::test {

/// The actor system config of the actor tests: ebridge's types registered.
struct actor_test_config : caf::actor_system_config {
  actor_test_config() {
    register_types(*this);
  }
};

/// Fails the test: `fake` got `what`, which no peer of it ever sends.
inline void unexpected_message(const char* fake, const char* what) {
  CAF_FAIL(fake << " got " << what << ", which no peer of it sends");
}

/// Fails the test unless `op` is one of the operations `fake` expects.
inline void check_expected(const char* fake,
                           const std::set<std::string>& expected,
                           const std::string& op) {
  if (expected.count(op) == 0)
    CAF_FAIL(fake << " got " << op << ", which this test does not expect");
}

/// What the fake source saw.
struct source_record {
  /// What it accepts (all that bridges and the manager send; a test of
  /// bridges alone leaves out "resuming").
  std::set<std::string> expected{"subscribe", "unsubscribe", "ack", "resuming"};
  struct subscription {
    bridge_actor bridge;
    uint64_t id;
    std::string tenant;
    std::string tags;
    source_cursor from;
  };
  std::vector<subscription> subscriptions;
  std::vector<source_cursor> acks;
  int unsubscribes = 0;
  /// What the manager said it resumes with a cursor.
  std::vector<uint64_t> resuming;
  /// What it answers a status question: why its feed is stalled.
  std::string stalled;

  void check(const std::string& op) const {
    check_expected("the fake source", expected, op);
  }
};

inline source_actor::behavior_type
fake_source(std::shared_ptr<source_record> rec) {
  return {
    [rec](caf::subscribe_atom, bridge_actor& bridge, uint64_t id,
          std::string& tenant, std::string& tags, source_cursor& from) {
      rec->check("subscribe");
      rec->subscriptions.push_back({bridge, id, tenant, tags, from});
    },
    [rec](caf::unsubscribe_atom, bridge_actor&) {
      rec->check("unsubscribe");
      ++rec->unsubscribes;
    },
    [rec](ack_atom, bridge_actor&, uint64_t, source_cursor& at) {
      rec->check("ack");
      rec->acks.push_back(at);
    },
    [rec](resuming_atom, uint64_t n) {
      rec->check("resuming");
      rec->resuming.push_back(n);
    },
    // The real source's own: from its replication reader's thread and its
    // timer.
    [](replicated_txn&) {
      unexpected_message("the fake source", "replicated_txn");
    },
    [](feed_event&) { unexpected_message("the fake source", "feed_event"); },
    [](caf::tick_atom) { unexpected_message("the fake source", "tick_atom"); },
    [rec](status_atom) {
      rec->check("status");
      return rec->stalled;
    },
  };
}

/// One stream of the fake sink, judged by the real store's rules
/// (`admit_append`).
struct fake_stream {
  std::vector<std::string> messages;
  std::string stream_seq;
  std::map<std::string, producer_position> producers;
};

struct sink_record {
  /// What it accepts (all that bridges send).
  std::set<std::string> expected{"ensure", "append"};
  std::map<std::string, fake_stream> streams;
  /// Appends to fail, counted down.
  int fail_appends = 0;
  int appends = 0;
  int duplicates = 0;

  void check(const std::string& op) const {
    check_expected("the fake sink", expected, op);
  }
};

inline sink_actor::behavior_type fake_sink(std::shared_ptr<sink_record> rec) {
  return {
    [rec](ensure_atom, std::string& name) {
      rec->check("ensure");
      auto& s = rec->streams[name];
      return sink_stream_state{s.stream_seq, s.messages};
    },
    [rec](append_atom, sink_append& a) -> caf::result<uint64_t> {
      rec->check("append");
      if (rec->fail_appends > 0) {
        --rec->fail_appends;
        return make_error(ec::database_error, "scripted sink failure");
      }
      auto& s = rec->streams[a.stream];
      auto& p = a.producer;
      admission_state state;
      if (auto i = s.producers.find(p.id); i != s.producers.end())
        state.producer = i->second;
      state.stream_seq = s.stream_seq;
      std::optional<producer_stamp> stamp{p};
      auto verdict = admit_append(
        state,
        append_claims{stamp, a.stream_seq, {}, !a.events.empty(), false});
      if (verdict.what == admission::action::refuse)
        return make_error(ec::invalid_input, verdict.message);
      if (verdict.what == admission::action::acknowledge) {
        ++rec->duplicates;
        return uint64_t{s.messages.size()};
      }
      s.producers[p.id] = producer_position{p.epoch, p.seq};
      if (!a.stream_seq.empty())
        s.stream_seq = a.stream_seq;
      for (auto& e : a.events)
        s.messages.push_back(e);
      ++rec->appends;
      return uint64_t{s.messages.size()};
    },
    // The real sink's own: its store's callback.
    [](ack_atom, uint64_t, write_result&) {
      unexpected_message("the fake sink", "ack_atom");
    },
  };
}

/// The activity time the fake registry's touch sets.
constexpr int64_t touched_ms = int64_t{1} << 60;

/// The fake registry: one bridge row per (tenant, ref), epochs from one
/// counter, scripted failures per operation name.
struct registry_record {
  /// The operations it accepts, by the names `next` takes: by default those
  /// bridges and the manager use (not "list", "delete", "cursors" nor
  /// "ping"). A test narrows it to what the actors it runs may ask.
  std::set<std::string> expected{"upsert",       "touch",  "get",    "stale",
                                 "delete_stale", "resume", "cursor", "clear",
                                 "refs",         "epoch"};
  std::map<std::pair<std::string, std::string>, bridge_row> rows;
  int64_t epoch_counter = 0;
  std::map<std::string, int> fail; // operation → failures left
  std::map<std::string, int> calls;
  std::vector<std::string> referenced;
  /// When set, a resume takes its epochs at once and leaves its answer to
  /// this actor (see `resume_gate`).
  registry_actor hold_resume;

  /// Fails the test on an operation it does not expect; else counts it and
  /// returns its scripted failure, if one is left.
  caf::error next(const std::string& op) {
    check_expected("the fake registry", expected, op);
    ++calls[op];
    auto i = fail.find(op);
    if (i != fail.end() && i->second > 0) {
      --i->second;
      return make_error(ec::database_unavailable,
                        "scripted " + op + " failure");
    }
    return caf::none;
  }
};

/// An actor that holds a resume request until it gets `ok_atom`, then
/// answers it with `rows` (a test's way to delay one answer).
inline caf::behavior
resume_gate(caf::event_based_actor* self,
            std::shared_ptr<std::vector<bridge_row>> rows) {
  auto held = std::make_shared<caf::response_promise>();
  return {
    [self, held](resume_atom) {
      *held = self->make_response_promise();
      return *held;
    },
    [held, rows](caf::ok_atom) { held->deliver(*rows); },
  };
}

inline registry_actor::behavior_type
fake_registry(registry_actor::pointer self,
              std::shared_ptr<registry_record> rec) {
  auto key = [](const std::string& t, const std::string& r) {
    return std::make_pair(t, r);
  };
  return {
    [rec, key](upsert_atom, std::string& t, std::string& r, std::string& tags,
               std::string& url) -> caf::result<bridge_row> {
      if (auto err = rec->next("upsert"))
        return err;
      auto& row = rec->rows[key(t, r)];
      if (row.source_ref.empty()) {
        row.tenant_id = t;
        row.source_ref = r;
        row.tags = tags;
        row.stream_url = url;
      }
      return row;
    },
    [rec, key](touch_atom, std::string& t,
               std::string& r) -> caf::result<bool> {
      if (auto err = rec->next("touch"))
        return err;
      auto i = rec->rows.find(key(t, r));
      if (i == rec->rows.end())
        return false;
      // "Now" for the fake: later than any cutoff a test uses.
      i->second.last_activity_ms = touched_ms;
      return true;
    },
    [rec, key](caf::get_atom, std::string& t,
               std::string& r) -> caf::result<bridge_row> {
      if (auto err = rec->next("get"))
        return err;
      auto i = rec->rows.find(key(t, r));
      if (i == rec->rows.end())
        return make_error(ec::not_found, "no bridge");
      return i->second;
    },
    [rec](list_atom, std::string& t) -> caf::result<std::vector<bridge_row>> {
      if (auto err = rec->next("list"))
        return err;
      std::vector<bridge_row> result;
      for (auto& [k, row] : rec->rows)
        if (k.first == t)
          result.push_back(row);
      return result;
    },
    [rec](stale_atom, std::string& t,
          int64_t before) -> caf::result<std::vector<bridge_row>> {
      if (auto err = rec->next("stale"))
        return err;
      std::vector<bridge_row> result;
      for (auto& [k, row] : rec->rows)
        if (k.first == t && row.last_activity_ms < before)
          result.push_back(row);
      return result;
    },
    [rec, key](caf::delete_atom, std::string& t,
               std::string& r) -> caf::result<bool> {
      if (auto err = rec->next("delete"))
        return err;
      return rec->rows.erase(key(t, r)) > 0;
    },
    [rec, key](caf::delete_atom, std::string& t, std::string& r,
               int64_t before) -> caf::result<bool> {
      if (auto err = rec->next("delete_stale"))
        return err;
      auto i = rec->rows.find(key(t, r));
      if (i == rec->rows.end() || i->second.last_activity_ms >= before)
        return false;
      rec->rows.erase(i);
      return true;
    },
    [self, rec](resume_atom) -> caf::result<std::vector<bridge_row>> {
      if (auto err = rec->next("resume"))
        return err;
      std::vector<bridge_row> result;
      for (auto& [k, row] : rec->rows) {
        row.producer_epoch = ++rec->epoch_counter;
        result.push_back(row);
      }
      if (rec->hold_resume)
        return self->delegate(rec->hold_resume, resume_atom::value);
      return result;
    },
    [rec, key](cursor_atom, std::string& t, std::string& r, std::string& h,
               std::string& o) -> caf::result<bool> {
      if (auto err = rec->next("cursor"))
        return err;
      auto i = rec->rows.find(key(t, r));
      if (i == rec->rows.end())
        return false;
      // As the real registry: never backwards on the same handle.
      if (i->second.cursor_handle == h && !i->second.cursor_offset.empty()
          && o < i->second.cursor_offset)
        return false;
      i->second.cursor_handle = h;
      i->second.cursor_offset = o;
      return true;
    },
    [rec, key](cursor_atom, std::vector<cursor_write>& writes)
      -> caf::result<std::vector<cursor_write>> {
      if (auto err = rec->next("cursors"))
        return err;
      for (auto& w : writes) {
        auto i = rec->rows.find(key(w.tenant, w.ref));
        w.written = i != rec->rows.end()
                    && !(i->second.cursor_handle == w.handle
                         && !i->second.cursor_offset.empty()
                         && w.offset < i->second.cursor_offset);
        if (w.written) {
          i->second.cursor_handle = w.handle;
          i->second.cursor_offset = w.offset;
        }
      }
      return std::move(writes);
    },
    [rec, key](clear_atom, std::string& t,
               std::string& r) -> caf::result<bool> {
      if (auto err = rec->next("clear"))
        return err;
      auto i = rec->rows.find(key(t, r));
      if (i == rec->rows.end())
        return false;
      i->second.cursor_handle.clear();
      i->second.cursor_offset.clear();
      return true;
    },
    [rec](refs_atom, std::string&) -> caf::result<std::vector<std::string>> {
      if (auto err = rec->next("refs"))
        return err;
      return rec->referenced;
    },
    [rec, key](epoch_atom, std::string& t,
               std::string& r) -> caf::result<int64_t> {
      if (auto err = rec->next("epoch"))
        return err;
      auto i = rec->rows.find(key(t, r));
      if (i == rec->rows.end())
        return make_error(ec::not_found, "no bridge");
      i->second.producer_epoch = ++rec->epoch_counter;
      return i->second.producer_epoch;
    },
    [rec](caf::ping_atom) -> caf::result<caf::ok_atom> {
      if (auto err = rec->next("ping"))
        return err;
      return caf::ok_atom::value;
    },
  };
}

/// A member row with the given url, status and tags (other fields fixed).
inline member_row row(const std::string& url, const std::string& status,
                      const std::string& tags = R"({"team":"infra"})") {
  entity_columns c;
  c.url = url;
  c.type = "agent";
  c.status = status;
  c.tags = tags;
  c.created_at = "1";
  c.updated_at = "2";
  auto r = make_member_row(c);
  if (!r)
    throw std::runtime_error("bad test row");
  return *r;
}

inline entity_change upsert(const std::string& url, const std::string& status) {
  return entity_change{change_op::update, url, row(url, status)};
}

inline entity_change removal(const std::string& url) {
  return entity_change{change_op::remove, url, std::nullopt};
}

/// Folds a stream's messages into members; fails the test on a bad event.
inline std::map<std::string, member_row>
fold(const std::vector<std::string>& messages) {
  membership m;
  for (auto& text : messages) {
    auto ev = parse_member_event(text);
    if (!ev)
      throw std::runtime_error("bad event in stream: " + text);
    m.fold(*ev);
  }
  return m.members();
}

/// Asks the gateway `gw` whether the node is ready and runs `sched` until
/// it answers.
template <class Scheduler>
readiness ask_ready(Scheduler& sched, const gateway_actor& gw) {
  std::optional<readiness> seen;
  caf::anon_send(gw, ready_atom::value,
                 readiness_callback{[&](readiness r) { seen = r; }});
  sched.run();
  CAF_REQUIRE(seen);
  return *seen;
}

/// Registers (tenant, tags) through the gateway `gw` and runs `sched`: the
/// answer, none if none came yet.
template <class Scheduler>
std::optional<caf::expected<registration>>
register_through(Scheduler& sched, const gateway_actor& gw,
                 const std::string& tenant, const std::string& tags) {
  std::optional<caf::expected<registration>> reg;
  caf::anon_send(gw, register_atom::value, tenant, tags,
                 registration_callback{
                   [&](caf::expected<registration> r) { reg = std::move(r); }});
  sched.run();
  return reg;
}

} // namespace ebridge::test
