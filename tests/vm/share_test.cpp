// Tree shares (docs/shares.md): host directories appear read-only and live at their
// own paths in the guest, read on demand; the guest's writes there stay in the guest.
#include "common/fs.h"
#include "vm_test_support.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

namespace kiln::vmtest {
namespace {

namespace fs = std::filesystem;

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// path -> "type mode size contents" of everything under `root`, without following links.
std::map<std::string, std::string> listing(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    struct stat st{};
    ::lstat(it->path().c_str(), &st);
    std::string entry = std::to_string(st.st_mode) + " " + std::to_string(st.st_size);
    if (S_ISREG(st.st_mode)) entry += " " + read_all(it->path());
    if (S_ISLNK(st.st_mode)) entry += " -> " + fs::read_symlink(it->path()).string();
    out[fs::relative(it->path(), root).string()] = entry;
  }
  return out;
}

class Shares : public testing::Test {
 protected:
  void SetUp() override {
    auto dir = kiln::fs::TempDir::create(fs::path(KILN_TEST_CACHE).parent_path(), "share-test-");
    ASSERT_TRUE(dir) << dir.error().message;
    tree_.emplace(std::move(*dir));
    root_ = tree_->path();
    fs::create_directories(root_ / "data");
    fs::create_directories(root_ / "nested/deep");
    std::ofstream(root_ / "data/words.txt") << "alpha beta\n";
    std::mt19937 rng(42);
    std::string blob(1 << 20, '\0');
    for (auto& c : blob) c = static_cast<char>(rng());
    std::ofstream(root_ / "nested/deep/blob.bin", std::ios::binary) << blob;
    // A host file outside the tree that a link inside points to: the guest must not get it.
    outside_ = root_.parent_path() / ("share-test-outside-" + std::to_string(::getpid()));
    std::ofstream(outside_) << "host only\n";
    fs::create_symlink(outside_, root_ / "out-link");
    ASSERT_EQ(::mkfifo((root_ / "fifo").c_str(), 0600), 0);
  }
  void TearDown() override { fs::remove(outside_); }

  std::optional<kiln::fs::TempDir> tree_;
  fs::path root_;
  fs::path outside_;
};

TEST_F(Shares, TheGuestReadsTheTreeAndItsWritesStayInTheGuest) {
  const auto before = listing(root_);
  const std::string script =
      "cd \"$0\" && cat data/words.txt && ls -a | tr '\\n' ' ' && echo &&"
      " echo written > data/new.txt && cat data/new.txt &&"
      " echo more >> data/words.txt && cat data/words.txt &&"
      " readlink out-link && (cat out-link 2>/dev/null || echo unresolved) &&"
      " md5sum nested/deep/blob.bin | cut -d' ' -f1";
  auto r = run_kiln({"run", "--share", root_.string(), "--", "sh", "-c", script, root_.string()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto md5 = run_argv({"sh", "-c", "md5sum \"$0\" | cut -d' ' -f1", (root_ / "nested/deep/blob.bin").string()});
  std::string expected = "alpha beta\n"
                         ". .. data nested out-link \n"  // the FIFO is not shared
                         "written\n"
                         "alpha beta\nmore\n" +
                         outside_.string() + "\nunresolved\n" + md5.out;
  EXPECT_EQ(r.out, expected);
  EXPECT_EQ(listing(root_), before) << "the host tree changed";
}

TEST_F(Shares, FilesArePlacedAboveTheShareAndTheTreeIsLive) {
  // The executable lives inside the shared tree, as a test does in its build tree: the
  // payload puts it there in the guest, and the share must not hide it.
  fs::create_directories(root_ / "bin");
  fs::copy_file(VM_PROBE, root_ / "bin/probe");
  fs::permissions(root_ / "bin/probe", fs::perms::owner_all);
  std::ofstream(root_ / "data/words.txt") << "changed on the host\n";
  auto r = run_kiln({"run", "--share", root_.string(), "--", (root_ / "bin/probe").string(), "cat",
                     (root_ / "data/words.txt").string()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "changed on the host\n");
}

TEST_F(Shares, WithoutShareTheGuestHasNoTree) {
  auto none = run_kiln({"run", "--", "sh", "-c", "test ! -e \"$0\"", (root_ / "data/words.txt").string()});
  EXPECT_EQ(none.exit_code, 0) << none.out << none.err;
  auto off = run_kiln({"run", "--share", root_.string(), "--no-share", "--", "sh", "-c", "test ! -e \"$0\"",
                       (root_ / "data/words.txt").string()});
  EXPECT_EQ(off.exit_code, 0) << off.out << off.err;
}

TEST(SharesUsage, AMissingShareIsAUsageError) {
  auto r = run_kiln({"run", "--share", "/nonexistent/kiln-share", "--", "true"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/kiln-share"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kiln::vmtest
