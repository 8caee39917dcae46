// An IrqLine that counts what devices do to it, for device unit tests.
#pragma once

#include "vmm/kvm/device.h"

#include <atomic>

namespace kiln::vmm::kvm::testing {

class CountingIrqLine final : public IrqLine {
 public:
  explicit CountingIrqLine(uint32_t gsi = 4) : gsi_(gsi) {}
  uint32_t gsi() const override { return gsi_; }
  void pulse() override { ++pulses; }
  void set_level(bool high) override { level = high; }
  std::atomic<int> pulses{0};
  std::atomic<bool> level{false};

 private:
  uint32_t gsi_;
};

}  // namespace kiln::vmm::kvm::testing
