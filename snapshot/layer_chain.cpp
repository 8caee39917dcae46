#include "snapshot/layer_chain.h"

#include "common/fs.h"
#include "snapshot/layout.h"
#include "snapshot/verify.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace kiln::snapshot {

std::filesystem::path ChainLayer::pages() const { return snapshot.dir / snapshot.meta.memory.name; }

std::filesystem::path LayerChain::root_memory() const { return root.dir / root.meta.memory.name; }

Result<DiffIndex> read_diff_index(const Snapshot& layer) {
  auto path = layer.dir / layer.meta.layer->index.name;
  KILN_ASSIGN_OR_RETURN(auto bytes, fs::read_file(path, kMaxDiffIndexBytes));
  auto index = parse_diff_index(bytes);
  if (!index) return with_context("layer " + layer.id(), index.error());
  if (index->memory_size != layer.meta.layer->memory_size || index->pages_bytes != layer.meta.memory.size)
    return make_error("layer {}: memory.index describes {} bytes of RAM and {} of pages, metadata.json {} and {}",
                      layer.id(), index->memory_size, index->pages_bytes, layer.meta.layer->memory_size,
                      layer.meta.memory.size);
  return index;
}

Result<LayerChain> load_chain(const std::filesystem::path& store_root, const Snapshot& snapshot) {
  LayerChain chain;
  Snapshot cur = snapshot;
  // Depths are checked on every step, so a forged cycle of parents ends here too.
  while (cur.is_layer()) {
    if (chain.layers.size() >= kMaxLayerDepth)
      return make_error("layer {}: chain deeper than the maximum of {}", snapshot.id(), kMaxLayerDepth);
    KILN_ASSIGN_OR_RETURN(auto index, read_diff_index(cur));
    std::string parent_id = *cur.meta.parent;
    KILN_ASSIGN_OR_RETURN(auto parent_meta, read_metadata(store_root / parent_id));
    Snapshot parent{store_root / parent_id, std::move(parent_meta)};
    if (parent.depth() + 1 != cur.depth())
      return make_error("layer {}: its base {} is at depth {}, expected {}", cur.id(), parent_id, parent.depth(),
                        cur.depth() - 1);
    chain.layers.push_back(ChainLayer{std::move(cur), std::move(index)});
    cur = std::move(parent);
  }
  chain.root = std::move(cur);
  std::reverse(chain.layers.begin(), chain.layers.end());
  for (const auto& l : chain.layers)
    if (l.index.memory_size != chain.memory_size())
      return make_error("layer {} diffs {} bytes of RAM, but its golden {} has {}", l.snapshot.id(),
                        l.index.memory_size, chain.root.id(), chain.memory_size());
  return chain;
}

Result<uint64_t> shared_root_bytes(const LayerChain& chain) {
  auto path = chain.root_memory();
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return make_error("cannot open {}: {}", path.string(), std::strerror(errno));
  KILN_ASSIGN_OR_RETURN(auto data, sparse::data_extents(fd.get(), chain.memory_size(), path));
  std::vector<sparse::Range> covered;
  for (const auto& l : chain.layers)
    for (const auto& e : l.index.extents) covered.push_back({e.guest_offset, e.guest_offset + e.length});
  covered = sparse::merge(std::move(covered), kPageSize);
  // Both lists are sorted and disjoint: subtract their intersection in one sweep.
  uint64_t shared = 0;
  size_t j = 0;
  for (const auto& d : data) {
    shared += d.size();
    while (j < covered.size() && covered[j].end <= d.begin) ++j;
    for (size_t k = j; k < covered.size() && covered[k].begin < d.end; ++k)
      shared -= std::min(d.end, covered[k].end) - std::max(d.begin, covered[k].begin);
  }
  return shared;
}

Result<MemoryView> MemoryView::open(const LayerChain& chain) {
  MemoryView v;
  v.size_ = chain.memory_size();
  v.root_name_ = chain.root_memory();
  v.root_.reset(::open(v.root_name_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!v.root_) return make_error("cannot open {}: {}", v.root_name_.string(), std::strerror(errno));
  KILN_ASSIGN_OR_RETURN(auto data, sparse::data_extents(v.root_.get(), v.size_, v.root_name_));
  for (const auto& l : chain.layers) {
    Layer layer{UniqueFd(::open(l.pages().c_str(), O_RDONLY | O_CLOEXEC)), l.pages(), l.index};
    if (!layer.fd) return make_error("cannot open {}: {}", l.pages().string(), std::strerror(errno));
    for (const auto& e : l.index.extents) data.push_back({e.guest_offset, e.guest_offset + e.length});
    v.layers_.push_back(std::move(layer));
  }
  v.data_ = sparse::merge(std::move(data), kPageSize);
  return v;
}

Result<void> MemoryView::read(uint64_t offset, char* out, size_t len) const {
  if (offset > size_ || len > size_ - offset)
    return make_error("internal error: reading {:#x}+{:#x} of {:#x} bytes of guest RAM", offset, len, size_);
  // pread of a hole returns zeros, so the root needs no special case for sparse ranges.
  KILN_TRY(sparse::read_exact(root_.get(), out, len, offset, root_name_));
  const uint64_t end = offset + len;
  for (const auto& l : layers_) {
    const auto& ex = l.index.extents;
    // First extent that ends after `offset`.
    auto it = std::upper_bound(ex.begin(), ex.end(), offset,
                               [](uint64_t off, const vmm::MemoryExtent& e) { return off < e.guest_offset + e.length; });
    for (; it != ex.end() && it->guest_offset < end; ++it) {
      uint64_t b = std::max(offset, it->guest_offset), e = std::min(end, it->guest_offset + it->length);
      // In bounds: [b, e) lies inside both the request and the extent.
      KILN_TRY(sparse::read_exact(l.fd.get(), out + (b - offset), e - b, it->file_offset + (b - it->guest_offset),
                                  l.name));
    }
  }
  return {};
}

}  // namespace kiln::snapshot
