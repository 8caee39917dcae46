// Store: layers — lookup, lock, bake -> diff -> publish, and the files an engine
// restores from (overlays or a flat file). Format: docs/snapshot-format.md.
#include "common/digest.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/temp_file.h"
#include "snapshot/digest_stamp.h"
#include "snapshot/fsops.h"
#include "snapshot/layer_chain.h"
#include "snapshot/layout.h"
#include "snapshot/memory_diff.h"
#include "snapshot/publish_steps.h"
#include "snapshot/store.h"
#include "snapshot/verify.h"

#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <thread>

namespace kiln::snapshot {
namespace {

// Is the layer's flat file present, built from exactly this chain, and intact?
bool flat_is_usable(const Snapshot& layer, const std::string& source) {
  auto stamp_path = layer.dir / layout::kFlatStampFile;
  DigestStamp stamp = read_digest_stamp(stamp_path);
  if (stamp.digest.empty() || stamp.source != source) return false;
  auto problem = check_digest_once(layer.dir / layout::kFlatFile, stamp.digest, stamp_path, source);
  if (problem) log::verbose("layer {}: flat file not usable ({}); rebuilding it", layer.id(), *problem);
  return !problem;
}

// Build the flat file in a temp file beside it, then rename: readers see no file or a
// complete one. The stamp comes last, so a crash in between only costs a rebuild.
Result<void> build_flat(const std::filesystem::path& store_root, const Snapshot& layer, const std::string& source) {
  log::ScopedTimer timer("layer flat file");
  auto built = [&]() -> Result<void> {
    // <prefix><id>-<pid>-<random> like bake directories, so gc can tell an abandoned one.
    KILN_ASSIGN_OR_RETURN(auto tmp, fs::TempFile::create(layer.dir, fmt::format("{}{}-{}-", layout::kFlatTmpPrefix,
                                                                                 layer.id(), ::getpid())));
    KILN_ASSIGN_OR_RETURN(auto chain, load_chain(store_root, layer));
    KILN_TRY(write_flat_image(chain, tmp.fd(), tmp.path()));
    KILN_ASSIGN_OR_RETURN(auto digest, digest_sparse_file(tmp.path()));
    auto flat = layer.dir / layout::kFlatFile;
    // Unflushed: a flat file is derived data whose digest is re-checked after every host
    // boot (digest_stamp.h), so one torn by a crash is rebuilt, never restored.
    KILN_TRY(tmp.commit(flat, fs::Durability::unflushed));
    return write_digest_stamp(flat, digest, layer.dir / layout::kFlatStampFile, source);
  }();
  if (!built) return with_context("building the flat memory file of layer " + layer.id(), built.error());
  return {};
}

// The flat file of a layer being published in `tmp`, from the engine's complete `image`.
// Where the filesystem has reflinks, it is rebuilt from the golden (cloned) and the
// chain's pages, so on disk it owns only those pages, and it must equal the image; the
// image is then left for the caller to discard (true). Elsewhere the image itself
// becomes the flat file (false).
Result<bool> keep_flat_file(LayerChain chain, ChainLayer layer, const std::filesystem::path& image,
                            const std::filesystem::path& tmp, const std::string& source) {
  const auto flat = tmp / layout::kFlatFile;
  KILN_ASSIGN_OR_RETURN(auto digest, digest_sparse_file(image));
  chain.layers.push_back(std::move(layer));
  bool shared = false;
  {
    KILN_ASSIGN_OR_RETURN(UniqueFd out, fs::create_new_file(flat, 0644));
    KILN_ASSIGN_OR_RETURN(shared, write_shared_flat_image(chain, out.get(), flat));
  }
  if (shared) {
    KILN_ASSIGN_OR_RETURN(auto rebuilt, digest_sparse_file(flat));
    if (rebuilt != digest)
      return make_error("internal error: the flat file rebuilt from the golden and the layer's pages differs from "
                        "the engine's image (digest {} against {})",
                        rebuilt, digest);
  } else if (::rename(image.c_str(), flat.c_str()) != 0) {
    return make_error("cannot keep {} as {}: {}", image.string(), flat.string(), std::strerror(errno));
  }
  KILN_TRY(write_digest_stamp(flat, digest, tmp / layout::kFlatStampFile, source));
  return shared;
}

// Deleting a 256 MiB file can take a second (synchronous discard on some mounts), so the
// engine's full image is moved to a trash directory and deleted once the layer is
// visible, off the caller's path. If kiln exits first, gc removes the trash (its pid is gone).
Result<std::filesystem::path> move_aside(const std::filesystem::path& root, const std::filesystem::path& file,
                                         const std::string& id) {
  KILN_ASSIGN_OR_RETURN(auto trash, fsops::make_trash_dir(root, id));
  if (::rename(file.c_str(), (trash / file.filename()).c_str()) != 0) {
    int e = errno;
    fsops::remove_tree(trash);
    return make_error("cannot move {} aside: {}", file.string(), std::strerror(e));
  }
  return trash;
}

struct DeleteLater {
  std::optional<std::filesystem::path> path;
  bool in_background = false;  ///< set once published; on failure it is deleted right away
  DeleteLater() = default;
  DeleteLater(const DeleteLater&) = delete;
  DeleteLater& operator=(const DeleteLater&) = delete;
  ~DeleteLater() {
    if (!path) return;
    if (in_background)
      std::thread([p = *path] { fsops::remove_tree(p); }).detach();
    else
      fsops::remove_tree(*path);
  }
};

}  // namespace

LookupResult Store::lookup_layer(const LayerKey& key, VerifyLevel level) const {
  log::ScopedTimer timer("layer lookup");
  return verify_layer(root_, key.id(), &key, level);
}

Result<BakeLock> Store::lock_for_layer(const LayerKey& key, const std::function<void()>& on_wait) const {
  if (key.parent_id.empty() || key.parent_id[0] == '.' || key.parent_id.find('/') != std::string::npos)
    return make_error("internal error: '{}' is not a snapshot id", key.parent_id);
  KILN_TRY(fs::make_dirs(locks_dir()));
  KILN_ASSIGN_OR_RETURN(auto lock, BakeLock::acquire(lock_path(key.id()), on_wait));
  // Keep the parent while the layer is built on it: gc and rm skip what they cannot lock.
  KILN_TRY(lock.pin_shared(lock_path(key.parent_id)));
  return lock;
}

Result<BakeDir> Store::begin_layer(const LayerKey& key) const {
  std::string id = key.id();
  std::string prefix = std::string(layout::kTmpPrefix) + id + "-" + std::to_string(::getpid()) + "-";
  auto tmp = fs::TempDir::create(root_, prefix);
  if (!tmp) return with_context("cannot start building layer " + id, tmp.error());
  return BakeDir(std::move(tmp).value(), std::move(id));
}

Result<Snapshot> Store::publish_layer(BakeDir&& bake_ref, const LayerKey& key, const Snapshot& parent,
                                      bool keep_flat) const {
  log::ScopedTimer timer("layer publish");
  BakeDir bake(std::move(bake_ref));  // any early return deletes the bake directory
  const std::string id = key.id();
  if (bake.id() != id)
    return make_error("internal error: publishing a bake started for {} as layer {}", bake.id(), id);
  if (parent.id() != key.parent_id)
    return make_error("internal error: layer {} is keyed over {} but diffed against {}", id, key.parent_id,
                      parent.id());
  if (key.kind != kLayerKindPayload && key.kind != kLayerKindFixture)
    return make_error("internal error: layer kind '{}' is neither payload nor fixture", key.kind);
  const uint32_t depth = parent.depth() + 1;
  if (depth > kMaxLayerDepth)
    return make_error("cannot make a layer over {}: it is already at depth {}, and kiln allows at most {} layers "
                      "over a golden",
                      parent.id(), parent.depth(), kMaxLayerDepth);
  const std::filesystem::path tmp = bake.dir();
  const auto files = bake.files();

  KILN_ASSIGN_OR_RETURN(auto chain, load_chain(root_, parent));
  KILN_ASSIGN_OR_RETURN(auto base, MemoryView::open(chain));
  DiffStats stats;
  const auto pages = tmp / layout::kDiffFile;
  auto index = [&] {
    log::ScopedTimer t("layer diff");
    return write_memory_diff(files.memory, base, pages, &stats);
  }();
  if (!index) return with_context("layer " + id, index.error());
  log::verbose("layer {}: {} MiB compared, {} pages stored, {} zeroed, {} extents", id, stats.scanned_bytes >> 20,
               stats.stored_pages, stats.zeroed_pages, index->extents.size());
  KILN_TRY(fs::write_file_atomic(tmp / layout::kIndexFile, encode_diff_index(*index)));

  Metadata meta;
  meta.key = chain.root.meta.key;  // a layer restores into the same guest as its golden
  meta.created_ns = now_unix_ns();
  meta.created = rfc3339_utc(meta.created_ns);
  KILN_ASSIGN_OR_RETURN(meta.state, describe(files.state, /*sparse=*/false));
  KILN_ASSIGN_OR_RETURN(meta.memory, describe(pages, /*sparse=*/false));
  meta.parent = key.parent_id;
  LayerInfo layer;
  layer.kind = key.kind;
  layer.content_digest = key.content_digest;
  layer.label = key.label;
  layer.depth = depth;
  layer.parent_digest = parent.content_digest();
  KILN_ASSIGN_OR_RETURN(layer.index, describe(tmp / layout::kIndexFile, /*sparse=*/false));
  layer.memory_size = index->memory_size;
  meta.layer = std::move(layer);

  std::string json = to_json(meta);
  auto reparsed = parse_metadata(json);
  if (!reparsed || !(*reparsed == meta))
    return make_error("cannot record layer {}: its label or digest is not valid UTF-8 text (label '{}')", id, key.label);

  // An engine without overlays restores from a flat file (derived data, so not fsynced:
  // its stamp is re-checked after a reboot): the engine's complete image, or one sharing
  // the golden's extents where the filesystem can (keep_flat_file).
  const auto image = files.memory;
  DeleteLater discarded;
  bool image_used = false;
  if (keep_flat) {
    Snapshot future{root_ / id, meta};
    KILN_ASSIGN_OR_RETURN(bool shared, keep_flat_file(std::move(chain), ChainLayer{Snapshot{tmp, meta}, *index}, image,
                                                      tmp, future.content_digest()));
    image_used = !shared;
  }
  if (!image_used) {
    KILN_ASSIGN_OR_RETURN(auto trash, move_aside(root_, image, id));
    discarded.path = std::move(trash);
  }
  KILN_TRY(fs::write_file_atomic(tmp / layout::kMetadataFile, json));
  for (const auto& f : {files.state, pages, tmp / layout::kIndexFile, tmp}) KILN_TRY(fsops::fsync_path(f));

  const auto target = root_ / id;
  KILN_TRY(put_in_place(root_, tmp, target, id));
  bake.tmp_.release();
  if (auto synced = fsops::fsync_path(root_); !synced) log::verbose("layer {}: {}", id, synced.error().message);
  discarded.in_background = true;
  log::verbose("layer {} ({} over {}) published in {}", id, key.kind, key.parent_id, target.string());
  return Snapshot{target, std::move(meta)};
}

namespace {

// A layer's files as an engine that maps overlays restores them.
Result<vmm::SnapshotFiles> chain_files(const std::filesystem::path& root, const Snapshot& snapshot) {
  vmm::SnapshotFiles files{snapshot.dir / layout::kStateFile, {}, {}};
  KILN_ASSIGN_OR_RETURN(auto chain, load_chain(root, snapshot));
  files.memory = chain.root_memory();
  for (auto& l : chain.layers) files.overlays.push_back(vmm::MemoryOverlay{l.pages(), std::move(l.index.extents)});
  return files;
}

}  // namespace

Result<vmm::SnapshotFiles> overlay_restore_files(const std::filesystem::path& dir) {
  KILN_ASSIGN_OR_RETURN(auto meta, read_metadata(dir));
  Snapshot snapshot{dir, std::move(meta)};
  if (!snapshot.is_layer()) return snapshot.files();
  return chain_files(dir.parent_path(), snapshot);
}

Result<vmm::SnapshotFiles> Store::restore_files(const Snapshot& snapshot, bool maps_overlays) const {
  if (!snapshot.is_layer()) return snapshot.files();
  if (maps_overlays) return chain_files(root_, snapshot);
  vmm::SnapshotFiles files{snapshot.dir / layout::kStateFile, {}, {}};
  files.memory = snapshot.dir / layout::kFlatFile;
  const std::string source = snapshot.content_digest();
  if (flat_is_usable(snapshot, source)) return files;
  // One builder per layer; the others wait and reuse its file. Not the layer's bake lock:
  // a runner holding that (to build a child layer) may need this flat file.
  KILN_TRY(fs::make_dirs(locks_dir()));
  KILN_ASSIGN_OR_RETURN(auto lock, BakeLock::acquire(locks_dir() / (snapshot.id() + std::string(layout::kFlatLockSuffix)),
                                                     {}));
  if (flat_is_usable(snapshot, source)) return files;
  KILN_TRY(build_flat(root_, snapshot, source));
  return files;
}

}  // namespace kiln::snapshot
