// Payload::content_digest keys payload layers: it must change with anything the guest
// would see differently, and only then.
#include "runner/payload.h"

#include "common/fs.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

using namespace kiln::runner;
namespace stdfs = std::filesystem;

namespace {

class PayloadDigest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = kiln::fs::TempDir::create(stdfs::temp_directory_path(), "kiln-digest-test-");
    ASSERT_TRUE(dir.ok());
    dir_.emplace(std::move(*dir));
    root_ = dir_->path();
    stdfs::create_directories(root_ / "tree/sub");
    write("tree/a.txt", "alpha\n");
    write("tree/sub/b.txt", "beta\n");
    stdfs::create_symlink("a.txt", root_ / "tree/link");
  }
  void write(const std::string& rel, const std::string& text) {
    ASSERT_TRUE(kiln::fs::write_file_atomic(root_ / rel, text).ok());
  }
  std::string digest() {
    Payload p;
    auto added = p.add_path(root_ / "tree");
    EXPECT_TRUE(added.ok()) << added.error().message;
    auto d = p.content_digest();
    EXPECT_TRUE(d.ok()) << d.error().message;
    return d.ok() ? *d : "";
  }
  std::optional<kiln::fs::TempDir> dir_;
  stdfs::path root_;
};

TEST_F(PayloadDigest, IsStableForTheSameFiles) {
  EXPECT_EQ(digest(), digest());
  EXPECT_EQ(digest().size(), 32u);
}

TEST_F(PayloadDigest, ChangesWithFileContents) {
  const auto before = digest();
  write("tree/sub/b.txt", "beta, rebuilt\n");
  EXPECT_NE(digest(), before);
  write("tree/sub/b.txt", "beta\n");
  EXPECT_EQ(digest(), before) << "same contents again: same digest";
}

TEST_F(PayloadDigest, ChangesWithModeSymlinkTargetAndNewEntries) {
  const auto base = digest();
  ::chmod((root_ / "tree/a.txt").c_str(), 0755);
  const auto mode_changed = digest();
  EXPECT_NE(mode_changed, base);
  stdfs::remove(root_ / "tree/link");
  stdfs::create_symlink("sub/b.txt", root_ / "tree/link");
  const auto link_changed = digest();
  EXPECT_NE(link_changed, mode_changed);
  write("tree/sub/c.txt", "");
  EXPECT_NE(digest(), link_changed) << "an empty new file is still a new entry";
}

TEST_F(PayloadDigest, UnreadableFileIsAnError) {
  Payload p;
  ASSERT_TRUE(p.add_path(root_ / "tree").ok());
  stdfs::remove(root_ / "tree/sub/b.txt");  // vanished between listing and digesting
  auto d = p.content_digest();
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("b.txt"), std::string::npos) << d.error().message;
}

TEST(PayloadDigestEmpty, EmptyPayloadHasADigest) {
  Payload p;
  EXPECT_TRUE(p.empty());
  auto d = p.content_digest();
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->empty());
}

}  // namespace
