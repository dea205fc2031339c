#include "storage/stream_store.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string_view>
#include <thread>
#include <unordered_map>

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/thread.hpp"
#include "storage/stream_recovery.hpp"

namespace ebridge {

namespace {

/// Sync one file at a time up to this many files per group; beyond, one
/// syncfs is cheaper than many fdatasyncs.
constexpr size_t max_fdatasyncs_per_group = 4;

/// Writer threads; a stream's operations all go to one (by its name), in
/// order. Two let an append start its sync while another stream's is in
/// flight instead of waiting for it: the disk here does 2 syncs at once at
/// 1.5 times the rate of one.
constexpr size_t writer_count = 2;

/// A write past a log file's end also fills zeros up to a 4 KiB boundary
/// and about as far again as the file is long (at most 1 MiB more): the
/// appends that follow land inside the file, so their fdatasync writes their
/// data block and no inode (size, block map), one disk round trip less. The
/// filesystem allocates whole blocks anyway; a log takes one block, or at
/// most about twice its data. A scan reads the zeros as padding, not as a
/// torn tail, and tells a write a crash cut over them from corruption.
constexpr uint64_t pad_block = 4096;
constexpr uint64_t pad_max = uint64_t{1} << 20;

uint64_t padded_size(uint64_t end) {
  auto want = end + std::min(end, pad_max);
  return (want + pad_block - 1) / pad_block * pad_block;
}

using chunk = log_chunk;

/// An open log file; closed when the last user lets go of it.
struct log_file {
  int fd = -1;
  std::string path;
  /// The file's size on disk: its records, then zeros. Only the stream's
  /// writer thread changes it once the file is in use.
  uint64_t allocated = 0;
  /// The store's count of open log files.
  std::atomic<size_t>* open_count = nullptr;
  ~log_file() {
    if (fd >= 0)
      ::close(fd);
    if (open_count != nullptr)
      --*open_count;
  }
};

using producer_state = producer_position;

struct waiter {
  uint64_t offset;
  std::function<void()> fn;
};

/// One stream. `tail`, `closed`, `producers`, `stream_seq` and `file_size`
/// run ahead of the disk (they validate the next request); readers see only
/// the durable part: `chunks`, `durable_tail`, `durable_closed`. The other
/// durable fields are what a failed write resets the submitted state to.
struct stream_entry {
  std::mutex mtx;
  stream_header header;
  /// The log's path; `file` is null while an idle log is closed (see
  /// `max_open_files`), and opened again on use.
  std::string path;
  std::shared_ptr<log_file> file;
  uint64_t file_size = 0;
  /// The log's length up to its last durable record.
  uint64_t durable_size = 0;
  std::vector<chunk> chunks;
  uint64_t durable_tail = 0;
  uint64_t tail = 0;
  std::map<std::string, producer_state> producers;
  std::map<std::string, producer_state> durable_producers;
  std::string stream_seq;
  std::string durable_stream_seq;
  /// Counts the times the submitted state was reset to the durable one: an
  /// operation submitted before a reset is answered, never written.
  uint64_t generation = 0;
  /// Read by the idle-log closer without the lock.
  std::atomic<int64_t> last_access_ms{0};
  std::map<uint64_t, waiter> waiters;
  // (The flags together: one word, not one each.)
  bool json = false;
  bool durable_closed = false;
  bool closed = false;
  /// The log could not be cut back after a failed write: nothing is
  /// served or written until a repair (queued by the next request) works.
  bool broken = false;
  bool repair_pending = false;
  bool removed = false;
};

using entry_ptr = std::shared_ptr<stream_entry>;

/// One queued operation for a writer thread.
struct pending_op {
  entry_ptr entry;
  std::string bytes; // to write at file_pos (may be empty)
  uint64_t file_pos = 0;
  /// Where the log ends once this operation is durable.
  uint64_t end_pos = 0;
  std::vector<chunk> chunks;
  uint64_t tail_after = 0;
  /// The entry's generation when it was submitted.
  uint64_t generation = 0;
  /// What becomes durable with the record besides its messages.
  std::optional<producer_stamp> producer;
  std::string stream_seq;
  bool closes = false;
  bool touches_directory = false;
  /// The stream's first write: failing, it takes the stream away.
  bool creates = false;
  /// Not a client's: retries the cut of a broken stream's log, then runs
  /// `then` (the request that found the stream broken, submitted again).
  bool repair = false;
  std::function<void()> then;
  /// Submitted before the stream's last reset: answered, not written.
  bool stale = false;
  /// The log it writes to, taken when its batch starts (null for an op
  /// without bytes): held, the file cannot be closed as idle meanwhile.
  std::shared_ptr<log_file> file;
  write_result result;
  write_callback done;
};

uint64_t name_hash(std::string_view name) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : name) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

std::string hex16(uint64_t x) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, x >>= 4)
    out[i] = digits[x & 0xf];
  return out;
}

bool expired(const stream_entry& e, int64_t now) {
  if (e.header.ttl_seconds
      && e.last_access_ms + static_cast<int64_t>(*e.header.ttl_seconds) * 1000
           <= now)
    return true;
  return !e.header.expires_at.empty() && e.header.expires_at_ms <= now;
}

write_result make_result(store_status status, const stream_entry& e,
                         std::string message = {}) {
  write_result r;
  r.status = status;
  r.next_offset = e.tail;
  r.closed = e.closed;
  r.message = std::move(message);
  return r;
}

write_result status_only(store_status status) {
  write_result r;
  r.status = status;
  return r;
}

bool write_all(store_io& io, int fd, const char* data, size_t size,
               uint64_t pos) {
  while (size > 0) {
    auto n = io.pwrite(fd, data, size, static_cast<off_t>(pos));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
    pos += static_cast<uint64_t>(n);
  }
  return true;
}

bool read_all(store_io& io, int fd, char* data, size_t size, uint64_t pos) {
  while (size > 0) {
    auto n = io.pread(fd, data, size, static_cast<off_t>(pos));
    if (n <= 0) {
      if (n < 0 && errno == EINTR)
        continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
    pos += static_cast<uint64_t>(n);
  }
  return true;
}

/// Keeps the bytes of a torn tail next to the log, synced, before the tail
/// is cut: `<log>.torn-<position>`. False (with errno) when it could not.
bool keep_aside(const std::string& path, int dir_fd, std::string_view bytes,
                uint64_t position) {
  auto aside = path + ".torn-" + std::to_string(position);
  int fd = ::open(aside.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                  0640);
  if (fd < 0)
    return false;
  store_io io;
  bool ok = write_all(io, fd, bytes.data(), bytes.size(), 0)
            && ::fsync(fd) == 0;
  auto saved = errno;
  ::close(fd);
  errno = saved;
  return ok && ::fsync(dir_fd) == 0;
}

} // namespace

store_io::~store_io() = default;

ssize_t store_io::pwrite(int fd, const void* data, size_t size, off_t pos) {
  return ::pwrite(fd, data, size, pos);
}

ssize_t store_io::pread(int fd, void* data, size_t size, off_t pos) {
  return ::pread(fd, data, size, pos);
}

int store_io::fdatasync(int fd) {
  return ::fdatasync(fd);
}

int store_io::syncfs(int fd) {
  return ::syncfs(fd);
}

int store_io::fsync_directory(int fd) {
  return ::fsync(fd);
}

int store_io::ftruncate(int fd, off_t size) {
  return ::ftruncate(fd, size);
}

struct stream_store::impl {
  config cfg;
  std::shared_ptr<store_io> io;
  std::string streams_dir;
  int dir_fd = -1;

  mutable std::mutex map_mtx;
  /// Log files open now (before `streams`: their files outlive it), one
  /// closer of idle ones at a time, and when the next may try after one that
  /// could not close enough.
  std::atomic<size_t> open_files{0};
  std::mutex evict_mtx;
  std::atomic<int64_t> evict_after_ms{0};
  /// Waiter tokens, unique in the store: a token of a deleted stream never
  /// names a waiter of its successor.
  std::atomic<uint64_t> next_waiter{1};
  /// Keyed by a view of the entry's own name (one copy per stream; an
  /// entry is never renamed, and leaves the map before it is freed).
  std::unordered_map<std::string_view, entry_ptr> streams;
  std::vector<std::pair<std::string, std::string>> refused;
  /// Streams whose logs are corrupt, by name: (file, why). Served as errors
  /// until an operator deletes them.
  std::map<std::string, std::pair<std::string, std::string>> corrupt;


  /// One writer thread and its queue.
  struct writer_lane {
    /// Its own handle on the streams directory: syncfs and fsync report a
    /// write-back error once per open file, and each writer must see it.
    int dir_fd = -1;
    std::mutex mtx;
    std::condition_variable cv;
    std::deque<pending_op> queue;
    bool stopping = false;
    std::thread thread;
  };
  std::array<writer_lane, writer_count> lanes;

  ~impl() {
    for (auto& lane : lanes) {
      {
        std::lock_guard<std::mutex> guard{lane.mtx};
        lane.stopping = true;
      }
      lane.cv.notify_all();
    }
    for (auto& lane : lanes) {
      if (lane.thread.joinable())
        lane.thread.join();
      if (lane.dir_fd >= 0)
        ::close(lane.dir_fd);
    }
    if (dir_fd >= 0)
      ::close(dir_fd);
  }

  // -- lookup ---------------------------------------------------------------

  /// The live entry for `name`, dropping it if it expired.
  entry_ptr find(const std::string& name) {
    entry_ptr e;
    {
      std::lock_guard<std::mutex> guard{map_mtx};
      auto i = streams.find(name);
      if (i == streams.end())
        return nullptr;
      e = i->second;
    }
    std::unique_lock<std::mutex> guard{e->mtx};
    if (e->removed)
      return nullptr;
    if (!expired(*e, wall_ms()))
      return e;
    guard.unlock();
    drop(name, e, nullptr);
    return nullptr;
  }

  /// Removes an entry: unlinks its file, wakes its waiters, and (with a
  /// callback) acknowledges once the directory change is durable.
  void drop(const std::string& name, const entry_ptr& e, write_callback done) {
    take_out(name, e);
    pending_op op;
    op.entry = e;
    op.touches_directory = true;
    op.result.status = store_status::ok;
    op.done = std::move(done);
    enqueue(std::move(op));
  }

  /// Queues an operation on the writer of the stream `name`.
  void enqueue(std::string_view name, pending_op op) {
    auto& lane = lanes[(name_hash(name) >> 32) % writer_count];
    {
      std::lock_guard<std::mutex> guard{lane.mtx};
      lane.queue.push_back(std::move(op));
    }
    lane.cv.notify_one();
  }

  void enqueue(pending_op op) {
    std::string_view name{op.entry->header.name};
    enqueue(name, std::move(op));
  }

  // -- writer thread ----------------------------------------------------------

  void run_writer(writer_lane& lane) {
    // Every durable append waits for this thread: when it wakes it should
    // run before the threads busy with fan-out, not after their slice.
    raise_thread_priority(-10, "store");
    std::vector<pending_op> batch;
    for (;;) {
      {
        std::unique_lock<std::mutex> guard{lane.mtx};
        lane.cv.wait(guard,
                     [&] { return lane.stopping || !lane.queue.empty(); });
        if (lane.queue.empty() && lane.stopping)
          return;
        batch.assign(std::make_move_iterator(lane.queue.begin()),
                     std::make_move_iterator(lane.queue.end()));
        lane.queue.clear();
      }
      commit(lane, batch);
      batch.clear();
      evict_idle();
    }
  }

  /// Writes a batch, makes it durable with as few syncs as possible, then
  /// publishes it to readers and acknowledges it, in order. A log whose
  /// write or sync failed is cut back to its durable length first.
  void commit(writer_lane& lane, std::vector<pending_op>& batch) {
    auto& sys = *io;
    // Repairs first; then what was submitted before its stream's last
    // reset (or while it is broken) is answered, not written.
    for (auto& op : batch) {
      if (!op.entry)
        continue;
      if (op.repair) {
        bool broken;
        {
          std::lock_guard<std::mutex> guard{op.entry->mtx};
          if (!op.then)
            op.entry->repair_pending = false;
          broken = op.entry->broken;
        }
        if (broken)
          cut_back(*op.entry, "a retry");
        if (op.then)
          op.then();
        continue;
      }
      // A delete stands whatever happened before it.
      if (op.touches_directory && !op.creates)
        continue;
      std::lock_guard<std::mutex> guard{op.entry->mtx};
      if (op.generation != op.entry->generation || op.entry->broken) {
        op.stale = true;
        op.bytes.clear();
      }
    }
    // An op with bytes keeps its log open (its stream has unsynced bytes,
    // so no idle close takes it); hold it for the whole batch.
    for (auto& op : batch)
      if (op.entry && !op.bytes.empty())
        op.file = op.entry->file;
    std::map<log_file*, std::string> failed;
    std::vector<std::shared_ptr<log_file>> dirty;
    bool directory = false;
    // Coalesce contiguous writes to one file into one pwrite.
    for (size_t i = 0; i < batch.size();) {
      auto& first = batch[i];
      directory |= first.touches_directory && !first.stale;
      if (first.bytes.empty()) {
        ++i;
        continue;
      }
      auto file = first.file;
      std::string buffer = std::move(first.bytes);
      uint64_t pos = first.file_pos;
      size_t j = i + 1;
      for (; j < batch.size(); ++j) {
        auto& next = batch[j];
        if (!next.entry || next.bytes.empty() || next.file != file
            || next.file_pos != pos + buffer.size())
          break;
        directory |= next.touches_directory;
        buffer += next.bytes;
        next.bytes.clear();
      }
      if (!write_all(sys, file->fd, buffer.data(), buffer.size(), pos)) {
        failed.emplace(file.get(),
                       std::string{"write failed: "} + std::strerror(errno));
      } else {
        pad(*file, pos + buffer.size());
        if (std::find(dirty.begin(), dirty.end(), file) == dirty.end())
          dirty.push_back(file);
      }
      i = j;
    }
    bool directory_failed = false;
    if (dirty.size() > max_fdatasyncs_per_group) {
      if (sys.syncfs(lane.dir_fd) != 0) {
        std::string why = std::string{"syncfs failed: "} + std::strerror(errno);
        for (auto& f : dirty)
          failed.emplace(f.get(), why);
        directory_failed = directory;
      }
    } else {
      for (auto& f : dirty)
        if (sys.fdatasync(f->fd) != 0)
          failed.emplace(f.get(), std::string{"fdatasync failed: "}
                                    + std::strerror(errno));
      if (directory && sys.fsync_directory(lane.dir_fd) != 0) {
        log::error("store", "directory fsync failed",
                   {{"error", std::strerror(errno)}});
        directory_failed = true;
      }
    }
    // Cut each failed log back before anything is answered: pages a failed
    // sync left behind must not be served, nor a retry taken as duplicate.
    std::set<log_file*> cut;
    for (auto& op : batch) {
      if (!op.file)
        continue;
      auto i = failed.find(op.file.get());
      if (i != failed.end() && cut.insert(i->first).second) {
        log::error("store", "a write to a stream's log failed",
                   {{"file", i->first->path}, {"error", i->second}});
        cut_back(*op.entry, i->second);
      }
    }
    for (auto& op : batch) {
      if (op.repair)
        continue;
      const std::string* why = nullptr;
      if (op.file) {
        auto i = failed.find(op.file.get());
        if (i != failed.end())
          why = &i->second;
      }
      publish(op, why, directory_failed);
    }
  }

  /// Cuts a stream's log back to its durable length and syncs that, then
  /// resets the submitted state to the durable one; marks the stream broken
  /// when the cut fails. Runs on the stream's writer.
  void cut_back(stream_entry& e, const std::string& why) {
    uint64_t durable;
    std::shared_ptr<log_file> held;
    {
      std::lock_guard<std::mutex> guard{e.mtx};
      durable = e.durable_size;
      if (!ensure_open(e)) {
        e.broken = true; // retried by the next request's repair
        return;
      }
      held = e.file;
    }
    auto& file = *held;
    bool ok = io->ftruncate(file.fd, static_cast<off_t>(durable)) == 0
              && io->fdatasync(file.fd) == 0;
    auto error = ok ? std::string{} : std::strerror(errno);
    std::vector<std::function<void()>> wake;
    {
      std::lock_guard<std::mutex> guard{e.mtx};
      if (ok) {
        file.allocated = durable;
        e.file_size = durable;
        e.tail = e.durable_tail;
        e.closed = e.durable_closed;
        e.producers = e.durable_producers;
        e.stream_seq = e.durable_stream_seq;
        ++e.generation;
        if (e.broken)
          log::info("store", "a broken stream's log works again",
                    {{"stream", e.header.name}});
        e.broken = false;
      } else {
        e.broken = true;
        for (auto& [token, w] : e.waiters)
          wake.push_back(std::move(w.fn));
        e.waiters.clear();
      }
    }
    if (!ok)
      log::error("store",
                 "cannot cut a stream's log back to its durable "
                 "length; the stream is unavailable until it can",
                 {{"stream", e.header.name}, {"after", why}, {"error", error}});
    for (auto& fn : wake)
      fn();
  }

  /// Fills zeros past `end` when the records reach past the zeros written
  /// before, in a write of their own: best effort, since a disk too full for
  /// the zeros may still hold the records (the next growth tries again).
  void pad(log_file& file, uint64_t end) {
    if (end <= file.allocated)
      return;
    auto target = padded_size(end);
    std::string zeros(target - end, '\0');
    file.allocated = write_all(*io, file.fd, zeros.data(), zeros.size(), end)
                       ? target
                       : end;
  }

  /// Answers an operation and, when it became durable, shows it to readers.
  /// `failed` is why its log's write failed (null when it did not).
  void publish(pending_op& op, const std::string* failed,
               bool directory_failed) {
    if (!op.entry) {
      // A directory change alone (a discarded corrupt log).
      if (directory_failed) {
        op.result.status = store_status::unavailable;
        op.result.message = "the log was removed, but the directory sync "
                            "failed: it may return after a restart";
      }
      if (op.done)
        op.done(std::move(op.result));
      return;
    }
    std::vector<std::function<void()>> wake;
    bool take_away = false;
    {
      auto& e = *op.entry;
      std::lock_guard<std::mutex> guard{e.mtx};
      if (op.touches_directory && !op.creates) {
        // A delete: the log is unlinked already.
        if (directory_failed) {
          op.result.status = store_status::unavailable;
          op.result.message = "deleted, but the directory sync failed: the "
                              "stream may return after a restart";
        }
      } else if (op.stale || failed != nullptr || e.broken) {
        // Not durable: the log was cut back to before it (or is broken).
        op.result = make_result(store_status::unavailable, e);
        op.result.message = failed != nullptr
                              ? "the stream's log could not be written ("
                                  + *failed
                                  + "); nothing of this request "
                                    "was kept, retry"
                            : e.broken ? "the stream's log is unavailable "
                                         "(a disk error); retry later"
                                       : "an earlier write to the stream "
                                         "failed; nothing of this request "
                                         "was kept, retry";
        take_away = op.creates;
      } else if (op.creates && directory_failed) {
        op.result = make_result(store_status::unavailable, e);
        op.result.message = "the stream's directory entry could not be "
                            "synced (a disk error); nothing was kept, retry";
        take_away = true;
      } else {
        e.chunks.insert(e.chunks.end(), op.chunks.begin(), op.chunks.end());
        e.durable_tail = std::max(e.durable_tail, op.tail_after);
        e.durable_closed |= op.closes;
        e.durable_size = std::max(e.durable_size, op.end_pos);
        if (op.producer)
          e.durable_producers[op.producer->id] = producer_state{
            op.producer->epoch, op.producer->seq};
        if (!op.stream_seq.empty())
          e.durable_stream_seq = op.stream_seq;
      }
      for (auto i = e.waiters.begin(); i != e.waiters.end();) {
        if (e.broken || e.durable_closed || i->second.offset < e.durable_tail) {
          wake.push_back(std::move(i->second.fn));
          i = e.waiters.erase(i);
        } else {
          ++i;
        }
      }
    }
    if (take_away)
      forget_failed_create(op.entry);
    // The writer's answer first: its fan-out to readers can wait a moment,
    // the writer should not wait for it.
    if (op.done)
      op.done(std::move(op.result));
    for (auto& fn : wake)
      fn();
  }

  /// A create that did not become durable: the stream leaves the map and
  /// its log goes (a restart would find it without header, or not at all).
  void forget_failed_create(const entry_ptr& e) {
    take_out(e->header.name, e);
  }

  /// Takes a stream out of the map (if `e` is still the one there), unlinks
  /// its log once, and wakes its waiters.
  void take_out(std::string_view name, const entry_ptr& e) {
    {
      std::lock_guard<std::mutex> guard{map_mtx};
      auto i = streams.find(name);
      if (i != streams.end() && i->second == e)
        streams.erase(i);
    }
    std::vector<std::function<void()>> wake;
    {
      std::lock_guard<std::mutex> guard{e->mtx};
      if (!e->removed) {
        e->removed = true;
        ::unlink(e->path.c_str());
      }
      for (auto& [token, w] : e->waiters)
        wake.push_back(std::move(w.fn));
      e->waiters.clear();
    }
    for (auto& fn : wake)
      fn();
  }

  // -- open files -------------------------------------------------------------

  std::shared_ptr<log_file> adopt(int fd, std::string path) {
    auto file = std::make_shared<log_file>();
    file->fd = fd;
    file->path = std::move(path);
    file->open_count = &open_files;
    ++open_files;
    return file;
  }

  /// Opens the stream's log again if an idle-file close closed it (the
  /// stream's lock held); false with errno set when it cannot (EMFILE).
  bool ensure_open(stream_entry& e) {
    if (e.file)
      return true;
    int fd = ::open(e.path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0)
      return false;
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      auto err = errno;
      ::close(fd);
      errno = err;
      return false;
    }
    e.file = adopt(fd, e.path);
    e.file->allocated = static_cast<uint64_t>(st.st_size);
    return true;
  }

  /// Past `max_open_files`, closes the logs of the streams least recently
  /// used down to nine tenths of it. Only a log with nothing unsynced,
  /// nothing queued and no reader on it is closed: a write-back error is
  /// never lost with its descriptor, since there is none left to report.
  /// Takes no lock it would wait for.
  void evict_idle() {
    auto cap = cfg.max_open_files;
    if (cap == 0 || open_files.load() <= cap)
      return;
    if (wall_ms() < evict_after_ms.load())
      return; // the last pass found too few idle logs: not on every call
    std::unique_lock<std::mutex> one{evict_mtx, std::try_to_lock};
    if (!one.owns_lock())
      return;
    std::vector<std::pair<int64_t, entry_ptr>> all;
    {
      std::lock_guard<std::mutex> guard{map_mtx};
      all.reserve(streams.size());
      for (auto& [name, e] : streams)
        all.emplace_back(e->last_access_ms.load(), e);
    }
    std::sort(all.begin(), all.end(),
              [](const auto& x, const auto& y) { return x.first < y.first; });
    auto target = std::max<size_t>(cap - cap / 10, 1);
    for (auto& [at, e] : all) {
      if (open_files.load() <= target)
        break;
      std::unique_lock<std::mutex> guard{e->mtx, std::try_to_lock};
      if (!guard.owns_lock() || !e->file || e->broken || e->removed
          || e->durable_size != e->file_size || e->file.use_count() > 1)
        continue;
      e->file.reset();
    }
    evict_after_ms = open_files.load() > target ? wall_ms() + 100 : 0;
  }

  /// The answer when a closed log cannot be opened again.
  static std::string reopen_failure() {
    return std::string{"the stream's log cannot be opened ("}
           + std::strerror(errno) + "); retry later";
  }

  // -- operations -------------------------------------------------------------

  /// Queues an attempt to cut a broken stream's log back, then `then`
  /// (which finds out whether it worked). Without `then`, at most one such
  /// attempt waits at a time. The caller holds the stream's lock.
  void request_repair(const entry_ptr& ep, std::function<void()> then = {}) {
    if (!then) {
      if (ep->repair_pending)
        return;
      ep->repair_pending = true;
    }
    pending_op op;
    op.entry = ep;
    op.repair = true;
    op.then = std::move(then);
    enqueue(std::move(op));
  }

  /// Queues a barrier behind everything submitted to the stream so far.
  void submit_flush(const entry_ptr& e, write_callback done,
                    bool after_repair) {
    std::lock_guard<std::mutex> guard{e->mtx};
    if (e->broken && !after_repair) {
      request_repair(e, [this, e, done = std::move(done)]() mutable {
        submit_flush(e, std::move(done), true);
      });
      return;
    }
    pending_op op;
    op.tail_after = e->tail;
    op.generation = e->generation;
    op.result = make_result(store_status::ok, *e);
    op.entry = e;
    op.done = std::move(done);
    enqueue(std::move(op));
  }

  /// Validates an append against the stream's submitted state and, when it
  /// is accepted, advances that state and queues the write. Queued under
  /// the stream's lock: the writer must see one stream's operations in the
  /// order their positions were assigned.
  void submit_append(const entry_ptr& ep, append_request& req,
                     write_callback& done, bool after_repair = false) {
    auto& e = *ep;
    std::unique_lock<std::mutex> guard{e.mtx};
    if (e.removed) {
      guard.unlock();
      done(status_only(store_status::not_found));
      return;
    }
    if (e.broken) {
      if (!after_repair) {
        // Try the disk again first; the request follows the attempt.
        request_repair(ep, [this, ep, req = std::move(req),
                            done = std::move(done)]() mutable {
          submit_append(ep, req, done, true);
        });
        return;
      }
      auto r = make_result(store_status::unavailable, e,
                           "the stream's log is unavailable (a disk "
                           "error); retry later");
      guard.unlock();
      done(std::move(r));
      return;
    }
    if (!ensure_open(e)) {
      auto r = make_result(store_status::unavailable, e, reopen_failure());
      guard.unlock();
      done(std::move(r));
      return;
    }
    e.last_access_ms = wall_ms();
    producer_state* producer = nullptr;
    admission_state state;
    if (req.producer) {
      auto i = e.producers.find(req.producer->id);
      if (i != e.producers.end()) {
        producer = &i->second;
        state.producer = producer_position{producer->epoch, producer->seq};
      }
    }
    state.stream_seq = e.stream_seq;
    state.closed = e.closed;
    state.content_type = e.header.content_type;
    auto verdict = admit_append(
      state, append_claims{req.producer, req.stream_seq, req.content_type,
                           !req.messages.empty(), req.closes});
    if (verdict.what != admission::action::write) {
      auto r = make_result(verdict.status, e, std::move(verdict.message));
      r.producer_epoch = verdict.producer_epoch;
      r.producer_seq = verdict.producer_seq;
      r.expected_seq = verdict.expected_seq;
      r.received_seq = verdict.received_seq;
      if (verdict.what == admission::action::refuse) {
        guard.unlock();
        done(std::move(r));
        return;
      }
      // Answered once everything before it is durable.
      pending_op op;
      op.entry = ep;
      op.tail_after = e.tail;
      op.generation = e.generation;
      op.result = std::move(r);
      op.done = std::move(done);
      enqueue(std::move(op));
      return;
    }
    // Accepted: advance the submitted state and queue the record.
    append_record record;
    record.messages = std::move(req.messages);
    record.producer = req.producer;
    record.stream_seq = req.stream_seq;
    record.closes = req.closes;
    record.durable_before = e.durable_size;
    pending_op op;
    op.entry = ep;
    op.generation = e.generation;
    op.producer = req.producer;
    op.stream_seq = req.stream_seq;
    op.bytes = encode_record(record);
    op.file_pos = e.file_size;
    e.file_size += op.bytes.size();
    op.end_pos = e.file_size;
    // Message bytes sit inside the record: index them.
    auto payload = std::string_view{op.bytes}.substr(record_header_size);
    auto view = decode_append(payload);
    index_messages(op.chunks, op.file_pos + record_header_size, payload,
                   view->messages, e.tail);
    if (req.closes)
      e.closed = true;
    if (!req.stream_seq.empty())
      e.stream_seq = req.stream_seq;
    if (req.producer) {
      if (producer == nullptr)
        producer = &e.producers[req.producer->id];
      producer->epoch = req.producer->epoch;
      producer->seq = req.producer->seq;
    }
    op.tail_after = e.tail;
    op.closes = req.closes;
    op.result = make_result(store_status::ok, e);
    if (producer != nullptr) {
      op.result.producer_epoch = producer->epoch;
      op.result.producer_seq = producer->seq;
    }
    op.done = std::move(done);
    enqueue(std::move(op));
  }

  caf::expected<std::shared_ptr<log_file>>
  create_file(const std::string& name) {
    auto base = streams_dir + "/" + hex16(name_hash(name));
    for (int n = 0; n < 1000; ++n) {
      auto path = base + "-" + std::to_string(n) + ".log";
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                      0640);
      if (fd >= 0)
        return adopt(fd, path);
      if (errno != EEXIST)
        return make_error(ec::database_error, "cannot create " + path + ": "
                                                + std::strerror(errno));
    }
    return make_error(ec::database_error, "too many log files for one hash");
  }

  // -- recovery ---------------------------------------------------------------

  void recover_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      refuse(path, path, std::string{"cannot open: "} + std::strerror(errno));
      return;
    }
    auto file = adopt(fd, path);
    struct stat st {};
    ::fstat(fd, &st);
    auto size = static_cast<size_t>(st.st_size);
    const char* data = nullptr;
    if (size > 0) {
      auto* mapped = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (mapped == MAP_FAILED) {
        refuse(path, path, std::string{"cannot map: "} + std::strerror(errno));
        return;
      }
      data = static_cast<const char*>(mapped);
    }
    auto reading = read_stream_log(std::string_view{data, size});
    // A torn tail's bytes are kept aside before anything is cut: if the
    // judgement was wrong, an operator still has them.
    bool kept = true;
    std::string kept_error;
    auto& torn = reading.stream;
    if (reading.what == log_reading::kind::stream
        && torn.torn_end > torn.valid_size) {
      kept = keep_aside(path, dir_fd,
                        std::string_view{data + torn.valid_size,
                                         torn.torn_end - torn.valid_size},
                        torn.valid_size);
      if (!kept)
        kept_error = std::strerror(errno);
    }
    if (data != nullptr)
      ::munmap(const_cast<char*>(data), size);
    if (!kept) {
      refuse(reading.stream.header.name, path,
             "cannot keep its torn tail aside before cutting it: "
               + kept_error);
      return;
    }
    switch (reading.what) {
      case log_reading::kind::corrupt:
        refuse(reading.name.empty() ? path : reading.name, path, reading.why);
        return;
      case log_reading::kind::headerless:
        // Created but never acknowledged: the header did not make it.
        log::warn("store", "removing a log without header", {{"file", path}});
        ::unlink(path.c_str());
        return;
      case log_reading::kind::stream:
        break;
    }
    auto& found = reading.stream;
    auto e = std::make_shared<stream_entry>();
    e->header = std::move(found.header);
    e->json = is_json(e->header.content_type);
    e->path = path;
    e->file = file;
    e->chunks = std::move(found.chunks);
    e->tail = found.tail;
    e->producers = std::move(found.producers);
    e->stream_seq = std::move(found.stream_seq);
    e->closed = found.closed;
    const auto& scan = found;
    file->allocated = scan.valid_size + scan.padding;
    if (file->allocated < size) {
      log::warn("store", "cutting a torn tail",
                {{"stream", e->header.name},
                 {"bytes", std::to_string(size - scan.valid_size)},
                 {"kept", scan.torn_end > scan.valid_size
                            ? path + ".torn-" + std::to_string(scan.valid_size)
                            : std::string{"(zeros only)"}}});
      file->allocated = scan.valid_size;
      if (::ftruncate(fd, static_cast<off_t>(scan.valid_size)) != 0
          || ::fdatasync(fd) != 0) {
        refuse(e->header.name, path,
               std::string{"cannot cut torn tail: "} + std::strerror(errno));
        return;
      }
    }
    e->file_size = scan.valid_size;
    e->durable_size = scan.valid_size;
    e->durable_tail = e->tail;
    e->durable_closed = e->closed;
    e->durable_producers = e->producers;
    e->durable_stream_seq = e->stream_seq;
    // A restart counts as access: a sliding TTL never ends early.
    e->last_access_ms = wall_ms();
    if (!e->header.expires_at.empty()
        && e->header.expires_at_ms <= e->last_access_ms) {
      ::unlink(path.c_str());
      return;
    }
    std::string_view name{e->header.name};
    if (streams.count(name) > 0) {
      refuse(e->header.name, path, "a second log for the same stream");
      return;
    }
    // Past the cap, a recovered log is closed until it is used.
    if (cfg.max_open_files > 0 && open_files.load() > cfg.max_open_files)
      e->file.reset();
    streams.emplace(name, std::move(e));
  }

  void refuse(const std::string& name, const std::string& path,
              const std::string& why) {
    log::error("store", "refusing a corrupt stream log",
               {{"stream", name}, {"file", path}, {"error", why}});
    refused.emplace_back(name, path + ": " + why);
    if (name != path)
      corrupt[name] = {path, why};
  }
};

stream_store::stream_store(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {
  // nop
}

stream_store::~stream_store() = default;

caf::expected<std::unique_ptr<stream_store>> stream_store::open(config cfg) {
  auto state = std::make_unique<impl>();
  state->cfg = cfg;
  state->io = cfg.io ? cfg.io : std::make_shared<store_io>();
  state->streams_dir = cfg.directory + "/streams";
  for (auto& dir : {cfg.directory, state->streams_dir})
    if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST)
      return make_error(ec::invalid_config, "data-dir: cannot create " + dir
                                              + ": " + std::strerror(errno));
  state->dir_fd = ::open(state->streams_dir.c_str(),
                         O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (state->dir_fd < 0)
    return make_error(ec::invalid_config, "data-dir: cannot open "
                                            + state->streams_dir + ": "
                                            + std::strerror(errno));
  auto* dir = ::opendir(state->streams_dir.c_str());
  if (dir == nullptr)
    return make_error(ec::invalid_config,
                      "data-dir: cannot list " + state->streams_dir);
  std::vector<std::string> files;
  while (auto* ent = ::readdir(dir)) {
    std::string file = ent->d_name;
    if (file.size() > 4 && file.compare(file.size() - 4, 4, ".log") == 0)
      files.push_back(state->streams_dir + "/" + file);
  }
  ::closedir(dir);
  std::sort(files.begin(), files.end());
  for (auto& path : files)
    state->recover_file(path);
  ::fsync(state->dir_fd);
  log::info("store", "opened",
            {{"directory", cfg.directory},
             {"streams", std::to_string(state->streams.size())},
             {"refused", std::to_string(state->refused.size())}});
  for (auto& lane : state->lanes) {
    lane.dir_fd = ::open(state->streams_dir.c_str(),
                         O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lane.dir_fd < 0)
      return make_error(ec::invalid_config, "data-dir: cannot open "
                                              + state->streams_dir + ": "
                                              + std::strerror(errno));
  }
  auto* raw = state.get();
  for (auto& lane : state->lanes)
    lane.thread = std::thread{[raw, &lane] { raw->run_writer(lane); }};
  return std::unique_ptr<stream_store>{new stream_store(std::move(state))};
}

void stream_store::create(const std::string& name, create_request req,
                          write_callback done) {
  auto& st = *impl_;
  if (auto existing = st.find(name)) {
    std::unique_lock<std::mutex> guard{existing->mtx};
    auto& h = existing->header;
    bool same = media_type(h.content_type) == media_type(req.content_type)
                && h.ttl_seconds == req.ttl_seconds
                && h.expires_at_ms == req.expires_at_ms
                && existing->closed == req.closed;
    auto r = make_result(same ? store_status::exists
                              : store_status::config_conflict,
                         *existing,
                         same ? ""
                              : "the stream exists with another "
                                "configuration");
    guard.unlock();
    done(std::move(r));
    return;
  }
  auto file = st.create_file(name);
  if (!file) {
    write_result r;
    r.status = store_status::unavailable;
    r.message = error_message(file.error());
    done(std::move(r));
    return;
  }
  auto e = std::make_shared<stream_entry>();
  e->header.name = name;
  e->header.content_type = req.content_type;
  e->header.ttl_seconds = req.ttl_seconds;
  e->header.expires_at = req.expires_at;
  e->header.expires_at_ms = req.expires_at_ms;
  e->header.created_ms = wall_ms();
  e->json = is_json(req.content_type);
  e->file = *file;
  e->path = e->file->path;
  e->last_access_ms = e->header.created_ms;
  pending_op op;
  op.entry = e;
  op.bytes = std::string{log_magic} + encode_record(e->header);
  op.touches_directory = true;
  op.creates = true;
  if (!req.messages.empty() || req.closed) {
    append_record record;
    record.messages = std::move(req.messages);
    record.closes = req.closed;
    auto rec = encode_record(record);
    auto payload = std::string_view{rec}.substr(record_header_size);
    auto view = decode_append(payload);
    index_messages(op.chunks, op.bytes.size() + record_header_size, payload,
                   view->messages, e->tail);
    op.bytes += rec;
    e->closed = req.closed;
  }
  e->file_size = op.bytes.size();
  op.end_pos = e->file_size;
  op.tail_after = e->tail;
  op.closes = e->closed;
  op.result = make_result(store_status::ok, *e);
  op.done = std::move(done);
  // Held until the create is queued: an append that finds the new stream
  // must queue after it.
  std::lock_guard<std::mutex> own{e->mtx};
  {
    std::lock_guard<std::mutex> guard{st.map_mtx};
    auto [it, inserted] = st.streams.emplace(std::string_view{e->header.name},
                                             e);
    if (!inserted) {
      // Lost a race with a concurrent create of the same name.
      ::unlink(e->file->path.c_str());
      auto other = it->second;
      write_result r;
      {
        std::lock_guard<std::mutex> g{other->mtx};
        bool same = media_type(other->header.content_type)
                      == media_type(req.content_type)
                    && other->header.ttl_seconds == req.ttl_seconds
                    && other->header.expires_at_ms == req.expires_at_ms;
        r = make_result(same ? store_status::exists
                             : store_status::config_conflict,
                        *other);
      }
      op.done(std::move(r));
      return;
    }
  }
  st.enqueue(std::move(op));
}

void stream_store::append(const std::string& name, append_request req,
                          write_callback done) {
  auto e = impl_->find(name);
  if (!e) {
    done(status_only(store_status::not_found));
    return;
  }
  impl_->submit_append(e, req, done);
}

std::optional<std::string> stream_store::corruption(const std::string& name) {
  std::lock_guard<std::mutex> guard{impl_->map_mtx};
  auto i = impl_->corrupt.find(name);
  if (i == impl_->corrupt.end())
    return std::nullopt;
  return "the stream's log " + i->second.first + " is corrupt ("
         + i->second.second + "); delete the stream to discard it";
}

void stream_store::remove(const std::string& name, write_callback done) {
  {
    // Deleting a corrupt stream discards its log: the operator's way out.
    std::unique_lock<std::mutex> guard{impl_->map_mtx};
    auto i = impl_->corrupt.find(name);
    if (i != impl_->corrupt.end()) {
      ::unlink(i->second.first.c_str());
      impl_->corrupt.erase(i);
      guard.unlock();
      log::warn("store", "discarded a corrupt stream log", {{"stream", name}});
      pending_op op;
      op.touches_directory = true;
      op.result.status = store_status::ok;
      op.done = std::move(done);
      impl_->enqueue(name, std::move(op));
      return;
    }
  }
  auto e = impl_->find(name);
  if (!e) {
    done(status_only(store_status::not_found));
    return;
  }
  impl_->drop(name, e, std::move(done));
}

void stream_store::flush(const std::string& name, write_callback done) {
  auto e = impl_->find(name);
  if (!e) {
    done(status_only(store_status::not_found));
    return;
  }
  impl_->submit_flush(e, std::move(done), false);
}

std::optional<stream_info> stream_store::head(const std::string& name) {
  auto e = impl_->find(name);
  if (!e)
    return std::nullopt;
  std::lock_guard<std::mutex> guard{e->mtx};
  stream_info info;
  info.content_type = e->header.content_type;
  info.ttl_seconds = e->header.ttl_seconds;
  info.expires_at = e->header.expires_at;
  info.expires_at_ms = e->header.expires_at_ms;
  info.created_ms = e->header.created_ms;
  info.closed = e->durable_closed;
  info.next_offset = e->durable_tail;
  info.stream_seq = e->stream_seq;
  return info;
}

read_result stream_store::read(const std::string& name, uint64_t offset) {
  read_result result;
  auto e = impl_->find(name);
  if (!e) {
    result.status = store_status::not_found;
    return result;
  }
  // The index entries the read may need, copied under the lock: from the
  // last at or before `offset` to the last that starts within reach.
  std::vector<chunk> entries;
  std::shared_ptr<log_file> file;
  uint64_t durable_tail = 0;
  bool durable_closed = false;
  bool json = false;
  auto max_bytes = impl_->cfg.max_read_bytes;
  {
    std::lock_guard<std::mutex> guard{e->mtx};
    if (e->broken) {
      impl_->request_repair(e);
      result.status = store_status::unavailable;
      return result;
    }
    e->last_access_ms = wall_ms();
    result.content_type = e->header.content_type;
    if (!impl_->ensure_open(*e)) {
      log::warn("store", "cannot open a closed log again",
                {{"stream", name}, {"error", std::strerror(errno)}});
      result.status = store_status::unavailable;
      return result;
    }
    file = e->file;
    json = e->json;
    durable_tail = e->durable_tail;
    durable_closed = e->durable_closed;
    offset = std::min(offset, durable_tail);
    auto& index = e->chunks;
    auto after = std::partition_point(index.begin(), index.end(),
                                      [&](const chunk& c) {
                                        return c.offset <= offset;
                                      });
    auto first = after == index.begin() ? after : std::prev(after);
    auto last = std::partition_point(first, index.end(), [&](const chunk& c) {
      return c.offset <= offset + max_bytes;
    });
    entries.assign(first, last);
  }
  impl_->evict_idle(); // this stream's log stays: the read holds it
  result.start_offset = offset;
  result.next_offset = offset;
  // Messages follow their entry as `u32 length | bytes`, up to the next
  // entry of the same record or the record's end. JSON messages are never
  // split (a read starts at the first message at or after `offset`); bytes
  // may start inside one.
  auto finish = [&] {
    result.up_to_date = result.next_offset >= durable_tail;
    result.closed = result.up_to_date && durable_closed;
    return std::move(result);
  };
  auto unavailable = [] {
    read_result failed;
    failed.status = store_status::unavailable;
    return failed;
  };
  if (entries.empty())
    return finish();
  auto region_end = [&](size_t k) {
    return k + 1 < entries.size() && entries[k + 1].end == entries[k].end
             ? entries[k + 1].file_pos
             : entries[k].end;
  };
  // One pread for the whole span: the records' other fields between the
  // regions are small next to the messages.
  auto span_pos = entries.front().file_pos;
  std::string span(region_end(entries.size() - 1) - span_pos, '\0');
  if (!read_all(*impl_->io, file->fd, span.data(), span.size(), span_pos))
    return unavailable();
  size_t bytes = 0;
  bool full = false;
  for (size_t k = 0; k < entries.size() && !full; ++k) {
    auto& c = entries[k];
    auto region = std::string_view{span}.substr(c.file_pos - span_pos,
                                                region_end(k) - c.file_pos);
    auto at = c.offset;
    size_t pos = 0;
    while (pos + 4 <= region.size() && at < durable_tail) {
      uint32_t len = 0;
      for (int b = 0; b < 4; ++b)
        len |= static_cast<uint32_t>(static_cast<uint8_t>(region[pos + b]))
               << (8 * b);
      if (region.size() - pos - 4 < len) {
        // The index and the file disagree: never serve a guess.
        log::error("store", "a read found a message past its record",
                   {{"stream", name},
                    {"file_pos", std::to_string(c.file_pos)}});
        return unavailable();
      }
      auto msg = region.substr(pos + 4, len);
      pos += 4 + len;
      auto msg_at = at;
      at += len;
      if (json ? msg_at < offset : at <= offset)
        continue;
      if (!result.chunks.empty() && bytes + len > max_bytes) {
        full = true;
        break;
      }
      if (msg_at < offset) {
        // Start inside a byte message.
        msg.remove_prefix(offset - msg_at);
        msg_at = offset;
      }
      if (result.chunks.empty())
        result.start_offset = msg_at;
      result.chunks.emplace_back(msg);
      bytes += msg.size();
      result.next_offset = msg_at + msg.size();
    }
  }
  return finish();
}

uint64_t stream_store::wait(const std::string& name, uint64_t offset,
                            std::function<void()> fn) {
  auto e = impl_->find(name);
  if (!e) {
    fn();
    return 0;
  }
  std::unique_lock<std::mutex> guard{e->mtx};
  if (e->broken || e->durable_closed || offset < e->durable_tail) {
    guard.unlock();
    fn();
    return 0;
  }
  auto token = impl_->next_waiter++;
  e->waiters.emplace(token, waiter{offset, std::move(fn)});
  return token;
}

void stream_store::cancel_wait(const std::string& name, uint64_t token) {
  entry_ptr e;
  {
    std::lock_guard<std::mutex> guard{impl_->map_mtx};
    auto i = impl_->streams.find(name);
    if (i == impl_->streams.end())
      return;
    e = i->second;
  }
  std::lock_guard<std::mutex> guard{e->mtx};
  e->waiters.erase(token);
}

std::vector<std::pair<std::string, std::string>> stream_store::refused() const {
  std::lock_guard<std::mutex> guard{impl_->map_mtx};
  return impl_->refused;
}

size_t stream_store::open_files() const {
  return impl_->open_files.load();
}

size_t stream_store::index_size(const std::string& name) const {
  entry_ptr e;
  {
    std::lock_guard<std::mutex> guard{impl_->map_mtx};
    auto i = impl_->streams.find(name);
    if (i == impl_->streams.end())
      return 0;
    e = i->second;
  }
  std::lock_guard<std::mutex> guard{e->mtx};
  return e->chunks.size();
}

size_t stream_store::size() const {
  std::lock_guard<std::mutex> guard{impl_->map_mtx};
  return impl_->streams.size();
}

} // namespace ebridge
