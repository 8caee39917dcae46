#include "agent/fs_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "agent/log.h"

namespace kiln::agent {

namespace {
// One component: create it, or accept an existing directory (possibly behind a symlink).
Status mkdir_one(const std::string& path, mode_t mode, bool* created) {
  *created = false;
  if (::mkdir(path.c_str(), mode) == 0) {
    *created = true;
    return Status::ok();
  }
  int err = errno;
  struct stat st {};
  if (err == EEXIST && ::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Status::ok();
    return Status::fail(cat("cannot create directory ", path, ": a non-directory is in the way"));
  }
  return Status::fail(cat("cannot create directory ", path, ": ", errno_text(err)));
}
}  // namespace

Status mkdir_p(const std::string& path, mode_t mode) {
  if (path.empty() || path[0] != '/') return Status::fail(cat("not an absolute path: ", path));
  size_t pos = 1;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    if (slash > pos) {  // skip empty components ("//" or a trailing "/")
      bool last = slash >= path.size() || path.find_first_not_of('/', slash) == std::string::npos;
      std::string prefix = path.substr(0, slash);
      bool created = false;
      Status s = mkdir_one(prefix, last ? mode : 0755, &created);
      if (!s.is_ok()) return s;
      // mkdir(2) applies the umask; the host asked for this exact mode.
      if (last && created && ::chmod(prefix.c_str(), mode) != 0)
        return Status::fail(sys_error(cat("cannot chmod ", prefix)));
    }
    pos = slash + 1;
  }
  return Status::ok();
}

std::string parent_dir(std::string_view path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string_view::npos || slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

Status write_all(int fd, const char* data, size_t size, std::string_view what) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::fail(sys_error(cat("cannot write ", what)));
    if (n == 0) return Status::fail(cat("cannot write ", what, ": no progress"));
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::ok();
}

}  // namespace kiln::agent
