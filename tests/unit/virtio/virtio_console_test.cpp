// virtio-console driven like Linux's virtio_console driver: MMIO negotiation, the
// multiport control handshake byte by byte, data both ways through a real socketpair,
// flow control, hang-up, and a snapshot round trip in the middle of a stream.
#include "vmm/kvm/virtio/virtio_console.h"

#include "tests/unit/virtio/console_guest.h"
#include "vmm/kvm/state_stream.h"

#include <gtest/gtest.h>
#include <linux/virtio_console.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <map>

namespace kiln::vmm::kvm {
namespace {

using testing::Buf;
using testing::GuestRing;

using testing::ConsoleGuest;
using testing::control;
using testing::drain;
using testing::kCtrlBufBytes;
using testing::kCtrlBufs;
using testing::kRxBufBytes;
using testing::socket_pair;

class ConsoleTest : public ::testing::Test {
 protected:
  ConsoleTest() : mem(testing::make_memory(4 << 20)) { attach(); }
  void attach() {
    auto [device_end, host_end] = socket_pair();
    peer = std::move(host_end);
    auto dev = std::make_unique<VirtioConsole>(std::move(device_end), [this] { ++wakes; }, port_name);
    dev->set_on_failure([this](const std::string& why) { failures.push_back(why); });
    console = dev.get();
    mmio = std::make_unique<VirtioMmio>(mem, irq, std::move(dev));
    guest = std::make_unique<ConsoleGuest>(mem, *mmio);
  }
  /// Probe, handshake, and open the port from the guest side.
  void connect() {
    guest->probe();
    guest->send_control(control(0, VIRTIO_CONSOLE_PORT_READY, 1));
    guest->send_control(control(0, VIRTIO_CONSOLE_PORT_OPEN, 1));
    guest->completed(2);
  }

  std::string port_name = proto::kAgentPortName;
  GuestMemory mem;
  testing::CountingIrq irq;
  UniqueFd peer;
  VirtioConsole* console = nullptr;
  std::unique_ptr<VirtioMmio> mmio;
  std::unique_ptr<ConsoleGuest> guest;
  int wakes = 0;
  std::vector<std::string> failures;  ///< what the device told the engine, in order
};

TEST_F(ConsoleTest, ConfigAndFeatures) {
  testing::MmioDriver& d = guest->driver();
  EXPECT_EQ(d.read(VIRTIO_MMIO_DEVICE_ID), 3u);
  EXPECT_EQ(d.config<uint32_t>(4), 1u);  // max_nr_ports
  EXPECT_NE(d.device_features() & (1ull << VIRTIO_CONSOLE_F_MULTIPORT), 0u);
}

TEST_F(ConsoleTest, ControlHandshakeMatchesLinux) {
  guest->probe();
  // DEVICE_READY -> PORT_ADD for port 0.
  EXPECT_EQ(guest->completed(2), std::vector<std::string>{control(0, VIRTIO_CONSOLE_PORT_ADD, 1)});
  EXPECT_GT(irq.pulses, 0);
  // PORT_READY -> the name (NUL-terminated) and "host connected".
  guest->send_control(control(0, VIRTIO_CONSOLE_PORT_READY, 1));
  const std::string name("org.kiln.agent.0\0", 17);
  EXPECT_EQ(guest->completed(2), (std::vector<std::string>{control(0, VIRTIO_CONSOLE_PORT_NAME, 1, name),
                                                            control(0, VIRTIO_CONSOLE_PORT_OPEN, 1)}));
  // Messages for other ports, and garbage events, are ignored without a reply.
  guest->send_control(control(5, VIRTIO_CONSOLE_PORT_READY, 1));
  guest->send_control(control(0, 999, 1));
  guest->send_control("abc");  // shorter than a control header
  EXPECT_TRUE(guest->completed(2).empty());
  EXPECT_EQ(guest->driver().status() & VIRTIO_CONFIG_S_NEEDS_RESET, 0u);
}

TEST_F(ConsoleTest, EachConsoleAnnouncesTheNameItWasGiven) {
  // The kvm engine's share channel is a second console that differs only by its name.
  port_name = "org.kiln.share.0";
  attach();
  guest->probe();
  EXPECT_EQ(guest->completed(2), std::vector<std::string>{control(0, VIRTIO_CONSOLE_PORT_ADD, 1)});
  guest->send_control(control(0, VIRTIO_CONSOLE_PORT_READY, 1));
  const std::string name("org.kiln.share.0\0", 17);
  EXPECT_EQ(guest->completed(2), (std::vector<std::string>{control(0, VIRTIO_CONSOLE_PORT_NAME, 1, name),
                                                            control(0, VIRTIO_CONSOLE_PORT_OPEN, 1)}));
}

TEST_F(ConsoleTest, ControlMessagesWaitForBuffers) {
  testing::MmioDriver& d = guest->driver();
  ASSERT_TRUE(d.negotiate((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_CONSOLE_F_MULTIPORT)));
  for (uint32_t q = 0; q < 4; ++q) d.setup_queue(q, guest->ring(q));
  d.driver_ok();
  guest->send_control(control(VIRTIO_CONSOLE_BAD_ID, VIRTIO_CONSOLE_DEVICE_READY, 1));
  EXPECT_TRUE(guest->completed(2).empty());
  guest->post(2, {kCtrlBufs, kCtrlBufBytes, true});
  d.notify(2);
  EXPECT_EQ(guest->completed(2), std::vector<std::string>{control(0, VIRTIO_CONSOLE_PORT_ADD, 1)});
}

TEST_F(ConsoleTest, GuestToHost) {
  connect();
  guest->write("hello ");
  guest->write("host", 1);
  EXPECT_EQ(drain(peer.get()), "hello host");
  EXPECT_EQ(guest->completed(1).size(), 2u);
}

TEST_F(ConsoleTest, HostToGuestOnlyOnceTheGuestOpenedThePort) {
  guest->probe();
  guest->send_control(control(0, VIRTIO_CONSOLE_PORT_READY, 1));
  guest->post_rx(4);
  ASSERT_EQ(::write(peer.get(), "early", 5), 5);
  console->on_host_readable();
  EXPECT_EQ(guest->received(), "");  // Linux would discard data for a closed port
  EXPECT_FALSE(console->io_interest().readable);
  const int wakes_before = wakes;
  guest->send_control(control(0, VIRTIO_CONSOLE_PORT_OPEN, 1));
  EXPECT_EQ(guest->received(), "early");
  EXPECT_TRUE(console->io_interest().readable);
  EXPECT_GT(wakes, wakes_before);  // the I/O thread is told to poll POLLIN now
  ASSERT_EQ(::write(peer.get(), " and late", 9), 9);
  console->on_host_readable();
  EXPECT_EQ(guest->received(), " and late");
}

TEST_F(ConsoleTest, HostDataWaitsForReceiveBuffers) {
  connect();
  const std::string big(3 * kRxBufBytes, 'x');
  ASSERT_EQ(::write(peer.get(), big.data(), big.size()), static_cast<ssize_t>(big.size()));
  console->on_host_readable();
  EXPECT_EQ(guest->received(), "");
  EXPECT_FALSE(console->io_interest().readable);  // nothing to read into: do not poll
  guest->post_rx(2);                              // the notify reads straight from the fd
  EXPECT_EQ(guest->received().size(), 2 * kRxBufBytes);
  EXPECT_FALSE(console->io_interest().readable);
  guest->post_rx(2);
  EXPECT_EQ(guest->received().size(), kRxBufBytes);
  EXPECT_TRUE(console->io_interest().readable);
}

TEST_F(ConsoleTest, BuffersPostedWhileTheHostIsQuietWakeTheIoThread) {
  // The I/O thread last polled with no receive buffers (no POLLIN). The guest then
  // posts buffers while the host has nothing to send: the device must tell the I/O
  // thread, or the host's next message is never read (a lost wake-up).
  connect();
  EXPECT_FALSE(console->io_interest().readable);  // what the I/O thread polls for
  const int wakes_before = wakes;
  guest->post_rx(2);
  EXPECT_GT(wakes, wakes_before);
  EXPECT_TRUE(console->io_interest().readable);
  ASSERT_EQ(::write(peer.get(), "sync", 4), 4);
  console->on_host_readable();
  EXPECT_EQ(guest->received(), "sync");
}

TEST_F(ConsoleTest, GuestTransmitStopsWhileTheHostIsFull) {
  connect();
  int small = 4096;
  ASSERT_EQ(::setsockopt(console->host_fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  std::string sent;
  const int wakes_before = wakes;
  for (int i = 0; i < 12; ++i) {
    const std::string chunk(0x8000, static_cast<char>('a' + i));
    guest->write(chunk, static_cast<uint64_t>(i));  // a buffer the device holds is not reused
    sent += chunk;
  }
  // The device stopped consuming: a transmit buffer is held back, one chain's worth is buffered.
  const size_t done = guest->completed(1).size();
  EXPECT_LT(done, 12u);
  EXPECT_TRUE(console->io_interest().writable);
  EXPECT_GT(wakes, wakes_before);  // the I/O thread is told to poll POLLOUT now
  std::string got;
  for (int round = 0; round < 1000 && got.size() < sent.size(); ++round) {
    got += drain(peer.get());
    console->on_host_writable();
  }
  EXPECT_EQ(got.size(), sent.size());
  EXPECT_TRUE(got == sent) << "bytes reordered or corrupted under flow control";
  EXPECT_EQ(done + guest->completed(1).size(), 12u);
  EXPECT_FALSE(console->io_interest().writable);
}

// A guest may reuse a transmit buffer the instant it sees it in the used ring (Linux
// frees it on the next write and the allocator hands the same memory to the next
// one), so the device must have taken the bytes before it returns the buffer. Here
// the buffer lies on the used-ring slot the device fills to return it: the device's
// own used-ring write is that instant reuse, and only bytes read before it arrive as
// the guest wrote them.
class ConsoleReuseTest : public ConsoleTest {
 protected:
  /// Post "SENTINEL" in the transmit queue's next used-ring element (8 bytes: id, len).
  void write_into_used_slot() {
    GuestRing& tx = guest->ring(1);
    const uint64_t slot = tx.used() + 4 + 8ull * (tx.used_idx() % tx.size());
    ASSERT_TRUE(mem.write(slot, kSentinel.data(), kSentinel.size()));
    guest->post(1, {slot, static_cast<uint32_t>(kSentinel.size())});
    guest->driver().notify(1);
  }
  const std::string kSentinel = "SENTINEL";
};

TEST_F(ConsoleReuseTest, BufferTheHostTakesAtOnceIsReadBeforeItIsReturned) {
  connect();
  write_into_used_slot();
  EXPECT_EQ(guest->completed(1).size(), 1u);
  EXPECT_EQ(drain(peer.get()), kSentinel) << "the device read the buffer after returning it to the guest";
}

TEST_F(ConsoleReuseTest, BufferTheHostCannotTakeYetIsCopiedBeforeItIsReturned) {
  connect();
  // Fill the channel (bytes in flight that kiln has not read yet): the send fails
  // with EAGAIN and the device must keep a copy of the bytes.
  std::string in_flight;
  for (const std::string block(1024, 'f');;) {
    const ssize_t n = ::write(console->host_fd(), block.data(), block.size());
    if (n <= 0) break;
    in_flight.append(block, 0, static_cast<size_t>(n));
  }
  ASSERT_EQ(errno, EAGAIN);
  write_into_used_slot();
  ASSERT_TRUE(console->io_interest().writable);
  EXPECT_EQ(guest->completed(1).size(), 1u);
  std::string got;
  for (int round = 0; round < 1000 && got.size() < in_flight.size() + kSentinel.size(); ++round) {
    got += drain(peer.get());
    console->on_host_writable();
  }
  ASSERT_EQ(got.size(), in_flight.size() + kSentinel.size());
  EXPECT_EQ(got.substr(in_flight.size()), kSentinel) << "the device copied the buffer after returning it to the guest";
}

TEST_F(ConsoleTest, HostHangUpTellsTheGuest) {
  connect();
  guest->post_rx(2);
  peer.reset();
  console->on_host_readable();
  EXPECT_EQ(guest->completed(2), std::vector<std::string>{control(0, VIRTIO_CONSOLE_PORT_OPEN, 0)});
  EXPECT_FALSE(console->io_interest().readable);
  EXPECT_TRUE(failures.empty()) << "nothing was lost yet";
  guest->write("into the void");  // cannot be delivered, but the buffer comes back
  EXPECT_EQ(guest->completed(1).size(), 1u);
  ASSERT_EQ(failures.size(), 1u) << "output that cannot be delivered must end the run with a reason";
  EXPECT_EQ(failures[0], std::string("sending 13 bytes of guest output to kiln: ") + std::strerror(EPIPE));
  guest->write("more");
  EXPECT_EQ(guest->completed(1).size(), 1u);
  EXPECT_EQ(failures.size(), 1u) << "reported once";
  EXPECT_EQ(console->lost_bytes(), 17u);
}

TEST_F(ConsoleTest, GuestOutputStillGoesOutAfterTheHostStopsSending) {
  // The host end shutting down its sending side ends host->guest data only: kiln may
  // still be reading the command's output.
  connect();
  guest->post_rx(2);
  ASSERT_EQ(::shutdown(peer.get(), SHUT_WR), 0);
  console->on_host_readable();
  EXPECT_EQ(guest->completed(2), std::vector<std::string>{control(0, VIRTIO_CONSOLE_PORT_OPEN, 0)});
  guest->write("still heard");
  EXPECT_EQ(guest->completed(1).size(), 1u);
  EXPECT_EQ(drain(peer.get()), "still heard");
  EXPECT_TRUE(failures.empty());
}

TEST_F(ConsoleTest, BufferedOutputTheHostCanNoLongerTakeIsReported) {
  connect();
  int small = 4096;
  ASSERT_EQ(::setsockopt(console->host_fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  guest->write(std::string(0x8000, 'x'));
  ASSERT_TRUE(console->io_interest().writable) << "the test needs bytes the socket did not take";
  EXPECT_TRUE(failures.empty());
  peer.reset();  // kiln's end is gone with bytes still buffered in the device
  console->on_host_writable();
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_NE(failures[0].find("guest output to kiln"), std::string::npos) << failures[0];
  EXPECT_GT(console->lost_bytes(), 0u);
  EXPECT_FALSE(console->io_interest().writable) << "nothing left to poll for";
}

TEST_F(ConsoleTest, BrokenRingSeenOnTheIoThreadNeedsReset) {
  connect();
  guest->post_rx(1);
  guest->ring(0).set_avail_idx(500);
  ASSERT_EQ(::write(peer.get(), "x", 1), 1);
  console->on_host_readable();
  EXPECT_NE(guest->driver().status() & VIRTIO_CONFIG_S_NEEDS_RESET, 0u);
  EXPECT_EQ(guest->driver().read(VIRTIO_MMIO_INTERRUPT_STATUS) & 2u, 2u);
}

TEST_F(ConsoleTest, SnapshotRoundTripMidStream) {
  connect();
  guest->post_rx(2);
  int small = 4096;
  ASSERT_EQ(::setsockopt(console->host_fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  std::string sent;
  for (int i = 0; i < 6; ++i) {
    const std::string chunk(0x8000, static_cast<char>('A' + i));
    guest->write(chunk, static_cast<uint64_t>(i));  // a buffer the device holds is not reused
    sent += chunk;
  }
  ASSERT_TRUE(console->io_interest().writable);
  std::string got = drain(peer.get());  // what made it out before the snapshot
  const size_t done_before = guest->completed(1).size();

  StateWriter w;
  w.begin_section("dev.virtio-console");
  mmio->save(w);
  w.end_section();
  const std::string file = w.finish();

  // Restore into a new device with a new host socket; same guest RAM.
  mmio.reset();
  attach();
  auto reader = StateReader::parse(file);
  ASSERT_TRUE(reader) << reader.error().message;
  auto section = reader->section("dev.virtio-console");
  ASSERT_TRUE(section);
  mmio->load(*section);
  ASSERT_TRUE(section->finish()) << section->finish().error().message;
  EXPECT_NE(guest->driver().status() & VIRTIO_CONFIG_S_DRIVER_OK, 0u);

  ConsoleGuest& g = *guest;
  // The new guest view shares RAM with the old one: re-sync its used-ring positions.
  for (size_t i = 0; i < done_before; ++i) g.ring(1).pop_used();
  EXPECT_TRUE(console->io_interest().writable);
  for (int round = 0; round < 1000 && got.size() < sent.size(); ++round) {
    console->on_host_writable();
    got += drain(peer.get());
  }
  EXPECT_TRUE(got == sent) << "lost or reordered bytes across save/load: " << got.size() << " of " << sent.size();
  // Host->guest still works: the receive buffers posted before the snapshot are used.
  ASSERT_EQ(::write(peer.get(), "after", 5), 5);
  console->on_host_readable();
  auto used = g.ring(0).pop_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 5u);
}

TEST_F(ConsoleTest, CorruptStateIsRejected) {
  connect();
  StateWriter w;
  w.begin_section("dev");
  w.u32(VIRTIO_CONFIG_S_DRIVER_OK);  // a truncated transport state
  w.end_section();
  const std::string file = w.finish();
  auto reader = StateReader::parse(file);
  ASSERT_TRUE(reader);
  auto section = reader->section("dev");
  ASSERT_TRUE(section);
  mmio->load(*section);
  EXPECT_FALSE(section->ok());
  EXPECT_EQ(guest->driver().status(), 0u);  // left reset, not half-loaded
}

}  // namespace
}  // namespace kiln::vmm::kvm
