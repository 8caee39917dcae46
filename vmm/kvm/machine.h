// Everything one KVM guest is made of, wired together: the VM and its RAM, the
// vCPUs and their threads, the buses and devices (8250, i8042, a virtio-console
// for the agent channel and one for the share channel, one virtio-blk per disk),
// the I/O thread. Boot and restore build the same machine (same devices, same
// addresses, same IRQs, same command-line additions) and differ only in how RAM
// and CPU state are filled in (kvm_engine.cpp).
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"
#include "vmm/engine.h"
#include "vmm/kvm/acpi_tables.h"
#include "vmm/kvm/event_loop.h"
#include "vmm/kvm/guest_memory.h"
#include "vmm/kvm/i8042.h"
#include "vmm/kvm/io_bus.h"
#include "vmm/kvm/kvm_system.h"
#include "vmm/kvm/kvm_vm.h"
#include "vmm/kvm/serial_8250.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/virtio/virtio_console.h"
#include "vmm/kvm/virtio/virtio_mmio.h"

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace kiln::vmm::kvm {

class Machine {
 public:
  /// A snapshottable device: its state-file section name and the device.
  struct NamedDevice {
    std::string section;  ///< "dev.serial", "dev.virtio0"
    std::shared_ptr<BusDevice> device;
  };

  /// Create the VM, map `memory` into it, create `vcpus` vCPUs and every device,
  /// with one virtio-blk per disk (at most kMaxDisks). Nothing runs yet. Timed in
  /// parts (create VM, vCPUs, memory, devices).
  static Result<std::unique_ptr<Machine>> create(const KvmSystem& sys, GuestMemory memory, uint32_t vcpus,
                                                 const std::vector<DiskSpec>& disks = {});
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  /// What the kernel command line must add for this machine. The same for every
  /// Machine: bake and restore must agree.
  static std::string device_cmdline();
  /// The virtio-mmio devices of a machine with `disks` disks, for the ACPI DSDT
  /// (how the guest finds them).
  static std::vector<AcpiMmioDevice> acpi_devices(size_t disks = 0);
  /// The state-file sections of a machine with `disks` disks, in device order.
  static std::vector<std::string> device_sections(size_t disks = 0);

  KvmVm& vm() { return *vm_; }
  GuestMemory& memory() { return *memory_; }
  std::vector<std::unique_ptr<Vcpu>>& vcpus() { return vcpus_; }
  const std::vector<NamedDevice>& devices() const { return devices_; }
  int agent_fd() const { return agent_.host_end.get(); }
  int share_fd() const { return share_.host_end.get(); }
  std::string console_output() const { return serial_->output(); }

  /// Start the vCPU threads and the I/O thread.
  void start();
  /// Bring every vCPU out of KVM_RUN and stop the I/O thread: nothing changes guest
  /// RAM or device state until resume() (or ever, before a snapshot save).
  void pause();
  void resume();
  /// Stop every thread (joined) and close the agent and share channels. Idempotent.
  void shutdown();

  /// Why the guest stopped running, once it has (first reason wins).
  std::optional<std::string> stopped_reason() const;

 private:
  Machine() = default;
  /// A byte stream between a guest port and kiln: a virtio-console on one end of a
  /// socketpair, `host_end` the other.
  struct Channel {
    VirtioConsole* console = nullptr;  // owned through devices_
    UniqueFd host_end;
  };
  Result<void> add_devices(const std::vector<DiskSpec>& disks);
  /// A virtio-console with one port named `port_name` on virtio-mmio `slot`, its end of
  /// the socketpair polled by the I/O thread. `on_failure`: guest output on this port
  /// could not be delivered (VirtioConsole::set_on_failure).
  Result<Channel> add_console(uint32_t slot, const char* port_name,
                              std::function<void(const std::string&)> on_failure);
  Result<void> add_disk(uint32_t slot, const DiskSpec& disk);
  /// A vCPU or device reports the guest can no longer run: stop the others, hang up the channels.
  void guest_stopped(const std::string& why);

  std::optional<GuestMemory> memory_;
  std::unique_ptr<KvmVm> vm_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  IoBus pio_{"port I/O"};
  IoBus mmio_{"MMIO"};
  std::vector<std::unique_ptr<IrqLine>> irqs_;
  std::shared_ptr<Serial8250> serial_;
  std::vector<NamedDevice> devices_;
  Channel agent_;
  Channel share_;
  std::unique_ptr<EventLoop> io_;
  bool started_ = false;
  bool shut_down_ = false;

  mutable std::mutex stop_mutex_;
  std::optional<std::string> stopped_;
};

}  // namespace kiln::vmm::kvm
