// Pass 2 of flattening an image: stream the layers again, bottom first, and write the
// members a FlatPlan keeps as one pax tar archive (owners, modes, times, xattrs,
// symlinks, hard links). The archive has each path once, a directory possibly after
// its children (tar2sqfs takes that: it makes the directory implicitly and sets its
// attributes when the entry comes), and every hard link after its target.
#pragma once

#include "common/result.h"
#include "image/oci/image.h"
#include "image/rootfs/layer_index.h"

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::rootfs {

/// Where the archive's bytes go (e.g. tar2sqfs's stdin). An error stops the stream.
using TarSink = std::function<Result<void>(std::string_view bytes)>;

struct FlattenResult {
  uint64_t data_bytes = 0;       ///< file data written
  uint64_t dropped_xattrs = 0;   ///< xattrs and ACLs squashfs cannot store (outside user., trusted., security.)
};

/// Write `plan`'s tree from `layers` (the ones the plan was made from, same order).
/// A member that no longer matches the plan (kind or size) means the blob changed
/// between the passes: an error. `progress` (may be empty) gets one line per layer.
Result<FlattenResult> write_flat_tar(const std::vector<image::LayerBlob>& layers, const FlatPlan& plan,
                                     const TarSink& sink, const std::function<void(const std::string&)>& progress);

}  // namespace kiln::rootfs
