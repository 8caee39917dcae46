#include "vmm/kvm/serial_8250.h"

#include "vmm/kvm/state_stream.h"

namespace kiln::vmm::kvm {
namespace {

// Register offsets (DLAB=0 unless noted).
constexpr uint64_t kData = 0, kIer = 1, kIir = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;
constexpr uint8_t kIerThri = 0x02;          // THR-empty interrupt enable
constexpr uint8_t kIirNone = 0x01, kIirThri = 0x02;
constexpr uint8_t kIirFifoBits = 0xc0;      // "16550A with FIFOs", what Linux probes for
constexpr uint8_t kLsrIdle = 0x60;          // THRE | TEMT: we transmit instantly
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kMcrOut2 = 0x08;          // gates the IRQ line on a PC

}  // namespace

void Serial8250::read(uint64_t offset, std::span<uint8_t> data) {
  if (data.size() != 1 || offset >= kPorts) return;
  std::lock_guard lock(mutex_);
  data[0] = read_register(offset);
}

void Serial8250::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.size() != 1 || offset >= kPorts) return;
  std::lock_guard lock(mutex_);
  write_register(offset, data[0]);
}

uint8_t Serial8250::read_register(uint64_t offset) {
  switch (offset) {
    case kData: return dlab() ? dll_ : 0;  // no input
    case kIer: return dlab() ? dlm_ : ier_;
    case kIir: {
      uint8_t v = kIirFifoBits | (thr_interrupt_pending_ ? kIirThri : kIirNone);
      thr_interrupt_pending_ = false;  // reading IIR acknowledges THRE
      update_interrupt();
      return v;
    }
    case kLcr: return lcr_;
    case kMcr: return mcr_;
    case kLsr: return kLsrIdle;
    case kMsr:
      // Loopback wires DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD (Linux's probe checks it);
      // otherwise report carrier, DSR and CTS so the line looks connected.
      if (mcr_ & kMcrLoop)
        return static_cast<uint8_t>(((mcr_ & 0x01) << 5) | ((mcr_ & 0x02) << 3) | ((mcr_ & 0x04) << 4) |
                                    ((mcr_ & 0x08) << 4));
      return 0xb0;
    case kScr: return scr_;
    default: return 0;
  }
}

void Serial8250::write_register(uint64_t offset, uint8_t value) {
  switch (offset) {
    case kData:
      if (dlab()) {
        dll_ = value;
        return;
      }
      if (!(mcr_ & kMcrLoop)) emit(value);
      // Sent at once: the holding register is empty again.
      thr_interrupt_pending_ = true;
      update_interrupt();
      return;
    case kIer:
      if (dlab()) {
        dlm_ = value;
        return;
      }
      // Enabling THRI while THR is empty raises the interrupt right away (real 16550 behaviour).
      if (!(ier_ & kIerThri) && (value & kIerThri)) thr_interrupt_pending_ = true;
      ier_ = value & 0x0f;
      update_interrupt();
      return;
    case kLcr: lcr_ = value; return;
    case kMcr: mcr_ = value & 0x1f; return;
    case kScr: scr_ = value; return;
    default: return;  // FCR and read-only registers
  }
}

void Serial8250::update_interrupt() {
  // Edge per event: Linux's handler loops on IIR, so one edge per pending state is enough.
  if (thr_interrupt_pending_ && (ier_ & kIerThri)) irq_->pulse();
}

void Serial8250::emit(uint8_t byte) {
  if (buffer_.size() >= kMaxKeptBytes) {
    buffer_.erase(0, kMaxKeptBytes / 2);
    dropped_ = true;
  }
  buffer_.push_back(static_cast<char>(byte));
}

std::string Serial8250::output() const {
  std::lock_guard lock(mutex_);
  return dropped_ ? "[... earlier console output dropped ...]\n" + buffer_ : buffer_;
}

void Serial8250::save(StateWriter& out) const {
  std::lock_guard lock(mutex_);
  for (uint8_t v : {ier_, lcr_, mcr_, scr_, dll_, dlm_}) out.u8(v);
  out.u8(thr_interrupt_pending_ ? 1 : 0);
}

void Serial8250::load(SectionReader& in) {
  std::lock_guard lock(mutex_);
  for (uint8_t* v : {&ier_, &lcr_, &mcr_, &scr_, &dll_, &dlm_}) *v = in.u8();
  uint8_t pending = in.u8();
  if (pending > 1) in.fail("serial: THR interrupt flag is not 0 or 1");
  thr_interrupt_pending_ = pending == 1;
  ier_ &= 0x0f;
  mcr_ &= 0x1f;
}

}  // namespace kiln::vmm::kvm
