// virtio-blk over a raw disk image fd: IN, OUT, FLUSH and GET_ID, read-only or
// read-write. One request queue. Every request is bounds-checked against the capacity
// (whole 512-byte sectors of the file at creation) and answered with a status byte.
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"
#include "vmm/kvm/virtio/guest_error_log.h"
#include "vmm/kvm/virtio/virtio_device.h"

#include <memory>
#include <string>

namespace kiln::vmm::kvm {

class VirtioBlk final : public VirtioDevice {
 public:
  static constexpr uint64_t kSectorBytes = 512;
  static constexpr uint16_t kQueueSize = 256;

  /// `image`: an open regular file. `read_only`: offer VIRTIO_BLK_F_RO and fail writes.
  /// `serial`: the GET_ID answer (at most 20 bytes are used).
  static Result<std::unique_ptr<VirtioBlk>> create(UniqueFd image, bool read_only, std::string serial = "kiln");

  uint64_t capacity_sectors() const { return capacity_; }

  std::string name() const override { return "virtio-blk"; }
  uint32_t device_type() const override;
  uint64_t features() const override;
  size_t queue_count() const override { return 1; }
  uint16_t queue_max_size(size_t) const override { return kQueueSize; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void activate(VirtioTransport& transport, uint64_t driver_features) override;
  void reset() override { transport_ = nullptr; }
  void queue_notify(size_t index) override;
  // No device state beyond the queues: requests complete before queue_notify returns.
  void save(StateWriter&) const override {}
  void load(SectionReader&) override {}

 private:
  VirtioBlk(UniqueFd image, bool read_only, std::string serial, uint64_t capacity)
      : fd_(std::move(image)), read_only_(read_only), serial_(std::move(serial)), capacity_(capacity) {}
  /// Execute one request; returns the bytes written into the chain's writable part.
  uint32_t handle(const DescriptorChain& chain);
  uint8_t transfer(const DescriptorChain& chain, bool to_disk, uint64_t sector, uint64_t data_offset,
                   uint64_t data_len);

  UniqueFd fd_;
  bool read_only_;
  std::string serial_;
  uint64_t capacity_;
  VirtioTransport* transport_ = nullptr;
  GuestErrorLog log_{"virtio-blk"};
};

}  // namespace kiln::vmm::kvm
