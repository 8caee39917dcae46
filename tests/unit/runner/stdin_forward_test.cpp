// kiln's stdin to the command: which stdins are forwarded, and forwarding within
// the agent's credit, against a real pipe and a real socket as the agent channel.
#include "runner/stdin_forward.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>

using namespace kiln;
using namespace kiln::runner;
using proto::MsgType;

namespace {

struct Fds {
  int fds[2] = {-1, -1};
  ~Fds() {
    for (int fd : fds)
      if (fd >= 0) ::close(fd);
  }
};

Deadline soon() { return Clock::now() + std::chrono::seconds(5); }

// Everything the host side has written to the guest end so far, as frames.
std::vector<proto::Frame> frames_sent(AgentClient& agent, int guest_fd) {
  EXPECT_TRUE(agent.flush(soon()).ok());
  proto::FrameDecoder d;
  char buf[65536];
  for (ssize_t n; (n = ::recv(guest_fd, buf, sizeof buf, MSG_DONTWAIT)) > 0;) d.feed(buf, static_cast<size_t>(n));
  std::vector<proto::Frame> out;
  while (auto f = d.next()) out.push_back(std::move(*f));
  return out;
}

}  // namespace

TEST(StdinMode, DevNullATerminalAndAClosedFdAreNotForwarded) {
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(null_fd, 0);
  EXPECT_EQ(stdin_mode_for(null_fd), proto::StdinMode::null);
  ::close(null_fd);
  EXPECT_EQ(stdin_mode_for(null_fd), proto::StdinMode::null);  // closed now

  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  int tty = ::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(tty, 0);
  EXPECT_EQ(stdin_mode_for(tty), proto::StdinMode::null);
  ::close(tty);
  ::close(master);
}

TEST(StdinMode, PipesFilesAndOtherDevicesAreForwarded) {
  Fds p;
  ASSERT_EQ(::pipe2(p.fds, O_CLOEXEC), 0);
  EXPECT_EQ(stdin_mode_for(p.fds[0]), proto::StdinMode::stream);
  std::FILE* f = std::tmpfile();
  EXPECT_EQ(stdin_mode_for(::fileno(f)), proto::StdinMode::stream);
  std::fclose(f);
  int zero = ::open("/dev/zero", O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(stdin_mode_for(zero), proto::StdinMode::stream);  // a device, but not /dev/null
  ::close(zero);
}

TEST(StdinForwarder, ReadsNothingWithoutCreditAndNeverMoreThanTheCredit) {
  Fds chan, in;
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, chan.fds), 0);
  ASSERT_EQ(::pipe2(in.fds, O_CLOEXEC), 0);
  AgentClient agent(chan.fds[0], [] { return std::optional<std::string>(); });
  StdinForwarder input(in.fds[0]);
  ASSERT_EQ(::write(in.fds[1], "0123456789", 10), 10);
  EXPECT_EQ(input.fd_to_watch(agent), -1) << "no credit yet: stdin must not even be polled";

  input.add_credit(4);
  EXPECT_EQ(input.fd_to_watch(agent), in.fds[0]);
  input.forward(agent);
  EXPECT_EQ(input.fd_to_watch(agent), -1);  // credit used up
  auto sent = frames_sent(agent, chan.fds[1]);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].type, MsgType::stdin_data);
  EXPECT_EQ(sent[0].payload, "0123");

  input.add_credit(100);
  input.forward(agent);
  ::close(in.fds[1]);
  in.fds[1] = -1;
  input.forward(agent);  // end of input
  EXPECT_EQ(input.fd_to_watch(agent), -1);
  sent = frames_sent(agent, chan.fds[1]);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].payload, "456789");
  EXPECT_EQ(sent[1].type, MsgType::stdin_eof);
  EXPECT_EQ(input.forwarded(), 10u);
}
