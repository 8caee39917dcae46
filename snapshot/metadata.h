// metadata.json: what a snapshot directory holds and what it was baked from.
// Format: snapshot/FORMAT.md. Every byte of it is untrusted input.
#pragma once

#include "common/result.h"
#include "snapshot/key.h"
#include "snapshot/layer_key.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::snapshot {

/// The metadata format this kiln writes and the newest it reads. Bump on any
/// incompatible change; older or newer snapshots are then reported and rebaked.
/// 2: layers (the `layer` object, memory.diff + memory.index); version-1 snapshots are rebaked.
inline constexpr int kFormatVersion = 2;

/// metadata.json is a few hundred bytes; anything bigger than this is not ours.
inline constexpr uint64_t kMaxMetadataBytes = 64 * 1024;

/// One engine file of a snapshot, as recorded at publish time.
struct FileInfo {
  std::string name;    ///< plain file name inside the snapshot directory
  uint64_t size = 0;   ///< apparent size in bytes (st_size)
  std::string digest;  ///< hex XXH3-128 (memory: digest_sparse_file, state: digest_file)
  bool operator==(const FileInfo&) const = default;
};

/// What a layer records about itself and the parent it is a diff against.
struct LayerInfo {
  std::string kind;            ///< LayerKey::kind
  std::string content_digest;  ///< LayerKey::content_digest
  std::string label;           ///< LayerKey::label
  uint32_t depth = 1;          ///< 1 over a golden, parent's depth + 1 over a layer; <= kMaxLayerDepth
  /// The parent's content digest when this layer was diffed against it (Snapshot::content_digest):
  /// a parent rebaked or changed since then no longer matches, and the layer is rebuilt.
  std::string parent_digest;
  FileInfo index;              ///< memory.index (binary extent index, docs/snapshot-format.md)
  uint64_t memory_size = 0;    ///< guest RAM bytes the diff applies to (the root's memory.ram size)
  bool operator==(const LayerInfo&) const = default;
};

/// The parsed contents of a snapshot's metadata.json.
struct Metadata {
  int format_version = kFormatVersion;
  SnapshotKey key;
  int64_t created_ns = 0;  ///< Unix time of publish, nanoseconds
  std::string created;     ///< the same instant, RFC 3339 UTC, for humans
  FileInfo state;
  FileInfo memory;                    ///< golden: memory.ram (full, sparse); layer: memory.diff (its pages)
  std::optional<std::string> parent;  ///< id of the base snapshot when this is a diff layer
  std::optional<LayerInfo> layer;     ///< set iff `parent` is: this snapshot is a layer
  /// The LayerKey a layer was published for (parent, kind, digest, label); nullopt for a golden.
  std::optional<LayerKey> layer_key() const;
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
