// Guest output arrives whole, on whichever engine the suite targets: floods and
// random-sized writes (1 byte up to several pipes' worth) on stdout and stderr at
// the same time, each stream compared byte for byte with what the guest generated
// (output_pattern.h). A lost, repeated, reordered or overwritten piece fails the
// test at its offset; so does a run that stops early without saying why.
#include "output_pattern.h"
#include "vm_test_support.h"

#include "common/subprocess.h"
#include "common/unique_fd.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

using namespace kiln::vmtest;

namespace {

constexpr size_t kMiB = 1 << 20;

struct Streams {
  uint64_t seed;
  size_t out_bytes;
  size_t err_bytes;
  size_t max_write;
};

std::string describe(const Streams& s) {
  return "seed " + std::to_string(s.seed) + ", " + std::to_string(s.out_bytes) + " bytes on stdout, " +
         std::to_string(s.err_bytes) + " on stderr, writes up to " + std::to_string(s.max_write);
}

/// What kiln printed on one stream, held in an anonymous in-memory file: a flood is
/// too big for run_kiln()'s capture, and the check reads it back piece by piece.
class Capture {
 public:
  Capture() : fd_(::memfd_create("kiln-output-stress", MFD_CLOEXEC)) {}
  int fd() const { return fd_.get(); }

  /// Empty when it holds exactly `total` bytes of `stream`'s pattern; else how long it
  /// is and the first byte that differs (never the bytes: megabytes of noise).
  std::string difference(uint64_t seed, int stream, size_t total) const {
    OutputPattern pattern(seed, stream);
    std::string got(kMiB, '\0'), want;
    size_t length = 0, first_difference = SIZE_MAX;
    for (;;) {
      const ssize_t n = ::pread(fd_.get(), got.data(), got.size(), static_cast<off_t>(length));
      if (n <= 0) break;
      want.clear();
      pattern.append(want, std::min(static_cast<size_t>(n), total - std::min(total, length)));
      const auto [g, w] = std::mismatch(got.begin(), got.begin() + n, want.begin(), want.end());
      if (first_difference == SIZE_MAX && (g != got.begin() + n || w != want.end()))
        first_difference = length + static_cast<size_t>(g - got.begin());
      length += static_cast<size_t>(n);
    }
    if (length == total && first_difference == SIZE_MAX) return "";
    return std::to_string(length) + " bytes arrived of " + std::to_string(total) + "; the first difference is at byte " +
           std::to_string(std::min(first_difference, length));
  }

  /// kiln's own message at the end of stderr: from the first "kiln: " in the last
  /// 4 KiB, else the last 200 bytes (the guest's noise).
  std::string tail() const {
    const off_t size = ::lseek(fd_.get(), 0, SEEK_END);
    std::string s(static_cast<size_t>(std::clamp<off_t>(size, 0, 4096)), '\0');
    const ssize_t n = ::pread(fd_.get(), s.data(), s.size(), size - static_cast<off_t>(s.size()));
    s.resize(n > 0 ? static_cast<size_t>(n) : 0);
    const size_t kiln = s.find("kiln: ");
    return kiln != std::string::npos ? s.substr(kiln) : s.substr(s.size() - std::min<size_t>(s.size(), 200));
  }

 private:
  kiln::UniqueFd fd_;
};

/// `kiln run -- vm_probe streams ...` on the shared cache, writing `s`.
std::vector<std::string> streams_argv(const Streams& s) {
  return kiln_argv({"run", "--", probe(), "streams", std::to_string(s.seed), std::to_string(s.out_bytes),
                    std::to_string(s.err_bytes), std::to_string(s.max_write)},
                   shared_cache());
}

void expect_whole(const Streams& s) {
  SCOPED_TRACE(describe(s));
  const auto argv = streams_argv(s);
  Capture out, err;
  ASSERT_TRUE(out.fd() >= 0 && err.fd() >= 0) << "memfd_create failed";
  kiln::SpawnOptions options;
  options.stdout_fd = out.fd();
  options.stderr_fd = err.fd();
  options.own_process_group = false;
  auto kiln = kiln::ChildProcess::spawn(argv, options);
  ASSERT_TRUE(kiln) << kiln.error().message;
  const int status = kiln->wait();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "kiln run " << kiln::describe_wait_status(status) << "; stderr (tail): " << err.tail();
  EXPECT_EQ(out.difference(s.seed, 1, s.out_bytes), "") << "stdout";
  EXPECT_EQ(err.difference(s.seed, 2, s.err_bytes), "") << "stderr; its tail: " << err.tail();
}

}  // namespace

TEST(OutputStress, FloodsArriveWholeOnBothStreams) {
  // 64 MiB on each stream at once, in writes of up to 1 MiB (sixteen pipes' worth).
  for (uint64_t seed = 1; seed <= 2; ++seed) expect_whole({seed, 64 * kMiB, 64 * kMiB, kMiB});
}

TEST(OutputStress, RandomSizedWritesArriveWhole) {
  // A quarter of the writes are 1 byte; the rest spread over the powers of two up to
  // 4 KiB (thousands of writes a stream) or up to 512 KiB (many larger than a pipe).
  for (uint64_t seed = 10; seed < 14; ++seed)
    expect_whole({seed, 2 * kMiB, 2 * kMiB, seed % 2 == 0 ? 4096 : kMiB / 2});
}

// kiln's stdout may be a non-blocking file description shared with its parent (some CI
// runners set O_NONBLOCK on the pipes they hand out). A reader that falls behind then
// makes kiln's writes fail with EAGAIN: kiln must wait for it, never drop the rest.
TEST(OutputStress, ANonBlockingStdoutReadSlowlyLosesNothing) {
  const Streams s{20, 4 * kMiB, 0, 64 * 1024};
  SCOPED_TRACE(describe(s));
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  kiln::UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  ASSERT_EQ(::fcntl(write_end.get(), F_SETFL, O_NONBLOCK), 0);
  const auto argv = streams_argv(s);
  Capture err;
  kiln::SpawnOptions options;
  options.stdout_fd = write_end.get();
  options.stderr_fd = err.fd();
  options.own_process_group = false;
  auto kiln = kiln::ChildProcess::spawn(argv, options);
  ASSERT_TRUE(kiln) << kiln.error().message;
  write_end.reset();
  // Let kiln fill the pipe and hit EAGAIN before anything is read.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  std::string got, chunk(64 * 1024, '\0');
  for (ssize_t n; (n = ::read(read_end.get(), chunk.data(), chunk.size())) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    ASSERT_GT(n, 0) << "reading kiln's stdout: " << std::strerror(errno);
    got.append(chunk, 0, static_cast<size_t>(n));
  }
  const int status = kiln->wait();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "kiln run " << kiln::describe_wait_status(status) << "; stderr (tail): " << err.tail();
  std::string want;
  OutputPattern(s.seed, 1).append(want, s.out_bytes);
  ASSERT_EQ(got.size(), want.size()) << "stdout lost bytes; stderr (tail): " << err.tail();
  EXPECT_TRUE(got == want) << "stdout differs from what the guest wrote";
}
