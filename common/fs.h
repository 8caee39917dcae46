// Small filesystem helpers that return Result instead of throwing.
#pragma once

#include "common/result.h"

#include <cstdint>
#include <filesystem>
#include <string>

namespace kiln::fs {

namespace stdfs = std::filesystem;

/// Read a whole file, refusing files larger than `max_bytes` (files on disk are untrusted).
Result<std::string> read_file(const stdfs::path& path, uint64_t max_bytes);

/// Read at most the first `max_bytes` of a file (e.g. to sniff its type).
Result<std::string> read_file_prefix(const stdfs::path& path, size_t max_bytes);

/// Write `data` to a temp file beside `path` (TempFile::beside: exclusive, unpredictable
/// name), fsync it, and rename it into place. On error nothing is left behind.
Result<void> write_file_atomic(const stdfs::path& path, const std::string& data);

/// mkdir -p with a readable error.
Result<void> make_dirs(const stdfs::path& dir);

/// A fresh directory `<parent>/<prefix><random>` (make_temp_dir: 0700, exclusive),
/// removed (recursively) when this object dies.
class TempDir {
 public:
  static Result<TempDir> create(const stdfs::path& parent, const std::string& prefix);
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&&) = delete;
  TempDir(const TempDir&) = delete;
  ~TempDir();
  const stdfs::path& path() const { return path_; }
  /// Keep the directory (e.g. after renaming it into place).
  void release() { path_.clear(); }

 private:
  explicit TempDir(stdfs::path p) : path_(std::move(p)) {}
  stdfs::path path_;
};

/// kiln's cache root: $KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln,
/// else (none of them set) the fallback <temp dir>/kiln-cache-<uid>, in a directory every
/// user can write to: prepare_cache_root() is what makes that one safe to use.
stdfs::path cache_root();

/// cache_root(), checked before kiln puts anything in it. The fallback under the shared
/// temp directory is created 0700; one that already exists is refused (with what to do)
/// if it is a symlink, not a directory, owned by another user, or writable by group or
/// others, and made 0700 if it is only readable by them. A root the user chose
/// (KILN_CACHE_DIR, XDG_CACHE_HOME, HOME) is returned as it is.
Result<stdfs::path> prepare_cache_root();

/// Directory holding the running kiln executable (for finding kiln-agent).
stdfs::path self_dir();

/// Is `path` a regular file the current user may execute?
bool is_executable_file(const stdfs::path& path);

/// Is `path` `dir` or below it? Lexical (both normalised, no symlink resolved).
bool is_within(const stdfs::path& path, const stdfs::path& dir);

}  // namespace kiln::fs
