#include "agent/terminal.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>

#include "agent/log.h"

namespace kiln::agent {

std::optional<Terminal> open_terminal(proto::WindowSize size, std::string* error) {
  Terminal t;
  t.master.reset(::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
  if (!t.master.valid()) {
    *error = sys_error("not run: no terminal: /dev/ptmx");
    return std::nullopt;
  }
  int unlock = 0;
  if (::ioctl(t.master.get(), TIOCSPTLCK, &unlock) != 0) {
    *error = sys_error("not run: no terminal: unlocking it");
    return std::nullopt;
  }
  // The peer by descriptor (Linux 4.13+), not by its /dev/pts name: nothing can
  // stand in for it between the two opens.
  t.slave.reset(::ioctl(t.master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!t.slave.valid()) {
    *error = sys_error("not run: no terminal: opening its command side");
    return std::nullopt;
  }
  resize_terminal(t.master.get(), size);
  return t;
}

void resize_terminal(int master, proto::WindowSize size) {
  winsize ws{};
  ws.ws_row = size.rows;
  ws.ws_col = size.cols;
  if (::ioctl(master, TIOCSWINSZ, &ws) != 0) log(sys_error("setting the terminal's size"));
}

}  // namespace kiln::agent
