#include "runner/kept_vms.h"

#include "common/digest.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/temp_file.h"
#include "image/oci/json_fields.h"
#include "snapshot/fsops.h"
#include "snapshot/layout.h"
#include "snapshot/lock.h"
#include "snapshot/metadata.h"
#include "snapshot/publish_steps.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace kiln::runner {
namespace {

namespace jf = image::json_fields;
using nlohmann::json;

constexpr const char* kRecord = "kept.json";
constexpr const char* kStateFile = "state.bin";
constexpr const char* kMemoryFile = "memory.ram";
constexpr const char* kSavingPrefix = ".saving-";
constexpr size_t kMaxList = 4096;  // argv, env and shares entries each
constexpr size_t kIdLength = 12;

// Lower-case hex digits only: what fresh_id() writes, and all an id or prefix may hold.
bool is_id(std::string_view s) { return s.size() == kIdLength && is_lower_hex(s, kIdLength); }

std::string fresh_id() {
  unsigned char bytes[kIdLength / 2];
  if (::getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) {
    // Practically never; time and pid still make a collision unlikely, and rename refuses one.
    const uint64_t t = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    for (size_t i = 0; i < sizeof bytes; ++i) bytes[i] = static_cast<unsigned char>((t >> (8 * i)) ^ ::getpid());
  }
  std::string id;
  for (unsigned char b : bytes) id += fmt::format("{:02x}", b);
  return id;
}

json guest_json(const vmm::GuestSpec& g) {
  json disks = json::array();
  for (const auto& d : g.disks) disks.push_back({{"image", d.image.string()}, {"read_only", d.read_only}});
  return {{"kernel", g.kernel.string()}, {"initramfs", g.initramfs.string()}, {"cmdline", g.cmdline},
          {"memory_mib", g.memory_mib},  {"vcpus", g.vcpus},                   {"disks", disks}};
}

Result<vmm::GuestSpec> parse_guest(const json& doc) {
  if (!doc.is_object()) return make_error("field \"guest\" is not an object");
  vmm::GuestSpec g;
  KILN_ASSIGN_OR_RETURN(std::string kernel, jf::string_field(doc, "kernel", true));
  KILN_ASSIGN_OR_RETURN(std::string initramfs, jf::string_field(doc, "initramfs", true));
  g.kernel = kernel;
  g.initramfs = initramfs;
  KILN_ASSIGN_OR_RETURN(g.cmdline, jf::string_field(doc, "cmdline", true));
  KILN_ASSIGN_OR_RETURN(uint64_t memory, jf::uint_field(doc, "memory_mib", 1u << 20));
  KILN_ASSIGN_OR_RETURN(uint64_t vcpus, jf::uint_field(doc, "vcpus", 1024));
  g.memory_mib = static_cast<uint32_t>(memory);
  g.vcpus = static_cast<uint32_t>(vcpus);
  auto disks = doc.find("disks");
  if (disks == doc.end() || !disks->is_array() || disks->size() > vmm::kMaxDisks)
    return make_error("field \"disks\" is not an array of at most {} disks", vmm::kMaxDisks);
  for (const auto& d : *disks) {
    if (!d.is_object()) return make_error("field \"disks\" holds something that is not a disk");
    KILN_ASSIGN_OR_RETURN(std::string image, jf::string_field(d, "image", true));
    auto ro = d.find("read_only");
    if (ro == d.end() || !ro->is_boolean()) return make_error("a disk's \"read_only\" is not true or false");
    g.disks.push_back({image, ro->get<bool>()});
  }
  if (!g.kernel.is_absolute() || !g.initramfs.is_absolute())
    return make_error("the guest's kernel and initramfs must be absolute paths");
  return g;
}

Result<KeptCommand> parse_command(const json& doc) {
  if (!doc.is_object()) return make_error("field \"command\" is not an object");
  KeptCommand c;
  KILN_ASSIGN_OR_RETURN(c.argv, jf::string_array_field(doc, "argv", kMaxList));
  KILN_ASSIGN_OR_RETURN(c.env, jf::string_array_field(doc, "env", kMaxList));
  KILN_ASSIGN_OR_RETURN(c.cwd, jf::string_field(doc, "cwd", true));
  KILN_ASSIGN_OR_RETURN(c.user, jf::string_field(doc, "user", false));
  KILN_ASSIGN_OR_RETURN(c.shares, jf::string_array_field(doc, "shares", kMaxList));
  KILN_ASSIGN_OR_RETURN(c.share_state, jf::string_field(doc, "share_state", false));
  if (c.argv.empty()) return make_error("field \"argv\" is empty");
  if (c.cwd.empty() || c.cwd.front() != '/') return make_error("field \"cwd\" is not an absolute path");
  for (const auto& kv : c.env)
    if (kv.find('=') == std::string::npos || kv.find('\0') != std::string::npos)
      return make_error("field \"env\" holds an entry that is not K=V");
  return c;
}

std::optional<uint64_t> env_number(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (errno != 0 || *end != '\0' || v[0] == '-') {
    log::info("warning: {}={} is not a number; using the default", name, v);
    return std::nullopt;
  }
  return n;
}

}  // namespace

std::string to_json(const KeptVm& vm) {
  nlohmann::ordered_json j;
  j["format_version"] = kKeptFormatVersion;
  j["kind"] = "failed";
  j["test"] = vm.test;
  j["why"] = vm.why;
  j["created_ns"] = vm.created_ns;
  j["created"] = snapshot::rfc3339_utc(vm.created_ns);
  j["kiln_version"] = vm.kiln_version;
  j["engine"] = vm.engine;
  j["engine_identity"] = vm.engine_identity;
  j["guest"] = guest_json(vm.guest);
  j["command"] = {{"argv", vm.command.argv}, {"env", vm.command.env},       {"cwd", vm.command.cwd},
                  {"user", vm.command.user}, {"shares", vm.command.shares}, {"share_state", vm.command.share_state}};
  // Invalid UTF-8 (a test name, an environment value) is replaced, never thrown on.
  return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

Result<KeptVm> parse_kept(std::string_view text) {
  KILN_ASSIGN_OR_RETURN(json doc, jf::parse_object(text, kMaxKeptRecordBytes, "kept.json"));
  KeptVm vm;
  KILN_ASSIGN_OR_RETURN(uint64_t version, jf::uint_field(doc, "format_version", 1u << 20));
  if (version != kKeptFormatVersion)
    return make_error("kept.json has format {}, this kiln reads {}", version, kKeptFormatVersion);
  KILN_ASSIGN_OR_RETURN(std::string kind, jf::string_field(doc, "kind", true));
  if (kind != "failed") return make_error("kept.json is of kind \"{}\", not \"failed\"", kind);
  KILN_ASSIGN_OR_RETURN(vm.test, jf::string_field(doc, "test", true));
  KILN_ASSIGN_OR_RETURN(vm.why, jf::string_field(doc, "why", true));
  KILN_ASSIGN_OR_RETURN(uint64_t created, jf::uint_field(doc, "created_ns", uint64_t{1} << 62));
  vm.created_ns = static_cast<int64_t>(created);
  KILN_ASSIGN_OR_RETURN(vm.kiln_version, jf::string_field(doc, "kiln_version", true));
  KILN_ASSIGN_OR_RETURN(vm.engine, jf::string_field(doc, "engine", true));
  KILN_ASSIGN_OR_RETURN(vm.engine_identity, jf::string_field(doc, "engine_identity", true));
  if (vm.engine != "qemu" && vm.engine != "kvm") return make_error("kept.json names no engine kiln has: \"{}\"", vm.engine);
  auto guest = doc.find("guest");
  if (guest == doc.end()) return make_error("field \"guest\" is missing");
  KILN_ASSIGN_OR_RETURN(vm.guest, parse_guest(*guest));
  auto command = doc.find("command");
  if (command == doc.end()) return make_error("field \"command\" is missing");
  KILN_ASSIGN_OR_RETURN(vm.command, parse_command(*command));
  return vm;
}

KeptLimits kept_limits_from_env() {
  KeptLimits limits;
  if (auto n = env_number("KILN_KEEP_FAILED_MAX")) limits.max_count = static_cast<size_t>(*n);
  if (auto n = env_number("KILN_KEEP_FAILED_MAX_MIB")) limits.max_bytes = *n << 20;
  return limits;
}

std::filesystem::path KeptVms::default_root() { return fs::cache_root() / "kept"; }

vmm::SnapshotFiles KeptVms::files_in(const std::filesystem::path& dir) {
  return vmm::SnapshotFiles{dir / kStateFile, dir / kMemoryFile, {}};
}

Result<std::filesystem::path> KeptVms::begin() const {
  KILN_TRY(fs::make_dirs(root_));
  return fs::make_temp_dir(root_, fmt::format("{}vm-{}-", kSavingPrefix, ::getpid()));
}

void KeptVms::abandon(const std::filesystem::path& dir) const { snapshot::fsops::remove_tree(dir); }

Result<std::string> KeptVms::publish(const std::filesystem::path& dir, KeptVm vm, const KeptLimits& limits) const {
  vm.id = fresh_id();
  vm.created_ns = snapshot::now_unix_ns();
  KILN_TRY(fs::write_file_atomic(dir / kRecord, to_json(vm)));
  KILN_TRY(snapshot::fsops::fsync_path(dir));
  const uint64_t size = snapshot::fsops::disk_usage(dir);
  // One publisher at a time: the limits are counted over a stable set.
  KILN_ASSIGN_OR_RETURN(auto lock, snapshot::BakeLock::acquire(root_ / ".lock", {}));
  if (::rename(dir.c_str(), (root_ / vm.id).c_str()) != 0)
    return make_error("cannot move the kept VM into {}: {}", (root_ / vm.id).string(), std::strerror(errno));
  (void)snapshot::fsops::fsync_path(root_);
  enforce(limits, vm.id);
  if (!std::filesystem::exists(root_ / vm.id))
    return make_error("it alone is over the limits (KILN_KEEP_FAILED_MAX={}, KILN_KEEP_FAILED_MAX_MIB={}; it takes "
                      "{} MiB), so it was not kept",
                      limits.max_count, limits.max_bytes >> 20, (size + (1u << 20) - 1) >> 20);
  return vm.id;
}

void KeptVms::enforce(const KeptLimits& limits, const std::string& newest) const {
  std::vector<KeptEntry> all = list();  // oldest first
  uint64_t bytes = 0;
  for (const auto& e : all) bytes += e.disk_bytes;
  size_t count = all.size();
  auto over = [&] { return count > limits.max_count || bytes > limits.max_bytes; };
  for (const auto& e : all) {
    if (!over()) break;
    if (e.id == newest) continue;  // the one just kept goes last
    if (remove_unless_held(e.id)) {
      log::verbose("removed the kept VM {} ({}): over the limit of {} kept VMs / {} MiB", e.id,
                   e.vm ? e.vm->test : e.problem, limits.max_count, limits.max_bytes >> 20);
      bytes -= std::min(bytes, e.disk_bytes);
      --count;
    }
  }
  if (over()) (void)remove_unless_held(newest);  // alone over the limits
}

std::vector<KeptEntry> KeptVms::list() const {
  std::vector<KeptEntry> out;
  std::error_code ec;
  for (const auto& d : std::filesystem::directory_iterator(root_, ec)) {
    const std::string name = d.path().filename().string();
    if (!is_id(name) || !d.is_directory(ec)) continue;
    KeptEntry e;
    e.id = name;
    e.disk_bytes = snapshot::fsops::disk_usage(d.path());
    auto text = fs::read_file(d.path() / kRecord, kMaxKeptRecordBytes);
    auto vm = text ? parse_kept(*text) : Result<KeptVm>(text.take_error());
    if (vm) {
      vm->id = name;
      e.vm = std::move(*vm);
    } else {
      e.problem = vm.error().message;
    }
    out.push_back(std::move(e));
  }
  std::sort(out.begin(), out.end(), [](const KeptEntry& a, const KeptEntry& b) {
    const int64_t ta = a.vm ? a.vm->created_ns : 0, tb = b.vm ? b.vm->created_ns : 0;
    return ta != tb ? ta < tb : a.id < b.id;
  });
  return out;
}

Result<std::string> KeptVms::resolve(const std::string& id_or_prefix) const {
  if (!is_lower_hex(id_or_prefix, kIdLength))
    return Error{fmt::format("{}: not a kept VM id (12 hex digits, or a unique prefix; kiln snapshots list shows them)",
                             id_or_prefix),
                 ErrorKind::not_found};
  std::vector<std::string> matches;
  std::error_code ec;
  for (const auto& d : std::filesystem::directory_iterator(root_, ec)) {
    const std::string name = d.path().filename().string();
    if (is_id(name) && name.starts_with(id_or_prefix)) matches.push_back(name);
  }
  if (matches.empty())
    return Error{fmt::format("no kept VM {} in {} (kiln snapshots list shows the kept ones)", id_or_prefix,
                             root_.string()),
                 ErrorKind::not_found};
  if (matches.size() > 1)
    return make_error("{} is the start of {} kept VM ids; give more of it", id_or_prefix, matches.size());
  return matches.front();
}

Result<KeptVm> KeptVms::find(const std::string& id_or_prefix) const {
  KILN_ASSIGN_OR_RETURN(std::string id, resolve(id_or_prefix));
  KILN_ASSIGN_OR_RETURN(std::string text, fs::read_file(root_ / id / kRecord, kMaxKeptRecordBytes));
  auto vm = parse_kept(text);
  if (!vm) return make_error("the kept VM {} is unreadable ({}); remove it with kiln snapshots gc", id, vm.error().message);
  vm->id = id;
  return vm;
}

Result<UniqueFd> KeptVms::hold(const std::string& id) const {
  UniqueFd dir(::open((root_ / id).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir || ::flock(dir.get(), LOCK_SH | LOCK_NB) != 0)
    return make_error("cannot use the kept VM {}: it is being removed", id);
  return dir;
}

std::optional<uint64_t> KeptVms::remove_unless_held(const std::string& id) const {
  const auto dir = root_ / id;
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return uint64_t{0};  // already gone
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) return std::nullopt;  // a kiln shell is in it
  const uint64_t bytes = snapshot::fsops::disk_usage(dir);
  auto trash = snapshot::fsops::move_to_trash(root_, dir, id);
  snapshot::fsops::remove_tree(trash ? *trash : dir);
  return bytes;
}

Result<void> KeptVms::remove(const std::string& id_or_prefix) const {
  KILN_ASSIGN_OR_RETURN(std::string id, resolve(id_or_prefix));
  if (!remove_unless_held(id)) return make_error("the kept VM {} is in use by a kiln shell; try again after it", id);
  return {};
}

std::vector<KeptVms::Removed> KeptVms::gc(const std::string& current_version, std::chrono::seconds max_age,
                                          std::optional<uint64_t> max_bytes, bool dry_run) const {
  std::vector<Removed> removed;
  auto drop = [&](const std::string& name, std::string why, uint64_t bytes) {
    if (dry_run) {
      removed.push_back({name, std::move(why), bytes});
      return true;
    }
    if (is_id(name)) {
      auto freed = remove_unless_held(name);
      if (!freed) return false;
      bytes = *freed;
    } else {
      snapshot::fsops::remove_tree(root_ / name);
    }
    removed.push_back({name, std::move(why), bytes});
    return true;
  };
  // Saves that never finished: their kiln is gone.
  std::error_code ec;
  for (const auto& d : std::filesystem::directory_iterator(root_, ec)) {
    const std::string name = d.path().filename().string();
    auto owner = snapshot::fsops::owner_pid(name, kSavingPrefix);
    if (!owner) owner = snapshot::fsops::owner_pid(name, snapshot::layout::kTrashPrefix);
    if (owner && !snapshot::fsops::pid_alive(*owner))
      drop(name, "left by a kiln that died while saving or removing it", snapshot::fsops::disk_usage(d.path()));
  }
  const int64_t oldest_kept =
      snapshot::now_unix_ns() - std::chrono::duration_cast<std::chrono::nanoseconds>(max_age).count();
  uint64_t bytes = 0;
  std::vector<const KeptEntry*> left;
  std::vector<KeptEntry> all = list();
  for (const auto& e : all) {
    if (!e.vm && drop(e.id, "unreadable: " + e.problem, e.disk_bytes)) continue;
    if (e.vm && e.vm->kiln_version != current_version &&
        drop(e.id, fmt::format("kept by kiln {}, which is not this one ({})", e.vm->kiln_version, current_version),
             e.disk_bytes))
      continue;
    if (e.vm && e.vm->created_ns < oldest_kept && drop(e.id, "kept longer than --max-unused-days", e.disk_bytes))
      continue;
    bytes += e.disk_bytes;
    left.push_back(&e);
  }
  for (const KeptEntry* e : left) {
    if (!max_bytes || bytes <= *max_bytes) break;
    if (drop(e->id, "over --max-size: kept VMs go first", e->disk_bytes)) bytes -= e->disk_bytes;
  }
  return removed;
}

}  // namespace kiln::runner
