#define CAF_SUITE confirm_record
#include <caf/test/unit_test.hpp>

#include <cstdlib>
#include <fstream>
#include <string>

#include <unistd.h>

#include "core/error.hpp"
#include "storage/replication.hpp"

// The file a node writes before it confirms a slot position: read back
// exactly, and anything else in its place is no record (never a crash).

using namespace ebridge;

namespace {

struct fixture {
  fixture() {
    char tmpl[] = "/tmp/ebridge-confirm-test.XXXXXX";
    dir = ::mkdtemp(tmpl);
  }

  ~fixture() {
    std::string cmd = "rm -rf '" + dir + "'";
    if (std::system(cmd.c_str()) != 0)
      CAF_MESSAGE("could not remove " << dir);
  }

  void put(const std::string& bytes) {
    std::ofstream out{dir + "/slot-s.confirmed", std::ios::binary};
    out << bytes;
  }

  std::string dir;
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(confirm_record_tests, fixture)

CAF_TEST(a record reads back what was written last) {
  confirm_record rec{dir, "s"};
  CAF_CHECK(!rec.read());
  CAF_REQUIRE(rec.write(3, 0x1234));
  auto got = rec.read();
  CAF_REQUIRE(got);
  CAF_CHECK_EQUAL(got->first, 3);
  CAF_CHECK_EQUAL(got->second, 0x1234u);
  // A shorter line over a longer one leaves nothing of the old behind.
  CAF_REQUIRE(rec.write(12345678901, 0xABCDEF0123456789ull));
  CAF_REQUIRE(rec.write(4, 1));
  got = confirm_record{dir, "s"}.read();
  CAF_REQUIRE(got);
  CAF_CHECK_EQUAL(got->first, 4);
  CAF_CHECK_EQUAL(got->second, 1u);
}

CAF_TEST(anything else in its place is no record) {
  confirm_record rec{dir, "s"};
  for (const std::string& bytes :
       {std::string{}, std::string("garbage"), std::string("ebridge-slot"),
        std::string("ebridge-slot 0 0/10"), std::string("ebridge-slot -2 0/10"),
        std::string("ebridge-slot 2 zz/10"), std::string(64, '\0'),
        std::string("ebridge-slot 2 ") + std::string(100, '9')}) {
    put(bytes);
    CAF_CHECK(!rec.read());
  }
  put("ebridge-slot 2 0/10");
  CAF_CHECK(rec.read());
}

CAF_TEST(a record it cannot write is reported not thrown) {
  confirm_record rec{dir + "/missing/dir", "s"};
  auto err = rec.open();
  CAF_CHECK(err);
  CAF_CHECK_NOT_EQUAL(error_message(err).find("cannot open the confirm record"),
                      std::string::npos);
  CAF_CHECK(!rec.write(1, 1));
  CAF_CHECK(!rec.read());
}

CAF_TEST_FIXTURE_SCOPE_END()
