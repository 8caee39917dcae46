#include "vmm/kvm/kvm_vm_instance.h"

#include "common/log.h"
#include "vmm/kvm/state_stream.h"
#include "vmm/kvm/vcpu_state.h"
#include "vmm/kvm/vm_state.h"

#include <fcntl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

namespace kiln::vmm::kvm {
namespace {

constexpr size_t kMaxConfigString = 64 * 1024;
constexpr uint32_t kMaxDevices = 64;

Result<void> write_file(const std::filesystem::path& file, const std::string& data) {
  UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return make_error("cannot create snapshot state file {}: {}", file.string(), std::strerror(errno));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_error("cannot write snapshot state file {}: {}", file.string(), std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0)
    return make_error("cannot flush snapshot state file {}: {}", file.string(), std::strerror(errno));
  return {};
}

}  // namespace

void save_config_section(StateWriter& out, const MachineConfig& c) {
  out.begin_section("config");
  out.string(c.kiln_version);
  out.u64(c.memory_bytes);
  out.u32(c.vcpus);
  out.string(c.cmdline);
  out.u32(static_cast<uint32_t>(c.devices.size()));
  for (const auto& d : c.devices) out.string(d);
  out.end_section();
}

Result<MachineConfig> load_config_section(const StateReader& file) {
  KILN_ASSIGN_OR_RETURN(SectionReader in, file.section("config"));
  MachineConfig c;
  c.kiln_version = in.string(kMaxConfigString);
  c.memory_bytes = in.u64();
  c.vcpus = in.u32();
  c.cmdline = in.string(kMaxConfigString);
  uint32_t n = in.u32();
  if (n > kMaxDevices) in.fail("too many devices");
  for (uint32_t i = 0; in.ok() && i < n; ++i) c.devices.push_back(in.string(kMaxConfigString));
  KILN_TRY(in.finish());
  return c;
}

KvmVmInstance::KvmVmInstance(std::unique_ptr<Machine> machine, MachineConfig config, CpuIdentity identity,
                             KvmCaps caps, std::vector<uint32_t> msrs, std::filesystem::path booted_from)
    : machine_(std::move(machine)),
      config_(std::move(config)),
      identity_(std::move(identity)),
      caps_(caps),
      msrs_(std::move(msrs)),
      booted_from_(std::move(booted_from)) {}

Result<void> KvmVmInstance::start() {
  if (!held_ || destroyed_) return make_error("internal error: this VM is not waiting to start");
  log::ScopedTimer t("kvm: start a VM restored ahead");
  KILN_TRY(restore_clock(machine_->vm().fd(), held_->kvmclock));
  for (auto& vcpu : machine_->vcpus()) {
    if (vcpu->index() >= held_->vcpu_msrs.size()) return make_error("internal error: no saved TSC for a vCPU");
    KILN_TRY(restore_tsc(vcpu->fd(), held_->vcpu_msrs[vcpu->index()]));
  }
  held_.reset();
  machine_->start();
  return {};
}

std::string KvmVmInstance::console_output() { return machine_ ? machine_->console_output() : final_console_; }

std::optional<std::string> KvmVmInstance::vmm_exited() {
  if (destroyed_) return std::string("the VM was stopped by kiln");
  return machine_->stopped_reason();
}

Result<void> KvmVmInstance::save_snapshot(const SnapshotFiles& files) {
  log::ScopedTimer total("kvm: save snapshot");
  if (destroyed_) return make_error("cannot save a snapshot: the VM was destroyed");
  if (auto why = machine_->stopped_reason()) return make_error("cannot save a snapshot: the guest stopped: {}", *why);
  {
    log::ScopedTimer t("kvm: save: pause vCPUs and I/O");
    machine_->pause();
  }
  // A vCPU may have hit a fatal exit while we paused it.
  if (auto why = machine_->stopped_reason()) return make_error("cannot save a snapshot: the guest stopped: {}", *why);
  KILN_TRY(write_state(files.state));
  return save_memory(files.memory);
}

Result<void> KvmVmInstance::save_whole(const SnapshotFiles& files, Deadline) {
  // Guest RAM is mapped in this process: a restored VM's is written out whole
  // (save_memory), in well under a second for any guest this engine runs.
  return save_snapshot(files);
}

Result<void> KvmVmInstance::write_state(const std::filesystem::path& file) {
  log::ScopedTimer t("kvm: save: state file");
  StateWriter out;
  save_meta(out, identity_);
  save_config_section(out, config_);
  KILN_ASSIGN_OR_RETURN(auto vm_state, save_vm(machine_->vm().fd()));
  save_vm_section(out, vm_state);
  for (auto& vcpu : machine_->vcpus()) {
    auto state = save_vcpu(vcpu->fd(), caps_, msrs_);
    if (!state) return with_context(fmt::format("saving vCPU {}", vcpu->index()), state.error());
    save_vcpu_section(out, vcpu->index(), *state);
  }
  for (const auto& d : machine_->devices()) {
    out.begin_section(d.section);
    d.device->save(out);
    out.end_section();
  }
  std::string data = out.finish();
  KILN_TRY(write_file(file, data));
  log::verbose("kvm: saved {} bytes of VM state to {}", data.size(), file.string());
  return {};
}

Result<void> KvmVmInstance::save_memory(const std::filesystem::path& file) {
  log::ScopedTimer t("kvm: save: memory");
  GuestMemory& memory = machine_->memory();
  std::error_code ec;
  if (memory.is_shared_file()) {
    // A cold boot: RAM *is* the file. Anything else would be a caller bug worth a clear error.
    if (!std::filesystem::equivalent(file, booted_from_, ec))
      return make_error("cannot save a snapshot with memory file {}: this VM's RAM lives in {}", file.string(),
                        booted_from_.string());
    if (::msync(memory.host_base(), memory.size(), MS_SYNC) != 0)
      return make_error("cannot flush guest RAM to {}: {}", file.string(), std::strerror(errno));
    return {};
  }
  // Restored (copy-on-write over the golden and its layers): write a complete image.
  return memory.save_to(file);
}

void KvmVmInstance::destroy() {
  if (destroyed_) return;
  destroyed_ = true;
  if (!machine_) return;
  machine_->shutdown();
  final_console_ = machine_->console_output();
  machine_.reset();
}

}  // namespace kiln::vmm::kvm
