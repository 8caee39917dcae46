// The PS/2 controller at ports 0x60/0x64, reduced to what a headless guest
// uses: the command byte (so Linux's i8042 driver finds a controller instead of
// timing out on every command) and the CPU reset line (command 0xfe, what
// `reboot=k` pulses), which stops the VM. No keyboard or mouse is attached.
#pragma once

#include "vmm/kvm/device.h"

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>

namespace kiln::vmm::kvm {

class I8042 final : public BusDevice {
 public:
  static constexpr uint64_t kDataPort = 0x60;
  static constexpr uint64_t kCommandPort = 0x64;

  /// `on_reset` runs on the vCPU thread that pulsed reset.
  explicit I8042(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {}

  std::string name() const override { return "i8042"; }
  /// Offset 0 is the data port (0x60), offset 4 status/command (0x64); 0x61 (speaker)
  /// is taken by KVM's PIT before it reaches the bus, 0x62/0x63 are ignored.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;
  void save(StateWriter& out) const override;
  void load(SectionReader& in) override;

  static constexpr uint64_t kPorts = 5;

 private:
  void command(uint8_t cmd);
  void data_write(uint8_t value);

  std::function<void()> on_reset_;
  mutable std::mutex mutex_;
  uint8_t ctr_ = 0x30;        // controller command byte: both ports disabled, no IRQs
  uint8_t outp_ = 0x01;       // output port: A20 line etc.; bit 0 = not in reset
  uint8_t pending_cmd_ = 0;   // a command waiting for its data byte
  std::deque<uint8_t> out_;   // bytes for the guest to read at 0x60
};

}  // namespace kiln::vmm::kvm
