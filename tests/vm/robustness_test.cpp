// Bad input and concurrency on real VMs: timeouts, signals, corrupt snapshots,
// a hostile guest, racing bakers. Nothing may be left running.
#include "vm_test_support.h"

#include "common/subprocess.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <thread>

using namespace kiln::vmtest;

namespace {

std::vector<std::string> probe_run(const std::vector<std::string>& pre, const std::vector<std::string>& probe_args) {
  std::vector<std::string> args = {"run"};
  args.insert(args.end(), pre.begin(), pre.end());
  args.push_back("--");
  args.push_back(probe());
  args.insert(args.end(), probe_args.begin(), probe_args.end());
  return args;
}

}  // namespace

TEST(Robustness, TimeoutKillsTheVmAndLeavesNothing) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  auto r = run_kiln(probe_run({"--timeout", "3"}, {"sleep", "120"}), cache);
  EXPECT_EQ(r.exit_code, 124) << r.err;
  EXPECT_NE(r.err.find("timeout"), std::string::npos) << r.err;
  // What ctest shows of a test is its output: the reason and the guest's console end it.
  EXPECT_NE(r.err.find("did not finish within 3 s; the VM was killed\n--- guest console (tail) ---\n"),
            std::string::npos)
      << r.err;
  EXPECT_LT(r.seconds, 60);
  EXPECT_EQ(leftovers(cache), "");
}

TEST(Robustness, SigtermTearsTheVmDown) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  auto child = kiln::ChildProcess::spawn(kiln_argv(probe_run({}, {"sleep", "120"}), cache), {});
  ASSERT_TRUE(child.ok());
  std::this_thread::sleep_for(std::chrono::seconds(3));
  ::kill(child->pid(), SIGTERM);
  int status = child->wait();
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
  EXPECT_EQ(leftovers(cache), "");
}

TEST(Robustness, ConcurrentRunsOnAMissingSnapshotBakeOnce) {
  PrivateCache cache;
  KilnRun a, b, c;
  std::thread ta([&] { a = run_kiln(probe_run({"-v"}, {"exit", "0"}), cache); });
  std::thread tb([&] { b = run_kiln(probe_run({"-v"}, {"exit", "0"}), cache); });
  std::thread tc([&] { c = run_kiln(probe_run({"-v"}, {"exit", "0"}), cache); });
  ta.join();
  tb.join();
  tc.join();
  EXPECT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(count(a.err + b.err + c.err, "cold-booting vmlinuz"), 1) << a.err << b.err << c.err;
  // One golden, and one payload layer for the probe: the layer was built once too.
  EXPECT_EQ(cache.snapshots().size(), 2u);
  EXPECT_EQ(leftovers(cache), "");
}

TEST(Robustness, CorruptMetadataLeadsToARebake) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  auto snaps = cache.snapshots();
  ASSERT_EQ(snaps.size(), 1u);
  { std::ofstream(snaps[0] / "metadata.json") << "{\"format_version\": 1, \"memory_mib\": \"garbage"; }
  auto r = run_kiln(probe_run({}, {"exit", "0"}), cache);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("rebak"), std::string::npos) << r.err;
  auto again = run_kiln(probe_run({}, {"exit", "0"}), cache);
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.err.find("rebak"), std::string::npos) << "the rebake did not heal the store: " << again.err;
}

TEST(Robustness, TruncatedStateFileLeadsToARebake) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache).exit_code, 0);
  auto snaps = cache.snapshots();
  ASSERT_EQ(snaps.size(), 1u);
  std::filesystem::resize_file(snaps[0] / "state.bin", 100);
  auto r = run_kiln(probe_run({}, {"exit", "3"}), cache);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("rebak"), std::string::npos) << r.err;
}

TEST(Robustness, GuestProcessesCannotOpenTheAgentChannel) {
  // The agent holds its virtio-serial port open, and a port has one opener: a test
  // running as root in the guest cannot inject frames. (Garbage from a hostile agent
  // is covered against a real socket in tests/unit/runner and by the fuzz target.)
  auto r = run_kiln(probe_run({"--timeout", "60"}, {"garbage-channel"}));
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_NE(r.out.find("is busy"), std::string::npos) << r.out;
}

TEST(Robustness, AGuestThatPowersOffEndsTheRunAtOnce) {
  auto r = run_kiln(probe_run({"--timeout", "300"}, {"poweroff"}));
  EXPECT_EQ(r.exit_code, 125) << r.err;
  EXPECT_LT(r.seconds, 120) << "the run waited for its timeout: the VM did not end on power-off";
  EXPECT_NE(r.err.find("powered off"), std::string::npos) << r.err;
}

TEST(Robustness, MissingQemuOrKernelIsOneClearLine) {
  // The missing qemu is about the qemu engine whichever engine the suite tests.
  PrivateCache cache;
  auto r = run_kiln({"run", "--engine", "qemu", "--accel", "tcg", "--", "true"}, cache,
                    {"KILN_QEMU=/nonexistent/qemu"});
  EXPECT_EQ(r.exit_code, 125) << r.err;
  EXPECT_NE(r.err.find("qemu"), std::string::npos) << r.err;

  auto bad_kernel = run_kiln({"run", "--kernel", "/etc/hostname", "--modules", "/tmp", "--", "true"}, cache);
  EXPECT_EQ(bad_kernel.exit_code, 125) << bad_kernel.err;
  EXPECT_NE(bad_kernel.err.find("bzImage"), std::string::npos) << bad_kernel.err;
}
