#include "vmm/kvm/cpu_identity.h"

#include "common/digest.h"
#include "vmm/kvm/msr_list.h"
#include "vmm/kvm/state_stream.h"

#include <fmt/format.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <tuple>
#include <cctype>

namespace kiln::vmm::kvm {
namespace {

/// 16 hex digits of XXH3-128: plenty to tell hosts apart, short enough for a key.
std::string short_digest(std::string_view bytes) { return digest_bytes(bytes).substr(0, 16); }

template <class T>
void append(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));  // plain integers, host byte order
}

/// The vendor ends up in a file name (the snapshot key) and in messages: [A-Za-z0-9_] only.
std::string alnum_only(std::string s) {
  std::replace_if(s.begin(), s.end(), [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); }, '_');
  return s;
}

std::string vendor_string(const CpuidTable& t) {
  const auto* e = find_cpuid(t, 0);
  if (!e) return "unknown";
  char v[12];
  std::memcpy(v, &e->ebx, 4);
  std::memcpy(v + 4, &e->edx, 4);
  std::memcpy(v + 8, &e->ecx, 4);
  return alnum_only(std::string(v, 12));
}

constexpr uint32_t kMaxIdentityField = 256;

/// KVM_GET_SUPPORTED_CPUID answers some fields from the host CPU that ran the ioctl:
/// its APIC ids. Zero them, and nothing else, so the table names the host, not the CPU.
CpuidTable without_host_apic_ids(CpuidTable t) {
  for (auto& e : t) {
    if (e.function == 1) e.ebx &= 0x00ffffffu;                          // initial APIC id
    if (e.function == 0xb || e.function == 0x1f) e.edx = 0;             // x2APIC id
    if (e.function == 0x8000001e) e.eax = e.ebx = e.ecx = e.edx = 0;    // AMD extended APIC, core, node ids
  }
  return t;
}

/// The identity of `supported` (vendor, family, model, stepping from it) with the CPUID
/// digest over `seen` (what the guest is given) and the MSR list and caps.
CpuIdentity describe(const CpuidTable& supported, CpuidTable seen, std::span<const uint32_t> msr_index_list,
                     const KvmCaps& caps) {
  CpuIdentity id;
  id.vendor = vendor_string(supported);
  if (const auto* leaf1 = find_cpuid(supported, 1)) {
    const uint32_t eax = leaf1->eax;
    const uint32_t base_family = (eax >> 8) & 0xf;
    id.stepping = eax & 0xf;
    id.family = base_family == 0xf ? base_family + ((eax >> 20) & 0xff) : base_family;
    id.model = (eax >> 4) & 0xf;
    if (base_family == 0x6 || base_family == 0xf) id.model |= ((eax >> 16) & 0xf) << 4;
  }
  std::sort(seen.begin(), seen.end(), [](const kvm_cpuid_entry2& a, const kvm_cpuid_entry2& b) {
    return std::tie(a.function, a.index) < std::tie(b.function, b.index);
  });
  std::string bytes;
  for (const auto& e : seen) {
    for (uint32_t v : {e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx}) append(bytes, v);
  }
  id.cpuid_digest = short_digest(bytes);
  std::vector<uint32_t> msrs(msr_index_list.begin(), msr_index_list.end());
  std::sort(msrs.begin(), msrs.end());
  bytes.clear();
  for (uint32_t m : msrs) append(bytes, m);
  id.msr_digest = short_digest(bytes);
  id.xsave_size = caps.xsave_size;
  id.api_version = caps.api_version;
  id.cap_flags = caps.flags();
  return id;
}

}  // namespace

uint32_t KvmCaps::flags() const {
  return (xsave2 ? 1u : 0u) | (sregs2 ? 2u : 0u) | (tsc_control ? 4u : 0u);
}

KvmCaps KvmCaps::query(int kvm_fd) {
  KvmCaps c;
  c.api_version = ioctl(kvm_fd, KVM_GET_API_VERSION, 0);
  const int xsave2 = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
  c.xsave2 = xsave2 > 0;
  c.xsave_size = c.xsave2 ? static_cast<uint32_t>(xsave2) : static_cast<uint32_t>(sizeof(kvm_xsave));
  c.sregs2 = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SREGS2) > 0;
  c.tsc_control = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_CONTROL) > 0;
  return c;
}

Result<KvmCaps> KvmCaps::probe(int kvm_fd) {
  const KvmCaps c = query(kvm_fd);
  if (c.api_version != KVM_API_VERSION)
    return make_error("/dev/kvm reports API version {}, kiln needs {}", c.api_version, KVM_API_VERSION);
  auto has = [&](long cap) { return ioctl(kvm_fd, KVM_CHECK_EXTENSION, cap) > 0; };
  struct Need {
    long cap;
    const char* name;
  };
  for (const Need& n : {Need{KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"}, Need{KVM_CAP_PIT2, "KVM_CAP_PIT2"},
                        Need{KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK"},
                        Need{KVM_CAP_XSAVE, "KVM_CAP_XSAVE"}, Need{KVM_CAP_XCRS, "KVM_CAP_XCRS"},
                        Need{KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS"},
                        Need{KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS"},
                        Need{KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
                        Need{KVM_CAP_GET_TSC_KHZ, "KVM_CAP_GET_TSC_KHZ"}})
    if (!has(n.cap))
      return make_error("this kernel's KVM lacks {}, which snapshot/restore needs; use --engine qemu", n.name);
  return c;
}

std::string CpuIdentity::to_string() const {
  return fmt::format("{}-{}.{}.{}-c{}-m{}-x{}-k{}.{}", vendor, family, model, stepping, cpuid_digest.substr(0, 8),
                     msr_digest.substr(0, 8), xsave_size, api_version, cap_flags);
}

CpuIdentity make_cpu_identity(const CpuidTable& supported, std::span<const uint32_t> msr_index_list,
                              const KvmCaps& caps) {
  // The guest CPUID of vCPU 0 in a 1-vCPU VM: KVM's table with the per-host-CPU
  // fields (APIC ids) overwritten, so it does not depend on which CPU ran the ioctl.
  return describe(supported, guest_cpuid(supported, 0, 1), msr_index_list, caps);
}

CpuIdentity make_passthrough_cpu_identity(const CpuidTable& supported, std::span<const uint32_t> msr_index_list,
                                          const KvmCaps& caps) {
  return describe(supported, without_host_apic_ids(supported), msr_index_list, caps);
}

Result<CpuIdentity> probe_cpu_identity(int kvm_fd, const KvmCaps& caps) {
  KILN_ASSIGN_OR_RETURN(auto cpuid, supported_cpuid(kvm_fd));
  KILN_ASSIGN_OR_RETURN(auto msrs, kvm_msr_index_list(kvm_fd));
  return make_cpu_identity(cpuid, msrs, caps);
}

Result<CpuIdentity> probe_passthrough_cpu_identity(int kvm_fd) {
  KILN_ASSIGN_OR_RETURN(auto cpuid, supported_cpuid(kvm_fd));
  KILN_ASSIGN_OR_RETURN(auto msrs, kvm_msr_index_list(kvm_fd));
  return make_passthrough_cpu_identity(cpuid, msrs, KvmCaps::query(kvm_fd));
}

void save_meta(StateWriter& out, const CpuIdentity& id) {
  out.begin_section("meta");
  out.string(id.vendor);
  out.u32(id.family);
  out.u32(id.model);
  out.u32(id.stepping);
  out.string(id.cpuid_digest);
  out.string(id.msr_digest);
  out.u32(id.xsave_size);
  out.u32(static_cast<uint32_t>(id.api_version));
  out.u32(id.cap_flags);
  out.end_section();
}

Result<void> check_meta(const StateReader& file, const CpuIdentity& host) {
  KILN_ASSIGN_OR_RETURN(SectionReader in, file.section("meta"));
  CpuIdentity saved;
  saved.vendor = alnum_only(in.string(kMaxIdentityField));
  saved.family = in.u32();
  saved.model = in.u32();
  saved.stepping = in.u32();
  saved.cpuid_digest = alnum_only(in.string(kMaxIdentityField));
  saved.msr_digest = alnum_only(in.string(kMaxIdentityField));
  saved.xsave_size = in.u32();
  saved.api_version = static_cast<int>(in.u32());
  saved.cap_flags = in.u32();
  KILN_TRY(in.finish());
  if (saved != host)
    return make_error("snapshot taken on another CPU or KVM ({}), this host is {}; rebake it here",
                      saved.to_string(), host.to_string());
  return {};
}

}  // namespace kiln::vmm::kvm
