// The payload of a run: the host files that must appear in the guest at the
// same absolute paths — the executable, its shared-library closure as the
// host's dynamic loader resolves it, declared data files — plus every symlink
// on the way (/lib -> usr/lib, libfoo.so.1 -> libfoo.so.1.2.3).
#pragma once

#include "common/result.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace kiln::runner {

struct PayloadEntry {
  enum class Kind { file, symlink, directory };
  Kind kind = Kind::file;
  std::string path;               ///< absolute path, identical on host and guest
  std::string symlink_target;     ///< for symlinks: the link text, unchanged
  uint32_t mode = 0644;           ///< permission bits for files and directories
  uint64_t size = 0;              ///< for files
  /// Part of an executable's closure (it, its loader and libraries, the links to them):
  /// what an OCI image guest places apart under the payload's prefix. Data (--file)
  /// keeps its host path everywhere.
  bool closure = false;
};

class Payload {
 public:
  /// Add a host path (file, directory tree, or symlink chain) to the payload.
  Result<void> add_path(const std::filesystem::path& host_path);
  /// Add an executable and every shared library its ELF interpreter loads; for a
  /// #! script, its interpreter's closure too.
  Result<void> add_executable_with_closure(const std::filesystem::path& exe, int depth = 0);

  const std::vector<PayloadEntry>& entries() const { return entries_; }
  /// The directories the host's loader found the closures' libraries in, in the order
  /// first seen (host paths): an image guest starts the executable with exactly these.
  const std::vector<std::string>& library_dirs() const { return library_dirs_; }
  /// What add_executable_with_closure() found `exe` (the path it was given) to be: its
  /// ELF interpreter, "" for a static ELF executable, nullopt for a #! script or a path
  /// not added as an executable.
  std::optional<std::string> elf_interpreter_of(const std::string& exe) const;
  /// Place the executables' closures under `prefix` in the guest instead of at their
  /// host paths (an OCI image guest keeps the host's programs and libraries apart from
  /// the image's: docs/images.md); their absolute symlink targets move with them. Data
  /// entries stay at their host paths. "" (the default): everything at the host paths.
  void place_under(std::string prefix) { guest_prefix_ = std::move(prefix); }
  const std::string& guest_prefix() const { return guest_prefix_; }
  /// Where entry `e` lands in the guest, and what a symlink there points to.
  std::string guest_path(const PayloadEntry& e) const { return (e.closure ? guest_prefix_ : "") + e.path; }
  std::string guest_symlink_target(const PayloadEntry& e) const;
  bool empty() const { return entries_.empty(); }
  uint64_t total_bytes() const;

  /// Digest of everything the payload puts in the guest: every entry's path, kind, mode,
  /// symlink target and file contents (XXH3 of each file, read now). Two payloads with
  /// equal digests leave the guest in the same state, so a payload layer is keyed by it.
  /// Each file's digest is remembered: queue_payload checks the bytes it sends against it.
  Result<std::string> content_digest() const;

  /// The digest of entry `index`'s content as the last content_digest() read it, or ""
  /// (not a file, or not digested: then nothing keyed a layer by it).
  const std::string& keyed_file_digest(size_t index) const;

 private:
  Result<void> add_closure(const std::filesystem::path& exe, int depth);
  Result<void> add_resolved(const std::string& path, int depth);
  Result<void> add_tree(const std::string& dir, int depth);
  bool seen(const std::string& path);
  std::vector<PayloadEntry> entries_;
  std::unordered_set<std::string> seen_;
  std::string guest_prefix_;
  std::vector<std::string> library_dirs_;
  std::unordered_map<std::string, std::string> elf_interpreters_;  ///< ELF executable -> interpreter ("" static)
  /// Parallel to entries_, set by content_digest(): a record of what keyed the layer,
  /// not part of the payload's value (hence mutable in a const digest).
  mutable std::vector<std::string> keyed_file_digests_;
};

/// Parse the output of `ld.so --list EXE` into absolute library paths.
/// A library the loader cannot find is an error naming it.
Result<std::vector<std::string>> parse_loader_list(const std::string& output, const std::string& exe);

}  // namespace kiln::runner
