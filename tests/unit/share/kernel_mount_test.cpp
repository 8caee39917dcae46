// The share served to this host's own kernel FUSE client, as the guest's will be:
// /dev/fuse mounted (with the agent's options) in a child's private mount namespace,
// its requests relayed over a socketpair to a ShareServer, and the child reading the
// tree with ordinary open/read/readdir/readlink/lstat. What it sees must be the host
// tree minus its special files, unwritable, and live. Needs root and FUSE (/dev/fuse,
// mount in a new mount namespace); skipped, with the reason, where either is missing.
#include "share/share_server.h"

#include "tests/unit/share/fuse_relay.h"
#include "tests/unit/share/host_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <set>
#include <chrono>
#include <thread>

namespace kiln::share {
namespace {

using namespace std::chrono_literals;
using testing::HostTree;

std::string error_text(int err) { return err == 0 ? "ok" : std::strerror(err); }

/// The whole file read with read(2) in 1 MiB calls, as a short fingerprint.
std::string fingerprint(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "open: " + error_text(errno);
  uint64_t hash = 1469598103934665603ull, size = 0;
  std::vector<char> buf(1 << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      ::close(fd);
      return "read: " + error_text(errno);
    }
    if (n == 0) break;
    for (ssize_t i = 0; i < n; ++i) hash = (hash ^ static_cast<uint8_t>(buf[static_cast<size_t>(i)])) * 1099511628211ull;
    size += static_cast<uint64_t>(n);
  }
  ::close(fd);
  return std::to_string(size) + " bytes, fnv " + std::to_string(hash);
}

/// One line per entry under `base`, depth first in name order: path, mode, size,
/// inode, mtime, and the contents (files) or the target (symlinks). With
/// `hide_special`, what a share hides (devices, FIFOs, sockets) is left out.
void describe(const std::string& base, const std::string& rel, bool hide_special, std::string& out) {
  DIR* dir = ::opendir((base + rel).c_str());
  if (dir == nullptr) {
    out += rel + ": opendir: " + error_text(errno) + "\n";
    return;
  }
  std::vector<std::string> names;
  while (const dirent* d = ::readdir(dir)) {
    if (std::strcmp(d->d_name, ".") != 0 && std::strcmp(d->d_name, "..") != 0) names.emplace_back(d->d_name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    const std::string path = rel + "/" + name;
    struct stat st {};
    if (::lstat((base + path).c_str(), &st) != 0) {
      out += path + ": lstat: " + error_text(errno) + "\n";
      continue;
    }
    const bool special = !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode);
    if (special && hide_special) continue;
    char mode[16];
    std::snprintf(mode, sizeof mode, "%o", st.st_mode);
    out += path + " mode " + mode + " size " + std::to_string(st.st_size) + " ino " + std::to_string(st.st_ino) +
           " mtime " + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
    if (S_ISREG(st.st_mode)) out += " " + fingerprint(base + path);
    if (S_ISLNK(st.st_mode)) {
      char target[4096];
      const ssize_t n = ::readlink((base + path).c_str(), target, sizeof target);
      out += " -> " + (n < 0 ? "readlink: " + error_text(errno) : std::string(target, static_cast<size_t>(n)));
    }
    out += "\n";
    if (S_ISDIR(st.st_mode)) describe(base, path, hide_special, out);
  }
}

std::string describe(const std::string& base, bool hide_special) {
  std::string out;
  describe(base, "", hide_special, out);
  return out;
}

std::string read_text(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "open: " + error_text(errno);
  char buf[256];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  return n < 0 ? "read: " + error_text(errno) : std::string(buf, static_cast<size_t>(n));
}

struct Paths {
  std::string mnt, first, second, outside;
};

/// The child's report, written to the parent as each piece is known: a child that
/// hangs has told how far it got.
class Report {
 public:
  explicit Report(int fd) : fd_(fd) {}
  Report& operator+=(const std::string& piece) {
    for (size_t off = 0; ok_ && off < piece.size();) {
      const ssize_t n = ::write(fd_, piece.data() + off, piece.size() - off);
      ok_ = n > 0;
      off += ok_ ? static_cast<size_t>(n) : 0;
    }
    return *this;
  }
  bool ok() const { return ok_; }

 private:
  int fd_;
  bool ok_ = true;
};

/// The child: mount the share at `p.mnt` in a private mount namespace and report,
/// line by line, what the kernel shows of it. "SKIP <why>" if FUSE cannot be mounted.
void mount_and_look(int fuse_fd, const Paths& p, Report& out) {
  if (::unshare(CLONE_NEWNS) != 0) {
    out += "SKIP unshare(CLONE_NEWNS): " + error_text(errno);
    return;
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    out += "SKIP making / a private mount: " + error_text(errno);
    return;
  }
  const std::string data =
      "fd=" + std::to_string(fuse_fd) + ",rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions";
  if (::mount("kiln-share", p.mnt.c_str(), "fuse", MS_RDONLY | MS_NOSUID | MS_NODEV, data.c_str()) != 0) {
    out += "SKIP mount -t fuse: " + error_text(errno);
    return;
  }

  std::vector<std::string> roots;
  if (DIR* dir = ::opendir(p.mnt.c_str())) {
    while (const dirent* d = ::readdir(dir)) roots.emplace_back(d->d_name);
    ::closedir(dir);
  }
  std::sort(roots.begin(), roots.end());
  std::string line = "roots:";
  for (const auto& r : roots) line += " " + r;
  out += line + "\nfirst:\n";
  out += describe(p.mnt + "/0", false);
  out += "second:\n";
  out += describe(p.mnt + "/1", false);

  const std::string top = p.mnt + "/0/top.txt";
  const int w = ::open(top.c_str(), O_WRONLY | O_CLOEXEC);
  out += "open for writing: " + error_text(w < 0 ? errno : 0) + "\n";
  out += "mkdir: " + error_text(::mkdir((p.mnt + "/0/newdir").c_str(), 0755) != 0 ? errno : 0) + "\n";
  out += "unlink: " + error_text(::unlink(top.c_str()) != 0 ? errno : 0) + "\n";
  struct stat st {};
  out += "fifo: " + error_text(::lstat((p.mnt + "/0/fifo").c_str(), &st) != 0 ? errno : 0) + "\n";
  struct statvfs vfs {};
  out += "statvfs: " + error_text(::statvfs((p.mnt + "/0").c_str(), &vfs) != 0 ? errno : 0) + "\n";

  // Live: a file replaced on the host, and one rewritten in place, are seen once the
  // 1 s entry and attribute timeouts pass.
  const std::string live = p.mnt + "/0/live.txt";
  const std::string edited = p.mnt + "/0/edited.txt";
  out += "live before: " + read_text(live) + "\n";
  out += "edited before: " + read_text(edited) + "\n";
  {
    const std::string fresh = p.first + "/live.txt.new";
    const int fd = ::open(fresh.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    (void)!::write(fd, "replaced on the host", 20);
    ::close(fd);
    ::rename(fresh.c_str(), (p.first + "/live.txt").c_str());
    const int ed = ::open((p.first + "/edited.txt").c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    (void)!::write(ed, "edited in place, longer", 23);
    ::close(ed);
  }
  std::this_thread::sleep_for(1200ms);
  out += "live after: " + read_text(live) + "\n";
  out += "edited after: " + read_text(edited) + "\n";

  out += "umount: " + error_text(::umount2(p.mnt.c_str(), 0) != 0 ? errno : 0) + "\n";
}

/// The lines only one of `expected` and `actual` has ("- " expected, "+ " actual),
/// empty when they are the same: a short failure message for a long report.
std::string line_diff(const std::string& expected, const std::string& actual) {
  auto lines = [](const std::string& text) {
    std::multiset<std::string> out;
    size_t start = 0;
    for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) out.insert(text.substr(start, nl - start));
    if (start < text.size()) out.insert(text.substr(start));
    return out;
  };
  const auto e = lines(expected), a = lines(actual);
  std::vector<std::string> missing, extra;
  std::set_difference(e.begin(), e.end(), a.begin(), a.end(), std::back_inserter(missing));
  std::set_difference(a.begin(), a.end(), e.begin(), e.end(), std::back_inserter(extra));
  std::string out;
  for (const auto& l : missing) out += "- " + l + "\n";
  for (const auto& l : extra) out += "+ " + l + "\n";
  if (out.empty() && expected != actual) out = "(the same lines in another order)\n";
  return out;
}

/// Everything the child writes to `fd`, until it closes it or `deadline`.
std::string read_until_eof(int fd, std::chrono::steady_clock::time_point deadline, bool& timed_out) {
  std::string out;
  timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) {
      timed_out = true;
      return out;
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

TEST(KernelMount, TheKernelReadsTheHostTreeThroughTheShare) {
  UniqueFd fuse(::open("/dev/fuse", O_RDWR | O_CLOEXEC | O_NONBLOCK));
  if (!fuse) GTEST_SKIP() << "FUSE is not available here: /dev/fuse: " << std::strerror(errno);

  HostTree first, second, outside, mnt;
  first.file("top.txt", "top level\n");
  first.file("a/b/c/deep.txt", "three levels down\n");
  first.file("a/empty", "");
  first.dir("a/empty-dir");
  std::string big(3 * kMaxRead + 123, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7919) >> 5);
  first.file("big.bin", big);
  for (int i = 0; i < 500; ++i) first.file("many/entry-" + std::to_string(i) + std::string(static_cast<size_t>(i % 40), 'x'), std::to_string(i));
  first.file("live.txt", "the first version");
  first.file("edited.txt", "edited before");
  outside.file("secret", "host only\n");
  first.symlink("outside", (outside / "secret").string());
  first.symlink("relative", "a/b/c/deep.txt");
  first.symlink("dangling", "/no/such/place");
  first.fifo("fifo");
  first.socket("sock");
  ::chmod((first / "top.txt").c_str(), 0640);
  second.file("in-second", "second root\n");
  const Paths paths{mnt.path().string(), first.path().string(), second.path().string(), outside.path().string()};
  // What the child must see: computed now, before it changes live.txt and edited.txt.
  const std::string expected_trees = "first:\n" + describe(paths.first, true) + "second:\n" + describe(paths.second, true);

  int result[2];
  ASSERT_EQ(::pipe2(result, O_CLOEXEC), 0);
  UniqueFd result_read(result[0]);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) {
    Report report(result[1]);
    mount_and_look(fuse.get(), paths, report);
    ::_exit(report.ok() ? 0 : 2);
  }
  ::close(result[1]);

  int sock[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock), 0);
  UniqueFd relay_end(sock[1]);
  auto server = ShareServer::start(UniqueFd(sock[0]), {first.path(), second.path()});
  ASSERT_TRUE(server.ok()) << server.error().message;
  testing::FuseRelay relay(fuse.get(), relay_end.get());

  bool timed_out = false;
  const std::string report = read_until_eof(result_read.get(), std::chrono::steady_clock::now() + 60s, timed_out);
  if (timed_out) ::kill(child, SIGKILL);  // its mount namespace, and the mount, go with it
  int status = 0;
  ::waitpid(child, &status, 0);
  // The mount is gone: the kernel ended the connection, the relay saw it and hung up,
  // and the server stopped on its own.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((*server)->serving() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  const bool ended_by_itself = !(*server)->serving();
  relay.stop();
  (*server)->stop();
  ASSERT_FALSE(timed_out) << "the child hung reading the share after " << (*server)->stats().requests
                          << " requests served (relayed: " << relay.requests() << ", relay: '" << relay.failure()
                          << "', server: '" << (*server)->stats().failure << "'); it reported:\n"
                          << report;
  if (report.rfind("SKIP ", 0) == 0) GTEST_SKIP() << "FUSE cannot be mounted here: " << report.substr(5);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;

  const std::string expected = "roots: . .. 0 1\n" + expected_trees +
                               "open for writing: Read-only file system\n"
                               "mkdir: Read-only file system\n"
                               "unlink: Read-only file system\n"
                               "fifo: No such file or directory\n"
                               "statvfs: ok\n"
                               "live before: the first version\n"
                               "edited before: edited before\n"
                               "live after: replaced on the host\n"
                               "edited after: edited in place, longer\n"
                               "umount: ok\n";
  EXPECT_EQ(line_diff(expected, report), "") << "what the kernel saw (+) differs from the host tree (-)";
  EXPECT_EQ((*server)->stats().failure, "");
  EXPECT_EQ(relay.failure(), "");
  EXPECT_GT((*server)->stats().requests, 500u) << "the kernel cached what it should have asked for";
  EXPECT_EQ((*server)->stats().requests, relay.requests());
  EXPECT_TRUE(ended_by_itself) << "the end of the mount did not reach the server";
}

}  // namespace
}  // namespace kiln::share
