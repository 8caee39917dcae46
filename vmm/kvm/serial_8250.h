// A 16550A UART at 0x3f8 (ttyS0) for the guest console. Output goes into a
// bounded buffer (console_output); input is not wired (the agent channel is
// virtio). Just enough of the register model for Linux's 8250 driver: scratch
// and loopback probing, IER/IIR/LSR so THR-empty interrupts keep output flowing.
#pragma once

#include "vmm/kvm/device.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace kiln::vmm::kvm {

class Serial8250 final : public BusDevice {
 public:
  static constexpr uint64_t kPort = 0x3f8;
  static constexpr uint64_t kPorts = 8;
  static constexpr uint32_t kIrq = 4;
  /// Console bytes kept; older ones are dropped (the guest controls how much it prints).
  static constexpr size_t kMaxKeptBytes = 1 << 20;

  explicit Serial8250(std::unique_ptr<IrqLine> irq) : irq_(std::move(irq)) {}

  std::string name() const override { return "serial"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;
  void save(StateWriter& out) const override;
  void load(SectionReader& in) override;

  /// Everything kept so far, with a marker when older output was dropped.
  std::string output() const;

 private:
  uint8_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint8_t value);
  bool dlab() const { return (lcr_ & 0x80) != 0; }
  /// Re-evaluate the interrupt line after a register change (called with the lock held).
  void update_interrupt();
  void emit(uint8_t byte);

  std::unique_ptr<IrqLine> irq_;
  mutable std::mutex mutex_;
  uint8_t ier_ = 0, lcr_ = 0, mcr_ = 0, scr_ = 0, dll_ = 0x0c, dlm_ = 0;
  bool thr_interrupt_pending_ = false;  // cleared by reading IIR or writing THR
  std::string buffer_;
  bool dropped_ = false;
};

}  // namespace kiln::vmm::kvm
