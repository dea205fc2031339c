#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include <caf/expected.hpp>

#include "actors/actors.hpp"
#include "storage/registry_store.hpp"

namespace caf {
class actor_system;
} // namespace caf

namespace ebridge {

/// Makes one registry worker. The registry calls it for every slot of its
/// pool and again to replace a worker that died.
using registry_worker_factory
  = std::function<registry_actor(caf::actor_system&)>;

struct registry_state {
  /// The pool, in round-robin order.
  std::vector<registry_actor> workers;
  size_t next = 0;
  registry_worker_factory make_worker;

  /// A cursor write waiting for its worker, and what becomes of its answer
  /// (whether the row took it, or an error).
  struct queued_cursor {
    cursor_write write;
    std::function<void(caf::expected<bool>)> done;
  };

  /// Cursor writes sent to a worker together.
  struct cursor_batch {
    std::vector<queued_cursor> writes;
    /// The lane's generation when it went.
    uint64_t generation = 0;
  };

  /// One worker's cursor writes. Every live bridge writes its cursor about
  /// once a second, and they come in bursts: a write that finds its worker
  /// busy with earlier ones waits, and all that waited go in one statement
  /// when those finish (one commit for the lot, not one each).
  struct cursor_lane {
    /// Batches sent and not answered yet.
    std::vector<std::shared_ptr<cursor_batch>> in_flight;
    /// Counts the workers this lane had: a batch sent to an earlier one no
    /// longer holds back the queue.
    uint64_t generation = 0;
    /// Its worker died with a batch unrun: the queue waits for the
    /// successor.
    bool orphaned = false;
    std::vector<queued_cursor> queued;
    /// The bridges of `queued` (tenant, NUL, ref): a bridge's second write
    /// goes in a later statement than its first.
    std::unordered_set<std::string> keys;

    /// A batch sent to the current worker is not answered yet.
    bool busy() const {
      for (auto& b : in_flight)
        if (b->generation == generation)
          return true;
      return false;
    }
  };

  /// Parallel to `workers`.
  std::vector<cursor_lane> cursor_lanes;

  /// Answers the writes queued or in flight with an error: the registry
  /// ends.
  ~registry_state();

  /// The worker for a request about many bridges: the next in turn.
  const registry_actor& pick() {
    next = (next + 1) % workers.size();
    return workers[next];
  }

  /// The index of the worker for a request about one bridge: always the
  /// same one, so that one bridge's writes (cursor, clear) run in the order
  /// sent.
  size_t slot(const std::string& tenant, const std::string& ref) const {
    std::hash<std::string> hash;
    return (hash(tenant) * 31 + hash(ref)) % workers.size();
  }

  static inline const char* name = "registry";
};

/// The registry: forwards every request to a worker of its pool (the worker
/// answers the requester directly) and replaces workers that die.
registry_actor::behavior_type
registry(registry_actor::stateful_pointer<registry_state> self,
         size_t pool_size, registry_worker_factory make_worker);

/// A registry worker: runs the backend's operations one at a time.
registry_actor::behavior_type
registry_worker(registry_actor::pointer self,
                std::shared_ptr<registry_backend> backend);

/// Workers on Postgres, each a detached actor with its own connection.
registry_worker_factory postgres_registry_workers(std::string postgres_url);

} // namespace ebridge
