// Part 1 of layers_bench: host memory (RSS and PSS of every VMM process, or what this
// process grew by when the kvm engine hosts the VMs in it) and disk bytes
// for N idle VMs restored at once, from the golden (payload shipped into each) vs from
// one payload layer; and N different payload layers stored as diffs vs as full images.
#include "bench/host_usage.h"
#include "bench/layers_bench.h"
#include "common/fs.h"
#include "common/unique_fd.h"
#include "snapshot/layout.h"
#include "snapshot/sparse_io.h"

#include <fmt/format.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

namespace kiln::bench {
namespace {

namespace layout = snapshot::layout;

// qemu-system-x86_64 as /proc/<pid>/comm shows it (15 characters at most).
constexpr std::string_view kVmmComm = "qemu-system";

runner::RunRequest fleet_request(const LayersBenchConfig& c) {
  runner::RunRequest r;
  r.argv = {c.gtest_cases.string(), "--gtest_filter=Suite.Case1"};
  return r;
}

// Bytes of a layer that are its diff (state, index, pages, metadata), not its flat cache.
uint64_t diff_bytes(const std::filesystem::path& layer_dir) {
  return allocated_bytes(layer_dir) - allocated_bytes(layer_dir / layout::kFlatFile) -
         allocated_bytes(layer_dir / layout::kFlatStampFile);
}

// What the layer would take as a full snapshot: its complete RAM image (sparse) and state.
uint64_t full_bytes(const std::filesystem::path& layer_dir) {
  return allocated_bytes(layer_dir / layout::kFlatFile) + allocated_bytes(layer_dir / layout::kStateFile);
}

// Bytes of a layer's flat file that are its own: with reflinks (XFS, btrfs) the rest is
// shared with the golden's memory; elsewhere all of it.
uint64_t owned_flat_bytes(const std::filesystem::path& layer_dir) {
  const auto flat = layer_dir / layout::kFlatFile;
  UniqueFd fd(::open(flat.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return 0;
  auto owned = snapshot::sparse::owned_bytes(fd.get(), flat);
  return owned ? *owned : allocated_bytes(flat);
}

// N VMs from `snap`, all alive, each after one run of the gtest binary; then the sum of
// their VMM processes' memory. `tag` names the samples ("golden" / "layer").
Result<double> measure_fleet(const std::string& tag, const snapshot::Snapshot& snap, const runner::Payload& shipped) {
  auto& bench = layers_bench();
  KILN_ASSIGN_OR_RETURN(auto* guest, bench.guest());
  const int n = bench.config().vms;
  // The kvm engine runs every VM inside this process (no VMM child per VM): what the
  // fleet costs is what this process grew by.
  const bool in_process = bench.config().engine.name == "kvm";
  ProcessMemory before;
  if (in_process) {
    KILN_ASSIGN_OR_RETURN(before, process_memory(::getpid()));
  }
  std::vector<std::unique_ptr<vmm::Vm>> vms;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    KILN_ASSIGN_OR_RETURN(auto run, restore_and_run(*guest, snap, shipped, fleet_request(bench.config()), true));
    vms.push_back(std::move(run.vm));
  }
  const double all_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::this_thread::sleep_for(std::chrono::seconds(1));  // let the last ones settle into idle
  ProcessMemory sum;
  if (in_process) {
    KILN_ASSIGN_OR_RETURN(auto after, process_memory(::getpid()));
    auto grew = [](uint64_t a, uint64_t b) { return a > b ? a - b : 0; };
    sum = {.rss = grew(after.rss, before.rss),
           .pss = grew(after.pss, before.pss),
           .uss = grew(after.uss, before.uss),
           .pss_file = grew(after.pss_file, before.pss_file)};
  } else {
    auto pids = child_processes(kVmmComm);
    if (pids.size() != vms.size())
      return make_error("expected {} {} processes (one per VM), found {}", vms.size(), kVmmComm, pids.size());
    for (pid_t pid : pids) {
      KILN_ASSIGN_OR_RETURN(auto m, process_memory(pid));
      sum.rss += m.rss;
      sum.pss += m.pss;
      sum.uss += m.uss;
      sum.pss_file += m.pss_file;
    }
  }
  for (auto& vm : vms) vm->destroy();
  auto& s = bench.samples();
  s.add("memory/" + tag + "/rss", static_cast<double>(sum.rss));
  s.add("memory/" + tag + "/pss", static_cast<double>(sum.pss));
  s.add("memory/" + tag + "/uss", static_cast<double>(sum.uss));
  s.add("memory/" + tag + "/pss file", static_cast<double>(sum.pss_file));
  s.add("memory/" + tag + "/restore all ms", all_ms);
  return all_ms;
}

Result<runner::Payload> payload_of(const std::filesystem::path& exe) {
  runner::Payload p;
  KILN_TRY(p.add_executable_with_closure(exe));
  return p;
}

Result<double> fleet_from_golden(benchmark::State& state) {
  auto& bench = layers_bench();
  KILN_ASSIGN_OR_RETURN(auto* guest, bench.guest());
  KILN_ASSIGN_OR_RETURN(auto payload, payload_of(bench.config().gtest_cases));
  KILN_ASSIGN_OR_RETURN(double ms, measure_fleet("golden", guest->golden(), payload));
  const auto disk = allocated_bytes(guest->golden().dir);
  bench.samples().add("memory/golden/disk", static_cast<double>(disk));
  state.counters["RSS_MiB"] = bench.samples().value("memory/golden/rss") / kMiB;
  state.counters["PSS_MiB"] = bench.samples().value("memory/golden/pss") / kMiB;
  state.counters["disk_MiB"] = static_cast<double>(disk) / kMiB;
  return ms;
}

Result<double> fleet_from_layer(benchmark::State& state) {
  auto& bench = layers_bench();
  KILN_ASSIGN_OR_RETURN(auto* guest, bench.guest());
  KILN_ASSIGN_OR_RETURN(auto payload, payload_of(bench.config().gtest_cases));
  KILN_ASSIGN_OR_RETURN(auto layer, guest->payload_layer(payload, bench.config().gtest_cases.filename().string()));
  KILN_ASSIGN_OR_RETURN(double ms, measure_fleet("layer", layer, runner::Payload{}));
  const auto golden_disk = allocated_bytes(guest->golden().dir);
  auto& s = bench.samples();
  s.add("memory/layer/disk", static_cast<double>(golden_disk + allocated_bytes(layer.dir)));
  s.add("memory/layer/disk diff", static_cast<double>(diff_bytes(layer.dir)));
  s.add("memory/layer/disk flat", static_cast<double>(allocated_bytes(layer.dir / layout::kFlatFile)));
  state.counters["RSS_MiB"] = s.value("memory/layer/rss") / kMiB;
  state.counters["PSS_MiB"] = s.value("memory/layer/pss") / kMiB;
  state.counters["disk_MiB"] = s.value("memory/layer/disk") / kMiB;
  return ms;
}

// A copy of `exe` with a trailer after its ELF image (the loader ignores it): a
// different file, so a different payload and its own layer, as a rebuilt test would be.
Result<std::filesystem::path> variant_of(const std::filesystem::path& exe, int i) {
  const auto dir = fs::cache_root() / "bench-variants";
  KILN_TRY(fs::make_dirs(dir));
  const auto path = dir / fmt::format("{}_{}", exe.filename().string(), i);
  std::error_code ec;
  std::filesystem::copy_file(exe, path, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) return make_error("cannot copy {} to {}: {}", exe.string(), path.string(), ec.message());
  std::ofstream(path, std::ios::app) << fmt::format("\nkiln bench variant {}\n", i);
  if (::chmod(path.c_str(), 0755) != 0) return make_error("cannot chmod {}", path.string());
  return path;
}

Result<double> dedup(benchmark::State& state) {
  auto& bench = layers_bench();
  KILN_ASSIGN_OR_RETURN(auto* guest, bench.guest());
  uint64_t diffs = 0, fulls = 0, flats = 0, owned_flats = 0, payload_bytes = 0;
  double build_ms = 0;
  for (int i = 0; i < bench.config().vms; ++i) {
    KILN_ASSIGN_OR_RETURN(auto exe, variant_of(bench.config().gtest_cases, i));
    KILN_ASSIGN_OR_RETURN(auto payload, payload_of(exe));
    bench.timings().take();
    KILN_ASSIGN_OR_RETURN(auto layer, guest->payload_layer(payload, exe.filename().string()));
    build_ms += bench.timings().take()["layer: build"];
    diffs += diff_bytes(layer.dir);
    fulls += full_bytes(layer.dir);
    flats += allocated_bytes(layer.dir / layout::kFlatFile);
    owned_flats += owned_flat_bytes(layer.dir);
    payload_bytes += payload.total_bytes();
  }
  auto& s = bench.samples();
  s.add("dedup/diff", static_cast<double>(diffs));
  s.add("dedup/full", static_cast<double>(fulls));
  s.add("dedup/flat", static_cast<double>(flats));
  s.add("dedup/flat owned", static_cast<double>(owned_flats));
  s.add("dedup/payload", static_cast<double>(payload_bytes));
  s.add("dedup/golden", static_cast<double>(allocated_bytes(guest->golden().dir)));
  state.counters["diffs_MiB"] = static_cast<double>(diffs) / kMiB;
  state.counters["full_MiB"] = static_cast<double>(fulls) / kMiB;
  state.counters["dedup_x"] = ratio(static_cast<double>(fulls), static_cast<double>(diffs));
  return build_ms;
}

void register_one(const std::string& name, Result<double> (*body)(benchmark::State&)) {
  benchmark::RegisterBenchmark(name.c_str(),
                               [body](benchmark::State& state) {
                                 for (auto _ : state) {
                                   auto ms = body(state);
                                   if (!ms) return fail(state, ms.error());
                                   state.SetIterationTime(*ms / 1000.0);
                                 }
                               })
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

}  // namespace

void register_memory_benchmarks() {
  const int n = layers_bench().config().vms;
  // Manual time: restoring all N (part 1) / building all N layers (dedup).
  register_one(fmt::format("memory/{}vms/from_golden", n), fleet_from_golden);
  register_one(fmt::format("memory/{}vms/from_payload_layer", n), fleet_from_layer);
  register_one(fmt::format("memory/{}_different_layers/dedup", n), dedup);
}

void print_memory_summary() {
  auto& b = layers_bench();
  const auto& s = b.samples();
  const int n = b.config().vms;
  auto mib = [&s](const std::string& name) { return s.value(name) / kMiB; };
  if (s.has("memory/golden/pss") || s.has("memory/layer/pss")) {
    fmt::print("\n== {} idle VMs alive at once, each after one `{} --gtest_filter=Suite.Case1` ==\n", n,
               b.config().gtest_cases.filename().string());
    fmt::print("{:<34} {:>10} {:>10} {:>10} {:>10} {:>14}\n", "restored from", "sum RSS", "sum PSS", "PSS / VM",
               "USS / VM", "store on disk");
    for (auto [tag, label] : {std::pair{"golden", "golden (payload shipped to each)"},
                              std::pair{"layer", "one payload layer"}}) {
      const std::string p = std::string("memory/") + tag + "/";
      if (!s.has(p + "pss")) continue;
      fmt::print("{:<34} {:>6.0f} MiB {:>6.0f} MiB {:>6.1f} MiB {:>6.1f} MiB {:>10.0f} MiB\n", label, mib(p + "rss"),
                 mib(p + "pss"), mib(p + "pss") / n, mib(p + "uss") / n, mib(p + "disk"));
    }
    if (s.has("memory/golden/pss") && s.has("memory/layer/pss"))
      fmt::print("golden / layer: RSS {:.2f}x, PSS {:.2f}x, USS {:.2f}x, disk {:.2f}x\n",
                 ratio(s.value("memory/golden/rss"), s.value("memory/layer/rss")),
                 ratio(s.value("memory/golden/pss"), s.value("memory/layer/pss")),
                 ratio(s.value("memory/golden/uss"), s.value("memory/layer/uss")),
                 ratio(s.value("memory/golden/disk"), s.value("memory/layer/disk")));
    if (b.config().engine.name == "kvm")
      fmt::print("(kvm engine: every VM lives in this process, so the figures are what the process grew by with\n"
                 " the {} VMs; KVM's kernel-side memory per VM (vCPU, nested page tables) is not in them)\n",
                 n);
    fmt::print("(USS = private pages: what one more idle VM adds. Of the PSS, file-backed (snapshot RAM in the page\n"
               " cache, binaries): golden {:.0f} MiB, layer {:.0f} MiB)\n",
               mib("memory/golden/pss file"), mib("memory/layer/pss file"));
    if (s.has("memory/layer/disk diff") && s.value("memory/layer/disk flat") == 0)
      fmt::print("(the layer: {:.1f} MiB of diff over the golden, mapped over it at restore: no flat image)\n",
                 mib("memory/layer/disk diff"));
    else if (s.has("memory/layer/disk diff"))
      fmt::print("(the layer: {:.1f} MiB of diff over the golden, plus a {:.0f} MiB flat image the qemu engine "
                 "restores from; gc evicts flat images first)\n",
                 mib("memory/layer/disk diff"), mib("memory/layer/disk flat"));
  }
  if (s.has("dedup/diff")) {
    fmt::print("\n== {} different payload layers (copies of {} that differ by a trailer) ==\n", n,
               b.config().gtest_cases.filename().string());
    fmt::print("stored as diffs against the golden: {:8.1f} MiB  ({:.1f} MiB each; payloads {:.1f} MiB each)\n",
               mib("dedup/diff"), mib("dedup/diff") / n, mib("dedup/payload") / n);
    fmt::print("as full snapshots (RAM image+state): {:8.1f} MiB  ({:.1f} MiB each)\n", mib("dedup/full"),
               mib("dedup/full") / n);
    fmt::print("dedup ratio full / diff:            {:8.1f}x  (golden itself: {:.0f} MiB, stored once)\n",
               ratio(s.value("dedup/full"), s.value("dedup/diff")), mib("dedup/golden"));
    if (s.value("dedup/flat") > 0) {
      fmt::print("(this engine restores from flat images, so the store also keeps {:.1f} MiB of them: derived,\n"
                 " evicted first by `kiln snapshots gc`; the kvm engine maps the diffs and keeps none)\n",
                 mib("dedup/flat"));
      // Unique extents (FIEMAP), not du: on XFS or btrfs a flat image is a reflink of the
      // golden's memory plus the layer's pages (snapshot::write_shared_flat_image).
      fmt::print("flat images' own extents (shared with neither the golden nor the diffs): {:.1f} MiB ({:.1f} MiB "
                 "each)\n",
                 mib("dedup/flat owned"), mib("dedup/flat owned") / n);
      fmt::print("disk per payload layer, diff + own flat extents: {:.1f} MiB (the cache dir's filesystem: {})\n",
                 (mib("dedup/diff") + mib("dedup/flat owned")) / n,
                 s.value("dedup/flat owned") < s.value("dedup/flat") / 2 ? "reflinks" : "no reflinks");
    }
  }
}

}  // namespace kiln::bench
