#define CAF_SUITE json_depth
#include <caf/test/unit_test.hpp>

#include <string>

#include "core/json_depth.hpp"
#include "core/member.hpp"
#include "core/tags.hpp"

using namespace ebridge;

namespace {

std::string nested(size_t depth, char open = '[', char close = ']') {
  return std::string(depth, open) + std::string(depth, close);
}

} // namespace

CAF_TEST(nesting is counted over arrays and objects outside strings) {
  CAF_CHECK(json_depth_within("", 0));
  CAF_CHECK(json_depth_within("42", 0));
  CAF_CHECK(json_depth_within(nested(3), 3));
  CAF_CHECK(!json_depth_within(nested(4), 3));
  CAF_CHECK(json_depth_within(R"({"a":[{"b":[]}]})", 4));
  CAF_CHECK(!json_depth_within(R"({"a":[{"b":[]}]})", 3));
  // Brackets in strings, escaped quotes included, do not count.
  CAF_CHECK(json_depth_within(R"(["[[[[", "\"[[[[", "\\"])", 1));
  // Siblings do not add up.
  CAF_CHECK(json_depth_within("[[1],[2],[3]]", 2));
}

CAF_TEST(every parser refuses JSON nested past the limit) {
  auto deep = nested(100000);
  auto body = R"({"tags":)" + nested(max_json_depth + 1, '{', '}') + "}";
  CAF_CHECK(!parse_register_body(body));
  CAF_CHECK(!parse_tags(nested(max_json_depth + 1, '{', '}')));
  CAF_CHECK(!canonical_json(deep));
  CAF_CHECK(!parse_member_event(deep));
  // At the limit it is the parser's call as before.
  CAF_CHECK(canonical_json(nested(max_json_depth)));
}
