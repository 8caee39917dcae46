#include "vmm/kvm/kvm_system.h"

#include "common/clock.h"
#include "common/log.h"
#include "vmm/kvm/vcpu_kick.h"

#include <fcntl.h>
#include "vmm/kvm/linux_kvm.h"
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <future>
#include <thread>

namespace kiln::vmm::kvm {
namespace {

constexpr const char* kUseQemu = "use --engine qemu";

struct RequiredCap {
  unsigned cap;
  const char* name;
};
// Everything the VMM and its snapshot code call: missing any of them is a clear
// "this host cannot run the kvm engine", not a failure halfway through a boot.
constexpr RequiredCap kRequiredCaps[] = {
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"},
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
    {KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS"},
    {KVM_CAP_XSAVE, "KVM_CAP_XSAVE"},
    {KVM_CAP_XCRS, "KVM_CAP_XCRS"},
    {KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK"},
    {KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
};

// Real mode at 0x1000: mov dx, 0x5a; mov al, 0x4b; out dx, al; hlt.
constexpr uint8_t kProbeCode[] = {0xba, 0x5a, 0x00, 0xb0, 0x4b, 0xee, 0xf4};
constexpr uint64_t kProbeMemory = 0x10000;

Error probe_error(const std::string& step) {
  return make_error("KVM cannot run guests on this host: {} failed: {}", step, std::strerror(errno));
}

}  // namespace

Result<KvmSystem> KvmSystem::open() {
  UniqueFd fd(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!fd) {
    int e = errno;
    if (e == ENOENT)
      return make_error("/dev/kvm does not exist (no hardware virtualisation, or the kvm module is not loaded); {}",
                        kUseQemu);
    if (e == EACCES || e == EPERM)
      return make_error("cannot open /dev/kvm: {} (add your user to the 'kvm' group, or {})", std::strerror(e),
                        kUseQemu);
    return make_error("cannot open /dev/kvm: {}; {}", std::strerror(e), kUseQemu);
  }
  int api = ::ioctl(fd.get(), KVM_GET_API_VERSION, 0);
  if (api != KVM_API_VERSION)
    return make_error("/dev/kvm reports API version {}, kiln needs {}; {}", api, KVM_API_VERSION, kUseQemu);
  for (const auto& c : kRequiredCaps)
    if (::ioctl(fd.get(), KVM_CHECK_EXTENSION, c.cap) <= 0)
      return make_error("/dev/kvm lacks {}, which the kvm engine needs; {}", c.name, kUseQemu);
  int size = ::ioctl(fd.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (size < static_cast<int>(sizeof(kvm_run)))
    return make_error("KVM_GET_VCPU_MMAP_SIZE returned {}; {}", size, kUseQemu);
  return KvmSystem(std::move(fd), static_cast<size_t>(size));
}

int KvmSystem::check_extension(unsigned cap) const {
  int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

Result<void> probe_usable(std::chrono::milliseconds timeout) {
  log::ScopedTimer timer("kvm: usability probe");
  KILN_ASSIGN_OR_RETURN(auto sys, KvmSystem::open());
  UniqueFd vm(::ioctl(sys.fd(), KVM_CREATE_VM, 0));
  if (!vm) return probe_error("KVM_CREATE_VM");
  if (::ioctl(vm.get(), KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0) return probe_error("KVM_SET_TSS_ADDR");
  if (::ioctl(vm.get(), KVM_CREATE_IRQCHIP, 0) < 0) return probe_error("KVM_CREATE_IRQCHIP");

  void* mem = ::mmap(nullptr, kProbeMemory, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return probe_error("mmap of probe memory");
  struct Unmap {
    void* p;
    size_t n;
    ~Unmap() { ::munmap(p, n); }
  } unmap_mem{mem, kProbeMemory};
  std::memcpy(static_cast<uint8_t*>(mem) + 0x1000, kProbeCode, sizeof kProbeCode);
  kvm_userspace_memory_region region{};
  region.memory_size = kProbeMemory;
  region.userspace_addr = reinterpret_cast<uint64_t>(mem);
  if (::ioctl(vm.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) return probe_error("KVM_SET_USER_MEMORY_REGION");

  UniqueFd vcpu(::ioctl(vm.get(), KVM_CREATE_VCPU, 0));
  if (!vcpu) return probe_error("KVM_CREATE_VCPU");
  void* run_area = ::mmap(nullptr, sys.vcpu_mmap_size(), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu.get(), 0);
  if (run_area == MAP_FAILED) return probe_error("mmap of kvm_run");
  Unmap unmap_run{run_area, sys.vcpu_mmap_size()};
  auto* run = static_cast<kvm_run*>(run_area);

  kvm_sregs sregs{};
  if (::ioctl(vcpu.get(), KVM_GET_SREGS, &sregs) < 0) return probe_error("KVM_GET_SREGS");
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  if (::ioctl(vcpu.get(), KVM_SET_SREGS, &sregs) < 0) return probe_error("KVM_SET_SREGS");
  kvm_regs regs{};
  regs.rip = 0x1000;
  regs.rflags = 2;
  if (::ioctl(vcpu.get(), KVM_SET_REGS, &regs) < 0) return probe_error("KVM_SET_REGS");

  // KVM_RUN in a thread so a vCPU that never exits cannot hang kiln: kick it out.
  vcpu_kick_signal();
  std::promise<int> ran;
  auto result = ran.get_future();
  std::atomic<bool> timed_out{false};
  const auto started = Clock::now();
  std::thread runner([&] {
    int rc = ::ioctl(vcpu.get(), KVM_RUN, 0);
    ran.set_value(rc < 0 ? -errno : rc);
  });
  if (result.wait_for(timeout) != std::future_status::ready) {
    timed_out = true;
    run->immediate_exit = 1;
    while (result.wait_for(std::chrono::milliseconds(5)) != std::future_status::ready)
      kick_thread(runner.native_handle());
  }
  runner.join();
  log::verbose("kvm: usability probe guest ran in {:.0f} us", ms_since(started) * 1000);
  int rc = result.get();
  if (timed_out)
    return make_error("KVM cannot run guests on this host: a 7-instruction guest did not exit within {} ms",
                      timeout.count());
  if (rc < 0) return make_error("KVM cannot run guests on this host: KVM_RUN failed: {}", std::strerror(-rc));
  if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0x5a || run->io.direction != KVM_EXIT_IO_OUT ||
      run->io.size != 1 || reinterpret_cast<uint8_t*>(run)[run->io.data_offset] != 0x4b)
    return make_error("KVM cannot run guests on this host: the probe guest exited with reason {} instead of its OUT",
                      run->exit_reason);
  return {};
}

}  // namespace kiln::vmm::kvm
