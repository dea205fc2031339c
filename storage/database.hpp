#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <type_traits>

#include <caf/expected.hpp>
#include <pqxx/pqxx>

#include "core/error.hpp"

namespace ebridge {

/// Adds defaults ebridge wants (a connect timeout, an application name) to a
/// connection string unless it sets them, and returns it as key=value pairs.
caf::expected<std::string> prepare_conninfo(const std::string& url,
                                            const std::string& application);

/// A libpqxx connection that connects lazily and reconnects after a failure
/// with capped exponential backoff. Blocking: use it on a detached actor or a
/// plain thread only.
class pg_connection {
public:
  struct backoff {
    std::chrono::milliseconds initial{100};
    std::chrono::milliseconds max{5000};
  };

  pg_connection(std::string url, std::string application, backoff policy);

  explicit pg_connection(std::string url, std::string application = "ebridge")
    : pg_connection(std::move(url), std::move(application), backoff{}) {
    // nop
  }

  /// Runs `f(pqxx::connection&)` and maps failures to errors:
  /// a lost connection → `ec::database_unavailable` (and a reconnect on a
  /// later call, after the backoff), an SQL error → `ec::database_error`.
  /// A connection that broke while idle is reconnected and `f` retried once,
  /// so callers must pass only operations that are safe to repeat.
  template <class F>
  auto run(F&& f) -> caf::expected<std::invoke_result_t<F, pqxx::connection&>> {
    for (int attempt = 0;; ++attempt) {
      auto conn = connection();
      if (!conn)
        return conn.error();
      bool was_idle = connected_before_call_;
      try {
        return f(**conn);
      } catch (const pqxx::broken_connection& e) {
        lost(e.what());
        if (!was_idle || attempt > 0)
          return make_error(ec::database_unavailable,
                            "lost the Postgres connection: "
                              + std::string{e.what()});
      } catch (const pqxx::sql_error& e) {
        if (!(*conn)->is_open()) {
          lost(e.what());
          if (!was_idle || attempt > 0)
            return make_error(ec::database_unavailable,
                              "lost the Postgres connection: "
                                + std::string{e.what()});
          continue;
        }
        return make_error(ec::database_error, describe_sql_error(e));
      } catch (const std::exception& e) {
        // pqxx::in_doubt_error and friends derive from neither of the above;
        // a connection that died underneath them is a lost connection.
        if (conn_ != nullptr && !conn_->is_open()) {
          lost(e.what());
          return make_error(ec::database_unavailable,
                            "lost the Postgres connection: "
                              + std::string{e.what()});
        }
        return make_error(ec::database_error, e.what());
      }
    }
  }

  /// True while a connection is open.
  bool connected() const noexcept {
    return conn_ != nullptr;
  }

private:
  caf::expected<pqxx::connection*> connection();

  void lost(const std::string& why);

  static std::string describe_sql_error(const pqxx::sql_error& e);

  std::string url_;
  std::string application_;
  backoff policy_;
  std::unique_ptr<pqxx::connection> conn_;
  bool connected_before_call_ = false;
  std::chrono::milliseconds delay_{0};
  std::chrono::steady_clock::time_point next_attempt_{};
  std::string last_error_;
};

} // namespace ebridge
