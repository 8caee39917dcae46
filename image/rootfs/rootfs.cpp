#include "image/rootfs/rootfs.h"

#include "image/rootfs/flatten.h"
#include "image/rootfs/layer_index.h"
#include "image/rootfs/layer_reader.h"
#include "image/rootfs/squashfs_disk.h"

#include <chrono>
#include <system_error>

namespace kiln::rootfs {
namespace {

std::string mib(uint64_t bytes) { return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20)); }

Result<FlatPlan> index_layers(const std::vector<image::LayerBlob>& layers) {
  LayerIndex index;
  for (const auto& blob : layers) {
    KILN_ASSIGN_OR_RETURN(LayerReader reader, LayerReader::open_file(blob.path, blob.digest));
    KILN_TRY(index.add_layer(reader));
  }
  return index.plan();
}

void note_skipped(const FlatPlan& plan, const RootfsOptions& o) {
  if (!o.progress) return;
  for (const auto& path : plan.special_paths)
    o.progress(fmt::format("skipped /{}: a device node, fifo or socket (the guest's /dev is devtmpfs)", path));
  if (plan.specials > plan.special_paths.size())
    o.progress(fmt::format("skipped {} more device nodes, fifos or sockets", plan.specials - plan.special_paths.size()));
}

}  // namespace

Result<RootfsStats> write_rootfs_disk(const std::vector<image::LayerBlob>& layers, const std::filesystem::path& disk,
                                      const RootfsOptions& o) {
  auto start = std::chrono::steady_clock::now();
  if (layers.empty()) return make_error("an image with no layers has no root filesystem to write");
  KILN_ASSIGN_OR_RETURN(FlatPlan plan, index_layers(layers));
  if (plan.file_bytes > o.max_bytes)
    return make_error("the image's root filesystem holds {} of file data, over the budget of {}; nothing was written "
                      "(raise the rootfs budget if the image really is this large)",
                      mib(plan.file_bytes), mib(o.max_bytes));
  note_skipped(plan, o);
  FlattenResult flat;
  KILN_TRY(write_squashfs_disk(disk, o.compressor, [&](const TarSink& sink) -> Result<void> {
    KILN_ASSIGN_OR_RETURN(flat, write_flat_tar(layers, plan, sink, o.progress));
    return {};
  }));
  if (flat.dropped_xattrs > 0 && o.progress)
    o.progress(fmt::format("left out {} ACLs or xattrs outside user., trusted. and security. (squashfs cannot hold them)",
                           flat.dropped_xattrs));
  RootfsStats stats;
  stats.files = plan.files;
  stats.dirs = plan.dirs;
  stats.symlinks = plan.symlinks;
  stats.hardlinks = plan.hardlinks;
  stats.skipped_devices = plan.specials;
  stats.bytes_in = flat.data_bytes;
  std::error_code ec;
  stats.disk_bytes = std::filesystem::file_size(disk, ec);
  if (ec) return make_error("cannot read the size of {}: {}", disk.string(), ec.message());
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

}  // namespace kiln::rootfs
