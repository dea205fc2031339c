#include "core/clock.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>

namespace ebridge {

namespace {

std::mutex replaced_mutex;
std::shared_ptr<std::function<int64_t()>> replaced;
/// Whether a test clock is set: the common case reads no lock.
std::atomic<bool> is_replaced{false};

} // namespace

int64_t wall_ms() {
  if (is_replaced.load(std::memory_order_acquire)) {
    std::shared_ptr<std::function<int64_t()>> clock;
    {
      std::lock_guard<std::mutex> guard{replaced_mutex};
      clock = replaced;
    }
    if (clock)
      return (*clock)();
  }
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
    .count();
}

void set_wall_clock_for_tests(std::function<int64_t()> clock) {
  std::lock_guard<std::mutex> guard{replaced_mutex};
  if (clock)
    replaced = std::make_shared<std::function<int64_t()>>(std::move(clock));
  else
    replaced.reset();
  is_replaced.store(replaced != nullptr, std::memory_order_release);
}

} // namespace ebridge
