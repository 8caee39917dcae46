#include "common/fs.h"

#include "common/temp_file.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace kiln::fs {

Result<std::string> read_file(const stdfs::path& path, uint64_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error("cannot open {}: {}", path.string(), std::strerror(errno));
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return make_error("cannot read {}: {}", path.string(), std::strerror(e));
    }
    if (n == 0) break;
    if (data.size() + static_cast<uint64_t>(n) > max_bytes) {
      ::close(fd);
      return make_error("{} is larger than the {} bytes kiln accepts for it", path.string(), max_bytes);
    }
    data.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return data;
}

Result<std::string> read_file_prefix(const stdfs::path& path, size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error("cannot open {}: {}", path.string(), std::strerror(errno));
  std::string data(max_bytes, '\0');
  ssize_t n;
  do n = ::pread(fd, data.data(), max_bytes, 0);
  while (n < 0 && errno == EINTR);
  int e = errno;
  ::close(fd);
  if (n < 0) return make_error("cannot read {}: {}", path.string(), std::strerror(e));
  data.resize(static_cast<size_t>(n));
  return data;
}

Result<void> write_file_atomic(const stdfs::path& path, const std::string& data) {
  KILN_ASSIGN_OR_RETURN(TempFile tmp, TempFile::beside(path));
  KILN_TRY(tmp.write(data));
  return tmp.commit(path, Durability::flushed);
}

Result<void> make_dirs(const stdfs::path& dir) {
  std::error_code ec;
  stdfs::create_directories(dir, ec);
  if (ec) return make_error("cannot create directory {}: {}", dir.string(), ec.message());
  return {};
}

Result<TempDir> TempDir::create(const stdfs::path& parent, const std::string& prefix) {
  KILN_TRY(make_dirs(parent));
  KILN_ASSIGN_OR_RETURN(stdfs::path dir, make_temp_dir(parent, prefix));
  return TempDir(std::move(dir));
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  stdfs::remove_all(path_, ec);
}

stdfs::path cache_root() {
  if (const char* d = std::getenv("KILN_CACHE_DIR"); d && *d) return stdfs::absolute(d);
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return stdfs::path(x) / "kiln";
  if (const char* h = std::getenv("HOME"); h && *h) return stdfs::path(h) / ".cache" / "kiln";
  return stdfs::temp_directory_path() / ("kiln-cache-" + std::to_string(::getuid()));
}

stdfs::path self_dir() {
  std::error_code ec;
  auto exe = stdfs::read_symlink("/proc/self/exe", ec);
  return ec ? stdfs::current_path() : exe.parent_path();
}

bool is_executable_file(const stdfs::path& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

}  // namespace kiln::fs
