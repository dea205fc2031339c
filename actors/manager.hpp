#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor_clock.hpp>
#include <caf/response_promise.hpp>
#include <caf/typed_response_promise.hpp>

#include "actors/actors.hpp"
#include "actors/bridge.hpp"
#include "config/defaults.hpp"

namespace ebridge {

struct manager_config {
  source_actor source;
  sink_actor sink;
  registry_actor registry;
  /// How often idle bridges are collected, and after how long idle.
  std::chrono::milliseconds sweep_interval = defaults::gc_sweep_interval;
  std::chrono::milliseconds idle_ttl = defaults::gc_idle_ttl;
  /// Longest wait of a register for its bridge's first bootstrap.
  std::chrono::milliseconds register_timeout = defaults::register_timeout;
  /// Restart backoff of bridges that die: first delay and cap.
  std::chrono::milliseconds restart_initial{200};
  std::chrono::milliseconds restart_max{30000};
  /// A bridge live this long has recovered: its next death restarts it
  /// after restart_initial again.
  std::chrono::milliseconds stable_after{60000};
  /// Passed on to every bridge.
  std::chrono::milliseconds request_timeout{30000};
  std::chrono::milliseconds cursor_interval{1000};
  std::chrono::milliseconds touch_interval{60000};
};

struct manager_state {
  using key = std::pair<std::string, std::string>; // (tenant, ref)

  struct entry {
    std::string tags;
    /// Empty while a restart waits for its backoff.
    bridge_actor bridge;
    /// Deaths since the bridge last stayed live for `stable_after`.
    int deaths = 0;
    /// When the running bridge reached live (it answered `ready`).
    std::optional<caf::actor_clock::time_point> live_since;
    /// Resumed at start with a cursor, and not dead since: the source may
    /// hold its feed for it.
    bool resuming = false;
    /// The GC is stopping its bridge (then deletes the row if still idle
    /// since `retire_cutoff`).
    bool retiring = false;
    int64_t retire_cutoff = 0;
    /// Registers that came while it was retiring: answered once the view
    /// runs again.
    std::vector<
      std::pair<caf::typed_response_promise<registration>, registration>>
      revived;
  };

  manager_config cfg;
  std::map<key, entry> bridges;
  /// How many entries are `resuming` (what the source last heard).
  uint64_t resuming = 0;
  /// Open reads per bridge: a bridge with readers is never collected.
  std::map<key, int> readers;
  /// The bridges running, shared with the manager's last words: however
  /// the manager ends, they end with it.
  std::shared_ptr<std::set<caf::actor_addr>> running
    = std::make_shared<std::set<caf::actor_addr>>();
  bool sweeping = false;

  static inline const char* name = "manager";
};

/// The manager: registers views, runs one bridge per (tenant, ref), resumes
/// every persisted bridge at start, counts readers, collects idle bridges
/// and restarts bridges that die, with backoff.
manager_actor::behavior_type
manager(manager_actor::stateful_pointer<manager_state> self,
        manager_config cfg);

} // namespace ebridge
