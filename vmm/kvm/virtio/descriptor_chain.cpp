#include "vmm/kvm/virtio/descriptor_chain.h"

#include <algorithm>
#include <cstring>

namespace kiln::vmm::kvm {

std::vector<iovec> chain_iovecs(const GuestMemory& mem, std::span<const ChainSegment> segments,
                                uint64_t offset, uint64_t len) {
  std::vector<iovec> out;
  for (const ChainSegment& s : segments) {
    if (len == 0) break;
    if (offset >= s.len) {
      offset -= s.len;
      continue;
    }
    const uint64_t take = std::min<uint64_t>(s.len - offset, len);
    // Bounds: slice() returns nothing unless every byte of [gpa+offset, +take) is in RAM.
    auto host = mem.slice(s.gpa + offset, take);
    if (!host) break;
    out.push_back(iovec{host->data(), host->size()});
    len -= take;
    offset = 0;
  }
  return out;
}

size_t read_from_chain(const GuestMemory& mem, const DescriptorChain& chain, uint64_t offset,
                       std::span<uint8_t> dst) {
  size_t done = 0;
  for (const iovec& v : chain_iovecs(mem, chain.readable, offset, dst.size())) {
    std::memcpy(dst.data() + done, v.iov_base, v.iov_len);
    done += v.iov_len;
  }
  return done;
}

size_t write_to_chain(const GuestMemory& mem, const DescriptorChain& chain, uint64_t offset,
                      std::span<const uint8_t> src) {
  size_t done = 0;
  for (const iovec& v : chain_iovecs(mem, chain.writable, offset, src.size())) {
    std::memcpy(v.iov_base, src.data() + done, v.iov_len);
    done += v.iov_len;
  }
  return done;
}

}  // namespace kiln::vmm::kvm
