// kiln run --keep-failed and kiln shell on real VMs: a failed run's VM is saved
// whole before it is torn down; kiln shell restores it — the files the command
// left, its working directory and environment, a timed-out command still
// running, the shared trees readable as they were — and refuses what it cannot
// restore. Each test has a cache of its own (its kept VMs are its own) that
// restores the shared golden.
#include "vm_test_support.h"

#include <gtest/gtest.h>

#include <algorithm>

#include <filesystem>
#include <fstream>
#include <regex>

using namespace kiln::vmtest;
namespace stdfs = std::filesystem;

namespace {

class KeepFailed : public ::testing::Test {
 protected:
  KeepFailed() { cache_.use_shared_snapshots(); }

  KilnRun kiln(const std::vector<std::string>& args, const std::vector<std::string>& host_env = {}) {
    return run_kiln(args, cache_, host_env);
  }
  /// The id in "kept the failed VM: kiln shell <id>", or "".
  static std::string kept_id(const KilnRun& r) {
    std::smatch m;
    static const std::regex kept("kept the failed VM: kiln shell ([0-9a-f]{12})");
    return std::regex_search(r.err, m, kept) ? m[1].str() : std::string();
  }
  std::vector<std::string> kept_dirs() const {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : stdfs::directory_iterator(cache_.path() / "kept", ec))
      if (e.path().filename().string().front() != '.') out.push_back(e.path().filename().string());
    return out;
  }

  PrivateCache cache_;
};

TEST_F(KeepFailed, AFailedCommandsVmIsKeptAndTheShellSeesWhatItLeft) {
  auto r = kiln({"run", "--keep-failed", "--test-name", "suite.fails", "--cwd", "/work", "--env", "MARK=m1", "--",
                 "sh", "-c", "echo left > state.txt; exit 3"});
  ASSERT_EQ(r.exit_code, 3) << r.err;  // keeping never changes the run's outcome
  const std::string id = kept_id(r);
  ASSERT_FALSE(id.empty()) << r.err;

  // In the test's directory, with its environment, and what it wrote.
  auto s = kiln({"shell", id, "--", "sh", "-c", "pwd; cat state.txt; echo $MARK"});
  EXPECT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(s.out, "/work\nleft\nm1\n") << s.err;
  // A prefix will do, and the kept VM is not changed by a shell: each starts from the failure.
  auto t = kiln({"shell", id.substr(0, 4), "--", "sh", "-c", "rm state.txt"});
  EXPECT_EQ(t.exit_code, 0) << t.err;
  auto u = kiln({"shell", id, "--", "cat", "state.txt"});
  EXPECT_EQ(u.out, "left\n") << u.err;

  auto list = kiln({"snapshots", "list"});
  EXPECT_NE(list.out.find(id + "   failed"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("suite.fails: exited with code 3"), std::string::npos) << list.out;
  EXPECT_EQ(leftovers(cache_), "");
}

TEST_F(KeepFailed, ATimedOutCommandIsStillRunningInTheShell) {
  auto r = kiln({"run", "--keep-failed", "--timeout", "2", "--", "sh", "-c", "echo $$ > /tmp/pid; exec sleep 1000"});
  ASSERT_EQ(r.exit_code, 124) << r.err;
  const std::string id = kept_id(r);
  ASSERT_FALSE(id.empty()) << r.err;
  EXPECT_NE(r.err.find("timeout: sh did not finish within 2 s"), std::string::npos) << r.err;

  auto s = kiln({"shell", id, "--", "sh", "-c", "pid=$(cat /tmp/pid); cat /proc/$pid/cmdline | tr '\\0' ' '"});
  EXPECT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(s.out, "sleep 1000 ") << s.err;
  auto list = kiln({"snapshots", "list"});
  EXPECT_NE(list.out.find("timed out after 2 s (still running, pid"), std::string::npos) << list.out;
  EXPECT_EQ(leftovers(cache_), "");
}

TEST_F(KeepFailed, APassingRunOrOneWithoutTheFlagKeepsNothing) {
  auto pass = kiln({"run", "--keep-failed", "--", "true"});
  EXPECT_EQ(pass.exit_code, 0) << pass.err;
  auto fail = kiln({"run", "--", "false"});
  EXPECT_EQ(fail.exit_code, 1) << fail.err;
  auto off = kiln({"run", "--", "false"}, {"KILN_KEEP_FAILED=0"});
  EXPECT_EQ(off.exit_code, 1) << off.err;
  EXPECT_TRUE(kept_dirs().empty());
  EXPECT_EQ(pass.err.find("kept"), std::string::npos) << pass.err;

  auto by_env = kiln({"run", "--", "false"}, {"KILN_KEEP_FAILED=1"});
  EXPECT_EQ(by_env.exit_code, 1) << by_env.err;
  EXPECT_FALSE(kept_id(by_env).empty()) << by_env.err;
}

TEST_F(KeepFailed, OnlyTheNewestAreKeptWithinTheLimits) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto r = kiln({"run", "--keep-failed", "--", "sh", "-c", "exit " + std::to_string(i + 1)},
                  {"KILN_KEEP_FAILED_MAX=2"});
    ASSERT_EQ(r.exit_code, i + 1) << r.err;
    ids.push_back(kept_id(r));
    ASSERT_FALSE(ids.back().empty()) << r.err;
  }
  auto kept = kept_dirs();
  std::sort(kept.begin(), kept.end());
  std::vector<std::string> newest{ids[1], ids[2]};
  std::sort(newest.begin(), newest.end());
  EXPECT_EQ(kept, newest);

  // A VM over the byte limit on its own is not kept, and kiln says so.
  auto big = kiln({"run", "--keep-failed", "--", "false"}, {"KILN_KEEP_FAILED_MAX_MIB=1"});
  EXPECT_EQ(big.exit_code, 1);
  EXPECT_NE(big.err.find("the failed VM could not be kept: it alone is over the limits"), std::string::npos) << big.err;
  EXPECT_EQ(leftovers(cache_), "");
}

TEST_F(KeepFailed, SharedTreesAreReadableInTheShellAsTheTestSawThem) {
  // Not under /tmp: kiln's runs here may get a /tmp of their own (PrivateCache).
  const stdfs::path tree = cache_.path() / "tree";
  stdfs::create_directories(tree / "data");
  std::ofstream(tree / "data" / "input.txt") << "from the host\n";
  // The command holds the shared directory as its cwd and a file open when it fails.
  const std::string data = (tree / "data").string();
  auto r = kiln({"run", "--keep-failed", "--timeout", "2", "--share", tree.string(), "--cwd", data, "--",
                 "sh", "-c", "exec 3< input.txt; cat input.txt; exec sleep 1000"});
  ASSERT_EQ(r.exit_code, 124) << r.err;
  EXPECT_EQ(r.out, "from the host\n");
  const std::string id = kept_id(r);
  ASSERT_FALSE(id.empty()) << r.err;

  std::ofstream(tree / "data" / "later.txt") << "written after the failure\n";
  auto s = kiln({"shell", id, "--", "sh", "-c", "pwd; cat input.txt later.txt"});
  EXPECT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(s.out, data + "\nfrom the host\nwritten after the failure\n") << s.err;
  EXPECT_EQ(leftovers(cache_), "");
}

TEST_F(KeepFailed, TheShellRefusesWhatItCannotRestore) {
  auto none = kiln({"shell", "0123456789ab"});
  EXPECT_EQ(none.exit_code, 125);
  EXPECT_NE(none.err.find("no kept VM 0123456789ab"), std::string::npos) << none.err;
  auto bad = kiln({"shell", "../x"});
  EXPECT_EQ(bad.exit_code, 125);
  EXPECT_NE(bad.err.find("not a kept VM id"), std::string::npos) << bad.err;

  auto r = kiln({"run", "--keep-failed", "--", "false"});
  const std::string id = kept_id(r);
  ASSERT_FALSE(id.empty()) << r.err;
  const stdfs::path record = cache_.path() / "kept" / id / "kept.json";
  std::ifstream in(record);
  const std::string original((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto rewrite = [&](const std::string& from, const std::string& to) {
    std::string text = original;
    const size_t at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    std::ofstream(record, std::ios::trunc) << text;
  };

  rewrite("\"kiln_version\": \"", "\"kiln_version\": \"9.9.9-");
  auto version = kiln({"shell", id, "--", "true"});
  EXPECT_EQ(version.exit_code, 125);
  EXPECT_NE(version.err.find("was kept by kiln 9.9.9-"), std::string::npos) << version.err;

  rewrite("\"engine_identity\": \"", "\"engine_identity\": \"other-");
  auto engine = kiln({"shell", id, "--", "true"});
  EXPECT_EQ(engine.exit_code, 125);
  EXPECT_NE(engine.err.find("as other-"), std::string::npos) << engine.err;
  EXPECT_NE(engine.err.find("which cannot restore it"), std::string::npos) << engine.err;

  rewrite("\"format_version\": 1", "\"format_version\": \"1\"");
  auto garbled = kiln({"shell", id, "--", "true"});
  EXPECT_EQ(garbled.exit_code, 125);
  EXPECT_NE(garbled.err.find("is unreadable"), std::string::npos) << garbled.err;
  // gc removes what cannot be read.
  auto gc = kiln({"snapshots", "gc"});
  EXPECT_EQ(gc.exit_code, 0) << gc.err;
  EXPECT_NE(gc.out.find("removed kept VM " + id), std::string::npos) << gc.out;
  EXPECT_TRUE(kept_dirs().empty());
}

}  // namespace
