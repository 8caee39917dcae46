// Choosing the accelerator where /dev/kvm works (label kvm: the nested-KVM lab).
// The per-boot records are set up explicitly in a private KILN_CACHE_DIR.
#include "vmm/accel.h"

#include "common/fs.h"
#include "engine_choice_test_util.h"
#include "env_guard.h"

#include <gtest/gtest.h>


namespace kiln::vmm {
namespace {

class AccelKvmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = fs::TempDir::create("/tmp", "kiln-accel-kvm-test-");
    ASSERT_TRUE(dir);
    dir_.emplace(std::move(*dir));
    cache_.emplace("KILN_CACHE_DIR", dir_->path().string());
    boot_id_ = testing::this_boot_id();
    ASSERT_FALSE(boot_id_.empty()) << "no /proc/sys/kernel/random/boot_id";
  }
  std::optional<fs::TempDir> dir_;
  std::optional<testing::EnvGuard> cache_;
  std::string boot_id_;
};

TEST_F(AccelKvmTest, AutoWithoutRecordsPicksAWorkingKvm) {
  auto c = choose_accel("auto");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->accel, Accel::kvm);
  EXPECT_TRUE(c->auto_selected);
  EXPECT_EQ(c->reason, "/dev/kvm works");
}

// A verdict steers "auto" only: --accel kvm is what the user asked for.
TEST_F(AccelKvmTest, ExplicitKvmIgnoresTheVerdict) {
  ASSERT_TRUE(fs::make_dirs(dir_->path() / "host"));
  ASSERT_TRUE(fs::write_file_atomic(dir_->path() / "host" / ("kvm-unusable-" + boot_id_), "test verdict\n"));
  auto c = choose_accel("kvm");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->accel, Accel::kvm);
  EXPECT_FALSE(c->auto_selected);
  EXPECT_EQ(c->reason, "requested --accel kvm");
}

}  // namespace
}  // namespace kiln::vmm
