#include "core/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>

#include "core/clock.hpp"
#include "core/member.hpp"

namespace ebridge {

const char* to_string(log_level level) {
  switch (level) {
    case log_level::trace:
      return "trace";
    case log_level::debug:
      return "debug";
    case log_level::info:
      return "info";
    case log_level::warn:
      return "warn";
    case log_level::error:
      return "error";
    case log_level::off:
      return "off";
  }
  return "unknown";
}

bool from_string(std::string_view text, log_level& result) {
  for (auto level : {log_level::trace, log_level::debug, log_level::info,
                     log_level::warn, log_level::error, log_level::off}) {
    if (text == to_string(level)) {
      result = level;
      return true;
    }
  }
  return false;
}

namespace log {

namespace {

std::atomic<int> current_level{static_cast<int>(log_level::info)};
std::mutex sink_mutex;
std::string* test_sink = nullptr;

bool needs_quotes(std::string_view value) {
  if (value.empty())
    return true;
  for (char c : value)
    if (c == ' ' || c == '"' || c == '='
        || static_cast<unsigned char>(c) < 0x20)
      return true;
  return false;
}

void append_value(std::string& out, std::string_view value) {
  if (!needs_quotes(value)) {
    out += value;
    return;
  }
  out += '"';
  for (char c : value) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out += '?';
        else
          out += c;
    }
  }
  out += '"';
}

} // namespace

void set_level(log_level level) {
  current_level = static_cast<int>(level);
}

log_level level() {
  return static_cast<log_level>(current_level.load());
}

bool enabled(log_level level) {
  return level != log_level::off
         && static_cast<int>(level) >= current_level.load();
}

void set_sink(std::string* sink) {
  std::lock_guard<std::mutex> guard{sink_mutex};
  test_sink = sink;
}

std::string format_fields(std::string_view component, std::string_view event,
                          std::initializer_list<log_field> fields) {
  std::string line;
  line += "component=";
  append_value(line, component);
  line += " event=";
  append_value(line, event);
  for (auto& [key, value] : fields) {
    line += ' ';
    line += key;
    line += '=';
    append_value(line, value);
  }
  return line;
}

void write(log_level level, std::string_view component, std::string_view event,
           std::initializer_list<log_field> fields) {
  std::string line = "ts=";
  line += iso8601_utc_ms(wall_ms());
  line += " level=";
  line += to_string(level);
  line += ' ';
  line += format_fields(component, event, fields);
  line += '\n';
  std::lock_guard<std::mutex> guard{sink_mutex};
  if (test_sink != nullptr) {
    *test_sink += line;
    return;
  }
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

} // namespace log
} // namespace ebridge
