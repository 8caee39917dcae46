// The virtio-mmio transport, version 2 ("modern") register layout (virtio 1.x 4.2.2),
// as a BusDevice wrapping one VirtioDevice. The guest finds it through the kernel
// command line (virtio_mmio_cmdline below). Every register value comes from the guest:
// a driver that misprograms it gets DEVICE_NEEDS_RESET or a refused FEATURES_OK, never
// a crash. Interrupts are edges on one IrqLine (InterruptStatus says why).
//
// Use (the core): one per device, registered for kVirtioMmioSize bytes at its base:
//   auto mmio = std::make_unique<VirtioMmio>(memory, irq, std::move(device));
//   cmdline += " " + virtio_mmio_cmdline(base, irq.gsi());
// Snapshot: the caller opens the device's section, then save()/load() write/read the
// transport and queue state followed by the device's own.
#pragma once

#include "vmm/kvm/device.h"
#include "vmm/kvm/guest_memory.h"
#include "vmm/kvm/virtio/guest_error_log.h"
#include "vmm/kvm/virtio/virtio_device.h"
#include "vmm/kvm/virtio/virtqueue.h"

#include <memory>
#include <string>
#include <vector>

namespace kiln::vmm::kvm {

/// Bytes of guest-physical address space one virtio-mmio device occupies.
inline constexpr uint64_t kVirtioMmioWindowBytes = 0x1000;

/// The Linux command-line argument that makes the guest probe a device:
/// "virtio_mmio.device=4K@0xd0000000:5" (size@base:gsi). One per device.
std::string virtio_mmio_cmdline(uint64_t base, uint32_t gsi);

/// Transport registers that a snapshot keeps. Plain data.
struct VirtioMmioState {
  uint32_t status = 0;
  uint32_t device_features_sel = 0;
  uint32_t driver_features_sel = 0;
  uint64_t driver_features = 0;
  uint32_t queue_sel = 0;
  uint32_t interrupt_status = 0;
  uint32_t config_generation = 0;
};

class VirtioMmio final : public BusDevice, private VirtioTransport {
 public:
  /// `memory` and `irq` must outlive this object. `name` (logs, snapshot section) defaults
  /// to the device's; give a second device of one kind its own ("virtio-blk.1").
  VirtioMmio(const GuestMemory& memory, IrqLine& irq, std::unique_ptr<VirtioDevice> device,
             std::string name = {});

  VirtioDevice& device() { return *device_; }
  /// Device status register (for tests and logs).
  uint32_t status() const;
  /// Features the device offers: its own plus the transport's.
  uint64_t offered_features() const;

  std::string name() const override { return name_; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;
  void save(StateWriter& out) const override;
  void load(SectionReader& in) override;

 private:
  // VirtioTransport, for the device (device mutex held).
  Virtqueue& queue(size_t index) override { return queues_[index]; }
  void notify_used(size_t index) override;
  void device_needs_reset(const std::string& why) override;
  const GuestMemory& memory() const override { return memory_; }

  uint32_t read_register(uint64_t offset) const;
  void write_register(uint64_t offset, uint32_t value);
  void write_status(uint32_t value);
  Virtqueue* selected_queue();
  void reset_device();
  void activate_device();
  void check_queues();

  const GuestMemory& memory_;
  IrqLine& irq_;
  std::unique_ptr<VirtioDevice> device_;
  std::string name_;
  std::vector<Virtqueue> queues_;
  VirtioMmioState state_;
  GuestErrorLog log_;
};

}  // namespace kiln::vmm::kvm
