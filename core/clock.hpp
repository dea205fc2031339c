#pragma once

#include <cstdint>
#include <functional>

namespace ebridge {

// Time in ebridge: actors time their waits with their own clock
// (`self->clock()`, which the test coordinator steps); threads that wait on
// real I/O (the store's writers, the replication reader, reconnect backoff)
// use steady_clock; and every wall-clock reading (activity times in the
// registry, event timestamps, stream TTLs, log lines) comes from `wall_ms`,
// which tests can replace.

/// Milliseconds since the Unix epoch.
int64_t wall_ms();

/// Replaces the wall clock (tests); nullptr restores the system clock.
void set_wall_clock_for_tests(std::function<int64_t()> clock);

} // namespace ebridge
