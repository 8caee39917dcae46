// The host side of a share's names: the roots, and the table of nodes the guest's
// kernel holds (a FUSE nodeid per host inode it looked up). Node 1 is a virtual
// read-only directory whose entries "0", "1", ... are the roots. Every real node is
// an O_PATH|O_NOFOLLOW fd opened relative to its parent's fd, never by a path
// string, so a name the guest sends is resolved one component at a time under a
// root and no symlink is ever followed on the host. Only regular files,
// directories and symlinks are visible. The table is bounded: a guest that looks up
// more than the bound without forgetting gets ENFILE, not more host fds.
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"
#include "share/errno_or.h"

#include <linux/fuse.h>
#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace kiln::share {

/// FUSE's root nodeid: the virtual directory of the roots.
inline constexpr uint64_t kRootNodeId = FUSE_ROOT_ID;

/// Is `type` (st_mode & S_IFMT) one the guest may see?
bool visible_type(mode_t type);

/// The errno for a name the guest sent, or 0 if it is a plain directory entry name:
/// not empty, not "." or "..", no '/', at most NAME_MAX bytes.
int name_error(std::string_view name);

class ShareTree {
 public:
  struct Node {
    UniqueFd fd;  ///< O_PATH|O_NOFOLLOW
    dev_t dev = 0;
    ino_t ino = 0;
    mode_t type = 0;  ///< S_IFREG, S_IFDIR or S_IFLNK
    uint64_t lookups = 0;
  };
  /// A node as a kept VM records it (session_state.h): which root it is under and its
  /// path there, so another process can open it again.
  struct SavedNode {
    uint64_t nodeid = 0;
    size_t root = 0;
    std::string path;  ///< relative to the root; "." for the root itself
    dev_t dev = 0;
    ino_t ino = 0;
    uint64_t lookups = 0;
  };
  /// A looked-up entry: its nodeid and its attributes at the time of the lookup.
  struct Entry {
    uint64_t nodeid;
    struct stat st;
  };

  /// Opens every root (absolute paths of host directories). `max_nodes` bounds the
  /// node table (>= 1).
  static Result<ShareTree> open(const std::vector<std::filesystem::path>& roots, size_t max_nodes);

  ShareTree(ShareTree&&) = default;
  ShareTree& operator=(ShareTree&&) = default;

  size_t root_count() const { return roots_.size(); }
  /// Root i's directory (O_PATH).
  int root_fd(size_t i) const { return roots_[i].fd.get(); }
  /// Root i's inode number on the host (what the virtual root's listing shows).
  ino_t root_ino(size_t i) const { return roots_[i].ino; }

  /// LOOKUP: `name` in directory `parent` (a nodeid). The entry's lookup count grows
  /// by one; the same host inode always gets the same nodeid while the guest holds it.
  ErrnoOr<Entry> lookup(uint64_t parent, std::string_view name);
  /// FORGET: drop `count` lookups of `nodeid`; the node (and its fd) goes at zero.
  /// Unknown nodeids and the virtual root are ignored, as the kernel sends no reply.
  void forget(uint64_t nodeid, uint64_t count);
  /// The node for `nodeid`, or nullptr (the virtual root has none).
  const Node* node(uint64_t nodeid) const;
  size_t node_count() const { return nodes_.size(); }

  /// Every node the guest holds that is still reachable under its root (a node whose
  /// file was deleted or moved out of the roots cannot be recorded, and is lost).
  std::vector<SavedNode> saved_nodes() const;
  /// Take over the nodes another session saved: each is opened again beneath its root
  /// (no symlink followed, never outside the root) and kept only if it is the same
  /// inode; the guest gets ESTALE for the others. Node ids stay as they were, and new
  /// ones continue after the highest. Bounded by the node limit.
  void adopt_nodes(const std::vector<SavedNode>& saved);

 private:
  struct Root {
    UniqueFd fd;
    ino_t ino = 0;
    std::filesystem::path path;
  };
  ShareTree(std::vector<Root> roots, size_t max_nodes) : roots_(std::move(roots)), max_nodes_(max_nodes) {}
  /// The fd `name` is looked up in, for a lookup under `parent`; for the virtual root,
  /// `name` must name a root and the result is that root itself (`name` becomes ".").
  ErrnoOr<std::pair<int, std::string_view>> resolve_parent(uint64_t parent, std::string_view name) const;
  ErrnoOr<Entry> remember(UniqueFd fd, const struct stat& st);

  std::vector<Root> roots_;
  size_t max_nodes_;
  uint64_t next_id_ = kRootNodeId + 1;  ///< never reused, so no generation is needed
  std::unordered_map<uint64_t, Node> nodes_;
  std::map<std::pair<dev_t, ino_t>, uint64_t> by_inode_;
};

}  // namespace kiln::share
