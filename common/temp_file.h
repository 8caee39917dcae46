// Temp files and directories made next to where their content ends up (same directory,
// so publishing is one rename). Every one is created exclusively under an unpredictable
// name: whoever can write to that directory cannot plant a symlink that redirects the
// write, nor make two writers share (truncate, rename away) one temp file. Every
// place kiln makes a temp file or directory goes through here.
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace kiln::fs {

/// `prefix` followed by 16 random hex digits (64 bits from getrandom): nobody can guess
/// the name in advance. The suffix has no '-', so `<prefix>-<pid>-` stays parseable.
Result<std::string> unique_name(std::string_view prefix);

/// Create `path` as a new, empty regular file: O_CREAT|O_EXCL|O_NOFOLLOW, so anything
/// already there (a symlink included, dangling or not) is an error (EEXIST) and is
/// neither followed nor touched.
Result<UniqueFd> create_new_file(const std::filesystem::path& path, mode_t mode);

/// Create a new directory `<parent>/<prefix><random>` (mode 0700), retrying on a name
/// that is taken. mkdir(2) never follows a symlink. Returns its path.
Result<std::filesystem::path> make_temp_dir(const std::filesystem::path& parent, std::string_view prefix);

/// Whether commit() fsyncs the file before the rename.
enum class Durability { flushed, unflushed };

/// A new file `<dir>/<prefix><random>`, created by create_new_file(). Unlinked when
/// this object dies unless commit() renamed it into place.
class TempFile {
 public:
  static Result<TempFile> create(const std::filesystem::path& dir, std::string_view prefix, mode_t mode = 0644);
  /// A temp file in `dest`'s directory, named `.<dest name>.tmp-<random>`: hidden, and
  /// never matching a prefix of `dest`'s own name (per_boot_cache.cpp prunes by prefix).
  static Result<TempFile> beside(const std::filesystem::path& dest, mode_t mode = 0644);

  TempFile(TempFile&& other) noexcept;
  TempFile& operator=(TempFile&&) = delete;
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile();

  int fd() const { return fd_.get(); }
  const std::filesystem::path& path() const { return path_; }

  /// Write all of `data` at the current offset.
  Result<void> write(std::string_view data);
  /// fsync (Durability::flushed), close, and rename onto `dest` (replacing a file or a
  /// symlink there, never following it). On error the temp file is removed.
  Result<void> commit(const std::filesystem::path& dest, Durability durability);

 private:
  TempFile(UniqueFd fd, std::filesystem::path path) : fd_(std::move(fd)), path_(std::move(path)) {}
  UniqueFd fd_;
  std::filesystem::path path_;  ///< empty once committed (nothing left to remove)
};

}  // namespace kiln::fs
