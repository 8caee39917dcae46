// Requests run synchronously on the thread that notified (a vCPU thread in the MMIO
// exit). That is deliberate: the disks kiln attaches are local image files served
// mostly from the page cache, the vCPU that kicked would wait for the completion
// interrupt anyway, and it keeps the device free of a request thread, completion
// queues and the locking between them. A slow disk stalls only the kicking vCPU.
#include "vmm/kvm/virtio/virtio_blk.h"

#include "vmm/kvm/state_stream.h"

#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

namespace kiln::vmm::kvm {

namespace {

// Move all of `iov` at `offset`, retrying short transfers and splitting at IOV_MAX.
bool full_transfer(int fd, bool to_disk, std::vector<iovec> iov, uint64_t offset) {
  size_t first = 0;
  while (first < iov.size()) {
    const int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    const auto off = static_cast<off_t>(offset);
    const ssize_t n = to_disk ? ::pwritev(fd, &iov[first], count, off) : ::preadv(fd, &iov[first], count, off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // error, or end of file inside the capacity (the file shrank)
    offset += static_cast<uint64_t>(n);
    size_t left = static_cast<size_t>(n);
    while (left > 0 && first < iov.size()) {
      const size_t take = std::min(left, iov[first].iov_len);
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + take;
      iov[first].iov_len -= take;
      left -= take;
      if (iov[first].iov_len == 0) ++first;
    }
  }
  return true;
}

}  // namespace

Result<std::unique_ptr<VirtioBlk>> VirtioBlk::create(UniqueFd image, bool read_only, std::string serial) {
  struct stat st{};
  if (::fstat(image.get(), &st) != 0)
    return make_error("virtio-blk: cannot stat the disk image: {}", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return make_error("virtio-blk: the disk image is not a regular file");
  if (serial.size() > VIRTIO_BLK_ID_BYTES) serial.resize(VIRTIO_BLK_ID_BYTES);
  const uint64_t capacity = static_cast<uint64_t>(st.st_size) / kSectorBytes;
  return std::unique_ptr<VirtioBlk>(new VirtioBlk(std::move(image), read_only, std::move(serial), capacity));
}

uint32_t VirtioBlk::device_type() const { return VIRTIO_ID_BLOCK; }

uint64_t VirtioBlk::features() const {
  uint64_t f = (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_SEG_MAX);
  if (read_only_) f |= 1ull << VIRTIO_BLK_F_RO;
  return f;
}

void VirtioBlk::read_config(uint64_t offset, std::span<uint8_t> data) const {
  virtio_blk_config config{};
  config.capacity = capacity_;
  config.seg_max = kQueueSize - 2;  // a request's header and status take two descriptors
  const auto* bytes = reinterpret_cast<const uint8_t*>(&config);  // a packed POD: its bytes are the layout
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = offset + i < sizeof config ? bytes[offset + i] : 0;
}

void VirtioBlk::activate(VirtioTransport& transport, uint64_t) { transport_ = &transport; }

void VirtioBlk::queue_notify(size_t index) {
  if (transport_ == nullptr || index != 0) return;
  Virtqueue& q = transport_->queue(0);
  while (std::optional<DescriptorChain> chain = q.pop()) q.push_used(chain->head, handle(*chain));
  transport_->notify_used(0);
}

uint8_t VirtioBlk::transfer(const DescriptorChain& chain, bool to_disk, uint64_t sector, uint64_t data_offset,
                            uint64_t data_len) {
  if (data_len % kSectorBytes != 0) {
    log_.report("{}-byte transfer is not whole sectors", data_len);
    return VIRTIO_BLK_S_IOERR;
  }
  if (sector > capacity_ || data_len / kSectorBytes > capacity_ - sector) {
    log_.report("sectors {}+{} beyond the capacity of {}", sector, data_len / kSectorBytes, capacity_);
    return VIRTIO_BLK_S_IOERR;
  }
  if (data_len == 0) return VIRTIO_BLK_S_OK;
  const auto& segments = to_disk ? chain.readable : chain.writable;
  std::vector<iovec> iov = chain_iovecs(transport_->memory(), segments, data_offset, data_len);
  if (!full_transfer(fd_.get(), to_disk, std::move(iov), sector * kSectorBytes)) {
    log_.report("{} at sector {} failed: {}", to_disk ? "write" : "read", sector, std::strerror(errno));
    return VIRTIO_BLK_S_IOERR;
  }
  return VIRTIO_BLK_S_OK;
}

uint32_t VirtioBlk::handle(const DescriptorChain& chain) {
  const GuestMemory& mem = transport_->memory();
  if (chain.writable_bytes == 0) {
    log_.report("request without a status byte dropped");
    return 0;
  }
  // Layout (5.2.6): header (readable) | data | status byte (the last writable byte).
  const uint64_t status_at = chain.writable_bytes - 1;
  uint32_t written = 1;
  uint8_t status = VIRTIO_BLK_S_IOERR;
  virtio_blk_outhdr hdr{};
  if (read_from_chain(mem, chain, 0, {reinterpret_cast<uint8_t*>(&hdr), sizeof hdr}) < sizeof hdr) {  // POD bytes
    log_.report("request header shorter than {} bytes", sizeof hdr);
  } else {
    switch (hdr.type) {
      case VIRTIO_BLK_T_IN:
        status = transfer(chain, false, hdr.sector, 0, status_at);
        if (status == VIRTIO_BLK_S_OK) written += static_cast<uint32_t>(status_at);
        break;
      case VIRTIO_BLK_T_OUT:
        status = read_only_ ? uint8_t{VIRTIO_BLK_S_IOERR}
                            : transfer(chain, true, hdr.sector, sizeof hdr, chain.readable_bytes - sizeof hdr);
        break;
      case VIRTIO_BLK_T_FLUSH:
        status = read_only_ || ::fdatasync(fd_.get()) == 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
        break;
      case VIRTIO_BLK_T_GET_ID: {
        char id[VIRTIO_BLK_ID_BYTES] = {};
        std::memcpy(id, serial_.data(), serial_.size());
        const size_t n = std::min<uint64_t>(status_at, sizeof id);
        write_to_chain(mem, chain, 0, {reinterpret_cast<const uint8_t*>(id), n});
        written += static_cast<uint32_t>(n);
        status = VIRTIO_BLK_S_OK;
        break;
      }
      default:
        status = VIRTIO_BLK_S_UNSUPP;
        break;
    }
  }
  write_to_chain(mem, chain, status_at, {&status, 1});
  return written;
}

}  // namespace kiln::vmm::kvm
