#include "snapshot/fsops.h"

#include "common/temp_file.h"
#include "snapshot/layout.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <system_error>

namespace kiln::snapshot::fsops {

Result<void> fsync_path(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return make_error("cannot open {} to flush it: {}", path.string(), std::strerror(errno));
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) return make_error("cannot flush {} to disk: {}", path.string(), std::strerror(e));
  return {};
}

uint64_t disk_usage(const std::filesystem::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 0;
  uint64_t total = static_cast<uint64_t>(st.st_blocks) * 512;
  if (!S_ISDIR(st.st_mode)) return total;
  std::error_code ec;
  // The default options do not follow directory symlinks, so a hostile link cannot
  // make us count (or loop over) anything outside the tree.
  std::filesystem::recursive_directory_iterator it(path, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    struct stat est {};
    if (::lstat(it->path().c_str(), &est) == 0) total += static_cast<uint64_t>(est.st_blocks) * 512;
  }
  return total;
}

bool pid_alive(pid_t pid) {
  if (pid <= 0) return false;
  // EPERM: it exists but belongs to someone else; that still means "alive".
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

std::optional<pid_t> owner_pid(std::string_view name, std::string_view prefix) {
  if (name.substr(0, prefix.size()) != prefix) return std::nullopt;
  name.remove_prefix(prefix.size());
  // Parse from the right: <id>-<pid>-<suffix>.
  auto last = name.rfind('-');
  if (last == std::string_view::npos || last == 0) return std::nullopt;
  auto prev = name.rfind('-', last - 1);
  if (prev == std::string_view::npos) return std::nullopt;
  std::string_view digits = name.substr(prev + 1, last - prev - 1);
  pid_t pid = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
  if (ec != std::errc() || ptr != digits.data() + digits.size() || pid <= 0) return std::nullopt;
  return pid;
}

Result<std::filesystem::path> make_trash_dir(const std::filesystem::path& root, const std::string& id) {
  auto trash = fs::make_temp_dir(root, std::string(layout::kTrashPrefix) + id + "-" + std::to_string(::getpid()) + "-");
  if (!trash) return with_context("cannot create a trash directory", trash.error());
  return trash;
}

Result<std::filesystem::path> move_to_trash(const std::filesystem::path& root, const std::filesystem::path& dir,
                                            const std::string& id) {
  // The fresh trash directory reserves a unique name; rename(2) may replace an empty
  // directory, so the move stays one atomic step.
  KILN_ASSIGN_OR_RETURN(auto trash, make_trash_dir(root, id));
  if (::rename(dir.c_str(), trash.c_str()) != 0) {
    int e = errno;
    ::rmdir(trash.c_str());
    return make_error("cannot move {} aside for deletion: {}", dir.string(), std::strerror(e));
  }
  return trash;
}

void remove_tree(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

std::optional<std::chrono::system_clock::time_point> mtime(const std::filesystem::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  auto since_epoch = std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec);
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(since_epoch));
}

}  // namespace kiln::snapshot::fsops
