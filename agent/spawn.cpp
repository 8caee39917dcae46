#include "agent/spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <optional>
#include <vector>

#include "agent/fs_util.h"
#include "agent/guest_user.h"
#include "agent/log.h"
#include "common/unique_fd.h"

namespace kiln::agent {

namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// What the child reports through the CLOEXEC error pipe when it cannot exec.
struct ChildError {
  int stage;  // kStage*
  int err;
};
constexpr int kStageChdir = 1;
constexpr int kStageStdio = 2;
constexpr int kStageExec = 3;
constexpr int kStageUser = 4;

// Everything the child needs, prepared before fork so the child only makes syscalls.
struct ChildPlan {
  std::vector<std::string> candidates;  // execve paths to try, in PATH order
  std::vector<char*> argv;
  std::vector<char*> envp;
  std::string cwd;
  std::optional<GuestUser> user;  // absent: stay root
};

// execvpe semantics with the PATH of the command's own environment.
std::vector<std::string> exec_candidates(const proto::Exec& req) {
  const std::string& name = req.argv[0];
  if (name.empty() || name.find('/') != std::string::npos) return {name};
  std::string search = kDefaultPath;
  for (const std::string& e : req.env)
    if (e.rfind("PATH=", 0) == 0) search = e.substr(5);
  std::vector<std::string> out;
  size_t pos = 0;
  for (;;) {
    size_t colon = search.find(':', pos);
    std::string dir = search.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
    out.push_back(cat(dir.empty() ? "." : dir, "/", name));  // an empty entry means the cwd
    if (colon == std::string::npos) break;
    pos = colon + 1;
  }
  return out;
}

std::vector<char*> c_strings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  // execve's signature predates const; it does not modify the strings.
  for (const std::string& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

[[noreturn]] void child_fail(int errpipe, int stage, int err) {
  ChildError e{stage, err};
  ssize_t ignored = ::write(errpipe, &e, sizeof e);
  (void)ignored;
  ::_exit(127);
}

[[noreturn]] void child_main(const ChildPlan& plan, const ChildStdio& stdio, int errpipe) {
  // PID 1 blocks SIGCHLD and ignores SIGPIPE; the command must start with a clean slate.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::setsid();  // own session and process group: POWEROFF can kill the whole tree
  if (stdio.terminal && ::ioctl(stdio.in, TIOCSCTTY, 0) != 0) child_fail(errpipe, kStageStdio, errno);

  if (::chdir(plan.cwd.c_str()) != 0) child_fail(errpipe, kStageChdir, errno);
  if (plan.user) {
    const GuestUser& u = *plan.user;
    // As login(1) does: the user's own terminal, which it may then reopen (/dev/tty).
    if (stdio.terminal && ::fchown(stdio.in, u.uid, u.gid) != 0) child_fail(errpipe, kStageUser, errno);
    if (::setgroups(u.groups.size(), u.groups.data()) != 0 || ::setgid(u.gid) != 0 || ::setuid(u.uid) != 0)
      child_fail(errpipe, kStageUser, errno);
  }
  int in = stdio.in >= 0 ? stdio.in : ::open("/dev/null", O_RDONLY);
  if (in < 0 || ::dup2(in, 0) < 0 || ::dup2(stdio.out, 1) < 0 || ::dup2(stdio.err, 2) < 0)
    child_fail(errpipe, kStageStdio, errno);
  if (in != stdio.in && in > 2) ::close(in);  // /dev/null is fd 0 now; no stray copy for the command
  // Everything else the agent holds is O_CLOEXEC.

  int err = ENOENT;
  bool saw_eacces = false;
  for (const std::string& path : plan.candidates) {
    ::execve(path.c_str(), plan.argv.data(), plan.envp.data());
    err = errno;
    if (err == EACCES) {
      saw_eacces = true;
    } else if (err != ENOENT && err != ENOTDIR && err != ESTALE && err != ENODEV && err != ETIMEDOUT) {
      child_fail(errpipe, kStageExec, err);  // like execvpe: a real error on a found file stops the search
    }
  }
  // Like execvpe: "found but not executable" beats "not found" when nothing ran.
  child_fail(errpipe, kStageExec, saw_eacces ? EACCES : err);
}

// Reads what the child reported through the error pipe: nothing means execve succeeded.
std::optional<ChildError> child_error(int errpipe_r) {
  ChildError ce{};
  ssize_t n;
  do {
    n = ::read(errpipe_r, &ce, sizeof ce);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(sizeof ce)) return std::nullopt;
  return ce;
}

}  // namespace

Spawned spawn_command(const proto::Exec& req, const ChildStdio& stdio, Reaper& reaper) {
  Spawned result;
  ChildPlan plan;
  plan.cwd = req.cwd.empty() ? "/" : req.cwd;
  Status s = mkdir_p(plan.cwd, 0755);
  if (!s.is_ok()) {
    result.error = cat("not run: ", s.message());
    return result;
  }
  plan.candidates = exec_candidates(req);
  plan.argv = c_strings(req.argv);
  std::vector<std::string> env = req.env;
  if (!req.user.empty()) {
    GuestUser user;
    if (std::string e = resolve_guest_user(req.user, user); !e.empty()) {
      result.error = cat("not run: ", e);
      return result;
    }
    bool has_home = false;
    for (const std::string& e : env) has_home = has_home || e.rfind("HOME=", 0) == 0;
    if (!has_home) env.push_back("HOME=" + user.home);  // as login(1) would set it
    plan.user = std::move(user);
  }
  plan.envp = c_strings(env);

  int errpipe[2];
  if (::pipe2(errpipe, O_CLOEXEC) != 0) {
    result.error = sys_error("not run: pipe");
    return result;
  }
  UniqueFd errpipe_r(errpipe[0]);
  UniqueFd errpipe_w(errpipe[1]);
  pid_t pid = ::fork();
  if (pid < 0) {
    result.error = sys_error("not run: fork");
    return result;
  }
  if (pid == 0) child_main(plan, stdio, errpipe_w.get());
  reaper.watch(pid);  // before any reap() can collect it
  errpipe_w.reset();

  // The error pipe closes on a successful execve (CLOEXEC) or carries why it failed.
  if (std::optional<ChildError> ce = child_error(errpipe_r.get())) {
    result.kind = Spawned::Kind::exec_failed;
    result.failed.err = ce->err;
    if (ce->stage == kStageChdir)
      result.failed.message = cat("cannot change directory to ", plan.cwd, ": ", errno_text(ce->err));
    else if (ce->stage == kStageUser)
      result.failed.message = cat("cannot run ", req.argv[0], " as user ", req.user, ": ", errno_text(ce->err));
    else if (ce->stage == kStageStdio)
      result.failed.message = cat("cannot set up stdio for ", req.argv[0], ": ", errno_text(ce->err));
    else
      result.failed.message = cat("cannot execute ", req.argv[0], ": ", errno_text(ce->err));
    return result;  // the child _exits at once; the reaper collects it
  }
  result.kind = Spawned::Kind::running;
  result.pid = pid;
  return result;
}

}  // namespace kiln::agent
