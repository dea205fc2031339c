#include "config/options.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include <libpq-fe.h>

#include "core/error.hpp"
#include "core/identifiers.hpp"

extern char** environ;

namespace ebridge {

namespace {

using setter = std::function<caf::error(options&, std::string_view)>;

struct option_info {
  std::string key; // config-file key and CLI flag name
  std::string help;
  std::function<std::string(const options&)> show; // renders the value
  setter set;
};

std::string env_name(std::string_view key) {
  std::string result = "EBRIDGE_";
  for (char c : key)
    result += (c == '.' || c == '-') ? '_'
                                     : static_cast<char>(std::toupper(
                                       static_cast<unsigned char>(c)));
  return result;
}

caf::expected<uint64_t> parse_unsigned(std::string_view text, uint64_t min,
                                       uint64_t max) {
  if (text.empty() || text.size() > 19
      || !std::all_of(text.begin(), text.end(),
                      [](char c) { return c >= '0' && c <= '9'; }))
    return make_error(ec::invalid_config, "expected a whole number, got \""
                                            + std::string{text} + "\"");
  uint64_t value = std::stoull(std::string{text});
  if (value < min || value > max)
    return make_error(ec::invalid_config,
                      std::to_string(value) + " is out of range "
                        + std::to_string(min) + "-" + std::to_string(max));
  return value;
}

/// A byte size: a whole number with an optional unit (kB, MB, GB, TB in
/// powers of 1024, as Postgres reads them; B for bytes).
caf::expected<uint64_t> parse_size(std::string_view text, uint64_t min,
                                   uint64_t max) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
    ++digits;
  auto unit = text.substr(digits);
  uint64_t scale = 1;
  if (unit == "kB" || unit == "KB" || unit == "KiB")
    scale = uint64_t{1} << 10;
  else if (unit == "MB" || unit == "MiB")
    scale = uint64_t{1} << 20;
  else if (unit == "GB" || unit == "GiB")
    scale = uint64_t{1} << 30;
  else if (unit == "TB" || unit == "TiB")
    scale = uint64_t{1} << 40;
  else if (!unit.empty() && unit != "B")
    return make_error(ec::invalid_config,
                      "expected a size such as 512MB or 1GB, got \""
                        + std::string{text} + "\"");
  auto n = parse_unsigned(text.substr(0, digits), 0, (uint64_t{1} << 62));
  if (!n)
    return make_error(ec::invalid_config,
                      "expected a size such as 512MB or 1GB, got \""
                        + std::string{text} + "\"");
  if (*n > max / scale || *n * scale < min || *n * scale > max)
    return make_error(ec::invalid_config, "\"" + std::string{text}
                                            + "\" is out of range "
                                            + std::to_string(min) + "-"
                                            + std::to_string(max) + " bytes");
  return *n * scale;
}

std::string size_string(uint64_t bytes) {
  const char* units[] = {"TB", "GB", "MB", "kB"};
  for (int i = 0; i < 4; ++i) {
    auto scale = uint64_t{1} << (10 * (4 - i));
    if (bytes != 0 && bytes % scale == 0)
      return std::to_string(bytes / scale) + units[i];
  }
  return std::to_string(bytes) + "B";
}

caf::error check_postgres_url(std::string_view text) {
  if (text.empty())
    return make_error(ec::invalid_config, "must not be empty");
  char* message = nullptr;
  auto* parsed = PQconninfoParse(std::string{text}.c_str(), &message);
  if (parsed == nullptr) {
    std::string reason = message != nullptr ? message : "cannot be parsed";
    PQfreemem(message);
    while (!reason.empty()
           && std::isspace(static_cast<unsigned char>(reason.back())))
      reason.pop_back();
    return make_error(ec::invalid_config,
                      "not a valid connection string: " + reason);
  }
  PQconninfoFree(parsed);
  return caf::none;
}

caf::error set_positive_duration(std::chrono::milliseconds& field,
                                 std::string_view text) {
  auto d = parse_duration(text);
  if (!d)
    return d.error();
  if (d->count() == 0)
    return make_error(ec::invalid_config, "must be positive");
  field = *d;
  return caf::none;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return s;
}

caf::expected<bool> parse_bool(std::string_view text) {
  if (text == "true" || text == "1" || text == "yes" || text == "on")
    return true;
  if (text == "false" || text == "0" || text == "no" || text == "off")
    return false;
  return make_error(ec::invalid_config, "must be true or false");
}

/// An origin as browsers send it: scheme://host[:port], nothing after.
bool is_origin(std::string_view text) {
  auto scheme = text.find("://");
  if (scheme == std::string_view::npos || scheme == 0)
    return false;
  auto rest = text.substr(scheme + 3);
  if (rest.empty() || rest.find_first_of("/?#@ ") != std::string_view::npos)
    return false;
  for (char c : text.substr(0, scheme))
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-'
        && c != '.')
      return false;
  return true;
}

std::string join_list(const std::vector<std::string>& items) {
  std::string out;
  for (auto& item : items)
    out += (out.empty() ? "" : ",") + item;
  return out;
}

const std::vector<option_info>& option_table() {
  static const std::vector<option_info> table = {
    {"config", "config file to read (key = value lines, [section] headers)",
     [](const options& o) {
       return o.config_file.empty() ? "(none)" : o.config_file;
     },
     [](options& o, std::string_view v) -> caf::error {
       if (v.empty())
         return make_error(ec::invalid_config, "must not be empty");
       o.config_file = std::string{v};
       return caf::none;
     }},
    {"postgres.url", "Postgres connection URL or key=value conninfo",
     [](const options& o) { return o.postgres_url; },
     [](options& o, std::string_view v) -> caf::error {
       if (auto err = check_postgres_url(v))
         return err;
       o.postgres_url = std::string{v};
       return caf::none;
     }},
    {"http.listen",
     "HTTP address to listen on, HOST:PORT ([::1]:PORT for IPv6)",
     [](const options& o) {
       auto& a = o.http_listen;
       return (a.host.find(':') != std::string::npos ? "[" + a.host + "]"
                                                     : a.host)
              + ":" + std::to_string(a.port);
     },
     [](options& o, std::string_view v) -> caf::error {
       auto addr = parse_listen_address(v);
       if (!addr)
         return addr.error();
       o.http_listen = std::move(*addr);
       return caf::none;
     }},
    {"http.long-poll-timeout",
     "how long a long-poll read waits for data before answering 204",
     [](const options& o) { return to_string(o.long_poll_timeout); },
     [](options& o, std::string_view v) -> caf::error {
       return set_positive_duration(o.long_poll_timeout, v);
     }},
    {"http.threads", "threads serving HTTP (default: CPU cores)",
     [](const options& o) { return std::to_string(o.http_threads); },
     [](options& o, std::string_view v) -> caf::error {
       auto n = parse_unsigned(v, 1, 64);
       if (!n)
         return n.error();
       o.http_threads = *n;
       return caf::none;
     }},
    {"http.max-body",
     "largest request body in bytes (413 beyond; at most 1 GiB: a log "
     "record's length is 32 bits)",
     [](const options& o) { return std::to_string(o.http_max_body); },
     [](options& o, std::string_view v) -> caf::error {
       auto n = parse_unsigned(v, 1024, uint64_t{1} << 30);
       if (!n)
         return n.error();
       o.http_max_body = *n;
       return caf::none;
     }},
    {"http.cors-origins",
     "origins (scheme://host[:port], comma-separated) whose web pages may "
     "call this node: only they get CORS headers, and a POST, PUT or DELETE "
     "carrying any other Origin is refused with 403 before it changes "
     "anything (default: none)",
     [](const options& o) {
       return o.http_cors_origins.empty() ? "(none)"
                                          : join_list(o.http_cors_origins);
     },
     [](options& o, std::string_view v) -> caf::error {
       std::vector<std::string> origins;
       while (!v.empty()) {
         auto comma = v.find(',');
         auto item = trim(v.substr(0, comma));
         v = comma == std::string_view::npos ? std::string_view{}
                                             : v.substr(comma + 1);
         if (item.empty())
           continue;
         if (!is_origin(item))
           return make_error(ec::invalid_config,
                             "not an origin (scheme://host[:port]): "
                               + std::string{item});
         origins.emplace_back(item);
       }
       o.http_cors_origins = std::move(origins);
       return caf::none;
     }},
    {"tenant.default",
     "the tenant of every view and stream while no authentication names "
     "one",
     [](const options& o) { return o.tenant_default; },
     [](options& o, std::string_view v) -> caf::error {
       if (v.empty() || v.size() > 128
           || v.find_first_of("/\r\n\t ") != std::string_view::npos)
         return make_error(ec::invalid_config,
                           "must be 1 to 128 characters without '/', "
                           "spaces or control characters");
       o.tenant_default = std::string{v};
       return caf::none;
     }},
    {"auth.insecure",
     "serve on an address other than loopback without authentication (there "
     "is none yet: anyone who reaches the port can read and write every "
     "stream); without it, serve refuses such an address",
     [](const options& o) { return o.auth_insecure ? "true" : "false"; },
     [](options& o, std::string_view v) -> caf::error {
       auto b = parse_bool(v);
       if (!b)
         return b.error();
       o.auth_insecure = *b;
       return caf::none;
     }},
    {"tags.max-pairs",
     "most tag pairs a registered view may have (400 past it)",
     [](const options& o) { return std::to_string(o.tags_max_pairs); },
     [](options& o, std::string_view v) -> caf::error {
       auto n = parse_unsigned(v, 1, 100000);
       if (!n)
         return n.error();
       o.tags_max_pairs = *n;
       return caf::none;
     }},
    {"tags.max-key-bytes",
     "longest tag key of a registered view, in bytes (400 past it)",
     [](const options& o) { return std::to_string(o.tags_max_key_bytes); },
     [](options& o, std::string_view v) -> caf::error {
       auto n = parse_unsigned(v, 1, 1 << 20);
       if (!n)
         return n.error();
       o.tags_max_key_bytes = *n;
       return caf::none;
     }},
    {"tags.max-value-bytes",
     "longest tag value of a registered view, in bytes (400 past it)",
     [](const options& o) { return std::to_string(o.tags_max_value_bytes); },
     [](options& o, std::string_view v) -> caf::error {
       auto n = parse_unsigned(v, 1, 1 << 20);
       if (!n)
         return n.error();
       o.tags_max_value_bytes = *n;
       return caf::none;
     }},
    {"store.max-open-files",
     "most stream logs kept open at once; past it the least recently used "
     "idle ones are closed and opened again on use, so the number of streams "
     "is not bounded by the descriptor limit (0: half the process's "
     "descriptor limit)",
     [](const options& o) { return std::to_string(o.store_max_open_files); },
     [](options& o, std::string_view v) -> caf::error {
       auto n = parse_unsigned(v, 0, uint64_t{1} << 30);
       if (!n)
         return n.error();
       o.store_max_open_files = *n;
       return caf::none;
     }},
    {"gc.sweep-interval", "how often idle views are collected",
     [](const options& o) { return to_string(o.gc_sweep_interval); },
     [](options& o, std::string_view v) -> caf::error {
       return set_positive_duration(o.gc_sweep_interval, v);
     }},
    {"gc.idle-ttl",
     "a view unread, unregistered and unreferenced this long is collected",
     [](const options& o) { return to_string(o.gc_idle_ttl); },
     [](options& o, std::string_view v) -> caf::error {
       return set_positive_duration(o.gc_idle_ttl, v);
     }},
    {"bridge.register-timeout",
     "longest wait of a register for its view's first snapshot (then 503)",
     [](const options& o) { return to_string(o.register_timeout); },
     [](options& o, std::string_view v) -> caf::error {
       return set_positive_duration(o.register_timeout, v);
     }},
    {"source.slot", "logical replication slot of this node (a-z, 0-9, _)",
     [](const options& o) { return o.source_slot; },
     [](options& o, std::string_view v) -> caf::error {
       if (!is_feed_name(v))
         return make_error(ec::invalid_config,
                           "expected 1-63 characters of a-z, 0-9 and _");
       o.source_slot = std::string{v};
       return caf::none;
     }},
    {"source.publication", "publication on entities (a-z, 0-9, _)",
     [](const options& o) { return o.source_publication; },
     [](options& o, std::string_view v) -> caf::error {
       if (!is_feed_name(v))
         return make_error(ec::invalid_config,
                           "expected 1-63 characters of a-z, 0-9 and _");
       o.source_publication = std::string{v};
       return caf::none;
     }},
    {"source.idle-interval",
     "how often views that got no change and hold back source.idle-lag of "
     "WAL are moved to the feed's position (so Postgres may release WAL and "
     "restarts resume without a snapshot)",
     [](const options& o) { return to_string(o.source_idle_interval); },
     [](options& o, std::string_view v) -> caf::error {
       return set_positive_duration(o.source_idle_interval, v);
     }},
    {"source.idle-lag",
     "WAL a view that got no change may hold back before the idle check moves "
     "its cursor; Postgres keeps up to this much more WAL, which a restart "
     "replays (0: move at every check; capped at source.max-lag; e.g. 64MB)",
     [](const options& o) { return size_string(o.source_idle_lag); },
     [](options& o, std::string_view v) -> caf::error {
       auto n = parse_size(v, 0, uint64_t{1} << 50);
       if (!n)
         return n.error();
       o.source_idle_lag = *n;
       return caf::none;
     }},
    {"source.resume-wait",
     "at start, the feed waits until every view resumed from the registry "
     "with a cursor has subscribed, so each is served from its cursor "
     "without a resync (one that dies meanwhile is no longer awaited); this "
     "long at most; changes and new registrations wait meanwhile (0: start "
     "at once)",
     [](const options& o) { return to_string(o.source_resume_wait); },
     [](options& o, std::string_view v) -> caf::error {
       auto d = parse_duration(v);
       if (!d)
         return d.error();
       o.source_resume_wait = *d;
       return caf::none;
     }},
    {"source.down-after",
     "how long the change feed may be away (connecting, or reconnecting "
     "after Postgres went away) before /readyz answers 503 with the reason",
     [](const options& o) { return to_string(o.source_down_after); },
     [](options& o, std::string_view v) -> caf::error {
       return set_positive_duration(o.source_down_after, v);
     }},
    {"source.max-lag",
     "WAL a view may hold back before it is forced to resync (e.g. 512MB, "
     "1GB)",
     [](const options& o) { return size_string(o.source_max_lag); },
     [](options& o, std::string_view v) -> caf::error {
       auto n = parse_size(v, uint64_t{1} << 20, uint64_t{1} << 50);
       if (!n)
         return n.error();
       o.source_max_lag = *n;
       return caf::none;
     }},
    {"data-dir", "directory for the stream store (created if missing)",
     [](const options& o) { return o.data_dir; },
     [](options& o, std::string_view v) -> caf::error {
       if (v.empty())
         return make_error(ec::invalid_config, "must not be empty");
       o.data_dir = std::string{v};
       return caf::none;
     }},
    {"log.level",
     "least severe log level shown: trace|debug|info|warn|error|off",
     [](const options& o) { return std::string{to_string(o.log)}; },
     [](options& o, std::string_view v) -> caf::error {
       if (!from_string(v, o.log))
         return make_error(ec::invalid_config,
                           "expected trace, debug, info, warn, error or off, "
                           "got \""
                             + std::string{v} + "\"");
       return caf::none;
     }},
    {"scheduler.max-threads", "actor scheduler threads (default: CPU cores)",
     [](const options& o) { return std::to_string(o.max_threads); },
     [](options& o, std::string_view v) -> caf::error {
       auto n = parse_unsigned(v, 1, 256);
       if (!n)
         return n.error();
       o.max_threads = *n;
       return caf::none;
     }},
    {"registry.pool-size", "Postgres connections of the registry",
     [](const options& o) { return std::to_string(o.registry_pool_size); },
     [](options& o, std::string_view v) -> caf::error {
       auto n = parse_unsigned(v, 1, 64);
       if (!n)
         return n.error();
       o.registry_pool_size = *n;
       return caf::none;
     }},
    {"registry.timeout", "longest wait for one registry operation (e.g. 5s)",
     [](const options& o) { return to_string(o.registry_timeout); },
     [](options& o, std::string_view v) -> caf::error {
       return set_positive_duration(o.registry_timeout, v);
     }},
  };
  return table;
}

const option_info* find_option(std::string_view key) {
  for (auto& info : option_table())
    if (info.key == key)
      return &info;
  return nullptr;
}

caf::error apply(options& opts, std::string_view key, std::string_view value,
                 const std::string& where) {
  auto* info = find_option(key);
  if (info == nullptr)
    return make_error(ec::invalid_config, "unknown option " + std::string{key}
                                            + " (" + where
                                            + "); see ebridge --help");
  if (auto err = info->set(opts, value))
    return make_error(ec::invalid_config, "invalid value for option "
                                            + info->key + " (" + where
                                            + "): " + error_message(err));
  return caf::none;
}

caf::error read_config_file(options& opts, const std::string& path) {
  std::ifstream in{path};
  if (!in)
    return make_error(ec::invalid_config,
                      "cannot read config file " + path
                        + " (option config): " + std::strerror(errno));
  std::string line;
  std::string section;
  size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    auto where = "config file " + path + ":" + std::to_string(number);
    auto text = trim(line);
    if (text.empty() || text.front() == '#' || text.front() == ';')
      continue;
    if (text.front() == '[') {
      if (text.back() != ']' || text.size() < 3)
        return make_error(ec::invalid_config,
                          "malformed section header in " + where);
      section = std::string{trim(text.substr(1, text.size() - 2))};
      continue;
    }
    auto eq = text.find('=');
    if (eq == std::string_view::npos)
      return make_error(ec::invalid_config, "expected key = value in " + where);
    auto key = std::string{trim(text.substr(0, eq))};
    auto value = trim(text.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
      value = value.substr(1, value.size() - 2);
    if (!section.empty())
      key = section + "." + key;
    if (key == "config")
      return make_error(ec::invalid_config,
                        "option config cannot be set in a config file (" + where
                          + ")");
    if (auto err = apply(opts, key, value, where))
      return err;
  }
  return caf::none;
}

} // namespace

environment process_environment() {
  environment result;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text{*entry};
    auto eq = text.find('=');
    if (eq != std::string_view::npos)
      result.emplace(std::string{text.substr(0, eq)},
                     std::string{text.substr(eq + 1)});
  }
  return result;
}

caf::expected<std::chrono::milliseconds> parse_duration(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
    ++digits;
  auto unit = text.substr(digits);
  auto bad = [&] {
    return make_error(ec::invalid_config,
                      "expected a duration such as 500ms, 20s, 5min or 1h, "
                      "got \""
                        + std::string{text} + "\"");
  };
  if (digits == 0 || digits > 12)
    return bad();
  int64_t n = std::stoll(std::string{text.substr(0, digits)});
  int64_t scale = 0;
  if (unit == "ms")
    scale = 1;
  else if (unit == "s")
    scale = 1000;
  else if (unit == "m" || unit == "min")
    scale = 60'000;
  else if (unit == "h")
    scale = 3'600'000;
  else if (unit.empty() && n == 0)
    scale = 1; // zero needs no unit
  else
    return bad();
  // Nothing ebridge waits for is longer than a year; refuse larger values.
  constexpr int64_t year_ms = 366LL * 24 * 3'600'000;
  if (n > year_ms / scale)
    return make_error(ec::invalid_config, "duration \"" + std::string{text}
                                            + "\" is longer than a year");
  return std::chrono::milliseconds{n * scale};
}

std::string to_string(std::chrono::milliseconds value) {
  auto ms = value.count();
  if (ms != 0 && ms % 3'600'000 == 0)
    return std::to_string(ms / 3'600'000) + "h";
  if (ms != 0 && ms % 60'000 == 0)
    return std::to_string(ms / 60'000) + "min";
  if (ms != 0 && ms % 1000 == 0)
    return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

caf::expected<listen_address> parse_listen_address(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return make_error(ec::invalid_config,
                      why + ", got \"" + std::string{text} + "\"");
  };
  listen_address result;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size()
        || text[close + 1] != ':')
      return bad("expected [IPv6]:PORT");
    result.host = std::string{text.substr(1, close - 1)};
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return bad("expected HOST:PORT");
    result.host = std::string{text.substr(0, colon)};
    if (result.host.find(':') != std::string::npos)
      return bad("IPv6 hosts need brackets, as in [::1]:8080");
    port = text.substr(colon + 1);
  }
  if (result.host.empty())
    return bad("the host is missing (use 0.0.0.0 for every interface)");
  auto n = parse_unsigned(port, 0, 65535);
  if (!n)
    return bad("the port must be a number in 0-65535 (0 picks a free port)");
  result.port = static_cast<uint16_t>(*n);
  return result;
}

caf::expected<invocation> parse_invocation(const std::vector<std::string>& args,
                                           const environment& env) {
  invocation result;
  result.opts.max_threads = std::max(1u, std::thread::hardware_concurrency());
  result.opts.http_threads = result.opts.max_threads;
  // Command-line options, kept aside so that they win over file and env.
  std::vector<std::pair<std::string, std::string>> cli;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      result.help = true;
    } else if (arg == "--version" || arg == "-V") {
      result.version = true;
    } else if (arg == "--") {
      for (++i; i < args.size(); ++i)
        result.args.push_back(args[i]);
    } else if (arg.size() > 2 && arg.compare(0, 2, "--") == 0) {
      auto eq = arg.find('=');
      auto key = arg.substr(2, eq == std::string::npos ? std::string::npos
                                                       : eq - 2);
      if (find_option(key) == nullptr)
        return make_error(ec::invalid_config,
                          "unknown option --" + key + "; see ebridge --help");
      if (eq != std::string::npos) {
        cli.emplace_back(key, arg.substr(eq + 1));
      } else if (i + 1 < args.size()) {
        cli.emplace_back(key, args[++i]);
      } else {
        return make_error(ec::invalid_config,
                          "option --" + key + " needs a value");
      }
    } else if (arg.size() > 1 && arg.front() == '-') {
      return make_error(ec::invalid_config,
                        "unknown option " + arg + "; see ebridge --help");
    } else if (result.command.empty()) {
      result.command = arg;
    } else {
      result.args.push_back(arg);
    }
  }
  // The config file is named by the CLI or the environment, then read first.
  std::string file;
  if (auto i = env.find("EBRIDGE_CONFIG"); i != env.end())
    file = i->second;
  for (auto& [key, value] : cli)
    if (key == "config")
      file = value;
  if (!file.empty()) {
    result.opts.config_file = file;
    if (auto err = read_config_file(result.opts, file))
      return err;
  }
  for (auto& [name, value] : env) {
    if (name.compare(0, 8, "EBRIDGE_") != 0 || name == "EBRIDGE_CONFIG")
      continue;
    const option_info* info = nullptr;
    for (auto& candidate : option_table())
      if (env_name(candidate.key) == name)
        info = &candidate;
    if (info == nullptr) {
      result.warnings.push_back("ignoring unknown environment variable "
                                + name);
      continue;
    }
    if (auto err = apply(result.opts, info->key, value, name))
      return err;
  }
  for (auto& [key, value] : cli)
    if (key != "config")
      if (auto err = apply(result.opts, key, value, "--" + key))
        return err;
  return result;
}

std::string help_text() {
  std::ostringstream out;
  out << "ebridge: live, tag-filtered membership views of a Postgres "
         "entities table,\nserved as durable, resumable HTTP streams.\n\n"
         "usage: ebridge [OPTIONS] COMMAND [ARGS]\n\n"
         "commands:\n"
         "  serve          migrate the database, then serve HTTP until "
         "SIGINT/SIGTERM\n"
         "  migrate        apply database migrations and exit\n"
         "  ref TAGS       print the source ref and stream path of a tag set "
         "(JSON object)\n\n"
         "options (flag, environment variable, default); precedence:\n"
         "defaults < config file < environment < command line\n"
         "  -h, --help     show this text\n"
         "  -V, --version  show the version\n";
  options defaults;
  defaults.max_threads = std::max(1u, std::thread::hardware_concurrency());
  defaults.http_threads = defaults.max_threads;
  for (auto& info : option_table()) {
    out << "  --" << info.key << "=VALUE\n      " << info.help << "\n      env "
        << env_name(info.key) << ", default " << info.show(defaults) << "\n";
  }
  out << "\nexit codes: 0 ok, 1 runtime failure, 2 bad usage, option or "
         "input\n";
  return out.str();
}

} // namespace ebridge
