// Fuzzes memory.index parsing: a layer's index decides which file bytes land where in
// guest RAM, so every accepted index must satisfy the invariants the engines rely on,
// and re-encode to the same bytes. Each input is parsed as is and again with its
// trailing checksum recomputed, so mutations reach the checks behind the checksum.
#include "snapshot/diff_index.h"

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

void check(std::string_view bytes) {
  auto index = kiln::snapshot::parse_diff_index(bytes);
  if (!index) return;
  uint64_t file_end = 0, guest_end = 0;
  for (size_t i = 0; i < index->extents.size(); ++i) {
    const auto& e = index->extents[i];
    bool ok = e.length > 0 && e.guest_offset % kiln::snapshot::kPageSize == 0 &&
              e.length % kiln::snapshot::kPageSize == 0 && e.guest_offset < index->memory_size &&
              e.length <= index->memory_size - e.guest_offset && (i == 0 || e.guest_offset > guest_end) &&
              e.file_offset == file_end;
    if (!ok) std::abort();
    file_end += e.length;
    guest_end = e.guest_offset + e.length;
  }
  if (file_end != index->pages_bytes) std::abort();
  if (kiln::snapshot::encode_diff_index(*index) != bytes) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  check(bytes);
  if (bytes.size() >= 16) {
    size_t body = bytes.size() - 16;
    XXH128_hash_t h = XXH3_128bits(bytes.data(), body);
    for (int i = 0; i < 8; ++i) {
      bytes[body + static_cast<size_t>(i)] = static_cast<char>((h.low64 >> (8 * i)) & 0xff);
      bytes[body + 8 + static_cast<size_t>(i)] = static_cast<char>((h.high64 >> (8 * i)) & 0xff);
    }
    check(bytes);
  }
  return 0;
}
