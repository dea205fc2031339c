#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <caf/actor_clock.hpp>

#include "actors/actors.hpp"
#include "actors/source_logic.hpp"
#include "storage/replication.hpp"

namespace ebridge {

struct source_state : source_output {
  source_config cfg;
  std::shared_ptr<replication_reader> reader;
  /// Takes snapshots and moves idle cursors: blocking SQL, detached.
  caf::actor snapshotter;
  std::unique_ptr<source_logic> logic;
  /// The subscribers' bridges by the ids the logic knows them by, and each
  /// bridge's id (a bridge has one subscription at a time).
  std::map<uint64_t, bridge_actor> bridges;
  std::map<caf::actor_addr, uint64_t> by_bridge;
  uint64_t next_id = 1;
  /// When a held feed starts anyway.
  caf::actor_clock::time_point hold_until;
  /// Ticks since the last idle check, and since the last confirm.
  int ticks = 0;
  int confirm_ticks = 0;
  int stall_ticks = 0;
  /// Since when the started feed is away (connecting or reconnecting), and
  /// the last reason it gave; none while it is connected.
  std::optional<caf::actor_clock::time_point> away_since;
  std::string away_reason;
  source_actor::pointer self = nullptr;

  /// Forgets a bridge's subscription.
  void drop(const caf::actor_addr& bridge);

  // source_output: each decision becomes a message.
  void batch(uint64_t id, change_batch batch) override;
  void up_to_date(uint64_t id, up_to_date_msg msg) override;
  void refetch(uint64_t id, uint64_t subscription) override;
  void failed(uint64_t id, uint64_t subscription, std::string why) override;
  void take_snapshot(uint64_t id, const std::string& tenant,
                     const std::string& tags_json) override;
  void start_feed(const std::string& why) override;
  void check_table() override;

  static inline const char* name = "source";
};

/// The built-in change source: Postgres logical replication, routed through
/// a tag index to the bridges whose views a change enters, stays in or
/// leaves; one batch per transaction per bridge (the rules live in
/// `source_logic`; this actor owns the reader thread, the SQL worker and
/// the timers). Bootstraps take a snapshot (REPEATABLE READ with
/// pg_current_snapshot()) while the others stay live.
source_actor::behavior_type
source(source_actor::stateful_pointer<source_state> self, source_config cfg);

} // namespace ebridge
