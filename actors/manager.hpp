#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/response_promise.hpp>

#include "actors/actors.hpp"
#include "actors/bridge.hpp"

namespace ebridge {

struct manager_config {
  source_actor source;
  sink_actor sink;
  registry_actor registry;
  /// How often idle bridges are collected, and after how long idle.
  std::chrono::milliseconds sweep_interval{5 * 60 * 1000};
  std::chrono::milliseconds idle_ttl{15 * 60 * 1000};
  /// Longest wait of a register for its bridge's first bootstrap.
  std::chrono::milliseconds register_timeout{10000};
  /// Restart backoff of bridges that die: first delay and cap.
  std::chrono::milliseconds restart_initial{200};
  std::chrono::milliseconds restart_max{30000};
  /// Passed on to every bridge.
  std::chrono::milliseconds request_timeout{30000};
  std::chrono::milliseconds cursor_interval{1000};
};

struct manager_state {
  using key = std::pair<std::string, std::string>; // (tenant, ref)

  struct entry {
    std::string tags;
    /// Empty while a restart waits for its backoff.
    bridge_actor bridge;
    /// Deaths since the bridge last reached live.
    int deaths = 0;
    /// Resumed at start with a cursor, and not dead since: the source may
    /// hold its feed for it.
    bool resuming = false;
  };

  manager_config cfg;
  std::map<key, entry> bridges;
  /// How many entries are `resuming` (what the source last heard).
  uint64_t resuming = 0;
  /// Open reads per bridge: a bridge with readers is never collected.
  std::map<key, int> readers;
  bool sweeping = false;

  /// The bridge for `k`, spawned (and monitored) if it does not run;
  /// `resume` goes to a bridge spawned now.
  bridge_actor& ensure(caf::local_actor* self, const key& k,
                       const std::string& tags,
                       std::shared_ptr<const bridge_resume> resume = nullptr);

  static inline const char* name = "manager";
};

/// The manager: registers views, runs one bridge per (tenant, ref), resumes
/// every persisted bridge at start, counts readers, collects idle bridges
/// and restarts bridges that die, with backoff.
manager_actor::behavior_type
manager(manager_actor::stateful_pointer<manager_state> self,
        manager_config cfg);

} // namespace ebridge
