// The kvm engine end to end, through the engine interface: boot the kernel the
// vm.setup.bake fixture fetched with kiln's initramfs (in $KILN_TEST_CACHE), see
// the guest agent announce itself on the agent channel, save a snapshot, restore
// it (the agent announces again: it re-sends hello until acknowledged), and
// refuse state files that are corrupt, truncated, from another kiln or for
// another guest. Each test ends with the process holding what it held before: the
// engine runs in-process, so a VM that leaves a thread, an fd or a child behind
// leaks into kiln. They need a usable /dev/kvm and the vm.setup.bake fixture: label
// `kvm` (tests/CMakeLists.txt), run in the nested-KVM lab (tests/lab/run-vm-suite),
// not by the host's VM step; without /dev/kvm they fail.
#include "common/fs.h"
#include "process_footprint.h"
#include "tests/unit/vmm/busybox_guest.h"
#include "vmm/kvm/kvm_engine.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <poll.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

namespace kiln::vmm::kvm {
namespace {

namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

/// Kernel and initramfs from the VM tests' cache, or empty paths.
GuestSpec cached_guest() {
  GuestSpec spec;
  const char* cache = std::getenv("KILN_TEST_CACHE");
  if (!cache) return spec;
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(stdfs::path(cache) / "kernels", ec))
    if (stdfs::exists(e.path() / "kiln-kernel.complete"))
      spec.kernel = e.path() / "boot" / ("vmlinuz-" + e.path().filename().string());
  // The newest: the one this build's agent produced (older agents' stay cached).
  stdfs::file_time_type newest{};
  for (const auto& e : stdfs::directory_iterator(stdfs::path(cache) / "initramfs", ec))
    if (e.path().extension() == ".cpio" && (spec.initramfs.empty() || e.last_write_time() > newest)) {
      spec.initramfs = e.path();
      newest = e.last_write_time();
    }
  spec.cmdline = "console=ttyS0 loglevel=4 panic=-1 rdinit=/init tsc=reliable no_timer_check";
  return spec;
}

/// Wait for at least one byte from the agent (its hello frame) within `timeout`.
bool agent_speaks(Vm& vm, std::chrono::milliseconds timeout) {
  pollfd p{vm.agent_fd(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
  char buf[256];
  return ::read(vm.agent_fd(), buf, sizeof buf) > 0;
}

size_t thread_count() { return testing::ProcessFootprint::now().threads; }

class KvmEngineVm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto engine = KvmEngine::create({});
    if (!engine) {
      no_engine_reason_ = engine.error().message;
      return;
    }
    engine_ = engine->release();
  }
  static void TearDownTestSuite() { delete engine_; }
  void SetUp() override {
    if (!engine_) FAIL() << "no usable /dev/kvm (" << no_engine_reason_ << "): run in tests/lab/kvm-lab";
    spec_ = cached_guest();
    ASSERT_FALSE(spec_.kernel.empty() || spec_.initramfs.empty())
        << "no kernel/initramfs in $KILN_TEST_CACHE: run via ctest (vm.setup.bake)";
    auto dir = fs::TempDir::create(stdfs::temp_directory_path(), "kiln-kvm-test-");
    ASSERT_TRUE(dir);
    dir_.emplace(std::move(*dir));
    files_ = SnapshotFiles{dir_->path() / "state.bin", dir_->path() / "memory.ram"};
    before_ = testing::ProcessFootprint::now();
  }
  // The test's VMs are gone by now (they live in the test body).
  void TearDown() override {
    if (before_) {
      EXPECT_EQ(testing::ProcessFootprint::now(), *before_) << "a VM left threads, fds or child processes behind";
    }
  }
  /// Boot and save once per test that needs a snapshot.
  void bake() {
    auto vm = engine_->boot(spec_, files_);
    ASSERT_TRUE(vm) << vm.error().message;
    ASSERT_TRUE(agent_speaks(**vm, 120s)) << "the agent never spoke; console:\n" << (*vm)->console_output();
    auto saved = (*vm)->save_snapshot(files_);
    ASSERT_TRUE(saved) << saved.error().message;
    (*vm)->destroy();
  }
  std::string state() { return fs::read_file(files_.state, 64 << 20).value(); }
  void write_state(const std::string& s) { ASSERT_TRUE(fs::write_file_atomic(files_.state, s)); }

  static inline KvmEngine* engine_ = nullptr;
  static inline std::string no_engine_reason_;
  GuestSpec spec_;
  std::optional<fs::TempDir> dir_;
  SnapshotFiles files_;
  std::optional<testing::ProcessFootprint> before_;
};

TEST_F(KvmEngineVm, BootSaveRestoreAndDestroyLeavesNoThread) {
  const size_t threads_before = thread_count();
  ASSERT_NO_FATAL_FAILURE(bake());
  const std::string golden = fs::read_file(files_.memory, 512 << 20).value();
  for (int round = 0; round < 2; ++round) {
    auto vm = engine_->restore(spec_, files_);
    ASSERT_TRUE(vm) << vm.error().message;
    EXPECT_TRUE(agent_speaks(**vm, 60s)) << "restored agent silent; console:\n" << (*vm)->console_output();
    EXPECT_FALSE((*vm)->vmm_exited());
    (*vm)->destroy();
    EXPECT_TRUE((*vm)->vmm_exited());
  }
  EXPECT_EQ(thread_count(), threads_before) << "a vCPU or I/O thread outlived its VM";
  EXPECT_TRUE(fs::read_file(files_.memory, 512 << 20).value() == golden) << "restore modified the golden memory";
}

TEST_F(KvmEngineVm, RefusesBadStateFilesWithARebakeHint) {
  ASSERT_NO_FATAL_FAILURE(bake());
  const std::string good = state();
  auto refused = [&](const std::string& why) {
    auto vm = engine_->restore(spec_, files_);
    EXPECT_FALSE(vm) << why << ": restored anyway";
    if (!vm) {
      EXPECT_NE(vm.error().message.find("rebake"), std::string::npos) << why << ": " << vm.error().message;
    }
  };
  write_state(good.substr(0, good.size() / 2));
  refused("truncated");
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x40;
  write_state(flipped);
  refused("one bit flipped");
  write_state("");
  refused("empty");
  write_state(good);
  GuestSpec bigger = spec_;
  bigger.memory_mib = spec_.memory_mib * 2;
  auto vm = engine_->restore(bigger, files_);
  EXPECT_FALSE(vm) << "restored a 256 MiB snapshot as a 512 MiB guest";
  GuestSpec other_cmdline = spec_;
  other_cmdline.cmdline += " quiet";
  EXPECT_FALSE(engine_->restore(other_cmdline, files_));
  ASSERT_TRUE(engine_->restore(spec_, files_)) << "the good state no longer restores";
}

TEST_F(KvmEngineVm, RestoreForLayerSavesACompleteSnapshot) {
  ASSERT_NO_FATAL_FAILURE(bake());
  SnapshotFiles layer{dir_->path() / "layer.state", dir_->path() / "layer.ram"};
  auto vm = engine_->restore_for_layer(spec_, files_, layer);
  ASSERT_TRUE(vm) << vm.error().message;
  ASSERT_TRUE(agent_speaks(**vm, 60s));
  auto saved = (*vm)->save_snapshot(layer);
  ASSERT_TRUE(saved) << saved.error().message;
  (*vm)->destroy();
  EXPECT_EQ(stdfs::file_size(layer.memory), stdfs::file_size(files_.memory));
  auto again = engine_->restore(spec_, layer);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_TRUE(agent_speaks(**again, 60s));
}

/// A 1 MiB raw image whose MBR has one Linux partition (sectors 2048.. do not exist:
/// the partition spans 1..2047), so the guest's partition scan reads it through kiln's
/// virtio-blk and names vda1.
std::string disk_with_one_partition() {
  std::string image(1 << 20, '\0');
  const size_t entry = 446;
  image[entry + 4] = static_cast<char>(0x83);  // Linux
  auto le32 = [&](size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) image[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
  };
  le32(entry + 8, 1);     // first sector
  le32(entry + 12, 2047); // sectors
  image[510] = static_cast<char>(0x55);
  image[511] = static_cast<char>(0xaa);
  return image;
}

bool console_shows(Vm& vm, const std::string& needle, std::chrono::seconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (vm.console_output().find(needle) == std::string::npos) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(50ms);
  }
  return true;
}

TEST_F(KvmEngineVm, TheGuestFindsAndReadsItsDisksThroughVirtioBlk) {
  const stdfs::path image = dir_->path() / "disk.img";
  ASSERT_TRUE(fs::write_file_atomic(image, disk_with_one_partition()));
  spec_.disks = {DiskSpec{image, true}};
  // The capacity and the partition scan are KERN_NOTICE/KERN_INFO lines.
  spec_.cmdline += " loglevel=7";
  auto vm = engine_->boot(spec_, files_);
  ASSERT_TRUE(vm) << vm.error().message;
  ASSERT_TRUE(agent_speaks(**vm, 120s)) << "the agent never spoke; console:\n" << (*vm)->console_output();
  EXPECT_TRUE(console_shows(**vm, "[vda] 2048 512-byte logical blocks", 30s)) << (*vm)->console_output();
  EXPECT_TRUE(console_shows(**vm, "vda: vda1", 30s)) << "the partition table was not read; console:\n"
                                                     << (*vm)->console_output();
  auto saved = (*vm)->save_snapshot(files_);
  ASSERT_TRUE(saved) << saved.error().message;
  (*vm)->destroy();

  // The disk is part of the machine: restore needs the same shape, and then runs on.
  GuestSpec no_disk = spec_;
  no_disk.disks.clear();
  auto refused = engine_->restore(no_disk, files_);
  ASSERT_FALSE(refused) << "restored a guest that had a disk without one";
  EXPECT_NE(refused.error().message.find("disks"), std::string::npos) << refused.error().message;
  auto again = engine_->restore(spec_, files_);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_TRUE(agent_speaks(**again, 60s));
}

TEST_F(KvmEngineVm, ShareChannelCarriesBytesBothWaysOnBootAndAfterRestore) {
  // A busybox guest that finds both ports by name (tests/unit/vmm/busybox_guest.h).
  auto kernel = vmm::testing::cached_kernel();
  ASSERT_TRUE(kernel) << kernel.error().message;
  auto cpio = vmm::testing::build_busybox_initramfs(*kernel, dir_->path());
  ASSERT_TRUE(cpio) << cpio.error().message;
  spec_.initramfs = *cpio;
  {
    auto vm = engine_->boot(spec_, files_);
    ASSERT_TRUE(vm) << vm.error().message;
    auto ready = vmm::testing::wait_guest_ready(**vm, 120s);
    ASSERT_TRUE(ready) << ready.error().message << "\nconsole:\n" << (*vm)->console_output();
    EXPECT_TRUE(console_shows(**vm, "share port /dev/vport", 10s)) << (*vm)->console_output();
    auto shared = vmm::testing::share_both_ways(**vm, "boot");
    ASSERT_TRUE(shared) << shared.error().message << "\nconsole:\n" << (*vm)->console_output();
    auto saved = (*vm)->save_snapshot(files_);
    ASSERT_TRUE(saved) << saved.error().message;
  }
  // The share console is saved with the VM and restored onto a fresh socketpair.
  auto vm = engine_->restore(spec_, files_);
  ASSERT_TRUE(vm) << vm.error().message;
  ASSERT_GE((*vm)->share_fd(), 0);
  auto shared = vmm::testing::share_both_ways(**vm, "restore");
  ASSERT_TRUE(shared) << shared.error().message << "\nconsole:\n" << (*vm)->console_output();
}

TEST_F(KvmEngineVm, AMissingDiskImageIsAClearError) {
  spec_.disks = {DiskSpec{dir_->path() / "no-such.img", true}};
  auto vm = engine_->boot(spec_, files_);
  ASSERT_FALSE(vm);
  EXPECT_NE(vm.error().message.find("no-such.img"), std::string::npos) << vm.error().message;
}

}  // namespace
}  // namespace kiln::vmm::kvm
