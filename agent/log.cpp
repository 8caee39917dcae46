#include "agent/log.h"

#include <cerrno>
#include <cstring>
#include <unistd.h>

namespace kiln::agent {

void log_line(std::string_view msg) {
  std::string line = cat("kiln-agent: ", msg, "\n");
  const char* p = line.data();
  size_t left = line.size();
  // Best effort: a console that fails must not take PID 1 down with it.
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

std::string errno_text(int err) { return std::strerror(err); }

std::string sys_error(std::string_view what) {
  int err = errno;
  return cat(what, ": ", errno_text(err));
}

}  // namespace kiln::agent
