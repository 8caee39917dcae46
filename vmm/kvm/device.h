// What the VMM's buses know about a device. Accesses arrive on a vCPU thread
// (KVM_EXIT_MMIO / KVM_EXIT_IO), so a device that also does work on the I/O
// thread (event_loop.h) guards its state with its own mutex.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace kiln::vmm::kvm {

class StateWriter;
class SectionReader;

/// An interrupt line into the in-kernel irqchip (a GSI). Thread-safe.
class IrqLine {
 public:
  virtual ~IrqLine() = default;
  virtual uint32_t gsi() const = 0;
  /// Raise and lower the line: an edge (virtio-mmio, the 8250).
  virtual void pulse() = 0;
  virtual void set_level(bool high) = 0;
};

/// A device on the MMIO bus or the port-I/O bus. `offset` is relative to the
/// start of the range it was registered for. Reads fill all of `data` (unknown
/// registers read as zero); writes of unexpected size or offset are ignored.
class BusDevice {
 public:
  virtual ~BusDevice() = default;
  /// Short name for logs and snapshot sections ("serial", "virtio-console").
  virtual std::string name() const = 0;
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
  /// Snapshot: device state only (guest RAM is saved separately). The VM is paused.
  virtual void save(StateWriter& out) const = 0;
  /// Restore what save() wrote. Errors go to `in` (sticky); the VM is not started then.
  virtual void load(SectionReader& in) = 0;
};

}  // namespace kiln::vmm::kvm
