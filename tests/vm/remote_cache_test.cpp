// The remote cache end to end on real VMs, with a real registry on loopback (Debian's
// docker-registry, started by scripts/test-registry) and kiln caches standing for the
// machines of a CI fleet: A has the golden and pushes it; B, with an empty cache, pulls
// it instead of baking, builds a payload layer and pushes that in the background; C,
// empty too, pulls both and only runs. A registry that is gone leaves a run working.
// Transfer details (tampered blobs, foreign keys, fixtures, auth) are
// tests/registry/remote_cache_test.cpp's.
#include "vm_test_support.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

using namespace kiln::vmtest;
namespace stdfs = std::filesystem;

namespace {

constexpr const char* kLayerBuilt = "(payload layer)";  // -v progress when a payload layer is built
constexpr const char* kPulling = "pulling snapshot ";
constexpr const char* kBaking = "baking the golden snapshot: cold-booting";



class RemoteCache : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = run_argv({TEST_REGISTRY, "--watch", std::to_string(::getpid())});
    ASSERT_EQ(started.exit_code, 0) << started.err;
    addr_ = value_of(started.out, "ADDR");
    dir_ = value_of(started.out, "DIR");
    ASSERT_FALSE(addr_.empty()) << started.out;
    repo_ = addr_ + "/kiln/vm-cache";
  }
  void TearDown() override { stop_registry(); }
  void stop_registry() {
    if (!dir_.empty()) run_argv({TEST_REGISTRY, "--stop", dir_});
    dir_.clear();
  }

  /// Machine A: the shared store's golden, pushed by hand. Its id.
  std::string push_golden() {
    PrivateCache a;
    a.use_shared_snapshots();
    auto bake = run_kiln({"bake"}, a);
    EXPECT_EQ(bake.exit_code, 0) << bake.err;
    // "up to date <store>/<id> (engine, ...)"
    auto start = bake.out.find("/snapshots/");
    EXPECT_NE(start, std::string::npos) << bake.out;
    std::string id = bake.out.substr(start + 11, bake.out.find(' ', start) - start - 11);
    auto pushed = run_kiln({"snapshots", "push", "--insecure-registry", addr_, repo_, id}, a);
    EXPECT_EQ(pushed.exit_code, 0) << pushed.err;
    EXPECT_NE(pushed.out.find("pushed 1 snapshot(s)"), std::string::npos) << pushed.out << pushed.err;
    return id;
  }

  KilnRun run_with_cache(const PrivateCache& cache, const std::vector<std::string>& command) {
    std::vector<std::string> args = {"run", "-v", "--remote-cache", repo_, "--insecure-registry", addr_, "--"};
    args.insert(args.end(), command.begin(), command.end());
    return run_kiln(args, cache);
  }

  std::string addr_, dir_, repo_;
};

TEST_F(RemoteCache, AnEmptyCachePullsWhatAnotherMachineBakedAndBuilt) {
  const std::string golden = push_golden();
  ASSERT_FALSE(HasFailure());

  // Machine B: pulls the golden, builds the probe's payload layer, pushes it before it exits.
  PrivateCache b;
  auto rb = run_with_cache(b, {probe(), "exit", "5"});
  ASSERT_EQ(rb.exit_code, 5) << rb.err;
  EXPECT_EQ(count(rb.err, kPulling + golden.substr(0, 12)), 1) << rb.err;
  EXPECT_EQ(count(rb.err, kBaking), 0) << rb.err;
  EXPECT_EQ(count(rb.err, kLayerBuilt), 1) << rb.err;
  EXPECT_EQ(count(rb.err, "pushing snapshot "), 1) << rb.err;  // the layer; the golden is there
  EXPECT_EQ(b.snapshots().size(), 2u);

  // Machine C: pulls the golden and B's layer, bakes and builds nothing, pushes nothing.
  PrivateCache c;
  auto rc = run_with_cache(c, {probe(), "exit", "6"});
  ASSERT_EQ(rc.exit_code, 6) << rc.err;
  EXPECT_EQ(count(rc.err, kPulling), 2) << rc.err;
  EXPECT_EQ(count(rc.err, kBaking), 0) << rc.err;
  EXPECT_EQ(count(rc.err, kLayerBuilt), 0) << rc.err;
  EXPECT_EQ(count(rc.err, "pushing snapshot "), 0) << rc.err;
  EXPECT_EQ(c.snapshots().size(), 2u);
  stop_registry();  // the registry is this test's child: leftovers() would count it
  EXPECT_EQ(leftovers(b), "");
  EXPECT_EQ(leftovers(c), "");
}

TEST_F(RemoteCache, ConcurrentRunsOnOneMachinePullAMissingGoldenOnce) {
  const std::string golden = push_golden();
  ASSERT_FALSE(HasFailure());
  PrivateCache d;
  KilnRun first, second;
  std::thread t([&] { first = run_with_cache(d, {"sh", "-c", "echo one"}); });
  second = run_with_cache(d, {"sh", "-c", "echo two"});
  t.join();
  ASSERT_EQ(first.exit_code, 0) << first.err;
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(first.out + second.out == "one\ntwo\n" || first.out + second.out == "two\none\n", true);
  // The bake lock: one pulls, the other waits for it and restores what it pulled.
  EXPECT_EQ(count(first.err + second.err, kPulling), 1) << first.err << second.err;
  EXPECT_EQ(count(first.err + second.err, kBaking), 0) << first.err << second.err;
  EXPECT_EQ(d.snapshots().size(), 1u);
  stop_registry();
  EXPECT_EQ(leftovers(d), "");
}

TEST_F(RemoteCache, AMachineWithAnotherQemuNeverPullsThisOnesGolden) {
  const std::string golden = push_golden();
  ASSERT_FALSE(HasFailure());
  // Machine W: the same QEMU behind a wrapper that reports another version, as a machine
  // with another QEMU package would. Its engine identity, so its key, differs.
  PrivateCache w;
  const auto wrapper = w.path() / "qemu-9.9.9";
  std::ofstream(wrapper) << "#!/bin/sh\n"
                            "[ \"$1\" = --version ] && { echo 'QEMU emulator version 9.9.9'; exit 0; }\n"
                            "exec qemu-system-x86_64 \"$@\"\n";
  stdfs::permissions(wrapper, stdfs::perms::owner_all);
  std::vector<std::string> args = {"run", "-v", "--remote-cache", repo_, "--insecure-registry", addr_, "--",
                                   "sh", "-c", "echo ran"};
  auto r = run_kiln(args, w, {"KILN_QEMU=" + wrapper.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "ran\n");
  EXPECT_EQ(count(r.err, kPulling), 0) << r.err;
  EXPECT_GE(count(r.err, kBaking), 1) << r.err;
  EXPECT_EQ(count(r.err, "pushing snapshot "), 1) << r.err;  // its own golden, under its own key
  ASSERT_EQ(w.snapshots().size(), 1u);
  EXPECT_NE(w.snapshots().front().filename().string(), golden);
  auto list = run_kiln({"snapshots", "list"}, w);
  EXPECT_NE(list.out.find("qemu-9.9.9/"), std::string::npos) << list.out;
  stop_registry();
  EXPECT_EQ(leftovers(w), "");
}

TEST_F(RemoteCache, ARegistryThatIsGoneLeavesTheRunWorkingLocally) {
  const std::string golden = push_golden();
  ASSERT_FALSE(HasFailure());
  PrivateCache d;
  auto pulled = run_kiln({"snapshots", "pull", "--insecure-registry", addr_, repo_, golden}, d);
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err;
  stop_registry();
  // The layer is looked for, not found (refused connection), built here; its push fails: warnings only.
  auto r = run_with_cache(d, {probe(), "exit", "4"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(count(r.err, kLayerBuilt), 1) << r.err;
  EXPECT_GE(count(r.err, "warning: "), 1) << r.err;
  EXPECT_EQ(d.snapshots().size(), 2u);
  EXPECT_EQ(leftovers(d), "");
}

}  // namespace
