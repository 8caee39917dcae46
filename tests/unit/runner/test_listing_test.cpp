#include "runner/test_listing.h"

#include <gtest/gtest.h>

namespace kiln::runner {
namespace {

TEST(TestListing, GtestDiscoverTestsListingIsRecognised) {
  // What CMake's GoogleTestAddTests.cmake runs through the launcher at build time.
  EXPECT_TRUE(is_test_listing({"/build/parser_test", "--gtest_list_tests"}));
  EXPECT_TRUE(is_test_listing({"/build/parser_test", "--gtest_list_tests", "--gtest_filter=Parser.*"}));
  EXPECT_TRUE(is_test_listing({"./parser_test", "--gtest_filter=-Slow.*", "--gtest_list_tests"}));
}

TEST(TestListing, RunningACaseIsNotAListing) {
  EXPECT_FALSE(is_test_listing({"/build/parser_test", "--gtest_filter=Parser.Empty"}));
  EXPECT_FALSE(is_test_listing({"/build/parser_test"}));
  EXPECT_FALSE(is_test_listing({}));
}

TEST(TestListing, AnyNonGtestArgumentKeepsTheCommandInTheVm) {
  // The program may act on its own arguments: only a pure listing leaves the VM.
  EXPECT_FALSE(is_test_listing({"/build/parser_test", "--gtest_list_tests", "--write-db=/etc/x"}));
  EXPECT_FALSE(is_test_listing({"/build/parser_test", "input.txt", "--gtest_list_tests"}));
}

TEST(TestListing, AGuestCommandNameIsNeverAHostListing) {
  EXPECT_FALSE(is_test_listing({"parser_test", "--gtest_list_tests"}));
}

TEST(TestListing, AMissingExecutableIsNotFound) {
  auto r = exec_listing_on_host({"/nonexistent/kiln-listing-test", "--gtest_list_tests"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ErrorKind::not_found);
  EXPECT_NE(r.error().message.find("/nonexistent/kiln-listing-test"), std::string::npos);
}

TEST(TestListing, ANonExecutableFileIsNotExecutable) {
  auto r = exec_listing_on_host({KILN_SOURCE_DIR "/runner/test_listing.h", "--gtest_list_tests"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ErrorKind::not_executable);
}

}  // namespace
}  // namespace kiln::runner
