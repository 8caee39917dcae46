// Address decoding for KVM_EXIT_MMIO and KVM_EXIT_IO: a sorted list of
// non-overlapping ranges, each owned by a BusDevice. Accesses nobody claims come
// from a confused or hostile guest: they are logged (rate-limited) and ignored,
// reads returning all-ones like a floating bus.
#pragma once

#include "common/result.h"
#include "vmm/kvm/device.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace kiln::vmm::kvm {

class IoBus {
 public:
  /// `name` for logs: "mmio" or "pio".
  explicit IoBus(std::string name) : name_(std::move(name)) {}

  /// Claim [base, base+size) for `device` (shared: one device may sit on several ranges).
  /// Fails on an empty or overlapping range. Register everything before vCPUs run.
  Result<void> add(uint64_t base, uint64_t size, std::shared_ptr<BusDevice> device);

  /// Dispatch; thread-safe once registration is over (the range list is read-only then).
  void read(uint64_t address, std::span<uint8_t> data);
  void write(uint64_t address, std::span<const uint8_t> data);

  /// Accesses that hit no device since creation (tests, diagnostics).
  uint64_t unclaimed_accesses() const { return unclaimed_.load(); }

 private:
  struct Range {
    uint64_t base;
    uint64_t size;
    std::shared_ptr<BusDevice> device;
  };
  const Range* find(uint64_t address, size_t len) const;
  void log_unclaimed(const char* what, uint64_t address, size_t len);

  std::string name_;
  std::vector<Range> ranges_;  // sorted by base
  std::atomic<uint64_t> unclaimed_{0};
};

}  // namespace kiln::vmm::kvm
