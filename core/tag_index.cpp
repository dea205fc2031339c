#include "core/tag_index.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace ebridge {

std::string tag_index::posting_key(const std::string& tenant,
                                   const std::string& key,
                                   const std::string& value) {
  std::string result;
  result.reserve(tenant.size() + key.size() + value.size() + 2);
  result += tenant;
  result += '\0';
  result += key;
  result += '\0';
  result += value;
  return result;
}

void tag_index::add(id who, const std::string& tenant, const tag_set& tags) {
  remove(who);
  if (tags.pairs.empty()) {
    match_all_[tenant].push_back(who);
  } else {
    for (auto& [k, v] : tags.pairs)
      postings_[posting_key(tenant, k, v)].push_back(who);
  }
  filters_.emplace(who, filter{tenant, tags});
}

void tag_index::remove(id who) {
  auto i = filters_.find(who);
  if (i == filters_.end())
    return;
  auto erase_from = [who](std::vector<id>& list) {
    list.erase(std::remove(list.begin(), list.end(), who), list.end());
  };
  auto& f = i->second;
  if (f.tags.pairs.empty()) {
    auto j = match_all_.find(f.tenant);
    erase_from(j->second);
    if (j->second.empty())
      match_all_.erase(j);
  } else {
    for (auto& [k, v] : f.tags.pairs) {
      auto j = postings_.find(posting_key(f.tenant, k, v));
      erase_from(j->second);
      if (j->second.empty())
        postings_.erase(j);
    }
  }
  filters_.erase(i);
}

std::vector<tag_index::id> tag_index::match(const std::string& tenant,
                                            const tag_set& row_tags) const {
  // Count, per candidate, how many of its pairs the row has: it matches
  // when all of them are there. Keys are unique per row and per filter.
  std::unordered_map<id, size_t> hits;
  for (auto& [k, v] : row_tags.pairs) {
    auto i = postings_.find(posting_key(tenant, k, v));
    if (i == postings_.end())
      continue;
    for (auto who : i->second)
      ++hits[who];
  }
  std::vector<id> result;
  for (auto& [who, n] : hits)
    if (filters_.at(who).tags.pairs.size() == n)
      result.push_back(who);
  if (auto i = match_all_.find(tenant); i != match_all_.end())
    result.insert(result.end(), i->second.begin(), i->second.end());
  std::sort(result.begin(), result.end());
  return result;
}

std::vector<std::pair<tag_index::id, routed_op>>
route(const tag_index& index, const std::string& tenant,
      const tag_set* old_tags, const tag_set* new_tags) {
  std::vector<std::pair<tag_index::id, routed_op>> result;
  std::vector<tag_index::id> now;
  if (new_tags != nullptr) {
    now = index.match(tenant, *new_tags);
    for (auto who : now)
      result.emplace_back(who, routed_op::upsert);
  }
  if (old_tags != nullptr)
    for (auto who : index.match(tenant, *old_tags))
      if (!std::binary_search(now.begin(), now.end(), who))
        result.emplace_back(who, routed_op::remove);
  return result;
}

tag_set row_tag_pairs(std::string_view json_text) {
  tag_set result;
  auto doc = nlohmann::json::parse(json_text.begin(), json_text.end(), nullptr,
                                   false);
  if (doc.is_discarded() || !doc.is_object())
    return result;
  for (auto& [key, value] : doc.items())
    if (value.is_string())
      result.pairs.emplace_back(key, value.get<std::string>());
  return result;
}

} // namespace ebridge
