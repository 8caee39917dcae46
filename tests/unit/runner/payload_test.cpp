#include "runner/payload.h"

#include <gtest/gtest.h>

#include <algorithm>

using namespace kiln::runner;

namespace {
bool has(const Payload& p, PayloadEntry::Kind kind, const std::string& path) {
  return std::any_of(p.entries().begin(), p.entries().end(),
                     [&](const PayloadEntry& e) { return e.kind == kind && e.path == path; });
}
}  // namespace

TEST(LoaderList, ParsesResolvedLibrariesAndTheInterpreter) {
  auto libs = parse_loader_list(
      "\tlinux-vdso.so.1 (0x00007ffd)\n"
      "\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f)\n"
      "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n"
      "\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n",
      "t");
  ASSERT_TRUE(libs.ok());
  EXPECT_EQ(*libs, (std::vector<std::string>{"/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libc.so.6",
                                             "/lib64/ld-linux-x86-64.so.2"}));
}

TEST(LoaderList, MissingLibraryIsAnErrorNamingIt) {
  auto libs = parse_loader_list("\tlibfoo.so.1 => not found\n", "/bin/t");
  ASSERT_FALSE(libs.ok());
  EXPECT_NE(libs.error().message.find("libfoo.so.1"), std::string::npos);
}

TEST(Payload, DynamicExecutableBringsItsClosureAndSymlinks) {
  Payload p;
  auto r = p.add_executable_with_closure("/bin/sh");
  ASSERT_TRUE(r.ok()) << r.error().message;
  // Debian 12 is merged-/usr: /bin is a symlink the guest must see too.
  EXPECT_TRUE(has(p, PayloadEntry::Kind::symlink, "/bin"));
  EXPECT_TRUE(has(p, PayloadEntry::Kind::symlink, "/usr/bin/sh"));  // sh -> dash
  EXPECT_TRUE(has(p, PayloadEntry::Kind::file, "/usr/bin/dash"));
  EXPECT_TRUE(std::any_of(p.entries().begin(), p.entries().end(),
                          [](const PayloadEntry& e) { return e.path.find("libc.so") != std::string::npos; }));
  EXPECT_GT(p.total_bytes(), 100000u);
}

TEST(Payload, MissingPathIsAClearError) {
  Payload p;
  auto r = p.add_path("/no/such/file");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("does not exist"), std::string::npos);
}

TEST(Payload, TextFileIsNotAnExecutable) {
  Payload p;
  auto r = p.add_executable_with_closure("/etc/os-release");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("neither an ELF"), std::string::npos) << r.error().message;
}

namespace kiln::runner {
namespace {

// An OCI image guest keeps the host's files apart (runner/image_plan): under a prefix,
// absolute symlink targets moved with them, relative ones unchanged, and the prefix
// part of the content digest (a payload layer holds the files where they were put).
TEST(PayloadPrefix, PathsAndAbsoluteSymlinkTargetsMoveUnderThePrefix) {
  Payload p;
  ASSERT_TRUE(p.add_executable_with_closure("/bin/true").ok());
  ASSERT_TRUE(p.add_path("/usr/share/common-licenses/GPL-3").ok());
  auto plain = p.content_digest();
  ASSERT_TRUE(plain.ok());
  p.place_under("/.kiln/host");
  auto placed = p.content_digest();
  ASSERT_TRUE(placed.ok());
  EXPECT_NE(*plain, *placed);
  ASSERT_FALSE(p.library_dirs().empty());
  bool saw_data = false;
  for (const auto& e : p.entries()) {
    if (e.path == "/usr/share/common-licenses/GPL-3") {
      saw_data = true;
      EXPECT_FALSE(e.closure);
      EXPECT_EQ(p.guest_path(e), e.path) << "data keeps its host path";
      continue;
    }
    EXPECT_TRUE(e.closure) << e.path;
    EXPECT_EQ(p.guest_path(e), "/.kiln/host" + e.path);
    if (e.kind != PayloadEntry::Kind::symlink) continue;
    if (e.symlink_target.front() == '/') EXPECT_EQ(p.guest_symlink_target(e), "/.kiln/host" + e.symlink_target);
    else EXPECT_EQ(p.guest_symlink_target(e), e.symlink_target);
  }
  EXPECT_TRUE(saw_data);
}

}  // namespace
}  // namespace kiln::runner
