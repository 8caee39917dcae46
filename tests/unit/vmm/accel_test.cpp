// Choosing the accelerator from the per-boot records. Each test writes the records it
// needs into a private KILN_CACHE_DIR (named by this boot's id, read from /proc here)
// and states the expected choice literally; where the answer depends on /dev/kvm, the
// test says which host it is for (accel_kvm_test.cpp covers a working /dev/kvm).
#include "vmm/accel.h"

#include "common/fs.h"
#include "engine_choice_test_util.h"
#include "env_guard.h"

#include <gtest/gtest.h>
#include <unistd.h>


namespace kiln::vmm {
namespace {

namespace stdfs = std::filesystem;

class AccelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = fs::TempDir::create("/tmp", "kiln-accel-test-");
    ASSERT_TRUE(dir);
    dir_.emplace(std::move(*dir));
    cache_.emplace("KILN_CACHE_DIR", dir_->path().string());
    host_ = dir_->path() / "host";
    boot_id_ = testing::this_boot_id();
    ASSERT_FALSE(boot_id_.empty()) << "no /proc/sys/kernel/random/boot_id";
  }
  void put(const std::string& name, const std::string& content) {
    ASSERT_TRUE(fs::make_dirs(host_));
    ASSERT_TRUE(fs::write_file_atomic(host_ / name, content));
  }
  std::string read(const std::string& name) {
    auto text = fs::read_file(host_ / name, 1 << 16);
    return text ? *text : "(missing)";
  }
  std::string verdict() const { return "kvm-unusable-" + boot_id_; }
  std::string ran_a_guest() const { return "kvm-ran-a-guest-" + boot_id_; }

  std::optional<fs::TempDir> dir_;
  std::optional<testing::EnvGuard> cache_;
  stdfs::path host_;
  std::string boot_id_;
};

TEST_F(AccelTest, ExplicitTcgNeedsNoProbe) {
  auto c = choose_accel("tcg");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->accel, Accel::tcg);
  EXPECT_FALSE(c->auto_selected);
  EXPECT_EQ(c->reason, "requested --accel tcg");
}

TEST_F(AccelTest, UnknownNameIsRejected) {
  auto c = choose_accel("hvf");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, "unknown accelerator 'hvf': use kvm, tcg or auto");
}

TEST_F(AccelTest, AutoHonoursThisBootsVerdict) {
  put(verdict(), "the guest never reached the agent\n");
  auto c = choose_accel("auto");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->accel, Accel::tcg);
  EXPECT_TRUE(c->auto_selected);
  EXPECT_EQ(c->reason, "KVM was found unusable earlier on this boot (the guest never reached the agent)");
}

// A probe VM costs a KVM_CREATE_VM per run: once a guest ran this boot, auto trusts KVM
// without one (on a host without /dev/kvm too: the record is all it reads).
TEST_F(AccelTest, AutoTrustsAKvmThatRanAGuestThisBoot) {
  put(ran_a_guest(), "yes\n");
  auto c = choose_accel("auto");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->accel, Accel::kvm);
  EXPECT_TRUE(c->auto_selected);
  EXPECT_EQ(c->reason, "/dev/kvm ran a guest earlier on this boot");
}

TEST_F(AccelTest, AVerdictWinsOverAGuestThatRan) {
  put(ran_a_guest(), "yes\n");
  put(verdict(), "KVM_RUN failed\n");
  auto c = choose_accel("auto");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->accel, Accel::tcg);
  EXPECT_EQ(c->reason, "KVM was found unusable earlier on this boot (KVM_RUN failed)");
}

TEST_F(AccelTest, OtherBootsRecordsDoNotCount) {
  put("kvm-unusable-some-old-boot", "old\n");
  put("kvm-ran-a-guest-some-old-boot", "yes\n");
  EXPECT_FALSE(kvm_marked_unusable());
  EXPECT_EQ(kvm_unusable_reason(), std::nullopt);
  EXPECT_FALSE(kvm_ran_a_guest_this_boot());
}

TEST_F(AccelTest, AnEmptyVerdictStillCounts) {
  put(verdict(), "");
  EXPECT_TRUE(kvm_marked_unusable());
  EXPECT_EQ(kvm_unusable_reason(), "no reason recorded");
}

TEST_F(AccelTest, MarkingKvmUnusableStoresOneLineForThisBootAndDropsOtherBoots) {
  put("kvm-unusable-some-old-boot", "old\n");
  put("kvm-ran-a-guest-some-old-boot", "yes\n");
  mark_kvm_unusable("the guest never reached the agent\nsecond line");
  EXPECT_EQ(read(verdict()), "the guest never reached the agent second line\n");
  EXPECT_FALSE(stdfs::exists(host_ / "kvm-unusable-some-old-boot"));
  // Only the verdict's own old files go: the other record is cleaned when it is written.
  EXPECT_TRUE(stdfs::exists(host_ / "kvm-ran-a-guest-some-old-boot"));
}

TEST_F(AccelTest, AVeryLongReasonIsCutToFourKiB) {
  mark_kvm_unusable(std::string(10000, 'x'));
  EXPECT_EQ(read(verdict()), std::string(4096, 'x') + "\n");
}

TEST_F(AccelTest, MarkingThatKvmRanAGuestStoresThisBootsRecord) {
  mark_kvm_ran_a_guest();
  EXPECT_EQ(read(ran_a_guest()), "yes\n");
}

// Without any record, auto asks /dev/kvm; where there is none at all, it is TCG, and
// kiln says why. Run where /dev/kvm is hidden, so it runs on every host.
TEST_F(AccelTest, AutoWithoutRecordsAndWithoutDevKvmIsTcg) {
  auto r = testing::without_dev_kvm([] {
    auto c = choose_accel("auto");
    if (!c) return "error: " + c.error().message;
    return std::string(accel_name(c->accel)) + (c->auto_selected ? " auto: " : " asked: ") + c->reason;
  });
  if (!r.report) GTEST_SKIP() << r.why_not;
  EXPECT_EQ(*r.report, "tcg auto: /dev/kvm does not exist (no hardware virtualisation, or kvm module not loaded)");
  EXPECT_FALSE(stdfs::exists(host_)) << "a failed probe is not remembered";
}

TEST_F(AccelTest, ExplicitKvmWithoutDevKvmSaysWhyAndWhatToDo) {
  put(ran_a_guest(), "yes\n");  // ignored: an explicit --accel kvm always probes
  auto r = testing::without_dev_kvm([] {
    auto c = choose_accel("kvm");
    return c ? std::string("chose ") + accel_name(c->accel) : "error: " + c.error().message;
  });
  if (!r.report) GTEST_SKIP() << r.why_not;
  EXPECT_EQ(*r.report,
            "error: --accel kvm was requested but KVM is unusable: /dev/kvm does not exist (no hardware "
            "virtualisation, or kvm module not loaded); use --accel tcg or auto");
}

}  // namespace
}  // namespace kiln::vmm
