#include "vmm/kvm/vcpu_state.h"

#include "common/log.h"
#include "vmm/kvm/msr_list.h"
#include "vmm/kvm/state_stream.h"

#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace kiln::vmm::kvm {
namespace {

template <class T>
Result<T> get(int fd, unsigned long request, const char* what) {
  T v{};
  if (ioctl(fd, request, &v) < 0) return errno_error(what);
  return v;
}

template <class T>
Result<void> set(int fd, unsigned long request, const T& v, const char* what) {
  if (ioctl(fd, request, &v) < 0) return errno_error(what);
  return {};
}

template <class T>
std::span<const uint8_t> as_bytes(std::span<const T> v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size_bytes()};  // trivially copyable KVM ABI structs
}

/// A length-prefixed array of KVM ABI structs, at most `max` of them.
template <class T>
std::vector<T> read_array(SectionReader& in, size_t max, const char* what) {
  const std::string b = in.bytes(max * sizeof(T));
  std::vector<T> out;
  if (!in.ok()) return out;
  if (b.size() % sizeof(T) != 0) {
    in.fail(fmt::format("{}: {} bytes is not a whole number of {}-byte entries", what, b.size(), sizeof(T)));
    return out;
  }
  out.resize(b.size() / sizeof(T));
  if (!b.empty()) std::memcpy(out.data(), b.data(), b.size());
  return out;
}

/// Scale the guest TSC to the saved frequency when this host's differs by more than
/// calibration jitter; without KVM_CAP_TSC_CONTROL that is another CPU: rebake.
Result<void> restore_tsc_khz(int vcpu_fd, const KvmCaps& caps, uint32_t saved_khz) {
  if (saved_khz == 0) return {};  // not recorded: nothing to compare
  const int host_khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
  if (host_khz < 0) return errno_error("KVM_GET_TSC_KHZ");
  if (tsc_khz_compatible(saved_khz, static_cast<uint32_t>(host_khz))) return {};
  if (!caps.tsc_control)
    return make_error("snapshot's guest TSC runs at {} kHz, this host's at {} kHz and KVM cannot scale "
                      "it (no KVM_CAP_TSC_CONTROL): snapshot taken on another CPU; rebake",
                      saved_khz, host_khz);
  if (ioctl(vcpu_fd, KVM_SET_TSC_KHZ, static_cast<unsigned long>(saved_khz)) < 0) return errno_error("KVM_SET_TSC_KHZ");
  return {};
}

/// MP state, regs, sregs, XSAVE, XCRs, debug registers, LAPIC — in that order: the
/// LAPIC after sregs, which carry the APIC base.
Result<void> restore_registers(int vcpu_fd, const VcpuState& s) {
  KILN_TRY(set(vcpu_fd, KVM_SET_MP_STATE, s.mp_state, "KVM_SET_MP_STATE"));
  KILN_TRY(set(vcpu_fd, KVM_SET_REGS, s.regs, "KVM_SET_REGS"));
  if (s.has_sregs2) {
    KILN_TRY(set(vcpu_fd, KVM_SET_SREGS2, s.sregs2, "KVM_SET_SREGS2"));
  } else {
    KILN_TRY(set(vcpu_fd, KVM_SET_SREGS, s.sregs, "KVM_SET_SREGS"));
  }
  // KVM_SET_XSAVE reads as many bytes as KVM_CAP_XSAVE2 reported (the caller checked the size).
  if (ioctl(vcpu_fd, KVM_SET_XSAVE, s.xsave.data()) < 0) return errno_error("KVM_SET_XSAVE");
  KILN_TRY(set(vcpu_fd, KVM_SET_XCRS, s.xcrs, "KVM_SET_XCRS"));
  KILN_TRY(set(vcpu_fd, KVM_SET_DEBUGREGS, s.debugregs, "KVM_SET_DEBUGREGS"));
  return set(vcpu_fd, KVM_SET_LAPIC, s.lapic, "KVM_SET_LAPIC");
}

/// Restore MSRs with IA32_TSC_DEADLINE last: KVM arms the deadline timer against
/// the TSC, so the TSC must already hold its restored value.
Result<void> restore_msrs(int vcpu_fd, const std::vector<kvm_msr_entry>& msrs) {
  std::vector<kvm_msr_entry> first, deferred;
  uint64_t tsc = 0;
  for (const auto& e : msrs) {
    (e.index == kMsrIa32TscDeadline ? deferred : first).push_back(e);
    if (e.index == kMsrIa32Tsc) tsc = e.data;
  }
  // A zero deadline would leave the timer disarmed; a guest caught between the timer
  // firing and re-arming it would then wait forever. Arming it at "now" costs one
  // spurious tick that Linux ignores (Firecracker does the same).
  for (auto& e : deferred)
    if (e.data == 0) e.data = tsc;
  KILN_TRY(set_msrs(vcpu_fd, first));
  return set_msrs(vcpu_fd, deferred);
}

}  // namespace

bool tsc_khz_compatible(uint32_t saved_khz, uint32_t host_khz) {
  const int64_t diff = std::llabs(int64_t{saved_khz} - int64_t{host_khz});
  return diff * 1'000'000 <= int64_t{saved_khz} * 250;
}

Result<void> restore_tsc(int vcpu_fd, std::span<const kvm_msr_entry> msrs) {
  std::vector<kvm_msr_entry> timer;
  for (const auto& e : msrs)
    if (e.index == kMsrIa32Tsc || e.index == kMsrIa32TscDeadline) timer.push_back(e);
  return restore_msrs(vcpu_fd, timer);
}

Result<VcpuState> save_vcpu(int vcpu_fd, const KvmCaps& caps, std::span<const uint32_t> msrs) {
  VcpuState s;
  // KVM_GET_MP_STATE first: it lets the LAPIC accept pending INIT/SIPI events,
  // which changes state the later reads return.
  KILN_ASSIGN_OR_RETURN(s.mp_state, get<kvm_mp_state>(vcpu_fd, KVM_GET_MP_STATE, "KVM_GET_MP_STATE"));
  KILN_ASSIGN_OR_RETURN(s.regs, get<kvm_regs>(vcpu_fd, KVM_GET_REGS, "KVM_GET_REGS"));
  s.has_sregs2 = caps.sregs2;
  if (caps.sregs2) {
    KILN_ASSIGN_OR_RETURN(s.sregs2, get<kvm_sregs2>(vcpu_fd, KVM_GET_SREGS2, "KVM_GET_SREGS2"));
  } else {
    KILN_ASSIGN_OR_RETURN(s.sregs, get<kvm_sregs>(vcpu_fd, KVM_GET_SREGS, "KVM_GET_SREGS"));
  }
  if (caps.xsave_size < sizeof(kvm_xsave))
    return make_error("KVM reports an XSAVE area of {} bytes, less than struct kvm_xsave", caps.xsave_size);
  s.xsave.assign(caps.xsave_size, 0);
  if (ioctl(vcpu_fd, caps.xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, s.xsave.data()) < 0)
    return errno_error(caps.xsave2 ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE");
  KILN_ASSIGN_OR_RETURN(s.xcrs, get<kvm_xcrs>(vcpu_fd, KVM_GET_XCRS, "KVM_GET_XCRS"));
  KILN_ASSIGN_OR_RETURN(s.debugregs, get<kvm_debugregs>(vcpu_fd, KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS"));
  KILN_ASSIGN_OR_RETURN(s.lapic, get<kvm_lapic_state>(vcpu_fd, KVM_GET_LAPIC, "KVM_GET_LAPIC"));
  const int khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
  if (khz < 0) return errno_error("KVM_GET_TSC_KHZ");
  s.tsc_khz = static_cast<uint32_t>(khz);
  KILN_ASSIGN_OR_RETURN(s.cpuid, get_vcpu_cpuid(vcpu_fd));
  KILN_ASSIGN_OR_RETURN(s.msrs, get_msrs(vcpu_fd, msrs));
  // Events last: the reads above may still move a pending event into the LAPIC.
  KILN_ASSIGN_OR_RETURN(s.events, get<kvm_vcpu_events>(vcpu_fd, KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS"));
  return s;
}

Result<void> restore_vcpu(int vcpu_fd, const KvmCaps& caps, const VcpuState& s) {
  if (s.xsave.size() != caps.xsave_size)
    return make_error("vCPU state has a {}-byte XSAVE area, this host's KVM uses {}: snapshot taken on "
                      "another CPU or kernel; rebake",
                      s.xsave.size(), caps.xsave_size);
  if (s.has_sregs2 && !caps.sregs2)
    return make_error("snapshot needs KVM_SET_SREGS2, which this kernel lacks: rebake on this host");
  KILN_TRY(restore_tsc_khz(vcpu_fd, caps, s.tsc_khz));
  {
    log::ScopedTimer t("kvm: restore vcpu: cpuid");
    KILN_TRY(set_vcpu_cpuid(vcpu_fd, s.cpuid));
  }
  {
    log::ScopedTimer t("kvm: restore vcpu: registers, xsave, lapic");
    KILN_TRY(restore_registers(vcpu_fd, s));
  }
  {
    log::ScopedTimer t("kvm: restore vcpu: msrs");
    KILN_TRY(restore_msrs(vcpu_fd, s.msrs));
  }
  kvm_vcpu_events events = s.events;
  // GET never sets these two flags; without them SET ignores a pending NMI and the SIPI vector.
  events.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
  KILN_TRY(set(vcpu_fd, KVM_SET_VCPU_EVENTS, events, "KVM_SET_VCPU_EVENTS"));
  // Tell a kvmclock guest it was paused, so its soft-lockup watchdog does not fire.
  // EINVAL just means the guest has not enabled kvmclock (yet): nothing to tell.
  (void)ioctl(vcpu_fd, KVM_KVMCLOCK_CTRL, 0);
  return {};
}

void save_vcpu_section(StateWriter& out, uint32_t index, const VcpuState& s) {
  out.begin_section("vcpu." + std::to_string(index));
  out.bytes(as_bytes(std::span<const kvm_cpuid_entry2>(s.cpuid)));
  out.pod(s.mp_state);
  out.pod(s.regs);
  out.u8(s.has_sregs2 ? 1 : 0);
  if (s.has_sregs2) {
    out.pod(s.sregs2);
  } else {
    out.pod(s.sregs);
  }
  out.bytes(s.xsave);
  out.pod(s.xcrs);
  out.pod(s.debugregs);
  out.pod(s.lapic);
  out.bytes(as_bytes(std::span<const kvm_msr_entry>(s.msrs)));
  out.pod(s.events);
  out.u32(s.tsc_khz);
  out.end_section();
}

Result<VcpuState> load_vcpu_section(const StateReader& file, uint32_t index, const KvmCaps& caps) {
  KILN_ASSIGN_OR_RETURN(SectionReader in, file.section("vcpu." + std::to_string(index)));
  VcpuState s;
  s.cpuid = read_array<kvm_cpuid_entry2>(in, kMaxCpuidEntries, "CPUID table");
  if (in.ok() && s.cpuid.empty()) in.fail("empty CPUID table");
  in.pod(s.mp_state);
  if (in.ok() && s.mp_state.mp_state > KVM_MP_STATE_SUSPENDED)
    in.fail(fmt::format("unknown MP state {}", s.mp_state.mp_state));
  in.pod(s.regs);
  const uint8_t sregs2 = in.u8();
  if (sregs2 > 1) in.fail("sregs kind is neither 0 nor 1");
  s.has_sregs2 = sregs2 == 1;
  if (s.has_sregs2) {
    in.pod(s.sregs2);
  } else {
    in.pod(s.sregs);
  }
  const std::string xsave = in.bytes(kMaxStateFileBytes);
  s.xsave.assign(xsave.begin(), xsave.end());
  if (in.ok() && s.xsave.size() != caps.xsave_size)
    in.fail(fmt::format("XSAVE area of {} bytes where this host's KVM uses {}: snapshot taken on another "
                        "CPU or kernel; rebake",
                        s.xsave.size(), caps.xsave_size));
  in.pod(s.xcrs);
  if (in.ok() && s.xcrs.nr_xcrs > KVM_MAX_XCRS) in.fail(fmt::format("{} XCRs (at most {})", s.xcrs.nr_xcrs, KVM_MAX_XCRS));
  in.pod(s.debugregs);
  in.pod(s.lapic);
  s.msrs = read_array<kvm_msr_entry>(in, kMaxSavedMsrs, "MSR list");
  in.pod(s.events);
  s.tsc_khz = in.u32();
  KILN_TRY(in.finish());
  if (s.has_sregs2 && !caps.sregs2)
    return make_error("state file section vcpu.{} needs KVM_SET_SREGS2, which this kernel lacks: rebake", index);
  return s;
}

}  // namespace kiln::vmm::kvm
