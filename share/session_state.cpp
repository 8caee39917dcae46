// A FUSE session saved with a kept VM and resumed by `kiln shell` in another
// process (fuse_session.h: save_state, resume). The guest's kernel still holds
// the node ids and file handles of the session that served it when the VM was
// saved; the resumed session opens the same files again by their place under
// the share's roots and answers for the same ids.
#include "share/fuse_session.h"

#include <fcntl.h>

#include <nlohmann/json.hpp>

namespace kiln::share {
namespace {

using nlohmann::json;

constexpr int kStateFormat = 1;
constexpr size_t kMaxStateBytes = 64u << 20;

const char* kind_name(OpenHandles::Kind k) {
  switch (k) {
    case OpenHandles::Kind::file: return "file";
    case OpenHandles::Kind::directory: return "directory";
    case OpenHandles::Kind::virtual_root: return "root";
  }
  return "file";
}

std::optional<OpenHandles::Kind> kind_of(const std::string& name) {
  if (name == "file") return OpenHandles::Kind::file;
  if (name == "directory") return OpenHandles::Kind::directory;
  if (name == "root") return OpenHandles::Kind::virtual_root;
  return std::nullopt;
}

template <typename T>
bool get(const json& obj, const char* key, T& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return false;
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) return false;
  } else {
    if (!it->is_number_unsigned()) return false;
  }
  out = it->get<T>();
  return true;
}

}  // namespace

std::string FuseSession::save_state() const {
  json nodes = json::array();
  for (const auto& n : tree_.saved_nodes())
    nodes.push_back({{"id", n.nodeid}, {"root", n.root}, {"path", n.path}, {"dev", static_cast<uint64_t>(n.dev)},
                     {"ino", static_cast<uint64_t>(n.ino)}, {"lookups", n.lookups}});
  json handles = json::array();
  for (const auto& h : handles_.saved())
    handles.push_back({{"fh", h.fh}, {"kind", kind_name(h.kind)}, {"node", h.nodeid}});
  json doc = {{"format", kStateFormat}, {"minor", minor_}, {"nodes", nodes}, {"handles", handles}};
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<void> FuseSession::resume(std::string_view state) {
  if (state.size() > kMaxStateBytes) return make_error("the saved share state is too large ({} bytes)", state.size());
  const json doc = json::parse(state, nullptr, false);
  uint64_t format = 0, minor = 0;
  if (doc.is_discarded() || !doc.is_object() || !get(doc, "format", format) || format != kStateFormat ||
      !get(doc, "minor", minor) || minor < 9 || minor > FUSE_KERNEL_MINOR_VERSION)
    return make_error("the saved share state is not one this kiln wrote");
  const auto nodes = doc.find("nodes");
  const auto handles = doc.find("handles");
  if (nodes == doc.end() || !nodes->is_array() || handles == doc.end() || !handles->is_array())
    return make_error("the saved share state has no node or handle list");

  std::vector<ShareTree::SavedNode> saved;
  for (const auto& n : *nodes) {
    ShareTree::SavedNode s;
    uint64_t dev = 0, ino = 0, root = 0;
    if (!n.is_object() || !get(n, "id", s.nodeid) || !get(n, "root", root) || !get(n, "path", s.path) ||
        !get(n, "dev", dev) || !get(n, "ino", ino) || !get(n, "lookups", s.lookups))
      return make_error("the saved share state has a malformed node");
    s.root = static_cast<size_t>(root);
    s.dev = static_cast<dev_t>(dev);
    s.ino = static_cast<ino_t>(ino);
    saved.push_back(std::move(s));
  }
  tree_.adopt_nodes(saved);

  for (const auto& h : *handles) {
    OpenHandles::SavedHandle s;
    std::string kind;
    if (!h.is_object() || !get(h, "fh", s.fh) || !get(h, "kind", kind) || !get(h, "node", s.nodeid) || !kind_of(kind))
      return make_error("the saved share state has a malformed open handle");
    s.kind = *kind_of(kind);
    UniqueFd fd;
    if (s.kind == OpenHandles::Kind::virtual_root) {
      if (s.nodeid != kRootNodeId) continue;
    } else {
      const ShareTree::Node* node = tree_.node(s.nodeid);
      if (node == nullptr) continue;  // its file is gone: the guest gets EBADF
      if (s.kind == OpenHandles::Kind::directory) {
        if (node->type != S_IFDIR) continue;
        fd.reset(::openat(node->fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      } else {
        auto file = reopen_file(*node);
        if (file) fd = std::move(*file);
      }
      if (!fd) continue;
    }
    (void)handles_.adopt(s, std::move(fd));
  }
  minor_ = static_cast<uint32_t>(minor);
  initialized_ = true;
  return {};
}

}  // namespace kiln::share
