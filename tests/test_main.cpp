// The CAF test runner's main(), compiled once for every test binary.
#define CAF_TEST_UNIT_TEST_IMPL
#include <caf/test/unit_test_impl.hpp>
