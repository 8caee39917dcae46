// What the guest's coverage tree can make kiln write on the host: only .gcda files
// beside a .gcno of the host build. (The merge itself runs on real counters in
// tests/vm/coverage_test.cpp.)
#include "runner/coverage.h"

#include "common/fs.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

namespace kiln::runner {
namespace {

namespace stdfs = std::filesystem;

TEST(Coverage, CountersGoOnlyBesideAGcnoOfTheHostBuild) {
  auto tmp = fs::TempDir::create(stdfs::temp_directory_path(), "kiln-coverage-test-");
  ASSERT_TRUE(tmp.ok());
  const stdfs::path host = tmp->path() / "host";
  const stdfs::path guest = tmp->path() / "guest";
  stdfs::create_directories(host);
  std::ofstream(host / "real.gcno") << "notes";
  ASSERT_EQ(::symlink((host / "real.gcno").c_str(), (host / "linked.gcno").c_str()), 0);
  // The guest's tree holds host paths without their leading '/'.
  const stdfs::path mirrored = guest / host.relative_path();
  stdfs::create_directories(mirrored);
  std::ofstream(mirrored / "stray.gcda") << "counters";   // no .gcno on the host
  std::ofstream(mirrored / "linked.gcda") << "counters";  // its .gcno is a symlink
  std::ofstream(mirrored / "real.gcda") << "counters";    // host has none yet: taken as is
  std::ofstream(mirrored / "notes.txt") << "not a counter";

  auto report = merge_coverage(guest);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->merged, 1u);
  EXPECT_EQ(report->skipped, 2u);
  EXPECT_FALSE(stdfs::exists(host / "stray.gcda"));
  EXPECT_FALSE(stdfs::exists(host / "linked.gcda"));
  EXPECT_FALSE(stdfs::exists(host / "notes.txt"));
  std::ifstream in(host / "real.gcda");
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()), "counters");
}

}  // namespace
}  // namespace kiln::runner
