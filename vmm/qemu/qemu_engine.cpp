#include "vmm/qemu/qemu_engine.h"

#include "common/log.h"
#include "common/unique_fd.h"
#include "vmm/kvm/cpu_identity.h"
#include "vmm/qemu/qemu_binary.h"
#include "vmm/qemu/sparse_copy.h"
#include "vmm/qemu/tcg_tsc.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kiln::vmm::qemu {
namespace {

/// Reject a spec qemu would reject later with a less readable message.
Result<void> check_spec(const GuestSpec& spec) {
  for (const auto& [what, path] : {std::pair{"guest kernel", &spec.kernel}, std::pair{"initramfs", &spec.initramfs}}) {
    struct stat st {};
    if (path->empty()) return make_error("no {} given", what);
    if (::stat(path->c_str(), &st) != 0)
      return make_error("{} {} cannot be used: {}", what, path->string(), std::strerror(errno));
    if (!S_ISREG(st.st_mode)) return make_error("{} {} is not a regular file", what, path->string());
    if (::access(path->c_str(), R_OK) != 0) return make_error("{} {} is not readable", what, path->string());
  }
  const EngineLimits limits = QemuEngine::limits();
  if (spec.memory_mib < limits.min_memory_mib || spec.memory_mib > limits.max_memory_mib)
    return make_error("guest memory of {} MiB is out of range: use {} to {} MiB", spec.memory_mib, limits.min_memory_mib,
                      limits.max_memory_mib);
  if (spec.vcpus < 1 || spec.vcpus > limits.max_vcpus)
    return make_error("{} vCPUs is out of range: use 1 to {}", spec.vcpus, limits.max_vcpus);
  return {};
}

/// Check a snapshot's files against `spec` and open its state stream.
Result<UniqueFd> open_snapshot(const GuestSpec& spec, const SnapshotFiles& files) {
  KILN_TRY(check_spec(spec));
  if (!files.overlays.empty())
    return make_error("the qemu engine maps one memory file: give it the flattened snapshot, not {} overlays",
                      files.overlays.size());
  struct stat st {};
  if (::stat(files.memory.c_str(), &st) != 0)
    return make_error("snapshot memory file {} cannot be used: {}; rebake the snapshot", files.memory.string(),
                      std::strerror(errno));
  const uint64_t want = uint64_t{spec.memory_mib} << 20;
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != want)
    return make_error("snapshot memory file {} holds {} bytes but the guest has {} MiB ({} bytes): the snapshot is "
                      "truncated or was baked with other settings; rebake it",
                      files.memory.string(), st.st_size, spec.memory_mib, want);
  UniqueFd state(::open(files.state.c_str(), O_RDONLY | O_CLOEXEC));
  if (!state)
    return make_error("snapshot state file {} cannot be opened: {}; rebake the snapshot", files.state.string(),
                      std::strerror(errno));
  if (::fstat(state.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
    return make_error("snapshot state file {} is empty or not a regular file; rebake the snapshot",
                      files.state.string());
  return state;
}

/// The host CPU as `-cpu host` shows it to a guest, for the identity (QEMU on KVM only).
Result<std::string> host_cpu_for_kvm() {
  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm) return make_error("cannot open /dev/kvm: {}", std::strerror(errno));
  KILN_ASSIGN_OR_RETURN(auto cpu, kvm::probe_passthrough_cpu_identity(kvm.get()));
  return cpu.to_string();
}

}  // namespace

Result<std::unique_ptr<QemuEngine>> QemuEngine::create(const EngineOptions& options) {
  log::ScopedTimer timer("qemu: select engine");
  KILN_ASSIGN_OR_RETURN(auto binary, find_qemu_binary());
  KILN_ASSIGN_OR_RETURN(auto version, qemu_version(binary));
  KILN_ASSIGN_OR_RETURN(auto accel, choose_accel(options.accel));
  std::optional<uint32_t> tsc_khz;
  std::string host_cpu;
  if (accel.accel == Accel::kvm) {
    auto cpu = host_cpu_for_kvm();
    if (cpu) {
      host_cpu = std::move(*cpu);
    } else if (accel.auto_selected) {
      accel = AccelChoice{Accel::tcg, true, "the host CPU KVM shows guests is unknown: " + cpu.error().message};
    } else {
      return make_error("cannot tell which CPU QEMU on KVM would show its guests ({}), which snapshot keys need; "
                        "use --accel tcg",
                        cpu.error().message);
    }
  }
  if (accel.accel == Accel::tcg) tsc_khz = host_tsc_khz();
  log::verbose("qemu engine: {} (version {}), accelerator {}: {}{}{}", binary.string(), version,
               accel_name(accel.accel), accel.reason, tsc_khz ? fmt::format("; guest TSC {} kHz", *tsc_khz) : "",
               host_cpu.empty() ? "" : "; host CPU " + host_cpu);
  return std::unique_ptr<QemuEngine>(
      new QemuEngine(std::move(binary), std::move(version), std::move(accel), tsc_khz, std::move(host_cpu)));
}

EngineLimits QemuEngine::limits() { return EngineLimits{32, 1024 * 1024, 255}; }

std::string QemuEngine::identity_for(const std::string& version, Accel accel, std::optional<uint32_t> tsc_khz,
                                     const std::string& host_cpu) {
  std::string id = "qemu-" + version + "/" + device_layout_tag() + "/" + accel_name(accel);
  if (accel == Accel::tcg) return id + (tsc_khz ? fmt::format("/tsc-{}khz", *tsc_khz) : "/tsc-calibrated");
  return id + "/" + host_cpu;
}

std::string QemuEngine::identity() const { return identity_for(version_, accel_.accel, tsc_khz_, host_cpu_); }

QemuCommand QemuEngine::command_for(const GuestSpec& spec, const SnapshotFiles& files, LaunchMode mode) const {
  QemuCommand c;
  c.binary = binary_.string();
  c.accel = accel_.accel;
  c.mode = mode;
  c.guest = spec;
  c.tsc_khz = tsc_khz_;
  // Absolute: qemu resolves relative paths against its own cwd, and the error would not say so.
  c.memory_file = std::filesystem::absolute(files.memory);
  return c;
}

Result<std::unique_ptr<Vm>> QemuEngine::boot(const GuestSpec& spec, const SnapshotFiles& files) {
  log::ScopedTimer timer("qemu: boot");
  KILN_TRY(check_spec(spec));
  // A cold boot owns its memory file: start it empty so no stale RAM image survives
  // (qemu sizes it with ftruncate; untouched pages stay holes).
  {
    UniqueFd mem(::open(files.memory.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!mem) return make_error("cannot create the guest memory file {}: {}", files.memory.string(), std::strerror(errno));
  }
  KILN_ASSIGN_OR_RETURN(auto vm, QemuVm::start(command_for(spec, files, LaunchMode::boot), timeouts_));
  return std::unique_ptr<Vm>(std::move(vm));
}

Result<std::unique_ptr<Vm>> QemuEngine::restore(const GuestSpec& spec, const SnapshotFiles& files) {
  log::ScopedTimer timer("qemu: restore");
  KILN_ASSIGN_OR_RETURN(auto vm, restore_paused(spec, files));
  KILN_TRY(vm->resume());
  return std::unique_ptr<Vm>(std::move(vm));
}

Result<std::unique_ptr<QemuVm>> QemuEngine::restore_paused(const GuestSpec& spec, const SnapshotFiles& files) {
  KILN_ASSIGN_OR_RETURN(auto state, open_snapshot(spec, files));
  KILN_ASSIGN_OR_RETURN(auto vm, QemuVm::start(command_for(spec, files, LaunchMode::restore), timeouts_));
  KILN_TRY(vm->load_state(state.get()));
  return vm;
}

Result<std::unique_ptr<Vm>> QemuEngine::restore_for_layer(const GuestSpec& spec, const SnapshotFiles& from,
                                                          const SnapshotFiles& to) {
  log::ScopedTimer timer("qemu: restore for a layer");
  KILN_ASSIGN_OR_RETURN(auto state, open_snapshot(spec, from));
  std::error_code ec;
  if (std::filesystem::equivalent(from.memory, to.memory, ec))
    return make_error("cannot build a layer in place: its memory file {} is the parent's", to.memory.string());
  // The layer's RAM starts as a copy of the parent's and is then mapped shared, so the
  // guest's writes land in it and save_snapshot() skips RAM (x-ignore-shared), as a bake
  // does. Only the parent's data extents are copied: the holes (never-touched RAM) stay holes.
  {
    log::ScopedTimer t("qemu: layer: copy parent memory");
    KILN_ASSIGN_OR_RETURN(auto copied, copy_sparse_file(from.memory, to.memory));
    log::verbose("layer memory: copied {} MiB of data from {} ({} MiB file)", copied.data_bytes >> 20,
                 from.memory.string(), copied.size >> 20);
  }
  KILN_ASSIGN_OR_RETURN(auto vm, QemuVm::start(command_for(spec, to, LaunchMode::restore_shared), timeouts_));
  KILN_TRY(vm->load_state_and_run(state.get()));
  return std::unique_ptr<Vm>(std::move(vm));
}

}  // namespace kiln::vmm::qemu
