// kiln's own terminal while a command runs in a guest terminal (`kiln run -t`):
// raw mode, so every keystroke — ^C, ^Z, ^D, arrows — goes to the guest's
// terminal as a byte and the guest's line discipline acts on it, as ssh -t and
// docker run -t do; the window's size, and a readable descriptor when it changes
// (SIGWINCH). Everything is restored when the object goes, whatever ended the run.
#pragma once

#include "agent/protocol.h"
#include "common/result.h"

#include <termios.h>

#include <memory>

namespace kiln::runner {

class HostTerminal {
 public:
  /// Raw mode on `fd`, which must be a terminal in kiln's foreground process group.
  static Result<std::unique_ptr<HostTerminal>> enter_raw(int fd);
  ~HostTerminal();
  HostTerminal(const HostTerminal&) = delete;
  HostTerminal& operator=(const HostTerminal&) = delete;

  /// The window's size now (0 x 0 when the terminal does not know it).
  proto::WindowSize size() const;
  /// Readable once the window changed size since the last take_resize().
  int resized_fd() const;
  /// Consumes the change notice: true if the window changed since the last call.
  bool take_resize();

 private:
  explicit HostTerminal(int fd, const termios& saved) : fd_(fd), saved_(saved) {}
  int fd_;
  termios saved_;
};

}  // namespace kiln::runner
