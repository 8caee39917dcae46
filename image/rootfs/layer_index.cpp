#include "image/rootfs/layer_index.h"

#include "image/rootfs/member_path.h"

#include <archive_entry.h>
#include <sys/stat.h>

#include <algorithm>

namespace kiln::rootfs {
namespace {

const char* kind_name(NodeKind k) {
  switch (k) {
    case NodeKind::directory: return "directory";
    case NodeKind::file: return "regular file";
    case NodeKind::symlink: return "symlink";
    case NodeKind::special: return "device node, fifo or socket";
  }
  return "member";
}

NodeKind kind_of(archive_entry* e) {
  switch (archive_entry_filetype(e)) {
    case AE_IFDIR: return NodeKind::directory;
    case AE_IFREG: return NodeKind::file;
    case AE_IFLNK: return NodeKind::symlink;
    default: return NodeKind::special;  // AE_IFCHR, AE_IFBLK, AE_IFIFO, AE_IFSOCK, unknown
  }
}

std::string shown(const char* raw) { return fmt::format("{:?}", std::string_view(raw)); }

Error refused(const LayerReader& layer, const std::string& member, const std::string& why) {
  return make_error("layer {}: member {}: {}; the layer is refused (kiln never writes outside the image root; "
                    "rebuild the image without that member)",
                    layer.name(), member, why);
}

}  // namespace

Result<LayerIndex::Addition> LayerIndex::read_member(const LayerReader& layer, archive_entry* e, std::string path,
                                                     uint64_t ordinal) const {
  Addition a;
  a.path = std::move(path);
  a.ordinal = ordinal;
  a.kind = kind_of(e);
  const char* link = archive_entry_hardlink(e);
  if (link != nullptr) {
    auto target = normalize_member_path(link);
    if (!target) return refused(layer, shown(archive_entry_pathname(e)), "a hard link to " + shown(link) + " with " + target.error().message);
    if (target->empty()) return refused(layer, shown(archive_entry_pathname(e)), "a hard link to the root directory");
    a.is_hardlink = true;
    a.link_target = std::move(target).value();
  } else if (a.kind == NodeKind::file && archive_entry_size_is_set(e)) {
    a.size = static_cast<uint64_t>(std::max<la_int64_t>(archive_entry_size(e), 0));
  }
  if (a.path.empty() && !a.is_hardlink && a.kind != NodeKind::directory)
    return refused(layer, shown(archive_entry_pathname(e)), std::string("the image root as a ") + kind_name(a.kind));
  return a;
}

Result<void> LayerIndex::add_layer(LayerReader& layer) {
  std::vector<Whiteout> whiteouts;
  std::vector<Addition> additions;
  for (uint64_t ordinal = 0;; ++ordinal) {
    KILN_ASSIGN_OR_RETURN(archive_entry * e, layer.next());
    if (e == nullptr) break;
    if (++members_ > kMaxMembers)
      return make_error("layer {}: more than {} members in the image's layers; kiln refuses images this large",
                        layer.name(), kMaxMembers);
    const char* raw = archive_entry_pathname(e);
    if (raw == nullptr) return make_error("layer {}: member #{} has a name libarchive cannot read; the layer is refused", layer.name(), ordinal);
    auto path = normalize_member_path(raw);
    if (!path) return refused(layer, shown(raw), path.error().message);
    auto whiteout = classify_whiteout(*path);
    if (!whiteout) return refused(layer, shown(raw), whiteout.error().message);
    if (whiteout->kind == Whiteout::Kind::ignore) continue;
    if (whiteout->kind != Whiteout::Kind::none) {
      whiteouts.push_back(std::move(whiteout).value());
      continue;
    }
    KILN_ASSIGN_OR_RETURN(Addition a, read_member(layer, e, std::move(path).value(), ordinal));
    additions.push_back(std::move(a));
  }
  // A layer's whiteouts apply to the layers below it only: all of them first.
  for (const auto& w : whiteouts) {
    if (w.kind == Whiteout::Kind::remove) erase_subtree(w.target);
    else erase_below(w.target);
  }
  for (auto& a : additions) KILN_TRY(add(layer, a));
  ++layer_count_;
  return {};
}

void LayerIndex::erase_below(const std::string& dir) {
  if (dir.empty()) {  // the root: everything but the root itself
    auto root = tree_.find("");
    if (root == tree_.end()) tree_.clear();
    else {
      Node keep = root->second;
      tree_.clear();
      tree_.emplace("", keep);
    }
    return;
  }
  // Every key starting "dir/" sorts in [ "dir/", "dir0" ): '0' is the byte after '/'.
  tree_.erase(tree_.lower_bound(dir + '/'), tree_.lower_bound(dir + '0'));
}

void LayerIndex::erase_subtree(const std::string& path) {
  erase_below(path);
  tree_.erase(path);
}

Result<void> LayerIndex::add(const LayerReader& layer, const Addition& a) {
  for (std::string_view up = parent_of(a.path); !up.empty(); up = parent_of(up)) {
    auto it = tree_.find(std::string(up));
    if (it != tree_.end() && it->second.kind != NodeKind::directory)
      return refused(layer, shown(a.path.c_str()),
                     fmt::format("it lies below {:?}, which is a {} at that point (kiln does not resolve "
                                 "symlinks or replace files while flattening)",
                                 up, kind_name(it->second.kind)));
  }
  Node node{a.kind, EntryRef{layer_count_, a.ordinal}, a.size};
  if (a.is_hardlink) {
    auto target = tree_.find(a.link_target);
    if (target == tree_.end())
      return refused(layer, shown(a.path.c_str()),
                     fmt::format("a hard link to {:?}, which no layer has at that point", a.link_target));
    if (target->second.kind == NodeKind::directory)
      return refused(layer, shown(a.path.c_str()), fmt::format("a hard link to the directory {:?}", a.link_target));
    node = target->second;
  }
  auto existing = tree_.find(a.path);
  if (existing != tree_.end() && existing->second.kind == NodeKind::directory && node.kind != NodeKind::directory)
    erase_below(a.path);
  tree_.insert_or_assign(a.path, node);
  return {};
}

FlatPlan LayerIndex::plan() const {
  FlatPlan plan;
  plan.layers.resize(layer_count_);
  // The tree is walked in path order, so an inode's first name is its smallest path.
  std::map<EntryRef, Emission> by_inode;
  for (const auto& [path, node] : tree_) {
    if (node.kind == NodeKind::special) {
      if (plan.special_paths.size() < kMaxSpecialNotes) plan.special_paths.push_back(path);
      ++plan.specials;
      continue;
    }
    auto [it, first] = by_inode.try_emplace(node.inode);
    Emission& em = it->second;
    if (!first) {
      em.links.push_back(path);
      ++plan.hardlinks;
      continue;
    }
    em = Emission{node.inode.ordinal, node.kind, node.size, path, {}};
    switch (node.kind) {
      case NodeKind::directory: ++plan.dirs; break;
      case NodeKind::file: ++plan.files; plan.file_bytes += node.size; break;
      case NodeKind::symlink: ++plan.symlinks; break;
      case NodeKind::special: break;
    }
  }
  // by_inode is ordered by (layer, ordinal): each layer's emissions come out in order.
  for (auto& [ref, em] : by_inode) plan.layers[ref.layer].push_back(std::move(em));
  return plan;
}

}  // namespace kiln::rootfs
