#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

// The one home of every default that both an option (config/options.hpp)
// and a component's config struct carry: the option's default is what the
// component gets when no one sets it.

namespace ebridge::defaults {

using std::chrono::milliseconds;

// -- HTTP ---------------------------------------------------------------------

/// How long a long-poll read waits for data before answering 204.
inline constexpr milliseconds long_poll_timeout{20000};
/// The largest request body (413 beyond).
inline constexpr size_t http_max_body = size_t{32} << 20;

// -- views --------------------------------------------------------------------

/// How often idle views are collected, and after how long unread.
inline constexpr milliseconds gc_sweep_interval{5 * 60 * 1000};
inline constexpr milliseconds gc_idle_ttl{15 * 60 * 1000};
/// The longest wait of a register for its view's first snapshot.
inline constexpr milliseconds register_timeout{10000};
/// The longest wait for one registry operation.
inline constexpr milliseconds registry_timeout{5000};
inline constexpr size_t registry_pool_size = 2;

// -- change source ------------------------------------------------------------

inline constexpr const char* slot = "ebridge";
inline constexpr const char* publication = "ebridge_entities";
/// How often the idle check runs.
inline constexpr milliseconds idle_interval{30000};
/// WAL a view may hold back before it must resync.
inline constexpr uint64_t max_lag = uint64_t{1} << 30;
/// WAL an idle view may hold back before its cursor is moved.
inline constexpr uint64_t idle_lag = uint64_t{64} << 20;
/// How long the feed waits at start for the views resumed with a cursor.
inline constexpr milliseconds resume_wait{60000};
/// How long the feed may be away (connecting or reconnecting) before the
/// node reports not ready.
inline constexpr milliseconds feed_down_after{30000};

} // namespace ebridge::defaults
