#include "agent/reaper.h"

#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

#include "agent/log.h"

namespace kiln::agent {

std::optional<Reaper> Reaper::create(std::string* error) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) {
    *error = sys_error("cannot block SIGCHLD");
    return std::nullopt;
  }
  UniqueFd fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd.valid()) {
    *error = sys_error("signalfd");
    return std::nullopt;
  }
  return Reaper(std::move(fd));
}

void Reaper::watch(pid_t pid) {
  watched_ = pid;
  watched_status_.reset();
}

std::optional<int> Reaper::reap() {
  // Drain the signalfd: SIGCHLDs coalesce, so its count means nothing; waitpid decides.
  signalfd_siginfo info[8];
  while (::read(sigfd_.get(), info, sizeof info) > 0) {
  }
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid == 0) break;
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;  // ECHILD: nobody left
    }
    if (pid == watched_) {
      watched_status_ = status;
      watched_ = -1;
    }
  }
  return std::exchange(watched_status_, std::nullopt);
}

}  // namespace kiln::agent
