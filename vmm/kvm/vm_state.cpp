#include "vmm/kvm/vm_state.h"

#include "common/log.h"
#include "vmm/kvm/state_stream.h"

#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

namespace kiln::vmm::kvm {
namespace {

constexpr uint32_t kKnownClockFlags = KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC;
/// KVM's mode for a PIT channel the guest never programmed.
constexpr uint8_t kPitModeUnset = 0xff;
constexpr uint32_t kKnownPitFlags = KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON;

Result<kvm_irqchip> get_chip(int vm_fd, uint32_t chip_id, const char* name) {
  kvm_irqchip chip{};
  chip.chip_id = chip_id;
  if (ioctl(vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
    return make_error("KVM_GET_IRQCHIP ({}) failed: {} (was KVM_CREATE_IRQCHIP done?)", name, std::strerror(errno));
  return chip;
}

Result<void> set_chip(int vm_fd, const kvm_irqchip& chip, const char* name) {
  if (ioctl(vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
    return make_error("KVM_SET_IRQCHIP ({}) failed: {}", name, std::strerror(errno));
  return {};
}

void read_chip(SectionReader& in, kvm_irqchip& chip, uint32_t expected_id, const char* name) {
  in.pod(chip);
  if (in.ok() && chip.chip_id != expected_id)
    in.fail(fmt::format("{} has chip id {}, expected {}", name, chip.chip_id, expected_id));
}

}  // namespace

Result<VmState> save_vm(int vm_fd) {
  VmState s;
  KILN_ASSIGN_OR_RETURN(s.pic_master, get_chip(vm_fd, KVM_IRQCHIP_PIC_MASTER, "PIC master"));
  KILN_ASSIGN_OR_RETURN(s.pic_slave, get_chip(vm_fd, KVM_IRQCHIP_PIC_SLAVE, "PIC slave"));
  KILN_ASSIGN_OR_RETURN(s.ioapic, get_chip(vm_fd, KVM_IRQCHIP_IOAPIC, "IOAPIC"));
  if (ioctl(vm_fd, KVM_GET_PIT2, &s.pit) < 0) return errno_error("KVM_GET_PIT2 (was KVM_CREATE_PIT2 done?)");
  if (ioctl(vm_fd, KVM_GET_CLOCK, &s.clock) < 0) return errno_error("KVM_GET_CLOCK");
  return s;
}

Result<void> restore_vm(int vm_fd, const VmState& s) {
  log::ScopedTimer t("kvm: restore vm: pit, clock, irqchip");
  if (ioctl(vm_fd, KVM_SET_PIT2, &s.pit) < 0) return errno_error("KVM_SET_PIT2");
  KILN_TRY(restore_clock(vm_fd, s.clock));
  KILN_TRY(set_chip(vm_fd, s.pic_master, "PIC master"));
  KILN_TRY(set_chip(vm_fd, s.pic_slave, "PIC slave"));
  return set_chip(vm_fd, s.ioapic, "IOAPIC");
}

Result<void> restore_clock(int vm_fd, const kvm_clock_data& saved) {
  kvm_clock_data clock{};
  clock.clock = saved.clock;
  clock.flags = 0;  // exactly the saved value: see vm_state.h
  if (ioctl(vm_fd, KVM_SET_CLOCK, &clock) < 0) return errno_error("KVM_SET_CLOCK");
  return {};
}

void save_vm_section(StateWriter& out, const VmState& s) {
  out.begin_section("vm");
  out.pod(s.pic_master);
  out.pod(s.pic_slave);
  out.pod(s.ioapic);
  out.pod(s.pit);
  out.u64(s.clock.clock);
  out.u32(s.clock.flags);
  out.u64(s.clock.realtime);
  out.u64(s.clock.host_tsc);
  out.end_section();
}

Result<VmState> load_vm_section(const StateReader& file) {
  KILN_ASSIGN_OR_RETURN(SectionReader in, file.section("vm"));
  VmState s;
  read_chip(in, s.pic_master, KVM_IRQCHIP_PIC_MASTER, "PIC master");
  read_chip(in, s.pic_slave, KVM_IRQCHIP_PIC_SLAVE, "PIC slave");
  read_chip(in, s.ioapic, KVM_IRQCHIP_IOAPIC, "IOAPIC");
  in.pod(s.pit);
  if (in.ok()) {
    if (s.pit.flags & ~kKnownPitFlags) in.fail(fmt::format("unknown PIT flags {:#x}", s.pit.flags));
    for (const auto& ch : s.pit.channels)
      if (ch.mode > 5 && ch.mode != kPitModeUnset)
        in.fail(fmt::format("PIT channel in mode {} (0..5, or 0xff when unprogrammed)", ch.mode));
  }
  s.clock.clock = in.u64();
  s.clock.flags = in.u32();
  s.clock.realtime = in.u64();
  s.clock.host_tsc = in.u64();
  if (in.ok() && (s.clock.flags & ~kKnownClockFlags)) in.fail(fmt::format("unknown clock flags {:#x}", s.clock.flags));
  KILN_TRY(in.finish());
  return s;
}

}  // namespace kiln::vmm::kvm
