// What this host's /dev/kvm answers: capabilities, identity, CPUID and MSR tables,
// and that KVM takes the guest CPUID and MSR list kiln builds. Needs /dev/kvm (label kvm).
#include "vmm/kvm/cpu_identity.h"

#include "kvm_state_test_vm.h"

#include <asm/kvm_para.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace kiln::vmm::kvm {
namespace {

bool contains(const std::vector<uint32_t>& v, uint32_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

TEST(CpuIdentityKvm, ProbesAStableIdentity) {
  KILN_ASSIGN_TEST_VM(vm, 1, false);
  EXPECT_EQ(vm->caps.api_version, KVM_API_VERSION);
  EXPECT_GE(vm->caps.xsave_size, 4096u);
  auto a = probe_cpu_identity(vm->kvm.get(), vm->caps);
  auto b = probe_cpu_identity(vm->kvm.get(), vm->caps);
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(*a, *b);
  EXPECT_FALSE(a->vendor.empty());
  std::printf("host identity: %s\n", a->to_string().c_str());
}

TEST(CpuIdentityKvm, KvmTakesTheGuestCpuidOfEveryVcpu) {
  KILN_ASSIGN_TEST_VM(vm, 3, true);  // create() sets guest_cpuid() on each vCPU
  for (uint32_t i = 0; i < 3; ++i) {
    auto got = get_vcpu_cpuid(vm->vcpu(i));
    ASSERT_TRUE(got.ok()) << got.error().message;
    const auto* leaf1 = find_cpuid(*got, 1);
    ASSERT_NE(leaf1, nullptr);
    EXPECT_EQ(leaf1->ebx >> 24, i);
    EXPECT_TRUE((leaf1->ecx >> 31) & 1);
    const auto* kvm = find_cpuid(*got, KVM_CPUID_FEATURES);
    ASSERT_NE(kvm, nullptr);
    EXPECT_TRUE((kvm->eax >> KVM_FEATURE_CLOCKSOURCE2) & 1);
  }
}

TEST(CpuIdentityKvm, MsrListProbeKeepsWhatLinuxNeeds) {
  KILN_ASSIGN_TEST_VM(vm, 1, true);
  const auto& m = vm->msrs_to_save;
  for (uint32_t need : {kMsrIa32Tsc, kMsrIa32MiscEnable, kMsrMtrrDefType, 0x174u, 0xc0000081u, 0xc0000082u,
                        0xc0000084u, 0xc0000102u, 0x4b564d01u /* kvmclock */})
    EXPECT_TRUE(contains(m, need)) << "MSR 0x" << std::hex << need;
  auto listed = kvm_msr_index_list(vm->kvm.get());
  ASSERT_TRUE(listed.ok());
  const auto candidates = msr_save_candidates(*listed);
  for (uint32_t x : m) EXPECT_TRUE(contains(candidates, x));
  // Every probed MSR reads back in one batch, and the boot values stuck.
  auto values = get_msrs(vm->vcpu(0), m);
  ASSERT_TRUE(values.ok()) << values.error().message;
  for (const auto& e : *values) {
    if (e.index == kMsrIa32MiscEnable) {
      EXPECT_TRUE(e.data & 1) << "fast strings";
    }
    if (e.index == kMsrMtrrDefType) {
      EXPECT_EQ(e.data, 0x806u);
    }
  }
  std::printf("%zu of %zu candidate MSRs are saved\n", m.size(), candidates.size());
}

}  // namespace
}  // namespace kiln::vmm::kvm
