#include "vmm/kvm/io_bus.h"

#include "common/log.h"

#include <algorithm>
#include <cstring>

namespace kiln::vmm::kvm {
namespace {

// A guest probing hardware (Linux pokes at many legacy ports) would otherwise flood the log.
constexpr uint64_t kLoggedUnclaimed = 20;

}  // namespace

Result<void> IoBus::add(uint64_t base, uint64_t size, std::shared_ptr<BusDevice> device) {
  if (size == 0 || base + size < base) return make_error("{} bus: invalid range {:#x}+{:#x}", name_, base, size);
  for (const Range& r : ranges_)
    if (base < r.base + r.size && r.base < base + size)
      return make_error("{} bus: {} at {:#x}+{:#x} overlaps {} at {:#x}+{:#x}", name_, device->name(), base, size,
                        r.device->name(), r.base, r.size);
  ranges_.push_back(Range{base, size, std::move(device)});
  std::sort(ranges_.begin(), ranges_.end(), [](const Range& a, const Range& b) { return a.base < b.base; });
  return {};
}

const IoBus::Range* IoBus::find(uint64_t address, size_t len) const {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), address,
                             [](uint64_t a, const Range& r) { return a < r.base; });
  if (it == ranges_.begin()) return nullptr;
  --it;
  // The whole access must lie inside the range: a straddling access belongs to nobody.
  if (address - it->base >= it->size || len > it->size - (address - it->base)) return nullptr;
  return &*it;
}

void IoBus::log_unclaimed(const char* what, uint64_t address, size_t len) {
  uint64_t n = unclaimed_.fetch_add(1) + 1;
  if (n <= kLoggedUnclaimed)
    log::debug("kvm: guest {} of {} bytes at unclaimed {} address {:#x} ignored{}", what, len, name_, address,
               n == kLoggedUnclaimed ? " (further ones are not logged)" : "");
}

void IoBus::read(uint64_t address, std::span<uint8_t> data) {
  if (const Range* r = find(address, data.size())) {
    std::memset(data.data(), 0, data.size());
    r->device->read(address - r->base, data);
    return;
  }
  std::memset(data.data(), 0xff, data.size());
  log_unclaimed("read", address, data.size());
}

void IoBus::write(uint64_t address, std::span<const uint8_t> data) {
  if (const Range* r = find(address, data.size())) {
    r->device->write(address - r->base, data);
    return;
  }
  log_unclaimed("write", address, data.size());
}

}  // namespace kiln::vmm::kvm
