// fs::prepare_cache_root: with KILN_CACHE_DIR, XDG_CACHE_HOME and HOME unset, kiln's
// cache falls back to <temp dir>/kiln-cache-<uid>, in a directory every user can write
// to. It must be kiln's own: created 0700, refused when another user got there first.
// The temp dir is a test directory (TMPDIR), not the real /tmp.
#include "common/fs.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <optional>
#include <string>

using namespace kiln;
namespace stdfs = std::filesystem;

namespace {

class FallbackCache : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = fs::TempDir::create(stdfs::temp_directory_path(), "kiln-cache-root-test-");
    ASSERT_TRUE(d.ok()) << d.error().message;
    dir_.emplace(std::move(*d));
    for (const char* name : {"KILN_CACHE_DIR", "XDG_CACHE_HOME", "HOME", "TMPDIR"})
      if (const char* v = std::getenv(name)) saved_[name] = v;
    ::unsetenv("KILN_CACHE_DIR");
    ::unsetenv("XDG_CACHE_HOME");
    ::unsetenv("HOME");
    ::setenv("TMPDIR", dir_->path().c_str(), 1);
  }
  void TearDown() override {
    for (const char* name : {"KILN_CACHE_DIR", "XDG_CACHE_HOME", "HOME", "TMPDIR"}) {
      auto it = saved_.find(name);
      if (it == saved_.end()) ::unsetenv(name);
      else ::setenv(name, it->second.c_str(), 1);
    }
  }
  // Where the fallback must be: computed here, not by the code under test.
  stdfs::path expected() const { return dir_->path() / ("kiln-cache-" + std::to_string(::getuid())); }
  static mode_t mode_of(const stdfs::path& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0 ? st.st_mode : 0;
  }
  // A refusal names the directory and says what to do.
  void expect_refused(const std::string& why) const {
    auto r = fs::prepare_cache_root();
    ASSERT_FALSE(r) << "accepted " << r->string();
    EXPECT_NE(r.error().message.find(expected().string()), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find(why), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("set KILN_CACHE_DIR"), std::string::npos) << r.error().message;
  }
  std::optional<fs::TempDir> dir_;
  std::map<std::string, std::string> saved_;
};

}  // namespace

TEST_F(FallbackCache, IsCreatedPrivate) {
  auto r = fs::prepare_cache_root();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, expected());
  EXPECT_EQ(fs::cache_root(), expected());
  EXPECT_TRUE(S_ISDIR(mode_of(expected())));
  EXPECT_EQ(mode_of(expected()) & 07777, 0700u);
  EXPECT_TRUE(fs::prepare_cache_root()) << "a second run refuses the directory the first one made";
}

TEST_F(FallbackCache, AnOwnDirectoryReadableByOthersIsMadePrivate) {
  ASSERT_EQ(::mkdir(expected().c_str(), 0700), 0);
  ASSERT_EQ(::chmod(expected().c_str(), 0755), 0);
  ASSERT_TRUE(fs::prepare_cache_root());
  EXPECT_EQ(mode_of(expected()) & 07777, 0700u);
}

TEST_F(FallbackCache, ASymlinkIsRefusedAndNotFollowed) {
  ASSERT_EQ(::mkdir((dir_->path() / "planted").c_str(), 0700), 0);
  stdfs::create_symlink(dir_->path() / "planted", expected());
  expect_refused("is a symbolic link");
  EXPECT_EQ(mode_of(dir_->path() / "planted") & 07777, 0700u);
  EXPECT_TRUE(stdfs::is_empty(dir_->path() / "planted"));
}

TEST_F(FallbackCache, ADanglingSymlinkIsRefused) {
  stdfs::create_symlink(dir_->path() / "nowhere", expected());
  expect_refused("is a symbolic link");
  EXPECT_FALSE(stdfs::exists(dir_->path() / "nowhere"));
}

TEST_F(FallbackCache, ADirectoryOfAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: only root can chown a directory to another user (uid 65534)";
  ASSERT_EQ(::mkdir(expected().c_str(), 0700), 0);
  ASSERT_EQ(::chown(expected().c_str(), 65534, 65534), 0);
  expect_refused("belongs to uid 65534");
}

TEST_F(FallbackCache, AGroupOrWorldWritableDirectoryIsRefused) {
  for (mode_t mode : {0770, 0707, 01777}) {
    SCOPED_TRACE(mode);
    ASSERT_EQ(::mkdir(expected().c_str(), 0700), 0);
    ASSERT_EQ(::chmod(expected().c_str(), mode), 0);
    expect_refused("is writable by other users");
    EXPECT_EQ(mode_of(expected()) & 07777, mode) << "a refused directory was changed";
    ASSERT_EQ(::rmdir(expected().c_str()), 0);
  }
}

TEST_F(FallbackCache, AFileIsRefused) {
  ASSERT_TRUE(fs::write_file_atomic(expected(), "not a directory"));
  expect_refused("is not a directory");
}

TEST_F(FallbackCache, ARootTheUserChoseIsUsedAsItIs) {
  ::setenv("KILN_CACHE_DIR", (dir_->path() / "mine").c_str(), 1);
  auto r = fs::prepare_cache_root();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, dir_->path() / "mine");
  EXPECT_FALSE(stdfs::exists(expected()));
}
