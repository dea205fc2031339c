#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "config/defaults.hpp"
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
  size_t registry_pool_size = defaults::registry_pool_size;
  std::chrono::milliseconds registry_timeout = defaults::registry_timeout;
  std::chrono::milliseconds long_poll_timeout = defaults::long_poll_timeout;
  size_t http_max_body = defaults::http_max_body;
  /// Most stream logs open at once; 0: half the descriptor limit.
  size_t store_max_open_files = 0;
  size_t http_threads = 2;
  std::chrono::milliseconds gc_sweep_interval = defaults::gc_sweep_interval;
  std::chrono::milliseconds gc_idle_ttl = defaults::gc_idle_ttl;
  std::chrono::milliseconds register_timeout = defaults::register_timeout;
  std::string source_slot = defaults::slot;
  std::string source_publication = defaults::publication;
  std::chrono::milliseconds source_idle_interval = defaults::idle_interval;
  uint64_t source_max_lag = defaults::max_lag;
  uint64_t source_idle_lag = defaults::idle_lag;
  std::chrono::milliseconds source_resume_wait = defaults::resume_wait;
  std::chrono::milliseconds source_down_after = defaults::feed_down_after;
  /// Origins whose pages may call this node (CORS); empty: none.
  std::vector<std::string> http_cors_origins;
  /// The tenant of every request while no authentication names one.
  std::string tenant_default = "default";
  /// Serve on a non-loopback address without authentication.
  bool auth_insecure = false;
  /// How large a registered view's tags may be.
  size_t tags_max_pairs = 64;
  size_t tags_max_key_bytes = 256;
  size_t tags_max_value_bytes = 1024;
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
