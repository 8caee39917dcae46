// `kiln run` forwards its standard input to the command, on real VMs: piped
// input arrives byte-exact and ends with EOF; a command that never reads it
// neither blocks kiln nor loses output; /dev/null and a terminal (without -i / -t) stay /dev/null.
#include "vm_test_support.h"

#include "common/digest.h"
#include "common/subprocess.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <thread>

using namespace kiln::vmtest;

namespace {

// No kiln run here should take long; past this it is hung, and the test says so
// instead of waiting for ctest's timeout.
constexpr auto kHung = std::chrono::seconds(300);

std::string read_all(std::FILE* f) {
  std::string out;
  std::rewind(f);
  char buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  return out;
}

struct Pipe {
  Pipe() { EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0); }
  ~Pipe() {
    close_read();
    close_write();
  }
  void close_read() {
    if (fds[0] >= 0) ::close(fds[0]);
    fds[0] = -1;
  }
  void close_write() {
    if (fds[1] >= 0) ::close(fds[1]);
    fds[1] = -1;
  }
  // Writes everything (stops early once the reader is gone), then closes: EOF.
  void feed_and_close(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::write(fds[1], data.data() + off, data.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    close_write();
  }
  int fds[2] = {-1, -1};
};

// `kiln run ARGS...` with `stdin_fd` as its standard input (-1: /dev/null); stdout
// and stderr go to temporary files, so any amount of output is kept whole.
// `while_running` runs on a thread once kiln has started (e.g. feeding a pipe);
// with `in`, kiln holds the only read end, so a feeder stops (EPIPE) when kiln is gone.
KilnRun run_kiln_with_stdin(const std::vector<std::string>& run_args, int stdin_fd,
                            const std::function<void()>& while_running = {}, Pipe* in = nullptr) {
  std::signal(SIGPIPE, SIG_IGN);  // a feeder writing after kiln ended gets EPIPE instead
  std::vector<std::string> argv = {"env", "KILN_CACHE_DIR=" + shared_cache().string(), KILN_BINARY, "run"};
  for (const auto& a : engine_args()) argv.push_back(a);
  argv.insert(argv.end(), run_args.begin(), run_args.end());
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  KilnRun run;
  kiln::SpawnOptions options;
  options.stdin_fd = stdin_fd;
  options.stdout_fd = ::fileno(out);
  options.stderr_fd = ::fileno(err);
  auto start = std::chrono::steady_clock::now();
  auto child = kiln::ChildProcess::spawn(argv, options);
  if (in) in->close_read();
  if (!child) {
    run.err = child.error().message;
  } else {
    std::thread feeder;
    if (while_running) feeder = std::thread(while_running);
    int status = 0;
    while (!child->poll_exited(&status)) {
      if (std::chrono::steady_clock::now() - start > kHung) {
        child->kill();
        status = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (feeder.joinable()) feeder.join();
    run.exit_code = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    run.out = read_all(out);
    run.err = read_all(err) + (status < 0 ? "\n(test: kiln hung; killed)" : "");
  }
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fclose(out);
  std::fclose(err);
  return run;
}

std::string random_bytes(size_t size, unsigned seed) {
  std::mt19937_64 gen(seed);
  std::string out(size, '\0');
  for (size_t i = 0; i + 8 <= size; i += 8) {
    uint64_t v = gen();
    for (int b = 0; b < 8; ++b) out[i + b] = static_cast<char>(v >> (8 * b));
  }
  return out;
}

}  // namespace

TEST(Stdin, PipedInputReachesTheCommandWhichSeesEof) {
  Pipe in;
  auto r = run_kiln_with_stdin({"--", "cat"}, in.fds[0], [&] { in.feed_and_close("x\n"); }, &in);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "x\n") << r.err;
}

TEST(Stdin, MultiMiBBinaryStreamThroughCatIsByteExact) {
  // More than the agent's credit window many times over: flow control at work both ways.
  const std::string data = random_bytes(6 << 20, 7);
  Pipe in;
  auto r = run_kiln_with_stdin({"--", "cat"}, in.fds[0], [&] { in.feed_and_close(data); }, &in);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.size(), data.size());
  EXPECT_EQ(kiln::digest_bytes(r.out), kiln::digest_bytes(data)) << "the stream was altered on the way";
}

TEST(Stdin, ACommandThatNeverReadsStdinEndsTheRunAndKeepsItsOutput) {
  // Like `sleep 100 | kiln run -- CMD`: stdin stays open and silent; the command
  // writes more than a pipe holds without reading it. kiln must end with it.
  Pipe in;
  auto r = run_kiln_with_stdin({"--", "sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' a; echo; echo done"},
                               in.fds[0], {}, &in);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, std::string(1000000, 'a') + "\ndone\n") << r.err.substr(0, 2000);
}

TEST(Stdin, ACommandExitingWhileStdinIsStillFlowingDoesNotWaitForIt) {
  // stdin never ends (the test keeps writing until kiln is gone); the command reads
  // a little of it and exits.
  Pipe in;
  auto r = run_kiln_with_stdin(
      {"--", "head", "-c", "5"}, in.fds[0],
      [&] {
        const std::string chunk(4096, 'z');
        while (::write(in.fds[1], chunk.data(), chunk.size()) > 0) {
        }
      },
      &in);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "zzzzz") << r.err;
}

TEST(Stdin, DevNullStaysDevNullInTheGuest) {
  // ctest's usual case: nothing is forwarded, the command's stdin is the guest's /dev/null.
  auto r = run_kiln_with_stdin({"--", "sh", "-c", "readlink /proc/self/fd/0; cat"}, -1);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "/dev/null\n") << r.err;
}

TEST(Stdin, ATerminalIsNotForwardedWithoutMinusIOrMinusT) {
  // A test run from a terminal must not wait for the keyboard: without -i or -t
  // (terminal_test.cpp) the command gets /dev/null.
  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(slave, 0);
  auto r = run_kiln_with_stdin({"--", "sh", "-c", "readlink /proc/self/fd/0"}, slave);
  ::close(slave);
  ::close(master);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "/dev/null\n") << r.err;
}
