#include "agent/guest_setup.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <fstream>
#include <string>

#include "agent/log.h"
#include "agent/protocol.h"
#include "common/unique_fd.h"

namespace kiln::agent {

namespace {

struct MountSpec {
  const char* source;
  const char* target;
  const char* fstype;
  unsigned long flags;
  const char* data;
  mode_t dir_mode;
};

// Order matters: /dev must be mounted before /dev/pts and /dev/shm.
constexpr MountSpec kMounts[] = {
    {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, 0555},
    {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, 0555},
    {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755", 0755},
    {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666", 0755},
    {"tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777},
    {"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777},
    {"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", 0755},
};

// Links programs expect in /dev that devtmpfs does not provide (bash's <(...) needs /dev/fd).
constexpr const char* kDevLinks[][2] = {
    {"/dev/fd", "/proc/self/fd"},
    {"/dev/stdin", "/proc/self/fd/0"},
    {"/dev/stdout", "/proc/self/fd/1"},
    {"/dev/stderr", "/proc/self/fd/2"},
};

// Before 6.4 the kernel cannot decompress modules itself.
constexpr unsigned kModuleInitCompressedFile = 4;  // MODULE_INIT_COMPRESSED_FILE

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

// Returns true if the module is loaded (now or already).
bool load_module(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    log("module ", path, " not loaded: ", sys_error("open"));
    return false;
  }
  bool compressed = ends_with(path, ".ko.xz") || ends_with(path, ".ko.zst") || ends_with(path, ".ko.gz");
  unsigned flags = compressed ? kModuleInitCompressedFile : 0;
  if (::syscall(SYS_finit_module, fd.get(), "", flags) == 0 || errno == EEXIST) return true;
  int err = errno;
  if (compressed && err == EINVAL) {
    log("module ", path, " not loaded: this kernel cannot load compressed modules (needs Linux >= 6.4); "
        "ship it uncompressed");
  } else if (err == ENOENT) {
    // The file is open, so ENOENT here is the kernel's "unknown symbol" (see the kernel log).
    log("module ", path, " not loaded: unknown symbol: a module it depends on is missing or listed after it");
  } else {
    log("module ", path, " not loaded: finit_module: ", errno_text(err));
  }
  return false;
}

}  // namespace

void mount_basics() {
  for (const MountSpec& m : kMounts) {
    if (::mkdir(m.target, m.dir_mode) != 0 && errno != EEXIST) {
      log("cannot create mount point ", m.target, ": ", errno_text(errno));
      continue;
    }
    // EBUSY: already mounted (a kernel with CONFIG_DEVTMPFS_MOUNT may have done /dev).
    if (::mount(m.source, m.target, m.fstype, m.flags, m.data) != 0 && errno != EBUSY)
      log("cannot mount ", m.fstype, " on ", m.target, ": ", errno_text(errno));
  }
  for (const auto& link : kDevLinks) {
    if (::symlink(link[1], link[0]) != 0 && errno != EEXIST)
      log("cannot create ", link[0], ": ", errno_text(errno));
  }
}

void ensure_stdio() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1) continue;
    // Lowest free fd is `fd` itself here, because every lower one is open by now.
    int got = ::open("/dev/console", O_RDWR | O_NOCTTY);
    if (got < 0) got = ::open("/dev/null", O_RDWR);
    if (got >= 0 && got != fd) {
      ::dup2(got, fd);
      ::close(got);
    }
  }
}

void load_modules(const char* list_path) {
  std::ifstream in(list_path);
  if (!in) {
    log("no module list at ", list_path, ": loading no modules");
    return;
  }
  int loaded = 0;
  int failed = 0;
  std::string line;
  while (std::getline(in, line)) {
    std::string path = trim(line);
    if (path.empty() || path[0] == '#') continue;
    if (load_module(path))
      ++loaded;
    else
      ++failed;
  }
  if (failed > 0) log(loaded, " modules loaded, ", failed, " failed (see above)");
}

void set_hostname(const char* path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) {
    log("hostname not set: cannot read ", path);
    return;
  }
  std::string name = trim(line);
  if (name.empty() || name.size() > HOST_NAME_MAX) {
    log("hostname not set: ", path, " does not hold a name of 1 to ", HOST_NAME_MAX, " characters");
    return;
  }
  if (::sethostname(name.data(), name.size()) != 0) log("hostname not set: ", sys_error("sethostname"));
}

void enable_core_dumps() {
  const std::string pattern = cat(proto::kGuestOutputDir, "/core.%e.%p");
  int fd = ::open("/proc/sys/kernel/core_pattern", O_WRONLY | O_CLOEXEC);
  if (fd < 0 || ::write(fd, pattern.data(), pattern.size()) != static_cast<ssize_t>(pattern.size()))
    log("core dumps stay off: cannot set /proc/sys/kernel/core_pattern: ", errno_text(errno));
  if (fd >= 0) ::close(fd);
  const rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
  if (::setrlimit(RLIMIT_CORE, &unlimited) != 0) log("core dumps stay off: setrlimit(RLIMIT_CORE): ", errno_text(errno));
}

}  // namespace kiln::agent
