#include "actors/bridge.hpp"

#include <algorithm>
#include <cstdio>
#include <functional>

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/tags.hpp"

namespace ebridge {

const char* to_string(bridge_phase phase) {
  switch (phase) {
    case bridge_phase::loading:
      return "loading";
    case bridge_phase::bootstrapping:
      return "bootstrapping";
    case bridge_phase::live:
      return "live";
    case bridge_phase::resyncing:
      return "resyncing";
    case bridge_phase::stopped:
      return "stopped";
  }
  return "unknown";
}

std::string make_stream_seq(int64_t epoch, const std::string& offset,
                            uint64_t seq) {
  char head[24];
  char tail[24];
  std::snprintf(head, sizeof(head), "%016lld.", static_cast<long long>(epoch));
  std::snprintf(tail, sizeof(tail), ".%010llu",
                static_cast<unsigned long long>(seq));
  return head + offset + tail;
}

source_cursor cursor_of(const bridge_row& row) {
  return row.has_cursor() ? source_cursor{row.cursor_handle, row.cursor_offset}
                          : source_cursor{};
}

std::string offset_of_stream_seq(const std::string& stream_seq) {
  if (stream_seq.size() < 28 || stream_seq[16] != '.'
      || stream_seq[stream_seq.size() - 11] != '.')
    return {};
  return stream_seq.substr(17, stream_seq.size() - 28);
}

namespace {

using self_ptr = bridge_actor::stateful_pointer<bridge_state>;

/// Answers whoever still waits for the bridge with `err`: it ends (CAF
/// 0.17 breaks no promise an actor drops, so they would wait for ever).
void answer_waiters(bridge_state& st, const caf::error& err) {
  for (auto& promise : st.ready_waiters)
    promise.deliver(err);
  st.ready_waiters.clear();
  for (auto& promise : st.stop_waiters)
    promise.deliver(err);
  st.stop_waiters.clear();
}

void fail(self_ptr self, const caf::error& err) {
  auto& st = self->state;
  log::error("bridge", "failed",
             {{"ref", st.cfg.source_ref},
              {"phase", to_string(st.phase)},
              {"error", describe(err)}});
  st.phase = bridge_phase::stopped;
  answer_waiters(st, err);
  self->quit(err);
}

auto failer(self_ptr self) {
  return [self](caf::error& err) { fail(self, err); };
}

/// Answers who waits for the view to be ready (its first bootstrap is
/// durable, or it resumed from its cursor).
void answer_ready(bridge_state& st) {
  for (auto& promise : st.ready_waiters)
    promise.deliver(caf::ok_atom::value);
  decltype(st.ready_waiters){}.swap(st.ready_waiters); // and its memory
}

bool resyncing(const bridge_state& st) {
  return st.phase == bridge_phase::bootstrapping
         || st.phase == bridge_phase::resyncing;
}

void advance(self_ptr self);
void finish_stop_if_done(self_ptr self);

/// Tells the source the current subscription made everything up to `at`
/// durable.
void ack(self_ptr self, const source_cursor& at) {
  auto& st = self->state;
  self->send(st.cfg.source, ack_atom::value,
             caf::actor_cast<bridge_actor>(self), st.subscription, at);
}

/// Persists a cursor, one write at a time; a newer one waits its turn and
/// replaces any older one still waiting. The source hears of a position
/// only once it is persisted.
void persist(self_ptr self, source_cursor at) {
  auto& st = self->state;
  if (st.persisting) {
    st.to_persist = std::make_unique<source_cursor>(std::move(at));
    return;
  }
  st.persisting = true;
  auto& cfg = st.cfg;
  auto subscription = st.subscription;
  self
    ->request(cfg.registry, cfg.request_timeout, cursor_atom::value, cfg.tenant,
              cfg.source_ref, at.handle, at.offset)
    .then(
      [self, at, subscription](bool) {
        auto& st = self->state;
        st.persisting = false;
        // What the registry holds now (a resync checks it to clear it).
        if (st.cursor.handle != at.handle || st.cursor.offset < at.offset)
          st.cursor = at;
        // A resync that began meanwhile clears it after this write (and
        // dropped what waited): the source need not hear of it.
        if (subscription == st.subscription)
          ack(self, at);
        if (st.to_persist) {
          auto next = std::move(*st.to_persist);
          st.to_persist.reset();
          persist(self, std::move(next));
        }
        finish_stop_if_done(self);
      },
      failer(self));
}

/// Queues one batch's step: its events go to the sink now (pipelined); the
/// step completes, in order, once they are durable.
void push_step(self_ptr self, source_cursor at,
               std::vector<member_event> events, bool completes_bootstrap) {
  auto& st = self->state;
  bridge_state::step s;
  s.id = st.next_step++;
  s.subscription = st.subscription;
  s.at = at;
  s.completes_bootstrap = completes_bootstrap;
  if (events.empty()) {
    s.durable = true;
    st.steps.push_back(std::move(s));
    advance(self);
    return;
  }
  s.appended = true;
  st.steps.push_back(s);
  sink_append append;
  append.stream = stream_path(st.cfg.source_ref);
  append.producer = producer_stamp{"entity-bridge-" + st.cfg.source_ref,
                                   static_cast<uint64_t>(st.epoch),
                                   st.next_seq++};
  append.stream_seq = make_stream_seq(st.epoch, at.offset, append.producer.seq);
  auto ts = wall_ms();
  append.events.reserve(events.size());
  for (auto& ev : events)
    append.events.push_back(to_json(ev, ts));
  auto id = s.id;
  // No timeout: the sink answers every append (the store calls back on
  // every path, and a sink that ends answers what it holds). A timeout per
  // event costs the clock thread a wake-up now and this actor a stale
  // message 30 s later (at 1,000 events/s the clock thread had a tenth of
  // ebridge's CPU samples).
  self
    ->request(st.cfg.sink, caf::infinite, append_atom::value, std::move(append))
    .then(
      [self, id](uint64_t) {
        for (auto& step : self->state.steps)
          if (step.id == id)
            step.durable = true;
        advance(self);
      },
      failer(self));
}

/// Completes the durable steps at the front, in order.
void advance(self_ptr self) {
  auto& st = self->state;
  while (!st.steps.empty() && st.steps.front().durable) {
    auto s = std::move(st.steps.front());
    st.steps.erase(st.steps.begin()); // few: the appends in flight
    if (s.subscription != st.subscription)
      continue;
    if (s.completes_bootstrap) {
      st.phase = bridge_phase::live;
      st.bootstrapped = true;
      st.failures = 0;
      log::info("bridge", "bootstrapped",
                {{"ref", st.cfg.source_ref},
                 {"members", std::to_string(st.members.size())}});
      persist(self, s.at);
      answer_ready(st);
    } else if (st.phase == bridge_phase::live) {
      if (s.appended && st.cfg.cursor_interval.count() > 0) {
        // Durable in the stream, whose Stream-Seq records the offset: a
        // restart resumes past it with or without the cursor. The source
        // hears of it now; the cursor follows within the interval.
        ack(self, s.at);
        if (st.trailing)
          *st.trailing = s.at;
        else
          st.trailing = std::make_unique<source_cursor>(s.at);
        if (!st.trailing_scheduled) {
          st.trailing_scheduled = true;
          self->delayed_send(self, st.cfg.cursor_interval, cursor_atom::value);
        }
      } else {
        persist(self, s.at);
      }
    }
  }
  // Most bridges sit idle with no step: they hold no buffer either.
  if (st.steps.empty())
    decltype(st.steps){}.swap(st.steps);
  finish_stop_if_done(self);
}

/// A stopping bridge ends once nothing is in flight: its appends are
/// durable and its last cursor (the trailing one too) is persisted.
void finish_stop_if_done(self_ptr self) {
  auto& st = self->state;
  if (!st.stopping || !st.steps.empty() || st.persisting)
    return;
  if (st.trailing && st.phase == bridge_phase::live) {
    auto at = std::move(*st.trailing);
    st.trailing.reset();
    persist(self, std::move(at));
    return;
  }
  log::info("bridge", "stopped", {{"ref", st.cfg.source_ref}});
  st.phase = bridge_phase::stopped;
  for (auto& promise : st.stop_waiters)
    promise.deliver(caf::ok_atom::value);
  st.stop_waiters.clear();
  answer_waiters(st, make_error(ec::shutting_down, "the view stopped"));
  self->quit(caf::exit_reason::user_shutdown);
}

/// Writes the view's last activity to the registry, then waits a touch
/// interval before the next write.
void write_touch(self_ptr self) {
  auto& st = self->state;
  st.touch_armed = true;
  st.touch_dirty = false;
  auto& cfg = st.cfg;
  self->delayed_send(self, cfg.touch_interval, touch_due_atom::value);
  self
    ->request(cfg.registry, cfg.request_timeout, touch_atom::value, cfg.tenant,
              cfg.source_ref)
    .then([](bool) {},
          [self](caf::error& err) {
            // Activity is advisory (GC asks the bridge too): no failure.
            log::debug("bridge", "cannot record activity",
                       {{"ref", self->state.cfg.source_ref},
                        {"error", describe(err)}});
          });
}

void subscribe(self_ptr self, source_cursor from) {
  auto& st = self->state;
  self->send(st.cfg.source, caf::subscribe_atom::value,
             caf::actor_cast<bridge_actor>(self), st.subscription,
             st.cfg.tenant, st.cfg.tags, std::move(from));
}

/// Resync: forget the cursor (no cursor until the new bootstrap is
/// durable), take a new epoch, and follow the source from a snapshot; what
/// the snapshot does not bring is deleted at up-to-date.
void resync(self_ptr self) {
  auto& st = self->state;
  st.phase = st.bootstrapped ? bridge_phase::resyncing
                             : bridge_phase::bootstrapping;
  self->send(st.cfg.source, caf::unsubscribe_atom::value,
             caf::actor_cast<bridge_actor>(self));
  ++st.subscription;
  st.skip_until.clear();
  st.stale.clear();
  // No cursor until the new bootstrap is durable: none of the old
  // subscription's may be written after the clear.
  st.trailing.reset();
  st.to_persist.reset();
  auto& cfg = st.cfg;
  auto take_epoch = [self] {
    auto& cfg = self->state.cfg;
    self
      ->request(cfg.registry, cfg.request_timeout, epoch_atom::value,
                cfg.tenant, cfg.source_ref)
      .then(
        [self](int64_t epoch) {
          auto& st = self->state;
          if (st.stopping) {
            finish_stop_if_done(self);
            return;
          }
          st.epoch = epoch;
          st.next_seq = 0;
          for (auto& [key, row] : st.members.members())
            st.stale.insert(key);
          subscribe(self, source_cursor{});
        },
        failer(self));
  };
  // A cursor write still on its way lands before the clear (one registry
  // worker per bridge, in order): clear then too.
  if (st.cursor.empty() && !st.persisting) {
    take_epoch();
    return;
  }
  self
    ->request(cfg.registry, cfg.request_timeout, clear_atom::value, cfg.tenant,
              cfg.source_ref)
    .then(
      [self, take_epoch](bool) {
        self->state.cursor = source_cursor{};
        take_epoch();
      },
      failer(self));
}

std::chrono::milliseconds backoff(bridge_state& st) {
  auto& cfg = st.cfg;
  auto shift = std::min(st.failures, 16);
  auto delay = std::min(cfg.backoff_max, cfg.backoff_initial * (1 << shift));
  // Jitter spreads bridges that failed together; seeded per ref so that
  // tests stay deterministic.
  auto seed = std::hash<std::string>{}(cfg.source_ref)
              + static_cast<size_t>(st.failures);
  auto jitter = static_cast<long>(seed
                                  % static_cast<size_t>(delay.count() / 2 + 1));
  return delay + std::chrono::milliseconds{jitter};
}

/// One resync at a time: a second request while one is scheduled is void.
void schedule_resync(self_ptr self, std::chrono::milliseconds delay) {
  auto& st = self->state;
  if (st.resync_scheduled)
    return;
  st.resync_scheduled = true;
  // Messages of the current subscription are void from now on.
  ++st.subscription;
  auto token = st.subscription;
  if (delay.count() == 0)
    self->send(self, retry_atom::value, token);
  else
    self->delayed_send(self, delay, retry_atom::value, token);
}

/// Starts from the stream's contents (folded), the registry cursor and a
/// new epoch: resumes at the cursor, or resyncs without one.
void begin(self_ptr self, const std::string& last, source_cursor cursor,
           int64_t epoch) {
  auto& st = self->state;
  st.cursor = std::move(cursor);
  st.epoch = epoch;
  st.next_seq = 0;
  if (st.stopping) {
    finish_stop_if_done(self);
    return;
  }
  if (st.cursor.empty() || st.force_resync) {
    st.force_resync = false;
    resync(self);
    return;
  }
  // Resume: what the stream holds past the cursor was appended before a
  // crash that beat the cursor write.
  st.skip_until = std::max(st.cursor.offset, last);
  st.phase = bridge_phase::live;
  st.bootstrapped = true;
  answer_ready(st);
  log::info("bridge", "resumed",
            {{"ref", st.cfg.source_ref},
             {"members", std::to_string(st.members.size())},
             {"offset", st.cursor.offset}});
  // From there: the source acknowledged to Postgres what the stream holds,
  // maybe past the cursor.
  subscribe(self, source_cursor{st.cursor.handle, st.skip_until});
}

void start(self_ptr self) {
  auto& cfg = self->state.cfg;
  self
    ->request(cfg.sink, cfg.request_timeout, ensure_atom::value,
              stream_path(cfg.source_ref))
    .then(
      [self](sink_stream_state& stream) {
        auto& st = self->state;
        for (auto& text : stream.messages) {
          auto ev = parse_member_event(text);
          if (!ev) {
            fail(self, make_error(ec::bad_row,
                                  "stream " + stream_path(st.cfg.source_ref)
                                    + " holds an event that is not a members "
                                      "event: "
                                    + error_message(ev.error())));
            return;
          }
          st.members.fold(*ev);
        }
        auto last = offset_of_stream_seq(stream.stream_seq);
        if (auto resume = std::exchange(st.cfg.resume, nullptr)) {
          begin(self, last, resume->cursor, resume->epoch);
          return;
        }
        auto& cfg = st.cfg;
        self
          ->request(cfg.registry, cfg.request_timeout, caf::get_atom::value,
                    cfg.tenant, cfg.source_ref)
          .then(
            [self, last](bridge_row& row) {
              auto& cfg = self->state.cfg;
              auto cursor = cursor_of(row);
              self
                ->request(cfg.registry, cfg.request_timeout, epoch_atom::value,
                          cfg.tenant, cfg.source_ref)
                .then(
                  [self, last, cursor](int64_t epoch) mutable {
                    begin(self, last, std::move(cursor), epoch);
                  },
                  failer(self));
            },
            failer(self));
      },
      failer(self));
}

} // namespace

bridge_actor::behavior_type
bridge(bridge_actor::stateful_pointer<bridge_state> self, bridge_config cfg) {
  self->state.cfg = std::move(cfg);
  auto source = self->state.cfg.source;
  auto me = caf::actor_cast<bridge_actor>(self);
  // Whatever ends the bridge, the source stops sending to it.
  self->attach_functor(
    [source, me] { caf::anon_send(source, caf::unsubscribe_atom::value, me); });
  start(self);
  return {
    [self](change_batch& batch) {
      auto& st = self->state;
      if (batch.subscription != st.subscription || st.stopping
          || (st.phase != bridge_phase::live && !resyncing(st)))
        return;
      if (!st.skip_until.empty() && batch.at.offset <= st.skip_until) {
        // Already in the stream: only tell the source it may move on.
        ack(self, batch.at);
        return;
      }
      std::vector<member_event> events;
      for (auto& change : batch.changes) {
        if (resyncing(st))
          st.stale.erase(change.key);
        if (auto ev = st.members.apply(change))
          events.push_back(std::move(*ev));
      }
      push_step(self, std::move(batch.at), std::move(events), false);
    },
    [self](up_to_date_atom, up_to_date_msg& msg) {
      auto& st = self->state;
      if (msg.subscription != st.subscription || st.stopping)
        return;
      if (st.phase == bridge_phase::live) {
        // Nothing changed for this view up to there: the cursor moves on
        // (in order after any pending step), so Postgres may release WAL and
        // a restart resumes from there.
        if (!st.skip_until.empty() && msg.at.offset <= st.skip_until) {
          ack(self, msg.at);
          return;
        }
        push_step(self, std::move(msg.at), {}, false);
        return;
      }
      if (!resyncing(st))
        return;
      std::vector<member_event> deletes;
      for (auto& key : st.stale)
        if (auto ev = st.members.remove(key))
          deletes.push_back(std::move(*ev));
      st.stale.clear();
      push_step(self, std::move(msg.at), std::move(deletes), true);
    },
    [self](refetch_atom, uint64_t subscription) {
      auto& st = self->state;
      if (subscription != st.subscription || st.stopping)
        return;
      log::warn("bridge", "must refetch", {{"ref", st.cfg.source_ref}});
      if (resyncing(st)) {
        // Refetch during a bootstrap: start over, with backoff.
        ++st.failures;
        schedule_resync(self, backoff(st));
      } else {
        schedule_resync(self, std::chrono::milliseconds{0});
      }
    },
    [self](source_error_atom, uint64_t subscription, std::string& reason) {
      auto& st = self->state;
      if (subscription != st.subscription || st.stopping)
        return;
      ++st.failures;
      auto delay = backoff(st);
      log::warn("bridge", "source error",
                {{"ref", st.cfg.source_ref},
                 {"error", reason},
                 {"retry_ms", std::to_string(delay.count())}});
      schedule_resync(self, delay);
    },
    [self](resync_atom) {
      auto& st = self->state;
      if (st.stopping)
        return;
      log::info("bridge", "resync requested", {{"ref", st.cfg.source_ref}});
      if (st.phase == bridge_phase::loading)
        st.force_resync = true; // decided once the stream is folded
      else
        schedule_resync(self, std::chrono::milliseconds{0});
    },
    [self](touch_atom) {
      auto& st = self->state;
      st.last_activity_ms = wall_ms();
      if (st.touch_armed)
        st.touch_dirty = true;
      else
        write_touch(self);
    },
    [self](touch_due_atom) {
      auto& st = self->state;
      st.touch_armed = false;
      if (st.touch_dirty)
        write_touch(self);
    },
    [self](stop_atom) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      auto promise = self->make_response_promise<caf::ok_atom>();
      st.stop_waiters.push_back(promise);
      if (!st.stopping) {
        st.stopping = true;
        // Nothing more from the source; what is in flight completes.
        self->send(st.cfg.source, caf::unsubscribe_atom::value,
                   caf::actor_cast<bridge_actor>(self));
        if (st.phase != bridge_phase::loading)
          finish_stop_if_done(self);
      }
      return promise;
    },
    [self](cursor_atom) {
      auto& st = self->state;
      st.trailing_scheduled = false;
      if (!st.trailing || st.phase != bridge_phase::live)
        return;
      auto at = std::move(*st.trailing);
      st.trailing.reset();
      persist(self, std::move(at));
    },
    [self](retry_atom, uint64_t token) {
      auto& st = self->state;
      if (token != st.subscription || st.stopping)
        return;
      st.resync_scheduled = false;
      resync(self);
    },
    [self](ready_atom) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      if (st.bootstrapped)
        return caf::ok_atom::value;
      auto promise = self->make_response_promise<caf::ok_atom>();
      st.ready_waiters.push_back(promise);
      return promise;
    },
    [self](status_atom) {
      auto& st = self->state;
      return bridge_status{
        to_string(st.phase), st.members.size(), st.epoch,
        st.cursor,           st.steps.size(),   st.last_activity_ms};
    },
  };
}

} // namespace ebridge
