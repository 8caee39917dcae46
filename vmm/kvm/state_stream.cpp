// Byte layout (docs/kvm-state-format.md), all integers little-endian:
//   header   magic[8] "KILNKVM\0" | u32 version | u32 section_count | u64 file_length
//   table    section_count x { name[64] NUL-padded | u64 offset | u64 length }
//   data     the sections, in table order, back to back
//   trailer  u64 XXH3-64 of every byte before it
#include "vmm/kvm/state_stream.h"

#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace kiln::vmm::kvm {

// Integers are stored by memcpy of their host representation; KVM state is x86-only
// and x86 is little-endian, which is what the format specifies.
static_assert(std::endian::native == std::endian::little, "the KVM state format is little-endian");

namespace {

constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'K', 'V', 'M', '\0'};
constexpr size_t kHeaderBytes = 24;
constexpr size_t kNameBytes = 64;
constexpr size_t kEntryBytes = kNameBytes + 16;
constexpr size_t kChecksumBytes = 8;

// A writer misuse is a bug in kiln, never bad input: stop loudly rather than write a
// file the reader would reject on every restore.
[[noreturn]] void misuse(const std::string& what) {
  std::fprintf(stderr, "kiln: StateWriter misuse: %s\n", what.c_str());
  std::abort();
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > kNameBytes) return false;
  // Printable ASCII without space: names end up in error messages and logs.
  return std::all_of(name.begin(), name.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

template <class T>
T get(std::string_view file, size_t at) {  // caller checked at + sizeof(T) <= size
  T v;
  std::memcpy(&v, file.data() + at, sizeof v);
  return v;
}

uint64_t checksum(std::string_view bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

Error corrupt(std::string_view why) {
  return make_error("KVM state file is corrupt ({}): rebake the snapshot", why);
}

}  // namespace

void StateWriter::begin_section(std::string_view name) {
  if (open_) misuse(fmt::format("begin_section(\"{}\") inside section \"{}\"", name, sections_.back().first));
  if (!valid_name(name)) misuse(fmt::format("section name \"{}\" is empty, longer than 64 bytes or not printable", name));
  for (const auto& s : sections_)
    if (s.first == name) misuse(fmt::format("section \"{}\" written twice", name));
  sections_.emplace_back(std::string(name), std::string());
  open_ = true;
}

void StateWriter::end_section() {
  if (!open_) misuse("end_section() without begin_section()");
  open_ = false;
}

void StateWriter::raw(const void* p, size_t n) {
  if (!open_) misuse("write outside a section");
  sections_.back().second.append(static_cast<const char*>(p), n);
}

void StateWriter::bytes(std::span<const uint8_t> b) {
  if (b.size() > std::numeric_limits<uint32_t>::max()) misuse("blob longer than 4 GiB");
  u32(static_cast<uint32_t>(b.size()));
  raw(b.data(), b.size());
}

std::string StateWriter::finish() const {
  if (open_) misuse(fmt::format("finish() inside section \"{}\"", sections_.back().first));
  uint64_t total = kHeaderBytes + sections_.size() * kEntryBytes + kChecksumBytes;
  for (const auto& s : sections_) total += s.second.size();
  if (total > kMaxStateFileBytes) misuse(fmt::format("state file of {} bytes exceeds the {} byte limit", total, kMaxStateFileBytes));

  std::string out;
  out.reserve(total);
  out.append(kMagic, sizeof kMagic);
  put<uint32_t>(out, kStateFormatVersion);
  put<uint32_t>(out, static_cast<uint32_t>(sections_.size()));
  put<uint64_t>(out, total);
  uint64_t offset = kHeaderBytes + sections_.size() * kEntryBytes;
  for (const auto& [name, data] : sections_) {
    out.append(name);
    out.append(kNameBytes - name.size(), '\0');
    put<uint64_t>(out, offset);
    put<uint64_t>(out, data.size());
    offset += data.size();
  }
  for (const auto& s : sections_) out.append(s.second);
  put<uint64_t>(out, checksum(out));
  return out;
}

uint8_t SectionReader::u8() { uint8_t v = 0; take(&v, 1); return v; }
uint16_t SectionReader::u16() { uint16_t v = 0; take(&v, 2); return v; }
uint32_t SectionReader::u32() { uint32_t v = 0; take(&v, 4); return v; }
uint64_t SectionReader::u64() { uint64_t v = 0; take(&v, 8); return v; }

bool SectionReader::take(void* dst, size_t n) {
  if (ok() && n > data_.size() - pos_)
    fail(fmt::format("needs {} bytes at offset {} of a {} byte section", n, pos_, data_.size()));
  if (!ok()) {
    std::memset(dst, 0, n);
    return false;
  }
  std::memcpy(dst, data_.data() + pos_, n);
  pos_ += n;
  return true;
}

std::string SectionReader::bytes(size_t max) {
  uint32_t len = u32();
  if (!ok()) return {};
  if (len > max) {
    fail(fmt::format("blob of {} bytes at offset {} where at most {} are allowed", len, pos_ - 4, max));
    return {};
  }
  if (len > data_.size() - pos_) {
    fail(fmt::format("blob of {} bytes at offset {} runs past the end of the {} byte section", len, pos_ - 4,
                     data_.size()));
    return {};
  }
  std::string out(data_.substr(pos_, len));
  pos_ += len;
  return out;
}

void SectionReader::fail(const std::string& why) {
  if (error_.empty()) error_ = why.empty() ? "failed" : why;  // the first error is the cause
}

Result<void> SectionReader::finish() const {
  if (!ok()) return make_error("KVM state section '{}': {}; rebake the snapshot", name_, error_);
  if (pos_ != data_.size())
    return make_error("KVM state section '{}': {} of its {} bytes left unread (a different layout?); "
                      "rebake the snapshot",
                      name_, data_.size() - pos_, data_.size());
  return {};
}

Result<StateReader> StateReader::parse(std::string_view file) {
  const size_t size = file.size();
  if (size == 0) return make_error("KVM state file is empty: rebake the snapshot");
  if (size < sizeof kMagic || std::memcmp(file.data(), kMagic, sizeof kMagic) != 0) {
    if (size < sizeof kMagic && std::memcmp(file.data(), kMagic, size) == 0)
      return make_error("KVM state file is truncated ({} bytes): rebake the snapshot", size);
    return make_error("not a kiln KVM state file (bad magic): rebake the snapshot");
  }
  // Magic and version are the only bytes every format version keeps in place.
  if (size < sizeof kMagic + 4) return make_error("KVM state file is truncated ({} bytes): rebake the snapshot", size);
  if (uint32_t version = get<uint32_t>(file, 8); version != kStateFormatVersion)
    return make_error("KVM state file written by state format {}, this kiln reads {}: rebake the snapshot",
                      version, kStateFormatVersion);
  if (size > kMaxStateFileBytes)
    return make_error("KVM state file is {} bytes, more than the {} a state file may have: rebake the snapshot",
                      size, kMaxStateFileBytes);
  if (size < kHeaderBytes + kChecksumBytes)
    return make_error("KVM state file is truncated ({} bytes): rebake the snapshot", size);
  if (uint64_t declared = get<uint64_t>(file, 16); declared != size) {
    if (declared > size)
      return make_error("KVM state file is truncated: {} of its {} bytes present; rebake the snapshot", size,
                        declared);
    return corrupt(fmt::format("{} bytes where the header says {}", size, declared));
  }
  const size_t body = size - kChecksumBytes;
  if (get<uint64_t>(file, body) != checksum(file.substr(0, body))) return corrupt("checksum mismatch");

  // The checksum matched, but a matching checksum is no proof of a well-formed file.
  const uint32_t count = get<uint32_t>(file, 12);
  if (count > (body - kHeaderBytes) / kEntryBytes)
    return corrupt(fmt::format("{} sections do not fit in {} bytes", count, size));
  const size_t table_end = kHeaderBytes + size_t{count} * kEntryBytes;

  struct Entry {
    std::string name;
    uint64_t offset, length;
  };
  std::vector<Entry> entries;
  entries.reserve(count);
  StateReader reader;
  for (uint32_t i = 0; i < count; ++i) {
    const size_t at = kHeaderBytes + size_t{i} * kEntryBytes;
    std::string_view raw = file.substr(at, kNameBytes);
    std::string_view name = raw.substr(0, std::min(raw.find('\0'), kNameBytes));
    if (!valid_name(name) || raw.find_first_not_of('\0', name.size()) != std::string_view::npos)
      return corrupt(fmt::format("section {} has an invalid name", i));
    const uint64_t offset = get<uint64_t>(file, at + kNameBytes);
    const uint64_t length = get<uint64_t>(file, at + kNameBytes + 8);
    // offset+length cannot wrap: both are checked against body first.
    if (offset < table_end || offset > body || length > body - offset)
      return corrupt(fmt::format("section '{}' (offset {}, length {}) lies outside the data area", name, offset,
                                 length));
    if (reader.sections_.count(name) != 0) return corrupt(fmt::format("section '{}' appears twice", name));
    reader.sections_.emplace(std::string(name), file.substr(offset, length));
    entries.push_back({std::string(name), offset, length});
  }
  // Sections must tile the data area exactly: no overlap (one byte read as two things)
  // and no gap (bytes that no reader checks).
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.length < b.length;
  });
  uint64_t expected = table_end;
  for (const Entry& e : entries) {
    if (e.offset < expected) return corrupt(fmt::format("section '{}' overlaps the one before it", e.name));
    if (e.offset > expected) return corrupt(fmt::format("{} unaccounted bytes before section '{}'", e.offset - expected, e.name));
    expected = e.offset + e.length;
  }
  if (expected != body) return corrupt(fmt::format("{} unaccounted bytes after the last section", body - expected));
  return reader;
}

bool StateReader::has(std::string_view name) const { return sections_.find(name) != sections_.end(); }

Result<SectionReader> StateReader::section(std::string_view name) const {
  auto it = sections_.find(name);
  if (it == sections_.end())
    return make_error("KVM state file has no section '{}' (written by a different VM configuration?): "
                      "rebake the snapshot",
                      name);
  return SectionReader(it->first, it->second);
}

std::vector<std::string> StateReader::section_names() const {
  std::vector<std::string> names;
  names.reserve(sections_.size());
  for (const auto& s : sections_) names.push_back(s.first);
  return names;
}

}  // namespace kiln::vmm::kvm
