// A guest with Linux's virtio_console driver loaded, for the console tests: control
// messages, receive buffers re-posted as the driver does, one transmit buffer per write.
#pragma once

#include "tests/unit/virtio/guest_driver.h"
#include "vmm/kvm/virtio/virtio_console.h"

#include <linux/virtio_console.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

namespace kiln::vmm::kvm::testing {

constexpr uint16_t kRing = 16;
constexpr uint64_t kCtrlBufs = 0x40000, kRxBufs = 0x50000, kTxBufs = 0x80000, kControlTx = 0x30000;
constexpr uint32_t kCtrlBufBytes = 256, kRxBufBytes = 4096;

inline std::string control(uint32_t id, uint16_t event, uint16_t value, std::string_view extra = {}) {
  std::string m(8, '\0');
  std::memcpy(m.data(), &id, 4);
  std::memcpy(m.data() + 4, &event, 2);
  std::memcpy(m.data() + 6, &value, 2);
  return m.append(extra);
}

inline std::pair<UniqueFd, UniqueFd> socket_pair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

inline std::string drain(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

/// A guest with the console driver loaded; each ring at its own page range.
class ConsoleGuest {
 public:
  ConsoleGuest(const GuestMemory& mem, VirtioMmio& dev) : mem_(mem), drv_(dev) {
    for (uint16_t i = 0; i < 4; ++i) rings_.emplace_back(mem, 0x1000 + 0x1000ull * i, kRing);
  }
  /// Probe as Linux does: negotiate, set up four queues, fill the control and port
  /// receive queues, DRIVER_OK, DEVICE_READY.
  void probe(bool ready_message = true) {
    const uint64_t features = (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_CONSOLE_F_MULTIPORT);
    ASSERT_TRUE(drv_.negotiate(features));
    for (uint32_t q = 0; q < 4; ++q) drv_.setup_queue(q, rings_[q]);
    for (uint64_t i = 0; i < 8; ++i) post(2, {kCtrlBufs + i * kCtrlBufBytes, kCtrlBufBytes, true});
    drv_.driver_ok();
    ASSERT_EQ(drv_.status() & VIRTIO_CONFIG_S_NEEDS_RESET, 0u);
    if (ready_message) send_control(control(VIRTIO_CONSOLE_BAD_ID, VIRTIO_CONSOLE_DEVICE_READY, 1));
  }
  void post(uint32_t q, Buf b) { bufs_[q][rings_[q].add({b})] = b; }
  void post_rx(int count) {
    for (int i = 0; i < count; ++i) post(0, {kRxBufs + uint64_t(next_rx_++ % 32) * kRxBufBytes, kRxBufBytes, true});
    drv_.notify(0);
  }
  void send_control(const std::string& msg) {
    ASSERT_TRUE(mem_.write(kControlTx, msg.data(), msg.size()));
    rings_[3].add({{kControlTx, static_cast<uint32_t>(msg.size())}});
    drv_.notify(3);
    EXPECT_TRUE(rings_[3].pop_used());  // control tx completes synchronously, as Linux spins for it
  }
  /// Guest write(): one transmit buffer per call, like port_fops_write.
  void write(const std::string& data, uint64_t slot = 0) {
    const uint64_t at = kTxBufs + slot * 0x10000;
    ASSERT_LE(data.size(), 0x10000u);
    ASSERT_TRUE(mem_.write(at, data.data(), data.size()));
    post(1, {at, static_cast<uint32_t>(data.size())});
    drv_.notify(1);
  }
  /// Completed buffers of queue q, their bytes; receive buffers are re-posted.
  std::vector<std::string> completed(uint32_t q) {
    std::vector<std::string> out;
    while (auto u = rings_[q].pop_used()) {
      const Buf b = bufs_[q].at(static_cast<uint16_t>(u->id));
      out.push_back(testing::read_string(mem_, b.gpa, u->len));
      if (q == 2) post(2, b);
    }
    return out;
  }
  std::string received() {
    std::string all;
    for (const std::string& s : completed(0)) all += s;
    return all;
  }
  GuestRing& ring(uint32_t q) { return rings_[q]; }
  testing::MmioDriver& driver() { return drv_; }

 private:
  const GuestMemory& mem_;
  testing::MmioDriver drv_;
  std::vector<GuestRing> rings_;
  std::map<uint16_t, Buf> bufs_[4];
  int next_rx_ = 0;
};

}  // namespace kiln::vmm::kvm::testing
