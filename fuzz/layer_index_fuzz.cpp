// Fuzzes pass 1 of flattening an image (image/rootfs/layer_index): arbitrary bytes as a
// layer tarball (plain, gzip or zstd), indexed twice as two layers so whiteouts, opaque
// directories and hard links also act across layers, then planned. Never crashes;
// a refusal is an error value.
#include "image/rootfs/layer_index.h"
#include "image/rootfs/layer_reader.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  kiln::rootfs::LayerIndex index;
  for (int layer = 0; layer < 2; ++layer) {
    auto reader = kiln::rootfs::LayerReader::open_memory(bytes, "fuzz");
    if (!reader) return 0;
    if (!index.add_layer(*reader)) return 0;
  }
  kiln::rootfs::FlatPlan plan = index.plan();
  (void)plan;
  return 0;
}
