// bench/layers_bench (issue 6, item 6): what payload layers buy, measured in one run on
// one engine — host memory and disk of 20 VMs from one golden, restore latency from the
// golden vs a payload layer vs a cold boot, and a 50-case GoogleTest suite with and
// without layers. Each part is a Google Benchmark (so --benchmark_filter selects parts);
// the tables and ratios are printed at the end from the samples the parts recorded.
#pragma once

#include "bench/bench_guest.h"
#include "bench/samples.h"
#include "bench/timing_capture.h"
#include "common/result.h"

#include <benchmark/benchmark.h>

#include <filesystem>
#include <memory>
#include <string>

namespace kiln::bench {

struct LayersBenchConfig {
  int vms = 20;       ///< VMs alive at once (part 1) and different payload layers (dedup)
  int runs = 10;      ///< restores per latency case (part 2)
  int cold_runs = 3;  ///< cold boots per latency case (~3 s each under TCG)
  int jobs = 2;       ///< kiln runs at a time in the suite (part 3), like ctest -j2
  vmm::EngineOptions engine{.name = "qemu", .accel = "tcg"};
  std::filesystem::path kiln;            ///< the kiln binary (part 3)
  std::filesystem::path gtest_cases;     ///< bench/gtest_cases.cpp: 50 trivial cases
  std::filesystem::path trivial_static;  ///< bench/trivial_static.c
  std::filesystem::path dynamic_exe = "/bin/true";
};

/// What every part shares for the length of one bench run.
class LayersBench {
 public:
  explicit LayersBench(LayersBenchConfig config) : config_(std::move(config)) {}
  const LayersBenchConfig& config() const { return config_; }
  /// The guest and golden (baked on first use, outside any timing).
  Result<BenchGuest*> guest();
  /// "qemu-7.2.22/tcg" once the guest exists, else the engine options.
  std::string engine_identity() const {
    return engine_identity_.empty() ? config_.engine.name + "/" + config_.engine.accel : engine_identity_;
  }
  Samples& samples() { return samples_; }
  const Samples& samples() const { return samples_; }
  TimingCapture& timings() { return timings_; }
  /// Tear down the guest (before the scratch cache goes).
  void close() { guest_.reset(); }

 private:
  LayersBenchConfig config_;
  std::unique_ptr<BenchGuest> guest_;
  std::string engine_identity_;
  Samples samples_;
  TimingCapture timings_;
};

/// The bench of this run (set by main).
LayersBench& layers_bench();

/// Mark `state` failed with `error` (also printed: the table would only say "skipped").
void fail(benchmark::State& state, const Error& error);

void register_memory_benchmarks();   // bench/layers_memory.cpp
void print_memory_summary();
void register_latency_benchmarks();  // bench/layers_latency.cpp
void print_latency_summary();
void register_suite_benchmarks();    // bench/layers_suite.cpp
void print_suite_summary();

constexpr double kMiB = 1024.0 * 1024.0;

}  // namespace kiln::bench
