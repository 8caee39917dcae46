// Failed tests' VMs, kept for `kiln shell` (kiln run --keep-failed): one
// self-contained snapshot of kind `failed` per directory <cache>/kept/<id>/ —
// the engine's whole-VM save (Vm::save_whole) plus kept.json, which says what
// the VM is (test, why it failed, when), what restores it (kiln version, engine
// identity, guest spec) and what the shell inside it gets (the command's cwd,
// environment, user, shares). Bounded in number and bytes; the oldest go first.
// kept.json is read back as untrusted input: bounded and checked field by field.
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"
#include "vmm/engine.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::runner {

inline constexpr int kKeptFormatVersion = 1;
/// kept.json is a few KiB (the environment dominates); anything bigger is not ours.
inline constexpr uint64_t kMaxKeptRecordBytes = 4u << 20;

/// What the command in the kept VM was, so a shell there starts where it ran.
struct KeptCommand {
  std::vector<std::string> argv;
  std::vector<std::string> env;     ///< the command's whole environment (K=V)
  std::string cwd;
  std::string user;                 ///< "" = root
  std::vector<std::string> shares;  ///< host trees mounted at their own paths (docs/shares.md)
  /// The share server's table when the VM was saved (share::ShareServer::export_state):
  /// the guest's kernel holds its node ids. "" without shares.
  std::string share_state;
};

struct KeptVm {
  std::string id;    ///< directory name: 12 hex digits
  std::string test;  ///< the test's name (--test-name), else the command line
  std::string why;   ///< "exited with code 1", "timed out after 5 s (still running, pid 83)"
  int64_t created_ns = 0;
  std::string kiln_version;
  std::string engine;           ///< "qemu" | "kvm": which engine restores it
  std::string engine_identity;  ///< Engine::identity() when it was saved; must match to restore
  vmm::GuestSpec guest;
  KeptCommand command;
};

std::string to_json(const KeptVm& vm);
/// Parse and check kept.json: size, types, ranges. Never throws.
Result<KeptVm> parse_kept(std::string_view text);

/// How many kept VMs, and how many bytes of them, a cache holds at most.
struct KeptLimits {
  size_t max_count = 5;
  uint64_t max_bytes = uint64_t{4} << 30;
};
/// The defaults, or KILN_KEEP_FAILED_MAX (count) and KILN_KEEP_FAILED_MAX_MIB.
KeptLimits kept_limits_from_env();

struct KeptEntry {
  std::string id;
  std::optional<KeptVm> vm;  ///< nullopt: unreadable (`problem` says why); gc removes it
  std::string problem;
  uint64_t disk_bytes = 0;
};

class KeptVms {
 public:
  /// `<cache_root()>/kept`.
  static std::filesystem::path default_root();
  explicit KeptVms(std::filesystem::path root = default_root()) : root_(std::move(root)) {}
  const std::filesystem::path& root() const { return root_; }

  /// A fresh private directory in the store for a VM being saved: pass it to
  /// files_in(), then publish() it; removed by gc if kiln dies meanwhile.
  Result<std::filesystem::path> begin() const;
  /// The engine files of a kept VM (or of one being saved) in `dir`.
  static vmm::SnapshotFiles files_in(const std::filesystem::path& dir);
  /// Give `dir` (from begin()) an id, write its kept.json and move it into place; then
  /// remove the oldest kept VMs until `limits` hold. The new one goes too if it alone
  /// is over the byte limit (the error says so).
  Result<std::string> publish(const std::filesystem::path& dir, KeptVm vm, const KeptLimits& limits) const;
  /// Forget a directory begin() made that will not be published.
  void abandon(const std::filesystem::path& dir) const;

  /// Every kept VM, oldest first; unreadable ones too.
  std::vector<KeptEntry> list() const;
  /// The kept VM whose id is `id_or_prefix` or uniquely starts with it.
  Result<KeptVm> find(const std::string& id_or_prefix) const;
  /// Hold `id` in use (a kiln shell in it) until the returned fd closes: remove() and
  /// gc skip it meanwhile.
  Result<UniqueFd> hold(const std::string& id) const;
  /// Remove the kept VM `id_or_prefix`; an error if it is in use or not there.
  Result<void> remove(const std::string& id_or_prefix) const;

  struct Removed {
    std::string id;
    std::string why;
    uint64_t bytes = 0;
  };
  /// gc's first step: leftovers of interrupted saves, unreadable kept VMs, those of
  /// other kiln versions and those older than `max_age`; then, if `max_bytes` is set,
  /// the oldest until the kept VMs take at most that many bytes.
  std::vector<Removed> gc(const std::string& current_version, std::chrono::seconds max_age,
                          std::optional<uint64_t> max_bytes, bool dry_run) const;

 private:
  Result<std::string> resolve(const std::string& id_or_prefix) const;
  /// Remove `id` unless a kiln shell holds it; the bytes freed, or nullopt if in use.
  std::optional<uint64_t> remove_unless_held(const std::string& id) const;
  void enforce(const KeptLimits& limits, const std::string& newest) const;

  std::filesystem::path root_;
};

}  // namespace kiln::runner
