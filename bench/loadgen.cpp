// bench/loadgen.cpp — fast HTTP/1.1 load generator for bench/streams/bench.mjs.
//
// The Node driver spends ~150 µs of CPU per request, so on the writes and
// catch-up workloads it, not the server, set the rate, and its event loop
// adds to SSE latencies. This program drives the same three workloads with
// the same semantics from C++ (Boost.Beast's HTTP
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
//   ebridge_loadgen sse --url http://HOST:PORT --path /v1/stream/.../sse
//       [--subscribers 100] [--rate 100] [--warmup 1] [--duration 10]
//       [--pid SERVER_PID] [--threads 1] [--raw FILE.csv]
//     Creates the stream (PUT, application/json; 200 or 201, else fatal),
//     opens --subscribers connections with GET PATH?offset=now&live=sse
//     (Accept: text/event-stream), waits until every one has its 200 head
//     (at most 30 s) and 200 ms more, then one writer connection appends
//     {"i":k,"t":NS} (NS = steady_clock ns just before the POST is written;
//     Producer-Id bench-sse, Epoch 0, Seq k) with event k due at
//     start + k/rate and one POST in flight (a late writer sends back to
//     back; "late" counts sends more than one period behind), until
//     warm-up + duration. A transport error retries the same request once
//     on a new connection. Subscribers decode the chunked body and the
//     event stream incrementally; per "data" event, each message's latency
//     is the time it was parsed minus its t (the same clock); "control"
//     events give the offset to resume from if the server ends the response
//     (counted in "reconnects"); messages at or below the last index seen
//     are re-deliveries and ignored. Events sent after the warm-up are
//     measured: sent = their 200s, expected = sent * subscribers, delivered
//     = their deliveries; after the window the run waits up to 3 s for the
//     missing ones. achievedRate = sent / duration. Besides latencyMs
//     (every delivery), it reports appendLatencyMs (t to the POST's answer),
//     afterAckMs (delivery minus the POST's answer; negative when the event
//     arrived first), perEvent (per event: first and last subscriber's
//     latency, and the spread between them), perSubscriber (the spread of
//     each subscriber's p50/p99/mean, and the mean latency of the first and
//     last tenth of subscribers in subscription order) and the five events
//     with the worst last delivery. --raw writes one CSV line per event
//     with every subscriber's latency in ns.
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
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
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
  std::string base; // writes: streams are BASE/s{i}
  std::string path; // catchup: the stream
  int streams = 100;
  int readers = 100;
  std::size_t body_bytes = 256;
  double warmup = 1;
  double duration = 10;
  long pid = 0;
  int threads = 1;
  int connect_concurrency = 100;
  int subscribers = 100; // sse
  double rate = 100;     // sse: events per second
  std::string raw;       // sse: per-event CSV dump, if set
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr
    << "ebridge_loadgen: " << why
    << "\nusage: ebridge_loadgen writes --url URL --base PATH --streams N"
       " [--body-bytes 256] [--warmup 1] [--duration 10] [--pid PID]"
       " [--threads 1] [--connect-concurrency 100]\n"
       "       ebridge_loadgen catchup --url URL --path PATH --readers N"
       " [--duration 10] [--pid PID] [--threads 1]\n"
       "       ebridge_loadgen sse --url URL --path PATH [--subscribers 100] "
       "[--rate 100]"
       " [--warmup 1] [--duration 10] [--pid PID] [--threads 1] [--raw "
       "FILE.csv]\n";
  std::exit(2);
}

Options parse_options(int argc, char** argv) {
  Options o;
  if (argc < 2)
    usage("missing mode");
  o.mode = argv[1];
  if (o.mode != "writes" && o.mode != "catchup" && o.mode != "sse")
    usage("unknown mode " + o.mode);
  std::string url;
  for (int i = 2; i < argc; ++i) {
    std::string key = argv[i];
    std::string value;
    if (auto eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key.resize(eq);
    } else {
      if (i + 1 >= argc)
        usage(key + " needs a value");
      value = argv[++i];
    }
    auto number = [&](double lo) {
      char* end = nullptr;
      double v = std::strtod(value.c_str(), &end);
      if (end == value.c_str() || *end != '\0' || !(v >= lo))
        usage("bad value for " + key + ": " + value);
      return v;
    };
    if (key == "--url")
      url = value;
    else if (key == "--base")
      o.base = value;
    else if (key == "--path")
      o.path = value;
    else if (key == "--streams")
      o.streams = static_cast<int>(number(1));
    else if (key == "--readers")
      o.readers = static_cast<int>(number(1));
    else if (key == "--body-bytes")
      o.body_bytes = static_cast<std::size_t>(number(2));
    else if (key == "--warmup")
      o.warmup = number(0);
    else if (key == "--duration")
      o.duration = number(0.001);
    else if (key == "--pid")
      o.pid = static_cast<long>(number(0));
    else if (key == "--threads")
      o.threads = static_cast<int>(number(1));
    else if (key == "--connect-concurrency")
      o.connect_concurrency = static_cast<int>(number(1));
    else if (key == "--subscribers")
      o.subscribers = static_cast<int>(number(1));
    else if (key == "--rate")
      o.rate = number(0.001);
    else if (key == "--raw")
      o.raw = value;
    else
      usage("unknown option " + key);
  }
  const std::string scheme = "http://";
  if (url.compare(0, scheme.size(), scheme) != 0)
    usage("--url must be http://HOST:PORT");
  std::string hostport = url.substr(scheme.size());
  if (auto slash = hostport.find('/'); slash != std::string::npos)
    hostport.resize(slash);
  if (auto colon = hostport.rfind(':'); colon != std::string::npos) {
    o.host = hostport.substr(0, colon);
    o.port = hostport.substr(colon + 1);
  } else {
    o.host = hostport;
  }
  if (o.mode == "writes" && o.base.empty())
    usage("writes needs --base");
  if (o.mode == "catchup" && o.path.empty())
    usage("catchup needs --path");
  if (o.mode == "sse" && o.path.empty())
    usage("sse needs --path");
  return o;
}

// ---------------------------------------------------------------- CPU

double process_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

// utime + stime of another process, or a negative value if unknown.
double server_cpu_seconds(long pid) {
  if (pid <= 0)
    return -1;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  auto paren = stat.rfind(')');
  if (paren == std::string::npos)
    return -1;
  std::istringstream fields(stat.substr(paren + 2));
  std::string f;
  double utime = 0, stime = 0;
  for (int i = 0; i <= 12 && fields >> f; ++i) {
    if (i == 11)
      utime = std::strtod(f.c_str(), nullptr);
    if (i == 12)
      stime = std::strtod(f.c_str(), nullptr);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct CpuMark {
  Clock::time_point t;
  double server = -1;
  double self = 0;
};

CpuMark cpu_mark(long pid) {
  return {Clock::now(), server_cpu_seconds(pid), process_cpu_seconds()};
}

struct CpuUse {
  bool valid = false;
  double server_pct = -1; // < 0: unknown
  double generator_pct = 0;
};

CpuUse cpu_since(long pid, const CpuMark& m) {
  CpuUse u;
  double secs = seconds_between(m.t, Clock::now());
  double srv = server_cpu_seconds(pid);
  u.valid = secs > 0;
  if (!u.valid)
    return u;
  if (srv >= 0 && m.server >= 0)
    u.server_pct = 100 * (srv - m.server) / secs;
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
    for (std::size_t i = 0; i < kBuckets; ++i)
      counts_[i] += o.counts_[i];
    n_ += o.n_;
    max_ = std::max(max_, o.max_);
  }
  std::uint64_t count() const {
    return n_;
  }
  std::uint64_t max() const {
    return max_;
  }
  // Same rank rule as bench.mjs: the ceil(p/100 * n)-th smallest sample.
  double percentile_ns(double p) const {
    if (n_ == 0)
      return -1;
    auto rank = static_cast<std::int64_t>(
                  std::ceil(p / 100.0 * static_cast<double>(n_)))
                - 1;
    rank = std::clamp<std::int64_t>(rank, 0, static_cast<std::int64_t>(n_) - 1);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen > static_cast<std::uint64_t>(rank))
        return std::min(midpoint(i), static_cast<double>(max_));
    }
    return static_cast<double>(max_);
  }

private:
  static constexpr int kSubBits = 10;                      // 1024 sub-buckets
  static constexpr std::uint64_t kLinear = 2u << kSubBits; // exact below 2048
  static constexpr std::size_t kBuckets = kLinear + 54 * (1u << kSubBits);

  static std::size_t index(std::uint64_t v) {
    if (v < kLinear)
      return static_cast<std::size_t>(v);
    int msb = 63 - __builtin_clzll(v); // >= 11
    int shift = msb - kSubBits;        // >= 1
    std::uint64_t top = v >> shift;    // in [1024, 2047]
    return static_cast<std::size_t>(
      kLinear + static_cast<std::uint64_t>(shift - 1) * (1u << kSubBits)
      + (top - (1u << kSubBits)));
  }
  static double midpoint(std::size_t i) {
    if (i < kLinear)
      return static_cast<double>(i);
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
    if (samples.size() < 5)
      samples.push_back((kind + ": " + detail).substr(0, 300));
  }
  void merge(const Failures& o) {
    count += o.count;
    for (auto& [k, n] : o.by_kind)
      by_kind[k] += n;
    for (auto& s : o.samples)
      if (samples.size() < 5)
        samples.push_back(s);
  }
};

// ---------------------------------------------------------------- JSON out

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
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
  if (!std::isfinite(v))
    return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  std::string s = buf; // trim trailing zeros: 12.500000 -> 12.5, 3.000000 -> 3
  s.erase(s.find_last_not_of('0') + 1);
  if (s.back() == '.')
    s.pop_back();
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
  for (std::size_t i = 0; i < f.samples.size(); ++i)
    out += (i ? "," : "") + json_string(f.samples[i]);
  return out + "]}";
}

std::string json_cpu(const CpuUse& u) {
  if (!u.valid)
    return "null";
  return "{\"serverPct\":"
         + (u.server_pct < 0 ? std::string("null") : json_number(u.server_pct))
         + ",\"generatorPct\":" + json_number(u.generator_pct) + "}";
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
  std::string error_body; // first 300 bytes when status >= 400

private:
  void on_request_impl(http::verb, beast::string_view, beast::string_view, int,
                       error_code&) override {}
  void on_response_impl(int code, beast::string_view, int,
                        error_code&) override {
    status = static_cast<unsigned>(code);
  }
  void on_field_impl(http::field, beast::string_view name,
                     beast::string_view value, error_code&) override {
    if (beast::iequals(name, "stream-next-offset"))
      next_offset.assign(value.data(), value.size());
    else if (beast::iequals(name, "stream-up-to-date"))
      up_to_date = true;
    else if (beast::iequals(name, "producer-expected-seq"))
      expected_seq.assign(value.data(), value.size());
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(boost::optional<std::uint64_t> const&,
                         error_code&) override {}
  std::size_t on_body_impl(beast::string_view body, error_code&) override {
    take(body);
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t, beast::string_view,
                            error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body,
                                 error_code&) override {
    take(body);
    return body.size();
  }
  void on_finish_impl(error_code&) override {}

  void take(beast::string_view body) {
    body_bytes += body.size();
    if (status >= 400 && error_body.size() < 300)
      error_body.append(body.data(),
                        std::min<std::size_t>(body.size(),
                                              300 - error_body.size()));
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
  std::string host_header; // "Host: h:p\r\nConnection: keep-alive\r\n"
  std::string body;        // writes: the JSON string, shared by all requests
  Clock::time_point measure_from, measure_to;
  std::chrono::milliseconds timeout{60'000};
};

class Conn;

struct Worker {
  asio::io_context ioc{1};
  asio::steady_timer watchdog{ioc};
  std::vector<Conn*> conns;
  std::size_t next_setup = 0;
  int active = 0; // connections still busy in the current phase
  Histogram hist;
  Failures failures;
  std::string fatal; // setup failure: the workload cannot run
  std::uint64_t duplicates = 0, requests = 0;
  std::uint64_t bytes = 0, pages = 0, completed_reads = 0; // catch-up

  void setup_next();
  void arm_watchdog();
  void one_done() {
    if (--active == 0)
      watchdog.cancel();
  }
};

class Conn {
public:
  Conn(Worker& w, const Shared& s, std::size_t index, std::string path)
    : w_(w), s_(s), sock_(w.ioc), retry_(w.ioc), index_(index),
      path_(std::move(path)) {
    // Room for a whole response head in one read (a fresh flat_buffer reads
    // 512 bytes at a time), and for Beast's largest read (64 KB) on catch-up.
    buf_.reserve(s_.opt.mode == "writes" ? 16 * 1024 : 64 * 1024);
    if (s_.opt.mode == "writes") {
      head_ = "POST " + path_ + " HTTP/1.1\r\n" + s_.host_header
              + "Content-Type: application/json\r\nContent-Length: "
              + std::to_string(s_.body.size()) + "\r\nProducer-Id: bench-"
              + std::to_string(index_)
              + "\r\nProducer-Epoch: 0\r\nProducer-Seq: ";
    }
  }

  bool connected() const {
    return connected_;
  }
  std::uint64_t accepted() const {
    return accepted_;
  }

  // Setup: connect, then (writes) create the stream with PUT on this connection.
  void begin_setup() {
    connect_then(s_.opt.mode == "writes" ? Op::create : Op::none);
  }

  void begin_writes() {
    next_append();
  }

  void begin_round() {
    offset_ = "-1";
    if (connected_)
      send(Op::read);
    else
      connect_then(Op::read);
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
      if (ec)
        return on_transport_error(op, "connect: " + ec.message());
      connected_ = true;
      sock_.set_option(tcp::no_delay(true), ec);
      if (op == Op::none)
        return setup_done();
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
        out_ = "PUT " + path_ + " HTTP/1.1\r\n" + s_.host_header
               + "Content-Type: application/json\r\nContent-Length: 0\r\n\r\n";
        asio::async_write(sock_, asio::buffer(out_),
                          [this](error_code ec, std::size_t) {
                            on_written(ec);
                          });
        break;
      case Op::append: {
        char num[32];
        int n = std::snprintf(num, sizeof num, "%llu\r\n\r\n",
                              static_cast<unsigned long long>(seq_));
        seq_text_.assign(num, static_cast<std::size_t>(n));
        std::array<asio::const_buffer, 3> bufs{asio::buffer(head_),
                                               asio::buffer(seq_text_),
                                               asio::buffer(s_.body)};
        asio::async_write(sock_, bufs, [this](error_code ec, std::size_t) {
          on_written(ec);
        });
        break;
      }
      case Op::read:
        out_ = "GET " + path_ + "?offset=" + offset_ + " HTTP/1.1\r\n"
               + s_.host_header + "\r\n";
        asio::async_write(sock_, asio::buffer(out_),
                          [this](error_code ec, std::size_t) {
                            on_written(ec);
                          });
        break;
      case Op::none:
        break;
    }
  }

  void on_written(error_code ec) {
    if (ec)
      return on_io_error(ec);
    http::async_read(sock_, buf_, *parser_,
                     [this](error_code ec2, std::size_t) { on_read(ec2); });
  }

  void on_io_error(error_code ec) {
    inflight_ = false;
    std::string what = timed_out_
                         ? "timeout after " + std::to_string(s_.timeout.count())
                             + " ms"
                         : ec.message();
    on_transport_error(op_, what);
  }

  void on_read(error_code ec) {
    if (ec)
      return on_io_error(ec);
    inflight_ = false;
    auto t1 = Clock::now();
    bool keep = parser_->keep_alive();
    if (!keep) {
      error_code ignored;
      sock_.close(ignored);
      connected_ = false;
    }
    switch (op_) {
      case Op::create:
        return on_created();
      case Op::append:
        return on_appended(t1);
      case Op::read:
        return on_page();
      case Op::none:
        return;
    }
  }

  void on_transport_error(Op op, const std::string& what) {
    error_code ignored;
    sock_.close(ignored);
    connected_ = false;
    switch (op) {
      case Op::none:
      case Op::create:
        return setup_failed(
          (op == Op::create ? "PUT " + path_ + ": " : "connect: ") + what);
      case Op::append:
        w_.failures.add("transport",
                        path_ + " seq=" + std::to_string(seq_) + ": " + what);
        return pause_then_append();
      case Op::read:
        w_.failures.add("transport",
                        "catch-up GET offset=" + offset_ + ": " + what);
        return w_.one_done();
    }
  }

  void setup_done() {
    w_.one_done();
    w_.setup_next();
  }

  void setup_failed(const std::string& what) {
    if (w_.fatal.empty())
      w_.fatal = what;
    w_.one_done();
    w_.setup_next();
  }

  void on_created() {
    auto& p = *parser_;
    if (p.status != 200 && p.status != 201)
      return setup_failed("PUT " + path_ + ": " + describe_http(p));
    if (!connected_)
      return connect_then(
        Op::none); // server closed it; setup wants an open one
    setup_done();
  }

  void on_appended(Clock::time_point t1) {
    auto& p = *parser_;
    if (p.status == 200) {
      ++seq_;
      ++accepted_;
      if (t1 >= s_.measure_from && t1 <= s_.measure_to)
        w_.hist.add(static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0_)
            .count()));
      return next_append();
    }
    if (
      p.status
      == 204) { // duplicate: the server already had this seq (a retry after an error)
      ++seq_;
      ++w_.duplicates;
      return next_append();
    }
    w_.failures.add("HTTP " + std::to_string(p.status),
                    path_ + " seq=" + std::to_string(seq_) + ": "
                      + describe_http(p));
    if (p.status == 409 && !p.expected_seq.empty())
      seq_ = std::strtoull(p.expected_seq.c_str(), nullptr, 10);
    pause_then_append();
  }

  void pause_then_append() {
    retry_.expires_after(std::chrono::milliseconds(10));
    retry_.async_wait([this](error_code) { next_append(); });
  }

  void next_append() {
    if (Clock::now() >= s_.measure_to)
      return w_.one_done();
    if (connected_)
      send(Op::append);
    else
      connect_then(Op::append);
  }

  void on_page() {
    auto& p = *parser_;
    if (p.status != 200) {
      w_.failures.add("HTTP " + std::to_string(p.status),
                      "catch-up GET offset=" + offset_ + ": "
                        + describe_http(p));
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
    if (connected_)
      send(Op::read);
    else
      connect_then(Op::read);
  }

  Worker& w_;
  const Shared& s_;
  tcp::socket sock_;
  asio::steady_timer retry_;
  beast::flat_buffer buf_;
  std::optional<ResponseParser> parser_;
  std::size_t index_;
  std::string path_;
  std::string head_;     // writes: request head up to the Producer-Seq value
  std::string seq_text_; // "<seq>\r\n\r\n"
  std::string out_;      // PUT / GET request
  std::string offset_;
  Op op_ = Op::none;
  bool connected_ = false, inflight_ = false, timed_out_ = false;
  Clock::time_point t0_;
  std::uint64_t seq_ = 0, accepted_ = 0;
};

void Worker::setup_next() {
  if (!fatal.empty()) { // give up: the connections not started yet are done
    while (next_setup < conns.size()) {
      ++next_setup;
      one_done();
    }
    return;
  }
  if (next_setup < conns.size())
    conns[next_setup++]->begin_setup();
}

void Worker::arm_watchdog() {
  watchdog.expires_after(std::chrono::seconds(1));
  watchdog.async_wait([this](error_code ec) {
    if (ec || active == 0)
      return;
    auto now = Clock::now();
    for (auto* c : conns)
      c->check_timeout(now);
    arm_watchdog();
  });
}

using Workers = std::vector<std::unique_ptr<Worker>>;

// Runs every worker's io_context until it runs out of work (one thread each).
void run_all(Workers& ws) {
  for (auto& w : ws)
    w->ioc.restart();
  if (ws.size() == 1) {
    ws[0]->ioc.run();
    return;
  }
  std::vector<std::thread> threads;
  for (auto& w : ws)
    threads.emplace_back([&w] { w->ioc.run(); });
  for (auto& t : threads)
    t.join();
}

// Connects every connection (and, for writes, creates its stream), at most
// --connect-concurrency at a time in total. Returns the first fatal error.
std::string setup(Workers& ws, const Options& opt) {
  int per_worker = std::max(1, opt.connect_concurrency
                                 / static_cast<int>(ws.size()));
  for (auto& w : ws) {
    w->active = static_cast<int>(w->conns.size());
    if (w->active == 0)
      continue;
    w->arm_watchdog();
    for (int i = 0; i < per_worker; ++i)
      asio::post(w->ioc, [wp = w.get()] { wp->setup_next(); });
  }
  run_all(ws);
  for (auto& w : ws)
    if (!w->fatal.empty())
      return w->fatal;
  return {};
}

std::string fatal_json(const std::string& what) {
  return "{\"error\":" + json_string(what) + "}";
}

int run_writes(Shared& s, Workers& ws,
               std::vector<std::unique_ptr<Conn>>& conns) {
  const Options& opt = s.opt;
  auto t_setup = Clock::now();
  if (auto err = setup(ws, opt); !err.empty()) {
    std::cout << fatal_json(err) << std::endl;
    return 1;
  }
  double setup_seconds = seconds_between(t_setup, Clock::now());
  std::size_t connections = 0;
  for (auto& c : conns)
    connections += c->connected() ? 1 : 0;

  auto start = Clock::now();
  s.measure_from = start
                   + std::chrono::duration_cast<Clock::duration>(
                     std::chrono::duration<double>(opt.warmup));
  s.measure_to = s.measure_from
                 + std::chrono::duration_cast<Clock::duration>(
                   std::chrono::duration<double>(opt.duration));

  // CPU marks at the edges of the measured window, on worker 0.
  std::optional<CpuMark> mark;
  std::optional<CpuUse> use;
  asio::steady_timer mark_timer(ws[0]->ioc), use_timer(ws[0]->ioc);
  mark_timer.expires_at(s.measure_from);
  mark_timer.async_wait([&](error_code) { mark = cpu_mark(opt.pid); });
  use_timer.expires_at(s.measure_to);
  use_timer.async_wait([&](error_code) {
    if (mark)
      use = cpu_since(opt.pid, *mark);
  });

  for (auto& w : ws) {
    w->active = static_cast<int>(w->conns.size());
    if (w->active == 0)
      continue;
    w->arm_watchdog();
    for (auto* c : w->conns)
      asio::post(w->ioc, [c] { c->begin_writes(); });
  }
  run_all(ws);
  if (!use && mark)
    use = cpu_since(opt.pid, *mark);

  Histogram hist;
  Failures failures;
  std::uint64_t duplicates = 0, requests = 0;
  for (auto& w : ws) {
    hist.merge(w->hist);
    failures.merge(w->failures);
    duplicates += w->duplicates;
    requests += w->requests;
  }
  auto ms = [](double ns) {
    return ns < 0 ? std::string("null") : json_number(ns / 1e6);
  };
  std::string out = "{\"mode\":\"writes\",\"threads\":"
                    + std::to_string(ws.size())
                    + ",\"streams\":" + std::to_string(opt.streams)
                    + ",\"setupSeconds\":" + json_number(setup_seconds)
                    + ",\"connections\":" + std::to_string(connections)
                    + ",\"appendsPerSec\":"
                    + json_number(static_cast<double>(hist.count())
                                  / opt.duration)
                    + ",\"latencyMs\":{\"n\":" + std::to_string(hist.count())
                    + ",\"p50\":" + ms(hist.percentile_ns(50))
                    + ",\"p99\":" + ms(hist.percentile_ns(99)) + ",\"max\":"
                    + ms(hist.count() ? static_cast<double>(hist.max()) : -1)
                    + "}" + ",\"duplicates\":" + std::to_string(duplicates)
                    + ",\"requests\":" + std::to_string(requests)
                    + ",\"failures\":" + json_failures(failures) + ",\"cpu\":"
                    + json_cpu(use ? *use : CpuUse{}) + ",\"accepted\":[";
  for (std::size_t i = 0; i < conns.size(); ++i)
    out += (i ? "," : "") + std::to_string(conns[i]->accepted());
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
      if (w->active == 0)
        continue;
      w->arm_watchdog();
      for (auto* c : w->conns)
        asio::post(w->ioc, [c] { c->begin_round(); });
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
  std::cout << "{\"mode\":\"catchup\",\"threads\":" << ws.size()
            << ",\"readers\":" << opt.readers << ",\"rounds\":" << rounds
            << ",\"seconds\":" << json_number(secs) << ",\"bytes\":" << bytes
            << ",\"pages\":" << pages << ",\"requests\":" << requests
            << ",\"mbPerSec\":"
            << json_number(static_cast<double>(bytes) / 1e6 / secs)
            << ",\"completedReads\":" << completed
            << ",\"failures\":" << json_failures(failures)
            << ",\"cpu\":" << json_cpu(use) << "}" << std::endl;
  return 0;
}

// ---------------------------------------------------------------- SSE

std::int64_t ns_of(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           t.time_since_epoch())
    .count();
}

// Incremental text/event-stream decoder, the parts the benchmark needs:
// lines end in LF, CR or CRLF (also across reads); "event:" sets the type,
// "data:" lines accumulate (joined with LF), ":" lines are comments, and an
// empty line dispatches the event if it had any data line.
class SseDecoder {
public:
  template <class F>
  void feed(beast::string_view bytes, F&& dispatch) {
    const char* p = bytes.data();
    const char* end = p + bytes.size();
    while (p < end) {
      if (skip_lf_) {
        skip_lf_ = false;
        if (*p == '\n') {
          ++p;
          continue;
        }
      }
      const char* eol = p;
      while (eol < end && *eol != '\n' && *eol != '\r')
        ++eol;
      line_.append(p, eol);
      if (eol == end)
        return;
      skip_lf_ = *eol == '\r';
      p = eol + 1;
      take_line(dispatch);
      line_.clear();
    }
  }

private:
  template <class F>
  void take_line(F& dispatch) {
    if (line_.empty()) {
      if (has_data_)
        dispatch(beast::string_view(type_.empty() ? std::string("message")
                                                  : type_),
                 beast::string_view(data_));
      type_.clear();
      data_.clear();
      has_data_ = false;
      return;
    }
    if (line_[0] == ':')
      return;
    auto colon = line_.find(':');
    beast::string_view line(line_);
    beast::string_view field = line.substr(0, colon == std::string::npos
                                                ? line.size()
                                                : colon);
    beast::string_view value;
    if (colon != std::string::npos) {
      value = line.substr(colon + 1);
      if (!value.empty() && value.front() == ' ')
        value.remove_prefix(1);
    }
    if (field == "event") {
      type_.assign(value.data(), value.size());
    } else if (field == "data") {
      if (has_data_)
        data_ += '\n';
      data_.append(value.data(), value.size());
      has_data_ = true;
    }
  }

  std::string line_, type_, data_;
  bool has_data_ = false, skip_lf_ = false;
};

// The integer after `"key"` and a colon in `obj`, if any.
std::optional<std::int64_t> json_int_after(beast::string_view obj,
                                           beast::string_view key) {
  auto k = obj.find(key);
  if (k == beast::string_view::npos)
    return std::nullopt;
  std::size_t p = k + key.size();
  auto skip_ws = [&] {
    while (
      p < obj.size()
      && (obj[p] == ' ' || obj[p] == '\t' || obj[p] == '\n' || obj[p] == '\r'))
      ++p;
  };
  skip_ws();
  if (p >= obj.size() || obj[p] != ':')
    return std::nullopt;
  ++p;
  skip_ws();
  bool negative = p < obj.size() && obj[p] == '-';
  if (negative)
    ++p;
  if (p >= obj.size() || obj[p] < '0' || obj[p] > '9')
    return std::nullopt;
  std::int64_t v = 0;
  for (; p < obj.size() && obj[p] >= '0' && obj[p] <= '9'; ++p)
    v = v * 10 + (obj[p] - '0');
  return negative ? -v : v;
}

// Calls f(i, t) for every {"i": K, "t": NS} object in a data event (a JSON
// array of the writer's messages; the objects are flat).
template <class F>
void scan_messages(beast::string_view json, F&& f) {
  std::size_t pos = 0;
  while ((pos = json.find('{', pos)) != beast::string_view::npos) {
    auto close = json.find('}', pos);
    if (close == beast::string_view::npos)
      return;
    auto obj = json.substr(pos, close - pos);
    auto i = json_int_after(obj, "\"i\"");
    auto t = json_int_after(obj, "\"t\"");
    if (i && t)
      f(*i, *t);
    pos = close + 1;
  }
}

// The streamNextOffset of a control event, or "".
std::string control_next_offset(beast::string_view json) {
  auto k = json.find("\"streamNextOffset\"");
  if (k == beast::string_view::npos)
    return {};
  auto q1 = json.find('"', json.find(':', k) + 1);
  if (q1 == beast::string_view::npos)
    return {};
  auto q2 = json.find('"', q1 + 1);
  if (q2 == beast::string_view::npos)
    return {};
  return std::string(json.substr(q1 + 1, q2 - q1 - 1));
}

// Response parser for a streaming body: status, and the body bytes parsed
// but not yet taken (chunked or not).
class StreamingParser final : public http::basic_parser<false> {
public:
  unsigned status = 0;
  std::string body;

private:
  void on_request_impl(http::verb, beast::string_view, beast::string_view, int,
                       error_code&) override {}
  void on_response_impl(int code, beast::string_view, int,
                        error_code&) override {
    status = static_cast<unsigned>(code);
  }
  void on_field_impl(http::field, beast::string_view, beast::string_view,
                     error_code&) override {}
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(boost::optional<std::uint64_t> const&,
                         error_code&) override {}
  std::size_t on_body_impl(beast::string_view b, error_code&) override {
    body.append(b.data(), b.size());
    return b.size();
  }
  void on_chunk_header_impl(std::uint64_t, beast::string_view,
                            error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view b,
                                 error_code&) override {
    body.append(b.data(), b.size());
    return b.size();
  }
  void on_finish_impl(error_code&) override {}
};

constexpr std::int64_t kNotDelivered = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kNotMeasured = std::numeric_limits<std::int64_t>::max();

// What the subscribers and the writer share. The per-event vectors are
// written by the writer's thread only; cell (k, sub) of `latency` only by
// subscriber sub's thread; everything is read after all threads are joined.
struct SseRun {
  const Shared* s = nullptr;
  std::size_t subs = 0;
  std::size_t capacity = 0;          // events the writer can send at most
  std::vector<std::int64_t> latency; // [k * subs + sub]: receive - t, ns
  std::vector<std::int64_t> t_send,
    t_ack; // per event, steady_clock ns (0: none)
  std::vector<unsigned>
    status; // per event: the POST's status (0: transport error)
  std::atomic<std::int64_t> first_measured{
    kNotMeasured}; // first event sent after warm-up
  std::atomic<std::uint64_t> delivered{
    0}; // measured events delivered, over all subscribers
  std::atomic<std::uint64_t> reconnects{0};
  std::atomic<int> ready{0},
    refused{0}; // subscribers with a 200 head / without
  std::atomic<bool> stopping{false};
};

class SseSub {
public:
  SseSub(Worker& w, SseRun& run, std::size_t index)
    : w_(w), run_(run), s_(*run.s), sock_(w.ioc), retry_(w.ioc), index_(index) {
    buf_.reserve(16 * 1024);
  }

  void start() {
    connect();
  }

private:
  void connect() {
    if (run_.stopping)
      return;
    buf_.consume(buf_.size());
    error_code ignored;
    sock_.close(ignored);
    sock_.async_connect(s_.endpoint, [this](error_code ec) {
      if (ec)
        return on_error("connect: " + ec.message());
      sock_.set_option(tcp::no_delay(true), ec);
      subscribe();
    });
  }

  void subscribe() {
    out_ = "GET " + s_.opt.path + "?offset=" + offset_
           + "&live=sse HTTP/1.1\r\n" + s_.host_header
           + "Accept: text/event-stream\r\n\r\n";
    parser_.emplace();
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    parser_->eager(true);
    decoder_ = SseDecoder{};
    head_seen_ = false;
    asio::async_write(sock_, asio::buffer(out_),
                      [this](error_code ec, std::size_t) {
                        if (ec)
                          return on_error("write: " + ec.message());
                        read();
                      });
  }

  // Our own read loop around basic_parser::put: http::async_read_some keeps
  // reading while the parser wants more, which holds a chunk's data back
  // until the next chunk's header arrives (the CRLF after a chunk is parsed
  // with the next chunk header).
  void read() {
    sock_.async_read_some(buf_.prepare(16 * 1024),
                          [this](error_code ec, std::size_t n) {
                            buf_.commit(n);
                            on_read(ec);
                          });
  }

  void on_read(error_code ec) {
    if (run_.stopping)
      return;
    auto& p = *parser_;
    if (ec == asio::error::eof) {
      error_code ignored;
      p.put_eof(ignored);
      ec = p.is_done() ? error_code(http::error::end_of_stream) : ec;
    }
    while (!ec && buf_.size() > 0 && !p.is_done()) {
      error_code pe;
      auto used = p.put(buf_.data(), pe);
      buf_.consume(used);
      if (pe == http::error::need_more)
        break;
      if (pe) {
        ec = pe;
        break;
      }
      if (used == 0)
        break;
    }
    if (!head_seen_ && p.is_header_done()) {
      head_seen_ = true;
      if (p.status != 200) {
        w_.failures.add("HTTP " + std::to_string(p.status),
                        "SSE subscribe at offset " + offset_);
        if (!ready_)
          ++run_.refused;
        ready_ = true;
        error_code ignored;
        sock_.close(ignored);
        return;
      }
      if (!ready_)
        ++run_.ready;
      ready_ = true;
    }
    if (!p.body.empty()) {
      decoder_.feed(p.body,
                    [this](beast::string_view type, beast::string_view data) {
                      on_event(type, data);
                    });
      p.body.clear();
    }
    if ((!ec && p.is_done()) || ec == http::error::end_of_stream) {
      // Servers end SSE responses after a while: resume from the last control offset.
      ++run_.reconnects;
      return connect();
    }
    if (ec)
      return on_error("read: " + ec.message());
    read();
  }

  void on_event(beast::string_view type, beast::string_view data) {
    auto t = ns_of(Clock::now());
    if (type == "control") {
      auto next = control_next_offset(data);
      if (!next.empty())
        offset_ = next;
      return;
    }
    if (type != "data")
      return;
    scan_messages(data, [&](std::int64_t i, std::int64_t sent) {
      if (i <= last_index_)
        return; // re-delivery after a reconnect
      last_index_ = i;
      if (i < 0 || static_cast<std::size_t>(i) >= run_.capacity)
        return;
      run_.latency[static_cast<std::size_t>(i) * run_.subs + index_] = t - sent;
      if (i >= run_.first_measured.load(std::memory_order_relaxed))
        run_.delivered.fetch_add(1, std::memory_order_relaxed);
    });
  }

  void on_error(const std::string& what) {
    if (run_.stopping)
      return;
    w_.failures.add("transport",
                    "SSE subscriber " + std::to_string(index_) + ": " + what);
    error_code ignored;
    sock_.close(ignored);
    if (!ready_) { // never subscribed: given up, like the Node driver
      ready_ = true;
      ++run_.refused;
      return;
    }
    ++run_.reconnects;
    retry_.expires_after(std::chrono::milliseconds(100));
    retry_.async_wait([this](error_code e) {
      if (!e)
        connect();
    });
  }

  Worker& w_;
  SseRun& run_;
  const Shared& s_;
  tcp::socket sock_;
  asio::steady_timer retry_;
  beast::flat_buffer buf_;
  std::optional<StreamingParser> parser_;
  SseDecoder decoder_;
  std::size_t index_;
  std::string offset_ = "now";
  std::string out_;
  std::int64_t last_index_ = -1;
  bool head_seen_ = false, ready_ = false;
};

// The writer: event k is due at start + k/rate, one POST in flight; a late
// writer sends back to back but still stops at the end of the window.
class SseWriter {
public:
  SseWriter(Worker& w, SseRun& run)
    : w_(w), run_(run), s_(*run.s), sock_(w.ioc), timer_(w.ioc) {
    buf_.reserve(16 * 1024);
    period_ = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(1.0 / s_.opt.rate));
  }

  // Setup, before the io_context runs: connect and create the stream (PUT).
  std::string create_stream() {
    error_code ec;
    sock_.connect(s_.endpoint, ec);
    if (ec)
      return "connect: " + ec.message();
    sock_.set_option(tcp::no_delay(true), ec);
    connected_ = true;
    std::string put
      = "PUT " + s_.opt.path + " HTTP/1.1\r\n" + s_.host_header
        + "Content-Type: application/json\r\nContent-Length: 0\r\n\r\n";
    asio::write(sock_, asio::buffer(put), ec);
    if (ec)
      return "PUT " + s_.opt.path + ": " + ec.message();
    ResponseParser p;
    http::read(sock_, buf_, p, ec);
    if (ec)
      return "PUT " + s_.opt.path + ": " + ec.message();
    if (p.status != 200 && p.status != 201)
      return "PUT " + s_.opt.path + ": " + describe_http(p);
    // A fresh connection for the run: an idle keep-alive one may be closed
    // by the server while the subscribers connect.
    sock_.close(ec);
    connected_ = false;
    return {};
  }

  // Called on the writer's thread when the writer is done with its window.
  std::function<void()> on_finished;
  std::optional<CpuUse> cpu;
  std::uint64_t sent = 0, late = 0, requests = 0;
  std::int64_t end_k = 0; // events [0, end_k) were sent (or tried)

  void start() {
    start_ = Clock::now();
    measure_from_ = start_
                    + std::chrono::duration_cast<Clock::duration>(
                      std::chrono::duration<double>(s_.opt.warmup));
    measure_to_ = measure_from_
                  + std::chrono::duration_cast<Clock::duration>(
                    std::chrono::duration<double>(s_.opt.duration));
    sock_.async_connect(s_.endpoint, [this](error_code ec) {
      if (!ec) {
        connected_ = true;
        sock_.set_option(tcp::no_delay(true), ec);
      }
      next(); // if not connected, send() connects
    });
  }

  Clock::time_point measure_to() const {
    return measure_to_;
  }

private:
  void next() {
    auto now = Clock::now();
    if (now >= measure_to_)
      return finish();
    auto due = start_ + period_ * k_;
    if (due > now) {
      timer_.expires_at(due);
      timer_.async_wait([this](error_code ec) {
        if (!ec)
          send();
      });
      return;
    }
    if (now - due > period_)
      ++late;
    send();
  }

  void send() {
    auto t = Clock::now();
    if (t >= measure_to_ || static_cast<std::size_t>(k_) >= run_.capacity)
      return finish();
    if (t >= measure_from_ && run_.first_measured.load() == kNotMeasured) {
      run_.first_measured.store(k_);
      mark_ = cpu_mark(s_.opt.pid);
    }
    t_ = t;
    auto k = static_cast<std::size_t>(k_);
    run_.t_send[k] = ns_of(t);
    std::string body = "{\"i\":" + std::to_string(k_)
                       + ",\"t\":" + std::to_string(ns_of(t)) + "}";
    out_ = "POST " + s_.opt.path + " HTTP/1.1\r\n" + s_.host_header
           + "Content-Type: application/json\r\nContent-Length: "
           + std::to_string(body.size())
           + "\r\nProducer-Id: bench-sse\r\nProducer-Epoch: 0\r\nProducer-Seq: "
           + std::to_string(k_) + "\r\n\r\n" + body;
    ++requests;
    retried_ = false;
    transmit();
  }

  void transmit() {
    if (connected_)
      return write();
    sock_.async_connect(s_.endpoint, [this](error_code ec) {
      if (ec)
        return on_response(ec);
      connected_ = true;
      sock_.set_option(tcp::no_delay(true), ec);
      write();
    });
  }

  void write() {
    parser_.emplace();
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    asio::async_write(sock_, asio::buffer(out_),
                      [this](error_code ec, std::size_t) {
                        if (ec)
                          return on_response(ec);
                        http::async_read(sock_, buf_, *parser_,
                                         [this](error_code ec2, std::size_t) {
                                           on_response(ec2);
                                         });
                      });
  }

  void on_response(error_code ec) {
    auto t1 = Clock::now();
    auto k = static_cast<std::size_t>(k_);
    if (ec) {
      w_.failures.add("transport", "SSE writer k=" + std::to_string(k_) + ": "
                                     + ec.message());
      error_code ignored;
      sock_.close(ignored);
      connected_ = false;
      buf_.consume(buf_.size());
      if (!retried_) { // once more on a new connection, same seq and body
        retried_ = true;
        ++requests;
        return transmit();
      }
    } else {
      auto& p = *parser_;
      run_.t_ack[k] = ns_of(t1);
      run_.status[k] = p.status;
      if (p.status == 200
          || (p.status == 204 && retried_)) { // 204: the first try had arrived
        if (t_ >= measure_from_)
          ++sent;
      } else {
        w_.failures.add("HTTP " + std::to_string(p.status),
                        "SSE writer k=" + std::to_string(k_) + ": "
                          + describe_http(p));
      }
      if (!p.keep_alive()) {
        error_code ignored;
        sock_.close(ignored);
        connected_ = false;
      }
    }
    ++k_;
    next();
  }

  void finish() {
    end_k = k_;
    if (mark_)
      cpu = cpu_since(s_.opt.pid, *mark_);
    if (on_finished)
      on_finished();
  }

  Worker& w_;
  SseRun& run_;
  const Shared& s_;
  tcp::socket sock_;
  asio::steady_timer timer_;
  beast::flat_buffer buf_;
  std::optional<ResponseParser> parser_;
  std::string out_;
  bool connected_ = false, retried_ = false;
  Clock::duration period_{};
  Clock::time_point start_, measure_from_, measure_to_, t_;
  std::int64_t k_ = 0;
  std::optional<CpuMark> mark_;
};

// Exact percentiles of a sample (same rank rule as the histogram).
struct Stats {
  std::size_t n = 0;
  double p50 = 0, p90 = 0, p99 = 0, min = 0, max = 0, mean = 0;
};

Stats stats_of(std::vector<std::int64_t> v) {
  Stats st;
  st.n = v.size();
  if (v.empty())
    return st;
  std::sort(v.begin(), v.end());
  auto at = [&](double p) {
    auto rank = static_cast<std::int64_t>(
                  std::ceil(p / 100.0 * static_cast<double>(v.size())))
                - 1;
    rank = std::clamp<std::int64_t>(rank, 0,
                                    static_cast<std::int64_t>(v.size()) - 1);
    return static_cast<double>(v[static_cast<std::size_t>(rank)]);
  };
  st.p50 = at(50);
  st.p90 = at(90);
  st.p99 = at(99);
  st.min = static_cast<double>(v.front());
  st.max = static_cast<double>(v.back());
  double sum = 0;
  for (auto x : v)
    sum += static_cast<double>(x);
  st.mean = sum / static_cast<double>(v.size());
  return st;
}

// {"n":..,"p50":..,...} in ms (samples in ns).
std::string json_stats_ms(const Stats& st, bool full = true) {
  auto ms = [&](double ns) {
    return st.n ? json_number(ns / 1e6) : std::string("null");
  };
  std::string out = "{\"n\":" + std::to_string(st.n) + ",\"p50\":" + ms(st.p50)
                    + ",\"p99\":" + ms(st.p99) + ",\"max\":" + ms(st.max);
  if (full)
    out += ",\"min\":" + ms(st.min) + ",\"p90\":" + ms(st.p90)
           + ",\"mean\":" + ms(st.mean);
  return out + "}";
}

int run_sse(Shared& s, Workers& ws) {
  const Options& opt = s.opt;
  SseRun run;
  run.s = &s;
  run.subs = static_cast<std::size_t>(opt.subscribers);
  run.capacity = static_cast<std::size_t>(
                   std::ceil(opt.rate * (opt.warmup + opt.duration)))
                 + 2;
  run.latency.assign(run.capacity * run.subs, kNotDelivered);
  run.t_send.assign(run.capacity, 0);
  run.t_ack.assign(run.capacity, 0);
  run.status.assign(run.capacity, 0);

  Worker& w0 = *ws[0];
  SseWriter writer(w0, run);
  if (auto err = writer.create_stream(); !err.empty()) {
    std::cout << fatal_json(err) << std::endl;
    return 1;
  }

  std::vector<std::unique_ptr<SseSub>> subs;
  for (std::size_t i = 0; i < run.subs; ++i) {
    auto& w = *ws[i % ws.size()];
    subs.push_back(std::make_unique<SseSub>(w, run, i));
    asio::post(w.ioc, [sub = subs.back().get()] { sub->start(); });
  }

  auto stop_all = [&] {
    run.stopping = true;
    for (auto& w : ws)
      w->ioc.stop();
  };

  // Setup: wait (up to 30 s) until every subscriber has its 200 head (or
  // was refused), let the subscriptions settle for 200 ms, then write.
  asio::steady_timer poll(w0.ioc), deadline(w0.ioc);
  auto t_setup = Clock::now();
  double setup_seconds = 0;
  std::function<void()> wait_ready = [&] {
    poll.expires_after(std::chrono::milliseconds(5));
    poll.async_wait([&](error_code ec) {
      if (ec)
        return;
      auto answered = static_cast<std::size_t>(run.ready + run.refused);
      if (answered < run.subs
          && Clock::now() - t_setup < std::chrono::seconds(30))
        return wait_ready();
      setup_seconds = seconds_between(t_setup, Clock::now());
      if (run.ready != opt.subscribers)
        w0.failures.add("setup", std::to_string(opt.subscribers - run.ready)
                                   + " subscribers failed to connect");
      poll.expires_after(std::chrono::milliseconds(200));
      poll.async_wait([&](error_code ec2) {
        if (!ec2)
          writer.start();
      });
    });
  };
  wait_ready();

  // After the window: a grace period (3 s) for the last deliveries.
  bool timed_out = false;
  std::function<void(std::uint64_t, Clock::time_point)> grace =
    [&](std::uint64_t expected, Clock::time_point until) {
      if (run.delivered >= expected || Clock::now() >= until)
        return stop_all();
      poll.expires_after(std::chrono::milliseconds(5));
      poll.async_wait([&grace, expected, until](error_code ec) {
        if (!ec)
          grace(expected, until);
      });
    };
  writer.on_finished = [&] {
    grace(writer.sent * run.subs, Clock::now() + std::chrono::seconds(3));
  };
  // A writer stuck on a POST must not hang the run.
  deadline.expires_after(
    std::chrono::seconds(60)
    + std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(opt.warmup + opt.duration)));
  deadline.async_wait([&](error_code ec) {
    if (ec)
      return;
    timed_out = true;
    stop_all();
  });

  run_all(ws);
  if (timed_out)
    w0.failures.add("timeout",
                    "the SSE run did not finish within 60 s of its window");

  // ---- analysis
  Failures failures;
  for (auto& w : ws)
    failures.merge(w->failures);
  const auto first = run.first_measured.load();
  const std::int64_t end = writer.end_k;
  std::vector<std::int64_t> lat, append, after_ack, first_lat, last_lat, spread;
  std::vector<std::vector<std::int64_t>> per_sub(run.subs);
  std::uint64_t delivered = 0;
  struct Worst {
    std::int64_t k, append, first, last;
    std::size_t got;
  };
  std::vector<Worst> worst;
  for (std::int64_t k = first; k < end && first != kNotMeasured; ++k) {
    auto ki = static_cast<std::size_t>(k);
    bool ok = run.status[ki] == 200 || run.status[ki] == 204;
    std::int64_t append_ns = ok ? run.t_ack[ki] - run.t_send[ki] : -1;
    if (ok)
      append.push_back(append_ns);
    std::int64_t lo = kNotMeasured, hi = kNotDelivered;
    std::size_t got = 0;
    for (std::size_t sub = 0; sub < run.subs; ++sub) {
      auto l = run.latency[ki * run.subs + sub];
      if (l == kNotDelivered)
        continue;
      ++delivered;
      ++got;
      lat.push_back(l);
      per_sub[sub].push_back(l);
      if (ok)
        after_ack.push_back(l - append_ns);
      lo = std::min(lo, l);
      hi = std::max(hi, l);
    }
    if (got) {
      first_lat.push_back(lo);
      last_lat.push_back(hi);
      spread.push_back(hi - lo);
      worst.push_back({k, append_ns, lo, hi, got});
    }
  }
  std::sort(worst.begin(), worst.end(),
            [](const Worst& a, const Worst& b) { return a.last > b.last; });
  if (worst.size() > 5)
    worst.resize(5);
  std::vector<std::int64_t> sub_p50, sub_p99, sub_mean;
  for (auto& v : per_sub) {
    if (v.empty())
      continue;
    auto st = stats_of(v);
    sub_p50.push_back(static_cast<std::int64_t>(st.p50));
    sub_p99.push_back(static_cast<std::int64_t>(st.p99));
    sub_mean.push_back(static_cast<std::int64_t>(st.mean));
  }
  // Mean latency of the first and last tenth of the subscribers (in
  // subscription order): shows whether the server serves them in order.
  auto tenth_mean = [&](bool last) {
    std::size_t n = std::max<std::size_t>(1, run.subs / 10);
    double sum = 0;
    std::size_t cnt = 0;
    for (std::size_t j = 0; j < n; ++j) {
      auto& v = per_sub[last ? run.subs - 1 - j : j];
      for (auto x : v)
        sum += static_cast<double>(x);
      cnt += v.size();
    }
    return cnt ? sum / static_cast<double>(cnt) / 1e6 : std::nan("");
  };

  if (!opt.raw.empty()) {
    std::ofstream raw(opt.raw);
    raw << "k,measured,status,t_send_ns,append_ns";
    for (std::size_t sub = 0; sub < run.subs; ++sub)
      raw << ",s" << sub;
    raw << "\n";
    for (std::int64_t k = 0; k < end; ++k) {
      auto ki = static_cast<std::size_t>(k);
      raw << k << "," << (first != kNotMeasured && k >= first ? 1 : 0) << ","
          << run.status[ki] << "," << run.t_send[ki] << ","
          << (run.t_ack[ki] ? run.t_ack[ki] - run.t_send[ki] : -1);
      for (std::size_t sub = 0; sub < run.subs; ++sub) {
        auto l = run.latency[ki * run.subs + sub];
        raw << ",";
        if (l != kNotDelivered)
          raw << l;
      }
      raw << "\n";
    }
  }

  auto expected = writer.sent * run.subs;
  std::string out
    = "{\"mode\":\"sse\",\"threads\":" + std::to_string(ws.size())
      + ",\"subscribers\":" + std::to_string(run.subs)
      + ",\"rate\":" + json_number(opt.rate)
      + ",\"setupSeconds\":" + json_number(setup_seconds) + ",\"achievedRate\":"
      + json_number(static_cast<double>(writer.sent) / opt.duration)
      + ",\"sent\":" + std::to_string(writer.sent)
      + ",\"late\":" + std::to_string(writer.late)
      + ",\"requests\":" + std::to_string(writer.requests)
      + ",\"expected\":" + std::to_string(expected)
      + ",\"delivered\":" + std::to_string(delivered) + ",\"deliveredPct\":"
      + (expected ? json_number(100.0 * static_cast<double>(delivered)
                                / static_cast<double>(expected))
                  : std::string("null"))
      + ",\"reconnects\":" + std::to_string(run.reconnects.load())
      + ",\"latencyMs\":" + json_stats_ms(stats_of(lat))
      + ",\"appendLatencyMs\":" + json_stats_ms(stats_of(append))
      + ",\"afterAckMs\":" + json_stats_ms(stats_of(after_ack))
      + ",\"perEvent\":{\"firstMs\":" + json_stats_ms(stats_of(first_lat))
      + ",\"lastMs\":" + json_stats_ms(stats_of(last_lat))
      + ",\"spreadMs\":" + json_stats_ms(stats_of(spread)) + "}"
      + ",\"perSubscriber\":{\"p50Ms\":" + json_stats_ms(stats_of(sub_p50))
      + ",\"p99Ms\":" + json_stats_ms(stats_of(sub_p99))
      + ",\"meanMs\":" + json_stats_ms(stats_of(sub_mean))
      + ",\"firstTenthMeanMs\":" + json_number(tenth_mean(false))
      + ",\"lastTenthMeanMs\":" + json_number(tenth_mean(true))
      + "},\"worstEvents\":[";
  for (std::size_t i = 0; i < worst.size(); ++i) {
    auto& e = worst[i];
    out += std::string(i ? "," : "") + "{\"k\":" + std::to_string(e.k)
           + ",\"appendMs\":"
           + (e.append < 0 ? std::string("null")
                           : json_number(static_cast<double>(e.append) / 1e6))
           + ",\"firstMs\":" + json_number(static_cast<double>(e.first) / 1e6)
           + ",\"lastMs\":" + json_number(static_cast<double>(e.last) / 1e6)
           + ",\"delivered\":" + std::to_string(e.got) + "}";
  }
  out += "],\"failures\":" + json_failures(failures)
         + ",\"cpu\":" + json_cpu(writer.cpu ? *writer.cpu : CpuUse{}) + "}";
  std::cout << out << std::endl;
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  Options opt = parse_options(argc, argv);
  try {
    Shared s;
    s.opt = opt;
    {
      asio::io_context ioc;
      tcp::resolver resolver(ioc);
      auto results = resolver.resolve(opt.host, opt.port);
      if (results.empty())
        throw std::runtime_error("cannot resolve " + opt.host);
      s.endpoint = *results.begin();
    }
    s.host_header = "Host: " + opt.host + ":" + opt.port
                    + "\r\nConnection: keep-alive\r\n";
    s.body = "\"" + std::string(opt.body_bytes - 2, 'x') + "\"";

    Workers ws;
    for (int t = 0; t < opt.threads; ++t)
      ws.push_back(std::make_unique<Worker>());
    if (opt.mode == "sse")
      return run_sse(s, ws);
    std::vector<std::unique_ptr<Conn>> conns;
    int n = opt.mode == "writes" ? opt.streams : opt.readers;
    for (int i = 0; i < n; ++i) {
      auto& w = *ws[static_cast<std::size_t>(i) % ws.size()];
      std::string path = opt.mode == "writes"
                           ? opt.base + "/s" + std::to_string(i)
                           : opt.path;
      conns.push_back(std::make_unique<Conn>(w, s, static_cast<std::size_t>(i),
                                             std::move(path)));
      w.conns.push_back(conns.back().get());
    }
    return opt.mode == "writes" ? run_writes(s, ws, conns) : run_catchup(s, ws);
  } catch (const std::exception& e) {
    std::cout << fatal_json(e.what()) << std::endl;
    std::cerr << "ebridge_loadgen: " << e.what() << "\n";
    return 1;
  }
}
