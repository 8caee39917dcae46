// The guest side of virtio for unit tests: lays out split rings in guest RAM, posts
// descriptor chains, reads the used ring, and drives a VirtioMmio through its registers
// the way Linux's virtio_mmio + virtio_ring drivers do.
#pragma once

#include "vmm/kvm/device.h"
#include "vmm/kvm/guest_memory.h"
#include "vmm/kvm/virtio/virtio_mmio.h"

#include <gtest/gtest.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>

#include <atomic>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace kiln::vmm::kvm::testing {

class CountingIrq final : public IrqLine {
 public:
  uint32_t gsi() const override { return 5; }
  void pulse() override { ++pulses; }
  void set_level(bool) override {}
  std::atomic<int> pulses{0};
};

inline GuestMemory make_memory(uint64_t size = 1 << 20) {
  auto m = GuestMemory::anonymous(size);
  if (!m) ADD_FAILURE() << m.error().message;
  return std::move(m).value();
}

/// A guest buffer: where it is and whether the device may write it.
struct Buf {
  uint64_t gpa;
  uint32_t len;
  bool writable = false;
};

constexpr uint16_t kNext = 1, kWrite = 2, kIndirect = 4;

/// One split ring in guest RAM, driver side.
class GuestRing {
 public:
  GuestRing(const GuestMemory& mem, uint64_t base, uint16_t size)
      : mem_(mem), size_(size), desc_(base), avail_(base + 16ull * size),
        used_((base + 16ull * size + 6 + 2ull * size + 3) & ~3ull) {}

  uint16_t size() const { return size_; }
  uint64_t desc() const { return desc_; }
  uint64_t avail() const { return avail_; }
  uint64_t used() const { return used_; }
  uint64_t end() const { return used_ + 6 + 8ull * size_; }

  void set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    write_desc(desc_ + 16ull * i, addr, len, flags, next);
  }
  void write_desc(uint64_t at, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    uint8_t d[16];
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
    ASSERT_TRUE(mem_.write(at, d, sizeof d));
  }
  /// Put `head` in the next available slot and publish it.
  void publish(uint16_t head) {
    put16(avail_ + 4 + 2ull * (avail_idx_ % size_), head);
    set_avail_idx(static_cast<uint16_t>(avail_idx_ + 1));
  }
  void set_avail_idx(uint16_t v) {
    avail_idx_ = v;
    std::atomic_thread_fence(std::memory_order_release);  // descriptors before the index
    put16(avail_ + 2, v);
  }
  void set_avail_flags(uint16_t f) { put16(avail_, f); }

  /// Post a chain using descriptors next_free.. (wrapping); returns its head.
  uint16_t add(const std::vector<Buf>& bufs) {
    const uint16_t head = next_free_;
    for (size_t i = 0; i < bufs.size(); ++i) {
      const uint16_t idx = next_free_;
      next_free_ = static_cast<uint16_t>((next_free_ + 1) % size_);
      const bool last = i + 1 == bufs.size();
      set_desc(idx, bufs[i].gpa, bufs[i].len, static_cast<uint16_t>((bufs[i].writable ? kWrite : 0) | (last ? 0 : kNext)),
               last ? 0 : next_free_);
    }
    publish(head);
    return head;
  }

  struct Used {
    uint32_t id;
    uint32_t len;
  };
  uint16_t used_idx() const { return get16(used_ + 2); }
  /// The next used entry the driver has not consumed yet.
  std::optional<Used> pop_used() {
    if (used_idx() == last_used_) return std::nullopt;
    std::atomic_thread_fence(std::memory_order_acquire);  // the index before the element
    Used u{};
    EXPECT_TRUE(mem_.read(used_ + 4 + 8ull * (last_used_ % size_), &u, sizeof u));
    ++last_used_;
    return u;
  }

  uint16_t get16(uint64_t at) const {
    uint16_t v = 0;
    EXPECT_TRUE(mem_.read(at, &v, 2));
    return v;
  }
  void put16(uint64_t at, uint16_t v) { ASSERT_TRUE(mem_.write(at, &v, 2)); }

 private:
  const GuestMemory& mem_;
  uint16_t size_;
  uint64_t desc_, avail_, used_;
  uint16_t avail_idx_ = 0;
  uint16_t last_used_ = 0;
  uint16_t next_free_ = 0;
};

/// Register-level driver for a VirtioMmio (what drivers/virtio/virtio_mmio.c does).
class MmioDriver {
 public:
  explicit MmioDriver(VirtioMmio& dev) : dev_(dev) {}

  uint32_t read(uint64_t off) {
    uint32_t v = 0;
    dev_.read(off, {reinterpret_cast<uint8_t*>(&v), 4});
    return v;
  }
  void write(uint64_t off, uint32_t v) { dev_.write(off, {reinterpret_cast<const uint8_t*>(&v), 4}); }
  uint64_t device_features() {
    write(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    uint64_t f = read(VIRTIO_MMIO_DEVICE_FEATURES);
    write(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    return f | (uint64_t{read(VIRTIO_MMIO_DEVICE_FEATURES)} << 32);
  }
  /// Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK; true if the device kept FEATURES_OK.
  bool negotiate(uint64_t features) {
    write(VIRTIO_MMIO_STATUS, 0);
    write(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    write(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    write(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    write(VIRTIO_MMIO_DRIVER_FEATURES, static_cast<uint32_t>(features));
    write(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    write(VIRTIO_MMIO_DRIVER_FEATURES, static_cast<uint32_t>(features >> 32));
    write(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
    return (read(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK) != 0;
  }
  void setup_queue(uint32_t q, const GuestRing& ring) {
    write(VIRTIO_MMIO_QUEUE_SEL, q);
    write(VIRTIO_MMIO_QUEUE_NUM, ring.size());
    write(VIRTIO_MMIO_QUEUE_DESC_LOW, static_cast<uint32_t>(ring.desc()));
    write(VIRTIO_MMIO_QUEUE_DESC_HIGH, static_cast<uint32_t>(ring.desc() >> 32));
    write(VIRTIO_MMIO_QUEUE_AVAIL_LOW, static_cast<uint32_t>(ring.avail()));
    write(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, static_cast<uint32_t>(ring.avail() >> 32));
    write(VIRTIO_MMIO_QUEUE_USED_LOW, static_cast<uint32_t>(ring.used()));
    write(VIRTIO_MMIO_QUEUE_USED_HIGH, static_cast<uint32_t>(ring.used() >> 32));
    write(VIRTIO_MMIO_QUEUE_READY, 1);
  }
  void driver_ok() { write(VIRTIO_MMIO_STATUS, read(VIRTIO_MMIO_STATUS) | VIRTIO_CONFIG_S_DRIVER_OK); }
  void notify(uint32_t q) { write(VIRTIO_MMIO_QUEUE_NOTIFY, q); }
  uint32_t status() { return read(VIRTIO_MMIO_STATUS); }
  template <class T>
  T config(uint64_t off) {
    T v{};
    dev_.read(VIRTIO_MMIO_CONFIG + off, {reinterpret_cast<uint8_t*>(&v), sizeof v});
    return v;
  }

 private:
  VirtioMmio& dev_;
};

inline std::string read_string(const GuestMemory& mem, uint64_t gpa, size_t len) {
  std::string s(len, '\0');
  EXPECT_TRUE(mem.read(gpa, s.data(), len));
  return s;
}

}  // namespace kiln::vmm::kvm::testing
