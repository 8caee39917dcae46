// `kiln resources`: a CTest resource spec sized from the host, so
// `ctest -j N --resource-spec-file` never starts more VMs than memory allows.
#include "common/log.h"
#include "runner/cli.h"
#include "runner/exit_codes.h"
#include "runner/host_memory.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace kiln::runner {
namespace {

/// What one VM costs beyond its guest RAM: the QEMU process, its page tables, kiln itself.
constexpr uint64_t kVmOverheadMib = 64;
/// VMs mostly wait on their guest; more than this many per CPU only thrash.
constexpr uint64_t kVmsPerCpu = 4;

struct ResourcesCliOptions {
  uint32_t memory_mib = 256;
};

int execute(const ResourcesCliOptions& o) {
  auto available = mem_available_mib();
  if (!available) {
    log::error("cannot read MemAvailable from /proc/meminfo: cannot size the resource spec");
    return exit_code::kiln_error;
  }
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  uint64_t by_memory = *available / (o.memory_mib + kVmOverheadMib);
  uint64_t by_cpu = kVmsPerCpu * static_cast<uint64_t>(std::max(1L, cpus));
  uint64_t slots = std::max<uint64_t>(1, std::min(by_memory, by_cpu));
  log::verbose("{} MiB available / ({} + {} MiB per VM) = {}; cap {} per CPU x {} CPUs = {}: {} slots", *available,
               o.memory_mib, kVmOverheadMib, by_memory, kVmsPerCpu, cpus, by_cpu, slots);
  std::printf(
      "{\n"
      "  \"version\": {\"major\": 1, \"minor\": 0},\n"
      "  \"local\": [\n"
      "    {\"microvm_slots\": [{\"id\": \"0\", \"slots\": %llu}]}\n"
      "  ]\n"
      "}\n",
      static_cast<unsigned long long>(slots));
  return 0;
}

}  // namespace

void register_resources(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<ResourcesCliOptions>();
  auto verbosity = std::make_shared<int>(0);
  auto* cmd = app.add_subcommand("resources", "Print a CTest resource spec (JSON) sized from the host's memory");
  cmd->footer(
      "One resource type, microvm_slots: MemAvailable / (MEMORY + 64 MiB), at most 4 per CPU.\n"
      "Tests that ask for RESOURCE_GROUPS \"microvm_slots:1\" (add_microvm_test() with\n"
      "KILN_USE_RESOURCE_GROUPS=ON) then never run more VMs at once than fit:\n"
      "  kiln resources > microvms.json\n"
      "  ctest -j 16 --resource-spec-file microvms.json");
  cmd->add_option("--memory", o->memory_mib, "Guest memory of each VM in MiB")
      ->check(CLI::Range(64u, 65536u))
      ->capture_default_str();
  cmd->add_flag("-v,--verbose", *verbosity, "Show how the slot count was computed on stderr");
  cmd->callback([o, verbosity, &exit_code] {
    if (*verbosity > 0) log::set_level(log::Level::verbose);
    exit_code = execute(*o);
  });
}

}  // namespace kiln::runner
