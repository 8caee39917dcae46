// A virtio 1.x split virtqueue, device side. The three rings (descriptor table,
// available ring, used ring) live in guest RAM and the guest writes them concurrently
// and may be hostile, so:
//   - ring addresses are validated (in RAM, aligned) when the driver enables the queue;
//   - every descriptor address and length is checked against RAM before use;
//   - a chain walk is bounded by the queue size (loops, over-long chains), by one
//     level of indirection and by a byte cap;
//   - a broken chain is dropped (returned to the guest with length 0, logged rate-
//     limited) and the queue keeps working; a broken *ring* (available index more than
//     a queue ahead) makes the queue unusable until the driver resets the device.
// Not thread-safe: the owning device serialises calls with its mutex.
#pragma once

#include "vmm/kvm/guest_memory.h"
#include "vmm/kvm/virtio/descriptor_chain.h"
#include "vmm/kvm/virtio/guest_error_log.h"

#include "common/result.h"

#include <cstdint>
#include <optional>
#include <string>

namespace kiln::vmm::kvm {

/// Everything about a queue that a snapshot must keep. Plain data.
struct VirtqueueState {
  uint16_t size = 0;       ///< QueueNum as the driver set it (0 = not configured)
  bool ready = false;      ///< QueueReady
  uint64_t desc_gpa = 0;   ///< QueueDesc: descriptor table
  uint64_t avail_gpa = 0;  ///< QueueDriver: available ring
  uint64_t used_gpa = 0;   ///< QueueDevice: used ring
  uint16_t next_avail = 0; ///< next available-ring slot the device will consume
  uint16_t next_used = 0;  ///< next used-ring slot the device will fill
  bool broken = false;     ///< ring-level failure seen; cleared by reset
};

/// VIRTIO_RING_F_INDIRECT_DESC: the feature bit the walker implements.
inline constexpr unsigned kVirtioRingFeatureIndirectDesc = 28;

class Virtqueue {
 public:
  /// Indirect tables longer than this are rejected (Linux uses at most seg_max + 2).
  static constexpr uint32_t kMaxIndirectDescriptors = 1024;
  static constexpr uint64_t kDefaultMaxChainBytes = 16ull << 20;

  /// `max_size` (QueueNumMax) must be a power of two; `max_chain_bytes` caps one request.
  Virtqueue(const GuestMemory& mem, uint16_t max_size, std::string name,
            uint64_t max_chain_bytes = kDefaultMaxChainBytes);

  uint16_t max_size() const { return max_size_; }
  /// The transport writes QueueNum and the ring addresses here while the queue is not ready.
  VirtqueueState& state() { return state_; }
  const VirtqueueState& state() const { return state_; }
  /// VIRTIO_RING_F_INDIRECT_DESC negotiated: indirect descriptors are accepted.
  void set_indirect_allowed(bool on) { indirect_allowed_ = on; }

  /// QueueReady=1: check size and ring placement; the queue stays not ready on error.
  Result<void> enable();
  /// Check a loaded state the same way (a state file is untrusted input too).
  Result<void> validate() const;
  /// Device reset: forget the configuration and positions.
  void reset() { state_ = VirtqueueState{}; }

  bool ready() const { return state_.ready; }
  bool broken() const { return state_.broken; }

  /// The next valid chain the driver made available, or nothing. Broken chains on the
  /// way are logged and returned to the driver with length 0.
  std::optional<DescriptorChain> pop();
  /// Put the last popped chain back (the device could not use it yet).
  void undo_pop() { --state_.next_avail; }
  /// Whether the driver has made chains available that were not popped yet.
  bool has_available();
  /// Return a chain to the driver: `len` = bytes written into its writable part.
  void push_used(uint16_t head, uint32_t len);
  /// True once after used entries were added, unless the driver suppressed interrupts
  /// (VIRTQ_AVAIL_F_NO_INTERRUPT). The transport raises the interrupt.
  bool take_interrupt();

  const GuestErrorLog& errors() const { return log_; }

 private:
  std::optional<DescriptorChain> walk(uint16_t head, std::string* why) const;
  std::optional<uint16_t> read_avail_idx();
  void mark_broken(const std::string& why);

  const GuestMemory& mem_;
  uint16_t max_size_;
  uint64_t max_chain_bytes_;
  bool indirect_allowed_ = false;
  bool interrupt_pending_ = false;
  VirtqueueState state_;
  GuestErrorLog log_;
};

}  // namespace kiln::vmm::kvm
