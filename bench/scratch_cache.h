// A throwaway kiln cache for one benchmark run: KILN_CACHE_DIR points at a temp
// directory, so a bench never touches the user's snapshots and always starts from an
// empty store. The guest kernel and initramfs are copied in from the real cache (so no
// network is needed when they are there); the directory goes when the object dies.
#pragma once

#include "common/fs.h"
#include "common/result.h"

#include <filesystem>
#include <optional>
#include <string>

namespace kiln::bench {

class ScratchCache {
 public:
  /// Copy kernels/ and initramfs/ from the current cache root, then point
  /// KILN_CACHE_DIR at the new directory (restored when this object dies).
  static Result<ScratchCache> create();
  ScratchCache(ScratchCache&&) noexcept = default;
  ScratchCache& operator=(ScratchCache&&) = delete;
  ~ScratchCache();

  const std::filesystem::path& root() const { return dir_.path(); }
  /// Where the kernel and initramfs were copied from.
  const std::filesystem::path& copied_from() const { return source_; }

 private:
  ScratchCache(fs::TempDir dir, std::filesystem::path source, std::optional<std::string> previous)
      : dir_(std::move(dir)), source_(std::move(source)), previous_(std::move(previous)) {}
  fs::TempDir dir_;
  std::filesystem::path source_;
  std::optional<std::string> previous_;  ///< KILN_CACHE_DIR before, if it was set
};

}  // namespace kiln::bench
