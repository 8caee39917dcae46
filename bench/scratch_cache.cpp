#include "bench/scratch_cache.h"

#include <cstdio>
#include <cstdlib>

namespace kiln::bench {

Result<ScratchCache> ScratchCache::create() {
  const std::filesystem::path source = fs::cache_root();
  std::error_code ec;
  auto tmp_parent = std::filesystem::temp_directory_path(ec);
  if (ec) tmp_parent = "/tmp";
  KILN_ASSIGN_OR_RETURN(auto dir, fs::TempDir::create(tmp_parent, "kiln-bench-cache-"));
  // Only what is expensive to fetch or build; snapshots are what the bench measures.
  for (const char* sub : {"kernels", "initramfs"}) {
    if (!std::filesystem::is_directory(source / sub, ec)) {
      std::fprintf(stderr, "bench: %s has no %s/: the bench fetches or builds it (network may be needed)\n",
                   source.c_str(), sub);
      continue;
    }
    std::filesystem::copy(source / sub, dir.path() / sub,
                          std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks,
                          ec);
    if (ec)
      return make_error("cannot copy {} into the bench's cache {}: {}", (source / sub).string(), dir.path().string(),
                        ec.message());
  }
  std::optional<std::string> previous;
  if (const char* p = std::getenv("KILN_CACHE_DIR")) previous = p;
  ::setenv("KILN_CACHE_DIR", dir.path().c_str(), 1);
  return ScratchCache(std::move(dir), source, std::move(previous));
}

ScratchCache::~ScratchCache() {
  if (dir_.path().empty()) return;  // moved from
  if (previous_)
    ::setenv("KILN_CACHE_DIR", previous_->c_str(), 1);
  else
    ::unsetenv("KILN_CACHE_DIR");
}

}  // namespace kiln::bench
