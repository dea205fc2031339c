#include "core/thread.hpp"

#include <cerrno>
#include <cstring>
#include <string>

#include <sys/resource.h>
#include <unistd.h>

#include "core/log.hpp"

namespace ebridge {

void raise_thread_priority(int nice, std::string_view component) {
  // On Linux a thread id names one thread here, not the whole process.
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), nice) != 0) {
    auto error = errno;
    log::debug(component, "thread keeps its priority",
               {{"nice", std::to_string(nice)},
                {"error", std::strerror(error)}});
  }
}

} // namespace ebridge
