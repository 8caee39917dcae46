// The warm pool (docs/pool.md) on real VMs: a run takes a VM the daemon restored ahead
// of it; the daemon is started by a run without holding its output; a killed daemon or
// a killed run leaves no VM behind; a socket that is not this user's is not used. On the
// qemu engine the daemon holds qemu processes; on the kvm engine a worker process per VM
// (runner/pool_kvm_worker.h): the lab runs the tests marked "every engine" on its engine.
#include "vm_test_support.h"

#include "common/fd_passing.h"
#include "common/subprocess.h"
#include "common/unique_fd.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <thread>

using namespace kiln::vmtest;

namespace {

// The pool on, its socket under the cache (not $XDG_RUNTIME_DIR), as a user has it.
const std::vector<std::string> kPoolOn = {"KILN_NO_POOL=0", "XDG_RUNTIME_DIR="};

struct Status {
  bool running = false;
  long pid = 0;
  long ready = 0, lent = 0, hits = 0, misses = 0;
};

Status status(const PrivateCache& cache) {
  auto r = run_kiln({"serve", "--status"}, cache, kPoolOn);
  Status s;
  std::smatch m;
  if (std::regex_search(r.out, m, std::regex(R"(pool daemon pid (\d+))"))) {
    s.running = true;
    s.pid = std::stol(m[1]);
  }
  if (std::regex_search(r.out, m, std::regex(R"(VMs ready (\d+) .*lent to runs (\d+); hits (\d+), misses (\d+))"))) {
    s.ready = std::stol(m[1]);
    s.lent = std::stol(m[2]);
    s.hits = std::stol(m[3]);
    s.misses = std::stol(m[4]);
  }
  return s;
}

// What the daemon says of itself: `kiln serve --status` and its log (<socket>.log).
std::string daemon_report(const PrivateCache& cache) {
  std::string report = "kiln serve --status:\n" + run_kiln({"serve", "--status"}, cache, kPoolOn).out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(cache.path() / "pool", ec)) {
    if (e.path().extension() != ".log") continue;
    std::ifstream f(e.path());
    report += e.path().filename().string() + ":\n" +
              std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  return report;
}

// Poll the daemon's status until `done` holds (240 polls: a minute here, longer in the
// lab, where each `kiln serve --status` costs a kiln start under TCG).
Status wait_for(const PrivateCache& cache, const std::function<bool(const Status&)>& done, const char* what) {
  Status s;
  for (int i = 0; i < 240; ++i) {
    s = status(cache);
    if (done(s)) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  ADD_FAILURE() << "timed out waiting for the pool: " << what << "\n" << daemon_report(cache);
  return s;
}

bool alive(long pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0; }

// Stop the daemon as its idle exit would (SIGTERM: it kills its ready VMs), then check
// that nothing is left.
void stop_daemon(const PrivateCache& cache) {
  Status s = status(cache);
  if (!s.running) return;
  ::kill(static_cast<pid_t>(s.pid), SIGTERM);
  for (int i = 0; i < 100 && alive(s.pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(leftovers(cache), "");
}

std::vector<std::string> echo(const std::string& word) { return {"run", "--", "/bin/echo", word}; }

// Did the run restore its VM itself (rather than take one from the pool)? The timers of
// each engine's own restore: qemu's process start, the kvm engine's memory mapping.
bool restored_itself(const std::string& timings) {
  return timings.find("qemu: spawn") != std::string::npos ||
         timings.find("kvm: restore: map memory") != std::string::npos;
}

}  // namespace

// Every engine.
TEST(Pool, ARunTakesAVmTheDaemonRestoredAheadOfIt) {
  PrivateCache cache;
  cache.use_shared_snapshots();
  // The first run finds no daemon, restores as before and starts one. run_kiln waits for
  // EOF on the run's stdout and stderr: a daemon holding a copy would keep it waiting
  // for its whole idle period (60 s); ctest waits the same way.
  auto first = run_kiln(echo("first"), cache, kPoolOn);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out, "first\n");
  EXPECT_LT(first.seconds, 30) << "the run's output stayed open after it exited: the daemon holds it";
  Status ready = wait_for(cache, [](const Status& s) { return s.ready >= 1; }, "a ready VM");
  EXPECT_EQ(ready.misses, 1);
  EXPECT_EQ(ready.hits, 0);

  auto second = run_kiln({"run", "--timings", "--", "/bin/echo", "second"}, cache, kPoolOn);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(second.out, "second\n");
  EXPECT_NE(second.err.find("pool: take a VM"), std::string::npos) << second.err;
  EXPECT_FALSE(restored_itself(second.err)) << "the run restored its own VM:\n" << second.err;
  Status after = status(cache);
  EXPECT_EQ(after.hits, 1);
  EXPECT_EQ(after.lent, 0) << "the run ended: its VM is no longer lent";
  // Refilled: the next run gets one too.
  wait_for(cache, [](const Status& s) { return s.ready >= 1; }, "a refill");
  stop_daemon(cache);
}

// Every engine.
TEST(Pool, AKilledDaemonLeavesNoVmAndTheNextRunStartsAnother) {
  PrivateCache cache;
  cache.use_shared_snapshots();
  ASSERT_EQ(run_kiln(echo("start"), cache, kPoolOn).exit_code, 0);
  Status s = wait_for(cache, [](const Status& st) { return st.ready >= 2; }, "two ready VMs");
  ASSERT_TRUE(s.running);
  ::kill(static_cast<pid_t>(s.pid), SIGKILL);
  // Its qemus (or kvm workers) die with the thread that started them (PR_SET_PDEATHSIG), not later.
  int left = -1;
  for (int i = 0; i < 100 && left != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    left = processes_mentioning(cache.path().string());
  }
  EXPECT_EQ(left, 0) << "VM processes outlived the killed daemon";
  // Its socket file is still there, with nobody listening: the next run starts a new daemon.
  auto again = run_kiln(echo("again"), cache, kPoolOn);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out, "again\n");
  Status next = wait_for(cache, [&](const Status& st) { return st.running && st.pid != s.pid; }, "a new daemon");
  EXPECT_NE(next.pid, s.pid);
  stop_daemon(cache);
}

// Every engine.
TEST(Pool, TheVmOfAKilledRunIsKilled) {
  PrivateCache cache;
  cache.use_shared_snapshots();
  // The same executable as the run below: its payload layer is the restore point.
  ASSERT_EQ(run_kiln({"run", "--", "/bin/sleep", "0"}, cache, kPoolOn).exit_code, 0);
  wait_for(cache, [](const Status& st) { return st.ready >= 1; }, "a ready VM");
  auto run = kiln::ChildProcess::spawn(kiln_argv({"run", "--", "/bin/sleep", "120"}, cache, kPoolOn), {});
  ASSERT_TRUE(run.ok()) << run.error().message;
  wait_for(cache, [](const Status& st) { return st.lent == 1; }, "the run to take its VM");
  const int with_lent = processes_mentioning(cache.path().string());
  ::kill(run->pid(), SIGKILL);
  run->wait();
  // Its connection closed: the daemon kills that qemu (or kvm worker) and reaps it.
  Status s = wait_for(cache, [](const Status& st) { return st.lent == 0; }, "the lent VM to be taken back");
  wait_for(cache, [&](const Status& st) {
    return processes_mentioning(cache.path().string()) == st.ready;  // only ready VMs left
  }, "no VM process but the ready ones");
  EXPECT_GE(with_lent, 1);
  EXPECT_EQ(s.lent, 0);
  stop_daemon(cache);
}

TEST(Pool, ASocketThatIsNotThisUsersIsNotUsed) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (to give the socket to another user)";
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  ASSERT_EQ(run_kiln(echo("start"), cache, kPoolOn).exit_code, 0);
  Status s = wait_for(cache, [](const Status& st) { return st.ready >= 1; }, "a ready VM");
  std::string socket;
  for (const auto& e : std::filesystem::directory_iterator(cache.path() / "pool"))
    if (e.path().extension() == ".sock") socket = e.path();
  ASSERT_FALSE(socket.empty());
  ASSERT_EQ(::chown(socket.c_str(), 65534, 65534), 0);
  auto r = run_kiln({"run", "-v", "--", "/bin/echo", "alone"}, cache, kPoolOn);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "alone\n");
  EXPECT_NE(r.err.find("is not this user's socket; running without the pool"), std::string::npos) << r.err;
  ASSERT_EQ(::chown(socket.c_str(), 0, 0), 0);
  EXPECT_EQ(status(cache).hits, s.hits) << "a VM was taken through a socket of another user";
  stop_daemon(cache);
}

TEST(Pool, OffMeansNoDaemon) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  auto r = run_kiln(echo("plain"), cache, {"KILN_NO_POOL=1", "XDG_RUNTIME_DIR="});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_FALSE(status(cache).running);
  EXPECT_FALSE(std::filesystem::exists(cache.path() / "pool")) << "KILN_NO_POOL=1 started a daemon";
  EXPECT_EQ(leftovers(cache), "");
}

// Every engine: qemu saves through the QMP socket handed over, the kvm worker on request.
TEST(Pool, APooledVmThatFailsIsKeptAndCanBeEntered) {
  PrivateCache cache;
  cache.use_shared_snapshots();
  ASSERT_EQ(run_kiln(echo("warm up"), cache, kPoolOn).exit_code, 0);
  wait_for(cache, [](const Status& s) { return s.ready >= 1; }, "a ready VM");
  auto r = run_kiln({"run", "--keep-failed", "--timings", "--", "sh", "-c", "echo pooled > /tmp/mark; exit 4"}, cache,
                    kPoolOn);
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("pool: take a VM"), std::string::npos) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex("kiln shell ([0-9a-f]{12})"))) << r.err;
  auto s = run_kiln({"shell", m[1].str(), "--", "cat", "/tmp/mark"}, cache, kPoolOn);
  EXPECT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(s.out, "pooled\n");
  stop_daemon(cache);
}

// The kvm worker (runner/pool_kvm_worker.h) reads its request from the daemon as untrusted
// input: garbage, a take of another kiln and a daemon gone before it asked are each
// answered (or noticed) and the worker exits, holding nothing. No engine is reached.
TEST(Pool, AKvmWorkerRefusesWhatItCannotServeAndExits) {
  PrivateCache cache;
  auto worker_answer = [&](const std::string& request, std::string* why) -> int {
    int pair[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
    kiln::UniqueFd ours(pair[0]), theirs(pair[1]);
    kiln::SpawnOptions options;
    options.stdin_fd = theirs.get();
    auto worker = kiln::ChildProcess::spawn(kiln_argv({"serve", "--kvm-worker", "test"}, cache.path()), options);
    EXPECT_TRUE(worker.ok()) << worker.error().message;
    if (!worker.ok()) return -1;
    theirs.reset();
    if (request.empty()) {
      ours.reset();  // the daemon died before it asked
    } else {
      EXPECT_TRUE(kiln::send_fd_message(ours.get(), request).ok());
      auto answer = kiln::receive_fd_message(ours.get(), 64 << 10, 2, kiln::deadline_after(std::chrono::seconds(30)));
      EXPECT_TRUE(answer.ok() && *answer) << "no answer from the worker";
      if (answer.ok() && *answer) {
        auto j = nlohmann::json::parse((*answer)->bytes, nullptr, false);
        EXPECT_EQ(j.value("ready", true), false) << (*answer)->bytes;
        *why = j.value("why", std::string());
        EXPECT_TRUE((*answer)->fds.empty()) << "a refusal came with descriptors";
      }
    }
    return WEXITSTATUS(worker->wait());
  };
  std::string why;
  EXPECT_EQ(worker_answer("not json", &why), 1);
  EXPECT_NE(why.find("not valid JSON"), std::string::npos) << why;
  nlohmann::json take = {{"op", "take"}, {"kiln", "0.0.0-another"}, {"engine_name", "kvm"}};
  EXPECT_EQ(worker_answer(take.dump(), &why), 1);
  EXPECT_NE(why.find("the run is kiln 0.0.0-another"), std::string::npos) << why;
  EXPECT_EQ(worker_answer("", &why), 1);
  EXPECT_EQ(leftovers(cache), "");
}

// Every kiln build has a daemon socket of its own, so rebuilt kilns leave lock files and
// logs behind. A daemon removes those nobody holds and no daemon wrote for a day; it
// keeps recent ones and any lock another daemon holds. No VM: the daemon serves no run.
TEST(Pool, TheFilesOfDaemonsGoneForADayAreRemoved) {
  PrivateCache cache;
  const auto dir = cache.path() / "pool";
  std::filesystem::create_directories(dir);
  auto make = [&](const std::string& hash, bool old) {
    for (const char* suffix : {".sock.lock", ".sock.log", ".sock"}) {
      auto file = dir / ("pool-" + hash + suffix);
      std::ofstream(file) << "x";
      if (old) std::filesystem::last_write_time(file, std::filesystem::file_time_type::clock::now() - std::chrono::hours(48));
    }
  };
  make("00000000000000aa", true);   // gone for two days: removed
  make("00000000000000bb", false);  // written now: kept
  make("00000000000000cc", true);   // old, but its lock is held (a daemon still runs): kept
  kiln::UniqueFd held(::open((dir / "pool-00000000000000cc.sock.lock").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(held.valid());
  ASSERT_EQ(::flock(held.get(), LOCK_EX | LOCK_NB), 0);
  auto r = run_kiln({"serve", "--idle", "1"}, cache, kPoolOn);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* suffix : {".sock.lock", ".sock.log", ".sock"}) {
    EXPECT_FALSE(std::filesystem::exists(dir / (std::string("pool-00000000000000aa") + suffix))) << suffix;
    EXPECT_TRUE(std::filesystem::exists(dir / (std::string("pool-00000000000000bb") + suffix))) << suffix;
    EXPECT_TRUE(std::filesystem::exists(dir / (std::string("pool-00000000000000cc") + suffix))) << suffix;
  }
  EXPECT_EQ(leftovers(cache), "");
}
