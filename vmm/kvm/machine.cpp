#include "vmm/kvm/machine.h"

#include "agent/protocol.h"
#include "common/log.h"
#include "vmm/kvm/acpi_sleep_control.h"
#include "vmm/kvm/virtio/virtio_blk.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace kiln::vmm::kvm {
namespace {

// Kernel parameters the machine itself needs (devices are found through ACPI,
// acpi_tables.h): no PCI bus to scan, reboot through the keyboard controller (i8042 resets the VM),
// and an i8042 without PnP/ACPI discovery, mouse port or multiplexer.
constexpr const char* kMachineCmdline = "pci=off reboot=k i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd";

// Devices on the virtio-mmio window, in order: index i sits at base + i * size, IRQ first + i.
// The layout is part of every snapshot: a change bumps kDeviceLayoutVersion (vmm/engine.h).
constexpr uint32_t kAgentConsoleSlot = 0;
constexpr uint32_t kShareConsoleSlot = 1;
constexpr uint32_t kFirstDiskSlot = 2;

uint64_t virtio_base(uint32_t slot) { return layout::kVirtioMmioBase + slot * layout::kVirtioMmioSize; }
uint32_t virtio_irq(uint32_t slot) { return layout::kVirtioFirstIrq + slot; }

}  // namespace

std::string Machine::device_cmdline() { return kMachineCmdline; }

std::vector<AcpiMmioDevice> Machine::acpi_devices(size_t disks) {
  std::vector<AcpiMmioDevice> out;
  for (uint32_t slot = kAgentConsoleSlot; slot < kFirstDiskSlot + disks; ++slot)
    out.push_back(AcpiMmioDevice{virtio_base(slot), layout::kVirtioMmioSize, virtio_irq(slot)});
  return out;
}

std::vector<std::string> Machine::device_sections(size_t disks) {
  std::vector<std::string> out = {"dev.serial", "dev.i8042"};
  for (uint32_t slot = kAgentConsoleSlot; slot < kFirstDiskSlot + disks; ++slot)
    out.push_back(fmt::format("dev.virtio{}", slot));
  return out;
}

Result<std::unique_ptr<Machine>> Machine::create(const KvmSystem& sys, GuestMemory memory, uint32_t vcpus,
                                                 const std::vector<DiskSpec>& disks) {
  if (disks.size() > kMaxDisks) return make_error("{} disks asked for; the kvm engine takes at most {}", disks.size(), kMaxDisks);
  std::unique_ptr<Machine> m(new Machine());
  {
    log::ScopedTimer t("kvm: create VM (irqchip, PIT)");
    KILN_ASSIGN_OR_RETURN(m->vm_, KvmVm::create(sys));
  }
  {
    log::ScopedTimer t("kvm: map guest memory into the VM");
    KILN_TRY(m->vm_->map_memory(memory));
    m->memory_.emplace(std::move(memory));
  }
  {
    log::ScopedTimer t("kvm: create vCPUs");
    for (uint32_t i = 0; i < vcpus; ++i) {
      KILN_ASSIGN_OR_RETURN(auto vcpu, Vcpu::create(sys, *m->vm_, i));
      m->vcpus_.push_back(std::move(vcpu));
    }
  }
  {
    log::ScopedTimer t("kvm: create devices");
    KILN_TRY(m->add_devices(disks));
  }
  return m;
}

Result<void> Machine::add_disk(uint32_t slot, const DiskSpec& disk) {
  UniqueFd image(::open(disk.image.c_str(), (disk.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (!image)
    return make_error("cannot open disk image {}{}: {}", disk.image.string(), disk.read_only ? "" : " for writing",
                      std::strerror(errno));
  auto blk = VirtioBlk::create(std::move(image), disk.read_only, fmt::format("kiln-disk{}", slot - kFirstDiskSlot));
  if (!blk) return with_context(fmt::format("disk image {}", disk.image.string()), blk.error());
  irqs_.push_back(vm_->irq_line(virtio_irq(slot)));
  auto mmio = std::make_shared<VirtioMmio>(*memory_, *irqs_.back(), std::move(*blk));
  KILN_TRY(mmio_.add(virtio_base(slot), layout::kVirtioMmioSize, mmio));
  devices_.push_back({fmt::format("dev.virtio{}", slot), mmio});
  return {};
}

Result<Machine::Channel> Machine::add_console(uint32_t slot, const char* port_name,
                                              std::function<void(const std::string&)> on_failure) {
  // The device owns one end of a socketpair, the channel's host_end is the other.
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
    return make_error("socketpair for the {} channel failed: {}", port_name, std::strerror(errno));
  UniqueFd device_end(pair[0]);
  Channel channel{nullptr, UniqueFd(pair[1])};
  if (int flags = ::fcntl(device_end.get(), F_GETFL); flags < 0 || ::fcntl(device_end.get(), F_SETFL, flags | O_NONBLOCK) < 0)
    return make_error("cannot make the {} channel nonblocking: {}", port_name, std::strerror(errno));

  EventLoop* io = io_.get();
  auto console = std::make_unique<VirtioConsole>(std::move(device_end), [io] { io->wake(); }, port_name);
  console->set_on_failure(std::move(on_failure));
  VirtioConsole* c = console.get();
  channel.console = c;
  irqs_.push_back(vm_->irq_line(virtio_irq(slot)));
  auto mmio = std::make_shared<VirtioMmio>(*memory_, *irqs_.back(), std::move(console));
  KILN_TRY(mmio_.add(virtio_base(slot), layout::kVirtioMmioSize, mmio));
  devices_.push_back({fmt::format("dev.virtio{}", slot), mmio});

  io_->add(EventLoop::Source{
      c->host_fd(),
      [c] {
        auto want = c->io_interest();
        return static_cast<short>((want.readable ? POLLIN : 0) | (want.writable ? POLLOUT : 0));
      },
      [c](short revents) {
        if (revents & (POLLIN | POLLHUP | POLLERR)) c->on_host_readable();
        // On HUP/ERR too: the send then fails and reports the output it could not deliver.
        if (revents & (POLLOUT | POLLHUP | POLLERR)) c->on_host_writable();
      }});
  return channel;
}

Result<void> Machine::add_devices(const std::vector<DiskSpec>& disks) {
  serial_ = std::make_shared<Serial8250>(vm_->irq_line(Serial8250::kIrq));
  KILN_TRY(pio_.add(Serial8250::kPort, Serial8250::kPorts, serial_));
  devices_.push_back({"dev.serial", serial_});

  auto i8042 = std::make_shared<I8042>(
      [this] { guest_stopped("the guest reset the machine (i8042 reset: a reboot, or a kernel panic with panic=-1)"); });
  KILN_TRY(pio_.add(I8042::kDataPort, I8042::kPorts, i8042));
  devices_.push_back({"dev.i8042", i8042});

  // Stateless, so not in devices_ (no state-file section).
  KILN_TRY(pio_.add(AcpiSleepControl::kPort, AcpiSleepControl::kPorts,
                    std::make_shared<AcpiSleepControl>([this] { guest_stopped("the guest powered off"); })));

  KILN_ASSIGN_OR_RETURN(io_, EventLoop::create());
  // Guest output the agent channel could not deliver ends the run, saying so (never a
  // silent loss).
  KILN_ASSIGN_OR_RETURN(agent_, add_console(kAgentConsoleSlot, proto::kAgentPortName,
                                            [this](const std::string& why) {
                                              guest_stopped(fmt::format(
                                                  "the agent channel failed: {}; guest output was lost, so the "
                                                  "run's output is incomplete (run it again; -v shows the VMM's log)",
                                                  why));
                                            }));
  // Guest output the share channel cannot deliver (kiln shut its end down: it stopped
  // serving the share) is logged; the guest's share files then fail, the run goes on.
  KILN_ASSIGN_OR_RETURN(share_, add_console(kShareConsoleSlot, proto::kSharePortName, [](const std::string& why) {
    log::verbose("kvm: the share channel failed: {}", why);
  }));
  for (uint32_t i = 0; i < disks.size(); ++i) KILN_TRY(add_disk(kFirstDiskSlot + i, disks[i]));
  return {};
}

Machine::~Machine() { shutdown(); }

void Machine::start() {
  started_ = true;
  io_->start();
  for (auto& v : vcpus_) v->start(pio_, mmio_, [this](uint32_t, const std::string& why) { guest_stopped(why); });
}

void Machine::pause() {
  for (auto& v : vcpus_) v->pause();
  io_->stop();
}

void Machine::resume() {
  if (shut_down_) return;
  io_->start();
  for (auto& v : vcpus_) v->resume();
}

void Machine::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  for (auto& v : vcpus_) v->stop();
  if (io_) io_->stop();
  agent_.host_end.reset();
  share_.host_end.reset();
}

void Machine::guest_stopped(const std::string& why) {
  {
    std::lock_guard lock(stop_mutex_);
    if (stopped_) return;
    stopped_ = why;
  }
  log::verbose("kvm: the guest stopped: {}", why);
  for (auto& v : vcpus_) v->request_stop();
  // The runner waits on the agent channel: EOF there makes it ask vmm_exited() at once.
  // A share server reading the share channel sees EOF too, as when qemu exits.
  for (const Channel* channel : {&agent_, &share_})
    if (channel->console) ::shutdown(channel->console->host_fd(), SHUT_RDWR);
}

std::optional<std::string> Machine::stopped_reason() const {
  std::lock_guard lock(stop_mutex_);
  return stopped_;
}

}  // namespace kiln::vmm::kvm
