// Part 2 of layers_bench: restore -> first exec done, for a trivial static binary and a
// dynamically linked one (with its libc closure): from the golden with the payload
// shipped, from the payload layer of that binary, and from a cold boot. Medians.
#include "bench/layers_bench.h"

#include <fmt/format.h>

#include <map>
#include <optional>

namespace kiln::bench {
namespace {

enum class Mode { golden, layer, cold };
constexpr std::pair<Mode, const char*> kModes[] = {
    {Mode::golden, "from_golden"}, {Mode::layer, "from_payload_layer"}, {Mode::cold, "cold_boot"}};

struct Prepared {
  runner::Payload payload;
  runner::RunRequest request;
  std::optional<snapshot::Snapshot> layer;
};

// "static" / "dynamic" -> its payload, request and (once built) layer.
std::map<std::string, Prepared> g_prepared;

std::filesystem::path exe_of(const std::string& kind) {
  const auto& c = layers_bench().config();
  return kind == "static" ? c.trivial_static : c.dynamic_exe;
}

Result<Prepared*> prepared(const std::string& kind) {
  auto it = g_prepared.find(kind);
  if (it != g_prepared.end()) return &it->second;
  Prepared p;
  KILN_TRY(p.payload.add_executable_with_closure(exe_of(kind)));
  p.request.argv = {exe_of(kind).string()};
  return &g_prepared.emplace(kind, std::move(p)).first->second;
}

Result<double> one_run(const std::string& kind, Mode mode, const std::string& name) {
  auto& bench = layers_bench();
  KILN_ASSIGN_OR_RETURN(auto* guest, bench.guest());
  KILN_ASSIGN_OR_RETURN(auto* p, prepared(kind));
  if (mode == Mode::layer && !p->layer) {
    KILN_ASSIGN_OR_RETURN(auto layer, guest->payload_layer(p->payload, exe_of(kind).filename().string()));
    p->layer = std::move(layer);
  }
  bench.timings().take();  // only this run's steps
  TimedRun run;
  switch (mode) {
    case Mode::golden: {
      KILN_ASSIGN_OR_RETURN(run, restore_and_run(*guest, guest->golden(), p->payload, p->request));
      break;
    }
    case Mode::layer: {
      KILN_ASSIGN_OR_RETURN(run, restore_and_run(*guest, *p->layer, runner::Payload{}, p->request));
      break;
    }
    case Mode::cold: {
      KILN_ASSIGN_OR_RETURN(run, cold_boot_and_run(*guest, p->payload, p->request));
      break;
    }
  }
  bench.samples().add(name, run.ms);
  bench.samples().add_all(bench.timings().take(), name + ": ");
  return run.ms;
}

// The steps worth a row in the breakdown, as the engines and the runner name their timers.
constexpr const char* kSteps[] = {"qemu: boot", "kvm: boot", "bench: boot -> agent ready", "qemu: restore", "kvm: restore", "sync + payload",
                                  "command"};

}  // namespace

void register_latency_benchmarks() {
  const auto& c = layers_bench().config();
  for (const std::string kind : {"static", "dynamic"}) {
    for (const auto& entry : kModes) {
      const Mode mode = entry.first;
      const std::string name = fmt::format("latency/{}/{}", kind, entry.second);
      benchmark::RegisterBenchmark(name.c_str(),
                                   [kind, mode, name](benchmark::State& state) {
                                     for (auto _ : state) {
                                       auto ms = one_run(kind, mode, name);
                                       if (!ms) return fail(state, ms.error());
                                       state.SetIterationTime(*ms / 1000.0);
                                     }
                                   })
          ->Iterations(1)
          ->Repetitions(mode == Mode::cold ? c.cold_runs : c.runs)
          ->ReportAggregatesOnly(true)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

void print_latency_summary() {
  const auto& s = layers_bench().samples();
  auto name = [](const std::string& kind, const char* mode) { return fmt::format("latency/{}/{}", kind, mode); };
  bool any = false;
  for (const std::string kind : {"static", "dynamic"})
    for (auto [mode, mode_name] : kModes) any = any || s.has(name(kind, mode_name));
  if (!any) return;
  fmt::print("\n== restore -> first exec done, medians in ms (runs) ==\n");
  for (const std::string kind : {"static", "dynamic"}) {
    auto it = g_prepared.find(kind);
    if (it != g_prepared.end())
      fmt::print("{}: {} ({} payload entries, {:.1f} MiB)\n", kind, exe_of(kind).string(),
                 it->second.payload.entries().size(), static_cast<double>(it->second.payload.total_bytes()) / kMiB);
  }
  fmt::print("{:<36} {:>16} {:>16}\n", "", "static", "dynamic");
  for (auto [mode, mode_name] : kModes) {
    fmt::print("{:<36}", mode_name);
    for (const std::string kind : {"static", "dynamic"}) {
      const auto n = name(kind, mode_name);
      fmt::print(" {:>16}", s.has(n) ? fmt::format("{:.0f} ({})", s.median(n), s.count(n)) : "-");
    }
    fmt::print("\n");
    for (const char* step : kSteps) {
      const std::string key = std::string(": ") + step;
      if (!s.has(name("static", mode_name) + key) && !s.has(name("dynamic", mode_name) + key)) continue;
      fmt::print("  {:<34}", step);
      for (const std::string kind : {"static", "dynamic"}) {
        const auto n = name(kind, mode_name) + key;
        fmt::print(" {:>16}", s.has(n) ? fmt::format("{:.0f}", s.median(n)) : "-");
      }
      fmt::print("\n");
    }
  }
  auto ratio_row = [&](const char* label, const char* a, const char* b) {
    fmt::print("{:<36}", label);
    for (const std::string kind : {"static", "dynamic"}) {
      const double r = ratio(s.median(name(kind, a)), s.median(name(kind, b)));
      fmt::print(" {:>16}", r > 0 ? fmt::format("{:.2f}x", r) : "-");
    }
    fmt::print("\n");
  };
  ratio_row("cold boot / payload layer", "cold_boot", "from_payload_layer");
  ratio_row("golden (shipped) / payload layer", "from_golden", "from_payload_layer");
  ratio_row("cold boot / golden (shipped)", "cold_boot", "from_golden");
}

}  // namespace kiln::bench
