// Fuzzes metadata.json parsing: every file in the snapshot store is untrusted.
// Anything that parses must round-trip through to_json unchanged, layer record included,
// and satisfy the invariants lookups rely on (parent and layer set together).
#include "snapshot/metadata.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto meta = kiln::snapshot::parse_metadata(text);
  if (!meta) return 0;
  auto again = kiln::snapshot::parse_metadata(kiln::snapshot::to_json(*meta));
  if (!again || !(*again == *meta)) std::abort();
  if (meta->parent.has_value() != meta->layer.has_value()) std::abort();
  if (meta->layer && (meta->layer->depth == 0 || meta->layer->depth > kiln::snapshot::kMaxLayerDepth)) std::abort();
  return 0;
}
