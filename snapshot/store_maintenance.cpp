// Store: list, remove and gc (`kiln snapshots list|rm|gc`).
#include "common/log.h"
#include "snapshot/fsops.h"
#include "snapshot/layer_chain.h"
#include "snapshot/layout.h"
#include "snapshot/store.h"
#include "snapshot/store_scan.h"
#include "snapshot/verify.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <system_error>

namespace kiln::snapshot {
using namespace scan;

std::vector<Entry> Store::list() const {
  std::vector<Entry> out;
  for (auto& name : snapshot_names(root_)) {
    auto dir = root_ / name;
    auto r = verify_any(root_, name, VerifyLevel::quick);
    if (r.status == LookupStatus::missing) continue;  // removed while we were listing
    Entry e;
    e.id = name;
    e.status = r.status;
    e.reason = r.reason;
    if (r.snapshot && r.snapshot->is_layer()) {
      auto chain = load_chain(root_, *r.snapshot);
      auto shared = chain ? shared_root_bytes(*chain) : Result<uint64_t>(chain.error());
      if (shared) e.shared_bytes = *shared;
    }
    if (r.snapshot) {
      e.meta = std::move(r.snapshot->meta);
    } else if (auto text = fs::read_file(dir / layout::kMetadataFile, kMaxMetadataBytes)) {
      // Show what an unusable snapshot claims to be when that much is readable.
      if (auto meta = parse_metadata(*text)) e.meta = std::move(meta).value();
    }
    e.disk_bytes = fsops::disk_usage(dir);
    e.flat_bytes = fsops::disk_usage(dir / layout::kFlatFile);
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

}  // namespace kiln::snapshot
