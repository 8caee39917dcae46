// QemuEngine without booting a guest: selection, identity, and input checks that fail
// before any qemu process starts.
#include "vmm/qemu/qemu_engine.h"

#include "common/fs.h"
#include "common/log.h"
#include "env_guard.h"
#include "vmm/accel.h"
#include "vmm/qemu/qemu_binary.h"
#include "vmm/qemu/tcg_tsc.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string_view>

namespace kiln::vmm {
namespace {

class QemuEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto qemu = qemu::find_qemu_binary(); !qemu) GTEST_SKIP() << qemu.error().message;
    auto dir = fs::TempDir::create("/tmp", "kiln-engine-test-");
    ASSERT_TRUE(dir);
    dir_.emplace(std::move(*dir));
    cache_.emplace("KILN_CACHE_DIR", dir_->path().string());
  }
  std::optional<fs::TempDir> dir_;
  std::optional<testing::EnvGuard> cache_;
};

TEST_F(QemuEngineTest, IdentityNamesVersionAndAccel) {
  auto engine = make_engine(EngineOptions{"qemu", "tcg", false});
  ASSERT_TRUE(engine) << engine.error().message;
  EXPECT_EQ((*engine)->name(), "qemu");
  std::string id = (*engine)->identity();
  EXPECT_TRUE(id.starts_with("qemu-")) << id;
  EXPECT_FALSE((*engine)->on_kvm());
  auto& qemu = dynamic_cast<qemu::QemuEngine&>(**engine);
  EXPECT_EQ(qemu.accel().accel, Accel::tcg);
  EXPECT_FALSE(qemu.accel().auto_selected);
  // The device layout is part of the key: a golden from another set of devices is never
  // found; and under TCG so is the TSC rate the guest is told (measured once per boot).
  const auto khz = qemu::host_tsc_khz();
  EXPECT_EQ(id, "qemu-" + qemu.version() + "/devices-" + std::to_string(kDeviceLayoutVersion) + "/tcg/" +
                    (khz ? "tsc-" + std::to_string(*khz) + "khz" : "tsc-calibrated"));
  auto again = make_engine(EngineOptions{"qemu", "tcg", false});
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ((*again)->identity(), id) << "two engines on one host boot must agree (kept VMs, the pool)";
}

TEST(QemuIdentity, NamesWhatTheGuestDependsOn) {
  using qemu::QemuEngine;
  const std::string layout = "/devices-" + std::to_string(kDeviceLayoutVersion);
  EXPECT_EQ(QemuEngine::identity_for("7.2.22", Accel::tcg, 2596000, ""), "qemu-7.2.22" + layout + "/tcg/tsc-2596000khz");
  EXPECT_EQ(QemuEngine::identity_for("7.2.22", Accel::tcg, std::nullopt, ""),
            "qemu-7.2.22" + layout + "/tcg/tsc-calibrated");
  EXPECT_EQ(QemuEngine::identity_for("7.2.22", Accel::kvm, std::nullopt, "AuthenticAMD-25.17.1-c1-m2-x4096-k12.3"),
            "qemu-7.2.22" + layout + "/kvm/AuthenticAMD-25.17.1-c1-m2-x4096-k12.3");
}

// Once a bake has shown KVM cannot run Linux on this boot (as on hosts whose
// /dev/kvm runs the probe but not a kernel), auto must pick qemu, accel auto.
TEST_F(QemuEngineTest, AutoEngineIsQemuOnceKvmWasFoundUnusable) {
  mark_kvm_unusable("test: the guest did not come up");
  auto engine = make_engine(EngineOptions{"auto", "auto", false});
  ASSERT_TRUE(engine) << engine.error().message;
  EXPECT_EQ((*engine)->name(), "qemu");
  EXPECT_TRUE(dynamic_cast<qemu::QemuEngine&>(**engine).accel().auto_selected);
}

std::atomic<int> g_kvm_probes{0};
void count_kvm_probes(const char* name, double) {
  if (std::string_view(name) == "kvm: usability probe") ++g_kvm_probes;
}

// The kvm engine's probe (a VM with a 7-instruction guest) runs once per boot: once it
// passed, later "auto" runs skip it. Where it fails, nothing is remembered (only a
// failed bake records a negative verdict), so every run probes again.
TEST_F(QemuEngineTest, AutoEngineProbesKvmOnlyUntilAGuestRanThisBoot) {
  g_kvm_probes = 0;
  log::set_timing_sink(count_kvm_probes);
  auto first = make_engine(EngineOptions{"auto", "auto", false});
  const bool passed = kvm_ran_a_guest_this_boot();
  auto second = make_engine(EngineOptions{"auto", "auto", false});
  log::set_timing_sink(nullptr);
  ASSERT_TRUE(first) << first.error().message;
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ((*second)->name(), (*first)->name());
  EXPECT_EQ(g_kvm_probes.load(), passed ? 1 : 2);
}

TEST_F(QemuEngineTest, UnknownNamesAreRejected) {
  auto bad = make_engine(EngineOptions{"vbox", "auto", false});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("use kvm, qemu or auto"), std::string::npos);
  auto accel = make_engine(EngineOptions{"qemu", "whpx", false});
  ASSERT_FALSE(accel);
  EXPECT_NE(accel.error().message.find("kvm, tcg or auto"), std::string::npos);
}

TEST_F(QemuEngineTest, MissingQemuSaysHowToInstall) {
  testing::EnvGuard path("PATH", "/nonexistent");
  testing::EnvGuard unset("KILN_QEMU", "");
  auto engine = make_engine(EngineOptions{"qemu", "tcg", false});
  ASSERT_FALSE(engine);
  EXPECT_NE(engine.error().message.find("install qemu-system-x86"), std::string::npos);
}

TEST_F(QemuEngineTest, BadSpecFailsBeforeQemuStarts) {
  auto engine = make_engine(EngineOptions{"qemu", "tcg", false});
  ASSERT_TRUE(engine) << engine.error().message;
  const auto kernel = dir_->path() / "vmlinuz";
  ASSERT_TRUE(fs::write_file_atomic(kernel, "k"));
  SnapshotFiles files{dir_->path() / "state", dir_->path() / "memory", {}};

  GuestSpec no_kernel{dir_->path() / "missing", kernel, "", 256, 1};
  auto r = (*engine)->boot(no_kernel, files);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("guest kernel"), std::string::npos) << r.error().message;

  GuestSpec dir_initrd{kernel, dir_->path(), "", 256, 1};
  EXPECT_FALSE((*engine)->boot(dir_initrd, files));
  EXPECT_FALSE((*engine)->boot(GuestSpec{kernel, kernel, "", 8, 1}, files));
  EXPECT_FALSE((*engine)->boot(GuestSpec{kernel, kernel, "", 256, 0}, files));
}

TEST_F(QemuEngineTest, RestoreChecksSnapshotFilesFirst) {
  auto engine = make_engine(EngineOptions{"qemu", "tcg", false});
  ASSERT_TRUE(engine) << engine.error().message;
  const auto kernel = dir_->path() / "vmlinuz";
  ASSERT_TRUE(fs::write_file_atomic(kernel, "k"));
  GuestSpec spec{kernel, kernel, "", 256, 1};
  SnapshotFiles files{dir_->path() / "state", dir_->path() / "memory", {}};

  auto no_memory = (*engine)->restore(spec, files);
  ASSERT_FALSE(no_memory);
  EXPECT_NE(no_memory.error().message.find("rebake"), std::string::npos) << no_memory.error().message;

  ASSERT_TRUE(fs::write_file_atomic(files.memory, std::string(4096, '\0')));  // wrong size
  auto small = (*engine)->restore(spec, files);
  ASSERT_FALSE(small);
  EXPECT_NE(small.error().message.find("holds 4096 bytes"), std::string::npos) << small.error().message;

  std::filesystem::resize_file(files.memory, uint64_t{256} << 20);
  auto no_state = (*engine)->restore(spec, files);
  ASSERT_FALSE(no_state);
  EXPECT_NE(no_state.error().message.find("state file"), std::string::npos) << no_state.error().message;

  ASSERT_TRUE(fs::write_file_atomic(files.state, ""));
  auto empty_state = (*engine)->restore(spec, files);
  ASSERT_FALSE(empty_state);
  EXPECT_NE(empty_state.error().message.find("empty"), std::string::npos) << empty_state.error().message;
}

}  // namespace
}  // namespace kiln::vmm
