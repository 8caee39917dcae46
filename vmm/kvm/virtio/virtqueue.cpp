#include "vmm/kvm/virtio/virtqueue.h"

#include <atomic>
#include <bit>

namespace kiln::vmm::kvm {

namespace {

// The split-ring ABI (virtio 1.x 2.7.5, 2.7.8). linux/virtio_ring.h has the same but is
// not valid C++ (implicit void* conversions in vring_init).
struct vring_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
struct vring_used_elem {
  uint32_t id;
  uint32_t len;
};
constexpr uint16_t VRING_DESC_F_NEXT = 1;
constexpr uint16_t VRING_DESC_F_WRITE = 2;
constexpr uint16_t VRING_DESC_F_INDIRECT = 4;
constexpr uint16_t VRING_AVAIL_F_NO_INTERRUPT = 1;

// Split-ring layout (virtio 1.x 2.7): byte offsets inside each ring.
constexpr uint64_t kDescBytes = 16;          // struct vring_desc
constexpr uint64_t kAvailIdxOffset = 2;      // avail: u16 flags, u16 idx, u16 ring[size], u16 used_event
constexpr uint64_t kAvailRingOffset = 4;
constexpr uint64_t kUsedIdxOffset = 2;       // used: u16 flags, u16 idx, {u32 id, u32 len}[size], u16 avail_event
constexpr uint64_t kUsedRingOffset = 4;
constexpr uint64_t kUsedElemBytes = 8;

uint64_t avail_bytes(uint16_t size) { return 6 + 2ull * size; }
uint64_t used_bytes(uint16_t size) { return 6 + kUsedElemBytes * size; }

// Little-endian host only (x86-64): virtio 1.x rings are little-endian, so the
// guest's bytes are used as they are.
static_assert(std::endian::native == std::endian::little);

}  // namespace

Virtqueue::Virtqueue(const GuestMemory& mem, uint16_t max_size, std::string name, uint64_t max_chain_bytes)
    : mem_(mem), max_size_(max_size), max_chain_bytes_(max_chain_bytes), log_(std::move(name)) {}

Result<void> Virtqueue::validate() const {
  const VirtqueueState& s = state_;
  if (!s.ready) return {};
  if (s.size == 0 || s.size > max_size_ || !std::has_single_bit(s.size))
    return make_error("queue size {} is not a power of two in [1, {}]", s.size, max_size_);
  if (s.desc_gpa % 16 != 0 || s.avail_gpa % 2 != 0 || s.used_gpa % 4 != 0)
    return make_error("ring addresses desc {:#x} avail {:#x} used {:#x} are misaligned (need 16/2/4)",
                      s.desc_gpa, s.avail_gpa, s.used_gpa);
  if (!mem_.slice(s.desc_gpa, kDescBytes * s.size) || !mem_.slice(s.avail_gpa, avail_bytes(s.size)) ||
      !mem_.slice(s.used_gpa, used_bytes(s.size)))
    return make_error("rings at desc {:#x} avail {:#x} used {:#x} (size {}) are not inside guest RAM",
                      s.desc_gpa, s.avail_gpa, s.used_gpa, s.size);
  return {};
}

Result<void> Virtqueue::enable() {
  state_.ready = true;
  if (Result<void> r = validate(); !r) {
    state_.ready = false;
    return r;
  }
  return {};
}

void Virtqueue::mark_broken(const std::string& why) {
  if (!state_.broken) log_.report("{}; the queue stops until the driver resets the device", why);
  state_.broken = true;
}

std::optional<uint16_t> Virtqueue::read_avail_idx() {
  uint16_t idx = 0;
  if (!mem_.read(state_.avail_gpa + kAvailIdxOffset, &idx, sizeof idx)) {
    mark_broken("available ring outside guest RAM");
    return std::nullopt;
  }
  const uint16_t pending = static_cast<uint16_t>(idx - state_.next_avail);
  if (pending > state_.size) {
    mark_broken(fmt::format("available index {} is {} entries ahead of the device (queue size {})", idx,
                            pending, state_.size));
    return std::nullopt;
  }
  return idx;
}

bool Virtqueue::has_available() {
  if (!state_.ready || state_.broken) return false;
  std::optional<uint16_t> idx = read_avail_idx();
  return idx && *idx != state_.next_avail;
}

std::optional<DescriptorChain> Virtqueue::pop() {
  if (!state_.ready || state_.broken) return std::nullopt;
  // Each iteration consumes one available entry and there are at most `size` of them.
  for (uint32_t attempt = 0; attempt < state_.size; ++attempt) {
    std::optional<uint16_t> idx = read_avail_idx();
    if (!idx || *idx == state_.next_avail) return std::nullopt;
    // The driver wrote the ring entry and descriptors before publishing idx: read them after.
    std::atomic_thread_fence(std::memory_order_acquire);
    uint16_t head = 0;
    const uint64_t slot = state_.avail_gpa + kAvailRingOffset + 2ull * (state_.next_avail % state_.size);
    if (!mem_.read(slot, &head, sizeof head)) {
      mark_broken("available ring outside guest RAM");
      return std::nullopt;
    }
    ++state_.next_avail;
    std::string why;
    if (std::optional<DescriptorChain> chain = walk(head, &why)) return chain;
    log_.report("dropped descriptor chain at head {}: {}", head, why);
    // Give the descriptors back so a buggy (not malicious) driver does not leak them.
    if (head < state_.size) push_used(head, 0);
  }
  return std::nullopt;
}

std::optional<DescriptorChain> Virtqueue::walk(uint16_t head, std::string* why) const {
  DescriptorChain chain;
  chain.head = head;
  uint64_t table = state_.desc_gpa;
  uint32_t table_size = state_.size;
  bool indirect = false;
  uint32_t index = head;
  uint32_t visited = 0;
  uint64_t total = 0;
  for (;;) {
    if (index >= table_size) {
      *why = fmt::format("descriptor index {} outside a table of {}", index, table_size);
      return std::nullopt;
    }
    // A chain visits each descriptor of its table at most once: more means a loop.
    if (++visited > table_size) {
      *why = fmt::format("chain longer than its table of {} descriptors (a loop?)", table_size);
      return std::nullopt;
    }
    vring_desc d{};
    if (!mem_.read(table + kDescBytes * index, &d, sizeof d)) {
      *why = "descriptor table outside guest RAM";
      return std::nullopt;
    }
    if ((d.flags & VRING_DESC_F_INDIRECT) != 0) {
      if (!indirect_allowed_ || indirect || (d.flags & VRING_DESC_F_NEXT) != 0) {
        *why = !indirect_allowed_ ? "indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC"
               : indirect        ? "nested indirect descriptor"
                                 : "indirect descriptor with NEXT set";
        return std::nullopt;
      }
      if (d.len == 0 || d.len % kDescBytes != 0 || d.len / kDescBytes > kMaxIndirectDescriptors ||
          d.addr % 16 != 0 || !mem_.slice(d.addr, d.len)) {
        *why = fmt::format("bad indirect table at {:#x} length {}", d.addr, d.len);
        return std::nullopt;
      }
      table = d.addr;
      table_size = d.len / kDescBytes;
      indirect = true;
      index = 0;
      visited = 0;
      continue;
    }
    const bool writable = (d.flags & VRING_DESC_F_WRITE) != 0;
    if (d.len > 0) {
      if (!mem_.slice(d.addr, d.len)) {
        *why = fmt::format("buffer {:#x}+{} outside guest RAM", d.addr, d.len);
        return std::nullopt;
      }
      total += d.len;
      if (total > max_chain_bytes_) {
        *why = fmt::format("chain longer than {} bytes", max_chain_bytes_);
        return std::nullopt;
      }
      if (writable) {
        chain.writable.push_back({d.addr, d.len});
        chain.writable_bytes += d.len;
      } else if (!chain.writable.empty()) {
        *why = "device-readable buffer after a device-writable one";
        return std::nullopt;
      } else {
        chain.readable.push_back({d.addr, d.len});
        chain.readable_bytes += d.len;
      }
    }
    if ((d.flags & VRING_DESC_F_NEXT) == 0) return chain;
    index = d.next;
  }
}

void Virtqueue::push_used(uint16_t head, uint32_t len) {
  if (!state_.ready) return;
  const vring_used_elem elem{head, len};
  const uint64_t slot = state_.used_gpa + kUsedRingOffset + kUsedElemBytes * (state_.next_used % state_.size);
  if (!mem_.write(slot, &elem, sizeof elem)) {
    mark_broken("used ring outside guest RAM");
    return;
  }
  // The element must be visible before the index that publishes it.
  std::atomic_thread_fence(std::memory_order_release);
  ++state_.next_used;
  if (!mem_.write(state_.used_gpa + kUsedIdxOffset, &state_.next_used, sizeof state_.next_used)) {
    mark_broken("used ring outside guest RAM");
    return;
  }
  interrupt_pending_ = true;
}

bool Virtqueue::take_interrupt() {
  if (!interrupt_pending_) return false;
  interrupt_pending_ = false;
  // Order our used-index store before reading the driver's flags, or a driver that just
  // re-enabled interrupts could miss this batch (the classic lost-wakeup race).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  uint16_t flags = 0;
  if (!mem_.read(state_.avail_gpa, &flags, sizeof flags)) return true;
  return (flags & VRING_AVAIL_F_NO_INTERRUPT) == 0;
}

}  // namespace kiln::vmm::kvm
