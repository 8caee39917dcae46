// Fuzzes metadata.json parsing: every file in the snapshot store is untrusted.
// Anything that parses must round-trip through to_json unchanged.
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
  if (!again || again->key != meta->key || again->state.digest != meta->state.digest ||
      again->memory.size != meta->memory.size)
    std::abort();
  return 0;
}
