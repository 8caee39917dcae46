#include "agent/virtio_port.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <string_view>

#include "agent/log.h"

namespace kiln::agent {

std::string find_virtio_port(const char* name) {
  DIR* dir = ::opendir("/sys/class/virtio-ports");
  if (dir == nullptr) return {};
  std::string found;
  while (dirent* d = ::readdir(dir)) {
    if (d->d_name[0] == '.') continue;
    char buf[256] = {};
    int fd = ::open(cat("/sys/class/virtio-ports/", d->d_name, "/name").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    std::string_view got(buf, n > 0 ? static_cast<size_t>(n) : 0);
    while (!got.empty() && got.back() == '\n') got.remove_suffix(1);
    if (got == name) found = cat("/dev/", d->d_name);
  }
  ::closedir(dir);
  return found;
}

}  // namespace kiln::agent
