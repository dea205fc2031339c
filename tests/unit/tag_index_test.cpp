#define CAF_SUITE tag_index
#include <caf/test/unit_test.hpp>

#include <random>

#include "core/tag_index.hpp"

using namespace ebridge;

namespace {

tag_set tags(std::vector<std::pair<std::string, std::string>> pairs) {
  return tag_set{std::move(pairs)};
}

using ids = std::vector<tag_index::id>;

} // namespace

CAF_TEST(a filter matches rows whose tags contain all its pairs) {
  tag_index index;
  index.add(1, "t", tags({{"team", "infra"}}));
  index.add(2, "t", tags({{"team", "infra"}, {"role", "reviewer"}}));
  index.add(3, "t", tags({{"team", "web"}}));
  CAF_CHECK_EQUAL(index.match("t", tags({{"team", "infra"}})), (ids{1}));
  CAF_CHECK_EQUAL(index.match("t", tags({{"role", "reviewer"},
                                         {"team", "infra"},
                                         {"x", "y"}})),
                  (ids{1, 2}));
  CAF_CHECK_EQUAL(index.match("t", tags({{"role", "reviewer"}})), (ids{}));
  CAF_CHECK_EQUAL(index.match("t", tags({})), (ids{}));
}

CAF_TEST(an empty filter matches every row of its tenant only) {
  tag_index index;
  index.add(7, "t", tags({}));
  CAF_CHECK_EQUAL(index.match("t", tags({})), (ids{7}));
  CAF_CHECK_EQUAL(index.match("t", tags({{"a", "b"}})), (ids{7}));
  CAF_CHECK_EQUAL(index.match("other", tags({{"a", "b"}})), (ids{}));
}

CAF_TEST(tenants never see each other s rows) {
  tag_index index;
  index.add(1, "t1", tags({{"team", "infra"}}));
  CAF_CHECK_EQUAL(index.match("t2", tags({{"team", "infra"}})), (ids{}));
}

CAF_TEST(removing or replacing a filter updates the index) {
  tag_index index;
  index.add(1, "t", tags({{"team", "infra"}}));
  index.add(1, "t", tags({{"team", "web"}}));
  CAF_CHECK_EQUAL(index.match("t", tags({{"team", "infra"}})), (ids{}));
  CAF_CHECK_EQUAL(index.match("t", tags({{"team", "web"}})), (ids{1}));
  index.remove(1);
  index.remove(1);
  CAF_CHECK_EQUAL(index.size(), 0u);
  CAF_CHECK_EQUAL(index.match("t", tags({{"team", "web"}})), (ids{}));
}

CAF_TEST(an update routes move in as upsert and move out as remove) {
  tag_index index;
  index.add(1, "t", tags({{"team", "infra"}}));
  index.add(2, "t", tags({{"team", "web"}}));
  index.add(3, "t", tags({}));
  auto old_row = tags({{"team", "infra"}});
  auto new_row = tags({{"team", "web"}});
  auto routed = route(index, "t", &old_row, &new_row);
  using pairs = std::vector<std::pair<tag_index::id, routed_op>>;
  CAF_CHECK(routed
            == (pairs{{2, routed_op::upsert},
                      {3, routed_op::upsert},
                      {1, routed_op::remove}}));
  // Insert and delete route by the one row they have.
  CAF_CHECK(route(index, "t", nullptr, &new_row)
            == (pairs{{2, routed_op::upsert}, {3, routed_op::upsert}}));
  CAF_CHECK(route(index, "t", &old_row, nullptr)
            == (pairs{{1, routed_op::remove}, {3, routed_op::remove}}));
}

CAF_TEST(row tags keep only string pairs) {
  auto pairs = row_tag_pairs(R"({"a":"1","n":2,"o":{"x":"y"},"b":"2"})");
  CAF_CHECK_EQUAL(pairs.pairs.size(), 2u);
  CAF_CHECK(row_tag_pairs("[1]").pairs.empty());
  CAF_CHECK(row_tag_pairs("not json").pairs.empty());
}

CAF_TEST(matching agrees with a brute force containment check) {
  std::mt19937 rng{42};
  auto random_tags = [&](size_t max) {
    tag_set t;
    std::map<std::string, std::string> m;
    auto n = rng() % (max + 1);
    for (size_t i = 0; i < n; ++i)
      m["k" + std::to_string(rng() % 4)] = "v" + std::to_string(rng() % 3);
    for (auto& kv : m)
      t.pairs.emplace_back(kv);
    return t;
  };
  tag_index index;
  std::vector<std::pair<std::string, tag_set>> filters;
  for (tag_index::id i = 0; i < 200; ++i) {
    auto tenant = rng() % 2 ? std::string{"a"} : std::string{"b"};
    filters.emplace_back(tenant, random_tags(2));
    index.add(i, tenant, filters.back().second);
  }
  for (int round = 0; round < 500; ++round) {
    auto tenant = rng() % 2 ? std::string{"a"} : std::string{"b"};
    auto row = random_tags(4);
    ids expected;
    for (tag_index::id i = 0; i < filters.size(); ++i) {
      auto& [ft, f] = filters[i];
      bool all = ft == tenant;
      for (auto& pair : f.pairs)
        all = all
              && std::find(row.pairs.begin(), row.pairs.end(), pair)
                   != row.pairs.end();
      if (all)
        expected.push_back(i);
    }
    CAF_CHECK_EQUAL(index.match(tenant, row), expected);
  }
}
