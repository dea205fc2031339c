#define CAF_SUITE stream_rules
#include <caf/test/unit_test.hpp>

#include "storage/stream_rules.hpp"

// The Durable Streams rules for an append, as the store and the actor
// tests' fake sink both apply them.

using namespace ebridge;

namespace {

using action = admission::action;

struct fixture {
  admission_state stream;
  std::optional<producer_stamp> stamp;
  std::string seq;

  admission admit(bool has_messages = true, bool closes = false,
                  std::string_view content_type = {}) {
    return admit_append(stream, append_claims{stamp, seq, content_type,
                                              has_messages, closes});
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(stream_rules_tests, fixture)

CAF_TEST(an append without producer or Stream-Seq is written) {
  auto v = admit();
  CAF_CHECK(v.what == action::write);
  CAF_CHECK(v.status == store_status::ok);
}

CAF_TEST(a new producer starts at seq 0 and a later seq is a gap) {
  stamp = producer_stamp{"p", 3, 0};
  CAF_CHECK(admit().what == action::write);
  stamp->seq = 2;
  auto v = admit();
  CAF_CHECK(v.what == action::refuse);
  CAF_CHECK(v.status == store_status::seq_gap);
  CAF_CHECK_EQUAL(v.expected_seq, 0u);
  CAF_CHECK_EQUAL(v.received_seq, 2u);
}

CAF_TEST(a known producer goes on in order and a retry is a duplicate) {
  stream.producer = producer_position{3, 5};
  stamp = producer_stamp{"p", 3, 6};
  CAF_CHECK(admit().what == action::write);
  for (uint64_t seq : {0u, 5u}) {
    stamp->seq = seq;
    auto v = admit();
    CAF_CHECK(v.what == action::acknowledge);
    CAF_CHECK(v.status == store_status::duplicate);
    CAF_CHECK_EQUAL(v.producer_epoch, 3u);
    CAF_CHECK_EQUAL(v.producer_seq, 5u);
  }
  stamp->seq = 8;
  auto gap = admit();
  CAF_CHECK(gap.status == store_status::seq_gap);
  CAF_CHECK_EQUAL(gap.expected_seq, 6u);
  CAF_CHECK_EQUAL(gap.received_seq, 8u);
}

CAF_TEST(an older epoch is stale and a newer one must start at 0) {
  stream.producer = producer_position{3, 5};
  stamp = producer_stamp{"p", 2, 9};
  CAF_CHECK(admit().status == store_status::stale_epoch);
  stamp = producer_stamp{"p", 4, 1};
  CAF_CHECK(admit().status == store_status::bad_epoch_seq);
  stamp->seq = 0;
  CAF_CHECK(admit().what == action::write);
}

CAF_TEST(a duplicate is answered even on a closed stream) {
  stream.closed = true;
  stream.producer = producer_position{1, 1};
  stamp = producer_stamp{"p", 1, 1};
  CAF_CHECK(admit().status == store_status::duplicate);
  stamp->seq = 2;
  CAF_CHECK(admit().status == store_status::closed);
}

CAF_TEST(closing a closed stream again is acknowledged and writing refused) {
  stream.closed = true;
  auto again = admit(false, true);
  CAF_CHECK(again.what == action::acknowledge);
  CAF_CHECK(again.status == store_status::ok);
  CAF_CHECK(admit(true, true).status == store_status::closed);
  CAF_CHECK(admit(true, false).status == store_status::closed);
}

CAF_TEST(the content type must match the stream s media type) {
  stream.content_type = "application/json";
  CAF_CHECK(admit(true, false, "Application/JSON; charset=utf-8").what
            == action::write);
  CAF_CHECK(admit(true, false, "text/plain").status
            == store_status::content_type_mismatch);
  // A close without data carries no content to judge.
  CAF_CHECK(admit(false, true, "text/plain").what == action::write);
}

CAF_TEST(Stream-Seq must grow byte-wise) {
  stream.stream_seq = "0002";
  seq = "0002";
  CAF_CHECK(admit().status == store_status::stream_seq_conflict);
  seq = "00010";
  CAF_CHECK(admit().status == store_status::stream_seq_conflict);
  seq = "0003";
  CAF_CHECK(admit().what == action::write);
}

CAF_TEST_FIXTURE_SCOPE_END()
