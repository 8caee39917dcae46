// The console with real threads, as the KVM engine runs it: a "vCPU" thread acting as
// the guest (posting receive buffers, echoing what it receives through the transmit
// queue), an I/O thread polling the host fd by io_interest() and woken through
// wake_io, and a host peer streaming 1 MiB in odd-sized pieces and reading the echo.
#include "tests/unit/virtio/console_guest.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <thread>

namespace kiln::vmm::kvm {
namespace {

using namespace std::chrono_literals;

TEST(ConsoleEcho, OneMebibyteRoundTripAcrossThreads) {
  GuestMemory mem = testing::make_memory(4 << 20);
  testing::CountingIrq irq;
  UniqueFd wake(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  auto [device_end, peer] = testing::socket_pair();
  auto dev = std::make_unique<VirtioConsole>(std::move(device_end), [&] {
    const uint64_t one = 1;
    (void)!::write(wake.get(), &one, sizeof one);
  });
  VirtioConsole* console = dev.get();
  VirtioMmio mmio(mem, irq, std::move(dev));
  testing::ConsoleGuest guest(mem, mmio);
  guest.probe();
  guest.send_control(testing::control(0, VIRTIO_CONSOLE_PORT_READY, 1));
  guest.send_control(testing::control(0, VIRTIO_CONSOLE_PORT_OPEN, 1));
  guest.post_rx(8);

  const auto deadline = std::chrono::steady_clock::now() + 30s;
  std::atomic<bool> stop{false};

  std::thread io([&] {
    while (!stop) {
      const VirtioConsole::IoInterest want = console->io_interest();
      pollfd fds[2] = {{want.readable || want.writable ? console->host_fd() : -1,
                        static_cast<short>((want.readable ? POLLIN : 0) | (want.writable ? POLLOUT : 0)), 0},
                       {wake.get(), POLLIN, 0}};
      if (::poll(fds, 2, 10) <= 0) continue;
      if ((fds[1].revents & POLLIN) != 0) {
        uint64_t n;
        (void)!::read(wake.get(), &n, sizeof n);
      }
      if ((fds[0].revents & (POLLIN | POLLHUP)) != 0) console->on_host_readable();
      if ((fds[0].revents & POLLOUT) != 0) console->on_host_writable();
    }
  });

  std::string sent, echoed;  // owned by the host thread until it is joined
  std::atomic<size_t> echoed_bytes{0};
  std::thread host([&] {
    std::string pattern;
    for (size_t i = 0; i < (1u << 20); ++i) pattern.push_back(static_cast<char>((i * 7 + i / 251) & 0xff));
    size_t off = 0, piece = 1;
    while (echoed.size() < pattern.size() && std::chrono::steady_clock::now() < deadline) {
      pollfd p{peer.get(), static_cast<short>(POLLIN | (off < pattern.size() ? POLLOUT : 0)), 0};
      ::poll(&p, 1, 10);
      if (off < pattern.size() && (p.revents & POLLOUT) != 0) {
        piece = piece * 3 % 9973 + 1;
        const ssize_t n = ::write(peer.get(), pattern.data() + off, std::min(piece, pattern.size() - off));
        if (n > 0) off += static_cast<size_t>(n);
      }
      echoed += testing::drain(peer.get());
      echoed_bytes = echoed.size();
    }
    sent = pattern.substr(0, off);
  });

  // The guest ("vCPU"): echo what arrives, never reusing a buffer the device still holds.
  std::deque<uint64_t> free_tx;
  for (uint64_t s = 0; s < 8; ++s) free_tx.push_back(s);
  std::deque<uint64_t> busy_tx;
  std::string backlog;
  while (echoed_bytes < (1u << 20) && std::chrono::steady_clock::now() < deadline) {
    const std::vector<std::string> got = guest.completed(0);
    for (const std::string& s : got) backlog += s;
    if (!got.empty()) guest.post_rx(static_cast<int>(got.size()));
    for (size_t done = guest.completed(1).size(); done > 0; --done) {
      free_tx.push_back(busy_tx.front());
      busy_tx.pop_front();
    }
    while (!backlog.empty() && !free_tx.empty()) {
      const size_t n = std::min<size_t>(backlog.size(), 0x8000);
      guest.write(backlog.substr(0, n), free_tx.front());
      busy_tx.push_back(free_tx.front());
      free_tx.pop_front();
      backlog.erase(0, n);
    }
    if (got.empty()) std::this_thread::sleep_for(100us);
  }
  host.join();
  stop = true;
  io.join();
  EXPECT_EQ(sent.size(), 1u << 20);
  EXPECT_EQ(echoed.size(), sent.size());
  EXPECT_TRUE(echoed == sent) << "echo differs from what was sent";
  EXPECT_GT(irq.pulses, 0);
}

}  // namespace
}  // namespace kiln::vmm::kvm
