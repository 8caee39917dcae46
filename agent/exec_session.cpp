#include "agent/exec_session.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <vector>

#include "agent/fs_util.h"
#include "agent/log.h"
#include "common/unique_fd.h"

namespace kiln::agent {

namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr size_t kChunk = 64 * 1024;              // per output frame
constexpr size_t kDrainBudget = 8u << 20;         // per stream, after the command exited

// What the child reports through the CLOEXEC error pipe when it cannot exec.
struct ChildError {
  int stage;  // kStage*
  int err;
};
constexpr int kStageChdir = 1;
constexpr int kStageStdio = 2;
constexpr int kStageExec = 3;

// Everything the child needs, prepared before fork so the child only makes syscalls.
struct ChildPlan {
  std::vector<std::string> candidates;  // execve paths to try, in PATH order
  std::vector<char*> argv;
  std::vector<char*> envp;
  std::string cwd;
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

[[noreturn]] void child_main(const ChildPlan& plan, int out_w, int err_w, int errpipe) {
  // PID 1 blocks SIGCHLD and ignores SIGPIPE; the command must start with a clean slate.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::setsid();  // own session and process group: POWEROFF can kill the whole tree

  if (::chdir(plan.cwd.c_str()) != 0) child_fail(errpipe, kStageChdir, errno);
  int null_fd = ::open("/dev/null", O_RDONLY);
  if (null_fd < 0 || ::dup2(null_fd, 0) < 0 || ::dup2(out_w, 1) < 0 || ::dup2(err_w, 2) < 0)
    child_fail(errpipe, kStageStdio, errno);
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

proto::Exit exit_from_status(int status) {
  proto::Exit e;
  if (WIFSIGNALED(status)) {
    e.signaled = true;
    e.code = WTERMSIG(status);
  } else {
    e.code = WEXITSTATUS(status);
  }
  return e;
}

// The kernel's count of processes its OOM killer ended since boot ("oom_kill N" in
// /proc/vmstat, Linux 4.13+); 0 if it cannot be read. Its change across a command
// tells an OOM kill from any other SIGKILL without parsing the console.
uint64_t oom_kills_so_far() {
  UniqueFd fd(::open("/proc/vmstat", O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return 0;
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd.get(), buf, sizeof buf)) > 0 && text.size() < (1u << 20);)
    text.append(buf, static_cast<size_t>(n));
  size_t at = text.find("\noom_kill ");
  if (at == std::string::npos) return 0;
  return std::strtoull(text.c_str() + at + 10, nullptr, 10);
}

// One output stream of the command: a pipe read end, the frame type it maps to, and
// how many bytes the command wrote to it as far as the agent knows.
struct Stream {
  UniqueFd fd;
  proto::MsgType type;
  uint64_t bytes = 0;
};

// Reads one chunk (if any) and forwards it. Returns false once the stream has ended.
bool forward_chunk(Channel& channel, Stream& s) {
  static std::vector<char> buf(kChunk);
  ssize_t n = ::read(s.fd.get(), buf.data(), buf.size());
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  if (n <= 0) {
    s.fd.reset();
    return false;
  }
  s.bytes += static_cast<uint64_t>(n);  // written by the command whether or not the host gets it
  Status st = channel.send(s.type, std::string_view(buf.data(), static_cast<size_t>(n)));
  if (!st.is_ok()) log("lost command output: ", st.message());
  return true;
}

// After the command exited: forward what is already buffered, without waiting for EOF.
// What is still in the pipe after the budget counts as written: the host sees it missing.
void drain(Channel& channel, Stream& s) {
  size_t budget = kDrainBudget;
  while (s.fd.valid() && budget > 0) {
    pollfd pfd{s.fd.get(), POLLIN, 0};
    if (::poll(&pfd, 1, 0) <= 0 || (pfd.revents & (POLLIN | POLLHUP | POLLERR)) == 0) break;
    if (!forward_chunk(channel, s)) return;
    budget = budget > kChunk ? budget - kChunk : 0;
  }
  int unread = 0;
  if (s.fd.valid() && ::ioctl(s.fd.get(), FIONREAD, &unread) == 0 && unread > 0) {
    log("dropping ", unread, " bytes of ", proto::type_name(s.type),
        " still in the pipe after the command exited (a background process writing to it?)");
    s.bytes += static_cast<uint64_t>(unread);
  }
}

void kill_command(pid_t pid) {
  ::kill(-pid, SIGKILL);  // its process group (setsid made pid the group leader)
  ::kill(pid, SIGKILL);   // in case setsid had not run yet
}

}  // namespace

ExecResult run_exec(Channel& channel, Reaper& reaper, const proto::Exec& req) {
  ExecResult result;
  ChildPlan plan;
  plan.cwd = req.cwd.empty() ? "/" : req.cwd;
  Status s = mkdir_p(plan.cwd, 0755);
  if (!s.is_ok()) {
    result.error = cat("not run: ", s.message());
    return result;
  }
  plan.candidates = exec_candidates(req);
  plan.argv = c_strings(req.argv);
  plan.envp = c_strings(req.env);

  int out[2], err[2], errpipe[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    result.error = sys_error("not run: pipe");
    return result;
  }
  Stream out_s{UniqueFd(out[0]), proto::MsgType::stdout_data};
  UniqueFd out_w(out[1]);
  if (::pipe2(err, O_CLOEXEC) != 0) {
    result.error = sys_error("not run: pipe");
    return result;
  }
  Stream err_s{UniqueFd(err[0]), proto::MsgType::stderr_data};
  UniqueFd err_w(err[1]);
  if (::pipe2(errpipe, O_CLOEXEC) != 0) {
    result.error = sys_error("not run: pipe");
    return result;
  }
  UniqueFd errpipe_r(errpipe[0]);
  UniqueFd errpipe_w(errpipe[1]);

  const uint64_t oom_before = oom_kills_so_far();
  pid_t pid = ::fork();
  if (pid < 0) {
    result.error = sys_error("not run: fork");
    return result;
  }
  if (pid == 0) child_main(plan, out_w.get(), err_w.get(), errpipe_w.get());

  reaper.watch(pid);  // before any reap() can collect it
  out_w.reset();
  err_w.reset();
  errpipe_w.reset();

  // The error pipe closes on a successful execve (CLOEXEC) or carries why it failed.
  ChildError ce{};
  ssize_t n;
  do {
    n = ::read(errpipe_r.get(), &ce, sizeof ce);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof ce)) {
    result.kind = ExecResult::Kind::exec_failed;
    result.failed.err = ce.err;
    if (ce.stage == kStageChdir)
      result.failed.message = cat("cannot change directory to ", plan.cwd, ": ", errno_text(ce.err));
    else if (ce.stage == kStageStdio)
      result.failed.message = cat("cannot set up stdio for ", req.argv[0], ": ", errno_text(ce.err));
    else
      result.failed.message = cat("cannot execute ", req.argv[0], ": ", errno_text(ce.err));
    return result;  // the child _exits at once; the reaper collects it
  }

  ::fcntl(out_s.fd.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(err_s.fd.get(), F_SETFL, O_NONBLOCK);
  std::optional<int> status;
  bool channel_usable = true;
  while (!status) {
    if (channel.contains(proto::MsgType::poweroff)) {
      kill_command(pid);
      result.kind = ExecResult::Kind::poweroff;
      return result;
    }
    pollfd fds[4];
    nfds_t nfds = 0;
    auto add = [&](int fd) {
      fds[nfds] = pollfd{fd, POLLIN, 0};
      return static_cast<int>(nfds++);
    };
    int i_out = out_s.fd.valid() ? add(out_s.fd.get()) : -1;
    int i_err = err_s.fd.valid() ? add(err_s.fd.get()) : -1;
    int i_chan = channel_usable && !channel.queue_full() ? add(channel.fd()) : -1;
    int i_reap = add(reaper.fd());
    if (::poll(fds, nfds, -1) < 0) {
      if (errno == EINTR) continue;
      log(sys_error("poll during exec"));
      ::usleep(10'000);
      continue;
    }
    auto ready = [&](int i) { return i >= 0 && fds[i].revents != 0; };
    if (ready(i_out)) forward_chunk(channel, out_s);
    if (ready(i_err)) forward_chunk(channel, err_s);
    if (ready(i_chan)) {
      channel.read_available();
      // A hung-up tty polls readable forever; stop watching it for this command.
      if (channel.hung_up()) channel_usable = false;
    }
    if (ready(i_reap)) status = reaper.reap();
  }
  drain(channel, out_s);
  drain(channel, err_s);
  result.kind = ExecResult::Kind::exited;
  result.exit = exit_from_status(*status);
  result.exit.stdout_bytes = out_s.bytes;
  result.exit.stderr_bytes = err_s.bytes;
  const uint64_t oom_after = oom_kills_so_far();
  const uint64_t oom_kills = oom_after > oom_before ? oom_after - oom_before : 0;
  result.exit.oom_kills = oom_kills > 0xffffffffu ? 0xffffffffu : static_cast<uint32_t>(oom_kills);
  return result;
}

}  // namespace kiln::agent
