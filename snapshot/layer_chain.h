// A snapshot's guest RAM as the files that make it: the root golden's memory.ram and,
// for a layer, the diffs of every layer from the root down to it. Internal to snapshot/.
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"
#include "snapshot/diff_index.h"
#include "snapshot/metadata.h"
#include "snapshot/sparse_io.h"
#include "snapshot/store.h"

#include <filesystem>
#include <vector>

namespace kiln::snapshot {

struct ChainLayer {
  Snapshot snapshot;
  DiffIndex index;
  std::filesystem::path pages() const;  ///< its memory.diff
};

struct LayerChain {
  Snapshot root;                   ///< the golden at the bottom
  std::vector<ChainLayer> layers;  ///< root -> leaf; empty when the snapshot is a golden
  std::filesystem::path root_memory() const;
  uint64_t memory_size() const { return root.meta.memory.size; }
};

/// Read and parse `layer`'s memory.index and check it against its metadata.
Result<DiffIndex> read_diff_index(const Snapshot& layer);

/// The chain under `snapshot`, read from metadata.json and memory.index files (parsed,
/// checksummed and checked against each other: ids, depths, memory sizes). Page digests
/// are not re-read here: lookup_layer checked them.
Result<LayerChain> load_chain(const std::filesystem::path& store_root, const Snapshot& snapshot);

/// Bytes of the root golden's data (its allocated extents) that the chain restores
/// unchanged: not covered by any layer's extents. What a layer shares with its golden.
Result<uint64_t> shared_root_bytes(const LayerChain& chain);

/// Reads any range of a chain's guest RAM: the root file, then each layer's pages on top.
class MemoryView {
 public:
  static Result<MemoryView> open(const LayerChain& chain);
  uint64_t size() const { return size_; }
  /// The content of [offset, offset + len).
  Result<void> read(uint64_t offset, char* out, size_t len) const;
  /// Page-aligned, sorted, merged ranges outside which the content is all zeros.
  const std::vector<sparse::Range>& data() const { return data_; }

 private:
  struct Layer {
    UniqueFd fd;
    std::filesystem::path name;
    DiffIndex index;
  };
  MemoryView() = default;
  UniqueFd root_;
  std::filesystem::path root_name_;
  std::vector<Layer> layers_;
  uint64_t size_ = 0;
  std::vector<sparse::Range> data_;
};

}  // namespace kiln::snapshot
