// Store: list, remove and gc (`kiln snapshots list|rm|gc`).
#include "common/log.h"
#include "snapshot/fsops.h"
#include "snapshot/layout.h"
#include "snapshot/store.h"
#include "snapshot/verify.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <system_error>

namespace kiln::snapshot {
namespace {

bool starts_with(const std::string& s, std::string_view prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

bool is_real_dir(const std::filesystem::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Names under `dir`, read in full before anything is renamed: renaming entries while
// readdir() walks the same directory may skip or repeat some.
std::vector<std::string> entry_names(const std::filesystem::path& dir, std::error_code& ec) {
  std::vector<std::string> names;
  std::filesystem::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) names.push_back(it->path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Snapshot directories: every directory whose name does not start with '.'.
std::vector<std::string> snapshot_names(const std::filesystem::path& root) {
  std::error_code ec;
  std::vector<std::string> out;
  for (auto& name : entry_names(root, ec))
    if (!starts_with(name, ".") && is_real_dir(root / name)) out.push_back(name);
  return out;
}

// When the snapshot was last restored; before its first restore, when it was published.
std::chrono::system_clock::time_point last_used(const std::filesystem::path& dir) {
  for (auto name : {layout::kLastUsedFile, layout::kMetadataFile})
    if (auto t = fsops::mtime(dir / name)) return *t;
  return fsops::mtime(dir).value_or(std::chrono::system_clock::time_point{});
}

// Move `dir` out of sight, then delete it. Returns the bytes it used.
Result<uint64_t> discard(const std::filesystem::path& root, const std::filesystem::path& dir,
                         const std::string& name) {
  uint64_t bytes = fsops::disk_usage(dir);
  KILN_ASSIGN_OR_RETURN(auto trash, fsops::move_to_trash(root, dir, name));
  fsops::remove_tree(trash);
  return bytes;
}

// Why gc should remove the leftover `name` (a .tmp-/.trash- entry), or "" to keep it.
std::string leftover_reason(const std::string& name) {
  bool tmp = starts_with(name, layout::kTmpPrefix);
  auto prefix = tmp ? layout::kTmpPrefix : layout::kTrashPrefix;
  auto pid = fsops::owner_pid(name, prefix);
  // A live owner is still writing (tmp) or deleting (trash) it.
  if (pid && fsops::pid_alive(*pid)) return "";
  std::string owner = pid ? fmt::format("process {} is gone", *pid) : std::string("unrecognized name");
  return tmp ? fmt::format("unfinished bake ({})", owner)
             : fmt::format("leftover of a replaced or removed snapshot ({})", owner);
}

}  // namespace

std::vector<Entry> Store::list() const {
  std::vector<Entry> out;
  for (auto& name : snapshot_names(root_)) {
    auto dir = root_ / name;
    auto r = verify_snapshot(dir, name, nullptr, VerifyLevel::quick);
    if (r.status == LookupStatus::missing) continue;  // removed while we were listing
    Entry e;
    e.id = name;
    e.status = r.status;
    e.reason = r.reason;
    if (r.snapshot) {
      e.meta = std::move(r.snapshot->meta);
    } else if (auto text = fs::read_file(dir / layout::kMetadataFile, kMaxMetadataBytes)) {
      // Show what an unusable snapshot claims to be when that much is readable.
      if (auto meta = parse_metadata(*text)) e.meta = std::move(meta).value();
    }
    e.disk_bytes = fsops::disk_usage(dir);
    e.last_used = last_used(dir);
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::optional<uint64_t>> Store::remove_if_unlocked(const std::string& id) const {
  KILN_TRY(fs::make_dirs(locks_dir()));
  KILN_ASSIGN_OR_RETURN(auto lock, BakeLock::try_acquire(lock_path(id)));
  if (!lock) return std::optional<uint64_t>();
  auto dir = root_ / id;
  if (!is_real_dir(dir)) return std::optional<uint64_t>(0);  // someone else removed it first
  KILN_ASSIGN_OR_RETURN(uint64_t bytes, discard(root_, dir, id));
  // Safe while we hold it: waiters notice the unlinked file and lock a fresh one.
  lock->unlink_file();
  return std::optional<uint64_t>(bytes);
}

Result<int> Store::remove(const std::string& id_or_prefix) const {
  if (id_or_prefix.empty() || starts_with(id_or_prefix, ".") || id_or_prefix.find('/') != std::string::npos)
    return make_error("'{}' is not a snapshot id; `kiln snapshots list` shows them", id_or_prefix);
  std::vector<std::string> matches;
  for (auto& name : snapshot_names(root_)) {
    if (name == id_or_prefix) {
      matches = {name};
      break;
    }
    if (starts_with(name, id_or_prefix)) matches.push_back(name);
  }
  if (matches.empty())
    return make_error("no snapshot id starts with '{}' in {}; `kiln snapshots list` shows them", id_or_prefix,
                      root_.string());
  if (matches.size() > 1) {
    std::vector<std::string> shown(matches.begin(), matches.begin() + std::min<size_t>(matches.size(), 3));
    return make_error("'{}' matches {} snapshots ({}{}); give more characters of the id", id_or_prefix,
                      matches.size(), fmt::join(shown, ", "), matches.size() > 3 ? ", ..." : "");
  }
  KILN_ASSIGN_OR_RETURN(auto removed, remove_if_unlocked(matches[0]));
  if (!removed)
    return make_error("snapshot {} is being baked by another kiln right now; try again when it finishes", matches[0]);
  return 1;
}

Result<GcReport> Store::gc(const GcOptions& options) const {
  GcReport report;
  if (!is_real_dir(root_)) return report;  // nothing was ever baked
  std::error_code ec;
  auto names = entry_names(root_, ec);
  if (ec) return make_error("cannot read the snapshot store {}: {}", root_.string(), ec.message());
  KILN_TRY(fs::make_dirs(locks_dir()));
  const auto now = std::chrono::system_clock::now();

  auto record = [&](const std::string& name, const std::string& why, uint64_t bytes) {
    report.removed.push_back({name, why, bytes});
    report.bytes_freed += bytes;
  };

  for (auto& name : names) {
    auto path = root_ / name;
    if (starts_with(name, layout::kTmpPrefix) || starts_with(name, layout::kTrashPrefix)) {
      std::string why = leftover_reason(name);
      if (why.empty()) continue;
      uint64_t bytes = fsops::disk_usage(path);
      if (!options.dry_run) fsops::remove_tree(path);
      record(name, why, bytes);
      continue;
    }
    if (starts_with(name, ".") || !is_real_dir(path)) continue;

    // Decide and remove under the key's lock, so a snapshot being (re)baked right now is
    // neither judged half-way nor deleted under its baker.
    auto lock = BakeLock::try_acquire(lock_path(name));
    if (!lock) {
      log::verbose("gc: {}", lock.error().message);
      continue;
    }
    if (!*lock) {
      report.kept.push_back({name, "locked by a running bake", 0});
      continue;
    }
    auto r = verify_snapshot(path, name, nullptr, VerifyLevel::quick);
    std::string why;
    if (r.status == LookupStatus::unusable) {
      why = "unusable: " + r.reason;
    } else if (r.status == LookupStatus::found && r.snapshot->meta.key.baked_by_version != options.current_version) {
      why = fmt::format("baked by kiln {}, this is kiln {}", r.snapshot->meta.key.baked_by_version,
                        options.current_version);
    } else if (r.status == LookupStatus::found && now - last_used(path) > options.max_unused) {
      auto days = std::chrono::duration_cast<std::chrono::hours>(now - last_used(path)).count() / 24;
      why = fmt::format("unused for {} days", days);
    }
    if (why.empty()) continue;
    if (options.dry_run) {
      record(name, why, fsops::disk_usage(path));
      continue;
    }
    auto bytes = discard(root_, path, name);
    if (!bytes) {
      log::verbose("gc: {}", bytes.error().message);
      continue;
    }
    (**lock).unlink_file();
    record(name, why, *bytes);
  }

  // Lock files of snapshots that no longer exist. Unlinked only while held (see BakeLock).
  if (!options.dry_run) {
    for (auto& lock_name : entry_names(locks_dir(), ec)) {
      std::filesystem::path p(lock_name);
      if (p.extension() != layout::kLockSuffix || is_real_dir(root_ / p.stem())) continue;
      auto lock = BakeLock::try_acquire(locks_dir() / lock_name);
      if (lock && *lock) (**lock).unlink_file();
    }
  }
  return report;
}

}  // namespace kiln::snapshot
