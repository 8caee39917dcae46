// fs::write_file_atomic and the exclusive temp files under it: a file written next to
// its destination must never go through a planted symlink, never reuse (truncate,
// rename away) a name another writer holds, and leave nothing behind when it fails.
#include "common/fs.h"
#include "common/temp_file.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace kiln;
namespace stdfs = std::filesystem;

namespace {

class AtomicWrite : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = fs::TempDir::create(stdfs::temp_directory_path(), "kiln-atomic-test-");
    ASSERT_TRUE(d.ok()) << d.error().message;
    dir_.emplace(std::move(*d));
  }
  stdfs::path path(const std::string& name) const { return dir_->path() / name; }
  std::string read(const stdfs::path& p) const {
    auto text = fs::read_file(p, 1 << 24);
    return text ? *text : "(unreadable: " + text.error().message + ")";
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : stdfs::directory_iterator(dir_->path())) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  // The name every write of `dest` by this process used before writes were exclusive.
  static stdfs::path old_temp_name(const stdfs::path& dest) {
    return stdfs::path(dest.string() + ".tmp." + std::to_string(::getpid()));
  }
  std::optional<fs::TempDir> dir_;
};

}  // namespace

TEST_F(AtomicWrite, NeverWritesThroughASymlinkPlantedAtThePredictableTempName) {
  ASSERT_TRUE(fs::write_file_atomic(path("victim"), "precious\n"));
  stdfs::create_symlink(path("victim"), old_temp_name(path("dest")));
  ASSERT_TRUE(fs::write_file_atomic(path("dest"), "new data\n"));
  EXPECT_EQ(read(path("victim")), "precious\n") << "the write went through the planted link";
  EXPECT_FALSE(stdfs::is_symlink(path("dest"))) << "the planted link was renamed into place";
  EXPECT_EQ(read(path("dest")), "new data\n");
}

TEST_F(AtomicWrite, NeverCreatesAFileThroughADanglingPlantedSymlink) {
  stdfs::create_symlink(path("created-through-link"), old_temp_name(path("dest")));
  ASSERT_TRUE(fs::write_file_atomic(path("dest"), "data"));
  EXPECT_FALSE(stdfs::exists(path("created-through-link")));
  EXPECT_TRUE(stdfs::is_symlink(old_temp_name(path("dest")))) << "someone else's entry was taken over";
}

TEST_F(AtomicWrite, LeavesAnotherWritersTempFileAlone) {
  // What a concurrent writer's temp file looked like: same name for every thread of a process.
  ASSERT_TRUE(fs::write_file_atomic(old_temp_name(path("dest")), "half written by another thread"));
  ASSERT_TRUE(fs::write_file_atomic(path("dest"), "mine"));
  EXPECT_EQ(read(old_temp_name(path("dest"))), "half written by another thread");
  EXPECT_EQ(read(path("dest")), "mine");
}

TEST_F(AtomicWrite, ConcurrentWritersEachPublishAWholeFile) {
  constexpr int kThreads = 6;
  constexpr int kWrites = 40;
  std::vector<std::string> contents;
  for (int t = 0; t < kThreads; ++t) contents.push_back(std::string(64 * 1024, static_cast<char>('a' + t)));
  std::vector<int> failures(kThreads, 0);
  std::vector<std::string> first_error(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kWrites; ++i)
        if (auto r = fs::write_file_atomic(path("shared"), contents[t]); !r && failures[t]++ == 0)
          first_error[t] = r.error().message;
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], 0) << "writer " << t << ": " << first_error[t];
  EXPECT_NE(std::find(contents.begin(), contents.end(), read(path("shared"))), contents.end())
      << "the published file mixes writers";
  EXPECT_EQ(names(), std::vector<std::string>{"shared"}) << "temp files were left behind";
}

TEST_F(AtomicWrite, LeavesNoTempFileWhenTheRenameFails) {
  // A non-empty directory cannot be replaced by a file: the write fails after the temp
  // file was written in full.
  ASSERT_TRUE(fs::make_dirs(path("dest") / "child"));
  auto r = fs::write_file_atomic(path("dest"), "data");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find(path("dest").string()), std::string::npos) << r.error().message;
  EXPECT_EQ(names(), std::vector<std::string>{"dest"});
}

TEST_F(AtomicWrite, LeavesNoTempFileWhenWritingFails) {
  // A file size limit makes write(2) fail with EFBIG halfway (SIGXFSZ ignored), as a full
  // disk would, even for root.
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  auto r = fs::write_file_atomic(path("dest"), std::string(4096, 'x'));
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("File too large"), std::string::npos) << r.error().message;
  EXPECT_TRUE(names().empty()) << names().front();
}

// Whatever random name a temp file gets, it is opened by create_new_file: a symlink at
// that exact name, dangling or not, is refused and left as it was.
TEST_F(AtomicWrite, CreatingANewFileRefusesAnySymlinkAtItsName) {
  ASSERT_TRUE(fs::write_file_atomic(path("victim"), "precious"));
  stdfs::create_symlink(path("victim"), path("link-to-file"));
  stdfs::create_symlink(path("nowhere"), path("dangling"));
  EXPECT_FALSE(fs::create_new_file(path("link-to-file"), 0644));
  EXPECT_FALSE(fs::create_new_file(path("dangling"), 0644));
  EXPECT_EQ(read(path("victim")), "precious");
  EXPECT_FALSE(stdfs::exists(path("nowhere")));
  EXPECT_TRUE(fs::create_new_file(path("fresh"), 0644));
  EXPECT_FALSE(fs::create_new_file(path("fresh"), 0644)) << "an existing regular file was reused";
}

TEST_F(AtomicWrite, TempNamesAreUnpredictableAndHidden) {
  auto a = fs::TempFile::beside(path("dest"));
  auto b = fs::TempFile::beside(path("dest"));
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->path(), b->path());
  const std::string name = a->path().filename().string();
  EXPECT_EQ(name.rfind(".dest.tmp-", 0), 0u) << name;
  EXPECT_EQ(name.size(), std::string(".dest.tmp-").size() + 16) << name;
  EXPECT_EQ(a->path().parent_path(), dir_->path());
}

TEST_F(AtomicWrite, AnUncommittedTempFileIsRemoved) {
  stdfs::path seen;
  {
    auto t = fs::TempFile::create(dir_->path(), "scratch-");
    ASSERT_TRUE(t);
    ASSERT_TRUE(t->write("partial"));
    seen = t->path();
    EXPECT_TRUE(stdfs::exists(seen));
  }
  EXPECT_FALSE(stdfs::exists(seen));
  EXPECT_TRUE(names().empty());
}

TEST_F(AtomicWrite, AMovedTempFileIsRemovedOnlyByItsNewOwner) {
  std::optional<fs::TempFile> first;
  auto t = fs::TempFile::create(dir_->path(), "moved-");
  ASSERT_TRUE(t);
  first.emplace(std::move(*t));
  fs::TempFile second(std::move(*first));
  first.reset();
  ASSERT_TRUE(stdfs::exists(second.path())) << "the moved-from object removed the file";
  ASSERT_TRUE(second.commit(path("dest"), fs::Durability::unflushed));
  EXPECT_EQ(names(), std::vector<std::string>{"dest"});
}

TEST_F(AtomicWrite, TempDirsAreFreshAndPrivate) {
  auto a = fs::make_temp_dir(dir_->path(), "work-");
  auto b = fs::make_temp_dir(dir_->path(), "work-");
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  struct stat st {};
  ASSERT_EQ(::lstat(a->c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}
