#include "runner/host_terminal.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace kiln::runner {
namespace {

// SIGWINCH's self-pipe: one terminal at a time per process.
int g_resized[2] = {-1, -1};

void on_winch(int) {
  const int saved = errno;
  char c = 1;
  (void)!::write(g_resized[1], &c, 1);
  errno = saved;
}

Result<void> watch_resizes() {
  if (g_resized[0] < 0 && ::pipe2(g_resized, O_CLOEXEC | O_NONBLOCK) != 0)
    return make_error("cannot watch the terminal's size: pipe: {}", std::strerror(errno));
  struct sigaction sa {};
  sa.sa_handler = on_winch;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGWINCH, &sa, nullptr);
  return {};
}

}  // namespace

Result<std::unique_ptr<HostTerminal>> HostTerminal::enter_raw(int fd) {
  termios saved{};
  if (::tcgetattr(fd, &saved) != 0)
    return make_error("cannot use the terminal for -t: reading its settings: {}", std::strerror(errno));
  KILN_TRY(watch_resizes());
  termios raw = saved;
  ::cfmakeraw(&raw);
  // Output too: the guest's terminal already did its post-processing (\n to \r\n),
  // and a full-screen program's bare \n must stay one. kiln prints nothing of its
  // own until this is undone.
  if (::tcsetattr(fd, TCSAFLUSH, &raw) != 0)
    return make_error("cannot put the terminal into raw mode: {}", std::strerror(errno));
  return std::unique_ptr<HostTerminal>(new HostTerminal(fd, saved));
}

HostTerminal::~HostTerminal() {
  ::signal(SIGWINCH, SIG_DFL);
  ::tcsetattr(fd_, TCSAFLUSH, &saved_);
}

proto::WindowSize HostTerminal::size() const {
  winsize ws{};
  if (::ioctl(fd_, TIOCGWINSZ, &ws) != 0) return {};
  return {ws.ws_row, ws.ws_col};
}

int HostTerminal::resized_fd() const { return g_resized[0]; }

bool HostTerminal::take_resize() {
  char buf[64];
  bool changed = false;
  while (::read(g_resized[0], buf, sizeof buf) > 0) changed = true;
  return changed;
}

}  // namespace kiln::runner
