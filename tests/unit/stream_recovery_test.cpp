#define CAF_SUITE stream_recovery
#include <caf/test/unit_test.hpp>

#include "storage/stream_recovery.hpp"

// Reading a stream log back at start-up, from bytes alone.

using namespace ebridge;

namespace {

std::string header_record(const std::string& name) {
  stream_header h;
  h.name = name;
  h.content_type = "application/json";
  return encode_record(h);
}

std::string append(std::vector<std::string> messages,
                   std::optional<producer_stamp> producer = std::nullopt,
                   std::string seq = {}, bool closes = false) {
  append_record r;
  r.messages = message_batch{messages};
  r.producer = std::move(producer);
  r.stream_seq = std::move(seq);
  r.closes = closes;
  return encode_record(r);
}

} // namespace

CAF_TEST(a log reads back its messages producers Stream-Seq and close) {
  auto bytes = std::string{log_magic} + header_record("/s")
               + append({"1", "22"}, producer_stamp{"p", 2, 0}, "0001")
               + append({"333"}, producer_stamp{"p", 2, 1}, "0002", true);
  auto r = read_stream_log(bytes);
  CAF_REQUIRE(r.what == log_reading::kind::stream);
  auto& s = r.stream;
  CAF_CHECK_EQUAL(s.header.name, "/s");
  // An index entry per record: at its first message's length prefix.
  CAF_REQUIRE_EQUAL(s.chunks.size(), 2u);
  CAF_CHECK_EQUAL(s.tail, 6u);
  CAF_CHECK_EQUAL(s.chunks[0].offset, 0u);
  CAF_CHECK_EQUAL(bytes.substr(s.chunks[0].file_pos, 6),
                  std::string("\x01\x00\x00\x00"
                              "1"
                              "\x02",
                              6));
  CAF_CHECK_EQUAL(s.chunks[1].offset, 3u);
  CAF_CHECK_EQUAL(bytes.substr(s.chunks[1].file_pos, 7),
                  std::string("\x03\x00\x00\x00"
                              "333",
                              7));
  CAF_CHECK_EQUAL(s.chunks[1].end, bytes.size());
  CAF_CHECK_EQUAL(s.producers.at("p").epoch, 2u);
  CAF_CHECK_EQUAL(s.producers.at("p").seq, 1u);
  CAF_CHECK_EQUAL(s.stream_seq, "0002");
  CAF_CHECK(s.closed);
  CAF_CHECK_EQUAL(s.valid_size, bytes.size());
}

CAF_TEST(a big record gets an index entry per stride of its messages) {
  std::vector<std::string> many(10000, "abcdefghi"); // 13 bytes each framed
  auto bytes = std::string{log_magic} + header_record("/s") + append(many);
  auto r = read_stream_log(bytes);
  CAF_REQUIRE(r.what == log_reading::kind::stream);
  auto& index = r.stream.chunks;
  // 130,000 framed bytes, an entry per 16 KiB of them: 8 entries.
  CAF_CHECK_EQUAL(index.size(), (10000 * 13 + index_stride - 1) / index_stride);
  for (size_t i = 0; i < index.size(); ++i) {
    // Each entry is at a message of the record, at its offset.
    CAF_CHECK_EQUAL(index[i].offset % 9, 0u);
    CAF_CHECK_EQUAL(bytes.substr(index[i].file_pos, 13),
                    std::string("\x09\x00\x00\x00"
                                "abcdefghi",
                                13));
    CAF_CHECK_EQUAL(index[i].end, bytes.size());
  }
  CAF_CHECK_EQUAL(r.stream.tail, 90000u);
}

CAF_TEST(a torn last record is left out and zeros after it are padding) {
  auto whole = std::string{log_magic} + header_record("/s") + append({"1"});
  auto torn = append({"2"});
  auto r = read_stream_log(whole + torn.substr(0, torn.size() - 1));
  CAF_REQUIRE(r.what == log_reading::kind::stream);
  CAF_CHECK_EQUAL(r.stream.chunks.size(), 1u);
  CAF_CHECK_EQUAL(r.stream.valid_size, whole.size());
  auto padded = read_stream_log(whole + std::string(100, '\0'));
  CAF_REQUIRE(padded.what == log_reading::kind::stream);
  CAF_CHECK_EQUAL(padded.stream.padding, 100u);
}

CAF_TEST(a log without a whole header was never acknowledged) {
  auto header = header_record("/s");
  auto r = read_stream_log(std::string{log_magic}
                           + header.substr(0, header.size() / 2));
  CAF_CHECK(r.what == log_reading::kind::headerless);
}

CAF_TEST(a damaged record followed by whole ones is corruption named by its stream) {
  auto first = append({"1"});
  first[first.size() - 1] ^= 0x01; // a flipped bit in an acknowledged record
  auto bytes = std::string{log_magic} + header_record("/s") + first
               + append({"2"});
  auto r = read_stream_log(bytes);
  CAF_REQUIRE(r.what == log_reading::kind::corrupt);
  CAF_CHECK_EQUAL(r.name, "/s");
  CAF_CHECK(!r.why.empty());
}
