// The share relay's loop between two real sockets: a SOCK_SEQPACKET pair stands in
// for /dev/fuse (one read is one request, one write one reply, as there) and a
// stream pair for the share port (bytes cut wherever the transport likes).
#include "agent/fuse_relay.h"

#include <linux/fuse.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <future>
#include <optional>
#include <string>

using namespace kiln::agent;

namespace {

constexpr int kWaitMs = 5000;

std::string request(uint64_t unique, const std::string& body) {
  fuse_in_header h{};
  h.len = static_cast<uint32_t>(sizeof h + body.size());
  h.opcode = FUSE_LOOKUP;
  h.unique = unique;
  h.nodeid = 1;
  return std::string(reinterpret_cast<const char*>(&h), sizeof h) + body;
}

std::string reply(uint64_t unique, const std::string& body) {
  fuse_out_header h{static_cast<uint32_t>(sizeof h + body.size()), 0, unique};
  return std::string(reinterpret_cast<const char*>(&h), sizeof h) + body;
}

bool readable(int fd) {
  pollfd pfd{fd, POLLIN, 0};
  return ::poll(&pfd, 1, kWaitMs) > 0;
}

// One message as the kernel's end of /dev/fuse sees it.
std::optional<std::string> receive_message(int fd) {
  if (!readable(fd)) return std::nullopt;
  std::string buf(2u << 20, '\0');
  ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
  if (n < 0) return std::nullopt;
  buf.resize(static_cast<size_t>(n));
  return buf;
}

// Exactly `size` bytes from the host's end of the port.
std::string receive_bytes(int fd, size_t size) {
  std::string out;
  char buf[65536];
  while (out.size() < size && readable(fd)) {
    ssize_t n = ::read(fd, buf, std::min(sizeof buf, size - out.size()));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

void send_all(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    ASSERT_GT(n, 0) << std::strerror(errno);
    done += static_cast<size_t>(n);
  }
}

class FuseRelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fuse_), 0);
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, port_), 0);
  }
  void start() { relay_ = std::async(std::launch::async, relay_fuse, fuse_[0], port_[0]); }
  // Why the relay stopped, once it has (at most kWaitMs).
  std::string stopped_because() {
    if (relay_.wait_for(std::chrono::milliseconds(kWaitMs)) != std::future_status::ready) return "(still running)";
    return relay_.get();
  }
  void close_end(int& fd) {
    ::close(fd);
    fd = -1;
  }
  void TearDown() override {
    // Ending both test ends ends the relay, whatever a failed test left behind.
    for (int* fd : {&kernel(), &host()})
      if (*fd >= 0) close_end(*fd);
    if (relay_.valid()) relay_.wait();
    ::close(fuse_[0]);
    ::close(port_[0]);
  }
  int& kernel() { return fuse_[1]; }
  int& host() { return port_[1]; }

  int fuse_[2] = {-1, -1};
  int port_[2] = {-1, -1};
  std::future<std::string> relay_;
};

TEST_F(FuseRelayTest, RequestsGoOutAsReadAndRepliesComeBackOneWriteEach) {
  start();
  const std::string r1 = request(1, std::string("name\0", 5));
  const std::string r2 = request(2, std::string(3000, 'n'));
  send_all(kernel(), r1);
  send_all(kernel(), r2);
  EXPECT_EQ(receive_bytes(host(), r1.size() + r2.size()), r1 + r2);  // no framing of the relay's own

  // The host's replies arrive cut at arbitrary places: mid-header, across two replies.
  const std::string a = reply(1, std::string(500, 'a'));
  const std::string b = reply(2, std::string(90000, 'b'));
  const std::string wire = a + b;
  size_t done = 0;
  for (size_t cut : {size_t{5}, size_t{600}, size_t{40000}, wire.size()}) {
    send_all(host(), wire.substr(done, cut - done));
    done = cut;
    ::usleep(20'000);  // so the relay reads each piece on its own
  }
  EXPECT_EQ(receive_message(kernel()), a);
  EXPECT_EQ(receive_message(kernel()), b);

  close_end(kernel());  // the kernel's end goes away: unmounted
  EXPECT_EQ(stopped_because(), "the FUSE device reported end of file");
}

TEST_F(FuseRelayTest, RepliesStillFlowWhileTheHostTakesNoRequests) {
  // A port that takes little at a time, and a host that answers before it reads on:
  // the relay must keep delivering replies with a request of its own still pending.
  int small = 4096;
  ASSERT_EQ(::setsockopt(port_[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  start();
  const std::string big = request(7, std::string(100000, 'r'));
  send_all(kernel(), big);
  ::usleep(50'000);
  const std::string early = reply(6, "answer to an earlier request");
  send_all(host(), early);
  EXPECT_EQ(receive_message(kernel()), early);
  EXPECT_EQ(receive_bytes(host(), big.size()), big);
  close_end(host());
  EXPECT_EQ(stopped_because(), "the host closed the share port");
}

TEST_F(FuseRelayTest, AnOversizedReplyStopsTheShareAfterTheGoodOnes) {
  start();
  const std::string good = reply(1, "fine");
  std::string bad = reply(2, "");
  const uint32_t huge = (2u << 20);
  std::memcpy(bad.data(), &huge, sizeof huge);
  send_all(host(), good + bad);
  EXPECT_EQ(receive_message(kernel()), good);
  const std::string why = stopped_because();
  EXPECT_NE(why.find("FUSE reply of 2097152 bytes, over the 1052672-byte limit"), std::string::npos) << why;
}

TEST_F(FuseRelayTest, TheHostHangingUpEndsTheRelay) {
  start();
  close_end(host());
  EXPECT_EQ(stopped_because(), "the host closed the share port");
}

}  // namespace
