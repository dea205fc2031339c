#pragma once

#include <string>

#include <pqxx/pqxx>

namespace ebridge::test {

/// A fresh, empty database on the test cluster (TEST_DATABASE_URL, started by
/// scripts/test), dropped again at the end. Tests fail at once without it.
class scratch_database {
public:
  scratch_database();
  ~scratch_database();

  scratch_database(const scratch_database&) = delete;
  scratch_database& operator=(const scratch_database&) = delete;

  /// A connection string for the scratch database.
  const std::string& url() const {
    return url_;
  }

  /// Runs one SQL statement (test setup and checks only).
  pqxx::result exec(const std::string& sql);

  /// The cluster's admin URL (TEST_DATABASE_URL).
  static std::string admin_url();

private:
  std::string name_;
  std::string url_;
};

} // namespace ebridge::test
