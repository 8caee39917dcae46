// `kiln snapshots list|rm|gc`: inspect and prune the snapshot store and the kept
// failed VMs (kept_vms.h). push and pull: cmd_snapshots_remote.cpp.
#include "common/fs.h"
#include "common/log.h"
#include "runner/cli.h"
#include "runner/exit_codes.h"
#include "runner/kept_vms.h"
#include "snapshot/store.h"

#include <cctype>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>

namespace kiln::runner {

std::string human_bytes(uint64_t b) {
  if (b >= (1ull << 30)) return fmt::format("{:.1f} GiB", static_cast<double>(b) / (1ull << 30));
  if (b >= (1ull << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(b) / (1ull << 20));
  if (b >= (1ull << 10)) return fmt::format("{:.1f} KiB", static_cast<double>(b) / (1ull << 10));
  return fmt::format("{} B", b);
}

std::string age(std::chrono::system_clock::time_point t) {
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - t).count();
  if (secs < 120) return fmt::format("{}s ago", secs);
  if (secs < 7200) return fmt::format("{}m ago", secs / 60);
  if (secs < 172800) return fmt::format("{}h ago", secs / 3600);
  return fmt::format("{}d ago", secs / 86400);
}

namespace {

// Goldens first, each followed by the layers built on it (depth-first), so the parent
// of every layer is the row above it at one less indent. Layers whose base is gone last.
std::vector<const snapshot::Entry*> tree_order(const std::vector<snapshot::Entry>& entries) {
  std::map<std::string, std::vector<const snapshot::Entry*>> children;
  std::set<std::string> ids;
  for (const auto& e : entries) ids.insert(e.id);
  std::vector<const snapshot::Entry*> roots, orphans;
  for (const auto& e : entries) {
    const auto* parent = e.meta && e.meta->parent ? &*e.meta->parent : nullptr;
    if (!parent) roots.push_back(&e);
    else if (ids.count(*parent)) children[*parent].push_back(&e);
    else orphans.push_back(&e);
  }
  std::vector<const snapshot::Entry*> out;
  std::set<std::string> seen;  // metadata is untrusted: a parent cycle must not loop
  std::function<void(const snapshot::Entry*)> visit = [&](const snapshot::Entry* e) {
    if (!seen.insert(e->id).second) return;
    out.push_back(e);
    for (const auto* c : children[e->id]) visit(c);
  };
  for (const auto* r : roots) visit(r);
  for (const auto* o : orphans) visit(o);
  for (const auto& e : entries)
    if (!seen.count(e.id)) out.push_back(&e);  // only on a cycle
  return out;
}

// The failed tests' VMs kiln run --keep-failed kept, oldest first.
void list_kept(const KeptVms& kept) {
  auto entries = kept.list();
  if (entries.empty()) return;
  std::printf("\n%-14s %-8s %10s %9s  %s\n", "KEPT VM", "KIND", "DISK", "KEPT", "TEST: WHY (kiln shell ID)");
  uint64_t total = 0;
  for (const auto& e : entries) {
    total += e.disk_bytes;
    std::string what = e.vm ? fmt::format("{}: {}", e.vm->test, e.vm->why) : "unreadable: " + e.problem;
    if (what.size() > 100) what = what.substr(0, 97) + "...";
    const auto when = e.vm ? std::chrono::system_clock::time_point(std::chrono::duration_cast<
                                 std::chrono::system_clock::duration>(std::chrono::nanoseconds(e.vm->created_ns)))
                           : std::chrono::system_clock::now();
    std::printf("%-14s %-8s %10s %9s  %s\n", e.id.c_str(), "failed", human_bytes(e.disk_bytes).c_str(),
                e.vm ? age(when).c_str() : "?", what.c_str());
  }
  std::printf("%zu kept VM(s), %s on disk in %s\n", entries.size(), human_bytes(total).c_str(), kept.root().c_str());
}

int list(const snapshot::Store& store, const KeptVms& kept) {
  auto entries = store.list();
  if (entries.empty()) {
    std::printf("no snapshots in %s\n", store.root().c_str());
    list_kept(kept);
    return 0;
  }
  std::printf("%-22s %-8s %-5s %-12s %-8s %10s %10s %10s %9s  %s\n", "ID", "KIND", "DEPTH", "PARENT", "STATUS",
              "DISK", "SHARED", "FLAT", "USED", "WHAT");
  uint64_t total = 0, flat = 0;
  size_t layers = 0;
  for (const auto* e : tree_order(entries)) {
    total += e->disk_bytes;
    flat += e->flat_bytes;
    bool ok = e->status == snapshot::LookupStatus::found;
    const auto* layer = e->meta && e->meta->layer ? &*e->meta->layer : nullptr;
    layers += layer != nullptr;
    uint32_t depth = layer ? layer->depth : 0;
    std::string id = std::string(std::min<uint32_t>(depth, 4) * 2, ' ') + snapshot::short_id(e->id);
    std::string kind = !e->meta ? "?" : layer ? layer->kind : "golden";
    std::string parent = e->meta && e->meta->parent ? snapshot::short_id(*e->meta->parent) : "-";
    // What it is: the label of a layer (payload path, setup command), the guest of a golden.
    std::string what = layer ? layer->label
                       : e->meta ? fmt::format("{} {}M {}cpu, kiln {}", e->meta->key.engine, e->meta->key.memory_mib,
                                               e->meta->key.vcpus, e->meta->key.baked_by_version)
                                 : "?";
    if (what.size() > 60) what = what.substr(0, 57) + "...";
    std::printf("%-22s %-8s %-5s %-12s %-8s %10s %10s %10s %9s  %s\n", id.c_str(), kind.c_str(),
                layer ? std::to_string(depth).c_str() : "-", parent.c_str(), ok ? "ok" : "unusable",
                human_bytes(e->disk_bytes).c_str(), layer ? human_bytes(e->shared_bytes).c_str() : "-",
                layer ? human_bytes(e->flat_bytes).c_str() : "-", age(e->last_used).c_str(), what.c_str());
    if (!ok) std::printf("    %s\n", e->reason.c_str());
  }
  std::printf("%zu snapshot(s) (%zu layer(s)), %s on disk (%s of it flat files, rebuilt on demand) in %s\n",
              entries.size(), layers, human_bytes(total).c_str(), human_bytes(flat).c_str(), store.root().c_str());
  list_kept(kept);
  return 0;
}

int remove(const snapshot::Store& store, const KeptVms& kept, const std::vector<std::string>& ids) {
  int rc = 0;
  for (const auto& id : ids) {
    if (kept.find(id)) {  // a kept VM's id: 12 hex digits, or a prefix only they match
      if (auto r = kept.remove(id); !r) {
        log::error(r.error().message);
        rc = exit_code::kiln_error;
      } else {
        std::printf("removed the kept VM %s\n", id.c_str());
      }
      continue;
    }
    auto r = store.remove(id);
    if (!r) {
      log::error(r.error().message);
      rc = exit_code::kiln_error;
    } else {
      std::printf("removed %d snapshot(s) matching %s\n", *r, id.c_str());
    }
  }
  return rc;
}

// "10G", "512MiB", "1.5g", "2000000" (bytes). Powers of 1024.
std::optional<uint64_t> parse_size(const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  std::string unit = text.substr(used);
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!unit.empty() && unit.back() == 'b') unit.pop_back();
  if (unit.size() == 2 && unit[1] == 'i') unit.pop_back();
  static const std::map<std::string, double> scale = {
      {"", 1}, {"k", 1024.0}, {"m", 1024.0 * 1024}, {"g", 1024.0 * 1024 * 1024}, {"t", 1024.0 * 1024 * 1024 * 1024}};
  auto it = scale.find(unit);
  if (it == scale.end() || !(value >= 0) || value * it->second > 1.8e19) return std::nullopt;
  return static_cast<uint64_t>(value * it->second);
}

int gc(const snapshot::Store& store, const KeptVms& kept, double max_unused_days, const std::string& max_size,
       bool dry_run) {
  snapshot::GcOptions options;
  options.dry_run = dry_run;
  if (!max_size.empty()) {
    options.max_size = parse_size(max_size);
    if (!options.max_size) {
      log::error(fmt::format("--max-size {}: not a size; write it like 10G, 512M or 2000000 (bytes)", max_size));
      return exit_code::usage;
    }
  }
  options.max_unused = std::chrono::seconds(static_cast<int64_t>(max_unused_days * 86400));
  // Kept failed VMs go first: they are debugging aids, the snapshots are what runs need.
  uint64_t kept_freed = 0;
  for (const auto& item : kept.gc(options.current_version, options.max_unused, options.max_size, dry_run)) {
    std::printf("%s kept VM %s (%s): %s\n", dry_run ? "would remove" : "removed", item.id.c_str(),
                human_bytes(item.bytes).c_str(), item.why.c_str());
    kept_freed += item.bytes;
  }
  if (options.max_size) {
    uint64_t kept_left = 0;
    for (const auto& e : kept.list()) kept_left += e.disk_bytes;
    options.max_size = *options.max_size > kept_left ? *options.max_size - kept_left : 0;
  }
  auto report = store.gc(options);
  if (!report) {
    log::error(report.error().message);
    return exit_code::kiln_error;
  }
  for (const auto& item : report->removed)
    std::printf("%s %s (%s): %s\n", dry_run ? "would remove" : "removed", item.name.c_str(),
                human_bytes(item.bytes).c_str(), item.why.c_str());
  for (const auto& item : report->kept) std::printf("kept %s: %s\n", item.name.c_str(), item.why.c_str());
  // Images: those a remaining snapshot was baked from are kept (kiln images rm removes the others).
  auto images = gc_images(store, dry_run);
  if (!images) {
    log::error(images.error().message);
    return exit_code::kiln_error;
  }
  std::printf("%s %s\n", dry_run ? "would free" : "freed",
              human_bytes(report->bytes_freed + *images + kept_freed).c_str());
  return 0;
}

}  // namespace

void register_snapshots(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("snapshots", "Inspect and prune the snapshot store");
  cmd->require_subcommand(1);
  cmd->footer(fmt::format("Store: {} (set KILN_CACHE_DIR to move it)", (fs::cache_root() / "snapshots").string()));

  auto* ls = cmd->add_subcommand(
      "list", "List snapshots and the layers on them (kind, parent, disk, shared, flat, use), then kept failed VMs");
  ls->callback([&exit_code] {
    exit_code = list(snapshot::Store(fs::cache_root() / "snapshots"), KeptVms());
  });

  auto ids = std::make_shared<std::vector<std::string>>();
  auto* rm = cmd->add_subcommand("rm", "Remove snapshots or kept VMs by id (or a unique id prefix)");
  rm->add_option("id", *ids, "Snapshot or kept VM id, or a unique prefix, as `kiln snapshots list` shows")->required();
  rm->callback([ids, &exit_code] {
    exit_code = remove(snapshot::Store(fs::cache_root() / "snapshots"), KeptVms(), *ids);
  });

  auto days = std::make_shared<double>(30);
  auto max_size = std::make_shared<std::string>();
  auto dry = std::make_shared<bool>(false);
  auto* g = cmd->add_subcommand(
      "gc", "Remove kept failed VMs first, then leftovers of interrupted bakes, unusable snapshots, those of other "
            "kiln versions, and unused ones");
  g->add_option("--max-unused-days", *days, "Remove snapshots not restored (kept VMs not kept) for this many days")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  g->add_option("--max-size", *max_size,
                "Then evict until the store is at most SIZE (e.g. 10G): kept VMs first (oldest first), then flat "
                "files, then the least recently used layers and snapshots no kept layer is built on");
  g->add_flag("--dry-run", *dry, "Only print what would be removed");
  g->callback([days, max_size, dry, &exit_code] {
    exit_code = gc(snapshot::Store(fs::cache_root() / "snapshots"), KeptVms(), *days, *max_size, *dry);
  });
  register_snapshot_transfer(*cmd, exit_code);
}

}  // namespace kiln::runner
