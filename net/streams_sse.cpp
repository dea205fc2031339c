#include "net/streams_api.hpp"

#include <algorithm>
#include <mutex>
#include <utility>

#include "core/clock.hpp"
#include "net/ds_protocol.hpp"
#include "net/stream_http.hpp"

// Server-sent events: each connection catches up on its own, then joins the
// hub of its stream, which reads and encodes each new batch once for every
// follower.

namespace ebridge {

using stream_http::jitter;
using stream_http::join;
using stream_http::make_response;
using stream_http::not_found;

/// One SSE connection: catches up from its offset on its own, then follows
/// the tail as a member of the stream's hub, one data event and one control
/// event per batch.
struct streams_api::sse_session
  : std::enable_shared_from_this<streams_api::sse_session> {
  streams_api* api;
  std::string name;
  std::string cursor_param;
  uint64_t position;
  bool from_now;
  bool json = false;
  bool text = false;
  std::shared_ptr<http_stream> out;
  std::mutex mtx;
  bool finished = false;
  bool sent_any = false;
  bool in_hub = false; // guarded by the lock of its stream's hub
  std::chrono::steady_clock::time_point last_write;
  std::shared_ptr<io_runtime::timer> keepalive;
  std::shared_ptr<io_runtime::timer> deadline;

  std::string cursor() {
    return ds::next_cursor(wall_ms(),
                           cursor_param.empty() ? nullptr : &cursor_param,
                           jitter());
  }

  std::string control(uint64_t offset, bool up_to_date, bool closed) {
    std::string payload = "{\"streamNextOffset\":\"" + ds::format_offset(offset)
                          + "\"";
    if (closed) {
      payload += ",\"streamClosed\":true";
    } else {
      payload += ",\"streamCursor\":\"" + cursor() + "\"";
      if (up_to_date)
        payload += ",\"upToDate\":true";
    }
    payload += '}';
    std::string event;
    ds::append_sse_event(event, "control", payload);
    return event;
  }

  /// The data event of a batch in this session's encoding.
  std::string data_event(const read_result& r) const {
    std::string event;
    if (json) {
      ds::append_sse_event(event, "data", join(r, true));
      return event;
    }
    std::string bytes;
    for (auto& c : r.chunks)
      bytes += c;
    ds::append_sse_event(event, "data", text ? bytes : ds::base64(bytes));
    return event;
  }

  void write(std::string events, bool here = false) {
    if (here)
      out->write_here(std::move(events));
    else
      out->write(std::move(events));
    last_write = std::chrono::steady_clock::now();
  }

  void start() {
    auto self = shared_from_this();
    out->on_close([self] { self->stop(false); });
    // The timers hold the session weakly: the session holds them, and a
    // timer that never fires (the io threads stopped first) must not keep
    // both alive for ever.
    std::weak_ptr<sse_session> weak = self;
    deadline = api->io_.after(api->cfg_.sse_max, [weak] {
      if (auto s = weak.lock())
        s->stop(true);
    });
    last_write = std::chrono::steady_clock::now();
    schedule_keepalive(api->cfg_.sse_keepalive);
    pump();
  }

  /// Ends the connection (when `finish`) and releases everything.
  void stop(bool finish) {
    std::shared_ptr<http_stream> stream;
    {
      std::lock_guard<std::mutex> guard{mtx};
      if (finished)
        return;
      finished = true;
      stream = std::move(out);
      if (keepalive)
        keepalive->cancel();
      if (deadline)
        deadline->cancel();
    }
    api->hub_leave(shared_from_this());
    if (finish && stream)
      stream->finish();
  }

  /// sent; gone (finished); elsewhere (not at the hub's position); lagging
  /// (its connection still holds more than `sse_max_queued`: it leaves the
  /// hub and catches up on its own once that went out).
  enum class delivery { sent, gone, elsewhere, lagging };

  /// Called by the hub with a batch read at `from` (the hub's lock held); sent
  /// from this thread when `here`.
  delivery deliver(uint64_t from, const read_result& r, const std::string& data,
                   bool here) {
    std::lock_guard<std::mutex> guard{mtx};
    if (finished)
      return delivery::gone;
    if (position != from)
      return delivery::elsewhere; // never expected: it catches up alone
    if (out->queued() > api->cfg_.sse_max_queued)
      return delivery::lagging;
    position = r.next_offset;
    sent_any = true;
    write(data + control(r.next_offset, r.up_to_date, r.closed), here);
    return delivery::sent;
  }

  /// Catches up once what is queued went out.
  void pump_when_drained() {
    std::shared_ptr<http_stream> stream;
    {
      std::lock_guard<std::mutex> guard{mtx};
      if (finished)
        return;
      stream = out;
    }
    auto self = shared_from_this();
    stream->when_drained([self] { self->pump(); });
  }

  /// Sends the next page from the position; once it went out, the next,
  /// up to the tail; then joins the hub. One page at a time is queued, and
  /// read only when the last went out: a slow reader costs a page.
  void pump() {
    std::unique_lock<std::mutex> guard{mtx};
    if (finished)
      return;
    auto r = api->store_.read(name, position);
    if (r.status != store_status::ok) {
      guard.unlock();
      stop(true);
      return;
    }
    if (from_now) {
      // Start at the tail: no history, just where the tail is.
      from_now = false;
      r.chunks.clear();
      r.start_offset = r.next_offset;
    }
    position = r.next_offset;
    if (!r.chunks.empty()) {
      write(data_event(r) + control(r.next_offset, r.up_to_date, r.closed));
      sent_any = true;
      if (r.closed) {
        guard.unlock();
        stop(true);
        return;
      }
      if (!r.up_to_date) {
        guard.unlock();
        pump_when_drained();
        return;
      }
    } else if (r.closed) {
      write(control(r.next_offset, true, true));
      guard.unlock();
      stop(true);
      return;
    } else if (!sent_any) {
      write(control(r.next_offset, true, false));
      sent_any = true;
    }
    guard.unlock();
    api->hub_join(shared_from_this());
  }

  /// One keep-alive control event when nothing was written for the whole
  /// interval; one timer per interval, not one per event.
  void schedule_keepalive(std::chrono::milliseconds delay) {
    std::weak_ptr<sse_session> weak = shared_from_this();
    keepalive = api->io_.after(delay, [weak] {
      auto self = weak.lock();
      if (!self)
        return;
      std::lock_guard<std::mutex> guard{self->mtx};
      if (self->finished)
        return;
      auto every = self->api->cfg_.sse_keepalive;
      auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - self->last_write);
      auto next = every;
      if (idle + std::chrono::milliseconds{5} >= every)
        self->write(self->control(self->position, true, false));
      else
        next = every - idle;
      self->api->io_.post([self, next] {
        std::lock_guard<std::mutex> g{self->mtx};
        if (!self->finished)
          self->schedule_keepalive(next);
      });
    });
  }
};

/// The sessions that follow one stream's tail at the same position.
struct streams_api::sse_hub {
  std::string name;
  std::mutex mtx;    // guards everything below
  bool dead = false; // out of the map: a join finds the next one
  uint64_t position = 0;
  bool armed = false;   // a store waiter is set or its wake-up is on its way
  bool reading = false; // a wake-up reads its next batch (without the lock)
  uint64_t token = 0;   // the store waiter's token, 0 when it already ran
  std::vector<std::shared_ptr<sse_session>> members;
};

void streams_api::hub_arm(const std::shared_ptr<sse_hub>& hub) {
  // The hub's lock held. The callback only posts, so it may run inside
  // wait().
  hub->armed = true;
  hub->token = store_.wait(hub->name, hub->position, [this, hub] {
    io_.post([this, hub] { hub_wake(hub); });
  });
}

std::shared_ptr<streams_api::sse_hub>
streams_api::hub_of(const std::string& name, bool create) {
  std::lock_guard<std::mutex> guard{hubs_mtx_};
  auto i = hubs_.find(name);
  if (i != hubs_.end())
    return i->second;
  if (!create)
    return nullptr;
  auto hub = std::make_shared<sse_hub>();
  hub->name = name;
  hubs_.emplace(name, hub);
  return hub;
}

void streams_api::hub_retire(const std::shared_ptr<sse_hub>& hub) {
  // The hub's lock held; the map's lock is taken after it, never before.
  hub->dead = true;
  std::lock_guard<std::mutex> guard{hubs_mtx_};
  auto i = hubs_.find(hub->name);
  if (i != hubs_.end() && i->second == hub)
    hubs_.erase(i);
}

void streams_api::hub_join(const std::shared_ptr<sse_session>& session) {
  bool alone = false;
  for (;;) {
    auto hub = hub_of(session->name, true);
    std::lock_guard<std::mutex> h{hub->mtx};
    if (hub->dead)
      continue; // emptied meanwhile: the next lookup makes a new one
    std::lock_guard<std::mutex> s{session->mtx};
    if (session->finished) {
      // Not to leave a hub made for it behind.
      if (hub->members.empty() && !hub->armed && !hub->reading)
        hub_retire(hub);
      return;
    }
    if (hub->members.empty()) {
      hub->position = session->position;
    } else if (hub->position != session->position) {
      // The hub moved on while this session caught up: catch up again.
      alone = true;
    }
    if (!alone) {
      session->in_hub = true;
      hub->members.push_back(session);
      if (!hub->armed && !hub->reading)
        hub_arm(hub);
    }
    break;
  }
  if (alone)
    io_.post([session] { session->pump(); });
}

void streams_api::hub_leave(const std::shared_ptr<sse_session>& session) {
  uint64_t cancel = 0;
  for (;;) {
    auto hub = hub_of(session->name, false);
    if (!hub)
      return;
    std::lock_guard<std::mutex> h{hub->mtx};
    if (hub->dead)
      continue;
    if (!session->in_hub)
      return;
    session->in_hub = false;
    auto& m = hub->members;
    m.erase(std::remove(m.begin(), m.end(), session), m.end());
    if (m.empty()) {
      cancel = hub->token;
      hub_retire(hub);
    }
    break;
  }
  if (cancel != 0)
    store_.cancel_wait(session->name, cancel);
}

void streams_api::hub_wake(const std::shared_ptr<sse_hub>& hub) {
  std::vector<std::shared_ptr<sse_session>> to_stop;
  std::vector<std::shared_ptr<sse_session>> to_pump;
  std::vector<std::shared_ptr<sse_session>> lagging;
  // Whether the hub still follows its stream (its lock held): everyone may
  // have left meanwhile; an empty one leaves the map.
  auto followed = [this, &hub] {
    if (hub->dead)
      return false;
    if (hub->members.empty()) {
      hub_retire(hub);
      return false;
    }
    return true;
  };
  uint64_t from = 0;
  {
    std::lock_guard<std::mutex> guard{hub->mtx};
    hub->armed = false;
    hub->token = 0;
    if (!followed())
      return;
    hub->reading = true; // a join meanwhile does not arm a second wake-up
    from = hub->position;
  }
  // The disk read runs without even this stream's lock.
  auto r = store_.read(hub->name, from);
  {
    std::lock_guard<std::mutex> guard{hub->mtx};
    hub->reading = false;
    if (!followed())
      return;
    if (r.status == store_status::ok && r.chunks.empty() && !r.closed) {
      hub_arm(hub); // woken without news
      return;
    }
    if (cfg_.fan_out_hook)
      cfg_.fan_out_hook(hub->name);
    auto members = std::exchange(hub->members, {});
    for (auto& m : members)
      m->in_hub = false;
    if (r.status != store_status::ok) {
      to_stop = std::move(members);
    } else {
      bool keep = r.up_to_date && !r.closed;
      // One reader is written from this thread; many are spread over the
      // io threads.
      bool here = members.size() == 1;
      // One encoding per kind of session (JSON, text, base64).
      std::string encoded[3];
      for (auto& m : members) {
        int kind = m->json ? 0 : m->text ? 1 : 2;
        if (encoded[kind].empty() && !r.chunks.empty())
          encoded[kind] = m->data_event(r);
        auto got = m->deliver(hub->position, r, encoded[kind], here);
        if (got == sse_session::delivery::gone)
          continue;
        if (got == sse_session::delivery::lagging) {
          lagging.push_back(m);
          continue;
        }
        if (got == sse_session::delivery::elsewhere || (!keep && !r.closed)) {
          to_pump.push_back(m);
        } else if (r.closed) {
          to_stop.push_back(m);
        } else {
          m->in_hub = true;
          hub->members.push_back(m);
        }
      }
    }
    if (hub->members.empty()) {
      hub_retire(hub);
    } else {
      hub->position = r.next_offset;
      hub_arm(hub);
    }
  }
  for (auto& m : to_stop)
    m->stop(true);
  for (auto& m : to_pump)
    io_.post([m] { m->pump(); });
  for (auto& m : lagging)
    m->pump_when_drained();
}

void streams_api::sse(const http_request& req, const std::string& name,
                      uint64_t position, bool from_now,
                      http_responder& respond) {
  auto info = store_.head(name);
  if (!info) {
    respond(not_found(name));
    return;
  }
  auto session = std::make_shared<sse_session>();
  session->api = this;
  session->name = name;
  session->position = position;
  session->from_now = from_now;
  session->json = ds::is_json(info->content_type);
  session->text = ds::is_text(info->content_type);
  if (auto query = ds::parse_query(req.target)) {
    if (auto i = query->find("cursor"); i != query->end())
      session->cursor_param = i->second;
  }
  auto res = make_response(200);
  res.set("Content-Type", "text/event-stream");
  res.set("Cache-Control", "no-cache");
  if (!session->text)
    res.set("Stream-SSE-Data-Encoding", "base64");
  res.stream = [session](std::shared_ptr<http_stream> out) {
    session->out = std::move(out);
    session->start();
  };
  respond(std::move(res));
}

} // namespace ebridge
