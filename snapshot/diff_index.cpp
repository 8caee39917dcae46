#include "snapshot/diff_index.h"

#include <xxhash.h>

#include <cstring>

namespace kiln::snapshot {
namespace {

constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'D', 'I', 'F', 'F'};
// magic, version u32, page size u32, memory_size, pages_bytes, extent count (u64 each).
constexpr size_t kHeaderBytes = 8 + 4 + 4 + 8 + 8 + 8;
constexpr size_t kExtentBytes = 3 * 8;
constexpr size_t kChecksumBytes = 16;

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
// Callers check `at + 4` / `at + 8` <= size before reading.
uint32_t get_u32(std::string_view b, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[at + static_cast<size_t>(i)]);
  return v;
}
uint64_t get_u64(std::string_view b, size_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[at + static_cast<size_t>(i)]);
  return v;
}

void put_checksum(std::string& out) {
  XXH128_hash_t h = XXH3_128bits(out.data(), out.size());
  put_u64(out, h.low64);
  put_u64(out, h.high64);
}

bool aligned(uint64_t v) { return v % kPageSize == 0; }

}  // namespace

std::string encode_diff_index(const DiffIndex& index) {
  std::string out;
  out.reserve(kHeaderBytes + index.extents.size() * kExtentBytes + kChecksumBytes);
  out.append(kMagic, sizeof kMagic);
  put_u32(out, kDiffIndexVersion);
  put_u32(out, static_cast<uint32_t>(kPageSize));
  put_u64(out, index.memory_size);
  put_u64(out, index.pages_bytes);
  put_u64(out, index.extents.size());
  for (const auto& e : index.extents) {
    put_u64(out, e.guest_offset);
    put_u64(out, e.file_offset);
    put_u64(out, e.length);
  }
  put_checksum(out);
  return out;
}

Result<DiffIndex> parse_diff_index(std::string_view b) {
  if (b.size() > kMaxDiffIndexBytes)
    return make_error("memory.index is {} bytes, more than the {} kiln accepts", b.size(), kMaxDiffIndexBytes);
  if (b.size() < kHeaderBytes + kChecksumBytes)
    return make_error("memory.index is {} bytes, too short for its header (truncated)", b.size());
  if (std::memcmp(b.data(), kMagic, sizeof kMagic) != 0)
    return make_error("memory.index does not start with the KILNDIFF magic (not a kiln diff index)");
  uint32_t version = get_u32(b, 8);
  if (version != kDiffIndexVersion)
    return make_error("memory.index has format {}, this kiln reads format {}; the layer has to be rebuilt", version,
                      kDiffIndexVersion);
  // The checksum covers everything before it; check it before trusting any count.
  size_t body = b.size() - kChecksumBytes;
  XXH128_hash_t h = XXH3_128bits(b.data(), body);
  if (get_u64(b, body) != h.low64 || get_u64(b, body + 8) != h.high64)
    return make_error("memory.index does not match its checksum (corrupted or truncated)");

  uint32_t page = get_u32(b, 12);
  if (page != kPageSize) return make_error("memory.index uses {}-byte pages, kiln uses {}", page, kPageSize);
  DiffIndex index;
  index.memory_size = get_u64(b, 16);
  index.pages_bytes = get_u64(b, 24);
  uint64_t count = get_u64(b, 32);
  if (index.memory_size == 0 || !aligned(index.memory_size))
    return make_error("memory.index: memory size {} is not a positive multiple of {}", index.memory_size, kPageSize);
  if (!aligned(index.pages_bytes))
    return make_error("memory.index: pages size {} is not a multiple of {}", index.pages_bytes, kPageSize);
  // Division, not multiplication: a hostile count must not overflow into a small size.
  if ((body - kHeaderBytes) % kExtentBytes != 0 || count != (body - kHeaderBytes) / kExtentBytes)
    return make_error("memory.index says {} extents but holds {} bytes of extents", count, body - kHeaderBytes);

  index.extents.reserve(count);
  uint64_t file_end = 0;   // dense: the next extent starts here in memory.diff
  uint64_t guest_end = 0;  // end of the previous extent in guest memory
  for (uint64_t i = 0; i < count; ++i) {
    size_t at = kHeaderBytes + i * kExtentBytes;
    vmm::MemoryExtent e{get_u64(b, at), get_u64(b, at + 8), get_u64(b, at + 16)};
    if (e.length == 0 || !aligned(e.guest_offset) || !aligned(e.length))
      return make_error("memory.index: extent {} ({:#x}+{:#x}) is empty or not page-aligned", i, e.guest_offset,
                        e.length);
    if (e.guest_offset >= index.memory_size || e.length > index.memory_size - e.guest_offset)
      return make_error("memory.index: extent {} ({:#x}+{:#x}) ends past guest memory ({:#x} bytes)", i,
                        e.guest_offset, e.length, index.memory_size);
    if (i > 0 && e.guest_offset < guest_end)
      return make_error("memory.index: extent {} at {:#x} overlaps or precedes extent {}", i, e.guest_offset, i - 1);
    if (i > 0 && e.guest_offset == guest_end)
      return make_error("memory.index: extent {} at {:#x} touches extent {} (not coalesced)", i, e.guest_offset,
                        i - 1);
    if (e.file_offset != file_end)
      return make_error("memory.index: extent {} is at {:#x} in memory.diff, expected {:#x} (not dense)", i,
                        e.file_offset, file_end);
    file_end += e.length;  // <= memory_size: extents are disjoint inside guest memory
    guest_end = e.guest_offset + e.length;
    index.extents.push_back(e);
  }
  if (file_end != index.pages_bytes)
    return make_error("memory.index: extents hold {} bytes but the pages size is {}", file_end, index.pages_bytes);
  return index;
}

void append_extent(DiffIndex& index, uint64_t guest_offset, uint64_t length) {
  if (!index.extents.empty()) {
    auto& last = index.extents.back();
    if (last.guest_offset + last.length == guest_offset) {
      last.length += length;
      index.pages_bytes += length;
      return;
    }
  }
  index.extents.push_back(vmm::MemoryExtent{guest_offset, index.pages_bytes, length});
  index.pages_bytes += length;
}

}  // namespace kiln::snapshot
