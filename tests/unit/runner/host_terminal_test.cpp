// kiln run -t's host side on a real pseudo-terminal: raw mode while the guest
// terminal runs, the settings back afterwards, the window's size and its changes.
#include "runner/host_terminal.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

namespace kiln::runner {
namespace {

struct Pty {
  int master = -1;
  int slave = -1;
  Pty() {
    master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) return;
    slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
  }
  ~Pty() {
    if (slave >= 0) ::close(slave);
    if (master >= 0) ::close(master);
  }
};

TEST(HostTerminal, RawWhileItLivesAndRestoredAfter) {
  Pty pty;
  ASSERT_GE(pty.slave, 0);
  termios before{};
  ASSERT_EQ(::tcgetattr(pty.slave, &before), 0);
  ASSERT_TRUE(before.c_lflag & ICANON);
  {
    auto terminal = HostTerminal::enter_raw(pty.slave);
    ASSERT_TRUE(terminal) << terminal.error().message;
    termios raw{};
    ASSERT_EQ(::tcgetattr(pty.slave, &raw), 0);
    // ^C and ^Z are bytes for the guest now, and nothing is echoed or rewritten here.
    EXPECT_FALSE(raw.c_lflag & (ICANON | ECHO | ISIG | IEXTEN));
    EXPECT_FALSE(raw.c_iflag & (ICRNL | IXON));
    EXPECT_FALSE(raw.c_oflag & OPOST);
  }
  termios after{};
  ASSERT_EQ(::tcgetattr(pty.slave, &after), 0);
  EXPECT_EQ(after.c_lflag, before.c_lflag);
  EXPECT_EQ(after.c_iflag, before.c_iflag);
  EXPECT_EQ(after.c_oflag, before.c_oflag);
}

TEST(HostTerminal, ReportsTheWindowSizeAndItsChanges) {
  Pty pty;
  ASSERT_GE(pty.slave, 0);
  winsize ws{};
  ws.ws_row = 33;
  ws.ws_col = 101;
  ASSERT_EQ(::ioctl(pty.master, TIOCSWINSZ, &ws), 0);
  auto terminal = HostTerminal::enter_raw(pty.slave);
  ASSERT_TRUE(terminal) << terminal.error().message;
  EXPECT_EQ((*terminal)->size().rows, 33);
  EXPECT_EQ((*terminal)->size().cols, 101);
  EXPECT_FALSE((*terminal)->take_resize());

  ws.ws_row = 40;
  ws.ws_col = 120;
  ASSERT_EQ(::ioctl(pty.master, TIOCSWINSZ, &ws), 0);
  ASSERT_EQ(::raise(SIGWINCH), 0);  // what the kernel sends a terminal's foreground job
  pollfd p{(*terminal)->resized_fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  EXPECT_TRUE((*terminal)->take_resize());
  EXPECT_FALSE((*terminal)->take_resize());  // one notice per change
  EXPECT_EQ((*terminal)->size().rows, 40);
  EXPECT_EQ((*terminal)->size().cols, 120);
}

TEST(HostTerminal, RefusesWhatIsNotATerminal) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  auto terminal = HostTerminal::enter_raw(fds[0]);
  ASSERT_FALSE(terminal);
  EXPECT_NE(terminal.error().message.find("cannot use the terminal for -t"), std::string::npos);
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace kiln::runner
