// Whole-VM smoke tests of the QEMU engine: boot, save, restore (twice), talk over the agent
// channel. They boot a real guest (seconds under TCG), so every test is named Vm* for the
// runner to filter; they use the kernel the vm.setup.bake fixture fetched into $KILN_TEST_CACHE.
//
// The guest is not kiln's: the initramfs here is busybox with an /init script that
// echoes every line on the agent port back as "echo:<line>" and moves bytes over the
// share port on request (busybox_guest.h).
#include "vmm/engine.h"

#include "common/digest.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/subprocess.h"
#include "busybox_guest.h"
#include "env_guard.h"
#include "vmm/qemu/qemu_engine.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <set>

namespace kiln::vmm {
namespace {

using namespace std::chrono_literals;
namespace stdfs = std::filesystem;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

void report(const std::string& what, const std::string& value) {
  std::printf("[  measure ] %-40s %s\n", what.c_str(), value.c_str());
  std::fflush(stdout);
}

/// Send one line and wait for its echo: proves the guest runs and the channel works both ways.
Result<double> round_trip(Vm& vm, const std::string& word) {
  auto t0 = Clock::now();
  std::string line = word + "\n";
  if (::write(vm.agent_fd(), line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    return make_error("write to agent socket failed");
  KILN_TRY(testing::read_until(vm.agent_fd(), "echo:" + word + "\n", 20s));
  return ms_since(t0);
}

std::set<std::string> runtime_dirs() {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator("/tmp", ec))
    if (e.path().filename().string().starts_with("kiln-vm-")) out.insert(e.path().string());
  return out;
}

/// "Rss: ... Pss_Anon: ..." of a process: what one more restored VM costs the host.
std::string memory_of(pid_t pid) {
  auto text = fs::read_file("/proc/" + std::to_string(pid) + "/smaps_rollup", 1 << 16);
  if (!text) return "?";
  std::string out;
  for (const char* key : {"Rss:", "Pss:", "Pss_Anon:", "Pss_File:"}) {
    size_t at = text->find(std::string("\n") + key);
    if (at == std::string::npos) continue;
    size_t end = text->find('\n', at + 1);
    std::string line = text->substr(at + 1, end - at - 1);
    line.erase(std::unique(line.begin(), line.end(), [](char a, char b) { return a == ' ' && b == ' '; }), line.end());
    out += (out.empty() ? "" : ", ") + line;
  }
  return out;
}

bool process_gone(pid_t pid) { return pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH; }

/// Builds the scratch initramfs and one baked snapshot for the whole suite.
class VmQemuEngine : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // KILN_TEST_TIMINGS=1 prints the engine's per-step timers (where a slow restore spends its time).
    if (std::getenv("KILN_TEST_TIMINGS")) log::set_timings(true);
    auto kernel = testing::cached_kernel();
    ASSERT_TRUE(kernel) << kernel.error().message;
    auto dir = fs::TempDir::create("/tmp", "kiln-vmtest-");
    ASSERT_TRUE(dir) << dir.error().message;
    work_ = new fs::TempDir(std::move(*dir));
    cache_ = new testing::EnvGuard("KILN_CACHE_DIR", (work_->path() / "cache").string());
    auto cpio = testing::build_busybox_initramfs(*kernel, work_->path());
    ASSERT_TRUE(cpio) << cpio.error().message;

    spec_ = new GuestSpec{kernel->image(), *cpio, "console=ttyS0 panic=-1", 256, 1};
    files_ = new SnapshotFiles{work_->path() / "state", work_->path() / "memory", {}};
  }
  static void TearDownTestSuite() {
    delete spec_;
    delete files_;
    delete cache_;
    delete work_;  // removes the snapshot, initramfs and cache
    spec_ = nullptr;
    files_ = nullptr;
    cache_ = nullptr;
    work_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(spec_, nullptr) << "suite setup failed (see above)";
    // TCG unless the suite targets an accelerator (KILN_TEST_ACCEL=kvm in the nested-KVM
    // lab, where TCG inside TCG would be far too slow): never "auto", which trusts a
    // /dev/kvm that opens but cannot run Linux (this kind of host).
    const char* accel = std::getenv("KILN_TEST_ACCEL");
    auto e = make_engine(EngineOptions{"qemu", accel && *accel ? accel : "tcg", false});
    ASSERT_TRUE(e) << e.error().message;
    engine_ = std::move(*e);
    dirs_before_ = runtime_dirs();
  }
  void TearDown() override {
    if (spec_ == nullptr) return;
    // Other kiln processes on this host create (and within ~50 ms remove) their own
    // runtime dirs: only a new dir that stays is a leak.
    std::set<std::string> leaked;
    for (int i = 0; i < 100; ++i) {
      leaked.clear();
      for (const auto& d : runtime_dirs())
        if (!dirs_before_.count(d)) leaked.insert(d);
      if (leaked.empty()) break;
      ::usleep(10000);
    }
    EXPECT_TRUE(leaked.empty()) << "a runtime dir was left in /tmp: " << *leaked.begin();
  }

  /// Bake once per suite: boot, wait for the guest, save. Later tests restore from it.
  void ensure_baked() {
    if (baked_) return;
    auto t0 = Clock::now();
    auto vm = engine_->boot(*spec_, *files_);
    ASSERT_TRUE(vm) << vm.error().message;
    report("boot: spawn -> QMP+agent connected", fmt::format("{:.0f} ms", ms_since(t0)));
    // Guest writes before the host connects are lost on a virtio-serial port, so the
    // host speaks first: ping until the guest's echo comes back.
    auto hello = testing::wait_guest_ready(**vm, 60s);
    ASSERT_TRUE(hello) << hello.error().message << "\nconsole:\n" << (*vm)->console_output();
    report("boot: spawn -> first guest output", fmt::format("{:.0f} ms", ms_since(t0)));
    auto rt = round_trip(**vm, "before-save");
    ASSERT_TRUE(rt) << rt.error().message;
    EXPECT_NE((*vm)->console_output().find("Run /init"), std::string::npos);
    // The guest finds the ports by name; QEMU numbers the share port after the agent's.
    EXPECT_NE((*vm)->console_output().find("agent port /dev/vport0p1, share port /dev/vport0p2"), std::string::npos)
        << (*vm)->console_output();

    auto t1 = Clock::now();
    auto saved = (*vm)->save_snapshot(*files_);
    ASSERT_TRUE(saved) << saved.error().message;
    report("save_snapshot", fmt::format("{:.1f} ms", ms_since(t1)));
    report("state file size", fmt::format("{} bytes", stdfs::file_size(files_->state)));
    pid_t pid = static_cast<qemu::QemuVm&>(**vm).pid();
    (*vm)->destroy();
    EXPECT_TRUE(process_gone(pid));
    EXPECT_EQ((*vm)->vmm_exited().value_or(""), "qemu was stopped by kiln");
    baked_ = true;
  }

  static inline fs::TempDir* work_ = nullptr;
  static inline testing::EnvGuard* cache_ = nullptr;
  static inline GuestSpec* spec_ = nullptr;
  static inline SnapshotFiles* files_ = nullptr;
  static inline bool baked_ = false;
  std::unique_ptr<Engine> engine_;
  std::set<std::string> dirs_before_;
};

TEST_F(VmQemuEngine, VmBootSaveRestoreTwiceKeepsGoldenIntact) {
  ensure_baked();
  ASSERT_TRUE(baked_);
  auto before = digest_sparse_file(files_->memory);
  ASSERT_TRUE(before) << before.error().message;
  for (int i = 0; i < 2; ++i) {
    auto t0 = Clock::now();
    auto vm = engine_->restore(*spec_, *files_);
    ASSERT_TRUE(vm) << vm.error().message;
    report(fmt::format("restore #{}: spawn -> running", i + 1), fmt::format("{:.0f} ms", ms_since(t0)));
    auto rt = round_trip(**vm, "after-restore-" + std::to_string(i));
    ASSERT_TRUE(rt) << rt.error().message << "\nconsole:\n" << (*vm)->console_output();
    report(fmt::format("restore #{}: spawn -> first round trip", i + 1), fmt::format("{:.0f} ms", ms_since(t0)));
    EXPECT_EQ((*vm)->vmm_exited(), std::nullopt);
    pid_t pid = static_cast<qemu::QemuVm&>(**vm).pid();
    report(fmt::format("restore #{}: qemu memory", i + 1), memory_of(pid));
    vm->reset();
    EXPECT_TRUE(process_gone(pid));
  }
  auto after = digest_sparse_file(files_->memory);
  ASSERT_TRUE(after);
  EXPECT_EQ(*before, *after) << "restore modified the golden memory file";
}

TEST_F(VmQemuEngine, VmShareChannelCarriesBytesBothWaysOnABootedVm) {
  SnapshotFiles files{work_->path() / "share-state", work_->path() / "share-memory", {}};
  auto vm = engine_->boot(*spec_, files);
  ASSERT_TRUE(vm) << vm.error().message;
  auto ready = testing::wait_guest_ready(**vm, 120s);
  ASSERT_TRUE(ready) << ready.error().message << "\nconsole:\n" << (*vm)->console_output();
  auto shared = testing::share_both_ways(**vm, "boot");
  EXPECT_TRUE(shared) << shared.error().message << "\nconsole:\n" << (*vm)->console_output();
  vm->reset();
  std::error_code ec;
  stdfs::remove(files.memory, ec);
}

TEST_F(VmQemuEngine, VmShareChannelCarriesBytesBothWaysAfterRestore) {
  ensure_baked();
  ASSERT_TRUE(baked_);
  // The port is part of the golden (never opened there, like kiln's); each restore
  // connects a fresh socket to it.
  for (int i = 0; i < 2; ++i) {
    auto vm = engine_->restore(*spec_, *files_);
    ASSERT_TRUE(vm) << vm.error().message;
    ASSERT_GE((*vm)->share_fd(), 0);
    EXPECT_NE((*vm)->share_fd(), (*vm)->agent_fd());
    auto shared = testing::share_both_ways(**vm, "restore-" + std::to_string(i));
    ASSERT_TRUE(shared) << shared.error().message << "\nconsole:\n" << (*vm)->console_output();
  }
}

TEST_F(VmQemuEngine, VmGuestReadsItsDisk) {
  const stdfs::path image = work_->path() / "disk.img";
  std::string content(64 << 10, '\0');
  content.replace(0, 16, "kiln-disk-bytes!");
  ASSERT_TRUE(fs::write_file_atomic(image, content));
  GuestSpec spec = *spec_;
  spec.disks = {DiskSpec{image, true}};
  SnapshotFiles files{work_->path() / "disk-state", work_->path() / "disk-memory", {}};
  auto vm = engine_->boot(spec, files);
  ASSERT_TRUE(vm) << vm.error().message;
  auto ready = testing::wait_guest_ready(**vm, 120s);
  ASSERT_TRUE(ready) << ready.error().message << "\nconsole:\n" << (*vm)->console_output();
  const std::string ask = "disk\n";
  ASSERT_EQ(::write((*vm)->agent_fd(), ask.data(), ask.size()), static_cast<ssize_t>(ask.size()));
  auto got = testing::read_until((*vm)->agent_fd(), "echo:disk=kiln-disk-bytes!\n", 30s);
  EXPECT_TRUE(got) << got.error().message << "\nconsole:\n" << (*vm)->console_output();
  vm->reset();
  std::error_code ec;
  stdfs::remove(files.memory, ec);
}

TEST_F(VmQemuEngine, VmRestoreFromGarbageStateFailsFast) {
  ensure_baked();
  ASSERT_TRUE(baked_);
  SnapshotFiles bad{work_->path() / "garbage-state", files_->memory, {}};
  std::string junk(8192, '\0');
  for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((i * 7919) % 251);
  ASSERT_TRUE(fs::write_file_atomic(bad.state, junk));
  auto t0 = Clock::now();
  auto vm = engine_->restore(*spec_, bad);
  ASSERT_FALSE(vm);
  EXPECT_LT(ms_since(t0), 10000);
  EXPECT_NE(vm.error().message.find("rebake"), std::string::npos) << vm.error().message;
  EXPECT_NE(vm.error().message.find("qemu said"), std::string::npos) << vm.error().message;
  std::printf("[  message ] %s\n", vm.error().message.c_str());
}

TEST_F(VmQemuEngine, VmRestoreFromTruncatedStateFails) {
  ensure_baked();
  ASSERT_TRUE(baked_);
  auto whole = fs::read_file(files_->state, 64 << 20);
  ASSERT_TRUE(whole);
  SnapshotFiles cut{work_->path() / "cut-state", files_->memory, {}};
  ASSERT_TRUE(fs::write_file_atomic(cut.state, whole->substr(0, whole->size() / 2)));
  auto vm = engine_->restore(*spec_, cut);
  ASSERT_FALSE(vm);
  std::printf("[  message ] %s\n", vm.error().message.c_str());
}

TEST_F(VmQemuEngine, VmRestoreWithWrongMemorySizeIsRefused) {
  ensure_baked();
  ASSERT_TRUE(baked_);
  GuestSpec other = *spec_;
  other.memory_mib = 512;
  auto vm = engine_->restore(other, *files_);
  ASSERT_FALSE(vm);
  EXPECT_NE(vm.error().message.find("rebake"), std::string::npos) << vm.error().message;
}

TEST_F(VmQemuEngine, VmQemuFailingAtStartExplainsItself) {
  // A "kernel" qemu cannot load: qemu exits during machine init, after its sockets exist.
  SnapshotFiles files{work_->path() / "bad-state", work_->path() / "bad-memory", {}};
  GuestSpec spec = *spec_;
  spec.kernel = work_->path() / "not-a-kernel";
  ASSERT_TRUE(fs::write_file_atomic(spec.kernel, std::string(4096, 'x')));
  auto t0 = Clock::now();
  auto vm = engine_->boot(spec, files);
  ASSERT_FALSE(vm);
  EXPECT_LT(ms_since(t0), 10000);
  EXPECT_NE(vm.error().message.find("qemu said"), std::string::npos) << vm.error().message;
  std::printf("[  message ] %s\n", vm.error().message.c_str());
  spec.kernel = "/nonexistent/vmlinuz";
  auto missing = engine_->boot(spec, files);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("/nonexistent/vmlinuz"), std::string::npos);
}

TEST_F(VmQemuEngine, VmKilledQemuIsReported) {
  ensure_baked();
  ASSERT_TRUE(baked_);
  auto vm = engine_->restore(*spec_, *files_);
  ASSERT_TRUE(vm) << vm.error().message;
  pid_t pid = static_cast<qemu::QemuVm&>(**vm).pid();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  std::optional<std::string> exited;
  for (int i = 0; i < 500 && !exited; ++i) {
    exited = (*vm)->vmm_exited();
    if (!exited) ::usleep(2000);
  }
  ASSERT_TRUE(exited);
  EXPECT_NE(exited->find("signal 9"), std::string::npos) << *exited;
  // The agent channel sees EOF rather than hanging.
  auto r = testing::read_until((*vm)->agent_fd(), "never", 5s);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("EOF"), std::string::npos);
}

/// The value the guest's echo loop remembers ("set:V"), read with "get".
Result<std::string> guest_value(Vm& vm) {
  const std::string get = "get\n";
  if (::write(vm.agent_fd(), get.data(), get.size()) != static_cast<ssize_t>(get.size()))
    return make_error("write to agent socket failed");
  KILN_ASSIGN_OR_RETURN(auto got, testing::read_until(vm.agent_fd(), "echo:get=", 20s));
  const size_t at = got.find("echo:get=") + 9;
  while (got.find('\n', at) == std::string::npos) {
    KILN_ASSIGN_OR_RETURN(auto rest, testing::read_until(vm.agent_fd(), "\n", 5s));
    got += rest;
  }
  return got.substr(at, got.find('\n', at) - at);
}

/// Allocated bytes of a file (sparse files: only their data).
uint64_t allocated_bytes(const stdfs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

TEST_F(VmQemuEngine, VmLayerKeepsGuestStateAndLeavesParentIntact) {
  ensure_baked();
  ASSERT_TRUE(baked_);
  auto parent_before = digest_sparse_file(files_->memory);
  ASSERT_TRUE(parent_before) << parent_before.error().message;
  const SnapshotFiles layer{work_->path() / "layer-state", work_->path() / "layer-memory", {}};
  {
    auto t0 = Clock::now();
    auto vm = engine_->restore_for_layer(*spec_, *files_, layer);
    ASSERT_TRUE(vm) << vm.error().message;
    report("restore_for_layer: copy + spawn -> running", fmt::format("{:.0f} ms", ms_since(t0)));
    auto rt = round_trip(**vm, "set:in-the-layer");
    ASSERT_TRUE(rt) << rt.error().message << "\nconsole:\n" << (*vm)->console_output();
    auto t1 = Clock::now();
    auto saved = (*vm)->save_snapshot(layer);
    ASSERT_TRUE(saved) << saved.error().message;
    report("layer save_snapshot", fmt::format("{:.1f} ms", ms_since(t1)));
  }
  EXPECT_EQ(stdfs::file_size(layer.memory), uint64_t{spec_->memory_mib} << 20);
  // The copy kept the parent's holes: a layer costs the parent's touched pages plus what
  // the guest touched since, not all of RAM.
  const uint64_t parent_bytes = allocated_bytes(files_->memory);
  EXPECT_LE(allocated_bytes(layer.memory), parent_bytes + (16u << 20));
  EXPECT_LT(parent_bytes, uint64_t{spec_->memory_mib} << 20) << "the parent has no holes: the test proves nothing";
  report("layer / parent memory allocated",
         fmt::format("{} / {} KiB", allocated_bytes(layer.memory) >> 10, parent_bytes >> 10));
  auto parent_after = digest_sparse_file(files_->memory);
  ASSERT_TRUE(parent_after);
  EXPECT_EQ(*parent_before, *parent_after) << "building a layer modified its parent's memory file";

  // The layer restores (twice: it is not consumed) with the guest state it was saved with;
  // the parent still restores without it.
  for (int i = 0; i < 2; ++i) {
    auto vm = engine_->restore(*spec_, layer);
    ASSERT_TRUE(vm) << vm.error().message;
    auto got = guest_value(**vm);
    ASSERT_TRUE(got) << got.error().message;
    EXPECT_EQ(*got, "in-the-layer") << "the layer lost the guest state";
  }
  auto golden = engine_->restore(*spec_, *files_);
  ASSERT_TRUE(golden) << golden.error().message;
  auto golden_value = guest_value(**golden);
  ASSERT_TRUE(golden_value) << golden_value.error().message;
  EXPECT_EQ(*golden_value, "");

  // A VM from restore() has private RAM: saving it is refused with a pointer to the right call.
  auto saved = (*golden)->save_snapshot(layer);
  ASSERT_FALSE(saved);
  EXPECT_NE(saved.error().message.find("restore_for_layer"), std::string::npos) << saved.error().message;
}

TEST_F(VmQemuEngine, VmLayerFromBrokenParentIsRefused) {
  ensure_baked();
  ASSERT_TRUE(baked_);
  const SnapshotFiles layer{work_->path() / "bad-layer-state", work_->path() / "bad-layer-memory", {}};
  SnapshotFiles missing = *files_;
  missing.memory = work_->path() / "no-such-memory";
  auto vm = engine_->restore_for_layer(*spec_, missing, layer);
  ASSERT_FALSE(vm);
  EXPECT_NE(vm.error().message.find("no-such-memory"), std::string::npos) << vm.error().message;
  auto in_place = engine_->restore_for_layer(*spec_, *files_, *files_);
  ASSERT_FALSE(in_place);
  SnapshotFiles with_overlays = *files_;
  with_overlays.overlays.push_back(MemoryOverlay{work_->path() / "pages", {}});
  auto overlaid = engine_->restore_for_layer(*spec_, with_overlays, layer);
  ASSERT_FALSE(overlaid);
  EXPECT_NE(overlaid.error().message.find("flattened"), std::string::npos) << overlaid.error().message;
}

}  // namespace
}  // namespace kiln::vmm
