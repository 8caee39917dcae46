#include "vmm/kvm/kvm_engine.h"

#include "common/log.h"
#include "vmm/kvm/acpi_tables.h"
#include "vmm/kvm/boot_cpu.h"
#include "vmm/kvm/bzimage.h"
#include "vmm/kvm/kvm_vm_instance.h"
#include "vmm/kvm/machine.h"
#include "vmm/kvm/msr_list.h"
#include "vmm/kvm/state_stream.h"
#include "vmm/kvm/vcpu_state.h"
#include "vmm/kvm/vm_state.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace kiln::vmm::kvm {
namespace {

constexpr const char* kRebake = "rebake the snapshot";

/// A state file this engine cannot load: rebaking heals it (ErrorKind::corrupt).
Error corrupt(Error e) {
  e.kind = ErrorKind::corrupt;
  return e;
}

/// errno values that say "this host is short of something right now", not "this file is bad".
bool is_resource_errno(int e) { return e == EMFILE || e == ENFILE || e == ENOMEM || e == EAGAIN; }

Result<void> check_spec(const GuestSpec& spec) {
  const EngineLimits limits = KvmEngine::limits();
  if (spec.memory_mib < limits.min_memory_mib || spec.memory_mib > limits.max_memory_mib)
    return make_error("guest memory of {} MiB is out of range for the kvm engine: use {} to {} MiB", spec.memory_mib,
                      limits.min_memory_mib, limits.max_memory_mib);
  if (spec.vcpus < 1 || spec.vcpus > limits.max_vcpus)
    return make_error("{} vCPUs is out of range for the kvm engine: use 1 to {}", spec.vcpus, limits.max_vcpus);
  if (spec.disks.size() > kMaxDisks)
    return make_error("{} disks asked for; a guest can have at most {}", spec.disks.size(), kMaxDisks);
  return {};
}

Result<std::string> read_state_file(const std::filesystem::path& file) {
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    const int e = errno;
    if (is_resource_errno(e))
      return make_error("snapshot state file {} cannot be opened: {} (a limit of this host, not a bad snapshot)",
                        file.string(), std::strerror(e));
    return corrupt(make_error("snapshot state file {} cannot be opened: {}; {}", file.string(), std::strerror(e),
                              kRebake));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
      static_cast<uint64_t>(st.st_size) > kMaxStateFileBytes)
    return corrupt(
        make_error("snapshot state file {} is empty, too large or not a regular file; {}", file.string(), kRebake));
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::pread(fd.get(), data.data() + got, data.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return corrupt(make_error("cannot read snapshot state file {}; {}", file.string(), kRebake));
    got += static_cast<size_t>(n);
  }
  return data;
}

MachineConfig config_for(const GuestSpec& spec, const Machine* machine) {
  MachineConfig c;
  c.kiln_version = KILN_VERSION;
  c.memory_bytes = uint64_t{spec.memory_mib} << 20;
  c.vcpus = spec.vcpus;
  c.cmdline = KvmEngine::full_cmdline(spec);
  if (machine)
    for (const auto& d : machine->devices()) c.devices.push_back(d.section);
  return c;
}

/// Everything restore needs from the state file, parsed and checked before any VM exists.
struct ParsedState {
  std::string data;
  VmState vm;
  std::vector<VcpuState> vcpus;
};

Result<ParsedState> parse_state(const std::filesystem::path& file, const GuestSpec& spec,
                                const CpuIdentity& identity, const KvmCaps& caps) {
  log::ScopedTimer t("kvm: restore: read and check state file");
  ParsedState p;
  KILN_ASSIGN_OR_RETURN(p.data, read_state_file(file));
  auto bad = [&file](const Error& e) {
    return corrupt(make_error("snapshot state file {} cannot be restored: {}; {}", file.string(), e.message, kRebake));
  };
  auto reader = StateReader::parse(p.data);
  if (!reader) return bad(reader.error());
  if (auto r = check_meta(*reader, identity); !r) return bad(r.error());
  auto config = load_config_section(*reader);
  if (!config) return bad(config.error());
  MachineConfig want = config_for(spec, nullptr);
  if (config->kiln_version != want.kiln_version)
    return bad(make_error("it was saved by kiln {}, this is kiln {}", config->kiln_version, want.kiln_version));
  if (config->memory_bytes != want.memory_bytes || config->vcpus != want.vcpus)
    return bad(make_error("it holds a guest of {} MiB and {} vCPUs, but {} MiB and {} vCPUs were asked for",
                          config->memory_bytes >> 20, config->vcpus, spec.memory_mib, spec.vcpus));
  if (config->cmdline != want.cmdline)
    return bad(make_error("its guest booted with another kernel command line ('{}')", config->cmdline));
  if (config->devices != Machine::device_sections(spec.disks.size()))
    return bad(make_error("its guest had other devices ({}); {} disks were asked for",
                          fmt::join(config->devices, ", "), spec.disks.size()));
  for (const auto& d : config->devices)
    if (!reader->has(d)) return bad(make_error("device section '{}' is missing", d));
  auto vm = load_vm_section(*reader);
  if (!vm) return bad(vm.error());
  p.vm = *vm;
  for (uint32_t i = 0; i < spec.vcpus; ++i) {
    auto v = load_vcpu_section(*reader, i, caps);
    if (!v) return bad(v.error());
    p.vcpus.push_back(std::move(*v));
  }
  return p;
}

}  // namespace

Result<std::unique_ptr<KvmEngine>> KvmEngine::create(const EngineOptions&) {
  log::ScopedTimer timer("kvm: select engine");
  KILN_ASSIGN_OR_RETURN(auto sys, KvmSystem::open());
  auto caps = KvmCaps::probe(sys.fd());
  if (!caps) return make_error("the kvm engine cannot run here: {}; use --engine qemu", caps.error().message);
  KILN_ASSIGN_OR_RETURN(auto supported, supported_cpuid(sys.fd()));
  KILN_ASSIGN_OR_RETURN(auto listed, kvm_msr_index_list(sys.fd()));
  CpuIdentity identity = make_cpu_identity(supported, listed, *caps);
  auto candidates = msr_save_candidates(listed);
  log::verbose("kvm engine: /dev/kvm, CPU {}", identity.to_string());
  return std::unique_ptr<KvmEngine>(
      new KvmEngine(std::move(sys), *caps, std::move(identity), std::move(supported), std::move(candidates)));
}

EngineLimits KvmEngine::limits() {
  // 64 MiB: kiln's floor for a kernel plus the agent's initramfs (load_linux says more
  // precisely when a kernel needs more).
  return EngineLimits{64, static_cast<uint32_t>(layout::kMmioStart >> 20), kMaxVcpus};
}

std::string KvmEngine::identity() const {
  return std::string("kvm-") + KILN_VERSION + "/" + device_layout_tag() + "/" + identity_.to_string();
}

std::string KvmEngine::full_cmdline(const GuestSpec& spec) {
  return spec.cmdline.empty() ? Machine::device_cmdline() : spec.cmdline + " " + Machine::device_cmdline();
}

Result<std::unique_ptr<Vm>> KvmEngine::boot(const GuestSpec& spec, const SnapshotFiles& files) {
  log::ScopedTimer total("kvm: boot");
  KILN_TRY(check_spec(spec));
  KILN_ASSIGN_OR_RETURN(auto kernel, load_bzimage(spec.kernel));
  const std::string cmdline = full_cmdline(spec);
  KILN_ASSIGN_OR_RETURN(auto memory, GuestMemory::create_shared(files.memory, uint64_t{spec.memory_mib} << 20));
  uint64_t entry = 0;
  {
    log::ScopedTimer t("kvm: load kernel and initramfs");
    KILN_ASSIGN_OR_RETURN(entry, load_linux(kernel, spec.initramfs, cmdline, memory));
    KILN_TRY(write_boot_tables(memory));
    KILN_ASSIGN_OR_RETURN(auto rsdp, write_acpi_tables(memory, spec.vcpus, Machine::acpi_devices(spec.disks.size())));
    KILN_TRY(set_acpi_rsdp(memory, rsdp));
  }
  KILN_ASSIGN_OR_RETURN(auto machine, Machine::create(sys_, std::move(memory), spec.vcpus, spec.disks));
  std::vector<uint32_t> msrs;
  {
    log::ScopedTimer t("kvm: set up vCPUs for boot");
    const auto boot_values = boot_msrs();
    for (auto& vcpu : machine->vcpus()) {
      const int fd = vcpu->fd();
      KILN_TRY(set_vcpu_cpuid(fd, guest_cpuid(supported_, vcpu->index(), spec.vcpus)));
      KILN_TRY(set_msrs(fd, boot_values));
      KILN_TRY(setup_lapic_lints(fd));
      if (vcpu->index() == 0) KILN_TRY(setup_boot_vcpu(fd, entry));
    }
    KILN_ASSIGN_OR_RETURN(msrs, probe_msrs_to_save(machine->vcpus().front()->fd(), msr_candidates_));
  }
  MachineConfig config = config_for(spec, machine.get());
  machine->start();
  return std::unique_ptr<Vm>(std::make_unique<KvmVmInstance>(std::move(machine), std::move(config), identity_, caps_,
                                                             std::move(msrs), files.memory));
}

Result<std::unique_ptr<Vm>> KvmEngine::restore(const GuestSpec& spec, const SnapshotFiles& files) {
  log::ScopedTimer total("kvm: restore");
  KILN_ASSIGN_OR_RETURN(auto vm, restore_paused(spec, files));
  {
    log::ScopedTimer t("kvm: restore: start vCPUs");
    KILN_TRY(vm->start());
  }
  return std::unique_ptr<Vm>(std::move(vm));
}

Result<std::unique_ptr<KvmVmInstance>> KvmEngine::restore_paused(const GuestSpec& spec, const SnapshotFiles& files) {
  KILN_TRY(check_spec(spec));
  KILN_ASSIGN_OR_RETURN(auto parsed, parse_state(files.state, spec, identity_, caps_));
  std::optional<GuestMemory> memory;
  {
    log::ScopedTimer t("kvm: restore: map memory");
    auto mapped = GuestMemory::map_private(files.memory, uint64_t{spec.memory_mib} << 20, files.overlays);
    // The store checked the file's size and digest before: a failure here is this host's
    // memory or address space (ENOMEM), not the snapshot.
    if (!mapped) return make_error("cannot map the snapshot's memory: {}", mapped.error().message);
    memory.emplace(std::move(*mapped));
  }
  KILN_ASSIGN_OR_RETURN(auto machine, Machine::create(sys_, std::move(*memory), spec.vcpus, spec.disks));
  {
    log::ScopedTimer t("kvm: restore: set VM and vCPU state");
    KILN_TRY(restore_vm(machine->vm().fd(), parsed.vm));
    for (auto& vcpu : machine->vcpus()) {
      if (auto r = restore_vcpu(vcpu->fd(), caps_, parsed.vcpus[vcpu->index()]); !r)
        return corrupt(make_error("restoring vCPU {}: {}; {}", vcpu->index(), r.error().message, kRebake));
    }
  }
  {
    log::ScopedTimer t("kvm: restore: device state");
    auto reader = StateReader::parse(parsed.data);
    if (!reader) return corrupt(reader.take_error());
    for (const auto& d : machine->devices()) {
      auto section = reader->section(d.section);
      if (!section) return corrupt(make_error("{}; {}", section.error().message, kRebake));
      d.device->load(*section);
      if (auto r = section->finish(); !r) return corrupt(make_error("{}; {}", r.error().message, kRebake));
    }
  }
  std::vector<uint32_t> msrs;
  for (const auto& e : parsed.vcpus.front().msrs) msrs.push_back(e.index);
  SavedClocks clocks;
  clocks.kvmclock = parsed.vm.clock;
  for (auto& v : parsed.vcpus) clocks.vcpu_msrs.push_back(std::move(v.msrs));
  MachineConfig config = config_for(spec, machine.get());
  auto vm = std::make_unique<KvmVmInstance>(std::move(machine), std::move(config), identity_, caps_, std::move(msrs),
                                            std::filesystem::path());
  vm->hold_until_start(std::move(clocks));
  return vm;
}

Result<std::unique_ptr<Vm>> KvmEngine::restore_for_layer(const GuestSpec& spec, const SnapshotFiles& from,
                                                         const SnapshotFiles&) {
  // RAM is private and copy-on-write over `from`; save_snapshot writes it out whole
  // (GuestMemory::save_to, zero pages as holes) into the layer's own files.
  return restore(spec, from);
}

}  // namespace kiln::vmm::kvm
