#include "common/fs.h"

#include "common/temp_file.h"
#include "common/unique_fd.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
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

namespace {

// The root the user's environment names, if any.
std::optional<stdfs::path> chosen_cache_root() {
  if (const char* d = std::getenv("KILN_CACHE_DIR"); d && *d) return stdfs::absolute(d);
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return stdfs::path(x) / "kiln";
  if (const char* h = std::getenv("HOME"); h && *h) return stdfs::path(h) / ".cache" / "kiln";
  return std::nullopt;
}

stdfs::path fallback_cache_root() {
  std::error_code ec;  // $TMPDIR naming no directory: /tmp, as the C library does
  stdfs::path tmp = stdfs::temp_directory_path(ec);
  return (ec ? stdfs::path("/tmp") : tmp) / ("kiln-cache-" + std::to_string(::getuid()));
}

Error refuse_fallback(const stdfs::path& dir, const std::string& problem) {
  return make_error("kiln's cache directory {} {}. kiln uses it because KILN_CACHE_DIR, XDG_CACHE_HOME and HOME "
                    "are all unset: set KILN_CACHE_DIR to a directory of your own (or remove {} if you made it)",
                    dir.string(), problem, dir.string());
}

// Another user can create this name before we do (the temp directory is shared): use it
// only if it is a real directory of ours that nobody else can write to.
Result<void> make_private_dir(const stdfs::path& dir) {
  if (::mkdir(dir.c_str(), 0700) == 0) return {};
  if (errno != EEXIST)
    return make_error("cannot create kiln's cache directory {}: {}", dir.string(), std::strerror(errno));
  // O_NOFOLLOW: a symlink is refused, not followed; checks and chmod go through this fd.
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (!fd) {
    int e = errno;
    if (::lstat(dir.c_str(), &st) == 0 && S_ISLNK(st.st_mode))
      return refuse_fallback(dir, "is a symbolic link (another user may have planted it to redirect kiln's files)");
    if (e == ENOTDIR) return refuse_fallback(dir, "exists and is not a directory");
    return make_error("cannot open kiln's cache directory {}: {}", dir.string(), std::strerror(e));
  }
  if (::fstat(fd.get(), &st) != 0)
    return make_error("cannot stat kiln's cache directory {}: {}", dir.string(), std::strerror(errno));
  if (st.st_uid != ::geteuid())
    return refuse_fallback(dir, fmt::format("belongs to uid {}, not to you (uid {}): another user may have created it "
                                            "to read or plant kiln's files",
                                            st.st_uid, ::geteuid()));
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return refuse_fallback(dir, fmt::format("is writable by other users (mode {:o}), who could plant files in it; "
                                            "if it is yours and holds nothing you distrust, `chmod 700` it",
                                            st.st_mode & 07777));
  // Ours, but readable by others (made by an older kiln): snapshots hold guest memory.
  if ((st.st_mode & 077) != 0 && ::fchmod(fd.get(), 0700) != 0)
    return make_error("cannot make kiln's cache directory {} private (chmod 700): {}", dir.string(),
                      std::strerror(errno));
  return {};
}

}  // namespace

stdfs::path cache_root() {
  if (auto chosen = chosen_cache_root()) return *chosen;
  return fallback_cache_root();
}

Result<stdfs::path> prepare_cache_root() {
  if (auto chosen = chosen_cache_root()) return *chosen;
  stdfs::path dir = fallback_cache_root();
  KILN_TRY(make_private_dir(dir));
  return dir;
}

stdfs::path self_dir() {
  std::error_code ec;
  auto exe = stdfs::read_symlink("/proc/self/exe", ec);
  return ec ? stdfs::current_path() : exe.parent_path();
}

bool is_within(const stdfs::path& path, const stdfs::path& dir) {
  auto rel = path.lexically_normal().lexically_relative(dir.lexically_normal());
  return !rel.empty() && *rel.begin() != "..";
}

bool is_executable_file(const stdfs::path& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

}  // namespace kiln::fs
