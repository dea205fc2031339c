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
  auto msgs = first->messages.to_vector();
  CAF_CHECK_EQUAL(msgs[0], "{\"a\":1}");
  CAF_CHECK_EQUAL(msgs[1], "[2]");
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
             + static_cast<uint64_t>((*first->messages.begin()).data()
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
  CAF_CHECK_EQUAL(scan.torn_end, bytes.size());
  // A record cut short and the zeros after it.
  auto whole = sample_log();
  auto last = scan_log(whole).records.back().position;
  auto torn = whole.substr(0, last + 15) + std::string(300, '\0');
  scan = scan_log(torn);
  CAF_CHECK_EQUAL(scan.corruption, "");
  CAF_CHECK_EQUAL(scan.valid_size, last);
  CAF_CHECK_EQUAL(scan.records.size(), 2u);
  CAF_CHECK_EQUAL(scan.padding, 0u);
  // The torn bytes up to the last that is not zero, to keep aside: the
  // record's header (its payload starts with a zero stamp).
  CAF_CHECK_EQUAL(scan.torn_end, last + record_header_size);
}

CAF_TEST(bytes no crash explains after the last record are corruption) {
  // Zeros, then garbage inside the sector the zeros start: a write that did
  // not arrive leaves its sector as it was, it does not garble it.
  auto bytes = sample_log();
  auto size = bytes.size();
  bytes += std::string(10, '\0') + "\x05garbage" + std::string(200, '\0');
  auto scan = scan_log(bytes);
  CAF_CHECK_NOT_EQUAL(scan.corruption, "");
  CAF_CHECK_EQUAL(scan.valid_size, size);
  CAF_CHECK_EQUAL(scan.torn_end, 0u);
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

namespace {

/// A log as the store writes it: each append stamped with the length that
/// was durable when it was written (here: every record before it).
struct stamped_log {
  std::string bytes;

  stamped_log() {
    stream_header header;
    header.name = "/s";
    header.content_type = "application/octet-stream";
    bytes = std::string{log_magic} + encode_record(header);
  }

  /// Appends a record of `messages`; returns where it starts.
  uint64_t add(std::vector<std::string> messages, bool stamp = true) {
    append_record r;
    r.messages = message_batch{messages};
    r.durable_before = stamp ? bytes.size() : 0;
    auto at = bytes.size();
    bytes += encode_record(r);
    return at;
  }
};

} // namespace

CAF_TEST(a flipped bit in an acknowledged record of zeros is corruption) {
  // The record's own data holds whole sectors of zeros; the records after
  // it were written once it was durable, and say so.
  stamped_log log;
  auto zeros = log.add({std::string(3000, '\0')});
  log.add({"after one"});
  log.add({"after two"});
  auto size = log.bytes.size();
  log.bytes += std::string(8192, '\0'); // the zeros written ahead
  auto bytes = log.bytes;
  bytes[zeros + record_header_size + 1000] ^= 0x10;
  auto scan = scan_log(bytes);
  CAF_CHECK_NOT_EQUAL(scan.corruption, "");
  CAF_CHECK_NOT_EQUAL(scan.corruption.find("durable"), std::string::npos);
  CAF_CHECK_EQUAL(scan.torn_end, 0u);
  // Intact, the same log reads whole.
  auto whole = scan_log(log.bytes);
  CAF_CHECK_EQUAL(whole.corruption, "");
  CAF_CHECK_EQUAL(whole.valid_size, size);
  CAF_CHECK_EQUAL(whole.records.size(), 4u);
}

CAF_TEST(a zero sector below the stamp of a later record is corruption) {
  // Even zeros where a write would have put data: the write was durable
  // before the record after it was written.
  stamped_log log;
  auto first = log.add({std::string(2000, 'a')});
  log.add({"b"});
  auto bytes = log.bytes;
  auto s = (first / 512 + 1) * 512;
  std::fill(bytes.begin() + static_cast<long>(s),
            bytes.begin() + static_cast<long>(s + 512), '\0');
  CAF_CHECK_NOT_EQUAL(scan_log(bytes).corruption, "");
  // Without the stamp the same bytes are a write a crash cut.
  stamped_log unstamped;
  auto at = unstamped.add({std::string(2000, 'a')}, false);
  unstamped.add({"b"}, false);
  bytes = unstamped.bytes;
  std::fill(bytes.begin() + static_cast<long>(s),
            bytes.begin() + static_cast<long>(s + 512), '\0');
  auto scan = scan_log(bytes);
  CAF_CHECK_EQUAL(scan.corruption, "");
  CAF_CHECK_EQUAL(scan.valid_size, at);
}

CAF_TEST(a whole last record with a bad checksum is corruption) {
  // Nothing follows it but the zeros written ahead; its bytes were all
  // written (none reads as a sector that never arrived): not torn.
  stamped_log log;
  log.add({"first"});
  auto last = log.add({std::string(1500, 'x')});
  log.bytes += std::string(4096, '\0');
  auto bytes = log.bytes;
  bytes[last + record_header_size + 700] ^= 0x01;
  auto scan = scan_log(bytes);
  CAF_CHECK_NOT_EQUAL(scan.corruption, "");
  CAF_CHECK_NOT_EQUAL(scan.corruption.find("bad checksum"), std::string::npos);
  // A flipped bit in its header too.
  bytes = log.bytes;
  bytes[last + 2] ^= 0x04;
  CAF_CHECK_NOT_EQUAL(scan_log(bytes).corruption, "");
  // But a sector of it that never arrived is a torn write, kept aside.
  bytes = log.bytes;
  auto s = (last / 512 + 1) * 512;
  std::fill(bytes.begin() + static_cast<long>(s),
            bytes.begin() + static_cast<long>(s + 512), '\0');
  scan = scan_log(bytes);
  CAF_CHECK_EQUAL(scan.corruption, "");
  CAF_CHECK_EQUAL(scan.valid_size, last);
  CAF_CHECK_EQUAL(scan.torn_end,
                  last + record_header_size + 8 + 1 + 4 + 4 + 4 + 1500);
}

CAF_TEST(a stamp past its own record is no proof) {
  // A record that claims more was durable than lies before it is not
  // believed (it may be bytes a stream stored): the damage before it is
  // judged by its bytes.
  stamped_log log;
  auto first = log.add({std::string(2000, 'a')});
  append_record liar;
  liar.messages = {"b"};
  liar.durable_before = 1u << 30;
  log.bytes += encode_record(liar);
  auto bytes = log.bytes;
  auto s = (first / 512 + 1) * 512;
  std::fill(bytes.begin() + static_cast<long>(s),
            bytes.begin() + static_cast<long>(s + 512), '\0');
  auto scan = scan_log(bytes);
  CAF_CHECK_EQUAL(scan.corruption, "");
  CAF_CHECK_EQUAL(scan.valid_size, first);
}

CAF_TEST(records written before stamps existed still read) {
  // An append record of the first format (kind 2, no stamp), as that code
  // wrote it: messages [1] and "x", producer p epoch 1 seq 2, Stream-Seq s1.
  const std::string old_record{
    "\x2e\x00\x00\x00\xab\xd8\x0c\x52\x02\xf6\xd7\x84\x64\x02\x01\x00"
    "\x00\x00\x70\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00"
    "\x00\x00\x00\x02\x00\x00\x00\x73\x31\x02\x00\x00\x00\x03\x00\x00"
    "\x00\x5b\x31\x5d\x03\x00\x00\x00\x22\x78\x22",
    59};
  stamped_log log;
  log.bytes += old_record;
  auto scan = scan_log(log.bytes);
  CAF_CHECK_EQUAL(scan.corruption, "");
  CAF_REQUIRE_EQUAL(scan.records.size(), 2u);
  CAF_CHECK(scan.records[1].kind == record_kind::unstamped_append);
  auto view = decode_append(scan.records[1].payload, scan.records[1].kind);
  CAF_REQUIRE(view);
  CAF_REQUIRE_EQUAL(view->messages.size(), 2u);
  auto msgs = view->messages.to_vector();
  CAF_CHECK_EQUAL(msgs[0], "[1]");
  CAF_CHECK_EQUAL(msgs[1], "\"x\"");
  CAF_REQUIRE(view->producer);
  CAF_CHECK_EQUAL(view->producer->seq, 2u);
  CAF_CHECK_EQUAL(view->stream_seq, "s1");
  CAF_CHECK_EQUAL(view->durable_before, 0u);
  // A new record reads back its stamp.
  auto at = log.add({"y"});
  scan = scan_log(log.bytes);
  CAF_REQUIRE_EQUAL(scan.records.size(), 3u);
  CAF_CHECK_EQUAL(scan.records[2].durable_before, at);
  auto fresh = decode_append(scan.records[2].payload);
  CAF_REQUIRE(fresh);
  CAF_CHECK_EQUAL(fresh->durable_before, at);
}
