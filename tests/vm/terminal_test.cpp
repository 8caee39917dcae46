// `kiln run -it` on real VMs, used the way a person uses it: inside tmux, keys
// typed with send-keys, the screen read with capture-pane. The guest terminal
// has the window's size and follows its changes, ^C and ^Z reach the guest's
// foreground job, the shell's exit code is kiln's, and the user's terminal is
// as it was afterwards.
#include "vm_test_support.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

using namespace kiln::vmtest;

namespace {

// A first restore under TCG takes seconds; past this the screen will not change.
constexpr auto kScreenWait = std::chrono::seconds(120);

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One tmux server of its own (its socket in a temp dir), killed at the end.
class Tmux {
 public:
  Tmux() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kiln-tmux-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
  }
  ~Tmux() {
    (void)run({"kill-server"});
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::filesystem::path& dir() const { return dir_; }

  KilnRun run(std::vector<std::string> args) const {
    args.insert(args.begin(), {"tmux", "-S", (dir_ / "socket").string()});
    return run_argv(args);
  }
  /// A detached session `cols` x `rows` running `argv` directly (no shell between).
  void start(int cols, int rows, const std::vector<std::string>& argv) const {
    std::vector<std::string> args{"new-session", "-d", "-s", "t", "-x", std::to_string(cols), "-y",
                                  std::to_string(rows)};
    args.insert(args.end(), argv.begin(), argv.end());
    KilnRun r = run(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  void keys(const std::vector<std::string>& keys) const {
    std::vector<std::string> args{"send-keys", "-t", "t"};
    args.insert(args.end(), keys.begin(), keys.end());
    KilnRun r = run(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }
  void type_line(const std::string& line) const { keys({"-l", line}), keys({"Enter"}); }
  std::string screen() const { return run({"capture-pane", "-p", "-t", "t"}).out; }
  /// Waits until the screen shows `text`; the screen, for the failure message, if it never does.
  ::testing::AssertionResult shows(const std::string& text) const {
    auto until = std::chrono::steady_clock::now() + kScreenWait;
    std::string last;
    while (std::chrono::steady_clock::now() < until) {
      last = screen();
      if (last.find(text) != std::string::npos) return ::testing::AssertionSuccess();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return ::testing::AssertionFailure() << "the screen never showed \"" << text << "\":\n" << last;
  }

 private:
  std::filesystem::path dir_;
};

// `sh -c` around kiln: the host terminal's settings before and after, kiln's exit code.
std::vector<std::string> framed(const Tmux& tmux, const std::vector<std::string>& kiln) {
  std::vector<std::string> argv{
      "sh", "-c",
      "stty -g > \"$0/before\"; \"$@\"; echo kiln-exit=$?; stty -g > \"$0/after\"; exec sleep 600",
      tmux.dir().string()};
  argv.insert(argv.end(), kiln.begin(), kiln.end());
  return argv;
}

TEST(Terminal, AShellUnderTmuxGetsTheWindowSignalsAndItsExitCode) {
  Tmux tmux;
  tmux.start(100, 30, framed(tmux, kiln_argv({"run", "-it", "--", "sh"}, shared_cache())));
  ASSERT_TRUE(tmux.shows("built-in shell"));  // busybox sh's banner: the guest's interactive shell

  // A terminal of its own, as large as the window, of the user's kind.
  tmux.type_line("echo size=$(stty size) tty=$(tty) term=$TERM");
  EXPECT_TRUE(tmux.shows("size=30 100 tty=/dev/pts/0 term="));
  tmux.run({"resize-window", "-t", "t", "-x", "120", "-y", "40"});
  tmux.type_line("echo now=$(stty size)");
  EXPECT_TRUE(tmux.shows("now=40 120"));

  // ^C ends the foreground job, not the shell and not kiln.
  tmux.type_line("sleep 1000");
  std::this_thread::sleep_for(std::chrono::seconds(1));
  tmux.keys({"C-c"});
  tmux.type_line("echo after=$?");
  EXPECT_TRUE(tmux.shows("after=130"));

  // ^Z stops it: the shell's job control works on the guest terminal.
  tmux.type_line("sleep 999");
  std::this_thread::sleep_for(std::chrono::seconds(1));
  tmux.keys({"C-z"});
  tmux.type_line("jobs");
  EXPECT_TRUE(tmux.shows("Stopped"));
  tmux.type_line("kill -9 %1; exit 7");
  EXPECT_TRUE(tmux.shows("kiln-exit=7"));

  // Raw mode is undone: the user's terminal is as it was.
  ASSERT_TRUE(tmux.shows("kiln-exit=7"));
  for (int i = 0; i < 50 && !std::filesystem::exists(tmux.dir() / "after"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(slurp(tmux.dir() / "after"), slurp(tmux.dir() / "before"));
}

TEST(Terminal, MinusIStreamsATerminalsLinesWithoutAGuestTerminal) {
  Tmux tmux;
  tmux.start(80, 24, framed(tmux, kiln_argv({"run", "-i", "--", "sh", "-c",
                                             "read line; echo got=$line; readlink /proc/self/fd/0"},
                                            shared_cache())));
  // The host terminal stays cooked: it echoes the line and sends it on Enter.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  tmux.type_line("hello");
  EXPECT_TRUE(tmux.shows("got=hello"));
  EXPECT_TRUE(tmux.shows("pipe:"));  // a pipe in the guest, not a terminal
  EXPECT_TRUE(tmux.shows("kiln-exit=0"));
}

TEST(Terminal, MinusTWithoutATerminalIsRefusedBeforeAnyVm) {
  KilnRun r = run_kiln({"run", "-t", "--", "true"});  // run_kiln's stdin is not a terminal
  EXPECT_EQ(r.exit_code, 125);
  EXPECT_NE(r.err.find("-t needs kiln's stdin to be a terminal"), std::string::npos) << r.err;
}

}  // namespace

namespace {

TEST(Terminal, KilnShellIsATerminalInTheFailedTestsDirectory) {
  PrivateCache cache;
  cache.use_shared_snapshots();
  auto failed = run_kiln({"run", "--keep-failed", "--cwd", "/srv/case", "--", "sh", "-c", "touch here; exit 1"}, cache);
  ASSERT_EQ(failed.exit_code, 1) << failed.err;
  const size_t at = failed.err.find("kiln shell ");
  ASSERT_NE(at, std::string::npos) << failed.err;
  const std::string id = failed.err.substr(at + 11, 12);

  Tmux tmux;
  tmux.start(90, 25, framed(tmux, kiln_argv({"shell", id}, cache)));
  EXPECT_TRUE(tmux.shows("/srv/case #"));  // busybox sh's prompt: the test's directory
  tmux.type_line("ls; tty; exit 5");
  EXPECT_TRUE(tmux.shows("here"));
  EXPECT_TRUE(tmux.shows("/dev/pts/0"));
  EXPECT_TRUE(tmux.shows("kiln-exit=5"));
}

}  // namespace
