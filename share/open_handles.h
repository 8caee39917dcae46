// The files and directories the guest has open on a share (OPEN/OPENDIR to
// RELEASE/RELEASEDIR): a FUSE file handle (fh) per open, each owning its host fd.
// Bounded: a guest that opens more than the bound without releasing gets ENFILE.
#pragma once

#include "common/unique_fd.h"
#include "share/errno_or.h"

#include <cstdint>
#include <unordered_map>
#include <vector>

namespace kiln::share {

class OpenHandles {
 public:
  enum class Kind {
    file,          ///< a regular file, read with pread
    directory,     ///< a host directory, listed with getdents64
    virtual_root,  ///< the virtual directory of the roots (no fd)
  };
  struct Handle {
    Kind kind;
    uint64_t nodeid;  ///< the node it was opened on
    UniqueFd fd;
  };

  explicit OpenHandles(size_t max_handles) : max_(max_handles) {}

  /// Keep `handle`; returns its fh (never 0, never reused).
  ErrnoOr<uint64_t> add(Handle handle);
  /// The open handle `fh` on `nodeid`, or nullptr (EBADF for the guest).
  Handle* find(uint64_t fh, uint64_t nodeid);
  /// Close `fh` on `nodeid` if it is a directory (RELEASEDIR) or a file (RELEASE) as
  /// `directory` says; false if there is no such handle.
  bool remove(uint64_t fh, uint64_t nodeid, bool directory);
  size_t size() const { return handles_.size(); }

  /// An open handle as a kept VM records it (session_state.h); its fd is opened again.
  struct SavedHandle {
    uint64_t fh = 0;
    Kind kind = Kind::file;
    uint64_t nodeid = 0;
  };
  std::vector<SavedHandle> saved() const;
  /// Take over handle `saved.fh` of another session with `fd` (opened again); new fhs
  /// continue after it. False at the bound or for an fh in use.
  bool adopt(const SavedHandle& saved, UniqueFd fd);

 private:
  size_t max_;
  uint64_t next_fh_ = 1;
  std::unordered_map<uint64_t, Handle> handles_;
};

}  // namespace kiln::share
