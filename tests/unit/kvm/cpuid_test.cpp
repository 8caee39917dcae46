#include "vmm/kvm/cpuid.h"

#include "cpuid_test_table.h"

#include <asm/kvm_para.h>
#include <gtest/gtest.h>

#include <cstring>

namespace kiln::vmm::kvm {
namespace {

using testing::amd_epyc_supported_cpuid;

const kvm_cpuid_entry2& leaf(const CpuidTable& t, uint32_t function, uint32_t index = 0) {
  const auto* e = find_cpuid(t, function, index);
  if (!e) throw std::runtime_error("missing CPUID leaf");
  return *e;
}

bool has_bit(uint32_t reg, unsigned bit) { return (reg >> bit) & 1; }

kvm_cpuid_entry2 entry(uint32_t function, uint32_t index, uint32_t flags, uint32_t eax, uint32_t ebx,
                       uint32_t ecx, uint32_t edx) {
  kvm_cpuid_entry2 e{};
  e.function = function;
  e.index = index;
  e.flags = flags;
  e.eax = eax;
  e.ebx = ebx;
  e.ecx = ecx;
  e.edx = edx;
  return e;
}

/// A small Intel table: vendor, leaf 1 with VMX/PDCM, caches, PMU, topology v1 and v2.
CpuidTable intel_table() {
  const uint32_t sig = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  return {
      entry(0, 0, 0, 0x1f, 0x756e6547, 0x6c65746e, 0x49656e69),  // GenuineIntel
      entry(1, 0, 0, 0x000806f8, 0x05040800, 0xfffa3223 | (1u << 5) | (1u << 15), 0x1f8bfbff),
      entry(4, 0, sig, 0x1c004121, 0x01c0003f, 0x3f, 0),  // L1d
      entry(4, 1, sig, 0x1c004163, 0x03c0003f, 0xfff, 0),  // L3
      entry(4, 2, sig, 0, 0, 0, 0),
      entry(7, 0, sig, 2, 0x219c07ab | (1u << 2), (1u << 5) | (1u << 30), 1u << 29),
      entry(0xa, 0, 0, 0x08300805, 0, 0, 0x603),
      entry(0xb, 0, sig, 1, 2, 0x100, 7),
      entry(0xb, 1, sig, 7, 56, 0x201, 7),
      entry(0x1f, 0, sig, 1, 2, 0x100, 7),
      entry(0x80000000, 0, 0, 0x80000008, 0, 0, 0),
      entry(0x80000001, 0, 0, 0, 0, 0x121, 0x2c100800),
      entry(0x80000008, 0, 0, 0x3027, 0, 0, 0),
  };
}

TEST(GuestCpuid, PerVcpuApicIdsOnAmd) {
  const CpuidTable g = guest_cpuid(amd_epyc_supported_cpuid(), 3, 4);
  EXPECT_EQ(leaf(g, 1).ebx >> 24, 3u);                      // initial APIC id
  EXPECT_EQ((leaf(g, 1).ebx >> 16) & 0xff, 4u);             // logical CPUs per package
  EXPECT_EQ((leaf(g, 1).ebx >> 8) & 0xff, 8u);              // CLFLUSH line kept
  EXPECT_EQ(leaf(g, 0xb, 0).edx, 3u);                       // x2APIC id at every level
  EXPECT_EQ(leaf(g, 0xb, 1).edx, 3u);
  EXPECT_EQ(leaf(g, 0xb, 0).ebx, 1u);                       // one thread per core
  EXPECT_EQ(leaf(g, 0xb, 1).ebx, 4u);                       // four cores
  EXPECT_EQ(leaf(g, 0xb, 1).eax, 2u);                       // two APIC-id bits select the core
  EXPECT_EQ((leaf(g, 0xb, 1).ecx >> 8) & 0xff, 2u);         // level type: core
  EXPECT_EQ(leaf(g, 0x8000001e).eax, 3u);                   // extended APIC id
  EXPECT_EQ(leaf(g, 0x8000001e).ebx & 0xff, 3u);            // core id
  EXPECT_EQ(leaf(g, 0x80000008).ecx & 0xff, 3u);            // cores - 1
  EXPECT_EQ((leaf(g, 0x80000008).ecx >> 12) & 0xf, 2u);     // APIC-id bits
  EXPECT_TRUE(has_bit(leaf(g, 1).edx, 28));                 // HTT: more than one logical CPU
}

TEST(GuestCpuid, OneVcpuHasNoHtt) {
  const CpuidTable g = guest_cpuid(amd_epyc_supported_cpuid(), 0, 1);
  EXPECT_FALSE(has_bit(leaf(g, 1).edx, 28));
  EXPECT_EQ(leaf(g, 1).ebx >> 24, 0u);  // the table's own APIC id (1) is replaced
  EXPECT_EQ(leaf(g, 0xb, 1).eax, 0u);
  EXPECT_EQ(leaf(g, 0xb, 1).ebx, 1u);
}

TEST(GuestCpuid, AmdCacheSharing) {
  const CpuidTable g = guest_cpuid(amd_epyc_supported_cpuid(), 0, 4);
  EXPECT_EQ((leaf(g, 0x8000001d, 0).eax >> 14) & 0xfff, 0u);  // L1d: private
  EXPECT_EQ((leaf(g, 0x8000001d, 2).eax >> 14) & 0xfff, 0u);  // L2: private
  EXPECT_EQ((leaf(g, 0x8000001d, 3).eax >> 14) & 0xfff, 3u);  // L3: all four vCPUs
  EXPECT_EQ(leaf(g, 0x8000001d, 4).eax, 0u);                  // end of list untouched
}

TEST(GuestCpuid, HypervisorAndDeadlineTimerOnNestedVirtAndPmuOff) {
  const CpuidTable g = guest_cpuid(amd_epyc_supported_cpuid(), 0, 2);
  EXPECT_TRUE(has_bit(leaf(g, 1).ecx, 31));         // hypervisor
  EXPECT_TRUE(has_bit(leaf(g, 1).ecx, 24));         // TSC deadline
  EXPECT_FALSE(has_bit(leaf(g, 1).ecx, 5));         // VMX
  EXPECT_FALSE(has_bit(leaf(g, 0x80000001).ecx, 2));  // SVM
  EXPECT_FALSE(has_bit(leaf(g, 0x80000001).ecx, 23)); // core perf counters
  EXPECT_TRUE(has_bit(leaf(g, 0x80000001).ecx, 22));  // TOPOEXT kept: 0x8000001d/e are filled in
  EXPECT_FALSE(has_bit(leaf(g, 7, 0).edx, 29));       // no ARCH_CAPABILITIES on AMD
  EXPECT_EQ(leaf(g, 0xa).eax, 0u);
}

TEST(GuestCpuid, KvmParavirtLeavesAdvertiseKvmclockOnly) {
  const CpuidTable g = guest_cpuid(amd_epyc_supported_cpuid(), 0, 1);
  const auto& sig = leaf(g, KVM_CPUID_SIGNATURE);
  EXPECT_GE(sig.eax, uint32_t{KVM_CPUID_FEATURES});
  char name[12];
  std::memcpy(name, &sig.ebx, 4);
  std::memcpy(name + 4, &sig.ecx, 4);
  std::memcpy(name + 8, &sig.edx, 4);
  EXPECT_EQ(std::string(name, 9), "KVMKVMKVM");
  const uint32_t f = leaf(g, KVM_CPUID_FEATURES).eax;
  EXPECT_TRUE(has_bit(f, KVM_FEATURE_CLOCKSOURCE));
  EXPECT_TRUE(has_bit(f, KVM_FEATURE_CLOCKSOURCE2));
  EXPECT_TRUE(has_bit(f, KVM_FEATURE_CLOCKSOURCE_STABLE_BIT));
  EXPECT_FALSE(has_bit(f, KVM_FEATURE_ASYNC_PF));
  EXPECT_FALSE(has_bit(f, KVM_FEATURE_ASYNC_PF_INT));
  EXPECT_FALSE(has_bit(f, KVM_FEATURE_MIGRATION_CONTROL));
  EXPECT_TRUE(has_bit(f, KVM_FEATURE_PV_EOI));  // the table offers it; state lives in an MSR we save
  EXPECT_EQ(leaf(g, KVM_CPUID_FEATURES).edx, 0u);
}

TEST(GuestCpuid, AddsKvmLeavesWhenMissing) {
  CpuidTable t = intel_table();
  const CpuidTable g = guest_cpuid(t, 0, 1);
  ASSERT_NE(find_cpuid(g, KVM_CPUID_FEATURES), nullptr);
  EXPECT_TRUE(has_bit(leaf(g, KVM_CPUID_FEATURES).eax, KVM_FEATURE_CLOCKSOURCE2));
  EXPECT_EQ(leaf(g, KVM_CPUID_SIGNATURE).ebx, 0x4b4d564bu);  // "KVMK"
}

TEST(GuestCpuid, IntelTopologyCachesAndFeatures) {
  const CpuidTable g = guest_cpuid(intel_table(), 2, 3);
  EXPECT_EQ(cpuid_vendor(g), CpuVendor::intel);
  EXPECT_FALSE(has_bit(leaf(g, 1).ecx, 5));    // VMX
  EXPECT_FALSE(has_bit(leaf(g, 1).ecx, 15));   // PDCM
  EXPECT_EQ((leaf(g, 4, 0).eax >> 14) & 0xfff, 0u);   // L1d private
  EXPECT_EQ((leaf(g, 4, 1).eax >> 14) & 0xfff, 2u);   // L3 shared by 3
  EXPECT_EQ(leaf(g, 4, 0).eax >> 26, 2u);             // cores per package - 1
  EXPECT_EQ(leaf(g, 4, 2).eax, 0u);                   // terminator untouched
  EXPECT_FALSE(has_bit(leaf(g, 7, 0).ebx, 2));  // SGX
  EXPECT_FALSE(has_bit(leaf(g, 7, 0).ecx, 5));  // WAITPKG
  EXPECT_FALSE(has_bit(leaf(g, 7, 0).ecx, 30)); // SGX_LC
  EXPECT_TRUE(has_bit(leaf(g, 7, 0).edx, 29));  // ARCH_CAPABILITIES stays on Intel
  EXPECT_EQ(leaf(g, 0xa).eax, 0u);
  EXPECT_EQ(leaf(g, 0xa).edx, 0u);
  for (uint32_t fn : {0xbu, 0x1fu}) {
    EXPECT_EQ(leaf(g, fn, 0).edx, 2u);
    EXPECT_EQ(leaf(g, fn, 1).edx, 2u);
    EXPECT_EQ(leaf(g, fn, 1).ebx, 3u);
    EXPECT_EQ(leaf(g, fn, 1).eax, 2u);
  }
  // 0x80000008 ECX is reserved on Intel: left as KVM reported it.
  EXPECT_EQ(leaf(g, 0x80000008).ecx, 0u);
}

TEST(GuestCpuid, SameInputSameOutputAndClampedArguments) {
  const auto t = amd_epyc_supported_cpuid();
  const CpuidTable a = guest_cpuid(t, 1, 2), b = guest_cpuid(t, 1, 2);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(kvm_cpuid_entry2)), 0);
  // Out-of-range arguments are clamped, never produce an APIC id >= the vCPU count.
  const CpuidTable c = guest_cpuid(t, 99, 0);
  EXPECT_EQ(leaf(c, 1).ebx >> 24, 0u);
  const CpuidTable d = guest_cpuid(t, 500, 1000);
  EXPECT_EQ(leaf(d, 1).ebx >> 24, kMaxVcpus - 1);
}

TEST(FindCpuid, IndexMattersOnlyForSignificantIndexLeaves) {
  const auto t = amd_epyc_supported_cpuid();
  EXPECT_NE(find_cpuid(t, 1, 7), nullptr);             // leaf 1 ignores the subleaf
  EXPECT_NE(find_cpuid(t, 0xd, 2), nullptr);
  EXPECT_EQ(find_cpuid(t, 0xd, 3), nullptr);           // subleaf 3 not offered
  EXPECT_EQ(find_cpuid(t, 0x12345678), nullptr);
  EXPECT_EQ(cpuid_vendor(t), CpuVendor::amd);
  EXPECT_EQ(cpuid_vendor(CpuidTable{}), CpuVendor::other);
}

}  // namespace
}  // namespace kiln::vmm::kvm
