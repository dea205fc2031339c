#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/tags.hpp"

namespace ebridge {

/// The filters of every subscribed view, indexed so that matching one row
/// costs in proportion to the filters that share a tag with it, not to all
/// filters. A filter (tenant, tags) matches a row of the same tenant whose
/// tags contain every pair of the filter (jsonb `@>` on flat string tags);
/// an empty filter matches every row of its tenant.
class tag_index {
public:
  using id = uint64_t;

  /// Adds (or replaces) the filter of subscriber `who`.
  void add(id who, const std::string& tenant, const tag_set& filter);

  /// Removes the filter of `who`, if any.
  void remove(id who);

  /// The subscribers whose filters match a row of `tenant` with these
  /// string-valued tag pairs (in ascending order).
  std::vector<id> match(const std::string& tenant,
                        const tag_set& row_tags) const;

  /// The filter of a registered `who` (which must be registered).
  const std::string& tenant_of(id who) const {
    return filters_.at(who).tenant;
  }
  const tag_set& tags_of(id who) const {
    return filters_.at(who).tags;
  }

  size_t size() const noexcept {
    return filters_.size();
  }

private:
  struct filter {
    std::string tenant;
    tag_set tags;
  };

  /// "tenant\0key\0value" → subscribers whose filter has that pair.
  static std::string posting_key(const std::string& tenant,
                                 const std::string& key,
                                 const std::string& value);

  std::unordered_map<id, filter> filters_;
  std::unordered_map<std::string, std::vector<id>> postings_;
  /// Subscribers with an empty filter, by tenant.
  std::map<std::string, std::vector<id>> match_all_;
};

/// How one changed row reaches one view.
enum class routed_op : uint8_t { upsert, remove };

/// The views an entity change concerns: by its new row (enters or stays →
/// upsert) and by its old row (leaves → remove). `old_tags`/`new_tags` are
/// absent for inserts and deletes respectively.
std::vector<std::pair<tag_index::id, routed_op>>
route(const tag_index& index, const std::string& tenant,
      const tag_set* old_tags, const tag_set* new_tags);

/// The string-valued pairs of a row's tags (JSON object text); other values
/// can never match a filter and are left out. Not an object → empty.
tag_set row_tag_pairs(std::string_view json_text);

} // namespace ebridge
