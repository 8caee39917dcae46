// When a failed bake may mark KVM unusable for the host's boot, and when it must not:
// ensure_golden on real engines (qemu, and the kvm engine where /dev/kvm opens) with
// a kernel no engine can boot, so every bake fails within a second and no test needs
// a guest to come up. The per-boot cache is a private KILN_CACHE_DIR, never the host's.
#include "runner/golden.h"

#include "common/fs.h"
#include "tests/unit/vmm/engine_choice_test_util.h"
#include "tests/unit/vmm/env_guard.h"

#include <gtest/gtest.h>

namespace kiln::runner {
namespace {

namespace stdfs = std::filesystem;

class GoldenVerdictTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = fs::TempDir::create("/tmp", "kiln-golden-verdict-");
    ASSERT_TRUE(dir) << dir.error().message;
    dir_.emplace(std::move(*dir));
    cache_.emplace("KILN_CACHE_DIR", (dir_->path() / "cache").string());
    host_ = dir_->path() / "cache" / "host";
    ASSERT_TRUE(fs::make_dirs(host_));
    boot_id_ = vmm::testing::this_boot_id();
    ASSERT_FALSE(boot_id_.empty()) << "no /proc/sys/kernel/random/boot_id";
    // "/dev/kvm ran a guest earlier on this boot": auto then picks KVM without a probe
    // VM, on any host, so each test below starts from an auto-picked KVM.
    ASSERT_TRUE(fs::write_file_atomic(host_ / ("kvm-ran-a-guest-" + boot_id_), "yes\n"));
    // Not a bzImage: the kvm engine and qemu (with KVM or TCG) all refuse it at once.
    ASSERT_TRUE(fs::write_file_atomic(dir_->path() / "not-a-kernel", std::string(8192, 'Z')));
    ASSERT_TRUE(fs::write_file_atomic(dir_->path() / "not-an-initramfs", std::string(4096, 'Z')));
    timers_.emplace();
  }

  PreparedGuest guest(uint32_t memory_mib) const {
    PreparedGuest g;
    g.spec.kernel = dir_->path() / "not-a-kernel";
    g.spec.initramfs = dir_->path() / "not-an-initramfs";
    g.spec.cmdline = "console=ttyS0 panic=-1";
    g.spec.memory_mib = memory_mib;
    g.spec.vcpus = 1;
    g.key.image = "default";
    g.key.image_digest = g.key.initramfs_digest = "test-initramfs";
    g.key.kernel_digest = "test-kernel";
    g.key.memory_mib = memory_mib;
    g.key.vcpus = 1;
    g.key.baked_by_version = KILN_VERSION;
    g.key.cmdline = g.spec.cmdline;
    return g;
  }

  Result<Golden> ensure(uint32_t memory_mib, const vmm::EngineOptions& options) {
    snapshot::Store store(dir_->path() / "cache" / "snapshots");
    Progress progress;
    auto golden = ensure_golden(store, guest(memory_mib), options, progress);
    progress.done();
    return golden;
  }

  /// The per-boot "KVM is unusable" verdicts in the private cache (any boot).
  std::vector<std::string> verdicts() const {
    std::vector<std::string> out;
    for (const auto& e : stdfs::directory_iterator(host_))
      if (e.path().filename().string().starts_with("kvm-unusable-")) out.push_back(e.path().filename().string());
    return out;
  }

  bool timer_ran(const std::string& name) const { return timers_->ran(name); }

  std::optional<fs::TempDir> dir_;
  std::optional<vmm::testing::EnvGuard> cache_;
  stdfs::path host_;
  std::string boot_id_;
  std::optional<vmm::testing::TimerRecorder> timers_;
};

// The reported defect: a request the kvm engine cannot serve used to start a bake
// (lock, bake dir, /dev/kvm) that failed on the engine's own limit check.
TEST_F(GoldenVerdictTest, OverLimitMemoryOnTheKvmEngineFailsBeforeAnythingStarts) {
  auto golden = ensure(4096, vmm::EngineOptions{"kvm", "auto", false});
  ASSERT_FALSE(golden);
  EXPECT_EQ(golden.error().message,
            "--memory 4096: the kvm engine supports at most 3328 MiB; use --engine qemu or --memory 3328 or less");
  EXPECT_FALSE(timer_ran("kvm: select engine")) << "/dev/kvm was opened for a request the kvm engine cannot serve";
  EXPECT_FALSE(stdfs::exists(dir_->path() / "cache" / "snapshots")) << "a lock or bake directory was created";
  EXPECT_TRUE(verdicts().empty());
}

// With --engine auto, memory only qemu serves picks qemu: the kvm engine is never
// tried, so its refusal cannot be taken for a broken KVM.
TEST_F(GoldenVerdictTest, AutoPicksQemuForMemoryTheKvmEngineCannotServe) {
  auto golden = ensure(4096, vmm::EngineOptions{"auto", "auto", false});
  ASSERT_FALSE(golden) << "the kernel is garbage: no engine can bake it";
  EXPECT_FALSE(timer_ran("kvm: select engine")) << "auto tried the kvm engine for 4096 MiB";
  EXPECT_TRUE(timer_ran("qemu: select engine"));
  EXPECT_TRUE(verdicts().empty()) << "KVM was marked unusable: " << golden.error().message;
}

// QEMU picked KVM ("auto"), the bake failed, and it fails the same way without KVM:
// the guest (here its kernel) is at fault, not KVM. Nothing may be remembered.
TEST_F(GoldenVerdictTest, AFailureThatAlsoHappensWithoutKvmIsNotRemembered) {
  auto golden = ensure(256, vmm::EngineOptions{"qemu", "auto", false});
  ASSERT_FALSE(golden);
  EXPECT_TRUE(verdicts().empty()) << "KVM was marked unusable: " << golden.error().message;
  EXPECT_NE(golden.error().message.find("failed with KVM too"), std::string::npos) << golden.error().message;
}

// KVM the user asked for by name is reported, never judged.
TEST_F(GoldenVerdictTest, AnExplicitAcceleratorIsNeverJudged) {
  auto golden = ensure(256, vmm::EngineOptions{"qemu", "kvm", false});
  ASSERT_FALSE(golden);
  EXPECT_TRUE(verdicts().empty()) << golden.error().message;
}

}  // namespace
}  // namespace kiln::runner
