#include "runner/tree_shares.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace kiln::runner {
namespace {

namespace stdfs = std::filesystem;

class ShareRoots : public testing::Test {
 protected:
  void SetUp() override {
    base_ = stdfs::temp_directory_path() / ("kiln-share-roots-" + std::to_string(::getpid()));
    stdfs::create_directories(base_ / "src/build");
    stdfs::create_directories(base_ / "other");
    std::ofstream(base_ / "file.txt") << "x";
  }
  void TearDown() override { stdfs::remove_all(base_); }
  std::string p(const char* rel) const { return (base_ / rel).string(); }
  stdfs::path base_;
};

TEST_F(ShareRoots, EachDirectoryIsKeptInOrder) {
  auto roots = share_roots({p("other"), p("src")});
  ASSERT_TRUE(roots) << roots.error().message;
  EXPECT_EQ(*roots, (std::vector<std::string>{p("other"), p("src")}));
}

TEST_F(ShareRoots, ANestedOrRepeatedDirectoryIsCoveredByTheOuterOne) {
  auto roots = share_roots({p("src/build"), p("src"), p("src/"), p("other/../src")});
  ASSERT_TRUE(roots) << roots.error().message;
  EXPECT_EQ(*roots, (std::vector<std::string>{p("src")}));
}

TEST_F(ShareRoots, AMissingDirectoryOrAFileIsAnError) {
  auto missing = share_roots({p("nope")});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find(p("nope")), std::string::npos);
  EXPECT_FALSE(share_roots({p("file.txt")}));
  EXPECT_FALSE(share_roots({"/"}));
}

TEST_F(ShareRoots, NoneGivenSharesNothing) {
  auto roots = share_roots({});
  ASSERT_TRUE(roots);
  EXPECT_TRUE(roots->empty());
}

}  // namespace
}  // namespace kiln::runner
