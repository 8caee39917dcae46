// Pass 1 of flattening an image: read every layer's member headers (bottom layer
// first, no data), apply OCI whiteouts, and decide which member of which layer each
// path of the final tree comes from. The result, a FlatPlan, tells pass 2
// (flatten.h) what to write when it streams the layers again.
//
// Rules (OCI image-spec layer.md, as containerd and Docker apply them):
//  - a member of a higher layer replaces the same path from lower layers; a directory
//    replaced by a non-directory takes its whole subtree with it; a directory over a
//    directory only replaces the attributes (the children stay);
//  - ".wh.NAME" deletes NAME and its subtree from lower layers; ".wh..wh..opq" hides
//    every lower child of its directory (the directory and this layer's children
//    stay); a whiteout of a path no lower layer has is a no-op; whiteouts never hide
//    members of their own layer;
//  - a hard link names a path that exists at that point (earlier in its layer or in a
//    lower one): it shares that inode, which keeps its data even if the first name is
//    later deleted or replaced (the plan then writes the data under a surviving name);
//  - device nodes, fifos and sockets are left out (a read-only image needs none: the
//    guest's /dev is devtmpfs) and counted.
// Refused, naming the layer and the member: a path with a ".." component, a hard link
// to one (both could reach outside the root), a hard link to a directory or to a path
// that does not exist, a member below a path a layer made a non-directory (kiln does not
// resolve symlinks while flattening), the root replaced by a non-directory.
#pragma once

#include "common/result.h"
#include "image/rootfs/layer_reader.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kiln::rootfs {

enum class NodeKind : uint8_t { directory, file, symlink, special };

/// One member of one layer: index into the layer list, and its position in the layer.
struct EntryRef {
  uint32_t layer = 0;
  uint64_t ordinal = 0;
  auto operator<=>(const EntryRef&) const = default;
};

/// What pass 2 writes when it meets member `ordinal` of a layer.
struct Emission {
  uint64_t ordinal = 0;
  NodeKind kind = NodeKind::file;
  uint64_t size = 0;               ///< file data bytes (pass 2 checks the member still says so)
  std::string path;                ///< its path in the image ("" = the root directory)
  std::vector<std::string> links;  ///< more names of the same inode: hard links to `path`
};

struct FlatPlan {
  std::vector<std::vector<Emission>> layers;  ///< per layer (bottom first), by ordinal
  uint64_t files = 0;      ///< regular files (inodes; their extra names are in hardlinks)
  uint64_t dirs = 0;
  uint64_t symlinks = 0;
  uint64_t hardlinks = 0;  ///< names beyond an inode's first
  uint64_t specials = 0;   ///< device nodes, fifos and sockets left out
  std::vector<std::string> special_paths;  ///< the first kMaxSpecialNotes of them
  uint64_t file_bytes = 0;  ///< data of all regular files (each inode once)
};

/// Members over all layers kiln indexes (a Debian root with PostgreSQL has ~12,000).
inline constexpr uint64_t kMaxMembers = 4'000'000;
inline constexpr size_t kMaxSpecialNotes = 32;

class LayerIndex {
 public:
  /// Read the headers of the next layer up (call bottom layer first).
  Result<void> add_layer(LayerReader& layer);
  /// The surviving tree, as what to write from each layer.
  FlatPlan plan() const;

 private:
  struct Node {
    NodeKind kind = NodeKind::file;
    EntryRef inode;     ///< the member giving the header and data (a hard link's target's)
    uint64_t size = 0;
  };
  struct Addition {
    std::string path;
    uint64_t ordinal = 0;
    NodeKind kind = NodeKind::file;
    uint64_t size = 0;
    bool is_hardlink = false;
    std::string link_target;  ///< hard link: the normalised path it names
  };

  Result<Addition> read_member(const LayerReader& layer, archive_entry* e, std::string path, uint64_t ordinal) const;
  void erase_below(const std::string& dir);
  void erase_subtree(const std::string& path);
  Result<void> add(const LayerReader& layer, const Addition& a);

  std::map<std::string, Node> tree_;  ///< ordered, so a subtree is one contiguous range
  uint32_t layer_count_ = 0;
  uint64_t members_ = 0;
};

}  // namespace kiln::rootfs
