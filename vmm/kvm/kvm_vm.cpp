#include "vmm/kvm/kvm_vm.h"

#include "common/log.h"

#include "vmm/kvm/linux_kvm.h"
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

namespace kiln::vmm::kvm {
namespace {

class KvmIrqLine final : public IrqLine {
 public:
  KvmIrqLine(const KvmVm& vm, uint32_t gsi) : vm_(vm), gsi_(gsi) {}
  uint32_t gsi() const override { return gsi_; }
  void pulse() override {
    vm_.set_irq(gsi_, true);
    vm_.set_irq(gsi_, false);
  }
  void set_level(bool high) override { vm_.set_irq(gsi_, high); }

 private:
  const KvmVm& vm_;
  uint32_t gsi_;
};

}  // namespace

Result<std::unique_ptr<KvmVm>> KvmVm::create(const KvmSystem& sys) {
  UniqueFd fd;
  {
    // Can cost 30-120 ms on kernel 6.1 hosts under cgroup v2 (bench/README.md): timed on its own.
    log::ScopedTimer t("kvm: KVM_CREATE_VM");
    fd.reset(::ioctl(sys.fd(), KVM_CREATE_VM, 0));
  }
  if (!fd) return errno_error("KVM_CREATE_VM");
  std::unique_ptr<KvmVm> vm(new KvmVm(std::move(fd)));
  // Intel VMX needs these below 4 GiB and outside RAM; harmless on AMD.
  if (::ioctl(vm->fd(), KVM_SET_TSS_ADDR, layout::kTssAddress) < 0) return errno_error("KVM_SET_TSS_ADDR");
  uint64_t identity = layout::kIdentityMapAddress;
  if (::ioctl(vm->fd(), KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0) return errno_error("KVM_SET_IDENTITY_MAP_ADDR");
  if (::ioctl(vm->fd(), KVM_CREATE_IRQCHIP, 0) < 0) return errno_error("KVM_CREATE_IRQCHIP");
  kvm_pit_config pit{};
  pit.flags = KVM_PIT_SPEAKER_DUMMY;  // port 0x61 handled in the kernel: Linux polls it to calibrate
  if (::ioctl(vm->fd(), KVM_CREATE_PIT2, &pit) < 0) return errno_error("KVM_CREATE_PIT2");
  return vm;
}

Result<void> KvmVm::map_memory(const GuestMemory& memory) {
  if (memory.size() > layout::kMmioStart)
    return make_error("guest RAM of {} MiB overlaps the device window at {:#x}: use at most {} MiB",
                      memory.size() >> 20, layout::kMmioStart, layout::kMmioStart >> 20);
  kvm_userspace_memory_region region{};
  region.slot = 0;
  region.guest_phys_addr = 0;
  region.memory_size = memory.size();
  region.userspace_addr = reinterpret_cast<uint64_t>(memory.host_base());
  if (::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) return errno_error("KVM_SET_USER_MEMORY_REGION");
  return {};
}

void KvmVm::set_irq(uint32_t gsi, bool high) const {
  kvm_irq_level level{};
  level.irq = gsi;
  level.level = high ? 1 : 0;
  if (::ioctl(fd_.get(), KVM_IRQ_LINE, &level) < 0)
    log::debug("kvm: KVM_IRQ_LINE gsi {} level {} failed: {}", gsi, level.level, std::strerror(errno));
}

std::unique_ptr<IrqLine> KvmVm::irq_line(uint32_t gsi) const { return std::make_unique<KvmIrqLine>(*this, gsi); }

}  // namespace kiln::vmm::kvm
