// The FUSE file system a share serves, as a pure function of the requests: one
// request's bytes in, the reply's bytes out. It serves the roots read-only
// (share_tree.h says what the guest sees), answers every modifying opcode with EROFS,
// and is total and bounded on any input: a request that is not one well-framed FUSE
// request, or whose body is too short for its opcode, is refused (no reply, or EINVAL),
// never read past; node table, open handles and reply sizes are all bounded.
//
// Served: INIT (protocol 7.9 and later; the reply speaks the lower of the kernel's
// minor and <linux/fuse.h>'s), LOOKUP, FORGET, BATCH_FORGET, GETATTR, READLINK, OPEN,
// READ, RELEASE, OPENDIR, READDIR, RELEASEDIR, STATFS, ACCESS, FLUSH, INTERRUPT and
// NOTIFY_REPLY (no reply), DESTROY. Anything else is ENOSYS (GETXATTR and LISTXATTR
// included: the kernel stops asking). Every request but INIT before INIT is EIO.
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"
#include "share/fuse_wire.h"
#include "share/open_handles.h"
#include "share/share_tree.h"

#include <ctime>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::share {

struct SessionLimits {
  size_t max_nodes = 65536;   ///< nodes the guest may hold at once (each an O_PATH fd)
  size_t max_handles = 4096;  ///< files and directories the guest may have open at once
};

/// Entry and attribute timeouts: a host change is seen within this long.
inline constexpr uint64_t kAttrTimeoutSeconds = 1;

class FuseSession {
 public:
  /// A session serving `roots` (absolute paths of host directories; root i is the
  /// virtual root's entry "i"). Needs /proc (files are reopened through /proc/self/fd).
  static Result<FuseSession> create(const std::vector<std::filesystem::path>& roots, SessionLimits limits);

  /// The reply to one request (struct fuse_in_header first, `len` = request.size()).
  /// Empty for opcodes that get no reply (FORGET, BATCH_FORGET, INTERRUPT,
  /// NOTIFY_REPLY) and for bytes that are not one well-framed request.
  std::string handle(std::span<const uint8_t> request);

  bool initialized() const { return initialized_; }
  /// The protocol minor agreed at INIT (0 before).
  uint32_t minor() const { return minor_; }
  size_t node_count() const { return tree_.node_count(); }
  size_t open_handle_count() const { return handles_.size(); }

  /// What the guest's kernel holds of this session — the agreed protocol, its node ids
  /// with each node's place under the roots, its open handles — as text kept with a
  /// saved VM (session_state.cpp), so a session in another process can serve it on.
  std::string save_state() const;
  /// Serve on from `state` (save_state() of a session over the same roots): the
  /// session counts as initialized, nodes and handles are opened again where they are
  /// still the same files; the rest answer ESTALE / EBADF. `state` is untrusted input.
  Result<void> resume(std::string_view state);

 private:
  FuseSession(ShareTree tree, SessionLimits limits, UniqueFd proc_fds);

  std::string dispatch(const fuse_in_header& h, BodyReader& body);
  std::string init(const fuse_in_header& h, BodyReader& body);
  std::string lookup(const fuse_in_header& h, BodyReader& body);
  std::string forget(const fuse_in_header& h, BodyReader& body);
  std::string batch_forget(BodyReader& body);
  std::string getattr(const fuse_in_header& h);
  std::string readlink(const fuse_in_header& h);
  std::string open(const fuse_in_header& h, BodyReader& body);
  std::string read(const fuse_in_header& h, BodyReader& body);
  std::string release(const fuse_in_header& h, BodyReader& body, bool directory);
  std::string opendir(const fuse_in_header& h, BodyReader& body);
  std::string readdir(const fuse_in_header& h, BodyReader& body);
  std::string statfs(const fuse_in_header& h);
  std::string access(const fuse_in_header& h, BodyReader& body);
  std::string flush(const fuse_in_header& h, BodyReader& body);

  /// The host stat of `nodeid` (the virtual root's own made-up one for node 1).
  ErrnoOr<struct stat> stat_node(uint64_t nodeid) const;
  /// A readable fd for regular-file node `node`, reopened from its O_PATH fd.
  ErrnoOr<UniqueFd> reopen_file(const ShareTree::Node& node) const;

  ShareTree tree_;
  OpenHandles handles_;
  UniqueFd proc_fds_;  ///< /proc/self/fd, to reopen O_PATH fds for reading
  struct timespec created_ {};
  bool initialized_ = false;
  uint32_t minor_ = 0;
};

}  // namespace kiln::share
