#include "runner/interrupt.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>

namespace kiln::interrupt {
namespace {
int g_pipe[2] = {-1, -1};
std::atomic<int> g_signal{0};

void on_signal(int sig) {
  int expected = 0;
  g_signal.compare_exchange_strong(expected, sig);
  char c = 1;
  (void)!::write(g_pipe[1], &c, 1);
}
}  // namespace

void install() {
  if (g_pipe[0] >= 0) return;
  if (::pipe2(g_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  // A closed stdout (e.g. `kiln run ... | head`) must not kill kiln before it cleans up.
  ::signal(SIGPIPE, SIG_IGN);
}

int fd() { return g_pipe[0]; }
int received() { return g_signal.load(); }

}  // namespace kiln::interrupt
