// KILN_OUTPUT_DIR on real VMs: what a command leaves there comes back into
// --output-dir, pass or fail, within the cap, links as links; each run starts from an
// empty directory, and kiln never empties one that is not its own.
#include "vm_test_support.h"

#include "common/fs.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

using namespace kiln::vmtest;
namespace stdfs = std::filesystem;

namespace {

std::string slurp(const stdfs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

kiln::fs::TempDir temp_dir() {
  auto dir = kiln::fs::TempDir::create(stdfs::temp_directory_path(), "kiln-vm-outputs-");
  EXPECT_TRUE(dir.ok());
  return std::move(*dir);
}

}  // namespace

TEST(Outputs, WhatAFailingCommandLeftComesBackWithinTheCapLinksAsLinks) {
  auto tmp = temp_dir();
  const auto out = tmp.path() / "out";
  auto r = run_kiln({"run", "--output-dir", out.string(), "--output-cap", "1", "--", "sh", "-c",
                     "cd \"$KILN_OUTPUT_DIR\" && echo report > report.txt && mkdir -p logs/deep && "
                     "echo line > logs/deep/a.log && ln -s /etc/shadow shadow && mkfifo fifo && "
                     "head -c 2097152 /dev/zero > big && exit 3"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(slurp(out / "report.txt"), "report\n");
  EXPECT_EQ(slurp(out / "logs/deep/a.log"), "line\n");
  EXPECT_TRUE(stdfs::is_symlink(out / "shadow"));
  EXPECT_EQ(stdfs::read_symlink(out / "shadow"), "/etc/shadow");
  EXPECT_FALSE(stdfs::exists(out / "big"));
  EXPECT_FALSE(stdfs::exists(out / "fifo"));
  EXPECT_NE(r.err.find("outputs: 2 entries left out of " + out.string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("big (2097152 bytes: over the outputs cap)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("fifo (not a regular file, directory or symlink)"), std::string::npos) << r.err;

  // The next run starts from an empty directory: nothing of this one is taken for its.
  auto again = run_kiln({"run", "--output-dir", out.string(), "--", "sh", "-c", "test -d \"$KILN_OUTPUT_DIR\""});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_FALSE(stdfs::exists(out / "report.txt"));
  EXPECT_FALSE(stdfs::exists(out / "shadow"));
  EXPECT_TRUE(stdfs::exists(out / ".kiln-outputs"));
}

TEST(Outputs, ADirectoryKilnDidNotMakeIsNeverEmptied) {
  auto tmp = temp_dir();
  {
    std::ofstream(tmp.path() / "notes.txt") << "mine";
  }
  auto r = run_kiln({"run", "--output-dir", tmp.path().string(), "--", "true"});
  EXPECT_EQ(r.exit_code, 125) << r.err;
  EXPECT_NE(r.err.find("is not empty and kiln did not make it"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(tmp.path() / "notes.txt"), "mine");
}

TEST(Outputs, WithoutOutputDirTheCommandHasNoOutputDirectory) {
  auto r = run_kiln({"run", "--", "sh", "-c", "test -z \"$KILN_OUTPUT_DIR\" && test ! -e /tmp/kiln-outputs"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(Outputs, ACoreDumpComesBackAndIsNamedWithTheCommandThatOpensIt) {
  auto tmp = temp_dir();
  const auto out = tmp.path() / "out";
  auto r = run_kiln({"run", "--output-dir", out.string(), "--", VM_PROBE, "signal", "11"});
  EXPECT_EQ(r.exit_code, 128 + 11) << r.err;
  std::vector<stdfs::path> cores;
  for (const auto& e : stdfs::directory_iterator(out))
    if (e.path().filename().string().starts_with("core.vm_probe.")) cores.push_back(e.path());
  ASSERT_EQ(cores.size(), 1u) << r.err;
  const std::string core = slurp(cores[0]);
  ASSERT_GT(core.size(), 64u);
  EXPECT_EQ(core.substr(0, 4), "\x7f" "ELF");
  EXPECT_EQ(core[16], 4) << "not an ELF core file (e_type ET_CORE)";
  const std::string named = std::string(VM_PROBE) + " dumped core: " + cores[0].string() + " (gdb " + VM_PROBE + " " +
                            cores[0].string() + ")";
  EXPECT_NE(r.err.find(named), std::string::npos) << r.err;
}
