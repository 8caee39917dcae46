// A deterministic newc cpio writer (the format the Linux kernel unpacks as initramfs).
#pragma once

#include "common/result.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace kiln::image {

/// One archive member. Owner is always root and mtime 0, so equal inputs give equal bytes.
struct CpioEntry {
  enum class Kind { directory, file, symlink, char_device };
  std::string path;  ///< relative, no leading '/', no "." or ".." components
  Kind kind = Kind::file;
  uint32_t mode = 0644;                ///< permission bits (07777)
  std::filesystem::path source;        ///< file: copied from here, or, if empty...
  std::string data;                    ///< ...these bytes
  std::string link_target;             ///< symlink only
  uint32_t dev_major = 0, dev_minor = 0;  ///< char_device only
};

/// Canonical order: sorted by path (so every directory precedes its contents),
/// with missing parent directories added (mode 0755). A duplicate path or an
/// invalid one is an error.
Result<std::vector<CpioEntry>> canonical_tree(std::vector<CpioEntry> entries);

/// Write `entries` (already canonical) as an uncompressed newc cpio to `fd`,
/// which stays open. `what` names the output in errors. Files larger than 1 GiB
/// are refused (nothing kiln puts in an initramfs comes close).
Result<void> write_cpio_newc(int fd, const std::vector<CpioEntry>& entries, const std::string& what);

}  // namespace kiln::image
