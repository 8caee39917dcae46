// The ACPI sleep control register of a hardware-reduced platform (FADT
// SLEEP_CONTROL_REG, one I/O port; acpi_tables.cpp describes it with an _S5
// object). Linux powers off by writing SLP_EN with the _S5 sleep type there;
// that stops the VM, like the i8042 reset does for a reboot. Sleep states other
// than S5 are ignored, and the status register reads as zero (never woken).
#pragma once

#include "vmm/kvm/device.h"

#include <functional>

namespace kiln::vmm::kvm {

class AcpiSleepControl final : public BusDevice {
 public:
  /// Control at the port, status right after it (what the FADT names).
  static constexpr uint64_t kPort = 0x3c0;
  static constexpr uint64_t kPorts = 2;
  /// The sleep type _S5 declares (the guest writes it back with SLP_EN).
  static constexpr uint8_t kS5SleepType = 5;

  /// `on_power_off` runs on the vCPU thread that wrote the register.
  explicit AcpiSleepControl(std::function<void()> on_power_off) : on_power_off_(std::move(on_power_off)) {}

  std::string name() const override { return "acpi-sleep"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;
  // Stateless: nothing to save.
  void save(StateWriter&) const override {}
  void load(SectionReader&) override {}

 private:
  std::function<void()> on_power_off_;
};

}  // namespace kiln::vmm::kvm
