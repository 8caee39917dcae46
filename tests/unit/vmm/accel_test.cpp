#include "vmm/accel.h"

#include "common/fs.h"
#include "env_guard.h"

#include <gtest/gtest.h>

namespace kiln::vmm {
namespace {

class AccelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = fs::TempDir::create("/tmp", "kiln-accel-test-");
    ASSERT_TRUE(dir);
    dir_.emplace(std::move(*dir));
    cache_.emplace("KILN_CACHE_DIR", dir_->path().string());
  }
  std::optional<fs::TempDir> dir_;
  std::optional<testing::EnvGuard> cache_;
};

TEST_F(AccelTest, ExplicitTcgNeedsNoProbe) {
  auto c = choose_accel("tcg");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->accel, Accel::tcg);
  EXPECT_FALSE(c->auto_selected);
}

TEST_F(AccelTest, UnknownNameIsRejected) {
  auto c = choose_accel("hvf");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("kvm, tcg or auto"), std::string::npos);
}

TEST_F(AccelTest, AutoFollowsTheProbeUntilMarkedUnusable) {
  EXPECT_FALSE(kvm_marked_unusable());
  auto before = choose_accel("auto");
  ASSERT_TRUE(before);
  EXPECT_TRUE(before->auto_selected);
  EXPECT_EQ(before->accel, probe_kvm().ok() ? Accel::kvm : Accel::tcg) << before->reason;

  mark_kvm_unusable("the guest never reached the agent\nsecond line");
  EXPECT_TRUE(kvm_marked_unusable());
  EXPECT_EQ(kvm_unusable_reason().value_or(""), "the guest never reached the agent second line");
  auto after = choose_accel("auto");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->accel, Accel::tcg);
  EXPECT_TRUE(after->auto_selected);
  EXPECT_NE(after->reason.find("never reached"), std::string::npos) << after->reason;
}

TEST_F(AccelTest, VerdictIsPerBootAndStaleOnesAreDropped) {
  auto host = dir_->path() / "host";
  ASSERT_TRUE(fs::make_dirs(host));
  ASSERT_TRUE(fs::write_file_atomic(host / "kvm-unusable-some-old-boot", "old\n"));
  EXPECT_FALSE(kvm_marked_unusable());  // another boot's verdict does not count
  mark_kvm_unusable("now");
  EXPECT_TRUE(kvm_marked_unusable());
  EXPECT_FALSE(std::filesystem::exists(host / "kvm-unusable-some-old-boot"));
}

// A probe VM costs a KVM_CREATE_VM per run; once a guest ran this boot, auto trusts
// KVM — until a failed bake says otherwise.
TEST_F(AccelTest, AKvmThatRanAGuestThisBootIsTrustedUntilABakeFails) {
  EXPECT_FALSE(kvm_ran_a_guest_this_boot());
  mark_kvm_ran_a_guest();
  EXPECT_TRUE(kvm_ran_a_guest_this_boot());
  auto trusted = choose_accel("auto");
  ASSERT_TRUE(trusted);
  EXPECT_EQ(trusted->accel, Accel::kvm);
  EXPECT_NE(trusted->reason.find("earlier on this boot"), std::string::npos) << trusted->reason;

  mark_kvm_unusable("the guest never reached the agent");
  auto after = choose_accel("auto");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->accel, Accel::tcg);
  EXPECT_NE(after->reason.find("never reached"), std::string::npos) << after->reason;
}

TEST_F(AccelTest, ExplicitKvmReportsWhyItIsUnusable) {
  auto probe = probe_kvm();
  auto c = choose_accel("kvm");
  EXPECT_EQ(c.ok(), probe.ok());
  if (!c) {
    EXPECT_NE(c.error().message.find("--accel tcg"), std::string::npos) << c.error().message;
  }
}

}  // namespace
}  // namespace kiln::vmm
