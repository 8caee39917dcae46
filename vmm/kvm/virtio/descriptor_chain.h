// One validated descriptor chain popped from a virtqueue: the guest buffers of one
// request, as (guest address, length) segments. Every segment was checked to lie in
// guest RAM when the chain was popped, and RAM never shrinks, so the helpers here
// only re-check through GuestMemory's bounds-checked accessors.
#pragma once

#include "vmm/kvm/guest_memory.h"

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

namespace kiln::vmm::kvm {

struct ChainSegment {
  uint64_t gpa = 0;
  uint32_t len = 0;
};

/// The driver puts device-readable buffers first, device-writable ones after
/// (virtio 1.x 2.7.4.2; the walker rejects chains that do not).
struct DescriptorChain {
  uint16_t head = 0;
  std::vector<ChainSegment> readable;
  std::vector<ChainSegment> writable;
  uint64_t readable_bytes = 0;
  uint64_t writable_bytes = 0;
};

/// Copy up to dst.size() device-readable bytes starting `offset` bytes into the chain.
/// Returns how many were copied (fewer if the chain is shorter).
size_t read_from_chain(const GuestMemory& mem, const DescriptorChain& chain, uint64_t offset,
                       std::span<uint8_t> dst);

/// Copy src into the device-writable part starting `offset` bytes in; returns bytes copied.
size_t write_to_chain(const GuestMemory& mem, const DescriptorChain& chain, uint64_t offset,
                      std::span<const uint8_t> src);

/// Host iovecs covering [offset, offset+len) of the given segments (clipped to what
/// exists), for readv/writev/preadv/pwritev straight into or out of guest RAM.
std::vector<iovec> chain_iovecs(const GuestMemory& mem, std::span<const ChainSegment> segments,
                                uint64_t offset, uint64_t len);

}  // namespace kiln::vmm::kvm
