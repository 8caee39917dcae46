#include "vmm/per_boot_cache.h"

#include "common/fs.h"

#include <system_error>

namespace kiln::vmm {

std::string host_boot_id() {
  auto id = fs::read_file("/proc/sys/kernel/random/boot_id", 256);
  std::string clean;
  if (id)
    for (char c : *id)
      if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-') clean += c;
  // Without /proc there is no boot id; "unknown" still lets facts be remembered.
  return clean.empty() ? "unknown" : clean;
}

std::filesystem::path per_boot_file(const std::string& prefix) {
  return fs::cache_root() / "host" / (prefix + host_boot_id());
}

std::optional<std::string> read_per_boot(const std::string& prefix, size_t max_bytes) {
  auto text = fs::read_file(per_boot_file(prefix), max_bytes);
  if (!text) return std::nullopt;
  return std::move(*text);
}

Result<void> write_per_boot(const std::string& prefix, const std::string& content) {
  const auto path = per_boot_file(prefix);
  KILN_TRY(fs::make_dirs(path.parent_path()));
  KILN_TRY(fs::write_file_atomic(path, content));
  // Other boots' files are stale: drop them so the directory does not grow with every reboot.
  std::error_code ec;
  const std::string keep = path.filename().string();
  for (const auto& entry : std::filesystem::directory_iterator(path.parent_path(), ec)) {
    std::string name = entry.path().filename().string();
    if (name.starts_with(prefix) && name != keep) std::filesystem::remove(entry.path(), ec);
  }
  return {};
}

}  // namespace kiln::vmm
