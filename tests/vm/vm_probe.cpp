// A test payload run inside kiln VMs: each mode exercises one guest behaviour.
// Dynamically linked on purpose, so every run also ships its library closure.
#include "output_pattern.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

namespace {

int usage() {
  std::cerr << "usage: vm_probe exit N | signal N | interleave N | write PATH | absent PATH... | sleep SEC |\n"
               "                random | time | env NAME | cwd | cat PATH | garbage-channel | poweroff |\n"
               "                streams SEED OUT_BYTES ERR_BYTES MAX_WRITE\n";
  return 64;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string mode = argv[1];
  if (mode == "exit" && argc == 3) return std::atoi(argv[2]);
  if (mode == "signal" && argc == 3) {
    int sig = std::atoi(argv[2]);
    signal(sig, SIG_DFL);
    raise(sig);
    return 0;
  }
  if (mode == "interleave" && argc == 3) {
    // Alternate the streams line by line; each must arrive complete and in order.
    int n = std::atoi(argv[2]);
    for (int i = 0; i < n; ++i) {
      std::fprintf(stdout, "out %d\n", i);
      std::fflush(stdout);
      std::fprintf(stderr, "err %d\n", i);
    }
    return 0;
  }
  if (mode == "write" && argc == 3) {
    std::ofstream(argv[2]) << "written by vm_probe\n";
    return std::ofstream(argv[2], std::ios::app).good() ? 0 : 1;
  }
  if (mode == "absent") {
    for (int i = 2; i < argc; ++i) {
      struct stat st {};
      if (stat(argv[i], &st) == 0) {
        std::cout << "present: " << argv[i] << "\n";
        return 1;
      }
    }
    return 0;
  }
  if (mode == "sleep" && argc == 3) {
    sleep(static_cast<unsigned>(std::atoi(argv[2])));
    return 0;
  }
  if (mode == "random") {
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != sizeof b) return 1;
    for (unsigned char c : b) std::printf("%02x", c);
    std::printf("\n");
    return 0;
  }
  if (mode == "time") {
    std::printf("%lld\n", static_cast<long long>(time(nullptr)));
    return 0;
  }
  if (mode == "env" && argc == 3) {
    const char* v = getenv(argv[2]);
    std::printf("%s\n", v ? v : "(unset)");
    return v ? 0 : 1;
  }
  if (mode == "cwd") {
    char buf[4096];
    std::printf("%s\n", getcwd(buf, sizeof buf) ? buf : "(error)");
    return 0;
  }
  if (mode == "cat" && argc == 3) {
    std::ifstream in(argv[2]);
    if (!in) return 1;
    std::cout << in.rdbuf();
    return 0;
  }
  if (mode == "streams" && argc == 6) {
    // stdout and stderr at once (a child writes stderr): output_pattern.h's bytes.
    const uint64_t seed = std::strtoull(argv[2], nullptr, 10);
    const size_t max_write = std::strtoull(argv[5], nullptr, 10);
    const pid_t child = fork();
    if (child < 0) return 2;
    const int fd = child == 0 ? 2 : 1;
    const size_t total = std::strtoull(fd == 1 ? argv[3] : argv[4], nullptr, 10);
    const bool ok = kiln::vmtest::write_stream(seed, fd, total, max_write);
    if (child == 0) _exit(ok ? 0 : 1);
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
    return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
  }
  if (mode == "poweroff") {
    // What `poweroff -f` does: the VM must end now, not at the run's --timeout.
    sync();
    reboot(RB_POWER_OFF);
    return 1;  // only without CAP_SYS_BOOT
  }
  if (mode == "garbage-channel") {
    // A hostile guest: write junk straight onto the agent's channel.
    std::string port;
    for (int i = 0; i < 16 && port.empty(); ++i) {
      std::ifstream name("/sys/class/virtio-ports/vport0p" + std::to_string(i) + "/name");
      std::string n;
      if (std::getline(name, n) && n.rfind("org.kiln.agent", 0) == 0) port = "/dev/vport0p" + std::to_string(i);
    }
    int fd = open(port.c_str(), O_WRONLY | O_NOCTTY);
    if (fd < 0 && errno == EBUSY) {
      std::printf("agent channel %s is busy\n", port.c_str());
      return 3;
    }
    if (fd < 0) return 2;
    const char junk[] = "\xde\xad\xbe\xef not kiln protocol at all";
    for (int i = 0; i < 4; ++i) (void)!write(fd, junk, sizeof junk);
    sleep(30);
    return 0;
  }
  return usage();
}
