// bench/layers_bench: see layers_bench.h and bench/README.md.
//   build/default/bench/layers_bench [--vms=N] [--runs=N] [--cold-runs=N] [--jobs=N]
//                                     [--engine=qemu|kvm] [--accel=tcg|kvm] [--benchmark_filter=REGEX]
#include "bench/layers_bench.h"

#include "bench/scratch_cache.h"
#include "runner/interrupt.h"

#include <fmt/format.h>

#include <charconv>
#include <cstdio>
#include <string_view>

namespace kiln::bench {
namespace {
LayersBench* g_bench = nullptr;
}  // namespace

LayersBench& layers_bench() { return *g_bench; }

Result<BenchGuest*> LayersBench::guest() {
  if (!guest_) {
    KILN_ASSIGN_OR_RETURN(auto g, BenchGuest::create(config_.engine));
    guest_ = std::make_unique<BenchGuest>(std::move(g));
    engine_identity_ = guest_->engine().identity();
    fmt::print(stderr, "bench: engine {}, golden {}\n", guest_->engine().identity(), guest_->golden().id());
  }
  return guest_.get();
}

void fail(benchmark::State& state, const Error& error) {
  fmt::print(stderr, "bench: error: {}\n", error.message);
  state.SkipWithError(error.message.substr(0, error.message.find('\n')).c_str());
}

}  // namespace kiln::bench

namespace {

// Takes "--name=N" out of argv (Google Benchmark rejects flags it does not know).
bool take_flag(std::string_view arg, std::string_view name, int& out) {
  if (!arg.starts_with(name) || arg.size() <= name.size() || arg[name.size()] != '=') return false;
  arg.remove_prefix(name.size() + 1);
  int v = 0;
  auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), v);
  if (ec != std::errc() || end != arg.data() + arg.size() || v < 1) {
    std::fprintf(stderr, "layers_bench: %.*s needs a positive whole number\n", static_cast<int>(name.size()),
                 name.data());
    std::exit(2);
  }
  out = v;
  return true;
}

bool take_string(std::string_view arg, std::string_view name, std::string& out) {
  if (!arg.starts_with(name) || arg.size() <= name.size() || arg[name.size()] != '=') return false;
  out = std::string(arg.substr(name.size() + 1));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kiln::bench;
  LayersBenchConfig config;
  config.kiln = KILN_BINARY;
  config.gtest_cases = KILN_GTEST_CASES;
  config.trivial_static = KILN_TRIVIAL_STATIC;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (take_flag(a, "--vms", config.vms) || take_flag(a, "--runs", config.runs) ||
        take_flag(a, "--cold-runs", config.cold_runs) || take_flag(a, "--jobs", config.jobs) ||
        take_string(a, "--engine", config.engine.name) || take_string(a, "--accel", config.engine.accel))
      continue;
    argv[kept++] = argv[i];
  }
  argc = kept;
  kiln::interrupt::install();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;

  auto cache = ScratchCache::create();
  if (!cache) {
    fmt::print(stderr, "layers_bench: {}\n", cache.error().message);
    return 1;
  }
  fmt::print(stderr, "bench: scratch cache {} (kernel and initramfs copied from {})\n", cache->root().string(),
             cache->copied_from().string());
  LayersBench bench(config);
  g_bench = &bench;
  register_memory_benchmarks();
  register_latency_benchmarks();
  register_suite_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  fmt::print("\n==== layers_bench: engine {}, measured in this one run ====\n", bench.engine_identity());
  print_memory_summary();
  print_latency_summary();
  print_suite_summary();
  std::fflush(stdout);
  bench.close();
  return 0;
}
