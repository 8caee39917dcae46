#include "where.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace {

void say_where() {
  const auto* info = testing::UnitTest::GetInstance()->current_test_info();
  std::printf("%s.%s: %s\n", info->test_suite_name(), info->name(), where_am_i().c_str());
}

TEST(Cases, First) { say_where(); }

TEST(Cases, Second) { say_where(); }

// Run in the source directory (gtest_discover_tests WORKING_DIRECTORY).
TEST(Files, ReadsTheDataFileRelativeToItsWorkingDirectory) {
  say_where();
  std::ifstream in("data/words.txt");
  ASSERT_TRUE(in) << "Error opening test file data/words.txt";
  std::string first;
  in >> first;
  EXPECT_EQ(first, "alpha");
}

// Each case gets its own VM: whichever of these runs second would see the other's
// write if they shared a machine. On the host they leave /etc alone.
void write_marker_alone() {
  say_where();
  if (where_am_i() != "in a microVM") GTEST_SKIP() << "writes /etc only in a microVM";
  EXPECT_FALSE(std::ifstream("/etc/plain-project-marker").good()) << "another case's write is visible";
  std::ofstream("/etc/plain-project-marker") << "written by one case\n";
}

TEST(Isolation, FirstWriter) { write_marker_alone(); }

TEST(Isolation, SecondWriter) { write_marker_alone(); }

}  // namespace
