#include "vmm/kvm/i8042.h"

#include "vmm/kvm/state_stream.h"

namespace kiln::vmm::kvm {
namespace {

constexpr uint64_t kData = 0, kStatus = 4;
constexpr uint8_t kStatusOutputFull = 0x01;
constexpr uint8_t kStatusSystemFlag = 0x04;  // set after a successful self test
constexpr uint8_t kStatusCommand = 0x08;     // last write went to the command port

constexpr uint8_t kCmdReadCtr = 0x20, kCmdWriteCtr = 0x60, kCmdSelfTest = 0xaa, kCmdKbdTest = 0xab;
constexpr uint8_t kCmdAuxTest = 0xa9, kCmdReadOutp = 0xd0, kCmdWriteOutp = 0xd1, kCmdPulseReset = 0xfe;
constexpr uint8_t kSelfTestOk = 0x55, kPortTestOk = 0x00;
constexpr size_t kMaxQueued = 16;

}  // namespace

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
  if (data.size() != 1) return;
  std::lock_guard lock(mutex_);
  if (offset == kStatus) {
    data[0] = static_cast<uint8_t>(kStatusSystemFlag | (out_.empty() ? 0 : kStatusOutputFull) |
                                   (pending_cmd_ ? kStatusCommand : 0));
  } else if (offset == kData) {
    if (out_.empty()) {
      data[0] = 0;
    } else {
      data[0] = out_.front();
      out_.pop_front();
    }
  }
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.size() != 1) return;
  bool reset = false;
  {
    std::lock_guard lock(mutex_);
    if (offset == kStatus) {
      reset = data[0] == kCmdPulseReset;
      command(data[0]);
    } else if (offset == kData) {
      data_write(data[0]);
    }
  }
  if (reset && on_reset_) on_reset_();  // outside the lock: it stops the VM
}

void I8042::command(uint8_t cmd) {
  auto push = [this](uint8_t v) {
    if (out_.size() < kMaxQueued) out_.push_back(v);
  };
  pending_cmd_ = 0;
  switch (cmd) {
    case kCmdReadCtr: push(ctr_); break;
    case kCmdWriteCtr:
    case kCmdWriteOutp: pending_cmd_ = cmd; break;
    case kCmdReadOutp: push(outp_); break;
    case kCmdSelfTest: push(kSelfTestOk); break;
    case kCmdKbdTest:
    case kCmdAuxTest: push(kPortTestOk); break;
    default: break;  // enable/disable ports and the rest: nothing attached, nothing to do
  }
}

void I8042::data_write(uint8_t value) {
  if (pending_cmd_ == kCmdWriteCtr) ctr_ = value;
  if (pending_cmd_ == kCmdWriteOutp) outp_ = value;
  // A byte for the keyboard itself goes nowhere: there is no keyboard.
  pending_cmd_ = 0;
}

void I8042::save(StateWriter& out) const {
  std::lock_guard lock(mutex_);
  out.u8(ctr_);
  out.u8(outp_);
  out.u8(pending_cmd_);
  out.u8(static_cast<uint8_t>(out_.size()));
  for (uint8_t b : out_) out.u8(b);
}

void I8042::load(SectionReader& in) {
  std::lock_guard lock(mutex_);
  ctr_ = in.u8();
  outp_ = in.u8();
  pending_cmd_ = in.u8();
  if (pending_cmd_ != 0 && pending_cmd_ != kCmdWriteCtr && pending_cmd_ != kCmdWriteOutp)
    in.fail("i8042: unknown pending command");
  uint8_t n = in.u8();
  if (n > kMaxQueued) in.fail("i8042: output queue too long");
  out_.clear();
  for (uint8_t i = 0; in.ok() && i < n; ++i) out_.push_back(in.u8());
}

}  // namespace kiln::vmm::kvm
