// memo_digest_file: a digest remembered by file identity is returned without reading the
// file; any change of identity, a bad record, or a file too young to trust is hashed.
// "Later" is a time passed in: a test cannot make a file's ctime old.
#include "common/digest.h"
#include "common/digest_memo.h"
#include "common/fs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <thread>
#include <vector>

using namespace kiln;

namespace {

namespace stdfs = std::filesystem;

class DigestMemo : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = fs::TempDir::create(stdfs::temp_directory_path(), "kiln-digest-memo-test-");
    ASSERT_TRUE(d.ok());
    dir_ = std::make_unique<fs::TempDir>(std::move(*d));
    memo_digest_forget_in_memory();
  }
  stdfs::path path(const char* name) const { return dir_->path() / name; }
  stdfs::path memo_dir() const { return dir_->path() / "memo"; }
  static void write(const stdfs::path& p, const std::string& text) { std::ofstream(p, std::ios::trunc) << text; }
  // Well past kRacyMargin after the test's files were written.
  static std::chrono::system_clock::time_point later() { return std::chrono::system_clock::now() + std::chrono::seconds(30); }
  Result<std::string> memo(const stdfs::path& p) const { return memo_digest_file(p, memo_dir(), later()); }
  // The memo's records (one per path digested).
  std::vector<stdfs::path> records() const {
    std::vector<stdfs::path> out;
    std::error_code ec;
    for (const auto& e : stdfs::directory_iterator(memo_dir(), ec)) out.push_back(e.path());
    return out;
  }
  static std::string read(const stdfs::path& p) { return fs::read_file(p, 4096).value(); }
  std::unique_ptr<fs::TempDir> dir_;
};

}  // namespace

TEST_F(DigestMemo, SecondDigestOfAnUnchangedFileReadsNothing) {
  write(path("f"), "hello");
  uint64_t before = memo_digest_files_hashed();
  EXPECT_EQ(*memo(path("f")), digest_bytes("hello"));
  EXPECT_EQ(memo_digest_files_hashed(), before + 1);
  EXPECT_EQ(*memo(path("f")), digest_bytes("hello"));
  EXPECT_EQ(memo_digest_files_hashed(), before + 1);
  EXPECT_EQ(records().size(), 1u);
}

TEST_F(DigestMemo, RecordOnDiskServesAnotherProcessWithoutReading) {
  write(path("f"), "hello");
  ASSERT_TRUE(memo(path("f")).ok());
  memo_digest_forget_in_memory();  // as a new kiln process would start
  uint64_t before = memo_digest_files_hashed();
  EXPECT_EQ(*memo(path("f")), digest_bytes("hello"));
  EXPECT_EQ(memo_digest_files_hashed(), before);
}

TEST_F(DigestMemo, RecordIsWhatIsReturnedWhileTheIdentityHolds) {
  // Proof that a hit reads the record, not the file: a record edited to another valid
  // digest is believed (the cache directory is the user's own; see digest.h).
  write(path("f"), "hello");
  ASSERT_TRUE(memo(path("f")).ok());
  ASSERT_EQ(records().size(), 1u);
  stdfs::path record = records()[0];
  std::string text = read(record);
  std::string real = digest_bytes("hello");
  std::string other = digest_bytes("other");
  text.replace(text.find(real), real.size(), other);
  write(record, text);
  memo_digest_forget_in_memory();
  EXPECT_EQ(*memo(path("f")), other);
}

TEST_F(DigestMemo, ChangedSizeIsRehashed) {
  write(path("f"), "hello");
  ASSERT_EQ(*memo(path("f")), digest_bytes("hello"));
  write(path("f"), "hello, world");
  uint64_t before = memo_digest_files_hashed();
  EXPECT_EQ(*memo(path("f")), digest_bytes("hello, world"));
  EXPECT_EQ(memo_digest_files_hashed(), before + 1);
}

TEST_F(DigestMemo, ChangedMtimeIsRehashed) {
  write(path("f"), "hello");
  ASSERT_EQ(*memo(path("f")), digest_bytes("hello"));
  timespec times[2] = {{0, UTIME_OMIT}, {1'000'000'000, 123}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path("f").c_str(), times, 0), 0);
  uint64_t before = memo_digest_files_hashed();
  EXPECT_EQ(*memo(path("f")), digest_bytes("hello"));
  EXPECT_EQ(memo_digest_files_hashed(), before + 1);
}

TEST_F(DigestMemo, SameSizeRewriteWithOldMtimeIsRehashed) {
  // Content changed, size kept, mtime set back: only ctime (and the racy guard) tell.
  write(path("f"), "aaaa");
  struct stat st {};
  ASSERT_EQ(::stat(path("f").c_str(), &st), 0);
  ASSERT_EQ(*memo(path("f")), digest_bytes("aaaa"));
  // Rewrite until the kernel's coarse clock has ticked, so ctime differs: within one tick
  // the identity is the same, the racy case that later() deliberately steps past here.
  struct stat now_st {};
  do {
    ::usleep(1000);
    write(path("f"), "bbbb");
    ASSERT_EQ(::stat(path("f").c_str(), &now_st), 0);
  } while (now_st.st_ctim.tv_sec == st.st_ctim.tv_sec && now_st.st_ctim.tv_nsec == st.st_ctim.tv_nsec);
  timespec times[2] = {{0, UTIME_OMIT}, st.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, path("f").c_str(), times, 0), 0);
  memo_digest_forget_in_memory();
  EXPECT_EQ(*memo(path("f")), digest_bytes("bbbb"));
}

TEST_F(DigestMemo, FreshFileIsNeverRemembered) {
  // Modified just now: a rewrite within the same timestamp tick would keep its identity
  // (the racy-timestamp case), so it is hashed every time and no record is written.
  uint64_t before = memo_digest_files_hashed();
  auto now = std::chrono::system_clock::now();
  write(path("f"), "aaaa");
  EXPECT_EQ(*memo_digest_file(path("f"), memo_dir(), now), digest_bytes("aaaa"));
  write(path("f"), "bbbb");  // same size, quite possibly the same mtime and ctime
  EXPECT_EQ(*memo_digest_file(path("f"), memo_dir(), now), digest_bytes("bbbb"));
  EXPECT_EQ(memo_digest_files_hashed(), before + 2);
  EXPECT_TRUE(records().empty());
}

TEST_F(DigestMemo, RecordOfAReplacedFileIsNotUsed) {
  write(path("f"), "aaaa");
  ASSERT_EQ(*memo(path("f")), digest_bytes("aaaa"));
  write(path("g"), "bbbb");
  stdfs::rename(path("g"), path("f"));  // same path and size, another inode
  memo_digest_forget_in_memory();
  uint64_t before = memo_digest_files_hashed();
  EXPECT_EQ(*memo(path("f")), digest_bytes("bbbb"));
  EXPECT_EQ(memo_digest_files_hashed(), before + 1);
}

TEST_F(DigestMemo, BadRecordsAreIgnoredAndRewritten) {
  write(path("f"), "hello");
  ASSERT_TRUE(memo(path("f")).ok());
  stdfs::path record = records()[0];
  const std::string good = read(record);
  const std::string real = digest_bytes("hello");
  std::string not_hex = good;
  not_hex.replace(not_hex.find(real), 1, "z");
  std::string upper = good;
  upper.replace(upper.find(real), real.size(), std::string(real.size(), 'A'));
  std::vector<std::string> bad = {"", "garbage\n", good.substr(0, good.size() - 1), good + "x",
                                  good.substr(0, good.size() - 1) + "0\n", not_hex, upper,
                                  std::string(100000, 'x')};
  for (const auto& b : bad) {
    write(record, b);
    memo_digest_forget_in_memory();
    uint64_t before = memo_digest_files_hashed();
    EXPECT_EQ(*memo(path("f")), real) << "record: " << b.substr(0, 80);
    EXPECT_EQ(memo_digest_files_hashed(), before + 1) << "record: " << b.substr(0, 80);
    EXPECT_EQ(read(record), good);
  }
}

TEST_F(DigestMemo, RecordThatIsNotARegularFileIsIgnored) {
  write(path("f"), "hello");
  ASSERT_TRUE(memo(path("f")).ok());
  stdfs::path record = records()[0];
  stdfs::remove(record);
  ASSERT_EQ(::mkfifo(record.c_str(), 0600), 0);  // must not block
  memo_digest_forget_in_memory();
  EXPECT_EQ(*memo(path("f")), digest_bytes("hello"));
}

TEST_F(DigestMemo, UnwritableMemoDirStillDigests) {
  write(path("f"), "hello");
  write(path("file-not-dir"), "");
  EXPECT_EQ(*memo_digest_file(path("f"), path("file-not-dir") / "memo", later()), digest_bytes("hello"));
}

TEST_F(DigestMemo, MissingFileIsAnError) {
  auto d = memo(path("nope"));
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("nope"), std::string::npos);
}

TEST_F(DigestMemo, ThreadsAgree) {
  std::vector<std::string> want;
  for (int i = 0; i < 8; ++i) {
    write(path(std::to_string(i).c_str()), std::string(1000 + i, static_cast<char>('a' + i)));
    want.push_back(*digest_file(path(std::to_string(i).c_str())));
  }
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int round = 0; round < 50; ++round)
        for (int i = 0; i < 8; ++i) {
          auto d = memo(path(std::to_string(i).c_str()));
          if (!d || *d != want[i]) ++wrong;
        }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(DigestMemo, ProcessesSharingTheMemoAgree) {
  std::vector<std::string> want;
  for (int i = 0; i < 8; ++i) {
    write(path(std::to_string(i).c_str()), std::string(1000 + i, static_cast<char>('a' + i)));
    want.push_back(*digest_file(path(std::to_string(i).c_str())));
  }
  std::vector<pid_t> children;
  for (int c = 0; c < 3; ++c) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int wrong = 0;
      for (int round = 0; round < 100; ++round) {
        memo_digest_forget_in_memory();  // every round through the disk records
        for (int i = 0; i < 8; ++i) {
          auto d = memo(path(std::to_string(i).c_str()));
          if (!d || *d != want[i]) ++wrong;
        }
      }
      ::_exit(wrong == 0 ? 0 : 1);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_EQ(records().size(), 8u);  // no temp file left behind
}
