#include "actors/sink.hpp"

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "core/error.hpp"

namespace ebridge {

namespace {

constexpr const char* json_type = "application/json";

caf::error to_error(const write_result& r) {
  return make_error(r.status == store_status::not_found ? ec::not_found
                                                        : ec::store_error,
                    std::string{"stream store: "} + to_string(r.status)
                      + (r.message.empty() ? "" : ": " + r.message));
}

} // namespace

sink_state::~sink_state() {
  for (auto& [id, op] : in_flight)
    if (op.promise.pending())
      op.promise.deliver(make_error(ec::store_error,
                                    "stream store: the sink ended before "
                                    "the store answered"));
}

sink_actor::behavior_type sink(sink_actor::stateful_pointer<sink_state> self,
                               stream_store* store) {
  self->state.store = store;
  // Registers an operation and returns the callback that reports it back.
  auto track = [self](sink_state::pending::step what, std::string stream,
                      caf::response_promise promise) {
    auto id = self->state.next_id++;
    self->state.in_flight.emplace(id,
                                  sink_state::pending{what, std::move(stream),
                                                      std::move(promise)});
    auto handle = caf::actor_cast<sink_actor>(self);
    return [handle, id](write_result r) {
      caf::anon_send(handle, ack_atom::value, id, std::move(r));
    };
  };
  return {
    [self, track](ensure_atom,
                  std::string& stream) -> caf::result<sink_stream_state> {
      auto promise = self->make_response_promise<sink_stream_state>();
      create_request req;
      req.content_type = json_type;
      self->state.store->create(stream, std::move(req),
                                track(sink_state::pending::step::created,
                                      stream, promise));
      return promise;
    },
    [self, track](append_atom, sink_append& a) -> caf::result<uint64_t> {
      auto promise = self->make_response_promise<uint64_t>();
      append_request req;
      req.messages = message_batch{a.events};
      req.producer = std::move(a.producer);
      req.stream_seq = std::move(a.stream_seq);
      self->state.store->append(a.stream, std::move(req),
                                track(sink_state::pending::step::appended,
                                      a.stream, promise));
      return promise;
    },
    [self, track](ack_atom, uint64_t id, write_result& r) {
      auto i = self->state.in_flight.find(id);
      if (i == self->state.in_flight.end())
        return;
      auto op = std::move(i->second);
      self->state.in_flight.erase(i);
      using step = sink_state::pending::step;
      switch (op.what) {
        case step::created:
          if (r.status != store_status::ok
              && r.status != store_status::exists) {
            op.promise.deliver(to_error(r));
            return;
          }
          // Everything written before this bridge's start must be durable
          // before it folds the stream.
          self->state.store->flush(op.stream, track(step::flushed, op.stream,
                                                    std::move(op.promise)));
          return;
        case step::flushed: {
          if (r.status != store_status::ok) {
            op.promise.deliver(to_error(r));
            return;
          }
          sink_stream_state state;
          if (auto info = self->state.store->head(op.stream))
            state.stream_seq = info->stream_seq;
          uint64_t offset = 0;
          for (;;) {
            auto page = self->state.store->read(op.stream, offset);
            if (page.status != store_status::ok) {
              op.promise.deliver(
                make_error(ec::store_error,
                           "stream store: cannot read " + op.stream));
              return;
            }
            for (auto& m : page.chunks)
              state.messages.push_back(std::move(m));
            offset = page.next_offset;
            if (page.up_to_date)
              break;
          }
          op.promise.deliver(std::move(state));
          return;
        }
        case step::appended:
          if (r.status == store_status::ok
              || r.status == store_status::duplicate)
            op.promise.deliver(r.next_offset);
          else
            op.promise.deliver(to_error(r));
          return;
      }
    },
  };
}

} // namespace ebridge
