// `kiln run` end to end on real VMs: exit codes, streams, isolation, payload.
#include "vm_test_support.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <thread>

using namespace kiln::vmtest;

namespace {

std::vector<std::string> run_probe(std::vector<std::string> probe_args, std::vector<std::string> kiln_opts = {}) {
  std::vector<std::string> args = {"run"};
  args.insert(args.end(), kiln_opts.begin(), kiln_opts.end());
  args.push_back("--");
  args.push_back(probe());
  args.insert(args.end(), probe_args.begin(), probe_args.end());
  return args;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

}  // namespace

TEST(Run, ExitCodesPassThrough) {
  for (int code : {0, 1, 77}) {
    auto r = run_kiln(run_probe({"exit", std::to_string(code)}));
    EXPECT_EQ(r.exit_code, code) << r.err;
  }
}

TEST(Run, DeathBySignalIs128PlusSignal) {
  auto r = run_kiln(run_probe({"signal", "11"}));
  EXPECT_EQ(r.exit_code, 128 + 11) << r.err;
  r = run_kiln(run_probe({"signal", "9"}));
  EXPECT_EQ(r.exit_code, 128 + 9) << r.err;
}

TEST(Run, StdoutAndStderrAreSeparateAndEachInOrder) {
  auto r = run_kiln(run_probe({"interleave", "300"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto out = lines(r.out);
  ASSERT_EQ(out.size(), 300u);
  for (int i = 0; i < 300; ++i) EXPECT_EQ(out[i], "out " + std::to_string(i));
  std::vector<std::string> err;
  for (auto& l : lines(r.err))
    if (l.rfind("err ", 0) == 0) err.push_back(l);
  ASSERT_EQ(err.size(), 300u) << r.err;
  for (int i = 0; i < 300; ++i) EXPECT_EQ(err[i], "err " + std::to_string(i));
}

TEST(Run, WritesDoNotSurviveTheVmNorReachTheHost) {
  const std::string marker = "/etc/kiln-isolation-marker-" + std::to_string(::getpid());
  auto w = run_kiln(run_probe({"write", marker}));
  ASSERT_EQ(w.exit_code, 0) << w.err;
  auto w2 = run_kiln(run_probe({"write", "/tmp/kiln-isolation-tmp"}));
  ASSERT_EQ(w2.exit_code, 0) << w2.err;
  auto check = run_kiln(run_probe({"absent", marker, "/tmp/kiln-isolation-tmp"}));
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_FALSE(std::filesystem::exists(marker)) << "a guest write reached the host";
}

TEST(Run, EnvCwdAndFilesArrive) {
  // kiln's own environment stays on the host: a variable set for kiln (and the
  // KILN_CACHE_DIR it always has here) is not in the guest, while --env still is.
  const std::vector<std::string> host_env = {"KILN_HOST_ONLY_VAR=from-the-host"};
  for (const char* host_only : {"KILN_HOST_ONLY_VAR", "KILN_CACHE_DIR"}) {
    auto leaked = run_kiln(run_probe({"env", host_only}), shared_cache(), host_env);
    EXPECT_EQ(leaked.exit_code, 1) << "the guest environment must be hermetic: " << host_only << "=" << leaked.out
                                   << leaked.err;
    EXPECT_EQ(leaked.out, "(unset)\n");
  }
  auto env = run_kiln(run_probe({"env", "KILN_TEST_VAR"}, {"--env", "KILN_TEST_VAR=hello world"}), shared_cache(),
                      host_env);
  EXPECT_EQ(env.exit_code, 0) << env.err;
  EXPECT_EQ(env.out, "hello world\n");

  auto cwd = run_kiln(run_probe({"cwd"}, {"--cwd", "/work/some/dir"}));
  EXPECT_EQ(cwd.exit_code, 0) << cwd.err;
  EXPECT_EQ(cwd.out, "/work/some/dir\n");

  auto data = std::filesystem::path(KILN_TEST_CACHE).parent_path() / "vm-test-data.txt";
  { std::ofstream(data) << "payload data " << ::getpid() << "\n"; }
  auto cat = run_kiln(run_probe({"cat", data.string()}, {"--file", data.string()}));
  EXPECT_EQ(cat.exit_code, 0) << cat.err;
  EXPECT_EQ(cat.out, "payload data " + std::to_string(::getpid()) + "\n");
  // Options before `--` take one value each: the command's own flags stay its own.
  auto flags = run_kiln({"run", "--file", data.string(), "--env", "X=1", "--", "sh", "-c", "cat \"$0\"; echo $X", data.string()});
  EXPECT_EQ(flags.exit_code, 0) << flags.err;
  EXPECT_EQ(flags.out, "payload data " + std::to_string(::getpid()) + "\n1\n");
  std::filesystem::remove(data);
}

TEST(Run, ClonesGetFreshEntropyAndTheHostClock) {
  auto a = run_kiln(run_probe({"random"}));
  auto b = run_kiln(run_probe({"random"}));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_NE(a.out, b.out) << "two clones of one snapshot produced the same random bytes";
  auto t = run_kiln(run_probe({"time"}));
  ASSERT_EQ(t.exit_code, 0) << t.err;
  long long guest = std::stoll(t.out);
  long long host = static_cast<long long>(::time(nullptr));
  EXPECT_LE(std::llabs(host - guest), 30) << "guest clock is stale";
}

TEST(Run, GuestCommandsFromBusybox) {
  auto r = run_kiln({"run", "--", "sh", "-c", "echo from-guest-shell; exit 5"});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_EQ(r.out, "from-guest-shell\n");
}

TEST(Run, CommandMissingInGuestIs127) {
  auto r = run_kiln({"run", "--", "no-such-command-in-guest"});
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_NE(r.err.find("not found in the guest"), std::string::npos) << r.err;
}

TEST(Run, HostPathProblemsAreClear) {
  auto missing = run_kiln({"run", "--", "/no/such/binary"});
  EXPECT_EQ(missing.exit_code, 127);
  EXPECT_NE(missing.err.find("no such file"), std::string::npos) << missing.err;
  auto data = std::filesystem::path(KILN_TEST_CACHE).parent_path() / "not-executable.txt";
  { std::ofstream(data) << "just text\n"; }
  std::filesystem::permissions(data, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto not_exec = run_kiln({"run", "--", data.string()});
  EXPECT_EQ(not_exec.exit_code, 126);
  EXPECT_NE(not_exec.err.find("not an executable"), std::string::npos) << not_exec.err;
  std::filesystem::permissions(data, std::filesystem::perms::owner_all);
  auto not_elf = run_kiln({"run", "--", data.string()});
  EXPECT_EQ(not_elf.exit_code, 126);
  EXPECT_NE(not_elf.err.find("neither an ELF"), std::string::npos) << not_elf.err;
  std::filesystem::remove(data);

  auto script = std::filesystem::path(KILN_TEST_CACHE).parent_path() / "script.sh";
  { std::ofstream(script) << "#!/bin/sh\necho script ran in $(cat /etc/hostname)\n"; }
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  auto ran = run_kiln({"run", "--", script.string()});
  EXPECT_EQ(ran.exit_code, 0) << ran.err;
  EXPECT_EQ(ran.out, "script ran in kiln\n");
  std::filesystem::remove(script);
}
