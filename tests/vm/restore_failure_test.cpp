// A restore that fails: only a snapshot the engine finds corrupt is rebaked; a
// failure of this host (out of memory, out of file descriptors) is reported as it
// is and leaves the store alone.
#include "vm_test_support.h"

#include "common/digest.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>

using namespace kiln::vmtest;

namespace {

// Every file of every snapshot in the store, with its size and modification time.
std::map<std::string, std::pair<uintmax_t, std::filesystem::file_time_type>> store_listing(
    const std::filesystem::path& cache) {
  std::map<std::string, std::pair<uintmax_t, std::filesystem::file_time_type>> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(cache / "snapshots"))
    if (e.is_regular_file()) out[e.path().string()] = {e.file_size(), e.last_write_time()};
  return out;
}

// `kiln ARGS...` under an address-space limit of `kib` KiB: dash's ulimit -v sets
// RLIMIT_AS for kiln and everything it starts (qemu).
KilnRun run_kiln_limited(unsigned long kib, const std::vector<std::string>& args, const PrivateCache& cache) {
  std::vector<std::string> argv = {"/bin/sh", "-c", "ulimit -v " + std::to_string(kib) + " && exec \"$@\"", "sh"};
  for (auto& a : kiln_argv(args, cache)) argv.push_back(a);
  return run_argv(argv);
}

}  // namespace

// The qemu engine's TCG reserves a 1 GiB code buffer, and the kvm engine maps the
// 256 MiB guest: under a 200 MiB address-space limit either restore fails with ENOMEM
// (kiln itself, before restoring, needs far less). That is the host's limit, not a bad
// snapshot: kiln must say so and must not rebake a golden snapshot that is fine.
TEST(RestoreFailure, AResourceLimitIsReportedAndNothingIsRebaked) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache.path()).exit_code, 0);
  const auto before = store_listing(cache.path());

  auto r = run_kiln_limited(200 * 1024, {"run", "--no-layers", "--", "sh", "-c", "exit 0"}, cache);
  EXPECT_EQ(r.exit_code, 125) << r.err;
  EXPECT_EQ(r.err.find("rebak"), std::string::npos) << "a host limit made kiln rebake a good snapshot: " << r.err;
  EXPECT_NE(r.err.find("emory"), std::string::npos) << "the error does not say memory ran out: " << r.err;
  EXPECT_EQ(store_listing(cache.path()), before) << "the store changed under a failed restore";

  auto ok = run_kiln({"run", "--no-layers", "--", "sh", "-c", "exit 7"}, cache.path());
  EXPECT_EQ(ok.exit_code, 7) << ok.err;
  EXPECT_EQ(ok.err.find("rebak"), std::string::npos) << ok.err;
}

// A state file that passes the store's checksums (they were recomputed) but that the
// engine cannot load is corrupt in a way only restoring finds: the golden is rebaked
// once and the run goes on.
TEST(RestoreFailure, AStateTheEngineRefusesIsRebakedOnce) {
  PrivateCache cache;
  ASSERT_EQ(run_kiln({"bake"}, cache.path()).exit_code, 0);
  auto snaps = cache.snapshots();
  ASSERT_EQ(snaps.size(), 1u);
  const auto state = snaps[0] / "state.bin";
  {
    std::fstream f(state, std::ios::in | std::ios::out | std::ios::binary);
    f.write("\0\0\0\0\0\0\0\0", 8);  // both engines' streams start with a magic number
  }
  const auto meta_path = snaps[0] / "metadata.json";
  auto meta = nlohmann::json::parse(std::ifstream(meta_path));
  auto digest = kiln::digest_file(state);
  ASSERT_TRUE(digest.ok()) << digest.error().message;
  meta["files"]["state"]["digest"] = *digest;
  std::ofstream(meta_path) << meta.dump(2);

  auto r = run_kiln({"run", "--no-layers", "--", "sh", "-c", "exit 3"}, cache.path());
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("rebaking"), std::string::npos) << r.err;
  auto again = run_kiln({"run", "--no-layers", "--", "sh", "-c", "exit 4"}, cache.path());
  EXPECT_EQ(again.exit_code, 4) << again.err;
  EXPECT_EQ(again.err.find("rebak"), std::string::npos) << "the rebake did not heal the store: " << again.err;
}
