// The KVM engine's state file (state.bin): a versioned, checksummed container of
// named sections — one per vCPU, one for the VM (irqchip, PIT, clock), one per
// device. Byte layout: docs/kvm-state-format.md. The file is untrusted input:
// the reader bounds every length, and a section reader fails sticky (first error
// kept, later reads return zeros) so device code can read field after field and
// check once at the end.
#pragma once

#include "common/result.h"

#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace kiln::vmm::kvm {

/// Bumped on any incompatible change; other versions are rejected (and rebaked).
/// History: docs/kvm-state-format.md, "Version history".
inline constexpr uint32_t kStateFormatVersion = 2;
/// Upper bound for a whole state file and for one section.
inline constexpr uint64_t kMaxStateFileBytes = 64ull << 20;

class StateWriter {
 public:
  /// Sections are named ("vcpu.0", "vm", "dev.serial"); names are unique, <= 64 bytes.
  void begin_section(std::string_view name);
  void end_section();

  void u8(uint8_t v) { raw(&v, 1); }
  void u16(uint16_t v) { raw(&v, 2); }
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  /// Length-prefixed bytes (u32 length).
  void bytes(std::span<const uint8_t> b);
  void string(std::string_view s) { bytes({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }
  /// A trivially copyable struct (KVM ABI structs), as a length-prefixed blob.
  template <class T>
  void pod(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    bytes({reinterpret_cast<const uint8_t*>(&v), sizeof(T)});
  }

  /// The complete file: header (magic, version, section table), sections, checksum.
  std::string finish() const;

 private:
  void raw(const void* p, size_t n);
  std::vector<std::pair<std::string, std::string>> sections_;
  bool open_ = false;
};

/// Reads one section. Sticky failure: after the first error every read returns 0 /
/// empty and `error()` names what went wrong.
class SectionReader {
 public:
  SectionReader(std::string name, std::string_view data) : name_(std::move(name)), data_(data) {}

  uint8_t u8();
  uint16_t u16();
  uint32_t u32();
  uint64_t u64();
  /// Length-prefixed bytes; fails if the length exceeds `max` or the section.
  std::string bytes(size_t max);
  std::string string(size_t max) { return bytes(max); }
  /// A blob written by StateWriter::pod; fails unless its length is exactly sizeof(T).
  template <class T>
  bool pod(T& out) {
    static_assert(std::is_trivially_copyable_v<T>);
    std::string b = bytes(sizeof(T));
    if (!ok()) return false;
    if (b.size() != sizeof(T)) {
      fail("blob of " + std::to_string(b.size()) + " bytes where " + std::to_string(sizeof(T)) + " were expected");
      return false;
    }
    std::memcpy(&out, b.data(), sizeof(T));
    return true;
  }
  /// Record a semantic error (a value out of range): sticky like a short read.
  void fail(const std::string& why);
  bool ok() const { return error_.empty(); }
  /// Ok if every byte was consumed and nothing failed; else an error naming the section.
  Result<void> finish() const;
  const std::string& name() const { return name_; }

 private:
  bool take(void* dst, size_t n);
  std::string name_;
  std::string_view data_;
  size_t pos_ = 0;
  std::string error_;
};

class StateReader {
 public:
  /// Validate magic, version, checksum and section table. `file` must outlive the reader.
  static Result<StateReader> parse(std::string_view file);
  /// The reader points into `file`: parsing a temporary would leave it dangling.
  static Result<StateReader> parse(std::string&& file) = delete;
  bool has(std::string_view name) const;
  /// A reader over section `name`; error if the file has no such section.
  Result<SectionReader> section(std::string_view name) const;
  std::vector<std::string> section_names() const;

 private:
  std::map<std::string, std::string_view, std::less<>> sections_;
};

}  // namespace kiln::vmm::kvm
