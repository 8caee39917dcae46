#include "vmm/qemu/qemu_binary.h"

#include "common/fs.h"
#include "env_guard.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

namespace kiln::vmm::qemu {
namespace {

TEST(QemuVersion, ParsesQemuBanner) {
  EXPECT_EQ(parse_qemu_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright"),
            "7.2.22");
  EXPECT_EQ(parse_qemu_version("QEMU emulator version 9.0.0\n"), "9.0.0");
  EXPECT_EQ(parse_qemu_version("no number here"), std::nullopt);
  EXPECT_EQ(parse_qemu_version("version .1"), std::nullopt);
  EXPECT_EQ(parse_qemu_version(""), std::nullopt);
}

class FakeQemu : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = fs::TempDir::create("/tmp", "kiln-qemu-bin-test-");
    ASSERT_TRUE(dir);
    dir_.emplace(std::move(*dir));
    cache_.emplace("KILN_CACHE_DIR", (dir_->path() / "cache").string());
    script_ = dir_->path() / "qemu-system-x86_64";
    counter_ = dir_->path() / "runs";
    write_script("9.1.0");
  }
  void write_script(const std::string& version) {
    ASSERT_TRUE(fs::write_file_atomic(
        script_, "#!/bin/sh\necho run >> '" + counter_.string() + "'\necho 'QEMU emulator version " + version +
                     " (fake)'\n"));
    ::chmod(script_.c_str(), 0755);
  }
  size_t runs() {
    auto text = fs::read_file(counter_, 1 << 16);
    return text ? static_cast<size_t>(std::count(text->begin(), text->end(), '\n')) : 0;
  }
  std::optional<fs::TempDir> dir_;
  std::optional<testing::EnvGuard> cache_;
  std::filesystem::path script_, counter_;
};

TEST_F(FakeQemu, KilnQemuOverridesPath) {
  testing::EnvGuard env("KILN_QEMU", script_.string());
  auto found = find_qemu_binary();
  ASSERT_TRUE(found) << found.error().message;
  EXPECT_EQ(*found, script_);
}

TEST_F(FakeQemu, KilnQemuMustBeExecutable) {
  testing::EnvGuard env("KILN_QEMU", (dir_->path() / "missing").string());
  auto found = find_qemu_binary();
  ASSERT_FALSE(found);
  EXPECT_NE(found.error().message.find("KILN_QEMU"), std::string::npos);
}

TEST_F(FakeQemu, MissingFromPathSaysHowToInstall) {
  testing::EnvGuard path("PATH", dir_->path().string() + "/nothing-here");
  testing::EnvGuard unset("KILN_QEMU", "");
  auto found = find_qemu_binary();
  ASSERT_FALSE(found);
  EXPECT_EQ(found.error().message.rfind("qemu-system-x86_64 not found: install qemu-system-x86", 0), 0u)
      << found.error().message;
}

TEST_F(FakeQemu, VersionIsCachedUntilTheBinaryChanges) {
  auto v1 = qemu_version(script_);
  ASSERT_TRUE(v1) << v1.error().message;
  EXPECT_EQ(*v1, "9.1.0");
  auto v2 = qemu_version(script_);
  ASSERT_TRUE(v2);
  EXPECT_EQ(runs(), 1u) << "the second lookup must come from the cache";

  write_script("10.0.1");  // an "upgrade": size and mtime change
  auto v3 = qemu_version(script_);
  ASSERT_TRUE(v3);
  EXPECT_EQ(*v3, "10.0.1");
  EXPECT_EQ(runs(), 2u);
}

TEST_F(FakeQemu, GarbageCacheIsIgnored) {
  ASSERT_TRUE(fs::make_dirs(dir_->path() / "cache" / "host"));
  ASSERT_TRUE(fs::write_file_atomic(dir_->path() / "cache" / "host" / "qemu-version.json", "{not json"));
  auto v = qemu_version(script_);
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(*v, "9.1.0");
}

TEST_F(FakeQemu, NotQemuIsAnError) {
  ASSERT_TRUE(fs::write_file_atomic(script_, "#!/bin/sh\necho hello\n"));
  ::chmod(script_.c_str(), 0755);
  auto v = qemu_version(script_);
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("is it qemu"), std::string::npos) << v.error().message;
}

}  // namespace
}  // namespace kiln::vmm::qemu
