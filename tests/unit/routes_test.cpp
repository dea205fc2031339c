#define CAF_SUITE routes
#include <caf/test/unit_test.hpp>

#include "core/error.hpp"
#include "net/routes.hpp"

using namespace ebridge;

namespace {

const std::string* header(const http_response& res, const std::string& name) {
  for (auto& [k, v] : res.headers)
    if (k == name)
      return &v;
  return nullptr;
}

} // namespace

CAF_TEST(a registration answers the ref and the stream url) {
  auto res = registration_response(registration{"abc", "/_entities/abc"});
  CAF_CHECK_EQUAL(res.status, 200u);
  CAF_CHECK_EQUAL(res.body,
                  R"({"sourceRef":"abc","streamUrl":"/_entities/abc"})");
}

CAF_TEST(bad tags are a 400 invalid request) {
  caf::expected<registration> r{make_error(ec::invalid_tags, "tag \"n\" bad")};
  auto res = registration_response(r);
  CAF_CHECK_EQUAL(res.status, 400u);
  CAF_CHECK_EQUAL(
    res.body,
    R"({"error":{"code":"INVALID_REQUEST","message":"tag \"n\" bad"}})");
}

CAF_TEST(a view still starting is a 503 with retry after) {
  caf::expected<registration> r{make_error(ec::timeout, "still starting")};
  auto res = registration_response(r);
  CAF_CHECK_EQUAL(res.status, 503u);
  auto* retry = header(res, "Retry-After");
  CAF_REQUIRE(retry != nullptr);
  CAF_CHECK_EQUAL(*retry, "2");
  caf::expected<registration> down{
    make_error(ec::database_unavailable, "refused")};
  CAF_CHECK_EQUAL(registration_response(down).status, 503u);
}

CAF_TEST(other failures are a 500) {
  caf::expected<registration> r{make_error(ec::database_error, "boom")};
  CAF_CHECK_EQUAL(registration_response(r).status, 500u);
}
