// Cold boot to agent-ready vs restore to first exec of a trivial static binary,
// measured in one run on this host, with the medians and their ratio printed.
//   build/default/bench/restore_bench [--benchmark_repetitions=N]
#include "common/fs.h"
#include "common/log.h"
#include "runner/agent_client.h"
#include "runner/golden.h"
#include "runner/guest.h"
#include "runner/interrupt.h"
#include "runner/payload.h"
#include "runner/run_in_vm.h"
#include "snapshot/store.h"

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>

using namespace kiln;

namespace {

struct Setup {
  runner::PreparedGuest guest;
  std::unique_ptr<snapshot::Store> store;
  runner::Golden golden;
};

Setup& setup() {
  static Setup* s = [] {
    auto* st = new Setup;
    auto guest = runner::prepare_guest({});
    if (!guest) {
      std::fprintf(stderr, "bench: %s\n", guest.error().message.c_str());
      std::exit(1);
    }
    st->guest = *guest;
    st->store = std::make_unique<snapshot::Store>(fs::cache_root() / "snapshots");
    runner::Progress progress;
    auto golden = runner::ensure_golden(*st->store, st->guest, {}, progress);
    if (!golden) {
      std::fprintf(stderr, "bench: %s\n", golden.error().message.c_str());
      std::exit(1);
    }
    st->golden = std::move(*golden);
    return st;
  }();
  return *s;
}

std::map<std::string, std::vector<double>> g_samples;

void record(benchmark::State& state, const std::string& name, double ms) {
  state.SetIterationTime(ms / 1000.0);
  g_samples[name].push_back(ms);
}

void BM_ColdBootToAgentReady(benchmark::State& state) {
  auto& s = setup();
  for (auto _ : state) {
    auto tmp = fs::TempDir::create(fs::cache_root() / "bench", "cold-");
    vmm::SnapshotFiles files{tmp->path() / "state.bin", tmp->path() / "memory.ram"};
    auto start = Clock::now();
    auto vm = s.golden.engine->boot(s.guest.spec, files);
    if (!vm) return state.SkipWithError(vm.error().message.c_str());
    runner::AgentClient agent((*vm)->agent_fd(), [&] { return (*vm)->vmm_exited(); });
    auto hello = agent.handshake(Clock::now() + std::chrono::seconds(120));
    if (!hello) return state.SkipWithError(hello.error().message.c_str());
    record(state, "cold boot -> agent ready",
           std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    (*vm)->destroy();
  }
}

void BM_RestoreToFirstExec(benchmark::State& state) {
  auto& s = setup();
  runner::Payload payload;
  if (auto r = payload.add_executable_with_closure(KILN_TRIVIAL_STATIC); !r)
    return state.SkipWithError(r.error().message.c_str());
  runner::RunRequest request;
  request.argv = {KILN_TRIVIAL_STATIC};
  for (auto _ : state) {
    auto start = Clock::now();
    auto vm = s.golden.engine->restore(s.guest.spec, s.golden.snapshot.files());
    if (!vm) return state.SkipWithError(vm.error().message.c_str());
    runner::AgentClient agent((*vm)->agent_fd(), [&vm] { return (*vm)->vmm_exited(); });
    auto outcome = runner::run_in_vm(agent, **vm, payload, request);
    if (!outcome || outcome->exit_code != 0) return state.SkipWithError("trivial binary did not exit 0");
    record(state, "restore -> first exec done",
           std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    (*vm)->destroy();
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : (v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2);
}

}  // namespace

BENCHMARK(BM_ColdBootToAgentReady)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1)->Repetitions(3);
BENCHMARK(BM_RestoreToFirstExec)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1)->Repetitions(10);

int main(int argc, char** argv) {
  interrupt::install();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  double cold = median(g_samples["cold boot -> agent ready"]);
  double restore = median(g_samples["restore -> first exec done"]);
  std::printf("\nengine: %s\n", setup().golden.engine->identity().c_str());
  std::printf("median cold boot -> agent ready:        %8.1f ms (%zu runs)\n", cold,
              g_samples["cold boot -> agent ready"].size());
  std::printf("median restore -> first exec (static):  %8.1f ms (%zu runs)\n", restore,
              g_samples["restore -> first exec done"].size());
  if (restore > 0) std::printf("restore is %.1fx faster than cold boot\n", cold / restore);
  return 0;
}
