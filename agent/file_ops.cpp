#include "agent/file_ops.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "agent/fs_util.h"
#include "agent/log.h"

namespace kiln::agent {

namespace {

// Removes a non-directory at `path` so it can be re-created; refuses directories.
Status clear_path(const std::string& path, std::string_view action) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::ok();
    return Status::fail(sys_error(cat("cannot ", action, ": lstat ", path)));
  }
  if (S_ISDIR(st.st_mode)) return Status::fail(cat("cannot ", action, ": ", path, " is a directory in the guest"));
  if (::unlink(path.c_str()) != 0) return Status::fail(sys_error(cat("cannot ", action, ": unlink ", path)));
  return Status::ok();
}

}  // namespace

FilePut::FilePut(const proto::PutFile& req) : path_(req.path), size_(req.size) {
  const std::string action = cat("put file ", path_);
  Status s = mkdir_p(parent_dir(path_), 0755);
  if (s.is_ok()) s = clear_path(path_, action);
  if (!s.is_ok()) {
    fail(s.message());
    return;
  }
  // O_EXCL|O_NOFOLLOW: after clear_path nothing may be there; never follow a link someone raced in.
  fd_.reset(::open(path_.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd_.valid()) {
    fail(sys_error(cat("cannot ", action, ": create")));
    return;
  }
  created_ = true;
  if (::fchmod(fd_.get(), req.mode) != 0) fail(sys_error(cat("cannot ", action, ": chmod")));
}

void FilePut::fail(std::string message) {
  if (error_.empty()) error_ = std::move(message);
  fd_.reset();  // stop writing; later bytes are only counted
}

void FilePut::feed(std::string_view data) {
  if (done()) return;
  if (data.size() > size_ - received_) {
    fail(cat("put file ", path_, ": file_data overruns the announced size of ", size_, " bytes (got ",
             received_ + data.size(), " or more)"));
    overrun_ = true;
    return;
  }
  received_ += data.size();
  if (fd_.valid()) {
    Status s = write_all(fd_.get(), data.data(), data.size(), path_);
    if (!s.is_ok()) fail(cat("cannot put file ", path_, ": ", s.message()));
  }
}

Status FilePut::finish() {
  if (error_.empty() && fd_.valid() && ::close(fd_.release()) != 0)
    fail(sys_error(cat("cannot put file ", path_, ": close")));
  fd_.reset();
  if (error_.empty()) return Status::ok();
  // A truncated binary must not be left behind looking runnable.
  if (created_) ::unlink(path_.c_str());
  return Status::fail(error_);
}

Status FilePut::interrupt(std::string_view frame_name) {
  fail(cat("put file ", path_, ": interrupted by a ", frame_name, " frame after ", received_, " of ", size_,
           " bytes"));
  return finish();
}

Status make_symlink(const proto::Symlink& req) {
  const std::string& path = req.path;
  Status s = mkdir_p(parent_dir(path), 0755);
  if (!s.is_ok()) return s;
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode)) {
      std::vector<char> buf(static_cast<size_t>(st.st_size) + 2);
      ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
      if (n >= 0 && std::string_view(buf.data(), static_cast<size_t>(n)) == req.target) return Status::ok();
    } else if (S_ISDIR(st.st_mode)) {
      std::string resolved = req.target[0] == '/' ? req.target : cat(parent_dir(path), "/", req.target);
      struct stat target_st {};
      if (::stat(resolved.c_str(), &target_st) == 0 && S_ISDIR(target_st.st_mode))
        return Status::fail(cat("cannot make ", path, " a symlink to the directory ", req.target, ": ", path,
                                " is a real directory in the guest image (the host and the image lay out ",
                                "directories differently, e.g. merged /usr); put files below ", path,
                                " instead"));
      return Status::fail(cat("cannot create symlink ", path, " -> ", req.target, ": ", path,
                              " is a directory in the guest"));
    }
    if (::unlink(path.c_str()) != 0) return Status::fail(sys_error(cat("cannot replace ", path)));
  } else if (errno != ENOENT) {
    return Status::fail(sys_error(cat("cannot create symlink ", path, ": lstat")));
  }
  if (::symlink(req.target.c_str(), path.c_str()) != 0)
    return Status::fail(sys_error(cat("cannot create symlink ", path, " -> ", req.target)));
  return Status::ok();
}

Status make_directory(const proto::Mkdir& req) { return mkdir_p(req.path, req.mode); }

}  // namespace kiln::agent
