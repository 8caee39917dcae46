#include "vmm/kvm/acpi_sleep_control.h"

#include <algorithm>

namespace kiln::vmm::kvm {
namespace {

// ACPI 6.4, 4.8.3.7 "Sleep Control Register": SLP_TYPx in bits 2-4, SLP_EN bit 5.
constexpr uint8_t kSleepTypeShift = 2;
constexpr uint8_t kSleepTypeMask = 0x7;
constexpr uint8_t kSleepEnable = 1u << 5;

}  // namespace

void AcpiSleepControl::read(uint64_t, std::span<uint8_t> data) { std::fill(data.begin(), data.end(), 0); }

void AcpiSleepControl::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset != 0 || data.size() != 1) return;
  const uint8_t value = data[0];
  if ((value & kSleepEnable) && ((value >> kSleepTypeShift) & kSleepTypeMask) == kS5SleepType) on_power_off_();
}

}  // namespace kiln::vmm::kvm
