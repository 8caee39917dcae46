#include "share/share_tree.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>

namespace kiln::share {

bool visible_type(mode_t type) { return type == S_IFREG || type == S_IFDIR || type == S_IFLNK; }

int name_error(std::string_view name) {
  if (name.empty() || name == "." || name == "..") return EINVAL;
  if (name.find('/') != std::string_view::npos) return EINVAL;
  if (name.size() > NAME_MAX) return ENAMETOOLONG;
  return 0;
}

namespace {

Result<UniqueFd> open_root(const std::filesystem::path& root) {
  if (!root.is_absolute()) return make_error("share root '{}' is not an absolute path", root.string());
  UniqueFd fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    return make_error("cannot open share root {}: {} (it must be an existing directory on this host)",
                      root.string(), std::strerror(errno));
  }
  return fd;
}

/// "0", "1", ... as root index; anything else (leading zeros, signs, too large) is none.
std::optional<size_t> root_index(std::string_view name, size_t count) {
  if (name.empty() || (name.size() > 1 && name[0] == '0')) return std::nullopt;
  size_t index = 0;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), index);
  if (ec != std::errc() || end != name.data() + name.size() || index >= count) return std::nullopt;
  return index;
}

}  // namespace

Result<ShareTree> ShareTree::open(const std::vector<std::filesystem::path>& roots, size_t max_nodes) {
  std::vector<Root> opened;
  opened.reserve(roots.size());
  for (const auto& path : roots) {
    KILN_ASSIGN_OR_RETURN(UniqueFd fd, open_root(path));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return make_error("cannot stat share root {}: {}", path.string(), std::strerror(errno));
    opened.push_back(Root{std::move(fd), st.st_ino, path.lexically_normal()});
  }
  return ShareTree(std::move(opened), max_nodes == 0 ? 1 : max_nodes);
}

ErrnoOr<std::pair<int, std::string_view>> ShareTree::resolve_parent(uint64_t parent, std::string_view name) const {
  if (parent == kRootNodeId) {
    const std::optional<size_t> i = root_index(name, roots_.size());
    if (!i) return Errno{ENOENT};
    return std::pair<int, std::string_view>(roots_[*i].fd.get(), ".");
  }
  const Node* dir = node(parent);
  if (dir == nullptr) return Errno{ESTALE};
  if (dir->type != S_IFDIR) return Errno{ENOTDIR};
  return std::pair<int, std::string_view>(dir->fd.get(), name);
}

ErrnoOr<ShareTree::Entry> ShareTree::lookup(uint64_t parent, std::string_view name) {
  if (const int err = name_error(name); err != 0) return Errno{err};
  auto where = resolve_parent(parent, name);
  if (!where) return Errno{where.error()};
  const auto [dir_fd, component] = *where;
  const std::string component_z(component);  // openat wants a NUL-terminated name
  UniqueFd fd(::openat(dir_fd, component_z.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Errno{errno};
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Errno{errno};
  if (!visible_type(st.st_mode & S_IFMT)) return Errno{ENOENT};
  return remember(std::move(fd), st);
}

ErrnoOr<ShareTree::Entry> ShareTree::remember(UniqueFd fd, const struct stat& st) {
  const auto key = std::make_pair(st.st_dev, st.st_ino);
  if (const auto known = by_inode_.find(key); known != by_inode_.end()) {
    Node& n = nodes_.at(known->second);
    if (n.lookups < UINT64_MAX) ++n.lookups;
    return Entry{known->second, st};
  }
  if (nodes_.size() >= max_nodes_) return Errno{ENFILE};
  const uint64_t id = next_id_++;
  nodes_.emplace(id, Node{std::move(fd), st.st_dev, st.st_ino, st.st_mode & S_IFMT, 1});
  by_inode_.emplace(key, id);
  return Entry{id, st};
}

void ShareTree::forget(uint64_t nodeid, uint64_t count) {
  const auto it = nodes_.find(nodeid);
  if (it == nodes_.end()) return;
  Node& n = it->second;
  n.lookups -= std::min(count, n.lookups);
  if (n.lookups > 0) return;
  by_inode_.erase(std::make_pair(n.dev, n.ino));
  nodes_.erase(it);
}

std::vector<ShareTree::SavedNode> ShareTree::saved_nodes() const {
  std::vector<SavedNode> out;
  for (const auto& [id, n] : nodes_) {
    char link[PATH_MAX];
    const std::string proc = "/proc/self/fd/" + std::to_string(n.fd.get());
    const ssize_t len = ::readlink(proc.c_str(), link, sizeof link - 1);
    if (len <= 0) continue;
    const std::filesystem::path where(std::string(link, static_cast<size_t>(len)));
    for (size_t r = 0; r < roots_.size(); ++r) {
      const std::filesystem::path rel = where.lexically_relative(roots_[r].path);
      if (rel.empty() || *rel.begin() == "..") continue;
      out.push_back(SavedNode{id, r, rel.string(), n.dev, n.ino, n.lookups});
      break;
    }
  }
  return out;
}

void ShareTree::adopt_nodes(const std::vector<SavedNode>& saved) {
  for (const SavedNode& s : saved) {
    if (s.nodeid <= kRootNodeId || s.root >= roots_.size() || s.lookups == 0 || nodes_.count(s.nodeid)) continue;
    if (nodes_.size() >= max_nodes_) break;
    next_id_ = std::max(next_id_, s.nodeid + 1);
    open_how how{};
    how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    UniqueFd fd(static_cast<int>(::syscall(SYS_openat2, roots_[s.root].fd.get(), s.path.c_str(), &how, sizeof how)));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0) continue;
    if (st.st_dev != s.dev || st.st_ino != s.ino || !visible_type(st.st_mode & S_IFMT)) continue;
    if (by_inode_.count({st.st_dev, st.st_ino})) continue;
    nodes_.emplace(s.nodeid, Node{std::move(fd), st.st_dev, st.st_ino, st.st_mode & S_IFMT, s.lookups});
    by_inode_.emplace(std::make_pair(st.st_dev, st.st_ino), s.nodeid);
  }
}

const ShareTree::Node* ShareTree::node(uint64_t nodeid) const {
  const auto it = nodes_.find(nodeid);
  return it == nodes_.end() ? nullptr : &it->second;
}

}  // namespace kiln::share
