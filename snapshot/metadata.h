// metadata.json: what a snapshot directory holds and what it was baked from.
// Format: snapshot/FORMAT.md. Every byte of it is untrusted input.
#pragma once

#include "common/result.h"
#include "snapshot/key.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::snapshot {

/// The metadata format this kiln writes and the newest it reads. Bump on any
/// incompatible change; older or newer snapshots are then reported and rebaked.
inline constexpr int kFormatVersion = 1;

/// metadata.json is a few hundred bytes; anything bigger than this is not ours.
inline constexpr uint64_t kMaxMetadataBytes = 64 * 1024;

/// One engine file of a snapshot, as recorded at publish time.
struct FileInfo {
  std::string name;    ///< plain file name inside the snapshot directory
  uint64_t size = 0;   ///< apparent size in bytes (st_size)
  std::string digest;  ///< hex XXH3-128 (memory: digest_sparse_file, state: digest_file)
  bool operator==(const FileInfo&) const = default;
};

/// The parsed contents of a snapshot's metadata.json.
struct Metadata {
  int format_version = kFormatVersion;
  SnapshotKey key;
  int64_t created_ns = 0;  ///< Unix time of publish, nanoseconds
  std::string created;     ///< the same instant, RFC 3339 UTC, for humans
  FileInfo state;
  FileInfo memory;
  std::optional<std::string> parent;  ///< id of the base snapshot when this is a diff layer
  bool operator==(const Metadata&) const = default;
};

/// Serialize to pretty-printed JSON. Key fields are top-level keys (the golden-base
/// rule and older tools read `image`, `memory_mib`, `baked_by_version` there).
/// Never throws: bytes that are not valid UTF-8 are replaced, which a caller that must
/// store the key faithfully detects by parsing the result back (Store::publish does).
std::string to_json(const Metadata& meta);

/// Parse and validate metadata.json: size cap, JSON syntax, format version, every
/// field's presence, type and range, and file names that stay inside the directory.
/// Never throws; the error says which field is wrong.
Result<Metadata> parse_metadata(std::string_view text);

/// Format a Unix time in nanoseconds as RFC 3339 UTC with second precision
/// ("2024-05-01T12:34:56Z").
std::string rfc3339_utc(int64_t unix_ns);

}  // namespace kiln::snapshot
