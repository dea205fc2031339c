// bench/loadgen.cpp — fast HTTP/1.1 load generator for bench/streams/bench.mjs.
//
// The Node driver spends ~150 µs of CPU per request, so on the writes and
// catch-up workloads it, not the server, set the rate. This program drives
// the same two workloads with the same semantics from C++ (Boost.Beast's HTTP
// parser on Boost.Asio; one thread by default, --threads N for more) and
// prints its results as ONE JSON line on stdout for bench.mjs to consume.
// Progress and fatal errors go to stderr; a fatal error still prints a JSON
// line {"error": "..."} and exits 1.
//
//   ebridge_loadgen writes  --url http://HOST:PORT --base /v1/stream/.../w100
//       --streams 100 [--body-bytes 256] [--warmup 1] [--duration 10]
//       [--pid SERVER_PID] [--threads 1] [--connect-concurrency 100]
//     Stream i is BASE/s{i}. Setup (before the clock): one keep-alive
//     connection per stream (TCP_NODELAY), on which the stream is created
//     with PUT (Content-Type: application/json, empty body; 200 or 201, else
//     fatal). Then each connection is one producer (Producer-Id bench-{i},
//     Producer-Epoch 0, Producer-Seq 0,1,2,...) with exactly one POST in
//     flight, each a JSON string of --body-bytes bytes ("xxx...x"), until the
//     end of the measured window (warm-up + duration). 200: seq+1 and, if
//     the answer arrived inside the measured window, its latency goes into
//     the histogram; 204: seq+1, counted as a duplicate; anything else is a
//     failure (409 with Producer-Expected-Seq resyncs seq), followed by a
//     10 ms pause; transport errors and 60 s timeouts reconnect.
//     appendsPerSec = appends answered 200 inside the window / duration.
//     "accepted" lists the 200s per stream, for bench.mjs's read-back check.
//
//   ebridge_loadgen catchup --url http://HOST:PORT --path /v1/stream/.../catchup
//       --readers 100 [--duration 10] [--pid SERVER_PID] [--threads 1]
//     Pre-connects --readers keep-alive connections, then runs rounds: every
//     reader reads the whole stream with GET PATH?offset=-1, following
//     Stream-Next-Offset until a response carries Stream-Up-To-Date; a round
//     ends when all readers are done; rounds repeat until --duration has
//     passed (at least one). Any status but 200, a missing/unchanged next
//     offset, a transport error or a 120 s timeout is a failure that ends
//     that reader's round. mbPerSec = response body bytes / 10^6 / seconds.
//     No Accept-Encoding is sent.
//
// With --pid, the server's CPU (utime+stime from /proc/PID/stat) is sampled
// over the measured window; the generator's own CPU (all its threads) too.
// Both are in % of one core.

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// ---------------------------------------------------------------- options

struct Options {
  std::string mode;
  std::string host = "127.0.0.1";
  std::string port = "80";
  std::string base;  // writes: streams are BASE/s{i}
  std::string path;  // catchup: the stream
  int streams = 100;
  int readers = 100;
  std::size_t body_bytes = 256;
  double warmup = 1;
  double duration = 10;
  long pid = 0;
  int threads = 1;
  int connect_concurrency = 100;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "ebridge_loadgen: " << why
            << "\nusage: ebridge_loadgen writes --url URL --base PATH --streams N"
               " [--body-bytes 256] [--warmup 1] [--duration 10] [--pid PID]"
               " [--threads 1] [--connect-concurrency 100]\n"
               "       ebridge_loadgen catchup --url URL --path PATH --readers N"
               " [--duration 10] [--pid PID] [--threads 1]\n";
  std::exit(2);
}

Options parse_options(int argc, char** argv) {
  Options o;
  if (argc < 2) usage("missing mode");
  o.mode = argv[1];
  if (o.mode != "writes" && o.mode != "catchup") usage("unknown mode " + o.mode);
  std::string url;
  for (int i = 2; i < argc; ++i) {
    std::string key = argv[i];
    std::string value;
    if (auto eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key.resize(eq);
    } else {
      if (i + 1 >= argc) usage(key + " needs a value");
      value = argv[++i];
    }
    auto number = [&](double lo) {
      char* end = nullptr;
      double v = std::strtod(value.c_str(), &end);
      if (end == value.c_str() || *end != '\0' || !(v >= lo)) usage("bad value for " + key + ": " + value);
      return v;
    };
    if (key == "--url") url = value;
    else if (key == "--base") o.base = value;
    else if (key == "--path") o.path = value;
    else if (key == "--streams") o.streams = static_cast<int>(number(1));
    else if (key == "--readers") o.readers = static_cast<int>(number(1));
    else if (key == "--body-bytes") o.body_bytes = static_cast<std::size_t>(number(2));
    else if (key == "--warmup") o.warmup = number(0);
    else if (key == "--duration") o.duration = number(0.001);
    else if (key == "--pid") o.pid = static_cast<long>(number(0));
    else if (key == "--threads") o.threads = static_cast<int>(number(1));
    else if (key == "--connect-concurrency") o.connect_concurrency = static_cast<int>(number(1));
    else usage("unknown option " + key);
  }
  const std::string scheme = "http://";
  if (url.compare(0, scheme.size(), scheme) != 0) usage("--url must be http://HOST:PORT");
  std::string hostport = url.substr(scheme.size());
  if (auto slash = hostport.find('/'); slash != std::string::npos) hostport.resize(slash);
  if (auto colon = hostport.rfind(':'); colon != std::string::npos) {
    o.host = hostport.substr(0, colon);
    o.port = hostport.substr(colon + 1);
  } else {
    o.host = hostport;
  }
  if (o.mode == "writes" && o.base.empty()) usage("writes needs --base");
  if (o.mode == "catchup" && o.path.empty()) usage("catchup needs --path");
  return o;
}

// ---------------------------------------------------------------- CPU

double process_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

// utime + stime of another process, or a negative value if unknown.
double server_cpu_seconds(long pid) {
  if (pid <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(stat.substr(paren + 2));
  std::string f;
  double utime = 0, stime = 0;
  for (int i = 0; i <= 12 && fields >> f; ++i) {
    if (i == 11) utime = std::strtod(f.c_str(), nullptr);
    if (i == 12) stime = std::strtod(f.c_str(), nullptr);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct CpuMark {
  Clock::time_point t;
  double server = -1;
  double self = 0;
};

CpuMark cpu_mark(long pid) { return {Clock::now(), server_cpu_seconds(pid), process_cpu_seconds()}; }

struct CpuUse {
  bool valid = false;
  double server_pct = -1;  // < 0: unknown
  double generator_pct = 0;
};

CpuUse cpu_since(long pid, const CpuMark& m) {
  CpuUse u;
  double secs = seconds_between(m.t, Clock::now());
  double srv = server_cpu_seconds(pid);
  u.valid = secs > 0;
  if (!u.valid) return u;
  if (srv >= 0 && m.server >= 0) u.server_pct = 100 * (srv - m.server) / secs;
  u.generator_pct = 100 * (process_cpu_seconds() - m.self) / secs;
  return u;
}

// ---------------------------------------------------------------- histogram

// Log-linear latency histogram in nanoseconds: exact below 2048 ns, then
// 1024 sub-buckets per power of two (relative error < 0.1 %).
class Histogram {
 public:
  Histogram() : counts_(kBuckets, 0) {}
  void add(std::uint64_t ns) {
    ++counts_[index(ns)];
    ++n_;
    max_ = std::max(max_, ns);
  }
  void merge(const Histogram& o) {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    n_ += o.n_;
    max_ = std::max(max_, o.max_);
  }
  std::uint64_t count() const { return n_; }
  std::uint64_t max() const { return max_; }
  // Same rank rule as bench.mjs: the ceil(p/100 * n)-th smallest sample.
  double percentile_ns(double p) const {
    if (n_ == 0) return -1;
    auto rank = static_cast<std::int64_t>(std::ceil(p / 100.0 * static_cast<double>(n_))) - 1;
    rank = std::clamp<std::int64_t>(rank, 0, static_cast<std::int64_t>(n_) - 1);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen > static_cast<std::uint64_t>(rank)) return std::min(midpoint(i), static_cast<double>(max_));
    }
    return static_cast<double>(max_);
  }

 private:
  static constexpr int kSubBits = 10;                     // 1024 sub-buckets
  static constexpr std::uint64_t kLinear = 2u << kSubBits;  // exact below 2048
  static constexpr std::size_t kBuckets = kLinear + 54 * (1u << kSubBits);

  static std::size_t index(std::uint64_t v) {
    if (v < kLinear) return static_cast<std::size_t>(v);
    int msb = 63 - __builtin_clzll(v);  // >= 11
    int shift = msb - kSubBits;           // >= 1
    std::uint64_t top = v >> shift;       // in [1024, 2047]
    return static_cast<std::size_t>(kLinear + static_cast<std::uint64_t>(shift - 1) * (1u << kSubBits) +
                                    (top - (1u << kSubBits)));
  }
  static double midpoint(std::size_t i) {
    if (i < kLinear) return static_cast<double>(i);
    std::size_t k = i - kLinear;
    int shift = static_cast<int>(k >> kSubBits) + 1;
    std::uint64_t top = (k & ((1u << kSubBits) - 1)) + (1u << kSubBits);
    double lo = std::ldexp(static_cast<double>(top), shift);
    return lo + std::ldexp(1.0, shift) / 2;
  }

  std::vector<std::uint64_t> counts_;
  std::uint64_t n_ = 0;
  std::uint64_t max_ = 0;
};

// ---------------------------------------------------------------- failures

struct Failures {
  std::uint64_t count = 0;
  std::map<std::string, std::uint64_t> by_kind;
  std::vector<std::string> samples;
  void add(const std::string& kind, const std::string& detail) {
    ++count;
    ++by_kind[kind];
    if (samples.size() < 5) samples.push_back((kind + ": " + detail).substr(0, 300));
  }
  void merge(const Failures& o) {
    count += o.count;
    for (auto& [k, n] : o.by_kind) by_kind[k] += n;
    for (auto& s : o.samples)
      if (samples.size() < 5) samples.push_back(s);
  }
};

// ---------------------------------------------------------------- JSON out

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  std::string s = buf;  // trim trailing zeros: 12.500000 -> 12.5, 3.000000 -> 3
  s.erase(s.find_last_not_of('0') + 1);
  if (s.back() == '.') s.pop_back();
  return s;
}

std::string json_failures(const Failures& f) {
  std::string out = "{\"count\":" + std::to_string(f.count) + ",\"byKind\":{";
  bool first = true;
  for (auto& [k, n] : f.by_kind) {
    out += (first ? "" : ",") + json_string(k) + ":" + std::to_string(n);
    first = false;
  }
  out += "},\"samples\":[";
  for (std::size_t i = 0; i < f.samples.size(); ++i) out += (i ? "," : "") + json_string(f.samples[i]);
  return out + "]}";
}

std::string json_cpu(const CpuUse& u) {
  if (!u.valid) return "null";
  return "{\"serverPct\":" + (u.server_pct < 0 ? std::string("null") : json_number(u.server_pct)) +
         ",\"generatorPct\":" + json_number(u.generator_pct) + "}";
}

// ---------------------------------------------------------------- parser

// Response parser that keeps only what the workloads look at: status, the
// three protocol headers, the body size, and the start of error bodies. No
// allocation for the usual response. One instance per response.
class ResponseParser final : public http::basic_parser<false> {
 public:
  unsigned status = 0;
  bool up_to_date = false;
  std::string next_offset;
  std::string expected_seq;
  std::uint64_t body_bytes = 0;
  std::string error_body;  // first 300 bytes when status >= 400

 private:
  void on_request_impl(http::verb, beast::string_view, beast::string_view, int, error_code&) override {}
  void on_response_impl(int code, beast::string_view, int, error_code&) override { status = static_cast<unsigned>(code); }
  void on_field_impl(http::field, beast::string_view name, beast::string_view value, error_code&) override {
    if (beast::iequals(name, "stream-next-offset")) next_offset.assign(value.data(), value.size());
    else if (beast::iequals(name, "stream-up-to-date")) up_to_date = true;
    else if (beast::iequals(name, "producer-expected-seq")) expected_seq.assign(value.data(), value.size());
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(boost::optional<std::uint64_t> const&, error_code&) override {}
  std::size_t on_body_impl(beast::string_view body, error_code&) override {
    take(body);
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body, error_code&) override {
    take(body);
    return body.size();
  }
  void on_finish_impl(error_code&) override {}

  void take(beast::string_view body) {
    body_bytes += body.size();
    if (status >= 400 && error_body.size() < 300)
      error_body.append(body.data(), std::min<std::size_t>(body.size(), 300 - error_body.size()));
  }
};

std::string describe_http(const ResponseParser& p) {
  std::string body = p.error_body;
  auto b = body.find_first_not_of(" \t\r\n");
  auto e = body.find_last_not_of(" \t\r\n");
  body = b == std::string::npos ? "" : body.substr(b, e - b + 1);
  return "HTTP " + std::to_string(p.status) + " " + body;
}

// ---------------------------------------------------------------- workers

struct Shared {
  Options opt;
  tcp::endpoint endpoint;
  std::string host_header;  // "Host: h:p\r\nConnection: keep-alive\r\n"
  std::string body;         // writes: the JSON string, shared by all requests
  Clock::time_point measure_from, measure_to;
  std::chrono::milliseconds timeout{60'000};
};

class Conn;

struct Worker {
  asio::io_context ioc{1};
  asio::steady_timer watchdog{ioc};
  std::vector<Conn*> conns;
  std::size_t next_setup = 0;
  int active = 0;  // connections still busy in the current phase
  Histogram hist;
  Failures failures;
  std::string fatal;  // setup failure: the workload cannot run
  std::uint64_t duplicates = 0, requests = 0;
  std::uint64_t bytes = 0, pages = 0, completed_reads = 0;  // catch-up

  void setup_next();
  void arm_watchdog();
  void one_done() {
    if (--active == 0) watchdog.cancel();
  }
};

class Conn {
 public:
  Conn(Worker& w, const Shared& s, std::size_t index, std::string path)
      : w_(w), s_(s), sock_(w.ioc), retry_(w.ioc), index_(index), path_(std::move(path)) {
    // Room for a whole response head in one read (a fresh flat_buffer reads
    // 512 bytes at a time), and for Beast's largest read (64 KB) on catch-up.
    buf_.reserve(s_.opt.mode == "writes" ? 16 * 1024 : 64 * 1024);
    if (s_.opt.mode == "writes") {
      head_ = "POST " + path_ + " HTTP/1.1\r\n" + s_.host_header +
              "Content-Type: application/json\r\nContent-Length: " + std::to_string(s_.body.size()) +
              "\r\nProducer-Id: bench-" + std::to_string(index_) + "\r\nProducer-Epoch: 0\r\nProducer-Seq: ";
    }
  }

  bool connected() const { return connected_; }
  std::uint64_t accepted() const { return accepted_; }

  // Setup: connect, then (writes) create the stream with PUT on this connection.
  void begin_setup() { connect_then(s_.opt.mode == "writes" ? Op::create : Op::none); }

  void begin_writes() { next_append(); }

  void begin_round() {
    offset_ = "-1";
    if (connected_) send(Op::read);
    else connect_then(Op::read);
  }

  // Watchdog: abort a request that has been in flight longer than the timeout.
  void check_timeout(Clock::time_point now) {
    if (inflight_ && now - t0_ > s_.timeout) {
      timed_out_ = true;
      error_code ignored;
      sock_.close(ignored);
    }
  }

 private:
  enum class Op { none, create, append, read };

  void connect_then(Op op) {
    buf_.consume(buf_.size());
    error_code ignored;
    sock_.close(ignored);
    sock_.async_connect(s_.endpoint, [this, op](error_code ec) {
      if (ec) return on_transport_error(op, "connect: " + ec.message());
      connected_ = true;
      sock_.set_option(tcp::no_delay(true), ec);
      if (op == Op::none) return setup_done();
      send(op);
    });
  }

  void send(Op op) {
    op_ = op;
    parser_.emplace();
    // No body limit. (Not boost::none: Boost 1.74 then rejects every body
    // with a Content-Length, comparing the length against an empty optional.)
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    timed_out_ = false;
    inflight_ = true;
    ++w_.requests;
    t0_ = Clock::now();
    switch (op) {
      case Op::create:
        out_ = "PUT " + path_ + " HTTP/1.1\r\n" + s_.host_header +
               "Content-Type: application/json\r\nContent-Length: 0\r\n\r\n";
        asio::async_write(sock_, asio::buffer(out_), [this](error_code ec, std::size_t) { on_written(ec); });
        break;
      case Op::append: {
        char num[32];
        int n = std::snprintf(num, sizeof num, "%llu\r\n\r\n", static_cast<unsigned long long>(seq_));
        seq_text_.assign(num, static_cast<std::size_t>(n));
        std::array<asio::const_buffer, 3> bufs{asio::buffer(head_), asio::buffer(seq_text_), asio::buffer(s_.body)};
        asio::async_write(sock_, bufs, [this](error_code ec, std::size_t) { on_written(ec); });
        break;
      }
      case Op::read:
        out_ = "GET " + path_ + "?offset=" + offset_ + " HTTP/1.1\r\n" + s_.host_header + "\r\n";
        asio::async_write(sock_, asio::buffer(out_), [this](error_code ec, std::size_t) { on_written(ec); });
        break;
      case Op::none: break;
    }
  }

  void on_written(error_code ec) {
    if (ec) return on_io_error(ec);
    http::async_read(sock_, buf_, *parser_, [this](error_code ec2, std::size_t) { on_read(ec2); });
  }

  void on_io_error(error_code ec) {
    inflight_ = false;
    std::string what = timed_out_ ? "timeout after " + std::to_string(s_.timeout.count()) + " ms" : ec.message();
    on_transport_error(op_, what);
  }

  void on_read(error_code ec) {
    if (ec) return on_io_error(ec);
    inflight_ = false;
    auto t1 = Clock::now();
    bool keep = parser_->keep_alive();
    if (!keep) {
      error_code ignored;
      sock_.close(ignored);
      connected_ = false;
    }
    switch (op_) {
      case Op::create: return on_created();
      case Op::append: return on_appended(t1);
      case Op::read: return on_page();
      case Op::none: return;
    }
  }

  void on_transport_error(Op op, const std::string& what) {
    error_code ignored;
    sock_.close(ignored);
    connected_ = false;
    switch (op) {
      case Op::none:
      case Op::create:
        return setup_failed((op == Op::create ? "PUT " + path_ + ": " : "connect: ") + what);
      case Op::append:
        w_.failures.add("transport", path_ + " seq=" + std::to_string(seq_) + ": " + what);
        return pause_then_append();
      case Op::read:
        w_.failures.add("transport", "catch-up GET offset=" + offset_ + ": " + what);
        return w_.one_done();
    }
  }

  void setup_done() {
    w_.one_done();
    w_.setup_next();
  }

  void setup_failed(const std::string& what) {
    if (w_.fatal.empty()) w_.fatal = what;
    w_.one_done();
    w_.setup_next();
  }

  void on_created() {
    auto& p = *parser_;
    if (p.status != 200 && p.status != 201) return setup_failed("PUT " + path_ + ": " + describe_http(p));
    if (!connected_) return connect_then(Op::none);  // server closed it; setup wants an open one
    setup_done();
  }

  void on_appended(Clock::time_point t1) {
    auto& p = *parser_;
    if (p.status == 200) {
      ++seq_;
      ++accepted_;
      if (t1 >= s_.measure_from && t1 <= s_.measure_to)
        w_.hist.add(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0_).count()));
      return next_append();
    }
    if (p.status == 204) {  // duplicate: the server already had this seq (a retry after an error)
      ++seq_;
      ++w_.duplicates;
      return next_append();
    }
    w_.failures.add("HTTP " + std::to_string(p.status), path_ + " seq=" + std::to_string(seq_) + ": " + describe_http(p));
    if (p.status == 409 && !p.expected_seq.empty()) seq_ = std::strtoull(p.expected_seq.c_str(), nullptr, 10);
    pause_then_append();
  }

  void pause_then_append() {
    retry_.expires_after(std::chrono::milliseconds(10));
    retry_.async_wait([this](error_code) { next_append(); });
  }

  void next_append() {
    if (Clock::now() >= s_.measure_to) return w_.one_done();
    if (connected_) send(Op::append);
    else connect_then(Op::append);
  }

  void on_page() {
    auto& p = *parser_;
    if (p.status != 200) {
      w_.failures.add("HTTP " + std::to_string(p.status), "catch-up GET offset=" + offset_ + ": " + describe_http(p));
      return w_.one_done();
    }
    w_.bytes += p.body_bytes;
    ++w_.pages;
    if (p.up_to_date) {
      ++w_.completed_reads;
      return w_.one_done();
    }
    if (p.next_offset.empty() || p.next_offset == offset_) {
      w_.failures.add("protocol", "catch-up: no progress at offset " + offset_);
      return w_.one_done();
    }
    offset_ = p.next_offset;
    if (connected_) send(Op::read);
    else connect_then(Op::read);
  }

  Worker& w_;
  const Shared& s_;
  tcp::socket sock_;
  asio::steady_timer retry_;
  beast::flat_buffer buf_;
  std::optional<ResponseParser> parser_;
  std::size_t index_;
  std::string path_;
  std::string head_;      // writes: request head up to the Producer-Seq value
  std::string seq_text_;  // "<seq>\r\n\r\n"
  std::string out_;       // PUT / GET request
  std::string offset_;
  Op op_ = Op::none;
  bool connected_ = false, inflight_ = false, timed_out_ = false;
  Clock::time_point t0_;
  std::uint64_t seq_ = 0, accepted_ = 0;
};

void Worker::setup_next() {
  if (!fatal.empty()) {  // give up: the connections not started yet are done
    while (next_setup < conns.size()) {
      ++next_setup;
      one_done();
    }
    return;
  }
  if (next_setup < conns.size()) conns[next_setup++]->begin_setup();
}

void Worker::arm_watchdog() {
  watchdog.expires_after(std::chrono::seconds(1));
  watchdog.async_wait([this](error_code ec) {
    if (ec || active == 0) return;
    auto now = Clock::now();
    for (auto* c : conns) c->check_timeout(now);
    arm_watchdog();
  });
}

using Workers = std::vector<std::unique_ptr<Worker>>;

// Runs every worker's io_context until it runs out of work (one thread each).
void run_all(Workers& ws) {
  for (auto& w : ws) w->ioc.restart();
  if (ws.size() == 1) {
    ws[0]->ioc.run();
    return;
  }
  std::vector<std::thread> threads;
  for (auto& w : ws) threads.emplace_back([&w] { w->ioc.run(); });
  for (auto& t : threads) t.join();
}

// Connects every connection (and, for writes, creates its stream), at most
// --connect-concurrency at a time in total. Returns the first fatal error.
std::string setup(Workers& ws, const Options& opt) {
  int per_worker = std::max(1, opt.connect_concurrency / static_cast<int>(ws.size()));
  for (auto& w : ws) {
    w->active = static_cast<int>(w->conns.size());
    if (w->active == 0) continue;
    w->arm_watchdog();
    for (int i = 0; i < per_worker; ++i) asio::post(w->ioc, [wp = w.get()] { wp->setup_next(); });
  }
  run_all(ws);
  for (auto& w : ws)
    if (!w->fatal.empty()) return w->fatal;
  return {};
}

std::string fatal_json(const std::string& what) { return "{\"error\":" + json_string(what) + "}"; }

int run_writes(Shared& s, Workers& ws, std::vector<std::unique_ptr<Conn>>& conns) {
  const Options& opt = s.opt;
  auto t_setup = Clock::now();
  if (auto err = setup(ws, opt); !err.empty()) {
    std::cout << fatal_json(err) << std::endl;
    return 1;
  }
  double setup_seconds = seconds_between(t_setup, Clock::now());
  std::size_t connections = 0;
  for (auto& c : conns) connections += c->connected() ? 1 : 0;

  auto start = Clock::now();
  s.measure_from = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.warmup));
  s.measure_to = s.measure_from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.duration));

  // CPU marks at the edges of the measured window, on worker 0.
  std::optional<CpuMark> mark;
  std::optional<CpuUse> use;
  asio::steady_timer mark_timer(ws[0]->ioc), use_timer(ws[0]->ioc);
  mark_timer.expires_at(s.measure_from);
  mark_timer.async_wait([&](error_code) { mark = cpu_mark(opt.pid); });
  use_timer.expires_at(s.measure_to);
  use_timer.async_wait([&](error_code) {
    if (mark) use = cpu_since(opt.pid, *mark);
  });

  for (auto& w : ws) {
    w->active = static_cast<int>(w->conns.size());
    if (w->active == 0) continue;
    w->arm_watchdog();
    for (auto* c : w->conns) asio::post(w->ioc, [c] { c->begin_writes(); });
  }
  run_all(ws);
  if (!use && mark) use = cpu_since(opt.pid, *mark);

  Histogram hist;
  Failures failures;
  std::uint64_t duplicates = 0, requests = 0;
  for (auto& w : ws) {
    hist.merge(w->hist);
    failures.merge(w->failures);
    duplicates += w->duplicates;
    requests += w->requests;
  }
  auto ms = [](double ns) { return ns < 0 ? std::string("null") : json_number(ns / 1e6); };
  std::string out = "{\"mode\":\"writes\",\"threads\":" + std::to_string(ws.size()) +
                    ",\"streams\":" + std::to_string(opt.streams) +
                    ",\"setupSeconds\":" + json_number(setup_seconds) +
                    ",\"connections\":" + std::to_string(connections) +
                    ",\"appendsPerSec\":" + json_number(static_cast<double>(hist.count()) / opt.duration) +
                    ",\"latencyMs\":{\"n\":" + std::to_string(hist.count()) + ",\"p50\":" + ms(hist.percentile_ns(50)) +
                    ",\"p99\":" + ms(hist.percentile_ns(99)) +
                    ",\"max\":" + ms(hist.count() ? static_cast<double>(hist.max()) : -1) + "}" +
                    ",\"duplicates\":" + std::to_string(duplicates) + ",\"requests\":" + std::to_string(requests) +
                    ",\"failures\":" + json_failures(failures) + ",\"cpu\":" + json_cpu(use ? *use : CpuUse{}) +
                    ",\"accepted\":[";
  for (std::size_t i = 0; i < conns.size(); ++i) out += (i ? "," : "") + std::to_string(conns[i]->accepted());
  out += "]}";
  std::cout << out << std::endl;
  return 0;
}

int run_catchup(Shared& s, Workers& ws) {
  const Options& opt = s.opt;
  s.timeout = std::chrono::milliseconds(120'000);
  if (auto err = setup(ws, opt); !err.empty()) {
    std::cout << fatal_json(err) << std::endl;
    return 1;
  }
  auto mark = cpu_mark(opt.pid);
  auto t0 = Clock::now();
  int rounds = 0;
  do {
    for (auto& w : ws) {
      w->active = static_cast<int>(w->conns.size());
      if (w->active == 0) continue;
      w->arm_watchdog();
      for (auto* c : w->conns) asio::post(w->ioc, [c] { c->begin_round(); });
    }
    run_all(ws);
    ++rounds;
  } while (seconds_between(t0, Clock::now()) < opt.duration);
  double secs = seconds_between(t0, Clock::now());
  auto use = cpu_since(opt.pid, mark);

  Failures failures;
  std::uint64_t bytes = 0, pages = 0, completed = 0, requests = 0;
  for (auto& w : ws) {
    failures.merge(w->failures);
    bytes += w->bytes;
    pages += w->pages;
    completed += w->completed_reads;
    requests += w->requests;
  }
  std::cout << "{\"mode\":\"catchup\",\"threads\":" << ws.size() << ",\"readers\":" << opt.readers
            << ",\"rounds\":" << rounds << ",\"seconds\":" << json_number(secs) << ",\"bytes\":" << bytes
            << ",\"pages\":" << pages << ",\"requests\":" << requests
            << ",\"mbPerSec\":" << json_number(static_cast<double>(bytes) / 1e6 / secs)
            << ",\"completedReads\":" << completed << ",\"failures\":" << json_failures(failures)
            << ",\"cpu\":" << json_cpu(use) << "}" << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse_options(argc, argv);
  try {
    Shared s;
    s.opt = opt;
    {
      asio::io_context ioc;
      tcp::resolver resolver(ioc);
      auto results = resolver.resolve(opt.host, opt.port);
      if (results.empty()) throw std::runtime_error("cannot resolve " + opt.host);
      s.endpoint = *results.begin();
    }
    s.host_header = "Host: " + opt.host + ":" + opt.port + "\r\nConnection: keep-alive\r\n";
    s.body = "\"" + std::string(opt.body_bytes - 2, 'x') + "\"";

    Workers ws;
    for (int t = 0; t < opt.threads; ++t) ws.push_back(std::make_unique<Worker>());
    std::vector<std::unique_ptr<Conn>> conns;
    int n = opt.mode == "writes" ? opt.streams : opt.readers;
    for (int i = 0; i < n; ++i) {
      auto& w = *ws[static_cast<std::size_t>(i) % ws.size()];
      std::string path = opt.mode == "writes" ? opt.base + "/s" + std::to_string(i) : opt.path;
      conns.push_back(std::make_unique<Conn>(w, s, static_cast<std::size_t>(i), std::move(path)));
      w.conns.push_back(conns.back().get());
    }
    return opt.mode == "writes" ? run_writes(s, ws, conns) : run_catchup(s, ws);
  } catch (const std::exception& e) {
    std::cout << fatal_json(e.what()) << std::endl;
    std::cerr << "ebridge_loadgen: " << e.what() << "\n";
    return 1;
  }
}
