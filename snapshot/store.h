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
//
// Layers (payload / fixture snapshots over a parent P, golden or layer) follow the
// same protocol with lookup_layer / lock_for_layer / begin_layer / publish_layer:
//   engine.restore_for_layer(spec, store.restore_files(P, engine.maps_overlays()), bake->files())
//   ... place the payload / run the setup, vm->save_snapshot(bake->files()) ...
//   store.publish_layer(std::move(*bake), K, P, /*keep_flat=*/!engine.maps_overlays());
// and every restore, golden or layer, goes through restore_files().
#pragma once

#include "common/fs.h"
#include "common/result.h"
#include "snapshot/key.h"
#include "snapshot/layer_key.h"
#include "snapshot/lock.h"
#include "snapshot/metadata.h"
#include "vmm/engine.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kiln::snapshot {

/// A snapshot id as messages and listings show it: its first 12 characters.
inline std::string short_id(const std::string& id) { return id.substr(0, 12); }

/// A published, verified snapshot.
struct Snapshot {
  std::filesystem::path dir;
  Metadata meta;
  /// The engine files inside `dir` of a golden. For a layer use Store::restore_files().
  vmm::SnapshotFiles files() const;
  /// Its store id (the directory name).
  std::string id() const { return dir.filename().string(); }
  bool is_layer() const { return meta.layer.has_value(); }
  /// 0 for a golden, 1.. for a layer.
  uint32_t depth() const { return meta.layer ? meta.layer->depth : 0; }
  /// Digest of what this snapshot restores to (its files' digests and its own parent
  /// digest): a layer records its parent's, so a changed or rebaked parent is detected.
  std::string content_digest() const;
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
  uint64_t disk_bytes = 0;       ///< allocated on disk (sparse-aware), flat cache included
  uint64_t flat_bytes = 0;       ///< of which the layer's flat cache (derived, evicted first by gc)
  /// Layer: bytes of the root golden's memory this layer restores unchanged (served by
  /// the parent chain, shared in the page cache with every VM of that golden). 0 for a golden.
  uint64_t shared_bytes = 0;
  std::chrono::system_clock::time_point last_used;  ///< last restore, else publish time
  LookupStatus status = LookupStatus::unusable;     ///< found (usable) or unusable
  std::string reason;                                ///< why unusable
};

struct GcOptions {
  /// Snapshots baked by any other kiln version are removed (they are never restored).
  std::string current_version = KILN_VERSION;
  /// Snapshots not restored for longer than this are removed.
  std::chrono::seconds max_unused = std::chrono::hours(24 * 30);
  /// Size cap for the whole store: after the rules above, evict flat caches (derived,
  /// least recently used first), then least recently used snapshots and layers that no
  /// kept layer is built on (leaves first), until the store is at most this size.
  std::optional<uint64_t> max_size;
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

/// A second place a store's snapshots come from and go to: another machine's bakes,
/// through a remote cache (remote/store_remote.h). The runner asks it after a local miss,
/// holding the snapshot's lock, and offers it what it bakes.
class StoreRemote {
 public:
  virtual ~StoreRemote() = default;
  /// Bring snapshot or layer `id` into the store if the remote has it; the caller holds
  /// `id`'s lock. nullopt when it has not, or cannot be reached or sends something that
  /// fails verification (a warning says so): the caller then bakes it itself.
  virtual std::optional<Snapshot> pull(const std::string& id) = 0;
  /// `snapshot` was just made here: share it. Never fails the caller.
  virtual void offer(const Snapshot& snapshot) = 0;
};

class Store {
 public:
  /// `<cache_root()>/snapshots`.
  static std::filesystem::path default_root();

  /// A store rooted at `root`. Nothing is created until something is baked.
  explicit Store(std::filesystem::path root = default_root());

  const std::filesystem::path& root() const { return root_; }

  /// The remote cache consulted on a miss and offered new snapshots (none by default).
  void set_remote(std::shared_ptr<StoreRemote> remote) { remote_ = std::move(remote); }
  StoreRemote* remote() const { return remote_.get(); }

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

  // ---- Layers (snapshot/store_layers.cpp) ----

  /// Find and verify the layer for `key`: its metadata is for that key, its state, index
  /// and diff pages match their digests, its parent chain is present and unchanged
  /// (recorded parent digests match, same root key, so not rebaked by another kiln),
  /// chain depth <= kMaxLayerDepth, and the root golden's memory.ram matches its digest
  /// (read in full once per host boot and file identity, then remembered). Never fails:
  /// a layer with a vanished, changed or corrupt base is `unusable` with the reason
  /// ("its base 1a2b... changed since the layer was made"); the runner then rebuilds it.
  LookupResult lookup_layer(const LayerKey& key, VerifyLevel level = VerifyLevel::quick) const;

  /// Exclusive lock for building the layer `key` (same lock family as lock_for_bake; gc
  /// takes it too, so a layer being built is never removed).
  Result<BakeLock> lock_for_layer(const LayerKey& key, const std::function<void()>& on_wait = {}) const;

  /// A fresh temp directory for the layer. The engine writes the COMPLETE guest RAM into
  /// files().memory (Vm::save_snapshot after Engine::restore_for_layer) and its state.
  Result<BakeDir> begin_layer(const LayerKey& key) const;

  /// Turn the bake into a layer over `parent` (a verified golden or layer, whose id is
  /// key.parent_id): diff the complete RAM image against the parent's content (its whole
  /// chain applied), write memory.diff (changed pages) + memory.index, record parent id,
  /// parent digest and depth in metadata.json, and rename it into place atomically (a
  /// crash at any point leaves no half layer visible). With `keep_flat` the complete
  /// image is kept as the layer's flat cache (memory.flat, for engines without overlays);
  /// else it is deleted. Callers hold lock_for_layer(key). Fails if the chain would be
  /// deeper than kMaxLayerDepth or the image does not match the parent's memory size.
  Result<Snapshot> publish_layer(BakeDir&& bake, const LayerKey& key, const Snapshot& parent, bool keep_flat) const;

  /// What to hand Engine::restore / restore_for_layer for `snapshot` (golden or layer).
  /// Golden: its files. Layer with `maps_overlays`: memory = the root golden's
  /// memory.ram, overlays = the chain's diffs root -> leaf (index re-read and checked).
  /// Layer without: memory = the layer's flat file (complete image), built on first use
  /// (sparse copy of the root + diff pages, temp file + rename) and reused afterwards.
  Result<vmm::SnapshotFiles> restore_files(const Snapshot& snapshot, bool maps_overlays) const;

  // ---- Imports (snapshot/store_import.cpp): snapshots made elsewhere (a remote cache) ----

  /// Find and verify the snapshot or layer whose store id is `id` (either kind).
  LookupResult lookup_id(const std::string& id, VerifyLevel level = VerifyLevel::quick) const;

  /// The same lock lock_for_bake / lock_for_layer take, by store id.
  Result<BakeLock> lock_for_id(const std::string& id, const std::function<void()>& on_wait = {}) const;

  /// A fresh temp directory for the snapshot or layer `id` arriving from elsewhere; the
  /// caller writes its metadata.json and files into dir().
  Result<BakeDir> begin_import(const std::string& id) const;

  /// Check the imported directory in full, as `kiln snapshots verify` does (every file
  /// against its digest in metadata.json; a layer's whole chain, which must be in this
  /// store already) and that it is snapshot `bake.id()`, then flush it and put it in
  /// place atomically. Callers hold the id's lock (lock_for_bake / lock_for_layer). On
  /// error the directory is removed and the error says what did not match.
  Result<Snapshot> publish_import(BakeDir&& bake) const;

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
  friend class GcRun;  // store_gc.cpp: one gc pass, phase by phase
  std::filesystem::path lock_path(const std::string& id) const;
  std::filesystem::path locks_dir() const;
  /// Take `id`'s lock without waiting and, if free, move the snapshot to trash and delete it.
  /// nullopt when the lock is busy.
  Result<std::optional<uint64_t>> remove_if_unlocked(const std::string& id) const;

  std::filesystem::path root_;
  std::shared_ptr<StoreRemote> remote_;
};

/// The files an engine that maps overlays restores the snapshot in `dir` (a directory
/// of a store) from, read again from its metadata and layer chain: what
/// Store::restore_files(snapshot, true) gives. For a process that has only the paths (the
/// pool's kvm worker, runner/pool_kvm_worker.h).
Result<vmm::SnapshotFiles> overlay_restore_files(const std::filesystem::path& dir);

}  // namespace kiln::snapshot
