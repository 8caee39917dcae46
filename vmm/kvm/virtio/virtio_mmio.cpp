#include "vmm/kvm/virtio/virtio_mmio.h"

#include "vmm/kvm/state_stream.h"

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>

#include <cstring>

namespace kiln::vmm::kvm {

namespace {

constexpr uint32_t kMagic = 0x74726976;      // "virt"
constexpr uint32_t kVersion = 2;             // modern (virtio 1.x) register layout
constexpr uint32_t kVendorId = 0x6e6c696b;   // "kiln"
constexpr uint64_t kTransportFeatures = (1ull << VIRTIO_F_VERSION_1) | (1ull << kVirtioRingFeatureIndirectDesc);

void set_low(uint64_t& v, uint32_t low) { v = (v & ~0xffffffffull) | low; }
void set_high(uint64_t& v, uint32_t high) { v = (v & 0xffffffffull) | (uint64_t{high} << 32); }

}  // namespace

std::string virtio_mmio_cmdline(uint64_t base, uint32_t gsi) {
  return fmt::format("virtio_mmio.device={}K@{:#x}:{}", kVirtioMmioWindowBytes / 1024, base, gsi);
}

VirtioMmio::VirtioMmio(const GuestMemory& memory, IrqLine& irq, std::unique_ptr<VirtioDevice> device,
                       std::string name)
    : memory_(memory), irq_(irq), device_(std::move(device)),
      name_(name.empty() ? device_->name() : std::move(name)), log_(name_) {
  queues_.reserve(device_->queue_count());
  for (size_t i = 0; i < device_->queue_count(); ++i)
    queues_.emplace_back(memory_, device_->queue_max_size(i), fmt::format("{} queue {}", name_, i),
                         device_->queue_max_chain_bytes(i));
}

uint32_t VirtioMmio::status() const {
  std::lock_guard lock(device_->mutex());
  return state_.status;
}

uint64_t VirtioMmio::offered_features() const { return device_->features() | kTransportFeatures; }

void VirtioMmio::read(uint64_t offset, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  std::lock_guard lock(device_->mutex());
  if (offset >= VIRTIO_MMIO_CONFIG) {
    device_->read_config(offset - VIRTIO_MMIO_CONFIG, data);
    return;
  }
  // Registers are 32 bits wide and must be read as such (4.2.2.2); anything else reads 0.
  if (data.size() != 4 || offset % 4 != 0) {
    log_.report("{}-byte read at register offset {:#x}", data.size(), offset);
    return;
  }
  const uint32_t v = read_register(offset);
  std::memcpy(data.data(), &v, 4);
}

void VirtioMmio::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(device_->mutex());
  if (offset >= VIRTIO_MMIO_CONFIG) {
    device_->write_config(offset - VIRTIO_MMIO_CONFIG, data);
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) {
    log_.report("{}-byte write at register offset {:#x} ignored", data.size(), offset);
    return;
  }
  uint32_t v = 0;
  std::memcpy(&v, data.data(), 4);
  write_register(offset, v);
}

Virtqueue* VirtioMmio::selected_queue() {
  return state_.queue_sel < queues_.size() ? &queues_[state_.queue_sel] : nullptr;
}

uint32_t VirtioMmio::read_register(uint64_t offset) const {
  const Virtqueue* q = state_.queue_sel < queues_.size() ? &queues_[state_.queue_sel] : nullptr;
  switch (offset) {
    case VIRTIO_MMIO_MAGIC_VALUE: return kMagic;
    case VIRTIO_MMIO_VERSION: return kVersion;
    case VIRTIO_MMIO_DEVICE_ID: return device_->device_type();
    case VIRTIO_MMIO_VENDOR_ID: return kVendorId;
    case VIRTIO_MMIO_DEVICE_FEATURES:
      return state_.device_features_sel < 2
                 ? static_cast<uint32_t>(offered_features() >> (32 * state_.device_features_sel))
                 : 0;
    case VIRTIO_MMIO_QUEUE_NUM_MAX: return q != nullptr ? q->max_size() : 0;
    case VIRTIO_MMIO_QUEUE_READY: return q != nullptr && q->ready() ? 1 : 0;
    case VIRTIO_MMIO_INTERRUPT_STATUS: return state_.interrupt_status;
    case VIRTIO_MMIO_STATUS: return state_.status;
    case VIRTIO_MMIO_CONFIG_GENERATION: return state_.config_generation;
    default: return 0;  // write-only or unknown: reads as zero
  }
}

void VirtioMmio::write_register(uint64_t offset, uint32_t value) {
  Virtqueue* q = selected_queue();
  // Queue configuration may only change while the queue is disabled (4.2.3.2).
  VirtqueueState* qs = q != nullptr && !q->ready() ? &q->state() : nullptr;
  switch (offset) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL: state_.device_features_sel = value; return;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL: state_.driver_features_sel = value; return;
    case VIRTIO_MMIO_DRIVER_FEATURES:
      if ((state_.status & VIRTIO_CONFIG_S_FEATURES_OK) != 0 || state_.driver_features_sel > 1) {
        log_.report("driver features written after FEATURES_OK or with selector {}", state_.driver_features_sel);
        return;
      }
      if (state_.driver_features_sel == 0) set_low(state_.driver_features, value);
      else set_high(state_.driver_features, value);
      return;
    case VIRTIO_MMIO_QUEUE_SEL: state_.queue_sel = value; return;
    case VIRTIO_MMIO_QUEUE_NUM:
      if (qs != nullptr) qs->size = value <= 0xffff ? static_cast<uint16_t>(value) : 0;
      return;
    case VIRTIO_MMIO_QUEUE_DESC_LOW: if (qs != nullptr) set_low(qs->desc_gpa, value); return;
    case VIRTIO_MMIO_QUEUE_DESC_HIGH: if (qs != nullptr) set_high(qs->desc_gpa, value); return;
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW: if (qs != nullptr) set_low(qs->avail_gpa, value); return;
    case VIRTIO_MMIO_QUEUE_AVAIL_HIGH: if (qs != nullptr) set_high(qs->avail_gpa, value); return;
    case VIRTIO_MMIO_QUEUE_USED_LOW: if (qs != nullptr) set_low(qs->used_gpa, value); return;
    case VIRTIO_MMIO_QUEUE_USED_HIGH: if (qs != nullptr) set_high(qs->used_gpa, value); return;
    case VIRTIO_MMIO_QUEUE_READY:
      if (q == nullptr) return;
      if (value == 0) {
        q->state().ready = false;
      } else if (!q->ready()) {
        if (Result<void> r = q->enable(); !r) device_needs_reset(fmt::format("queue {}: {}", state_.queue_sel, r.error().message));
      }
      return;
    case VIRTIO_MMIO_QUEUE_NOTIFY:
      if ((state_.status & VIRTIO_CONFIG_S_DRIVER_OK) == 0 || (state_.status & VIRTIO_CONFIG_S_NEEDS_RESET) != 0)
        return;
      if (value >= queues_.size() || !queues_[value].ready()) {
        log_.report("notify for queue {} which is not enabled", value);
        return;
      }
      device_->queue_notify(value);
      check_queues();
      return;
    case VIRTIO_MMIO_INTERRUPT_ACK: state_.interrupt_status &= ~value; return;
    case VIRTIO_MMIO_STATUS: write_status(value); return;
    default:
      log_.report("write {:#x} to unknown or read-only register {:#x} ignored", value, offset);
      return;
  }
}

void VirtioMmio::write_status(uint32_t value) {
  if (value == 0) {
    reset_device();
    return;
  }
  const uint32_t old = state_.status;
  if ((old & ~value & ~uint32_t{VIRTIO_CONFIG_S_NEEDS_RESET}) != 0) {
    device_needs_reset(fmt::format("driver cleared status bits ({:#x} -> {:#x}) without a reset", old, value));
    return;
  }
  const uint32_t added = value & ~old;
  if ((added & VIRTIO_CONFIG_S_FEATURES_OK) != 0) {
    const uint64_t unknown = state_.driver_features & ~offered_features();
    if (unknown != 0 || (state_.driver_features & (1ull << VIRTIO_F_VERSION_1)) == 0) {
      // Leaving FEATURES_OK clear is how a device refuses (3.1.1 step 6).
      log_.report("refusing driver features {:#x} (unknown bits {:#x}, VERSION_1 required)",
                  state_.driver_features, unknown);
      value &= ~uint32_t{VIRTIO_CONFIG_S_FEATURES_OK};
    }
  }
  if ((added & VIRTIO_CONFIG_S_DRIVER_OK) != 0 && (value & VIRTIO_CONFIG_S_FEATURES_OK) == 0) {
    state_.status = value & ~uint32_t{VIRTIO_CONFIG_S_DRIVER_OK};
    device_needs_reset("DRIVER_OK without FEATURES_OK");
    return;
  }
  state_.status = value | (old & VIRTIO_CONFIG_S_NEEDS_RESET);
  if ((added & VIRTIO_CONFIG_S_DRIVER_OK) != 0) activate_device();
}

void VirtioMmio::activate_device() {
  const bool indirect = (state_.driver_features & (1ull << kVirtioRingFeatureIndirectDesc)) != 0;
  for (Virtqueue& q : queues_) q.set_indirect_allowed(indirect);
  device_->activate(*this, state_.driver_features);
}

void VirtioMmio::reset_device() {
  device_->reset();
  for (Virtqueue& q : queues_) q.reset();
  state_ = VirtioMmioState{};
}

void VirtioMmio::check_queues() {
  for (size_t i = 0; i < queues_.size(); ++i)
    if (queues_[i].broken()) device_needs_reset(fmt::format("queue {} is broken", i));
}

void VirtioMmio::notify_used(size_t index) {
  if (index >= queues_.size()) return;
  // Devices also run queues from the I/O thread, where no QueueNotify follows to check.
  if (queues_[index].broken()) device_needs_reset(fmt::format("queue {} is broken", index));
  if (!queues_[index].take_interrupt()) return;
  state_.interrupt_status |= VIRTIO_MMIO_INT_VRING;
  irq_.pulse();
}

void VirtioMmio::device_needs_reset(const std::string& why) {
  if ((state_.status & VIRTIO_CONFIG_S_NEEDS_RESET) != 0) return;
  log_.report("{}: device needs reset", why);
  state_.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
  state_.interrupt_status |= VIRTIO_MMIO_INT_CONFIG;
  irq_.pulse();
}

void VirtioMmio::save(StateWriter& out) const {
  std::lock_guard lock(device_->mutex());
  out.u32(state_.status);
  out.u32(state_.device_features_sel);
  out.u32(state_.driver_features_sel);
  out.u64(state_.driver_features);
  out.u32(state_.queue_sel);
  out.u32(state_.interrupt_status);
  out.u32(state_.config_generation);
  out.u32(static_cast<uint32_t>(queues_.size()));
  for (const Virtqueue& q : queues_) {
    const VirtqueueState& s = q.state();
    out.u16(s.size);
    out.u8(s.ready ? 1 : 0);
    out.u64(s.desc_gpa);
    out.u64(s.avail_gpa);
    out.u64(s.used_gpa);
    out.u16(s.next_avail);
    out.u16(s.next_used);
    out.u8(s.broken ? 1 : 0);
  }
  device_->save(out);
}

void VirtioMmio::load(SectionReader& in) {
  std::lock_guard lock(device_->mutex());
  reset_device();
  VirtioMmioState s;
  s.status = in.u32();
  s.device_features_sel = in.u32();
  s.driver_features_sel = in.u32();
  s.driver_features = in.u64();
  s.queue_sel = in.u32();
  s.interrupt_status = in.u32();
  s.config_generation = in.u32();
  const uint32_t count = in.u32();
  if (in.ok() && count != queues_.size())
    in.fail(fmt::format("{} queues saved, the device has {}", count, queues_.size()));
  for (size_t i = 0; i < queues_.size() && in.ok(); ++i) {
    VirtqueueState& q = queues_[i].state();
    q.size = in.u16();
    q.ready = in.u8() != 0;
    q.desc_gpa = in.u64();
    q.avail_gpa = in.u64();
    q.used_gpa = in.u64();
    q.next_avail = in.u16();
    q.next_used = in.u16();
    q.broken = in.u8() != 0;
    if (Result<void> r = queues_[i].validate(); in.ok() && !r) in.fail(fmt::format("queue {}: {}", i, r.error().message));
  }
  if (!in.ok()) {
    reset_device();
    return;
  }
  state_ = s;
  device_->load(in);
  if (!in.ok()) {
    reset_device();
    return;
  }
  if ((state_.status & VIRTIO_CONFIG_S_DRIVER_OK) != 0) activate_device();
}

}  // namespace kiln::vmm::kvm
