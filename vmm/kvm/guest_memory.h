// Guest RAM as the VMM sees it: one contiguous region at guest-physical 0,
// mapped from a file (MAP_SHARED for a cold boot, so the file is the snapshot's
// memory; MAP_PRIVATE for a restore, so the file is never modified). Every
// guest-supplied address goes through a bounds-checked accessor: the guest is hostile.
#pragma once

#include "common/result.h"
#include "vmm/engine.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace kiln::vmm::kvm {

inline constexpr uint64_t kPageSize = 4096;

class GuestMemory {
 public:
  /// Cold boot: create (truncate) `file` to `size` bytes and map it shared.
  static Result<GuestMemory> create_shared(const std::filesystem::path& file, uint64_t size);
  /// Restore: map `base` private (copy-on-write), then each overlay's extents over it,
  /// also private, with MAP_FIXED: no page is copied until the guest writes it.
  static Result<GuestMemory> map_private(const std::filesystem::path& base, uint64_t size,
                                         std::span<const MemoryOverlay> overlays = {});
  /// Anonymous memory (tests, fuzzing).
  static Result<GuestMemory> anonymous(uint64_t size);

  GuestMemory(GuestMemory&& other) noexcept;
  GuestMemory& operator=(GuestMemory&& other) noexcept;
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;
  ~GuestMemory();

  uint64_t size() const { return size_; }
  /// Host address of guest-physical 0 (for KVM_SET_USER_MEMORY_REGION).
  uint8_t* host_base() const { return base_; }
  bool is_shared_file() const { return shared_; }

  /// [gpa, gpa+len) as host memory, or nullopt if any byte of it is outside RAM.
  std::optional<std::span<uint8_t>> slice(uint64_t gpa, uint64_t len) const;
  /// Copy in/out; false (nothing copied) if out of range.
  bool read(uint64_t gpa, void* dst, size_t len) const;
  bool write(uint64_t gpa, const void* src, size_t len) const;

  /// Write all of guest RAM to `file` (created/truncated; all-zero pages left as holes).
  /// Refuses a file this memory is mapped from (truncating it would fault the guest).
  Result<void> save_to(const std::filesystem::path& file) const;

 private:
  /// (st_dev, st_ino) of a file backing part of the mapping.
  using FileId = std::pair<uint64_t, uint64_t>;
  GuestMemory(uint8_t* base, uint64_t size, bool shared) : base_(base), size_(size), shared_(shared) {}
  uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  bool shared_ = false;
  std::vector<FileId> backing_files_;
};

}  // namespace kiln::vmm::kvm
