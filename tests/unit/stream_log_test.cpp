#define CAF_SUITE stream_log
#include <caf/test/unit_test.hpp>

#include "storage/stream_log.hpp"

using namespace ebridge;

namespace {

std::string sample_log() {
  stream_header header;
  header.name = "/v1/stream/a";
  header.content_type = "application/json";
  header.ttl_seconds = 60;
  header.created_ms = 1234;
  append_record first;
  first.messages = {"{\"a\":1}", "[2]"};
  first.producer = producer_stamp{"p1", 3, 7};
  first.stream_seq = "0001";
  append_record second;
  second.messages = {"\"x\""};
  second.closes = true;
  return std::string{log_magic} + encode_record(header) + encode_record(first)
         + encode_record(second);
}

} // namespace

CAF_TEST(crc32c matches the standard check value) {
  // The CRC-32C check value of "123456789" (RFC 3720).
  CAF_CHECK_EQUAL(crc32c("123456789"), 0xe3069283u);
  CAF_CHECK_EQUAL(crc32c(""), 0u);
}

CAF_TEST(records round trip through a scan) {
  auto bytes = sample_log();
  auto scan = scan_log(bytes);
  CAF_CHECK_EQUAL(scan.corruption, "");
  CAF_CHECK_EQUAL(scan.valid_size, bytes.size());
  CAF_REQUIRE_EQUAL(scan.records.size(), 3u);
  auto header = decode_header(scan.records[0].payload);
  CAF_REQUIRE(header);
  CAF_CHECK_EQUAL(header->name, "/v1/stream/a");
  CAF_CHECK_EQUAL(header->content_type, "application/json");
  CAF_REQUIRE(header->ttl_seconds);
  CAF_CHECK_EQUAL(*header->ttl_seconds, 60u);
  CAF_CHECK_EQUAL(header->created_ms, 1234);
  auto first = decode_append(scan.records[1].payload);
  CAF_REQUIRE(first);
  CAF_REQUIRE_EQUAL(first->messages.size(), 2u);
  CAF_CHECK_EQUAL(first->messages[0], "{\"a\":1}");
  CAF_CHECK_EQUAL(first->messages[1], "[2]");
  CAF_REQUIRE(first->producer);
  CAF_CHECK_EQUAL(first->producer->id, "p1");
  CAF_CHECK_EQUAL(first->producer->epoch, 3u);
  CAF_CHECK_EQUAL(first->producer->seq, 7u);
  CAF_CHECK_EQUAL(first->stream_seq, "0001");
  CAF_CHECK(!first->closes);
  auto second = decode_append(scan.records[2].payload);
  CAF_REQUIRE(second);
  CAF_CHECK(second->closes);
  CAF_CHECK(!second->producer);
  // Message views point into the scanned bytes at their file positions.
  auto pos = scan.records[1].payload_position
             + static_cast<uint64_t>(first->messages[0].data()
                                     - scan.records[1].payload.data());
  CAF_CHECK_EQUAL(bytes.substr(pos, 7), "{\"a\":1}");
}

CAF_TEST(a log cut anywhere inside its last record is a torn tail) {
  auto bytes = sample_log();
  auto full = scan_log(bytes);
  auto last_start = full.records.back().position;
  for (auto cut = last_start; cut < bytes.size(); ++cut) {
    auto scan = scan_log(std::string_view{bytes}.substr(0, cut));
    CAF_CHECK_EQUAL(scan.corruption, "");
    CAF_CHECK_EQUAL(scan.valid_size, last_start);
    CAF_CHECK_EQUAL(scan.records.size(), 2u);
  }
}

CAF_TEST(zeros after the last record are padding) {
  auto bytes = sample_log();
  auto size = bytes.size();
  bytes += std::string(100, '\0');
  auto scan = scan_log(bytes);
  CAF_CHECK_EQUAL(scan.corruption, "");
  CAF_CHECK_EQUAL(scan.records.size(), 3u);
  CAF_CHECK_EQUAL(scan.valid_size, size);
  CAF_CHECK_EQUAL(scan.padding, 100u);
  // Fewer zeros than a record header: padding too.
  bytes.resize(size + 5);
  scan = scan_log(bytes);
  CAF_CHECK_EQUAL(scan.valid_size, size);
  CAF_CHECK_EQUAL(scan.padding, 5u);
  // Without any: none.
  CAF_CHECK_EQUAL(scan_log(sample_log()).padding, 0u);
}

CAF_TEST(garbage after the last record is a torn tail) {
  auto bytes = sample_log();
  auto size = bytes.size();
  bytes += std::string("\x05\x00\x00\x00garbage", 11); // NULs included
  auto scan = scan_log(bytes);
  CAF_CHECK_EQUAL(scan.corruption, "");
  CAF_CHECK_EQUAL(scan.valid_size, size);
  CAF_CHECK_EQUAL(scan.padding, 0u);
  // A torn record inside padding: zeros before and after it.
  bytes.resize(size);
  bytes += std::string(10, '\0') + "\x05garbage" + std::string(200, '\0');
  scan = scan_log(bytes);
  CAF_CHECK_EQUAL(scan.corruption, "");
  CAF_CHECK_EQUAL(scan.valid_size, size);
  CAF_CHECK_EQUAL(scan.padding, 0u);
  // A record cut short and the zeros after it.
  auto whole = sample_log();
  auto last = scan_log(whole).records.back().position;
  auto torn = whole.substr(0, last + 15) + std::string(300, '\0');
  scan = scan_log(torn);
  CAF_CHECK_EQUAL(scan.corruption, "");
  CAF_CHECK_EQUAL(scan.valid_size, last);
  CAF_CHECK_EQUAL(scan.records.size(), 2u);
  CAF_CHECK_EQUAL(scan.padding, 0u);
}

CAF_TEST(a damaged record followed by intact ones is corruption) {
  auto bytes = sample_log();
  auto full = scan_log(bytes);
  // Flip one byte in the payload of the middle record.
  bytes[full.records[1].payload_position + 2] ^= 0x40;
  auto scan = scan_log(bytes);
  CAF_CHECK_NOT_EQUAL(scan.corruption, "");
  // And one in its header.
  bytes = sample_log();
  bytes[full.records[1].position] ^= 0x01;
  scan = scan_log(bytes);
  CAF_CHECK_NOT_EQUAL(scan.corruption, "");
}

CAF_TEST(a write a crash cut over padding is a torn tail) {
  // Durable records, then one unsynced write of three more over zeros:
  // its pages reach the disk in no set order, and one that did not reads
  // as the zeros it would have replaced.
  stream_header header;
  header.name = "/s";
  header.content_type = "application/json";
  append_record durable;
  durable.messages = {"1"};
  auto base = std::string{log_magic} + encode_record(header)
              + encode_record(durable);
  std::vector<std::string> batch;
  for (char c : {'a', 'b', 'c'}) {
    append_record r;
    r.messages = {"\"" + std::string(1500, c) + "\""};
    batch.push_back(encode_record(r));
  }
  auto whole = base + batch[0] + batch[1] + batch[2] + std::string(4096, '\0');
  auto full = scan_log(whole);
  CAF_REQUIRE_EQUAL(full.records.size(), 5u);
  CAF_CHECK_EQUAL(full.corruption, "");
  auto first = base.size(); // where the write starts
  auto zero = [](std::string bytes, uint64_t from, uint64_t to) {
    for (auto i = from; i < to; ++i)
      bytes[i] = '\0';
    return bytes;
  };
  // An aligned sector inside the first new record never arrived; the
  // later ones did.
  auto s = (first / 512 + 1) * 512;
  auto scan = scan_log(zero(whole, s, s + 512));
  CAF_CHECK_EQUAL(scan.corruption, "");
  CAF_CHECK_EQUAL(scan.valid_size, first);
  CAF_CHECK_EQUAL(scan.records.size(), 2u);
  // The page the write started in never arrived: zeros from the first new
  // record's start to a sector boundary (it need not hold a whole sector).
  scan = scan_log(zero(whole, first, s));
  CAF_CHECK_EQUAL(scan.corruption, "");
  CAF_CHECK_EQUAL(scan.valid_size, first);
  CAF_CHECK_EQUAL(scan.records.size(), 2u);
  // The first two new records missing, the third whole.
  scan = scan_log(
    zero(whole, first, first + batch[0].size() + batch[1].size()));
  CAF_CHECK_EQUAL(scan.corruption, "");
  CAF_CHECK_EQUAL(scan.valid_size, first);
  // A flipped byte with zeros after the last record is still corruption.
  auto flipped = whole;
  flipped[first + 100] ^= 0x01;
  CAF_CHECK_NOT_EQUAL(scan_log(flipped).corruption, "");
  // As is a run of zeros that is no whole sector and does not start at the
  // damaged record.
  CAF_CHECK_NOT_EQUAL(scan_log(zero(whole, first + 20, first + 400)).corruption,
                      "");
}

CAF_TEST(a file that is not a stream log is refused) {
  CAF_CHECK_NOT_EQUAL(scan_log("hello world, not a log").corruption, "");
  // A file cut inside its magic held nothing acknowledged.
  auto scan = scan_log(log_magic.substr(0, 3));
  CAF_CHECK_EQUAL(scan.corruption, "");
  CAF_CHECK(scan.records.empty());
}

CAF_TEST(malformed payloads decode to errors and never crash) {
  CAF_CHECK(!decode_header(""));
  CAF_CHECK(!decode_header("\xff\xff\xff\xff"));
  CAF_CHECK(!decode_append(""));
  CAF_CHECK(
    !decode_append(std::string("\x00\x00\x00\x00\x00\xff\xff\xff\xff", 9)));
  // Every prefix of a valid payload is malformed.
  append_record rec;
  rec.messages = {"abc", "de"};
  rec.producer = producer_stamp{"p", 1, 2};
  auto framed = encode_record(rec);
  auto payload = std::string_view{framed}.substr(record_header_size);
  for (size_t n = 0; n < payload.size(); ++n)
    CAF_CHECK(!decode_append(payload.substr(0, n)));
  CAF_CHECK(decode_append(payload));
}
