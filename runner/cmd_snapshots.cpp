// `kiln snapshots list|rm|gc`: inspect and prune the snapshot store.
#include "common/fs.h"
#include "common/log.h"
#include "runner/cli.h"
#include "runner/exit_codes.h"
#include "snapshot/store.h"

#include <ctime>
#include <memory>

namespace kiln::runner {
namespace {

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

int list(const snapshot::Store& store) {
  auto entries = store.list();
  if (entries.empty()) {
    std::printf("no snapshots in %s\n", store.root().c_str());
    return 0;
  }
  std::printf("%-14s %-8s %-22s %7s %5s %10s %10s  %s\n", "ID", "STATUS", "ENGINE", "MEMORY", "CPUS", "DISK",
              "USED", "BAKED BY");
  uint64_t total = 0;
  for (const auto& e : entries) {
    total += e.disk_bytes;
    bool ok = e.status == snapshot::LookupStatus::found;
    std::string engine = e.meta ? e.meta->key.engine : "?";
    std::string mem = e.meta ? fmt::format("{}M", e.meta->key.memory_mib) : "?";
    std::string cpus = e.meta ? std::to_string(e.meta->key.vcpus) : "?";
    std::string by = e.meta ? "kiln " + e.meta->key.baked_by_version : "?";
    std::printf("%-14s %-8s %-22s %7s %5s %10s %10s  %s\n", e.id.substr(0, 12).c_str(), ok ? "ok" : "unusable",
                engine.c_str(), mem.c_str(), cpus.c_str(), human_bytes(e.disk_bytes).c_str(), age(e.last_used).c_str(),
                by.c_str());
    if (!ok) std::printf("    %s\n", e.reason.c_str());
  }
  std::printf("%zu snapshot(s), %s on disk in %s\n", entries.size(), human_bytes(total).c_str(),
              store.root().c_str());
  return 0;
}

int remove(const snapshot::Store& store, const std::vector<std::string>& ids) {
  int rc = 0;
  for (const auto& id : ids) {
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

int gc(const snapshot::Store& store, double max_unused_days, bool dry_run) {
  snapshot::GcOptions options;
  options.dry_run = dry_run;
  options.max_unused = std::chrono::seconds(static_cast<int64_t>(max_unused_days * 86400));
  auto report = store.gc(options);
  if (!report) {
    log::error(report.error().message);
    return exit_code::kiln_error;
  }
  for (const auto& item : report->removed)
    std::printf("%s %s (%s): %s\n", dry_run ? "would remove" : "removed", item.name.c_str(),
                human_bytes(item.bytes).c_str(), item.why.c_str());
  for (const auto& item : report->kept) std::printf("kept %s: %s\n", item.name.c_str(), item.why.c_str());
  std::printf("%s %s\n", dry_run ? "would free" : "freed", human_bytes(report->bytes_freed).c_str());
  return 0;
}

}  // namespace

void register_snapshots(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("snapshots", "Inspect and prune the snapshot store");
  cmd->require_subcommand(1);
  cmd->footer(fmt::format("Store: {} (set KILN_CACHE_DIR to move it)", (fs::cache_root() / "snapshots").string()));

  cmd->add_subcommand("list", "List snapshots: status, engine, size, last use")->callback([&exit_code] {
    exit_code = list(snapshot::Store(fs::cache_root() / "snapshots"));
  });

  auto ids = std::make_shared<std::vector<std::string>>();
  auto* rm = cmd->add_subcommand("rm", "Remove snapshots by id (or a unique id prefix)");
  rm->add_option("id", *ids, "Snapshot id or unique prefix, as `kiln snapshots list` shows")->required();
  rm->callback([ids, &exit_code] { exit_code = remove(snapshot::Store(fs::cache_root() / "snapshots"), *ids); });

  auto days = std::make_shared<double>(30);
  auto dry = std::make_shared<bool>(false);
  auto* g = cmd->add_subcommand(
      "gc", "Remove leftovers of interrupted bakes, unusable snapshots, those of other kiln versions, and unused ones");
  g->add_option("--max-unused-days", *days, "Remove snapshots not restored for this many days")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  g->add_flag("--dry-run", *dry, "Only print what would be removed");
  g->callback([days, dry, &exit_code] {
    exit_code = gc(snapshot::Store(fs::cache_root() / "snapshots"), *days, *dry);
  });
}

}  // namespace kiln::runner
