// OCI images as the guest's root (docs/images.md), end to end through the real kiln
// binary: images built from Debian packages by tests/images/build-test-images (the
// vm.setup.images fixture) and read from their OCI layouts; the registry path has
// its own tests (tests/vm/image_registry_test.cpp).
#include "vm_test_support.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace kiln::vmtest {
namespace {

namespace fs = std::filesystem;

std::string layout(const std::string& name, const std::string& tag) {
  return "oci:" + (fs::path(KILN_TEST_IMAGES) / name).string() + ":" + tag;
}

const std::string kPg = layout("pg", "15");
const std::string kBullseye = layout("bullseye", "11");

KilnRun run_in(const std::string& image, std::vector<std::string> args) {
  std::vector<std::string> argv = {"run", "--image", image};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_kiln(argv);
}

TEST(Images, ABareCommandIsTheImagesProgram) {
  auto r = run_in(kPg, {"--", "psql", "--version"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("psql (PostgreSQL) 15."), std::string::npos) << r.out;
  // The host has no psql in the default guest: the image's is the one that ran.
  EXPECT_EQ(run_in(kBullseye, {"--", "cat", "/etc/debian_version"}).out.substr(0, 3), "11.");
}

// The image's libc is older than the host's (2.31 < 2.36): a host executable linked
// against the host's runs only with its own loader and libraries, and the image's
// programs keep the image's libc.
TEST(Images, AHostExecutableKeepsItsLibrariesAndTheImageKeepsItsOwn) {
  auto host = run_in(kBullseye, {"--", GUEST_WORLD_PROBE, "libc-version"});
  ASSERT_EQ(host.exit_code, 0) << host.out << host.err;
  EXPECT_EQ(host.out, "2.36\n");
  auto image = run_in(kBullseye, {"--", "sh", "-c", "ldd --version | head -1; ls /lib/x86_64-linux-gnu/libc-2.31.so"});
  ASSERT_EQ(image.exit_code, 0) << image.out << image.err;
  EXPECT_NE(image.out.find("GLIBC 2.31"), std::string::npos) << image.out;
}

// --file data keeps its host path in an image (only programs and libraries go apart).
TEST(Images, FilesKeepTheirHostPaths) {
  const fs::path data = fs::path(KILN_TEST_IMAGES) / "seed-layer.tar";
  auto r = run_in(kBullseye, {"--file", data.string(), "--", "sh", "-c", "test -f '" + data.string() + "' && echo there"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "there\n");
}

TEST(Images, TheImagesEnvironmentAndUsersApply) {
  auto env = run_in(kPg, {"--env", "EXTRA=1", "--", "sh", "-c", "echo $LANG $EXTRA; id -un; pwd"});
  ASSERT_EQ(env.exit_code, 0) << env.err;
  EXPECT_EQ(env.out, "C.UTF-8 1\nroot\n" + fs::current_path().string() + "\n");
  auto user = run_in(kPg, {"--user", "postgres", "--", "sh", "-c", "id -un; id -gn; echo $HOME"});
  ASSERT_EQ(user.exit_code, 0) << user.err;
  EXPECT_EQ(user.out, "postgres\npostgres\n/var/lib/postgresql\n");
  auto missing = run_in(kPg, {"--user", "no-such-user", "--", "true"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("no user 'no-such-user'"), std::string::npos) << missing.err;
}

// The guest world of docs/guest.md holds in an image too: its own /etc files where it
// has them, kiln's hostname, and the entries its /etc/hosts lacks for that name.
TEST(Images, TheGuestWorldHoldsInAnImage) {
  auto r = run_in(kPg, {"--", GUEST_WORLD_PROBE});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("0 failed"), std::string::npos) << r.out;
  auto name = run_in(kPg, {"--", "sh", "-c", "cat /etc/hostname; hostname; getent hosts kiln | wc -l"});
  ASSERT_EQ(name.exit_code, 0) << name.err;
  EXPECT_EQ(name.out, "kiln\nkiln\n1\n");
}

// Writes land in the guest's tmpfs upper layer: the next VM sees the image unchanged.
TEST(Images, WritesNeverReachTheImage) {
  const std::string seed = layout("pg-seeded", "15");
  auto write = run_in(seed, {"--", "sh", "-c", "echo changed > /etc/kiln-test/seed && rm /bin/ls && cat /etc/kiln-test/seed"});
  ASSERT_EQ(write.exit_code, 0) << write.err;
  EXPECT_EQ(write.out, "changed\n");
  auto read = run_in(seed, {"--", "sh", "-c", "cat /etc/kiln-test/seed; test -x /bin/ls && echo ls-there"});
  ASSERT_EQ(read.exit_code, 0) << read.err;
  EXPECT_EQ(read.out, "seeded by build-test-images\nls-there\n");
}

// A server started by a setup is running in the fixture every test restores.
TEST(Images, ASetupStartsTheImagesPostgresOnce) {
  auto r = run_in(kPg, {"--user", "postgres", "--setup", "pg_ctlcluster 15 main start", "--", "psql", "-XtAc",
                        "select 6 * 7"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "42\n");
}

// An image a snapshot was baked from is in use: listed so, kept by gc, and removed
// only with --force (docs/image-store.md).
TEST(Images, AnImageInUseByASnapshotIsKept) {
  PrivateCache cache;
  const std::string image = layout("bullseye", "11");
  auto ran = run_kiln({"run", "--image", image, "--", "true"}, cache);
  ASSERT_EQ(ran.exit_code, 0) << ran.err;
  auto list = run_kiln({"images", "list"}, cache);
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("1 snapshot"), std::string::npos) << list.out;
  auto gc = run_kiln({"snapshots", "gc"}, cache);
  ASSERT_EQ(gc.exit_code, 0) << gc.err;
  auto after_gc = run_kiln({"images", "list"}, cache);
  EXPECT_NE(after_gc.out.find("1 snapshot"), std::string::npos) << "gc kept it: " << after_gc.out;
  auto rm = run_kiln({"images", "rm", image}, cache);
  EXPECT_NE(rm.exit_code, 0);
  EXPECT_NE(rm.err.find("in use by snapshot"), std::string::npos) << rm.err;
  auto forced = run_kiln({"images", "rm", "--force", image}, cache);
  EXPECT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_EQ(leftovers(cache), "");
}

}  // namespace
}  // namespace kiln::vmtest
