#include "tests/integration/pg_fixture.hpp"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include <unistd.h>

#include "storage/database.hpp"

namespace ebridge::test {

std::string scratch_database::admin_url() {
  const char* url = std::getenv("TEST_DATABASE_URL");
  if (url == nullptr || *url == '\0')
    throw std::runtime_error("TEST_DATABASE_URL is not set: run the "
                             "integration tests through scripts/test, which "
                             "starts a throwaway Postgres");
  return url;
}

scratch_database::scratch_database() {
  static std::atomic<int> counter{0};
  name_ = "ebridge_t_" + std::to_string(::getpid()) + "_"
          + std::to_string(counter++);
  auto admin = prepare_conninfo(admin_url(), "ebridge-test");
  if (!admin)
    throw std::runtime_error("TEST_DATABASE_URL is not a connection string");
  pqxx::connection conn{*admin};
  pqxx::nontransaction tx{conn};
  tx.exec0("DROP DATABASE IF EXISTS " + tx.quote_name(name_));
  tx.exec0("CREATE DATABASE " + tx.quote_name(name_));
  // In a key=value conninfo the last dbname wins.
  url_ = *admin + " dbname=" + name_;
}

scratch_database::~scratch_database() {
  try {
    auto admin = prepare_conninfo(admin_url(), "ebridge-test");
    pqxx::connection conn{*admin};
    pqxx::nontransaction tx{conn};
    tx.exec0("DROP DATABASE IF EXISTS " + tx.quote_name(name_)
             + " WITH (FORCE)");
  } catch (...) {
    // The cluster is thrown away after the run anyway.
  }
}

pqxx::result scratch_database::exec(const std::string& sql) {
  pqxx::connection conn{url_};
  pqxx::work tx{conn};
  auto result = tx.exec(sql);
  tx.commit();
  return result;
}

} // namespace ebridge::test
