#include "storage/database.hpp"

#include <algorithm>
#include <cctype>

#include <libpq-fe.h>

#include "core/log.hpp"

namespace ebridge {

namespace {

/// Quotes a conninfo value: single quotes, with `\` and `'` escaped.
std::string quote_conninfo(const char* value) {
  std::string result = "'";
  for (const char* c = value; *c != '\0'; ++c) {
    if (*c == '\\' || *c == '\'')
      result += '\\';
    result += *c;
  }
  result += '\'';
  return result;
}

std::string trimmed(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.pop_back();
  return text;
}

} // namespace

caf::expected<std::string> prepare_conninfo(const std::string& url,
                                            const std::string& application) {
  char* message = nullptr;
  auto* parsed = PQconninfoParse(url.c_str(), &message);
  if (parsed == nullptr) {
    std::string why = message != nullptr ? trimmed(message) : "cannot parse";
    PQfreemem(message);
    return make_error(ec::invalid_config,
                      "postgres.url is not a valid connection string: " + why);
  }
  std::string result;
  bool has_timeout = false;
  bool has_application = false;
  bool has_keepalives = false;
  for (auto* opt = parsed; opt->keyword != nullptr; ++opt) {
    if (opt->val == nullptr)
      continue;
    std::string keyword = opt->keyword;
    has_timeout |= keyword == "connect_timeout";
    has_application |= keyword == "application_name";
    has_keepalives |= keyword.compare(0, 10, "keepalives") == 0;
    result += keyword + "=" + quote_conninfo(opt->val) + " ";
  }
  PQconninfoFree(parsed);
  if (!has_timeout)
    result += "connect_timeout=5 ";
  // Notice a peer that vanished without closing the connection.
  if (!has_keepalives)
    result += "keepalives=1 keepalives_idle=10 keepalives_interval=5 "
              "keepalives_count=3 ";
  if (!has_application)
    result += "application_name=" + quote_conninfo(application.c_str()) + " ";
  result.pop_back();
  return result;
}

pg_connection::pg_connection(std::string url, std::string application,
                             backoff policy)
  : url_(std::move(url)), application_(std::move(application)),
    policy_(policy) {
  // nop
}

caf::expected<pqxx::connection*> pg_connection::connection() {
  if (conn_ != nullptr) {
    connected_before_call_ = true;
    return conn_.get();
  }
  connected_before_call_ = false;
  auto now = std::chrono::steady_clock::now();
  if (now < next_attempt_) {
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
      next_attempt_ - now);
    return make_error(ec::database_unavailable,
                      "Postgres is unreachable (" + last_error_
                        + "); reconnecting in " + std::to_string(wait.count())
                        + " ms");
  }
  auto conninfo = prepare_conninfo(url_, application_);
  if (!conninfo)
    return conninfo.error();
  try {
    conn_ = std::make_unique<pqxx::connection>(*conninfo);
    if (delay_.count() > 0)
      log::info("postgres", "connected");
    delay_ = std::chrono::milliseconds{0};
    return conn_.get();
  } catch (const std::exception& e) {
    lost(trimmed(e.what()));
    return make_error(ec::database_unavailable,
                      "cannot connect to Postgres: " + last_error_);
  }
}

void pg_connection::lost(const std::string& why) {
  conn_.reset();
  last_error_ = why;
  // The first failure may retry at once (a connection that broke while idle
  // usually just needs a new one); each further failure waits longer.
  next_attempt_ = std::chrono::steady_clock::now() + delay_;
  log::warn("postgres", "connection failed",
            {{"error", why}, {"retry_ms", std::to_string(delay_.count())}});
  delay_ = delay_.count() == 0 ? policy_.initial
                               : std::min(delay_ * 2, policy_.max);
}

std::string pg_connection::describe_sql_error(const pqxx::sql_error& e) {
  std::string result = trimmed(e.what());
  if (!e.sqlstate().empty())
    result += " (SQLSTATE " + e.sqlstate() + ")";
  return result;
}

} // namespace ebridge
