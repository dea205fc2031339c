#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace ebridge {

/// Severity of a log line; `off` silences the logger.
enum class log_level : int { trace, debug, info, warn, error, off };

const char* to_string(log_level level);

/// Parses "trace", "debug", "info", "warn", "error" or "off".
bool from_string(std::string_view text, log_level& result);

/// One key=value field of a log line.
using log_field = std::pair<std::string_view, std::string>;

/// A small leveled logger (Debian's CAF compiles its own logging out): one
/// line per event, `ts=… level=… component=… event=… key=value …`, values
/// quoted when they contain spaces, quotes or `=`. Thread-safe; writes to
/// stderr unless redirected.
namespace log {

void set_level(log_level level);

log_level level();

bool enabled(log_level level);

/// Redirects output (for tests); `nullptr` restores stderr.
void set_sink(std::string* sink);

void write(log_level level, std::string_view component, std::string_view event,
           std::initializer_list<log_field> fields = {});

/// Renders one line without the timestamp (exposed for tests).
std::string format_fields(std::string_view component, std::string_view event,
                          std::initializer_list<log_field> fields);

inline void debug(std::string_view component, std::string_view event,
                  std::initializer_list<log_field> fields = {}) {
  if (enabled(log_level::debug))
    write(log_level::debug, component, event, fields);
}

inline void info(std::string_view component, std::string_view event,
                 std::initializer_list<log_field> fields = {}) {
  if (enabled(log_level::info))
    write(log_level::info, component, event, fields);
}

inline void warn(std::string_view component, std::string_view event,
                 std::initializer_list<log_field> fields = {}) {
  if (enabled(log_level::warn))
    write(log_level::warn, component, event, fields);
}

inline void error(std::string_view component, std::string_view event,
                  std::initializer_list<log_field> fields = {}) {
  if (enabled(log_level::error))
    write(log_level::error, component, event, fields);
}

} // namespace log
} // namespace ebridge
