// Store::gc: leftovers, the age/version/unusable rules, then the size cap (flat caches
// first, then least recently used leaves). A snapshot a kept layer is built on is never
// removed; everything is decided and removed under that snapshot's lock.
#include "common/log.h"
#include "snapshot/fsops.h"
#include "snapshot/layout.h"
#include "snapshot/store.h"
#include "snapshot/store_scan.h"
#include "snapshot/verify.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <map>

namespace kiln::snapshot {
namespace {

using namespace scan;

// What gc knows about one snapshot or layer directory.
struct Node {
  std::string name;
  std::string parent;  ///< "" for a golden or unreadable metadata
  uint32_t depth = 0;  ///< unreadable metadata: deepest, so it is judged first
  std::chrono::system_clock::time_point last_used;
  int children = 0;  ///< directories naming this one as parent that are still there
  bool gone = false;
};

std::vector<Node> read_nodes(const std::filesystem::path& root) {
  std::vector<Node> nodes;
  for (auto& name : snapshot_names(root)) {
    Node n;
    n.name = name;
    n.depth = kMaxLayerDepth + 1;
    if (auto meta = read_metadata(root / name)) {
      n.parent = meta->parent.value_or("");
      n.depth = meta->layer ? meta->layer->depth : 0;
    }
    n.last_used = last_used(root / name);
    nodes.push_back(std::move(n));
  }
  std::map<std::string, Node*> by_name;
  for (auto& n : nodes) by_name[n.name] = &n;
  for (auto& n : nodes)
    if (auto it = by_name.find(n.parent); !n.parent.empty() && it != by_name.end()) ++it->second->children;
  return nodes;
}

}  // namespace

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
  auto remove_leftover = [&](const std::filesystem::path& path, const std::string& shown) {
    std::string why = leftover_reason(path.filename().string());
    if (why.empty()) return;
    uint64_t bytes = fsops::disk_usage(path);
    if (!options.dry_run) fsops::remove_tree(path);
    record(shown, why, bytes);
  };

  for (auto& name : names)
    if (starts_with(name, layout::kTmpPrefix) || starts_with(name, layout::kTrashPrefix))
      remove_leftover(root_ / name, name);

  auto nodes = read_nodes(root_);
  std::map<std::string, Node*> by_name;
  for (auto& n : nodes) by_name[n.name] = &n;

  // Remove `n` under its lock if `decide` (run under the lock) gives a reason. Returns
  // whether it was removed (or would be, in a dry run).
  auto remove_node = [&](Node& n, const std::function<std::string()>& decide) -> bool {
    auto lock = BakeLock::try_acquire(lock_path(n.name));
    if (!lock) {
      log::verbose("gc: {}", lock.error().message);
      return false;
    }
    if (!*lock) {
      report.kept.push_back({n.name, "locked by a running bake", 0});
      return false;
    }
    std::string why = decide();
    if (why.empty()) return false;
    auto path = root_ / n.name;
    if (options.dry_run) {
      record(n.name, why, fsops::disk_usage(path));
    } else {
      auto bytes = discard(root_, path, n.name);
      if (!bytes) {
        log::verbose("gc: {}", bytes.error().message);
        return false;
      }
      (**lock).unlink_file();
      record(n.name, why, *bytes);
    }
    n.gone = true;
    if (auto it = by_name.find(n.parent); !n.parent.empty() && it != by_name.end()) --it->second->children;
    return true;
  };

  // The rules, deepest first, so a layer goes before the base it was keeping alive.
  std::vector<Node*> order;
  for (auto& n : nodes) order.push_back(&n);
  std::stable_sort(order.begin(), order.end(), [](const Node* a, const Node* b) { return a->depth > b->depth; });
  for (Node* n : order) {
    if (n->children > 0) continue;  // a kept layer is built on it
    remove_node(*n, [&]() -> std::string {
      auto r = verify_any(root_, n->name, VerifyLevel::quick);
      if (r.status == LookupStatus::missing) return "";
      if (r.status == LookupStatus::unusable) return "unusable: " + r.reason;
      const auto& version = r.snapshot->meta.key.baked_by_version;
      if (version != options.current_version)
        return fmt::format("baked by kiln {}, this is kiln {}", version, options.current_version);
      auto unused = now - last_used(root_ / n->name);
      if (unused > options.max_unused)
        return fmt::format("unused for {} days", std::chrono::duration_cast<std::chrono::hours>(unused).count() / 24);
      return "";
    });
  }

  // Flat files being built by processes that died.
  for (auto& n : nodes) {
    if (n.gone) continue;
    for (auto& name : entry_names(root_ / n.name, ec))
      if (starts_with(name, layout::kFlatTmpPrefix)) remove_leftover(root_ / n.name / name, n.name + "/" + name);
  }

  if (options.max_size) {
    const uint64_t cap = *options.max_size;
    uint64_t total = fsops::disk_usage(root_);
    if (options.dry_run) total -= std::min(total, report.bytes_freed);
    std::vector<Node*> lru;
    for (auto& n : nodes) lru.push_back(&n);
    std::stable_sort(lru.begin(), lru.end(), [](const Node* a, const Node* b) { return a->last_used < b->last_used; });
    const std::string over =
        fmt::format("the store is over its size cap ({:.1f} MiB)", static_cast<double>(cap) / (1 << 20));

    // Flat files first: derived data, rebuilt on the next restore that needs one.
    for (Node* n : lru) {
      if (total <= cap) break;
      auto flat = root_ / n->name / layout::kFlatFile;
      uint64_t bytes = n->gone ? 0 : fsops::disk_usage(flat);
      if (bytes == 0) continue;
      auto lock = BakeLock::try_acquire(locks_dir() / (n->name + std::string(layout::kFlatLockSuffix)));
      if (!lock || !*lock) continue;  // being built or checked right now
      if (!options.dry_run) {
        ::unlink((root_ / n->name / layout::kFlatStampFile).c_str());
        ::unlink(flat.c_str());
      }
      record(n->name + "/" + std::string(layout::kFlatFile), "flat cache (rebuilt on demand); " + over, bytes);
      total -= std::min(total, bytes);
    }
    // Then whole snapshots and layers, least recently used first, leaves only: removing
    // a layer can make its base a leaf, so look again from the start after each removal.
    std::vector<const Node*> tried;
    while (total > cap) {
      Node* pick = nullptr;
      for (Node* n : lru)
        if (!n->gone && n->children == 0 && std::find(tried.begin(), tried.end(), n) == tried.end()) {
          pick = n;
          break;
        }
      if (pick == nullptr) break;  // what is left is locked or needed by kept layers
      tried.push_back(pick);
      uint64_t before = report.bytes_freed;
      remove_node(*pick, [&] { return "least recently used; " + over; });
      total -= std::min(total, report.bytes_freed - before);
    }
  }

  // Lock files of snapshots that no longer exist. Unlinked only while held (see BakeLock).
  if (!options.dry_run) {
    for (auto& lock_name : entry_names(locks_dir(), ec)) {
      std::string stem = lock_name;
      for (auto suffix : {layout::kFlatLockSuffix, layout::kLockSuffix})
        if (stem.size() > suffix.size() && stem.compare(stem.size() - suffix.size(), suffix.size(), suffix) == 0) {
          stem.resize(stem.size() - suffix.size());
          break;
        }
      if (stem == lock_name || is_real_dir(root_ / stem)) continue;
      auto lock = BakeLock::try_acquire(locks_dir() / lock_name);
      if (lock && *lock) (**lock).unlink_file();
    }
  }
  return report;
}

}  // namespace kiln::snapshot
