// Payload layers and fixture snapshots end to end on real VMs (issue 6): built once,
// reused, rebuilt when what they hold changes, isolated per test, and never half
// visible when kiln dies while saving one.
#include "vm_test_support.h"

#include "common/fs.h"
#include "common/unique_fd.h"
#include "common/subprocess.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <thread>

using namespace kiln::vmtest;
namespace stdfs = std::filesystem;

namespace {

constexpr const char* kBuilt = "(payload layer)";             // progress: "placing the payload of X once (payload layer)"
constexpr const char* kNotSent = "is in the layer: not sending it";
constexpr const char* kSetupRan = "running the setup command once";


std::vector<std::string> run_args(const std::vector<std::string>& opts, const std::vector<std::string>& command) {
  std::vector<std::string> args = {"run", "-v"};
  args.insert(args.end(), opts.begin(), opts.end());
  args.push_back("--");
  args.insert(args.end(), command.begin(), command.end());
  return args;
}

/// Layers (and golden) published in the store: directories with a metadata.json.
/// A directory without one would be a half layer.
struct StoreView {
  int published = 0;
  int half = 0;
};
StoreView view(const PrivateCache& cache) {
  StoreView v;
  for (const auto& dir : cache.snapshots()) (stdfs::exists(dir / "metadata.json") ? v.published : v.half)++;
  return v;
}

/// A private copy of the probe: tests change it to play "rebuilt executable".
stdfs::path copy_probe(const PrivateCache& cache, const std::string& name) {
  stdfs::path exe = cache.path() / name;
  stdfs::copy_file(probe(), exe);
  return exe;
}

/// Append bytes to an ELF file: it still runs (the loader ignores trailing data), but its
/// contents, and so its payload digest, changed.
void rebuild(const stdfs::path& exe, const std::string& marker) {
  std::ofstream(exe, std::ios::app | std::ios::binary) << marker;
}

/// Start `kiln_binary run -- exe exit CODE` on `cache` with `env_var` (K=V) set, stderr to `log`.
kiln::Result<kiln::ChildProcess> spawn_run(const std::string& kiln_binary, const PrivateCache& cache,
                                           const std::string& env_var, const stdfs::path& exe, int code,
                                           const std::string& log) {
  auto argv = kiln_argv({"run", "--", exe.string(), "exit", std::to_string(code)}, cache, {env_var});
  std::replace(argv.begin(), argv.end(), std::string(KILN_BINARY), kiln_binary);
  kiln::UniqueFd err(::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  kiln::SpawnOptions o;
  o.stderr_fd = err.get();
  o.own_process_group = false;
  return kiln::ChildProcess::spawn(argv, o);
}

}  // namespace

TEST(Layers, PayloadLayerIsBuiltOnceAndReused) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  const auto exe = copy_probe(cache, "layer_probe").string();
  auto first = run_kiln(run_args({}, {exe, "exit", "7"}), cache);
  EXPECT_EQ(first.exit_code, 7) << first.err;
  EXPECT_EQ(count(first.err, kBuilt), 1) << first.err;
  // The first run itself restores the new layer: it does not send the payload either.
  EXPECT_EQ(count(first.err, kNotSent), 1) << first.err;
  EXPECT_EQ(view(cache).published, 2);  // golden + the payload layer

  for (int i = 0; i < 2; ++i) {
    // With --env: the environment is not part of the payload layer.
    auto again = run_kiln(run_args({"--env", "KILN_LAYER_VAR=v" + std::to_string(i)}, {exe, "env", "KILN_LAYER_VAR"}),
                     cache);
    EXPECT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(again.out, "v" + std::to_string(i) + "\n");
    EXPECT_EQ(count(again.err, kBuilt), 0) << again.err;
    EXPECT_EQ(count(again.err, kNotSent), 1) << again.err;
  }
  EXPECT_EQ(view(cache).published, 2);

  // --no-layers (and KILN_NO_LAYERS=1) ship the payload: no layer lookup, no new layer.
  auto plain = run_kiln(run_args({"--no-layers"}, {exe, "exit", "3"}), cache);
  EXPECT_EQ(plain.exit_code, 3) << plain.err;
  EXPECT_NE(plain.err.find("sending the payload"), std::string::npos) << plain.err;
  EXPECT_EQ(count(plain.err, kNotSent), 0);
  EXPECT_EQ(view(cache).published, 2);
}

TEST(Layers, NoLayersEnvironmentVariableShipsThePayload) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  const auto exe = copy_probe(cache, "env_probe").string();
  // KILN_NO_LAYERS is read from kiln's own environment, not passed to the guest.
  auto off = run_kiln(run_args({}, {exe, "exit", "5"}), cache, {"KILN_NO_LAYERS=1"});
  EXPECT_EQ(off.exit_code, 5) << off.err;
  EXPECT_NE(off.err.find("sending the payload"), std::string::npos) << off.err;
  EXPECT_EQ(view(cache).published, 1) << "KILN_NO_LAYERS=1 still built a layer";
}

TEST(Layers, RebuiltExecutableOrChangedFileGetsANewLayer) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  const auto exe = copy_probe(cache, "rebuilt_probe");
  const auto data = cache.path() / "data.txt";
  ASSERT_TRUE(kiln::fs::write_file_atomic(data, "first\n"));
  auto a = run_kiln(run_args({"--file", data.string()}, {exe.string(), "cat", data.string()}), cache);
  EXPECT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, "first\n");
  EXPECT_EQ(count(a.err, kBuilt), 1) << a.err;

  rebuild(exe, "rebuilt-1");
  auto b = run_kiln(run_args({"--file", data.string()}, {exe.string(), "cat", data.string()}), cache);
  EXPECT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(count(b.err, kBuilt), 1) << "a rebuilt executable must get a new layer:\n" << b.err;

  // A data file's new contents are a new payload too: the test must see them.
  ASSERT_TRUE(kiln::fs::write_file_atomic(data, "second\n"));
  auto c = run_kiln(run_args({"--file", data.string()}, {exe.string(), "cat", data.string()}), cache);
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out, "second\n") << "a stale payload layer was restored";
  EXPECT_EQ(count(c.err, kBuilt), 1) << c.err;
  EXPECT_EQ(view(cache).published, 4);
}

TEST(Layers, RebakedGoldenRebuildsTheLayerWithAMessage) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  const auto exe = copy_probe(cache, "rebake_probe").string();
  ASSERT_EQ(run_kiln(run_args({}, {exe, "exit", "0"}), cache).exit_code, 0);
  ASSERT_EQ(run_kiln({"bake", "--force"}, cache).exit_code, 0);

  auto r = run_kiln({"run", "--", exe, "exit", "9"}, cache);  // not -v: the message is info level
  EXPECT_EQ(r.exit_code, 9) << r.err;
  EXPECT_EQ(count(r.err, "is unusable ("), 1) << r.err;
  EXPECT_EQ(count(r.err, "rebuilding it"), 1) << r.err;
  auto quiet = run_kiln({"run", "--", exe, "exit", "0"}, cache);
  EXPECT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(quiet.err, "") << "the rebuilt layer was not reused";
}

TEST(Layers, CorruptLayerIsRebuiltWithAMessage) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  const auto exe = copy_probe(cache, "corrupt_probe").string();
  ASSERT_EQ(run_kiln(run_args({}, {exe, "exit", "0"}), cache).exit_code, 0);
  int corrupted = 0;
  for (const auto& dir : cache.snapshots()) {
    auto meta = kiln::fs::read_file(dir / "metadata.json", 1 << 16);
    if (!meta || meta->find("\"layer\": {") == std::string::npos) continue;  // a golden has "layer": null
    // Flip bytes in the middle of the layer's device state: its digest no longer matches.
    std::fstream f(dir / "state.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(stdfs::file_size(dir / "state.bin") / 2));
    f.write("\xde\xad\xbe\xef", 4);
    ++corrupted;
  }
  ASSERT_EQ(corrupted, 1);
  auto r = run_kiln({"run", "--", exe, "exit", "4"}, cache);
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(count(r.err, "is unusable ("), 1) << r.err;
  EXPECT_EQ(count(r.err, "rebuilding it"), 1) << r.err;
  auto again = run_kiln({"run", "--", exe, "exit", "0"}, cache);
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_EQ(again.err, "") << "the rebuilt layer was not reused";
  EXPECT_EQ(view(cache).published, 2);
}

TEST(Layers, ConcurrentFirstRunsBuildTheLayerOnce) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  const auto exe = copy_probe(cache, "racing_probe").string();
  KilnRun a, b, c;
  std::thread ta([&] { a = run_kiln(run_args({}, {exe, "exit", "0"}), cache); });
  std::thread tb([&] { b = run_kiln(run_args({}, {exe, "exit", "0"}), cache); });
  std::thread tc([&] { c = run_kiln(run_args({}, {exe, "exit", "0"}), cache); });
  ta.join();
  tb.join();
  tc.join();
  EXPECT_EQ(a.exit_code + b.exit_code + c.exit_code, 0) << a.err << b.err << c.err;
  EXPECT_EQ(count(a.err + b.err + c.err, kBuilt), 1) << a.err << b.err << c.err;
  EXPECT_EQ(view(cache).published, 2);
  EXPECT_EQ(leftovers(cache), "");
}

TEST(Layers, FixtureStateIsVisibleToEveryTestAndIsolatedBetweenThem) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  // A "server": a background process started by the setup, plus files it seeded.
  const std::string setup =
      "mkdir -p /srv/data && echo seeded > /srv/data/seed && (sleep 100000 & echo $! > /srv/server.pid)";
  const std::vector<std::string> opts = {"--setup", setup};
  auto first = run_kiln(run_args(opts, {"sh", "-c", "cat /srv/data/seed && kill -0 $(cat /srv/server.pid) && "
                                                    "echo first > /srv/data/written-by-first"}),
                        cache);
  EXPECT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out, "seeded\n");
  auto second = run_kiln(run_args(opts, {"sh", "-c", "cat /srv/data/seed && kill -0 $(cat /srv/server.pid) && "
                                                     "test ! -e /srv/data/written-by-first"}),
                         cache);
  EXPECT_EQ(second.exit_code, 0) << "the second test saw the first one's write, or the server is gone:\n"
                                 << second.err;
  EXPECT_EQ(second.out, "seeded\n");
  EXPECT_EQ(count(first.err + second.err, kSetupRan), 1) << first.err << second.err;
  // Without the setup, nothing of it is there.
  auto plain = run_kiln(run_args({}, {"sh", "-c", "test ! -e /srv/data/seed"}), cache);
  EXPECT_EQ(plain.exit_code, 0) << plain.err;
  // --no-layers runs the setup in the test's own VM instead.
  auto no_layers = run_kiln(run_args({"--no-layers", "--setup", setup}, {"cat", "/srv/data/seed"}), cache);
  EXPECT_EQ(no_layers.exit_code, 0) << no_layers.err;
  EXPECT_EQ(no_layers.out, "seeded\n");
}

TEST(Layers, FixtureWithAHostExecutableChainsThePayloadLayerOnTop) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  const auto exe = copy_probe(cache, "chained_probe").string();
  const std::vector<std::string> opts = {"--setup", "echo from-setup > /fixture-file"};
  for (int i = 0; i < 2; ++i) {
    auto r = run_kiln(run_args(opts, {exe, "cat", "/fixture-file"}), cache);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "from-setup\n");
    EXPECT_EQ(count(r.err, kSetupRan), i == 0 ? 1 : 0) << r.err;
    EXPECT_EQ(count(r.err, kBuilt), i == 0 ? 1 : 0) << r.err;
    EXPECT_EQ(count(r.err, kNotSent), 1) << r.err;
  }
  EXPECT_EQ(view(cache).published, 3);  // golden -> fixture -> payload
}

TEST(Layers, FailingSetupShowsItsOutputAndSavesNothing) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  auto r = run_kiln({"run", "--setup", "echo half-seeded; echo broken >&2; exit 4", "--", "true"}, cache);
  EXPECT_EQ(r.exit_code, 125) << r.err;
  EXPECT_NE(r.err.find("exited with code 4"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("half-seeded"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("broken"), std::string::npos) << r.err;
  EXPECT_EQ(view(cache).published, 1) << "a failed setup was saved";
  EXPECT_EQ(view(cache).half, 0);
  EXPECT_EQ(leftovers(cache), "");
}

TEST(Layers, DiskFullWhileBuildingALayerLeavesTheStoreConsistentAndTheRunWorks) {
  if (::geteuid() != 0 || !kiln::fs::is_executable_file("/usr/bin/unshare"))
    GTEST_SKIP() << "needs root and unshare(1) to mount a small tmpfs in a private mount namespace";
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  ASSERT_EQ(cache.snapshots().size(), 1u);
  // A second cache whose store is a tmpfs holding the golden and 40 MiB more: the
  // layer's RAM copy alone needs more than that.
  const stdfs::path full = cache.path() / "full-cache";
  stdfs::create_directories(full / "snapshots");
  for (const char* shared : {"kernels", "initramfs", "host"})
    stdfs::create_directory_symlink(cache.path() / shared, full / shared);
  const std::string script = R"(
    set -e
    [ -z "$6" ] || mount --bind "$6" /tmp
    mount -t tmpfs -o size=1g kiln-full "$1/snapshots"
    cp -a --sparse=always "$2" "$1/snapshots/"
    used=$(df --output=used -k "$1/snapshots" | tail -n 1)
    mount -o remount,size=$((used + 40 * 1024))k "$1/snapshots"
    rc=0; env KILN_CACHE_DIR="$1" "$3" run $5 -- "$4" exit 5 || rc=$?
    echo "kiln-rc=$rc"
    rc=0; env KILN_CACHE_DIR="$1" "$3" run $5 -- "$4" exit 6 || rc=$?
    echo "again-rc=$rc"
    env KILN_CACHE_DIR="$1" "$3" run $5 --setup 'echo from-setup > /seeded' -- cat /seeded
    env KILN_CACHE_DIR="$1" "$3" snapshots list
    echo "entries:"; ls -A "$1/snapshots"
  )";
  std::string engine;
  for (const auto& a : engine_args()) engine += (engine.empty() ? "" : " ") + a;
  auto r = kiln::run_captured({"unshare", "-m", "sh", "-c", script, "sh", full.string(), cache.snapshots()[0].string(),
                               KILN_BINARY, copy_probe(cache, "full_probe").string(), engine,
                               cache.has_private_tmp() ? cache.tmp().string() : ""});
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->exit_code, 0) << r->out << r->err;
  EXPECT_NE(r->out.find("kiln-rc=5"), std::string::npos) << "the run failed with a full disk:\n" << r->out << r->err;
  EXPECT_NE(r->out.find("again-rc=6"), std::string::npos) << r->out << r->err;
  EXPECT_EQ(count(r->err, "sending the payload with this run instead"), 2) << r->err;
  // A fixture that cannot be saved: the setup runs in the test's own VM.
  EXPECT_NE(r->out.find("from-setup\n"), std::string::npos) << r->out << r->err;
  EXPECT_EQ(count(r->err, "running the setup in this run's VM instead"), 1) << r->err;
  EXPECT_NE(r->err.find("No space left on device"), std::string::npos) << r->err;
  // Only the golden and the lock directory: no half layer, no leftover temp directory.
  const std::string entries = r->out.substr(r->out.find("entries:"));
  EXPECT_EQ(count(entries, "\n"), 3) << entries;
  EXPECT_EQ(entries.find(".tmp-"), std::string::npos) << entries;
  EXPECT_EQ(leftovers(cache), "");
}

// KILN_TEST_PAUSE_BEFORE_PUBLISH=1 with the kiln that is installed: it must build and
// publish the layer as if the variable were unset (the hook is only in kiln-test-hooks).
TEST(Layers, ReleaseKilnIgnoresTheTestHookVariable) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache.path()).exit_code, 0);
  const auto exe = copy_probe(cache, "release_probe");
  const std::string log = (cache.path() / "kiln.err").string();
  auto child = spawn_run(KILN_BINARY, cache, "KILN_TEST_PAUSE_BEFORE_PUBLISH=1", exe, 4, log);
  ASSERT_TRUE(child) << child.error().message;
  // Ends when kiln exits or when it announces the pause (then it would sleep 600 s).
  int status = 0;
  bool paused = false;
  while (!child->poll_exited(&status) && !paused) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto text = kiln::fs::read_file(log, 1 << 20);
    paused = text && text->find("paused before publishing") != std::string::npos;
  }
  child->kill();
  auto text = kiln::fs::read_file(log, 1 << 20);
  ASSERT_FALSE(paused) << "the release kiln obeyed KILN_TEST_PAUSE_BEFORE_PUBLISH";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 4) << kiln::describe_wait_status(status) << "\n"
                                                              << (text ? *text : "");
  EXPECT_EQ(view(cache).published, 2) << "no payload layer was published";
}

TEST(Layers, KillingKilnWhileItSavesALayerLeavesTheStoreConsistent) {
#ifndef KILN_TEST_HOOKS_BINARY
  GTEST_SKIP() << "needs kiln-test-hooks (configure with -DKILN_TEST_HOOKS=ON) to stop kiln before it publishes";
#else
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  const auto exe = copy_probe(cache, "killed_probe");
  auto spawn = [&](bool pause, const std::string& log) {
    // kiln-test-hooks: kiln with the test hooks (runner/test_hooks.cpp); the hook is not in kiln.
    return spawn_run(KILN_TEST_HOOKS_BINARY, cache,
                     std::string("KILN_TEST_PAUSE_BEFORE_PUBLISH=") + (pause ? "1" : "0"), exe, 0, log);
  };
  // `published`: how many snapshots the store must list, all usable: the golden and
  // published - 1 layers (counted on disk, not by kiln).
  auto check_consistent = [&](const std::string& when, int published) {
    auto list = run_kiln({"snapshots", "list"}, cache);
    EXPECT_EQ(list.exit_code, 0) << when << ": " << list.err;
    EXPECT_EQ(view(cache).half, 0) << when << ": a half layer is visible";
    EXPECT_EQ(count(list.out, "unusable"), 0) << when << ":\n" << list.out;
    EXPECT_NE(list.out.find(std::to_string(published) + " snapshot(s) (" + std::to_string(published - 1) +
                            " layer(s))"),
              std::string::npos)
        << when << ": expected " << published << " snapshots:\n" << list.out;
    for (const auto& dir : cache.snapshots()) EXPECT_NE(list.out.find(dir.filename().string().substr(0, 12)),
                                                        std::string::npos) << when << ": " << dir << " not listed";
    EXPECT_EQ(leftovers(cache, After::sigkill), "") << when;
  };

  // 1. Deterministic: kill it at the last moment before publishing.
  const std::string log = (cache.path() / "kiln.err").string();
  {
    auto child = spawn(true, log);
    ASSERT_TRUE(child) << child.error().message;
    bool paused = false;
    for (int i = 0; i < 1200 && !paused; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      auto text = kiln::fs::read_file(log, 1 << 20);
      paused = text && text->find("paused before publishing a layer") != std::string::npos;
    }
    ASSERT_TRUE(paused) << "kiln never reached the publish hook";
    ::kill(child->pid(), SIGKILL);
    child->wait();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  check_consistent("killed before publish", 1);
  EXPECT_EQ(view(cache).published, 1);

  // 2. Kills at random points of building a layer (each run a new executable, so a new layer).
  std::mt19937 rng(12345);
  for (int i = 0; i < 4; ++i) {
    rebuild(exe, "kill-" + std::to_string(i));
    auto child = spawn(false, log);
    ASSERT_TRUE(child);
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 2500));
    ::kill(child->pid(), SIGKILL);
    child->wait();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    check_consistent("killed at a random point, round " + std::to_string(i), view(cache).published);
  }

  // The next run works and builds (or reuses) the layer of the current executable.
  auto next = run_kiln(run_args({}, {exe.string(), "exit", "6"}), cache);
  EXPECT_EQ(next.exit_code, 6) << next.err;
  check_consistent("after the next run", view(cache).published);
#endif
}
