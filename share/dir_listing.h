// READDIR replies: directory entries as struct fuse_dirent records (each padded to 8
// bytes), from a requested offset, never more than the requested size. Each record's
// `off` is where the listing continues after it. Entries the guest may not see
// (devices, sockets, FIFOs) are left out.
#pragma once

#include "share/errno_or.h"
#include "share/share_tree.h"

#include <cstdint>
#include <string>

namespace kiln::share {

/// The entries of host directory `dir_fd` (opened O_RDONLY|O_DIRECTORY) from `offset`
/// (0, or a record's `off`, the host's own directory cookie), at most `size` bytes.
/// An empty result is the end of the directory.
ErrnoOr<std::string> list_host_directory(int dir_fd, uint64_t offset, size_t size);

/// The entries of the virtual root: ".", "..", then "0", "1", ... one per root.
std::string list_virtual_root(const ShareTree& tree, uint64_t offset, size_t size);

}  // namespace kiln::share
