// GoogleTest cases whose names kiln_discover_tests lists (tests/cmake/check_shards.cmake).
#include <gtest/gtest.h>

TEST(Zeta, Last) {}
TEST(Alpha, First) {}
TEST(Alpha, Second) {}
TEST(Alpha, DISABLED_Off) {}

class Sizes : public testing::TestWithParam<int> {};
TEST_P(Sizes, Fit) { EXPECT_GT(GetParam(), 0); }
INSTANTIATE_TEST_SUITE_P(Small, Sizes, testing::Values(1, 2, 3));
