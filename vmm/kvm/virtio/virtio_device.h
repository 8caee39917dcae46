// The split between a virtio transport (virtio_mmio.h: registers, feature negotiation,
// queue configuration, interrupts) and a device (virtio_console.h, virtio_blk.h: what
// the queues carry). One mutex per device, owned here: the transport takes it for every
// register access from a vCPU thread, and a device's own I/O-thread entry points take
// it too, so transport state, queues and device state are all guarded by one lock.
#pragma once

#include "vmm/kvm/guest_memory.h"
#include "vmm/kvm/virtio/virtqueue.h"

#include <cstdint>
#include <mutex>
#include <span>
#include <string>

namespace kiln::vmm::kvm {

class StateWriter;
class SectionReader;

/// What an activated device may ask of its transport. Only with the device mutex held.
class VirtioTransport {
 public:
  virtual Virtqueue& queue(size_t index) = 0;
  /// Raise the used-buffer interrupt if `queue` added used entries the driver wants to hear of.
  virtual void notify_used(size_t index) = 0;
  /// The driver's state is unusable: set DEVICE_NEEDS_RESET and tell the driver.
  virtual void device_needs_reset(const std::string& why) = 0;
  virtual const GuestMemory& memory() const = 0;

 protected:
  ~VirtioTransport() = default;
};

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  /// Short name for logs and the snapshot section ("virtio-console").
  virtual std::string name() const = 0;
  /// VIRTIO_ID_* (linux/virtio_ids.h).
  virtual uint32_t device_type() const = 0;
  /// Device-specific feature bits; the transport adds VERSION_1 and INDIRECT_DESC.
  virtual uint64_t features() const = 0;
  virtual size_t queue_count() const = 0;
  /// QueueNumMax of each queue (a power of two).
  virtual uint16_t queue_max_size(size_t) const { return 256; }
  /// Cap on one request's bytes in a queue (see Virtqueue).
  virtual uint64_t queue_max_chain_bytes(size_t) const { return Virtqueue::kDefaultMaxChainBytes; }

  /// Device config space (at 0x100 of the MMIO window). Bytes past its end read as zero.
  virtual void read_config(uint64_t offset, std::span<uint8_t> data) const = 0;
  /// Writes are ignored unless a device has writable config fields.
  virtual void write_config(uint64_t, std::span<const uint8_t>) {}

  /// The driver set DRIVER_OK. `transport` stays valid until reset(). Also called after
  /// load() of an active device, so it must not reset device state.
  virtual void activate(VirtioTransport& transport, uint64_t driver_features) = 0;
  /// Device reset (status 0, or before load()): drop all device state and the transport.
  virtual void reset() = 0;
  /// The driver wrote QueueNotify for an enabled queue of an active device.
  virtual void queue_notify(size_t index) = 0;

  /// Device state after the transport's in the device's snapshot section.
  virtual void save(StateWriter& out) const = 0;
  virtual void load(SectionReader& in) = 0;

  std::mutex& mutex() const { return mutex_; }

 private:
  mutable std::mutex mutex_;
};

}  // namespace kiln::vmm::kvm
