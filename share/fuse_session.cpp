#include "share/fuse_session.h"

#include "share/dir_listing.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace kiln::share {

namespace {

/// Protocol 7.9 changed the shape of READ, GETATTR and the entry/attr replies; older
/// kernels (before Linux 2.6.24) are refused rather than served in a compat format.
constexpr uint32_t kMinMinor = 9;

/// The INIT flags kiln asks for, where the kernel offers them: parallel reads and
/// directory operations, the page cache dropped when GETATTR shows a change (live),
/// and READs of up to kMaxRead bytes.
constexpr uint32_t kWantedInitFlags = FUSE_ASYNC_READ | FUSE_AUTO_INVAL_DATA | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES;
/// The guest's page size (x86-64): max_pages pages make one kMaxRead READ.
constexpr uint32_t kGuestPageSize = 4096;

bool modifies(uint32_t opcode) {
  switch (opcode) {
    case FUSE_SETATTR:
    case FUSE_SYMLINK:
    case FUSE_MKNOD:
    case FUSE_MKDIR:
    case FUSE_UNLINK:
    case FUSE_RMDIR:
    case FUSE_RENAME:
    case FUSE_LINK:
    case FUSE_WRITE:
    case FUSE_SETXATTR:
    case FUSE_REMOVEXATTR:
    case FUSE_CREATE:
    case FUSE_FALLOCATE:
    case FUSE_RENAME2:
    case FUSE_COPY_FILE_RANGE:
    case FUSE_TMPFILE:
      return true;
    default:
      return false;
  }
}

bool gets_no_reply(uint32_t opcode) {
  return opcode == FUSE_FORGET || opcode == FUSE_BATCH_FORGET || opcode == FUSE_INTERRUPT ||
         opcode == FUSE_NOTIFY_REPLY;
}

fuse_entry_out entry_out(uint64_t nodeid, const struct stat& st) {
  fuse_entry_out e{};
  e.nodeid = nodeid;
  e.generation = 0;  // nodeids are never reused
  e.entry_valid = kAttrTimeoutSeconds;
  e.attr_valid = kAttrTimeoutSeconds;
  e.attr = to_fuse_attr(st);
  return e;
}

/// ACCESS as the guest sees the attributes: never writable; read and execute by the
/// mode bits of the class (owner, group, other) the caller falls in, root reading
/// everything and executing what has any x bit (or is a directory).
int access_error(const struct stat& st, uint32_t uid, uint32_t gid, uint32_t mask) {
  if ((mask & W_OK) != 0) return EROFS;
  const bool want_read = (mask & R_OK) != 0;
  const bool want_exec = (mask & X_OK) != 0;
  if (uid == 0) {
    if (want_exec && !S_ISDIR(st.st_mode) && (st.st_mode & 0111) == 0) return EACCES;
    return 0;
  }
  const mode_t bits = uid == st.st_uid ? (st.st_mode >> 6) : gid == st.st_gid ? (st.st_mode >> 3) : st.st_mode;
  if ((want_read && (bits & 4) == 0) || (want_exec && (bits & 1) == 0)) return EACCES;
  return 0;
}

}  // namespace

Result<FuseSession> FuseSession::create(const std::vector<std::filesystem::path>& roots, SessionLimits limits) {
  KILN_ASSIGN_OR_RETURN(ShareTree tree, ShareTree::open(roots, limits.max_nodes));
  UniqueFd proc_fds(::open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!proc_fds) {
    return make_error("cannot open /proc/self/fd: {} (a share reopens host files through /proc: mount it)",
                      std::strerror(errno));
  }
  return FuseSession(std::move(tree), limits, std::move(proc_fds));
}

FuseSession::FuseSession(ShareTree tree, SessionLimits limits, UniqueFd proc_fds)
    : tree_(std::move(tree)), handles_(limits.max_handles), proc_fds_(std::move(proc_fds)) {
  ::clock_gettime(CLOCK_REALTIME, &created_);
}

std::string FuseSession::handle(std::span<const uint8_t> request) {
  const std::optional<Request> parsed = parse_request(request);
  if (!parsed) return {};
  const fuse_in_header& h = parsed->header;
  BodyReader body(parsed->body);
  if (gets_no_reply(h.opcode)) {
    if (initialized_) dispatch(h, body);
    return {};
  }
  if (!initialized_ && h.opcode != FUSE_INIT) return error_reply(h.unique, EIO);
  return dispatch(h, body);
}

std::string FuseSession::dispatch(const fuse_in_header& h, BodyReader& body) {
  if (modifies(h.opcode)) return error_reply(h.unique, EROFS);
  switch (h.opcode) {
    case FUSE_INIT: return init(h, body);
    case FUSE_LOOKUP: return lookup(h, body);
    case FUSE_FORGET: return forget(h, body);
    case FUSE_BATCH_FORGET: return batch_forget(body);
    case FUSE_GETATTR: return getattr(h);
    case FUSE_READLINK: return readlink(h);
    case FUSE_OPEN: return open(h, body);
    case FUSE_READ: return read(h, body);
    case FUSE_RELEASE: return release(h, body, false);
    case FUSE_OPENDIR: return opendir(h, body);
    case FUSE_READDIR: return readdir(h, body);
    case FUSE_RELEASEDIR: return release(h, body, true);
    case FUSE_STATFS: return statfs(h);
    case FUSE_ACCESS: return access(h, body);
    case FUSE_FLUSH: return flush(h, body);
    case FUSE_DESTROY:
      initialized_ = false;
      return ok_reply(h.unique);
    case FUSE_INTERRUPT:     // requests are answered in order, one at a time: nothing to cut short
    case FUSE_NOTIFY_REPLY:  // kiln sends no notifications, so expects no replies to them
      return {};
    default: return error_reply(h.unique, ENOSYS);
  }
}

std::string FuseSession::init(const fuse_in_header& h, BodyReader& body) {
  if (initialized_) return error_reply(h.unique, EIO);
  // Older kernels send a shorter fuse_init_in (major, minor, max_readahead, flags).
  const auto got = body.take_prefix<fuse_init_in>(2 * sizeof(uint32_t));
  if (!got) return error_reply(h.unique, EINVAL);
  const fuse_init_in& in = *got;

  fuse_init_out out{};
  out.major = FUSE_KERNEL_VERSION;
  out.minor = FUSE_KERNEL_MINOR_VERSION;
  if (in.major < FUSE_KERNEL_VERSION) return error_reply(h.unique, EPROTO);
  // A newer major: answer with ours and wait for the kernel's INIT in it.
  if (in.major > FUSE_KERNEL_VERSION) return ok_reply_struct(h.unique, out);
  if (in.minor < kMinMinor) return error_reply(h.unique, EPROTO);

  minor_ = std::min<uint32_t>(in.minor, FUSE_KERNEL_MINOR_VERSION);
  out.minor = minor_;
  out.max_readahead = in.max_readahead;
  out.flags = in.flags & kWantedInitFlags;
  out.max_write = 4096;  // nothing is ever written; the kernel's floor
  out.time_gran = 1;
  out.max_pages = (out.flags & FUSE_MAX_PAGES) != 0 ? kMaxRead / kGuestPageSize : 0;
  initialized_ = true;
  const size_t size = minor_ < 23 ? FUSE_COMPAT_22_INIT_OUT_SIZE : sizeof out;
  return ok_reply(h.unique, std::string_view(reinterpret_cast<const char*>(&out), size));
}

std::string FuseSession::lookup(const fuse_in_header& h, BodyReader& body) {
  const std::optional<std::string_view> name = body.take_string();
  if (!name) return error_reply(h.unique, EINVAL);
  auto entry = tree_.lookup(h.nodeid, *name);
  if (!entry) return error_reply(h.unique, entry.error());
  return ok_reply_struct(h.unique, entry_out(entry->nodeid, entry->st));
}

std::string FuseSession::forget(const fuse_in_header& h, BodyReader& body) {
  if (const auto in = body.take<fuse_forget_in>()) tree_.forget(h.nodeid, in->nlookup);
  return {};
}

std::string FuseSession::batch_forget(BodyReader& body) {
  const auto in = body.take<fuse_batch_forget_in>();
  if (!in) return {};
  // At most what the body holds, whatever the count says.
  for (uint32_t i = 0; i < in->count; ++i) {
    const auto one = body.take<fuse_forget_one>();
    if (!one) break;
    tree_.forget(one->nodeid, one->nlookup);
  }
  return {};
}

ErrnoOr<struct stat> FuseSession::stat_node(uint64_t nodeid) const {
  struct stat st {};
  if (nodeid == kRootNodeId) {
    st.st_ino = kRootNodeId;
    st.st_mode = S_IFDIR | 0555;
    st.st_nlink = 2;
    st.st_blksize = 4096;
    st.st_atim = st.st_mtim = st.st_ctim = created_;
    return st;
  }
  const ShareTree::Node* node = tree_.node(nodeid);
  if (node == nullptr) return Errno{ESTALE};
  if (::fstat(node->fd.get(), &st) != 0) return Errno{errno};
  return st;
}

std::string FuseSession::getattr(const fuse_in_header& h) {
  auto st = stat_node(h.nodeid);
  if (!st) return error_reply(h.unique, st.error());
  fuse_attr_out out{};
  out.attr_valid = kAttrTimeoutSeconds;
  out.attr = to_fuse_attr(*st);
  return ok_reply_struct(h.unique, out);
}

std::string FuseSession::readlink(const fuse_in_header& h) {
  const ShareTree::Node* node = tree_.node(h.nodeid);
  if (node == nullptr) return error_reply(h.unique, h.nodeid == kRootNodeId ? EINVAL : ESTALE);
  if (node->type != S_IFLNK) return error_reply(h.unique, EINVAL);
  char target[PATH_MAX];
  const ssize_t n = ::readlinkat(node->fd.get(), "", target, sizeof target);
  if (n < 0) return error_reply(h.unique, errno);
  return ok_reply(h.unique, std::string_view(target, static_cast<size_t>(n)));
}

ErrnoOr<UniqueFd> FuseSession::reopen_file(const ShareTree::Node& node) const {
  // /proc/self/fd/N names exactly the inode the O_PATH fd holds; no path is walked.
  const std::string fd_name = std::to_string(node.fd.get());
  UniqueFd fd(::openat(proc_fds_.get(), fd_name.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return Errno{errno};
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Errno{errno};
  if (st.st_dev != node.dev || st.st_ino != node.ino || !S_ISREG(st.st_mode)) return Errno{EIO};
  return fd;
}

std::string FuseSession::open(const fuse_in_header& h, BodyReader& body) {
  const auto in = body.take<fuse_open_in>();
  if (!in) return error_reply(h.unique, EINVAL);
  if (h.nodeid == kRootNodeId) return error_reply(h.unique, EISDIR);
  const ShareTree::Node* node = tree_.node(h.nodeid);
  if (node == nullptr) return error_reply(h.unique, ESTALE);
  if (node->type == S_IFDIR) return error_reply(h.unique, EISDIR);
  if (node->type != S_IFREG) return error_reply(h.unique, ELOOP);
  if ((in->flags & O_ACCMODE) != O_RDONLY || (in->flags & O_TRUNC) != 0) return error_reply(h.unique, EROFS);
  auto fd = reopen_file(*node);
  if (!fd) return error_reply(h.unique, fd.error());
  auto fh = handles_.add({OpenHandles::Kind::file, h.nodeid, std::move(*fd)});
  if (!fh) return error_reply(h.unique, fh.error());
  fuse_open_out out{};
  out.fh = *fh;
  return ok_reply_struct(h.unique, out);
}

std::string FuseSession::read(const fuse_in_header& h, BodyReader& body) {
  const auto in = body.take<fuse_read_in>();
  if (!in) return error_reply(h.unique, EINVAL);
  const OpenHandles::Handle* handle = handles_.find(in->fh, h.nodeid);
  if (handle == nullptr || handle->kind != OpenHandles::Kind::file) return error_reply(h.unique, EBADF);
  if (in->offset > static_cast<uint64_t>(INT64_MAX)) return error_reply(h.unique, EINVAL);
  const size_t size = std::min(in->size, kMaxRead);
  std::string reply = reply_with_payload(h.unique, size);
  size_t got = 0;
  while (got < size) {
    const ssize_t n = ::pread(handle->fd.get(), reply.data() + kOutHeaderSize + got, size - got,
                              static_cast<off_t>(in->offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return error_reply(h.unique, errno);
    if (n == 0) break;  // end of file: a short reply says so
    got += static_cast<size_t>(n);
  }
  finish_reply(reply, got);
  return reply;
}

std::string FuseSession::release(const fuse_in_header& h, BodyReader& body, bool directory) {
  const auto in = body.take<fuse_release_in>();
  if (!in) return error_reply(h.unique, EINVAL);
  if (!handles_.remove(in->fh, h.nodeid, directory)) return error_reply(h.unique, EBADF);
  return ok_reply(h.unique);
}

std::string FuseSession::opendir(const fuse_in_header& h, BodyReader& body) {
  if (!body.take<fuse_open_in>()) return error_reply(h.unique, EINVAL);
  OpenHandles::Handle handle{OpenHandles::Kind::virtual_root, h.nodeid, UniqueFd()};
  if (h.nodeid != kRootNodeId) {
    const ShareTree::Node* node = tree_.node(h.nodeid);
    if (node == nullptr) return error_reply(h.unique, ESTALE);
    if (node->type != S_IFDIR) return error_reply(h.unique, ENOTDIR);
    UniqueFd fd(::openat(node->fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return error_reply(h.unique, errno);
    handle = {OpenHandles::Kind::directory, h.nodeid, std::move(fd)};
  }
  auto fh = handles_.add(std::move(handle));
  if (!fh) return error_reply(h.unique, fh.error());
  fuse_open_out out{};
  out.fh = *fh;
  return ok_reply_struct(h.unique, out);
}

std::string FuseSession::readdir(const fuse_in_header& h, BodyReader& body) {
  const auto in = body.take<fuse_read_in>();
  if (!in) return error_reply(h.unique, EINVAL);
  const OpenHandles::Handle* handle = handles_.find(in->fh, h.nodeid);
  if (handle == nullptr || handle->kind == OpenHandles::Kind::file) return error_reply(h.unique, EBADF);
  const size_t size = std::min(in->size, kMaxRead);
  if (handle->kind == OpenHandles::Kind::virtual_root) {
    return ok_reply(h.unique, list_virtual_root(tree_, in->offset, size));
  }
  auto listing = list_host_directory(handle->fd.get(), in->offset, size);
  if (!listing) return error_reply(h.unique, listing.error());
  return ok_reply(h.unique, *listing);
}

std::string FuseSession::statfs(const fuse_in_header& h) {
  int fd = -1;
  if (h.nodeid == kRootNodeId) {
    if (tree_.root_count() > 0) fd = tree_.root_fd(0);
  } else {
    const ShareTree::Node* node = tree_.node(h.nodeid);
    if (node == nullptr) return error_reply(h.unique, ESTALE);
    fd = node->fd.get();
  }
  fuse_statfs_out out{};
  out.st.namelen = NAME_MAX;
  out.st.bsize = out.st.frsize = 4096;
  if (fd >= 0) {
    struct statfs st {};
    if (::fstatfs(fd, &st) != 0) return error_reply(h.unique, errno);
    out.st = to_fuse_kstatfs(st);
  }
  return ok_reply_struct(h.unique, out);
}

std::string FuseSession::access(const fuse_in_header& h, BodyReader& body) {
  const auto in = body.take<fuse_access_in>();
  if (!in) return error_reply(h.unique, EINVAL);
  auto st = stat_node(h.nodeid);
  if (!st) return error_reply(h.unique, st.error());
  const int err = access_error(*st, h.uid, h.gid, in->mask);
  return err != 0 ? error_reply(h.unique, err) : ok_reply(h.unique);
}

std::string FuseSession::flush(const fuse_in_header& h, BodyReader& body) {
  const auto in = body.take<fuse_flush_in>();
  if (!in) return error_reply(h.unique, EINVAL);
  if (handles_.find(in->fh, h.nodeid) == nullptr) return error_reply(h.unique, EBADF);
  return ok_reply(h.unique);
}

}  // namespace kiln::share
