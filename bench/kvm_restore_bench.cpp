// bench/kvm_restore_bench (issue 5, item 5): the restore path of kiln's kvm engine,
// broken down (create VM and vCPUs, map memory, set state, run, first exec of a trivial
// static binary), next to the same restore through the QEMU engine with accel=kvm —
// both in one run, runs interleaved, medians and the ratio printed. Needs a working
// /dev/kvm: on hosts without one, run it in the nested-KVM lab:
//   tests/lab/kvm-lab -- build/default/bin/kvm_restore_bench [--runs=N]
#include "bench/bench_guest.h"
#include "bench/samples.h"
#include "bench/scratch_cache.h"
#include "bench/timing_capture.h"
#include "runner/interrupt.h"
#include "vmm/accel.h"

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <unistd.h>

#include <charconv>
#include <memory>
#include <string_view>

using namespace kiln;
using namespace kiln::bench;

namespace {

struct Side {
  const char* label;   ///< column heading
  const char* prefix;  ///< sample name prefix
  vmm::EngineOptions options;
  std::unique_ptr<BenchGuest> guest;
  std::optional<snapshot::Snapshot> layer;
};

struct Bench {
  Side kvm{"kvm engine", "kvm", {.name = "kvm", .accel = "auto"}, nullptr, {}};
  Side qemu{"qemu engine, accel=kvm", "qemu", {.name = "qemu", .accel = "kvm"}, nullptr, {}};
  runner::Payload payload;  ///< the trivial static binary
  runner::RunRequest request;
  TimingCapture timings;
  Samples samples;
};
Bench* g_bench = nullptr;
bool g_failed = false;  // after one failure the rest is skipped (a broken bake costs minutes)

enum class From { golden, layer };

Result<void> prepare(Side& side) {
  if (side.guest) return {};
  KILN_ASSIGN_OR_RETURN(auto g, BenchGuest::create(side.options));
  side.guest = std::make_unique<BenchGuest>(std::move(g));
  fmt::print(stderr, "bench: {}: {}, golden {}\n", side.label, side.guest->engine().identity(),
             side.guest->golden().id());
  return {};
}

// One restore -> first exec on one side; its steps go into the samples as "<side>/<from>: <step>".
Result<double> one_run(Side& side, From from) {
  auto& b = *g_bench;
  KILN_TRY(prepare(side));
  if (from == From::layer && !side.layer) {
    KILN_ASSIGN_OR_RETURN(auto layer, side.guest->payload_layer(b.payload, "trivial_static"));
    side.layer = std::move(layer);
  }
  b.timings.take();
  const auto& snap = from == From::golden ? side.guest->golden() : *side.layer;
  KILN_ASSIGN_OR_RETURN(auto run, restore_and_run(*side.guest, snap, from == From::golden ? b.payload : runner::Payload{},
                                                  b.request));
  const std::string name = fmt::format("{}/{}", side.prefix, from == From::golden ? "golden" : "layer");
  b.samples.add(name, run.ms);
  b.samples.add_all(b.timings.take(), name + ": ");
  return run.ms;
}

void register_pair(From from, int runs) {
  const char* name = from == From::golden ? "restore_to_first_exec/from_golden_binary_shipped"
                                          : "restore_to_first_exec/from_payload_layer";
  // One repetition = the kvm engine then the qemu engine, so drift in the lab hits both.
  // Manual time is the kvm engine's; the counters hold both and their ratio.
  benchmark::RegisterBenchmark(name,
                               [from](benchmark::State& state) {
                                 for (auto _ : state) {
                                   if (g_failed) {
                                     state.SkipWithError("skipped after an earlier error");
                                     break;
                                   }
                                   auto k = one_run(g_bench->kvm, from);
                                   auto q = k ? one_run(g_bench->qemu, from) : Result<double>(k.error());
                                   if (!q) {
                                     fmt::print(stderr, "bench: error: {}\n", q.error().message);
                                     g_failed = true;
                                     state.SkipWithError(q.error().message.substr(0, 200).c_str());
                                     break;
                                   }
                                   state.SetIterationTime(*k / 1000.0);
                                   state.counters["kvm_ms"] = *k;
                                   state.counters["qemu_ms"] = *q;
                                   state.counters["kvm/qemu"] = *k / *q;
                                 }
                               })
      ->Iterations(1)
      ->Repetitions(runs)
      ->ReportAggregatesOnly(true)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

// The breakdown rows, in restore order; indented rows are parts of the row above.
constexpr std::pair<const char*, const char*> kKvmSteps[] = {
    {"kvm: restore: read and check state file", "read + check state file"},
    {"kvm: restore: map memory", "map memory (MAP_PRIVATE + overlays)"},
    {"kvm: create VM (irqchip, PIT)", "create VM (irqchip, PIT)"},
    {"kvm: KVM_CREATE_VM", "  of which KVM_CREATE_VM"},
    {"kvm: map guest memory into the VM", "map memory into the VM"},
    {"kvm: create vCPUs", "create vCPUs"},
    {"kvm: create devices", "create devices"},
    {"kvm: restore: set VM and vCPU state", "set VM and vCPU state"},
    {"kvm: restore vm: pit, clock, irqchip", "  VM: pit, clock, irqchip"},
    {"kvm: restore vcpu: cpuid", "  vCPU: cpuid"},
    {"kvm: restore vcpu: registers, xsave, lapic", "  vCPU: registers, xsave, lapic"},
    {"kvm: restore vcpu: msrs", "  vCPU: msrs"},
    {"kvm: restore: device state", "set device state"},
    {"kvm: restore: start vCPUs", "start vCPUs (run)"},
    {"kvm: restore", "= engine restore (to vCPUs running)"},
    {"kvm: vCPU 0 start -> first exit", "vCPU 0 start -> first exit"},
};
constexpr std::pair<const char*, const char*> kQemuSteps[] = {
    {"qemu: spawn", "spawn qemu"},
    {"qemu: connect QMP", "connect QMP"},
    {"qemu: connect agent socket", "connect agent socket"},
    {"qemu: restore: load state", "load state (migrate-incoming)"},
    {"qemu: restore: cont", "cont (run)"},
    {"qemu: restore", "= engine restore (to vCPUs running)"},
};
constexpr std::pair<const char*, const char*> kRunSteps[] = {
    {"sync + payload", "sync (+ payload) over the agent channel"},
    {"command", "exec -> exit of trivial_static"},
};

void print_breakdown(const char* from) {
  const auto& s = g_bench->samples;
  const std::string k = fmt::format("kvm/{}", from), q = fmt::format("qemu/{}", from);
  if (!s.has(k) || !s.has(q)) return;
  fmt::print("\n== restore -> first exec done, {}: medians in ms ({} runs each, interleaved) ==\n",
             std::string_view(from) == "golden" ? "from the golden, trivial_static shipped" : "from its payload layer",
             s.count(k));
  auto rows = [&](const std::string& side, const auto& steps) {
    for (const auto& [timer, label] : steps) {
      const auto n = side + ": " + timer;
      if (s.has(n)) fmt::print("  {:<44} {:8.2f}\n", label, s.median(n));
    }
  };
  fmt::print("{} ({})\n", g_bench->kvm.label, g_bench->kvm.guest->engine().identity());
  rows(k, kKvmSteps);
  rows(k, kRunSteps);
  fmt::print("  {:<44} {:8.2f}\n", "= restore -> first exec done", s.median(k));
  fmt::print("{} ({})\n", g_bench->qemu.label, g_bench->qemu.guest->engine().identity());
  rows(q, kQemuSteps);
  rows(q, kRunSteps);
  fmt::print("  {:<44} {:8.2f}\n", "= restore -> first exec done", s.median(q));
  const double rk = s.median(k + ": kvm: restore"), rq = s.median(q + ": qemu: restore");
  fmt::print("ratio kvm / qemu, engine restore (target <= 0.2): {:.3f}  ({:.2f} / {:.2f} ms)\n", ratio(rk, rq), rk, rq);
  fmt::print("ratio kvm / qemu, restore -> first exec done:     {:.3f}  ({:.2f} / {:.2f} ms)\n",
             ratio(s.median(k), s.median(q)), s.median(k), s.median(q));
}

bool take_runs(std::string_view arg, int& runs) {
  if (!arg.starts_with("--runs=")) return false;
  arg.remove_prefix(7);
  auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), runs);
  if (ec != std::errc() || end != arg.data() + arg.size() || runs < 1) {
    std::fprintf(stderr, "kvm_restore_bench: --runs needs a positive whole number\n");
    std::exit(2);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 10, kept = 1;
  for (int i = 1; i < argc; ++i)
    if (!take_runs(argv[i], runs)) argv[kept++] = argv[i];
  argc = kept;
  interrupt::install();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  // Before the scratch cache: the per-boot verdict lives in the real one.
  auto probe = vmm::probe_kvm();
  if (!probe || vmm::kvm_marked_unusable()) {
    fmt::print(stderr, "kvm_restore_bench: KVM cannot run kiln's guests here ({}); run it in the nested-KVM lab:\n"
               "  tests/lab/kvm-lab -- {}\n",
               probe ? vmm::kvm_unusable_reason().value_or("marked unusable") : probe.error().message, argv[0]);
    return 2;
  }
  auto cache = ScratchCache::create();
  if (!cache) {
    fmt::print(stderr, "kvm_restore_bench: {}\n", cache.error().message);
    return 1;
  }
  Bench bench;
  g_bench = &bench;
  if (auto r = bench.payload.add_executable_with_closure(KILN_TRIVIAL_STATIC); !r) {
    fmt::print(stderr, "kvm_restore_bench: {}\n", r.error().message);
    return 1;
  }
  bench.request.argv = {KILN_TRIVIAL_STATIC};
  register_pair(From::golden, runs);
  register_pair(From::layer, runs);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  print_breakdown("golden");
  print_breakdown("layer");
  std::fflush(stdout);
  bench.kvm.guest.reset();
  bench.qemu.guest.reset();
  return 0;
}
