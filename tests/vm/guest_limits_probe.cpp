// A test payload that pushes the guest to its limits, for what kiln reports
// when a command ends there: memory exhausted, output left unread.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

int usage() {
  std::fprintf(stderr, "usage: guest_limits_probe hog | unread-output BYTES\n");
  return 64;
}

// Allocates and touches memory until the kernel's out-of-memory killer ends it.
int hog() {
  constexpr size_t kChunk = 1 << 20;
  std::vector<char*> kept;
  for (;;) {
    char* p = static_cast<char*>(std::malloc(kChunk));
    if (p == nullptr) return 3;  // overcommit refused: the OOM killer never came
    std::memset(p, 0x5a, kChunk);
    kept.push_back(p);
  }
}

// Writes BYTES to stdout in one write and exits at once. The pipe is first grown to
// hold all of it, so the write completes long before the agent could forward it:
// more than the agent forwards after the command's exit is still in the pipe then.
int unread_output(size_t bytes) {
  const std::string size = std::to_string(bytes);
  int fd = ::open("/proc/sys/fs/pipe-max-size", O_WRONLY);
  if (fd < 0 || ::write(fd, size.data(), size.size()) != static_cast<ssize_t>(size.size())) return 4;
  ::close(fd);
  if (::fcntl(STDOUT_FILENO, F_SETPIPE_SZ, static_cast<int>(bytes)) < static_cast<int>(bytes)) return 5;
  std::string data(bytes, 'o');
  size_t off = 0;
  while (off < bytes) {
    ssize_t n = ::write(STDOUT_FILENO, data.data() + off, bytes - off);
    if (n <= 0) return 6;
    off += static_cast<size_t>(n);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string mode = argv[1];
  if (mode == "hog") return hog();
  if (mode == "unread-output" && argc == 3) return unread_output(std::strtoull(argv[2], nullptr, 10));
  return usage();
}
