#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "core/log.hpp"

namespace ebridge {

/// A host and port to listen on.
struct listen_address {
  std::string host;
  uint16_t port = 0;
};

/// Every setting of ebridge. Each has a default, a config-file key, an
/// `EBRIDGE_*` variable and a CLI flag; precedence is
/// defaults < config file < environment < command line.
struct options {
  std::string postgres_url = "postgresql://127.0.0.1:5432/ebridge";
  listen_address http_listen{"127.0.0.1", 8080};
  std::string data_dir = "ebridge-data";
  log_level log = log_level::info;
  size_t max_threads = 2;
  size_t registry_pool_size = 2;
  std::chrono::milliseconds registry_timeout{5000};
  std::chrono::milliseconds long_poll_timeout{20000};
  size_t http_max_body = 32 << 20;
  size_t http_threads = 2;
  std::chrono::milliseconds gc_sweep_interval{5 * 60 * 1000};
  std::chrono::milliseconds gc_idle_ttl{15 * 60 * 1000};
  std::chrono::milliseconds register_timeout{10000};
  std::string source_slot = "ebridge";
  std::string source_publication = "ebridge_entities";
  std::chrono::milliseconds source_idle_interval{30000};
  uint64_t source_max_lag = uint64_t{1} << 30;
  uint64_t source_idle_lag = uint64_t{64} << 20;
  std::chrono::milliseconds source_resume_wait{60000};
  std::string config_file; // empty: no file
};

/// What the command line asks for.
struct invocation {
  options opts;
  /// `serve`, `migrate`, `ref` or empty (help/version).
  std::string command;
  /// Arguments after the command that are not options.
  std::vector<std::string> args;
  bool help = false;
  bool version = false;
  /// Non-fatal findings, such as an unknown `EBRIDGE_*` variable.
  std::vector<std::string> warnings;
};

/// Environment variables as name → value.
using environment = std::map<std::string, std::string>;

/// Reads the process environment.
environment process_environment();

/// Parses arguments (without argv[0]) and environment, reading the config
/// file they name. Any bad value is `ec::invalid_config` with a message that
/// names the option and where its value came from.
caf::expected<invocation> parse_invocation(const std::vector<std::string>& args,
                                           const environment& env);

/// Parses a duration: a non-negative integer and a unit (`ms`, `s`, `m` or
/// `min`, `h`), such as `500ms` or `20s`.
caf::expected<std::chrono::milliseconds> parse_duration(std::string_view text);

/// Parses `HOST:PORT` or `[IPv6]:PORT`.
caf::expected<listen_address> parse_listen_address(std::string_view text);

/// Renders a duration the way `parse_duration` reads it.
std::string to_string(std::chrono::milliseconds value);

/// The text of `ebridge --help`: commands and every option with its default.
std::string help_text();

} // namespace ebridge
