// Tests that would be unsafe on a developer machine: they write to / and /etc.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>

int main(int argc, char** argv) {
  if (argc != 2) return 64;
  if (std::strcmp(argv[1], "write") == 0) {
    std::ofstream("/etc/kiln-demo.conf") << "written inside a microVM\n";
    std::ofstream("/kiln-demo-root-file") << "also gone after the VM\n";
    bool ok = std::ifstream("/etc/kiln-demo.conf").good() && std::ifstream("/kiln-demo-root-file").good();
    std::printf("wrote /etc/kiln-demo.conf and /kiln-demo-root-file: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
  }
  if (std::strcmp(argv[1], "check-clean") == 0) {
    bool clean = !std::ifstream("/etc/kiln-demo.conf").good() && !std::ifstream("/kiln-demo-root-file").good();
    std::printf("fresh VM, previous test's files %s\n", clean ? "are gone" : "SURVIVED");
    return clean ? 0 : 1;
  }
  if (std::strcmp(argv[1], "hang") == 0) {
    std::printf("hanging until kiln's --timeout kills the VM\n");
    std::fflush(stdout);
    for (;;) pause();
  }
  return 64;
}
