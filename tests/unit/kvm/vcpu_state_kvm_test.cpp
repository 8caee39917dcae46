// Save a running VM's CPU and VM state, restore it into a fresh VM, and check the
// state matches and the guest carries on where it stopped. Needs /dev/kvm (label kvm).
#include "vmm/kvm/vcpu_state.h"

#include "common/log.h"
#include "kvm_state_test_vm.h"
#include "vmm/kvm/state_stream.h"
#include "vmm/kvm/vm_state.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>

namespace kiln::vmm::kvm {
namespace {

using testing::TestVm;

// Real-mode guest at 0x1000: `inc ax; out 0x10, al; jmp 0x1000` — every KVM_RUN
// exits with the next counter value on port 0x10.
constexpr uint8_t kCounterLoop[] = {0x40, 0xe6, 0x10, 0xeb, 0xfb};
constexpr uint64_t kCodeAddress = 0x1000;
constexpr uint64_t kLstar = 0xffffffff81a00000ull;
constexpr uint64_t kKernelGsBase = 0xffff888003c00000ull;
constexpr uint64_t kStartTsc = 1'000'000'000ull;
constexpr uint32_t kMsrKvmSystemTimeNew = 0x4b564d01;
constexpr uint64_t kPvclockAddress = 0x2000;

/// The kvmclock page KVM keeps in guest RAM (struct pvclock_vcpu_time_info).
struct Pvclock {
  uint32_t version, pad0;
  uint64_t tsc_timestamp, system_time;
  uint32_t tsc_to_system_mul;
  int8_t tsc_shift;
  uint8_t flags, pad[2];
};
static_assert(sizeof(Pvclock) == 32);
constexpr uint8_t kPvclockGuestStopped = 2;

Pvclock pvclock(const TestVm& vm) {
  Pvclock p;
  std::memcpy(&p, vm.ram + kPvclockAddress, sizeof p);  // kPvclockAddress + 32 < kTestRamBytes
  return p;
}

void start_counter(TestVm& vm, int vcpu_fd) {
  std::copy(std::begin(kCounterLoop), std::end(kCounterLoop), vm.ram + kCodeAddress);
  kvm_sregs sregs{};
  ASSERT_EQ(ioctl(vcpu_fd, KVM_GET_SREGS, &sregs), 0);
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  ASSERT_EQ(ioctl(vcpu_fd, KVM_SET_SREGS, &sregs), 0);
  kvm_regs regs{};
  regs.rip = kCodeAddress;
  regs.rflags = 2;
  regs.rbx = 0x1122334455667788;  // untouched by the guest: must survive the restore
  regs.r15 = 0x0f0f0f0f0f0f0f0f;
  ASSERT_EQ(ioctl(vcpu_fd, KVM_SET_REGS, &regs), 0);
}

/// Run until the guest's next OUT to port 0x10; the counter it wrote.
int run_to_out(const testing::TestVcpu& v) {
  if (ioctl(v.fd.get(), KVM_RUN, 0) < 0) return -1;
  if (v.run->exit_reason != KVM_EXIT_IO || v.run->io.port != 0x10) return -2;
  return reinterpret_cast<const uint8_t*>(v.run)[v.run->io.data_offset];  // inside the kvm_run mapping
}

/// Finish the OUT KVM just exited for, without running further: KVM completes an
/// I/O exit only on the next KVM_RUN, and a snapshot must not catch it half done.
void complete_pending_io(const testing::TestVcpu& v) {
  v.run->immediate_exit = 1;
  const int r = ioctl(v.fd.get(), KVM_RUN, 0);
  EXPECT_TRUE(r < 0 && errno == EINTR) << "KVM_RUN with immediate_exit returned " << r;
  v.run->immediate_exit = 0;
}

std::map<uint32_t, uint64_t> msr_map(const std::vector<kvm_msr_entry>& v) {
  std::map<uint32_t, uint64_t> m;
  for (const auto& e : v) m[e.index] = e.data;
  return m;
}

template <class T>
bool same(const T& a, const T& b) { return std::memcmp(&a, &b, sizeof(T)) == 0; }

TEST(VcpuStateKvm, SaveRestoreIntoAFreshVmAndRunOn) {
  KILN_ASSIGN_TEST_VM(a, 2, true);
  ASSERT_FALSE(a->msrs_to_save.empty());

  // Distinctive state in every part we save.
  // kvmclock on (as a Linux guest turns it on): KVM keeps its page at kPvclockAddress.
  kvm_msr_entry set[] = {{0xc0000082, 0, kLstar},
                         {0xc0000102, 0, kKernelGsBase},
                         {kMsrIa32Tsc, 0, kStartTsc},
                         {kMsrKvmSystemTimeNew, 0, kPvclockAddress | 1}};
  ASSERT_TRUE(set_msrs(a->vcpu(0), set).ok());
  kvm_debugregs dbg{};
  ASSERT_EQ(ioctl(a->vcpu(0), KVM_GET_DEBUGREGS, &dbg), 0);
  dbg.db[0] = 0x123456;
  dbg.db[3] = 0xabcdef;
  ASSERT_EQ(ioctl(a->vcpu(0), KVM_SET_DEBUGREGS, &dbg), 0);
  kvm_lapic_state lapic{};
  ASSERT_EQ(ioctl(a->vcpu(0), KVM_GET_LAPIC, &lapic), 0);
  lapic.regs[0x80] = 0x20;  // task priority
  ASSERT_EQ(ioctl(a->vcpu(0), KVM_SET_LAPIC, &lapic), 0);
  start_counter(*a, a->vcpu(0));
  ASSERT_EQ(run_to_out(*a->vcpus[0]), 1);
  ASSERT_EQ(run_to_out(*a->vcpus[0]), 2);
  complete_pending_io(*a->vcpus[0]);

  // Save both vCPUs and the VM, through the state file format.
  auto identity = probe_cpu_identity(a->kvm.get(), a->caps);
  ASSERT_TRUE(identity.ok()) << identity.error().message;
  StateWriter w;
  save_meta(w, *identity);
  auto vm_state = save_vm(a->vm.get());
  ASSERT_TRUE(vm_state.ok()) << vm_state.error().message;
  save_vm_section(w, *vm_state);
  std::vector<VcpuState> saved;
  for (uint32_t i = 0; i < 2; ++i) {
    auto s = save_vcpu(a->vcpu(i), a->caps, a->msrs_to_save);
    ASSERT_TRUE(s.ok()) << s.error().message;
    save_vcpu_section(w, i, *s);
    saved.push_back(std::move(*s));
  }
  const std::string file = w.finish();
  EXPECT_EQ(msr_map(saved[0].msrs).at(0xc0000082), kLstar);

  // Restore into a fresh VM with a copy of the RAM, as a restore from a snapshot would.
  KILN_ASSIGN_TEST_VM(b, 2, false);
  std::memcpy(b->ram, a->ram, testing::kTestRamBytes);
  auto reader = StateReader::parse(file);
  ASSERT_TRUE(reader.ok()) << reader.error().message;
  ASSERT_TRUE(check_meta(*reader, *identity).ok());
  auto loaded_vm = load_vm_section(*reader);
  ASSERT_TRUE(loaded_vm.ok()) << loaded_vm.error().message;
  std::vector<VcpuState> loaded;
  for (uint32_t i = 0; i < 2; ++i) {
    auto l = load_vcpu_section(*reader, i, b->caps);
    ASSERT_TRUE(l.ok()) << l.error().message;
    loaded.push_back(std::move(*l));
  }
  log::set_timings(true);  // the restore steps' timers print their share
  const auto t0 = std::chrono::steady_clock::now();
  auto r = restore_vm(b->vm.get(), *loaded_vm);
  ASSERT_TRUE(r.ok()) << r.error().message;
  for (uint32_t i = 0; i < 2; ++i) {
    auto rv = restore_vcpu(b->vcpu(i), b->caps, loaded[i]);
    ASSERT_TRUE(rv.ok()) << "vCPU " << i << ": " << rv.error().message;
  }
  const auto t1 = std::chrono::steady_clock::now();
  log::set_timings(false);
  std::printf("restore_vm + 2 x restore_vcpu (%zu MSRs each): %lld us\n", loaded[0].msrs.size(),
              static_cast<long long>(std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count()));

  // The restored state reads back as saved.
  for (uint32_t i = 0; i < 2; ++i) {
    SCOPED_TRACE("vCPU " + std::to_string(i));
    auto again = save_vcpu(b->vcpu(i), b->caps, a->msrs_to_save);
    ASSERT_TRUE(again.ok()) << again.error().message;
    const VcpuState& s = saved[i];
    EXPECT_TRUE(same(again->regs, s.regs));
    EXPECT_EQ(again->mp_state.mp_state, s.mp_state.mp_state);
    if (s.has_sregs2) {
      EXPECT_TRUE(same(again->sregs2, s.sregs2));
    } else {
      EXPECT_TRUE(same(again->sregs, s.sregs));
    }
    EXPECT_EQ(again->xsave, s.xsave);
    EXPECT_TRUE(same(again->xcrs, s.xcrs));
    EXPECT_EQ(again->debugregs.db[0], s.debugregs.db[0]);
    EXPECT_EQ(again->debugregs.db[3], s.debugregs.db[3]);
    EXPECT_EQ(again->debugregs.dr7, s.debugregs.dr7);
    // The LAPIC timer's current count (0x390) runs on; everything else is state.
    kvm_lapic_state l1 = again->lapic, l2 = s.lapic;
    std::memset(l1.regs + 0x390, 0, 4);
    std::memset(l2.regs + 0x390, 0, 4);
    EXPECT_TRUE(same(l1, l2));
    ASSERT_EQ(again->cpuid.size(), s.cpuid.size());
    EXPECT_EQ(std::memcmp(again->cpuid.data(), s.cpuid.data(), s.cpuid.size() * sizeof(kvm_cpuid_entry2)), 0);
    auto before = msr_map(s.msrs), after = msr_map(again->msrs);
    const uint64_t tsc_before = before[kMsrIa32Tsc], tsc_after = after[kMsrIa32Tsc];
    // The TSC resumes from its saved value: never backwards, and not by more than
    // the seconds this test takes (no jump by the time between bake and restore).
    EXPECT_GE(tsc_after, tsc_before);
    EXPECT_LT(tsc_after - tsc_before, uint64_t{s.tsc_khz} * 1000 * 5);
    before.erase(kMsrIa32Tsc);
    after.erase(kMsrIa32Tsc);
    for (const auto& [index, value] : before) EXPECT_EQ(after[index], value) << "MSR 0x" << std::hex << index;
    EXPECT_EQ(again->events.exception.injected, s.events.exception.injected);
    EXPECT_EQ(again->events.interrupt.injected, s.events.interrupt.injected);
    EXPECT_EQ(again->events.nmi.pending, s.events.nmi.pending);
  }
  EXPECT_EQ(msr_map(saved[0].msrs).at(0xc0000102), kKernelGsBase);

  // VM state: irqchips as saved; kvmclock resumes from the saved value.
  auto vm_again = save_vm(b->vm.get());
  ASSERT_TRUE(vm_again.ok()) << vm_again.error().message;
  EXPECT_TRUE(same(vm_again->pic_master, vm_state->pic_master));
  EXPECT_TRUE(same(vm_again->pic_slave, vm_state->pic_slave));
  EXPECT_TRUE(same(vm_again->ioapic, vm_state->ioapic));
  EXPECT_EQ(vm_again->pit.channels[0].mode, vm_state->pit.channels[0].mode);
  EXPECT_EQ(vm_again->pit.channels[0].count, vm_state->pit.channels[0].count);
  EXPECT_GE(vm_again->clock.clock, vm_state->clock.clock);
  EXPECT_LT(vm_again->clock.clock - vm_state->clock.clock, 5'000'000'000ull);

  // The guest carries on exactly where it stopped, in both VMs.
  const Pvclock at_save = pvclock(*b);  // copied with the RAM: A's last kvmclock update
  ASSERT_NE(at_save.version, 0u) << "KVM never wrote the kvmclock page";
  EXPECT_EQ(run_to_out(*b->vcpus[0]), 3);
  // Entering B rewrote the page: kvmclock resumes from the saved clock (no jump by
  // the time the snapshot sat around), and says the vCPU was stopped (KVMCLOCK_CTRL).
  const Pvclock resumed = pvclock(*b);
  EXPECT_NE(resumed.version, at_save.version);
  EXPECT_GE(resumed.system_time, at_save.system_time);
  EXPECT_LT(resumed.system_time - vm_state->clock.clock, 5'000'000'000ull);
  EXPECT_TRUE(resumed.flags & kPvclockGuestStopped);
  EXPECT_EQ(run_to_out(*b->vcpus[0]), 4);
  EXPECT_EQ(run_to_out(*a->vcpus[0]), 3);
  kvm_regs regs{};
  ASSERT_EQ(ioctl(b->vcpu(0), KVM_GET_REGS, &regs), 0);
  EXPECT_EQ(regs.rbx, 0x1122334455667788u);
  EXPECT_EQ(regs.r15, 0x0f0f0f0f0f0f0f0fu);
}

TEST(VcpuStateKvm, ForeignXsaveSizeIsRefusedBeforeAnyIoctl) {
  KILN_ASSIGN_TEST_VM(a, 1, true);
  auto s = save_vcpu(a->vcpu(0), a->caps, a->msrs_to_save);
  ASSERT_TRUE(s.ok()) << s.error().message;
  KILN_ASSIGN_TEST_VM(b, 1, false);
  KvmCaps other = b->caps;
  other.xsave_size += 64;
  auto r = restore_vcpu(b->vcpu(0), other, *s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("another CPU or kernel"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace kiln::vmm::kvm
