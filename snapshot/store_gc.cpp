// Store::gc: leftovers, the age/version/unusable rules, then the size cap (flat caches
// first, then least recently used leaves). A snapshot a kept layer is built on is never
// removed; everything is decided and removed under that snapshot's lock. Each phase is
// one GcRun step, run in that order by Store::gc.
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

using namespace scan;

namespace {

// What gc knows about one snapshot or layer directory.
struct Node {
  std::string name;
  std::string parent;  ///< "" for a golden or unreadable metadata
  uint32_t depth = 0;  ///< unreadable metadata: deepest, so it is judged first
  std::chrono::system_clock::time_point last_used;
  int children = 0;  ///< directories naming this one as parent that are still there
  bool gone = false;
};

}  // namespace

// One gc pass over the store: the report it builds and the snapshot graph it walks.
class GcRun {
 public:
  GcRun(const Store& store, const GcOptions& options)
      : store_(store), root_(store.root_), options_(options), now_(std::chrono::system_clock::now()) {}
  GcRun(const GcRun&) = delete;
  GcRun& operator=(const GcRun&) = delete;

  /// Bake directories and trash whose owner process is gone.
  void remove_dead_bakes_and_trash(const std::vector<std::string>& names) {
    for (auto& name : names)
      if (starts_with(name, layout::kTmpPrefix) || starts_with(name, layout::kTrashPrefix))
        remove_leftover(root_ / name, name);
  }

  /// Every snapshot and layer directory, and how many others are built on each.
  void read_nodes() {
    for (auto& name : snapshot_names(root_)) {
      Node n;
      n.name = name;
      n.depth = kMaxLayerDepth + 1;
      if (auto meta = read_metadata(root_ / name)) {
        n.parent = meta->parent.value_or("");
        n.depth = meta->layer ? meta->layer->depth : 0;
      }
      n.last_used = last_used(root_ / name);
      nodes_.push_back(std::move(n));
    }
    for (auto& n : nodes_) by_name_[n.name] = &n;
    for (auto& n : nodes_)
      if (Node* p = parent_of(n)) ++p->children;
  }

  /// The rules (unusable, other kiln version, unused too long), deepest first, so a
  /// layer goes before the base it was keeping alive.
  void apply_rules() {
    std::vector<Node*> order;
    for (auto& n : nodes_) order.push_back(&n);
    std::stable_sort(order.begin(), order.end(), [](const Node* a, const Node* b) { return a->depth > b->depth; });
    for (Node* n : order) {
      if (n->children > 0) continue;  // a kept layer is built on it
      remove_node(*n, [&] { return rule_verdict(*n); });
    }
  }

  /// Flat files being built by processes that died.
  void remove_dead_flat_builds() {
    std::error_code ec;
    for (auto& n : nodes_) {
      if (n.gone) continue;
      for (auto& name : entry_names(root_ / n.name, ec))
        if (starts_with(name, layout::kFlatTmpPrefix)) remove_leftover(root_ / n.name / name, n.name + "/" + name);
    }
  }

  /// Evict until the store is at most `cap` bytes: flat caches, then whole snapshots.
  void enforce_size_cap(uint64_t cap) {
    uint64_t total = fsops::disk_usage(root_);
    if (options_.dry_run) total -= std::min(total, report_.bytes_freed);
    std::vector<Node*> lru;
    for (auto& n : nodes_) lru.push_back(&n);
    std::stable_sort(lru.begin(), lru.end(), [](const Node* a, const Node* b) { return a->last_used < b->last_used; });
    const std::string over =
        fmt::format("the store is over its size cap ({:.1f} MiB)", static_cast<double>(cap) / (1 << 20));
    evict_flat_caches(lru, cap, over, total);
    evict_lru_leaves(lru, cap, over, total);
  }

  /// Lock files of snapshots that no longer exist. Unlinked only while held (see BakeLock).
  void remove_orphan_locks() {
    std::error_code ec;
    for (auto& lock_name : entry_names(store_.locks_dir(), ec)) {
      std::string stem = lock_name;
      for (auto suffix : {layout::kFlatLockSuffix, layout::kLockSuffix})
        if (stem.size() > suffix.size() && stem.compare(stem.size() - suffix.size(), suffix.size(), suffix) == 0) {
          stem.resize(stem.size() - suffix.size());
          break;
        }
      if (stem == lock_name || is_real_dir(root_ / stem)) continue;
      auto lock = BakeLock::try_acquire(store_.locks_dir() / lock_name);
      if (lock && *lock) (**lock).unlink_file();
    }
  }

  GcReport take_report() { return std::move(report_); }

 private:
  Node* parent_of(const Node& n) {
    auto it = by_name_.find(n.parent);
    return !n.parent.empty() && it != by_name_.end() ? it->second : nullptr;
  }

  void record(const std::string& name, const std::string& why, uint64_t bytes) {
    report_.removed.push_back({name, why, bytes});
    report_.bytes_freed += bytes;
  }

  void remove_leftover(const std::filesystem::path& path, const std::string& shown) {
    std::string why = leftover_reason(path.filename().string());
    if (why.empty()) return;
    uint64_t bytes = fsops::disk_usage(path);
    if (!options_.dry_run) fsops::remove_tree(path);
    record(shown, why, bytes);
  }

  // Why the rules remove `n` (run under its lock), or "" to keep it.
  std::string rule_verdict(const Node& n) const {
    auto r = verify_any(root_, n.name, VerifyLevel::quick);
    if (r.status == LookupStatus::missing) return "";
    if (r.status == LookupStatus::unusable) return "unusable: " + r.reason;
    const auto& version = r.snapshot->meta.key.baked_by_version;
    if (version != options_.current_version)
      return fmt::format("baked by kiln {}, this is kiln {}", version, options_.current_version);
    auto unused = now_ - last_used(root_ / n.name);
    if (unused > options_.max_unused)
      return fmt::format("unused for {} days", std::chrono::duration_cast<std::chrono::hours>(unused).count() / 24);
    return "";
  }

  // Remove `n` under its lock if `decide` (run under the lock) gives a reason. Returns
  // whether it was removed (or would be, in a dry run).
  bool remove_node(Node& n, const std::function<std::string()>& decide) {
    auto lock = BakeLock::try_acquire(store_.lock_path(n.name));
    if (!lock) {
      log::verbose("gc: {}", lock.error().message);
      return false;
    }
    if (!*lock) {
      report_.kept.push_back({n.name, "locked by a running bake", 0});
      return false;
    }
    std::string why = decide();
    if (why.empty()) return false;
    auto path = root_ / n.name;
    if (options_.dry_run) {
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
    if (Node* p = parent_of(n)) --p->children;
    return true;
  }

  // Flat files first: derived data, rebuilt on the next restore that needs one.
  void evict_flat_caches(const std::vector<Node*>& lru, uint64_t cap, const std::string& over, uint64_t& total) {
    for (Node* n : lru) {
      if (total <= cap) break;
      auto flat = root_ / n->name / layout::kFlatFile;
      uint64_t bytes = n->gone ? 0 : fsops::disk_usage(flat);
      if (bytes == 0) continue;
      auto lock = BakeLock::try_acquire(store_.locks_dir() / (n->name + std::string(layout::kFlatLockSuffix)));
      if (!lock || !*lock) continue;  // being built or checked right now
      if (!options_.dry_run) {
        ::unlink((root_ / n->name / layout::kFlatStampFile).c_str());
        ::unlink(flat.c_str());
      }
      record(n->name + "/" + std::string(layout::kFlatFile), "flat cache (rebuilt on demand); " + over, bytes);
      total -= std::min(total, bytes);
    }
  }

  // Then whole snapshots and layers, least recently used first, leaves only: removing
  // a layer can make its base a leaf, so look again from the start after each removal.
  void evict_lru_leaves(const std::vector<Node*>& lru, uint64_t cap, const std::string& over, uint64_t& total) {
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
      uint64_t before = report_.bytes_freed;
      remove_node(*pick, [&] { return "least recently used; " + over; });
      total -= std::min(total, report_.bytes_freed - before);
    }
  }

  const Store& store_;
  const std::filesystem::path& root_;
  const GcOptions& options_;
  const std::chrono::system_clock::time_point now_;
  GcReport report_;
  std::vector<Node> nodes_;
  std::map<std::string, Node*> by_name_;
};

Result<GcReport> Store::gc(const GcOptions& options) const {
  if (!is_real_dir(root_)) return GcReport{};  // nothing was ever baked
  std::error_code ec;
  auto names = entry_names(root_, ec);
  if (ec) return make_error("cannot read the snapshot store {}: {}", root_.string(), ec.message());
  KILN_TRY(fs::make_dirs(locks_dir()));

  GcRun run(*this, options);
  run.remove_dead_bakes_and_trash(names);
  run.read_nodes();
  run.apply_rules();
  run.remove_dead_flat_builds();
  if (options.max_size) run.enforce_size_cap(*options.max_size);
  if (!options.dry_run) run.remove_orphan_locks();
  return run.take_report();
}

}  // namespace kiln::snapshot
