#include "net/http.hpp"

#include <atomic>
#include <cstdio>
#include <deque>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/tags.hpp"
#include "core/thread.hpp"

namespace ebridge {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

http_stream::~http_stream() = default;

http_response json_error(unsigned status, std::string_view code,
                         std::string_view message) {
  http_response res;
  res.status = status;
  res.set("Content-Type", "application/json");
  res.set("Cache-Control", "no-store");
  res.body = "{\"error\":{\"code\":" + js_string(code)
             + ",\"message\":" + js_string(message) + "}}";
  return res;
}

io_runtime::timer::~timer() = default;

const std::string* http_request::header(std::string_view name) const {
  for (auto& [key, value] : headers)
    if (key == name)
      return &value;
  return nullptr;
}

std::string_view http_request::path() const {
  std::string_view result{target};
  return result.substr(0, result.find('?'));
}

// -- io_runtime ---------------------------------------------------------------

struct io_runtime::impl {
  explicit impl(size_t n) : threads_wanted(std::max<size_t>(n, 1)) {
    // nop
  }
  asio::io_context ioc;
  asio::executor_work_guard<asio::io_context::executor_type> work{
    ioc.get_executor()};
  asio::signal_set signals{ioc, SIGINT, SIGTERM};
  size_t threads_wanted;
  std::vector<std::thread> threads;
};

io_runtime::io_runtime(size_t threads)
  : impl_(std::make_unique<impl>(threads)) {
  // nop
}

io_runtime::~io_runtime() {
  stop();
}

void io_runtime::start() {
  for (size_t i = 0; i < impl_->threads_wanted; ++i)
    impl_->threads.emplace_back([this] {
      // Between the writer (-10) and everything else: a stream's fan-out
      // to its readers is not cut into by other work on the machine.
      raise_thread_priority(-5, "http");
      impl_->ioc.run();
    });
}

void io_runtime::on_shutdown_signal(std::function<void(int)> fn) {
  impl_->signals.async_wait(
    [fn = std::move(fn)](const boost::system::error_code& err, int signal) {
      if (!err)
        fn(signal);
    });
}

namespace {

class asio_timer : public io_runtime::timer,
                   public std::enable_shared_from_this<asio_timer> {
public:
  // On a strand of its own: with several io threads, a cancel must not run
  // beside the timer's completion.
  explicit asio_timer(asio::io_context& ioc) : timer_(asio::make_strand(ioc)) {
    // nop
  }

  void start(std::chrono::milliseconds delay, std::function<void()> fn) {
    timer_.expires_after(delay);
    timer_.async_wait([self = shared_from_this(), fn = std::move(fn)](
                        const boost::system::error_code& err) {
      if (!err && !self->cancelled_)
        fn();
    });
  }

  void cancel() override {
    cancelled_ = true;
    asio::post(timer_.get_executor(),
               [self = shared_from_this()] { self->timer_.cancel(); });
  }

private:
  asio::steady_timer timer_;
  std::atomic<bool> cancelled_{false};
};

} // namespace

void io_runtime::post(std::function<void()> fn) {
  asio::post(impl_->ioc, std::move(fn));
}

std::shared_ptr<io_runtime::timer>
io_runtime::after(std::chrono::milliseconds delay, std::function<void()> fn) {
  auto t = std::make_shared<asio_timer>(impl_->ioc);
  t->start(delay, std::move(fn));
  return t;
}

void io_runtime::stop() {
  impl_->signals.cancel();
  impl_->work.reset();
  impl_->ioc.stop();
  for (auto& t : impl_->threads)
    if (t.joinable())
      t.join();
  impl_->threads.clear();
}

// -- sessions -----------------------------------------------------------------

namespace {

class session;

/// The sessions alive, so that stop() can close them.
struct session_registry {
  std::mutex mtx;
  std::set<std::weak_ptr<session>, std::owner_less<std::weak_ptr<session>>>
    sessions;
};

bhttp::response<bhttp::string_body>
to_beast(http_response&& res, unsigned version, bool keep_alive, bool head) {
  bhttp::response<bhttp::string_body> out{static_cast<bhttp::status>(
                                            res.status),
                                          version};
  out.set(bhttp::field::server, "ebridge");
  out.set("X-Content-Type-Options", "nosniff");
  for (auto& [name, value] : res.headers)
    out.set(name, value);
  out.body() = std::move(res.body);
  out.keep_alive(keep_alive);
  out.prepare_payload();
  // A HEAD answer has the GET answer's Content-Length but no body.
  if (head)
    out.body().clear();
  return out;
}

class session : public std::enable_shared_from_this<session> {
public:
  session(tcp::socket&& socket, std::shared_ptr<http_handler> handler,
          http_limits limits, std::shared_ptr<session_registry> registry)
    : stream_(std::move(socket)), handler_(std::move(handler)), limits_(limits),
      registry_(std::move(registry)) {
    // nop
  }

  void start() {
    {
      std::lock_guard<std::mutex> guard{registry_->mtx};
      registry_->sessions.insert(weak_from_this());
    }
    beast::error_code ignored;
    // Small responses must not wait for Nagle's algorithm.
    stream_.socket().set_option(tcp::no_delay(true), ignored);
    asio::dispatch(stream_.get_executor(),
                   [self = shared_from_this()] { self->read(); });
  }

  /// Closes the connection from any thread.
  /// Closes the connection on its strand; `done` runs once it is closed.
  void close(std::function<void()> done = {}) {
    asio::post(stream_.get_executor(),
               [self = shared_from_this(), done = std::move(done)] {
                 self->close_now();
                 if (done)
                   done();
               });
  }

  ~session() {
    std::lock_guard<std::mutex> guard{registry_->mtx};
    registry_->sessions.erase(weak_from_this());
  }

  // -- streaming (called on the session's strand) -----------------------------

  void stream_write(std::string chunk) {
    if (closed_ || chunk.empty()) { // an empty HTTP chunk would end the body
      queued_ -= chunk.size();
      return;
    }
    chunks_.push_back(std::move(chunk));
    if (!writing_)
      write_next_chunk();
  }

  void stream_finish() {
    if (closed_ || finishing_)
      return;
    finishing_ = true;
    if (!writing_)
      write_next_chunk();
  }

  void stream_when_drained(std::function<void()> fn) {
    if (closed_)
      return;
    if (chunks_.empty() && !writing_) {
      asio::post(stream_.get_executor(), std::move(fn));
      return;
    }
    drained_.push_back(std::move(fn));
  }

  /// Counted when queued (on the caller's thread), uncounted when the
  /// socket took it.
  std::atomic<size_t> queued_{0};

  void stream_on_close(std::function<void()> fn) {
    if (closed_) {
      fn();
      return;
    }
    on_close_.push_back(std::move(fn));
  }

  auto executor() {
    return stream_.get_executor();
  }

private:
  void read() {
    parser_.emplace();
    parser_->body_limit(limits_.max_body);
    parser_->header_limit(static_cast<uint32_t>(limits_.max_header));
    stream_.expires_after(limits_.read_timeout);
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code err,
                                                  size_t) {
                        self->on_read(err);
                      });
  }

  void on_read(beast::error_code err) {
    if (err == bhttp::error::end_of_stream || err == beast::error::timeout
        || err == asio::error::operation_aborted
        || err == asio::error::connection_reset || closed_) {
      close_now();
      return;
    }
    if (err) {
      // Malformed or oversized requests get an answer, then the connection
      // closes: the rest of the stream cannot be trusted.
      if (err == bhttp::error::body_limit)
        write(json_error(413, "PAYLOAD_TOO_LARGE",
                         "request body exceeds "
                           + std::to_string(limits_.max_body) + " bytes"),
              11, false);
      else if (err == bhttp::error::header_limit)
        write(json_error(431, "HEADERS_TOO_LARGE",
                         "request headers exceed "
                           + std::to_string(limits_.max_header) + " bytes"),
              11, false);
      else
        write(json_error(400, "BAD_REQUEST",
                         "malformed HTTP request: " + err.message()),
              11, false);
      return;
    }
    auto msg = parser_->release();
    http_request req;
    req.method = std::string{msg.method_string()};
    req.target = std::string{msg.target()};
    for (auto& field : msg) {
      std::string name{field.name_string()};
      for (auto& c : name)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      req.headers.emplace_back(std::move(name), std::string{field.value()});
    }
    req.body = std::move(msg.body());
    auto version = msg.version();
    auto keep_alive = msg.keep_alive();
    auto head = msg.method() == bhttp::verb::head;
    // No read while a response is pending: one request at a time.
    stream_.expires_never();
    auto once = std::make_shared<std::atomic<bool>>(false);
    auto self = shared_from_this();
    (*handler_)(std::move(req), [self, once, version, keep_alive,
                                 head](http_response res) {
      if (once->exchange(true))
        return;
      asio::post(self->stream_.get_executor(),
                 [self, res = std::move(res), version, keep_alive,
                  head]() mutable {
                   if (res.stream)
                     self->start_stream(std::move(res), version);
                   else
                     self->write(std::move(res), version, keep_alive, head);
                 });
    });
  }

  void write(http_response res, unsigned version, bool keep_alive,
             bool head = false) {
    if (closed_)
      return;
    auto msg = std::make_shared<bhttp::response<bhttp::string_body>>(
      to_beast(std::move(res), version, keep_alive, head));
    stream_.expires_after(limits_.write_timeout);
    bhttp::async_write(stream_, *msg,
                       [self = shared_from_this(), msg](beast::error_code err,
                                                        size_t) {
                         if (err || !msg->keep_alive()) {
                           self->close_now();
                           return;
                         }
                         self->read();
                       });
  }

  void start_stream(http_response res, unsigned version);

  void write_next_chunk() {
    if (closed_)
      return;
    if (chunks_.empty()) {
      if (!drained_.empty() && !finishing_) {
        for (auto& fn : drained_)
          asio::post(stream_.get_executor(), std::move(fn));
        drained_.clear();
      }
      if (finishing_) {
        writing_ = true;
        stream_.expires_after(limits_.write_timeout);
        asio::async_write(stream_, bhttp::make_chunk_last(),
                          [self = shared_from_this()](beast::error_code,
                                                      size_t) {
                            self->close_now();
                          });
      }
      return;
    }
    // Everything queued goes out as one HTTP chunk. Most of the time the
    // socket takes it at once: one non-blocking send, no timer, no handler.
    // Only what the socket does not take waits for an async write with the
    // write timeout.
    size_t size = 0;
    for (auto& c : chunks_)
      size += c.size();
    char head[24];
    auto head_len = std::snprintf(head, sizeof(head), "%zx\r\n", size);
    auto frame = std::make_shared<std::string>();
    frame->reserve(static_cast<size_t>(head_len) + size + 2);
    frame->append(head, static_cast<size_t>(head_len));
    for (auto& c : chunks_)
      frame->append(c);
    frame->append("\r\n");
    chunks_.clear();
    auto taken = size;
    beast::error_code err;
    auto sent = stream_.socket().write_some(asio::buffer(*frame), err);
    if (err && err != asio::error::would_block
        && err != asio::error::try_again) {
      close_now();
      return;
    }
    if (!err && sent == frame->size()) {
      queued_ -= taken;
      write_next_chunk(); // nothing queued now: a finish or drain waiters
      return;
    }
    if (err)
      sent = 0;
    writing_ = true;
    stream_.expires_after(limits_.write_timeout);
    asio::async_write(stream_, asio::buffer(*frame) + sent,
                      [self = shared_from_this(), frame,
                       taken](beast::error_code e, size_t) {
                        self->writing_ = false;
                        self->queued_ -= taken;
                        if (e) {
                          self->close_now();
                          return;
                        }
                        self->stream_.expires_never();
                        self->write_next_chunk();
                      });
  }

  /// While streaming the client sends nothing; readability means it left.
  void watch_for_hangup() {
    stream_.socket().async_wait(tcp::socket::wait_read,
                                [self = shared_from_this()](beast::error_code) {
                                  self->close_now();
                                });
  }

  void close_now() {
    if (closed_)
      return;
    closed_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    for (auto& c : chunks_)
      queued_ -= c.size();
    chunks_.clear();
    drained_.clear();
    // Later, not here: a write that finds the connection gone may run
    // inside its caller's locks (write_here), and these call back into it.
    for (auto& fn : on_close_)
      asio::post(stream_.get_executor(), std::move(fn));
    on_close_.clear();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::shared_ptr<http_handler> handler_;
  http_limits limits_;
  std::shared_ptr<session_registry> registry_;
  // Streaming state.
  std::deque<std::string> chunks_;
  std::vector<std::function<void()>> drained_;
  bool writing_ = false;
  bool finishing_ = false;
  bool closed_ = false;
  std::vector<std::function<void()>> on_close_;
};

/// The http_stream of a session: every call hops onto the session's strand.
class session_stream : public http_stream {
public:
  explicit session_stream(std::shared_ptr<session> s) : session_(std::move(s)) {
    // nop
  }

  void write(std::string chunk) override {
    session_->queued_ += chunk.size();
    asio::post(session_->executor(),
               [s = session_, chunk = std::move(chunk)]() mutable {
                 s->stream_write(std::move(chunk));
               });
  }

  void write_here(std::string chunk) override {
    session_->queued_ += chunk.size();
    // Runs inline when called on an io thread and the strand is idle.
    asio::dispatch(session_->executor(),
                   [s = session_, chunk = std::move(chunk)]() mutable {
                     s->stream_write(std::move(chunk));
                   });
  }

  size_t queued() const override {
    return session_->queued_.load();
  }

  void when_drained(std::function<void()> fn) override {
    asio::post(session_->executor(),
               [s = session_, fn = std::move(fn)]() mutable {
                 s->stream_when_drained(std::move(fn));
               });
  }

  void finish() override {
    asio::post(session_->executor(), [s = session_] { s->stream_finish(); });
  }

  void on_close(std::function<void()> fn) override {
    asio::post(session_->executor(),
               [s = session_, fn = std::move(fn)]() mutable {
                 s->stream_on_close(std::move(fn));
               });
  }

private:
  std::shared_ptr<session> session_;
};

void session::start_stream(http_response res, unsigned version) {
  if (closed_)
    return;
  auto header = std::make_shared<bhttp::response<bhttp::empty_body>>(
    static_cast<bhttp::status>(res.status), version);
  header->set(bhttp::field::server, "ebridge");
  header->set("X-Content-Type-Options", "nosniff");
  for (auto& [name, value] : res.headers)
    header->set(name, value);
  header->chunked(true);
  header->keep_alive(false);
  auto serializer
    = std::make_shared<bhttp::response_serializer<bhttp::empty_body>>(*header);
  writing_ = true;
  stream_.expires_after(limits_.write_timeout);
  bhttp::async_write_header(
    stream_, *serializer,
    [self = shared_from_this(), header, serializer,
     start = std::move(res.stream)](beast::error_code err, size_t) {
      self->writing_ = false;
      if (err) {
        self->close_now();
        return;
      }
      self->stream_.expires_never();
      beast::error_code ignored;
      self->stream_.socket().non_blocking(true, ignored);
      self->watch_for_hangup();
      start(std::make_shared<session_stream>(self));
      self->write_next_chunk();
    });
}

} // namespace

// -- http_server ----------------------------------------------------------------

struct http_server::impl : std::enable_shared_from_this<http_server::impl> {
  impl(asio::io_context& ioc, http_handler handler, http_limits limits)
    : ioc(ioc), acceptor(asio::make_strand(ioc)),
      handler(std::make_shared<http_handler>(std::move(handler))),
      limits(limits), sessions(std::make_shared<session_registry>()),
      pause(acceptor.get_executor()) {
    reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }

  ~impl() {
    if (reserve_fd >= 0)
      ::close(reserve_fd);
  }

  void accept() {
    acceptor.async_accept(
      asio::make_strand(ioc),
      [self = shared_from_this()](beast::error_code err, tcp::socket socket) {
        if (err == asio::error::operation_aborted || !self->acceptor.is_open())
          return;
        if (!err) {
          if (self->exhausted > 0) {
            log::info("http", "accepting again",
                      {{"refused", std::to_string(self->refused)}});
            self->exhausted = 0;
            self->refused = 0;
          }
          std::make_shared<session>(std::move(socket), self->handler,
                                    self->limits, self->sessions)
            ->start();
          self->accept();
          return;
        }
        if (err == asio::error::no_descriptors || err.value() == ENFILE
            || err.value() == ENOBUFS || err.value() == ENOMEM) {
          self->out_of_descriptors(err);
          return;
        }
        log::warn("http", "accept failed", {{"error", err.message()}});
        self->accept();
      });
  }

  /// Out of file descriptors (or kernel memory): the pending connection
  /// would be accepted again at once and fail again, a busy loop that floods
  /// the log. Instead, the reserve descriptor is given up to accept waiting
  /// clients one by one and answer each 503 (they learn why and when to
  /// retry), then accepting pauses, longer each time, up to a second, and
  /// one line is logged per episode.
  void out_of_descriptors(const beast::error_code& err) {
    if (exhausted++ == 0)
      log::error("http",
                 "out of file descriptors: answering 503 until some "
                 "are free",
                 {{"error", err.message()}});
    if (reserve_fd >= 0) {
      ::close(reserve_fd);
      reserve_fd = -1;
    }
    for (int i = 0; i < 64; ++i) {
      int fd = ::accept4(acceptor.native_handle(), nullptr, nullptr,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0)
        break;
      static const std::string answer = [] {
        std::string body = "{\"error\":{\"code\":\"UNAVAILABLE\","
                           "\"message\":\"the server is out of file "
                           "descriptors; retry later\"}}";
        return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
               "application/json\r\nRetry-After: 1\r\nConnection: "
               "close\r\nContent-Length: "
               + std::to_string(body.size()) + "\r\n\r\n" + body;
      }();
      [[maybe_unused]] auto sent = ::send(fd, answer.data(), answer.size(),
                                          MSG_NOSIGNAL | MSG_DONTWAIT);
      ::close(fd);
      ++refused;
    }
    reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    auto delay = std::chrono::milliseconds{
      std::min<int64_t>(1000, int64_t{10} << std::min(exhausted, 7))};
    pause.expires_after(delay);
    pause.async_wait([self = shared_from_this()](beast::error_code wait_err) {
      if (!wait_err && self->acceptor.is_open())
        self->accept();
    });
  }

  asio::io_context& ioc;
  tcp::acceptor acceptor;
  std::shared_ptr<http_handler> handler;
  http_limits limits;
  std::shared_ptr<session_registry> sessions;
  /// Paces accepting while descriptors run out.
  asio::steady_timer pause;
  /// A descriptor held back for the moment the others run out.
  int reserve_fd = -1;
  /// Failed accepts in a row for want of descriptors, and the connections
  /// answered 503 meanwhile.
  int exhausted = 0;
  uint64_t refused = 0;
};

http_server::http_server(io_runtime& io, http_handler handler,
                         http_limits limits)
  : impl_(std::make_shared<impl>(io.get().ioc, std::move(handler), limits)) {
  // nop
}

http_server::~http_server() {
  // Without waiting: the io threads may be gone by now.
  close_all(false);
}

caf::expected<uint16_t> http_server::listen(const std::string& host,
                                            uint16_t port) {
  beast::error_code err;
  auto address = asio::ip::make_address(host, err);
  if (err) {
    // Not a literal address: resolve the name (for example "localhost").
    asio::io_context resolver_ctx;
    tcp::resolver resolver{resolver_ctx};
    auto results = resolver.resolve(host, std::to_string(port), err);
    if (err || results.empty())
      return make_error(ec::invalid_config, "http.listen: cannot resolve host "
                                              + host + ": " + err.message());
    address = results.begin()->endpoint().address();
  }
  tcp::endpoint endpoint{address, port};
  auto& acc = impl_->acceptor;
  auto fail = [&](const char* what) {
    return make_error(ec::invalid_config,
                      std::string{"http.listen: cannot "} + what + " " + host
                        + ":" + std::to_string(port) + ": " + err.message());
  };
  if (acc.open(endpoint.protocol(), err); err)
    return fail("open");
  if (acc.set_option(asio::socket_base::reuse_address(true), err); err)
    return fail("configure");
  if (acc.bind(endpoint, err); err)
    return fail("bind");
  if (acc.listen(asio::socket_base::max_listen_connections, err); err)
    return fail("listen on");
  auto bound = acc.local_endpoint(err).port();
  asio::dispatch(acc.get_executor(), [self = impl_] { self->accept(); });
  return bound;
}

void http_server::stop() {
  close_all(true);
}

void http_server::close_all(bool wait) {
  auto self = impl_;
  asio::post(impl_->acceptor.get_executor(), [self] {
    beast::error_code ignored;
    self->acceptor.close(ignored);
    self->pause.cancel();
  });
  std::vector<std::shared_ptr<session>> open;
  {
    std::lock_guard<std::mutex> guard{impl_->sessions->mtx};
    for (auto& weak : impl_->sessions->sessions)
      if (auto s = weak.lock())
        open.push_back(std::move(s));
  }
  // Wait (a little) for the closes to run: a connection closed drops its
  // callbacks, which may hold the objects that hold it (an SSE session and
  // its timers); left to handlers the io threads never run, they would
  // keep each other alive.
  if (!wait) {
    for (auto& s : open)
      s->close();
    return;
  }
  auto left = std::make_shared<std::atomic<size_t>>(open.size());
  auto all = std::make_shared<std::promise<void>>();
  auto closed = all->get_future();
  if (open.empty())
    all->set_value();
  for (auto& s : open)
    s->close([left, all] {
      if (--*left == 0)
        all->set_value();
    });
  closed.wait_for(std::chrono::seconds{2});
}

} // namespace ebridge
