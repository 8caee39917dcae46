#include "vmm/qemu/unix_socket.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include <cerrno>
#include <cstring>

namespace kiln::vmm::qemu {

Result<UniqueFd> connect_unix(const std::filesystem::path& path, Deadline deadline,
                              const std::function<bool()>& peer_alive) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string& p = path.native();
  if (p.size() >= sizeof addr.sun_path)
    return make_error("socket path {} is {} bytes, longer than the {} a unix socket allows: use a shorter directory",
                      p, p.size(), sizeof addr.sun_path - 1);
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);

  for (;;) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return make_error("cannot create a unix socket: {}", std::strerror(errno));
    // SAFETY of the cast: sockaddr_un is the sockaddr variant connect() expects for AF_UNIX.
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return fd;
    int e = errno;
    if (e != ENOENT && e != ECONNREFUSED && e != EAGAIN && e != EINTR)
      return make_error("cannot connect to {}: {}", p, std::strerror(e));
    if (peer_alive && !peer_alive()) return make_error("cannot connect to {}: the process serving it exited", p);
    if (Clock::now() >= deadline) {
      Error err = make_error("timed out connecting to {} (last error: {})", p, std::strerror(e));
      err.kind = ErrorKind::timeout;
      return err;
    }
    // 1 ms steps: qemu listens ~20 ms after exec and restore latency counts every ms;
    // a failed connect() is a cheap syscall.
    timespec ts{0, 1'000'000};
    ::nanosleep(&ts, nullptr);
  }
}

}  // namespace kiln::vmm::qemu
