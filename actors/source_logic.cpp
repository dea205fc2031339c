#include "actors/source_logic.hpp"

#include <set>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/tags.hpp"

namespace ebridge {

source_output::~source_output() = default;

source_logic::source_logic(source_config cfg, source_output& out)
  : cfg_(std::move(cfg)), out_(out) {
  holding_ = cfg_.resume_wait.count() > 0;
}

// -- subscribers --------------------------------------------------------------

void source_logic::subscribe(uint64_t id, uint64_t subscription,
                             std::string tenant, std::string tags_json,
                             source_cursor from) {
  if (!connected_ || !stall_reason_.empty()) {
    // Started before the feed (a restart) or while it reconnects: it waits
    // for the feed rather than resync.
    waiting_.push_back({id, subscription, std::move(tenant),
                        std::move(tags_json), std::move(from)});
    release_if_resumed();
    return;
  }
  start(id, subscription, tenant, tags_json, from);
}

/// A subscription on a connected feed: resume from a cursor (replayed from
/// the recent transactions) or bootstrap from a snapshot.
void source_logic::start(uint64_t id, uint64_t subscription,
                         const std::string& tenant,
                         const std::string& tags_json,
                         const source_cursor& from) {
  auto tags = parse_tags(tags_json);
  if (!tags) {
    out_.failed(id, subscription, error_message(tags.error()));
    return;
  }
  subscriber sub;
  sub.subscription = subscription;
  if (!from.empty()) {
    auto lsn = parse_lsn_offset(from.offset);
    bool same_feed = from.handle == identity_.handle() && lsn;
    // Behind the feed: serve it from the recent transactions if they
    // reach back far enough, else it must resync.
    bool reachable = same_feed && *lsn >= recent_base_;
    if (!reachable) {
      out_.refetch(id, subscription);
      return;
    }
    sub.from = *lsn;
    sub.acked = *lsn;
    sub.sent = *lsn;
    add(id, std::move(sub), tenant, *tags);
    replay(id);
    return;
  }
  sub.from = position_;
  sub.acked = position_;
  sub.sent = position_;
  sub.snapshotting = true;
  add(id, std::move(sub), tenant, *tags);
  out_.take_snapshot(id, tenant, to_json(*tags));
}

void source_logic::add(uint64_t id, subscriber sub, const std::string& tenant,
                       const tag_set& tags) {
  index_.add(id, tenant, tags);
  subscribers_.emplace(id, std::move(sub));
}

void source_logic::erase(uint64_t id) {
  if (subscribers_.erase(id) > 0)
    index_.remove(id);
}

void source_logic::unsubscribe(uint64_t id) {
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(),
                                [&](const auto& w) { return w.id == id; }),
                 waiting_.end());
  erase(id);
  confirm_dirty_ = true;
}

void source_logic::acknowledged(uint64_t id, uint64_t subscription,
                                const source_cursor& at) {
  auto lsn = parse_lsn_offset(at.offset);
  if (!lsn || at.handle != identity_.handle())
    return;
  auto i = subscribers_.find(id);
  if (i == subscribers_.end() || i->second.subscription != subscription)
    return;
  i->second.acked = std::max(i->second.acked, *lsn);
  confirm_dirty_ = true;
}

void source_logic::resuming(uint64_t count) {
  resuming_ = count;
  release_if_resumed();
}

void source_logic::hold_expired() {
  if (holding_)
    start_feed("waited resume_wait for resuming views");
}

/// Starts a held feed once every bridge resumed with a cursor subscribed.
void source_logic::release_if_resumed() {
  // (Counted only once enough wait: not a pass per subscribe at start.)
  if (!holding_ || !resuming_ || waiting_.size() < *resuming_)
    return;
  auto with_cursor = std::count_if(waiting_.begin(), waiting_.end(),
                                   [](const auto& w) {
                                     return !w.from.empty();
                                   });
  if (static_cast<uint64_t>(with_cursor) >= *resuming_)
    start_feed("every view resumed with a cursor subscribed");
}

void source_logic::start_feed(const std::string& why) {
  holding_ = false;
  log::info("source", "starting the feed",
            {{"why", why},
             {"waiting_subscribes", std::to_string(waiting_.size())}});
  out_.start_feed(why);
}

// -- the feed -----------------------------------------------------------------

void source_logic::connected(const feed_identity& identity,
                             uint64_t start_lsn) {
  bool same = identity.handle() == identity_.handle();
  if (!same && !identity_.system_id.empty())
    refetch_all("the replication feed changed (" + identity.handle() + ")");
  if (!same && !stall_reason_.empty()) {
    // What stalled was the old feed's: every view resyncs on the new one.
    stall_reason_.clear();
    table_problem_.clear();
  }
  if (!same) {
    identity_ = identity;
    position_ = start_lsn;
    recent_.clear();
    recent_base_ = start_lsn;
  }
  position_ = std::max(position_, start_lsn);
  connected_ = true;
  if (!stall_reason_.empty())
    return; // subscribes wait until the table is fixed
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (auto& w : waiting)
    start(w.id, w.subscription, w.tenant, w.tags, w.from);
}

void source_logic::disconnected() {
  connected_ = false;
}

bool source_logic::progress(uint64_t lsn, bool urgent) {
  if (!connected_)
    return false;
  if (!stall_reason_.empty()) {
    stall_seen_ = std::max(stall_seen_, lsn);
    return urgent;
  }
  if (lsn > position_) {
    position_ = lsn;
    confirm_dirty_ = true;
  }
  if (!urgent)
    return false;
  // The server waits for exactly this (a shutdown waits until the client
  // confirms all it was sent): idle subscribers stop holding back without
  // waiting for their cursors to move. Should this process stop before they
  // move, those views resync.
  for (auto& [id, sub] : subscribers_)
    if (sub.idle())
      sub.floor = std::max(sub.floor, position_);
  return true;
}

void source_logic::transaction(replicated_txn txn) {
  if (!stall_reason_.empty()) {
    stall_seen_ = std::max(stall_seen_, txn.end_lsn);
    return;
  }
  if (txn.end_lsn <= position_)
    return; // replayed after a reconnect: already routed
  if (!txn.unusable.empty()) {
    if (txn.end_lsn <= covered_until_ || subscribers_.empty()) {
      // No view needs it: those after it resync from a snapshot that saw
      // it, and a view resuming from before it cannot be replayed to.
      log::warn("source",
                "a change that cannot be applied, which no view "
                "needs, is passed",
                {{"why", txn.unusable}, {"lsn", format_lsn(txn.end_lsn)}});
      position_ = txn.end_lsn;
      recent_.clear();
      recent_base_ = position_;
      confirm_dirty_ = true;
      return;
    }
    stall_reason_ = std::move(txn.unusable);
    stall_seen_ = txn.end_lsn;
    log::error("source",
               "the change feed stalls: a change cannot be applied; nothing "
               "past it is confirmed until entities is fixed",
               {{"why", stall_reason_},
                {"lsn", format_lsn(txn.end_lsn)},
                {"views", std::to_string(subscribers_.size())}});
    stall_tick();
    return;
  }
  position_ = txn.end_lsn;
  if (txn.truncated) {
    refetch_all("entities was truncated");
    return;
  }
  auto batches = route_txn(txn);
  for (auto& [id, batch] : batches) {
    auto& sub = subscribers_.at(id);
    if (sub.snapshotting) {
      sub.buffer.emplace_back(txn.xid, std::move(batch));
      continue;
    }
    if (sub.seen) {
      if (txn.commit_lsn > sub.seen->wal_lsn)
        sub.seen.reset(); // past the snapshot: nothing more it saw
      else if (snapshot_sees(*sub.seen, txn.xid))
        continue;
    }
    sub.sent = txn.end_lsn;
    out_.batch(id, std::move(batch));
  }
  recent_.push_back(std::move(txn));
  while (recent_.size() > cfg_.replay_buffer) {
    recent_base_ = recent_.front().end_lsn;
    recent_.pop_front();
  }
  if (subscribers_.empty())
    confirm_dirty_ = true;
}

void source_logic::snapshot_taken(uint64_t id,
                                  caf::expected<view_snapshot> snap) {
  auto i = subscribers_.find(id);
  if (i == subscribers_.end() || !i->second.snapshotting)
    return; // the bridge went away (or subscribed again) meanwhile
  auto& sub = i->second;
  if (!snap) {
    out_.failed(id, sub.subscription,
                "snapshot failed: " + error_message(snap.error()));
    erase(id);
    return;
  }
  // The snapshot's rows at the position the subscription started from;
  // then what arrived meanwhile and the snapshot did not see; then
  // up-to-date at the last of those.
  change_batch rows;
  rows.subscription = sub.subscription;
  rows.at = source_cursor{identity_.handle(), format_lsn_offset(sub.from)};
  for (auto& r : snap->rows) {
    auto key = r.url;
    rows.changes.push_back({change_op::insert, key, std::move(r)});
  }
  auto at = rows.at;
  out_.batch(id, std::move(rows));
  sub.sent = sub.from;
  for (auto& [xid, batch] : sub.buffer) {
    if (snapshot_sees(*snap, xid))
      continue;
    at = batch.at;
    if (auto lsn = parse_lsn_offset(at.offset))
      sub.sent = std::max(sub.sent, *lsn);
    out_.batch(id, std::move(batch));
  }
  // Release what the snapshot held: an idle view keeps `seen` until the
  // feed passes the snapshot's position.
  std::vector<std::pair<uint32_t, change_batch>>{}.swap(sub.buffer);
  std::vector<member_row>{}.swap(snap->rows);
  sub.seen = std::make_unique<view_snapshot>(std::move(*snap));
  sub.snapshotting = false;
  out_.up_to_date(id, up_to_date_msg{sub.subscription, at});
}

/// One batch per subscriber concerned by a transaction, at the offset of the
/// transaction's end LSN and the index of the last change it carries.
std::map<uint64_t, change_batch>
source_logic::route_txn(const replicated_txn& txn) {
  std::map<uint64_t, change_batch> batches;
  std::map<uint64_t, uint32_t> last_op;
  for (size_t op = 0; op < txn.changes.size(); ++op) {
    auto& change = txn.changes[op];
    auto& any = change.new_row ? *change.new_row : *change.old_row;
    std::optional<tag_set> old_tags;
    std::optional<tag_set> new_tags;
    if (change.old_row && change.old_row->columns.tags)
      old_tags = row_tag_pairs(*change.old_row->columns.tags);
    if (change.new_row && change.new_row->columns.tags)
      new_tags = row_tag_pairs(*change.new_row->columns.tags);
    std::optional<member_row> row;
    if (change.new_row) {
      auto made = make_member_row(change.new_row->columns);
      if (made) {
        row = std::move(*made);
      } else {
        // A snapshot leaves such a row out (tags not an object, a required
        // column null): it is in no view. Routed so, it leaves the views
        // its old version was in, and a snapshot taken now agrees.
        log::warn("source", "unreadable entity row; it is in no view",
                  {{"error", error_message(made.error())}});
        new_tags.reset();
      }
    }
    auto& old_url = change.old_row ? change.old_row->columns.url
                                   : change.new_row->columns.url;
    if (!old_url)
      continue; // no key: in no view before, none after (unreadable)
    auto old_key = *old_url;
    auto new_key = change.new_row && change.new_row->columns.url
                     ? *change.new_row->columns.url
                     : old_key;
    auto& new_tenant = any.tenant_id;
    auto old_tenant = change.old_row ? change.old_row->tenant_id : new_tenant;
    std::vector<std::pair<tag_index::id, routed_op>> routed;
    if (old_tenant == new_tenant && old_key == new_key) {
      routed = route(index_, new_tenant, old_tags ? &*old_tags : nullptr,
                     new_tags ? &*new_tags : nullptr);
    } else {
      // The row's identity changed (url or tenant): the old one leaves every
      // view it was in, the new one enters every view it matches.
      routed = route(index_, old_tenant, old_tags ? &*old_tags : nullptr,
                     nullptr);
      auto more = route(index_, new_tenant, nullptr,
                        new_tags ? &*new_tags : nullptr);
      routed.insert(routed.end(), more.begin(), more.end());
    }
    for (auto& [who, how] : routed) {
      auto& batch = batches[who];
      last_op[who] = static_cast<uint32_t>(std::min<size_t>(op, UINT32_MAX));
      if (how == routed_op::upsert)
        batch.changes.push_back({change_op::update, new_key, row});
      else
        batch.changes.push_back({change_op::remove, old_key, std::nullopt});
    }
  }
  for (auto& [who, batch] : batches) {
    batch.subscription = subscribers_.at(who).subscription;
    batch.at = source_cursor{identity_.handle(),
                             format_lsn_offset(txn.end_lsn, last_op[who])};
  }
  return batches;
}

/// Sends a live subscriber the recent transactions after its start.
void source_logic::replay(uint64_t id) {
  auto& sub = subscribers_.at(id);
  for (auto& txn : recent_) {
    if (txn.end_lsn <= sub.from)
      continue;
    auto batches = route_txn(txn);
    if (auto i = batches.find(id); i != batches.end()) {
      sub.sent = txn.end_lsn;
      out_.batch(id, std::move(i->second));
    }
  }
}

void source_logic::refetch_all(const std::string& why) {
  log::warn("source", "every view must refetch",
            {{"reason", why}, {"views", std::to_string(subscribers_.size())}});
  for (auto& [id, sub] : subscribers_) {
    out_.refetch(id, sub.subscription);
    index_.remove(id);
  }
  subscribers_.clear();
  recent_.clear();
  recent_base_ = position_;
  advances_.clear(); // for subscribers that are gone
}

// -- changes that cannot be applied -------------------------------------------

std::string source_logic::stalled() const {
  if (stall_reason_.empty())
    return {};
  auto why = "the change feed is stalled at a change it cannot apply ("
             + stall_reason_ + ")";
  if (!table_problem_.empty())
    why += "; entities: " + table_problem_;
  return why;
}

void source_logic::stall_tick() {
  if (stall_reason_.empty() || table_check_in_flight_)
    return;
  table_check_in_flight_ = true;
  out_.check_table();
}

void source_logic::table_checked(const std::string& problem) {
  table_check_in_flight_ = false;
  if (stall_reason_.empty())
    return;
  if (!problem.empty()) {
    if (problem != table_problem_)
      log::warn("source", "entities is still not usable",
                {{"problem", problem}});
    table_problem_ = problem;
    return;
  }
  log::info("source",
            "entities is usable: every view resyncs and the feed "
            "goes on",
            {{"past", format_lsn(stall_seen_)}});
  auto why = std::move(stall_reason_);
  stall_reason_.clear();
  table_problem_.clear();
  covered_until_ = std::max(covered_until_, stall_seen_);
  refetch_all("a change could not be applied (" + why + ")");
  position_ = std::max(position_, stall_seen_);
  recent_base_ = position_;
  confirm_dirty_ = true;
  if (!connected_)
    return;
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (auto& w : waiting)
    start(w.id, w.subscription, w.tenant, w.tags, w.from);
}

// -- idle views and WAL release -----------------------------------------------

void source_logic::idle_check() {
  std::vector<uint64_t> moving;
  std::vector<uint64_t> lagging;
  auto idle_lag = std::min(cfg_.idle_lag, cfg_.max_lag);
  // A cursor before this is out of, or halfway out of, the recent
  // transactions' reach: a bridge that subscribes again with it (restarted
  // by its manager, or late after a restart) would have to resync.
  auto half = cfg_.replay_buffer / 2;
  auto reach = recent_.size() > half
                 ? recent_[recent_.size() - half - 1].end_lsn
                 : recent_base_;
  for (auto& [id, sub] : subscribers_) {
    if (sub.snapshotting)
      continue;
    if (sub.seen && position_ > sub.seen->wal_lsn)
      sub.seen.reset(); // the feed is past all the snapshot saw
    if (sub.idle()) {
      // Nothing since concerned it: its cursor may move to the position. A
      // move is a registry write: it is due once the view holds back
      // idle_lag of WAL, nears the end of the recent transactions' reach,
      // or was released already (a Postgres shutdown, a failed move): a
      // restart from the slot would find its cursor behind and resync.
      auto behind = position_ > sub.acked ? position_ - sub.acked : 0;
      bool due = behind >= idle_lag || sub.acked < reach
                 || sub.floor > sub.acked;
      if (behind > 0 && due && sub.advancing == 0 && connected_) {
        sub.advancing = position_;
        moving.push_back(id);
      }
    } else if (position_ - sub.acked > cfg_.max_lag) {
      lagging.push_back(id);
    }
  }
  for (auto id : lagging) {
    auto& sub = subscribers_.at(id);
    log::warn("source", "a view lags too far behind; it must resync",
              {{"lag_bytes", std::to_string(position_ - sub.acked)},
               {"max_lag_bytes", std::to_string(cfg_.max_lag)}});
    out_.refetch(id, sub.subscription);
    erase(id);
  }
  confirm_dirty_ = true;
  log::debug("source", "idle check",
             {{"position", format_lsn(position_)},
              {"subscribers", std::to_string(subscribers_.size())},
              {"moving", std::to_string(moving.size())},
              {"lagging", std::to_string(lagging.size())}});
  // In statements of at most advance_chunk rows, one at a time.
  auto chunk = std::max<size_t>(1, cfg_.advance_chunk);
  for (size_t first = 0; first < moving.size(); first += chunk) {
    idle_advance part;
    part.handle = identity_.handle();
    part.lsn = position_;
    auto last = std::min(moving.size(), first + chunk);
    part.subscribers.assign(moving.begin() + first, moving.begin() + last);
    for (auto id : part.subscribers)
      part.keys.emplace_back(index_.tenant_of(id),
                             source_ref(index_.tags_of(id)));
    advances_.push_back(std::move(part));
  }
}

std::optional<idle_advance> source_logic::next_advance() {
  if (advance_in_flight_ || advances_.empty())
    return std::nullopt;
  auto next = std::move(advances_.front());
  advances_.pop_front();
  advance_in_flight_ = true;
  return next;
}

void source_logic::advanced(const idle_advance& sent,
                            const std::vector<bridge_key>& moved) {
  advance_in_flight_ = false;
  std::set<bridge_key> did{moved.begin(), moved.end()};
  for (size_t k = 0; k < sent.subscribers.size(); ++k) {
    auto i = subscribers_.find(sent.subscribers[k]);
    if (i == subscribers_.end() || i->second.advancing != sent.lsn)
      continue;
    i->second.advancing = 0;
    // A row that did not move (its bridge resyncing or already past) is
    // tried again at the next check.
    if (did.count(sent.keys[k]) > 0)
      i->second.acked = std::max(i->second.acked, sent.lsn);
  }
  confirm_dirty_ = true;
}

void source_logic::advance_failed(const idle_advance& sent) {
  advance_in_flight_ = false;
  for (auto id : sent.subscribers) {
    auto i = subscribers_.find(id);
    if (i == subscribers_.end() || i->second.advancing != sent.lsn)
      continue;
    auto& sub = i->second;
    sub.advancing = 0;
    if (sub.idle())
      sub.floor = std::max(sub.floor, sent.lsn);
  }
  confirm_dirty_ = true;
}

uint64_t source_logic::confirmable() {
  confirm_dirty_ = false;
  // Idle subscribers hold it back too, until the idle check has moved their
  // cursors: a restart from past a cursor would have to resync.
  auto lowest = position_;
  for (auto& [id, sub] : subscribers_)
    lowest = std::min(lowest, sub.holds());
  return lowest;
}

} // namespace ebridge
