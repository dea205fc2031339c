#pragma once

#include <string_view>

namespace ebridge {

/// Asks the scheduler to run the calling thread before threads of the
/// default priority: `nice` as in setpriority(2), lower is sooner. Needs
/// root or CAP_SYS_NICE; without it the thread keeps its priority (logged at
/// debug level under `component`) and only latency tails suffer.
void raise_thread_priority(int nice, std::string_view component);

} // namespace ebridge
