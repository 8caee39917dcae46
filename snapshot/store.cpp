// Store: lookup, the bake lock, and bake -> publish. Listing and cleanup are in
// store_maintenance.cpp.
#include "snapshot/store.h"

#include "common/digest.h"
#include "common/log.h"
#include "snapshot/digest_stamp.h"
#include "snapshot/fsops.h"
#include "snapshot/layout.h"
#include "snapshot/publish_steps.h"
#include "snapshot/verify.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kiln::snapshot {

int64_t now_unix_ns() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

namespace {

vmm::SnapshotFiles files_in(const std::filesystem::path& dir) {
  return vmm::SnapshotFiles{dir / layout::kStateFile, dir / layout::kMemoryFile, {}};
}

}  // namespace

Result<FileInfo> describe(const std::filesystem::path& path, bool sparse) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0)
    return make_error("the engine did not write {}: {}", path.string(), std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return make_error("{} is not a regular file", path.string());
  FileInfo info;
  info.name = path.filename().string();
  info.size = static_cast<uint64_t>(st.st_size);
  KILN_ASSIGN_OR_RETURN(info.digest, sparse ? digest_sparse_file(path) : digest_file(path));
  // A file that changed while we digested it would be recorded with a wrong digest and
  // rejected at every lookup; catch that here, where the message can say why.
  struct stat after {};
  if (::lstat(path.c_str(), &after) != 0 || after.st_size != st.st_size)
    return make_error("{} changed while it was being digested; is the VM still running?", path.string());
  return info;
}

// Move the finished bake directory to `target`, atomically for every reader: they see
// the old directory or the new one, never a mix and never a half-written one.
Result<void> put_in_place(const std::filesystem::path& root, const std::filesystem::path& tmp,
                          const std::filesystem::path& target, const std::string& id) {
  if (::rename(tmp.c_str(), target.c_str()) == 0) return {};  // nothing there (or an empty dir)
  int e = errno;
  if (e != EEXIST && e != ENOTEMPTY && e != ENOTDIR && e != EISDIR)
    return make_error("cannot move the new snapshot into {}: {}", target.string(), std::strerror(e));

  // A (corrupt) snapshot is in the way. Swap the two in one step; the old one ends up
  // at `tmp`, which the caller deletes.
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) {
    fsops::remove_tree(tmp);
    return {};
  }
  e = errno;
  if (e != EINVAL && e != ENOSYS)
    return make_error("cannot replace {} with the new snapshot: {}", target.string(), std::strerror(e));

  // No RENAME_EXCHANGE on this filesystem: move the old one aside first. A concurrent
  // lookup may see `missing` for a moment; it then waits on the bake lock we hold and
  // finds the new snapshot, so nobody ever restores a half-written one.
  KILN_ASSIGN_OR_RETURN(auto trash, fsops::move_to_trash(root, target, id));
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    e = errno;
    return make_error("cannot move the new snapshot into {}: {}", target.string(), std::strerror(e));
  }
  fsops::remove_tree(trash);
  return {};
}

vmm::SnapshotFiles Snapshot::files() const { return files_in(dir); }

std::string Snapshot::content_digest() const {
  // A layer's includes its parent's digest, so a leaf's digest covers its whole chain.
  std::string s = "kiln-snapshot-content/1\n" + meta.state.digest + "\n" + meta.memory.digest + "\n";
  if (meta.layer) s += meta.layer->index.digest + "\n" + meta.layer->parent_digest + "\n";
  return digest_bytes(s);
}

vmm::SnapshotFiles BakeDir::files() const { return files_in(dir()); }

std::filesystem::path Store::default_root() { return fs::cache_root() / "snapshots"; }

Store::Store(std::filesystem::path root) : root_(std::move(root)) {}

std::filesystem::path Store::locks_dir() const { return root_ / layout::kLocksDir; }

std::filesystem::path Store::lock_path(const std::string& id) const {
  return locks_dir() / (id + std::string(layout::kLockSuffix));
}

LookupResult Store::lookup(const SnapshotKey& key, VerifyLevel level) const {
  log::ScopedTimer timer("snapshot lookup");
  std::string id = key.id();
  return verify_snapshot(root_ / id, id, &key, level);
}

Result<BakeLock> Store::lock_for_bake(const SnapshotKey& key, const std::function<void()>& on_wait) const {
  KILN_TRY(fs::make_dirs(locks_dir()));
  return BakeLock::acquire(lock_path(key.id()), on_wait);
}

Result<BakeDir> Store::begin_bake(const SnapshotKey& key) const {
  std::string id = key.id();
  // The pid in the name lets gc tell an abandoned bake from a running one.
  std::string prefix = std::string(layout::kTmpPrefix) + id + "-" + std::to_string(::getpid()) + "-";
  auto tmp = fs::TempDir::create(root_, prefix);
  if (!tmp) return with_context("cannot start baking snapshot " + id, tmp.error());
  return BakeDir(std::move(tmp).value(), std::move(id));
}

Result<Snapshot> Store::publish(BakeDir&& bake_ref, const SnapshotKey& key) const {
  log::ScopedTimer timer("snapshot publish");
  // Own the bake from here on: any early return deletes its directory.
  BakeDir bake(std::move(bake_ref));
  std::string id = key.id();
  if (bake.id() != id)
    return make_error("internal error: publishing a bake started for snapshot {} as snapshot {}", bake.id(), id);
  const std::filesystem::path tmp = bake.dir();
  auto files = bake.files();

  Metadata meta;
  meta.key = key;
  meta.created_ns = now_unix_ns();
  meta.created = rfc3339_utc(meta.created_ns);
  KILN_ASSIGN_OR_RETURN(meta.state, describe(files.state, /*sparse=*/false));
  struct stat memory_before {};
  const bool have_before = ::stat(files.memory.c_str(), &memory_before) == 0;
  KILN_ASSIGN_OR_RETURN(meta.memory, describe(files.memory, /*sparse=*/true));
  // kiln has just read the whole memory file: the first layer built or restored on it
  // this boot need not read it again (digest_stamp.h). Only if nothing touched the file
  // while it was digested; best effort, as without the stamp that restore digests it.
  struct stat memory_after {};
  if (have_before && ::stat(files.memory.c_str(), &memory_after) == 0 &&
      memory_after.st_ino == memory_before.st_ino && memory_after.st_size == memory_before.st_size &&
      memory_after.st_ctim.tv_sec == memory_before.st_ctim.tv_sec &&
      memory_after.st_ctim.tv_nsec == memory_before.st_ctim.tv_nsec)
    if (auto stamped = write_digest_stamp(files.memory, meta.memory.digest, tmp / layout::kMemoryStampFile, "");
        !stamped)
      log::verbose("snapshot {}: no digest stamp for its memory file: {}", id, stamped.error().message);

  // The key must survive the trip through JSON exactly, or every later lookup would
  // reject this snapshot and rebake forever.
  std::string json = to_json(meta);
  auto reparsed = parse_metadata(json);
  if (!reparsed || !(*reparsed == meta))
    return make_error("cannot record snapshot {}: a key field is not valid UTF-8 text (image '{}', cmdline '{}')", id,
                      key.image, key.cmdline);
  KILN_TRY(fs::write_file_atomic(tmp / layout::kMetadataFile, json));

  // Data before the rename: after a crash the directory must not exist under its final
  // name with files that never reached the disk.
  KILN_TRY(fsops::fsync_path(files.state));
  KILN_TRY(fsops::fsync_path(files.memory));
  KILN_TRY(fsops::fsync_path(tmp));

  const std::filesystem::path target = root_ / id;
  KILN_TRY(put_in_place(root_, tmp, target, id));
  bake.tmp_.release();
  // The rename itself must be durable before anyone relies on it.
  if (auto synced = fsops::fsync_path(root_); !synced)
    log::verbose("snapshot {}: {}", id, synced.error().message);
  log::verbose("snapshot {} published in {}", id, target.string());
  return Snapshot{target, std::move(meta)};
}

void Store::mark_used(const Snapshot& snapshot) const {
  auto stamp = snapshot.dir / layout::kLastUsedFile;
  // Only the mtime matters; touching is one syscall on the hot path of every run.
  if (::utimensat(AT_FDCWD, stamp.c_str(), nullptr, AT_SYMLINK_NOFOLLOW) == 0) return;
  if (errno != ENOENT) return;
  int fd = ::open(stamp.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd >= 0) ::close(fd);
}

}  // namespace kiln::snapshot
