#include "vmm/kvm/cpuid.h"

#include <asm/kvm_para.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace kiln::vmm::kvm {
namespace {

constexpr uint32_t bit(unsigned n) { return 1u << n; }

void set_field(uint32_t& reg, unsigned lo, unsigned hi, uint32_t value) {
  const uint32_t width = hi - lo + 1;
  const uint32_t mask = (width == 32 ? ~0u : ((1u << width) - 1)) << lo;
  reg = (reg & ~mask) | ((value << lo) & mask);
}

/// A kvm_cpuid2 with room for kMaxCpuidEntries (calloc: no declared type, zeroed).
struct Cpuid2Deleter {
  void operator()(kvm_cpuid2* p) const { std::free(p); }
};
using Cpuid2Ptr = std::unique_ptr<kvm_cpuid2, Cpuid2Deleter>;

Cpuid2Ptr alloc_cpuid2(uint32_t nent) {
  void* raw = std::calloc(1, sizeof(kvm_cpuid2) + nent * sizeof(kvm_cpuid_entry2));
  if (!raw) throw std::bad_alloc();
  auto* c = static_cast<kvm_cpuid2*>(raw);
  c->nent = nent;
  return Cpuid2Ptr(c);
}

CpuidTable to_table(const kvm_cpuid2& c) { return CpuidTable(c.entries, c.entries + c.nent); }

/// Bits needed to number `count` things (0 for 1): the APIC-id field width per level.
uint32_t id_bits(uint32_t count) { return count <= 1 ? 0 : std::bit_width(count - 1); }

bool is_leaf(const kvm_cpuid_entry2& e, uint32_t function) { return e.function == function; }

void zero_leaf(CpuidTable& t, uint32_t function) {
  for (auto& e : t)
    if (is_leaf(e, function)) e.eax = e.ebx = e.ecx = e.edx = 0;
}

/// Leaf 0xb (and Intel's 0x1f): one thread per core, `count` cores, x2APIC id = index.
void set_extended_topology(CpuidTable& t, uint32_t function, uint32_t index, uint32_t count) {
  std::erase_if(t, [&](const kvm_cpuid_entry2& e) { return is_leaf(e, function); });
  kvm_cpuid_entry2 smt{};
  smt.function = function;
  smt.index = 0;
  smt.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  smt.eax = 0;                 // no bits of the APIC id select a thread
  smt.ebx = 1;                 // logical processors at this level
  smt.ecx = (1u << 8) | 0;     // level type 1 = SMT, level number 0
  smt.edx = index;
  kvm_cpuid_entry2 core = smt;
  core.index = 1;
  core.eax = id_bits(count);
  core.ebx = count;
  core.ecx = (2u << 8) | 1;    // level type 2 = core
  t.push_back(smt);
  t.push_back(core);
  // Subleaf 2 is absent: KVM answers zeros, level type 0 = end of the list.
}

void normalize_leaf1(kvm_cpuid_entry2& e, uint32_t index, uint32_t count) {
  set_field(e.ebx, 24, 31, index);                            // initial APIC id
  set_field(e.ebx, 16, 23, std::bit_ceil(count));             // logical processors per package
  if (((e.ebx >> 8) & 0xff) == 0) set_field(e.ebx, 8, 15, 8); // CLFLUSH line, 8 * 8 bytes
  e.ecx |= bit(31);  // running under a hypervisor
  e.ecx |= bit(24);  // TSC deadline timer: the in-kernel LAPIC always emulates it
  // Not honoured in a microVM, or state no KVM ioctl saves: MONITOR, VMX (nested
  // state would be lost by a snapshot), SMX, EST, TM2, PDCM (perf capabilities), DCA.
  e.ecx &= ~(bit(3) | bit(5) | bit(6) | bit(7) | bit(8) | bit(15) | bit(18));
  // ACPI thermal MSRs, TM, PBE: no such hardware. HTT only with more than one vCPU.
  e.edx &= ~(bit(22) | bit(29) | bit(31) | bit(28));
  if (count > 1) e.edx |= bit(28);
}

void normalize_cache_leaf(kvm_cpuid_entry2& e, uint32_t count, bool intel) {
  if ((e.eax & 0x1f) == 0) return;  // cache type 0: no more caches
  const uint32_t level = (e.eax >> 5) & 7;
  set_field(e.eax, 14, 25, level == 3 ? count - 1 : 0);  // vCPUs sharing this cache, minus 1
  if (intel) set_field(e.eax, 26, 31, count - 1);        // cores per package, minus 1
}

void normalize_kvm_leaves(CpuidTable& t) {
  auto* sig = find_cpuid(t, KVM_CPUID_SIGNATURE);
  if (!sig) {
    kvm_cpuid_entry2 e{};
    e.function = KVM_CPUID_SIGNATURE;
    std::memcpy(&e.ebx, "KVMK", 4);
    std::memcpy(&e.ecx, "VMKV", 4);
    std::memcpy(&e.edx, "M\0\0\0", 4);
    t.push_back(e);
    sig = &t.back();
  }
  sig->eax = std::max<uint32_t>(sig->eax, KVM_CPUID_FEATURES);
  auto* feat = find_cpuid(t, KVM_CPUID_FEATURES);
  if (!feat) {
    kvm_cpuid_entry2 e{};
    e.function = KVM_CPUID_FEATURES;
    t.push_back(e);
    feat = &t.back();
  }
  // kvmclock, always provided by KVM: the guest's clocksource, restored by KVM_SET_CLOCK.
  feat->eax |= bit(KVM_FEATURE_CLOCKSOURCE) | bit(KVM_FEATURE_CLOCKSOURCE2) |
               bit(KVM_FEATURE_CLOCKSOURCE_STABLE_BIT);
  // Async page faults leave guest tasks waiting for a "page ready" event that no
  // state ioctl saves; MMU_OP is obsolete; the rest serve confidential VMs or >255 CPUs.
  feat->eax &= ~(bit(KVM_FEATURE_ASYNC_PF) | bit(KVM_FEATURE_ASYNC_PF_VMEXIT) |
                 bit(KVM_FEATURE_ASYNC_PF_INT) | bit(KVM_FEATURE_MMU_OP) |
                 bit(KVM_FEATURE_MSI_EXT_DEST_ID) | bit(KVM_FEATURE_HC_MAP_GPA_RANGE) |
                 bit(KVM_FEATURE_MIGRATION_CONTROL));
  feat->ebx = feat->ecx = 0;
  feat->edx = 0;  // no KVM_HINTS_REALTIME: vCPUs are not pinned
}

}  // namespace

Result<CpuidTable> supported_cpuid(int kvm_fd) {
  auto c = alloc_cpuid2(kMaxCpuidEntries);
  if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c.get()) < 0)
    return make_error("KVM_GET_SUPPORTED_CPUID failed: {} (is /dev/kvm a working KVM?)",
                      std::strerror(errno));
  return to_table(*c);
}

CpuidTable guest_cpuid(const CpuidTable& supported, uint32_t vcpu_index, uint32_t vcpu_count) {
  vcpu_count = std::clamp<uint32_t>(vcpu_count, 1, kMaxVcpus);
  vcpu_index = std::min(vcpu_index, vcpu_count - 1);
  CpuidTable t = supported;
  const CpuVendor vendor = cpuid_vendor(t);
  const bool intel = vendor == CpuVendor::intel;
  const bool amd = vendor == CpuVendor::amd;

  if (auto* e = find_cpuid(t, 1)) normalize_leaf1(*e, vcpu_index, vcpu_count);
  for (auto& e : t) {
    if (is_leaf(e, 4) && intel) normalize_cache_leaf(e, vcpu_count, true);
    if (is_leaf(e, 0x8000001d) && amd) normalize_cache_leaf(e, vcpu_count, false);
  }
  if (auto* e = find_cpuid(t, 6)) {
    e->eax &= ~bit(1);  // turbo boost: not ours to promise
    e->ecx &= ~bit(3);  // energy-performance bias MSR: not emulated
  }
  if (auto* e = find_cpuid(t, 7, 0)) {
    e->ebx &= ~(bit(2) | bit(25));  // SGX (needs an EPC section), Intel PT (state not saved)
    e->ecx &= ~(bit(5) | bit(30));  // WAITPKG (UMWAIT control MSR), SGX launch control
    if (amd) e->edx &= ~bit(29);    // IA32_ARCH_CAPABILITIES: real AMD parts have none
  }
  zero_leaf(t, 0xa);   // no vPMU: counters are host state a snapshot cannot carry
  zero_leaf(t, 0x12);  // SGX
  zero_leaf(t, 0x14);  // Intel PT
  if (find_cpuid(t, 0xb)) set_extended_topology(t, 0xb, vcpu_index, vcpu_count);
  if (find_cpuid(t, 0x1f)) set_extended_topology(t, 0x1f, vcpu_index, vcpu_count);

  if (auto* e = find_cpuid(t, 0x80000001)) {
    e->ecx &= ~bit(2);   // SVM: nested state would be lost by a snapshot
    e->ecx &= ~bit(23);  // core performance counter extensions: no vPMU
  }
  if (auto* e = find_cpuid(t, 0x80000008); e && amd) {
    set_field(e->ecx, 0, 7, vcpu_count - 1);            // cores in the package, minus 1
    set_field(e->ecx, 12, 15, id_bits(vcpu_count));     // APIC-id bits for the core
  }
  zero_leaf(t, 0x8000000a);  // SVM features
  zero_leaf(t, 0x8000001f);  // SEV: no confidential computing
  zero_leaf(t, 0x80000022);  // AMD PerfMon v2
  if (auto* e = find_cpuid(t, 0x8000001e); e && amd) {
    e->eax = vcpu_index;                         // extended APIC id
    e->ebx = vcpu_index & 0xff;                  // core id; threads per core - 1 = 0
    e->ecx = 0;                                  // node 0, one node per package
    e->edx = 0;
  }
  normalize_kvm_leaves(t);
  return t;
}

Result<void> set_vcpu_cpuid(int vcpu_fd, std::span<const kvm_cpuid_entry2> table) {
  if (table.empty() || table.size() > kMaxCpuidEntries)
    return make_error("refusing a CPUID table of {} entries (1..{} expected)", table.size(),
                      kMaxCpuidEntries);
  auto c = alloc_cpuid2(static_cast<uint32_t>(table.size()));
  std::copy(table.begin(), table.end(), c->entries);
  if (ioctl(vcpu_fd, KVM_SET_CPUID2, c.get()) < 0)
    return make_error("KVM_SET_CPUID2 ({} entries) failed: {}", table.size(), std::strerror(errno));
  return {};
}

Result<CpuidTable> get_vcpu_cpuid(int vcpu_fd) {
  auto c = alloc_cpuid2(kMaxCpuidEntries);
  if (ioctl(vcpu_fd, KVM_GET_CPUID2, c.get()) < 0)
    return make_error("KVM_GET_CPUID2 failed: {}", std::strerror(errno));
  return to_table(*c);
}

const kvm_cpuid_entry2* find_cpuid(const CpuidTable& table, uint32_t function, uint32_t index) {
  for (const auto& e : table) {
    if (e.function != function) continue;
    if ((e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && e.index != index) continue;
    return &e;
  }
  return nullptr;
}

kvm_cpuid_entry2* find_cpuid(CpuidTable& table, uint32_t function, uint32_t index) {
  return const_cast<kvm_cpuid_entry2*>(find_cpuid(std::as_const(table), function, index));
}

CpuVendor cpuid_vendor(const CpuidTable& table) {
  const auto* e = find_cpuid(table, 0);
  if (!e) return CpuVendor::other;
  char v[12];
  std::memcpy(v, &e->ebx, 4);
  std::memcpy(v + 4, &e->edx, 4);
  std::memcpy(v + 8, &e->ecx, 4);
  const std::string_view s(v, 12);
  if (s == "GenuineIntel") return CpuVendor::intel;
  if (s == "AuthenticAMD" || s == "HygonGenuine") return CpuVendor::amd;
  return CpuVendor::other;
}

}  // namespace kiln::vmm::kvm
