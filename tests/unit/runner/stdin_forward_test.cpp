// kiln's stdin to the command: which stdins are forwarded, and forwarding within
// the agent's credit, against a real pipe and a real socket as the agent channel.
#include "runner/stdin_forward.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <future>

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

TEST(StdinMode, DevNullAClosedFdAndATerminalWithoutMinusIAreNotForwarded) {
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(null_fd, 0);
  EXPECT_EQ(stdin_mode_for(null_fd, false), proto::StdinMode::null);
  EXPECT_EQ(stdin_mode_for(null_fd, true), proto::StdinMode::null);
  ::close(null_fd);
  EXPECT_EQ(stdin_mode_for(null_fd, false), proto::StdinMode::null);  // closed now

  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  int tty = ::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(tty, 0);
  EXPECT_EQ(stdin_mode_for(tty, false), proto::StdinMode::null);
  EXPECT_EQ(stdin_mode_for(tty, true), proto::StdinMode::stream);  // kiln run -i
  ::close(tty);
  ::close(master);
}

TEST(StdinMode, PipesFilesAndOtherDevicesAreForwarded) {
  Fds p;
  ASSERT_EQ(::pipe2(p.fds, O_CLOEXEC), 0);
  EXPECT_EQ(stdin_mode_for(p.fds[0], false), proto::StdinMode::stream);
  std::FILE* f = std::tmpfile();
  EXPECT_EQ(stdin_mode_for(::fileno(f), false), proto::StdinMode::stream);
  std::fclose(f);
  int zero = ::open("/dev/zero", O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(stdin_mode_for(zero, false), proto::StdinMode::stream);  // a device, but not /dev/null
  ::close(zero);
}

namespace {

// kiln's stdin is the pipe `in`; the agent channel a socket whose far end the test reads.
class StdinForwarderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, chan.fds), 0);
    ASSERT_EQ(::pipe2(in.fds, O_CLOEXEC), 0);
    client.emplace(chan.fds[0], [] { return std::optional<std::string>(); });
  }
  std::vector<proto::Frame> sent() { return frames_sent(*client, chan.fds[1]); }
  Fds chan, in;
  std::optional<AgentClient> client;
  AgentClient& agent() { return *client; }
};

}  // namespace

TEST_F(StdinForwarderTest, ReadsNothingWithoutCreditAndNeverMoreThanTheCredit) {
  StdinForwarder input(in.fds[0]);
  ASSERT_EQ(::write(in.fds[1], "0123456789", 10), 10);
  EXPECT_EQ(input.fd_to_watch(agent()), -1) << "no credit yet: stdin must not even be polled";

  input.add_credit(4);
  EXPECT_GE(input.fd_to_watch(agent()), 0);
  input.forward(agent());
  EXPECT_EQ(input.fd_to_watch(agent()), -1);  // credit used up
  auto frames = sent();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].type, MsgType::stdin_data);
  EXPECT_EQ(frames[0].payload, "0123");

  input.add_credit(100);
  input.forward(agent());
  ::close(in.fds[1]);
  in.fds[1] = -1;
  input.forward(agent());  // end of input
  EXPECT_EQ(input.fd_to_watch(agent()), -1);
  frames = sent();
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].payload, "456789");
  EXPECT_EQ(frames[1].type, MsgType::stdin_eof);
  EXPECT_EQ(input.forwarded(), 10u);
}

TEST_F(StdinForwarderTest, APipeDrainedByAnotherReaderDoesNotBlockIt) {
  // Between poll saying "readable" and our read, another process sharing the pipe
  // may take the bytes; kiln must then poll again, not sit in read() until input comes.
  StdinForwarder input(in.fds[0]);
  input.add_credit(100);
  ASSERT_EQ(::write(in.fds[1], "x", 1), 1);
  char c;
  ASSERT_EQ(::read(in.fds[0], &c, 1), 1);  // the other reader wins the race
  auto done = std::async(std::launch::async, [&] { input.forward(agent()); });
  const bool returned = done.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  if (!returned) {
    ASSERT_EQ(::write(in.fds[1], "y", 1), 1);  // unblock it, so the test can end
  }
  done.wait();
  EXPECT_TRUE(returned) << "forward() blocked in read() on an empty pipe";
  EXPECT_EQ(::fcntl(in.fds[0], F_GETFL) & O_NONBLOCK, 0) << "the shared descriptor's flags changed";
  EXPECT_TRUE(sent().empty());
}
