#define CAF_SUITE stream_store
#include <caf/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include <csignal>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.hpp"
#include "core/error.hpp"
#include "storage/stream_store.hpp"
#include "tests/test_util.hpp"

using namespace ebridge;

namespace {

/// The kernel's calls, with faults armed by a test: each counter says how
/// many of the next calls of that kind fail.
struct faulty_io : store_io {
  std::atomic<int> fdatasync_eio{0};
  std::atomic<int> directory_eio{0};
  std::atomic<int> truncate_eio{0};
  /// The next pwrite writes half its bytes; the one after fails ENOSPC.
  std::atomic<bool> enospc_mid_write{false};
  std::atomic<bool> half_written{false};

  static bool take(std::atomic<int>& counter) {
    auto n = counter.load();
    while (n > 0 && !counter.compare_exchange_weak(n, n - 1)) {
      // retry
    }
    return n > 0;
  }

  ssize_t pwrite(int fd, const void* data, size_t size, off_t pos) override {
    if (half_written.exchange(false)) {
      errno = ENOSPC;
      return -1;
    }
    if (size > 1 && enospc_mid_write.exchange(false)) {
      half_written = true;
      return store_io::pwrite(fd, data, size / 2, pos);
    }
    return store_io::pwrite(fd, data, size, pos);
  }

  int fdatasync(int fd) override {
    if (take(fdatasync_eio)) {
      errno = EIO;
      return -1;
    }
    return store_io::fdatasync(fd);
  }

  int fsync_directory(int fd) override {
    if (take(directory_eio)) {
      errno = EIO;
      return -1;
    }
    return store_io::fsync_directory(fd);
  }

  int ftruncate(int fd, off_t size) override {
    if (take(truncate_eio)) {
      errno = EIO;
      return -1;
    }
    return store_io::ftruncate(fd, size);
  }
};

/// A store on a fresh temporary directory, reopened on demand.
struct fixture {
  fixture() {
    char tmpl[] = "/tmp/ebridge-store-test.XXXXXX";
    dir = ::mkdtemp(tmpl);
    reopen();
  }

  ~fixture() {
    store.reset();
    set_wall_clock_for_tests(nullptr);
    std::string cmd = "rm -rf '" + dir + "'";
    if (std::system(cmd.c_str()) != 0)
      CAF_MESSAGE("could not remove " << dir);
  }

  void reopen() {
    store.reset();
    stream_store::config cfg;
    cfg.directory = dir;
    cfg.max_read_bytes = 64;
    cfg.io = io;
    cfg.max_open_files = max_open_files;
    store = EB_OK(stream_store::open(cfg));
  }

  write_result create(const std::string& name,
                      const std::string& type = "application/json",
                      std::vector<std::string> initial = {}) {
    create_request req;
    req.content_type = type;
    req.messages = message_batch{initial};
    std::promise<write_result> p;
    store->create(name, std::move(req),
                  [&](write_result r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }

  write_result append(const std::string& name, std::vector<std::string> msgs,
                      std::optional<producer_stamp> producer = std::nullopt,
                      bool closes = false,
                      std::string type = "application/json") {
    append_request req;
    req.content_type = std::move(type);
    req.messages = message_batch{msgs};
    req.producer = std::move(producer);
    req.closes = closes;
    std::promise<write_result> p;
    store->append(name, std::move(req),
                  [&](write_result r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }

  /// Every message of a stream, following pagination.
  std::vector<std::string> read_all(const std::string& name) {
    std::vector<std::string> result;
    uint64_t offset = 0;
    for (;;) {
      auto r = store->read(name, offset);
      CAF_REQUIRE(r.status == store_status::ok);
      result.insert(result.end(), r.chunks.begin(), r.chunks.end());
      offset = r.next_offset;
      if (r.up_to_date)
        return result;
    }
  }

  /// The log files in the store's directory.
  std::vector<std::string> log_files() {
    std::vector<std::string> result;
    auto* d = ::opendir((dir + "/streams").c_str());
    while (auto* ent = ::readdir(d))
      if (ent->d_name[0] != '.')
        result.push_back(dir + "/streams/" + ent->d_name);
    ::closedir(d);
    return result;
  }

  /// A file's size on disk.
  static uint64_t file_size(const std::string& path) {
    struct stat st {};
    CAF_REQUIRE_EQUAL(::stat(path.c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_size);
  }

  /// Where a log's records end: its last nonzero byte, plus one (every
  /// record here ends in a nonzero message byte; zeros after are padding).
  static uint64_t records_end(const std::string& path) {
    std::ifstream in{path, std::ios::binary};
    std::string bytes{std::istreambuf_iterator<char>{in}, {}};
    auto last = bytes.find_last_not_of('\0');
    return last == std::string::npos ? 0 : last + 1;
  }

  write_result remove(const std::string& name) {
    std::promise<write_result> p;
    store->remove(name, [&](write_result r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }

  write_result flush(const std::string& name) {
    std::promise<write_result> p;
    store->flush(name, [&](write_result r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }

  static std::string contents(const std::string& path) {
    std::ifstream in{path, std::ios::binary};
    return std::string{std::istreambuf_iterator<char>{in}, {}};
  }

  /// Whether the store's open logs come down to at most `n` (the writer
  /// closes idle ones after it answered).
  bool open_files_within(size_t n) {
    for (int i = 0; i < 200; ++i) {
      if (store->open_files() <= n)
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    CAF_MESSAGE("open logs: " << store->open_files());
    return false;
  }

  size_t max_open_files = 0;
  std::string dir;
  std::shared_ptr<faulty_io> io = std::make_shared<faulty_io>();
  std::unique_ptr<stream_store> store;
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(stream_store_tests, fixture)

CAF_TEST(idle logs past the open file cap are closed and opened again on use) {
  max_open_files = 4;
  reopen();
  auto name = [](int i) { return "/cap/" + std::to_string(i); };
  for (int i = 0; i < 12; ++i) {
    CAF_REQUIRE(create(name(i)).status == store_status::ok);
    CAF_REQUIRE(append(name(i), {std::to_string(i)}).status
                == store_status::ok);
  }
  CAF_CHECK(open_files_within(4));
  // Every stream still reads back and takes appends: its log opens again.
  for (int i = 0; i < 12; ++i) {
    CAF_CHECK_EQUAL(read_all(name(i)),
                    (std::vector<std::string>{std::to_string(i)}));
    CAF_CHECK(append(name(i), {"[" + std::to_string(i) + "]"}).status
              == store_status::ok);
  }
  CAF_CHECK(open_files_within(4));
  // A restart over 12 logs keeps at most the cap open, and loses nothing.
  reopen();
  CAF_CHECK_LESS_OR_EQUAL(store->open_files(), 4u);
  CAF_CHECK_EQUAL(store->size(), 12u);
  for (int i = 0; i < 12; ++i)
    CAF_CHECK_EQUAL(read_all(name(i)),
                    (std::vector<std::string>{std::to_string(i),
                                              "[" + std::to_string(i) + "]"}));
  CAF_CHECK(open_files_within(4));
  // A delete of a stream whose log is closed removes its file.
  auto before = log_files().size();
  CAF_CHECK(remove(name(0)).status == store_status::ok);
  CAF_CHECK_EQUAL(log_files().size(), before - 1);
}

CAF_TEST(appended messages read back in order with offsets) {
  CAF_CHECK(create("/s").status == store_status::ok);
  auto r1 = append("/s", {"1", "\"two\""});
  CAF_CHECK(r1.status == store_status::ok);
  CAF_CHECK_EQUAL(r1.next_offset, 6u);
  auto r2 = append("/s", {"{\"three\":3}"});
  CAF_CHECK_EQUAL(r2.next_offset, 17u);
  CAF_CHECK_EQUAL(read_all("/s"),
                  (std::vector<std::string>{"1", "\"two\"", "{\"three\":3}"}));
  auto from = store->read("/s", 6);
  CAF_REQUIRE_EQUAL(from.chunks.size(), 1u);
  CAF_CHECK_EQUAL(from.chunks[0], "{\"three\":3}");
  CAF_CHECK_EQUAL(from.start_offset, 6u);
  CAF_CHECK(from.up_to_date);
  auto info = store->head("/s");
  CAF_REQUIRE(info);
  CAF_CHECK_EQUAL(info->next_offset, 17u);
  CAF_CHECK_EQUAL(info->content_type, "application/json");
}

CAF_TEST(reads are paginated on message boundaries) {
  create("/p");
  std::vector<std::string> msgs;
  for (int i = 0; i < 20; ++i)
    msgs.push_back("\"message-" + std::to_string(i) + "\"");
  append("/p", msgs);
  auto first = store->read("/p", 0);
  CAF_CHECK(!first.up_to_date);
  CAF_CHECK_LESS(first.chunks.size(), 20u);
  CAF_CHECK_EQUAL(read_all("/p"), msgs);
}

CAF_TEST(everything acknowledged survives a restart) {
  create("/r");
  append("/r", {"1"}, producer_stamp{"p", 0, 0});
  append("/r", {"2"}, producer_stamp{"p", 0, 1});
  append("/r", {"3"}, std::nullopt, true);
  reopen();
  CAF_CHECK_EQUAL(read_all("/r"), (std::vector<std::string>{"1", "2", "3"}));
  auto info = store->head("/r");
  CAF_REQUIRE(info);
  CAF_CHECK(info->closed);
  // The producer's last request is still recognized as a duplicate.
  auto dup = append("/r", {"2"}, producer_stamp{"p", 0, 1});
  CAF_CHECK(dup.status == store_status::duplicate);
  CAF_CHECK_EQUAL(dup.producer_seq, 1u);
  CAF_CHECK(append("/r", {"4"}).status == store_status::closed);
}

CAF_TEST(a torn tail is cut and the stream goes on) {
  create("/t");
  append("/t", {"1"});
  append("/t", {"2"});
  auto files = log_files();
  CAF_REQUIRE_EQUAL(files.size(), 1u);
  auto end = records_end(files[0]);
  store.reset();
  {
    // A record cut short where the next append goes: inside the padding.
    std::fstream out{files[0], std::ios::in | std::ios::out | std::ios::binary};
    out.seekp(static_cast<std::streamoff>(end));
    out << std::string("\x20\x00\x00\x00\x01\x02", 6);
  }
  reopen();
  CAF_CHECK(store->refused().empty());
  CAF_CHECK_EQUAL(file_size(files[0]), end);
  CAF_CHECK_EQUAL(read_all("/t"), (std::vector<std::string>{"1", "2"}));
  // The cut bytes were kept aside first, next to the log.
  auto aside = files[0] + ".torn-" + std::to_string(end);
  CAF_CHECK_EQUAL(contents(aside), std::string("\x20\x00\x00\x00\x01\x02", 6));
  CAF_CHECK_EQUAL(log_files().size(), 2u);
  CAF_CHECK(append("/t", {"3"}).status == store_status::ok);
  reopen();
  CAF_CHECK_EQUAL(read_all("/t"), (std::vector<std::string>{"1", "2", "3"}));
  // Past the end of the file, after its padding, as well.
  store.reset();
  {
    std::ofstream out{files[0], std::ios::app | std::ios::binary};
    out << std::string("\x20\x00\x00\x00\x01\x02", 6);
  }
  reopen();
  CAF_CHECK(store->refused().empty());
  CAF_CHECK_EQUAL(read_all("/t"), (std::vector<std::string>{"1", "2", "3"}));
  CAF_CHECK(append("/t", {"4"}).status == store_status::ok);
  reopen();
  CAF_CHECK_EQUAL(read_all("/t"),
                  (std::vector<std::string>{"1", "2", "3", "4"}));
}

CAF_TEST(a file size limit that leaves no room for the zeros keeps the append) {
  create("/z");
  append("/z", {"1"});
  auto files = log_files();
  CAF_REQUIRE_EQUAL(files.size(), 1u);
  auto size = file_size(files[0]);
  // Room for the next record past the zeros, not for the zeros after it:
  // a write past the limit fails (EFBIG) as on a full disk.
  std::string big = "\"" + std::string(size, 'x') + "\"";
  auto limit = size + big.size() + 100;
  rlimit old{};
  CAF_REQUIRE_EQUAL(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit tight = old;
  tight.rlim_cur = limit;
  CAF_REQUIRE_EQUAL(::setrlimit(RLIMIT_FSIZE, &tight), 0);
  auto r = append("/z", {big});
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  CAF_CHECK(r.status == store_status::ok);
  CAF_CHECK_LESS_OR_EQUAL(file_size(files[0]), limit);
  CAF_CHECK_EQUAL(read_all("/z"), (std::vector<std::string>{"1", big}));
  // The next growth fills zeros again; everything survives a restart.
  CAF_CHECK(append("/z", {"3"}).status == store_status::ok);
  CAF_CHECK_EQUAL(file_size(files[0]) % 4096, 0u);
  reopen();
  CAF_CHECK(store->refused().empty());
  CAF_CHECK_EQUAL(read_all("/z"), (std::vector<std::string>{"1", big, "3"}));
}

CAF_TEST(appends land in zeros written ahead and a restart keeps them) {
  create("/p");
  append("/p", {"1"});
  auto files = log_files();
  CAF_REQUIRE_EQUAL(files.size(), 1u);
  // The file is filled with zeros to a block boundary past its records.
  auto size = file_size(files[0]);
  CAF_CHECK_EQUAL(size % 4096, 0u);
  CAF_CHECK_GREATER(size, records_end(files[0]));
  // A small append lands inside: the file size stays.
  append("/p", {"2"});
  CAF_CHECK_EQUAL(file_size(files[0]), size);
  // A restart reads the zeros as padding: nothing cut, nothing lost, and
  // the next append still lands inside.
  reopen();
  CAF_CHECK(store->refused().empty());
  CAF_CHECK_EQUAL(file_size(files[0]), size);
  CAF_CHECK_EQUAL(read_all("/p"), (std::vector<std::string>{"1", "2"}));
  append("/p", {"3"});
  CAF_CHECK_EQUAL(file_size(files[0]), size);
  // Appends past the padding grow the file by more zeros, block-aligned.
  std::vector<std::string> expected{"1", "2", "3"};
  std::string big = "\"" + std::string(1000, 'x') + "\"";
  for (int i = 0; i < 20; ++i) {
    CAF_CHECK(append("/p", {big}).status == store_status::ok);
    expected.push_back(big);
  }
  auto grown = file_size(files[0]);
  CAF_CHECK_GREATER(grown, size);
  CAF_CHECK_EQUAL(grown % 4096, 0u);
  CAF_CHECK_GREATER(grown, records_end(files[0]));
  reopen();
  CAF_CHECK(store->refused().empty());
  CAF_CHECK_EQUAL(file_size(files[0]), grown);
  CAF_CHECK_EQUAL(read_all("/p"), expected);
}

CAF_TEST(a corrupt log is refused and reported instead of served short) {
  create("/c");
  append("/c", {"\"aaaaaaaaaa\""});
  append("/c", {"\"bbbbbbbbbb\""});
  create("/ok");
  append("/ok", {"1"});
  store.reset();
  for (auto& file : log_files()) {
    std::fstream f{file, std::ios::in | std::ios::out | std::ios::binary};
    std::string bytes{std::istreambuf_iterator<char>{f}, {}};
    auto pos = bytes.find("aaaaaaaaaa");
    if (pos == std::string::npos)
      continue;
    f.seekp(static_cast<std::streamoff>(pos));
    f.put('X');
  }
  reopen();
  auto refused = store->refused();
  CAF_REQUIRE_EQUAL(refused.size(), 1u);
  CAF_CHECK_NOT_EQUAL(refused[0].second.find("damaged record"),
                      std::string::npos);
  CAF_CHECK(store->read("/c", 0).status != store_status::ok);
  auto why = store->corruption("/c");
  CAF_REQUIRE(why);
  CAF_CHECK_NOT_EQUAL(why->find("corrupt"), std::string::npos);
  CAF_CHECK(!store->corruption("/ok"));
  CAF_CHECK_EQUAL(read_all("/ok"), (std::vector<std::string>{"1"}));
  // Deleting the stream discards the corrupt log; the name is free again.
  std::promise<write_result> p;
  store->remove("/c", [&](write_result r) { p.set_value(r); });
  CAF_CHECK(p.get_future().get().status == store_status::ok);
  CAF_CHECK(!store->corruption("/c"));
  CAF_CHECK_EQUAL(log_files().size(), 1u);
  CAF_CHECK(create("/c").status == store_status::ok);
}

CAF_TEST(producer rules hold across epochs) {
  create("/prod");
  CAF_CHECK(append("/prod", {"1"}, producer_stamp{"p", 0, 1}).status
            == store_status::seq_gap);
  CAF_CHECK(append("/prod", {"1"}, producer_stamp{"p", 0, 0}).status
            == store_status::ok);
  auto gap = append("/prod", {"3"}, producer_stamp{"p", 0, 2});
  CAF_CHECK(gap.status == store_status::seq_gap);
  CAF_CHECK_EQUAL(gap.expected_seq, 1u);
  CAF_CHECK_EQUAL(gap.received_seq, 2u);
  CAF_CHECK(append("/prod", {"x"}, producer_stamp{"p", 1, 3}).status
            == store_status::bad_epoch_seq);
  CAF_CHECK(append("/prod", {"2"}, producer_stamp{"p", 1, 0}).status
            == store_status::ok);
  auto stale = append("/prod", {"x"}, producer_stamp{"p", 0, 1});
  CAF_CHECK(stale.status == store_status::stale_epoch);
  CAF_CHECK_EQUAL(stale.producer_epoch, 1u);
  CAF_CHECK_EQUAL(read_all("/prod"), (std::vector<std::string>{"1", "2"}));
}

CAF_TEST(concurrent appends to many streams are all durable once) {
  constexpr int streams = 16;
  constexpr int per_stream = 50;
  for (int s = 0; s < streams; ++s)
    create("/g" + std::to_string(s));
  std::atomic<int> acked{0};
  std::vector<std::thread> threads;
  for (int s = 0; s < streams; ++s)
    threads.emplace_back([&, s] {
      auto name = "/g" + std::to_string(s);
      for (int i = 0; i < per_stream; ++i) {
        auto r = append(name, {std::to_string(i)},
                        producer_stamp{"w", 0, static_cast<uint64_t>(i)});
        if (r.status == store_status::ok)
          ++acked;
      }
    });
  for (auto& t : threads)
    t.join();
  CAF_CHECK_EQUAL(acked.load(), streams * per_stream);
  reopen();
  for (int s = 0; s < streams; ++s) {
    auto msgs = read_all("/g" + std::to_string(s));
    CAF_REQUIRE_EQUAL(msgs.size(), static_cast<size_t>(per_stream));
    for (int i = 0; i < per_stream; ++i)
      CAF_CHECK_EQUAL(msgs[i], std::to_string(i));
  }
}

CAF_TEST(operations queued back to back keep their order per stream) {
  // Without waiting for answers: create, append, delete, create again and
  // append, on names that spread over both writer threads. Each stream's
  // operations must be answered, and take effect, in the order queued.
  constexpr int streams = 16;
  std::mutex mtx;
  std::map<std::string, std::vector<std::string>> answered; // per stream
  std::vector<std::string> failures;
  size_t count = 0;
  auto note = [&](std::string name, std::string what) {
    return [&, name, what](write_result r) {
      std::lock_guard<std::mutex> guard{mtx};
      answered[name].push_back(what);
      if (r.status != store_status::ok)
        failures.push_back(what + " " + name + ": " + to_string(r.status));
      ++count;
    };
  };
  auto append_async = [&](const std::string& name, std::string msg) {
    append_request req;
    req.content_type = "application/json";
    req.messages = {std::move(msg)};
    store->append(name, std::move(req), note(name, "append"));
  };
  auto create_async = [&](const std::string& name) {
    create_request req;
    req.content_type = "application/json";
    store->create(name, std::move(req), note(name, "create"));
  };
  for (int s = 0; s < streams; ++s) {
    auto name = "/b" + std::to_string(s);
    create_async(name);
    append_async(name, "1");
    store->remove(name, note(name, "remove"));
    create_async(name);
    append_async(name, "2");
  }
  for (int i = 0; i < 500; ++i) {
    {
      std::lock_guard<std::mutex> guard{mtx};
      if (count == 5u * streams)
        break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  {
    std::lock_guard<std::mutex> guard{mtx};
    CAF_REQUIRE_EQUAL(count, 5u * streams);
    CAF_CHECK_EQUAL(failures, std::vector<std::string>{});
    for (auto& [name, whats] : answered)
      CAF_CHECK_EQUAL(whats,
                      (std::vector<std::string>{"create", "append", "remove",
                                                "create", "append"}));
  }
  for (int pass = 0; pass < 2; ++pass) {
    for (int s = 0; s < streams; ++s)
      CAF_CHECK_EQUAL(read_all("/b" + std::to_string(s)),
                      std::vector<std::string>{"2"});
    CAF_CHECK_EQUAL(log_files().size(), static_cast<size_t>(streams));
    reopen(); // the same after recovery
  }
}

CAF_TEST(concurrent appends to one stream keep every writer in order) {
  create("/one");
  constexpr int writers = 8;
  constexpr int per_writer = 100;
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&, w] {
      for (int i = 0; i < per_writer; ++i)
        append("/one",
               {"[" + std::to_string(w) + "," + std::to_string(i) + "]"});
    });
  for (auto& t : threads)
    t.join();
  for (int pass = 0; pass < 2; ++pass) {
    auto msgs = read_all("/one");
    CAF_REQUIRE_EQUAL(msgs.size(), static_cast<size_t>(writers * per_writer));
    std::vector<int> next(writers, 0);
    for (auto& m : msgs) {
      auto comma = m.find(',');
      auto w = std::stoi(m.substr(1, comma - 1));
      auto i = std::stoi(m.substr(comma + 1));
      CAF_CHECK_EQUAL(i, next[w]);
      next[w] = i + 1;
    }
    reopen(); // the same order after recovery
  }
}

CAF_TEST(waiters wake on durable data and on close) {
  create("/w");
  std::promise<void> woke;
  auto token = store->wait("/w", 0, [&] { woke.set_value(); });
  CAF_CHECK_NOT_EQUAL(token, 0u);
  append("/w", {"1"});
  CAF_CHECK(woke.get_future().wait_for(std::chrono::seconds(5))
            == std::future_status::ready);
  // Already past the offset: runs at once.
  bool now = false;
  CAF_CHECK_EQUAL(store->wait("/w", 0, [&] { now = true; }), 0u);
  CAF_CHECK(now);
  std::promise<void> closed;
  store->wait("/w", 1, [&] { closed.set_value(); });
  append("/w", {}, std::nullopt, true);
  CAF_CHECK(closed.get_future().wait_for(std::chrono::seconds(5))
            == std::future_status::ready);
}

CAF_TEST(a sliding ttl expires an idle stream and a read renews it) {
  int64_t now = 1'000'000;
  set_wall_clock_for_tests([&] { return now; });
  create_request req;
  req.content_type = "text/plain";
  req.ttl_seconds = 10;
  std::promise<write_result> p;
  store->create("/ttl", req, [&](write_result r) { p.set_value(r); });
  CAF_CHECK(p.get_future().get().status == store_status::ok);
  now += 9'000;
  CAF_CHECK(store->read("/ttl", 0).status == store_status::ok);
  now += 9'000;
  CAF_CHECK(store->head("/ttl"));
  now += 2'000;
  CAF_CHECK(!store->head("/ttl"));
  CAF_CHECK(store->read("/ttl", 0).status == store_status::not_found);
  CAF_CHECK(log_files().empty());
}

CAF_TEST(stream names never become file names) {
  create("/../../etc/passwd");
  create(std::string("/nul\0name", 9));
  auto files = log_files();
  CAF_CHECK_EQUAL(files.size(), 2u);
  for (auto& f : files)
    CAF_CHECK_EQUAL(f.find("passwd"), std::string::npos);
  reopen();
  CAF_CHECK(store->head("/../../etc/passwd"));
  CAF_CHECK(store->head(std::string("/nul\0name", 9)));
}

CAF_TEST(create twice with the same or another config) {
  CAF_CHECK(create("/x", "application/json").status == store_status::ok);
  CAF_CHECK(create("/x", "Application/JSON; charset=utf-8").status
            == store_status::exists);
  CAF_CHECK(create("/x", "text/plain").status == store_status::config_conflict);
}

CAF_TEST(delete removes the stream and its file) {
  create("/d");
  append("/d", {"1"});
  std::promise<write_result> p;
  store->remove("/d", [&](write_result r) { p.set_value(r); });
  CAF_CHECK(p.get_future().get().status == store_status::ok);
  CAF_CHECK(!store->head("/d"));
  CAF_CHECK(log_files().empty());
  CAF_CHECK(create("/d").status == store_status::ok);
  CAF_CHECK(read_all("/d").empty());
}

CAF_TEST(a waiter token of a deleted stream never cancels its successor) {
  // Long-polls and SSE hubs cancel their waiter by token; a late cancel of a
  // deleted stream's waiter must not take the recreated stream's away.
  create("/t");
  bool first = false;
  auto old_token = store->wait("/t", 0, [&] { first = true; });
  CAF_CHECK(remove("/t").status == store_status::ok);
  CAF_CHECK(first); // the delete woke it
  create("/t");
  std::promise<void> woke;
  auto token = store->wait("/t", 0, [&] { woke.set_value(); });
  CAF_CHECK_NOT_EQUAL(token, old_token);
  store->cancel_wait("/t", old_token);
  append("/t", {"1"});
  CAF_CHECK(woke.get_future().wait_for(std::chrono::seconds{5})
            == std::future_status::ready);
}

CAF_TEST(a flipped bit in an acknowledged record of zeros cuts nothing) {
  // A record whose own data holds whole sectors of zeros, acknowledged, with
  // acknowledged records after it: one flipped bit is corruption; the
  // stream is refused and its log left as it is, none of it cut.
  const std::string binary = "application/octet-stream";
  CAF_REQUIRE(create("/z", binary).status == store_status::ok);
  CAF_REQUIRE(
    append("/z", {std::string(3000, '\0')}, std::nullopt, false, binary).status
    == store_status::ok);
  CAF_REQUIRE(append("/z", {"after"}, std::nullopt, false, binary).status
              == store_status::ok);
  CAF_REQUIRE(append("/z", {"more"}, std::nullopt, false, binary).status
              == store_status::ok);
  auto files = log_files();
  CAF_REQUIRE_EQUAL(files.size(), 1u);
  store.reset();
  auto before = contents(files[0]);
  auto zeros = before.find(std::string(1000, '\0'));
  CAF_REQUIRE_NOT_EQUAL(zeros, std::string::npos);
  {
    std::fstream f{files[0], std::ios::in | std::ios::out | std::ios::binary};
    f.seekp(static_cast<std::streamoff>(zeros + 600));
    f.put('\x08');
  }
  auto damaged = contents(files[0]);
  reopen();
  CAF_REQUIRE_EQUAL(store->refused().size(), 1u);
  CAF_CHECK(store->corruption("/z"));
  CAF_CHECK(store->read("/z", 0).status != store_status::ok);
  CAF_CHECK_EQUAL(contents(files[0]), damaged);
  CAF_CHECK_EQUAL(log_files().size(), 1u);
}

CAF_TEST(a failed fdatasync keeps nothing of the append and a retry is new) {
  CAF_REQUIRE(create("/f").status == store_status::ok);
  CAF_REQUIRE(append("/f", {"1"}, producer_stamp{"p", 0, 0}).status
              == store_status::ok);
  auto files = log_files();
  CAF_REQUIRE_EQUAL(files.size(), 1u);
  auto durable = records_end(files[0]);
  io->fdatasync_eio = 1;
  auto failed = append("/f", {"2"}, producer_stamp{"p", 0, 1});
  CAF_CHECK(failed.status == store_status::unavailable);
  CAF_CHECK_NOT_EQUAL(failed.message.find("fdatasync"), std::string::npos);
  // Cut back to the durable records before the answer: nothing of "2" is
  // on disk or served.
  CAF_CHECK_EQUAL(file_size(files[0]), durable);
  CAF_CHECK_EQUAL(read_all("/f"), (std::vector<std::string>{"1"}));
  auto head = store->head("/f");
  CAF_REQUIRE(head);
  CAF_CHECK_EQUAL(head->next_offset, 1u);
  // The producer's retry is written, not taken for a duplicate.
  auto retry = append("/f", {"2"}, producer_stamp{"p", 0, 1});
  CAF_CHECK(retry.status == store_status::ok);
  CAF_CHECK_EQUAL(read_all("/f"), (std::vector<std::string>{"1", "2"}));
  reopen();
  CAF_CHECK(store->refused().empty());
  CAF_CHECK_EQUAL(read_all("/f"), (std::vector<std::string>{"1", "2"}));
  CAF_CHECK(append("/f", {"2"}, producer_stamp{"p", 0, 1}).status
            == store_status::duplicate);
}

CAF_TEST(operations queued behind a failed write are answered not written) {
  CAF_REQUIRE(create("/q").status == store_status::ok);
  CAF_REQUIRE(append("/q", {"1"}).status == store_status::ok);
  io->fdatasync_eio = 1;
  // Many appends in flight at once: those in the failed batch and those
  // queued behind it are all refused, none is served, the stream goes on.
  std::vector<std::future<write_result>> answers;
  std::vector<std::shared_ptr<std::promise<write_result>>> promises;
  for (int i = 0; i < 50; ++i) {
    auto p = std::make_shared<std::promise<write_result>>();
    answers.push_back(p->get_future());
    append_request req;
    req.content_type = "application/json";
    req.messages = {std::to_string(i + 2)};
    store->append("/q", std::move(req),
                  [p](write_result r) { p->set_value(std::move(r)); });
  }
  size_t ok = 0;
  for (auto& a : answers)
    ok += a.get().status == store_status::ok ? 1 : 0;
  CAF_CHECK_LESS(ok, 50u);
  auto served = read_all("/q");
  CAF_CHECK_EQUAL(served.size(), 1 + ok);
  CAF_CHECK_EQUAL(served.front(), "1");
  CAF_CHECK(append("/q", {"last"}).status == store_status::ok);
  served.push_back("last");
  reopen();
  CAF_CHECK(store->refused().empty());
  CAF_CHECK_EQUAL(read_all("/q"), served);
}

CAF_TEST(a disk full in the middle of a record leaves no partial record) {
  CAF_REQUIRE(create("/n").status == store_status::ok);
  CAF_REQUIRE(append("/n", {"1"}).status == store_status::ok);
  auto files = log_files();
  auto durable = records_end(files[0]);
  io->enospc_mid_write = true;
  auto big = "\"" + std::string(5000, 'x') + "\"";
  auto r = append("/n", {big});
  CAF_CHECK(r.status == store_status::unavailable);
  CAF_CHECK_NOT_EQUAL(r.message.find("No space"), std::string::npos);
  CAF_CHECK_EQUAL(file_size(files[0]), durable);
  CAF_CHECK_EQUAL(read_all("/n"), (std::vector<std::string>{"1"}));
  CAF_CHECK(append("/n", {"3"}).status == store_status::ok);
  reopen();
  CAF_CHECK(store->refused().empty());
  CAF_CHECK_EQUAL(read_all("/n"), (std::vector<std::string>{"1", "3"}));
}

CAF_TEST(a failed directory fsync fails the create) {
  io->directory_eio = 1;
  auto r = create("/d", "application/json", {"1"});
  CAF_CHECK(r.status == store_status::unavailable);
  CAF_CHECK(!store->head("/d"));
  CAF_CHECK(log_files().empty());
  reopen();
  CAF_CHECK(!store->head("/d"));
  CAF_CHECK(create("/d").status == store_status::ok);
  CAF_CHECK(read_all("/d").empty());
}

CAF_TEST(a failed directory fsync fails the delete) {
  CAF_REQUIRE(create("/d").status == store_status::ok);
  io->directory_eio = 1;
  auto r = remove("/d");
  CAF_CHECK(r.status == store_status::unavailable);
  CAF_CHECK_NOT_EQUAL(r.message.find("directory sync failed"),
                      std::string::npos);
  CAF_CHECK(!store->head("/d"));
}

CAF_TEST(a broken stream recovers once its disk works again) {
  CAF_REQUIRE(create("/b").status == store_status::ok);
  CAF_REQUIRE(append("/b", {"1"}).status == store_status::ok);
  // The sync fails, and so does the cut back: broken.
  io->fdatasync_eio = 1000;
  CAF_CHECK(append("/b", {"2"}).status == store_status::unavailable);
  CAF_CHECK(store->read("/b", 0).status == store_status::unavailable);
  // While the disk fails, each request tries again and is refused.
  CAF_CHECK(append("/b", {"2"}).status == store_status::unavailable);
  CAF_CHECK(flush("/b").status == store_status::unavailable);
  // The disk works again: the next request tries it first and goes on.
  io->fdatasync_eio = 0;
  CAF_CHECK(append("/b", {"3"}).status == store_status::ok);
  CAF_CHECK(flush("/b").status == store_status::ok);
  CAF_CHECK_EQUAL(read_all("/b"), (std::vector<std::string>{"1", "3"}));
  reopen();
  CAF_CHECK(store->refused().empty());
  CAF_CHECK_EQUAL(read_all("/b"), (std::vector<std::string>{"1", "3"}));
}

CAF_TEST(the read index does not grow by an entry per message) {
  // One append of 100,000 tiny messages (about 700 KB framed): its index
  // costs an entry per 16 KiB (44), not 100,000, and every message still reads back, in
  // order, at its offset, before and after a restart.
  std::vector<std::string> many;
  for (int i = 0; i < 100000; ++i)
    many.push_back(std::to_string(i % 1000));
  CAF_REQUIRE(create("/many").status == store_status::ok);
  CAF_REQUIRE(append("/many", many).status == store_status::ok);
  CAF_REQUIRE(append("/many", {"\"last\""}).status == store_status::ok);
  auto check = [&] {
    CAF_CHECK_LESS_OR_EQUAL(store->index_size("/many"), 100u);
    auto got = read_all("/many");
    CAF_REQUIRE_EQUAL(got.size(), many.size() + 1);
    for (size_t i = 0; i < many.size(); ++i)
      if (got[i] != many[i])
        CAF_FAIL("message " << i << " reads " << got[i]);
    CAF_CHECK_EQUAL(got.back(), "\"last\"");
    // A read from inside the big record starts at the message there.
    uint64_t offset = 0;
    for (size_t i = 0; i < 54321; ++i)
      offset += many[i].size();
    auto r = store->read("/many", offset);
    CAF_REQUIRE(r.status == store_status::ok);
    CAF_REQUIRE(!r.chunks.empty());
    CAF_CHECK_EQUAL(r.start_offset, offset);
    CAF_CHECK_EQUAL(r.chunks.front(), many[54321]);
  };
  check();
  reopen();
  check();
}

CAF_TEST_FIXTURE_SCOPE_END()
