// Part 3 of layers_bench: 50 GoogleTest cases of one binary, each in its own VM as
// `kiln run -- gtest_cases --gtest_filter=Suite.CaseN`, `jobs` at a time like ctest -jN:
// total wall time with payload layers (the first run of the binary builds its layer, as
// after a rebuild; and with the layer already there) vs KILN_NO_LAYERS=1.
#include "bench/layers_bench.h"
#include "common/fs.h"
#include "common/subprocess.h"
#include "common/unique_fd.h"
#include "runner/interrupt.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <time.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>

namespace kiln::bench {
namespace {

constexpr int kCases = 50;  // TEST()s in bench/gtest_cases.cpp

enum class Variant { layers_first, layers_built, no_layers };
constexpr std::pair<Variant, const char*> kVariants[] = {{Variant::layers_first, "layers_first_run_builds_layer"},
                                                         {Variant::layers_built, "layers_already_built"},
                                                         {Variant::no_layers, "no_layers"}};

// A copy of the gtest binary made once per bench run: a file no layer exists for yet,
// as after a rebuild, so the first variant pays for building its layer.
Result<std::filesystem::path> suite_binary() {
  static std::optional<std::filesystem::path> made;
  if (made) return *made;
  const auto& src = layers_bench().config().gtest_cases;
  const auto path = fs::cache_root() / "bench-suite" / src.filename();
  KILN_TRY(fs::make_dirs(path.parent_path()));
  std::error_code ec;
  std::filesystem::copy_file(src, path, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) return make_error("cannot copy {} to {}: {}", src.string(), path.string(), ec.message());
  std::ofstream(path, std::ios::app) << fmt::format("\nkiln bench suite {}\n", ::getpid());
  if (::chmod(path.c_str(), 0755) != 0) return make_error("cannot chmod {}", path.string());
  made = path;
  return path;
}

// KILN_NO_LAYERS=1 for the kiln runs started while this lives (set in our environment,
// which the children inherit; the bench starts them from this one thread).
class NoLayersEnv {
 public:
  explicit NoLayersEnv(bool on) : on_(on) {
    if (on_) ::setenv("KILN_NO_LAYERS", "1", 1);
  }
  ~NoLayersEnv() {
    if (on_) ::unsetenv("KILN_NO_LAYERS");
  }
  NoLayersEnv(const NoLayersEnv&) = delete;
  NoLayersEnv& operator=(const NoLayersEnv&) = delete;

 private:
  bool on_;
};

struct Job {
  ChildProcess process;
  int case_number;
  std::filesystem::path log;
};

Result<Job> start_case(const std::filesystem::path& exe, int case_number, const std::filesystem::path& logs) {
  const auto& c = layers_bench().config();
  const auto log = logs / fmt::format("case{}.log", case_number);
  UniqueFd out(::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!out) return make_error("cannot create {}", log.string());
  SpawnOptions options;
  options.stdout_fd = out.get();
  options.stderr_fd = out.get();
  KILN_ASSIGN_OR_RETURN(auto child, ChildProcess::spawn({c.kiln.string(), "run", "--engine", c.engine.name, "--accel",
                                                         c.engine.accel, "--", exe.string(),
                                                         fmt::format("--gtest_filter=Suite.Case{}", case_number)},
                                                        options));
  return Job{std::move(child), case_number, log};
}

// All cases, `jobs` at a time; wall time in ms. Any case that fails fails the suite.
Result<double> run_suite(const std::filesystem::path& exe, int first_case, int last_case) {
  const int jobs = layers_bench().config().jobs;
  KILN_ASSIGN_OR_RETURN(auto logs, fs::TempDir::create(fs::cache_root(), "bench-suite-logs-"));
  std::vector<Job> running;
  int next = first_case;
  const auto start = std::chrono::steady_clock::now();
  while (next <= last_case || !running.empty()) {
    while (static_cast<int>(running.size()) < jobs && next <= last_case) {
      KILN_ASSIGN_OR_RETURN(auto job, start_case(exe, next++, logs.path()));
      running.push_back(std::move(job));
    }
    for (auto it = running.begin(); it != running.end();) {
      int status = 0;
      if (!it->process.poll_exited(&status)) {
        ++it;
        continue;
      }
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        auto out = fs::read_file(it->log, 1 << 20);
        return make_error("kiln run of Suite.Case{} {}:\n{}", it->case_number, describe_wait_status(status),
                          out ? *out : std::string("(no output)"));
      }
      it = running.erase(it);
    }
    if (interrupt::received()) return Error{"interrupted", ErrorKind::interrupted};
    timespec pause{0, 2'000'000};
    ::nanosleep(&pause, nullptr);
  }
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// The kiln runs must have restored the bench's golden: a second golden in the store
// means their key differed and the timing includes a bake.
Result<void> check_one_golden() {
  KILN_ASSIGN_OR_RETURN(auto* guest, layers_bench().guest());
  int goldens = 0;
  for (const auto& e : guest->store().list())
    if (e.meta && !e.meta->layer) ++goldens;
  if (goldens != 1)
    return make_error("the store holds {} golden snapshots after the suite, not 1: `kiln run` baked its own (its "
                      "engine options or guest differ from the bench's)",
                      goldens);
  return {};
}

Result<double> one_suite(Variant variant, const std::string& name) {
  auto& bench = layers_bench();
  KILN_TRY(bench.guest());  // the golden exists before the clock starts
  KILN_ASSIGN_OR_RETURN(auto exe, suite_binary());
  NoLayersEnv env(variant == Variant::no_layers);
  // Run alone (filtered), "already built" builds the layer first, untimed.
  if (variant == Variant::layers_built) KILN_TRY(run_suite(exe, 1, 1));
  KILN_ASSIGN_OR_RETURN(double ms, run_suite(exe, 1, kCases));
  KILN_TRY(check_one_golden());
  bench.samples().add(name, ms);
  return ms;
}

}  // namespace

void register_suite_benchmarks() {
  for (const auto& entry : kVariants) {
    const Variant variant = entry.first;
    const std::string name = fmt::format("suite{}/{}", kCases, entry.second);
    benchmark::RegisterBenchmark(name.c_str(),
                                 [variant, name](benchmark::State& state) {
                                   for (auto _ : state) {
                                     auto ms = one_suite(variant, name);
                                     if (!ms) return fail(state, ms.error());
                                     state.SetIterationTime(*ms / 1000.0);
                                     state.counters["per_case_ms"] = *ms / kCases;
                                   }
                                 })
        ->Iterations(1)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
}

void print_suite_summary() {
  const auto& b = layers_bench();
  const auto& s = b.samples();
  auto name = [](const char* variant) { return fmt::format("suite{}/{}", kCases, variant); };
  bool any = false;
  for (const auto& entry : kVariants) any = any || s.has(name(entry.second));
  if (!any) return;
  fmt::print("\n== {} GoogleTest cases of one binary, one `kiln run` each, {} at a time ==\n", kCases, b.config().jobs);
  for (const auto& entry : kVariants) {
    if (!s.has(name(entry.second))) continue;
    const double ms = s.value(name(entry.second));
    fmt::print("{:<36} {:8.1f} s total {:8.0f} ms per case (wall / cases)\n", entry.second, ms / 1000, ms / kCases);
  }
  const double none = s.value(name("no_layers"));
  fmt::print("no_layers / layers_first_run_builds_layer: {:.2f}x\n",
             ratio(none, s.value(name("layers_first_run_builds_layer"))));
  fmt::print("no_layers / layers_already_built:          {:.2f}x\n", ratio(none, s.value(name("layers_already_built"))));
}

}  // namespace kiln::bench
