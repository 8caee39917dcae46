// "auto" where /dev/kvm works (label kvm: the nested-KVM lab): the kvm engine, a probe
// VM once per boot, and a verdict that wins. Records set up in a private KILN_CACHE_DIR.
#include "vmm/engine.h"

#include "common/fs.h"
#include "engine_choice_test_util.h"
#include "env_guard.h"

#include <gtest/gtest.h>

namespace kiln::vmm {
namespace {

class EngineChoiceKvmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = fs::TempDir::create("/tmp", "kiln-engine-choice-kvm-");
    ASSERT_TRUE(dir);
    dir_.emplace(std::move(*dir));
    cache_.emplace("KILN_CACHE_DIR", dir_->path().string());
    ran_a_guest_ = dir_->path() / "host" / ("kvm-ran-a-guest-" + testing::this_boot_id());
  }
  std::optional<fs::TempDir> dir_;
  std::optional<testing::EnvGuard> cache_;
  std::filesystem::path ran_a_guest_;
  testing::TimerRecorder timers_;
};

// The probe VM costs a KVM_CREATE_VM: it runs on the first auto of the boot only.
TEST_F(EngineChoiceKvmTest, AutoPicksKvmAndProbesOncePerBoot) {
  for (int run = 0; run < 2; ++run) {
    auto engine = make_engine(EngineOptions{"auto", "auto", false});
    ASSERT_TRUE(engine) << engine.error().message;
    EXPECT_EQ((*engine)->name(), "kvm");
  }
  EXPECT_EQ(timers_.times("kvm: usability probe"), 1u);
  auto record = fs::read_file(ran_a_guest_, 64);
  ASSERT_TRUE(record) << record.error().message;
  EXPECT_EQ(*record, "yes\n");
}

TEST_F(EngineChoiceKvmTest, AVerdictSendsAutoToQemuWithoutAProbe) {
  ASSERT_TRUE(fs::make_dirs(dir_->path() / "host"));
  ASSERT_TRUE(fs::write_file_atomic(dir_->path() / "host" / ("kvm-unusable-" + testing::this_boot_id()), "test\n"));
  auto engine = make_engine(EngineOptions{"auto", "auto", false});
  ASSERT_TRUE(engine) << engine.error().message;
  EXPECT_EQ((*engine)->name(), "qemu");
  EXPECT_FALSE((*engine)->on_kvm());
  EXPECT_NE((*engine)->identity().find("/tcg/tsc-"), std::string::npos) << (*engine)->identity();
  EXPECT_EQ(timers_.times("kvm: usability probe"), 0u);
}

}  // namespace
}  // namespace kiln::vmm
