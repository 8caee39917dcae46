// Store: imports — a snapshot or layer made on another machine (a remote cache) enters the
// store only after the checks a local bake gets, in full, and by the same atomic rename.
#include "common/digest.h"
#include "common/log.h"
#include "snapshot/fsops.h"
#include "snapshot/layout.h"
#include "snapshot/publish_steps.h"
#include "snapshot/store.h"
#include "snapshot/verify.h"

#include <unistd.h>

namespace kiln::snapshot {
namespace {

bool is_store_id(const std::string& id) { return is_lower_hex(id, 64); }

}  // namespace

LookupResult Store::lookup_id(const std::string& id, VerifyLevel level) const {
  if (!is_store_id(id)) return LookupResult{};
  return verify_any(root_, id, level);
}

Result<BakeLock> Store::lock_for_id(const std::string& id, const std::function<void()>& on_wait) const {
  if (!is_store_id(id))
    return make_error("'{}' is not a snapshot id", id.substr(0, 100));
  KILN_TRY(fs::make_dirs(locks_dir()));
  return BakeLock::acquire(lock_path(id), on_wait);
}

Result<BakeDir> Store::begin_import(const std::string& id) const {
  if (!is_store_id(id))
    return make_error("'{}' is not a snapshot id", id.substr(0, 100));
  // Named like a bake: gc tells an abandoned import by its pid.
  std::string prefix = std::string(layout::kTmpPrefix) + id + "-" + std::to_string(::getpid()) + "-";
  auto tmp = fs::TempDir::create(root_, prefix);
  if (!tmp) return with_context("cannot start importing snapshot " + id, tmp.error());
  return BakeDir(std::move(tmp).value(), id);
}

Result<Snapshot> Store::publish_import(BakeDir&& bake_ref) const {
  log::ScopedTimer timer("snapshot import");
  BakeDir bake(std::move(bake_ref));
  const std::string id = bake.id();
  const std::filesystem::path tmp = bake.dir();
  KILN_ASSIGN_OR_RETURN(Metadata meta, read_metadata(tmp));
  LookupResult checked;
  if (meta.layer) {
    checked = verify_layer_at(tmp, root_, id, VerifyLevel::full);
  } else {
    if (meta.key.id() != id)
      return make_error("the imported snapshot describes snapshot {}, not {}", meta.key.id(), id);
    checked = verify_snapshot(tmp, id, &meta.key, VerifyLevel::full);
  }
  if (!checked.found())
    return make_error("the imported snapshot {} is not intact: {}", id,
                      checked.reason.empty() ? std::string("files are missing") : checked.reason);
  for (const FileInfo* f : {&meta.state, &meta.memory}) KILN_TRY(fsops::fsync_path(tmp / f->name));
  if (meta.layer) KILN_TRY(fsops::fsync_path(tmp / meta.layer->index.name));
  KILN_TRY(fsops::fsync_path(tmp / layout::kMetadataFile));
  KILN_TRY(fsops::fsync_path(tmp));
  const std::filesystem::path target = root_ / id;
  KILN_TRY(put_in_place(root_, tmp, target, id));
  bake.tmp_.release();
  if (auto synced = fsops::fsync_path(root_); !synced) log::verbose("snapshot {}: {}", id, synced.error().message);
  log::verbose("snapshot {} imported into {}", id, target.string());
  return Snapshot{target, std::move(meta)};
}

}  // namespace kiln::snapshot
