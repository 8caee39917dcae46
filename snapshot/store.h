// The snapshot store: one directory per snapshot key under a root (by default
// <cache>/snapshots). Bake on first use, exactly once among concurrent kilns, and
// never let anyone see a half-written snapshot.
//
// The runner's protocol for a key K:
//   auto r = store.lookup(K, VerifyLevel::quick);
//   if (!r.found()) {
//     auto lock = store.lock_for_bake(K, on_wait);   // serializes bakers of K
//     r = store.lookup(K, VerifyLevel::quick);        // someone may have baked it meanwhile
//     if (!r.found()) {
//       auto bake = store.begin_bake(K);              // engine writes bake->files()
//       r.snapshot = store.publish(std::move(*bake), K);
//     }
//   }                                                 // lock released here
//   store.mark_used(*r.snapshot);
#pragma once

#include "common/fs.h"
#include "common/result.h"
#include "snapshot/key.h"
#include "snapshot/lock.h"
#include "snapshot/metadata.h"
#include "vmm/engine.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kiln::snapshot {

/// A published, verified snapshot.
struct Snapshot {
  std::filesystem::path dir;
  Metadata meta;
  /// The engine files inside `dir` (what Engine::restore takes).
  vmm::SnapshotFiles files() const;
};

/// How much of a snapshot lookup re-checks. `quick` digests state.bin (~100 KB) and
/// checks sizes; `full` also digests the sparse memory file (cost: its touched pages).
enum class VerifyLevel { quick, full };

enum class LookupStatus {
  found,     ///< present and verified
  missing,   ///< no directory for the key: bake it
  unusable,  ///< present but corrupt, truncated or not for this key: `reason` says why; rebake
};

struct LookupResult {
  LookupStatus status = LookupStatus::missing;
  std::optional<Snapshot> snapshot;  ///< set iff status == found
  std::string reason;                ///< one line, set iff status == unusable
  bool found() const { return status == LookupStatus::found; }
};

/// A bake in progress: a temp directory inside the store (same filesystem, so
/// publishing is a rename). Destroying it unpublished removes it and its files.
class BakeDir {
 public:
  BakeDir(BakeDir&&) noexcept = default;
  BakeDir& operator=(BakeDir&&) = delete;
  BakeDir(const BakeDir&) = delete;
  BakeDir& operator=(const BakeDir&) = delete;
  ~BakeDir() = default;

  const std::filesystem::path& dir() const { return tmp_.path(); }
  /// Where the engine writes the snapshot (Engine::boot then Vm::save_snapshot).
  vmm::SnapshotFiles files() const;
  /// The key id this bake was started for.
  const std::string& id() const { return id_; }

 private:
  friend class Store;
  BakeDir(fs::TempDir tmp, std::string id) : tmp_(std::move(tmp)), id_(std::move(id)) {}
  fs::TempDir tmp_;
  std::string id_;
};

/// One row of `kiln snapshots list`.
struct Entry {
  std::string id;                ///< directory name (the key id for snapshots kiln wrote)
  std::optional<Metadata> meta;  ///< when metadata.json parses
  uint64_t disk_bytes = 0;       ///< allocated on disk (sparse-aware)
  std::chrono::system_clock::time_point last_used;  ///< last restore, else publish time
  LookupStatus status = LookupStatus::unusable;     ///< found (usable) or unusable
  std::string reason;                                ///< why unusable
};

struct GcOptions {
  /// Snapshots baked by any other kiln version are removed (they are never restored).
  std::string current_version = KILN_VERSION;
  /// Snapshots not restored for longer than this are removed.
  std::chrono::seconds max_unused = std::chrono::hours(24 * 30);
  /// Report what would be removed without removing anything.
  bool dry_run = false;
};

struct GcReport {
  struct Item {
    std::string name;    ///< directory name under the root
    std::string why;     ///< one line
    uint64_t bytes = 0;  ///< disk usage freed (or that would be freed)
  };
  std::vector<Item> removed;
  std::vector<Item> kept;  ///< not examined: their bake lock is held (being baked right now)
  uint64_t bytes_freed = 0;
};

class Store {
 public:
  /// `<cache_root()>/snapshots`.
  static std::filesystem::path default_root();

  /// A store rooted at `root`. Nothing is created until something is baked.
  explicit Store(std::filesystem::path root = default_root());

  const std::filesystem::path& root() const { return root_; }

  /// Find and verify the snapshot for `key`. Never fails: problems are `unusable`.
  LookupResult lookup(const SnapshotKey& key, VerifyLevel level = VerifyLevel::quick) const;

  /// Exclusive lock for baking `key`; held until the returned object dies. If another
  /// process holds it, `on_wait` runs once before blocking ("waiting for another kiln
  /// to finish baking"). Error kind `interrupted` if a signal ends the wait.
  Result<BakeLock> lock_for_bake(const SnapshotKey& key, const std::function<void()>& on_wait = {}) const;

  /// A fresh temp directory in the store for the engine to write into.
  Result<BakeDir> begin_bake(const SnapshotKey& key) const;

  /// Digest the baked files, write metadata.json, flush everything, and atomically put
  /// the snapshot in place for `key` (replacing a corrupt one if present). Callers hold
  /// lock_for_bake(key). On error the bake directory is removed.
  Result<Snapshot> publish(BakeDir&& bake, const SnapshotKey& key) const;

  /// Record a restore (touches `last-used`; best effort, never fails a run).
  void mark_used(const Snapshot& snapshot) const;

  /// Every snapshot directory, sorted by id, each verified quickly.
  std::vector<Entry> list() const;

  /// Remove the snapshot whose id is `id_or_prefix` or uniquely starts with it.
  /// Refuses ambiguous prefixes and snapshots being baked. Returns how many were removed.
  Result<int> remove(const std::string& id_or_prefix) const;

  /// Remove leftovers of dead bakes, trash, unusable snapshots, snapshots of other kiln
  /// versions and snapshots unused for longer than `options.max_unused`. Snapshots whose
  /// bake lock is held are kept.
  Result<GcReport> gc(const GcOptions& options = {}) const;

 private:
  std::filesystem::path lock_path(const std::string& id) const;
  std::filesystem::path locks_dir() const;
  /// Take `id`'s lock without waiting and, if free, move the snapshot to trash and delete it.
  /// nullopt when the lock is busy.
  Result<std::optional<uint64_t>> remove_if_unlocked(const std::string& id) const;

  std::filesystem::path root_;
};

}  // namespace kiln::snapshot
